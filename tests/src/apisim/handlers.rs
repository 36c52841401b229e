//! Dispatch of a request on a resource path to the read, write, delete,
//! eviction and token handlers, with the parameters of each verb.

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use super::Shared;
use super::auth::{Identity, self_subject_review};
use super::delete::{DeleteOpts, Deleted};
use super::errors::{ApiError, ApiResult, Cause};
use super::resources::{Gr, ResourceType};
use super::route::{Query, Reply, ResPath, not_served};
use super::write::{self, FieldValidation, Part, WriteOpts};
use super::{decode, delete, eviction, managed, patch, read};

/// Request headers a handler needs.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
}

fn options_kind(method: &Method) -> &'static str {
    match *method {
        Method::POST => "CreateOptions",
        Method::PUT => "UpdateOptions",
        _ => "PatchOptions",
    }
}

fn write_opts(method: &Method, q: &Query, h: &Headers) -> ApiResult<WriteOpts> {
    let validation = match q.get("fieldValidation").unwrap_or_default() {
        "" | "Warn" => FieldValidation::Warn,
        "Ignore" => FieldValidation::Ignore,
        "Strict" => FieldValidation::Strict,
        other => {
            return Err(ApiError::invalid(
                options_kind(method),
                "meta.k8s.io",
                "",
                vec![Cause::not_supported(
                    "fieldValidation",
                    &json!(other),
                    &["".into(), "Ignore".into(), "Strict".into(), "Warn".into()],
                )],
            ));
        }
    };
    let manager = match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) if m.len() > 128 => {
            return Err(ApiError::invalid(
                options_kind(method),
                "meta.k8s.io",
                "",
                vec![Cause {
                    reason: "FieldValueTooLong",
                    message: "Too long: may not be more than 128 bytes".into(),
                    field: "fieldManager".into(),
                }],
            ));
        }
        Some(m) => m.to_owned(),
        None => {
            let ua = h.user_agent.split('/').next().unwrap_or_default().trim();
            if ua.is_empty() { "unknown".to_owned() } else { ua.to_owned() }
        }
    };
    Ok(WriteOpts { dry_run: q.get("dryRun").is_some_and(|d| !d.is_empty()), manager, validation, warnings: Vec::new() })
}

/// How a POST/PUT body is encoded.
enum BodyFormat {
    Json,
    Yaml,
    /// The few kinds `proto` reads (kubectl's typed commands).
    Protobuf,
}

/// Bodies are JSON or YAML, or protobuf for the kinds kubectl's typed
/// commands send; anything else is refused like a server that does not
/// speak it.
fn body_format(method: &Method, h: &Headers) -> ApiResult<BodyFormat> {
    let ct = h.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if *method != Method::POST && *method != Method::PUT {
        return Ok(BodyFormat::Json);
    }
    match ct.as_str() {
        "" | "application/json" | "*/*" => Ok(BodyFormat::Json),
        "application/yaml" => Ok(BodyFormat::Yaml),
        "application/vnd.kubernetes.protobuf" => Ok(BodyFormat::Protobuf),
        _ => Err(ApiError::unsupported_media_type("application/json, application/yaml")),
    }
}

