//! Carries out a [`Plan`]: the UpdatePolicy status first (so counted
//! failures and halts are durable before anything is acknowledged or
//! reclaimed), then the writes in plan order. Every write checks leadership
//! first; Lease writes are resourceVersion-checked, so a 409 means someone
//! else acted and the next pass decides again on fresh data.
//!
//! Results of writes go back into the shared state at once (write-through),
//! so the next pass never decides on a picture older than its own writes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use model::names::{self, managers};
use model::policy::{CanaryState, Phase, UpdatePolicyStatus};
use model::{BottlerocketShadow, BottlerocketShadowSpec, FailureReason, UpdatePolicy, UpdatePolicySpec};
use runtime::events::{EventType, Events};
use serde_json::json;
use tokio::sync::watch;

use crate::decide::{Action, Plan};
use crate::metrics::Metrics;
use crate::observe::Shared;

mod error;

pub use error::ActError;
use error::conflict;

/// The leader's writes.
pub struct Actor {
    client: kube::Client,
    namespace: String,
    /// `--node-selector`, parsed: which Nodes this installation manages.
    node_selector: Vec<model::selector::Requirement>,
    shared: Arc<Shared>,
    leading: watch::Receiver<bool>,
    recorder: Events,
    pub metrics: Metrics,
    /// When the UpdatePolicy status was last written (counter-only changes
    /// are written at most once per [`COUNTERS_EVERY`]).
    last_status: std::sync::Mutex<Option<std::time::Instant>>,
    last_metrics: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Counter-only status changes (slots held, nodes waiting) are written at
/// most this often; a change of phase, halt or failures is written at once.
pub const COUNTERS_EVERY: Duration = Duration::from_secs(1);

/// The status without its counters (and the message, which quotes them).
fn without_counters(s: &UpdatePolicyStatus) -> UpdatePolicyStatus {
    UpdatePolicyStatus {
        message: String::new(),
        slots: 0,
        slots_held: 0,
        slots_free: 0,
        nodes_waiting: 0,
        managed_nodes: 0,
        ..s.clone()
    }
}

/// Whether going from `old` to `new` changes counters only (or nothing).
fn counters_only(old: Option<&UpdatePolicyStatus>, new: &UpdatePolicyStatus) -> bool {
    old.is_some_and(|old| without_counters(old) == without_counters(new))
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

/// Writes of one run of a pass in flight at once (spec writes, or grants).
/// At thousands of nodes a pass often carries several: written one after
/// another, the last grant waited for all the others' round trips.
const WRITES_IN_FLIGHT: usize = 16;

impl Actor {
    pub fn new(
        client: kube::Client,
        namespace: String,
        node_selector: Vec<model::selector::Requirement>,
        shared: Arc<Shared>,
        leading: watch::Receiver<bool>,
        identity: String,
        metrics: Metrics,
    ) -> Self {
        let recorder = Events::new(client.clone(), managers::LEADER, Some(identity));
        Actor {
            client,
            namespace,
            node_selector,
            shared,
            leading,
            recorder,
            metrics,
            last_status: std::sync::Mutex::new(None),
            last_metrics: std::sync::Mutex::new(None),
        }
    }

    /// Whether the gauges are due (computed at most once per second: at 5,000
    /// nodes that walk over every shadow is the costliest part of a pass).
    pub fn metrics_due(&self) -> bool {
        let mut last = self.last_metrics.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }

    fn check_leading(&self) -> Result<(), ActError> {
        if *self.leading.borrow() { Ok(()) } else { Err(ActError::NotLeader) }
    }

    fn pp() -> PostParams {
        runtime::client::post_params(managers::LEADER)
    }

    fn patch_params() -> PatchParams {
        runtime::client::patch_params(managers::LEADER)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn shadows(&self) -> Api<BottlerocketShadow> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn policies(&self) -> Api<UpdatePolicy> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, note: String) {
        let reference: ObjectReference = obj.object_ref(&());
        self.recorder.publish(reference, type_, reason, reason, note);
    }

    /// Creates the UpdatePolicy `default` with an empty spec (the leader's
    /// flags apply): the decision asks for it when the watch listed none.
    async fn create_policy(&self) -> Result<(), ActError> {
        let mut policy = UpdatePolicy::new(names::POLICY_NAME, UpdatePolicySpec::default());
        policy.metadata.namespace = Some(self.namespace.clone());
        match self.policies().create(&Self::pp(), &policy).await {
            Ok(created) => {
                tracing::info!(namespace = %self.namespace, "created UpdatePolicy default with the leader's defaults");
                self.shared.put(&created);
                Ok(())
            }
            // Someone else created it meanwhile: the watch brings it.
            Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
            Err(e) => Err(ActError::CreatePolicy(e)),
        }
    }

    /// Writes the status if it changed. A conflict (a person edited the spec
    /// meanwhile) ends the pass; the watch brings the new object.
    /// Returns when a deferred counter-only change is due to be written, if any.
    async fn write_status(
        &self,
        policy: &UpdatePolicy,
        status: &UpdatePolicyStatus,
    ) -> Result<Option<std::time::Instant>, ActError> {
        if policy.status.as_ref() == Some(status) {
            return Ok(None);
        }
        let counters_only = counters_only(policy.status.as_ref(), status);
        let last = *self.last_status.lock().unwrap_or_else(|e| e.into_inner());
        if counters_only
            && let Some(last) = last
            && last.elapsed() < COUNTERS_EVERY
        {
            return Ok(Some(last + COUNTERS_EVERY));
        }
        self.check_leading()?;
        let mut next = policy.clone();
        next.status = Some(status.clone());
        let written = self
            .policies()
            .replace_status(names::POLICY_NAME, &Self::pp(), &next)
            .await
            .map_err(ActError::WriteStatus)?;
        self.canary_events(&written, policy.status.as_ref(), status);
        let old_phase = policy.status.as_ref().map(|s| s.phase);
        let gate_event = self.gate_event(&written, policy.status.as_ref(), status);
        // The gate's own Event says why the phase went to or from Blocked.
        let said = gate_event && (status.phase == Phase::Blocked || old_phase == Some(Phase::Blocked));
        if old_phase != Some(status.phase) && !said {
            tracing::info!(phase = status.phase.as_str(), message = %status.message, "rollout phase changed");
            let type_ = if matches!(status.phase, Phase::Halted | Phase::Stopped | Phase::InvalidSpec | Phase::Blocked)
            {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.event(&written, type_, status.phase.as_str(), status.message.clone());
        }
        *self.last_status.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        self.shared.put(&written);
        Ok(None)
    }

    /// An Event per canary that opened or changed state: `CanaryUpdating`,
    /// `CanarySoaking`, `CanaryPassed` (Normal), `CanaryFailed` (Warning),
    /// the canary's message as the note.
    fn canary_events(&self, written: &UpdatePolicy, old: Option<&UpdatePolicyStatus>, new: &UpdatePolicyStatus) {
        for c in &new.canaries {
            let before = old.and_then(|o| o.canaries.iter().find(|b| b.version == c.version)).map(|b| b.state);
            if before == Some(c.state) {
                continue;
            }
            let type_ = if c.state == CanaryState::Failed { EventType::Warning } else { EventType::Normal };
            tracing::info!(version = %c.version, state = c.state.as_str(), message = %c.message, "canary");
            self.event(written, type_, &format!("Canary{}", c.state.as_str()), c.message.clone());
        }
    }

    /// A Warning Event `AlertGateBlocking` when the alert gate starts
    /// holding grants, a Normal `AlertGateCleared` when it stops. Whether
    /// one was recorded.
    fn gate_event(&self, written: &UpdatePolicy, old: Option<&UpdatePolicyStatus>, new: &UpdatePolicyStatus) -> bool {
        let blocking =
            |s: Option<&UpdatePolicyStatus>| s.and_then(|s| s.alert_gate.as_ref()).is_some_and(|g| g.blocking);
        let (was, is) = (blocking(old), blocking(Some(new)));
        if was == is {
            return false;
        }
        let gate = new.alert_gate.as_ref().map_or("the alert gate was removed", |g| g.message.as_str());
        if is {
            tracing::warn!(gate = %gate, "alert gate: blocking new grants");
            let note = format!("alert gate: no new grants while {gate}");
            self.event(written, EventType::Warning, "AlertGateBlocking", note);
        } else {
            tracing::info!(gate = %gate, "alert gate: cleared");
            self.event(written, EventType::Normal, "AlertGateCleared", format!("alert gate cleared: {gate}"));
        }
        true
    }

    /// Carries out the plan; stops at the first error (the next pass retries).
    /// Returns when to look again for a deferred status write, if any.
    pub async fn apply(
        &self,
        plan: &Plan,
        policy: Option<&UpdatePolicy>,
        now: Timestamp,
    ) -> Result<Option<std::time::Instant>, ActError> {
        let Some(policy) = policy else {
            // Nothing is decided before the UpdatePolicy exists but its creation.
            for action in &plan.actions {
                self.check_leading()?;
                self.act(action).await?;
            }
            return Ok(None);
        };
        // A status change that records state (a halt, a counted failure) is
        // written before the actions that depend on it; one of counters only
        // after them, so the grants of a pass never wait for it.
        let counters_only = counters_only(policy.status.as_ref(), &plan.status);
        let deferred = if counters_only { None } else { self.write_status(policy, &plan.status).await? };
        for f in &plan.counted {
            if f.ungranted {
                self.metrics.ungranted_failures.with_label_values(&[f.reason.as_str()]).inc();
                tracing::warn!(node = %f.node, reason = %f.reason, message = %f.message, "failure reported without a grant: recorded, not counted toward halts");
                continue;
            }
            self.metrics.update_failures.with_label_values(&[f.reason.as_str()]).inc();
            tracing::warn!(node = %f.node, reason = %f.reason, message = %f.message, halts = f.reason.halts_fleet(), "update failure counted");
        }
        for c in &plan.completed {
            if let Some(d) = c.duration {
                self.metrics.update_duration.observe(d.as_secs_f64());
            }
            let duration_s = c.duration.map(|d| d.as_secs_f64());
            tracing::info!(node = %c.node, version = %c.version, duration_s, "update completed");
        }
        let mut free_now = plan.status.slots_free;
        let actions = &plan.actions;
        let mut i = 0;
        while i < actions.len() {
            self.check_leading()?;
            // A run of spec writes (one per node) and grants (one per slot
            // and node) touches distinct objects: its writes go out together.
            // A reset of a released node's spec no longer waits before the
            // grant of its slot: the Lease has one holder, and the authproxy
            // fences every disruptive step by it (protocol section 3).
            let batchable = |a: &Action| matches!(a, Action::SetSpec { .. } | Action::Grant { .. });
            let end = if batchable(&actions[i]) {
                i + actions[i..].iter().take_while(|a| batchable(a)).count()
            } else {
                i + 1
            };
            let run = &actions[i..end];
            i = end;
            match &run[0] {
                Action::Grant { .. } | Action::SetSpec { .. } => {
                    let mut grants = 0u32;
                    let writes: Vec<(&Action, u32)> = run
                        .iter()
                        .map(|a| {
                            let k = grants;
                            grants += u32::from(matches!(a, Action::Grant { .. }));
                            (a, free_now.saturating_sub(k))
                        })
                        .collect();
                    let results: Vec<Result<Option<bool>, ActError>> = futures::stream::iter(writes)
                        .map(|(a, free)| async move {
                            match a {
                                Action::Grant { .. } => self.grant(a, now, free).await.map(Some),
                                _ => self.act(a).await.map(|()| None),
                            }
                        })
                        .buffered(WRITES_IN_FLIGHT)
                        .collect()
                        .await;
                    let mut all = true;
                    for r in results {
                        match r? {
                            Some(true) => free_now = free_now.saturating_sub(1),
                            Some(false) => all = false,
                            None => {}
                        }
                    }
                    if !all {
                        // Someone else acted: decide again on fresh data.
                        return Ok(deferred);
                    }
                }
                other => self.act(other).await?,
            }
        }
        if counters_only {
            return self.write_status(policy, &plan.status).await;
        }
        Ok(deferred)
    }

    async fn act(&self, action: &Action) -> Result<(), ActError> {
        match action {
            Action::CreateSlot { name } => {
                let mut lease = Lease::default();
                lease.metadata.name = Some(name.clone());
                lease.metadata.labels = Some(
                    [
                        (names::SLOT_LABEL.to_owned(), "true".to_owned()),
                        ("app.kubernetes.io/managed-by".to_owned(), names::MANAGED_BY.to_owned()),
                    ]
                    .into(),
                );
                lease.spec = Some(LeaseSpec::default());
                match self.leases().create(&Self::pp(), &lease).await {
                    Ok(l) => {
                        tracing::info!(slot = %name, "created slot");
                        self.shared.put(&l);
                    }
                    Err(kube::Error::Api(s)) if s.is_already_exists() => {}
                    Err(e) => return Err(ActError::CreateSlot { slot: name.clone(), source: e }),
                }
            }
            Action::DeleteSlot { name, resource_version } => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions { resource_version: resource_version.clone(), uid: None }),
                    ..Default::default()
                };
                match self.leases().delete(name, &dp).await {
                    Ok(_) => {
                        tracing::info!(slot = %name, "removed surplus slot");
                        self.shared.forget_slot(name);
                    }
                    Err(e) if conflict(&e) => {}
                    Err(e) => return Err(ActError::DeleteSlot { slot: name.clone(), source: e }),
                }
            }
            Action::Reclaim { slot, holder, resource_version, .. }
            | Action::Free { slot, holder, resource_version }
            | Action::Revoke { slot, holder, resource_version } => {
                let expired = matches!(action, Action::Reclaim { .. });
                if self.clear_holder(slot, holder, resource_version.as_deref()).await? {
                    if matches!(action, Action::Revoke { .. }) {
                        tracing::warn!(%slot, node = %holder, "revoked a slot the leader did not grant");
                        self.metrics.revoked.inc();
                        self.lift_cordon(holder).await?;
                        if let Some(shadow) = self.shadow_object(holder) {
                            let note = format!(
                                "{slot} was held by {holder} without a grant in the leader's ledger (UpdatePolicy status.grants); revoked"
                            );
                            self.event(&shadow, EventType::Warning, "SlotRevoked", note);
                        }
                    } else if expired {
                        let held_too_long =
                            matches!(action, Action::Reclaim { reason: FailureReason::SlotHeldTooLong, .. });
                        let note = if held_too_long {
                            tracing::warn!(%slot, node = %holder, "took back a slot held longer than maxSlotHold");
                            format!("{slot} was held longer than maxSlotHold; taken back, node backed off")
                        } else {
                            tracing::warn!(%slot, node = %holder, "reclaimed expired slot");
                            format!("{slot} expired without being renewed or released; reclaimed")
                        };
                        if matches!(action, Action::Reclaim { lift_cordon: true, .. }) {
                            self.lift_cordon(holder).await?;
                        }
                        if let Some(shadow) = self.shadow_object(holder) {
                            self.event(&shadow, EventType::Warning, "SlotReclaimed", note);
                        }
                    } else {
                        tracing::info!(%slot, node = %holder, "freed the slot of a node that no longer exists");
                    }
                }
            }
            Action::SetSpec { node, spec } => self.set_spec(node, spec).await?,
            Action::DeleteShadowIfNodeGone { node } => {
                // Decided only once the Node watch saw it go: one read
                // confirms it (a Node created since may not be in the watch yet).
                let nodes: Api<Node> = Api::all(self.client.clone());
                if nodes
                    .get_opt(node)
                    .await
                    .map_err(|e| ActError::ReadNode { node: node.clone(), source: e })?
                    .is_none()
                {
                    match self.shadows().delete(&names::shadow_name(node), &DeleteParams::default()).await {
                        Ok(_) => tracing::info!(%node, "deleted the shadow of a node that no longer exists"),
                        Err(kube::Error::Api(s)) if s.is_not_found() => {}
                        Err(e) => return Err(ActError::DeleteShadow { node: node.clone(), source: e }),
                    }
                    self.shared.forget_shadow(node);
                }
            }
            Action::DeleteShadowIfUnmanaged { node } => {
                // One read confirms the Node still does not match (one
                // labelled again since keeps its shadow; one gone loses it).
                let nodes: Api<Node> = Api::all(self.client.clone());
                let current = nodes
                    .get_metadata_opt(node)
                    .await
                    .map_err(|e| ActError::ReadNode { node: node.clone(), source: e })?;
                let labels = current.as_ref().and_then(|n| n.metadata.labels.clone()).unwrap_or_default();
                if current.is_none() || !model::selector::matches(&self.node_selector, &labels) {
                    self.check_leading()?;
                    match self.shadows().delete(&names::shadow_name(node), &DeleteParams::default()).await {
                        Ok(_) => {
                            tracing::info!(%node, "deleted the shadow of a node that left the node selector");
                            self.metrics.shadows_removed.inc();
                            // On the UpdatePolicy (the leader writes Events in
                            // its namespace only): `kubectl describe updatepolicy`.
                            if let Some(policy) = self.shared.with(|s| s.policy.clone()) {
                                let note = format!(
                                    "{node} no longer matches the node selector (its opt-in label was removed) and holds no slot: its shadow {} is deleted; label it again to manage it again",
                                    names::shadow_name(node)
                                );
                                self.event(&policy, EventType::Normal, "NodeUnmanaged", note);
                            }
                        }
                        Err(kube::Error::Api(s)) if s.is_not_found() => {}
                        Err(e) => return Err(ActError::DeleteShadow { node: node.clone(), source: e }),
                    }
                    self.shared.forget_shadow(node);
                }
            }
            Action::CreatePolicy => self.create_policy().await?,
            Action::Grant { .. } => {}
        }
        Ok(())
    }

