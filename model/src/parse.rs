//! Parsing and validation of the values people type: durations, update
//! budgets, node names and label values. Every error names the value.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A value that could not be parsed or is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{value:?} is not a duration (expected e.g. 90s, 10m, 1h30m): {why}")]
    Duration { value: String, why: String },
    #[error("{value:?} is not an update budget: {why} (expected a count such as 3 or a percentage such as 10%)")]
    Budget { value: String, why: &'static str },
    #[error("{value:?} is not a valid {what}: {why}")]
    Name { what: &'static str, value: String, why: &'static str },
}

/// Parses a humantime duration (`90s`, `10m`, `1h30m`, `250ms`).
pub fn duration(value: &str) -> Result<Duration, ParseError> {
    humantime::parse_duration(value.trim())
        .map_err(|e| ParseError::Duration { value: value.to_owned(), why: e.to_string() })
}

/// How many nodes may update at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// A fixed number of nodes, at least 1.
    Count(u32),
    /// A percentage of managed nodes, 1..=100; rounds down but never below 1.
    Percent(u32),
}

impl Budget {
    /// Parses `3` or `10%`, or `unlimited` (the original operator's
    /// `max_concurrent_updates: unlimited`: every managed node, `100%`).
    /// Zero is refused: pausing is its own setting.
    pub fn parse(value: &str) -> Result<Budget, ParseError> {
        let err = |why| ParseError::Budget { value: value.to_owned(), why };
        let v = value.trim();
        if v == "unlimited" {
            return Ok(Budget::Percent(100));
        }
        let (digits, percent) = match v.strip_suffix('%') {
            Some(d) => (d, true),
            None => (v, false),
        };
        if digits.is_empty() {
            return Err(err("no number"));
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("not a whole non-negative number"));
        }
        let n: u32 = digits.parse().map_err(|_| err("number too large"))?;
        match (n, percent) {
            (0, _) => Err(err("zero slots would never update anything; set spec.paused to pause")),
            (101.., true) => Err(err("a percentage cannot exceed 100%")),
            (n, true) => Ok(Budget::Percent(n)),
            (n, false) => Ok(Budget::Count(n)),
        }
    }

    /// Reads a Kubernetes int-or-string (the UpdatePolicy field).
    pub fn from_int_or_string(v: &IntOrString) -> Result<Budget, ParseError> {
        match v {
            IntOrString::Int(i) => Budget::parse(&i.to_string()),
            IntOrString::String(s) => Budget::parse(s),
        }
    }

    /// The number of slots for `managed` nodes.
    pub fn slots(self, managed: u32) -> u32 {
        match self {
            Budget::Count(n) => n,
            Budget::Percent(p) => ((u64::from(managed) * u64::from(p)) / 100).max(1) as u32,
        }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::Count(n) => write!(f, "{n}"),
            Budget::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Budget {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Budget::parse(s)
    }
}

fn name_err(what: &'static str, value: &str, why: &'static str) -> ParseError {
    ParseError::Name { what, value: value.to_owned(), why }
}

/// A DNS-1123 label: 1-63 lowercase alphanumerics or `-`, alphanumeric at both ends.
fn dns_label(what: &'static str, whole: &str, part: &str) -> Result<(), ParseError> {
    if part.is_empty() {
        return Err(name_err(what, whole, "empty part"));
    }
    if part.len() > 63 {
        return Err(name_err(what, whole, "a dot-separated part is longer than 63 characters"));
    }
    if !part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(name_err(what, whole, "only lowercase letters, digits, '-' and '.' are allowed"));
    }
    if part.starts_with('-') || part.ends_with('-') {
        return Err(name_err(what, whole, "must start and end with a letter or digit"));
    }
    Ok(())
}

/// A DNS-1123 subdomain, as Kubernetes requires of Node names: at most 253
/// characters, dot-separated DNS labels.
pub fn dns_subdomain(what: &'static str, value: &str) -> Result<(), ParseError> {
    if value.is_empty() {
        return Err(name_err(what, value, "must not be empty"));
    }
    if value.len() > 253 {
        return Err(name_err(what, value, "longer than 253 characters"));
    }
    value.split('.').try_for_each(|p| dns_label(what, value, p))
}

