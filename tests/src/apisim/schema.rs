//! Custom resources against their CRD's structural schema, as the
//! apiextensions-apiserver does: unknown fields are pruned (and reported for
//! `fieldValidation`), nulls of non-nullable fields dropped, defaults
//! applied, then types, enums, formats (`date-time`), bounds and required
//! fields validated.
//!
//! Not implemented: `pattern`, `x-kubernetes-validations` (CEL),
//! `oneOf`/`anyOf`/`allOf`/`not`, `uniqueItems`, and the `int32`/`int64`
//! range checks.

use serde_json::{Map, Value};

use super::errors::Cause;
use super::util::json_type;

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn flag(s: &Value, name: &str) -> bool {
    s.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Prunes fields the schema does not know (collecting their paths into
/// `unknown`), drops non-nullable nulls and applies defaults. `root` keeps
/// `apiVersion`, `kind` and `metadata` (checked elsewhere).
pub fn prune(v: &mut Value, s: &Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    prune_with(v, s, path, root, true, unknown);
}

/// [`prune`], optionally without applying defaults (for apply configurations).
pub fn prune_with(v: &mut Value, s: &Value, path: &str, root: bool, defaults: bool, unknown: &mut Vec<String>) {
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            let keep_meta = root || embedded;
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_schema = props.and_then(|p| p.get(&k)).or(additional);
                match child_schema {
                    Some(cs) => {
                        let null_dropped = m.get(&k).is_some_and(Value::is_null) && !flag(cs, "nullable");
                        if null_dropped {
                            m.remove(&k);
                        } else if let Some(child) = m.get_mut(&k) {
                            prune_with(child, cs, &join(path, &k), false, defaults, unknown);
                        }
                    }
                    None if preserve => {}
                    None => {
                        m.remove(&k);
                        unknown.push(join(path, &k));
                    }
                }
            }
            if let Some(props) = props.filter(|_| defaults) {
                for (k, cs) in props {
                    if !m.contains_key(k)
                        && let Some(d) = cs.get("default")
                    {
                        let mut d = d.clone();
                        prune(&mut d, cs, &join(path, k), false, &mut Vec::new());
                        m.insert(k.clone(), d);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter_mut().enumerate() {
                    prune_with(it, is, &format!("{path}[{i}]"), false, defaults, unknown);
                }
            }
        }
        _ => {}
    }
}

/// How Go prints a float bound (`0` rather than `0.0`).
fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

fn type_ok(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => true,
    }
}

