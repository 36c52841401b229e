//! How long one node's walk takes at the shipped defaults: every flag of the
//! leader, authproxy and agent as shipped (only the agent's update check is
//! shortened, so the release is seen at once; it is not part of the walk),
//! with a few seconds of host work per node. It answers "what does the
//! operator add to the host's own work?".
//!
//!     cargo run --release -p tests --bin walktime
//!     BRUPOP_TEST_RBAC_KUBECONFIG=<kubeconfig of a real API server with RBAC> \
//!         cargo run --release -p tests --bin walktime -- --shipped-rbac
//!
//! Each node's walk is measured from its grant (the shadow spec's
//! `state_transition_timestamp`) to the moment its slot Lease is seen free
//! with the node Idle on the new version (polled every 20 ms), and split by
//! the states the node reported on the way. Prints one line per node and
//! the overhead (walk minus host work); exits non-zero if the rollout
//! does not finish.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use model::ShadowState;
use tests::harness::{Fleet, FleetOptions};
use tests::hostsim::Timings;

fn duration(s: &str) -> Result<Duration, String> {
    model::parse::duration(s).map_err(|e| e.to_string())
}

#[derive(Parser, Debug)]
#[command(name = "walktime", about = "Measures a node's walk at the shipped defaults")]
struct Args {
    /// Nodes, updated one at a time.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Host work per node: refresh 10%, prepare 40%, activate 10%, reboot 40%.
    #[arg(long, default_value = "5s", value_parser = duration)]
    host_work: Duration,
    /// How long after a boot the node's pods turn Ready.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pod_start: Duration,
    /// How long an evicted pod takes to terminate.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pod_termination: Duration,
    /// Run under the shipped manifest's RBAC, on the real API server that
    /// `BRUPOP_TEST_RBAC_KUBECONFIG` names.
    #[arg(long)]
    shipped_rbac: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend = if args.shipped_rbac {
        let kc = std::env::var_os("BRUPOP_TEST_RBAC_KUBECONFIG")
            .ok_or_else(|| anyhow::anyhow!("--shipped-rbac needs BRUPOP_TEST_RBAC_KUBECONFIG"))?;
        tests::backend::set_kubeconfig_override(std::path::Path::new(&kc));
        "a real API server, under the shipped RBAC"
    } else if std::env::var_os("BRUPOP_TEST_KUBECONFIG").is_some() {
        "a real API server"
    } else {
        "the in-process API simulator"
    };
    let w = args.host_work;
    let mut opts = FleetOptions {
        nodes: args.nodes,
        slots: 1,
        shipped_rbac: args.shipped_rbac,
        host_timings: Timings {
            refresh: w / 10,
            prepare: w.mul_f64(0.4),
            activate: w / 10,
            deactivate: w / 10,
            reboot_downtime: w.mul_f64(0.4),
            status_read_hold: Duration::ZERO,
        },
        pod_termination: args.pod_termination,
        pod_start_after_boot: args.pod_start,
        ..FleetOptions::default()
    };
    // Every component at its shipped defaults.
    opts.agent_args = vec![("update-check-interval".into(), "300ms".into())];
    opts.leader_args.clear();
    opts.authproxy_args.clear();
    let fleet = Fleet::start("walktime", opts).await?;
    fleet.wait_reported(Duration::from_secs(120)).await;
    fleet.hosts.publish("1.21.0");
    let started = Instant::now();
    // node -> (state -> first seen), grant time, end seen.
    let mut seen: BTreeMap<String, BTreeMap<&'static str, jiff::Timestamp>> = BTreeMap::new();
    let mut grants: BTreeMap<String, jiff::Timestamp> = BTreeMap::new();
    let mut ends: BTreeMap<String, jiff::Timestamp> = BTreeMap::new();
    let deadline = Duration::from_secs(120 * args.nodes as u64 + 120);
    while ends.len() < fleet.nodes.len() {
        anyhow::ensure!(started.elapsed() < deadline, "the rollout did not finish: {}", fleet.progress().await);
        let now = jiff::Timestamp::now();
        let slots = fleet.slots().await;
        for sh in fleet.shadows().await {
            let Some(node) = sh.node_name().map(str::to_owned) else { continue };
            if let Some(t) = sh.spec.state_transition_timestamp.as_ref().filter(|_| sh.spec.slot.is_some()) {
                grants.entry(node.clone()).or_insert(t.0);
            }
            let Some(st) = sh.status.as_ref() else { continue };
            if grants.contains_key(&node) && st.current_state != ShadowState::Idle {
                seen.entry(node.clone()).or_default().entry(st.current_state.as_str()).or_insert(now);
            }
            let held = slots.iter().any(|(_, h)| h.as_deref() == Some(node.as_str()));
            if grants.contains_key(&node)
                && st.current_state == ShadowState::Idle
                && st.current_version == "1.21.0"
                && !held
            {
                ends.entry(node).or_insert(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "walk at the shipped defaults on {backend}: host work {w:?} per node, pods Ready {:?} after boot, evicted pods gone in {:?}",
        args.pod_start, args.pod_termination
    );
    let mut overheads = Vec::new();
    for node in &fleet.nodes {
        let (g, e) = (grants[node], ends[node]);
        let walk = e.duration_since(g).as_secs_f64();
        let states = seen.get(node).cloned().unwrap_or_default();
        let at = |s: &str| {
            states.get(s).map_or_else(|| "-".to_owned(), |t| format!("{:.1}", t.duration_since(g).as_secs_f64()))
        };
        println!(
            "  {node}: walk {walk:.2} s (staged {} s, rebooted {} s, monitoring {} s after the grant); overhead {:.2} s",
            at("StagedAndPerformedUpdate"),
            at("RebootedIntoUpdate"),
            at("MonitoringUpdate"),
            walk - w.as_secs_f64()
        );
        overheads.push(walk - w.as_secs_f64());
    }
    overheads.sort_by(f64::total_cmp);
    println!(
        "overhead (walk - host work): median {:.2} s, max {:.2} s",
        overheads[overheads.len() / 2],
        overheads[overheads.len() - 1]
    );
    fleet.monitor.assert_clean();
    fleet.stop().await;
    Ok(())
}
