//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! A field set is a set of paths; a path is a list of elements written as
//! in `fieldsV1`: `f:name` (an object field), `k:{"type":"Ready"}` (an item of
//! a list keyed by its fields), `v:"x"` (an item of a set). A path that is a
//! prefix of others and also in the set is written with a `"."` entry.
//!
//! Simplifications against the real field manager (structured-merge-diff):
//! lists are atomic unless listed in [`list_kind`] (pod/node/PDB/CRD
//! conditions, containers, env, ports, volumes, ownerReferences, finalizers)
//! or marked `x-kubernetes-list-type` in a CRD schema; an Update records the
//! leaf fields it changed (plus the maps it created) rather than running the
//! typed diff; apply merges maps recursively and replaces atomic values.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::resources::ResourceType;

pub type Path = Vec<String>;

/// How a list is merged and owned.
#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    Atomic,
    Map(Vec<String>),
    Set,
}

/// The list semantics at a field path (field names only, no list elements).
pub fn list_kind(rt: &ResourceType, path: &[&str]) -> ListKind {
    let keys = |k: &[&str]| ListKind::Map(k.iter().map(|s| s.to_string()).collect());
    if let Some(schema) = rt.schema() {
        let mut s = schema;
        for p in path {
            s = match s.get("properties").and_then(|ps| ps.get(*p)) {
                Some(x) => x,
                None => match s.get("items").and_then(|i| i.get("properties")).and_then(|ps| ps.get(*p)) {
                    Some(x) => x,
                    None => break,
                },
            };
        }
        match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let ks: Vec<String> = s
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                return ListKind::Map(ks);
            }
            Some("set") => return ListKind::Set,
            _ => {}
        }
    }
    match path {
        ["metadata", "finalizers"] => ListKind::Set,
        ["metadata", "ownerReferences"] => keys(&["uid"]),
        ["status", "conditions"] if !rt.is_custom() => keys(&["type"]),
        ["status", "addresses"] => keys(&["type"]),
        ["spec", "containers" | "initContainers" | "ephemeralContainers" | "volumes"] => keys(&["name"]),
        ["spec", "containers" | "initContainers", "env"] => keys(&["name"]),
        ["spec", "containers" | "initContainers", "ports"] => keys(&["containerPort", "protocol"]),
        ["status", "containerStatuses" | "initContainerStatuses"] => keys(&["name"]),
        ["spec", "versions"] if rt.flavor == super::resources::Flavor::Crd => keys(&["name"]),
        _ => ListKind::Atomic,
    }
}

fn key_element(item: &Value, keys: &[String]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        match item.get(k) {
            Some(v) => {
                m.insert(k.clone(), v.clone());
            }
            // containerPort lists default protocol TCP.
            None if k == "protocol" => {
                m.insert(k.clone(), json!("TCP"));
            }
            None => return None,
        }
    }
    Some(format!("k:{}", Value::Object(m)))
}

/// Metadata fields that are owned like any other field.
const OWNED_META: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// Whether a top-level field is part of what field sets track.
fn tracked_top(k: &str) -> bool {
    !matches!(k, "apiVersion" | "kind")
}

struct Walk<'a> {
    rt: &'a ResourceType,
    names: Vec<&'a str>,
}

