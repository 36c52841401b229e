//! Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
//! what `kubectl get` asks for: columns for nodes, pods, leases and PDBs
//! like kube-apiserver's printers, a CRD's `additionalPrinterColumns`
//! (simple JSONPaths: `.a.b`, `.a[0].b`), and NAME/CREATED AT otherwise.

use serde_json::{Value, json};

use super::resources::{Flavor, ResourceType};
use super::util::parse_time;

/// Kubernetes' `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{dy}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(ts: Option<&Value>) -> Value {
    match ts.and_then(Value::as_str).and_then(parse_time) {
        Some(t) => json!(human_duration(jiff::Timestamp::now().as_second() - t.as_second())),
        None => json!("<unknown>"),
    }
}

fn col(name: &str, type_: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": "", "description": "", "priority": priority})
}

fn or_none(v: Option<&str>) -> Value {
    json!(v.filter(|s| !s.is_empty()).unwrap_or("<none>"))
}

/// A simple JSONPath (`.status.currentState`, `.spec.list[0].x`).
fn json_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.trim_start_matches('.').split('.').filter(|p| !p.is_empty()) {
        let (field, index) = match part.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// Column definitions (after Name) and a function giving a row's cells.
fn columns(rt: &ResourceType, version: &str) -> Vec<Value> {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    match rt.flavor {
        Flavor::Node => cols.extend([
            col("Status", "string", 0),
            col("Roles", "string", 0),
            col("Age", "string", 0),
            col("Version", "string", 0),
        ]),
        Flavor::Pod => cols.extend([
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            col("Age", "string", 0),
            col("IP", "string", 1),
            col("Node", "string", 1),
        ]),
        Flavor::Lease => cols.extend([col("Holder", "string", 0), col("Age", "string", 0)]),
        Flavor::Pdb => cols.extend([
            col("Min Available", "string", 0),
            col("Max Unavailable", "string", 0),
            col("Allowed Disruptions", "integer", 0),
            col("Age", "string", 0),
        ]),
        Flavor::Custom => {
            let defined = rt.crd.as_ref().and_then(|c| c.columns.get(version)).cloned().unwrap_or_default();
            if defined.is_empty() {
                cols.push(col("Age", "date", 0));
            }
            for c in defined {
                cols.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
            }
        }
        _ => cols.push(json!({"name": "Created At", "type": "date", "format": "", "description": "", "priority": 0})),
    }
    cols
}

fn cells(rt: &ResourceType, version: &str, o: &Value) -> Vec<Value> {
    let name = json!(o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default());
    let created = o.pointer("/metadata/creationTimestamp");
    let s = |p: &str| o.pointer(p).and_then(Value::as_str);
    let mut row = vec![name];
    match rt.flavor {
        Flavor::Node => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
            let mut status = match ready {
                Some(c) if c["status"] == "True" => "Ready".to_owned(),
                Some(_) => "NotReady".to_owned(),
                None => "Unknown".to_owned(),
            };
            if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<&str> = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| l.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/")).collect())
                .unwrap_or_default();
            row.extend([
                json!(status),
                or_none(Some(&roles.join(","))),
                age(created),
                or_none(s("/status/nodeInfo/kubeletVersion")),
            ]);
        }
        Flavor::Pod => {
            let statuses =
                o.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses.iter().filter_map(|c| c["restartCount"].as_i64()).sum();
            let total = o.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
            let mut status = s("/status/reason").or(s("/status/phase")).unwrap_or_default().to_owned();
            if o.pointer("/metadata/deletionTimestamp").is_some() {
                status = "Terminating".into();
            }
            row.extend([
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                age(created),
                or_none(s("/status/podIP")),
                or_none(s("/spec/nodeName")),
            ]);
        }
        Flavor::Lease => row.extend([json!(s("/spec/holderIdentity").unwrap_or_default()), age(created)]),
        Flavor::Pdb => {
            let show = |p: &str| {
                o.pointer(p)
                    .filter(|v| !v.is_null())
                    .map_or_else(|| "N/A".to_owned(), |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            };
            row.extend([
                json!(show("/spec/minAvailable")),
                json!(show("/spec/maxUnavailable")),
                o.pointer("/status/disruptionsAllowed").cloned().unwrap_or(json!(0)),
                age(created),
            ]);
        }
        Flavor::Custom => {
            let defined = rt.crd.as_ref().and_then(|c| c.columns.get(version)).cloned().unwrap_or_default();
            if defined.is_empty() {
                row.push(age(created));
            }
            for c in defined {
                let v = json_path(o, &c.json_path).filter(|v| !v.is_null());
                row.push(match (c.type_.as_str(), v) {
                    (_, None) => Value::Null,
                    ("date", Some(x)) => age(Some(x)),
                    (_, Some(x)) => x.clone(),
                });
            }
        }
        _ => row.push(created.cloned().unwrap_or(Value::Null)),
    }
    row
}

/// A `meta.k8s.io/v1` Table of `objects` (full objects with apiVersion/kind).
pub fn table(
    rt: &ResourceType,
    version: &str,
    objects: &[Value],
    rv: Option<u64>,
    include: &str,
    headers: bool,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(rt, version, o)});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))});
                }
            }
            row
        })
        .collect();
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "rows": rows});
    if headers {
        t["columnDefinitions"] = json!(columns(rt, version));
    }
    if let Some(rv) = rv {
        t["metadata"]["resourceVersion"] = json!(rv.to_string());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
    }

    #[test]
    fn crd_columns_follow_json_paths() {
        let crd = serde_json::to_value(<model::BottlerocketShadow as kube::CustomResourceExt>::crd()).unwrap();
        let rt = crate::apisim::crd::type_from_crd(&crd).unwrap();
        let o = json!({"metadata": {"name": "brs-a", "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"state": "Idle", "slot": "brupop-slot-0"}, "status": {"current_state": "Idle", "current_version": "1.0.0"}});
        let t = table(&rt, "v2", &[o], Some(5), "None", true);
        let cells = t["rows"][0]["cells"].as_array().unwrap();
        assert_eq!(cells[0], "brs-a");
        assert_eq!(cells[1], "Idle");
        assert_eq!(cells[2], "1.0.0");
        assert_eq!(cells[4], Value::Null, "no Target Version");
        assert_eq!(cells[7], "brupop-slot-0");
        assert_eq!(t["columnDefinitions"][1]["name"], "State");
    }
}
