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
use serde_json::Value;

use crate::alert_gate::{AlertGate, AlertGateStatus};
use crate::state::FailureReason;
use crate::walk::{DrainSpec, GRACE_PERIOD_MAX_SECONDS, HealthSpec, HooksSpec, SELECTOR_MAX_LENGTH};

/// The largest `spec.maxConcurrentUpdates` count the CRD accepts. The
/// leader never creates more slots than managed nodes whatever the value;
/// this only keeps absurd numbers out of the object.
pub const MAX_CONCURRENT_UPDATES_LIMIT: i32 = 100_000;
/// The largest `spec.maxConsecutiveFailures` the CRD accepts (0 already
/// means "never stop, only halt").
pub const MAX_CONSECUTIVE_FAILURES_LIMIT: u32 = 1_000;
/// The longest duration string (`failureBackoff`, `failureBackoffMax`, `maxSlotHold`).
pub const DURATION_MAX_LENGTH: u32 = 64;
/// The most `updateWindows`, and the longest one.
pub const UPDATE_WINDOWS_MAX_ITEMS: u32 = 32;
pub const UPDATE_WINDOW_MAX_LENGTH: u32 = 256;
/// The longest `resumeRequest`.
pub const RESUME_REQUEST_MAX_LENGTH: u32 = 256;

