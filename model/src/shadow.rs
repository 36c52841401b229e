//! The `BottlerocketShadow` custom resource: one per managed node, named
//! `brs-<node>`, in the operator namespace.
//!
//! Its spec is written only by the leader (what the node may do); its status
//! only by the node's agent, through the authproxy (what the node is doing).
//! [`BottlerocketShadowStatus::apply_report`] is the one rule by which a
//! report becomes a status; the authproxy applies it, tests check it here.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::state::{FailureReason, ShadowState};
use crate::wire::StatusReport;

/// What the leader allows this node to do. Written by the leader only.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "brupop.bottlerocket.aws",
    version = "v2",
    kind = "BottlerocketShadow",
    plural = "bottlerocketshadows",
    singular = "bottlerocketshadow",
    shortname = "brs",
    namespaced,
    status = "BottlerocketShadowStatus",
    doc = "A managed node's update state: spec written by the leader, status by the node's agent through the authproxy.",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.currentState","description":"Where the node is in its update walk"}"#,
    printcolumn = r#"{"name":"Desired","type":"string","jsonPath":".spec.version","description":"Version the leader granted an update to"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.currentVersion","description":"Running OS version"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".status.targetVersion","description":"Version the host would update to"}"#,
    printcolumn = r#"{"name":"Slot","type":"string","jsonPath":".spec.slot","description":"Update slot (Lease) the node holds"}"#,
    printcolumn = r#"{"name":"Waiting","type":"date","jsonPath":".status.slotRequestedAt","description":"How long the node has been waiting for a slot"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.lastFailure.reason","description":"Why the last update attempt failed"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BottlerocketShadowSpec {
    /// `Idle`: no update granted (a node part-way through its walk must stop
    /// and undo it). `StagedAndPerformedUpdate`: an update to `version` is
    /// granted; the agent walks it to the end by itself while it holds `slot`.
    pub state: ShadowState,
    /// When the leader last changed `state` (microseconds: the leader compares
    /// it with slot Lease times).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_transition_timestamp: Option<MicroTime>,
    /// The version the node may update to (the node's `targetVersion` at grant time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The slot Lease granted to this node (`brupop-slot-<n>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The id of the last failure of this node that the leader has counted.
    /// A `status.lastFailure` with a larger id is not yet counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i64>", range(min = 0))]
    pub acknowledged_failure: Option<u64>,
}

/// What the node is doing. Written by the node's agent through the authproxy only.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BottlerocketShadowStatus {
    /// The running OS version.
    pub current_version: String,
    /// The version the host would update to, when one is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    pub current_state: ShadowState,
    /// Failed update attempts since the last completed update.
    #[serde(default)]
    #[schemars(with = "i64", range(min = 0))]
    pub crash_count: u32,
    /// When the last failure was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_transition_failure_timestamp: Option<Time>,
    /// When `currentState` last changed (the start of monitoring, for
    /// example; microseconds, so a short monitoring time is exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_transition_timestamp: Option<MicroTime>,
    /// When the node asked for an update slot; cleared when it starts updating
    /// or no longer needs one. Waiting nodes are served in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_requested_at: Option<MicroTime>,
    /// The most recent failure; cleared when an update completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// `UpToDate`, `Updating`, `UpdateFailed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A failed update attempt, as recorded on the shadow.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Per-node failure number: one more than the previous failure or acknowledgement.
    #[schemars(with = "i64", range(min = 0))]
    pub id: u64,
    pub reason: FailureReason,
    pub message: String,
    pub time: Time,
    /// The state the walk was in when it failed.
    pub state: ShadowState,
}

/// Condition types on the shadow status.
pub mod condition {
    pub const UP_TO_DATE: &str = "UpToDate";
    pub const UPDATING: &str = "Updating";
    pub const UPDATE_FAILED: &str = "UpdateFailed";
}

impl BottlerocketShadow {
    /// The node this shadow belongs to (from its name).
    pub fn node_name(&self) -> Option<&str> {
        self.metadata.name.as_deref().and_then(crate::names::node_of_shadow)
    }

    /// A failure on the status that the leader has not counted yet.
    pub fn unacknowledged_failure(&self) -> Option<&Failure> {
        let failure = self.status.as_ref()?.last_failure.as_ref()?;
        (failure.id > self.spec.acknowledged_failure.unwrap_or(0)).then_some(failure)
    }

