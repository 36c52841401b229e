//! What operators do while a rollout runs: pause, resume, change the slots,
//! black out a period, limit zones.

use model::ShadowState;
use model::policy::Phase;
use tests::harness::{Fleet, FleetOptions, wait_for};

use super::T;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume() {
    let fleet = Fleet::start("pause-resume", FleetOptions { nodes: 4, slots: 2, ..Default::default() }).await.unwrap();
    fleet.patch_policy(serde_json::json!({"paused": true})).await;
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    let p = wait_for("every node waiting while paused", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if p.phase == Phase::Paused && p.nodes_waiting == 4 {
            Ok(p)
        } else {
            Err(format!("{p:?} | {}", fleet.progress().await))
        }
    })
    .await;
    assert_eq!(p.slots_held, 0, "nothing granted while paused");
    assert!(p.message.contains("paused"), "{}", p.message);
    fleet.patch_policy(serde_json::json!({"paused": false})).await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_slots_live() {
    let fleet = Fleet::start("change-slots", FleetOptions { nodes: 6, slots: 1, ..Default::default() }).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    wait_for("the first node updated with one slot", T, || async {
        let n = fleet
            .shadows()
            .await
            .iter()
            .filter(|s| s.status.as_ref().is_some_and(|s| s.current_version == "1.21.0"))
            .count();
        if n >= 1 { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    assert_eq!(fleet.monitor.peaks().held, 1);
    fleet.monitor.allow_slots(4);
    fleet.patch_policy(serde_json::json!({"maxConcurrentUpdates": 4})).await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    let p = fleet.policy().await.unwrap().status.unwrap();
    assert_eq!(p.slots, 4);
    assert!(fleet.monitor.peaks().held > 1, "more slots were used after the change: {:?}", fleet.monitor.peaks());
    // And back down to a percentage: surplus slots are removed once free.
    fleet.patch_policy(serde_json::json!({"maxConcurrentUpdates": "40%"})).await;
    wait_for("the pool to shrink to 2 slots", T, || async {
        let slots = fleet.slots().await;
        if slots.len() == 2 { Ok(()) } else { Err(format!("{slots:?}")) }
    })
    .await;
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackout_starting_mid_rollout_lets_walking_nodes_finish_and_grants_nothing_new() {
    let fleet = Fleet::start("blackout", FleetOptions { nodes: 3, slots: 1, ..Default::default() }).await.unwrap();
    fleet.wait_reported(T).await;
    fleet.hosts.publish("1.21.0");
    let walking = wait_for("a node to be granted", T, || async {
        let shadows = fleet.shadows().await;
        match shadows.iter().find(|s| s.spec.slot.is_some()).and_then(|s| s.node_name()) {
            Some(n) => Ok(n.to_owned()),
            None => Err(fleet.progress().await),
        }
    })
    .await;
    // A blackout from a minute ago to an hour from now (UTC, to the minute).
    let now = jiff::Timestamp::now();
    let fmt = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M").to_string();
    let from = fmt(now - jiff::SignedDuration::from_mins(1));
    let to = fmt(now + jiff::SignedDuration::from_hours(1));
    fleet.patch_policy(serde_json::json!({"updateExclusions": [format!("{from} {to} UTC")]})).await;
    // The walking node finishes; its slot stays free while two nodes wait.
    let p = wait_for("the walking node to finish and nothing new to be granted", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        let done = fleet
            .shadow(&walking)
            .await
            .and_then(|s| s.status)
            .is_some_and(|s| s.current_state == ShadowState::Idle && s.current_version == "1.21.0");
        if done && p.phase == Phase::OutsideWindow && p.slots_held == 0 && p.nodes_waiting == 2 {
            Ok(p)
        } else {
            Err(format!("{p:?} | {}", fleet.progress().await))
        }
    })
    .await;
    assert!(p.message.contains("in a blackout (spec.updateExclusions) until"), "{}", p.message);
    let updated = fleet
        .shadows()
        .await
        .iter()
        .filter(|s| s.status.as_ref().is_some_and(|st| st.current_version == "1.21.0"))
        .count();
    assert_eq!(updated, 1, "only the node granted before the blackout updated: {}", fleet.progress().await);
    // The blackout is lifted: the rollout goes on.
    fleet.patch_policy(serde_json::json!({"updateExclusions": null})).await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    fleet.monitor.assert_clean();
    fleet.stop().await;
}

/// Six nodes in three zones (the harness puts node i in `zone-<i % 3>`),
/// three slots, at most one node per zone, one zone at a time with zone-2
/// first: never two zones disrupted at once, never two nodes of a zone, and
/// the leader grants zone-2, then zone-0 and zone-1 by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_zone_at_a_time_updates_the_zones_in_order_one_node_each() {
    let fleet = Fleet::start("zones", FleetOptions { nodes: 6, slots: 3, ..Default::default() }).await.unwrap();
    fleet
        .patch_policy(serde_json::json!({
            "maxUnavailablePerZone": 1, "oneZoneAtATime": true, "zoneOrder": ["zone-2"], "paused": true
        }))
        .await;
    fleet.wait_reported(T).await;
    fleet.monitor.limit_zones(1, true);
    fleet.hosts.publish("1.21.0");
    // Every node asks before the first grant, so the order is the zones'
    // (the first zone with a node waiting goes first).
    wait_for("all six nodes to wait", T, || async {
        let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
        if p.nodes_waiting == 6 { Ok(()) } else { Err(format!("{p:?}")) }
    })
    .await;
    fleet.patch_policy(serde_json::json!({"paused": false})).await;
    fleet.wait_all(ShadowState::Idle, "1.21.0", T).await;
    fleet.monitor.assert_clean();
    // The zones in the order the leader granted them (node i is in zone i % 3).
    let mut granted: Vec<String> = Vec::new();
    for (node, _) in fleet.monitor.grant_log() {
        let i: usize = node.rsplit('-').next().and_then(|i| i.parse().ok()).unwrap();
        let zone = format!("zone-{}", i % 3);
        if granted.last() != Some(&zone) {
            granted.push(zone);
        }
    }
    assert_eq!(granted, ["zone-2", "zone-0", "zone-1"], "{:?}", fleet.monitor.grant_log());
    let p = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
    assert_eq!((p.phase, p.nodes_waiting), (Phase::Running, 0), "{p:?}");
    fleet.monitor.assert_clean();
    fleet.stop().await;
}
