//! Behaviour of the built-in types: decoding through the real Go-shaped
//! types (k8s-openapi) to find unknown fields and type errors, defaults
//! (pods), validation (the subset kube-testserver implements) and what
//! create/update do to status and generation.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::errors::Cause;
use super::resources::{Flavor, ResourceType};
use super::selectors::LabelSelector;
use super::util::get_str;

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = super::lenient::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Decodes a built-in object through its typed form: `Ok(typed)` drops
/// unknown fields like the Go decoder; `Err` is a type error (400).
/// Custom resources have no typed form: `Ok(None)`.
pub fn typed(rt: &ResourceType, v: &Value) -> Result<Option<Value>, String> {
    use k8s_openapi::api::{coordination::v1 as coord, core::v1 as core, events::v1 as events, policy::v1 as policy};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let out = match rt.flavor {
        Flavor::Namespace => roundtrip::<core::Namespace>(v),
        Flavor::Node => roundtrip::<core::Node>(v),
        Flavor::Pod => roundtrip::<core::Pod>(v),
        Flavor::ServiceAccount => roundtrip::<core::ServiceAccount>(v),
        Flavor::ConfigMap => roundtrip::<core::ConfigMap>(v),
        Flavor::Service => roundtrip::<core::Service>(v),
        Flavor::Secret => roundtrip::<core::Secret>(v),
        Flavor::CoreEvent => roundtrip::<core::Event>(v),
        Flavor::Lease => roundtrip::<coord::Lease>(v),
        Flavor::Pdb => roundtrip::<policy::PodDisruptionBudget>(v),
        Flavor::Event => roundtrip::<events::Event>(v),
        Flavor::Crd => roundtrip::<ext::CustomResourceDefinition>(v),
        Flavor::Custom => return Ok(None),
    };
    out.map(Some)
}

/// Checks a request object of a non-stored kind (Eviction, TokenRequest,
/// TokenReview) through its typed form, like the Go decoder: a 400 for
/// anything that is not an object of that shape.
pub fn check_request_object<T: DeserializeOwned + Serialize>(
    body: &[u8],
    api_version: &str,
    kind: &str,
) -> Result<Value, super::errors::ApiError> {
    let unrecognized = |why: String| {
        super::errors::ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; json parse error: {why}"
        ))
    };
    let mut v: Value = serde_json::from_slice(body).map_err(|e| unrecognized(e.to_string()))?;
    if v.is_null() {
        v = json!({});
    }
    let Some(m) = v.as_object_mut() else {
        return Err(unrecognized("not a JSON object".into()));
    };
    for k in ["apiVersion", "kind"] {
        if m.get(k).is_some_and(|x| !x.is_string() && !x.is_null()) {
            return Err(unrecognized(format!("json: cannot unmarshal into Go struct field .{k} of type string")));
        }
    }
    let given = |k: &str| m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let (given_av, given_kind) = (given("apiVersion"), given("kind"));
    let ok_av = |av: &str| av == api_version || (kind == "Eviction" && av == "policy/v1beta1");
    if let Some(av) = given_av.as_deref().filter(|av| !ok_av(av)) {
        let shown = given_kind.clone().unwrap_or_else(|| kind.to_owned());
        let version = av.rsplit('/').next().unwrap_or(av);
        return Err(super::errors::ApiError::bad_request(format!(
            "{shown} in version {version:?} cannot be handled as a {kind}: no kind {shown:?} is registered for version {av:?} in scheme \"apisim\""
        )));
    }
    if let Some(k) = given_kind.as_deref().filter(|k| *k != kind) {
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        return Err(super::errors::ApiError::bad_request(format!(
            "{k} in version {version:?} cannot be handled as a {kind}: no kind {k:?} is registered for version {api_version:?} in scheme \"apisim\""
        )));
    }
    let mut typed = Value::Object(m.clone());
    if let Some(t) = typed.as_object_mut() {
        t.insert("apiVersion".into(), json!(api_version));
        t.insert("kind".into(), json!(kind));
    }
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    roundtrip::<T>(&typed).map_err(|e| {
        super::errors::ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {e}"
        ))
    })?;
    Ok(v)
}