/// Validates `v` against `s`, appending field errors.
pub fn validate(v: &Value, s: &Value, path: &str, errs: &mut Vec<Cause>) {
    if v.is_null() {
        // Non-nullable null properties were pruned; what is left are list items.
        if !flag(s, "nullable")
            && let Some(t) = s.get("type").and_then(Value::as_str)
        {
            errs.push(Cause::type_invalid(path, "null", t));
        }
        return;
    }
    if s.get("format").and_then(Value::as_str) == Some("date-time") && !v.is_string() {
        // kube-openapi checks such fields by format only, and quirkily: an
        // object counts as "", a number by its Go type, and an array passes.
        let shown = match v {
            Value::Object(_) => Some(String::new()),
            Value::Number(n) if n.is_f64() => Some("float64".to_owned()),
            Value::Number(_) => Some("int64".to_owned()),
            Value::Bool(_) => Some("bool".to_owned()),
            _ => None,
        };
        if let Some(shown) = shown {
            errs.push(Cause::invalid(
                path,
                &serde_json::json!(shown),
                &format!("{path} in body must be of type date-time: {shown:?}"),
            ));
        }
        return;
    }
    // An int-or-string takes either type; the value checks below still
    // apply to the form given (`maximum` to a number, `maxLength` to a
    // string), as a real API server applies them.
    if flag(s, "x-kubernetes-int-or-string") {
        if !(v.is_i64() || v.is_u64() || v.is_string()) {
            errs.push(Cause::type_invalid(path, json_type(v), "integer,string"));
            return;
        }
    } else if let Some(t) = s.get("type").and_then(Value::as_str)
        && !type_ok(v, t)
    {
        errs.push(Cause::type_invalid(path, json_type(v), t));
        return;
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let names: Vec<String> =
            allowed.iter().map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_owned)).collect();
        errs.push(Cause::not_supported(path, v, &names));
    }
    let invalid = |detail: String| Cause::invalid(path, v, &detail);
    if let Some(n) = v.as_f64() {
        let excl_min = flag(s, "exclusiveMinimum");
        let excl_max = flag(s, "exclusiveMaximum");
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            if excl_min && n <= min {
                errs.push(invalid(format!("{path} in body should be greater than {}", num(&s["minimum"]))));
            } else if n < min {
                errs.push(invalid(format!("{path} in body should be greater than or equal to {}", num(&s["minimum"]))));
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            if excl_max && n >= max {
                errs.push(invalid(format!("{path} in body should be less than {}", num(&s["maximum"]))));
            } else if n > max {
                errs.push(invalid(format!("{path} in body should be less than or equal to {}", num(&s["maximum"]))));
            }
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            errs.push(Cause {
                reason: "FieldValueTooLong",
                message: format!("Too long: may not be more than {max} bytes"),
                field: path.to_owned(),
            });
        }
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            errs.push(invalid(format!("{path} in body should be at least {min} chars long")));
        }
        if s.get("format").and_then(Value::as_str) == Some("date-time") && text.parse::<jiff::Timestamp>().is_err() {
            errs.push(invalid(format!("{path} in body must be of type date-time: {text:?}")));
        }
    }
    match v {
        Value::Object(m) => validate_object(m, s, path, errs),
        Value::Array(items) => {
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                errs.push(Cause {
                    reason: "FieldValueTooMany",
                    message: format!("Too many: {}: must have at most {max} items", items.len()),
                    field: path.to_owned(),
                });
            }
            if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errs.push(invalid(format!("{path} in body should have at least {min} items")));
            }
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    validate(it, is, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

fn validate_object(m: &Map<String, Value>, s: &Value, path: &str, errs: &mut Vec<Cause>) {
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if m.get(r).is_none_or(Value::is_null) {
                errs.push(Cause::required(join(path, r), ""));
            }
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties").filter(|a| a.is_object());
    for (k, child) in m {
        if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(cs) = props.and_then(|p| p.get(k)).or(additional) {
            validate(child, cs, &join(path, k), errs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 0.0},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "when": {"type": "string", "format": "date-time", "nullable": true},
                "inner": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                "count": {"type": "integer", "default": 0},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "amount": {"x-kubernetes-int-or-string": true}
            }},
            "status": {"type": "object", "nullable": true, "properties": {"phase": {"type": "string"}}}
        }})
    }

    #[test]
    fn pruning_reports_unknown_fields_and_applies_defaults() {
        let mut v = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"}, "top": 1,
            "spec": {"size": 1, "junk": 2, "inner": {"a": "x", "b": 1}, "free": {"any": {"thing": 1}}, "when": null, "color": null},
            "status": null});
        let mut unknown = Vec::new();
        prune(&mut v, &widget_schema(), "", true, &mut unknown);
        unknown.sort();
        assert_eq!(unknown, vec!["spec.inner.b", "spec.junk", "top"]);
        assert_eq!(v["spec"]["count"], 0);
        assert_eq!(v["spec"]["free"]["any"]["thing"], 1);
        assert!(v["spec"].get("when").unwrap().is_null(), "nullable null kept");
        assert!(v["spec"].get("color").is_none(), "non-nullable null dropped");
        assert!(v.get("status").unwrap().is_null());
    }

    #[test]
    fn validation_errors_are_worded_like_the_real_server() {
        let v = json!({"spec": {"size": "one", "color": "green", "inner": {}, "when": "yesterday", "amount": true}});
        let mut errs = Vec::new();
        validate(&v, &widget_schema(), "", &mut errs);
        let msgs: Vec<String> = errs.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        assert!(
            msgs.contains(
                &"spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(&"spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\"".to_string()),
            "{msgs:?}"
        );
        assert!(msgs.contains(&"spec.inner.a: Required value".to_string()), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("must be of type date-time")), "{msgs:?}");
        assert_eq!(errs.len(), 5, "{msgs:?}");
        let mut errs = Vec::new();
        validate(&json!({"spec": {"size": -1}}), &widget_schema(), "", &mut errs);
        assert_eq!(errs[0].message, "Invalid value: -1: spec.size in body should be greater than or equal to 0");
        let mut errs = Vec::new();
        validate(&json!({}), &json!({"type": "object", "required": ["spec"]}), "", &mut errs);
        assert_eq!(errs[0].field, "spec");
    }
}