/// Serves a request on `/api/v1/...` or `/apis/g/v/...`.
pub fn resource(
    shared: &Shared,
    method: &Method,
    p: &ResPath,
    q: &Query,
    h: &Headers,
    user: &Identity,
    body: &Bytes,
) -> ApiResult<Reply> {
    let ns = p.namespace.clone().unwrap_or_default();
    if (p.group.as_str(), p.resource.as_str(), p.version.as_str(), method)
        == ("authentication.k8s.io", "selfsubjectreviews", "v1", &Method::POST)
    {
        // The body carries nothing (kubectl sends it as protobuf).
        return Ok(Reply::value(201, &self_subject_review(user)));
    }
    let json_body;
    let body = match body_format(method, h)? {
        BodyFormat::Json => body,
        BodyFormat::Yaml => {
            let v: serde_json::Value = std::str::from_utf8(body)
                .ok()
                .and_then(|s| serde_saphyr::from_str(s).ok())
                .ok_or_else(|| ApiError::bad_request("error converting YAML to JSON"))?;
            json_body = Bytes::from(v.to_string());
            &json_body
        }
        BodyFormat::Protobuf => {
            let v = super::proto::to_json(body)
                .ok_or_else(|| ApiError::unsupported_media_type("application/json, application/yaml"))?;
            json_body = Bytes::from(v.to_string());
            &json_body
        }
    };
    // Endpoints that are not stored types.
    match (p.group.as_str(), p.resource.as_str(), p.name.as_deref(), p.sub.as_deref(), method) {
        ("authentication.k8s.io", "tokenreviews", None, None, &Method::POST) if p.version == "v1" => {
            let inner = shared.store.lock();
            return Ok(Reply::value(201, &shared.tokens.token_review(&inner, body)?));
        }
        ("", "pods", Some(name), Some("eviction"), &Method::POST) if p.namespace.is_some() => {
            let mut inner = shared.store.lock();
            let rt = inner.rt(&Gr::new("", "pods")).ok_or_else(not_served)?;
            let (code, v) = eviction::evict(&mut inner, &rt, &ns, name, body, q)?;
            return Ok(Reply::value(code, &v));
        }
        ("", "serviceaccounts", Some(name), Some("token"), &Method::POST) if p.namespace.is_some() => {
            let inner = shared.store.lock();
            let dry = q.get("dryRun").is_some_and(|d| !d.is_empty());
            return Ok(Reply::value(201, &shared.tokens.token_request(&inner, &ns, name, body, dry)?));
        }
        _ => {}
    }
    let rt = shared.store.lock().rt(&Gr::new(&p.group, &p.resource)).ok_or_else(not_served)?;
    if !rt.serves(&p.version) || (!rt.namespaced && p.namespace.is_some()) {
        return Err(not_served());
    }
    if rt.namespaced && p.namespace.is_none() && (p.name.is_some() || *method == Method::POST) {
        return Err(not_served());
    }
    let part = match p.sub.as_deref() {
        None => Part::Main,
        Some("status") if rt.status => Part::Status,
        Some(_) => return Err(not_served()),
    };
    let ns_key = if rt.namespaced { ns.as_str() } else { "" };
    match (method, p.name.as_deref()) {
        (&Method::GET | &Method::HEAD, Some(name)) => read::get(shared, &rt, p, name, &h.accept, q),
        (&Method::GET | &Method::HEAD, None) if part == Part::Main => {
            if q.flag("watch") {
                read::watch(shared, &rt, p, q, user, &h.accept)
            } else {
                read::list(shared, &rt, p, q, &h.accept)
            }
        }
        (&Method::POST, None) if part == Part::Main => create(shared, &rt, p, ns_key, q, h, body),
        (&Method::PUT, Some(name)) => {
            let mut opts = write_opts(method, q, h)?;
            let v = decode::parse_object(&rt, body, false)?;
            let v = decode::decode(&rt, v, &mut opts)?;
            let stored = write::update(&mut shared.store.lock(), &rt, ns_key, name, v, part, &opts, true)?;
            Ok(Reply::json(200, read::served(&rt, &p.version, &stored)).with_warnings(opts.warnings))
        }
        (&Method::PATCH, Some(name)) => patch(shared, &rt, p, ns_key, name, part, q, h, body),
        (&Method::DELETE, Some(name)) if part == Part::Main => {
            let opts = DeleteOpts::parse(body, q)?;
            let out = delete::delete(&mut shared.store.lock(), &rt, ns_key, name, &opts)?;
            Ok(deleted_reply(&rt, &p.version, out))
        }
        (&Method::DELETE, None) if part == Part::Main => delete_collection(shared, &rt, p, q, body),
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            p.resource_key()
        ))),
    }
}

