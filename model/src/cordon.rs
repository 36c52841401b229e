//! Cordon, uncordon and load-balancer exclusion as pure functions of a Node:
//! each returns the merge patch to send (or `None` when nothing changes) and
//! the Node as it will be. The authproxy applies them for an agent; the
//! leader applies [`uncordon`] to the node of a slot it reclaimed.
//!
//! Ownership (docs/protocol.md section 2): a cordon we make carries
//! [`CORDONED_ANNOTATION`]; uncordon lifts only a cordon that carries it, so
//! an administrator's cordon is never undone. The load-balancer label works
//! the same way with [`LB_EXCLUDED_ANNOTATION`].

use crate::names::{CORDONED_ANNOTATION, EXCLUDE_LB_LABEL, LB_EXCLUDED_ANNOTATION};
use crate::objects;
use crate::wire::CordonReply;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use serde_json::{Map, Value, json};

/// The Node's cordon and load-balancer state.
pub fn view(node: &Node) -> CordonReply {
    CordonReply {
        unschedulable: objects::unschedulable(node),
        cordoned_by_us: objects::cordoned_by_us(node),
        excluded_from_load_balancers: objects::excluded_from_load_balancers(node),
        excluded_by_us: objects::excluded_by_us(node),
        changed: false,
    }
}

/// A merge patch being built, carrying the Node's resourceVersion as a precondition.
pub(crate) struct PatchBuilder {
    pub(crate) spec: Map<String, Value>,
    pub(crate) labels: Map<String, Value>,
    pub(crate) annotations: Map<String, Value>,
}

impl PatchBuilder {
    pub(crate) fn new() -> Self {
        PatchBuilder { spec: Map::new(), labels: Map::new(), annotations: Map::new() }
    }

    pub(crate) fn build(self, node: &Node) -> Option<Value> {
        if self.spec.is_empty() && self.labels.is_empty() && self.annotations.is_empty() {
            return None;
        }
        let mut metadata = Map::new();
        if let Some(rv) = &node.metadata.resource_version {
            metadata.insert("resourceVersion".into(), json!(rv));
        }
        if !self.labels.is_empty() {
            metadata.insert("labels".into(), Value::Object(self.labels));
        }
        if !self.annotations.is_empty() {
            metadata.insert("annotations".into(), Value::Object(self.annotations));
        }
        let mut patch = Map::new();
        patch.insert("metadata".into(), Value::Object(metadata));
        if !self.spec.is_empty() {
            patch.insert("spec".into(), Value::Object(self.spec));
        }
        Some(Value::Object(patch))
    }
}

/// Cordon (unless already cordoned, by us or a person) and optionally exclude
/// from external load balancers (unless already excluded).
pub fn cordon(node: &Node, now: Timestamp, exclude_lb: bool) -> (Option<Value>, CordonReply) {
    let mut v = view(node);
    let mut p = PatchBuilder::new();
    if !v.unschedulable {
        p.spec.insert("unschedulable".into(), json!(true));
        p.annotations.insert(CORDONED_ANNOTATION.into(), json!(now.to_string()));
        v.unschedulable = true;
        v.cordoned_by_us = true;
    }
    if exclude_lb && !v.excluded_from_load_balancers {
        p.labels.insert(EXCLUDE_LB_LABEL.into(), json!("true"));
        p.annotations.insert(LB_EXCLUDED_ANNOTATION.into(), json!(now.to_string()));
        v.excluded_from_load_balancers = true;
        v.excluded_by_us = true;
    }
    let patch = p.build(node);
    v.changed = patch.is_some();
    (patch, v)
}

