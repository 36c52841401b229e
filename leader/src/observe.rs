//! What the leader observes: managed Nodes, BottlerocketShadows, slot Leases
//! and the UpdatePolicy, kept current by watches (no polling) and by the
//! answers to the leader's own writes, reduced to the compact views the
//! decisions need (a Node's image list never sits in the leader's memory).
//!
//! Every replica watches, leader or standby, so a standby that takes over
//! decides on a warm cache. Readiness is "every watch delivered its first
//! list".
//!
//! Besides the managed Nodes (full objects, by the node selector), the names
//! of all Nodes are watched, metadata only: the shadow of a Node that is
//! gone is deleted when the watch says so, not by reading each unmanaged
//! Node on every pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::Stream;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use model::{BottlerocketShadow, UpdatePolicy};
use model::{names, objects};
use runtime::cache::{Freshness, Source};
use tokio::sync::{Notify, watch};

use crate::decide::{ObservedNode, ObservedShadow, ObservedSlot};

/// The leader's picture of the cluster. The decision function borrows these
/// maps directly (no copy per pass), under the lock.
#[derive(Debug, Default)]
pub struct State {
    pub nodes: BTreeMap<String, ObservedNode>,
    pub shadows: BTreeMap<String, ObservedShadow>,
    pub slots: BTreeMap<String, ObservedSlot>,
    pub policy: Option<UpdatePolicy>,
    /// The name of every Node, managed or not.
    pub all_nodes: BTreeSet<String>,
    /// Versions awaited from the watches after the leader's own writes.
    fresh: Freshness<(usize, String)>,
    synced: [bool; 5],
}

impl State {
    pub fn synced(&self) -> bool {
        self.synced.iter().all(|s| *s)
    }
}

/// Stores `value` under `key` unless [`Freshness`] says the cache holds a
/// newer version (one of our own writes the watch has not caught up with).
/// Returns whether anything the decisions see changed.
fn upsert<T: PartialEq>(
    map: &mut BTreeMap<String, T>,
    fresh: &mut Freshness<(usize, String)>,
    kind: usize,
    key: String,
    rv: Option<&str>,
    source: Source,
    value: T,
) -> bool {
    let slot = (kind, key);
    if !fresh.accept(&slot, rv, source) {
        return false;
    }
    // The watch's echo of our own write changes nothing: no wake-up for it.
    if map.get(&slot.1) == Some(&value) {
        return false;
    }
    map.insert(slot.1, value);
    true
}

pub fn node_view(node: &Node) -> Option<ObservedNode> {
    Some(ObservedNode {
        name: node.metadata.name.clone()?,
        ready: objects::node_ready(node),
        unschedulable: objects::unschedulable(node),
        cordoned_by_us: objects::cordoned_by_us(node),
        opted_out: objects::opted_out(node),
        reboot_released: objects::reboot_released(node).map(str::to_owned),
        labels: node.metadata.labels.clone().unwrap_or_default(),
    })
}

pub fn slot_view(lease: &Lease) -> Option<ObservedSlot> {
    let name = lease.metadata.name.clone()?;
    let index = names::slot_index(&name)?;
    let spec = lease.spec.as_ref();
    Some(ObservedSlot {
        name,
        index,
        holder: objects::lease_holder(lease).map(str::to_owned),
        acquired: spec.and_then(|s| s.acquire_time.as_ref()).map(|t| t.0),
        renewed: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
        duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
        transitions: spec.and_then(|s| s.lease_transitions),
        resource_version: lease.metadata.resource_version.clone(),
    })
}

pub fn shadow_view(shadow: &BottlerocketShadow) -> Option<ObservedShadow> {
    let node = shadow.node_name()?.to_owned();
    // Conditions are for people; the decisions never read them.
    let status = shadow.status.clone().map(|mut s| {
        s.conditions.clear();
        s
    });
    let uid = shadow.metadata.uid.clone().unwrap_or_default();
    Some(ObservedShadow { node, uid, spec: shadow.spec.clone(), status })
}

