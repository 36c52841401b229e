//! A minimal OpenAPI v3 document per group version: paths with the
//! `x-kubernetes-group-version-kind` of each resource and the
//! `fieldValidation` parameter. This is what kubectl (≥ 1.27) reads to learn
//! that the server validates fields itself, so `kubectl apply`/`create`
//! send `fieldValidation=Strict` instead of downloading schemas for
//! client-side validation. There are no schemas (`kubectl explain` does not
//! work), and strategic-merge patch metadata comes from kubectl's built-in
//! types.

use serde_json::{Map, Value, json};

use super::resources::ResourceType;
use super::store::Inner;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

fn served_versions(inner: &Inner) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = inner
        .types()
        .flat_map(|t| t.rt.served.iter().map(|v| (t.rt.group.clone(), v.clone())).collect::<Vec<_>>())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `/openapi/v3`: where each group version's document is.
pub fn index(inner: &Inner) -> Value {
    let mut paths = Map::new();
    for (g, v) in served_versions(inner) {
        let p = gv_path(&g, &v);
        let url = format!("/openapi/v3/{p}?hash={}", inner.current_rv());
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

fn operation(rt: &ResourceType, version: &str, action: &str, patch: bool) -> Value {
    let mut params = vec![
        json!({"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}}),
        json!({"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}}),
        json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}),
    ];
    if patch {
        params.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    let mut content = Map::new();
    let types: &[&str] = if patch {
        if rt.is_custom() {
            &["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
        } else {
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ]
        }
    } else {
        &["*/*"]
    };
    for t in types {
        content.insert((*t).to_owned(), json!({"schema": {"type": "object"}}));
    }
    json!({
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": version, "kind": rt.kind},
        "parameters": params,
        "requestBody": {"content": content, "required": true},
        "responses": {"200": {"description": "OK"}},
    })
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
pub fn group_version(inner: &Inner, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for t in inner.types().filter(|t| t.rt.group == group && t.rt.serves(version)) {
        let rt = &t.rt;
        let base = format!("/{}", gv_path(group, version));
        let collection = if rt.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", rt.plural)
        } else {
            format!("{base}/{}", rt.plural)
        };
        paths.insert(collection.clone(), json!({"post": operation(rt, version, "post", false)}));
        let item = format!("{collection}/{{name}}");
        paths.insert(
            item.clone(),
            json!({"put": operation(rt, version, "put", false), "patch": operation(rt, version, "patch", true)}),
        );
        if rt.status {
            paths.insert(
                format!("{item}/status"),
                json!({"put": operation(rt, version, "put", false), "patch": operation(rt, version, "patch", true)}),
            );
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.36.0-apisim"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
