//! The agent ↔ authproxy HTTP API, version `/v1`.
//!
//! Every request names the node in its path (`/v1/nodes/{node}/...`); the
//! authproxy takes the caller's node from its token and refuses a path naming
//! any other node. Request bodies refuse unknown fields (a typo is an error,
//! not a silently ignored setting); responses accept them, so agents tolerate
//! an authproxy that added fields.
//!
//! Compatibility rule for `/v1`: fields are only ever *added*, and only as
//! optional ones; the authproxy is upgraded before the agents. Anything else
//! is `/v2`.

use serde::{Deserialize, Serialize};

use crate::state::{FailureReason, ShadowState};

/// Path prefix of every endpoint.
pub const PREFIX: &str = "/v1/nodes/";

/// Largest request body the authproxy reads.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest failure message a report may carry (longer ones are refused).
pub const MAX_MESSAGE_LEN: usize = 2048;

/// The endpoints of `/v1`, each `POST /v1/nodes/{node}/<suffix>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Body [`StatusReport`]; answer [`ShadowReply`]. Creates the node's shadow if missing.
    ReportStatus,
    /// Body: optional [`StatusReport`] (applied first, in the same write);
    /// answer [`ShadowReply`]. Records `status.slot_requested_at`; never grants.
    RequestSlot,
    /// Body [`RenewSlot`]; answer [`SlotReply`], or 409 `NotHolder`.
    RenewSlot,
    /// Body [`ReleaseSlot`]; answer [`Released`].
    ReleaseSlot,
    /// Body [`CordonRequest`] (fenced); answer [`CordonReply`].
    Cordon,
    /// Body [`UncordonRequest`]; answer [`CordonReply`]. Not fenced: undoing is always allowed.
    Uncordon,
    /// Body [`DrainRequest`] (fenced); answer [`DrainReport`]. One round of evictions.
    Drain,
    /// Body [`HookRequest`] (fenced); answer [`HookReply`]. Runs the hook
    /// the shadow's grant names for that phase (`spec.walk.hooks`).
    Hook,
    /// No body; answer [`HookReply`]. Removes every hook mark. Not fenced:
    /// undoing is always allowed.
    ClearHooks,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::ReportStatus,
        Endpoint::RequestSlot,
        Endpoint::RenewSlot,
        Endpoint::ReleaseSlot,
        Endpoint::Cordon,
        Endpoint::Uncordon,
        Endpoint::Drain,
        Endpoint::Hook,
        Endpoint::ClearHooks,
    ];

    /// The last part of the path.
    pub fn suffix(self) -> &'static str {
        match self {
            Endpoint::ReportStatus => "status",
            Endpoint::RequestSlot => "slot/request",
            Endpoint::RenewSlot => "slot/renew",
            Endpoint::ReleaseSlot => "slot/release",
            Endpoint::Cordon => "cordon",
            Endpoint::Uncordon => "uncordon",
            Endpoint::Drain => "drain",
            Endpoint::Hook => "hook",
            Endpoint::ClearHooks => "hook/clear",
        }
    }

    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ReportStatus => "report_status",
            Endpoint::RequestSlot => "request_slot",
            Endpoint::RenewSlot => "renew_slot",
            Endpoint::ReleaseSlot => "release_slot",
            Endpoint::Cordon => "cordon",
            Endpoint::Uncordon => "uncordon",
            Endpoint::Drain => "drain",
            Endpoint::Hook => "hook",
            Endpoint::ClearHooks => "clear_hooks",
        }
    }

    /// The full path for `node`.
    pub fn path(self, node: &str) -> String {
        format!("{PREFIX}{node}/{}", self.suffix())
    }

    /// Splits a request path into the node it names and the endpoint.
    pub fn parse(path: &str) -> Option<(&str, Endpoint)> {
        let rest = path.strip_prefix(PREFIX)?;
        let (node, suffix) = rest.split_once('/')?;
        if node.is_empty() {
            return None;
        }
        let endpoint = Endpoint::ALL.into_iter().find(|e| e.suffix() == suffix)?;
        Some((node, endpoint))
    }
}

