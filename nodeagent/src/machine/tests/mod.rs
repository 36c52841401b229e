//! Unit tests of the agent's state machine, one per situation.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use model::shadow::Failure;
use model::{BottlerocketShadow, BottlerocketShadowSpec, BottlerocketShadowStatus, FailureReason, ShadowState};

use super::*;

/// The drain round of a walk with the shipped settings.
pub(super) fn drain_step() -> Step {
    Step::Drain {
        slot: "brupop-slot-0".into(),
        min_remaining: Duration::from_secs(30),
        skip_pod_selector: String::new(),
        grace_period_seconds: None,
        delete_blocked: false,
    }
}

fn at(secs: i64) -> Timestamp {
    let t0: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
    t0.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap()
}

fn cfg() -> WalkSettings {
    WalkSettings {
        slot_lease: Duration::from_secs(120),
        reboot_grace: Duration::from_secs(600),
        reboot_timeout: Duration::from_secs(300),
        drain_timeout: Duration::from_secs(600),
        drain_interval: Duration::from_secs(5),
        step_margin: Duration::from_secs(30),
        health_timeout: Duration::from_secs(300),
        health_minimum: Duration::from_secs(5),
        health_poll_interval: Duration::from_secs(5),
        health_ignore_pod_selector: String::new(),
        drain_skip_pod_selector: String::new(),
        drain_grace_period_seconds: None,
        do_not_disrupt_timeout: Duration::from_secs(600),
        load_balancer_wait: Duration::ZERO,
        hooks: None,
        delete_blocked_pods_after: None,
        node_backoff: Duration::from_secs(600),
        node_backoff_max: Duration::from_secs(6 * 3600),
        exclude_from_load_balancers: true,
        update_check_interval: Duration::from_secs(3600),
        host_command_timeout: Duration::from_secs(900),
    }
}

/// One node's world: its shadow, slot Lease, Node and host, and the agent's memory.
struct World {
    now: Timestamp,
    shadow: Option<BottlerocketShadow>,
    lease: Option<OwnLease>,
    node: OwnNode,
    host: OwnHost,
    mem: Memory,
    cfg: WalkSettings,
}

impl World {
    /// node-1, Idle on 1.20.0, the host offering 1.21.0, nothing requested.
    fn idle() -> World {
        let mut shadow = BottlerocketShadow::new("brs-node-1", BottlerocketShadowSpec::default());
        shadow.status = Some(BottlerocketShadowStatus {
            current_version: "1.20.0".into(),
            target_version: "1.21.0".into(),
            current_state: ShadowState::Idle,
            state_transition_timestamp: Some(MicroTime(at(0))),
            ..Default::default()
        });
        World {
            now: at(1000),
            shadow: Some(shadow),
            lease: None,
            node: OwnNode { ready: true, ..Default::default() },
            host: OwnHost {
                version: "1.20.0".into(),
                update: Some(HostUpdate {
                    state: HostUpdateState::Available,
                    chosen: Some("1.21.0".into()),
                    staged: None,
                }),
                busy: false,
            },
            mem: Memory { next_update_check: Some(at(4000)), ..Default::default() },
            cfg: cfg(),
        }
    }

    fn status(&mut self) -> &mut BottlerocketShadowStatus {
        self.shadow.as_mut().unwrap().status.as_mut().unwrap()
    }

    fn waiting(mut self) -> World {
        self.status().slot_requested_at = Some(MicroTime(at(900)));
        self
    }

    /// Granted slot 0 at t=950; the Lease is ours and the agent renewed it at t=990.
    fn granted(mut self) -> World {
        let spec = &mut self.shadow.as_mut().unwrap().spec;
        spec.state = ShadowState::StagedAndPerformedUpdate;
        spec.version = Some("1.21.0".into());
        spec.slot = Some("brupop-slot-0".into());
        spec.state_transition_timestamp = Some(MicroTime(at(950)));
        self.lease =
            Some(OwnLease { name: "brupop-slot-0".into(), holder: Some("node-1".into()), expires: Some(at(1110)) });
        self.mem.lease_slot = Some("brupop-slot-0".into());
        self.mem.lease_valid_until = Some(at(1110));
        self.mem.last_refresh = Some(at(960));
        self
    }

