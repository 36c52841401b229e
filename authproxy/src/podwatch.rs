//! The agent pods that exist now (name → uid), from a metadata-only watch of
//! the agents' namespace.
//!
//! A cached token check is used only while the pod its token is bound to is
//! still this one: a deleted or replaced pod's token stops working as soon
//! as the watch shows it (seconds), however long the cache would keep the
//! entry. A terminating pod still counts: its agent may be finishing a step
//! (releasing its slot, lifting its cordon) in its grace period. Before the first list, and while a relist is
//! gathered, the store answers "unknown" and callers check the token again
//! (a review costs more; it is never wrong). The store holds three small
//! fields per pod of the namespace and nothing else.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
struct Store {
    synced: bool,
    /// name → uid
    pods: HashMap<String, String>,
}

/// See the module documentation. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AgentPods {
    store: Arc<RwLock<Store>>,
}

impl AgentPods {
    /// Whether `name` is the live pod with `uid`; `None` until the watch
    /// has listed once.
    pub fn is_live(&self, name: &str, uid: &str) -> Option<bool> {
        let s = self.store.read().unwrap_or_else(|e| e.into_inner());
        if !s.synced {
            return None;
        }
        Some(s.pods.get(name).is_some_and(|u| u == uid))
    }

    fn view(p: &PartialObjectMeta<Pod>) -> Option<(String, String)> {
        let m = &p.metadata;
        Some((m.name.clone()?, m.uid.clone().unwrap_or_default()))
    }

    /// Applies one watch event (`relist` gathers a relist until it is whole).
    fn apply(&self, event: Event<PartialObjectMeta<Pod>>, relist: &mut Option<HashMap<String, String>>) {
        match event {
            Event::Init => *relist = Some(HashMap::new()),
            Event::InitApply(p) => {
                if let Some((k, v)) = Self::view(&p) {
                    relist.get_or_insert_with(HashMap::new).insert(k, v);
                }
            }
            Event::InitDone => {
                let mut s = self.store.write().unwrap_or_else(|e| e.into_inner());
                s.pods = relist.take().unwrap_or_default();
                s.synced = true;
            }
            Event::Apply(p) => {
                if let Some((k, v)) = Self::view(&p) {
                    self.store.write().unwrap_or_else(|e| e.into_inner()).pods.insert(k, v);
                }
            }
            Event::Delete(p) => {
                if let Some(name) = &p.metadata.name {
                    let mut s = self.store.write().unwrap_or_else(|e| e.into_inner());
                    // A delete of an older pod of that name must not remove its successor.
                    if s.pods.get(name).is_some_and(|u| Some(u) == p.metadata.uid.as_ref()) {
                        s.pods.remove(name);
                    }
                }
            }
        }
    }

    /// Watches the pods of `namespace` until `shutdown`; `synced` turns true
    /// after the first list.
    pub fn spawn(
        client: kube::Client,
        namespace: &str,
        shutdown: CancellationToken,
    ) -> (AgentPods, watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
        let pods = AgentPods::default();
        let (tx, rx) = watch::channel(false);
        let api: Api<PartialObjectMeta<Pod>> = Api::namespaced(client, namespace);
        let this = pods.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
            let mut relist = None;
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => return,
                    e = stream.next() => e,
                };
                match event {
                    None => return,
                    Some(Ok(e)) => {
                        let done = matches!(e, Event::InitDone);
                        this.apply(e, &mut relist);
                        if done {
                            tx.send_replace(true);
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "watching agent pods failed; retrying with backoff"),
                }
            }
        });
        (pods, rx, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, uid: &str, terminating: bool) -> PartialObjectMeta<Pod> {
        let mut p = PartialObjectMeta::<Pod>::default();
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(uid.into());
        if terminating {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        }
        p
    }

    #[test]
    fn a_pod_is_live_until_it_goes_or_is_replaced() {
        let pods = AgentPods::default();
        let mut relist = None;
        assert_eq!(pods.is_live("a", "1"), None, "unknown before the first list");
        pods.apply(Event::Init, &mut relist);
        pods.apply(Event::InitApply(pod("a", "1", false)), &mut relist);
        assert_eq!(pods.is_live("a", "1"), None, "a relist counts only once whole");
        pods.apply(Event::InitDone, &mut relist);
        assert_eq!(pods.is_live("a", "1"), Some(true));
        assert_eq!(pods.is_live("a", "2"), Some(false), "another uid of that name");
        pods.apply(Event::Apply(pod("a", "1", true)), &mut relist);
        assert_eq!(pods.is_live("a", "1"), Some(true), "terminating: its agent may finish a step");
        pods.apply(Event::Apply(pod("a", "2", false)), &mut relist);
        pods.apply(Event::Delete(pod("a", "1", true)), &mut relist);
        assert_eq!(pods.is_live("a", "2"), Some(true), "the old pod's delete leaves its successor");
        assert_eq!(pods.is_live("a", "1"), Some(false));
        pods.apply(Event::Delete(pod("a", "2", false)), &mut relist);
        assert_eq!(pods.is_live("a", "2"), Some(false));
    }

    #[test]
    fn a_relist_replaces_the_store() {
        let pods = AgentPods::default();
        let mut relist = None;
        for e in [Event::Init, Event::InitApply(pod("a", "1", false)), Event::InitDone] {
            pods.apply(e, &mut relist);
        }
        for e in [Event::Init, Event::InitApply(pod("b", "9", false)), Event::InitDone] {
            pods.apply(e, &mut relist);
        }
        assert_eq!(pods.is_live("a", "1"), Some(false), "gone while the watch was down");
        assert_eq!(pods.is_live("b", "9"), Some(true));
    }
}
