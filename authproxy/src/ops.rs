//! The writes the authproxy makes on an agent's behalf, always about the
//! caller's own node (the handler has checked that). Each is idempotent:
//! a retry after a lost answer changes nothing more.
//!
//! Read-modify-write with the object's resourceVersion everywhere, so a
//! concurrent change (the leader reclaiming a slot, a person editing a Node)
//! is never overwritten: on 409 the object is read again and the rule
//! applied again, a bounded number of times.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use model::names::{self, managers};
use model::wire::{
    CordonReply, CordonRequest, DrainReport, DrainRequest, HookReply, HookRequest, PodResult, ReleaseSlot, Released,
    RenewSlot, ShadowReply, SlotReply, StatusReport, UncordonRequest,
};
use model::{BottlerocketShadow, BottlerocketShadowSpec, BottlerocketShadowStatus};
use runtime::events::{EventType, Events};

use crate::drain::{self, Class};
use crate::leaseops::{self, Refusal};
use model::cordon as nodeops;

const ATTEMPTS: usize = 5;

/// Why an operation failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Slot(#[from] Refusal),
    #[error("slot {0} does not exist")]
    NoSuchSlot(String),
    #[error("node {0} does not exist")]
    NoSuchNode(String),
    #[error(
        "node {0} does not match the node selector ({1}): it is not managed, so it gets no shadow; label it to manage it"
    )]
    NotManaged(String, String),
    #[error("node {0} has no BottlerocketShadow yet: report status first")]
    NoShadow(String),
    #[error("nothing to request: the node is updating or has no update available")]
    NothingToRequest,
    #[error("{0} kept changing under us; try again")]
    Contended(String),
    #[error("{action}: {source}")]
    Kube { action: &'static str, source: kube::Error },
}

impl OpError {
    /// HTTP status and machine-readable reason.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            OpError::Slot(Refusal::NotASlot(_)) => (422, "NotASlot"),
            OpError::Slot(r) => (409, r.reason()),
            OpError::NoSuchSlot(_) => (404, "NoSuchSlot"),
            OpError::NoSuchNode(_) => (404, "NoSuchNode"),
            OpError::NotManaged(..) => (409, "NotManaged"),
            OpError::NoShadow(_) => (409, "NoShadow"),
            OpError::NothingToRequest => (409, "NothingToRequest"),
            OpError::Contended(_) => (409, "Conflict"),
            OpError::Kube { .. } => (502, "ClusterError"),
        }
    }
}

fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> OpError {
    move |source| OpError::Kube { action, source }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict())
}

