//! The project's main demo: a whole rollout on a simulated cluster.
//!
//! The real leader, authproxy and one agent process per node run against the
//! in-process Kubernetes API simulator and simulated Bottlerocket hosts. A
//! live view shows nodes by state, slots and holders, progress, failures and
//! the rollout's phase; `kubectl` works against the simulated cluster from
//! another terminal. Ends with a summary; Ctrl-C stops everything cleanly.
//!
//!     cargo run --release -p tests --bin simulate -- --nodes 30 --slots 5
//!     cargo run --release -p tests --bin simulate -- --timings production
//!
//! Every deadline follows `--node-time`: the slot lease is about a quarter
//! of a node's time (at least 3 s), and the agents', leader's and
//! authproxy's other durations keep their shipped proportions to it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use model::ShadowState;
use model::policy::Phase;
use tests::harness::{Fleet, FleetOptions};
use tests::hostsim::{CommandKind, Fault, Timings};
use tests::timeline::{Mark, Timeline, mark};

fn duration(s: &str) -> Result<Duration, String> {
    model::parse::duration(s).map_err(|e| e.to_string())
}

fn percent(s: &str) -> Result<u32, String> {
    let n = s.trim_end_matches('%').parse::<u32>().map_err(|_| format!("{s:?} is not a percentage like 10%"))?;
    if n > 100 { Err(format!("{s:?} is more than 100%")) } else { Ok(n) }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Preset {
    Fast,
    Production,
}

#[derive(Parser, Debug)]
#[command(name = "simulate", about = "Runs a Bottlerocket update rollout on a simulated fleet")]
struct Args {
    /// Nodes in the fleet.
    #[arg(long, default_value_t = 30)]
    nodes: usize,
    /// Concurrent updates (slots).
    #[arg(long, default_value_t = 5)]
    slots: u32,
    /// Version the hosts run.
    #[arg(long, default_value = "1.20.0")]
    from: String,
    /// Version published to the hosts.
    #[arg(long, default_value = "1.21.0")]
    release: String,
    /// Host work per node (prepare, reboot, monitoring together); default
    /// 3s with `--timings fast`, 30s with `--timings production`.
    #[arg(long, value_parser = duration)]
    node_time: Option<Duration>,
    /// `fast`: prepare and reboot each 35% of the node time, monitoring 20%,
    /// a quick look at the operator. `production`: a real node's
    /// proportions (prepare 1.5 slot leases, reboot 1.2, monitoring 1, the
    /// lease a quarter of the node time): every host step outlasts the slot
    /// lease, as on real nodes, and the run takes a few minutes.
    #[arg(long, value_enum, default_value_t = Preset::Fast)]
    timings: Preset,
    /// Share of hosts whose prepare fails (every k-th node), e.g. 10%.
    #[arg(long, value_parser = percent)]
    fail_prepare: Option<u32>,
    /// Nodes whose new image does not boot (repeatable).
    #[arg(long)]
    rollback: Vec<String>,
    /// Nodes whose pods a PodDisruptionBudget never lets go (repeatable).
    #[arg(long)]
    pdb_block: Vec<String>,
    /// Also write the rollout as an SVG timeline here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Where to write the kubeconfig of the simulated cluster.
    #[arg(long, default_value = "/tmp/brupop-simulate.kubeconfig")]
    kubeconfig: PathBuf,
    /// Give up after this long.
    #[arg(long, default_value = "15m", value_parser = duration)]
    timeout: Duration,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// A production node spends about 3.7 slot leases on its update (prepare
/// 1.5, reboot 1.2, monitoring 1): the lease that keeps that proportion for
/// a node time `t`, in whole seconds, at least 3 s.
fn lease_for(t: Duration) -> Duration {
    Duration::from_secs((t.as_secs_f64() / 3.7).round().max(3.0) as u64)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t = args.node_time.unwrap_or(match args.timings {
        Preset::Fast => Duration::from_secs(3),
        Preset::Production => Duration::from_secs(30),
    });
    let lease = lease_for(t);
    let mut opts = FleetOptions::scaled(lease)
        // A node notices the release within a lease (real fleets: an hour).
        .agent_flag("update-check-interval", ms(lease))
        .agent_flag("node-backoff", "5s")
        .agent_flag("node-backoff-max", "30s")
        .leader_flag("failure-backoff", "5s")
        .leader_flag("failure-backoff-max", "40s")
        // The shipped election timings (the tests' are quick, for failover tests).
        .leader_flag("lease-duration", "15s")
        .leader_flag("renew-deadline", "10s")
        .leader_flag("retry-period", "2s");
    opts.nodes = args.nodes;
    opts.slots = args.slots;
    opts.running = args.from.clone();
    opts.node_prefix = Some("node-".into());
    if args.timings == Preset::Fast {
        opts.host_timings = Timings {
            refresh: Duration::from_millis(5),
            prepare: t.mul_f64(0.35),
            activate: Duration::from_millis(20),
            deactivate: Duration::from_millis(20),
            reboot_downtime: t.mul_f64(0.35),
            status_read_hold: Duration::ZERO,
        };
        opts = opts.agent_flag("health-minimum", ms(t.mul_f64(0.2)));
    }
    eprintln!(
        "starting a simulated cluster: {} nodes, {} slots, {:?} timings: node time {:?}, slot lease {:?} (building the components if needed)...",
        args.nodes, args.slots, args.timings, t, lease
    );
    let fleet = Fleet::start("simulate", opts).await?;
    std::fs::copy(fleet.api.kubeconfig_path(), &args.kubeconfig)?;
    println!("The simulated cluster answers kubectl. In another terminal:");
    println!("  export KUBECONFIG={}", args.kubeconfig.display());
    println!("  kubectl -n {} get brs,leases,updatepolicy", fleet.ns);
    // Faults.
    let mut faulty: BTreeMap<String, &str> = BTreeMap::new();
    if let Some(p) = args.fail_prepare.filter(|p| *p > 0) {
        let every = (100 / p).max(1) as usize;
        for (i, n) in fleet.nodes.iter().enumerate().filter(|(i, _)| i % every == every - 1) {
            let _ = i;
            let fault = Fault::CommandFails {
                command: CommandKind::Prepare,
                exit_status: 1,
                stderr: "Failed to download the update image".into(),
            };
            fleet.hosts.host(n).ok_or_else(|| anyhow::anyhow!("no host {n}"))?.set_fault(fault);
            faulty.insert(n.clone(), "prepare fails");
        }
    }
    for n in &args.rollback {
        fleet
            .hosts
            .host(n)
            .ok_or_else(|| anyhow::anyhow!("--rollback: no node {n}"))?
            .set_fault(Fault::RollbackOnBoot(None));
        faulty.insert(n.clone(), "rolls back");
    }
    for n in &args.pdb_block {
        anyhow::ensure!(fleet.nodes.contains(n), "--pdb-block: no node {n}");
        let pdbs: kube::Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
            kube::Api::namespaced(fleet.client().clone(), &fleet.ns);
        let pdb = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("block-{n}")},
            "spec": {"minAvailable": "100%", "selector": {"matchLabels": {"node": n}}},
        }))?;
        pdbs.create(&Default::default(), &pdb).await?;
        faulty.insert(n.clone(), "PDB blocks its drain");
    }
    for (n, what) in &faulty {
        println!("  fault: {n} {what}");
    }
    fleet.wait_reported(Duration::from_secs(120)).await;
    let before = match &fleet.api.backend {
        tests::backend::Backend::Sim(sim) => Some(sim.request_log()),
        tests::backend::Backend::Real { .. } => None,
    };
    let timeline = Timeline::start(fleet.client(), &fleet.ns, &args.release);
    let host_before = fleet.hosts.requests();
    let published = Instant::now();
    fleet.hosts.publish(&args.release);
    println!("published {} to every host; the rollout starts\n", args.release);
    let tty = std::io::stdout().is_terminal();
    let mut last_print = Instant::now() - Duration::from_secs(10);
    // Host requests made while each node walked (granted to released),
    // sampled with the live view: the cost of an update without the
    // periodic update checks.
    let mut walk_requests = WalkRequests::default();
    let outcome = loop {
        let shadows = fleet.shadows().await;
        let policy_obj = fleet.policy().await;
        let policy = policy_obj.as_ref().and_then(|p| p.status.clone()).unwrap_or_default();
        let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
            kube::Api::namespaced(fleet.client().clone(), &fleet.ns);
        let leases = leases.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
        // The rollout as `kubectl brupop status` shows it (one rendering).
        let status = policy_obj
            .as_ref()
            .map(|p| kubectl_brupop::StatusReport::new(&fleet.ns, p, &leases, &shadows).text(jiff::Timestamp::now()));
        let mut counts: BTreeMap<Mark, usize> = BTreeMap::new();
        for s in &shadows {
            let m = mark(s, &args.release);
            *counts.entry(m).or_default() += 1;
            if let Some(host) = s.node_name().and_then(|n| fleet.hosts.host(n)) {
                walk_requests.sample(host, m);
            }
        }
        let updated = counts.get(&Mark::Updated).copied().unwrap_or(0);
        let failed_faulty = faulty
            .keys()
            .filter(|n| {
                shadows.iter().any(|s| {
                    s.node_name() == Some(n.as_str()) && s.status.as_ref().is_some_and(|st| st.last_failure.is_some())
                })
            })
            .count();
        let healthy_done = shadows
            .iter()
            .filter(|s| !faulty.contains_key(s.node_name().unwrap_or("")))
            .all(|s| mark(s, &args.release) == Mark::Updated);
        let view = render(&args, &fleet, &counts, updated, status.as_deref().unwrap_or(""), published.elapsed());
        if tty {
            print!("\x1b[H\x1b[2J{view}");
            let _ = std::io::stdout().flush();
        } else if last_print.elapsed() >= Duration::from_secs(2) {
            println!("{}", view.lines().take(3).collect::<Vec<_>>().join(" | "));
            last_print = Instant::now();
        }
        if updated == fleet.nodes.len() {
            break "every node runs the new version";
        }
        if healthy_done && failed_faulty == faulty.len() && shadows.len() == fleet.nodes.len() {
            break "every node updated except the faulty ones, whose failures are recorded";
        }
        if policy.phase == Phase::Stopped {
            break "the rollout stopped after repeated failures (it waits for a person: see README, Configure)";
        }
        if published.elapsed() > args.timeout {
            break "timed out";
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break "interrupted (Ctrl-C)",
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    };
    let makespan = published.elapsed();
    println!("\n\n== {outcome} ==");
    summary(&args, &fleet, &timeline, makespan, before, host_before, &walk_requests).await;
    if let Some(path) = &args.svg {
        let title = format!(
            "{} nodes, {} slots: {} → {} in {:.1}s",
            args.nodes,
            args.slots,
            args.from,
            args.release,
            makespan.as_secs_f64()
        );
        std::fs::write(path, timeline.svg(&title))?;
        println!("timeline: {}", path.display());
    }
    drop(timeline);
    fleet.stop().await;
    Ok(())
}

