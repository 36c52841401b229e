//! Reads: get, list (selectors, `limit`/`continue`, `resourceVersion`,
//! Tables) and watch (resume from a resourceVersion with 410 Expired when
//! it is older than the history, initial events, bookmarks, timeouts).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use super::Shared;
use super::auth::Identity;
use super::errors::{ApiError, ApiResult};
use super::resources::ResourceType;
use super::route::{Query, Reply, ReplyBody, ResPath};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{EventType, Obj, event_line};
use super::watch::{Filter, Format, Pending, WatchBody, bookmark_line, replay};

/// Wants a `meta.k8s.io` Table (kubectl get).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// Wants `PartialObjectMetadata` (kube-rs `get_metadata`, `list_metadata`, `metadata_watcher`).
pub fn wants_meta(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=PartialObjectMetadata"))
}

fn partial(o: &Obj) -> Value {
    let meta = o.value().get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
}

pub fn filter(rt: &ResourceType, p: &ResPath, q: &Query) -> ApiResult<Filter> {
    Ok(Filter {
        namespace: p.namespace.clone().filter(|_| rt.namespaced),
        labels: LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?,
        fields: FieldSelector::parse(q.get("fieldSelector").unwrap_or_default(), rt.field_selectors)?,
    })
}

/// The node whose pods index answers this filter (pods on no node are not indexed).
fn node_index<'a>(rt: &ResourceType, f: &'a Filter) -> Option<&'a str> {
    f.fields.exact("spec.nodeName").filter(|n| !n.is_empty() && rt.field_selectors.contains(&"spec.nodeName"))
}

/// The objects a filter may match, from the narrowest index: an exact name
/// (in a namespace or of a cluster-scoped type), pods of a node, a namespace.
fn candidates(ts: &super::store::TypeState, rt: &ResourceType, f: &Filter) -> Vec<Arc<Obj>> {
    if let Some(name) = f.fields.exact("metadata.name")
        && (f.namespace.is_some() || !rt.namespaced)
    {
        let ns = f.namespace.as_deref().unwrap_or_default();
        return ts.get(ns, name).cloned().into_iter().collect();
    }
    ts.list(f.namespace.as_deref(), node_index(rt, f))
}

/// The object as served at the URL's version.
pub fn served(rt: &ResourceType, version: &str, o: &Obj) -> Bytes {
    o.with_type(&rt.api_version_of(version), &rt.kind)
}

fn served_value(rt: &ResourceType, version: &str, o: &Obj) -> Value {
    serde_json::from_slice(&served(rt, version, o)).unwrap_or(Value::Null)
}

pub fn get(shared: &Shared, rt: &ResourceType, p: &ResPath, name: &str, accept: &str, q: &Query) -> ApiResult<Reply> {
    let ns = p.namespace.as_deref().unwrap_or_default();
    let o =
        shared.store.lock().get(&rt.gr(), ns, name).ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))?;
    if wants_table(accept) {
        let t = super::table::table(
            rt,
            &p.version,
            &[served_value(rt, &p.version, &o)],
            None,
            q.get("includeObject").unwrap_or_default(),
            true,
        );
        return Ok(Reply::value(200, &t));
    }
    if wants_meta(accept) {
        return Ok(Reply::value(200, &partial(&o)));
    }
    Ok(Reply::json(200, served(rt, &p.version, &o)))
}

fn too_large(rv: u64, current: u64) -> ApiError {
    ApiError::new(504, "Timeout", format!("Timeout: Too large resource version: {rv}, current: {current}"))
        .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))
}

/// A resourceVersion parameter, with the real server's errors (a list
/// answers 400, a watch 500).
fn parse_rv(s: &str, watch: bool) -> ApiResult<u64> {
    s.parse().map_err(|_| {
        let why = format!("resourceVersion: Invalid value: {s:?}: strconv.ParseUint: parsing {s:?}: invalid syntax");
        if watch {
            ApiError::new(500, "", why)
        } else {
            ApiError::bad_request(format!("invalid resource version: {why}"))
        }
    })
}

