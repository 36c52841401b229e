//! A reboot the host accepted but has not carried out by `--reboot-timeout`:
//! reported, never undone, cordon and slot kept until the node reboots or a
//! person releases it.

use super::*;

/// The reboot was asked for at 695 s and the host is still up at 1000 s.
fn reboot_overdue() -> World {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.node.boot_id = Some("boot-1".into());
    w.mem.last_drain = Some((at(690), 0, 0));
    w.mem.reboot_requested = Some(at(695));
    w
}

/// The pending reboot reported: `ErrorReset` with `RebootFailed` and boot-1.
fn reboot_pending() -> World {
    let mut w = reboot_overdue().failed(1, FailureReason::RebootFailed, true);
    w.status().reboot_pending = Some(model::shadow::RebootPending { boot_id: "boot-1".into(), since: Time(at(995)) });
    w
}

#[test]
fn a_reboot_still_pending_at_its_deadline_is_reported_without_undoing_anything() {
    let w = reboot_overdue();
    match w.decide() {
        Step::Report(r) => {
            assert_eq!(r.state, ShadowState::ErrorReset);
            assert_eq!(r.failure.unwrap().reason, FailureReason::RebootFailed);
            assert_eq!(r.reboot_pending_boot_id.as_deref(), Some("boot-1"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn while_a_reboot_is_pending_the_node_keeps_its_cordon_and_renews_its_slot() {
    let mut w = reboot_pending();
    // Nothing but waiting (no deactivate, no uncordon, no release)...
    assert!(matches!(w.decide(), Step::Wait { .. }), "{:?}", w.decide());
    // ...and the slot's renewals, for as long as it takes.
    w.now = at(1100);
    assert!(matches!(w.decide(), Step::Renew { .. }), "{:?}", w.decide());
    // An agent that restarts meanwhile (no memory) keeps waiting too.
    w.now = at(1000);
    w.mem =
        Memory { lease_slot: Some("brupop-slot-0".into()), lease_valid_until: Some(at(1110)), ..Default::default() };
    assert!(matches!(w.decide(), Step::Wait { .. }), "{:?}", w.decide());
    // Even if the slot was lost meanwhile, our cordon stays.
    w.lease = None;
    w.shadow.as_mut().unwrap().spec.slot = None;
    assert!(matches!(w.decide(), Step::Wait { .. }), "{:?}", w.decide());
}

#[test]
fn once_the_node_has_rebooted_the_abort_finishes_and_the_slot_is_released() {
    let mut w = reboot_pending().booted_new();
    w.node.boot_id = Some("boot-2".into());
    assert_eq!(w.decide(), Step::Uncordon);
    w.node = OwnNode { ready: true, boot_id: Some("boot-2".into()), ..Default::default() };
    assert_eq!(w.decide(), Step::Release { slot: "brupop-slot-0".into() });
}

#[test]
fn a_person_releases_a_pending_reboot_with_its_boot_id_only() {
    let mut w = reboot_pending();
    w.node.reboot_released = Some("boot-0".into()); // a stale release of an earlier boot
    assert!(matches!(w.decide(), Step::Wait { .. }));
    w.node.reboot_released = Some("boot-1".into());
    assert_eq!(w.decide(), Step::Deactivate, "the walk is undone as for any failure");
}

#[test]
fn the_report_after_the_reboot_clears_the_pending_mark() {
    let mut w = reboot_pending().booted_new();
    w.node = OwnNode { ready: true, boot_id: Some("boot-2".into()), ..Default::default() };
    w.lease = None;
    w.shadow.as_mut().unwrap().spec.slot = None;
    match w.decide() {
        Step::Report(r) => assert_eq!(r.reboot_pending_boot_id, None),
        other => panic!("{other:?}"),
    }
}