impl<'a> Walk<'a> {
    /// Every path in `v` (leaves, plus map items and created maps when `nodes`).
    fn collect(&mut self, v: &'a Value, prefix: &Path, nodes: bool, out: &mut BTreeSet<Path>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                if nodes && !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
                for (k, child) in m {
                    if prefix.is_empty() && !tracked_top(k) {
                        continue;
                    }
                    if self.names.len() == 1 && self.names[0] == "metadata" && !OWNED_META.contains(&k.as_str()) {
                        continue;
                    }
                    let mut p = prefix.clone();
                    p.push(format!("f:{k}"));
                    self.names.push(k);
                    self.collect(child, &p, nodes, out);
                    self.names.pop();
                }
            }
            Value::Array(items) => match list_kind(self.rt, &self.names) {
                ListKind::Atomic => {
                    out.insert(prefix.clone());
                }
                ListKind::Set => {
                    if nodes {
                        out.insert(prefix.clone());
                    }
                    for it in items {
                        let mut p = prefix.clone();
                        p.push(format!("v:{it}"));
                        out.insert(p);
                    }
                }
                ListKind::Map(keys) => {
                    if nodes {
                        out.insert(prefix.clone());
                    }
                    for it in items {
                        let Some(el) = key_element(it, &keys) else {
                            out.insert(prefix.clone());
                            continue;
                        };
                        let mut p = prefix.clone();
                        p.push(el);
                        out.insert(p.clone());
                        self.collect_item(it, &p, nodes, out);
                    }
                }
            },
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
            }
        }
    }

    fn collect_item(&mut self, item: &'a Value, p: &Path, nodes: bool, out: &mut BTreeSet<Path>) {
        if let Value::Object(m) = item {
            for (k, child) in m {
                let mut cp = p.clone();
                cp.push(format!("f:{k}"));
                self.names.push(k);
                self.collect(child, &cp, nodes, out);
                self.names.pop();
            }
        }
    }

    /// Paths set or changed going from `old` to `new`, and paths removed.
    fn diff(
        &mut self,
        old: Option<&'a Value>,
        new: &'a Value,
        prefix: &Path,
        set: &mut BTreeSet<Path>,
        removed: &mut BTreeSet<Path>,
    ) {
        match (old, new) {
            (Some(Value::Object(o)), Value::Object(n)) => {
                for (k, nv) in n {
                    if prefix.is_empty() && !tracked_top(k) {
                        continue;
                    }
                    if self.names.len() == 1 && self.names[0] == "metadata" && !OWNED_META.contains(&k.as_str()) {
                        continue;
                    }
                    let mut p = prefix.clone();
                    p.push(format!("f:{k}"));
                    self.names.push(k);
                    self.diff(o.get(k), nv, &p, set, removed);
                    self.names.pop();
                }
                for k in o.keys().filter(|k| !n.contains_key(*k)) {
                    if prefix.is_empty() && !tracked_top(k) {
                        continue;
                    }
                    let mut p = prefix.clone();
                    p.push(format!("f:{k}"));
                    removed.insert(p);
                }
            }
            (Some(Value::Array(o)), Value::Array(n)) => match list_kind(self.rt, &self.names) {
                ListKind::Map(keys) => {
                    let olds: Vec<(Option<String>, &Value)> = o.iter().map(|i| (key_element(i, &keys), i)).collect();
                    let mut seen = BTreeSet::new();
                    for it in n {
                        let Some(el) = key_element(it, &keys) else {
                            set.insert(prefix.clone());
                            continue;
                        };
                        let mut p = prefix.clone();
                        p.push(el.clone());
                        let prev = olds.iter().find(|(k, _)| k.as_deref() == Some(el.as_str())).map(|(_, v)| *v);
                        if prev.is_none() {
                            set.insert(p.clone());
                        }
                        if let (Some(Value::Object(po)), Value::Object(no)) = (prev, it) {
                            for (k, v) in no {
                                let mut cp = p.clone();
                                cp.push(format!("f:{k}"));
                                self.names.push(k);
                                self.diff(po.get(k), v, &cp, set, removed);
                                self.names.pop();
                            }
                            for k in po.keys().filter(|k| !no.contains_key(*k)) {
                                let mut cp = p.clone();
                                cp.push(format!("f:{k}"));
                                removed.insert(cp);
                            }
                        } else {
                            self.collect_item(it, &p, true, set);
                        }
                        seen.insert(el);
                    }
                    for (k, _) in &olds {
                        if let Some(k) = k.as_ref().filter(|k| !seen.contains(*k)) {
                            let mut p = prefix.clone();
                            p.push(k.clone());
                            removed.insert(p);
                        }
                    }
                }
                ListKind::Set => {
                    for it in n.iter().filter(|i| !o.contains(i)) {
                        let mut p = prefix.clone();
                        p.push(format!("v:{it}"));
                        set.insert(p);
                    }
                    for it in o.iter().filter(|i| !n.contains(i)) {
                        let mut p = prefix.clone();
                        p.push(format!("v:{it}"));
                        removed.insert(p);
                    }
                }
                ListKind::Atomic => {
                    if o != n {
                        set.insert(prefix.clone());
                    }
                }
            },
            (Some(o), n) if same(o, n) => {}
            (_, n) => {
                // New or changed: everything under it is now this writer's.
                self.collect(n, prefix, true, set);
                if matches!(n, Value::Object(m) if m.is_empty()) && !prefix.is_empty() {
                    set.insert(prefix.clone());
                }
            }
        }
    }
}

