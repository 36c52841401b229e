//! What the agent reads from the cluster, with its ordinary ServiceAccount
//! token and read-only RBAC: its own shadow, its own Node and the slot Lease
//! its shadow names, each by a watch with a `metadata.name` field selector
//! (nothing fleet-wide), plus a list of the pods on its node for the health
//! check. Writes go through the authproxy, never through this client.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use model::BottlerocketShadow;
use model::names;

use crate::machine::SeenPod;
use runtime::cache::{Freshness, Source};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// The latest version of each watched object (`None`: absent or not yet listed).
#[derive(Clone, Debug)]
pub struct Views {
    pub shadow: watch::Receiver<Option<BottlerocketShadow>>,
    pub node: watch::Receiver<Option<Node>>,
    pub lease: watch::Receiver<Option<Lease>>,
    /// Set when the shadow and Node watches have delivered their first list.
    pub synced: watch::Receiver<bool>,
    /// The slot whose Lease watch has delivered its first list: until it
    /// names the slot the shadow grants, the Lease is unknown (not absent).
    pub lease_synced: watch::Receiver<Option<String>>,
}

/// The freshness of the agent's cached objects, by which one ("shadow",
/// "node", "lease"): see [`runtime::cache`].
pub type Fresh = Arc<Mutex<Freshness<&'static str>>>;

/// Stores `obj` (from `source`) as the cached `key` object unless the cache
/// holds a newer version (an answer to one of our writes the watch has not
/// caught up with, or a version the watch delivered after the answer).
/// Returns whether the stored object changed, so that callers wake the
/// agent only for news.
pub fn store<K: kube::Resource + Clone>(
    tx: &watch::Sender<Option<K>>,
    fresh: &Fresh,
    key: &'static str,
    obj: K,
    source: Source,
) -> bool {
    let accepted =
        fresh.lock().unwrap_or_else(|e| e.into_inner()).accept(&key, obj.meta().resource_version.as_deref(), source);
    accepted
        && tx.send_if_modified(|cur| {
            *cur = Some(obj);
            true
        })
}

/// Reports that a watch delivered its first list.
enum Synced {
    Flag(watch::Sender<bool>),
    Name(watch::Sender<Option<String>>),
}

#[allow(clippy::too_many_arguments)]
async fn watch_one<K>(
    api: Api<K>,
    name: String,
    key: &'static str,
    tx: watch::Sender<Option<K>>,
    fresh: Fresh,
    synced: Synced,
    notify: Arc<Notify>,
    stop: CancellationToken,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default,
{
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut listed: Option<K> = None;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            e = stream.next() => match e { Some(e) => e, None => return },
        };
        match event {
            Ok(Event::Init) => listed = None,
            Ok(Event::InitApply(o)) => listed = Some(o),
            Ok(Event::InitDone) => {
                match listed.take() {
                    Some(o) => {
                        store(&tx, &fresh, key, o, Source::Relist);
                    }
                    None => {
                        fresh.lock().unwrap_or_else(|e| e.into_inner()).forget(&key);
                        tx.send_replace(None);
                    }
                }
                match &synced {
                    Synced::Flag(s) => {
                        s.send_replace(true);
                    }
                    Synced::Name(s) => {
                        s.send_replace(Some(name.clone()));
                    }
                }
            }
            Ok(Event::Apply(o)) => {
                if !store(&tx, &fresh, key, o, Source::Watch) {
                    continue;
                }
            }
            Ok(Event::Delete(o)) => {
                fresh.lock().unwrap_or_else(|e| e.into_inner()).deleted(&key, o.meta().resource_version.as_deref());
                tx.send_replace(None);
            }
            Err(e) => tracing::warn!(object = %name, error = %e, "watch failed; retrying with backoff"),
        }
        notify.notify_one();
    }
}

/// The agent's watches.
#[derive(Debug)]
pub struct Watches {
    pub views: Views,
    pub shadow_tx: watch::Sender<Option<BottlerocketShadow>>,
    pub node_tx: watch::Sender<Option<Node>>,
    pub lease_tx: watch::Sender<Option<Lease>>,
    /// Versions awaited by the caches (see [`store`]).
    pub fresh: Fresh,
    /// Woken on every change.
    pub changed: Arc<Notify>,
}