/// `POST .../status`: what the agent knows about its node. The authproxy stamps
/// the times (its clock, not the node's) and keeps the rest of the status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusReport {
    pub state: ShadowState,
    /// The running OS version (`/os` `version_id`).
    pub current_version: String,
    /// The version the host would update to (`chosen_update`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// Set when reporting `ErrorReset`. A report repeating the same `id` is a
    /// retry and changes nothing; a new `id` is a new failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReport>,
    /// With `ErrorReset` after `RebootFailed`: the host accepted the reboot
    /// and has not carried it out; this is the Node's boot ID when it was
    /// asked for. The node keeps its cordon and slot until that changes
    /// (shadow `status.reboot_pending`). Absent: no reboot is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_pending_boot_id: Option<String>,
    /// Sent once per walk, before the drain: the pods that ran Ready on the
    /// node (shadow `status.pods_before_drain`; at most
    /// [`crate::walk::RECORDED_PODS_MAX`]). Absent: the record is kept while
    /// the node updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_before_drain: Option<Vec<crate::walk::RecordedPod>>,
}

/// A failure as the agent reports it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureReport {
    /// Per-node failure number: one more than the larger of the shadow's
    /// `status.last_failure.id` and `spec.acknowledged_failure`.
    pub id: u64,
    pub reason: FailureReason,
    pub message: String,
}

/// Why a request body was refused before anything was changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidRequest {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} {value:?} is not a version (expected something like 1.21.0)")]
    Version { field: &'static str, value: String },
    #[error("failure message is {len} bytes long; at most {MAX_MESSAGE_LEN} are accepted")]
    MessageTooLong { len: usize },
    #[error("state ErrorReset needs a failure, and a failure needs state ErrorReset")]
    FailureWithoutErrorReset,
    #[error("failure id must be at least 1")]
    FailureId,
    #[error("rebootPendingBootId needs state ErrorReset with a failure, and must be 1 to 128 bytes")]
    RebootPending,
    #[error("slot {0:?} is not a slot name (expected brupop-slot-<n>)")]
    SlotName(String),
    #[error("a duration in seconds must be between 1 and 86400, not {0}")]
    Duration(i64),
    #[error("podsBeforeDrain: {0}")]
    RecordedPods(String),
    #[error("skipPodSelector {0:?} is not a label selector of at most 1024 characters")]
    Selector(String),
    #[error("gracePeriodSeconds must be within 0..=86400")]
    GracePeriod,
}

/// Versions as Bottlerocket spells them: dot-separated alphanumerics, `-`/`+` allowed.
fn check_version(field: &'static str, value: &str) -> Result<(), InvalidRequest> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.starts_with(|c: char| c.is_ascii_digit())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    if ok { Ok(()) } else { Err(InvalidRequest::Version { field, value: value.to_owned() }) }
}

impl StatusReport {
    /// Checks what serde cannot: versions look like versions, a failure comes with
    /// `ErrorReset` (and only then), messages are bounded.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        check_version("currentVersion", &self.current_version)?;
        if let Some(t) = &self.target_version {
            check_version("targetVersion", t)?;
        }
        match (&self.failure, self.state) {
            (Some(f), ShadowState::ErrorReset) => {
                if f.id == 0 {
                    return Err(InvalidRequest::FailureId);
                }
                if f.message.len() > MAX_MESSAGE_LEN {
                    return Err(InvalidRequest::MessageTooLong { len: f.message.len() });
                }
                Ok(())
            }
            (None, ShadowState::ErrorReset) | (Some(_), _) => Err(InvalidRequest::FailureWithoutErrorReset),
            (None, _) => Ok(()),
        }?;
        match &self.reboot_pending_boot_id {
            Some(b) if self.failure.is_none() || b.is_empty() || b.len() > 128 => Err(InvalidRequest::RebootPending),
            _ => Ok(()),
        }?;
        if let Some(pods) = &self.pods_before_drain {
            check_recorded_pods(self.state, pods)?;
        }
        Ok(())
    }
}