    /// At `t`, the slot renewed along the way (valid 110 s more).
    fn later(&mut self, t: Timestamp) {
        self.now = t;
        let until = t.checked_add(jiff::SignedDuration::from_secs(110)).unwrap();
        self.lease.as_mut().unwrap().expires = Some(until);
        self.mem.lease_valid_until = Some(until);
    }

    /// In state `s`; a walk past `Idle` has recorded its pods (none), and
    /// listed them (none that must not be disrupted).
    fn state(mut self, s: ShadowState) -> World {
        self.status().current_state = s;
        self.status().slot_requested_at = None;
        self.status().pods_before_drain = s.is_updating().then(Vec::new);
        self.mem.pods_listed = s.is_updating().then(|| (at(999), vec![]));
        self
    }

    fn host(mut self, state: HostUpdateState, staged: Option<(&str, bool)>) -> World {
        let u = self.host.update.as_mut().unwrap();
        u.state = state;
        u.staged = staged.map(|(v, n)| (v.to_owned(), n));
        self
    }

    /// Activated, not yet rebooted.
    fn activated(self) -> World {
        self.host(HostUpdateState::Ready, Some(("1.21.0", true)))
    }

    fn cordoned(mut self) -> World {
        self.node.unschedulable = true;
        self.node.cordoned_by_us = true;
        self.node.cordoned_at = Some(at(980));
        self.node.excluded = true;
        self.node.excluded_by_us = true;
        self
    }

    /// The host booted 1.21.0; its update status was re-created by a refresh.
    fn booted_new(mut self) -> World {
        self.host.version = "1.21.0".into();
        self.host.update = Some(HostUpdate { state: HostUpdateState::Idle, chosen: None, staged: None });
        self
    }

    fn failed(mut self, id: u64, reason: FailureReason, acked: bool) -> World {
        let st = self.status();
        st.current_state = ShadowState::ErrorReset;
        st.crash_count = 1;
        st.last_failure =
            Some(Failure { id, reason, message: "m".into(), time: Time(at(900)), state: ShadowState::Idle });
        if acked {
            self.shadow.as_mut().unwrap().spec.acknowledged_failure = Some(id);
        }
        self
    }

    fn obs(&self) -> Observation<'_> {
        Observation {
            node_name: "node-1",
            shadow: self.shadow.as_ref(),
            lease: self.lease.as_ref(),
            node: Some(&self.node),
            host: &self.host,
        }
    }

    fn decide(&self) -> Step {
        decide(&self.obs(), &self.mem, &self.cfg, self.now)
    }
}

fn is_fail(step: &Step, want: FailureReason) -> bool {
    matches!(step, Step::Fail { reason, .. } if *reason == want)
}

// === Starting up and resting ===

#[test]
fn first_start_after_boot_initializes_the_host_status_first() {
    let mut w = World::idle();
    w.host.update = None;
    assert_eq!(w.decide(), Step::Refresh);
}

