//! Label selectors as `kubectl -l` writes them: parsed (the leader refuses a
//! malformed `--node-selector` at start, and a malformed selector in the
//! UpdatePolicy with `InvalidSpec`) and matched against labels (the agent
//! evaluates the policy's pod selectors against the pods on its node).

use std::collections::BTreeMap;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0usize, Vec::new());
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
    }
    parts.push(&s[start..]);
    parts
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    crate::parse::label_key(k).map_err(|e| e.to_string())?;
    Ok(k.to_owned())
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    crate::parse::label_value(v).map_err(|e| e.to_string())?;
    Ok(v.to_owned())
}

fn set(rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised list of values, got {rest:?}"))?;
    inner.split(',').map(value).collect()
}

/// Parses a label selector as `kubectl -l` accepts it.
pub fn parse(selector: &str) -> Result<Vec<Requirement>, String> {
    if selector.trim().is_empty() {
        return Ok(Vec::new());
    }
    split_top(selector)
        .into_iter()
        .map(|part| {
            let part = part.trim();
            if let Some(k) = part.strip_prefix('!') {
                return Ok(Requirement::NotExists(key(k)?));
            }
            if let Some((k, v)) = part.split_once("!=") {
                return Ok(Requirement::NotEquals(key(k)?, value(v)?));
            }
            if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                return Ok(Requirement::Equals(key(k)?, value(v)?));
            }
            let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
            match words.as_slice() {
                [k] => Ok(Requirement::Exists(key(k)?)),
                [k, rest] => {
                    let rest = rest.trim_start();
                    if let Some(r) = rest.strip_prefix("notin") {
                        Ok(Requirement::NotIn(key(k)?, set(r)?))
                    } else if let Some(r) = rest.strip_prefix("in") {
                        Ok(Requirement::In(key(k)?, set(r)?))
                    } else {
                        Err(format!("cannot read {part:?} (expected key, !key, key=value, key!=value, key in (..), key notin (..))"))
                    }
                }
                _ => Err(format!("cannot read {part:?}")),
            }
        })
        .collect()
}

/// Whether `labels` satisfy every requirement (an empty selector matches everything).
pub fn matches(requirements: &[Requirement], labels: &BTreeMap<String, String>) -> bool {
    requirements.iter().all(|r| match r {
        Requirement::Exists(k) => labels.contains_key(k),
        Requirement::NotExists(k) => !labels.contains_key(k),
        Requirement::Equals(k, v) => labels.get(k) == Some(v),
        Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
        Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
        Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_selector_parses() {
        assert_eq!(
            parse("bottlerocket.aws/updater-interface-version=2.0.0"),
            Ok(vec![Requirement::Equals("bottlerocket.aws/updater-interface-version".into(), "2.0.0".into())])
        );
    }

    #[test]
    fn every_operator_parses() {
        let r = parse("a=1,b!=2,c==3,d,!e,f in (x, y),g notin (z)").unwrap();
        assert_eq!(r.len(), 7);
        assert_eq!(r[5], Requirement::In("f".into(), vec!["x".into(), "y".into()]));
        assert_eq!(r[6], Requirement::NotIn("g".into(), vec!["z".into()]));
    }

    #[test]
    fn selectors_match_as_the_api_server_matches_them() {
        let labels: BTreeMap<String, String> =
            [("app", "web"), ("tier", "front")].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let m = |s: &str| matches(&parse(s).unwrap(), &labels);
        assert!(m(""));
        assert!(m("app=web,tier"));
        assert!(m("app in (web, db),!gone,other!=x,zone notin (a)"));
        assert!(!m("app=db"));
        assert!(!m("app,!tier"));
        assert!(!m("zone in (a)"));
        assert!(!m("app notin (web)"));
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in ["a=b c", "Bad Key=1", "f in x", "=v", "a=-bad-"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