// The spec reads leniently (see [`UpdatePolicySpec::from_value`]): a value
// that cannot be decoded (a number out of range, a wrong type) never fails
// the read of the whole object (the leader's list of policies would fail and
// nothing would run, reclaims included); it is left at its default and named
// in [`UpdatePolicySpec::unreadable`], which the leader turns into phase
// `InvalidSpec`. (A plain comment: doc comments become the CRD description.)
/// The rollout's settings. Every field is optional; the leader's flags give the defaults.
#[derive(CustomResource, Serialize, JsonSchema, Clone, Debug, Default, PartialEq)]
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
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Running, Paused, OutsideWindow, Blocked, Halted, Stopped or InvalidSpec"}"#,
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
    /// How many nodes may update at once: a count (`3`, at most 100000), a
    /// percentage of managed nodes (`"10%"`, rounded down, never below 1), or
    /// `"unlimited"` (the original operator's word: `"100%"`).
    /// Never more slots than managed nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "budget_schema")]
    pub max_concurrent_updates: Option<IntOrString>,
    /// Stop granting new slots; nodes already updating finish.
    #[serde(default)]
    pub paused: bool,
    /// New grants only start inside one of these windows, e.g.
    /// `"Mon-Fri 02:00-05:00 Europe/Berlin"`, `"Sat,Sun 22:00+6h UTC"`, or a
    /// cron expression of the original operator (`"0 0 23 * * Mon-Fri *"`,
    /// a one-hour window in UTC). Empty: always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = UPDATE_WINDOWS_MAX_ITEMS), inner(length(max = UPDATE_WINDOW_MAX_LENGTH)))]
    pub update_windows: Vec<String>,
    /// While one of these windows is open (same grammar as `updateWindows`),
    /// its `maxConcurrentUpdates` replaces the policy's, e.g. more slots at
    /// the weekend. They change the budget only: when grants may start is
    /// still `updateWindows`'s. The first open one applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = UPDATE_WINDOWS_MAX_ITEMS))]
    pub window_budgets: Vec<WindowBudget>,
    /// Blackouts: no new grant starts inside any of these absolute ranges,
    /// whatever `updateWindows` says (nodes already updating finish), e.g.
    /// `"2026-12-20 2027-01-03 Europe/Berlin"` (whole days) or
    /// `"2026-12-31T18:00 2027-01-01T06:00 UTC"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = UPDATE_WINDOWS_MAX_ITEMS), inner(length(max = UPDATE_WINDOW_MAX_LENGTH)))]
    pub update_exclusions: Vec<String>,
    /// First halt after a failure (humantime, e.g. `"5m"`); doubles per consecutive failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LENGTH))]
    pub failure_backoff: Option<String>,
    /// Longest halt (humantime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LENGTH))]
    pub failure_backoff_max: Option<String>,
    /// After this many consecutive failures grants stop until `resumeRequest`
    /// changes (0: never stop, only halt). At most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i64>", range(min = 0, max = MAX_CONSECUTIVE_FAILURES_LIMIT))]
    pub max_consecutive_failures: Option<u32>,
    /// Set to a new value (for example the current time) to end a halt or a
    /// stop and reset the failure count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = RESUME_REQUEST_MAX_LENGTH))]
    pub resume_request: Option<String>,
    /// The longest one node may hold a slot for one walk (a duration such as
    /// `90m`); past it the leader takes the slot back (`SlotHeldTooLong`) and
    /// grants that node nothing for a backoff. Default: the leader's
    /// `--max-slot-hold` (2h), above the longest walk the agent's shipped
    /// deadlines allow (95m; docs/protocol.md section 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LENGTH))]
    pub max_slot_hold: Option<String>,
    /// Grant a version only once it has been offered this long (a duration
    /// such as `72h`; counted from when the leader first saw a waiting node
    /// offer it, `status.versionsOffered`). Default: no wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LENGTH))]
    pub min_release_age: Option<String>,
    /// The node label that names a node's zone for `maxUnavailablePerZone`
    /// and `oneZoneAtATime` (default `topology.kubernetes.io/zone`). Nodes
    /// without it form one zone named `""`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 317))]
    pub topology_key: Option<String>,
    /// The most nodes of one zone unavailable at once: updating, or managed
    /// and not Ready. A count (`1`) or a percentage of the zone's managed
    /// nodes (`"34%"`, rounded down, at least 1). Applies together with
    /// `maxConcurrentUpdates`. Default: no limit per zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "budget_schema")]
    pub max_unavailable_per_zone: Option<IntOrString>,
    /// Finish a zone (no node of it updating or waiting to) before starting
    /// the next, in `zoneOrder`, then by name.
    #[serde(default)]
    pub one_zone_at_a_time: bool,
    /// The order `oneZoneAtATime` takes zones in; zones not listed follow,
    /// by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub zone_order: Vec<String>,
    /// Canary: each new version goes first to a few nodes, then the
    /// rollout of that version waits a soak time before the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySpec>,
    /// Also update nodes an administrator cordoned (they stay cordoned afterwards).
    #[serde(default)]
    pub update_cordoned_nodes: bool,
    /// After the reboot: how long the walk waits for the node and the pods
    /// it ran before the drain to be Ready, and the least it watches. Copied
    /// into each grant: a walk keeps the settings it started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// How the drain evicts pods and how long it may take. Copied into each grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainSpec>,
    /// Reboot hooks: labels and annotations the walk puts on its Node before
    /// the drain and after the reboot, and confirmations it waits for from
    /// other systems. Copied into each grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksSpec>,
    /// No new grants while alerts fire in Prometheus (phase `Blocked`);
    /// nodes already updating finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_gate: Option<AlertGate>,
    /// Not part of the object: the fields whose stored values could not be
    /// read (`spec.<field>: <why>`), left at their defaults. Any entry stops
    /// grants (phase `InvalidSpec`).
    #[serde(skip)]
    #[schemars(skip)]
    pub unreadable: Vec<String>,
}

/// The canary of each new version (`spec.canary`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// How many nodes update first: a count (`2`) or a percentage of managed
    /// nodes (`"5%"`, rounded down, at least 1). Default 1. Nodes already on
    /// the version count as canaries passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "budget_schema")]
    pub nodes: Option<IntOrString>,
    /// How long no other node is granted the version once its canaries have
    /// all updated (a duration such as `2h`). Default: no soak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LENGTH))]
    pub soak: Option<String>,
    /// Set to a version whose soak is under way to end it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = VERSION_MAX_LENGTH))]
    pub skip_soak: Option<String>,
}

