//! The canary of each new version: its nodes first, then its soak, then the rest.

use model::policy::{CanaryState, CanaryStatus};

use super::*;

const SOAK: Duration = Duration::from_secs(600);

fn canary(nodes: Budget) -> Settings {
    Settings {
        budget: Budget::Count(3),
        max_consecutive_failures: 10,
        canary: Some(CanarySettings { nodes, soak: SOAK, skip_soak: None }),
        ..settings()
    }
}

/// `n` nodes, all waiting for 1.21.0 in index order, with 3 slots.
fn world(n: usize) -> World {
    let mut w = World::new(n);
    w.slots(3);
    for i in 0..n {
        w.waiting(&format!("node-{i}"), i64::try_from(i).unwrap());
    }
    w
}

fn granted(plan: &Plan) -> Vec<String> {
    granted_nodes(plan).into_iter().map(|(_, n)| n).collect()
}

/// `node` finished its walk: on 1.21.0, idle, not waiting.
fn updated(w: &mut World, node: &str) {
    let st = w.status(node);
    st.current_version = "1.21.0".into();
    st.slot_requested_at = None;
}

fn record(plan: &Plan) -> &CanaryStatus {
    plan.status.canaries.iter().find(|c| c.version == "1.21.0").expect("a canary for 1.21.0")
}

#[test]
fn only_the_canary_nodes_get_a_new_version_first() {
    let w = world(5);
    let plan = w.decide(&canary(Budget::Count(2)));
    assert_eq!(granted(&plan), ["node-0", "node-1"], "3 slots free, 2 canaries");
    let c = record(&plan);
    assert_eq!((c.state, c.needed, c.passed), (CanaryState::Updating, 2, 0));
    assert_eq!(c.nodes, ["node-0", "node-1"]);
    assert!(plan.status.message.contains("canary of 1.21.0: 0 of 2 passed"), "{}", plan.status.message);
    assert_eq!(plan.status.nodes_waiting, 3, "the nodes the canary holds back still wait");
}

#[test]
fn the_canary_waits_for_its_walks_then_soaks_then_the_rest_follow() {
    let mut w = world(5);
    let s = canary(Budget::Count(2));
    w.policy = w.decide(&s).status;
    // node-0 is through, node-1 still walking: nothing new, not soaking yet.
    updated(&mut w, "node-0");
    w.granted(0, "node-1", ShadowState::StagedAndPerformedUpdate);
    let plan = w.decide(&s);
    assert!(granted(&plan).is_empty());
    assert_eq!((record(&plan).state, record(&plan).passed), (CanaryState::Updating, 1));
    // Both through: the soak starts; no grant of 1.21.0 until it ends.
    w.policy = plan.status;
    w.slots[0].holder = None;
    w.policy.grants = Some(Vec::new());
    updated(&mut w, "node-1");
    let plan = w.decide(&s);
    assert!(granted(&plan).is_empty(), "{:?}", plan.actions);
    let c = record(&plan);
    let until = add(w.now, SOAK);
    assert_eq!((c.state, c.soak_until.as_ref().map(|t| t.0)), (CanaryState::Soaking, Some(until)));
    assert!(c.message.contains("node-0, node-1"), "{}", c.message);
    assert_eq!(plan.wake_at, Some(until), "the leader wakes when the soak ends");
    assert!(plan.status.message.contains("soaking until"), "{}", plan.status.message);
    // Just before its end: still nothing. At its end: the rest, three at a time.
    w.policy = plan.status;
    w.now = add(w.now, SOAK - Duration::from_secs(1));
    assert!(granted(&w.decide(&s)).is_empty());
    w.now = until;
    let plan = w.decide(&s);
    assert_eq!(record(&plan).state, CanaryState::Passed);
    assert_eq!(granted(&plan), ["node-2", "node-3", "node-4"]);
}

#[test]
fn without_a_soak_the_rest_follow_once_the_canaries_passed() {
    let mut w = world(4);
    let s = Settings {
        canary: Some(CanarySettings { soak: Duration::ZERO, ..canary(Budget::Count(1)).canary.unwrap() }),
        ..canary(Budget::Count(1))
    };
    w.policy = w.decide(&s).status;
    updated(&mut w, "node-0");
    let plan = w.decide(&s);
    assert_eq!(record(&plan).state, CanaryState::Passed);
    assert_eq!(granted(&plan), ["node-1", "node-2", "node-3"]);
}

#[test]
fn nodes_already_on_the_version_count_as_canaries_passed() {
    // Two already on it, two needed: the canary opens passed.
    let mut w = world(6);
    for n in ["node-0", "node-1"] {
        updated(&mut w, n);
    }
    let plan = w.decide(&canary(Budget::Count(2)));
    assert_eq!(record(&plan).state, CanaryState::Passed);
    assert_eq!(granted(&plan), ["node-2", "node-3", "node-4"]);
    // One already on it, two needed: one more canary.
    let mut w = world(6);
    updated(&mut w, "node-0");
    let plan = w.decide(&canary(Budget::Count(2)));
    assert_eq!((record(&plan).state, record(&plan).passed), (CanaryState::Updating, 1));
    assert_eq!(granted(&plan), ["node-1"]);
}

#[test]
fn a_percentage_is_of_the_managed_nodes_rounded_down_at_least_one() {
    let w = world(10);
    assert_eq!(granted(&w.decide(&canary(Budget::Percent(25)))), ["node-0", "node-1"]);
    assert_eq!(granted(&w.decide(&canary(Budget::Percent(3)))), ["node-0"]);
    // Never more canaries than managed nodes.
    let w = world(2);
    assert_eq!(record(&w.decide(&canary(Budget::Count(50)))).needed, 2);
}

