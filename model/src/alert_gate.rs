//! The UpdatePolicy's alert gate (`spec.alertGate`): while alerts fire in a
//! Prometheus, the leader grants no new slot (phase `Blocked`).
//!
//! Only Prometheus's own HTTP API is spoken: `GET /api/v1/alerts` (alert
//! names) and `GET /api/v1/query` (a PromQL expression). An Alertmanager URL
//! is not supported. The spec reads leniently like the rest of the
//! UpdatePolicy: a field that cannot be read is named (`spec.alertGate.<field>`)
//! and stops grants (`InvalidSpec`); it never fails the read of the object.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::field;

/// The longest `alertGate.prometheusUrl`.
pub const GATE_URL_MAX_LENGTH: u32 = 2048;
/// The most `alertGate.alerts`, and the longest name.
pub const GATE_ALERTS_MAX_ITEMS: u32 = 32;
pub const GATE_ALERT_NAME_MAX_LENGTH: u32 = 256;
/// The longest `alertGate.query`.
pub const GATE_QUERY_MAX_LENGTH: u32 = 4096;
/// The longest `alertGate.pollInterval` and `alertGate.timeout`.
pub const GATE_DURATION_MAX_LENGTH: u32 = 64;

/// Hold new grants while alerts fire in Prometheus. Set either `alerts` or `query`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AlertGate {
    /// Base URL of Prometheus's HTTP API (http or https), e.g.
    /// `http://prometheus-operated.monitoring:9090`. Alertmanager is not supported.
    #[schemars(length(min = 1, max = GATE_URL_MAX_LENGTH))]
    pub prometheus_url: String,
    /// Block while any alert of one of these names is firing (`/api/v1/alerts`; pending alerts do not block).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = GATE_ALERTS_MAX_ITEMS), inner(length(min = 1, max = GATE_ALERT_NAME_MAX_LENGTH)))]
    pub alerts: Vec<String>,
    /// Or: block while this PromQL instant query returns any series (`/api/v1/query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = GATE_QUERY_MAX_LENGTH))]
    pub query: Option<String>,
    /// How often Prometheus is asked (humantime, 100ms..1h; default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = GATE_DURATION_MAX_LENGTH))]
    pub poll_interval: Option<String>,
    /// How long one question may take (humantime, 100ms..1m; default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = GATE_DURATION_MAX_LENGTH))]
    pub timeout: Option<String>,
    /// What an unanswered question (or an answer older than three poll
    /// intervals) means: `Block` (default) or `Ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unreachable: Option<OnUnreachable>,
}

/// What an unanswered question (an error, a timeout, or an answer older
/// than three poll intervals) means: `Block` (the default: no new grants)
/// or `Ignore`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnUnreachable {
    /// No new grants until Prometheus answers (the safe default).
    #[default]
    Block,
    /// Grant as if nothing fired (the status still says Prometheus is unreachable).
    Ignore,
}

impl OnUnreachable {
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnreachable::Block => "Block",
            OnUnreachable::Ignore => "Ignore",
        }
    }
}

// === impl AlertGate ===

impl AlertGate {
    /// Reads `spec.alertGate` field by field, as [`crate::UpdatePolicySpec::from_value`]
    /// reads the spec: a field that cannot be read, or lies outside the
    /// CRD's bounds, is named in `problems` (`spec.alertGate.<field>: ...`).
    /// Unknown fields are ignored. `None` only when the value is not an object.
    pub fn from_value(value: Value, problems: &mut Vec<String>) -> Option<AlertGate> {
        let Value::Object(map) = value else {
            problems.push(format!("spec.alertGate: not an object: {}", crate::policy::excerpt(&value)));
            return None;
        };
        let mut gate = AlertGate::default();
        for (key, v) in map {
            if v.is_null() {
                continue;
            }
            let name = format!("alertGate.{key}");
            let n = name.as_str();
            match key.as_str() {
                "prometheusUrl" => gate.prometheus_url = field(n, v, problems).unwrap_or_default(),
                "alerts" => gate.alerts = field(n, v, problems).unwrap_or_default(),
                "query" => gate.query = field(n, v, problems),
                "pollInterval" => gate.poll_interval = field(n, v, problems),
                "timeout" => gate.timeout = field(n, v, problems),
                "onUnreachable" => gate.on_unreachable = field(n, v, problems),
                _ => {}
            }
        }
        gate.out_of_bounds(problems);
        Some(gate)
    }