/// The longest version string a spec field holds.
pub const VERSION_MAX_LENGTH: u32 = 128;

/// A window with its own update budget (`spec.windowBudgets`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WindowBudget {
    /// A window, as in `updateWindows`.
    #[schemars(length(max = UPDATE_WINDOW_MAX_LENGTH))]
    pub window: String,
    /// The budget while it is open: a count or a percentage, as `maxConcurrentUpdates`.
    #[schemars(schema_with = "budget_schema")]
    pub max_concurrent_updates: IntOrString,
}

/// `maxConcurrentUpdates`: an int-or-string whose count the API server
/// bounds (`maximum` applies to the integer form only).
fn budget_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "nullable": true,
        "x-kubernetes-int-or-string": true,
        "minimum": 1,
        "maximum": MAX_CONCURRENT_UPDATES_LIMIT,
        "maxLength": 9
    })
}

// === impl UpdatePolicySpec ===

impl<'de> Deserialize<'de> for UpdatePolicySpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(UpdatePolicySpec::from_value)
    }
}

impl UpdatePolicySpec {
    /// Reads a spec field by field: a value that cannot be decoded, or is
    /// outside the CRD's bounds (stored before the bounds existed), is left
    /// at its default and recorded in [`UpdatePolicySpec::unreadable`]
    /// naming the field. Unknown fields are ignored (the API server prunes
    /// them). Total: never fails.
    pub fn from_value(value: Value) -> UpdatePolicySpec {
        let mut spec = UpdatePolicySpec::default();
        let map = match value {
            Value::Object(map) => map,
            Value::Null => return spec,
            other => {
                spec.unreadable.push(format!("spec: not an object: {}", excerpt(&other)));
                return spec;
            }
        };
        let mut problems = Vec::new();
        for (key, v) in map {
            if v.is_null() {
                continue;
            }
            match key.as_str() {
                "maxConcurrentUpdates" => spec.max_concurrent_updates = field(&key, v, &mut problems),
                "paused" => spec.paused = field(&key, v, &mut problems).unwrap_or_default(),
                "updateWindows" => spec.update_windows = field(&key, v, &mut problems).unwrap_or_default(),
                "updateExclusions" => spec.update_exclusions = field(&key, v, &mut problems).unwrap_or_default(),
                "windowBudgets" => spec.window_budgets = field(&key, v, &mut problems).unwrap_or_default(),
                "failureBackoff" => spec.failure_backoff = field(&key, v, &mut problems),
                "failureBackoffMax" => spec.failure_backoff_max = field(&key, v, &mut problems),
                "maxConsecutiveFailures" => spec.max_consecutive_failures = field(&key, v, &mut problems),
                "resumeRequest" => spec.resume_request = field(&key, v, &mut problems),
                "maxSlotHold" => spec.max_slot_hold = field(&key, v, &mut problems),
                "minReleaseAge" => spec.min_release_age = field(&key, v, &mut problems),
                "topologyKey" => spec.topology_key = field(&key, v, &mut problems),
                "maxUnavailablePerZone" => spec.max_unavailable_per_zone = field(&key, v, &mut problems),
                "oneZoneAtATime" => spec.one_zone_at_a_time = field(&key, v, &mut problems).unwrap_or_default(),
                "zoneOrder" => spec.zone_order = field(&key, v, &mut problems).unwrap_or_default(),
                "canary" => spec.canary = field(&key, v, &mut problems),
                "updateCordonedNodes" => spec.update_cordoned_nodes = field(&key, v, &mut problems).unwrap_or_default(),
                "health" => spec.health = field(&key, v, &mut problems),
                "drain" => spec.drain = field(&key, v, &mut problems),
                "hooks" => spec.hooks = field(&key, v, &mut problems),
                "alertGate" => spec.alert_gate = AlertGate::from_value(v, &mut problems),
                _ => {}
            }
        }
        problems.extend(spec.out_of_bounds());
        spec.unreadable = problems;
        spec
    }

