//! The scale benchmark: a complete rollout of a large simulated fleet on one
//! machine, against the physical limit.
//!
//! The in-process Kubernetes API simulator (this process), one simulated
//! Bottlerocket host per node with a fixed host time per node (this process),
//! the real `leader` and `authproxy` binaries (child processes), and the agents
//! in fleet mode ([`fleetchild`]: every agent a full instance of the nodeagent
//! library, in one child process). With N nodes, C slots and T seconds of host
//! work per node (prepare, reboot, monitoring), no rollout can finish before
//! `ceil(N/C) × T`; the benchmark reports the makespan against that floor,
//! slot re-grant latency, API requests per node update by component and
//! verb, authproxy requests and TokenReviews per node update, the resources
//! of the leader and the authproxy, and the API load of an idle fleet.
//!
//! ```text
//! cargo run --release -p tests --bin scale -- --nodes 1000 --slots 50 --node-time 2s
//! ```

pub mod fleetchild;
pub mod measure;
mod setup;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::apisim::RequestStats;
use crate::timeline::Timeline;
use measure::{Percentiles, ProcSampler, RegrantRecorder};

/// The benchmark's settings.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "scale", about = "A full rollout of a large simulated fleet, measured against the physical limit")]
pub struct Args {
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    #[arg(long, default_value_t = 50)]
    pub slots: u32,
    /// Host work per node: prepare 40%, reboot 40%, monitoring 20%.
    #[arg(long, default_value = "2s", value_parser = crate::scale::duration)]
    pub node_time: Duration,
    /// How often agents ask their host for updates (the release is picked up
    /// within it). Short next to a real fleet's, but every check costs the
    /// simulated host CPU on this one machine: at 1,000 nodes a 1s check
    /// keeps most of a core busy and slows the rollout it measures.
    #[arg(long, default_value = "5s", value_parser = crate::scale::duration)]
    pub update_check: Duration,
    /// How long to measure the API load of the idle fleet before publishing.
    #[arg(long, default_value = "20s", value_parser = crate::scale::duration)]
    pub idle: Duration,
    /// Workload pods per node (drained on each update).
    #[arg(long, default_value_t = 1)]
    pub pods_per_node: usize,
    /// Log filter of the agents (`RUST_LOG` syntax; `info` traces every
    /// step). The component logs are copied into the results directory.
    #[arg(long, default_value = "warn")]
    pub agent_log: String,
    /// Directory for results (JSON and SVG).
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Internal: run the agent fleet described by this spec file.
    #[arg(long, hide = true)]
    pub fleet_child: Option<PathBuf>,
}

pub fn duration(s: &str) -> Result<Duration, String> {
    model::parse::duration(s).map_err(|e| e.to_string())
}

/// Requests per node update, for one component.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PerUpdate {
    pub reads: f64,
    pub writes: f64,
    pub watches: f64,
}

/// Everything the benchmark prints and writes.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub nodes: usize,
    pub slots: u32,
    pub node_time_s: f64,
    pub floor_s: f64,
    pub makespan_s: f64,
    pub makespan_over_floor: f64,
    pub regrant_latency: Percentiles,
    pub api_per_update: BTreeMap<String, PerUpdate>,
    pub operator_writes_per_update: f64,
    pub evictions_per_update: f64,
    pub authproxy_requests_per_update: f64,
    pub tokenreviews_per_update: f64,
    /// Mean authproxy latency by endpoint during the rollout, in milliseconds.
    pub authproxy_mean_ms: BTreeMap<String, f64>,
    /// Host API requests per node update (update checks during the rollout
    /// included), and how many of them answered 423 (a command running).
    pub host_requests_per_update: f64,
    pub host_locked_per_update: f64,
    pub leader_peak_rss_mib: f64,
    pub authproxy_peak_rss_mib: f64,
    pub leader_cpu_s: f64,
    pub authproxy_cpu_s: f64,
    pub idle_requests_per_min: BTreeMap<String, f64>,
    pub idle_window_s: f64,
    pub setup_s: f64,
    /// Mean seconds per node in each phase of the walk (from the shadows).
    pub mean_phase_seconds: BTreeMap<String, f64>,
    /// CPU seconds used during the rollout by each process (2 cores: at
    /// most twice the makespan in all).
    pub cpu_s: BTreeMap<String, f64>,
}

