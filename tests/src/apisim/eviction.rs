//! `pods/NAME/eviction` with PodDisruptionBudgets, after kube-apiserver's
//! eviction handler and kube-testserver's `eviction.go`: the PDB status is
//! recomputed the way the disruption controller would (expectedPods = the
//! pods matching the selector) at each eviction and when the PDB is written,
//! not when pods change (there is no disruption controller). Evictions run
//! under the store lock, so they are serialized.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::delete::{self, DeleteOpts};
use super::errors::{ApiError, ApiResult};
use super::resources::{Gr, ResourceType};
use super::selectors::LabelSelector;
use super::store::Inner;
use super::util::{get_str, now_rfc3339, parse_time};

/// How long a pod stays in `disruptedPods` (the disruption controller's timeout).
const DISRUPTED_TIMEOUT_SECS: i64 = 120;

fn pods() -> Gr {
    Gr::new("", "pods")
}

fn pdbs() -> Gr {
    Gr::new("policy", "poddisruptionbudgets")
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True")
}

fn terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some_and(|d| !d.is_null())
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default()
}

fn is_healthy(pod: &Value) -> bool {
    !terminating(pod) && phase(pod) == "Running" && is_ready(pod)
}

/// Sets `status` of a PDB object to what the disruption controller would compute.
pub fn refresh_pdb_status(inner: &Inner, pdb: &mut Value) {
    if let Ok(status) = compute_status(inner, pdb)
        && let Some(m) = pdb.as_object_mut()
    {
        m.insert("status".into(), status);
    }
}

fn compute_status(inner: &Inner, pdb: &Value) -> Result<Value, String> {
    let ns = get_str(pdb, &["metadata", "namespace"]).unwrap_or_default();
    let sel = LabelSelector::from_object(pdb.pointer("/spec/selector"))?;
    let pods: Vec<Value> = if sel.is_empty() {
        Vec::new()
    } else {
        inner
            .type_state(&pods())
            .map(|t| t.list(Some(ns), None))
            .unwrap_or_default()
            .iter()
            .filter(|o| sel.matches(&o.labels))
            .map(|o| o.value())
            .collect()
    };
    let now = jiff::Timestamp::now();
    let prev = pdb.pointer("/status/disruptedPods").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut disrupted = Map::new();
    let mut healthy = 0i64;
    for p in &pods {
        if terminating(p) {
            continue;
        }
        let name = get_str(p, &["metadata", "name"]).unwrap_or_default();
        if let Some(t) = prev.get(name)
            && let Some(ts) = t.as_str().and_then(parse_time)
            && ts.as_second() + DISRUPTED_TIMEOUT_SECS > now.as_second()
        {
            disrupted.insert(name.to_owned(), t.clone());
            continue;
        }
        if is_healthy(p) {
            healthy += 1;
        }
    }
    let expected = pods.len() as i64;
    let spec = pdb.get("spec").cloned().unwrap_or(Value::Null);
    let desired = if let Some(mu) = spec.get("maxUnavailable").filter(|v| !v.is_null()) {
        (expected - super::builtin::int_or_percent(mu, expected, true)?).max(0)
    } else if let Some(ma) = spec.get("minAvailable").filter(|v| !v.is_null()) {
        super::builtin::int_or_percent(ma, expected, true)?
    } else {
        0
    };
    let mut allowed = healthy - desired;
    if allowed < 0 || expected <= 0 {
        allowed = 0;
    }
    let mut status = json!({
        "observedGeneration": pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(0)),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    status["conditions"] = condition(pdb, allowed);
    Ok(status)
}

/// The `DisruptionAllowed` condition, keeping its transition time if unchanged.
fn condition(pdb: &Value, allowed: i64) -> Value {
    let (status, reason) = if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    let prev = pdb
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"));
    let time = match prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now_rfc3339()),
    };
    json!([{
        "type": "DisruptionAllowed",
        "status": status,
        "observedGeneration": pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(0)),
        "lastTransitionTime": time,
        "reason": reason,
        "message": "",
    }])
}

fn write_status(inner: &mut Inner, pdb: &Value, status: Value, dry_run: bool) {
    if dry_run || pdb.get("status") == Some(&status) {
        return;
    }
    let mut v = pdb.clone();
    if let Some(m) = v.as_object_mut() {
        m.insert("status".into(), status);
    }
    inner.commit(&pdbs(), v);
}

fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