/// The record of pods is sent with `StagedAndPerformedUpdate` (the walk is
/// about to drain), bounded, and names only what could be pods.
fn check_recorded_pods(state: ShadowState, pods: &[crate::walk::RecordedPod]) -> Result<(), InvalidRequest> {
    let bad = |m: String| Err(InvalidRequest::RecordedPods(m));
    if state != ShadowState::StagedAndPerformedUpdate {
        return bad(format!("sent with state {state}; only with StagedAndPerformedUpdate"));
    }
    if pods.len() > crate::walk::RECORDED_PODS_MAX {
        return bad(format!("{} pods; at most {}", pods.len(), crate::walk::RECORDED_PODS_MAX));
    }
    for p in pods {
        let names = [Some(&p.namespace), Some(&p.name), p.daemon_set.as_ref()];
        if names.into_iter().flatten().any(|n| crate::parse::dns_subdomain("name", n).is_err()) {
            return bad(format!("{:?}/{:?} is not a pod's namespace and name", p.namespace, p.name));
        }
    }
    Ok(())
}

/// `POST .../slot/renew`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewSlot {
    pub slot: String,
    /// How long from now the Lease should stay valid. The authproxy caps it at
    /// its `--max-slot-lease` (documented in `docs/protocol.md`); the answer
    /// says what was granted.
    pub duration_seconds: i64,
}

impl RenewSlot {
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        check_slot(&self.slot)?;
        if !(1..=86_400).contains(&self.duration_seconds) {
            return Err(InvalidRequest::Duration(self.duration_seconds));
        }
        Ok(())
    }
}

fn check_slot(slot: &str) -> Result<(), InvalidRequest> {
    crate::names::slot_index(slot).map(|_| ()).ok_or_else(|| InvalidRequest::SlotName(slot.to_owned()))
}

/// `POST .../slot/release`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseSlot {
    pub slot: String,
}

impl ReleaseSlot {
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        check_slot(&self.slot)
    }
}

/// A slot Lease as the authproxy left it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SlotReply {
    pub slot: String,
    /// The Lease's resourceVersion after the write (orders it against watch events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    pub holder: Option<String>,
    /// When the Lease stops being valid unless renewed again (RFC 3339).
    pub expires_at: Option<jiff::Timestamp>,
    pub lease_duration_seconds: Option<i32>,
}

/// The fencing part of a disruptive request: the authproxy performs it only if
/// `slot` is held by the caller and stays valid for at least
/// `minRemainingSeconds` more; otherwise it answers 409 `NotHolder` (or
/// `LeaseTooShort`: renew first) and changes nothing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CordonRequest {
    pub slot: String,
    pub min_remaining_seconds: i64,
    /// Also add the load-balancer exclusion label (in the same patch).
    #[serde(default)]
    pub exclude_from_load_balancers: bool,
}

/// `POST .../drain`: one round, fenced like [`CordonRequest`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainRequest {
    pub slot: String,
    pub min_remaining_seconds: i64,
    /// Pods not to evict (a label selector): they stay on the node and are
    /// counted as skipped, like DaemonSet pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_pod_selector: Option<String>,
    /// The grace period each Eviction asks for (its `deleteOptions`);
    /// absent: each pod's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
    /// Delete the pods a PodDisruptionBudget still keeps (the walk's
    /// `drain.deleteBlockedPodsAfter` has passed). The authproxy checks the
    /// grant opted in and the time has come.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_blocked: bool,
}

/// `POST .../hook`: run the granted hook of `phase`, fenced like a cordon.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookRequest {
    pub slot: String,
    pub min_remaining_seconds: i64,
    pub phase: crate::walk::HookPhase,
}

impl HookRequest {
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        check_fence(&self.slot, self.min_remaining_seconds)
    }
}

/// The hook marks on the Node after a hook request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HookReply {
    /// The last hook that ran (`None`: no marks on the Node).
    #[serde(default)]
    pub phase: Option<crate::walk::HookPhase>,
    /// When it ran.
    #[serde(default)]
    pub since: Option<jiff::Timestamp>,
    /// Whether this request changed the Node.
    #[serde(default)]
    pub changed: bool,
}