fn create(
    shared: &Shared,
    rt: &ResourceType,
    p: &ResPath,
    ns: &str,
    q: &Query,
    h: &Headers,
    body: &Bytes,
) -> ApiResult<Reply> {
    let mut opts = write_opts(&Method::POST, q, h)?;
    let v = decode::parse_object(rt, body, false)?;
    let v = decode::decode(rt, v, &mut opts)?;
    let stored = write::create(&mut shared.store.lock(), rt, ns, v, &opts, true)?;
    Ok(Reply::json(201, read::served(rt, &p.version, &stored)).with_warnings(opts.warnings))
}

fn deleted_reply(rt: &ResourceType, version: &str, out: Deleted) -> Reply {
    match out {
        Deleted::Pending(o) => Reply::json(200, read::served(rt, version, &o)),
        Deleted::Gone(o) if rt.flavor == super::resources::Flavor::Pod => {
            Reply::json(200, read::served(rt, version, &o))
        }
        Deleted::Gone(o) => {
            let mut details = json!({"name": o.name, "kind": rt.plural, "uid": o.uid});
            if !rt.group.is_empty() {
                details["group"] = json!(rt.group);
            }
            Reply::value(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            )
        }
    }
}

fn delete_collection(shared: &Shared, rt: &ResourceType, p: &ResPath, q: &Query, body: &Bytes) -> ApiResult<Reply> {
    let opts = DeleteOpts::parse(body, q)?;
    let f = read::filter(rt, p, q)?;
    let mut inner = shared.store.lock();
    let names: Vec<(String, String)> = inner
        .type_state(&rt.gr())
        .map(|t| t.list(f.namespace.as_deref(), None))
        .unwrap_or_default()
        .into_iter()
        .filter(|o| f.matches(o))
        .map(|o| (o.ns.clone(), o.name.clone()))
        .collect();
    let mut items = Vec::new();
    for (ns, name) in names {
        match delete::delete(&mut inner, rt, &ns, &name, &opts) {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => {
                // Like Go's typed lists, built-in items carry no apiVersion/kind.
                items.push(if rt.is_custom() { read::served(rt, &p.version, &o) } else { o.json.clone() })
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = inner.current_rv();
    drop(inner);
    let mut out = format!(
        "{{\"apiVersion\":{},\"kind\":{},\"metadata\":{{\"resourceVersion\":\"{rv}\"}},\"items\":[",
        Value::from(rt.api_version_of(&p.version)),
        Value::from(rt.list_kind())
    )
    .into_bytes();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(it);
    }
    out.extend_from_slice(b"]}");
    Ok(Reply::json(200, Bytes::from(out)))
}

const PATCH_TYPES: &str = "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

#[allow(clippy::too_many_arguments)]
fn patch(
    shared: &Shared,
    rt: &ResourceType,
    p: &ResPath,
    ns: &str,
    name: &str,
    part: Part,
    q: &Query,
    h: &Headers,
    body: &Bytes,
) -> ApiResult<Reply> {
    let ct = h.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let mut opts = write_opts(&Method::PATCH, q, h)?;
    let all_types = format!("{PATCH_TYPES}, application/strategic-merge-patch+json");
    match ct.as_str() {
        "application/json-patch+json" | "application/merge-patch+json" => {}
        "application/strategic-merge-patch+json" if !rt.is_custom() => {}
        "application/apply-patch+yaml" => {
            return apply(shared, rt, p, ns, name, part, q, opts, body);
        }
        _ if rt.is_custom() => return Err(ApiError::unsupported_media_type(PATCH_TYPES)),
        _ => return Err(ApiError::unsupported_media_type(&all_types)),
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut inner = shared.store.lock();
    let cur = inner.get(&rt.gr(), ns, name).ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))?;
    let mut v: Value = serde_json::from_slice(&cur.with_type(&rt.api_version(), &rt.kind)).unwrap_or(Value::Null);
    match ct.as_str() {
        "application/json-patch+json" => patch::json_patch(&mut v, &doc)?,
        "application/merge-patch+json" => {
            if !doc.is_object() {
                return Err(ApiError::bad_request("error decoding patch: a merge patch must be a JSON object"));
            }
            patch::merge_patch(&mut v, &doc);
        }
        _ => {
            if !doc.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a strategic merge patch must be a JSON object",
                ));
            }
            patch::strategic_merge(rt, &mut v, &doc);
        }
    }
    let v = decode::decode_with(rt, v, &mut opts, decode::Source::Patch)?;
    let stored = write::update(&mut inner, rt, ns, name, v, part, &opts, true)?;
    drop(inner);
    Ok(Reply::json(200, read::served(rt, &p.version, &stored)).with_warnings(opts.warnings))
}