    /// Values that decode but lie outside the CRD's bounds (the API server
    /// refuses them on write; an object stored before the bounds existed
    /// may still hold them).
    fn out_of_bounds(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(IntOrString::Int(n)) = self.max_concurrent_updates
            && !(1..=MAX_CONCURRENT_UPDATES_LIMIT).contains(&n)
        {
            problems.push(format!("spec.maxConcurrentUpdates: {n} is outside 1..={MAX_CONCURRENT_UPDATES_LIMIT}"));
            self.max_concurrent_updates = None;
        }
        if let Some(n) = self.max_consecutive_failures
            && n > MAX_CONSECUTIVE_FAILURES_LIMIT
        {
            problems.push(format!("spec.maxConsecutiveFailures: {n} is above {MAX_CONSECUTIVE_FAILURES_LIMIT}"));
            self.max_consecutive_failures = None;
        }
        let too_long = |field: &str, v: &Option<String>, max: u32, problems: &mut Vec<String>| {
            if v.as_ref().is_some_and(|s| s.chars().count() > max as usize) {
                problems.push(format!("spec.{field}: longer than {max} characters"));
            }
        };
        too_long("failureBackoff", &self.failure_backoff, DURATION_MAX_LENGTH, &mut problems);
        too_long("failureBackoffMax", &self.failure_backoff_max, DURATION_MAX_LENGTH, &mut problems);
        too_long("maxSlotHold", &self.max_slot_hold, DURATION_MAX_LENGTH, &mut problems);
        too_long("minReleaseAge", &self.min_release_age, DURATION_MAX_LENGTH, &mut problems);
        too_long("resumeRequest", &self.resume_request, RESUME_REQUEST_MAX_LENGTH, &mut problems);
        if let Some(h) = &self.health {
            too_long("health.timeout", &h.timeout, DURATION_MAX_LENGTH, &mut problems);
            too_long("health.minimum", &h.minimum, DURATION_MAX_LENGTH, &mut problems);
            too_long("health.ignorePodSelector", &h.ignore_pod_selector, SELECTOR_MAX_LENGTH, &mut problems);
        }
        if let Some(c) = &self.canary {
            too_long("canary.soak", &c.soak, DURATION_MAX_LENGTH, &mut problems);
            too_long("canary.skipSoak", &c.skip_soak, VERSION_MAX_LENGTH, &mut problems);
        }
        if let Some(d) = &self.drain {
            too_long("drain.timeout", &d.timeout, DURATION_MAX_LENGTH, &mut problems);
            too_long("drain.skipPodSelector", &d.skip_pod_selector, SELECTOR_MAX_LENGTH, &mut problems);
            too_long("drain.doNotDisruptTimeout", &d.do_not_disrupt_timeout, DURATION_MAX_LENGTH, &mut problems);
            too_long("drain.loadBalancerWait", &d.load_balancer_wait, DURATION_MAX_LENGTH, &mut problems);
            too_long("drain.deleteBlockedPodsAfter", &d.delete_blocked_pods_after, DURATION_MAX_LENGTH, &mut problems);
            if d.grace_period_seconds.is_some_and(|g| !(0..=GRACE_PERIOD_MAX_SECONDS).contains(&g)) {
                problems.push(format!("spec.drain.gracePeriodSeconds: outside 0..={GRACE_PERIOD_MAX_SECONDS}"));
            }
        }
        if self.update_windows.len() > UPDATE_WINDOWS_MAX_ITEMS as usize {
            problems.push(format!("spec.updateWindows: more than {UPDATE_WINDOWS_MAX_ITEMS} windows"));
        }
        if self.update_windows.iter().any(|w| w.chars().count() > UPDATE_WINDOW_MAX_LENGTH as usize) {
            problems.push(format!("spec.updateWindows: a window longer than {UPDATE_WINDOW_MAX_LENGTH} characters"));
        }
        if self.window_budgets.len() > UPDATE_WINDOWS_MAX_ITEMS as usize {
            problems.push(format!("spec.windowBudgets: more than {UPDATE_WINDOWS_MAX_ITEMS} entries"));
        }
        if self.window_budgets.iter().any(|w| w.window.chars().count() > UPDATE_WINDOW_MAX_LENGTH as usize) {
            problems.push(format!("spec.windowBudgets: a window longer than {UPDATE_WINDOW_MAX_LENGTH} characters"));
        }
        if self.update_exclusions.len() > UPDATE_WINDOWS_MAX_ITEMS as usize {
            problems.push(format!("spec.updateExclusions: more than {UPDATE_WINDOWS_MAX_ITEMS} exclusions"));
        }
        if self.update_exclusions.iter().any(|w| w.chars().count() > UPDATE_WINDOW_MAX_LENGTH as usize) {
            problems.push(format!("spec.updateExclusions: one longer than {UPDATE_WINDOW_MAX_LENGTH} characters"));
        }
        problems
    }
}