#[test]
fn first_start_without_a_shadow_reports_idle() {
    let mut w = World::idle();
    w.shadow = None;
    match w.decide() {
        Step::Report(r) => {
            assert_eq!(r.state, ShadowState::Idle);
            assert_eq!(r.current_version, "1.20.0");
            assert_eq!(r.target_version.as_deref(), Some("1.21.0"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn idle_with_an_update_available_asks_for_a_slot() {
    assert!(matches!(World::idle().decide(), Step::RequestSlot(r) if r.target_version.as_deref() == Some("1.21.0")));
}

#[test]
fn idle_and_already_waiting_waits_for_the_grant() {
    assert!(matches!(World::idle().waiting().decide(), Step::Wait { .. }));
}

#[test]
fn idle_and_up_to_date_waits_until_the_next_update_check() {
    let mut w = World::idle();
    w.host.update.as_mut().unwrap().chosen = None;
    w.status().target_version = String::new();
    assert_eq!(w.decide(), Step::Wait { until: Some(at(4000)), why: "up to date".into() });
}

#[test]
fn a_due_update_check_refreshes_the_host() {
    let mut w = World::idle().waiting();
    w.now = at(5000);
    assert_eq!(w.decide(), Step::Refresh);
}

#[test]
fn an_opted_out_node_does_not_ask_for_a_slot() {
    let mut w = World::idle();
    w.node.opted_out = true;
    assert!(matches!(w.decide(), Step::Wait { why, .. } if why == "node opted out"));
}

#[test]
fn a_newly_published_version_is_reported_with_the_request() {
    let mut w = World::idle().waiting();
    w.host.update.as_mut().unwrap().chosen = Some("1.22.0".into());
    assert!(matches!(w.decide(), Step::RequestSlot(r) if r.target_version.as_deref() == Some("1.22.0")));
}

// === Granted: staging ===

#[test]
fn a_fresh_grant_is_trusted_from_the_observed_lease_without_renewing() {
    let mut w = World::idle().granted();
    w.mem.lease_valid_until = None;
    assert_eq!(w.decide(), Step::Prepare, "the leader just set the Lease's expiry");
}

#[test]
fn a_grant_whose_observed_lease_runs_short_is_renewed_first() {
    let mut w = World::idle().granted();
    w.mem.lease_valid_until = None;
    w.lease.as_mut().unwrap().expires = Some(at(1050));
    assert_eq!(w.decide(), Step::Renew { slot: "brupop-slot-0".into(), duration: Duration::from_secs(120) });
}

#[test]
fn the_slot_is_renewed_when_a_third_of_the_lease_is_used() {
    let mut w = World::idle().granted();
    w.now = at(1031); // valid until 1110: 79 s left, less than 80
    assert!(matches!(w.decide(), Step::Renew { .. }));
    w.now = at(1029);
    assert!(!matches!(w.decide(), Step::Renew { .. }));
}

#[test]
fn a_grant_refreshes_the_host_before_preparing_unless_it_checked_recently() {
    let mut w = World::idle().granted();
    w.mem.last_refresh = Some(at(940));
    assert_eq!(w.decide(), Step::Prepare, "the periodic check (next due at 4000) is recent enough");
    w.mem.next_update_check = Some(at(999));
    w.now = at(1000);
    assert_eq!(w.decide(), Step::Refresh, "the last check is older than the grant and not recent");
}

#[test]
fn a_grant_prepares_the_offered_version() {
    assert_eq!(World::idle().granted().decide(), Step::Prepare);
}

#[test]
fn once_prepared_the_agent_reports_staged_without_activating() {
    match World::idle().granted().host(HostUpdateState::Staged, Some(("1.21.0", false))).decide() {
        Step::Report(r) => assert_eq!(r.state, ShadowState::StagedAndPerformedUpdate),
        other => panic!("{other:?}"),
    }
}

#[test]
fn after_a_crash_following_activate_the_agent_reports_and_never_prepares_in_state_ready() {
    match World::idle().granted().activated().decide() {
        Step::Report(r) => assert_eq!(r.state, ShadowState::StagedAndPerformedUpdate),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_host_that_no_longer_offers_the_granted_version_gives_the_slot_back() {
    let mut w = World::idle().granted();
    w.host.update.as_mut().unwrap().chosen = Some("1.22.0".into());
    assert_eq!(w.decide(), Step::Release { slot: "brupop-slot-0".into() });
}

#[test]
fn a_wrong_image_activated_is_deactivated() {
    assert_eq!(World::idle().granted().host(HostUpdateState::Ready, Some(("1.19.0", true))).decide(), Step::Deactivate);
}

#[test]
fn another_version_staged_is_prepared_over() {
    assert_eq!(World::idle().granted().host(HostUpdateState::Staged, Some(("1.19.0", false))).decide(), Step::Prepare);
}

// === Granted: cordon, drain, reboot ===

#[test]
fn staged_and_activated_cordons_first_fenced_and_excluding_from_load_balancers() {
    let w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated();
    assert_eq!(
        w.decide(),
        Step::Cordon {
            slot: "brupop-slot-0".into(),
            min_remaining: Duration::from_secs(30),
            exclude_from_load_balancers: true
        }
    );
}

#[test]
fn after_a_crash_following_the_cordon_the_agent_drains() {
    let w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    assert_eq!(w.decide(), drain_step());
}

#[test]
fn an_admin_cordon_is_not_repeated_but_the_node_is_still_drained() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated();
    w.node.unschedulable = true;
    w.node.excluded = true;
    assert!(matches!(w.decide(), Step::Drain { .. }));
}

#[test]
fn drain_rounds_are_spaced_while_pods_remain() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.mem.drain_started = Some(at(990));
    w.mem.last_drain = Some((at(998), 3, 0));
    w.mem.drain_rounds = 10;
    assert_eq!(w.decide(), Step::Wait { until: Some(at(1003)), why: "draining: 3 pod(s) left".into() });
    w.now = at(1003);
    assert!(matches!(w.decide(), Step::Drain { .. }));
}

#[test]
fn the_first_drain_rounds_follow_each_other_quickly() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.now = at(998);
    w.mem.last_drain = Some((at(998), 3, 0));
    w.mem.drain_rounds = 1;
    let first = at(998).checked_add(jiff::SignedDuration::from_millis(10)).unwrap();
    assert_eq!(w.decide(), Step::Wait { until: Some(first), why: "draining: 3 pod(s) left".into() });
    w.mem.drain_rounds = 3;
    let third = at(998).checked_add(jiff::SignedDuration::from_millis(40)).unwrap();
    assert_eq!(w.decide(), Step::Wait { until: Some(third), why: "draining: 3 pod(s) left".into() });
}

#[test]
fn a_drain_refused_by_a_pdb_until_the_deadline_fails_as_drain_blocked() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.mem.drain_started = Some(at(300));
    w.mem.last_drain = Some((at(899), 1, 1));
    w.now = at(900);
    assert!(is_fail(&w.decide(), FailureReason::DrainBlocked));
}

#[test]
fn pods_stuck_terminating_until_the_deadline_fail_as_drain_timeout() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.mem.drain_started = Some(at(300));
    w.mem.last_drain = Some((at(899), 2, 0));
    w.now = at(900);
    assert!(is_fail(&w.decide(), FailureReason::DrainTimeout));
}

#[test]
fn after_a_restart_mid_drain_the_deadline_counts_from_the_cordon() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.node.cordoned_at = Some(at(300));
    w.now = at(901);
    w.mem.lease_valid_until = Some(at(1010));
    assert!(is_fail(&w.decide(), FailureReason::DrainTimeout));
}

#[test]
fn a_drained_node_extends_its_slot_for_the_reboot_then_reboots() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.mem.last_drain = Some((at(999), 0, 0));
    let extend = Step::Renew { slot: "brupop-slot-0".into(), duration: Duration::from_secs(600) };
    assert_eq!(w.decide(), extend);
    learn(&mut w.mem, &extend, &Outcome::Renewed { valid_until: at(1600) }, &w.cfg, w.now);
    assert_eq!(w.decide(), Step::Reboot { slot: "brupop-slot-0".into() });
}