/// The paths an applied configuration sets.
pub fn fieldset_of(rt: &ResourceType, v: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    Walk { rt, names: Vec::new() }.collect(v, &Vec::new(), false, &mut out);
    // Map items own themselves ("." in fieldsV1).
    out
}

/// What an update changed: (set or changed paths, removed paths).
pub fn diff(rt: &ResourceType, old: Option<&Value>, new: &Value) -> (BTreeSet<Path>, BTreeSet<Path>) {
    let (mut set, mut removed) = (BTreeSet::new(), BTreeSet::new());
    Walk { rt, names: Vec::new() }.diff(old, new, &Vec::new(), &mut set, &mut removed);
    // The top-level struct fields of built-in objects always exist: never "created".
    if !rt.is_custom() {
        for top in ["f:metadata", "f:spec", "f:status"] {
            set.remove(&vec![top.to_owned()]);
        }
    }
    set.remove(&vec!["f:metadata".to_owned()]);
    (set, removed)
}

/// Field sets to and from `fieldsV1` JSON.
pub fn to_fields_v1(set: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut node = &mut root;
        for el in p {
            let entry = node.entry(el.clone()).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            node = match entry {
                Value::Object(m) => m,
                _ => unreachable!("made an object above"),
            };
        }
    }
    // Mark owned inner nodes with ".".
    fn mark(node: &mut Map<String, Value>, path: &mut Path, set: &BTreeSet<Path>) {
        for (k, child) in node.iter_mut() {
            path.push(k.clone());
            if let Value::Object(m) = child {
                if !m.is_empty() && set.contains(path) {
                    m.insert(".".into(), json!({}));
                }
                mark(m, path, set);
            }
            path.pop();
        }
    }
    mark(&mut root, &mut Vec::new(), set);
    Value::Object(root)
}

pub fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        if let Value::Object(m) = v {
            if (m.is_empty() || m.contains_key(".")) && !path.is_empty() {
                out.insert(path.clone());
            }
            for (k, child) in m {
                if k == "." {
                    continue;
                }
                path.push(k.clone());
                walk(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// JSON equality where numbers compare by value (`0` equals `0.0`: a value
/// that went through a typed decode may change representation).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether `p` starts with `prefix`.
pub fn under(p: &[String], prefix: &[String]) -> bool {
    p.len() >= prefix.len() && p[..prefix.len()] == *prefix
}

/// The index of the list item a `k:`/`v:` element names.
fn find_index(items: &[Value], el: &str) -> Option<usize> {
    if let Some(k) = el.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        return items.iter().position(|it| {
            key.iter().all(|(kk, kv)| {
                let actual = it.get(kk).cloned().or_else(|| (kk == "protocol").then(|| json!("TCP")));
                actual.as_ref() == Some(kv)
            })
        });
    }
    let want: Value = serde_json::from_str(el.strip_prefix("v:")?).ok()?;
    items.iter().position(|it| *it == want)
}

/// Follows one path element inside `v`.
pub fn step<'v>(v: &'v Value, el: &str) -> Option<&'v Value> {
    if let Some(f) = el.strip_prefix("f:") {
        return v.get(f);
    }
    let items = v.as_array()?;
    items.get(find_index(items, el)?)
}

pub fn value_at<'v>(v: &'v Value, p: &[String]) -> Option<&'v Value> {
    p.iter().try_fold(v, |cur, el| step(cur, el))
}

/// Removes the field or list item at `p` (nothing if absent).
pub fn remove_at(v: &mut Value, p: &[String]) {
    let Some((last, parent_path)) = p.split_last() else {
        return;
    };
    let mut cur = v;
    for el in parent_path {
        let next = match el.strip_prefix("f:") {
            Some(f) => cur.get_mut(f),
            None => match cur.as_array().and_then(|items| find_index(items, el)) {
                Some(i) => cur.get_mut(i),
                None => None,
            },
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(i) = cur.as_array().and_then(|items| find_index(items, last))
        && let Some(a) = cur.as_array_mut()
    {
        a.remove(i);
    }
}
