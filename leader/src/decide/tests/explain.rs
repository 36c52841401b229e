//! The decision asked why: every managed node granted, next, or held by a named rule.

use super::*;

fn held(why: &Explanation, node: &str) -> Hold {
    why.held.get(node).cloned().unwrap_or_else(|| panic!("{node} is not held: {why:?}"))
}

#[test]
fn the_queue_is_in_serving_order_and_nodes_past_the_free_slots_wait_their_turn() {
    let mut w = World::new(4);
    w.slots(2);
    for (i, n) in ["node-2", "node-0", "node-3", "node-1"].iter().enumerate() {
        w.waiting(n, i64::try_from(i).unwrap());
    }
    let (plan, why) = w.explain(&settings());
    assert_eq!(why.granted, pairs(&[("node-2", "1.21.0"), ("node-0", "1.21.0")]));
    assert_eq!(why.queue, ["node-2", "node-0", "node-3", "node-1"]);
    assert_eq!(held(&why, "node-3"), Hold::NoFreeSlot { position: 3 });
    assert_eq!(held(&why, "node-1"), Hold::NoFreeSlot { position: 4 });
    assert_eq!(plan, w.decide(&settings()), "explaining decides the same");
}

#[test]
fn each_node_rule_is_named() {
    let mut w = World::new(8);
    w.slots(3);
    for i in 0..8 {
        w.waiting(&format!("node-{i}"), i);
    }
    w.nodes.get_mut("node-0").unwrap().ready = false;
    w.nodes.get_mut("node-1").unwrap().opted_out = true;
    w.nodes.get_mut("node-2").unwrap().unschedulable = true;
    w.status("node-3").target_version = "1.20.0".into();
    w.status("node-4").slot_requested_at = None;
    w.granted(0, "node-5", ShadowState::RebootedIntoUpdate);
    w.failed_ungranted("node-6", 1, FailureReason::PrepareFailed);
    w.shadows.remove("node-7");
    let (_, why) = w.explain(&settings());
    assert_eq!(held(&why, "node-0"), Hold::NotReady);
    assert_eq!(held(&why, "node-1"), Hold::OptedOut);
    assert_eq!(held(&why, "node-2"), Hold::AdminCordon);
    assert_eq!(held(&why, "node-3"), Hold::NoNewerVersion);
    assert_eq!(held(&why, "node-4"), Hold::NotAsking);
    assert_eq!(held(&why, "node-5"), Hold::Updating { state: "RebootedIntoUpdate".into() });
    assert_eq!(held(&why, "node-6"), Hold::FailureNotAcknowledged);
    assert_eq!(held(&why, "node-7"), Hold::NotReported);
    assert!(why.granted.is_empty() && why.queue.is_empty(), "{why:?}");
    assert_eq!(held(&why, "node-1").to_string(), "opted out (annotation brupop.bottlerocket.aws/opt-out)");
}

#[test]
fn a_phase_a_backoff_a_release_age_a_canary_and_a_zone_are_named() {
    let mut w = World::new(3);
    w.slots(3);
    for i in 0..3 {
        w.waiting(&format!("node-{i}"), i);
    }
    let paused = Settings { paused: true, ..settings() };
    let (_, why) = w.explain(&paused);
    assert_eq!(held(&why, "node-0"), Hold::Phase { phase: "Paused".into() });
    // Backed off; the release age.
    w.policy.node_backoffs.push(model::policy::NodeBackoff {
        node: "node-0".into(),
        shadow_uid: "uid-node-0".into(),
        until: Time(at(2000)),
        offences: 1,
    });
    let young = Settings { min_release_age: Some(Duration::from_secs(3600)), ..settings() };
    let (_, why) = w.explain(&young);
    assert_eq!(held(&why, "node-0"), Hold::BackedOff { until: at(2000) });
    assert_eq!(held(&why, "node-1"), Hold::TooYoung { version: "1.21.0".into(), until: Some(at(4600)) });
    // A canary of one: the others wait for it.
    w.policy.node_backoffs.clear();
    let canary = Settings {
        canary: Some(CanarySettings { nodes: Budget::Count(1), soak: Duration::from_secs(60), skip_soak: None }),
        ..settings()
    };
    let (_, why) = w.explain(&canary);
    assert_eq!(why.granted, pairs(&[("node-0", "1.21.0")]));
    assert_eq!(held(&why, "node-1"), Hold::Canary { version: "1.21.0".into(), state: "Updating".into(), until: None });
    // One per zone, all in one zone.
    for n in ["node-0", "node-1", "node-2"] {
        w.nodes.get_mut(n).unwrap().labels.insert(model::names::ZONE_LABEL.into(), "a".into());
    }
    let zoned = Settings {
        zones: Some(ZoneLimit {
            topology_key: model::names::ZONE_LABEL.into(),
            per_zone: Some(Budget::Count(1)),
            one_zone_at_a_time: false,
            zone_order: Vec::new(),
        }),
        ..settings()
    };
    let (_, why) = w.explain(&zoned);
    assert_eq!(held(&why, "node-2"), Hold::Zone { zone: "a".into() });
}
