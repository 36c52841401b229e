//! The states of a node's update walk and the reasons an update can fail.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a node is in its update walk. The names are the original operator's,
/// so users moving over recognise them.
///
/// The walk is `Idle → StagedAndPerformedUpdate → RebootedIntoUpdate →
/// MonitoringUpdate → Idle`; any failure ends in `ErrorReset` (the node was
/// put back into a safe state: uncordoned, staged update deactivated if it had
/// not rebooted, slot released).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShadowState {
    /// Not updating. The node may be waiting for a slot (`status.slot_requested_at`).
    #[default]
    Idle,
    /// The update image is written to the inactive partition and marked to boot next.
    StagedAndPerformedUpdate,
    /// The node rebooted and runs the desired version.
    RebootedIntoUpdate,
    /// The node is uncordoned and its health checked (the node and the pods it ran before the
    /// drain Ready, watched at least `--health-minimum`) before the slot is released.
    MonitoringUpdate,
    /// The last attempt failed and was undone; `status.last_failure` says why.
    ErrorReset,
}

impl ShadowState {
    /// The name as it appears in the API and in `kubectl get brs`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowState::Idle => "Idle",
            ShadowState::StagedAndPerformedUpdate => "StagedAndPerformedUpdate",
            ShadowState::RebootedIntoUpdate => "RebootedIntoUpdate",
            ShadowState::MonitoringUpdate => "MonitoringUpdate",
            ShadowState::ErrorReset => "ErrorReset",
        }
    }

    /// All states, in walk order, for metrics that export one series per state.
    pub const ALL: [ShadowState; 5] = [
        ShadowState::Idle,
        ShadowState::StagedAndPerformedUpdate,
        ShadowState::RebootedIntoUpdate,
        ShadowState::MonitoringUpdate,
        ShadowState::ErrorReset,
    ];

    /// True while the node is part-way through an update (it needs a slot to be there).
    pub fn is_updating(self) -> bool {
        matches!(
            self,
            ShadowState::StagedAndPerformedUpdate | ShadowState::RebootedIntoUpdate | ShadowState::MonitoringUpdate
        )
    }

    /// True in the two resting states, from which a node may ask for a slot.
    pub fn is_resting(self) -> bool {
        !self.is_updating()
    }
}

impl std::fmt::Display for ShadowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an update attempt failed. Recorded by the agent on its shadow
/// (`status.last_failure.reason`), except `SlotExpired` and `SlotHeldTooLong`,
/// which the leader records.
///
/// [`FailureReason::halts_fleet`] splits them: failures that implicate the
/// update itself halt all new grants; failures that are about one node (its
/// workloads, its connectivity) back off that node only.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    /// `prepare-update` finished with `cmd_status: Failed` (download or write of the image).
    PrepareFailed,
    /// `activate-update` finished with `cmd_status: Failed`.
    ActivateFailed,
    /// The reboot was refused by the host or the node did not come back by its deadline.
    RebootFailed,
    /// The node booted back into the old version (the bootloader rolled back).
    RolledBack,
    /// After the update the node, or its pods, did not become healthy within the monitoring time.
    HealthCheckFailed,
    /// The node's slot Lease expired without being released (the node or its agent vanished). Leader-recorded.
    SlotExpired,
    /// Evictions were refused by PodDisruptionBudgets until the drain deadline. Node-only.
    DrainBlocked,
    /// Evicted pods did not terminate before the drain deadline. Node-only.
    DrainTimeout,
    /// The agent found its slot gone before a disruptive step and undid its work. Node-only:
    /// the loss itself was counted as `SlotExpired` by the leader.
    SlotLost,
    /// The host's chosen update disappeared or the host cannot update in place. Node-only.
    UpdateUnavailable,
    /// The host update API kept failing (HTTP 500, malformed answers) before anything disruptive. Node-only.
    HostApiError,
    /// The node held its slot longer than the UpdatePolicy's `maxSlotHold`
    /// (renewing it all along): the leader took it back and backs the node
    /// off. Leader-recorded, node-only: one stuck or hostile node must not
    /// keep the others from updating, nor halt them.
    SlotHeldTooLong,
    /// Pods annotated not to be disrupted (`karpenter.sh/do-not-disrupt` or
    /// `brupop.bottlerocket.aws/do-not-disrupt`) still ran on the node when
    /// the walk's wait for them ended, before the cordon. Node-only.
    DoNotDisrupt,
    /// A reboot hook's confirmation (an annotation another system sets on
    /// the Node) did not come by the hook's timeout. Node-only.
    HookTimeout,
}