/// The state shared by the watches, the writer and the decision loop.
#[derive(Debug, Default)]
pub struct Shared {
    state: Mutex<State>,
    /// Signalled on every change; the decision loop coalesces bursts.
    pub changed: Notify,
}

impl Shared {
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        self.with(f);
        self.changed.notify_one();
    }

    /// Records the answer to one of the leader's requests (a write's, or a
    /// read's), waking the decision loop only if something it sees changed.
    pub fn put<K: Kind>(&self, obj: &K) {
        self.record(obj, Source::Answer);
    }

    fn record<K: Kind>(&self, obj: &K, source: Source) {
        if self.with(|s| K::insert(s, obj, source)) {
            self.changed.notify_one();
        }
    }

    pub fn forget_slot(&self, name: &str) {
        self.update(|s| {
            s.slots.remove(name);
        });
    }

    pub fn forget_shadow(&self, node: &str) {
        self.update(|s| {
            s.shadows.remove(node);
        });
    }
}

/// One kind of watched object: how it enters and leaves the state.
pub trait Kind: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static {
    const INDEX: usize;
    /// Records `obj`, which came from `source`; whether anything the decisions see changed.
    fn insert(state: &mut State, obj: &Self, source: Source) -> bool;
    fn remove(state: &mut State, obj: &Self);
    /// Moves this kind's views from `fresh` (a relist) into `state`.
    fn take(state: &mut State, fresh: &mut State);
}

impl Kind for Node {
    const INDEX: usize = 0;
    fn insert(state: &mut State, obj: &Self, source: Source) -> bool {
        node_view(obj).is_some_and(|v| {
            let rv = obj.metadata.resource_version.as_deref();
            upsert(&mut state.nodes, &mut state.fresh, Self::INDEX, v.name.clone(), rv, source, v)
        })
    }
    fn remove(state: &mut State, obj: &Self) {
        if let Some(n) = &obj.metadata.name {
            state.fresh.deleted(&(Self::INDEX, n.clone()), obj.metadata.resource_version.as_deref());
            state.nodes.remove(n);
        }
    }
    fn take(state: &mut State, fresh: &mut State) {
        state.nodes = std::mem::take(&mut fresh.nodes);
    }
}

impl Kind for Lease {
    const INDEX: usize = 1;
    fn insert(state: &mut State, obj: &Self, source: Source) -> bool {
        slot_view(obj).is_some_and(|v| {
            let rv = obj.metadata.resource_version.as_deref();
            upsert(&mut state.slots, &mut state.fresh, Self::INDEX, v.name.clone(), rv, source, v)
        })
    }
    fn remove(state: &mut State, obj: &Self) {
        if let Some(n) = &obj.metadata.name {
            state.fresh.deleted(&(Self::INDEX, n.clone()), obj.metadata.resource_version.as_deref());
            state.slots.remove(n);
        }
    }
    fn take(state: &mut State, fresh: &mut State) {
        state.slots = std::mem::take(&mut fresh.slots);
    }
}

impl Kind for BottlerocketShadow {
    const INDEX: usize = 2;
    fn insert(state: &mut State, obj: &Self, source: Source) -> bool {
        shadow_view(obj).is_some_and(|v| {
            let rv = obj.metadata.resource_version.as_deref();
            upsert(&mut state.shadows, &mut state.fresh, Self::INDEX, v.node.clone(), rv, source, v)
        })
    }
    fn remove(state: &mut State, obj: &Self) {
        if let Some(n) = obj.node_name() {
            state.fresh.deleted(&(Self::INDEX, n.to_owned()), obj.metadata.resource_version.as_deref());
            state.shadows.remove(n);
        }
    }
    fn take(state: &mut State, fresh: &mut State) {
        state.shadows = std::mem::take(&mut fresh.shadows);
    }
}

impl Kind for UpdatePolicy {
    const INDEX: usize = 3;
    fn insert(state: &mut State, obj: &Self, source: Source) -> bool {
        let key = (Self::INDEX, names::POLICY_NAME.to_owned());
        if !state.fresh.accept(&key, obj.metadata.resource_version.as_deref(), source) {
            return false;
        }
        state.policy = Some(obj.clone());
        true
    }
    fn remove(state: &mut State, obj: &Self) {
        state.fresh.deleted(&(Self::INDEX, names::POLICY_NAME.to_owned()), obj.metadata.resource_version.as_deref());
        state.policy = None;
    }
    fn take(state: &mut State, fresh: &mut State) {
        state.policy = fresh.policy.take();
    }
}

