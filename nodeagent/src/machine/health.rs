//! The health gate's two rules, pure: which pods a walk records before its
//! drain ([`record`]), and what is wrong with the node's pods after the
//! reboot judged against that record ([`judge`]).
//!
//! The update is blamed only for what it can have broken: a pod judged is
//! one that ran Ready on the node before the drain (or its replacement on
//! the node). Pods the scheduler places after the uncordon, pods that were
//! not Ready before, pods that moved to other nodes and pods matching the
//! ignore selector are never judged.

use std::collections::BTreeMap;

use model::selector::{self, Requirement};
use model::walk::RecordedPod;

/// A pod on the node, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SeenPod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The DaemonSet that controls it.
    pub daemon_set: Option<String>,
    /// A static pod's mirror (it stays with the node).
    pub mirror: bool,
    /// Its Ready condition is true.
    pub ready: bool,
    /// Phase `Succeeded`.
    pub succeeded: bool,
    /// Phase `Failed`.
    pub failed: bool,
    /// It has a deletion timestamp.
    pub terminating: bool,
    /// Annotated not to be disrupted (`karpenter.sh/do-not-disrupt` or
    /// `brupop.bottlerocket.aws/do-not-disrupt`, value `"true"`).
    pub do_not_disrupt: bool,
}

/// The running pods that must not be disrupted (`namespace/name`).
pub fn must_not_disrupt(pods: &[SeenPod]) -> Vec<String> {
    pods.iter()
        .filter(|p| p.do_not_disrupt && !p.terminating && !p.succeeded && !p.failed)
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect()
}

fn requirements(s: &str) -> Vec<Requirement> {
    // The flags and the leader checked the selector; one that does not read
    // selects nothing rather than everything.
    selector::parse(s).unwrap_or_else(|_| vec![Requirement::Exists(String::new())])
}

fn selected(reqs: &[Requirement], selector: &str, pod: &SeenPod) -> bool {
    !selector.trim().is_empty() && selector::matches(reqs, &pod.labels)
}

/// The record kept before the drain: the pods running Ready on the node
/// that the ignore selector does not exclude. A pod stays with the node
/// through the drain when a DaemonSet controls it, when it is a static
/// pod's mirror, or when the drain skips it (`skip_selector`).
pub fn record(pods: &[SeenPod], ignore_selector: &str, skip_selector: &str) -> Vec<RecordedPod> {
    let (ignore, skip) = (requirements(ignore_selector), requirements(skip_selector));
    let mut out: Vec<RecordedPod> = pods
        .iter()
        .filter(|p| p.ready && !p.terminating && !p.succeeded && !p.failed)
        .filter(|p| !selected(&ignore, ignore_selector, p))
        .map(|p| RecordedPod {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            daemon_set: p.daemon_set.clone(),
            stays: p.daemon_set.is_some() || p.mirror || selected(&skip, skip_selector, p),
        })
        .collect();
    out.sort();
    out.truncate(model::walk::RECORDED_PODS_MAX);
    out
}

