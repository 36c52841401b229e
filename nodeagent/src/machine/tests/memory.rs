//! The renewal rule and what the agent's memory learns from each step.

use super::*;

impl World {
    fn observe(&mut self) {
        let mut mem = self.mem.clone();
        observe(&mut mem, &self.obs(), self.now);
        self.mem = mem;
    }
}

fn renewal_of(w: &World) -> Renewal {
    renewal("node-1", w.shadow.as_ref(), w.lease.as_ref(), &w.mem, &w.cfg, w.now)
}

// === The renewal rule ===

#[test]
fn a_held_slot_is_next_renewed_when_a_third_of_its_lease_is_used() {
    let w = World::idle().granted();
    // Valid until 1110 (renewed at 990 for 120 s): due 80 s before.
    assert_eq!(renewal_of(&w), Renewal::At(at(1030)));
}

#[test]
fn a_renewal_past_its_time_is_due_now() {
    let mut w = World::idle().granted();
    w.now = at(1031);
    assert_eq!(
        renewal_of(&w),
        Renewal::Due(Step::Renew { slot: "brupop-slot-0".into(), duration: Duration::from_secs(120) })
    );
}

#[test]
fn without_a_slot_nothing_is_renewed() {
    assert_eq!(renewal_of(&World::idle().waiting()), Renewal::NotHeld);
    let mut w = World::idle().granted();
    w.lease.as_mut().unwrap().holder = Some("node-2".into());
    assert_eq!(renewal_of(&w), Renewal::NotHeld, "a slot held by another node is not ours to renew");
}

#[test]
fn no_wait_of_the_walk_outlasts_the_next_renewal() {
    // Watching a healthy node for 120 s from t=1000 would wait until 1120;
    // the lease needs renewing at 1030.
    let mut w = World::idle().granted().state(ShadowState::MonitoringUpdate).booted_new();
    w.cfg.health_minimum = Duration::from_secs(120);
    w.status().state_transition_timestamp = Some(MicroTime(at(1000)));
    w.mem.health = Some((at(1000), vec![]));
    assert_eq!(
        w.decide(),
        Step::Wait { until: Some(at(1030)), why: "the updated node is healthy; watching it a little longer".into() }
    );
    w.now = at(1030);
    assert!(matches!(w.decide(), Step::Renew { .. }), "at the renewal time the wait ends in a renewal");
    // Drain rounds spaced 5 s apart, and the wait for the reboot, likewise.
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.now = at(1028);
    w.mem.last_drain = Some((at(1027), 3, 0));
    w.mem.drain_rounds = 10;
    assert_eq!(w.decide(), Step::Wait { until: Some(at(1030)), why: "draining: 3 pod(s) left".into() });
}

// === What steps teach ===

#[test]
fn a_renewal_is_remembered_with_what_it_asked_for() {
    let mut w = World::idle().granted();
    let step = Step::Renew { slot: "brupop-slot-0".into(), duration: Duration::from_secs(120) };
    learn(&mut w.mem, &step, &Outcome::Renewed { valid_until: at(1200) }, &w.cfg, at(1080));
    assert_eq!(w.mem.lease_valid_until, Some(at(1200)));
    assert_eq!(w.mem.lease_asked, Some(Duration::from_secs(120)));
    learn(&mut w.mem, &step, &Outcome::NotHolder, &w.cfg, at(1090));
    assert_eq!(w.mem.lease_valid_until, None, "a refused renewal forgets the slot's validity");
}

#[test]
fn a_host_command_that_ran_and_failed_ends_the_walk_at_once() {
    let mut w = World::idle().granted();
    w.mem.holding = Some("brupop-slot-0".into());
    let failed =
        Outcome::HostError { reason: FailureReason::PrepareFailed, message: "no space".into(), final_now: true };
    learn(&mut w.mem, &Step::Prepare, &failed, &w.cfg, w.now);
    assert_eq!(w.mem.aborting, Some((FailureReason::PrepareFailed, "no space".into())));
}