/// Decodes one field; on failure records `spec.<key>: ...` and gives `None`.
pub(crate) fn field<T: serde::de::DeserializeOwned>(key: &str, v: Value, problems: &mut Vec<String>) -> Option<T> {
    match serde_json::from_value::<T>(v.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(format!("spec.{key}: cannot read {}: {e}", excerpt(&v)));
            None
        }
    }
}

/// A value as JSON, cut to a length a status message can carry.
pub(crate) fn excerpt(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= 64 { s } else { format!("{}...", s.chars().take(64).collect::<String>()) }
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
    /// When the leader first saw each version offered by a waiting node
    /// (at most [`VERSIONS_OFFERED_MAX`], the oldest dropped first): a
    /// version is granted only `spec.minReleaseAge` after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions_offered: Vec<OfferedVersion>,
    /// The canary of each version the leader saw offered while
    /// `spec.canary` was set (at most [`CANARIES_MAX`], the oldest passed
    /// ones dropped first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<CanaryStatus>,
    /// The leader's own settings (its flags), under the spec's: what
    /// `kubectl brupop plan` needs to decide as the leader does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_defaults: Option<LeaderDefaults>,
    /// The last updates completed, newest last (at most [`RECENT_WALKS_MAX`]):
    /// how long a node's walk takes, for an ETA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_walks: Vec<WalkRecord>,
    /// The `spec.resumeRequest` the leader last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_resume: Option<String>,
    /// What the alert gate (`spec.alertGate`) last decided; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_gate: Option<AlertGateStatus>,
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
    /// The alert gate holds new grants: an alert it watches fires, or
    /// Prometheus cannot be asked (`onUnreachable: Block`); see `alertGate`.
    Blocked,
    /// Halted after a failure until `haltedUntil`.
    Halted,
    /// Stopped after `maxConsecutiveFailures`; needs `spec.resumeRequest`.
    Stopped,
    /// The spec has a value the leader cannot use (the message names it); no
    /// grants until it is fixed, so a typo never widens a rollout.
    InvalidSpec,
}

impl Phase {
    /// Every phase, in the order the leader weighs them (last: the least binding).
    pub const ALL: [Phase; 7] = [
        Phase::InvalidSpec,
        Phase::Stopped,
        Phase::Halted,
        Phase::Paused,
        Phase::OutsideWindow,
        Phase::Blocked,
        Phase::Running,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "Running",
            Phase::Paused => "Paused",
            Phase::OutsideWindow => "OutsideWindow",
            Phase::Blocked => "Blocked",
            Phase::Halted => "Halted",
            Phase::Stopped => "Stopped",
            Phase::InvalidSpec => "InvalidSpec",
        }
    }
}

/// The most versions `status.versionsOffered` keeps.
pub const VERSIONS_OFFERED_MAX: usize = 16;

