//! The write path shared by every verb: decoding a body for a type,
//! create, update (main resource or `/status`) and the bookkeeping a real
//! server does on each (uid, timestamps, generation, status preservation,
//! managedFields, schema pruning and validation, no-op detection).

use std::sync::Arc;

use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult, Cause};
use super::resources::{Flavor, ResourceType};
use super::store::{Inner, Obj};
use super::util::{get_str, meta_mut, now_rfc3339};
use super::{builtin, crd, eviction, managed, schema};

/// `?fieldValidation=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

impl Part {
    pub fn subresource(self) -> &'static str {
        match self {
            Part::Main => "",
            Part::Status => "status",
        }
    }
}

/// Options every write carries.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub manager: String,
    pub validation: FieldValidation,
    pub warnings: Vec<String>,
}

fn invalid(rt: &ResourceType, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(&rt.kind, &rt.group, name, causes)
}

/// Schema (CRs) and built-in validation of a candidate object.
fn validate(inner: &Inner, rt: &ResourceType, v: &Value, old: Option<&Value>) -> ApiResult<()> {
    let name = get_str(v, &["metadata", "name"]).unwrap_or_default();
    let mut causes = builtin::validate_labels(v);
    if let Some(s) = rt.schema() {
        schema::validate(v, s, "", &mut causes);
    }
    causes.extend(builtin::validate(rt, v, old));
    if rt.flavor == Flavor::Crd {
        causes.extend(crd::validate(inner, v, old));
    }
    if causes.is_empty() { Ok(()) } else { Err(invalid(rt, name, causes)) }
}

fn strip(v: &Value, keep_status: bool) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if !keep_status {
            m.remove("status");
        }
    }
    c
}