/// An integer parameter (`limit`, `timeoutSeconds`): unparsable is a 400.
pub fn int_param(q: &Query, name: &str) -> ApiResult<Option<i64>> {
    q.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax")))
        })
        .transpose()
}

pub fn list(shared: &Shared, rt: &ResourceType, p: &ResPath, q: &Query, accept: &str) -> ApiResult<Reply> {
    let f = filter(rt, p, q)?;
    let limit = usize::try_from(int_param(q, "limit")?.unwrap_or(0)).unwrap_or(0);
    let start_after = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => Some(decode_continue(c)?),
        None => None,
    };
    let (objs, rv) = {
        let inner = shared.store.lock();
        let current = inner.current_rv();
        if let Some(rv) = q.get("resourceVersion").filter(|r| !r.is_empty() && *r != "0") {
            let rv = parse_rv(rv, false)?;
            if rv > current {
                return Err(too_large(rv, current));
            }
            if q.get("resourceVersionMatch") == Some("Exact") && rv != current {
                return Err(ApiError::gone("The resourceVersion for the provided list is too old."));
            }
        }
        let ts = inner.type_state(&rt.gr()).ok_or_else(super::route::not_served)?;
        (candidates(ts, rt, &f), current)
    };
    let mut matched: Vec<Arc<Obj>> = objs
        .into_iter()
        .filter(|o| f.matches(o))
        .filter(|o| start_after.as_ref().is_none_or(|(ns, name)| (&o.ns, &o.name) > (ns, name)))
        .collect();
    let mut cont = None;
    let selected = !f.labels.is_empty() || !f.fields.is_empty();
    if limit > 0 && matched.len() > limit {
        // Like etcd3 storage: remainingItemCount only for lists without selectors.
        let remaining = (!selected).then(|| matched.len() - limit);
        matched.truncate(limit);
        if let Some(last) = matched.last() {
            cont = Some((encode_continue(&last.ns, &last.name, rv), remaining));
        }
    }
    if wants_table(accept) {
        let values: Vec<Value> = matched.iter().map(|o| served_value(rt, &p.version, o)).collect();
        let mut t =
            super::table::table(rt, &p.version, &values, Some(rv), q.get("includeObject").unwrap_or_default(), true);
        if let Some((c, n)) = &cont {
            t["metadata"]["continue"] = json!(c);
            if let Some(n) = n {
                t["metadata"]["remainingItemCount"] = json!(n);
            }
        }
        return Ok(Reply::value(200, &t));
    }
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some((c, n)) = &cont {
        meta["continue"] = json!(c);
        if let Some(n) = n {
            meta["remainingItemCount"] = json!(n);
        }
    }
    let meta_only = wants_meta(accept);
    let (api_version, list_kind) = if meta_only {
        ("meta.k8s.io/v1".to_owned(), "PartialObjectMetadataList".to_owned())
    } else {
        (rt.api_version_of(&p.version), rt.list_kind())
    };
    let head = format!(
        "{{\"apiVersion\":{},\"kind\":{},\"metadata\":{},\"items\":[",
        Value::from(api_version),
        Value::from(list_kind),
        meta
    );
    let mut out = Vec::with_capacity(head.len() + matched.iter().map(|o| o.json.len() + 64).sum::<usize>());
    out.extend_from_slice(head.as_bytes());
    for (i, o) in matched.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Like Go's typed lists, built-in items carry no apiVersion/kind.
        if meta_only {
            out.extend_from_slice(partial(o).to_string().as_bytes());
        } else if rt.is_custom() {
            out.extend_from_slice(&served(rt, &p.version, o));
        } else {
            out.extend_from_slice(&o.json);
        }
    }
    out.extend_from_slice(b"]}");
    Ok(Reply::json(200, Bytes::from(out)))
}

