//! The chaos runner's small run in `cargo test`: two schedules of the small
//! size at once (random faults over a rollout; see `tests::chaos`), on the
//! simulator or the real API server. The runner itself (`--bin chaos`)
//! runs hundreds.

use tests::chaos::{Schedule, Size, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_fault_schedules_break_no_safety_rule_and_the_rollout_finishes() {
    let schedules: Vec<Schedule> = [11, 12].into_iter().map(|seed| Schedule::generate(seed, Size::SMALL)).collect();
    let reports = futures::future::join_all(schedules.iter().map(run)).await;
    for report in reports {
        let report = report.unwrap();
        println!("{}", report.line());
        assert!(
            report.violations.is_empty(),
            "seed {seed} (replay: cargo run -p tests --bin chaos -- --small --first-seed {seed} --schedules 1 --verbose):\n{}",
            report.violations.join("\n"),
            seed = report.seed
        );
    }
}
