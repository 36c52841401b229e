//! The `BottlerocketShadow` custom resource: one per managed node, named
//! `brs-<node>`, in the operator namespace.
//!
//! Its spec is written only by the leader (what the node may do); its status
//! only by the node's agent, through the authproxy (what the node is doing;
//! the authproxy's `report` module turns an agent's report into a status).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::state::{FailureReason, ShadowState};
use crate::walk::{RecordedPod, WalkSpec};

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
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.current_state","description":"Where the node is in its update walk"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.current_version","description":"Running OS version"}"#,
    printcolumn = r#"{"name":"Target State","type":"string","jsonPath":".spec.state","description":"What the leader allows: Idle, or StagedAndPerformedUpdate (an update granted)"}"#,
    printcolumn = r#"{"name":"Target Version","type":"string","jsonPath":".spec.version","description":"Version the leader granted an update to"}"#,
    printcolumn = r#"{"name":"Offered","type":"string","jsonPath":".status.target_version","description":"Version the host would update to (the running one when up to date)"}"#,
    printcolumn = r#"{"name":"Crash Count","type":"integer","jsonPath":".status.crash_count","description":"Failed update attempts since the last completed update"}"#,
    printcolumn = r#"{"name":"Slot","type":"string","jsonPath":".spec.slot","description":"Update slot (Lease) the node holds"}"#,
    printcolumn = r#"{"name":"Waiting","type":"date","jsonPath":".status.slot_requested_at","description":"How long the node has been waiting for a slot"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.last_failure.reason","description":"Why the last update attempt failed"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "snake_case")]
pub struct BottlerocketShadowSpec {
    /// `Idle`: no update granted (a node part-way through its walk must stop
    /// and undo it). `StagedAndPerformedUpdate`: an update to `version` is
    /// granted; the agent walks it to the end by itself while it holds `slot`.
    pub state: ShadowState,
    /// When the leader last changed `state` (microseconds: the leader compares
    /// it with slot Lease times).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_transition_timestamp: Option<MicroTime>,
    /// The version the node may update to (the node's offered version at grant time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The slot Lease granted to this node (`brupop-slot-<n>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The id of the last failure of this node that the leader has counted.
    /// A `status.last_failure` with a larger id is not yet counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i64>", range(min = 0))]
    pub acknowledged_failure: Option<u64>,
    /// The walk settings granted with the slot (the UpdatePolicy's `health`
    /// and `drain` at grant time); absent ones are the agent's flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<WalkSpec>,
}

/// What the node is doing. Written by the node's agent through the authproxy only.
///
/// Field names and meanings are the original operator's where they mean the
/// same (`current_version`, `target_version`, `current_state`,
/// `crash_count`, `state_transition_failure_timestamp`); every field reads
/// leniently (a missing one is its default), so a status written under
/// other names (an older build's) is simply re-reported by its agent.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "snake_case")]
pub struct BottlerocketShadowStatus {
    /// The running OS version.
    #[serde(default)]
    pub current_version: String,
    /// The version the host would update to; the running version when it
    /// offers none (as the original operator writes it: compare it with
    /// `current_version`). See [`BottlerocketShadowStatus::offered_version`].
    #[serde(default)]
    pub target_version: String,
    #[serde(default)]
    pub current_state: ShadowState,
    /// Failed update attempts since the last completed update.
    #[serde(default)]
    #[schemars(with = "i64", range(min = 0))]
    pub crash_count: u32,
    /// When the last failure was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_transition_failure_timestamp: Option<Time>,
    /// When `current_state` last changed (the start of monitoring, for
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
    /// Set while a reboot the host accepted has not happened by the agent's
    /// `--reboot-timeout`: the node keeps its cordon and its slot until its
    /// Node reports another boot ID, or a person releases it (annotation
    /// `brupop.bottlerocket.aws/release-reboot` set to this boot ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_pending: Option<RebootPending>,
    /// The pods that ran, Ready, on the node when its walk began the
    /// drain: after the reboot the health check judges these (or their
    /// replacements on the node) and nothing else. Kept while the node
    /// updates, cleared when it rests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_before_drain: Option<Vec<RecordedPod>>,
    /// `UpToDate`, `Updating`, `UpdateFailed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A reboot the host accepted and has not carried out
/// ([`BottlerocketShadowStatus::reboot_pending`]).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub struct RebootPending {
    /// The Node's `status.nodeInfo.bootID` when the reboot was asked for.
    pub boot_id: String,
    /// When the agent gave up waiting for it (its `--reboot-timeout`).
    pub since: Time,
}

/// A failed update attempt, as recorded on the shadow.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
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

impl BottlerocketShadowSpec {
    /// The whole spec as a JSON merge patch: every field, an absent one as
    /// `null` (so the patch clears it). Only the leader writes the spec.
    pub fn merge_patch(&self) -> serde_json::Value {
        let full = BottlerocketShadowSpec {
            state: ShadowState::Idle,
            state_transition_timestamp: Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)),
            version: Some(String::new()),
            slot: Some(String::new()),
            acknowledged_failure: Some(0),
            walk: Some(WalkSpec::default()),
        };
        let mut patch = serde_json::to_value(self).unwrap_or_default();
        if let (Some(p), Ok(serde_json::Value::Object(all))) = (patch.as_object_mut(), serde_json::to_value(full)) {
            for key in all.keys() {
                p.entry(key.clone()).or_insert(serde_json::Value::Null);
            }
        }
        serde_json::json!({ "spec": patch })
    }
}

impl BottlerocketShadowStatus {
    /// The newer version the host offers, if any: `target_version` when it
    /// is set and differs from `current_version`.
    pub fn offered_version(&self) -> Option<&str> {
        Some(self.target_version.as_str()).filter(|t| !t.is_empty() && *t != self.current_version)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_spec_merge_patch_names_every_field_and_clears_the_absent_ones() {
        let spec =
            BottlerocketShadowSpec { state: ShadowState::Idle, acknowledged_failure: Some(3), ..Default::default() };
        let p = spec.merge_patch();
        assert_eq!(
            p,
            serde_json::json!({"spec": {
                "state": "Idle", "acknowledged_failure": 3,
                "state_transition_timestamp": null, "version": null, "slot": null, "walk": null,
            }})
        );
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
