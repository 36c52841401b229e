//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! strategic merge patch.
//!
//! Strategic merge patch simplifications: lists are merged by key only where
//! [`super::fields::list_kind`] knows a key (conditions by `type`, containers,
//! env, volumes by `name`, ports, ownerReferences) and `metadata.finalizers`
//! is merged as a set; every other list is replaced. The directives `$patch:
//! replace|delete`, `$retainKeys` and `$deleteFromPrimitiveList/<field>` are
//! understood; `$setElementOrder` is ignored (items keep their order).

use serde_json::{Map, Value};

use super::errors::{ApiError, ApiResult};
use super::fields::{ListKind, list_kind};
use super::resources::ResourceType;

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn rejected() -> ApiError {
    ApiError::new(422, "Invalid", "the server rejected our request due to an error in our request")
        .with_details(Value::Object(Map::new()))
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn pointer_parts(path: &str) -> ApiResult<Vec<String>> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path.strip_prefix('/').ok_or_else(rejected)?;
    Ok(rest.split('/').map(unescape).collect())
}

/// The container at `parts[..len-1]` and the last token.
fn parent<'a>(doc: &'a mut Value, parts: &[String]) -> ApiResult<(&'a mut Value, String)> {
    let (last, init) = parts.split_last().ok_or_else(rejected)?;
    let mut cur = doc;
    for p in init {
        cur = match cur {
            Value::Object(m) => m.get_mut(p).ok_or_else(rejected)?,
            Value::Array(a) => {
                let i: usize = p.parse().map_err(|_| rejected())?;
                a.get_mut(i).ok_or_else(rejected)?
            }
            _ => return Err(rejected()),
        };
    }
    Ok((cur, last.clone()))
}

fn add(doc: &mut Value, path: &str, value: Value) -> ApiResult<()> {
    let parts = pointer_parts(path)?;
    if parts.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (p, last) = parent(doc, &parts)?;
    match p {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last.parse().map_err(|_| rejected())?;
                if i > a.len() {
                    return Err(rejected());
                }
                a.insert(i, value);
            }
        }
        _ => return Err(rejected()),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> ApiResult<Value> {
    let parts = pointer_parts(path)?;
    let (p, last) = parent(doc, &parts)?;
    match p {
        Value::Object(m) => m.remove(&last).ok_or_else(rejected),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| rejected())?;
            if i >= a.len() {
                return Err(rejected());
            }
            Ok(a.remove(i))
        }
        _ => Err(rejected()),
    }
}

fn get(doc: &Value, path: &str) -> ApiResult<Value> {
    doc.pointer(path).cloned().ok_or_else(rejected)
}

/// RFC 6902.
pub fn json_patch(doc: &mut Value, patch: &Value) -> ApiResult<()> {
    let ops = patch.as_array().ok_or_else(|| {
        ApiError::bad_request(
            "error decoding patch: json: cannot unmarshal object into Go value of type jsonpatch.Patch",
        )
    })?;
    for op in ops {
        let invalid = || ApiError::bad_request(format!("invalid operation {op}: unsupported operation"));
        let name = op.get("op").and_then(Value::as_str).ok_or_else(invalid)?;
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        let from = op.get("from").and_then(Value::as_str).unwrap_or_default();
        let value = || op.get("value").cloned().ok_or_else(rejected);
        match name {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path)?;
                add(doc, path, value()?)?;
            }
            "move" => {
                let v = remove(doc, from)?;
                add(doc, path, v)?;
            }
            "copy" => {
                let v = get(doc, from)?;
                add(doc, path, v)?;
            }
            "test" => {
                if get(doc, path)? != value()? {
                    return Err(rejected());
                }
            }
            _ => return Err(invalid()),
        }
    }
    Ok(())
}

/// Strategic merge patch of `patch` into `target` (see the module doc).
pub fn strategic_merge(rt: &ResourceType, target: &mut Value, patch: &Value) {
    smp(rt, &mut Vec::new(), target, patch);
}

fn smp(rt: &ResourceType, names: &mut Vec<String>, target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = p.clone();
        clean.remove("$patch");
        *target = Value::Object(clean);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (t.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() || v.get("$patch").and_then(Value::as_str) == Some("delete") {
            t.remove(k);
            continue;
        }
        names.push(k.clone());
        let kind = {
            let ns: Vec<&str> = names.iter().map(String::as_str).collect();
            list_kind(rt, &ns)
        };
        match (t.get_mut(k), v) {
            (Some(cur @ Value::Object(_)), Value::Object(_)) => smp(rt, names, cur, v),
            (Some(Value::Array(cur)), Value::Array(items)) if kind != ListKind::Atomic => {
                merge_list(rt, names, cur, items, &kind);
            }
            _ => {
                let mut clean = v.clone();
                strip_directives(&mut clean);
                t.insert(k.clone(), clean);
            }
        }
        names.pop();
    }
}

