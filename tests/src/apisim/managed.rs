//! `metadata.managedFields` entries: recording who changed what on every
//! write, and server-side apply (merge, removal of fields a manager stopped
//! applying, conflicts with other managers, `force`). Field sets come from
//! [`super::fields`]; its module doc lists the simplifications.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::errors::{ApiError, ApiResult};
use super::fields::{
    ListKind, Path, diff, fieldset_of, from_fields_v1, list_kind, remove_at, to_fields_v1, under, value_at,
};
use super::resources::ResourceType;
use super::util::now_rfc3339;

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: BTreeSet<Path>,
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        m.insert("time".into(), json!(self.time));
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), to_fields_v1(&self.fields));
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }

    /// How conflict messages name this manager.
    fn describe(&self) -> String {
        if self.operation == "Apply" {
            format!("{:?}", self.manager)
        } else {
            format!("{:?} using {}", self.manager, self.api_version)
        }
    }
}

pub fn read_entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            Entry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: s("subresource"),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            }
        })
        .collect()
}

pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let meta = super::util::meta_mut(obj);
    let list: Vec<Value> = entries.iter().filter(|e| !e.fields.is_empty()).map(Entry::to_json).collect();
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

fn without_managed(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    c
}

/// Records a non-apply write by `manager` that turned `old` into `new`.
/// The body's own `managedFields`, when it has them, replace the old ones.
pub fn record_update(rt: &ResourceType, old: Option<&Value>, new: &mut Value, manager: &str, subresource: &str) {
    let mut entries = if new.pointer("/metadata/managedFields").is_some() {
        read_entries(new)
    } else {
        old.map(read_entries).unwrap_or_default()
    };
    // Like kube-apiserver's SkipNonAppliedManager: an object that has no
    // managedFields (created with nothing to track) is not tracked by
    // updates until something applies to it.
    if old.is_some() && entries.is_empty() {
        write_entries(new, &entries);
        return;
    }
    let (set, removed) = diff(rt, old.map(without_managed).as_ref(), &without_managed(new));
    if set.is_empty() && removed.is_empty() {
        write_entries(new, &entries);
        return;
    }
    let gone = |p: &Path| set.contains(p) || removed.iter().any(|r| under(p, r));
    for e in entries.iter_mut() {
        if !(e.manager == manager && e.operation == "Update" && e.subresource == subresource) {
            e.fields.retain(|p| !gone(p));
        }
    }
    let idx = match entries
        .iter()
        .position(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
    {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.to_owned(),
                operation: "Update".into(),
                api_version: rt.api_version(),
                time: String::new(),
                subresource: subresource.to_owned(),
                fields: BTreeSet::new(),
            });
            entries.len() - 1
        }
    };
    let mine = &mut entries[idx];
    mine.fields.retain(|p| !removed.iter().any(|r| under(p, r)));
    mine.fields.extend(set.iter().cloned());
    mine.time = now_rfc3339();
    entries.retain(|e| !e.fields.is_empty());
    write_entries(new, &entries);
}

/// `.spec.x`, `.status.conditions[type="Ready"].status`, `.metadata.finalizers[="a"]`.
pub fn pretty_path(p: &[String]) -> String {
    let mut out = String::new();
    for el in p {
        if let Some(f) = el.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

fn conflict_error(entries: &[Entry], conflicts: &[(usize, Path)]) -> ApiError {
    let n = conflicts.len();
    let text = if let [(i, p)] = conflicts {
        format!("conflict with {}: {}", entries[*i].describe(), pretty_path(p))
    } else {
        let mut managers: Vec<usize> = conflicts.iter().map(|(i, _)| *i).collect();
        managers.sort_by_key(|i| entries[*i].describe());
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {}:", entries[m].describe()));
            for (_, p) in conflicts.iter().filter(|(i, _)| *i == m) {
                lines.push(format!("- {}", pretty_path(p)));
            }
        }
        lines.join("\n")
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(i, p)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", entries[*i].describe()), "field": pretty_path(p)})
        })
        .collect();
    ApiError::new(409, "Conflict", format!("Apply failed with {n} conflict{}: {text}", if n == 1 { "" } else { "s" }))
        .with_details(json!({"causes": causes}))
}

