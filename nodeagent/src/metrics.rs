//! The agent's metrics, registered once into one registry.

use model::FailureReason;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone, Debug)]
pub struct Metrics {
    pub registry: Registry,
    /// Steps taken, by step.
    pub steps: IntCounterVec,
    /// Update failures of this node, by reason.
    pub failures: IntCounterVec,
    /// Failed host API calls, by action and failure.
    pub host_errors: IntCounterVec,
    /// Failed authproxy calls, by answer (HTTP code or `unreachable`).
    pub proxy_errors: IntCounterVec,
    /// 1 while this node holds an update slot.
    pub holding_slot: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let steps = vec("brupop_agent_steps_total", "Steps of the update walk taken, by step", &["step"]);
        let failures =
            vec("brupop_agent_update_failures_total", "Update failures of this node, by reason", &["reason"]);
        let host_errors =
            vec("brupop_agent_host_api_errors_total", "Failed calls to the host's update API", &["error"]);
        let proxy_errors = vec("brupop_agent_authproxy_errors_total", "Failed calls to the authproxy", &["answer"]);
        let holding_slot =
            IntGauge::new("brupop_agent_holding_slot", "1 while this node holds an update slot").expect("valid metric");
        for r in FailureReason::ALL {
            failures.with_label_values(&[r.as_str()]);
        }
        for c in [&steps, &failures, &host_errors, &proxy_errors] {
            registry.register(Box::new(c.clone())).expect("registered once");
        }
        registry.register(Box::new(holding_slot.clone())).expect("registered once");
        Metrics { registry, steps, failures, host_errors, proxy_errors, holding_slot }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
