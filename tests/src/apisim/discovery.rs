//! Discovery documents (`/version`, `/api`, `/apis`, group and
//! group/version resource lists), legacy (unaggregated) form only, which
//! kubectl and kube-rs fall back to, like kube-testserver.

use serde_json::{Value, json};

use super::crd::version_priority;
use super::resources::{ResourceType, Virtual, virtuals};
use super::store::Inner;

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "36",
        "gitVersion": "v1.36.0-apisim",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "apisim",
        "compiler": "apisim",
        "platform": "linux/amd64"
    })
}

pub fn api(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

const BUILTIN_ORDER: &[&str] =
    &["coordination.k8s.io", "authentication.k8s.io", "policy", "events.k8s.io", "apiextensions.k8s.io"];

fn all_types(inner: &Inner) -> Vec<&ResourceType> {
    let mut v: Vec<&ResourceType> = inner.types().map(|t| &*t.rt).collect();
    v.sort_by(|a, b| a.plural.cmp(&b.plural));
    v
}

fn add_group(out: &mut Vec<(String, Vec<String>)>, g: &str, versions: &[String]) {
    let idx = match out.iter().position(|(n, _)| n == g) {
        Some(i) => i,
        None => {
            out.push((g.to_owned(), Vec::new()));
            out.len() - 1
        }
    };
    let vs = &mut out[idx].1;
    for v in versions {
        if !vs.contains(v) {
            vs.push(v.clone());
        }
    }
    vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
}

/// Group name → served versions (preferred first).
fn groups(inner: &Inner) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for g in BUILTIN_ORDER {
        if *g == "authentication.k8s.io" {
            add_group(&mut out, g, &["v1".to_owned()]);
        }
        for t in all_types(inner).into_iter().filter(|t| t.group == *g) {
            add_group(&mut out, g, &t.served);
        }
    }
    let mut custom: Vec<&ResourceType> = all_types(inner).into_iter().filter(|t| t.is_custom()).collect();
    custom.sort_by(|a, b| a.group.cmp(&b.group));
    for t in custom {
        add_group(&mut out, &t.group, &t.served);
    }
    out
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

pub fn apis(inner: &Inner) -> Value {
    let groups: Vec<Value> = groups(inner).iter().map(|(n, vs)| group_json(n, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(inner: &Inner, name: &str) -> Option<Value> {
    let (n, vs) = groups(inner).into_iter().find(|(n, _)| n == name)?;
    let mut g = group_json(&n, &vs);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn virtual_json(v: &Virtual) -> Value {
    let mut r =
        json!({"name": v.name, "singularName": "", "namespaced": v.namespaced, "kind": v.kind, "verbs": ["create"]});
    if let Some((g, ver)) = v.kind_gv {
        r["group"] = json!(g);
        r["version"] = json!(ver);
    }
    if !v.name.contains('/') {
        r["singularName"] = json!(v.name.trim_end_matches('s'));
    }
    r
}

/// kube-apiserver's `storageVersionHash`: the first 8 bytes of the SHA-256
/// of `group/version/kind`, base64.
pub fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    use base64::Engine;
    let d = ring::digest::digest(&ring::digest::SHA256, format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&d.as_ref()[..8])
}

/// `/api/v1` or `/apis/{group}/{version}`; None when not served.
pub fn resource_list(inner: &Inner, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for t in all_types(inner).into_iter().filter(|t| t.group == group && t.serves(version)) {
        let mut r = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            // The order each kind of server lists them in.
            "verbs": if t.is_custom() {
                json!(["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"])
            } else {
                json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])
            },
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if t.is_custom() {
            r["storageVersionHash"] = json!(storage_version_hash(&t.group, &t.version, &t.kind));
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        if t.status {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    if version == "v1" {
        resources.extend(virtuals().iter().filter(|v| v.group == group).map(virtual_json));
    }
    if resources.is_empty() {
        return None;
    }
    resources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    if group.is_empty() {
        // The core list comes without an apiVersion.
        return Some(json!({"kind": "APIResourceList", "groupVersion": version, "resources": resources}));
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/{version}"), "resources": resources}),
    )
}
