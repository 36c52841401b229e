//! What the decisions take (observed nodes, slots, shadows, settings) and
//! what they return (actions, the plan). Plain data.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use model::alert_gate::OnUnreachable;
use model::parse::Budget;
use model::policy::{RecordedFailure, UpdatePolicyStatus};
use model::{BottlerocketShadowSpec, BottlerocketShadowStatus, FailureReason};

use super::{EXPIRY_GRACE, add};

/// A managed node, reduced to what the decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedNode {
    pub name: String,
    pub ready: bool,
    pub unschedulable: bool,
    /// The cordon carries our annotation (so it is not an administrator's).
    pub cordoned_by_us: bool,
    pub opted_out: bool,
    /// The boot ID a person released a pending reboot for (annotation).
    pub reboot_released: Option<String>,
    /// The Node's labels (zones and, later, groups are read from them).
    pub labels: BTreeMap<String, String>,
}

/// A slot Lease, reduced to what the decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedSlot {
    pub name: String,
    pub index: u32,
    pub holder: Option<String>,
    pub acquired: Option<Timestamp>,
    pub renewed: Option<Timestamp>,
    pub duration_seconds: Option<i32>,
    /// `spec.leaseTransitions` (the grant adds one).
    pub transitions: Option<i32>,
    pub resource_version: Option<String>,
}

impl ObservedSlot {
    /// When the Lease stops being valid; `None` if it carries no renewal.
    pub fn expires(&self) -> Option<Timestamp> {
        model::objects::lease_expiry(self.renewed.or(self.acquired), self.duration_seconds)
    }

    /// When the leader may reclaim it: [`EXPIRY_GRACE`] after its expiry.
    pub fn reclaimable_at(&self) -> Option<Timestamp> {
        self.expires().map(|e| add(e, EXPIRY_GRACE))
    }

    pub(super) fn expired(&self, now: Timestamp) -> bool {
        self.holder.is_some() && self.reclaimable_at().is_none_or(|e| e <= now)
    }
}

/// A BottlerocketShadow, by node.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedShadow {
    pub node: String,
    /// `metadata.uid`: tells a re-created shadow from the one it replaces.
    pub uid: String,
    pub spec: BottlerocketShadowSpec,
    pub status: Option<BottlerocketShadowStatus>,
}

/// The settings in force: the UpdatePolicy spec over the leader's flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub budget: Budget,
    pub paused: bool,
    pub failure_backoff: Duration,
    pub failure_backoff_max: Duration,
    pub max_consecutive_failures: u32,
    pub update_cordoned_nodes: bool,
    pub slot_lease_duration: Duration,
    /// The longest one walk may hold a slot (docs/protocol.md section 3, hold cap).
    pub max_slot_hold: Duration,
    pub resume_request: Option<String>,
    /// Grant a version only this long after it was first offered.
    pub min_release_age: Option<Duration>,
    /// The walk settings copied into each grant (shadow `spec.walk`).
    pub walk: Option<model::walk::WalkSpec>,
    /// Set when the UpdatePolicy spec could not be used: no grants, and the
    /// status says why.
    pub invalid: Option<String>,
    /// The alert gate (`spec.alertGate`), if configured and valid.
    pub alert_gate: Option<GateSettings>,
    /// The per-zone limit, if configured.
    pub zones: Option<ZoneLimit>,
    /// The canary of each new version, if configured.
    pub canary: Option<CanarySettings>,
    /// The leader's flags, written into the status for tools
    /// (`status.leaderDefaults`); `None`: left as it is.
    pub published: Option<model::policy::LeaderDefaults>,
}

/// How each new version is canaried (docs/protocol.md section 6, canary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanarySettings {
    /// How many nodes take a new version first.
    pub nodes: Budget,
    /// How long after they all passed no other node is granted it.
    pub soak: Duration,
    /// The version whose soak a person ended (`spec.canary.skipSoak`).
    pub skip_soak: Option<String>,
}

/// How zones limit grants (docs/protocol.md section 5, zones).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneLimit {
    /// The node label naming the zone (absent: zone `""`).
    pub topology_key: String,
    /// The most nodes of a zone unavailable at once (`None`: no limit).
    pub per_zone: Option<Budget>,
    pub one_zone_at_a_time: bool,
    /// `oneZoneAtATime`'s order; zones not listed follow by name.
    pub zone_order: Vec<String>,
}

/// The alert gate in force: what to ask Prometheus and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateSettings {
    /// Prometheus's base URL (http or https, checked).
    pub url: String,
    pub target: GateTarget,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub on_unreachable: OnUnreachable,
}

impl GateSettings {
    /// An answer older than this counts as no answer: three poll intervals
    /// and one timeout (a poller that died, or hangs, blocks like an
    /// unreachable Prometheus).
    pub fn stale_after(&self) -> Duration {
        self.poll_interval.saturating_mul(3).saturating_add(self.timeout)
    }
}

/// What the gate watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateTarget {
    /// Block while any alert of these names fires (`/api/v1/alerts`).
    Alerts(Vec<String>),
    /// Block while this PromQL instant query returns any series (`/api/v1/query`).
    Query(String),
}

/// Prometheus's last answer to the gate, as the poller (`leader::gate`) saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateObservation {
    /// The gate this answer was asked for: an answer for another
    /// configuration (before a change of the spec) is no answer.
    pub gate: GateSettings,
    /// When the answer (or the failure) came.
    pub at: Timestamp,
    pub answer: GateAnswer,
}

