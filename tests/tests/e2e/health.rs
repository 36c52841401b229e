//! The health gate after the reboot (it blames the update only for pods the
//! node ran before its drain, and ends as soon as they are back), and the
//! wait before the cordon for pods that must not be disrupted.

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
    // Whichever node is being judged gets a new pod, still starting.
    let mut placed = std::collections::BTreeSet::new();
    while placed.len() < fleet.nodes.len() {
        let node = wait_for("a node to be monitored after its reboot", T, || async {
            for sh in fleet.shadows().await {
                let node = sh.node_name().unwrap_or_default().to_owned();
                let monitoring = sh.status.is_some_and(|s| s.current_state == ShadowState::MonitoringUpdate);
                if monitoring && !placed.contains(&node) {
                    return Ok(node);
                }
            }
            Err(fleet.progress().await)
        })
        .await;
        place_new_pod(&fleet, &node, &format!("late-{}", placed.len())).await;
        placed.insert(node);
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
        match st.and_then(|s| s.last_failure) {
            Some(f) => Ok(f),
            None => Err(fleet.progress().await),
        }
    })
    .await;
    assert_eq!(failure.reason, FailureReason::HealthCheckFailed, "{failure:?}");
    assert!(failure.message.contains(&pod), "the message names the pod: {}", failure.message);
    // Counted against the rollout (a halting failure: only those raise the
    // count; the harness's halt lasts a second, so it may be over already),
    // and the node is not left cordoned.
    wait_for("the failure to be counted", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        let counted = p.recent_failures.iter().any(|f| f.reason == FailureReason::HealthCheckFailed && !f.ungranted);
        if p.consecutive_failures == 1 && counted { Ok(()) } else { Err(format!("{p:?}")) }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_must_not_be_disrupted_holds_the_walk_then_fails_it_for_that_node_only() {
    let fleet = Fleet::start("do-not-disrupt", FleetOptions { nodes: 2, ..Default::default() }).await.unwrap();
    let (held, other) = (fleet.nodes[0].clone(), fleet.nodes[1].clone());
    let pods: Api<Pod> = Api::namespaced(fleet.client().clone(), &fleet.ns);
    let pod = format!("web-{held}-0");
    let annotate = |value: serde_json::Value| {
        let pods = pods.clone();
        let pod = pod.clone();
        async move {
            let patch = json!({"metadata": {"annotations": {"karpenter.sh/do-not-disrupt": value}}});
            let pp = kube::api::PatchParams::default();
            pods.patch(&pod, &pp, &kube::api::Patch::Merge(&patch)).await.unwrap();
        }
    };
    annotate(json!("true")).await;
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    // While the pod runs, the walk holds before the cordon; at its deadline
    // it fails for that node only and the other node updates.
    let failure = wait_for("the walk to give up on the pod", T, || async {
        let st = fleet.shadow(&held).await.and_then(|s| s.status);
        match st.and_then(|s| s.last_failure) {
            Some(f) => Ok(f),
            None => {
                assert!(!fleet.cordoned(&held).await, "the node is cordoned while a do-not-disrupt pod runs");
                Err(fleet.progress().await)
            }
        }
    })
    .await;
    assert_eq!(failure.reason, FailureReason::DoNotDisrupt, "{failure:?}");
    assert!(failure.message.contains(&pod), "{}", failure.message);
    wait_for(&format!("{other} to update"), T, || async {
        let st = fleet.shadow(&other).await.and_then(|s| s.status);
        if st.is_some_and(|s| s.current_state == ShadowState::Idle && s.current_version == "1.21.0") {
            Ok(())
        } else {
            Err(fleet.progress().await)
        }
    })
    .await;
    let p = fleet.policy().await.unwrap().status.unwrap();
    assert_eq!(p.consecutive_failures, 0, "a node-only failure does not halt the rollout: {p:?}");
    assert!(!fleet.cordoned(&held).await);
    // The pod may be disrupted now: the node updates on its next try.
    annotate(serde_json::Value::Null).await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
