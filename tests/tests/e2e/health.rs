//! The health gate after the reboot: it blames the update only for pods the
//! node ran before its drain, and ends as soon as they are back.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use model::{FailureReason, ShadowState};
use serde_json::json;
use tests::harness::{Fleet, FleetOptions, TEST_LEASE, wait_for};

use super::{T, failure_of};

/// A pod the scheduler placed on `node` after the uncordon, still starting
/// (never Ready in this test).
async fn place_new_pod(fleet: &Fleet, node: &str, name: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": fleet.ns, "labels": {"app": "late"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
    }))
    .unwrap();
    let pp = PostParams { field_manager: Some("test".into()), ..Default::default() };
    Api::<Pod>::namespaced(fleet.client().clone(), &fleet.ns).create(&pp, &pod).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_scheduled_after_the_uncordon_does_not_fail_the_update() {
    // A whole lease of watching after the reboot, so the new pod lands
    // while the walk is still judging the node.
    let opts = FleetOptions { nodes: 2, ..Default::default() }
        .agent_flag("health-minimum", format!("{}ms", TEST_LEASE.as_millis()));
    let fleet = Fleet::start("health-late-pod", opts).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    for (i, node) in fleet.nodes.clone().iter().enumerate() {
        wait_for(&format!("{node} to be monitored after its reboot"), T, || async {
            let st = fleet.shadow(node).await.and_then(|s| s.status);
            match st.as_ref().map(|s| s.current_state) {
                Some(ShadowState::MonitoringUpdate) => Ok(()),
                _ => Err(fleet.progress().await),
            }
        })
        .await;
        place_new_pod(&fleet, node, &format!("late-{i}")).await;
    }
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    for node in &fleet.nodes {
        assert_eq!(failure_of(&fleet, node).await, None, "{node}: {}", fleet.progress().await);
    }
    let p = fleet.policy().await.unwrap().status.unwrap();
    assert_eq!(p.consecutive_failures, 0, "{p:?}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_pod_that_ran_before_the_drain_fails_the_update() {
    let fleet = Fleet::start("health-crashloop", FleetOptions { nodes: 1, ..Default::default() }).await.unwrap();
    let node = fleet.nodes[0].clone();
    // The node's log shipper (a DaemonSet's pod) crash-loops after the boot.
    let pod = format!("{}/logs-{node}", fleet.ns);
    fleet.failing_pods.lock().unwrap().insert(pod.clone());
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    // The walk records the pod before the drain, waits for it after the
    // reboot until its health timeout, then fails, naming it.
    let recorded = wait_for("the pods before the drain to be recorded", T, || async {
        let st = fleet.shadow(&node).await.and_then(|s| s.status);
        match st.and_then(|s| s.pods_before_drain) {
            Some(p) => Ok(p),
            None => Err(fleet.progress().await),
        }
    })
    .await;
    assert!(recorded.iter().any(|p| p.name == format!("logs-{node}") && p.stays), "{recorded:?}");
    assert!(recorded.iter().any(|p| p.name.starts_with("web-") && !p.stays), "{recorded:?}");
    let failure = wait_for("the health check to fail", T, || async {
        let st = fleet.shadow(&node).await.and_then(|s| s.status);
        match st.as_ref().and_then(|s| s.last_failure.clone()) {
            Some(f) if st.as_ref().is_some_and(|s| s.current_state == ShadowState::ErrorReset) => Ok(f),
            _ => Err(fleet.progress().await),
        }
    })
    .await;
    assert_eq!(failure.reason, FailureReason::HealthCheckFailed, "{failure:?}");
    assert!(failure.message.contains(&pod), "the message names the pod: {}", failure.message);
    // Counted against the rollout (it halts), and the node is not left cordoned.
    wait_for("the failure to be counted", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if p.consecutive_failures == 1 && p.halt_reason == Some(FailureReason::HealthCheckFailed) {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    })
    .await;
    wait_for("the slot to be released", T, || async {
        let held: Vec<_> = fleet.slots().await.into_iter().filter(|(_, h)| h.is_some()).collect();
        if held.is_empty() { Ok(()) } else { Err(format!("{held:?}")) }
    })
    .await;
    assert!(!fleet.cordoned(&node).await, "the node must not stay cordoned");
    let st = fleet.shadow(&node).await.unwrap().status.unwrap();
    assert_eq!(st.current_version, "1.21.0", "the node runs the new version; only its pod is unwell");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