/// Decodes ObjectMeta alone (custom resources' metadata).
pub fn typed_meta(v: &Value) -> Result<Value, String> {
    roundtrip::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(v)
}

/// Paths of fields in `input` that the typed decode dropped (`a.b[0].c`).
pub fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    None => out.push(p),
                    Some(bv) => unknown_fields(v, bv, &p, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn image_pull_policy(image: &str) -> &'static str {
    let img = image.rsplit_once('@').map_or(image, |(i, _)| i);
    let tag = match img.rsplit_once(':') {
        Some((_, t)) if !t.contains('/') => t,
        _ => "",
    };
    if tag.is_empty() || tag == "latest" { "Always" } else { "IfNotPresent" }
}

fn default_str(m: &mut Map<String, Value>, k: &str, v: Value) {
    let absent = m.get(k).is_none_or(|x| x.is_null() || x.as_str() == Some(""));
    if absent {
        m.insert(k.to_owned(), v);
    }
}

/// kube-apiserver's pod defaults (the subset kube-testserver applies).
fn default_pod(v: &mut Value) {
    let spec = super::util::obj_mut(v, "spec");
    default_str(spec, "restartPolicy", json!("Always"));
    default_str(spec, "dnsPolicy", json!("ClusterFirst"));
    default_str(spec, "schedulerName", json!("default-scheduler"));
    if spec.get("terminationGracePeriodSeconds").is_none_or(Value::is_null) {
        spec.insert("terminationGracePeriodSeconds".into(), json!(30));
    }
    if spec.get("securityContext").is_none_or(Value::is_null) {
        spec.insert("securityContext".into(), json!({}));
    }
    if spec.get("enableServiceLinks").is_none_or(Value::is_null) {
        spec.insert("enableServiceLinks".into(), json!(true));
    }
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| spec.get("serviceAccount").and_then(Value::as_str).filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_owned();
    spec.insert("serviceAccountName".into(), json!(sa));
    spec.insert("serviceAccount".into(), json!(sa));
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default_str(c, "terminationMessagePath", json!("/dev/termination-log"));
                default_str(c, "terminationMessagePolicy", json!("File"));
                if c.get("resources").is_none_or(Value::is_null) {
                    c.insert("resources".into(), json!({}));
                }
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_owned();
                default_str(c, "imagePullPolicy", json!(image_pull_policy(&image)));
            }
        }
    }
}

/// What create does to an object of a built-in type before validation.
pub fn prepare_create(rt: &ResourceType, v: &mut Value) {
    if !v.is_object() {
        return;
    }
    match rt.flavor {
        Flavor::Namespace => {
            let name = get_str(v, &["metadata", "name"]).unwrap_or_default().to_owned();
            if let Some(m) = v.as_object_mut() {
                m.insert("status".into(), json!({"phase": "Active"}));
                m.entry("spec").or_insert_with(|| json!({}));
            }
            super::util::obj_mut(&mut *super::util::meta_mut_value(v), "labels")
                .insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        Flavor::Pod => {
            if let Some(m) = v.as_object_mut() {
                m.insert("status".into(), json!({"phase": "Pending", "qosClass": "BestEffort"}));
            }
            default_pod(v);
        }
        Flavor::Pdb | Flavor::Crd => {
            if let Some(m) = v.as_object_mut() {
                m.remove("status");
            }
        }
        Flavor::Secret => {
            if let Some(m) = v.as_object_mut() {
                default_str(m, "type", json!("Opaque"));
            }
        }
        _ => {}
    }
}

/// Defaults applied whenever an object of a built-in type is decoded.
pub fn apply_defaults(rt: &ResourceType, v: &mut Value) {
    if rt.flavor == Flavor::Crd
        && let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.entry("conversion").or_insert_with(|| json!({"strategy": "None"}));
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            let kind = names.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
            default_str(names, "listKind", json!(format!("{kind}List")));
            default_str(names, "singular", json!(kind.to_lowercase()));
        }
    }
}