/// Lift our cordon (never a person's) and, if asked, our load-balancer exclusion.
pub fn uncordon(node: &Node, include_lb: bool) -> (Option<Value>, CordonReply) {
    let mut v = view(node);
    let mut p = PatchBuilder::new();
    if v.cordoned_by_us {
        if v.unschedulable {
            p.spec.insert("unschedulable".into(), Value::Null);
            v.unschedulable = false;
        }
        p.annotations.insert(CORDONED_ANNOTATION.into(), Value::Null);
        v.cordoned_by_us = false;
    }
    if include_lb && v.excluded_by_us {
        p.labels.insert(EXCLUDE_LB_LABEL.into(), Value::Null);
        p.annotations.insert(LB_EXCLUDED_ANNOTATION.into(), Value::Null);
        v.excluded_from_load_balancers = false;
        v.excluded_by_us = false;
    }
    let patch = p.build(node);
    v.changed = patch.is_some();
    (patch, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use std::collections::BTreeMap;

    fn node(unschedulable: bool, annotations: &[&str], labels: &[&str]) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("node-1".into());
        n.metadata.resource_version = Some("42".into());
        n.spec = Some(NodeSpec { unschedulable: Some(unschedulable), ..Default::default() });
        let map = |keys: &[&str]| -> Option<BTreeMap<String, String>> {
            (!keys.is_empty()).then(|| keys.iter().map(|k| ((*k).to_owned(), "x".to_owned())).collect())
        };
        n.metadata.annotations = map(annotations);
        n.metadata.labels = map(labels);
        n
    }

    fn now() -> Timestamp {
        "2026-11-27T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn cordon_sets_unschedulable_and_our_annotation_in_one_patch_with_a_precondition() {
        let (patch, v) = cordon(&node(false, &[], &[]), now(), true);
        assert_eq!(
            patch.unwrap(),
            json!({
                "metadata": {
                    "resourceVersion": "42",
                    "labels": {EXCLUDE_LB_LABEL: "true"},
                    "annotations": {CORDONED_ANNOTATION: "2026-11-27T10:00:00Z", LB_EXCLUDED_ANNOTATION: "2026-11-27T10:00:00Z"}
                },
                "spec": {"unschedulable": true}
            })
        );
        assert!(v.unschedulable && v.cordoned_by_us && v.excluded_by_us && v.changed);
    }

    #[test]
    fn an_admins_cordon_is_not_taken_over() {
        let (patch, v) = cordon(&node(true, &[], &[]), now(), false);
        assert_eq!(patch, None);
        assert!(v.unschedulable && !v.cordoned_by_us && !v.changed);
    }

    #[test]
    fn cordon_is_idempotent() {
        let (patch, v) =
            cordon(&node(true, &[CORDONED_ANNOTATION, LB_EXCLUDED_ANNOTATION], &[EXCLUDE_LB_LABEL]), now(), true);
        assert_eq!(patch, None);
        assert!(v.cordoned_by_us && !v.changed);
    }

    #[test]
    fn uncordon_lifts_only_our_cordon() {
        let (patch, v) = uncordon(&node(true, &[CORDONED_ANNOTATION], &[]), false);
        assert_eq!(
            patch.unwrap(),
            json!({"metadata": {"resourceVersion": "42", "annotations": {CORDONED_ANNOTATION: null}}, "spec": {"unschedulable": null}})
        );
        assert!(!v.unschedulable && !v.cordoned_by_us);
        let (patch, v) = uncordon(&node(true, &[], &[]), true);
        assert_eq!(patch, None, "an administrator's cordon stays");
        assert!(v.unschedulable);
    }

    #[test]
    fn a_load_balancer_exclusion_made_by_a_person_is_kept() {
        let (patch, v) = cordon(&node(false, &[], &[EXCLUDE_LB_LABEL]), now(), true);
        assert!(!patch.unwrap()["metadata"].as_object().unwrap().contains_key("labels"));
        assert!(v.excluded_from_load_balancers && !v.excluded_by_us);
        let (patch, _) = uncordon(&node(false, &[], &[EXCLUDE_LB_LABEL]), true);
        assert_eq!(patch, None);
    }

    #[test]
    fn uncordon_removes_our_load_balancer_exclusion_when_asked() {
        let (patch, v) =
            uncordon(&node(true, &[CORDONED_ANNOTATION, LB_EXCLUDED_ANNOTATION], &[EXCLUDE_LB_LABEL]), true);
        let patch = patch.unwrap();
        assert_eq!(patch["metadata"]["labels"][EXCLUDE_LB_LABEL], Value::Null);
        assert!(!v.excluded_from_load_balancers);
    }
}
