//! Reboot hooks: marks the walk puts on its Node for another system (here
//! the test plays a storage system), the confirmation it waits for, and
//! what happens when the confirmation never comes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use model::{FailureReason, ShadowState};
use serde_json::json;
use tests::harness::{Fleet, FleetOptions, TEST_LEASE, wait_for};

use super::{T, failure_of};

const MAINTENANCE: &str = "storage.example.com/maintenance";
const REBOOTED: &str = "storage.example.com/rebooted";
const NOOUT: &str = "storage.example.com/noout";

/// Hooks before the drain (a label, then a wait for `noout=set`) and after
/// the reboot (a label), the wait at most `timeout` leases.
async fn set_hooks(fleet: &Fleet, timeout: f64) {
    let timeout = format!("{}ms", TEST_LEASE.mul_f64(timeout).as_millis());
    fleet
        .patch_policy(json!({"hooks": {
            "beforeDrain": {"labels": {MAINTENANCE: "true"}, "waitForAnnotation": NOOUT, "waitForValue": "set", "timeout": timeout},
            "afterReboot": {"labels": {REBOOTED: "true"}},
        }}))
        .await;
}

async fn labels(fleet: &Fleet, node: &str) -> BTreeMap<String, String> {
    fleet.node(node).await.and_then(|n| n.metadata.labels).unwrap_or_default()
}

async fn annotations(fleet: &Fleet, node: &str) -> BTreeMap<String, String> {
    fleet.node(node).await.and_then(|n| n.metadata.annotations).unwrap_or_default()
}

/// The reasons of the Events recorded on `node`.
async fn node_events(fleet: &Fleet, node: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(fleet.client().clone(), "default");
    let list = events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(node))
        .filter_map(|e| e.reason)
        .collect()
}

/// Waits until the walk set the before-drain mark and waits, uncordoned.
async fn wait_for_the_mark(fleet: &Fleet, node: &str) {
    wait_for("the before-drain hook to set its mark", T, || async {
        if labels(fleet, node).await.get(MAINTENANCE).map(String::as_str) == Some("true") {
            Ok(())
        } else {
            Err(fleet.progress().await)
        }
    })
    .await;
    assert!(!fleet.cordoned(node).await, "the hook runs before the cordon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_before_drain_hook_waits_for_its_confirmation_then_the_walk_goes_on() {
    let fleet = Fleet::start("hook-answered", FleetOptions { nodes: 1, ..Default::default() }).await.unwrap();
    let node = fleet.nodes[0].clone();
    // A confirmation left from an earlier walk must not count.
    let nodes: Api<Node> = Api::all(fleet.client().clone());
    let annotate = |value: serde_json::Value| {
        let (nodes, node) = (nodes.clone(), node.clone());
        async move {
            let patch = json!({"metadata": {"annotations": {NOOUT: value}}});
            nodes.patch(&node, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        }
    };
    annotate(json!("set")).await;
    set_hooks(&fleet, 5.0).await;
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    wait_for_the_mark(&fleet, &node).await;
    assert!(!annotations(&fleet, &node).await.contains_key(NOOUT), "the stale confirmation was removed");
    // The storage system confirms; the walk goes on and finishes.
    annotate(json!("set")).await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    assert_eq!(failure_of(&fleet, &node).await, None);
    // Both hooks ran; the marks are gone, the storage system's own annotation stays.
    let events = node_events(&fleet, &node).await;
    assert_eq!(events.iter().filter(|r| *r == "HookStarted").count(), 2, "{events:?}");
    let l = labels(&fleet, &node).await;
    assert!(!l.contains_key(MAINTENANCE) && !l.contains_key(REBOOTED), "{l:?}");
    let a = annotations(&fleet, &node).await;
    assert!(!a.contains_key(model::names::HOOKS_ANNOTATION), "{a:?}");
    assert_eq!(a.get(NOOUT).map(String::as_str), Some("set"));
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_whose_confirmation_never_comes_fails_the_walk_for_that_node_only() {
    let fleet = Fleet::start("hook-timeout", FleetOptions { nodes: 1, ..Default::default() }).await.unwrap();
    let node = fleet.nodes[0].clone();
    set_hooks(&fleet, 2.0).await;
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    wait_for_the_mark(&fleet, &node).await;
    let failure = wait_for("the hook to time out", T, || async {
        match fleet.shadow(&node).await.and_then(|s| s.status).and_then(|s| s.last_failure) {
            Some(f) => Ok(f),
            None => Err(fleet.progress().await),
        }
    })
    .await;
    assert_eq!(failure.reason, FailureReason::HookTimeout, "{failure:?}");
    assert!(failure.message.contains(NOOUT), "{}", failure.message);
    // Undone: the marks are removed, the node was never cordoned, the rollout is not halted.
    wait_for("the marks to be removed", T, || async {
        let l = labels(&fleet, &node).await;
        let a = annotations(&fleet, &node).await;
        if l.contains_key(MAINTENANCE) || a.contains_key(model::names::HOOKS_ANNOTATION) {
            Err(format!("{l:?} {a:?}"))
        } else {
            Ok(())
        }
    })
    .await;
    assert!(!fleet.cordoned(&node).await);
    let p = fleet.policy().await.unwrap().status.unwrap();
    assert_eq!(p.consecutive_failures, 0, "{p:?}");
    assert_eq!(fleet.shadow(&node).await.unwrap().status.unwrap().current_version, "1.20.0");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
