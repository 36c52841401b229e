//! The agent's state machine when things go wrong: a lost slot, the abort, tidying up and backing off.

use super::*;

// === Losing the slot ===

#[test]
fn a_slot_taken_by_another_node_mid_walk_fails_as_slot_lost() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.lease.as_mut().unwrap().holder = Some("node-7".into());
    match w.decide() {
        Step::Fail { reason, message } => {
            assert_eq!(reason, FailureReason::SlotLost);
            assert!(message.contains("node-7"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_expired_slot_mid_walk_fails_as_slot_lost() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated();
    w.now = at(1200);
    assert!(is_fail(&w.decide(), FailureReason::SlotLost));
}

#[test]
fn a_grant_withdrawn_mid_walk_fails_as_slot_lost() {
    let mut w = World::idle().granted().state(ShadowState::MonitoringUpdate).booted_new();
    w.shadow.as_mut().unwrap().spec.slot = None;
    assert!(is_fail(&w.decide(), FailureReason::SlotLost));
}

#[test]
fn without_its_slot_the_agent_never_cordons_drains_or_reboots() {
    for state in ShadowState::ALL {
        for holder in [None, Some("node-7"), Some("node-1")] {
            for cordoned in [false, true] {
                let mut w = World::idle().granted().state(state).activated();
                if cordoned {
                    w = w.cordoned();
                }
                w.mem.last_drain = Some((at(999), 0, 0));
                let lease = w.lease.as_mut().unwrap();
                lease.holder = holder.map(Into::into);
                if holder == Some("node-1") {
                    lease.expires = Some(at(999)); // ours, but expired
                }
                let step = w.decide();
                assert!(
                    !matches!(
                        step,
                        Step::Cordon { .. } | Step::Drain { .. } | Step::Reboot { .. } | Step::Prepare | Step::Activate
                    ),
                    "{state:?} holder {holder:?}: {step:?}"
                );
            }
        }
    }
}

// === Aborting ===

fn aborting(w: World) -> World {
    let mut w = w;
    w.mem.aborting = Some((FailureReason::DrainBlocked, "pdb".into()));
    w
}

/// Aborting a granted walk whose failure is already on the shadow.
fn aborting_after_report() -> World {
    let mut w = aborting(World::idle().granted().state(ShadowState::ErrorReset));
    w.status().last_failure = Some(Failure {
        id: 1,
        reason: FailureReason::DrainBlocked,
        message: "pdb".into(),
        time: Time(at(999)),
        state: ShadowState::StagedAndPerformedUpdate,
    });
    w
}

#[test]
fn an_abort_reports_the_failure_before_undoing_anything() {
    let w = aborting(World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned());
    assert!(matches!(w.decide(), Step::Report(r) if r.state == ShadowState::ErrorReset));
}

#[test]
fn after_reporting_an_abort_deactivates_then_lifts_our_cordon() {
    let w = aborting_after_report().activated().cordoned();
    assert_eq!(w.decide(), Step::Deactivate);
    let w = aborting_after_report().host(HostUpdateState::Staged, Some(("1.21.0", false))).cordoned();
    assert_eq!(w.decide(), Step::Uncordon);
}

#[test]
fn a_crash_mid_abort_finishes_the_abort_and_never_walks_again() {
    // The failure is on the shadow; the agent restarts with no memory, its
    // update still activated and its node cordoned, the slot still held.
    let mut w = aborting_after_report().activated().cordoned();
    w.mem = Memory::default();
    let walk_again = |s: &Step| {
        matches!(s, Step::Activate | Step::Prepare | Step::Cordon { .. } | Step::Drain { .. } | Step::Reboot { .. })
    };
    let step = w.decide();
    assert_eq!(step, Step::Deactivate);
    // Deactivated (a crash right after it, too): the cordon is lifted next.
    let mut w = aborting_after_report().host(HostUpdateState::Staged, Some(("1.21.0", false))).cordoned();
    w.mem = Memory::default();
    let step = w.decide();
    assert!(!walk_again(&step), "{step:?}");
    assert_eq!(step, Step::Uncordon);
    let mut w = aborting_after_report().host(HostUpdateState::Staged, Some(("1.21.0", false)));
    w.mem = Memory::default();
    assert_eq!(w.decide(), Step::Release { slot: "brupop-slot-0".into() });
}

#[test]
fn an_abort_reports_error_reset_with_the_next_failure_id() {
    let mut w = aborting(World::idle().granted().state(ShadowState::StagedAndPerformedUpdate));
    w.shadow.as_mut().unwrap().spec.acknowledged_failure = Some(4);
    match w.decide() {
        Step::Report(r) => {
            assert_eq!(r.state, ShadowState::ErrorReset);
            let f = r.failure.unwrap();
            assert_eq!((f.id, f.reason, f.message.as_str()), (5, FailureReason::DrainBlocked, "pdb"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_abort_releases_the_slot_after_reporting() {
    let mut w = aborting_after_report();
    assert_eq!(w.decide(), Step::Release { slot: "brupop-slot-0".into() });
    w.lease.as_mut().unwrap().holder = None;
    assert_eq!(w.decide(), Step::AbortDone);
}

#[test]
fn an_abort_releases_the_slot_it_held_even_when_the_lease_left_its_view() {
    // The leader acknowledged the failure and reset the spec: the Lease watch
    // stopped, but the slot is still ours until released.
    let mut w = aborting_after_report();
    w.lease = None;
    w.mem.holding = Some("brupop-slot-0".into());
    assert_eq!(w.decide(), Step::Release { slot: "brupop-slot-0".into() });
    w.mem.holding = None;
    assert_eq!(w.decide(), Step::AbortDone);
}

#[test]
fn after_a_restart_in_error_reset_with_the_slot_still_held_the_slot_is_released() {
    let mut w = World::idle().granted().failed(1, FailureReason::PrepareFailed, false);
    w.mem =
        Memory { lease_slot: Some("brupop-slot-0".into()), lease_valid_until: Some(at(1100)), ..Default::default() };
    assert_eq!(w.decide(), Step::Release { slot: "brupop-slot-0".into() });
}

// === Tidying up and backing off ===

#[test]
fn a_leftover_cordon_of_ours_is_lifted_when_resting() {
    assert_eq!(World::idle().cordoned().decide(), Step::Uncordon);
}

#[test]
fn a_leftover_activation_is_deactivated_when_resting() {
    assert_eq!(World::idle().activated().decide(), Step::Deactivate);
}

#[test]
fn a_lingering_lease_is_released_when_resting() {
    let mut w = World::idle();
    w.lease = Some(OwnLease { name: "brupop-slot-3".into(), holder: Some("node-1".into()), expires: Some(at(2000)) });
    assert_eq!(w.decide(), Step::Release { slot: "brupop-slot-3".into() });
}

#[test]
fn error_reset_waits_for_the_leader_to_count_the_failure() {
    let w = World::idle().failed(2, FailureReason::RolledBack, false);
    assert!(matches!(w.decide(), Step::Wait { why, .. } if why.contains("acknowledge")));
}

#[test]
fn a_node_only_failure_backs_the_node_off() {
    let w = World::idle().failed(2, FailureReason::DrainBlocked, true);
    assert!(matches!(w.decide(), Step::Wait { until: Some(t), .. } if t == at(1500)));
}

#[test]
fn after_its_backoff_a_failed_node_reports_idle_to_try_again() {
    let mut w = World::idle().failed(2, FailureReason::DrainBlocked, true);
    w.now = at(1500);
    w.mem.next_update_check = Some(at(9000));
    assert!(matches!(w.decide(), Step::Report(r) if r.state == ShadowState::Idle));
}

#[test]
fn a_fleet_halting_failure_does_not_add_a_node_backoff() {
    let w = World::idle().failed(2, FailureReason::RolledBack, true);
    assert!(matches!(w.decide(), Step::Report(r) if r.state == ShadowState::Idle));
}

#[test]
fn a_rollback_noticed_during_monitoring_fails() {
    let w = World::idle().granted().state(ShadowState::MonitoringUpdate);
    assert!(is_fail(&w.decide(), FailureReason::RolledBack));
}