/// The cluster, as the authproxy writes to it.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    namespace: String,
    max_slot_lease: Duration,
    /// `--node-selector`: a shadow is created only for a Node it matches.
    node_selector: (String, Vec<model::selector::Requirement>),
    recorder: Events,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(
        client: kube::Client,
        namespace: String,
        max_slot_lease: Duration,
        node_selector: (String, Vec<model::selector::Requirement>),
        instance: Option<String>,
    ) -> Self {
        let recorder = Events::new(client.clone(), managers::AUTHPROXY, instance);
        Cluster { client, namespace, max_slot_lease, node_selector, recorder }
    }

    fn shadows(&self) -> Api<BottlerocketShadow> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn post_params() -> PostParams {
        runtime::client::post_params(managers::AUTHPROXY)
    }

    fn patch_params() -> PatchParams {
        runtime::client::patch_params(managers::AUTHPROXY)
    }

    /// Emits an Event about a Node, in the background (an Event is never worth failing a request).
    fn node_event(&self, node: &str, type_: EventType, reason: &str, action: &str, note: String) {
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_owned()),
            uid: None,
            namespace: Some("default".into()),
            ..Default::default()
        };
        self.recorder.publish(reference, type_, reason, action, note);
    }

    // === shadow status ===

    /// Creates the node's shadow (ownerReference to its Node) if missing,
    /// only for a Node the node selector matches: the leader deletes the
    /// shadow of a node that left it, and an agent still running there (its
    /// DaemonSet pod not yet gone) must not bring it back.
    async fn shadow_or_create(&self, node: &str) -> Result<BottlerocketShadow, OpError> {
        let name = names::shadow_name(node);
        if let Some(s) = self.shadows().get_opt(&name).await.map_err(kube("reading the shadow"))? {
            return Ok(s);
        }
        let node_obj = self.nodes().get_opt(node).await.map_err(kube("reading the node"))?;
        let node_obj = node_obj.ok_or_else(|| OpError::NoSuchNode(node.to_owned()))?;
        let labels = node_obj.metadata.labels.clone().unwrap_or_default();
        if !model::selector::matches(&self.node_selector.1, &labels) {
            return Err(OpError::NotManaged(node.to_owned(), self.node_selector.0.clone()));
        }
        let mut shadow = BottlerocketShadow::new(&name, BottlerocketShadowSpec::default());
        shadow.metadata.namespace = Some(self.namespace.clone());
        shadow.metadata.labels = Some(
            [
                (names::SHADOW_NODE_LABEL.to_owned(), node.to_owned()),
                ("app.kubernetes.io/managed-by".to_owned(), names::MANAGED_BY.to_owned()),
            ]
            .into(),
        );
        shadow.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node.to_owned(),
            uid: node_obj.metadata.uid.clone().unwrap_or_default(),
            controller: None,
            block_owner_deletion: None,
        }]);
        match self.shadows().create(&Self::post_params(), &shadow).await {
            Ok(s) => Ok(s),
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                self.shadows().get(&name).await.map_err(kube("reading the shadow"))
            }
            Err(e) => Err(kube("creating the shadow")(e)),
        }
    }

    /// Applies `change` to the shadow's status with a checked write, retrying on conflict.
    async fn update_status(
        &self,
        node: &str,
        create: bool,
        change: impl Fn(Option<&BottlerocketShadowStatus>, Timestamp) -> Result<BottlerocketShadowStatus, OpError>,
    ) -> Result<ShadowReply, OpError> {
        for _ in 0..ATTEMPTS {
            let mut shadow = if create {
                self.shadow_or_create(node).await?
            } else {
                let got =
                    self.shadows().get_opt(&names::shadow_name(node)).await.map_err(kube("reading the shadow"))?;
                got.ok_or_else(|| OpError::NoShadow(node.to_owned()))?
            };
            let next = change(shadow.status.as_ref(), Timestamp::now())?;
            if shadow.status.as_ref() == Some(&next) {
                return Ok(view(shadow));
            }
            shadow.status = Some(next);
            match self.shadows().replace_status(&names::shadow_name(node), &Self::post_params(), &shadow).await {
                Ok(s) => return Ok(view(s)),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(kube("writing the shadow status")(e)),
            }
        }
        Err(OpError::Contended(format!("shadow {}", names::shadow_name(node))))
    }

    pub async fn report_status(&self, node: &str, report: &StatusReport) -> Result<ShadowReply, OpError> {
        self.update_status(node, true, |prev, now| Ok(crate::report::apply_report(prev, report, now))).await
    }

    pub async fn request_slot(&self, node: &str, report: Option<&StatusReport>) -> Result<ShadowReply, OpError> {
        self.update_status(node, report.is_some(), |prev, now| {
            let status = match report {
                Some(r) => crate::report::apply_report(prev, r, now),
                None => prev.cloned().ok_or(OpError::NothingToRequest)?,
            };
            crate::report::request_slot(&status, now).ok_or(OpError::NothingToRequest)
        })
        .await
    }

    // === slots ===

    async fn lease(&self, slot: &str) -> Result<Lease, OpError> {
        self.leases()
            .get_opt(slot)
            .await
            .map_err(kube("reading the slot"))?
            .ok_or_else(|| OpError::NoSuchSlot(slot.to_owned()))
    }

    async fn replace_lease(&self, slot: &str, lease: &Lease) -> Result<Option<Lease>, OpError> {
        match self.leases().replace(slot, &Self::post_params(), lease).await {
            Ok(l) => Ok(Some(l)),
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(kube("writing the slot")(e)),
        }
    }

    pub async fn renew(&self, node: &str, req: &RenewSlot) -> Result<SlotReply, OpError> {
        let requested = Duration::from_secs(u64::try_from(req.duration_seconds).unwrap_or(0));
        for _ in 0..ATTEMPTS {
            let lease = self.lease(&req.slot).await?;
            let next = leaseops::renew(&lease, node, requested, self.max_slot_lease, Timestamp::now())?;
            if let Some(written) = self.replace_lease(&req.slot, &next).await? {
                return Ok(leaseops::view(&written));
            }
        }
        Err(OpError::Contended(format!("slot {}", req.slot)))
    }

    pub async fn release(&self, node: &str, req: &ReleaseSlot) -> Result<Released, OpError> {
        for _ in 0..ATTEMPTS {
            let lease = match self.lease(&req.slot).await {
                Err(OpError::NoSuchSlot(_)) => return Ok(Released { released: false }),
                other => other?,
            };
            let Some(next) = leaseops::release(&lease, node)? else {
                return Ok(Released { released: false });
            };
            if self.replace_lease(&req.slot, &next).await?.is_some() {
                tracing::info!(node, slot = %req.slot, "slot released");
                return Ok(Released { released: true });
            }
        }
        Err(OpError::Contended(format!("slot {}", req.slot)))
    }

    /// Fencing: the caller holds `slot` for at least `min_remaining_seconds` more.
    async fn fence(&self, node: &str, slot: &str, min_remaining_seconds: i64) -> Result<(), OpError> {
        let lease = self.lease(slot).await?;
        let min = Duration::from_secs(u64::try_from(min_remaining_seconds).unwrap_or(0));
        leaseops::fence(&lease, node, min, Timestamp::now())?;
        Ok(())
    }

    // === node ===

    async fn change_node<R>(
        &self,
        node: &str,
        change: impl Fn(&Node) -> (Option<serde_json::Value>, R),
    ) -> Result<R, OpError> {
        for _ in 0..ATTEMPTS {
            let current = self.nodes().get_opt(node).await.map_err(kube("reading the node"))?;
            let current = current.ok_or_else(|| OpError::NoSuchNode(node.to_owned()))?;
            let (patch, view) = change(&current);
            let Some(patch) = patch else { return Ok(view) };
            match self.nodes().patch(node, &Self::patch_params(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(view),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(kube("patching the node")(e)),
            }
        }
        Err(OpError::Contended(format!("node {node}")))
    }

    pub async fn cordon(&self, node: &str, req: &CordonRequest) -> Result<CordonReply, OpError> {
        self.fence(node, &req.slot, req.min_remaining_seconds).await?;
        let now = Timestamp::now();
        let view = self.change_node(node, |n| nodeops::cordon(n, now, req.exclude_from_load_balancers)).await?;
        if view.changed {
            tracing::info!(node, slot = %req.slot, "cordoned for its update");
            let note = format!("cordoned by the Bottlerocket update operator for an update (slot {})", req.slot);
            self.node_event(node, EventType::Normal, "Cordoned", "Cordon", note);
        }
        Ok(view)
    }

    pub async fn uncordon(&self, node: &str, req: &UncordonRequest) -> Result<CordonReply, OpError> {
        let view = self.change_node(node, |n| nodeops::uncordon(n, req.include_in_load_balancers)).await?;
        if view.changed {
            tracing::info!(node, "uncordoned");
            self.node_event(node, EventType::Normal, "Uncordoned", "Uncordon", "the operator lifted its cordon".into());
        }
        Ok(view)
    }

    /// Runs the hook of `req.phase` that the node's grant names (its
    /// shadow's `spec.walk.hooks`): the marks are the leader's copy of the
    /// UpdatePolicy, never the caller's choice. No such hook: nothing changes.
    pub async fn hook(&self, node: &str, req: &HookRequest) -> Result<HookReply, OpError> {
        self.fence(node, &req.slot, req.min_remaining_seconds).await?;
        let shadow = self.shadows().get_opt(&names::shadow_name(node)).await.map_err(kube("reading the shadow"))?;
        let granted = shadow.filter(|s| s.spec.slot.as_deref() == Some(req.slot.as_str()));
        let hook = granted.and_then(|s| s.spec.walk).and_then(|w| w.hooks).and_then(|h| h.of(req.phase).cloned());
        let Some(hook) = hook.filter(|h| h.problems("hook").is_empty()) else {
            return self.change_node(node, |n| (None, model::hooks::marks_reply(n))).await;
        };
        let now = Timestamp::now();
        let reply = self.change_node(node, |n| model::hooks::apply(n, req.phase, &hook, now)).await?;
        if reply.changed {
            tracing::info!(node, phase = ?req.phase, "reboot hook marks set");
            let note = format!("reboot hook {:?}: marks set on the node", req.phase);
            self.node_event(node, EventType::Normal, "HookStarted", "Hook", note);
        }
        Ok(reply)
    }

    /// Removes every hook mark from the node (not fenced: undoing is always allowed).
    pub async fn clear_hooks(&self, node: &str) -> Result<HookReply, OpError> {
        let reply = self.change_node(node, model::hooks::clear).await?;
        if reply.changed {
            tracing::info!(node, "reboot hook marks removed");
        }
        Ok(reply)
    }

    /// One drain round (see [`crate::drain`]).
    pub async fn drain(
        &self,
        node: &str,
        req: &DrainRequest,
        evict_client: &kube::Client,
    ) -> Result<DrainReport, OpError> {
        self.fence(node, &req.slot, req.min_remaining_seconds).await?;
        // Validated with the request: a selector that does not read never gets here.
        let skip = req.skip_pod_selector.as_deref().map(model::selector::parse).transpose().unwrap_or_default();
        let classify = |p: &Pod| drain::classify(p, skip.as_deref());
        let pods: Api<Pod> = Api::all(self.client.clone());
        let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let list = pods.list(&lp).await.map_err(kube("listing the node's pods"))?;
        let mut report = DrainReport::default();
        let mut to_evict = Vec::new();
        for pod in list.items {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            match classify(&pod) {
                c if c.stays() => report.skipped += 1,
                Class::Terminating => {
                    report.pods.push(PodResult { namespace, name, outcome: model::wire::PodOutcome::Terminating })
                }
                _ => to_evict.push((namespace, name, pod.metadata.uid.clone().unwrap_or_default())),
            }
        }
        // Evictions in small parallel batches: quick for a node of 100 pods,
        // gentle on the API server.
        let grace = req.grace_period_seconds;
        for batch in to_evict.chunks(8) {
            let results = futures::future::join_all(
                batch.iter().map(|(ns, name, uid)| evict(evict_client, ns, name, uid, grace)),
            )
            .await;
            for ((namespace, name, _), outcome) in batch.iter().cloned().zip(results) {
                report.pods.push(PodResult { namespace, name, outcome });
            }
        }
        if req.delete_blocked && report.blocked() > 0 {
            self.delete_blocked(node, &mut report, &to_evict, grace).await?;
        }
        let evicted = report
            .pods
            .iter()
            .filter(|p| matches!(p.outcome, model::wire::PodOutcome::Evicted | model::wire::PodOutcome::Deleted))
            .count();
        report.remaining = if evicted > 0 {
            // Pods with no grace period are gone at once: count what is left,
            // so a node drained in one round needs no second one.
            let after = pods.list(&lp).await.map_err(kube("listing the node's pods"))?;
            let left = after.items.iter().filter(|p| !classify(p).stays()).count();
            u32::try_from(left).unwrap_or(u32::MAX)
        } else {
            u32::try_from(report.pods.iter().filter(|p| !matches!(p.outcome, model::wire::PodOutcome::Gone)).count())
                .unwrap_or(u32::MAX)
        };
        // Events tell the drain's real progress: `Draining` while pods
        // remain, `Drained` once none does (the agent's last round).
        let blocked = report.blocked();
        if blocked > 0 {
            let names: Vec<String> = report
                .pods
                .iter()
                .filter(|p| matches!(p.outcome, model::wire::PodOutcome::Blocked { .. }))
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect();
            let note = format!(
                "eviction refused by a PodDisruptionBudget for {blocked} pod(s): {}; {} pod(s) remaining",
                names.join(", "),
                report.remaining
            );
            self.node_event(node, EventType::Warning, "DrainBlocked", "Drain", note);
        } else if report.remaining == 0 {
            let note = format!(
                "the node is drained for the update ({evicted} pod(s) evicted in the last round; {} left in place: DaemonSet, static or skipped)",
                report.skipped
            );
            self.node_event(node, EventType::Normal, "Drained", "Drain", note);
        } else if evicted > 0 {
            let note = format!("evicted {evicted} pod(s) for the update; {} remaining", report.remaining);
            self.node_event(node, EventType::Normal, "Draining", "Drain", note);
        }
        Ok(report)
    }
}

