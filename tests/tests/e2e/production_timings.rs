//! The walk at production proportions, pushed further: each scenario makes
//! one part of a node's update last several slot leases (real host work
//! takes minutes; the shipped lease is two), and the property test draws
//! every part at random. No live agent may lose its slot: its renewals go
//! on during host commands, reboots, drains and waits.

use std::time::Duration;

use model::policy::UpdatePolicyStatus;
use model::{FailureReason, ShadowState};
use tests::harness::{Fleet, FleetOptions, TEST_LEASE, wait_for};
use tests::hostsim::{CommandKind, Fault, Timings};
use tests::timings::{Case, run};

use super::{T, failure_of, total};

/// Failures of the kind a slot that lapsed under a live agent would show.
fn slot_failures(p: &UpdatePolicyStatus) -> Vec<String> {
    p.recent_failures
        .iter()
        .filter(|f| matches!(f.reason, FailureReason::SlotExpired | FailureReason::SlotLost))
        .map(|f| format!("{} {}: {}", f.node, f.reason, f.message))
        .collect()
}

/// Rolls `opts` out and checks: every node updated, no failure at all, a
/// clean invariant monitor.
async fn rolls_out_cleanly(name: &str, opts: FleetOptions) {
    let fleet = Fleet::start(name, opts).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    fleet.wait_all(ShadowState::Idle, "1.21.0", T * 2).await;
    let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
    assert!(p.recent_failures.is_empty(), "no failure expected: {:?}", p.recent_failures);
    let m = fleet.leader_metrics(0).await;
    assert_eq!(total(&m, "brupop_update_failures_total"), 0.0, "{m}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_timings_prepare_lasting_three_leases() {
    let mut opts = FleetOptions { nodes: 2, ..Default::default() };
    opts.host_timings.prepare = TEST_LEASE * 3;
    rolls_out_cleanly("prepare-3x", opts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_timings_reboot_lasting_two_leases() {
    let mut opts = FleetOptions { nodes: 2, ..Default::default() };
    opts.host_timings.reboot_downtime = TEST_LEASE * 2;
    rolls_out_cleanly("reboot-2x", opts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_timings_drain_whose_pods_take_one_and_a_half_leases() {
    let opts =
        FleetOptions { nodes: 2, pods_per_node: 3, pod_termination: TEST_LEASE.mul_f64(1.5), ..Default::default() };
    rolls_out_cleanly("drain-1.5x", opts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_timings_command_that_never_finishes() {
    // The command deadline is three leases here (7.5 shipped): the slot is
    // renewed all that time, then the deadline ends the walk with its failure.
    let deadline = TEST_LEASE * 3;
    let opts = FleetOptions { nodes: 2, ..Default::default() }
        .agent_flag("host-command-timeout", format!("{}ms", deadline.as_millis()));
    let fleet = Fleet::start("command-hangs", opts).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.set_fault_all(&Fault::CommandHangs(CommandKind::Prepare));
    fleet.hosts.publish("1.21.0");
    let started = std::time::Instant::now();
    let failed = wait_for("a prepare that never finishes to fail its walk", T, || async {
        for n in &fleet.nodes {
            if failure_of(&fleet, n).await == Some(FailureReason::PrepareFailed) {
                return Ok(n.clone());
            }
        }
        Err(fleet.progress().await)
    })
    .await;
    assert!(started.elapsed() >= deadline, "the walk ended at its deadline, not before");
    let shadow = fleet.shadow(&failed).await.unwrap();
    let message = shadow.status.unwrap().last_failure.unwrap().message;
    assert!(message.contains("did not finish within"), "{message}");
    wait_for("the failed node's slot to be released", T, || async {
        let held = fleet.slots().await.iter().any(|(_, h)| h.as_deref() == Some(failed.as_str()));
        if held { Err(fleet.progress().await) } else { Ok(()) }
    })
    .await;
    assert!(!fleet.cordoned(&failed).await, "nothing left cordoned");
    let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
    assert!(
        p.recent_failures.iter().any(|f| f.node == failed && f.reason == FailureReason::PrepareFailed),
        "the failure is counted: {:?}",
        p.recent_failures
    );
    assert_eq!(slot_failures(&p), Vec::<String>::new(), "the slot was renewed while the command hung");
    // The host gets unstuck: the rollout goes on (after the halt) and completes.
    fleet.hosts.hosts().iter().for_each(|h| h.remove_faults(|f| matches!(f, Fault::CommandHangs(_))));
    fleet.wait_all(ShadowState::Idle, "1.21.0", T * 2).await;
    let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
    assert_eq!(slot_failures(&p), Vec::<String>::new());
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

/// A few random cases of the property test, side by side (each its own
/// fleet); `cargo run -p tests --bin timings` runs many more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_timings_random_durations_from_a_twentieth_to_five_leases() {
    let seeds = [11u64, 23, 37];
    let runs = seeds.iter().map(|seed| {
        let case = Case::generate(*seed);
        eprintln!("timings case {}", case.describe());
        run(case, 2, 1)
    });
    let results = futures::future::join_all(runs).await;
    let mut problems = Vec::new();
    for r in results {
        let r = r.expect("the fleet starts");
        eprintln!(
            "timings case seed {}: {:.1}s, {:.0} host requests per node update ({:.0} answered 423), {} problem(s)",
            r.case.seed,
            r.elapsed.as_secs_f64(),
            r.host_requests_per_update,
            r.locked_per_update,
            r.problems.len()
        );
        for p in &r.problems {
            problems.push(format!("{}: {p}", r.case.describe()));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn timing_cases_replay_from_their_seed_and_stay_in_range() {
    for seed in 0..200 {
        let a = Case::generate(seed);
        assert_eq!(a, Case::generate(seed), "seed {seed} replays");
        for d in [a.refresh, a.prepare, a.activate, a.deactivate, a.reboot, a.drain, a.monitoring] {
            assert!(d >= a.lease.mul_f64(0.049) && d <= a.lease * 5, "{}", a.describe());
        }
        let _ = Timings::production(a.lease);
        assert!(a.reboot < Duration::from_secs(15), "within the reboot grace: {}", a.describe());
    }
}