fn merge(rt: &ResourceType, names: &mut Vec<String>, cur: &mut Value, applied: &Value) {
    match (cur, applied) {
        (Value::Object(c), Value::Object(a)) => {
            for (k, av) in a {
                names.push(k.clone());
                let kind = {
                    let ns: Vec<&str> = names.iter().map(String::as_str).collect();
                    list_kind(rt, &ns)
                };
                match c.get_mut(k) {
                    Some(cv)
                        if (cv.is_object() && av.is_object())
                            || (cv.is_array() && av.is_array() && kind != ListKind::Atomic) =>
                    {
                        merge(rt, names, cv, av);
                    }
                    _ => {
                        c.insert(k.clone(), av.clone());
                    }
                }
                names.pop();
            }
        }
        (Value::Array(c), Value::Array(a)) => {
            let ns: Vec<&str> = names.iter().map(String::as_str).collect();
            match list_kind(rt, &ns) {
                ListKind::Map(keys) => {
                    for item in a {
                        let same = |x: &Value| keys.iter().all(|k| x.get(k) == item.get(k));
                        match c.iter_mut().find(|x| same(x)) {
                            Some(existing) => merge(rt, names, existing, item),
                            None => c.push(item.clone()),
                        }
                    }
                }
                ListKind::Set => {
                    for item in a {
                        if !c.contains(item) {
                            c.push(item.clone());
                        }
                    }
                }
                ListKind::Atomic => *c = a.clone(),
            }
        }
        (c, a) => *c = a.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `current` (the stored
/// object, or an empty skeleton when creating). Returns the merged object
/// with updated managedFields, or a 409 listing the conflicts.
pub fn apply(
    rt: &ResourceType,
    current: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: &str,
) -> ApiResult<Value> {
    let mut entries = read_entries(current);
    let new_set = fieldset_of(rt, applied);
    let mine =
        entries.iter().position(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource);
    let old_set = mine.map(|i| entries[i].fields.clone()).unwrap_or_default();
    let is_leaf = |p: &Path| new_set.range(p.clone()..).nth(1).is_none_or(|next| !under(next, p));
    let mut conflicts: Vec<(usize, Path)> = Vec::new();
    for p in new_set.iter().filter(|p| is_leaf(p)) {
        let (av, cv) = (value_at(applied, p), value_at(current, p));
        if cv.is_none() || cv.zip(av).is_some_and(|(c, a)| super::fields::same(c, a)) {
            continue;
        }
        for (i, e) in entries.iter().enumerate() {
            if Some(i) == mine || (e.manager == manager && e.operation == "Apply") {
                continue;
            }
            if e.fields.contains(p) {
                conflicts.push((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(&entries, &conflicts));
        }
        for (i, p) in &conflicts {
            entries[*i].fields.remove(p);
        }
    }
    let mut merged = without_managed(current);
    for p in old_set.difference(&new_set) {
        let kept = entries.iter().enumerate().any(|(i, e)| Some(i) != mine && e.fields.iter().any(|q| under(q, p)));
        if !kept {
            remove_at(&mut merged, p);
            drop_empty_parents(&mut merged, p);
        }
    }
    merge(rt, &mut Vec::new(), &mut merged, applied);
    let changed = without_managed(current) != merged || old_set != new_set;
    match mine {
        Some(i) => {
            entries[i].fields = new_set;
            if changed {
                entries[i].time = now_rfc3339();
            }
        }
        None => entries.push(Entry {
            manager: manager.to_owned(),
            operation: "Apply".into(),
            api_version: rt.api_version(),
            time: now_rfc3339(),
            subresource: subresource.to_owned(),
            fields: new_set,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// After removing a field, drops maps it left empty (as Go's omitempty would).
fn drop_empty_parents(v: &mut Value, p: &[String]) {
    for len in (1..p.len()).rev() {
        let parent = &p[..len];
        if !parent.last().is_some_and(|el| el.starts_with("f:")) {
            return;
        }
        match value_at(v, parent) {
            Some(Value::Object(m)) if m.is_empty() => remove_at(v, parent),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apisim::resources::builtins;

    fn lease() -> ResourceType {
        builtins().into_iter().find(|r| r.plural == "leases").unwrap()
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let rt = lease();
        let empty = json!({"metadata": {"name": "s1"}});
        let a1 = json!({"metadata": {"name": "s1", "labels": {"x": "1"}}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 10}});
        let v1 = apply(&rt, &empty, &a1, "m1", false, "").unwrap();
        assert_eq!(v1["spec"]["holderIdentity"], "a");
        let a2 = json!({"metadata": {"name": "s1"}, "spec": {"holderIdentity": "b"}});
        let err = apply(&rt, &v1, &a2, "m2", false, "").unwrap_err();
        assert_eq!(err.message, "Apply failed with 1 conflict: conflict with \"m1\": .spec.holderIdentity");
        let v2 = apply(&rt, &v1, &a2, "m2", true, "").unwrap();
        assert_eq!(v2["spec"]["holderIdentity"], "b");
        // m1 stops applying the label and holderIdentity (now m2's): the label goes.
        let a3 = json!({"metadata": {"name": "s1"}, "spec": {"leaseDurationSeconds": 10}});
        let v3 = apply(&rt, &v2, &a3, "m1", false, "").unwrap();
        assert!(v3["metadata"].get("labels").is_none(), "{v3}");
        assert_eq!(v3["spec"]["holderIdentity"], "b");
        let managers: Vec<String> = read_entries(&v3).into_iter().map(|e| e.manager).collect();
        assert_eq!(managers, vec!["m1", "m2"]);
        // An update by m3 takes leaseDurationSeconds; applying it again conflicts "using".
        let mut v4 = v3.clone();
        v4["spec"]["leaseDurationSeconds"] = json!(20);
        record_update(&rt, Some(&v3), &mut v4, "m3", "");
        let err = apply(&rt, &v4, &a3, "m1", false, "").unwrap_err();
        assert!(
            err.message.contains("conflict with \"m3\" using coordination.k8s.io/v1: .spec.leaseDurationSeconds"),
            "{}",
            err.message
        );
    }

    #[test]
    fn keyed_lists_merge_by_key() {
        let pods = builtins().into_iter().find(|r| r.plural == "pods").unwrap();
        let cur = json!({"metadata": {"name": "p"}, "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "X", "status": "True"}]}});
        let applied = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let out = apply(&pods, &cur, &applied, "k", true, "status").unwrap();
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
        assert_eq!(out["status"]["conditions"][0]["status"], "True");
        let fv1 = &out["metadata"]["managedFields"][0]["fieldsV1"];
        assert!(fv1["f:status"]["f:conditions"]["k:{\"type\":\"Ready\"}"].get("f:status").is_some(), "{fv1}");
    }
}