/// Validation of built-in types (the subset kube-testserver implements).
pub fn validate(rt: &ResourceType, v: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    match rt.flavor {
        Flavor::Pod => {
            let containers = v.pointer("/spec/containers").and_then(Value::as_array);
            match containers {
                None => errs.push(Cause::required("spec.containers", "")),
                Some(cs) if cs.is_empty() => errs.push(Cause::required("spec.containers", "")),
                Some(cs) => {
                    for (i, c) in cs.iter().enumerate() {
                        for f in ["name", "image"] {
                            if c.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                                errs.push(Cause::required(format!("spec.containers[{i}].{f}"), ""));
                            }
                        }
                    }
                }
            }
            if let Some(old) = old {
                errs.extend(validate_pod_update(v, old));
            }
        }
        Flavor::Lease => {
            if let Some(d) = v.pointer("/spec/leaseDurationSeconds").and_then(Value::as_i64)
                && d <= 0
            {
                errs.push(Cause::invalid("spec.leaseDurationSeconds", &json!(d), "must be greater than 0"));
            }
            if let Some(t) = v.pointer("/spec/leaseTransitions").and_then(Value::as_i64)
                && t < 0
            {
                errs.push(Cause::invalid("spec.leaseTransitions", &json!(t), "must be greater than or equal to 0"));
            }
        }
        Flavor::Pdb => errs.extend(validate_pdb(v)),
        Flavor::Event => {
            for (path, field) in [
                ("/eventTime", "eventTime"),
                ("/reportingController", "reportingController"),
                ("/action", "action"),
                ("/reason", "reason"),
            ] {
                if v.pointer(path).is_none_or(|x| x.is_null() || x.as_str() == Some("")) {
                    errs.push(Cause::required(field, ""));
                }
            }
        }
        _ => {}
    }
    errs
}