/// One answer of Prometheus, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateAnswer {
    /// Nothing the gate watches fires.
    Clear,
    /// These alerts fire (or the query returned these series), sorted.
    Firing(Vec<String>),
    /// No usable answer, and why (connection refused, timeout, HTTP status, bad body).
    Unreachable(String),
}

/// Whether a maintenance window is open now (computed by the caller from the
/// configured windows, so this module needs no calendar).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowState {
    pub open: bool,
    pub next_start: Option<Timestamp>,
    pub current_end: Option<Timestamp>,
    /// Closed by a blackout (`spec.updateExclusions`) until then.
    pub blackout_until: Option<Timestamp>,
    /// The budget of the `spec.windowBudgets` window open now, if any.
    pub budget: Option<Budget>,
    /// When the budget in force next changes (a budget window's edge).
    pub budget_change_at: Option<Timestamp>,
}

impl WindowState {
    pub const ALWAYS: WindowState = WindowState {
        open: true,
        next_start: None,
        current_end: None,
        blackout_until: None,
        budget: None,
        budget_change_at: None,
    };
}

/// Everything the leader observed, at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub now: Timestamp,
    pub nodes: &'a BTreeMap<String, ObservedNode>,
    /// The name of every Node in the cluster, managed or not (a
    /// metadata-only watch): a shadow whose Node is not among them is
    /// deleted, seen from the watch's delete event, with no read per pass.
    pub all_nodes: &'a BTreeSet<String>,
    pub shadows: &'a BTreeMap<String, ObservedShadow>,
    pub slots: &'a [ObservedSlot],
    /// The UpdatePolicy's status (default if it has none); `None` when
    /// no UpdatePolicy object exists.
    pub policy: Option<&'a UpdatePolicyStatus>,
    pub policy_generation: Option<i64>,
    pub window: WindowState,
    /// Prometheus's last answer to the alert gate (`None`: none yet).
    pub gate: Option<&'a GateObservation>,
}

/// A write the leader makes after the policy status is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the UpdatePolicy `default` (empty spec: the leader's flags
    /// apply). Decided when the policy watch listed none; nothing else is
    /// decided until it exists, since every other action depends on its
    /// status being durable first.
    CreatePolicy,
    /// Create slot Lease `name` (free).
    CreateSlot { name: String },
    /// Delete a free surplus slot (checked by resourceVersion).
    DeleteSlot { name: String, resource_version: Option<String> },
    /// Clear the holder of a slot that expired (`SlotExpired`) or was held
    /// past `maxSlotHold` (`SlotHeldTooLong`), already counted in the status;
    /// then lift the operator's cordon from its node, unless a reboot is
    /// pending there (the host may still go down: it stays drained).
    Reclaim { slot: String, holder: String, resource_version: Option<String>, reason: FailureReason, lift_cordon: bool },
    /// Clear the holder of a slot whose node and shadow are gone (not a failure).
    Free { slot: String, holder: String, resource_version: Option<String> },
    /// Clear the holder of a slot the leader did not grant (no ledger entry):
    /// written by someone else, or by a walk the leader no longer knows.
    Revoke { slot: String, holder: String, resource_version: Option<String> },
    /// Give a free slot to a waiting node: the Lease first (checked against
    /// `resource_version`; `transitions` is its `leaseTransitions` there),
    /// held for `lease_duration` from now, then the shadow `spec`.
    Grant {
        slot: String,
        node: String,
        lease_duration: Duration,
        spec: BottlerocketShadowSpec,
        resource_version: Option<String>,
        transitions: Option<i32>,
        waited: Option<Duration>,
    },
    /// Write the shadow spec (reset after release/reclaim, acknowledgement, or repair of a grant).
    SetSpec { node: String, spec: BottlerocketShadowSpec },
    /// Delete the shadow of a node whose Node the watch saw deleted (the
    /// writer confirms with one read: a Node the watch has not shown yet
    /// keeps its shadow).
    DeleteShadowIfNodeGone { node: String },
    /// Delete the shadow of a node that exists but no longer matches the
    /// node selector and holds no slot (the writer confirms with one read of
    /// the Node: one labelled again since keeps its shadow).
    DeleteShadowIfUnmanaged { node: String },
}

impl Action {
    /// The version a grant hands out.
    pub fn granted_version(&self) -> Option<&str> {
        match self {
            Action::Grant { spec, .. } => spec.version.as_deref(),
            _ => None,
        }
    }
}

/// A node that finished its update (released its slot on the granted version).
#[derive(Clone, Debug, PartialEq)]
pub struct Completed {
    pub node: String,
    pub version: String,
    /// From grant to the leader noticing the release.
    pub duration: Option<Duration>,
}

/// The leader's decisions for one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The UpdatePolicy status to write before any action.
    pub status: UpdatePolicyStatus,
    /// Failures counted in this pass (for metrics and Events).
    pub counted: Vec<RecordedFailure>,
    /// Updates completed in this pass.
    pub completed: Vec<Completed>,
    pub actions: Vec<Action>,
    /// When to decide again if nothing changes (next expiry, end of a halt, window edge).
    pub wake_at: Option<Timestamp>,
}

impl Plan {
    pub fn grants(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| matches!(a, Action::Grant { .. }))
    }
}