fn component(user: &str) -> &'static str {
    if user.ends_with(":brupop-leader") {
        "leader"
    } else if user.ends_with(":brupop-authproxy") {
        "authproxy"
    } else if user.ends_with(":brupop-agent") {
        "agents"
    } else {
        "harness"
    }
}

const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// Requests per node update by component and kind of request.
fn per_update(stats: &RequestStats, updates: f64) -> (BTreeMap<String, PerUpdate>, f64, f64) {
    let mut out: BTreeMap<String, PerUpdate> = BTreeMap::new();
    let (mut operator_writes, mut evictions) = (0u64, 0u64);
    for ((verb, resource, user), n) in &stats.counts {
        let who = component(user);
        let e = out.entry(who.to_owned()).or_default();
        let n_f = *n as f64 / updates;
        match verb.as_str() {
            "watch" => e.watches += n_f,
            "get" | "list" => e.reads += n_f,
            v if WRITES.contains(&v) => e.writes += n_f,
            _ => {}
        }
        if matches!(who, "leader" | "authproxy") && WRITES.contains(&verb.as_str()) {
            if resource == "pods/eviction" {
                evictions += n;
            } else if resource != "tokenreviews" && !resource.starts_with("events") {
                operator_writes += n;
            }
        }
    }
    (out, operator_writes as f64 / updates, evictions as f64 / updates)
}

/// Requests per minute by verb during the idle window.
fn idle_rates(stats: &RequestStats, window: Duration) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for ((verb, _, user), n) in &stats.counts {
        if component(user) == "harness" {
            continue;
        }
        *out.entry(format!("{}:{verb}", component(user))).or_insert(0.0) += *n as f64 * 60.0 / window.as_secs_f64();
    }
    out
}

