//! The one rule by which an agent's status report becomes its shadow's
//! status ([`apply_report`]), and the slot request ([`request_slot`]). Only
//! the authproxy writes shadow statuses, so the rule lives here; pure (the
//! caller passes the time). docs/protocol.md section 1 states it.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use model::shadow::{Failure, RebootPending, condition};
use model::wire::StatusReport;
use model::{BottlerocketShadowStatus, ShadowState};

/// The status after `report`, given the previous one (`None` for a new shadow).
///
/// Rules (the authproxy's, written down in `docs/protocol.md`):
/// - state and versions are the report's; `state_transition_timestamp` is `now`
///   when the state changes;
/// - a failure with an id not seen before becomes `last_failure` (time `now`)
///   and adds one to `crash_count`; the same id again is a retry and changes nothing;
/// - `MonitoringUpdate → Idle` is a completed update: `crash_count` goes to 0
///   and `last_failure` is cleared;
/// - `slot_requested_at` survives only while the node rests with an update available;
/// - `reboot_pending` is the report's (boot ID, and the time it was first
///   reported): every report of a pending reboot carries it, any other
///   report clears it;
/// - conditions are recomputed, keeping transition times of unchanged ones.
pub fn apply_report(
    prev: Option<&BottlerocketShadowStatus>,
    report: &StatusReport,
    now: Timestamp,
) -> BottlerocketShadowStatus {
    let default = BottlerocketShadowStatus::default();
    let prev_or_default = prev.unwrap_or(&default);
    let mut next = prev_or_default.clone();
    next.current_version = report.current_version.clone();
    // As the original operator writes it: the running version when none is offered.
    next.target_version = report.target_version.clone().unwrap_or_else(|| report.current_version.clone());
    next.current_state = report.state;
    if prev.is_none_or(|p| p.current_state != report.state) {
        next.state_transition_timestamp = Some(MicroTime(now));
    }
    if let Some(f) = &report.failure {
        let seen = prev_or_default.last_failure.as_ref().is_some_and(|l| l.id == f.id);
        if !seen {
            next.last_failure = Some(Failure {
                id: f.id,
                reason: f.reason,
                message: f.message.clone(),
                time: Time(now),
                state: prev_or_default.current_state,
            });
            next.crash_count = prev_or_default.crash_count.saturating_add(1);
            next.state_transition_failure_timestamp = Some(Time(now));
        }
    }
    next.reboot_pending = report.reboot_pending_boot_id.as_ref().map(|boot_id| RebootPending {
        boot_id: boot_id.clone(),
        since: prev_or_default
            .reboot_pending
            .as_ref()
            .filter(|p| p.boot_id == *boot_id)
            .map_or(Time(now), |p| p.since.clone()),
    });
    // The walk's record of pods: set once before the drain, kept while the
    // node updates, gone when it rests.
    if report.pods_before_drain.is_some() {
        next.pods_before_drain = report.pods_before_drain.clone();
    } else if report.state.is_resting() {
        next.pods_before_drain = None;
    }
    if prev_or_default.current_state == ShadowState::MonitoringUpdate && report.state == ShadowState::Idle {
        next.crash_count = 0;
        next.last_failure = None;
    }
    if !(next.current_state.is_resting() && next.offered_version().is_some()) {
        next.slot_requested_at = None;
    }
    next.conditions = conditions(&next, &prev_or_default.conditions, now);
    next
}

/// The status after a slot request: `slot_requested_at` is set to `now`
/// unless already set. `None` if the node may not ask (it is updating, or
/// has nothing to update to).
pub fn request_slot(status: &BottlerocketShadowStatus, now: Timestamp) -> Option<BottlerocketShadowStatus> {
    if !status.current_state.is_resting() || status.offered_version().is_none() {
        return None;
    }
    let mut next = status.clone();
    if next.slot_requested_at.is_none() {
        next.slot_requested_at = Some(MicroTime(now));
    }
    Some(next)
}