/// Creates `v` (already decoded) in `ns`. Returns the stored object.
/// `record` false: `v` already carries its managedFields (server-side apply).
pub fn create(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    mut v: Value,
    opts: &WriteOpts,
    record: bool,
) -> ApiResult<Arc<Obj>> {
    let body_ns = get_str(&v, &["metadata", "namespace"]).unwrap_or_default().to_owned();
    if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if get_str(&v, &["metadata", "resourceVersion"]).is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::new(500, "", "resourceVersion should not be set on objects to be created"));
    }
    let mut name = get_str(&v, &["metadata", "name"]).unwrap_or_default().to_owned();
    if name.is_empty() {
        let prefix = get_str(&v, &["metadata", "generateName"]).unwrap_or_default().to_owned();
        if prefix.is_empty() {
            return Err(invalid(rt, "", vec![Cause::required("metadata.name", "name or generateName is required")]));
        }
        name = format!("{prefix}{}", super::util::name_suffix());
    }
    check_name(rt, &name)?;
    {
        let m = meta_mut(&mut v);
        m.insert("name".into(), json!(name));
        if rt.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        for k in ["uid", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "generation"] {
            m.remove(k);
        }
        m.insert("uid".into(), json!(super::util::uuid()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if rt.generation {
            m.insert("generation".into(), json!(1));
        }
    }
    builtin::prepare_create(rt, &mut v);
    if rt.is_custom()
        && rt.status
        && let Some(m) = v.as_object_mut()
    {
        m.remove("status");
    }
    validate(inner, rt, &v, None)?;
    if rt.flavor == Flavor::Pdb {
        eviction::refresh_pdb_status(inner, &mut v);
    }
    let ns_key = if rt.namespaced { ns } else { "" };
    if inner.get(&rt.gr(), ns_key, &name).is_some() {
        return Err(ApiError::already_exists(&rt.plural, &rt.group, &name));
    }
    if record {
        managed::record_update(rt, None, &mut v, &opts.manager, "");
    }
    if opts.dry_run {
        return Ok(Arc::new(Obj::from_value(v)));
    }
    let stored = inner.commit(&rt.gr(), v.clone()).ok_or_else(|| ApiError::internal("resource type vanished"))?;
    match rt.flavor {
        Flavor::Namespace => create_default_sa(inner, &name),
        Flavor::Crd => crd::established(inner, &stored),
        _ => {}
    }
    Ok(stored)
}

fn check_name(rt: &ResourceType, name: &str) -> ApiResult<()> {
    let ok = if rt.flavor == Flavor::Namespace {
        super::util::is_dns_label(name)
    } else {
        super::util::is_dns_subdomain(name)
    };
    if ok {
        return Ok(());
    }
    let detail = if rt.flavor == Flavor::Namespace {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    };
    Err(invalid(rt, name, vec![Cause::invalid("metadata.name", &json!(name), detail)]))
}

/// What the ServiceAccount controller does for a new namespace.
fn create_default_sa(inner: &mut Inner, ns: &str) {
    let gr = super::resources::Gr::new("", "serviceaccounts");
    if inner.get(&gr, ns, "default").is_none() {
        let sa = json!({"metadata": {"name": "default", "namespace": ns, "uid": super::util::uuid(), "creationTimestamp": now_rfc3339()}});
        inner.commit(&gr, sa);
    }
}

/// The object `new` becomes when written over `old` through `part`.
fn merge_for_part(rt: &ResourceType, old: &Value, new: Value, part: Part) -> Value {
    let mut out = match part {
        Part::Main => {
            let mut v = new;
            if (rt.status || rt.flavor == Flavor::Namespace)
                && let Some(m) = v.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            v
        }
        Part::Status => {
            let mut v = old.clone();
            if let Some(m) = v.as_object_mut() {
                match new.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            let mf = new.pointer("/metadata/managedFields").cloned();
            let meta = meta_mut(&mut v);
            if let Some(mf) = mf {
                meta.insert("managedFields".into(), mf);
            }
            if !rt.is_custom() {
                for k in ["labels", "annotations"] {
                    match new.pointer(&format!("/metadata/{k}")) {
                        Some(x) => meta.insert(k.into(), x.clone()),
                        None => meta.remove(k),
                    };
                }
            }
            v
        }
    };
    // Server-managed metadata always comes from the stored object.
    let m = meta_mut(&mut out);
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match old.pointer(&format!("/metadata/{k}")) {
            Some(x) => m.insert(k.into(), x.clone()),
            None => m.remove(k),
        };
    }
    m.remove("resourceVersion");
    m.remove("selfLink");
    out
}

/// Updates the object at `ns/name` to `new` (already decoded). `managed`
/// false means `new` already carries the managedFields (server-side apply).
#[allow(clippy::too_many_arguments)]
pub fn update(
    inner: &mut Inner,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    new: Value,
    part: Part,
    opts: &WriteOpts,
    record: bool,
) -> ApiResult<Arc<Obj>> {
    let body_name = get_str(&new, &["metadata", "name"]).unwrap_or_default();
    if body_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name} based on URL) was undeterminable: name must be provided"
        )));
    }
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_ns = get_str(&new, &["metadata", "namespace"]).unwrap_or_default();
    if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let ns_key = if rt.namespaced { ns } else { "" };
    let cur = inner.get(&rt.gr(), ns_key, name).ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))?;
    let rv = get_str(&new, &["metadata", "resourceVersion"]).unwrap_or_default();
    if rv.is_empty() && rt.is_custom() {
        return Err(ApiError::invalid(
            &rt.plural,
            &rt.group,
            name,
            vec![Cause::invalid("metadata.resourceVersion", &json!(0), "must be specified for an update")],
        ));
    }
    if !rv.is_empty() && rv != cur.rv.to_string() {
        return Err(ApiError::stale(&rt.plural, &rt.group, name));
    }
    let uid = get_str(&new, &["metadata", "uid"]).unwrap_or_default();
    if !uid.is_empty() && uid != cur.uid {
        return Err(ApiError::conflict(
            &rt.plural,
            &rt.group,
            name,
            &format!(
                "StorageError: invalid object, Code: 4, Key: {}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                storage_key(rt, ns_key, name),
                cur.uid
            ),
        ));
    }
    let mut old = cur.value();
    if let Some(m) = old.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    let mut v = merge_for_part(rt, &old, new, part);
    if rt.generation && part == Part::Main && strip(&v, false) != strip(&old, false) {
        let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        meta_mut(&mut v).insert("generation".into(), json!(g + 1));
    }
    validate(inner, rt, &v, Some(&old))?;
    if rt.flavor == Flavor::Pdb && part == Part::Main {
        eviction::refresh_pdb_status(inner, &mut v);
    }
    if record {
        managed::record_update(rt, Some(&old), &mut v, &opts.manager, part.subresource());
    }
    let mut old_cmp = old.clone();
    meta_mut(&mut old_cmp).remove("resourceVersion");
    if v == old_cmp {
        return Ok(cur);
    }
    if opts.dry_run {
        return Ok(Arc::new(Obj::from_value(v)));
    }
    finish_write(inner, rt, v)
}

/// Commits an updated object, or removes it when it was being deleted and
/// its last finalizer is gone.
pub fn finish_write(inner: &mut Inner, rt: &ResourceType, v: Value) -> ApiResult<Arc<Obj>> {
    let deleting = v.pointer("/metadata/deletionTimestamp").is_some_and(|d| !d.is_null());
    let finalizers = v.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let grace = v.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0);
    let gr = rt.gr();
    let stored = inner.commit(&gr, v).ok_or_else(|| ApiError::internal("resource type vanished"))?;
    if deleting && !finalizers && grace == 0 {
        let (ns, name) = (stored.ns.clone(), stored.name.clone());
        if let Some(gone) = super::delete::remove_now(inner, rt, &ns, &name) {
            return Ok(gone);
        }
    }
    if rt.flavor == Flavor::Crd {
        crd::established(inner, &stored);
        if let Some(latest) = inner.get(&gr, "", &stored.name) {
            return Ok(latest);
        }
    }
    Ok(stored)
}

/// The etcd key kube-apiserver would use (for error texts).
pub fn storage_key(rt: &ResourceType, ns: &str, name: &str) -> String {
    let res = if rt.group.is_empty() { rt.plural.clone() } else { format!("{}/{}", rt.group, rt.plural) };
    if ns.is_empty() { format!("/registry/{res}/{name}") } else { format!("/registry/{res}/{ns}/{name}") }
}
