//! A rollout that goes right.

use model::ShadowState;
use tests::harness::{Fleet, FleetOptions, metric};

use super::{T, total};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_updates_end_to_end() {
    let fleet = Fleet::start("one-node-update", FleetOptions { nodes: 1, ..Default::default() }).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let node = &fleet.nodes[0];
    assert!(!fleet.cordoned(node).await, "the node is uncordoned after its update");
    assert_eq!(fleet.hosts.host(node).unwrap().os_version(), "1.21.0");
    let m = fleet.leader_metrics(0).await;
    assert_eq!(metric(&m, "brupop_update_started_total"), Some(1.0), "{m}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path() {
    let fleet = Fleet::start("happy-path", FleetOptions { nodes: 9, slots: 3, ..Default::default() }).await.unwrap();
    fleet.wait_reported(T).await;
    let idle_agent_kib =
        fleet.peak_rss.lock().unwrap().iter().filter(|(k, _)| k.starts_with("agent-")).map(|(_, v)| *v).max();
    let started = std::time::Instant::now();
    fleet.hosts.publish("1.21.0");
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    for n in &fleet.nodes {
        assert!(!fleet.cordoned(n).await, "{n} uncordoned");
    }
    let m = fleet.leader_metrics(0).await;
    assert_eq!(metric(&m, "brupop_update_started_total"), Some(9.0), "{m}");
    assert_eq!(total(&m, "brupop_update_failures_total"), 0.0, "{m}");
    let peaks = fleet.monitor.peaks();
    assert!(peaks.held <= 3 && peaks.disrupted <= 3, "{peaks:?}");
    assert!(peaks.held >= 2, "slots were used concurrently: {peaks:?}");
    // Figures for the record (not gates): wall time and peak memory.
    let rss = fleet.peak_rss.lock().unwrap().clone();
    let agent_peak = rss.iter().filter(|(k, _)| k.starts_with("agent-")).map(|(_, v)| *v).max();
    eprintln!(
        "happy_path figures: 9 nodes / 3 slots rolled out in {:.1}s; peak RSS KiB: leader {:?}, authproxy {:?}, agent idle {:?}, agent updating {:?}",
        started.elapsed().as_secs_f64(),
        rss.get("leader-0"),
        rss.get("authproxy"),
        idle_agent_kib,
        agent_peak
    );
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cordon_is_kept() {
    let fleet = Fleet::start("admin-cordon", FleetOptions { nodes: 3, ..Default::default() }).await.unwrap();
    let admin_cordoned = fleet.nodes[0].clone();
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(fleet.client().clone());
    nodes
        .patch(
            &admin_cordoned,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&serde_json::json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    fleet.patch_policy(serde_json::json!({"updateCordonedNodes": true})).await;
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    assert!(fleet.cordoned(&admin_cordoned).await, "the administrator's cordon is kept");
    let annotations = fleet.node(&admin_cordoned).await.unwrap().metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key(model::names::CORDONED_ANNOTATION), "never taken over: {annotations:?}");
    for n in &fleet.nodes[1..] {
        assert!(!fleet.cordoned(n).await, "{n} uncordoned");
    }
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
