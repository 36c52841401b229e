//! The object store: every object of every type, one monotonic
//! resourceVersion, a bounded change history per type (for watches that
//! resume) and the registered watchers (see `watch`).
//!
//! Objects are kept as compact JSON bytes (without `apiVersion`/`kind`, which
//! are added when served) plus the few fields the indexes need, so 50,000 pods
//! cost tens of megabytes, a list is a concatenation, and a watch event is
//! serialized once and shared by every watcher that gets it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::Value;

use super::resources::{Gr, ResourceType};
use super::watch::Watchers;

/// A stored object.
#[derive(Debug)]
pub struct Obj {
    pub ns: String,
    pub name: String,
    pub uid: String,
    pub rv: u64,
    pub labels: BTreeMap<String, String>,
    /// `spec.nodeName` of pods (indexed).
    pub node_name: Option<String>,
    pub deleting: bool,
    /// The object as JSON without `apiVersion` and `kind`.
    pub json: Bytes,
}

impl Obj {
    /// Builds the stored form of an object (drops `apiVersion`/`kind`).
    pub fn from_value(mut v: Value) -> Obj {
        if let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        let meta = v.get("metadata");
        let s = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or_default().to_owned();
        let labels = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        let node_name = v
            .get("spec")
            .and_then(|s| s.get("nodeName"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let deleting = meta.and_then(|m| m.get("deletionTimestamp")).is_some_and(|d| !d.is_null());
        Obj {
            ns: s("namespace"),
            name: s("name"),
            uid: s("uid"),
            rv: s("resourceVersion").parse().unwrap_or(0),
            labels,
            node_name,
            deleting,
            json: Bytes::from(serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec())),
        }
    }

    /// The object as a JSON value (without apiVersion/kind).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The object with `apiVersion` and `kind` first, as served.
    pub fn with_type(&self, api_version: &str, kind: &str) -> Bytes {
        let head = format!("{{\"apiVersion\":{},\"kind\":{}", Value::from(api_version), Value::from(kind));
        let rest = &self.json[1..];
        let mut out = Vec::with_capacity(head.len() + self.json.len() + 1);
        out.extend_from_slice(head.as_bytes());
        if rest != b"}" {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        Bytes::from(out)
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object, kept in its type's history.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: EventType,
    /// The object after the change (for deletions: its last state, with the deletion's resourceVersion).
    pub obj: Arc<Obj>,
    pub prev: Option<Arc<Obj>>,
    /// The watch event line at the storage version, shared by all watchers.
    pub line: Bytes,
}

/// A watch event line: `{"type":..,"object":..}\n`.
pub fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

type Key = (String, String);

/// Everything stored for one resource type.
#[derive(Debug)]
pub struct TypeState {
    pub rt: Arc<ResourceType>,
    objects: BTreeMap<Key, Arc<Obj>>,
    by_node: HashMap<String, BTreeSet<Key>>,
    history: VecDeque<Arc<Change>>,
    /// Changes after this resourceVersion are all in `history`.
    pub floor: u64,
    pub watchers: Watchers,
}

impl TypeState {
    fn new(rt: Arc<ResourceType>, floor: u64) -> TypeState {
        TypeState {
            rt,
            objects: BTreeMap::new(),
            by_node: HashMap::new(),
            history: VecDeque::new(),
            floor,
            watchers: Watchers::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Changes after `rv`, oldest first.
    pub fn changes_after(&self, rv: u64) -> impl Iterator<Item = &Arc<Change>> {
        let start = self.history.partition_point(|c| c.rv <= rv);
        self.history.iter().skip(start)
    }

    fn index(&mut self, key: &Key, obj: &Obj, add: bool) {
        if let Some(node) = &obj.node_name {
            if add {
                self.by_node.entry(node.clone()).or_default().insert(key.clone());
            } else if let Some(set) = self.by_node.get_mut(node) {
                set.remove(key);
                if set.is_empty() {
                    self.by_node.remove(node);
                }
            }
        }
    }

    /// Objects in `ns` (all when None), or only those on `node` when given.
    pub fn list(&self, ns: Option<&str>, node: Option<&str>) -> Vec<Arc<Obj>> {
        if let Some(node) = node {
            return self
                .by_node
                .get(node)
                .map(|keys| {
                    keys.iter()
                        .filter(|k| ns.is_none_or(|n| k.0 == n))
                        .filter_map(|k| self.objects.get(k).cloned())
                        .collect()
                })
                .unwrap_or_default();
        }
        match ns {
            None => self.objects.values().cloned().collect(),
            Some(ns) => self
                .objects
                .range((ns.to_owned(), String::new())..)
                .take_while(|(k, _)| k.0 == ns)
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    pub fn get(&self, ns: &str, name: &str) -> Option<&Arc<Obj>> {
        self.objects.get(&(ns.to_owned(), name.to_owned()))
    }

    /// Prunes and defaults every stored object by the type's schema.
    fn reprune(&mut self) {
        let Some(schema) = self.rt.schema().cloned() else {
            return;
        };
        for obj in self.objects.values_mut() {
            let before = obj.value();
            let mut after = before.clone();
            super::schema::prune_with(&mut after, &schema, "", true, true, &mut Vec::new());
            if after != before {
                *obj = Arc::new(Obj::from_value(after));
            }
        }
    }
}

/// The state behind the store's lock.
#[derive(Debug)]
pub struct Inner {
    rv: u64,
    types: HashMap<Gr, TypeState>,
    history_cap: usize,
    published: Arc<AtomicU64>,
}

impl Inner {
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn types(&self) -> impl Iterator<Item = &TypeState> {
        self.types.values()
    }

    pub fn type_state(&self, gr: &Gr) -> Option<&TypeState> {
        self.types.get(gr)
    }

    pub fn type_state_mut(&mut self, gr: &Gr) -> Option<&mut TypeState> {
        self.types.get_mut(gr)
    }

    pub fn rt(&self, gr: &Gr) -> Option<Arc<ResourceType>> {
        self.types.get(gr).map(|t| t.rt.clone())
    }

    /// Adds a type (its history starts now), or replaces its description.
    /// A custom type whose schema changed has its stored objects pruned and
    /// defaulted by the new schema, as kube-apiserver does to what it reads
    /// from etcd (no new resourceVersion, no watch event).
    pub fn put_type(&mut self, rt: ResourceType) {
        let gr = rt.gr();
        let rt = Arc::new(rt);
        match self.types.get_mut(&gr) {
            Some(t) => {
                let changed = t.rt.schema() != rt.schema();
                t.rt = rt;
                if changed {
                    t.reprune();
                }
            }
            None => {
                let floor = self.rv;
                self.types.insert(gr, TypeState::new(rt, floor));
            }
        }
    }

    /// Removes a type and closes its watches (its objects must be gone).
    pub fn remove_type(&mut self, gr: &Gr) {
        self.types.remove(gr);
    }

    pub fn get(&self, gr: &Gr, ns: &str, name: &str) -> Option<Arc<Obj>> {
        self.types.get(gr)?.get(ns, name).cloned()
    }

    /// Stores `v` as the new state of its object with the next
    /// resourceVersion and tells the watchers. Returns the stored object.
    pub fn commit(&mut self, gr: &Gr, mut v: Value) -> Option<Arc<Obj>> {
        let ts = self.types.get_mut(gr)?;
        self.rv += 1;
        let rv = self.rv;
        super::util::meta_mut(&mut v).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let obj = Arc::new(Obj::from_value(v));
        let key = (obj.ns.clone(), obj.name.clone());
        let prev = ts.objects.insert(key.clone(), obj.clone());
        if let Some(p) = &prev {
            ts.index(&key, p, false);
        }
        ts.index(&key, &obj, true);
        let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
        let line = event_line(kind.as_str(), &obj.with_type(&ts.rt.api_version(), &ts.rt.kind));
        let change = Arc::new(Change { rv, kind, obj: obj.clone(), prev, line });
        self.record(gr, change);
        Some(obj)
    }

    /// Removes an object; watchers get DELETED with its last state at a new
    /// resourceVersion. Returns that final state.
    pub fn remove(&mut self, gr: &Gr, ns: &str, name: &str) -> Option<Arc<Obj>> {
        let ts = self.types.get_mut(gr)?;
        let key = (ns.to_owned(), name.to_owned());
        let prev = ts.objects.remove(&key)?;
        ts.index(&key, &prev, false);
        self.rv += 1;
        let rv = self.rv;
        let mut v = prev.value();
        super::util::meta_mut(&mut v).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let obj = Arc::new(Obj::from_value(v));
        let line = event_line("DELETED", &obj.with_type(&ts.rt.api_version(), &ts.rt.kind));
        let change = Arc::new(Change { rv, kind: EventType::Deleted, obj: obj.clone(), prev: Some(prev), line });
        self.record(gr, change);
        Some(obj)
    }

    fn record(&mut self, gr: &Gr, change: Arc<Change>) {
        let cap = self.history_cap;
        if let Some(ts) = self.types.get_mut(gr) {
            ts.watchers.fan_out(&ts.rt, &change);
            ts.history.push_back(change.clone());
            while ts.history.len() > cap {
                if let Some(old) = ts.history.pop_front() {
                    ts.floor = old.rv;
                }
            }
        }
        self.published.store(change.rv, Ordering::Release);
    }

    /// Closes the watches for which `pred(user)` holds, in every type.
    pub fn close_watches(&mut self, pred: &dyn Fn(&str) -> bool) -> usize {
        self.types.values_mut().map(|t| t.watchers.close_where(pred)).sum()
    }
}

/// The store: an `Inner` behind one lock (writes are short; lists copy
/// `Arc`s under the lock and serialize outside it).
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    published: Arc<AtomicU64>,
}

impl Store {
    pub fn new(types: Vec<ResourceType>, history_cap: usize) -> Store {
        let published = Arc::new(AtomicU64::new(1));
        let mut inner =
            Inner { rv: 1, types: HashMap::new(), history_cap: history_cap.max(1), published: published.clone() };
        for rt in types {
            inner.put_type(rt);
        }
        Store { inner: Mutex::new(inner), published }
    }

    /// The store's lock (a panic elsewhere never poisons it for good).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resourceVersion up to which every change has been handed to the watchers.
    pub fn published(&self) -> Arc<AtomicU64> {
        self.published.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_served_with_their_type_first() {
        let o = Obj::from_value(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n", "resourceVersion": "7", "labels": {"a": "b"}}, "spec": {"nodeName": "x"}}),
        );
        assert_eq!(o.rv, 7);
        assert_eq!(o.node_name.as_deref(), Some("x"));
        let served: Value = serde_json::from_slice(&o.with_type("v1", "Pod")).unwrap();
        assert_eq!(served["kind"], "Pod");
        assert_eq!(served["metadata"]["labels"]["a"], "b");
        assert!(
            std::str::from_utf8(&o.with_type("v1", "Pod"))
                .unwrap()
                .starts_with("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\"")
        );
    }

    #[test]
    fn history_is_bounded_and_moves_the_floor() {
        let store = Store::new(super::super::resources::builtins(), 3);
        let gr = Gr::new("", "configmaps");
        let mut s = store.lock();
        for i in 0..5 {
            s.commit(&gr, json!({"metadata": {"name": format!("c{i}"), "namespace": "n"}}));
        }
        let ts = s.type_state(&gr).unwrap();
        assert_eq!(ts.changes_after(0).count(), 3);
        assert_eq!(ts.floor, 3, "changes 2 and 3 were dropped");
        assert_eq!(ts.list(Some("n"), None).len(), 5);
        assert!(ts.list(Some("m"), None).is_empty());
    }
}