impl FailureReason {
    /// All reasons, for metrics that pre-create one series per reason.
    pub const ALL: [FailureReason; 14] = [
        FailureReason::PrepareFailed,
        FailureReason::ActivateFailed,
        FailureReason::RebootFailed,
        FailureReason::RolledBack,
        FailureReason::HealthCheckFailed,
        FailureReason::SlotExpired,
        FailureReason::DrainBlocked,
        FailureReason::DrainTimeout,
        FailureReason::SlotLost,
        FailureReason::UpdateUnavailable,
        FailureReason::HostApiError,
        FailureReason::SlotHeldTooLong,
        FailureReason::DoNotDisrupt,
        FailureReason::HookTimeout,
    ];

    /// Whether this failure implicates the update and so halts all new grants
    /// (with exponential backoff), or only backs off the node it happened on.
    pub fn halts_fleet(self) -> bool {
        match self {
            FailureReason::PrepareFailed
            | FailureReason::ActivateFailed
            | FailureReason::RebootFailed
            | FailureReason::RolledBack
            | FailureReason::HealthCheckFailed
            | FailureReason::SlotExpired => true,
            FailureReason::DrainBlocked
            | FailureReason::DrainTimeout
            | FailureReason::SlotLost
            | FailureReason::UpdateUnavailable
            | FailureReason::HostApiError
            | FailureReason::SlotHeldTooLong
            | FailureReason::DoNotDisrupt
            | FailureReason::HookTimeout => false,
        }
    }

    /// The name as it appears in the API, in metrics labels and in Events.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::PrepareFailed => "PrepareFailed",
            FailureReason::ActivateFailed => "ActivateFailed",
            FailureReason::RebootFailed => "RebootFailed",
            FailureReason::RolledBack => "RolledBack",
            FailureReason::HealthCheckFailed => "HealthCheckFailed",
            FailureReason::SlotExpired => "SlotExpired",
            FailureReason::DrainBlocked => "DrainBlocked",
            FailureReason::DrainTimeout => "DrainTimeout",
            FailureReason::SlotLost => "SlotLost",
            FailureReason::UpdateUnavailable => "UpdateUnavailable",
            FailureReason::HostApiError => "HostApiError",
            FailureReason::SlotHeldTooLong => "SlotHeldTooLong",
            FailureReason::DoNotDisrupt => "DoNotDisrupt",
            FailureReason::HookTimeout => "HookTimeout",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_serialize_as_the_original_operator_spells_them() {
        for s in ShadowState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::Value::String(s.as_str().into()));
            assert_eq!(serde_json::from_value::<ShadowState>(s.as_str().into()).unwrap(), s);
        }
    }

    #[test]
    fn failure_reasons_serialize_by_name() {
        for r in FailureReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::Value::String(r.as_str().into()));
        }
    }

    #[test]
    fn only_update_implicating_failures_halt_the_fleet() {
        let halting: Vec<_> = FailureReason::ALL.into_iter().filter(|r| r.halts_fleet()).collect();
        assert_eq!(
            halting,
            [
                FailureReason::PrepareFailed,
                FailureReason::ActivateFailed,
                FailureReason::RebootFailed,
                FailureReason::RolledBack,
                FailureReason::HealthCheckFailed,
                FailureReason::SlotExpired
            ]
        );
        assert!(!FailureReason::DrainBlocked.halts_fleet(), "a PDB blocking one node must not halt the fleet");
    }

    #[test]
    fn an_unknown_state_is_a_clear_error() {
        let err = serde_json::from_value::<ShadowState>("Rebooting".into()).unwrap_err();
        assert!(err.to_string().contains("unknown variant `Rebooting`"), "{err}");
    }
}
