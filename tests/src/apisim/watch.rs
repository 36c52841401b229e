//! Watches: the per-type registry of watchers, the fan-out of a change to
//! the watchers it concerns, and the HTTP body stream of one watch.
//!
//! Fan-out runs in the writer, under the store lock, without a task per
//! object or per watcher: watchers are indexed by the exact
//! `metadata.name` / `spec.nodeName` of their field selector and by
//! namespace, so a change only visits the watchers that may want it. Each
//! watcher has a bounded queue; a watcher whose queue is full is closed (its
//! client sees the stream end and re-watches from its last resourceVersion,
//! which the history replays), so a slow client never blocks writers or other
//! watchers. The body stream of a watch is driven by its own HTTP
//! connection's task and also produces bookmarks and ends at `timeoutSeconds`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::resources::ResourceType;
use super::selectors::{FieldSelector, LabelSelector, field_value};
use super::store::{Change, EventType, Obj, event_line};

/// Which objects a watch (or list) wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, o: &Obj) -> bool {
        if self.namespace.as_deref().is_some_and(|ns| ns != o.ns) {
            return false;
        }
        if !self.labels.matches(&o.labels) {
            return false;
        }
        if self.fields.is_empty() {
            return true;
        }
        let mut parsed: Option<Value> = None;
        self.fields.matches_with(|f| match f {
            "metadata.name" => o.name.clone(),
            "metadata.namespace" => o.ns.clone(),
            "spec.nodeName" => o.node_name.clone().unwrap_or_default(),
            other => field_value(parsed.get_or_insert_with(|| o.value()), other),
        })
    }
}

/// How a watcher wants objects written into its events.
pub type Formatter = Arc<dyn Fn(EventType, &Obj) -> Bytes + Send + Sync>;

#[derive(Clone, Default)]
pub enum Format {
    /// The storage version's event line, shared with every other watcher.
    #[default]
    Shared,
    /// Something else (another API version, a Table): built per event.
    Custom(Formatter),
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Shared => "Shared",
            Format::Custom(_) => "Custom",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    Name(String),
    Node(String),
    Ns(String),
    Global,
}

#[derive(Debug)]
struct Entry {
    filter: Filter,
    format: Format,
    user: String,
    slot: Slot,
    tx: mpsc::Sender<Bytes>,
}

/// The watchers of one resource type.
#[derive(Debug, Default)]
pub struct Watchers {
    next: u64,
    all: HashMap<u64, Entry>,
    slots: HashMap<Slot, HashSet<u64>>,
}

impl Watchers {
    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Registers a watcher with a queue of `capacity` events.
    pub fn add(&mut self, filter: Filter, format: Format, user: &str, capacity: usize) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let slot = if let Some(n) = filter.fields.exact("metadata.name") {
            Slot::Name(n.to_owned())
        } else if let Some(n) = filter.fields.exact("spec.nodeName").filter(|n| !n.is_empty()) {
            Slot::Node(n.to_owned())
        } else if let Some(ns) = &filter.namespace {
            Slot::Ns(ns.clone())
        } else {
            Slot::Global
        };
        self.next += 1;
        let id = self.next;
        self.slots.entry(slot.clone()).or_default().insert(id);
        self.all.insert(id, Entry { filter, format, user: user.to_owned(), slot, tx });
        rx
    }

    fn remove(&mut self, id: u64) {
        if let Some(e) = self.all.remove(&id)
            && let Some(set) = self.slots.get_mut(&e.slot)
        {
            set.remove(&id);
            if set.is_empty() {
                self.slots.remove(&e.slot);
            }
        }
    }

    /// Closes the watchers of users for which `pred` holds.
    pub fn close_where(&mut self, pred: &dyn Fn(&str) -> bool) -> usize {
        let ids: Vec<u64> = self.all.iter().filter(|(_, e)| pred(&e.user)).map(|(id, _)| *id).collect();
        for id in &ids {
            self.remove(*id);
        }
        ids.len()
    }

    /// Hands a change to every watcher it concerns.
    pub fn fan_out(&mut self, rt: &ResourceType, change: &Change) {
        if self.all.is_empty() {
            return;
        }
        let mut ids: Vec<u64> = Vec::new();
        let push = |slot: &Slot, ids: &mut Vec<u64>| {
            if let Some(set) = self.slots.get(slot) {
                ids.extend(set.iter().copied());
            }
        };
        push(&Slot::Name(change.obj.name.clone()), &mut ids);
        let mut nodes: Vec<&String> = change.obj.node_name.iter().collect();
        if let Some(p) = &change.prev
            && let Some(n) = &p.node_name
            && !nodes.contains(&n)
        {
            nodes.push(n);
        }
        for n in nodes {
            push(&Slot::Node(n.clone()), &mut ids);
        }
        push(&Slot::Ns(change.obj.ns.clone()), &mut ids);
        push(&Slot::Global, &mut ids);
        let mut dead = Vec::new();
        // The previous state at this change's resourceVersion, for watchers
        // whose selector the object left (built once, on demand).
        let mut left: Option<Arc<Obj>> = None;
        for id in ids {
            let Some(e) = self.all.get(&id) else { continue };
            let Some((kind, obj)) = classify(&e.filter, change, &mut left) else {
                continue;
            };
            let line = match (&e.format, kind == change.kind && Arc::ptr_eq(&obj, &change.obj)) {
                (Format::Shared, true) => change.line.clone(),
                (Format::Shared, false) => event_line(kind.as_str(), &obj.with_type(&rt.api_version(), &rt.kind)),
                (Format::Custom(f), _) => f(kind, &obj),
            };
            if e.tx.try_send(line).is_err() {
                // Full (a slow client) or closed (gone): either way, end it.
                dead.push(id);
            }
        }
        for id in dead {
            self.remove(id);
        }
    }
}