/// Host requests counted while each node walked.
#[derive(Debug, Default)]
struct WalkRequests {
    last: BTreeMap<String, tests::hostsim::RequestCount>,
    total: tests::hostsim::RequestCount,
}

impl WalkRequests {
    fn sample(&mut self, host: &tests::hostsim::HostSim, mark: Mark) {
        let now = host.requests();
        let before = self.last.insert(host.name().to_owned(), now).unwrap_or(now);
        if matches!(mark, Mark::Preparing | Mark::Staged | Mark::Rebooted | Mark::Monitoring) {
            self.total.answered += now.answered - before.answered;
            self.total.locked += now.locked - before.locked;
        }
    }
}

fn render(
    args: &Args,
    fleet: &Fleet,
    counts: &BTreeMap<Mark, usize>,
    updated: usize,
    status: &str,
    elapsed: Duration,
) -> String {
    let n = fleet.nodes.len().max(1);
    let width = 50;
    let filled = updated * width / n;
    let c = |m: Mark| counts.get(&m).copied().unwrap_or(0);
    let mut out = String::new();
    out.push_str(&format!(
        "Bottlerocket update operator, simulated fleet: {} nodes, {} slots, {} -> {}   {:.1}s\n",
        args.nodes,
        args.slots,
        args.from,
        args.release,
        elapsed.as_secs_f64()
    ));
    out.push_str(&format!("[{}{}] {updated}/{n} updated\n", "#".repeat(filled), ".".repeat(width - filled)));
    out.push_str(&format!(
        "waiting {}  staged/draining/rebooting {}  rebooted {}  monitoring {}  failed {}  updated {}\n\n",
        c(Mark::Waiting),
        c(Mark::Staged),
        c(Mark::Rebooted),
        c(Mark::Monitoring),
        c(Mark::Failed),
        c(Mark::Updated)
    ));
    out.push_str(status);
    out.push_str(&format!(
        "\nkubectl: export KUBECONFIG={}; kubectl -n {} get brs,leases,updatepolicy; kubectl brupop -n {} status\n",
        args.kubeconfig.display(),
        fleet.ns,
        fleet.ns
    ));
    out
}

