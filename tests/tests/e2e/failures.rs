//! Rollouts that go wrong: the operator stops them, undoes what it did, and
//! says why.

use std::time::Duration;

use model::policy::Phase;
use model::{FailureReason, ShadowState};
use tests::harness::{Fleet, FleetOptions, metric, wait_for};
use tests::hostsim::{CommandKind, Fault};

use super::{T, failure_of};

fn opts(nodes: usize, leader: &[(&str, &str)]) -> FleetOptions {
    let mut o = FleetOptions { nodes, ..Default::default() };
    for (k, v) in leader {
        o.leader_args.retain(|(name, _)| name != k);
        o.leader_args.push(((*k).to_owned(), (*v).to_owned()));
    }
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_failure_halts_grants() {
    let fleet = Fleet::start(
        "prepare-failure",
        opts(4, &[("failure-backoff", "2s"), ("failure-backoff-max", "30s"), ("max-consecutive-failures", "3")]),
    )
    .await
    .unwrap();
    fleet.wait_reported(T).await;
    let fault = Fault::CommandFails {
        command: CommandKind::Prepare,
        exit_status: 1,
        stderr: "Failed to download update".into(),
    };
    fleet.hosts.set_fault_all(&fault);
    fleet.hosts.publish("1.21.0");
    // Each failure halts the fleet for twice as long as the one before, until the third stops it.
    let mut halts = Vec::new();
    for n in 1..=3u32 {
        let status = wait_for(&format!("failure {n} to be counted"), T, || async {
            let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
            if p.consecutive_failures >= n { Ok(p) } else { Err(format!("{p:?}")) }
        })
        .await;
        assert_eq!(status.consecutive_failures, n, "failures are counted one at a time: {status:?}");
        assert_eq!(status.halt_reason, Some(FailureReason::PrepareFailed));
        let failed_at = status.recent_failures.last().unwrap().time.0;
        let halt = status.halted_until.as_ref().unwrap().0.duration_since(failed_at).as_secs_f64();
        halts.push(halt);
        let expected_phase = if n < 3 { Phase::Halted } else { Phase::Stopped };
        assert_eq!(status.phase, expected_phase, "{status:?}");
    }
    for (i, want) in [2.0, 4.0, 8.0].into_iter().enumerate() {
        assert!(
            halts[i] >= want && halts[i] < want + 2.0,
            "halt {i} lasted {:.1}s, expected {want}s (doubling): {halts:?}",
            halts[i]
        );
    }
    let m = fleet.leader_metrics(0).await;
    assert_eq!(metric(&m, "brupop_update_failures_total{reason=\"PrepareFailed\"}"), Some(3.0), "{m}");
    assert_eq!(metric(&m, "brupop_grants_halted"), Some(1.0), "{m}");
    // Stopped: long after the last halt would have ended, nothing is granted.
    let stopped = fleet.policy().await.unwrap().status.unwrap();
    assert!(stopped.message.contains("resumeRequest"), "{}", stopped.message);
    // The fault is fixed; a person resumes; the rollout finishes.
    for h in fleet.hosts.hosts() {
        h.clear_faults();
    }
    fleet.resume().await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let p = fleet.policy().await.unwrap().status.unwrap();
    assert_eq!((p.phase, p.consecutive_failures), (Phase::Running, 0), "{p:?}");
    let m = fleet.leader_metrics(0).await;
    assert_eq!(metric(&m, "brupop_grants_halted"), Some(0.0), "{m}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_detected() {
    let fleet =
        Fleet::start("rollback", opts(3, &[("failure-backoff", "60s"), ("failure-backoff-max", "60s")])).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.set_fault_all(&Fault::RollbackOnBoot(None));
    fleet.hosts.publish("1.21.0");
    let node = wait_for("a node to report RolledBack", T, || async {
        for n in &fleet.nodes {
            if failure_of(&fleet, n).await == Some(FailureReason::RolledBack) {
                return Ok(n.clone());
            }
        }
        Err(fleet.progress().await)
    })
    .await;
    let shadow = fleet.shadow(&node).await.unwrap();
    let status = shadow.status.unwrap();
    // ErrorReset, or already Idle again and asking for another try (the failure stays recorded).
    assert!(matches!(status.current_state, ShadowState::ErrorReset | ShadowState::Idle), "{status:?}");
    assert_eq!(status.current_version, "1.20.0", "booted back into the old version");
    assert!(status.last_failure.unwrap().message.contains("1.20.0"));
    wait_for("the rolled-back node to be uncordoned", T, || async {
        if fleet.cordoned(&node).await { Err("still cordoned".into()) } else { Ok(()) }
    })
    .await;
    let p = wait_for("the fleet to halt", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if p.phase == Phase::Halted { Ok(p) } else { Err(format!("{p:?}")) }
    })
    .await;
    assert_eq!(p.halt_reason, Some(FailureReason::RolledBack));
    let others_updated = fleet
        .shadows()
        .await
        .iter()
        .filter(|s| s.status.as_ref().is_some_and(|s| s.current_version == "1.21.0"))
        .count();
    assert_eq!(others_updated, 0, "nothing else was updated after the rollback");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdb_blocks_drain() {
    let mut o = opts(3, &[]);
    o.agent_args.retain(|(k, _)| k != "drain-timeout");
    o.agent_args.push(("drain-timeout".into(), "2s".into()));
    let fleet = Fleet::start("pdb-blocks-drain", o).await.unwrap();
    let blocked = fleet.nodes[0].clone();
    let pdbs: kube::Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        kube::Api::namespaced(fleet.client().clone(), &fleet.ns);
    let pdb = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "never", "namespace": fleet.ns},
        "spec": {"minAvailable": "100%", "selector": {"matchLabels": {"node": blocked}}},
    }))
    .unwrap();
    pdbs.create(&Default::default(), &pdb).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    wait_for("the other nodes to update and the blocked one to back off", T, || async {
        let others = {
            let mut ok = true;
            for n in &fleet.nodes[1..] {
                let s = fleet.shadow(n).await.and_then(|s| s.status);
                ok &= s.is_some_and(|s| s.current_version == "1.21.0" && s.current_state == ShadowState::Idle);
            }
            ok
        };
        let backed_off = failure_of(&fleet, &blocked).await == Some(FailureReason::DrainBlocked);
        if others && backed_off { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    // The blocked node was put back: uncordoned, staged update deactivated, slot released, not rebooted.
    wait_for("the blocked node to be uncordoned", T, || async {
        if fleet.cordoned(&blocked).await { Err("still cordoned".into()) } else { Ok(()) }
    })
    .await;
    let host = fleet.hosts.host(&blocked).unwrap();
    assert_eq!(host.os_version(), "1.20.0");
    assert_eq!(host.power().borrow().reboots_requested, 0, "never rebooted");
    let p = fleet.policy().await.unwrap().status.unwrap();
    assert_ne!(p.phase, Phase::Halted, "a PDB blocking one node does not halt the fleet: {p:?}");
    assert_eq!(p.consecutive_failures, 0);
    // Once the budget allows it, the node updates too.
    pdbs.delete("never", &Default::default()).await.unwrap();
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    fleet.monitor.assert_clean();
    let _ = Duration::ZERO;
    fleet.stop().await;
}

/// Where the UpdatePolicy opts in (`drain.deleteBlockedPodsAfter`), a pod
/// whose budget never lets go is deleted once that time has passed, and
/// the walk goes on: an Event names the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_never_lets_go_is_overridden_where_the_policy_opts_in() {
    let fleet = Fleet::start("pdb-override", opts(1, &[])).await.unwrap();
    let node = fleet.nodes[0].clone();
    let pdbs: kube::Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        kube::Api::namespaced(fleet.client().clone(), &fleet.ns);
    let pdb = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "never", "namespace": fleet.ns},
        "spec": {"minAvailable": "100%", "selector": {"matchLabels": {"node": node}}},
    }))
    .unwrap();
    pdbs.create(&Default::default(), &pdb).await.unwrap();
    // After one lease of refusals (the drain may take five).
    let after = format!("{}ms", tests::harness::TEST_LEASE.as_millis());
    fleet.patch_policy(serde_json::json!({"drain": {"deleteBlockedPodsAfter": after}})).await;
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    assert_eq!(failure_of(&fleet, &node).await, None, "{}", fleet.progress().await);
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(fleet.client().clone(), "default");
    let list = events.list(&Default::default()).await.unwrap().items;
    let deleted: Vec<String> = list
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(node.as_str()))
        .filter(|e| e.reason.as_deref() == Some("BlockedPodsDeleted"))
        .filter_map(|e| e.note)
        .collect();
    assert!(deleted.iter().any(|n| n.contains(&format!("web-{node}-"))), "{deleted:?}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
