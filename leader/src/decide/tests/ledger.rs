//! The grant ledger (`status.grants`): only what the leader granted holds a
//! slot, halts the rollout, completes an update or is repaired.

use model::policy::NodeBackoff;

use super::*;

fn revoked(plan: &Plan, name: &str) -> bool {
    plan.actions.iter().any(|a| matches!(a, Action::Revoke { slot, .. } if slot == name))
}

#[test]
fn a_grant_is_in_the_ledger_of_the_status_written_before_its_lease() {
    let mut w = World::new(2);
    w.slots(1).waiting("node-1", 1);
    w.ledger();
    let plan = w.decide(&settings());
    assert_eq!(granted_nodes(&plan), pairs(&[("brupop-slot-0", "node-1")]));
    let grants = plan.status.grants.clone().unwrap();
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!((g.node.as_str(), g.shadow_uid.as_str(), g.slot.as_str()), ("node-1", "uid-node-1", "brupop-slot-0"));
    assert_eq!((g.version.as_str(), g.granted_at.0), ("1.21.0", w.now));
}

#[test]
fn a_slot_held_without_a_grant_is_revoked_not_repaired() {
    // Someone who may update Leases (the authproxy's rights) hands a slot
    // to a waiting node: the leader never granted it.
    let mut w = World::new(2);
    w.slots(1).waiting("node-0", 1).held(0, "node-0", 999, 120);
    w.ledger();
    let plan = w.decide(&settings());
    assert!(revoked(&plan, "brupop-slot-0"), "{:?}", plan.actions);
    assert_eq!(spec_written(&plan, "node-0"), None, "not repaired into a grant");
    assert!(granted_nodes(&plan).is_empty(), "the slot is granted again only once seen free");
    assert_eq!(plan.status.grants, Some(vec![]));
}

#[test]
fn a_hijacked_lease_with_a_forged_spec_is_revoked_and_the_spec_reset() {
    // A shadow created with a spec naming the slot, and the Lease set to match.
    let mut w = World::new(2);
    w.slots(1).held(0, "node-0", 999, 120);
    w.ledger();
    let spec = w.spec("node-0");
    spec.slot = Some("brupop-slot-0".into());
    spec.version = Some("1.21.0".into());
    spec.state = ShadowState::StagedAndPerformedUpdate;
    w.status("node-0").current_state = ShadowState::StagedAndPerformedUpdate;
    let plan = w.decide(&settings());
    assert!(revoked(&plan, "brupop-slot-0"));
    let spec = spec_written(&plan, "node-0").unwrap();
    assert_eq!((spec.state, spec.slot), (ShadowState::Idle, None));
    assert!(plan.completed.is_empty());
}

#[test]
fn a_lost_spec_write_is_repaired_from_the_ledger_only_while_grants_run() {
    let mut w = World::new(2);
    w.slots(1).waiting("node-0", 1).held(0, "node-0", 999, 120).in_ledger(0, "node-0");
    // The shadow now offers another version: the repair writes what was granted.
    w.status("node-0").target_version = "1.22.0".into();
    for settings in [Settings { paused: true, ..settings() }, Settings { invalid: Some("bad".into()), ..settings() }] {
        let plan = w.decide(&settings);
        assert_ne!(plan.status.phase, Phase::Running);
        assert_eq!(spec_written(&plan, "node-0"), None, "{:?}: no repair", plan.status.phase);
        assert!(!revoked(&plan, "brupop-slot-0"), "a ledger grant is kept");
    }
    let mut halted = w.clone();
    halted.policy.halted_until = Some(Time(at(5000)));
    halted.policy.consecutive_failures = 1;
    assert_eq!(spec_written(&halted.decide(&settings()), "node-0"), None, "halted: no repair");
    let plan = w.decide(&settings());
    let spec = spec_written(&plan, "node-0").unwrap();
    assert_eq!(spec.slot.as_deref(), Some("brupop-slot-0"));
    assert_eq!(spec.version.as_deref(), Some("1.21.0"), "the granted version, not the offer");
}

#[test]
fn failures_without_a_grant_are_recorded_but_never_halt() {
    // A node that was never granted reports fleet-halting failures, again
    // and again: each is recorded and acknowledged, none halts.
    let mut w = World::new(2);
    w.slots(1).waiting("node-1", 1);
    w.ledger();
    for id in 1..=3 {
        w.failed_ungranted("node-0", id, FailureReason::RolledBack);
        let plan = w.decide(&settings());
        assert_eq!(plan.counted.len(), 1);
        assert!(plan.counted[0].ungranted);
        assert_eq!(plan.status.consecutive_failures, 0);
        assert_eq!(plan.status.phase, Phase::Running);
        assert_eq!(spec_written(&plan, "node-0").unwrap().acknowledged_failure, Some(id));
        assert_eq!(granted_nodes(&plan), pairs(&[("brupop-slot-0", "node-1")]));
        w.spec("node-0").acknowledged_failure = Some(id);
        w.policy.recent_failures = plan.status.recent_failures.clone();
    }
}