    /// The id the agent gives its next failure report.
    pub fn next_failure_id(&self) -> u64 {
        let reported = self.status.as_ref().and_then(|s| s.last_failure.as_ref()).map_or(0, |f| f.id);
        reported.max(self.spec.acknowledged_failure.unwrap_or(0)) + 1
    }
}

impl BottlerocketShadowStatus {
    /// The status after `report`, given the previous one (`None` for a new shadow).
    ///
    /// Rules (the authproxy's, written down in `docs/protocol.md`):
    /// - state and versions are the report's; `stateTransitionTimestamp` is `now`
    ///   when the state changes;
    /// - a failure with an id not seen before becomes `lastFailure` (time `now`)
    ///   and adds one to `crashCount`; the same id again is a retry and changes nothing;
    /// - `MonitoringUpdate → Idle` is a completed update: `crashCount` goes to 0
    ///   and `lastFailure` is cleared;
    /// - `slotRequestedAt` survives only while the node rests with an update available;
    /// - conditions are recomputed, keeping transition times of unchanged ones.
    pub fn apply_report(prev: Option<&Self>, report: &StatusReport, now: Timestamp) -> Self {
        let default = Self::default();
        let prev_or_default = prev.unwrap_or(&default);
        let mut next = prev_or_default.clone();
        next.current_version = report.current_version.clone();
        next.target_version = report.target_version.clone().filter(|t| *t != report.current_version);
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
        if prev_or_default.current_state == ShadowState::MonitoringUpdate && report.state == ShadowState::Idle {
            next.crash_count = 0;
            next.last_failure = None;
        }
        if !(next.current_state.is_resting() && next.target_version.is_some()) {
            next.slot_requested_at = None;
        }
        next.conditions = conditions(&next, &prev_or_default.conditions, now);
        next
    }

    /// The status after a slot request: `slotRequestedAt` is set to `now`
    /// unless already set. `None` if the node may not ask (it is updating, or
    /// has nothing to update to).
    pub fn request_slot(&self, now: Timestamp) -> Option<Self> {
        if !self.current_state.is_resting() || self.target_version.is_none() {
            return None;
        }
        let mut next = self.clone();
        if next.slot_requested_at.is_none() {
            next.slot_requested_at = Some(MicroTime(now));
        }
        Some(next)
    }
}