fn conditions(status: &BottlerocketShadowStatus, prev: &[Condition], now: Timestamp) -> Vec<Condition> {
    let up_to_date = status.offered_version().is_none();
    let failed = status.current_state == ShadowState::ErrorReset;
    let wanted: [(&str, bool, &str, String); 3] = [
        (
            condition::UP_TO_DATE,
            up_to_date,
            if up_to_date { "NoUpdateAvailable" } else { "UpdateAvailable" },
            match status.offered_version() {
                Some(t) => format!("running {}, {t} is available", status.current_version),
                None => format!("running {}, no newer version available", status.current_version),
            },
        ),
        (
            condition::UPDATING,
            status.current_state.is_updating(),
            status.current_state.as_str(),
            format!("update walk state {}", status.current_state),
        ),
        (
            condition::UPDATE_FAILED,
            failed,
            status.last_failure.as_ref().filter(|_| failed).map_or("NoFailure", |f| f.reason.as_str()),
            status.last_failure.as_ref().filter(|_| failed).map_or_else(String::new, |f| f.message.clone()),
        ),
    ];
    wanted
        .into_iter()
        .map(|(type_, is_true, reason, message)| {
            let status_str = if is_true { "True" } else { "False" };
            let kept = prev.iter().find(|c| c.type_ == type_ && c.status == status_str);
            Condition {
                type_: type_.to_owned(),
                status: status_str.to_owned(),
                reason: reason.to_owned(),
                message,
                last_transition_time: kept.map_or(Time(now), |c| c.last_transition_time.clone()),
                observed_generation: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::FailureReason;
    use model::wire::FailureReport;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn report(state: ShadowState, current: &str, target: Option<&str>) -> StatusReport {
        StatusReport {
            pods_before_drain: None,
            state,
            current_version: current.into(),
            target_version: target.map(Into::into),
            failure: None,
            reboot_pending_boot_id: None,
        }
    }

    #[test]
    fn first_report_creates_a_status_with_conditions() {
        let now = t("2026-11-27T10:00:00Z");
        let s = apply_report(None, &report(ShadowState::Idle, "1.20.0", Some("1.21.0")), now);
        assert_eq!(s.current_state, ShadowState::Idle);
        assert_eq!(s.offered_version(), Some("1.21.0"));
        assert_eq!(s.state_transition_timestamp, Some(MicroTime(now)));
        let up = s.conditions.iter().find(|c| c.type_ == condition::UP_TO_DATE).unwrap();
        assert_eq!((up.status.as_str(), up.reason.as_str()), ("False", "UpdateAvailable"));
    }

    #[test]
    fn target_equal_to_current_means_no_update() {
        let s = apply_report(None, &report(ShadowState::Idle, "1.20.0", Some("1.20.0")), t("2026-11-27T10:00:00Z"));
        assert_eq!(s.offered_version(), None);
        assert_eq!(s.target_version, "1.20.0", "the running version, as the original operator writes it");
    }

    #[test]
    fn a_pending_reboot_is_kept_with_its_first_time_while_reported_and_cleared_after() {
        let t0 = t("2026-11-27T10:00:00Z");
        let walking = apply_report(None, &report(ShadowState::StagedAndPerformedUpdate, "1.20.0", Some("1.21.0")), t0);
        let pending = StatusReport {
            failure: Some(FailureReport { id: 1, reason: FailureReason::RebootFailed, message: "still up".into() }),
            reboot_pending_boot_id: Some("boot-1".into()),
            ..report(ShadowState::ErrorReset, "1.20.0", Some("1.21.0"))
        };
        let t1 = t("2026-11-27T10:05:00Z");
        let once = apply_report(Some(&walking), &pending, t1);
        let p = once.reboot_pending.clone().unwrap();
        assert_eq!((p.boot_id.as_str(), p.since.0), ("boot-1", t1));
        let again = apply_report(Some(&once), &pending, t("2026-11-27T10:06:00Z"));
        assert_eq!(again.reboot_pending.unwrap().since.0, t1, "the time it was first reported");
        let after =
            apply_report(Some(&once), &report(ShadowState::ErrorReset, "1.21.0", None), t("2026-11-27T10:09:00Z"));
        assert_eq!(after.reboot_pending, None);
    }

    #[test]
    fn the_record_of_pods_is_kept_while_the_node_updates_and_dropped_when_it_rests() {
        let t0 = t("2026-11-27T10:00:00Z");
        let pods = vec![model::walk::RecordedPod {
            namespace: "ns".into(),
            name: "logs-a".into(),
            daemon_set: Some("logs".into()),
            stays: true,
        }];
        let record = StatusReport {
            pods_before_drain: Some(pods.clone()),
            ..report(ShadowState::StagedAndPerformedUpdate, "1.20.0", Some("1.21.0"))
        };
        let recorded = apply_report(None, &record, t0);
        assert_eq!(recorded.pods_before_drain.as_ref(), Some(&pods));
        let rebooted = apply_report(Some(&recorded), &report(ShadowState::RebootedIntoUpdate, "1.21.0", None), t0);
        let monitoring = apply_report(Some(&rebooted), &report(ShadowState::MonitoringUpdate, "1.21.0", None), t0);
        assert_eq!(monitoring.pods_before_drain.as_ref(), Some(&pods), "kept through the reboot");
        let done = apply_report(Some(&monitoring), &report(ShadowState::Idle, "1.21.0", None), t0);
        assert_eq!(done.pods_before_drain, None);
    }

    #[test]
    fn a_failure_is_recorded_once_even_when_the_report_is_retried() {
        let t0 = t("2026-11-27T10:00:00Z");
        let walking = apply_report(None, &report(ShadowState::StagedAndPerformedUpdate, "1.20.0", Some("1.21.0")), t0);
        let failed = StatusReport {
            failure: Some(FailureReport { id: 1, reason: FailureReason::RolledBack, message: "booted 1.20.0".into() }),
            ..report(ShadowState::ErrorReset, "1.20.0", Some("1.21.0"))
        };
        let t1 = t("2026-11-27T10:01:00Z");
        let once = apply_report(Some(&walking), &failed, t1);
        assert_eq!(once.crash_count, 1);
        let f = once.last_failure.clone().unwrap();
        assert_eq!(
            (f.id, f.reason, f.state, f.time),
            (1, FailureReason::RolledBack, ShadowState::StagedAndPerformedUpdate, Time(t1))
        );
        let twice = apply_report(Some(&once), &failed, t("2026-11-27T10:02:00Z"));
        assert_eq!(twice, once, "a retried report must not count a second failure");
    }

    #[test]
    fn completing_an_update_resets_crash_count_and_failure() {
        let now = t("2026-11-27T10:00:00Z");
        let mut monitoring = apply_report(None, &report(ShadowState::MonitoringUpdate, "1.21.0", None), now);
        monitoring.crash_count = 2;
        monitoring.last_failure = Some(Failure {
            id: 2,
            reason: FailureReason::DrainBlocked,
            message: "pdb".into(),
            time: Time(now),
            state: ShadowState::StagedAndPerformedUpdate,
        });
        let done = apply_report(Some(&monitoring), &report(ShadowState::Idle, "1.21.0", None), now);
        assert_eq!((done.crash_count, done.last_failure.clone()), (0, None));
    }

    #[test]
    fn slot_request_is_kept_while_waiting_and_dropped_when_walking() {
        let now = t("2026-11-27T10:00:00Z");
        let idle = apply_report(None, &report(ShadowState::Idle, "1.20.0", Some("1.21.0")), now);
        let waiting = request_slot(&idle, now).unwrap();
        assert_eq!(waiting.slot_requested_at, Some(MicroTime(now)));
        let again = request_slot(&waiting, t("2026-11-27T10:05:00Z")).unwrap();
        assert_eq!(again.slot_requested_at, Some(MicroTime(now)), "asking again keeps the place in the queue");
        let still = apply_report(Some(&again), &report(ShadowState::Idle, "1.20.0", Some("1.21.0")), now);
        assert!(still.slot_requested_at.is_some());
        let walking =
            apply_report(Some(&still), &report(ShadowState::StagedAndPerformedUpdate, "1.20.0", Some("1.21.0")), now);
        assert_eq!(walking.slot_requested_at, None);
        assert!(request_slot(&walking, now).is_none(), "an updating node cannot ask for a second slot");
        let up_to_date = apply_report(None, &report(ShadowState::Idle, "1.21.0", None), now);
        assert!(request_slot(&up_to_date, now).is_none(), "nothing to update to");
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let t0 = t("2026-11-27T10:00:00Z");
        let a = apply_report(None, &report(ShadowState::Idle, "1.20.0", Some("1.21.0")), t0);
        let b = apply_report(
            Some(&a),
            &report(ShadowState::StagedAndPerformedUpdate, "1.20.0", Some("1.21.0")),
            t("2026-11-27T10:09:00Z"),
        );
        let find =
            |s: &BottlerocketShadowStatus, ty: &str| s.conditions.iter().find(|c| c.type_ == ty).unwrap().clone();
        assert_eq!(find(&b, condition::UP_TO_DATE).last_transition_time, Time(t0));
        assert_eq!(find(&b, condition::UPDATING).status, "True");
        assert_eq!(find(&b, condition::UPDATING).last_transition_time, Time(t("2026-11-27T10:09:00Z")));
    }
}