fn validate_pod_update(new: &Value, old: &Value) -> Vec<Cause> {
    let strip = |spec: Option<&Value>, old_spec: Option<&Value>| -> Value {
        let mut s = spec.cloned().unwrap_or(Value::Null);
        if let Some(m) = s.as_object_mut() {
            m.remove("activeDeadlineSeconds");
            m.remove("tolerations");
            let old_node = old_spec.and_then(|o| o.get("nodeName")).and_then(Value::as_str).unwrap_or_default();
            if old_node.is_empty() {
                m.remove("nodeName");
            }
            if let Some(Value::Array(cs)) = m.get_mut("containers") {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
        s
    };
    let (ns, os) = (new.get("spec"), old.get("spec"));
    if strip(ns, os) != strip(os, os) {
        vec![Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations`",
        )]
    } else {
        Vec::new()
    }
}

/// Parses an int-or-percent; `Err` for a malformed percentage.
pub fn int_or_percent(v: &Value, total: i64, round_up: bool) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("invalid value {n}")),
        Value::String(s) => {
            let pct: i64 = s.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(|| {
                format!("invalid value for IntOrString: invalid type: string is not a percentage: {s:?}")
            })?;
            let scaled = pct * total;
            Ok(if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) })
        }
        other => Err(format!("invalid value {other}")),
    }
}

fn validate_pdb(v: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let spec = v.get("spec").cloned().unwrap_or(Value::Null);
    let (min, max) = (spec.get("minAvailable"), spec.get("maxUnavailable"));
    if min.is_some_and(|x| !x.is_null()) && max.is_some_and(|x| !x.is_null()) {
        errs.push(Cause::invalid("spec", &json!("<spec>"), "minAvailable and maxUnavailable cannot be both set"));
    }
    for (name, val) in [("minAvailable", min), ("maxUnavailable", max)] {
        match val {
            Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i < 0) => {
                errs.push(Cause::invalid(
                    format!("spec.{name}"),
                    &Value::Number(n.clone()),
                    "must be greater than or equal to 0",
                ));
            }
            Some(Value::String(s)) => {
                let ok = int_or_percent(&json!(s), 100, true).is_ok_and(|p| (0..=100).contains(&p));
                if !ok {
                    errs.push(Cause::invalid(
                        format!("spec.{name}"),
                        &json!(s),
                        "must be a valid percent value between 0% and 100%",
                    ));
                }
            }
            _ => {}
        }
    }
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null())
        && let Err(e) = LabelSelector::from_object(Some(sel))
    {
        errs.push(Cause::invalid("spec.selector", sel, &e));
    }
    if let Some(p) = spec.get("unhealthyPodEvictionPolicy").filter(|p| !p.is_null())
        && p.as_str() != Some("IfHealthyBudget")
        && p.as_str() != Some("AlwaysAllow")
    {
        errs.push(Cause::not_supported(
            "spec.unhealthyPodEvictionPolicy",
            p,
            &["IfHealthyBudget".into(), "AlwaysAllow".into()],
        ));
    }
    errs
}

/// The label key/value checks of ObjectMeta validation.
pub fn validate_labels(v: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    if let Some(labels) = v.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, val) in labels {
            if LabelSelector::parse(k).is_err() {
                errs.push(Cause::invalid("metadata.labels", &json!(k), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            let s = val.as_str().unwrap_or_default();
            if !s.is_empty() && LabelSelector::parse(&format!("a={s}")).is_err() {
                errs.push(Cause::invalid("metadata.labels", val, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
        }
    }
    // Finalizers are qualified names, like label keys.
    if let Some(fins) = v.pointer("/metadata/finalizers").and_then(Value::as_array) {
        for f in fins {
            let s = f.as_str().unwrap_or_default();
            let name = s.rsplit_once('/').map_or(s, |(_, n)| n);
            if name.is_empty() {
                errs.push(Cause::invalid("metadata.finalizers", f, "name part must be non-empty"));
            } else if LabelSelector::parse(s).is_err() {
                errs.push(Cause::invalid("metadata.finalizers", f, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apisim::resources::builtins;

    fn rt(plural: &str) -> ResourceType {
        builtins().into_iter().find(|r| r.plural == plural).unwrap()
    }

    #[test]
    fn typed_decode_finds_unknown_fields_and_type_errors() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "bogus": 1}, "data": {"x": "y"}, "foo": {"bar": 1}});
        let t = typed(&rt("configmaps"), &cm).unwrap().unwrap();
        let mut unknown = Vec::new();
        unknown_fields(&cm, &t, "", &mut unknown);
        assert_eq!(unknown, vec!["foo".to_string(), "metadata.bogus".to_string()]);
        let bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": 1}});
        assert!(typed(&rt("configmaps"), &bad).is_err());
    }

    #[test]
    fn pods_get_defaults_and_immutable_specs() {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}, "status": {"phase": "Running"}});
        prepare_create(&rt("pods"), &mut p);
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        let mut changed = p.clone();
        changed["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(validate(&rt("pods"), &changed, Some(&p)).len(), 1);
        let mut image = p.clone();
        image["spec"]["containers"][0]["image"] = json!("busybox:2");
        assert!(validate(&rt("pods"), &image, Some(&p)).is_empty());
    }

    #[test]
    fn percentages_round() {
        assert_eq!(int_or_percent(&json!("50%"), 3, true), Ok(2));
        assert_eq!(int_or_percent(&json!("50%"), 3, false), Ok(1));
        assert_eq!(int_or_percent(&json!(4), 3, true), Ok(4));
        assert!(int_or_percent(&json!("x%"), 3, true).is_err());
    }
}