async fn summary(
    args: &Args,
    fleet: &Fleet,
    timeline: &Timeline,
    makespan: Duration,
    before: Option<tests::apisim::RequestStats>,
    host_before: tests::hostsim::RequestCount,
    walk_requests: &WalkRequests,
) {
    let per_node = timeline.per_node();
    let mut durations: Vec<f64> = per_node.values().filter_map(|(_, d)| *d).collect();
    durations.sort_by(f64::total_cmp);
    let pct = |p: f64| durations.get(((durations.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    let waves = fleet.nodes.len().div_ceil(args.slots.max(1) as usize);
    let last = timeline.last_update().map_or(makespan.as_secs_f64(), |t| t);
    println!(
        "makespan            {last:.1}s (release published → last node updated; the run ended after {:.1}s)",
        makespan.as_secs_f64()
    );
    println!(
        "per-node update     min {:.1}s  median {:.1}s  max {:.1}s  ({} nodes updated, {} waves of {} slots)",
        pct(0.0),
        pct(0.5),
        pct(1.0),
        durations.len(),
        waves,
        args.slots
    );
    if let Some(median) = durations.get(durations.len() / 2) {
        println!(
            "floor               {:.1}s = waves × median per-node time; makespan / floor = {:.2}",
            waves as f64 * median,
            last / (waves as f64 * median)
        );
    }
    let policy = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for f in &policy.recent_failures {
        *by_reason.entry(f.reason.to_string()).or_default() += 1;
    }
    println!("failures by reason  {}", if by_reason.is_empty() { "none".to_owned() } else { format!("{by_reason:?}") });
    println!("rollout phase       {}: {}", policy.phase.as_str(), policy.message);
    let not_updated: Vec<String> = fleet
        .shadows()
        .await
        .iter()
        .filter(|s| {
            s.status
                .as_ref()
                .is_none_or(|st| st.current_version != args.release || st.current_state != ShadowState::Idle)
        })
        .filter_map(|s| s.node_name().map(str::to_owned))
        .collect();
    if !not_updated.is_empty() {
        println!("not updated         {}", not_updated.join(", "));
    }
    let hosts = fleet.hosts.requests();
    let updates = durations.len().max(1) as f64;
    println!(
        "host API requests   {:.0} per node update ({:.0} of them 423: a command running), update checks included;",
        (hosts.answered - host_before.answered) as f64 / updates,
        (hosts.locked - host_before.locked) as f64 / updates
    );
    println!(
        "                    {:.0} during the node's own walk, from its grant to its release",
        walk_requests.total.answered as f64 / updates
    );
    if let (tests::backend::Backend::Sim(sim), Some(before)) = (&fleet.api.backend, before) {
        let stats = sim.request_log().since(&before);
        let verbs = ["get", "list", "watch", "create", "update", "patch", "delete"];
        let by_verb: Vec<String> = verbs.iter().map(|v| format!("{v} {}", stats.by_verb(v))).collect();
        println!("API requests        {} in all: {}", stats.total(), by_verb.join(", "));
        let components = |u: &str| u.contains(":brupop-leader") || u.contains(":brupop-authproxy");
        let writes: u64 = stats
            .counts
            .iter()
            .filter(|((v, r, u), _)| {
                components(u)
                    && ["create", "update", "patch", "delete"].contains(&v.as_str())
                    && !["pods/eviction", "tokenreviews"].contains(&r.as_str())
                    && !r.starts_with("events")
            })
            .map(|(_, n)| n)
            .sum();
        let updated = durations.len().max(1) as f64;
        println!(
            "operator writes     {:.1} per node update (leader + authproxy, the leader's election renewals every 2 s included; evictions, Events and TokenReviews not)",
            writes as f64 / updated
        );
        if std::env::var_os("BRUPOP_WRITES_DETAIL").is_some() {
            let mut detail: BTreeMap<(String, String, String), u64> = BTreeMap::new();
            for ((v, r, u), n) in &stats.counts {
                if components(u) && ["create", "update", "patch", "delete"].contains(&v.as_str()) {
                    let who = if u.contains("leader") { "leader" } else { "authproxy" };
                    *detail.entry((who.to_owned(), v.clone(), r.clone())).or_default() += n;
                }
            }
            for ((who, v, r), n) in detail {
                println!("  {who:9} {v:6} {r:32} {:.2} per node update", n as f64 / updated);
            }
        }
    }
}
