//! The settings of one node's walk that people change at run time, and what
//! the walk records about the node's pods.
//!
//! People set them in the UpdatePolicy (`spec.health`, `spec.drain`); the
//! leader copies them into the shadow's spec when it grants
//! (`spec.walk`), so a walk keeps the settings it started with whatever
//! happens to the policy meanwhile. A field left out is the agent's flag
//! (docs/protocol.md section 4). The leader refuses values it cannot use
//! (`InvalidSpec` naming the field); the agent falls back to its flag for a
//! value it cannot read, and says so in its log.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest selector string (`ignorePodSelector`, `skipPodSelector`).
pub const SELECTOR_MAX_LENGTH: u32 = 1024;
/// The longest eviction grace period the policy may ask for (one day).
pub const GRACE_PERIOD_MAX_SECONDS: i64 = 86_400;
/// The most pods one walk records (`status.pods_before_drain`); a node runs
/// at most a few hundred.
pub const RECORDED_PODS_MAX: usize = 2_000;

/// The walk settings granted with a slot (shadow `spec.walk`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WalkSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksSpec>,
}

/// The most labels, and the most annotations, one hook sets.
pub const HOOK_MARKS_MAX: usize = 16;
/// The longest annotation value a hook sets or waits for.
pub const HOOK_VALUE_MAX_LENGTH: usize = 256;

/// Reboot hooks: marks the walk puts on its Node for other systems (a
/// storage system setting `noout`, a load balancer controller), and
/// confirmations it waits for from them. Every mark the walk set is removed
/// when the walk ends, whatever its outcome.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HooksSpec {
    /// After the cordon, before the first eviction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_drain: Option<HookSpec>,
    /// After the reboot into the new version, before the uncordon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_reboot: Option<HookSpec>,
}

impl HooksSpec {
    /// The hook of `phase`, if set.
    pub fn of(&self, phase: HookPhase) -> Option<&HookSpec> {
        match phase {
            HookPhase::BeforeDrain => self.before_drain.as_ref(),
            HookPhase::AfterReboot => self.after_reboot.as_ref(),
        }
    }
}

/// One hook: marks to set on the Node, then optionally a wait for another
/// system's annotation on it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HookSpec {
    /// Labels set on the Node (a label already there is left as it is).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations set on the Node (one already there is left as it is).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Then wait until this annotation is on the Node (removed when the
    /// marks are set, so only a new confirmation counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 317))]
    pub wait_for_annotation: Option<String>,
    /// ... with this value (absent: any value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub wait_for_value: Option<String>,
    /// The longest wait; then the walk fails `HookTimeout` (node-only).
    /// Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::policy::DURATION_MAX_LENGTH))]
    pub timeout: Option<String>,
}

/// The default longest wait of a hook.
pub const HOOK_TIMEOUT_DEFAULT: std::time::Duration = std::time::Duration::from_secs(600);

/// When a hook runs.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookPhase {
    BeforeDrain,
    AfterReboot,
}

impl HookSpec {
    /// Problems with this hook (`spec.hooks.<phase>.<field>: ...`), empty when usable.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        let ours = |k: &str| k.starts_with("brupop.bottlerocket.aws/") || k == crate::names::EXCLUDE_LB_LABEL;
        for (what, map) in [("labels", &self.labels), ("annotations", &self.annotations)] {
            if map.len() > HOOK_MARKS_MAX {
                out.push(format!("{at}.{what}: more than {HOOK_MARKS_MAX}"));
            }
            for (k, v) in map {
                if let Err(e) = crate::parse::label_key(k) {
                    out.push(format!("{at}.{what}: {e}"));
                } else if ours(k) {
                    out.push(format!("{at}.{what}: {k} is the operator's own"));
                }
                let bad_value = if what == "labels" {
                    crate::parse::label_value(v).is_err()
                } else {
                    v.len() > HOOK_VALUE_MAX_LENGTH
                };
                if bad_value {
                    out.push(format!("{at}.{what}: the value of {k} is not a valid {what} value"));
                }
            }
        }
        if let Some(k) = &self.wait_for_annotation {
            if let Err(e) = crate::parse::label_key(k) {
                out.push(format!("{at}.waitForAnnotation: {e}"));
            } else if ours(k) {
                out.push(format!("{at}.waitForAnnotation: {k} is the operator's own"));
            }
        } else if self.wait_for_value.is_some() {
            out.push(format!("{at}.waitForValue needs waitForAnnotation"));
        }
        if self.wait_for_value.as_ref().is_some_and(|v| v.len() > HOOK_VALUE_MAX_LENGTH) {
            out.push(format!("{at}.waitForValue: longer than {HOOK_VALUE_MAX_LENGTH}"));
        }
        if let Some(Err(e)) = self.timeout.as_deref().map(crate::parse::duration) {
            out.push(format!("{at}.timeout: {e}"));
        }
        out
    }

    /// The longest wait of this hook.
    pub fn wait(&self) -> std::time::Duration {
        self.timeout.as_deref().and_then(|t| crate::parse::duration(t).ok()).unwrap_or(HOOK_TIMEOUT_DEFAULT)
    }
}

