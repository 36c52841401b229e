//! Decoding request bodies for a type like kube-apiserver's decoders: JSON
//! (or YAML) objects, `apiVersion`/`kind` checks, the Go-shaped typed form
//! of built-in types (type errors are 400, unknown fields dropped, warned
//! about or refused with `fieldValidation=Strict`), custom resources pruned
//! and defaulted against their schema, and the different answers for a POST
//! or PUT body, a patch result and a server-side apply configuration.

use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult, Cause};
use super::resources::ResourceType;
use super::util::get_str;
use super::write::{FieldValidation, WriteOpts};
use super::{builtin, schema};

/// Parses a request body that must be an object of type `rt`.
pub fn parse_object(rt: &ResourceType, body: &[u8], yaml: bool) -> ApiResult<Value> {
    let parsed: Result<Value, String> = serde_json::from_slice(body).map_err(|e| e.to_string());
    let parsed = match parsed {
        Err(_) if yaml => std::str::from_utf8(body)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_saphyr::from_str::<Value>(s).map_err(|e| e.to_string())),
        other => other,
    };
    let unrecognized = |why: String| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {why}",
            rt.kind
        ))
    };
    match parsed {
        Ok(v @ Value::Object(_)) => Ok(v),
        // Go decodes `null` into an object as its zero value.
        Ok(Value::Null) => Ok(Value::Object(serde_json::Map::new())),
        Ok(other) => Err(unrecognized(format!(
            "json: cannot unmarshal {} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}",
            super::util::json_type(&other)
        ))),
        Err(e) => Err(unrecognized(e)),
    }
}

/// Checks `apiVersion`/`kind` (absent ones default to the URL's) and sets
/// them to the storage version.
pub fn check_type(rt: &ResourceType, v: &mut Value) -> ApiResult<()> {
    for k in ["apiVersion", "kind"] {
        if v.get(k).is_some_and(|x| !x.is_string() && !x.is_null()) {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: json: cannot unmarshal into Go struct field .{k} of type string",
                rt.kind
            )));
        }
    }
    let av = v.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    let (group, version) = match av.rsplit_once('/') {
        Some((g, ver)) => (g.to_owned(), ver.to_owned()),
        None => (String::new(), av.clone()),
    };
    if rt.is_custom() {
        check_custom_type(rt, v, &av, &kind, &group, &version)?;
    }
    let shown_kind = if kind.is_empty() { rt.kind.clone() } else { kind.clone() };
    if !kind.is_empty() && kind != rt.kind {
        return Err(ApiError::bad_request(format!(
            "{shown_kind} in version {version:?} cannot be handled as a {}: converting ({version}.{kind}) to ({version}.{}): unknown conversion",
            rt.kind, rt.kind
        )));
    }
    if !av.is_empty() && (group != rt.group || !rt.serves(&version)) {
        return Err(ApiError::bad_request(format!(
            "{shown_kind} in version {version:?} cannot be handled as a {}: no kind {shown_kind:?} is registered for version {av:?} in scheme \"apisim\"",
            rt.kind
        )));
    }
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    Ok(())
}

/// apiextensions-apiserver's checks of a custom object's type fields.
fn check_custom_type(rt: &ResourceType, v: &Value, av: &str, kind: &str, group: &str, version: &str) -> ApiResult<()> {
    if group != rt.group || !rt.serves(version) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): Object 'Kind' is missing in '{v}'",
            rt.kind
        )));
    }
    if kind != rt.kind {
        let name = get_str(v, &["metadata", "name"]).unwrap_or_default();
        return Err(ApiError::invalid(
            kind,
            &rt.group,
            name,
            vec![Cause::invalid("kind", &json!(kind), &format!("must be {}", rt.kind))],
        ));
    }
    Ok(())
}

/// Where a decoded object came from: the errors for unknown fields differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A POST/PUT body: Strict → 400 "cannot be handled as a".
    Body,
    /// The result of a merge/JSON/strategic patch: Strict → 422 "patch: Invalid value".
    Patch,
    /// A server-side apply configuration (no defaults): any unknown field → 500,
    /// "failed to create typed patch object", whatever the field validation.
    Apply,
}

/// Decodes an object for `rt` like the real decoder: type errors are 400,
/// unknown fields are dropped (warned about, or 400 with Strict).
pub fn decode(rt: &ResourceType, v: Value, opts: &mut WriteOpts) -> ApiResult<Value> {
    decode_with(rt, v, opts, Source::Body)
}

/// [`decode`] for a given [`Source`].
pub fn decode_with(rt: &ResourceType, mut v: Value, opts: &mut WriteOpts, source: Source) -> ApiResult<Value> {
    check_type(rt, &mut v)?;
    let input = v.clone();
    let cannot = |why: String| {
        let version = rt.version.clone();
        ApiError::bad_request(format!("{} in version {version:?} cannot be handled as a {}: {why}", rt.kind, rt.kind))
    };
    let mut unknown = Vec::new();
    let out = if let Some(schema) = rt.schema() {
        let meta = v.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let typed_meta = builtin::typed_meta(&meta).map_err(cannot)?;
        builtin::unknown_fields(&meta, &typed_meta, "metadata", &mut unknown);
        let mut pruned = v;
        if let Some(m) = pruned.as_object_mut() {
            m.insert("metadata".into(), typed_meta);
        }
        schema::prune_with(&mut pruned, schema, "", true, source != Source::Apply, &mut unknown);
        unknown.sort();
        pruned
    } else {
        let typed = builtin::typed(rt, &v)
            .map_err(|why| if source == Source::Apply { typed_patch_error(rt, &v, &why) } else { cannot(why) })?;
        match typed {
            // An apply configuration stays partial: the typed form would add
            // the zero values of required fields, which the applier does not own.
            Some(t) if source == Source::Apply => {
                builtin::unknown_fields(&v, &t, "", &mut unknown);
                v
            }
            Some(mut t) => {
                builtin::unknown_fields(&v, &t, "", &mut unknown);
                builtin::apply_defaults(rt, &mut t);
                t
            }
            None => v,
        }
    };
    if unknown.is_empty() {
        return Ok(out);
    }
    if source == Source::Apply {
        let errs: Vec<String> = unknown.iter().map(|f| format!(".{f}: field not declared in schema")).collect();
        let text = match errs.as_slice() {
            [one] => one.clone(),
            many => format!("errors:\n  {}", many.join("\n  ")),
        };
        return Err(typed_patch_error(rt, &input, &text));
    }
    let list: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
    match opts.validation {
        FieldValidation::Strict if source == Source::Patch => {
            let detail = format!("strict decoding error: {}", list.join(", "));
            Err(ApiError::invalid("", "", "", vec![Cause::invalid("patch", &json!(input.to_string()), &detail)]))
        }
        FieldValidation::Strict => Err(cannot(format!("strict decoding error: {}", list.join(", ")))),
        FieldValidation::Warn => {
            opts.warnings.extend(list);
            Ok(out)
        }
        FieldValidation::Ignore => Ok(out),
    }
}

/// Server-side apply's 500 for a configuration that does not fit the type.
fn typed_patch_error(rt: &ResourceType, v: &Value, why: &str) -> ApiError {
    let ns = get_str(v, &["metadata", "namespace"]).unwrap_or_default();
    let name = get_str(v, &["metadata", "name"]).unwrap_or_default();
    let msg = format!(
        "failed to create typed patch object ({ns}/{name}; {}/{}, Kind={}): {why}",
        rt.group, rt.version, rt.kind
    );
    ApiError::new(500, "", msg)
}
