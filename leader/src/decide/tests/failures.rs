//! Decisions about failures: expired slots, reported failures counted once, halts and their backoff.

use super::*;

#[test]
fn an_expired_slot_is_reclaimed_counted_and_halts_grants() {
    let mut w = World::new(3);
    w.slots(2).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate).waiting("node-1", 5);
    w.slots[0].renewed = Some(at(800));
    w.slots[0].acquired = Some(at(800));
    let plan = w.decide(&settings());
    assert!(
        plan.actions.iter().any(
            |a| matches!(a, Action::Reclaim { slot, holder, .. } if slot == "brupop-slot-0" && holder == "node-0")
        )
    );
    assert_eq!(plan.counted.len(), 1);
    assert_eq!(plan.counted[0].reason, FailureReason::SlotExpired);
    assert_eq!(plan.status.phase, Phase::Halted);
    assert_eq!(plan.status.consecutive_failures, 1);
    assert_eq!(plan.status.halted_until, Some(Time(at(1300))));
    assert!(granted_nodes(&plan).is_empty(), "halted: no grants");
    let spec = spec_written(&plan, "node-0").unwrap();
    assert_eq!((spec.state, spec.slot), (ShadowState::Idle, None));
}

#[test]
fn an_expiry_recorded_before_a_restart_is_reclaimed_without_counting_again() {
    let mut w = World::new(2);
    w.slots(1).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    w.slots[0].renewed = Some(at(800));
    w.slots[0].acquired = Some(at(800));
    let first = w.decide(&settings());
    w.policy = first.status.clone();
    let second = w.decide(&settings());
    assert!(second.counted.is_empty());
    assert_eq!(second.status.consecutive_failures, 1);
    assert!(second.actions.iter().any(|a| matches!(a, Action::Reclaim { .. })));
}

#[test]
fn the_slot_of_a_vanished_node_is_freed_without_counting() {
    let mut w = World::new(2);
    w.slots(1).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    w.nodes.remove("node-0");
    w.shadows.remove("node-0");
    let plan = w.decide(&settings());
    assert!(plan.actions.iter().any(|a| matches!(a, Action::Free { slot, .. } if slot == "brupop-slot-0")));
    assert!(plan.counted.is_empty());
    assert_eq!(plan.status.phase, Phase::Running);
}

#[test]
fn a_reported_failure_is_counted_once_and_acknowledged() {
    let mut w = World::new(2);
    w.slots(1).failed("node-0", 1, FailureReason::RolledBack).waiting("node-1", 1);
    let plan = w.decide(&settings());
    assert_eq!(plan.counted.len(), 1);
    assert_eq!(plan.counted[0].key, "uid-node-0#1");
    assert_eq!(plan.status.consecutive_failures, 1);
    assert_eq!(plan.status.halt_reason, Some(FailureReason::RolledBack));
    assert_eq!(spec_written(&plan, "node-0").unwrap().acknowledged_failure, Some(1));
    assert!(granted_nodes(&plan).is_empty());
}

#[test]
fn a_failure_is_acknowledged_but_the_grant_kept_until_the_slot_is_released() {
    let mut w = World::new(2);
    w.slots(1).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate).failed(
        "node-0",
        1,
        FailureReason::PrepareFailed,
    );
    let plan = w.decide(&settings());
    assert_eq!(plan.counted.len(), 1);
    // The agent follows the slot its spec names: resetting the spec now would
    // hide the slot it must still release.
    let spec = spec_written(&plan, "node-0").unwrap();
    assert_eq!(spec.acknowledged_failure, Some(1));
    assert_eq!(spec.slot.as_deref(), Some("brupop-slot-0"), "{spec:?}");
    // The agent released it: now the spec is reset.
    *w.spec("node-0") = spec;
    w.policy = plan.status.clone();
    w.slots[0].holder = None;
    let next = w.decide(&settings());
    let spec = spec_written(&next, "node-0").unwrap();
    assert_eq!((spec.slot, spec.state, spec.acknowledged_failure), (None, ShadowState::Idle, Some(1)));
    assert!(next.counted.is_empty());
}

