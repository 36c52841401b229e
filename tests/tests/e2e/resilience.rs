//! Things that break while a rollout runs: agents die, the network splits,
//! a leader or the authproxy restarts, a node disappears.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use model::policy::Phase;
use model::{FailureReason, ShadowState};
use tests::harness::{Fleet, FleetOptions, metric, wait_for};
use tests::hostsim::RebootMode;

use super::{T, failure_of, total};

/// Waits until some node is cordoned by the operator; returns it.
async fn cordoned_node(fleet: &Fleet) -> String {
    wait_for("a node to be cordoned for its update", T, || async {
        for n in &fleet.nodes {
            let node = fleet.node(n).await;
            let ours = node
                .as_ref()
                .and_then(|n| n.metadata.annotations.as_ref())
                .is_some_and(|a| a.contains_key(model::names::CORDONED_ANNOTATION));
            if ours {
                return Ok(n.clone());
            }
        }
        Err(fleet.progress().await)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_drain() {
    let fleet = Fleet::start(
        "killed-mid-drain",
        FleetOptions { nodes: 2, pod_termination: Duration::from_secs(2), pods_per_node: 3, ..Default::default() },
    )
    .await
    .unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    let node = cordoned_node(&fleet).await;
    // The first drain round has evicted pods that are still terminating.
    wait_for("evicted pods terminating on the node", T, || async {
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(fleet.client().clone(), &fleet.ns);
        let list = pods
            .list(&kube::api::ListParams::default().labels(&format!("node={node}")))
            .await
            .map_err(|e| e.to_string())?;
        if list.items.iter().any(|p| p.metadata.deletion_timestamp.is_some()) {
            Ok(())
        } else {
            Err(format!("{} pods, none terminating", list.items.len()))
        }
    })
    .await;
    fleet.kill_agent(&node);
    assert!(fleet.cordoned(&node).await, "still cordoned while its agent is down");
    fleet.start_agent(&node);
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    assert!(!fleet.cordoned(&node).await);
    let m = fleet.leader_metrics(0).await;
    assert_eq!(total(&m, "brupop_update_failures_total"), 0.0, "{m}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_after_reboot_request() {
    let fleet = Fleet::start(
        "killed-after-reboot",
        FleetOptions { nodes: 2, reboot_mode: RebootMode::Manual, ..Default::default() },
    )
    .await
    .unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    // The agent asks for the reboot; the host goes down (the kubelet kills the agent) and stays down.
    let node = wait_for("a host to go down for its reboot", T, || async {
        for h in fleet.hosts.hosts() {
            if h.power().borrow().reboots_requested > 0 {
                return Ok(h.name().to_owned());
            }
        }
        Err(fleet.progress().await)
    })
    .await;
    wait_for("the agent to be killed by the reboot", T, || async {
        if fleet.agent(&node, |p| p.is_running()) == Some(false) { Ok(()) } else { Err("agent still running".into()) }
    })
    .await;
    let before = fleet.shadow(&node).await.unwrap().status.unwrap();
    assert_eq!(before.current_state, ShadowState::StagedAndPerformedUpdate, "the walk stopped at the reboot");
    // The host comes back; the DaemonSet (the harness) restarts the agent, which resumes.
    fleet.hosts.host(&node).unwrap().boot().unwrap();
    let host = fleet.hosts.host(&node).unwrap();
    wait_for("the other hosts to be booted as they go down", T, || async {
        for h in fleet.hosts.hosts() {
            let _ = h.boot();
        }
        let shadows = fleet.shadows().await;
        let done = shadows.iter().all(|s| {
            s.status.as_ref().is_some_and(|s| s.current_version == "1.21.0" && s.current_state == ShadowState::Idle)
        });
        if done { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    assert_eq!(host.os_version(), "1.21.0");
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_reclaims() {
    let fleet = Fleet::start(
        "lease-expiry",
        FleetOptions { nodes: 2, pod_termination: Duration::from_secs(3), ..Default::default() },
    )
    .await
    .unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    let node = cordoned_node(&fleet).await;
    fleet.kill_agent(&node); // stopped for good (no reboot will restart it)
    // The slot expires, is reclaimed, counted, and the leader lifts our cordon.
    let p = wait_for("the expired slot to be counted", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if p.recent_failures.iter().any(|f| f.reason == FailureReason::SlotExpired && f.node == node) {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    })
    .await;
    assert!(matches!(p.phase, Phase::Halted | Phase::Running), "{p:?}");
    wait_for("the reclaimed node to be uncordoned", T, || async {
        if fleet.cordoned(&node).await { Err(fleet.progress().await) } else { Ok(()) }
    })
    .await;
    let held: Vec<_> = fleet.slots().await.into_iter().filter(|(_, h)| h.as_deref() == Some(node.as_str())).collect();
    assert!(held.is_empty(), "the slot was reclaimed: {held:?}");
    let m = fleet.leader_metrics(0).await;
    assert_eq!(metric(&m, "brupop_update_failures_total{reason=\"SlotExpired\"}"), Some(1.0), "{m}");
    assert_eq!(fleet.hosts.host(&node).unwrap().os_version(), "1.20.0", "never rebooted without its slot");
    // When its agent comes back it finds the slot gone, undoes the rest, and later updates.
    fleet.start_agent(&node);
    wait_for("the returning agent to report SlotLost", T, || async {
        if failure_of(&fleet, &node).await == Some(FailureReason::SlotLost) {
            Ok(())
        } else {
            Err(fleet.progress().await)
        }
    })
    .await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_agent_fences_itself() {
    let fleet = Fleet::start(
        "partitioned",
        FleetOptions { nodes: 2, pod_termination: Duration::from_secs(3), ..Default::default() },
    )
    .await
    .unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    let node = cordoned_node(&fleet).await;
    fleet.cut(&node);
    // Cut off, it cannot renew: its slot expires and is reclaimed. It must not reboot.
    wait_for("the cut-off node's slot to be reclaimed", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if p.recent_failures.iter().any(|f| f.reason == FailureReason::SlotExpired && f.node == node) {
            Ok(())
        } else {
            Err(fleet.progress().await)
        }
    })
    .await;
    let host = fleet.hosts.host(&node).unwrap();
    assert_eq!(host.power().borrow().reboots_requested, 0, "a partitioned node never reboots");
    fleet.restore(&node);
    wait_for("the agent to abort with SlotLost once the network is back", T, || async {
        if failure_of(&fleet, &node).await == Some(FailureReason::SlotLost) {
            Ok(())
        } else {
            Err(fleet.progress().await)
        }
    })
    .await;
    assert_eq!(host.power().borrow().reboots_requested, 0, "a partitioned node never reboots");
    assert!(!fleet.cordoned(&node).await, "uncordoned");
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover() {
    let fleet = Fleet::start("leader-failover", FleetOptions { nodes: 6, slots: 2, leaders: 2, ..Default::default() })
        .await
        .unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    wait_for("two nodes updated", T, || async {
        let n = fleet
            .shadows()
            .await
            .iter()
            .filter(|s| s.status.as_ref().is_some_and(|s| s.current_version == "1.21.0"))
            .count();
        if n >= 2 { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(fleet.client().clone(), &fleet.ns);
    let holder = leases.get(model::names::LEADER_LEASE_NAME).await.unwrap().spec.unwrap().holder_identity.unwrap();
    let active: usize = holder.trim_start_matches("leader-").parse().unwrap();
    fleet.kill_leader(active);
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let new_holder = leases.get(model::names::LEADER_LEASE_NAME).await.unwrap().spec.unwrap().holder_identity.unwrap();
    assert_ne!(new_holder, holder, "the standby took over");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authproxy_restart() {
    let fleet =
        Fleet::start("authproxy-restart", FleetOptions { nodes: 4, slots: 2, ..Default::default() }).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    let _ = cordoned_node(&fleet).await;
    fleet.restart_authproxy();
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let m = fleet.leader_metrics(0).await;
    assert_eq!(total(&m, "brupop_update_failures_total"), 0.0, "nothing lost: {m}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_deleted_mid_update() {
    let fleet = Fleet::start(
        "node-deleted",
        FleetOptions { nodes: 3, pod_termination: Duration::from_secs(3), ..Default::default() },
    )
    .await
    .unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    let node = cordoned_node(&fleet).await;
    fleet.delete_node(&node).await;
    wait_for("the deleted node's shadow and slot to be cleaned up", T, || async {
        let shadow = fleet.shadow(&node).await;
        let held = fleet.slots().await.iter().any(|(_, h)| h.as_deref() == Some(node.as_str()));
        if shadow.is_none() && !held { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    wait_for("the other nodes to update", T, || async {
        let shadows = fleet.shadows().await;
        let done = shadows.len() == 2
            && shadows.iter().all(|s| {
                s.status.as_ref().is_some_and(|s| s.current_version == "1.21.0" && s.current_state == ShadowState::Idle)
            });
        if done { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    let m = fleet.leader_metrics(0).await;
    assert_eq!(total(&m, "brupop_update_failures_total"), 0.0, "a deleted node is not a failure: {m}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

/// Sets (`Some`) or removes (`None`) a node's opt-in label, as a person does
/// with `kubectl label node`.
async fn opt_in_label(fleet: &Fleet, node: &str, value: Option<&str>) {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(fleet.client().clone());
    let patch = serde_json::json!({"metadata": {"labels": {model::names::NODE_OPT_IN_LABEL: value}}});
    nodes
        .patch(node, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .expect("labelling the node");
}

/// Removing a node's opt-in label, as with the original operator, takes it
/// out without leaving anything half-done: an idle node's shadow is
/// deleted, and an agent still running there cannot bring it back; a node
/// mid-walk whose agent went (the DaemonSet removes it) keeps its shadow
/// until its slot expires, is reclaimed with its cordon lifted and nothing
/// counted, then loses its shadow; the rollout goes on; labelled again, a
/// node is managed again and updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_opt_in_label_unmanages_a_node_without_leaving_it_half_done() {
    let fleet = Fleet::start(
        "unlabel",
        FleetOptions { nodes: 3, pod_termination: Duration::from_secs(3), ..Default::default() },
    )
    .await
    .unwrap();
    fleet.wait_reported(T).await;
    // An idle node leaves: its shadow goes.
    let idle = fleet.nodes[2].clone();
    opt_in_label(&fleet, &idle, None).await;
    wait_for("the idle node's shadow to be deleted", T, || async {
        if fleet.shadow(&idle).await.is_none() { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    // Its agent (still running: the DaemonSet has not removed it yet) is
    // refused a new shadow, and says why.
    let log = fleet.agent(&idle, |p| p.log_path().to_owned()).unwrap();
    wait_for("the idle node's agent to be refused a new shadow", T, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("NotManaged") { Ok(()) } else { Err(format!("agent log:\n{text}")) }
    })
    .await;
    assert!(fleet.shadow(&idle).await.is_none(), "an unmanaged node's agent cannot bring its shadow back");
    fleet.kill_agent(&idle);
    // A node mid-walk leaves, and its agent goes.
    fleet.hosts.publish("1.21.0");
    let walking = cordoned_node(&fleet).await;
    opt_in_label(&fleet, &walking, None).await;
    fleet.kill_agent(&walking);
    wait_for("the left node's slot reclaimed, its cordon lifted and its shadow deleted", T, || async {
        let held = fleet.slots().await.iter().any(|(_, h)| h.as_deref() == Some(walking.as_str()));
        let cordoned = fleet.cordoned(&walking).await;
        let shadow = fleet.shadow(&walking).await.is_some();
        if !held && !cordoned && !shadow {
            Ok(())
        } else {
            Err(format!("held {held}, cordoned {cordoned}, shadow {shadow}; {}", fleet.progress().await))
        }
    })
    .await;
    // The remaining managed node updates: nothing failed, nothing halted.
    let other = fleet.nodes.iter().find(|n| **n != idle && **n != walking).unwrap().clone();
    wait_for("the managed node to update", T, || async {
        let s = fleet.shadow(&other).await.and_then(|s| s.status);
        if s.as_ref().is_some_and(|s| s.current_version == "1.21.0" && s.current_state == ShadowState::Idle) {
            Ok(())
        } else {
            Err(fleet.progress().await)
        }
    })
    .await;
    let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
    assert_eq!((p.consecutive_failures, p.phase), (0, Phase::Running), "{p:?}");
    assert!(p.recent_failures.is_empty(), "leaving the selector is not a failure: {:?}", p.recent_failures);
    let m = fleet.leader_metrics(0).await;
    assert_eq!(total(&m, "brupop_update_failures_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "brupop_unmanaged_shadows_removed_total"), Some(2.0), "{m}");
    // Labelled again, with its agent back: managed again, and it updates.
    opt_in_label(&fleet, &idle, Some(model::names::NODE_OPT_IN_VALUE)).await;
    fleet.start_agent(&idle);
    wait_for("the labelled node to update", T, || async {
        let s = fleet.shadow(&idle).await.and_then(|s| s.status);
        if s.as_ref().is_some_and(|s| s.current_version == "1.21.0" && s.current_state == ShadowState::Idle) {
            Ok(())
        } else {
            Err(fleet.progress().await)
        }
    })
    .await;
    assert!(!fleet.cordoned(&walking).await, "the node that left mid-walk is not cordoned by us");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
