//! The property test over timings, at length: many random cases (see
//! `tests::timings`), a few fleets at a time, each on the in-process API
//! simulator with the real components.
//!
//!     cargo run --release -p tests --bin timings -- --cases 30 --parallel 3
//!
//! Prints one line per case and a summary; exits non-zero if any case
//! broke a rule. A failing case replays with `--first-seed <seed> --cases 1`.

use std::time::Instant;

use clap::Parser;
use tests::timings::{Case, run};

#[derive(Parser, Debug)]
#[command(name = "timings", about = "Random host, drain and monitoring durations from 0.05 to 5 slot leases")]
struct Args {
    /// How many cases.
    #[arg(long, default_value_t = 30)]
    cases: u64,
    /// The seed of the first case; the others follow.
    #[arg(long, default_value_t = 1000)]
    first_seed: u64,
    /// Cases run at once (each its own fleet).
    #[arg(long, default_value_t = 3)]
    parallel: usize,
    /// Nodes per fleet.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Slots per fleet.
    #[arg(long, default_value_t = 1)]
    slots: u32,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.cases).collect();
    let (mut passed, mut failed, mut requests) = (0u64, Vec::new(), Vec::new());
    for batch in seeds.chunks(args.parallel.max(1)) {
        let runs = batch.iter().map(|seed| run(Case::generate(*seed), args.nodes, args.slots));
        for r in futures::future::join_all(runs).await {
            let r = r?;
            let verdict = if r.problems.is_empty() { "ok" } else { "FAILED" };
            println!(
                "{verdict:6} {:6.1}s  {:4.0} host requests/update ({:4.0} 423)  {}",
                r.elapsed.as_secs_f64(),
                r.host_requests_per_update,
                r.locked_per_update,
                r.case.describe()
            );
            for p in &r.problems {
                println!("         {p}");
            }
            requests.push(r.host_requests_per_update);
            if r.problems.is_empty() {
                passed += 1;
            } else {
                failed.push(r.case.seed);
            }
        }
    }
    requests.sort_by(f64::total_cmp);
    let median = requests.get(requests.len() / 2).copied().unwrap_or(0.0);
    println!(
        "\n{} cases ({} nodes, {} slot(s) each): {passed} passed, {} failed{}; median {median:.0} host requests per node update; {:.0}s in all",
        args.cases,
        args.nodes,
        args.slots,
        failed.len(),
        if failed.is_empty() { String::new() } else { format!(" (seeds {failed:?})") },
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(failed.is_empty(), "{} case(s) broke a rule", failed.len());
    Ok(())
}