/// Runs the benchmark (see the module documentation).
pub async fn run(args: Args) -> anyhow::Result<Results> {
    let started = Instant::now();
    let env = setup::Env::start(&args).await?;
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!("scale: {} nodes ready in {setup_s:.1}s; measuring the idle fleet for {:?}", args.nodes, args.idle);
    // An idle fleet: only watches (and leader election) should reach the API.
    let before_idle = env.sim.request_log();
    tokio::time::sleep(args.idle).await;
    let idle = idle_rates(&env.sim.request_log().since(&before_idle), args.idle);
    let sampler = ProcSampler::start(env.pids());
    let regrants = RegrantRecorder::start(&env.client, &env.ns);
    let timeline = Timeline::start(&env.client, &env.ns, setup::RELEASE);
    // Both recorders must have listed before the release, or its first changes go unseen.
    regrants.listed(Duration::from_secs(60)).await?;
    timeline.listed(Duration::from_secs(60)).await?;
    let cpu_before = sampler.read();
    let before = env.sim.request_log();
    let ap_before = env.authproxy_counts().await;
    let hosts_before = env.host_requests();
    let published = Instant::now();
    let published_at = timeline.elapsed();
    env.publish(setup::RELEASE)?;
    eprintln!("scale: published {}; rolling out", setup::RELEASE);
    let deadline =
        published + Duration::from_secs(600) + args.node_time * (args.nodes as u32 / args.slots.max(1) + 2) * 3;
    loop {
        let done = timeline.per_node().values().filter(|(d, _)| d.is_some()).count();
        if done >= args.nodes {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the rollout did not finish: {done}/{} nodes updated", args.nodes);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let makespan_s = timeline.last_update().unwrap_or(0.0) - published_at;
    let stats = env.sim.request_log().since(&before);
    let ap_after = env.authproxy_counts().await;
    // The hosts' counts are written every 100 ms: wait for the next write.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let hosts_after = env.host_requests();
    let used = sampler.read();
    let updates = args.nodes as f64;
    let (api_per_update, operator_writes, evictions) = per_update(&stats, updates);
    let waves = args.nodes.div_ceil(args.slots.max(1) as usize) as f64;
    let floor_s = waves * args.node_time.as_secs_f64();
    let cpu = |name: &str| used.get(name).map_or(0.0, |u| u.1) - cpu_before.get(name).map_or(0.0, |u| u.1);
    let rss = |name: &str| used.get(name).map_or(0.0, |u| u.0 as f64 / 1024.0);
    let results = Results {
        nodes: args.nodes,
        slots: args.slots,
        node_time_s: args.node_time.as_secs_f64(),
        floor_s,
        makespan_s,
        makespan_over_floor: makespan_s / floor_s,
        regrant_latency: regrants.latencies_after(published),
        api_per_update,
        operator_writes_per_update: operator_writes,
        evictions_per_update: evictions,
        authproxy_requests_per_update: (ap_after.requests - ap_before.requests) / updates,
        tokenreviews_per_update: (ap_after.token_reviews - ap_before.token_reviews) / updates,
        authproxy_mean_ms: ap_after.mean_ms_since(&ap_before),
        host_requests_per_update: (hosts_after.answered - hosts_before.answered) as f64 / updates,
        host_locked_per_update: (hosts_after.locked - hosts_before.locked) as f64 / updates,
        leader_peak_rss_mib: rss("leader"),
        authproxy_peak_rss_mib: rss("authproxy"),
        leader_cpu_s: cpu("leader"),
        authproxy_cpu_s: cpu("authproxy"),
        idle_requests_per_min: idle,
        idle_window_s: args.idle.as_secs_f64(),
        setup_s,
        mean_phase_seconds: timeline.mean_seconds(),
        cpu_s: used.keys().map(|k| (k.clone(), cpu(k))).collect(),
    };
    std::fs::create_dir_all(&args.out)?;
    let stem = format!("scale-{}n-{}s-{}ms", args.nodes, args.slots, args.node_time.as_millis());
    std::fs::write(args.out.join(format!("{stem}.json")), serde_json::to_string_pretty(&results)?)?;
    let title = format!(
        "{} nodes, {} slots, {:.1}s host time per node: makespan {:.1}s = {:.3} x floor {:.1}s",
        args.nodes, args.slots, results.node_time_s, makespan_s, results.makespan_over_floor, floor_s
    );
    std::fs::write(args.out.join(format!("{stem}.svg")), timeline.svg(&title))?;
    print_table(&results, &args.out.join(&stem));
    env.copy_logs(&args.out, &stem);
    drop(env);
    Ok(results)
}

fn print_table(r: &Results, stem: &std::path::Path) {
    println!("\n== scale benchmark: {} nodes, {} slots, node time {:.1}s ==", r.nodes, r.slots, r.node_time_s);
    println!("makespan                  {:.2}s", r.makespan_s);
    println!("floor ceil(N/C) x T       {:.2}s", r.floor_s);
    println!("makespan / floor          {:.3}", r.makespan_over_floor);
    let l = &r.regrant_latency;
    println!(
        "slot re-grant latency     p50 {:.1}ms  p99 {:.1}ms  max {:.1}ms  ({} re-grants)",
        l.p50_ms, l.p99_ms, l.max_ms, l.count
    );
    for (who, p) in &r.api_per_update {
        println!(
            "API per node update       {who:10} reads {:.2}  writes {:.2}  watches {:.2}",
            p.reads, p.writes, p.watches
        );
    }
    println!(
        "operator writes / update  {:.2} (leader + authproxy; evictions {:.2}, Events and TokenReviews not counted)",
        r.operator_writes_per_update, r.evictions_per_update
    );
    println!(
        "authproxy / update        {:.2} requests, {:.3} TokenReviews",
        r.authproxy_requests_per_update, r.tokenreviews_per_update
    );
    println!(
        "host API / update         {:.1} requests ({:.1} answered 423: a command running; update checks included)",
        r.host_requests_per_update, r.host_locked_per_update
    );
    let lat: Vec<String> = r.authproxy_mean_ms.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    println!("authproxy mean ms         {}", lat.join(", "));
    println!(
        "leader                    peak RSS {:.1} MiB, CPU {:.2}s during the rollout",
        r.leader_peak_rss_mib, r.leader_cpu_s
    );
    println!(
        "authproxy                 peak RSS {:.1} MiB, CPU {:.2}s during the rollout",
        r.authproxy_peak_rss_mib, r.authproxy_cpu_s
    );
    let phases: Vec<String> = r.mean_phase_seconds.iter().map(|(k, v)| format!("{k} {v:.2}s")).collect();
    println!("mean per node             {}", phases.join(", "));
    let cpu: Vec<String> = r.cpu_s.iter().map(|(k, v)| format!("{k} {v:.1}s")).collect();
    println!("CPU during the rollout    {} (of {:.1}s x 2 cores)", cpu.join(", "), r.makespan_s);
    let idle: Vec<String> = r.idle_requests_per_min.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    println!("idle API requests / min   {} (over {:.0}s)", idle.join(", "), r.idle_window_s);
    println!(
        "results                   {}.json, {}.svg (setup took {:.1}s)",
        stem.display(),
        stem.display(),
        r.setup_s
    );
}