/// A node name this operator can manage: a valid Node name whose shadow name
/// (`brs-<node>`) is itself a valid object name.
pub fn node_name(value: &str) -> Result<(), ParseError> {
    dns_subdomain("node name", value)?;
    if value.len() + crate::names::SHADOW_PREFIX.len() > 253 {
        return Err(name_err(
            "node name",
            value,
            "too long for its BottlerocketShadow name brs-<node> (at most 249 characters)",
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters, alphanumerics with `-`, `_`,
/// `.` inside, alphanumeric at both ends.
pub fn label_value(value: &str) -> Result<(), ParseError> {
    const WHAT: &str = "label value";
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err(name_err(WHAT, value, "longer than 63 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(name_err(WHAT, value, "only letters, digits, '-', '_' and '.' are allowed"));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(value.chars().next()) || !alnum(value.chars().last()) {
        return Err(name_err(WHAT, value, "must start and end with a letter or digit"));
    }
    Ok(())
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 characters (same characters as a label value, not empty).
pub fn label_key(value: &str) -> Result<(), ParseError> {
    const WHAT: &str = "label key";
    let name = match value.split_once('/') {
        Some((prefix, name)) => {
            dns_subdomain("label key prefix", prefix)?;
            name
        }
        None => value,
    };
    if name.is_empty() {
        return Err(name_err(WHAT, value, "the name part must not be empty"));
    }
    label_value(name).map_err(|_| {
        name_err(
            WHAT,
            value,
            "the name part must be at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_humantime_form() {
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        let err = duration("ten minutes").unwrap_err().to_string();
        assert!(err.starts_with("\"ten minutes\" is not a duration"), "{err}");
        assert!(duration("").is_err());
        assert!(duration("-5s").is_err());
    }

    #[test]
    fn budgets_as_count_or_percentage() {
        assert_eq!(Budget::parse("3"), Ok(Budget::Count(3)));
        assert_eq!(Budget::parse("10%"), Ok(Budget::Percent(10)));
        assert_eq!(Budget::parse("100%"), Ok(Budget::Percent(100)));
        // The original operator's word for "no limit" carries over.
        assert_eq!(Budget::parse("unlimited"), Ok(Budget::Percent(100)));
        assert_eq!(Budget::parse("unlimited").unwrap().slots(7), 7);
        assert_eq!(Budget::from_int_or_string(&IntOrString::Int(5)), Ok(Budget::Count(5)));
        assert_eq!(Budget::from_int_or_string(&IntOrString::String("25%".into())), Ok(Budget::Percent(25)));
    }

    #[test]
    fn bad_budgets_are_refused_naming_the_value() {
        for bad in ["0", "0%", "101%", "-1", "abc", "", "%", "1.5", "10 %", "99999999999", "99999999%"] {
            let err = Budget::parse(bad).expect_err(bad).to_string();
            assert!(err.starts_with(&format!("{bad:?} is not an update budget")), "{bad}: {err}");
        }
        assert!(Budget::from_int_or_string(&IntOrString::Int(-1)).is_err());
        assert!(Budget::parse("0").unwrap_err().to_string().contains("spec.paused"));
    }

    #[test]
    fn percentage_rounds_down_but_never_below_one() {
        assert_eq!(Budget::Percent(10).slots(1000), 100);
        assert_eq!(Budget::Percent(10).slots(19), 1);
        assert_eq!(Budget::Percent(10).slots(5), 1);
        assert_eq!(Budget::Percent(10).slots(0), 1);
        assert_eq!(Budget::Percent(50).slots(7), 3);
        assert_eq!(Budget::Percent(100).slots(7), 7);
        assert_eq!(Budget::Count(3).slots(2), 3);
    }

    #[test]
    fn node_names_are_validated_as_kubernetes_does() {
        for ok in ["node-1", "ip-10-0-0-1.us-west-2.compute.internal", "a", "0abc"] {
            assert_eq!(node_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Node-1", "-node", "node-", "node_1", "a..b", ".a", "a b"] {
            assert!(node_name(bad).is_err(), "{bad}");
        }
        assert!(node_name(&"a".repeat(250)).is_err(), "a label longer than 63");
        let long = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(59)].join(".");
        assert_eq!(long.len(), 251);
        assert!(dns_subdomain("node name", &long).is_ok());
        let err = node_name(&long).unwrap_err().to_string();
        assert!(err.contains("brs-<node>"), "{err}");
    }

    #[test]
    fn label_values_and_keys() {
        for ok in ["", "2.0.0", "a", "A_b-c.d"] {
            assert_eq!(label_value(ok), Ok(()), "{ok}");
        }
        for bad in ["-a", "a-", "a/b", "a b", &"x".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
        for ok in ["bottlerocket.aws/updater-interface-version", "app", "example.com/x_y"] {
            assert_eq!(label_key(ok), Ok(()), "{ok}");
        }
        for bad in ["", "/x", "Example.com/x", "a/", "a/b/c"] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
    }
}