/// A version the leader saw offered, and since when.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OfferedVersion {
    pub version: String,
    pub first_offered: Time,
}

/// The leader's flags that the spec can override, as the leader runs with
/// them ([`UpdatePolicyStatus::leader_defaults`]).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeaderDefaults {
    /// `--max-concurrent-updates`: a count or a percentage.
    pub max_concurrent_updates: String,
    pub failure_backoff: String,
    pub failure_backoff_max: String,
    #[schemars(with = "i64", range(min = 0))]
    pub max_consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub update_windows: Vec<String>,
    pub slot_lease_duration: String,
    pub max_slot_hold: String,
    /// The label selector of the nodes the leader manages.
    pub node_selector: String,
}

/// The most walks `status.recentWalks` keeps.
pub const RECENT_WALKS_MAX: usize = 20;

/// A completed update ([`UpdatePolicyStatus::recent_walks`]).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WalkRecord {
    pub node: String,
    pub version: String,
    /// From the grant to the leader seeing the slot released on the version.
    #[schemars(with = "i64", range(min = 0))]
    pub seconds: u64,
    pub completed: Time,
}

/// The most canaries `status.canaries` keeps.
pub const CANARIES_MAX: usize = 16;
/// The most canary node names one [`CanaryStatus`] lists.
pub const CANARY_NODES_LISTED: usize = 32;

/// Where a version's canary stands ([`UpdatePolicyStatus::canaries`]).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    pub version: String,
    pub state: CanaryState,
    /// Canary nodes the version needs (`spec.canary.nodes` over the managed nodes).
    #[schemars(with = "i64", range(min = 0))]
    pub needed: u32,
    /// Managed nodes on the version, not updating: canaries passed.
    #[schemars(with = "i64", range(min = 0))]
    pub passed: u32,
    /// The nodes granted the version as canaries (at most [`CANARY_NODES_LISTED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// The end of the soak (state `Soaking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_until: Option<Time>,
    /// When the state last changed.
    pub since: Time,
    /// One sentence: what happened last (also the Event's note).
    #[serde(default)]
    pub message: String,
}

/// A canary's state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryState {
    /// Its canary nodes are being updated; no other node gets the version.
    Updating,
    /// Its canaries passed; no new grant of the version until `soakUntil`.
    Soaking,
    /// The rest of the nodes get the version.
    Passed,
    /// A canary's update failed: the rollout stopped until `spec.resumeRequest` changes.
    Failed,
}