fn conditions(status: &BottlerocketShadowStatus, prev: &[Condition], now: Timestamp) -> Vec<Condition> {
    let up_to_date = status.target_version.is_none();
    let failed = status.current_state == ShadowState::ErrorReset;
    let wanted: [(&str, bool, &str, String); 3] = [
        (
            condition::UP_TO_DATE,
            up_to_date,
            if up_to_date { "NoUpdateAvailable" } else { "UpdateAvailable" },
            match &status.target_version {
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
    use crate::wire::FailureReport;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn report(state: ShadowState, current: &str, target: Option<&str>) -> StatusReport {
        StatusReport { state, current_version: current.into(), target_version: target.map(Into::into), failure: None }
    }

    #[test]
    fn first_report_creates_a_status_with_conditions() {
        let now = t("2026-11-27T10:00:00Z");
        let s = BottlerocketShadowStatus::apply_report(None, &report(ShadowState::Idle, "1.20.0", Some("1.21.0")), now);
        assert_eq!(s.current_state, ShadowState::Idle);
        assert_eq!(s.target_version.as_deref(), Some("1.21.0"));
        assert_eq!(s.state_transition_timestamp, Some(MicroTime(now)));
        let up = s.conditions.iter().find(|c| c.type_ == condition::UP_TO_DATE).unwrap();
        assert_eq!((up.status.as_str(), up.reason.as_str()), ("False", "UpdateAvailable"));
    }

    #[test]
    fn target_equal_to_current_means_no_update() {
        let s = BottlerocketShadowStatus::apply_report(
            None,
            &report(ShadowState::Idle, "1.20.0", Some("1.20.0")),
            t("2026-11-27T10:00:00Z"),
        );
        assert_eq!(s.target_version, None);
    }

    #[test]
    fn a_failure_is_recorded_once_even_when_the_report_is_retried() {
        let t0 = t("2026-11-27T10:00:00Z");
        let walking = BottlerocketShadowStatus::apply_report(
            None,
            &report(ShadowState::StagedAndPerformedUpdate, "1.20.0", Some("1.21.0")),
            t0,
        );
        let failed = StatusReport {
            failure: Some(FailureReport { id: 1, reason: FailureReason::RolledBack, message: "booted 1.20.0".into() }),
            ..report(ShadowState::ErrorReset, "1.20.0", Some("1.21.0"))
        };
        let t1 = t("2026-11-27T10:01:00Z");
        let once = BottlerocketShadowStatus::apply_report(Some(&walking), &failed, t1);
        assert_eq!(once.crash_count, 1);
        let f = once.last_failure.clone().unwrap();
        assert_eq!(
            (f.id, f.reason, f.state, f.time),
            (1, FailureReason::RolledBack, ShadowState::StagedAndPerformedUpdate, Time(t1))
        );
        let twice = BottlerocketShadowStatus::apply_report(Some(&once), &failed, t("2026-11-27T10:02:00Z"));
        assert_eq!(twice, once, "a retried report must not count a second failure");
    }

    #[test]
    fn completing_an_update_resets_crash_count_and_failure() {
        let now = t("2026-11-27T10:00:00Z");
        let mut monitoring =
            BottlerocketShadowStatus::apply_report(None, &report(ShadowState::MonitoringUpdate, "1.21.0", None), now);
        monitoring.crash_count = 2;
        monitoring.last_failure = Some(Failure {
            id: 2,
            reason: FailureReason::DrainBlocked,
            message: "pdb".into(),
            time: Time(now),
            state: ShadowState::StagedAndPerformedUpdate,
        });
        let done =
            BottlerocketShadowStatus::apply_report(Some(&monitoring), &report(ShadowState::Idle, "1.21.0", None), now);
        assert_eq!((done.crash_count, done.last_failure.clone()), (0, None));
    }

    #[test]
    fn slot_request_is_kept_while_waiting_and_dropped_when_walking() {
        let now = t("2026-11-27T10:00:00Z");
        let idle =
            BottlerocketShadowStatus::apply_report(None, &report(ShadowState::Idle, "1.20.0", Some("1.21.0")), now);
        let waiting = idle.request_slot(now).unwrap();
        assert_eq!(waiting.slot_requested_at, Some(MicroTime(now)));
        let again = waiting.request_slot(t("2026-11-27T10:05:00Z")).unwrap();
        assert_eq!(again.slot_requested_at, Some(MicroTime(now)), "asking again keeps the place in the queue");
        let still = BottlerocketShadowStatus::apply_report(
            Some(&again),
            &report(ShadowState::Idle, "1.20.0", Some("1.21.0")),
            now,
        );
        assert!(still.slot_requested_at.is_some());
        let walking = BottlerocketShadowStatus::apply_report(
            Some(&still),
            &report(ShadowState::StagedAndPerformedUpdate, "1.20.0", Some("1.21.0")),
            now,
        );
        assert_eq!(walking.slot_requested_at, None);
        assert!(walking.request_slot(now).is_none(), "an updating node cannot ask for a second slot");
        let up_to_date = BottlerocketShadowStatus::apply_report(None, &report(ShadowState::Idle, "1.21.0", None), now);
        assert!(up_to_date.request_slot(now).is_none(), "nothing to update to");
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let t0 = t("2026-11-27T10:00:00Z");
        let a = BottlerocketShadowStatus::apply_report(None, &report(ShadowState::Idle, "1.20.0", Some("1.21.0")), t0);
        let b = BottlerocketShadowStatus::apply_report(
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

    #[test]
    fn failure_ids_continue_after_the_leaders_acknowledgement() {
        let mut brs = BottlerocketShadow::new("brs-node-1", BottlerocketShadowSpec::default());
        assert_eq!(brs.next_failure_id(), 1);
        brs.spec.acknowledged_failure = Some(4);
        assert_eq!(brs.next_failure_id(), 5);
        assert_eq!(brs.node_name(), Some("node-1"));
        assert!(brs.unacknowledged_failure().is_none());
        brs.status = Some(BottlerocketShadowStatus {
            last_failure: Some(Failure {
                id: 5,
                reason: FailureReason::PrepareFailed,
                message: String::new(),
                time: Time(t("2026-11-27T10:00:00Z")),
                state: ShadowState::Idle,
            }),
            ..Default::default()
        });
        assert_eq!(brs.unacknowledged_failure().map(|f| f.id), Some(5));
        assert_eq!(brs.next_failure_id(), 6);
    }
}