/// The event a watcher with `filter` sees for `change`, if any.
fn classify(filter: &Filter, change: &Change, left: &mut Option<Arc<Obj>>) -> Option<(EventType, Arc<Obj>)> {
    let now = filter.matches(&change.obj);
    match change.kind {
        EventType::Added => now.then(|| (EventType::Added, change.obj.clone())),
        EventType::Deleted => now.then(|| (EventType::Deleted, change.obj.clone())),
        EventType::Modified => {
            let before = change.prev.as_ref().is_some_and(|p| filter.matches(p));
            match (before, now) {
                (false, true) => Some((EventType::Added, change.obj.clone())),
                (true, true) => Some((EventType::Modified, change.obj.clone())),
                (true, false) => {
                    // Like the watch cache: DELETED with the previous content
                    // at the new resourceVersion.
                    let obj = left
                        .get_or_insert_with(|| {
                            let mut v = change.prev.as_ref().map(|p| p.value()).unwrap_or_default();
                            super::util::meta_mut(&mut v)
                                .insert("resourceVersion".into(), Value::String(change.rv.to_string()));
                            Arc::new(Obj::from_value(v))
                        })
                        .clone();
                    Some((EventType::Deleted, obj))
                }
                (false, false) => None,
            }
        }
    }
}

/// Replays history changes after a resourceVersion for a new watcher.
pub fn replay<'a>(
    filter: &Filter,
    changes: impl Iterator<Item = &'a Arc<Change>>,
    rt: &ResourceType,
    format: &Format,
) -> VecDeque<Pending> {
    let mut out = VecDeque::new();
    for c in changes {
        let mut left = None;
        if let Some((kind, obj)) = classify(filter, c, &mut left) {
            let line = match format {
                Format::Shared if kind == c.kind && Arc::ptr_eq(&obj, &c.obj) => c.line.clone(),
                Format::Shared => event_line(kind.as_str(), &obj.with_type(&rt.api_version(), &rt.kind)),
                Format::Custom(f) => f(kind, &obj),
            };
            out.push_back(Pending::Line(line));
        }
    }
    out
}

/// Something a watch stream sends before its live events.
#[derive(Debug)]
pub enum Pending {
    Line(Bytes),
    /// A synthetic ADDED event for an existing object (formatted when sent).
    Added(Arc<Obj>),
}

/// Everything one watch response needs to produce its body.
pub struct WatchBody {
    pub backlog: VecDeque<Pending>,
    pub rx: Option<mpsc::Receiver<Bytes>>,
    pub deadline: Instant,
    /// Send a BOOKMARK this often (when the client allowed bookmarks).
    pub bookmark_every: Option<Duration>,
    /// `{"apiVersion":..,"kind":..}` prefix data for bookmarks.
    pub api_version: String,
    pub kind: String,
    pub published: Arc<AtomicU64>,
    pub format: Format,
}

impl std::fmt::Debug for WatchBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchBody").field("backlog", &self.backlog.len()).field("kind", &self.kind).finish()
    }
}

/// A BOOKMARK event line at `rv`.
pub fn bookmark_line(api_version: &str, kind: &str, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = serde_json::json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = serde_json::json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": meta});
    event_line("BOOKMARK", obj.to_string().as_bytes())
}