#[test]
fn a_failure_reported_after_the_leader_saw_the_slot_released_does_not_halt() {
    let mut w = World::new(2);
    w.slots(1).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    // The walk ends: the slot released, the leader settles it.
    w.slots[0].holder = None;
    let settled = w.decide(&settings());
    assert_eq!(settled.status.grants, Some(vec![]));
    w.policy = settled.status.clone();
    *w.spec("node-0") = spec_written(&settled, "node-0").unwrap();
    w.failed_ungranted("node-0", 1, FailureReason::PrepareFailed);
    let plan = w.decide(&settings());
    assert!(plan.counted[0].ungranted);
    assert_eq!(plan.status.phase, Phase::Running);
}

#[test]
fn a_failure_reported_in_the_pass_that_sees_the_release_still_counts() {
    let mut w = World::new(2);
    w.slots(1).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    w.failed("node-0", 1, FailureReason::PrepareFailed);
    w.slots[0].holder = None;
    let plan = w.decide(&settings());
    assert!(!plan.counted[0].ungranted);
    assert_eq!(plan.status.phase, Phase::Halted);
}

#[test]
fn a_completion_without_a_grant_does_not_reset_the_failure_count() {
    let mut w = World::new(2);
    w.slots(1);
    w.ledger();
    w.policy.consecutive_failures = 2;
    // A forged spec naming a slot the node does not hold, and a status that
    // claims the walk is done.
    let spec = w.spec("node-0");
    spec.slot = Some("brupop-slot-0".into());
    spec.version = Some("1.21.0".into());
    w.status("node-0").current_version = "1.21.0".into();
    let plan = w.decide(&settings());
    assert!(plan.completed.is_empty());
    assert_eq!(plan.status.consecutive_failures, 2);
    assert_eq!(spec_written(&plan, "node-0").unwrap().slot, None);
}

#[test]
fn a_re_created_node_with_a_reused_name_has_its_own_failures_and_grants() {
    let mut w = World::new(2);
    w.slots(2).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    // The old shadow's first failure was counted long ago.
    w.policy.recent_failures.push(RecordedFailure {
        key: "uid-node-0#1".into(),
        node: "node-0".into(),
        reason: FailureReason::PrepareFailed,
        message: String::new(),
        time: Time(at(0)),
        ungranted: false,
    });
    // The node is replaced by a new one of the same name: a new shadow, whose
    // first failure (id 1 again) comes from a walk the leader granted it.
    w.shadows.get_mut("node-0").unwrap().uid = "uid-node-0-new".into();
    let plan = w.decide(&settings());
    assert!(revoked(&plan, "brupop-slot-0"), "the old node's slot is not the new node's");
    w.slots[0].holder = None;
    w.policy = plan.status.clone();
    w.ledger().push(GrantRecord {
        node: "node-0".into(),
        shadow_uid: "uid-node-0-new".into(),
        slot: "brupop-slot-1".into(),
        version: "1.21.0".into(),
        granted_at: Time(at(995)),
    });
    w.held(1, "node-0", 995, 120);
    w.spec("node-0").slot = Some("brupop-slot-1".into());
    w.failed("node-0", 1, FailureReason::PrepareFailed);
    let plan = w.decide(&settings());
    assert_eq!(plan.counted.len(), 1, "the new node's first failure is its own");
    assert_eq!(plan.counted[0].key, "uid-node-0-new#1");
    assert_eq!(plan.status.phase, Phase::Halted);
}

#[test]
fn a_leader_without_a_ledger_adopts_the_grants_it_finds_once() {
    let mut w = World::new(3);
    w.slots(2).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate).held(1, "node-1", 995, 120);
    w.policy.grants = None;
    let plan = w.decide(&settings());
    assert!(!revoked(&plan, "brupop-slot-0"), "a grant its spec names is adopted");
    assert!(revoked(&plan, "brupop-slot-1"), "a Lease no spec names is not");
    let grants = plan.status.grants.unwrap();
    assert_eq!(grants.iter().map(|g| g.node.as_str()).collect::<Vec<_>>(), vec!["node-0"]);
}

#[test]
fn a_grant_whose_lease_write_failed_leaves_the_ledger() {
    let mut w = World::new(1);
    w.slots(1).in_ledger(0, "node-0");
    let plan = w.decide(&settings());
    assert_eq!(plan.status.grants, Some(vec![]));
}

// === maxSlotHold ===

/// `node-0` granted slot 0 at 990 s and renewing it; now is `secs` after the grant.
fn held_for(secs: i64) -> World {
    let mut w = World::new(3);
    w.now = at(990 + secs);
    w.slots(1).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate).waiting("node-1", 1);
    w
}

#[test]
fn renewals_keep_a_slot_until_max_slot_hold_and_the_leader_wakes_then() {
    let w = held_for(5399);
    let plan = w.decide(&settings());
    assert!(!plan.actions.iter().any(|a| matches!(a, Action::Reclaim { .. })), "{:?}", plan.actions);
    assert!(plan.wake_at.is_some_and(|t| t <= at(990 + 5400)), "{:?}", plan.wake_at);
}