/// Every Node's name (metadata only: the leader never needs more of a Node
/// it does not manage).
impl Kind for PartialObjectMeta<Node> {
    const INDEX: usize = 4;
    fn insert(state: &mut State, obj: &Self, _source: Source) -> bool {
        // A Node appearing changes no decision (only one going does), and
        // metadata updates of existing Nodes are not worth a pass.
        if let Some(n) = &obj.metadata.name
            && !state.all_nodes.contains(n)
        {
            state.all_nodes.insert(n.clone());
        }
        false
    }
    fn remove(state: &mut State, obj: &Self) {
        if let Some(n) = &obj.metadata.name {
            state.all_nodes.remove(n);
        }
    }
    fn take(state: &mut State, fresh: &mut State) {
        state.all_nodes = std::mem::take(&mut fresh.all_nodes);
    }
}

async fn watch_kind<K: Kind>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    shared: Arc<Shared>,
    synced: watch::Sender<bool>,
) {
    let mut stream = stream.default_backoff().boxed();
    // A (re)list is gathered as views, not objects: 5,000 full Nodes would
    // cost tens of MiB for a moment, and the allocator keeps what it got.
    let mut relisting: Option<State> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => relisting = Some(State::default()),
            Ok(Event::InitApply(obj)) => {
                K::insert(relisting.get_or_insert_with(State::default), &obj, Source::Relist);
            }
            Ok(Event::InitDone) => {
                let mut fresh = relisting.take().unwrap_or_default();
                // Replace the whole kind at once: a decision never sees half a list.
                let all = shared.with(|s| {
                    K::take(s, &mut fresh);
                    s.fresh.relisted(|(kind, _)| *kind == K::INDEX, std::mem::take(&mut fresh.fresh));
                    s.synced[K::INDEX] = true;
                    s.synced()
                });
                // Readiness first, then the wake-up: a woken decision loop must see it.
                synced.send_replace(all);
                shared.changed.notify_one();
            }
            Ok(Event::Apply(obj)) => shared.record(&obj, Source::Watch),
            Ok(Event::Delete(obj)) => {
                shared.with(|s| K::remove(s, &obj));
                shared.changed.notify_one();
            }
            Err(e) => {
                tracing::warn!(kind = std::any::type_name::<K>(), error = %e, "watch failed; retrying with backoff")
            }
        }
    }
}

/// Starts the five watches. The receiver turns true once all have listed.
pub fn spawn(
    client: &kube::Client,
    namespace: &str,
    node_selector: &str,
    shared: Arc<Shared>,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let shadows: Api<BottlerocketShadow> = Api::namespaced(client.clone(), namespace);
    let policies: Api<UpdatePolicy> = Api::namespaced(client.clone(), namespace);
    let by_labels = |s: &str| watcher::Config::default().labels(s);
    // `Api<PartialObjectMeta<_>>` makes metadata-only lists and watches.
    let meta: Api<PartialObjectMeta<Node>> = Api::all(client.clone());
    let all_nodes = watcher::watcher(meta, watcher::Config::default());
    tokio::spawn(watch_kind(all_nodes, shared.clone(), tx.clone()));
    tokio::spawn(watch_kind(watcher::watcher(nodes, by_labels(node_selector)), shared.clone(), tx.clone()));
    let slots = by_labels(&format!("{}=true", names::SLOT_LABEL));
    tokio::spawn(watch_kind(watcher::watcher(leases, slots), shared.clone(), tx.clone()));
    tokio::spawn(watch_kind(watcher::watcher(shadows, watcher::Config::default()), shared.clone(), tx.clone()));
    let policy = watcher::Config::default().fields(&format!("metadata.name={}", names::POLICY_NAME));
    tokio::spawn(watch_kind(watcher::watcher(policies, policy), shared, tx));
    rx
}
