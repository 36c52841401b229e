//! Validation of the `--node-selector` label selector (the API server
//! evaluates it; the leader only refuses a malformed one at start).

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
    model::parse::label_key(k).map_err(|e| e.to_string())?;
    Ok(k.to_owned())
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    model::parse::label_value(v).map_err(|e| e.to_string())?;
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
    fn malformed_selectors_are_refused() {
        for bad in ["a=b c", "Bad Key=1", "f in x", "=v", "a=-bad-"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
