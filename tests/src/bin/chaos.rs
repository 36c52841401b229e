//! The chaos runner: rollouts under random fault schedules (see
//! `tests::chaos`), a few fleets at a time, each on the in-process API
//! simulator (or the real API server `BRUPOP_TEST_KUBECONFIG` names) with
//! the real components.
//!
//!     cargo run --release -p tests --bin chaos -- --schedules 300 --parallel 2
//!
//! Prints one line per schedule and a final line (schedules, violations,
//! wall time); exits non-zero if any schedule broke a rule. A failing seed
//! replays the same schedule with `--first-seed <seed> --schedules 1`.

use std::time::Instant;

use clap::Parser;
use tests::chaos::{Schedule, Size, run};

#[derive(Parser, Debug)]
#[command(name = "chaos", about = "Rollouts under random fault schedules, checked for every safety rule")]
struct Args {
    /// How many schedules.
    #[arg(long, default_value_t = 10)]
    schedules: u64,
    /// The seed of the first schedule; the others follow.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Schedules run at once (each its own fleet).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// 5–8 nodes and 1–3 slots instead of 10–30 and 1–5 (CI).
    #[arg(long)]
    small: bool,
    /// Print each schedule's steps before it runs.
    #[arg(long)]
    verbose: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let size = if args.small { Size::SMALL } else { Size::FULL };
    let started = Instant::now();
    let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.schedules).collect();
    let (mut passed, mut failed, mut violations) = (0u64, Vec::new(), 0usize);
    for batch in seeds.chunks(args.parallel.max(1)) {
        let schedules: Vec<Schedule> = batch.iter().map(|s| Schedule::generate(*s, size)).collect();
        if args.verbose {
            for s in &schedules {
                println!("seed {}: {} nodes, {} slots, steps {:?}", s.seed, s.nodes, s.slots, s.steps);
            }
        }
        for r in futures::future::join_all(schedules.iter().map(run)).await {
            let r = r?;
            println!("{:6} {}", if r.violations.is_empty() { "ok" } else { "FAILED" }, r.line());
            for v in &r.violations {
                println!("         {v}");
            }
            violations += r.violations.len();
            if r.violations.is_empty() {
                passed += 1;
            } else {
                failed.push(r.seed);
            }
        }
    }
    println!(
        "\nchaos: {} schedules, {passed} passed, {violations} violations{}; {:.0}s wall time",
        args.schedules,
        if failed.is_empty() { String::new() } else { format!(" (seeds {failed:?})") },
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(failed.is_empty(), "{} schedule(s) broke a rule", failed.len());
    Ok(())
}