fn merge_list(rt: &ResourceType, names: &mut Vec<String>, cur: &mut Vec<Value>, items: &[Value], kind: &ListKind) {
    if items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace")) {
        *cur = items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect();
        return;
    }
    match kind {
        ListKind::Map(keys) => {
            let key = keys.first().cloned().unwrap_or_default();
            let key_of = |x: &Value| x.get(&key).cloned();
            let server_order: Vec<Option<Value>> = cur.iter().map(key_of).collect();
            let mut patched: Vec<Value> = Vec::new();
            let mut touched: Vec<Option<Value>> = Vec::new();
            for item in items {
                let k = key_of(item);
                touched.push(k.clone());
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    continue;
                }
                let mut merged = match cur.iter().find(|x| k.is_some() && key_of(x) == k) {
                    Some(existing) => {
                        let mut e = existing.clone();
                        smp(rt, names, &mut e, item);
                        e
                    }
                    None => item.clone(),
                };
                strip_directives(&mut merged);
                patched.push(merged);
            }
            let server_only: Vec<Value> =
                cur.iter().filter(|x| key_of(x).is_none() || !touched.contains(&key_of(x))).cloned().collect();
            *cur = merge_sorted(server_only, patched, &server_order, &key_of);
        }
        _ => {
            for item in items {
                if !cur.contains(item) {
                    cur.push(item.clone());
                }
            }
        }
    }
}

/// Interleaves the server-only items with the patched ones like
/// kube-apiserver: both keep their own order, and a server-only item goes
/// before a patched one when the live list had it first.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Option<Value>],
    key_of: &dyn Fn(&Value) -> Option<Value>,
) -> Vec<Value> {
    let index = |v: &Value| {
        let k = key_of(v);
        server_order.iter().position(|s| k.is_some() && *s == k)
    };
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let take_left = match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => matches!((index(a), index(b)), (Some(i), Some(j)) if i < j),
        };
        let next = if take_left { l.next() } else { r.next() };
        out.extend(next);
    }
    out
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apisim::resources::builtins;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_deletes() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops_and_errors() {
        let mut doc = json!({"metadata": {"labels": {"a/b": "1"}}, "l": [1]});
        json_patch(
            &mut doc,
            &json!([
                {"op": "add", "path": "/l/-", "value": 2},
                {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
                {"op": "test", "path": "/l/0", "value": 1},
                {"op": "copy", "from": "/l/1", "path": "/x"},
                {"op": "move", "from": "/x", "path": "/y"},
                {"op": "remove", "path": "/l/0"}
            ]),
        )
        .unwrap();
        assert_eq!(doc, json!({"metadata": {"labels": {"a/b": "2"}}, "l": [2], "y": 2}));
        assert_eq!(json_patch(&mut doc, &json!([{"op": "test", "path": "/y", "value": 3}])).unwrap_err().code, 422);
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "replace", "path": "/nope/x", "value": 3}])).unwrap_err().code,
            422
        );
        assert_eq!(json_patch(&mut doc, &json!([{"op": "bogus", "path": "/y"}])).unwrap_err().code, 400);
    }

    #[test]
    fn strategic_merge_orders_lists_like_kube_apiserver() {
        let pods = builtins().into_iter().find(|r| r.plural == "pods").unwrap();
        let types = |v: &Value| -> Vec<String> {
            v["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["type"].as_str().unwrap().to_owned())
                .collect()
        };
        let mut pod = json!({"status": {"conditions": [{"type": "A"}, {"type": "B"}, {"type": "C"}]}});
        strategic_merge(
            &pods,
            &mut pod,
            &json!({"status": {"conditions": [{"type": "C", "status": "False"}, {"type": "D"}]}}),
        );
        assert_eq!(types(&pod), ["A", "B", "C", "D"]);
        strategic_merge(
            &pods,
            &mut pod,
            &json!({"status": {"conditions": [{"type": "E"}, {"type": "A", "status": "False"}]}}),
        );
        assert_eq!(types(&pod), ["E", "A", "B", "C", "D"]);
        let mut one = json!({"status": {"conditions": [{"type": "Ready"}]}});
        strategic_merge(&pods, &mut one, &json!({"status": {"conditions": [{"type": "PodScheduled"}]}}));
        assert_eq!(types(&one), ["PodScheduled", "Ready"]);
    }

    #[test]
    fn strategic_merge_of_pod_conditions_and_node_fields() {
        let pods = builtins().into_iter().find(|r| r.plural == "pods").unwrap();
        let mut pod = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
        strategic_merge(
            &pods,
            &mut pod,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DisruptionTarget", "status": "True"}]}}),
        );
        let conds = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 3);
        assert_eq!(conds[0], json!({"type": "Ready", "status": "True"}));
        strategic_merge(
            &pods,
            &mut pod,
            &json!({"status": {"conditions": [{"type": "PodScheduled", "$patch": "delete"}]}}),
        );
        assert_eq!(pod["status"]["conditions"].as_array().unwrap().len(), 2);
        let nodes = builtins().into_iter().find(|r| r.plural == "nodes").unwrap();
        let mut node = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]}, "spec": {}});
        strategic_merge(
            &nodes,
            &mut node,
            &json!({"metadata": {"labels": {"b": "2", "a": null}, "finalizers": ["y"]}, "spec": {"unschedulable": true}}),
        );
        assert_eq!(
            node,
            json!({"metadata": {"labels": {"b": "2"}, "finalizers": ["x", "y"]}, "spec": {"unschedulable": true}})
        );
    }
}