#[test]
fn other_host_errors_end_the_walk_after_a_few_attempts() {
    let mut w = World::idle().granted();
    w.mem.holding = Some("brupop-slot-0".into());
    let flaky = Outcome::HostError { reason: FailureReason::HostApiError, message: "500".into(), final_now: false };
    for _ in 1..learn::HOST_ATTEMPTS {
        learn(&mut w.mem, &Step::Activate, &flaky, &w.cfg, w.now);
        assert_eq!(w.mem.aborting, None);
    }
    learn(&mut w.mem, &Step::Activate, &flaky, &w.cfg, w.now);
    assert_eq!(w.mem.aborting.as_ref().map(|a| a.0), Some(FailureReason::HostApiError));
    // A success in between starts the count again.
    let mut w = World::idle().granted();
    w.mem.holding = Some("brupop-slot-0".into());
    learn(&mut w.mem, &Step::Activate, &flaky, &w.cfg, w.now);
    learn(&mut w.mem, &Step::Uncordon, &Outcome::Done, &w.cfg, w.now);
    learn(&mut w.mem, &Step::Activate, &flaky, &w.cfg, w.now);
    assert_eq!(w.mem.aborting, None);
}

#[test]
fn host_errors_while_resting_never_start_an_abort() {
    let mut w = World::idle();
    let flaky = Outcome::HostError { reason: FailureReason::HostApiError, message: "500".into(), final_now: true };
    learn(&mut w.mem, &Step::Refresh, &flaky, &w.cfg, w.now);
    assert_eq!(w.mem.aborting, None);
}

#[test]
fn a_deactivate_that_fails_during_an_abort_is_given_up_not_retried_forever() {
    let mut w = World::idle().granted();
    w.mem.aborting = Some((FailureReason::SlotLost, "gone".into()));
    let failed = Outcome::HostError { reason: FailureReason::HostApiError, message: "500".into(), final_now: false };
    learn(&mut w.mem, &Step::Deactivate, &failed, &w.cfg, w.now);
    assert!(w.mem.skip_deactivate);
    assert_eq!(w.mem.aborting.as_ref().map(|a| a.0), Some(FailureReason::SlotLost), "the abort keeps its reason");
}

#[test]
fn a_refused_reboot_starts_the_abort() {
    let mut w = World::idle().granted();
    learn(
        &mut w.mem,
        &Step::Reboot { slot: "brupop-slot-0".into() },
        &Outcome::RebootRefused("inhibited".into()),
        &w.cfg,
        w.now,
    );
    assert_eq!(w.mem.aborting, Some((FailureReason::RebootFailed, "inhibited".into())));
    let mut w = World::idle().granted();
    learn(&mut w.mem, &Step::Reboot { slot: "brupop-slot-0".into() }, &Outcome::RebootRequested, &w.cfg, at(1001));
    assert_eq!(w.mem.reboot_requested, Some(at(1001)));
}

#[test]
fn drain_rounds_and_health_checks_are_remembered() {
    let mut w = World::idle().granted();
    let drain = super::drain_step();
    learn(&mut w.mem, &drain, &Outcome::Drained { remaining: 2, blocked: 1 }, &w.cfg, at(1001));
    learn(&mut w.mem, &drain, &Outcome::Drained { remaining: 0, blocked: 0 }, &w.cfg, at(1003));
    assert_eq!(
        (w.mem.drain_started, w.mem.last_drain, w.mem.drain_rounds),
        (Some(at(1001)), Some((at(1003), 0, 0)), 2)
    );
    let pods = vec![SeenPod { namespace: "ns".into(), name: "p".into(), ..SeenPod::default() }];
    learn(&mut w.mem, &Step::CheckHealth, &Outcome::Pods(pods.clone()), &w.cfg, at(1005));
    assert_eq!((w.mem.health, w.mem.health_checks), (Some((at(1005), pods)), 1));
}