#[test]
fn a_slot_held_past_max_slot_hold_is_taken_back_and_its_node_backed_off_by_the_leader() {
    let mut w = held_for(5400);
    let plan = w.decide(&settings());
    assert!(plan.actions.iter().any(|a| matches!(a,
        Action::Reclaim { slot, holder, reason: FailureReason::SlotHeldTooLong, .. }
            if slot == "brupop-slot-0" && holder == "node-0")));
    assert_eq!(plan.counted.len(), 1);
    assert_eq!(plan.counted[0].reason, FailureReason::SlotHeldTooLong);
    assert_eq!((plan.status.phase, plan.status.consecutive_failures), (Phase::Running, 0), "node-only");
    let b = &plan.status.node_backoffs;
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].node.as_str(), b[0].offences, b[0].until.0), ("node-0", 1, at(990 + 5400 + 300)));
    assert!(granted_nodes(&plan).is_empty(), "the slot goes once seen free");
    // Next pass: the slot is free; node-0 (its walk undone, asking again)
    // waits longer than node-1 but is backed off.
    w.policy = plan.status.clone();
    w.slots[0].holder = None;
    *w.spec("node-0") = spec_written(&plan, "node-0").unwrap();
    w.status("node-0").current_state = ShadowState::Idle;
    w.waiting("node-0", 0);
    let next = w.decide(&settings());
    assert!(next.counted.is_empty());
    assert_eq!(granted_nodes(&next), pairs(&[("brupop-slot-0", "node-1")]));
    // Once the backoff is over, node-0 is served again.
    let mut later = w.clone();
    later.ledger().clear();
    later.shadows.get_mut("node-1").unwrap().status.as_mut().unwrap().slot_requested_at = None;
    later.now = at(990 + 5400 + 300);
    assert_eq!(granted_nodes(&later.decide(&settings())), pairs(&[("brupop-slot-0", "node-0")]));
}

#[test]
fn a_second_offence_backs_the_node_off_twice_as_long() {
    let mut w = held_for(5400);
    w.policy.node_backoffs.push(NodeBackoff {
        node: "node-0".into(),
        shadow_uid: "uid-node-0".into(),
        until: Time(at(0)),
        offences: 1,
    });
    let plan = w.decide(&settings());
    let b = &plan.status.node_backoffs[0];
    assert_eq!((b.offences, b.until.0), (2, at(990 + 5400 + 600)));
}

#[test]
fn a_take_back_recorded_before_a_restart_is_not_counted_or_backed_off_again() {
    let mut w = held_for(5400);
    let first = w.decide(&settings());
    w.policy = first.status.clone();
    w.now = at(990 + 5401);
    let second = w.decide(&settings());
    assert!(second.counted.is_empty());
    assert_eq!(second.status.node_backoffs, first.status.node_backoffs);
    assert!(second.actions.iter().any(|a| matches!(a, Action::Reclaim { .. })), "reclaimed again");
}

#[test]
fn a_node_backoff_ends_with_its_shadow() {
    let mut w = World::new(1);
    w.slots(1).ledger();
    w.policy.node_backoffs.push(NodeBackoff {
        node: "node-0".into(),
        shadow_uid: "uid-of-an-old-shadow".into(),
        until: Time(at(99_999)),
        offences: 3,
    });
    w.waiting("node-0", 1);
    let plan = w.decide(&settings());
    assert!(plan.status.node_backoffs.is_empty());
    assert_eq!(
        granted_nodes(&plan),
        pairs(&[("brupop-slot-0", "node-0")]),
        "a new node of that name is not backed off"
    );
}

#[test]
fn a_pending_reboot_keeps_its_slot_past_max_slot_hold_until_a_person_releases_it() {
    let mut w = held_for(5400);
    w.status("node-0").reboot_pending =
        Some(model::shadow::RebootPending { boot_id: "boot-1".into(), since: Time(at(1000)) });
    let plan = w.decide(&settings());
    assert!(!plan.actions.iter().any(|a| matches!(a, Action::Reclaim { .. })), "{:?}", plan.actions);
    // Released by a person for an earlier boot: still pending.
    w.nodes.get_mut("node-0").unwrap().reboot_released = Some("boot-0".into());
    assert!(!w.decide(&settings()).actions.iter().any(|a| matches!(a, Action::Reclaim { .. })));
    // Released for this one: the cap applies again.
    w.nodes.get_mut("node-0").unwrap().reboot_released = Some("boot-1".into());
    assert!(w.decide(&settings()).actions.iter().any(|a| matches!(a, Action::Reclaim { .. })));
}

#[test]
fn an_expired_slot_with_a_pending_reboot_is_reclaimed_but_its_cordon_kept() {
    let mut w = World::new(2);
    w.slots(1).granted(0, "node-0", ShadowState::StagedAndPerformedUpdate);
    w.slots[0].renewed = Some(at(800));
    w.status("node-0").reboot_pending =
        Some(model::shadow::RebootPending { boot_id: "boot-1".into(), since: Time(at(900)) });
    let plan = w.decide(&settings());
    assert!(plan.actions.iter().any(|a| matches!(a, Action::Reclaim { lift_cordon: false, .. })), "{:?}", plan.actions);
}