#[test]
fn a_canary_failure_stops_the_rollout_naming_the_version_until_a_resume() {
    let mut w = world(4);
    let s = canary(Budget::Count(1));
    w.policy = w.decide(&s).status;
    w.granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    w.failed("node-0", 1, FailureReason::PrepareFailed);
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::Stopped, "stopped at the first failure although 10 are allowed");
    assert_eq!(plan.status.consecutive_failures, 1);
    assert!(
        plan.status.message.contains("canary of 1.21.0 failed on node-0")
            && plan.status.message.contains("resumeRequest"),
        "{}",
        plan.status.message
    );
    assert_eq!(record(&plan).state, CanaryState::Failed);
    assert!(granted(&plan).is_empty());
    // Long after the halt would have ended: still stopped.
    w.policy = plan.status;
    w.slots[0].holder = None;
    w.policy.grants = Some(Vec::new());
    w.spec("node-0").acknowledged_failure = Some(1);
    w.status("node-0").current_state = ShadowState::Idle;
    w.now = add(w.now, Duration::from_secs(86_400));
    let plan = w.decide(&s);
    assert_eq!(plan.status.phase, Phase::Stopped);
    assert!(granted(&plan).is_empty());
    // A resume tries the canary again: one node first.
    w.policy = plan.status;
    let resumed = Settings { resume_request: Some("now".into()), ..s };
    let plan = w.decide(&resumed);
    assert_eq!(plan.status.phase, Phase::Running, "{}", plan.status.message);
    assert_eq!((record(&plan).state, granted(&plan).len()), (CanaryState::Updating, 1), "{:?}", plan.actions);
}

#[test]
fn a_failure_after_the_canary_passed_only_halts() {
    let mut w = world(4);
    updated(&mut w, "node-3");
    let s = canary(Budget::Count(1));
    w.policy = w.decide(&s).status;
    assert_eq!(w.policy.canaries[0].state, CanaryState::Passed);
    w.granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    w.failed("node-0", 1, FailureReason::PrepareFailed);
    let plan = w.decide(&s);
    assert_eq!((plan.status.phase, record(&plan).state), (Phase::Halted, CanaryState::Passed));
}

#[test]
fn skip_soak_ends_the_soak_of_the_version_it_names_only() {
    let mut w = world(4);
    w.policy.canaries.push(CanaryStatus {
        version: "1.21.0".into(),
        state: CanaryState::Soaking,
        needed: 1,
        passed: 1,
        nodes: vec!["node-3".into()],
        soak_until: Some(Time(add(w.now, SOAK))),
        since: Time(w.now),
        message: String::new(),
    });
    updated(&mut w, "node-3");
    let other = Settings {
        canary: Some(CanarySettings { skip_soak: Some("1.22.0".into()), ..canary(Budget::Count(1)).canary.unwrap() }),
        ..canary(Budget::Count(1))
    };
    assert!(granted(&w.decide(&other)).is_empty());
    let skip = Settings {
        canary: Some(CanarySettings { skip_soak: Some("1.21.0".into()), ..canary(Budget::Count(1)).canary.unwrap() }),
        ..canary(Budget::Count(1))
    };
    let plan = w.decide(&skip);
    assert_eq!(record(&plan).state, CanaryState::Passed);
    assert!(record(&plan).message.contains("skipSoak"), "{}", record(&plan).message);
    assert_eq!(granted(&plan), ["node-0", "node-1", "node-2"]);
}

#[test]
fn another_version_is_not_held_by_a_soaking_one() {
    let mut w = world(4);
    w.policy.canaries.push(CanaryStatus {
        version: "1.21.0".into(),
        state: CanaryState::Soaking,
        needed: 1,
        passed: 1,
        nodes: Vec::new(),
        soak_until: Some(Time(add(w.now, SOAK))),
        since: Time(w.now),
        message: String::new(),
    });
    w.status("node-2").target_version = "1.22.0".into();
    let plan = w.decide(&canary(Budget::Count(1)));
    assert_eq!(granted(&plan), ["node-2"], "1.22.0 opens its own canary");
    let c = plan.status.canaries.iter().find(|c| c.version == "1.22.0").unwrap();
    assert_eq!(c.state, CanaryState::Updating);
}

#[test]
fn the_canary_applies_together_with_the_zone_limit() {
    let mut w = world(4);
    for (i, z) in ["a", "a", "b", "b"].iter().enumerate() {
        w.nodes.get_mut(&format!("node-{i}")).unwrap().labels.insert(model::names::ZONE_LABEL.into(), (*z).into());
    }
    let s = Settings {
        zones: Some(ZoneLimit {
            topology_key: model::names::ZONE_LABEL.into(),
            per_zone: Some(Budget::Count(1)),
            one_zone_at_a_time: false,
            zone_order: Vec::new(),
        }),
        ..canary(Budget::Count(2))
    };
    assert_eq!(granted(&w.decide(&s)), ["node-0", "node-2"], "a zone's refusal does not use up a canary");
}

#[test]
fn without_spec_canary_every_canary_is_forgotten() {
    let mut w = world(3);
    w.policy = w.decide(&canary(Budget::Count(1))).status;
    assert_eq!(w.policy.canaries.len(), 1);
    let plan = w.decide(&settings());
    assert!(plan.status.canaries.is_empty());
    assert_eq!(granted(&plan).len(), 3);
}