impl WatchBody {
    fn format_added(&self, obj: &Obj) -> Bytes {
        match &self.format {
            Format::Shared => event_line("ADDED", &obj.with_type(&self.api_version, &self.kind)),
            Format::Custom(f) => f(EventType::Added, obj),
        }
    }

    /// The body as a stream of event lines; ends at the deadline, when the
    /// watcher is closed (slow, partitioned, faults) or the type goes away.
    pub fn into_stream(self) -> impl futures::Stream<Item = Bytes> + Send + 'static {
        let next_bookmark = self.bookmark_every.map(|d| Instant::now() + d);
        futures::stream::unfold((self, next_bookmark), |(mut st, mut next_bm)| async move {
            if let Some(p) = st.backlog.pop_front() {
                let line = match p {
                    Pending::Line(l) => l,
                    Pending::Added(o) => st.format_added(&o),
                };
                return Some((line, (st, next_bm)));
            }
            let rx = st.rx.as_mut()?;
            let bm_at = next_bm.unwrap_or(st.deadline);
            tokio::select! {
                biased;
                msg = rx.recv() => msg.map(|l| (l, (st, next_bm))),
                _ = tokio::time::sleep_until(st.deadline) => None,
                _ = tokio::time::sleep_until(bm_at), if next_bm.is_some() => {
                    // Everything up to `published` that this watcher wants
                    // is already in its queue: drain it first (the timer
                    // stays due, so the bookmark follows the queue).
                    let rv = st.published.load(Ordering::Acquire);
                    match rx.try_recv() {
                        Ok(line) => Some((line, (st, next_bm))),
                        Err(mpsc::error::TryRecvError::Empty) => {
                            next_bm = st.bookmark_every.map(|d| Instant::now() + d);
                            let line = bookmark_line(&st.api_version, &st.kind, rv, false);
                            Some((line, (st, next_bm)))
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apisim::resources::builtins;
    use crate::apisim::store::Store;
    use serde_json::json;

    #[test]
    fn a_full_queue_closes_only_that_watcher() {
        let store = Store::new(builtins(), 100);
        let gr = crate::apisim::resources::Gr::new("", "pods");
        let mut inner = store.lock();
        let ts = inner.type_state_mut(&gr).unwrap();
        let mut slow = ts.watchers.add(Filter::default(), Format::Shared, "slow", 2);
        let node_filter = Filter {
            fields: FieldSelector::parse("spec.nodeName=n1", &["spec.nodeName"]).unwrap(),
            ..Filter::default()
        };
        let mut fast = ts.watchers.add(node_filter, Format::Shared, "agent", 100);
        for i in 0..5 {
            let node = if i % 2 == 0 { "n1" } else { "n2" };
            inner.commit(
                &gr,
                json!({"metadata": {"name": format!("p{i}"), "namespace": "ns"}, "spec": {"nodeName": node}}),
            );
        }
        let ts = inner.type_state(&gr).unwrap();
        assert_eq!(ts.watchers.len(), 1, "the slow watcher is gone");
        drop(inner);
        let mut n = 0;
        while slow.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 2, "it keeps what fit");
        let mut names = Vec::new();
        while let Ok(line) = fast.try_recv() {
            let v: Value = serde_json::from_slice(&line).unwrap();
            names.push(v["object"]["metadata"]["name"].as_str().unwrap().to_owned());
        }
        assert_eq!(names, vec!["p0", "p2", "p4"], "only pods on n1");
    }

    #[test]
    fn objects_leaving_a_selector_are_deleted_with_their_last_matching_state() {
        let store = Store::new(builtins(), 100);
        let gr = crate::apisim::resources::Gr::new("", "configmaps");
        let mut inner = store.lock();
        let f = Filter { labels: LabelSelector::parse("a=1").unwrap(), ..Filter::default() };
        let mut rx = inner.type_state_mut(&gr).unwrap().watchers.add(f, Format::Shared, "u", 10);
        inner.commit(&gr, json!({"metadata": {"name": "c", "namespace": "n", "labels": {"a": "1"}}}));
        inner.commit(&gr, json!({"metadata": {"name": "c", "namespace": "n", "labels": {"a": "2"}}}));
        let rv = inner.current_rv();
        drop(inner);
        let first: Value = serde_json::from_slice(&rx.try_recv().unwrap()).unwrap();
        let second: Value = serde_json::from_slice(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(first["type"], "ADDED");
        assert_eq!(second["type"], "DELETED");
        assert_eq!(second["object"]["metadata"]["labels"]["a"], "1");
        assert_eq!(second["object"]["metadata"]["resourceVersion"], rv.to_string());
    }
}