#[test]
fn a_reboot_extension_granted_too_short_fails_the_walk_before_rebooting() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.mem.last_drain = Some((at(999), 0, 0));
    let extend = Step::Renew { slot: "brupop-slot-0".into(), duration: Duration::from_secs(600) };
    // The authproxy capped the renewal at 300 s (its --max-slot-lease).
    learn(&mut w.mem, &extend, &Outcome::Renewed { valid_until: at(1300) }, &w.cfg, w.now);
    match w.decide() {
        Step::Fail { reason: FailureReason::RebootFailed, message } => {
            assert!(message.contains("--max-slot-lease"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn after_the_reboot_request_the_agent_waits_for_the_reboot() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.mem.last_drain = Some((at(990), 0, 0));
    w.mem.reboot_requested = Some(at(995));
    w.mem.lease_valid_until = Some(at(1595)); // extended for the reboot grace
    w.mem.lease_asked = Some(Duration::from_secs(600));
    assert_eq!(w.decide(), Step::Wait { until: Some(at(1295)), why: "waiting for the reboot".into() });
}

#[test]
fn after_a_crash_following_the_reboot_request_the_agent_drains_again_fenced() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).activated().cordoned();
    w.mem = Memory::default();
    // An (idempotent) drain round, fenced by the authproxy, before rebooting again.
    assert!(matches!(w.decide(), Step::Drain { .. }));
}

/// Staged (prepared, not activated), walking.
fn staged() -> World {
    World::idle()
        .granted()
        .state(ShadowState::StagedAndPerformedUpdate)
        .host(HostUpdateState::Staged, Some(("1.21.0", false)))
}

#[test]
fn the_update_is_activated_only_once_the_node_is_cordoned_and_drained() {
    // Not cordoned: cordon first, never activate.
    assert!(matches!(staged().decide(), Step::Cordon { .. }), "{:?}", staged().decide());
    // Cordoned, not yet drained: drain, never activate.
    let w = staged().cordoned();
    assert!(matches!(w.decide(), Step::Drain { .. }), "{:?}", w.decide());
    // Drained: activate, then extend the slot for the reboot.
    let mut w = staged().cordoned();
    w.mem.last_drain = Some((at(999), 0, 0));
    assert_eq!(w.decide(), Step::Activate);
    let mut w = w.activated();
    w.mem.last_drain = Some((at(999), 0, 0));
    assert!(matches!(w.decide(), Step::Renew { .. }), "{:?}", w.decide());
}

#[test]
fn an_agent_that_dies_before_the_drain_leaves_no_activated_update() {
    // Every step before the drain ends, from any start, is not an activation.
    for w in [World::idle().granted(), staged(), staged().cordoned()] {
        let step = w.decide();
        assert_ne!(step, Step::Activate, "{step:?}");
    }
}

#[test]
fn an_activation_undone_by_someone_else_is_redone_after_the_drain() {
    let mut w = staged().cordoned();
    w.mem.last_drain = Some((at(999), 0, 0));
    assert_eq!(w.decide(), Step::Activate);
}

// === After the reboot ===

#[test]
fn booted_into_the_new_version_reports_rebooted_into_update() {
    let w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).cordoned().booted_new();
    assert!(
        matches!(w.decide(), Step::Report(r) if r.state == ShadowState::RebootedIntoUpdate && r.current_version == "1.21.0")
    );
}