/// Server-side apply (see `managed`).
#[allow(clippy::too_many_arguments)]
fn apply(
    shared: &Shared,
    rt: &ResourceType,
    p: &ResPath,
    ns: &str,
    name: &str,
    part: Part,
    q: &Query,
    mut opts: WriteOpts,
    body: &Bytes,
) -> ApiResult<Reply> {
    if q.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            vec![Cause::required("fieldManager", "is required for apply patch")],
        ));
    }
    let force = q.flag("force");
    let raw = decode::parse_object(rt, body, true)?;
    if raw.get("apiVersion").is_none_or(Value::is_null) || raw.get("kind").is_none_or(Value::is_null) {
        return Err(ApiError::bad_request(format!(
            "invalid object type: {}, Kind={}",
            raw.get("apiVersion").and_then(Value::as_str).unwrap_or("/"),
            raw.get("kind").and_then(Value::as_str).unwrap_or_default()
        )));
    }
    let mut applied = decode::decode_with(rt, raw, &mut opts, decode::Source::Apply)?;
    let body_name = applied.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(m) = applied.as_object_mut() {
        match part {
            Part::Main if rt.status => {
                m.remove("status");
            }
            Part::Status => m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")),
            Part::Main => {}
        }
    }
    let mut inner = shared.store.lock();
    let cur = inner.get(&rt.gr(), ns, name);
    let sub = part.subresource();
    let (code, stored) = match cur {
        Some(cur) => {
            let mut cv: Value =
                serde_json::from_slice(&cur.with_type(&rt.api_version(), &rt.kind)).unwrap_or(Value::Null);
            let merged = managed::apply(rt, &cv, &applied, &opts.manager, force, sub)?;
            // The merged object goes through decoding again for defaults.
            let merged = decode::decode(rt, merged, &mut WriteOpts::default())?;
            if let Some(rv) = applied.pointer("/metadata/resourceVersion").and_then(Value::as_str)
                && rv != cur.rv.to_string()
            {
                return Err(ApiError::stale(&rt.plural, &rt.group, name));
            }
            super::util::meta_mut(&mut cv).insert("resourceVersion".into(), json!(cur.rv.to_string()));
            let mut merged = merged;
            super::util::meta_mut(&mut merged).insert("resourceVersion".into(), json!(cur.rv.to_string()));
            (200, write::update(&mut inner, rt, ns, name, merged, part, &opts, false)?)
        }
        None if part == Part::Status => {
            return Err(ApiError::not_found(&rt.plural, &rt.group, name));
        }
        None => {
            let skeleton = json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"name": name}});
            let merged = managed::apply(rt, &skeleton, &applied, &opts.manager, force, sub)?;
            let merged = decode::decode(rt, merged, &mut WriteOpts::default())?;
            (201, write::create(&mut inner, rt, ns, merged, &opts, false)?)
        }
    };
    drop(inner);
    Ok(Reply::json(code, read::served(rt, &p.version, &stored)).with_warnings(opts.warnings))
}