impl CanaryState {
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryState::Updating => "Updating",
            CanaryState::Soaking => "Soaking",
            CanaryState::Passed => "Passed",
            CanaryState::Failed => "Failed",
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
    fn a_value_that_cannot_be_decoded_is_named_not_fatal() {
        let p: UpdatePolicySpec =
            serde_json::from_str(r#"{"maxConsecutiveFailures":5000000000,"paused":true,"maxConcurrentUpdates":2}"#)
                .unwrap();
        assert_eq!(p.max_consecutive_failures, None);
        assert!(p.paused, "the other fields are read");
        assert_eq!(p.max_concurrent_updates, Some(IntOrString::Int(2)));
        assert_eq!(p.unreadable.len(), 1, "{:?}", p.unreadable);
        assert!(p.unreadable[0].contains("spec.maxConsecutiveFailures") && p.unreadable[0].contains("5000000000"));
        // The whole object reads too (the leader's list of policies must not fail).
        let obj: UpdatePolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "brupop.bottlerocket.aws/v1", "kind": "UpdatePolicy",
            "metadata": {"name": "default"},
            "spec": {"maxConcurrentUpdates": 2147483648u64, "paused": "yes", "updateWindows": [1]}
        }))
        .unwrap();
        let fields: Vec<&str> = obj.spec.unreadable.iter().map(|p| p.split(':').next().unwrap_or("")).collect();
        assert_eq!(fields, ["spec.maxConcurrentUpdates", "spec.paused", "spec.updateWindows"]);
        let p = UpdatePolicySpec::from_value(serde_json::json!("nonsense"));
        assert!(p.unreadable[0].starts_with("spec: not an object"), "{:?}", p.unreadable);
    }

    #[test]
    fn values_beyond_the_crd_bounds_are_named() {
        let p: UpdatePolicySpec =
            serde_json::from_str(r#"{"maxConcurrentUpdates":2147483647,"maxConsecutiveFailures":4000000000}"#).unwrap();
        assert_eq!((p.max_concurrent_updates.as_ref(), p.max_consecutive_failures), (None, None));
        assert!(p.unreadable[0].contains("spec.maxConcurrentUpdates"), "{:?}", p.unreadable);
        assert!(p.unreadable[1].contains("spec.maxConsecutiveFailures"), "{:?}", p.unreadable);
        let ok: UpdatePolicySpec = serde_json::from_str(r#"{"maxConcurrentUpdates":100000}"#).unwrap();
        assert!(ok.unreadable.is_empty());
    }

    #[test]
    fn the_crd_bounds_every_number_and_string_of_the_spec() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(UpdatePolicy::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(spec["maxConcurrentUpdates"]["maximum"].as_f64(), Some(f64::from(MAX_CONCURRENT_UPDATES_LIMIT)));
        assert_eq!(spec["maxConcurrentUpdates"]["x-kubernetes-int-or-string"], serde_json::json!(true));
        assert_eq!(spec["maxConsecutiveFailures"]["maximum"].as_f64(), Some(f64::from(MAX_CONSECUTIVE_FAILURES_LIMIT)));
        for f in ["failureBackoff", "failureBackoffMax", "maxSlotHold", "resumeRequest"] {
            assert!(spec[f]["maxLength"].is_u64(), "{f}: {}", spec[f]);
        }
        assert!(spec["updateWindows"]["maxItems"].is_u64());
        assert!(spec["updateWindows"]["items"]["maxLength"].is_u64());
        assert!(spec.get("unreadable").is_none(), "not part of the object");
    }

    #[test]
    fn every_field_of_the_spec_is_read_back() {
        // Each field set to a value unlike its default: the lenient reader
        // must know every one (a field it skips is silently ignored).
        let full = serde_json::json!({
            "maxConcurrentUpdates": 2, "paused": true, "updateWindows": ["Mon 02:00-04:00 UTC"],
            "windowBudgets": [{"window": "Sat 00:00-06:00 UTC", "maxConcurrentUpdates": "50%"}],
            "updateExclusions": ["2026-12-24 2026-12-26 UTC"], "failureBackoff": "1m", "failureBackoffMax": "2h",
            "maxConsecutiveFailures": 4, "resumeRequest": "r1", "maxSlotHold": "3h", "minReleaseAge": "1d",
            "topologyKey": "rack", "maxUnavailablePerZone": 1, "oneZoneAtATime": true, "zoneOrder": ["a"],
            "canary": {"nodes": "5%", "soak": "1h", "skipSoak": "1.21.0"}, "updateCordonedNodes": true,
            "health": {"timeout": "10m"}, "drain": {"timeout": "20m"}, "hooks": {},
            "alertGate": {"prometheusUrl": "http://prometheus:9090", "alerts": ["X"]}
        });
        let spec = UpdatePolicySpec::from_value(full.clone());
        assert!(spec.unreadable.is_empty(), "{:?}", spec.unreadable);
        let back = serde_json::to_value(&spec).unwrap();
        for key in full.as_object().unwrap().keys() {
            assert!(back.get(key).is_some(), "spec.{key} is not read: {back}");
        }
        assert_eq!(serde_json::to_value(UpdatePolicySpec::from_value(back.clone())).unwrap(), back);
    }

    #[test]
    fn empty_status_is_running() {
        let s: UpdatePolicyStatus = serde_json::from_str("{}").unwrap();
        assert_eq!(s.phase, Phase::Running);
    }
}