impl Cluster {
    /// Deletes the pods of `report` a PodDisruptionBudget kept, if the
    /// node's grant opted in (`spec.walk.drain.deleteBlockedPodsAfter`) and
    /// that long has passed since the cordon; otherwise changes nothing.
    /// Each delete names the uid listed, like the evictions.
    async fn delete_blocked(
        &self,
        node: &str,
        report: &mut DrainReport,
        listed: &[(String, String, String)],
        grace: Option<i64>,
    ) -> Result<(), OpError> {
        let shadow = self.shadows().get_opt(&names::shadow_name(node)).await.map_err(kube("reading the shadow"))?;
        let after = shadow
            .and_then(|s| s.spec.walk)
            .and_then(|w| w.drain)
            .and_then(|d| d.delete_blocked_pods_after)
            .and_then(|a| model::parse::duration(&a).ok());
        let Some(after) = after else { return Ok(()) };
        let n = self.nodes().get_opt(node).await.map_err(kube("reading the node"))?;
        let cordoned = n.as_ref().and_then(model::objects::cordoned_at);
        let due = cordoned.is_none_or(|c| {
            jiff::SignedDuration::try_from(after)
                .ok()
                .and_then(|d| c.checked_add(d).ok())
                .is_some_and(|t| t <= Timestamp::now())
        });
        if !due {
            return Ok(());
        }
        let pods: Vec<(usize, String, String, String)> = report
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.outcome, model::wire::PodOutcome::Blocked { .. }))
            .filter_map(|(i, p)| {
                let uid = listed.iter().find(|(ns, name, _)| *ns == p.namespace && *name == p.name)?.2.clone();
                Some((i, p.namespace.clone(), p.name.clone(), uid))
            })
            .collect();
        let mut deleted = Vec::new();
        for (i, ns, name, uid) in pods {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let dp = kube::api::DeleteParams {
                grace_period_seconds: grace.and_then(|g| u32::try_from(g).ok()),
                preconditions: Some(kube::api::Preconditions { uid: Some(uid), resource_version: None }),
                ..Default::default()
            };
            report.pods[i].outcome = match api.delete(&name, &dp).await {
                Ok(_) => {
                    deleted.push(format!("{ns}/{name}"));
                    model::wire::PodOutcome::Deleted
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.message.contains("the UID in the precondition") => {
                    model::wire::PodOutcome::Gone
                }
                Err(kube::Error::Api(s)) if s.code == 403 => model::wire::PodOutcome::Failed {
                    code: 403,
                    message: format!(
                        "{}: deleting blocked pods needs deploy/optional/delete-blocked-pods-rbac.yaml",
                        s.message
                    ),
                },
                Err(kube::Error::Api(s)) => model::wire::PodOutcome::Failed { code: s.code, message: s.message },
                Err(e) => model::wire::PodOutcome::Failed { code: 502, message: e.to_string() },
            };
        }
        if !deleted.is_empty() {
            let note = format!(
                "deleted {} pod(s) whose PodDisruptionBudget refused eviction for {after:?} (drain.deleteBlockedPodsAfter): {}",
                deleted.len(),
                deleted.join(", ")
            );
            self.node_event(node, EventType::Warning, "BlockedPodsDeleted", "Drain", note);
        }
        Ok(())
    }
}

/// Sends one Eviction (policy/v1, typed: kube's EvictParams drops deleteOptions).
async fn evict(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    uid: &str,
    grace_period_seconds: Option<i64>,
) -> model::wire::PodOutcome {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let body = drain::eviction(namespace, name, uid, grace_period_seconds);
    let pp = runtime::client::post_params(managers::AUTHPROXY);
    match pods.create_subresource::<_, serde_json::Value>("eviction", name, &pp, &body).await {
        Ok(_) => drain::outcome(201, ""),
        Err(kube::Error::Api(s)) => drain::outcome(s.code, &s.message),
        Err(e) => drain::outcome(502, &e.to_string()),
    }
}

fn view(shadow: BottlerocketShadow) -> ShadowReply {
    ShadowReply {
        name: shadow.metadata.name.unwrap_or_default(),
        resource_version: shadow.metadata.resource_version,
        spec: shadow.spec,
        status: shadow.status,
    }
}