    /// Lifts the operator's cordon (never a person's) from the node of a
    /// reclaimed slot: its agent is gone or cut off, and nothing else would
    /// ever lift it. If the agent comes back it finds its slot gone and aborts.
    async fn lift_cordon(&self, node: &str) -> Result<(), ActError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        for _ in 0..3 {
            let Some(current) =
                nodes.get_opt(node).await.map_err(|e| ActError::ReadNode { node: node.to_owned(), source: e })?
            else {
                return Ok(());
            };
            let (patch, view) = model::cordon::uncordon(&current, true);
            let Some(patch) = patch else { return Ok(()) };
            self.check_leading()?;
            match nodes.patch(node, &Self::patch_params(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    tracing::warn!(%node, unschedulable = view.unschedulable, "lifted the operator's cordon from the node of a reclaimed slot");
                    return Ok(());
                }
                Err(e) if conflict(&e) => continue,
                Err(e) => return Err(ActError::Uncordon { node: node.to_owned(), source: e }),
            }
        }
        Ok(())
    }

    /// Clears a slot's holder with a checked update. False if it changed meanwhile.
    async fn clear_holder(&self, slot: &str, holder: &str, rv: Option<&str>) -> Result<bool, ActError> {
        let current =
            self.leases().get_opt(slot).await.map_err(|e| ActError::ReadSlot { slot: slot.to_owned(), source: e })?;
        let Some(mut current) = current else { return Ok(false) };
        if current.metadata.resource_version.as_deref() != rv
            || current.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(holder)
        {
            self.shared.put(&current);
            return Ok(false);
        }
        let spec = current.spec.get_or_insert_with(Default::default);
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        match self.leases().replace(slot, &Self::pp(), &current).await {
            Ok(l) => {
                self.shared.put(&l);
                Ok(true)
            }
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(ActError::ClearSlot { slot: slot.to_owned(), source: e }),
        }
    }

    async fn set_spec(&self, node: &str, spec: &BottlerocketShadowSpec) -> Result<(), ActError> {
        // A merge patch of the whole spec, with explicit nulls: only the
        // leader writes the spec.
        let patch = spec.merge_patch();
        match self.shadows().patch(&names::shadow_name(node), &Self::patch_params(), &Patch::Merge(&patch)).await {
            Ok(s) => {
                self.shared.put(&s);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(ActError::WriteSpec { node: node.to_owned(), source: e }),
        }
    }

    /// Grants a slot: the Lease first (checked), then the shadow spec. False
    /// if the Lease changed meanwhile.
    async fn grant(&self, action: &Action, now: Timestamp, free: u32) -> Result<bool, ActError> {
        let Action::Grant { slot, node, lease_duration, spec, resource_version, transitions, waited } = action else {
            return Ok(true);
        };
        // One checked write: a merge patch carrying the resourceVersion the
        // decision saw. If the Lease changed since (a renewal that landed, a
        // rival leader), the API answers 409 and nothing is written.
        let Some(rv) = resource_version else { return Ok(false) };
        let patch = json!({
            "metadata": {"resourceVersion": rv},
            "spec": {
                "holderIdentity": node,
                "acquireTime": MicroTime(now),
                "renewTime": MicroTime(now),
                "leaseDurationSeconds": i32::try_from(lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
                "leaseTransitions": transitions.unwrap_or(0) + 1,
            },
        });
        self.check_leading()?;
        match self.leases().patch(slot, &Self::patch_params(), &Patch::Merge(&patch)).await {
            Ok(l) => self.shared.put(&l),
            // Changed (409) or deleted (404) meanwhile: the watch brings the news.
            Err(e) if conflict(&e) => return Ok(false),
            Err(e) => return Err(ActError::GrantSlot { slot: slot.clone(), source: e }),
        }
        self.metrics.update_started.inc();
        let version = spec.version.as_deref().unwrap_or_default();
        let waited_s = waited.map(|w| w.as_secs());
        let free = free.saturating_sub(1);
        tracing::info!(%slot, %node, %version, waited_s, free, "granted {slot} to {node}");
        self.set_spec(node, spec).await?;
        if let Some(shadow) = self.shadow_object(node) {
            let waited_text = waited_s.map_or_else(|| "?".to_owned(), |w| format!("{w}s"));
            self.event(
                &shadow,
                EventType::Normal,
                "Granted",
                format!("granted {slot} to update to {version} (waited {waited_text})"),
            );
        }
        Ok(true)
    }

    /// A minimal shadow object, enough to reference it in an Event.
    fn shadow_object(&self, node: &str) -> Option<BottlerocketShadow> {
        let mut s = BottlerocketShadow::new(&names::shadow_name(node), BottlerocketShadowSpec::default());
        s.metadata.namespace = Some(self.namespace.clone());
        Some(s)
    }

    /// Events for what the plan counted (called after a successful apply).
    pub fn report_failures(&self, plan: &Plan) {
        for f in &plan.counted {
            if let Some(shadow) = self.shadow_object(&f.node) {
                let pending = self
                    .shared
                    .with(|s| s.shadows.get(&f.node).and_then(|sh| sh.status.as_ref()?.reboot_pending.clone()));
                if f.reason == FailureReason::RebootFailed
                    && let Some(p) = pending
                {
                    let note = format!(
                        "the host accepted the reboot and is still up (boot ID {}): the node stays cordoned and keeps its slot until it reboots; to release it: kubectl annotate node {} {}={}",
                        p.boot_id,
                        f.node,
                        names::RELEASE_REBOOT_ANNOTATION,
                        p.boot_id
                    );
                    self.event(&shadow, EventType::Warning, "RebootPending", note);
                }
                let note = if f.ungranted {
                    format!("failure reported without a grant of the leader (not counted toward halts): {}", f.message)
                } else {
                    format!("update failure counted: {}", f.message)
                };
                self.event(&shadow, EventType::Warning, f.reason.as_str(), note);
            }
        }
    }
}