/// `POST .../uncordon`: lifts our cordon (never an administrator's) and, if
/// asked, removes the load-balancer exclusion label we added.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UncordonRequest {
    #[serde(default)]
    pub include_in_load_balancers: bool,
}

fn check_fence(slot: &str, min_remaining_seconds: i64) -> Result<(), InvalidRequest> {
    check_slot(slot)?;
    if !(0..=86_400).contains(&min_remaining_seconds) {
        return Err(InvalidRequest::Duration(min_remaining_seconds));
    }
    Ok(())
}

impl CordonRequest {
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        check_fence(&self.slot, self.min_remaining_seconds)
    }
}

impl DrainRequest {
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        check_fence(&self.slot, self.min_remaining_seconds)?;
        if let Some(s) = &self.skip_pod_selector
            && (s.len() > crate::walk::SELECTOR_MAX_LENGTH as usize || crate::selector::parse(s).is_err())
        {
            return Err(InvalidRequest::Selector(s.chars().take(64).collect()));
        }
        if self.grace_period_seconds.is_some_and(|g| !(0..=crate::walk::GRACE_PERIOD_MAX_SECONDS).contains(&g)) {
            return Err(InvalidRequest::GracePeriod);
        }
        Ok(())
    }
}

/// Answer to a release.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Released {
    /// False when the caller did not hold the slot (already released, reclaimed
    /// or never granted): a retried release is not an error.
    pub released: bool,
}

/// The node as the authproxy left it after a cordon, uncordon or load-balancer change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CordonReply {
    pub unschedulable: bool,
    /// The cordon carries [`crate::names::CORDONED_ANNOTATION`].
    pub cordoned_by_us: bool,
    pub excluded_from_load_balancers: bool,
    /// The exclusion label carries [`crate::names::LB_EXCLUDED_ANNOTATION`].
    pub excluded_by_us: bool,
    /// Whether this request changed the Node.
    pub changed: bool,
}

/// The shadow after a status report or slot request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShadowReply {
    pub name: String,
    /// The shadow's resourceVersion after the write (orders it against watch events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    pub spec: crate::shadow::BottlerocketShadowSpec,
    pub status: Option<crate::shadow::BottlerocketShadowStatus>,
}

/// What happened to one pod in a drain round.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum PodOutcome {
    /// The Eviction API accepted it; the pod terminates within its grace period.
    Evicted,
    /// The pod is already terminating; nothing was sent.
    Terminating,
    /// Refused with 429 because of a PodDisruptionBudget.
    Blocked { message: String },
    /// The pod no longer exists.
    Gone,
    /// Any other refusal (the HTTP code and the server's message).
    Failed { code: u16, message: String },
    /// Its PodDisruptionBudget kept refusing; deleted as the walk's
    /// `drain.deleteBlockedPodsAfter` allows.
    Deleted,
}

/// One pod's line in a [`DrainReport`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodResult {
    pub namespace: String,
    pub name: String,
    #[serde(flatten)]
    pub outcome: PodOutcome,
}

/// Answer to a drain round. Pods owned by a DaemonSet and mirror pods are
/// skipped (counted, not listed); every other pod on the node is listed with
/// what happened to it. The node is drained when `remaining` is 0.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DrainReport {
    pub pods: Vec<PodResult>,
    /// Pods left on the node that must still go (evicted but terminating, blocked, failed).
    pub remaining: u32,
    /// DaemonSet-owned and mirror pods, which a drain leaves in place.
    pub skipped: u32,
}

impl DrainReport {
    /// Pods refused by a PodDisruptionBudget in this round.
    pub fn blocked(&self) -> usize {
        self.pods.iter().filter(|p| matches!(p.outcome, PodOutcome::Blocked { .. })).count()
    }
}

/// Body of every non-2xx answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    pub code: u16,
    /// Machine-readable cause, e.g. `NotHolder`, `NodeMismatch`, `InvalidBody`.
    pub reason: String,
    pub message: String,
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