/// What is wrong after the reboot, one entry per recorded pod that is not
/// well (empty: healthy). A recorded pod is well when it, or a pod on the
/// node that replaces it (the same name in its namespace, or its
/// DaemonSet's pod), is Ready or has completed. A recorded pod with no such
/// pod on the node is well if the drain evicted it (it runs elsewhere now),
/// and missing if it should have stayed with the node.
pub fn judge(recorded: &[RecordedPod], now_on_node: &[SeenPod], ignore_selector: &str) -> Vec<String> {
    let ignore = requirements(ignore_selector);
    let mut problems = Vec::new();
    for r in recorded {
        let candidates: Vec<&SeenPod> = now_on_node
            .iter()
            .filter(|p| !p.terminating && p.namespace == r.namespace)
            .filter(|p| p.name == r.name || (r.daemon_set.is_some() && p.daemon_set == r.daemon_set))
            .collect();
        if candidates.iter().any(|p| selected(&ignore, ignore_selector, p)) {
            continue;
        }
        if candidates.iter().any(|p| p.ready || p.succeeded) {
            continue;
        }
        let who = format!("{}/{}", r.namespace, r.name);
        match candidates.first() {
            Some(p) if p.failed => problems.push(format!("{}/{} failed", p.namespace, p.name)),
            Some(p) if p.name != r.name => {
                problems.push(format!("{}/{} (replacing {who}) not Ready", p.namespace, p.name))
            }
            Some(_) => problems.push(format!("{who} not Ready")),
            None if r.stays => problems.push(match &r.daemon_set {
                Some(ds) => format!("{who} not back on the node (no pod of DaemonSet {ds})"),
                None => format!("{who} not back on the node"),
            }),
            None => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> SeenPod {
        SeenPod { namespace: "ns".into(), name: name.into(), ready: true, ..SeenPod::default() }
    }

    fn ds(name: &str, set: &str) -> SeenPod {
        SeenPod { daemon_set: Some(set.into()), ..pod(name) }
    }

    fn labelled(mut p: SeenPod, k: &str, v: &str) -> SeenPod {
        p.labels.insert(k.into(), v.into());
        p
    }

    #[test]
    fn the_record_keeps_ready_pods_and_marks_those_that_stay_with_the_node() {
        let pods = vec![
            ds("logs-a", "logs"),
            pod("web-0"),
            SeenPod { ready: false, ..pod("broken-before") },
            SeenPod { terminating: true, ..pod("leaving") },
            SeenPod { succeeded: true, ..pod("job-done") },
            SeenPod { mirror: true, ..pod("kube-proxy-a") },
            labelled(pod("batch-1"), "tier", "batch"),
            labelled(pod("cache-0"), "keep", "yes"),
        ];
        let r = record(&pods, "tier=batch", "keep=yes");
        let names: Vec<(&str, bool)> = r.iter().map(|p| (p.name.as_str(), p.stays)).collect();
        assert_eq!(names, vec![("cache-0", true), ("kube-proxy-a", true), ("logs-a", true), ("web-0", false)]);
        assert_eq!(r.iter().find(|p| p.name == "logs-a").unwrap().daemon_set.as_deref(), Some("logs"));
    }

    #[test]
    fn only_recorded_pods_are_judged_and_replacements_count() {
        let recorded = record(&[ds("logs-a", "logs"), pod("web-0"), SeenPod { mirror: true, ..pod("proxy") }], "", "");
        // After the reboot: the DaemonSet's pod was replaced under another
        // name, web-0 moved to another node, the mirror is back, and a pod
        // scheduled after the uncordon is still starting.
        let after = vec![ds("logs-b", "logs"), pod("proxy"), SeenPod { ready: false, ..pod("new-after-uncordon") }];
        assert_eq!(judge(&recorded, &after, ""), Vec::<String>::new());
    }

    #[test]
    fn a_recorded_pod_not_ready_or_missing_after_the_reboot_is_a_problem() {
        let recorded = record(&[ds("logs-a", "logs"), SeenPod { mirror: true, ..pod("proxy") }, pod("db-0")], "", "");
        let after = vec![
            SeenPod { ready: false, ..ds("logs-b", "logs") },
            SeenPod { ready: false, failed: true, ..pod("db-0") },
        ];
        assert_eq!(
            judge(&recorded, &after, ""),
            vec![
                "ns/db-0 failed".to_owned(),
                "ns/logs-b (replacing ns/logs-a) not Ready".to_owned(),
                "ns/proxy not back on the node".to_owned(),
            ]
        );
        assert_eq!(
            judge(&recorded, &[], ""),
            vec![
                "ns/logs-a not back on the node (no pod of DaemonSet logs)".to_owned(),
                "ns/proxy not back on the node".to_owned()
            ],
            "db-0 was evicted: it runs elsewhere"
        );
    }

    #[test]
    fn the_ignore_selector_excludes_pods_from_the_record_and_the_judgement() {
        let recorded = vec![RecordedPod { namespace: "ns".into(), name: "x".into(), daemon_set: None, stays: true }];
        let after = vec![SeenPod { ready: false, ..labelled(pod("x"), "health", "ignore") }];
        assert!(judge(&recorded, &after, "health=ignore").is_empty());
        assert_eq!(judge(&recorded, &after, "").len(), 1);
        assert!(record(&after, "health=ignore", "").is_empty());
    }

    #[test]
    fn a_selector_that_does_not_read_selects_nothing() {
        let pods = vec![labelled(pod("a"), "k", "v")];
        assert_eq!(record(&pods, "k in v", "").len(), 1, "not ignored");
        assert!(!record(&pods, "", "k in v")[0].stays, "not skipped");
    }
}
