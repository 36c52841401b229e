//! Which pods a drain evicts, and what an eviction answer means. Pure.
//!
//! Skipped, as `kubectl drain --ignore-daemonsets` does: pods controlled by
//! a DaemonSet (it would recreate them on the node anyway) and mirror pods
//! (the kubelet owns them; the API cannot delete them). Pods already
//! terminating are not evicted again; they count as remaining until gone.
//! Pods matching the walk's skip selector (the UpdatePolicy's
//! `drain.skipPodSelector`) stay too: they restart with the node.

use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

use model::selector::Requirement;
use model::wire::PodOutcome;

/// Annotation the kubelet puts on mirror pods of static pods.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What a drain does with one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Evict,
    Terminating,
    SkipDaemonSet,
    SkipMirror,
    /// It matches the drain's skip selector.
    SkipSelected,
}

impl Class {
    /// The drain leaves it on the node.
    pub fn stays(self) -> bool {
        matches!(self, Class::SkipDaemonSet | Class::SkipMirror | Class::SkipSelected)
    }
}

/// What a drain does with `pod`; `skip`: the parsed skip selector (`None`:
/// skip nothing beyond DaemonSet and mirror pods).
pub fn classify(pod: &Pod, skip: Option<&[Requirement]>) -> Class {
    let meta = &pod.metadata;
    if meta.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR_ANNOTATION)) {
        return Class::SkipMirror;
    }
    let daemonset = meta.owner_references.iter().flatten().any(|o| o.controller == Some(true) && o.kind == "DaemonSet");
    if daemonset {
        return Class::SkipDaemonSet;
    }
    if let Some(reqs) = skip
        && model::selector::matches(reqs, meta.labels.as_ref().unwrap_or(&BTreeMap::new()))
    {
        return Class::SkipSelected;
    }
    if meta.deletion_timestamp.is_some() {
        return Class::Terminating;
    }
    Class::Evict
}

/// The outcome of one eviction from its HTTP status and the server's message.
/// The Eviction for the pod listed as `namespace/name` with `uid`. The uid
/// precondition makes the API server refuse it (409) if the pod was
/// replaced since the list: a successor of that name may run on another
/// node, and only the caller's node's pods may be evicted.
/// `grace_period_seconds`, when set, replaces the pod's own grace period.
pub fn eviction(namespace: &str, name: &str, uid: &str, grace_period_seconds: Option<i64>) -> serde_json::Value {
    let mut delete_options = serde_json::json!({"preconditions": {"uid": uid}});
    if let Some(g) = grace_period_seconds {
        delete_options["gracePeriodSeconds"] = g.into();
    }
    serde_json::json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
        "deleteOptions": delete_options,
    })
}

pub fn outcome(code: u16, message: &str) -> PodOutcome {
    match code {
        200 | 201 => PodOutcome::Evicted,
        // The pod listed is gone: the name now belongs to another pod.
        409 if message.contains("the UID in the precondition") => PodOutcome::Gone,
        404 => PodOutcome::Gone,
        429 => PodOutcome::Blocked { message: message.to_owned() },
        _ => PodOutcome::Failed { code, message: message.to_owned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web".into());
        p
    }

    #[test]
    fn an_eviction_names_the_uid_listed_and_a_replaced_pod_counts_as_gone() {
        let e = eviction("ns", "web-0", "u-1", None);
        assert_eq!(e["deleteOptions"]["preconditions"]["uid"], "u-1");
        assert!(e["deleteOptions"].get("gracePeriodSeconds").is_none(), "the pod's own grace period");
        assert_eq!(eviction("ns", "web-0", "u-1", Some(30))["deleteOptions"]["gracePeriodSeconds"], 30);
        assert_eq!(e["metadata"]["name"], "web-0");
        let stale = "Operation cannot be fulfilled on pods \"web-0\": the UID in the precondition (u-1) does not match the UID in record (u-2). The object might have been deleted and then recreated";
        assert_eq!(outcome(409, stale), PodOutcome::Gone);
        assert!(matches!(outcome(409, "Operation cannot be fulfilled"), PodOutcome::Failed { code: 409, .. }));
    }

    #[test]
    fn ordinary_pods_are_evicted() {
        assert_eq!(classify(&pod(), None), Class::Evict);
    }

    #[test]
    fn daemonset_and_mirror_pods_are_skipped() {
        let mut p = pod();
        p.metadata.owner_references = Some(vec![OwnerReference {
            kind: "DaemonSet".into(),
            controller: Some(true),
            name: "ds".into(),
            api_version: "apps/v1".into(),
            uid: "u".into(),
            ..Default::default()
        }]);
        assert_eq!(classify(&p, None), Class::SkipDaemonSet);
        let mut m = pod();
        m.metadata.annotations = Some([(MIRROR_ANNOTATION.to_owned(), "x".to_owned())].into());
        assert_eq!(classify(&m, None), Class::SkipMirror);
    }

    #[test]
    fn a_replicaset_pod_is_evicted_even_if_a_daemonset_is_a_non_controller_owner() {
        let mut p = pod();
        p.metadata.owner_references =
            Some(vec![OwnerReference { kind: "DaemonSet".into(), controller: None, ..Default::default() }]);
        assert_eq!(classify(&p, None), Class::Evict);
    }

    #[test]
    fn pods_matching_the_skip_selector_stay() {
        let mut p = pod();
        p.metadata.labels = Some([("tier".to_owned(), "cache".to_owned())].into());
        let skip = model::selector::parse("tier=cache").unwrap();
        assert_eq!(classify(&p, Some(&skip)), Class::SkipSelected);
        assert!(Class::SkipSelected.stays());
        let other = model::selector::parse("tier=web").unwrap();
        assert_eq!(classify(&p, Some(&other)), Class::Evict);
        assert_eq!(classify(&pod(), Some(&skip)), Class::Evict, "no labels");
    }

    #[test]
    fn terminating_pods_are_not_evicted_again() {
        let mut p = pod();
        p.metadata.deletion_timestamp = Some(Time("2026-11-27T10:00:00Z".parse().unwrap()));
        assert_eq!(classify(&p, None), Class::Terminating);
    }

    #[test]
    fn eviction_answers_map_to_outcomes() {
        assert_eq!(outcome(201, ""), PodOutcome::Evicted);
        assert_eq!(outcome(404, "gone"), PodOutcome::Gone);
        assert_eq!(outcome(429, "pdb"), PodOutcome::Blocked { message: "pdb".into() });
        assert_eq!(outcome(500, "two pdbs"), PodOutcome::Failed { code: 500, message: "two pdbs".into() });
    }
}
