//! End-to-end scenarios: the real leader, authproxy and agents as processes,
//! simulated hosts, on the in-process API simulator (`cargo test`) or a real
//! API server (`BRUPOP_TEST_KUBECONFIG`, as `.ci/run` does). Every scenario
//! runs the invariant monitor from start to end and asserts it saw no
//! violation.

mod alert_gate;
mod canary;
mod failures;
mod harness;
mod health;
mod hooks;
mod hostile;
mod operations;
mod plugin;
mod production_timings;
mod resilience;
mod rollout;

use std::time::Duration;

use tests::harness::Fleet;

/// Deadline of one phase of a scenario.
pub const T: Duration = Duration::from_secs(120);

/// Sum of all samples of a counter family in a metrics text.
pub fn total(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(family)
                && (l.as_bytes().get(family.len()) == Some(&b'{') || l.as_bytes().get(family.len()) == Some(&b' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The failure reason recorded on a node's shadow, if any.
pub async fn failure_of(fleet: &Fleet, node: &str) -> Option<model::FailureReason> {
    fleet.shadow(node).await?.status?.last_failure.map(|f| f.reason)
}

/// The reasons of the Events recorded on the UpdatePolicy.
pub async fn policy_events(fleet: &Fleet) -> Vec<String> {
    use k8s_openapi::api::events::v1::Event;
    let events: kube::Api<Event> = kube::Api::namespaced(fleet.client().clone(), &fleet.ns);
    let list = events.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("UpdatePolicy"))
        .filter_map(|e| e.reason)
        .collect()
}