/// Handles `POST pods/NAME/eviction`. Returns the HTTP code and body.
pub fn evict(
    inner: &mut Inner,
    pods_rt: &ResourceType,
    ns: &str,
    name: &str,
    body: &[u8],
    query: &super::route::Query,
) -> ApiResult<(u16, Value)> {
    let ev =
        super::builtin::check_request_object::<k8s_openapi::api::policy::v1::Eviction>(body, "policy/v1", "Eviction")?;
    let kind = ev.get("kind").and_then(Value::as_str).unwrap_or("Eviction");
    let av = ev.get("apiVersion").and_then(Value::as_str).unwrap_or("policy/v1");
    let version = av.rsplit_once('/').map_or(av, |(_, v)| v);
    if kind != "Eviction" {
        return Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a Eviction: converting ({version}.{kind}) to ({version}.Eviction): unknown conversion"
        )));
    }
    if av != "policy/v1" && av != "policy/v1beta1" {
        return Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a Eviction: no kind \"Eviction\" is registered for version {av:?}"
        )));
    }
    if get_str(&ev, &["metadata", "name"]).is_some_and(|n| !n.is_empty() && n != name) {
        return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
    }
    let mut opts = match ev.get("deleteOptions").filter(|d| !d.is_null()) {
        Some(d) => DeleteOpts::parse(d.to_string().as_bytes(), &super::route::Query::default())?,
        None => DeleteOpts::default(),
    };
    if query.get("dryRun").is_some_and(|d| !d.is_empty()) {
        opts.dry_run = true;
    }
    let pod_obj = inner.get(&pods(), ns, name).ok_or_else(|| ApiError::not_found("pods", "", name))?;
    let pod = pod_obj.value();
    if matches!(phase(&pod), "Succeeded" | "Failed" | "Pending") || terminating(&pod) {
        return delete_pod(inner, pods_rt, ns, name, opts);
    }
    let matching: Vec<Value> = inner
        .type_state(&pdbs())
        .map(|t| t.list(Some(ns), None))
        .unwrap_or_default()
        .iter()
        .map(|o| o.value())
        .filter(|p| {
            LabelSelector::from_object(p.pointer("/spec/selector"))
                .is_ok_and(|s| !s.is_empty() && s.matches(&pod_obj.labels))
        })
        .collect();
    if matching.len() > 1 {
        return Ok((
            500,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.", "code": 500}),
        ));
    }
    if let Some(pdb) = matching.first() {
        let mut status = compute_status(inner, pdb).map_err(ApiError::internal)?;
        let always = pdb.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str) == Some("AlwaysAllow");
        let current = status["currentHealthy"].as_i64().unwrap_or(0);
        let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
        if !is_ready(&pod) && (always || (current >= desired && desired > 0)) {
            if opts.rv.is_none() {
                opts.rv = Some(pod_obj.rv.to_string());
            }
            write_status(inner, pdb, status, opts.dry_run);
            return delete_pod(inner, pods_rt, ns, name, opts);
        }
        let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
        if allowed <= 0 {
            let pdb_name = get_str(pdb, &["metadata", "name"]).unwrap_or_default().to_owned();
            write_status(inner, pdb, status, opts.dry_run);
            return Err(ApiError::new(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
                .with_details(json!({"causes": [{"reason": "DisruptionBudget",
                    "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently")}]})));
        }
        status["disruptionsAllowed"] = json!(allowed - 1);
        let mut disrupted: BTreeMap<String, Value> = status
            .get("disruptedPods")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        disrupted.insert(name.to_owned(), json!(now_rfc3339()));
        status["disruptedPods"] = json!(disrupted);
        let mut with_status = pdb.clone();
        with_status["status"] = status.clone();
        status["conditions"] = condition(&with_status, allowed - 1);
        write_status(inner, pdb, status, opts.dry_run);
    }
    delete_pod(inner, pods_rt, ns, name, opts)
}

/// Adds the `DisruptionTarget` condition, then deletes with the eviction's options.
fn delete_pod(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    mut opts: DeleteOpts,
) -> ApiResult<(u16, Value)> {
    if !opts.dry_run
        && let Some(cur) = inner.get(&pods(), ns, name)
    {
        if let Some(uid) = opts.uid.as_deref().filter(|u| !u.is_empty() && *u != cur.uid) {
            return Err(ApiError::conflict(
                "pods",
                "",
                name,
                &format!(
                    "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                    cur.uid
                ),
            ));
        }
        if let Some(rv) = opts.rv.as_deref().filter(|r| !r.is_empty() && *r != cur.rv.to_string()) {
            return Err(ApiError::conflict(
                "pods",
                "",
                name,
                &format!(
                    "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                    cur.rv
                ),
            ));
        }
        let mut pod = cur.value();
        if !matches!(phase(&pod), "Succeeded" | "Failed") {
            let cond = json!({"type": "DisruptionTarget", "status": "True", "lastTransitionTime": now_rfc3339(),
                "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"});
            let status = super::util::obj_mut(&mut pod, "status");
            let conds = status.entry("conditions").or_insert_with(|| json!([]));
            if let Value::Array(list) = conds {
                match list.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
                    Some(c) => *c = cond,
                    None => list.push(cond),
                }
            }
            if let Some(stored) = inner.commit(&pods(), pod)
                && opts.rv.is_some()
            {
                opts.rv = Some(stored.rv.to_string());
            }
        }
    }
    delete::delete(inner, rt, ns, name, &opts)?;
    Ok((201, success()))
}