    /// Values that decode but lie outside the CRD's bounds.
    fn out_of_bounds(&self, problems: &mut Vec<String>) {
        let too_long = |field: &str, v: Option<&String>, max: u32, problems: &mut Vec<String>| {
            if v.is_some_and(|s| s.chars().count() > max as usize) {
                problems.push(format!("spec.alertGate.{field}: longer than {max} characters"));
            }
        };
        too_long("prometheusUrl", Some(&self.prometheus_url), GATE_URL_MAX_LENGTH, problems);
        too_long("query", self.query.as_ref(), GATE_QUERY_MAX_LENGTH, problems);
        too_long("pollInterval", self.poll_interval.as_ref(), GATE_DURATION_MAX_LENGTH, problems);
        too_long("timeout", self.timeout.as_ref(), GATE_DURATION_MAX_LENGTH, problems);
        if self.alerts.len() > GATE_ALERTS_MAX_ITEMS as usize {
            problems.push(format!("spec.alertGate.alerts: more than {GATE_ALERTS_MAX_ITEMS} names"));
        }
        if self.alerts.iter().any(|a| a.chars().count() > GATE_ALERT_NAME_MAX_LENGTH as usize) {
            problems.push(format!("spec.alertGate.alerts: a name longer than {GATE_ALERT_NAME_MAX_LENGTH} characters"));
        }
    }
}

/// What the alert gate last decided, in the UpdatePolicy status (written by the leader).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AlertGateStatus {
    /// Whether the gate holds new grants now.
    #[serde(default)]
    pub blocking: bool,
    #[serde(default)]
    pub state: AlertGateState,
    /// The alerts firing (or the series the query returned), as Prometheus last named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firing: Vec<String>,
    /// One sentence: what Prometheus answered, or why it could not be asked.
    #[serde(default)]
    pub message: String,
}

/// The gate's reading of Prometheus's last answer.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlertGateState {
    /// Nothing the gate watches fires.
    #[default]
    Clear,
    /// An alert named in `alerts` fires, or `query` returned series.
    Firing,
    /// No usable answer: Prometheus unreachable, an error, or an answer older
    /// than three poll intervals. Blocks unless `onUnreachable: Ignore`.
    Unreachable,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UpdatePolicySpec;

    #[test]
    fn the_gate_reads_field_by_field_and_names_what_it_cannot_read() {
        let p: UpdatePolicySpec = serde_json::from_value(serde_json::json!({"alertGate": {
            "prometheusUrl": "http://prom:9090", "alerts": ["A", "B"], "pollInterval": "5s",
            "onUnreachable": "Ignore", "unknown": 1
        }}))
        .unwrap();
        let g = p.alert_gate.unwrap();
        assert_eq!(g.alerts, ["A", "B"]);
        assert_eq!(g.on_unreachable, Some(OnUnreachable::Ignore));
        assert!(p.unreadable.is_empty(), "{:?}", p.unreadable);
        let p: UpdatePolicySpec = serde_json::from_value(serde_json::json!({"alertGate": {
            "prometheusUrl": "http://prom:9090", "onUnreachable": "Maybe", "timeout": 5, "query": "up == 0"
        }}))
        .unwrap();
        let fields: Vec<&str> = p.unreadable.iter().map(|p| p.split(':').next().unwrap_or("")).collect();
        assert_eq!(fields, ["spec.alertGate.onUnreachable", "spec.alertGate.timeout"]);
        assert_eq!(p.alert_gate.unwrap().query.as_deref(), Some("up == 0"), "the rest is read");
        let p: UpdatePolicySpec = serde_json::from_value(serde_json::json!({"alertGate": "yes"})).unwrap();
        assert!(p.alert_gate.is_none());
        assert!(p.unreadable[0].starts_with("spec.alertGate: not an object"), "{:?}", p.unreadable);
    }

    #[test]
    fn gate_values_beyond_the_crd_bounds_are_named() {
        let long = "x".repeat(5000);
        let p: UpdatePolicySpec = serde_json::from_value(serde_json::json!({"alertGate": {
            "prometheusUrl": long, "query": long, "alerts": vec!["a"; 33]
        }}))
        .unwrap();
        let fields: Vec<&str> = p.unreadable.iter().map(|p| p.split(':').next().unwrap_or("")).collect();
        assert_eq!(fields, ["spec.alertGate.prometheusUrl", "spec.alertGate.query", "spec.alertGate.alerts"]);
    }

    #[test]
    fn the_crd_bounds_the_gate() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(crate::UpdatePolicy::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let gate = &spec["alertGate"]["properties"];
        for f in ["prometheusUrl", "query", "pollInterval", "timeout"] {
            assert!(gate[f]["maxLength"].is_u64(), "{f}: {}", gate[f]);
        }
        assert!(gate["alerts"]["maxItems"].is_u64());
        assert!(gate["alerts"]["items"]["maxLength"].is_u64());
        assert_eq!(gate["onUnreachable"]["enum"], serde_json::json!(["Block", "Ignore"]), "{}", gate["onUnreachable"]);
        assert_eq!(spec["alertGate"]["required"], serde_json::json!(["prometheusUrl"]));
    }
}
