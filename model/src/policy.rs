//! The `UpdatePolicy` custom resource: one object, `default`, in the operator
//! namespace, holding every knob of the rollout.
//!
//! People write its spec (`kubectl patch`/`edit`); the leader writes its
//! status (whether grants run and, if not, why). One object for every knob
//! means nothing is edited by people and the leader at once.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::state::FailureReason;

/// The rollout's settings. Every field is optional; the leader's flags give the defaults.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "brupop.bottlerocket.aws",
    version = "v1",
    kind = "UpdatePolicy",
    plural = "updatepolicies",
    singular = "updatepolicy",
    shortname = "brupolicy",
    namespaced,
    status = "UpdatePolicyStatus",
    doc = "The rollout's settings (spec, written by people) and whether grants run (status, written by the leader).",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Running, Paused, OutsideWindow, Halted, Stopped or InvalidSpec"}"#,
    printcolumn = r#"{"name":"Slots","type":"integer","jsonPath":".status.slots","description":"Concurrent updates allowed now"}"#,
    printcolumn = r#"{"name":"Held","type":"integer","jsonPath":".status.slotsHeld","description":"Slots held by updating nodes"}"#,
    printcolumn = r#"{"name":"Waiting","type":"integer","jsonPath":".status.nodesWaiting","description":"Nodes waiting for a slot"}"#,
    printcolumn = r#"{"name":"Failures","type":"integer","jsonPath":".status.consecutiveFailures","description":"Consecutive update failures"}"#,
    printcolumn = r#"{"name":"Until","type":"date","jsonPath":".status.haltedUntil","description":"End of the current halt"}"#,
    printcolumn = r#"{"name":"Next-Window","type":"string","jsonPath":".status.nextWindowStart","description":"Start of the next maintenance window"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","description":"Why grants run or not"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePolicySpec {
    /// How many nodes may update at once: a count (`3`) or a percentage of
    /// managed nodes (`"10%"`, rounded down, never below 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_updates: Option<IntOrString>,
    /// Stop granting new slots; nodes already updating finish.
    #[serde(default)]
    pub paused: bool,
    /// New grants only start inside one of these windows, e.g.
    /// `"Mon-Fri 02:00-05:00 Europe/Berlin"`, `"Sat,Sun 22:00+6h UTC"`, or a
    /// cron expression of the original operator (`"0 0 23 * * Mon-Fri *"`,
    /// a one-hour window in UTC). Empty: always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub update_windows: Vec<String>,
    /// First halt after a failure (humantime, e.g. `"5m"`); doubles per consecutive failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_backoff: Option<String>,
    /// Longest halt (humantime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_backoff_max: Option<String>,
    /// After this many consecutive failures grants stop until `resumeRequest` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i64>", range(min = 0))]
    pub max_consecutive_failures: Option<u32>,
    /// Set to a new value (for example the current time) to end a halt or a
    /// stop and reset the failure count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_request: Option<String>,
    /// The longest one node may hold a slot for one walk (a duration such as
    /// `90m`); past it the leader takes the slot back (`SlotHeldTooLong`) and
    /// grants that node nothing for a backoff. Default: the leader's
    /// `--max-slot-hold` (90m), above the longest walk the agent's shipped
    /// deadlines allow (82m; docs/protocol.md section 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_slot_hold: Option<String>,
    /// Also update nodes an administrator cordoned (they stay cordoned afterwards).
    #[serde(default)]
    pub update_cordoned_nodes: bool,
}

