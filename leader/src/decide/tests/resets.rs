//! How a grant's spec is reset after its walk, and what a lost write costs.

use super::*;

#[test]
fn a_completed_update_resets_the_failure_count_and_the_spec() {
    let mut w = World::new(2);
    w.slots(1).granted(0, "node-0", ShadowState::MonitoringUpdate);
    w.policy.consecutive_failures = 1;
    // The agent reported Idle on the new version and released its slot.
    w.status("node-0").current_state = ShadowState::Idle;
    w.status("node-0").current_version = "1.21.0".into();
    w.status("node-0").target_version = "1.20.0".into();
    w.slots[0].holder = None;
    let plan = w.decide(&settings());
    assert_eq!(plan.completed.len(), 1);
    assert_eq!(plan.completed[0].duration, Some(Duration::from_secs(10)));
    assert_eq!(plan.status.consecutive_failures, 0);
    let spec = spec_written(&plan, "node-0").unwrap();
    assert_eq!((spec.state, spec.slot, spec.version), (ShadowState::Idle, None, None));
}

#[test]
fn a_released_slot_is_granted_again_in_the_same_pass_after_the_spec_reset() {
    let mut w = World::new(2);
    w.slots(1).granted(0, "node-0", ShadowState::MonitoringUpdate).waiting("node-1", 1);
    w.status("node-0").current_state = ShadowState::Idle;
    w.status("node-0").current_version = "1.21.0".into();
    w.slots[0].holder = None;
    let plan = w.decide(&settings());
    let reset =
        plan.actions.iter().position(|a| matches!(a, Action::SetSpec { node, .. } if node == "node-0")).unwrap();
    let grant = plan.actions.iter().position(|a| matches!(a, Action::Grant { node, .. } if node == "node-1")).unwrap();
    assert!(reset < grant, "the reset is planned with the grant of its slot");
}

#[test]
fn a_reset_lost_after_its_slot_went_to_another_node_is_written_next_pass() {
    // The reset of node-0 and the grant to node-1 go out together; the
    // leader stopped after the grant only. node-0's spec still names the
    // slot node-1 now holds: the next pass resets it and grants nothing new.
    let mut w = World::new(2);
    w.slots(1).granted(0, "node-0", ShadowState::MonitoringUpdate).granted(0, "node-1", ShadowState::Idle);
    w.status("node-0").current_state = ShadowState::Idle;
    w.status("node-0").current_version = "1.21.0".into();
    let plan = w.decide(&settings());
    assert!(spec_written(&plan, "node-0").is_some_and(|s| s.slot.is_none() && s.state == ShadowState::Idle));
    assert!(spec_written(&plan, "node-1").is_none(), "the new holder's grant stands");
    assert!(granted_nodes(&plan).is_empty());
}

#[test]
fn a_slot_left_by_a_node_mid_walk_is_reset_and_granted_again_in_one_pass() {
    let mut w = World::new(2);
    // node-0's spec names slot 0, which nobody holds, and node-0 is still
    // walking (its status is not done): the leader resets the spec first.
    w.slots(1).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate).waiting("node-1", 1);
    w.slots[0].holder = None;
    w.spec("node-0").slot = Some("brupop-slot-0".into());
    let plan = w.decide(&settings());
    assert!(spec_written(&plan, "node-0").is_some_and(|s| s.slot.is_none()));
    assert_eq!(granted_nodes(&plan), pairs(&[("brupop-slot-0", "node-1")]));
}

#[test]
fn spec_writes_come_before_grants() {
    let mut w = World::new(3);
    w.slots(2).failed("node-0", 1, FailureReason::DrainBlocked).waiting("node-1", 1);
    let plan = w.decide(&settings());
    let spec_at = plan.actions.iter().position(|a| matches!(a, Action::SetSpec { .. })).unwrap();
    let grant_at = plan.actions.iter().position(|a| matches!(a, Action::Grant { .. })).unwrap();
    assert!(spec_at < grant_at);
}

#[test]
fn a_grant_whose_spec_write_was_lost_is_repaired() {
    let mut w = World::new(2);
    w.slots(1).waiting("node-0", 1).held(0, "node-0", 999, 120).in_ledger(0, "node-0");
    let plan = w.decide(&settings());
    let spec = spec_written(&plan, "node-0").unwrap();
    assert_eq!(spec.slot.as_deref(), Some("brupop-slot-0"));
    assert_eq!(spec.version.as_deref(), Some("1.21.0"));
    assert_eq!(spec.state, ShadowState::StagedAndPerformedUpdate);
    assert!(granted_nodes(&plan).is_empty());
}

#[test]
fn a_lingering_lease_after_a_failure_is_not_granted_again() {
    let mut w = World::new(1);
    w.slots(1).failed("node-0", 1, FailureReason::PrepareFailed).held(0, "node-0", 990, 120);
    w.spec("node-0").acknowledged_failure = Some(1);
    w.spec("node-0").state_transition_timestamp = Some(MicroTime(at(996)));
    w.waiting("node-0", 997);
    w.status("node-0").current_state = ShadowState::Idle;
    let plan = w.decide(&settings());
    assert_eq!(spec_written(&plan, "node-0"), None, "reset after the grant: not a lost grant");
}