#[test]
fn a_new_grant_starts_a_new_walk() {
    let mut w = World::idle().granted();
    w.mem.drain_rounds = 4;
    w.mem.reboot_requested = Some(at(900));
    w.observe();
    assert_eq!(w.mem.holding.as_deref(), Some("brupop-slot-0"));
    let first = w.mem.clone();
    // The same grant seen again changes nothing.
    w.observe();
    assert_eq!(w.mem, first);
    w.mem.drain_rounds = 4;
    w.shadow.as_mut().unwrap().spec.state_transition_timestamp = Some(MicroTime(at(1500)));
    w.observe();
    assert_eq!((w.mem.drain_rounds, w.mem.reboot_requested, w.mem.lease_valid_until), (0, None, None));
}

#[test]
fn a_release_forgets_the_slot_and_an_abort_done_clears_the_walk() {
    let mut w = World::idle().granted();
    w.mem.holding = Some("brupop-slot-0".into());
    learn(&mut w.mem, &Step::Release { slot: "brupop-slot-0".into() }, &Outcome::Done, &w.cfg, w.now);
    assert_eq!((w.mem.holding.as_deref(), w.mem.lease_valid_until), (None, None));
    w.mem.aborting = Some((FailureReason::SlotLost, "x".into()));
    w.mem.skip_deactivate = true;
    w.mem.last_drain = Some((at(1), 0, 0));
    learn(&mut w.mem, &Step::AbortDone, &Outcome::Done, &w.cfg, w.now);
    assert_eq!((w.mem.aborting.as_ref(), w.mem.skip_deactivate, w.mem.last_drain), (None, false, None));
}

#[test]
fn a_refresh_schedules_the_next_update_check_even_when_it_fails() {
    let mut w = World::idle();
    w.mem = Memory::new("node-1", at(0));
    learn(&mut w.mem, &Step::Refresh, &Outcome::Done, &w.cfg, at(10));
    let first = w.mem.next_update_check.unwrap();
    assert!(first >= at(10) && first <= at(3610), "the first check after start is spread within one interval");
    assert_eq!(w.mem.last_refresh, Some(at(10)));
    learn(&mut w.mem, &Step::Refresh, &Outcome::Error, &w.cfg, at(20));
    let next = w.mem.next_update_check.unwrap();
    assert!(next >= at(20 + 3240) && next <= at(20 + 3960), "later checks every interval ±10%: {next}");
    assert_eq!(w.mem.last_refresh, Some(at(10)), "a refresh that did not run is not a refresh");
}

// === A host whose update lock stays held ===

fn busy(mut w: World) -> World {
    w.host.update = None;
    w.host.busy = true;
    w
}

#[test]
fn a_walk_waits_for_a_command_it_did_not_start_until_the_command_deadline() {
    let mut w = busy(World::idle().granted());
    w.observe();
    assert_eq!(w.mem.host_busy_since, Some(at(1000)));
    assert!(matches!(w.decide(), Step::Wait { why, .. } if why.contains("update lock")));
    w.now = at(1000 + 900);
    w.mem.lease_valid_until = Some(at(2000));
    w.lease.as_mut().unwrap().expires = Some(at(2000));
    assert!(is_fail(&w.decide(), FailureReason::HostApiError), "{:?}", w.decide());
    // The lock let go: the walk goes on and forgets the wait.
    let mut w = World::idle().granted();
    w.mem.host_busy_since = Some(at(900));
    w.observe();
    assert_eq!(w.mem.host_busy_since, None);
    assert_eq!(w.decide(), Step::Prepare);
}

#[test]
fn an_abort_on_a_busy_host_reports_and_releases_without_waiting_for_it() {
    let mut w = busy(World::idle().granted());
    w.mem.aborting = Some((FailureReason::PrepareFailed, "prepare-update did not finish".into()));
    match w.decide() {
        Step::Report(r) => assert_eq!(r.failure.map(|f| f.reason), Some(FailureReason::PrepareFailed)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_resting_node_with_a_busy_host_waits() {
    let w = busy(World::idle());
    assert!(matches!(w.decide(), Step::Wait { why, .. } if why.contains("update lock")));
}
