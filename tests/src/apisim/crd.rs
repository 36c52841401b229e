//! CustomResourceDefinitions: validation of the CRD object, the resource
//! type it defines (served versions, schema, status subresource, printer
//! columns), its `Established` status, and the removal of its objects when
//! it is deleted.
//!
//! Differences: a CRD is established synchronously in the request that
//! creates it (one extra status write, as the real controller would do a
//! moment later); there is no `customresourcecleanup` finalizer: deleting a
//! CRD removes its objects and the type at once; names are not checked for
//! conflicts with other CRDs; conversion webhooks are not supported (all
//! served versions share one stored form, `None` conversion).

use std::sync::Arc;

use serde_json::{Value, json};

use super::errors::Cause;
use super::resources::{CrdInfo, Flavor, Gr, PrinterColumn, ResourceType};
use super::store::{Inner, Obj};
use super::util::{get_str, now_rfc3339};

/// Orders versions like Kubernetes: GA > beta > alpha, then by number.
pub fn version_priority(v: &str) -> (u8, u64, u64, String) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0, v.to_owned());
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (0, 0, 0, v.to_owned());
    };
    let tail = &rest[digits.len()..];
    let (rank, minor_text) = if tail.is_empty() {
        (3, "")
    } else if let Some(t) = tail.strip_prefix("beta") {
        (2, t)
    } else if let Some(t) = tail.strip_prefix("alpha") {
        (1, t)
    } else {
        return (0, 0, 0, v.to_owned());
    };
    let minor = minor_text.parse().unwrap_or(0);
    (rank, major, minor, String::new())
}

/// The resource type a CRD object defines, if it is well-formed.
pub fn type_from_crd(crd: &Value) -> Option<ResourceType> {
    let spec = crd.get("spec")?;
    let s = |p: &[&str]| get_str(spec, p).map(str::to_owned);
    let group = s(&["group"])?;
    let plural = s(&["names", "plural"])?;
    let kind = s(&["names", "kind"])?;
    let singular = s(&["names", "singular"]).filter(|x| !x.is_empty()).unwrap_or_else(|| kind.to_lowercase());
    let strings = |p: &str| -> Vec<String> {
        spec.pointer(p)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let versions = spec.get("versions")?.as_array()?;
    let mut info =
        CrdInfo { crd_name: get_str(crd, &["metadata", "name"]).unwrap_or_default().to_owned(), ..CrdInfo::default() };
    let mut served = Vec::new();
    let mut storage = None;
    for v in versions {
        let name = v.get("name")?.as_str()?.to_owned();
        if v.get("served").and_then(Value::as_bool).unwrap_or(false) {
            served.push(name.clone());
        }
        if v.get("storage").and_then(Value::as_bool).unwrap_or(false) {
            storage = Some(name.clone());
        }
        if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
            info.schemas.insert(name.clone(), schema.clone());
        }
        if v.pointer("/subresources/status").is_some() {
            info.status_versions.push(name.clone());
        }
        let cols = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| {
                        let cs = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                        PrinterColumn {
                            name: cs("name"),
                            type_: cs("type"),
                            json_path: cs("jsonPath"),
                            description: cs("description"),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            format: cs("format"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        info.columns.insert(name, cols);
    }
    served.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    let version = storage?;
    Some(ResourceType {
        group,
        status: info.status_versions.contains(&version),
        version,
        served,
        plural,
        singular,
        kind,
        namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
        short_names: strings("/names/shortNames"),
        categories: strings("/names/categories"),
        generation: true,
        flavor: Flavor::Custom,
        field_selectors: &[],
        crd: Some(info),
    })
}

/// The subset of CRD validation kube-apiserver would refuse most often.
pub fn validate(inner: &Inner, crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let group = get_str(&spec, &["group"]).unwrap_or_default();
    let plural = get_str(&spec, &["names", "plural"]).unwrap_or_default();
    let name = get_str(crd, &["metadata", "name"]).unwrap_or_default();
    if group.is_empty() {
        errs.push(Cause::required("spec.group", ""));
    }
    if plural.is_empty() {
        errs.push(Cause::required("spec.names.plural", ""));
    }
    if get_str(&spec, &["names", "kind"]).is_none_or(str::is_empty) {
        errs.push(Cause::required("spec.names.kind", ""));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(Cause::invalid("metadata.name", &json!(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    match get_str(&spec, &["scope"]) {
        Some("Namespaced" | "Cluster") => {}
        Some(other) => {
            errs.push(Cause::not_supported("spec.scope", &json!(other), &["Cluster".into(), "Namespaced".into()]))
        }
        None => errs.push(Cause::required("spec.scope", "")),
    }
    let versions = spec.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(Cause::invalid(
            "spec.versions",
            &json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else if versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count() != 1 {
        errs.push(Cause::invalid(
            "spec.versions",
            &json!("<versions>"),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if v.pointer("/schema/openAPIV3Schema").is_none() {
            errs.push(Cause::required(format!("spec.versions[{i}].schema.openAPIV3Schema"), "schemas are required"));
        }
    }
    if let Some(old) = old {
        for (path, label) in [("/spec/group", "spec.group"), ("/spec/scope", "spec.scope")] {
            if old.pointer(path) != crd.pointer(path) {
                errs.push(Cause::invalid(label, crd.pointer(path).unwrap_or(&Value::Null), "field is immutable"));
            }
        }
    } else if !group.is_empty() && !plural.is_empty() && is_builtin(inner, group, plural) {
        errs.push(Cause::invalid("spec.group", &json!(group), "must not collide with a built-in resource"));
    }
    errs
}

fn is_builtin(inner: &Inner, group: &str, plural: &str) -> bool {
    inner.rt(&Gr::new(group, plural)).is_some_and(|rt| !rt.is_custom())
}

/// Registers (or refreshes) the type of a stored CRD and marks the CRD
/// `NamesAccepted` and `Established`.
pub fn established(inner: &mut Inner, stored: &Arc<Obj>) {
    let mut crd = stored.value();
    if crd.pointer("/metadata/deletionTimestamp").is_some() {
        return;
    }
    let Some(rt) = type_from_crd(&crd) else {
        return;
    };
    inner.put_type(rt);
    let names = crd.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v.get("storage").and_then(Value::as_bool) == Some(true)))
        .and_then(|v| v.get("name"))
        .cloned()
        .unwrap_or(Value::Null);
    let done = crd.pointer("/status/acceptedNames") == Some(&names)
        && crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
    if done {
        return;
    }
    let now = now_rfc3339();
    let status = json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
        ],
        "storedVersions": [storage],
    });
    if let Some(m) = crd.as_object_mut() {
        m.insert("status".into(), status);
    }
    inner.commit(&Gr::new("apiextensions.k8s.io", "customresourcedefinitions"), crd);
}

/// A deleted CRD takes its objects and its type with it.
pub fn remove_type(inner: &mut Inner, gone: &Obj) {
    if let Some(rt) = type_from_crd(&gone.value()) {
        let gr = rt.gr();
        if inner.rt(&gr).is_some_and(|t| t.is_custom()) {
            super::delete::remove_all(inner, &gr);
            inner.remove_type(&gr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1", "foo"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn the_project_crds_define_types() {
        for crd in model::crds() {
            let v = serde_json::to_value(&crd).unwrap();
            let rt = type_from_crd(&v).unwrap();
            assert!(rt.status, "{}", rt.kind);
            assert!(rt.namespaced);
            assert!(rt.schema().is_some());
        }
    }
}
