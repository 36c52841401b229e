//! Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`, and the
//! `matchLabels`/`matchExpressions` form of PodDisruptionBudgets) and field
//! selectors (`metadata.name=x,spec.nodeName=n`), with the fields each
//! resource supports on a real server.

use std::collections::BTreeMap;

use serde_json::Value;

use super::errors::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
    /// A `LabelSelector` object that is nil matches nothing (PDB semantics).
    nothing: bool,
}

fn parse_err(msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {msg}"))
}

fn valid_key(k: &str) -> bool {
    let name = match k.split_once('/') {
        Some((prefix, name)) => {
            if !super::util::is_dns_subdomain(prefix) {
                return false;
            }
            name
        }
        None => k,
    };
    !name.is_empty() && name.len() <= 63 && valid_value(name)
}

fn valid_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, ApiError> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(parse_err("found ')', expected: identifier"));
        }
    }
    if depth != 0 {
        return Err(parse_err("found '', expected: ',' or ')'"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_set(rest: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| parse_err(format!("found '{rest}', expected: '('")))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    for v in &values {
        if !valid_value(v) {
            return Err(parse_err(format!("invalid label value: {v:?}")));
        }
    }
    Ok(values)
}

impl LabelSelector {
    /// Parses the string form used in `?labelSelector=`.
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector::default());
        }
        for part in split_top(s)? {
            let p = part.trim();
            if p.is_empty() {
                return Err(parse_err("found '', expected: identifier"));
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                Requirement { key: k.trim().to_owned(), op: Op::NotExists }
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement { key: k.trim().to_owned(), op: Op::NotIn(vec![v.trim().to_owned()]) }
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Requirement { key: k.trim().to_owned(), op: Op::In(vec![v.trim().to_owned()]) }
            } else if let Some((k, v)) = p.split_once('>') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| parse_err("for 'gt', 'lt' operators, the value must be an integer"))?;
                Requirement { key: k.trim().to_owned(), op: Op::Gt(n) }
            } else if let Some((k, v)) = p.split_once('<') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| parse_err("for 'gt', 'lt' operators, the value must be an integer"))?;
                Requirement { key: k.trim().to_owned(), op: Op::Lt(n) }
            } else if let Some((k, rest)) = split_word(p, "notin") {
                Requirement { key: k.to_owned(), op: Op::NotIn(parse_set(rest)?) }
            } else if let Some((k, rest)) = split_word(p, "in") {
                Requirement { key: k.to_owned(), op: Op::In(parse_set(rest)?) }
            } else if p.contains(char::is_whitespace) {
                return Err(parse_err(format!("found '{p}', expected: in, notin, =, ==, !=, gt, lt")));
            } else {
                Requirement { key: p.to_owned(), op: Op::Exists }
            };
            if !valid_key(&req.key) {
                return Err(parse_err(format!("invalid label key {:?}", req.key)));
            }
            if let Op::In(vs) | Op::NotIn(vs) = &req.op
                && let Some(bad) = vs.iter().find(|v| !valid_value(v))
            {
                return Err(parse_err(format!("invalid label value: {bad:?}")));
            }
            reqs.push(req);
        }
        Ok(LabelSelector { reqs, nothing: false })
    }

    /// Reads a `metav1.LabelSelector` object. `None`/null matches nothing.
    pub fn from_object(v: Option<&Value>) -> Result<LabelSelector, String> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(LabelSelector { reqs: Vec::new(), nothing: true });
        };
        let mut reqs = Vec::new();
        if let Some(m) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in m {
                let val = val.as_str().unwrap_or_default().to_owned();
                if !valid_key(k) || !valid_value(&val) {
                    return Err(format!("{k}={val:?} is not a valid label selector requirement"));
                }
                reqs.push(Requirement { key: k.clone(), op: Op::In(vec![val]) });
            }
        }
        if let Some(exprs) = v.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default().to_owned();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str).unwrap_or_default() {
                    "In" if !values.is_empty() => Op::In(values),
                    "NotIn" if !values.is_empty() => Op::NotIn(values),
                    "Exists" if values.is_empty() => Op::Exists,
                    "DoesNotExist" if values.is_empty() => Op::NotExists,
                    "In" | "NotIn" => {
                        return Err("for 'in', 'notin' operators, values set can't be empty".into());
                    }
                    "Exists" | "DoesNotExist" => {
                        return Err("values set must be empty for exists and does not exist".into());
                    }
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                };
                if !valid_key(&key) {
                    return Err(format!("{key:?} is not a valid label selector key"));
                }
                if let Op::In(vs) | Op::NotIn(vs) = &op
                    && let Some(bad) = vs.iter().find(|v| !valid_value(v))
                {
                    return Err(format!("{bad:?} is not a valid label selector value"));
                }
                reqs.push(Requirement { key, op });
            }
        }
        Ok(LabelSelector { reqs, nothing: false })
    }

    /// True for a selector without requirements (matches everything, or for
    /// PDBs: a selector that selects nothing).
    pub fn is_empty(&self) -> bool {
        self.nothing || self.reqs.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.nothing {
            return false;
        }
        self.reqs.iter().all(|r| {
            let v = labels.get(&r.key);
            match &r.op {
                Op::In(vs) => v.is_some_and(|v| vs.contains(v)),
                Op::NotIn(vs) => v.is_none_or(|v| !vs.contains(v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
                Op::Gt(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|x| x > *n),
                Op::Lt(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|x| x < *n),
            }
        })
    }
}

/// `key in (..)`: the key before a whole-word operator and what follows it.
fn split_word<'a>(p: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let mut it = p.splitn(2, char::is_whitespace);
    let key = it.next()?.trim();
    let rest = it.next()?.trim_start();
    let after = rest.strip_prefix(word)?;
    (after.trim_start().starts_with('(')).then_some((key, after))
}

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldReq {
    pub field: String,
    pub equal: bool,
    pub value: String,
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    pub reqs: Vec<FieldReq>,
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits on a separator not preceded by a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        if esc {
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

impl FieldSelector {
    /// Parses `?fieldSelector=`; `supported` lists the fields this resource
    /// allows besides `metadata.name` and `metadata.namespace`.
    pub fn parse(s: &str, supported: &[&str]) -> Result<FieldSelector, ApiError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector::default());
        }
        for part in split_unescaped(s, ',') {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{s}'; can't understand '{part}'")));
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" && !supported.contains(&field) {
                let mut all = vec!["\"metadata.name\"".to_owned(), "\"metadata.namespace\"".to_owned()];
                all.extend(supported.iter().map(|f| format!("{f:?}")));
                return Err(ApiError::bad_request(format!(
                    "{field:?} is not a known field selector: only {}",
                    all.join(", ")
                )));
            }
            reqs.push(FieldReq { field: field.to_owned(), equal, value: unescape(value.trim()) });
        }
        Ok(FieldSelector { reqs })
    }

    /// The value of an exact `field=value` term (used to pick an index).
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.reqs.iter().find(|r| r.equal && r.field == field).map(|r| r.value.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// True if the selector only uses fields `fast` can answer.
    pub fn only_uses(&self, fields: &[&str]) -> bool {
        self.reqs.iter().all(|r| fields.contains(&r.field.as_str()))
    }

    /// Evaluates with `get` giving each field's value ("" when absent).
    pub fn matches_with(&self, mut get: impl FnMut(&str) -> String) -> bool {
        self.reqs.iter().all(|r| (get(&r.field) == r.value) == r.equal)
    }
}