#[test]
fn the_walk_after_booting_the_granted_version_does_not_wait_for_a_refresh() {
    // The boot reset the host's update status; the node holds its slot.
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).cordoned().booted_new();
    w.host.update = None;
    assert!(
        matches!(w.decide(), Step::Report(r) if r.state == ShadowState::RebootedIntoUpdate && r.target_version.is_none())
    );
    let mut w = w.state(ShadowState::MonitoringUpdate);
    w.node = OwnNode { ready: true, ..Default::default() };
    w.status().state_transition_timestamp = Some(MicroTime(at(800)));
    w.mem.health = Some((at(999), vec![]));
    assert!(matches!(w.decide(), Step::Report(r) if r.state == ShadowState::Idle && r.target_version.is_none()));
    let mut w = w.state(ShadowState::Idle);
    w.status().current_version = "1.21.0".into();
    w.status().target_version = String::new();
    assert_eq!(w.decide(), Step::Release { slot: "brupop-slot-0".into() });
    // Once the slot is given back, the status is initialized as after any boot.
    w.lease = None;
    assert_eq!(w.decide(), Step::Refresh);
}

#[test]
fn booted_back_into_the_old_version_is_a_rollback() {
    let w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).cordoned();
    // The update status was reset by the boot and re-created by a refresh: Available, nothing staged.
    let step = w.decide();
    assert!(is_fail(&step, FailureReason::RolledBack), "{step:?}");
}

#[test]
fn rebooted_into_update_lifts_our_cordon() {
    let w = World::idle().granted().state(ShadowState::RebootedIntoUpdate).cordoned().booted_new();
    assert_eq!(w.decide(), Step::Uncordon);
}

#[test]
fn an_admins_cordon_is_kept_after_the_update() {
    let mut w = World::idle().granted().state(ShadowState::RebootedIntoUpdate).booted_new();
    w.node.unschedulable = true;
    assert!(matches!(w.decide(), Step::Report(r) if r.state == ShadowState::MonitoringUpdate));
}

#[test]
fn a_crash_before_uncordon_is_repaired_during_monitoring() {
    let w = World::idle().granted().state(ShadowState::MonitoringUpdate).booted_new().cordoned();
    assert_eq!(w.decide(), Step::Uncordon);
}

#[test]
fn idle_on_the_granted_version_releases_the_slot() {
    let mut w = World::idle().granted().booted_new();
    w.status().current_version = "1.21.0".into();
    w.status().target_version = String::new();
    assert_eq!(w.decide(), Step::Release { slot: "brupop-slot-0".into() });
}

#[test]
fn after_a_crash_between_reboot_and_report_the_walk_resumes_at_the_report() {
    let mut w = World::idle().granted().state(ShadowState::StagedAndPerformedUpdate).cordoned().booted_new();
    w.mem =
        Memory { lease_slot: Some("brupop-slot-0".into()), lease_valid_until: Some(at(1100)), ..Default::default() };
    assert!(matches!(w.decide(), Step::Report(r) if r.state == ShadowState::RebootedIntoUpdate));
}

mod failures;
mod gates;
mod memory;
mod reboot;