fn encode_continue(ns: &str, name: &str, rv: u64) -> String {
    let v = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{ns}/{name}")});
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

fn decode_continue(c: &str) -> ApiResult<(String, String)> {
    let bad = |why: &str| ApiError::bad_request(format!("invalid continue token: {why}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(c)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(c))
        .map_err(|e| bad(&e.to_string()))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| bad(&format!("continue key is not valid: {e}")))?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(|| bad("continue key is not valid"))?;
    let (ns, name) = start.split_once('/').unwrap_or(("", start));
    Ok((ns.to_owned(), name.to_owned()))
}

/// A watcher's way of formatting objects: shared lines at the storage
/// version, otherwise per event (another version, or Tables).
fn watch_format(rt: &ResourceType, version: &str, table: bool, meta: bool) -> Format {
    if !table && !meta && version == rt.version {
        return Format::Shared;
    }
    let rt = rt.clone();
    let version = version.to_owned();
    Format::Custom(Arc::new(move |kind: EventType, o: &Obj| {
        if meta {
            event_line(kind.as_str(), partial(o).to_string().as_bytes())
        } else if table {
            let v = served_value(&rt, &version, o);
            let t = super::table::table(&rt, &version, &[v], None, "", true);
            event_line(kind.as_str(), t.to_string().as_bytes())
        } else {
            event_line(kind.as_str(), &served(&rt, &version, o))
        }
    }))
}

pub fn watch(
    shared: &Shared,
    rt: &ResourceType,
    p: &ResPath,
    q: &Query,
    user: &Identity,
    accept: &str,
) -> ApiResult<Reply> {
    let f = filter(rt, p, q)?;
    let table = wants_table(accept);
    let format = watch_format(rt, &p.version, table, wants_meta(accept));
    let timeout =
        int_param(q, "timeoutSeconds")?.map_or(shared.opts.watch_timeout, |t| Duration::from_secs(t.max(0) as u64));
    let bookmarks = q.flag("allowWatchBookmarks");
    let initial_events = q.flag("sendInitialEvents");
    let api_version = rt.api_version_of(&p.version);
    let rv_param = q.get("resourceVersion").unwrap_or_default();
    let mut backlog = std::collections::VecDeque::new();
    let mut inner = shared.store.lock();
    let current = inner.current_rv();
    let ts = inner.type_state_mut(&rt.gr()).ok_or_else(super::route::not_served)?;
    if rv_param.is_empty() || rv_param == "0" || initial_events {
        for o in candidates(ts, rt, &f).into_iter().filter(|o| f.matches(o)) {
            backlog.push_back(Pending::Added(o));
        }
        if initial_events && bookmarks {
            backlog.push_back(Pending::Line(bookmark_line(&api_version, &rt.kind, current, true)));
        }
    } else {
        let rv = parse_rv(rv_param, true)?;
        if rv < ts.floor {
            let e = ApiError::gone(format!("too old resource version: {rv} ({})", ts.floor));
            let line = event_line("ERROR", e.to_status().to_string().as_bytes());
            let body = WatchBody {
                backlog: std::iter::once(Pending::Line(line)).collect(),
                rx: None,
                deadline: tokio::time::Instant::now(),
                bookmark_every: None,
                api_version,
                kind: rt.kind.clone(),
                published: shared.store.published(),
                format,
            };
            return Ok(Reply { code: 200, body: ReplyBody::Watch(body), warnings: Vec::new() });
        }
        backlog = replay(&f, ts.changes_after(rv), rt, &format);
    }
    let rx = ts.watchers.add(f, format.clone(), &user.username, shared.opts.watch_queue);
    drop(inner);
    let body = WatchBody {
        backlog,
        rx: Some(rx),
        deadline: tokio::time::Instant::now() + timeout,
        bookmark_every: bookmarks.then_some(shared.opts.bookmark_interval),
        api_version,
        kind: rt.kind.clone(),
        published: shared.store.published(),
        format,
    };
    Ok(Reply { code: 200, body: ReplyBody::Watch(body), warnings: Vec::new() })
}