/// The value of a selectable field in an object, as the server stringifies it.
pub fn field_value(obj: &Value, field: &str) -> String {
    let mut v = obj;
    for part in field.split('.') {
        match v.get(part) {
            Some(x) => v = x,
            None => {
                return match field {
                    "spec.unschedulable" | "spec.hostNetwork" => "false".to_owned(),
                    _ => String::new(),
                };
            }
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let yes = [
            "app=web",
            "app==web",
            "app!=db",
            "app in (web,db)",
            "app notin (db)",
            "tier",
            "!missing",
            "missing!=x",
            "missing notin (x)",
            "app=web,tier=front",
            "n>4",
            "n<6",
            "app in ( web , db )",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        let no = ["app=db", "app!=web", "app in (db)", "app notin (web)", "missing", "!tier", "missing in (x)", "n>5"];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        assert!(LabelSelector::parse("").unwrap().matches(&l));
        for bad in ["a in (b", "a in b)", "Bad Key=x", "a=b c", ","] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_selector_objects() {
        let l = labels(&[("app", "web")]);
        let v = serde_json::json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]});
        assert!(LabelSelector::from_object(Some(&v)).unwrap().matches(&l));
        assert!(!LabelSelector::from_object(None).unwrap().matches(&l));
        let bad = serde_json::json!({"matchExpressions": [{"key": "x", "operator": "In"}]});
        assert!(LabelSelector::from_object(Some(&bad)).is_err());
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("spec.nodeName=n1,metadata.name!=x", &["spec.nodeName"]).unwrap();
        assert_eq!(f.exact("spec.nodeName"), Some("n1"));
        let pod = serde_json::json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        assert!(f.matches_with(|k| field_value(&pod, k)));
        assert!(FieldSelector::parse("foo=bar", &[]).is_err());
        let node = serde_json::json!({"spec": {}});
        assert_eq!(field_value(&node, "spec.unschedulable"), "false");
    }
}