impl WalkSpec {
    /// `None` when nothing is set (the agent's flags apply throughout).
    pub fn or_none(self) -> Option<WalkSpec> {
        (self != WalkSpec::default()).then_some(self)
    }
}

/// After the reboot: what the walk waits for before it ends, and how long.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HealthSpec {
    /// The longest the walk waits after the reboot for the node and the
    /// pods it ran before the drain (or their replacements on it) to be
    /// Ready; then it fails `HealthCheckFailed`. A duration such as `5m`.
    /// Default: the agent's `--health-timeout` (5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::policy::DURATION_MAX_LENGTH))]
    pub timeout: Option<String>,
    /// The shortest the walk watches the node after the reboot: a healthy
    /// node ends its walk once this much time has passed. Default: the
    /// agent's `--health-minimum` (5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::policy::DURATION_MAX_LENGTH))]
    pub minimum: Option<String>,
    /// Pods matching this label selector (as `kubectl -l` takes it) are
    /// never judged. Default: the agent's `--health-ignore-pod-selector`
    /// (none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = SELECTOR_MAX_LENGTH))]
    pub ignore_pod_selector: Option<String>,
}

/// The drain: how pods are evicted and how long the walk waits for them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    /// The longest a drain may take, from the cordon; then the walk fails
    /// `DrainBlocked` or `DrainTimeout` (node-only). Default: the agent's
    /// `--drain-timeout` (10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::policy::DURATION_MAX_LENGTH))]
    pub timeout: Option<String>,
    /// The grace period (seconds) each Eviction asks for, instead of each
    /// pod's own `terminationGracePeriodSeconds`. At most one day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = GRACE_PERIOD_MAX_SECONDS))]
    pub grace_period_seconds: Option<i64>,
    /// Pods matching this label selector are not evicted: they stay on the
    /// node and restart with it, like DaemonSet pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = SELECTOR_MAX_LENGTH))]
    pub skip_pod_selector: Option<String>,
    /// While a pod annotated `karpenter.sh/do-not-disrupt: "true"` or
    /// `brupop.bottlerocket.aws/do-not-disrupt: "true"` runs on the node, the
    /// walk waits before the cordon, at most this long (from when it staged
    /// the update); then it fails `DoNotDisrupt` (node-only: that node backs
    /// off, the rollout goes on). Default: the agent's
    /// `--do-not-disrupt-timeout` (10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::policy::DURATION_MAX_LENGTH))]
    pub do_not_disrupt_timeout: Option<String>,
    /// After the cordon excludes the node from external load balancers, wait
    /// this long before evicting anything, so the load balancers stop sending
    /// it traffic first (the drain deadline starts after it). Default: the
    /// agent's `--load-balancer-wait` (0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::policy::DURATION_MAX_LENGTH))]
    pub load_balancer_wait: Option<String>,
    /// Opt-in: once the drain has run this long (from its start), a pod
    /// whose PodDisruptionBudget still refuses its eviction is deleted
    /// instead (with its grace period). Needs the optional RBAC
    /// `deploy/optional/delete-blocked-pods-rbac.yaml`. Absent: blocked pods
    /// are never deleted; the walk fails `DrainBlocked` at `timeout` and the
    /// node backs off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::policy::DURATION_MAX_LENGTH))]
    pub delete_blocked_pods_after: Option<String>,
}

/// A pod that ran, Ready, on the node before its drain (shadow
/// `status.pods_before_drain`): after the reboot the health check judges it
/// or its replacement on the node, and nothing else.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub struct RecordedPod {
    pub namespace: String,
    pub name: String,
    /// The DaemonSet that owns it: its replacement is that DaemonSet's pod
    /// on this node, whatever its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_set: Option<String>,
    /// It stays on the node through the drain (a DaemonSet or static pod,
    /// or one the drain skips), so it must come back after the reboot. A
    /// pod the drain evicts is judged only if it is placed back on this
    /// node under its name (a StatefulSet's pod on local storage).
    #[serde(default)]
    pub stays: bool,
}
