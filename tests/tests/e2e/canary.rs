//! The canary of a new version: its canary nodes first, then a soak with no
//! new grants of it, then the rest; a canary that fails stops the rollout
//! until a person resumes it.

use model::policy::{CanaryState, CanaryStatus, Phase};
use model::{FailureReason, ShadowState};
use tests::harness::{Fleet, FleetOptions, wait_for};
use tests::hostsim::{CommandKind, Fault};

use super::{T, policy_events};

/// The canary of `version` in the UpdatePolicy status, if any.
async fn canary(fleet: &Fleet, version: &str) -> Option<CanaryStatus> {
    let st = fleet.policy().await?.status?;
    st.canaries.into_iter().find(|c| c.version == version)
}

/// Waits until the UpdatePolicy's Events include every one of `reasons`.
async fn wait_events(fleet: &Fleet, reasons: &[&str]) {
    wait_for("the canary's Events", T, || async {
        let seen = policy_events(fleet).await;
        if reasons.iter().all(|r| seen.iter().any(|s| s == r)) { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;
}

/// Five nodes, three slots, a canary of two nodes and a soak of two slot
/// leases: the two canaries update (though a third slot is free), then no
/// grant until the soak ends, then the other three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_updates_first_then_soaks_then_the_rest_follow() {
    let fleet = Fleet::start("canary", FleetOptions { nodes: 5, slots: 3, ..Default::default() }).await.unwrap();
    fleet.patch_policy(serde_json::json!({"canary": {"nodes": 2, "soak": "6s"}})).await;
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    let soaking = wait_for("the canary to soak", T, || async {
        match canary(&fleet, "1.21.0").await {
            Some(c) if c.state == CanaryState::Soaking => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let until = soaking.soak_until.as_ref().expect("a soak end").0;
    assert_eq!((soaking.needed, soaking.passed, soaking.nodes.len()), (2, 2, 2), "{soaking:?}");
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let log = fleet.monitor.grant_log();
    assert_eq!(log.len(), 5, "{log:?}");
    let (first, rest) = log.split_at(2);
    for (node, _) in first {
        assert!(soaking.nodes.contains(node), "the first grants are the canaries: {log:?}, {soaking:?}");
    }
    for (node, at) in rest {
        assert!(*at >= until, "{node} was granted at {at}, before the soak ended at {until}: {log:?}");
    }
    let c = canary(&fleet, "1.21.0").await.unwrap();
    assert_eq!(c.state, CanaryState::Passed, "{c:?}");
    assert_eq!(fleet.policy().await.and_then(|p| p.status).unwrap_or_default().phase, Phase::Running);
    wait_events(&fleet, &["CanaryUpdating", "CanarySoaking", "CanaryPassed"]).await;
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

/// The canary's host cannot download the update: the rollout stops at that
/// one failure (three are allowed before a stop otherwise), names the
/// version, and grants nothing more; fixed and resumed, the canary runs
/// again and the rollout completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_stops_the_rollout_until_resumed() {
    let mut opts = FleetOptions { nodes: 4, slots: 2, ..Default::default() };
    opts.leader_args.retain(|(k, _)| k != "failure-backoff" && k != "max-consecutive-failures");
    opts.leader_args.push(("failure-backoff".into(), "1s".into()));
    opts.leader_args.push(("max-consecutive-failures".into(), "3".into()));
    let fleet = Fleet::start("canary-fails", opts).await.unwrap();
    fleet.patch_policy(serde_json::json!({"canary": {"nodes": 1, "soak": "3s"}})).await;
    fleet.wait_reported(T).await;
    let fault = Fault::CommandFails {
        command: CommandKind::Prepare,
        exit_status: 1,
        stderr: "Failed to download update".into(),
    };
    fleet.hosts.set_fault_all(&fault);
    fleet.hosts.publish("1.21.0");
    let stopped = wait_for("the rollout to stop", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if p.phase == Phase::Stopped { Ok(p) } else { Err(format!("{p:?}")) }
    })
    .await;
    assert!(stopped.message.contains("canary of 1.21.0 failed on"), "{}", stopped.message);
    assert!(stopped.message.contains("resumeRequest"), "{}", stopped.message);
    assert_eq!(stopped.consecutive_failures, 1, "{stopped:?}");
    assert_eq!(stopped.halt_reason, Some(FailureReason::PrepareFailed));
    let c = canary(&fleet, "1.21.0").await.unwrap();
    assert_eq!((c.state, c.nodes.len()), (CanaryState::Failed, 1), "{c:?}");
    wait_events(&fleet, &["CanaryFailed", "Stopped"]).await;
    // Past the one-second halt: still stopped, nothing more granted.
    let canary_node = c.nodes[0].clone();
    wait_for("the canary's slot to be given back", T, || async {
        let held: Vec<_> = fleet.slots().await.into_iter().filter_map(|(_, h)| h).collect();
        if held.is_empty() { Ok(()) } else { Err(format!("{held:?}")) }
    })
    .await;
    // The failure also halts (for the 1 s backoff); on a slow machine the
    // first Stopped status read may come after that halt already ended.
    let halt_end = match stopped.halted_until.as_ref() {
        Some(until) => until.0,
        None => {
            let failed = stopped.recent_failures.last().expect("the failure is recorded").time.0;
            failed.checked_add(jiff::SignedDuration::from_secs(2)).unwrap()
        }
    };
    wait_for("the halt to be over", T, || async {
        let now = jiff::Timestamp::now();
        if now > halt_end { Ok(()) } else { Err(format!("{now} <= {halt_end}")) }
    })
    .await;
    let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
    assert_eq!(p.phase, Phase::Stopped, "{p:?}");
    assert!(fleet.monitor.grant_log().iter().all(|(n, _)| *n == canary_node), "{:?}", fleet.monitor.grant_log());
    // Fixed, resumed: the canary again, then the rest.
    for h in fleet.hosts.hosts() {
        h.clear_faults();
    }
    fleet.resume().await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let c = canary(&fleet, "1.21.0").await.unwrap();
    assert_eq!(c.state, CanaryState::Passed, "{c:?}");
    let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
    assert_eq!((p.phase, p.consecutive_failures), (Phase::Running, 0), "{p:?}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