/// Whether grants run, as the leader last decided. Written by the leader only.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePolicyStatus {
    #[serde(default)]
    pub phase: Phase,
    /// One sentence: why grants run or not.
    #[serde(default)]
    pub message: String,
    /// Halted until this time after a failure (phase `Halted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted_until: Option<Time>,
    /// The failure that caused the current halt or stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt_reason: Option<FailureReason>,
    /// Update-implicating failures since the last completed update or resume.
    #[serde(default)]
    #[schemars(with = "i64", range(min = 0))]
    pub consecutive_failures: u32,
    /// Failures the leader counted, newest last (at most 50, plus any not yet
    /// acknowledged on their shadow). Each failure is counted once: see `docs/protocol.md`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_failures: Vec<RecordedFailure>,
    /// The grants the leader made and has not yet seen end: each is written
    /// here before its slot Lease, so a slot held without an entry here was
    /// not granted by the leader (it is freed), and only a walk with an entry
    /// can halt the rollout or complete an update. Absent when written by a
    /// leader that kept no ledger: the next leader adopts the grants it finds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<GrantRecord>>,
    /// Nodes the leader grants nothing to until `until`: each held a slot
    /// past `maxSlotHold`. The backoff doubles per offence (from
    /// `failureBackoff`, up to `failureBackoffMax`); an entry lasts as long
    /// as the node's shadow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_backoffs: Vec<NodeBackoff>,
    /// The `spec.resumeRequest` the leader last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_resume: Option<String>,
    /// Start of the next maintenance window, when outside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window_start: Option<Time>,
    /// Slots allowed now.
    #[serde(default)]
    #[schemars(with = "i64", range(min = 0))]
    pub slots: u32,
    #[serde(default)]
    #[schemars(with = "i64", range(min = 0))]
    pub slots_held: u32,
    #[serde(default)]
    #[schemars(with = "i64", range(min = 0))]
    pub slots_free: u32,
    #[serde(default)]
    #[schemars(with = "i64", range(min = 0))]
    pub nodes_waiting: u32,
    #[serde(default)]
    #[schemars(with = "i64", range(min = 0))]
    pub managed_nodes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The rollout's phase, shown by `kubectl get updatepolicy`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Slots are granted to waiting nodes.
    #[default]
    Running,
    /// `spec.paused` is true.
    Paused,
    /// Outside every maintenance window; see `nextWindowStart`.
    OutsideWindow,
    /// Halted after a failure until `haltedUntil`.
    Halted,
    /// Stopped after `maxConsecutiveFailures`; needs `spec.resumeRequest`.
    Stopped,
    /// The spec has a value the leader cannot use (the message names it); no
    /// grants until it is fixed, so a typo never widens a rollout.
    InvalidSpec,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "Running",
            Phase::Paused => "Paused",
            Phase::OutsideWindow => "OutsideWindow",
            Phase::Halted => "Halted",
            Phase::Stopped => "Stopped",
            Phase::InvalidSpec => "InvalidSpec",
        }
    }
}

/// One counted failure, as kept in the policy status.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecordedFailure {
    /// Identifies the failure: `<shadow uid>#<failure id>` for
    /// agent-reported ones, `<slot>@<holder>@<acquireTime>` for expired slots.
    pub key: String,
    pub node: String,
    pub reason: FailureReason,
    pub message: String,
    pub time: Time,
    /// Reported by a node that held no grant of the leader for it: recorded,
    /// never counted toward a halt whatever its reason.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ungranted: bool,
}

/// One grant in the leader's ledger ([`UpdatePolicyStatus::grants`]).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GrantRecord {
    pub node: String,
    /// The uid of the node's BottlerocketShadow when granted: a shadow
    /// re-created under the same node name is not the one granted.
    pub shadow_uid: String,
    pub slot: String,
    /// The version granted.
    pub version: String,
    pub granted_at: Time,
}

/// A node the leader backs off ([`UpdatePolicyStatus::node_backoffs`]).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeBackoff {
    pub node: String,
    pub shadow_uid: String,
    pub until: Time,
    /// How many times this node's walk was cut at `maxSlotHold`.
    #[schemars(with = "i64", range(min = 1))]
    pub offences: u32,
}

/// Key of an agent-reported failure in [`RecordedFailure::key`]: the
/// shadow's uid (node names are reused, failure ids restart on a new
/// shadow) and the failure's id.
pub fn failure_key(shadow_uid: &str, id: u64) -> String {
    format!("{shadow_uid}#{id}")
}

/// Key of an expired slot in [`RecordedFailure::key`].
pub fn expiry_key(slot: &str, holder: &str, acquired: &str) -> String {
    format!("{slot}@{holder}@{acquired}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_accepts_a_count_or_a_percentage() {
        let p: UpdatePolicySpec = serde_json::from_str(r#"{"maxConcurrentUpdates":"10%","paused":true}"#).unwrap();
        assert_eq!(p.max_concurrent_updates, Some(IntOrString::String("10%".into())));
        assert!(p.paused);
        let p: UpdatePolicySpec = serde_json::from_str(r#"{"maxConcurrentUpdates":3}"#).unwrap();
        assert_eq!(p.max_concurrent_updates, Some(IntOrString::Int(3)));
    }

    #[test]
    fn empty_status_is_running() {
        let s: UpdatePolicyStatus = serde_json::from_str("{}").unwrap();
        assert_eq!(s.phase, Phase::Running);
    }
}
