//! Deletion: preconditions, graceful pod deletion (the pod stays,
//! terminating, until deleted with grace 0, as on a cluster without a
//! kubelet), finalizers, and the cascades a real cluster's controllers do
//! synchronously here (namespace contents, a CRD's custom resources).

use std::sync::Arc;

use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult, qualified};
use super::resources::{Flavor, Gr, ResourceType};
use super::store::{Inner, Obj};
use super::util::{meta_mut, time_rfc3339};

/// `DeleteOptions` from the body and query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub grace: Option<i64>,
    pub uid: Option<String>,
    pub rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOpts {
    pub fn parse(body: &[u8], query: &super::route::Query) -> ApiResult<DeleteOpts> {
        let mut o = DeleteOpts::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
            o.grace = v.get("gracePeriodSeconds").and_then(Value::as_i64);
            o.uid = v.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_owned);
            o.rv = v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_owned);
            o.dry_run = v.get("dryRun").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        }
        if let Some(g) = query.get("gracePeriodSeconds") {
            o.grace = Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?);
        }
        if query.get("dryRun").is_some_and(|d| !d.is_empty()) {
            o.dry_run = true;
        }
        Ok(o)
    }
}

/// The outcome of a delete.
#[derive(Debug)]
pub enum Deleted {
    /// Removed from the store: its last state.
    Gone(Arc<Obj>),
    /// Still there (terminating, or held by finalizers).
    Pending(Arc<Obj>),
}

fn precondition_conflict(rt: &ResourceType, name: &str, why: String) -> ApiError {
    ApiError::new(
        409,
        "Conflict",
        format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified(&rt.kind, &rt.group)),
    )
    .with_details(json!({"name": name, "kind": rt.kind}))
}

/// The grace period kube-apiserver's pod strategy picks.
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let mut period =
        requested.or_else(|| pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64)).unwrap_or(30);
    if pod.pointer("/spec/nodeName").and_then(Value::as_str).is_none_or(str::is_empty) {
        period = 0;
    }
    if matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed")) {
        period = 0;
    }
    if period < 0 { 1 } else { period }
}

/// Deletes `ns/name` honouring preconditions, grace periods and finalizers.
pub fn delete(inner: &mut Inner, rt: &ResourceType, ns: &str, name: &str, opts: &DeleteOpts) -> ApiResult<Deleted> {
    let gr = rt.gr();
    let cur = inner.get(&gr, ns, name).ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))?;
    if let Some(uid) = opts.uid.as_deref().filter(|u| !u.is_empty() && *u != cur.uid) {
        return Err(precondition_conflict(
            rt,
            name,
            format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                cur.uid
            ),
        ));
    }
    if let Some(rv) = opts.rv.as_deref().filter(|r| !r.is_empty() && *r != cur.rv.to_string()) {
        return Err(precondition_conflict(
            rt,
            name,
            format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                cur.rv
            ),
        ));
    }
    let mut v = cur.value();
    let finalizers = v.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let period = if rt.flavor == Flavor::Pod { pod_grace(&v, opts.grace) } else { 0 };
    let now = jiff::Timestamp::now();
    if let Some(ts) = v.pointer("/metadata/deletionTimestamp").and_then(Value::as_str).and_then(super::util::parse_time)
    {
        let existing = v.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0);
        let shorter = rt.flavor == Flavor::Pod && opts.grace.is_some() && period < existing;
        if existing == 0 && !finalizers {
            return remove_or_dry(inner, rt, ns, name, cur, opts);
        }
        if !shorter {
            return Ok(Deleted::Pending(cur));
        }
        let new_ts = ts.checked_sub(jiff::SignedDuration::from_secs(existing - period)).unwrap_or(ts);
        let m = meta_mut(&mut v);
        m.insert("deletionTimestamp".into(), json!(time_rfc3339(new_ts)));
        m.insert("deletionGracePeriodSeconds".into(), json!(period));
        return commit_pending(inner, rt, ns, name, v, period == 0 && !finalizers, opts);
    }
    // Pods always take the graceful path: even with a zero grace period
    // they are first marked (a MODIFIED event), then removed.
    if period == 0 && !finalizers && rt.flavor != Flavor::Pod {
        return remove_or_dry(inner, rt, ns, name, cur, opts);
    }
    let when = now.checked_add(jiff::SignedDuration::from_secs(period)).unwrap_or(now);
    let m = meta_mut(&mut v);
    m.insert("deletionTimestamp".into(), json!(time_rfc3339(when)));
    m.insert("deletionGracePeriodSeconds".into(), json!(period));
    if let Some(g) = m.get("generation").and_then(Value::as_i64).filter(|g| *g > 0) {
        m.insert("generation".into(), json!(g + 1));
    }
    commit_pending(inner, rt, ns, name, v, period == 0 && !finalizers, opts)
}

fn remove_or_dry(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    cur: Arc<Obj>,
    opts: &DeleteOpts,
) -> ApiResult<Deleted> {
    if opts.dry_run {
        return Ok(Deleted::Gone(cur));
    }
    remove_now(inner, rt, ns, name).map(Deleted::Gone).ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))
}

fn commit_pending(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    v: Value,
    then_remove: bool,
    opts: &DeleteOpts,
) -> ApiResult<Deleted> {
    if opts.dry_run {
        return Ok(Deleted::Pending(Arc::new(Obj::from_value(v))));
    }
    let stored = inner.commit(&rt.gr(), v).ok_or_else(|| ApiError::internal("resource type vanished"))?;
    if then_remove {
        return remove_or_dry(inner, rt, ns, name, stored, opts);
    }
    Ok(Deleted::Pending(stored))
}

/// Removes an object now, with the cascades of namespaces and CRDs.
pub fn remove_now(inner: &mut Inner, rt: &ResourceType, ns: &str, name: &str) -> Option<Arc<Obj>> {
    let gone = inner.remove(&rt.gr(), ns, name)?;
    match rt.flavor {
        Flavor::Namespace => empty_namespace(inner, name),
        Flavor::Crd => super::crd::remove_type(inner, &gone),
        _ => {}
    }
    Some(gone)
}

/// What the namespace controller does (synchronously, like kube-testserver):
/// everything in the namespace is deleted with grace 0; objects with
/// finalizers stay, marked for deletion.
fn empty_namespace(inner: &mut Inner, ns: &str) {
    let types: Vec<Arc<ResourceType>> = inner.types().filter(|t| t.rt.namespaced).map(|t| t.rt.clone()).collect();
    let opts = DeleteOpts { grace: Some(0), ..DeleteOpts::default() };
    for rt in types {
        let names: Vec<String> = inner
            .type_state(&rt.gr())
            .map(|t| t.list(Some(ns), None).iter().map(|o| o.name.clone()).collect())
            .unwrap_or_default();
        for n in names {
            let _ = delete(inner, &rt, ns, &n, &opts);
        }
    }
}

/// Removes every object of a type (used when its CRD goes away).
pub fn remove_all(inner: &mut Inner, gr: &Gr) {
    let keys: Vec<(String, String)> = inner
        .type_state(gr)
        .map(|t| t.list(None, None).iter().map(|o| (o.ns.clone(), o.name.clone())).collect())
        .unwrap_or_default();
    for (ns, name) in keys {
        inner.remove(gr, &ns, &name);
    }
}