#[test]
fn a_failure_recorded_before_a_restart_is_only_acknowledged() {
    let mut w = World::new(1);
    w.slots(1).failed("node-0", 1, FailureReason::PrepareFailed);
    let first = w.decide(&settings());
    // The leader dies after writing the status, before acknowledging on the shadow.
    w.policy = first.status.clone();
    let second = w.decide(&settings());
    assert!(second.counted.is_empty(), "counted twice");
    assert_eq!(second.status.consecutive_failures, 1);
    assert_eq!(spec_written(&second, "node-0").unwrap().acknowledged_failure, Some(1));
}

#[test]
fn node_only_failures_are_acknowledged_without_halting() {
    let mut w = World::new(2);
    w.slots(1).failed("node-0", 1, FailureReason::DrainBlocked).waiting("node-1", 1);
    let plan = w.decide(&settings());
    assert_eq!(plan.counted.len(), 1);
    assert_eq!(plan.status.consecutive_failures, 0);
    assert_eq!(plan.status.phase, Phase::Running);
    assert_eq!(granted_nodes(&plan), pairs(&[("brupop-slot-0", "node-1")]));
}

#[test]
fn backoff_doubles_per_consecutive_failure_up_to_the_cap() {
    let (base, max) = (Duration::from_secs(300), Duration::from_secs(3600));
    assert_eq!(backoff(base, max, 1), Duration::from_secs(300));
    assert_eq!(backoff(base, max, 2), Duration::from_secs(600));
    assert_eq!(backoff(base, max, 3), Duration::from_secs(1200));
    assert_eq!(backoff(base, max, 4), Duration::from_secs(2400));
    assert_eq!(backoff(base, max, 5), max);
    assert_eq!(backoff(base, max, 200), max);
}

#[test]
fn the_second_consecutive_failure_halts_twice_as_long() {
    let mut w = World::new(2);
    w.slots(1);
    w.policy.consecutive_failures = 1;
    w.failed("node-1", 1, FailureReason::ActivateFailed);
    let plan = w.decide(&settings());
    assert_eq!(plan.status.consecutive_failures, 2);
    assert_eq!(plan.status.halted_until, Some(Time(at(1600))));
}

#[test]
fn after_max_consecutive_failures_grants_stop_until_resumed() {
    let mut w = World::new(3);
    w.slots(1).waiting("node-2", 1);
    w.policy.consecutive_failures = 2;
    w.failed("node-0", 1, FailureReason::RolledBack);
    let plan = w.decide(&settings());
    assert_eq!(plan.status.phase, Phase::Stopped);
    assert!(plan.status.message.contains("resumeRequest"), "{}", plan.status.message);
    // Long after the halt would have ended, still stopped.
    w.policy = plan.status.clone();
    w.spec("node-0").acknowledged_failure = Some(1);
    w.now = at(100_000);
    let later = w.decide(&settings());
    assert_eq!(later.status.phase, Phase::Stopped);
    assert!(granted_nodes(&later).is_empty());
    // A person resumes.
    let resumed = w.decide(&Settings { resume_request: Some("2026-11-28T09:00:00Z".into()), ..settings() });
    assert_eq!(resumed.status.phase, Phase::Running);
    assert_eq!(resumed.status.consecutive_failures, 0);
    assert_eq!(resumed.status.acknowledged_resume.as_deref(), Some("2026-11-28T09:00:00Z"));
    assert_eq!(granted_nodes(&resumed), pairs(&[("brupop-slot-0", "node-2")]));
}

#[test]
fn a_resume_request_already_acted_on_changes_nothing() {
    let mut w = World::new(1);
    w.slots(1);
    w.policy.consecutive_failures = 3;
    w.policy.acknowledged_resume = Some("r1".into());
    let plan = w.decide(&Settings { resume_request: Some("r1".into()), ..settings() });
    assert_eq!(plan.status.phase, Phase::Stopped);
}

#[test]
fn a_halt_ends_at_its_time_and_grants_resume() {
    let mut w = World::new(2);
    w.slots(1).waiting("node-1", 1);
    w.policy.consecutive_failures = 1;
    w.policy.halted_until = Some(Time(at(1200)));
    let plan = w.decide(&settings());
    assert_eq!(plan.status.phase, Phase::Halted);
    assert_eq!(plan.wake_at, Some(at(1200)));
    w.now = at(1200);
    let plan = w.decide(&settings());
    assert_eq!(plan.status.phase, Phase::Running);
    assert_eq!(plan.status.halted_until, None);
    assert_eq!(granted_nodes(&plan).len(), 1);
}