/// Starts the shadow and Node watches, and a Lease watch that follows the
/// slot the shadow names.
pub fn spawn(client: &kube::Client, namespace: &str, node: &str, stop: CancellationToken) -> Watches {
    let changed = Arc::new(Notify::new());
    let fresh: Fresh = Arc::default();
    let (shadow_tx, shadow) = watch::channel(None);
    let (node_tx, node_rx) = watch::channel(None);
    let (lease_tx, lease) = watch::channel(None);
    let (synced_shadow_tx, synced_shadow) = watch::channel(false);
    let (synced_node_tx, synced_node) = watch::channel(false);
    let (lease_synced_tx, lease_synced) = watch::channel(None);
    let shadows: Api<BottlerocketShadow> = Api::namespaced(client.clone(), namespace);
    let nodes: Api<Node> = Api::all(client.clone());
    tokio::spawn(watch_one(
        shadows,
        names::shadow_name(node),
        "shadow",
        shadow_tx.clone(),
        fresh.clone(),
        Synced::Flag(synced_shadow_tx),
        changed.clone(),
        stop.clone(),
    ));
    tokio::spawn(watch_one(
        nodes,
        node.to_owned(),
        "node",
        node_tx.clone(),
        fresh.clone(),
        Synced::Flag(synced_node_tx),
        changed.clone(),
        stop.clone(),
    ));
    // The Lease watch follows spec.slot.
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let mut shadow_rx = shadow.clone();
    let lease_tx2 = lease_tx.clone();
    let notify = changed.clone();
    let stop2 = stop.clone();
    let fresh2 = fresh.clone();
    tokio::spawn(async move {
        let mut current: Option<(String, CancellationToken)> = None;
        loop {
            let wanted = shadow_rx.borrow_and_update().as_ref().and_then(|s| s.spec.slot.clone());
            if current.as_ref().map(|(n, _)| n) != wanted.as_ref() {
                if let Some((_, token)) = current.take() {
                    token.cancel();
                }
                fresh2.lock().unwrap_or_else(|e| e.into_inner()).forget(&"lease");
                lease_tx2.send_replace(None);
                lease_synced_tx.send_replace(None);
                if let Some(name) = wanted {
                    let token = stop2.child_token();
                    tokio::spawn(watch_one(
                        leases.clone(),
                        name.clone(),
                        "lease",
                        lease_tx2.clone(),
                        fresh2.clone(),
                        Synced::Name(lease_synced_tx.clone()),
                        notify.clone(),
                        token.clone(),
                    ));
                    current = Some((name, token));
                }
                notify.notify_one();
            }
            tokio::select! {
                () = stop2.cancelled() => return,
                r = shadow_rx.changed() => if r.is_err() { return },
            }
        }
    });
    // Synced once both the shadow and the Node listed.
    let (synced_tx, synced) = watch::channel(false);
    tokio::spawn(async move {
        let (mut a, mut b) = (synced_shadow, synced_node);
        let _ = a.wait_for(|v| *v).await;
        let _ = b.wait_for(|v| *v).await;
        synced_tx.send_replace(true);
    });
    Watches {
        views: Views { shadow, node: node_rx, lease, synced, lease_synced },
        shadow_tx,
        node_tx,
        lease_tx,
        fresh,
        changed,
    }
}

/// The pods on `node`, as the health gate sees them (one list with a
/// `spec.nodeName` field selector).
pub async fn pods_on_node(client: &kube::Client, node: &str) -> Result<Vec<SeenPod>, kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?;
    Ok(list.items.into_iter().map(seen).collect())
}

/// A Pod reduced to what the health gate judges.
pub fn seen(p: Pod) -> SeenPod {
    let status = p.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let daemon_set = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "DaemonSet")
        .map(|o| o.name.clone());
    let annotations = p.metadata.annotations.as_ref();
    let mirror = annotations.is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let do_not_disrupt = annotations.is_some_and(|a| {
        [names::DO_NOT_DISRUPT_ANNOTATION, names::KARPENTER_DO_NOT_DISRUPT_ANNOTATION]
            .iter()
            .any(|k| a.get(*k).is_some_and(|v| v == "true"))
    });
    SeenPod {
        namespace: p.metadata.namespace.unwrap_or_default(),
        name: p.metadata.name.unwrap_or_default(),
        labels: p.metadata.labels.unwrap_or_default(),
        daemon_set,
        mirror,
        ready,
        succeeded: phase == "Succeeded",
        failed: phase == "Failed",
        terminating: p.metadata.deletion_timestamp.is_some(),
        do_not_disrupt,
    }
}
