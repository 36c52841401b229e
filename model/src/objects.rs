//! How the operator reads the Kubernetes objects its components share, in
//! one place each: a slot Lease's holder and expiry, and a Node's
//! readiness, opt-out, cordon and load-balancer exclusion. The leader, the
//! authproxy and the agent all read them through these functions, so they
//! can never disagree about, say, when a slot expires.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;

use crate::names::{CORDONED_ANNOTATION, EXCLUDE_LB_LABEL, LB_EXCLUDED_ANNOTATION, NODE_OPT_OUT_ANNOTATION};

// === Slot Leases ===

/// When a Lease renewed (or, never renewed, acquired) at `renewed` for
/// `duration_seconds` stops being valid (a negative duration counts as 0).
/// `None` when it carries no time at all: such a Lease is not valid.
pub fn lease_expiry(renewed: Option<Timestamp>, duration_seconds: Option<i32>) -> Option<Timestamp> {
    let secs = i64::from(duration_seconds.unwrap_or(0).max(0));
    renewed?.checked_add(SignedDuration::from_secs(secs)).ok()
}

/// When `lease` expires: `renewTime` (else `acquireTime`) plus `leaseDurationSeconds`.
pub fn lease_expires(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    lease_expiry(renewed, spec.lease_duration_seconds)
}

/// Who holds `lease` (an empty holder is no holder).
pub fn lease_holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref().filter(|h| !h.is_empty())
}

// === Nodes ===

fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The Node's `Ready` condition is `True`.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// `spec.unschedulable`, by us or anyone.
pub fn unschedulable(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
}

/// The Node carries our cordon annotation (protocol section 2).
pub fn cordoned_by_us(node: &Node) -> bool {
    annotation(node, CORDONED_ANNOTATION).is_some()
}

/// When we cordoned it (the annotation's value), if it says.
pub fn cordoned_at(node: &Node) -> Option<Timestamp> {
    annotation(node, CORDONED_ANNOTATION)?.parse().ok()
}

/// The load-balancer exclusion label is present (ours or a person's).
pub fn excluded_from_load_balancers(node: &Node) -> bool {
    node.metadata.labels.as_ref().is_some_and(|l| l.contains_key(EXCLUDE_LB_LABEL))
}

/// Our load-balancer exclusion annotation is present.
pub fn excluded_by_us(node: &Node) -> bool {
    annotation(node, LB_EXCLUDED_ANNOTATION).is_some()
}

/// The node is opted out of updates (`brupop.bottlerocket.aws/opt-out: "true"`).
pub fn opted_out(node: &Node) -> bool {
    annotation(node, NODE_OPT_OUT_ANNOTATION) == Some("true")
}

/// The kubelet's boot ID (`status.nodeInfo.bootID`): changes on every boot.
pub fn boot_id(node: &Node) -> Option<&str> {
    node.status.as_ref()?.node_info.as_ref().map(|i| i.boot_id.as_str()).filter(|b| !b.is_empty())
}

/// The boot ID a person released a pending reboot for (see
/// [`crate::names::RELEASE_REBOOT_ANNOTATION`]).
pub fn reboot_released(node: &Node) -> Option<&str> {
    annotation(node, crate::names::RELEASE_REBOOT_ANNOTATION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_lease_expires_its_duration_after_its_renewal_or_else_its_acquisition() {
        let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "brupop-slot-0"}, "spec": {
            "holderIdentity": "node-1", "acquireTime": "2026-11-27T10:00:00.000000Z",
            "renewTime": "2026-11-27T10:01:00.000000Z", "leaseDurationSeconds": 120}}))
        .unwrap();
        assert_eq!(lease_expires(&lease), Some(at("2026-11-27T10:03:00Z")));
        assert_eq!(lease_holder(&lease), Some("node-1"));
        let acquired_only: Lease = serde_json::from_value(json!({"spec": {
            "acquireTime": "2026-11-27T10:00:00.000000Z", "leaseDurationSeconds": 30, "holderIdentity": ""}}))
        .unwrap();
        assert_eq!(lease_expires(&acquired_only), Some(at("2026-11-27T10:00:30Z")));
        assert_eq!(lease_holder(&acquired_only), None, "an empty holder is no holder");
        assert_eq!(lease_expires(&Lease::default()), None);
        assert_eq!(lease_expiry(Some(at("2026-11-27T10:00:00Z")), Some(-5)), Some(at("2026-11-27T10:00:00Z")));
    }

    #[test]
    fn a_node_is_read_the_same_way_everywhere() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n", "labels": {EXCLUDE_LB_LABEL: "true"}, "annotations": {
                CORDONED_ANNOTATION: "2026-11-27T10:00:00Z", NODE_OPT_OUT_ANNOTATION: "true"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
        assert!(node_ready(&node) && unschedulable(&node) && cordoned_by_us(&node) && opted_out(&node));
        assert_eq!(cordoned_at(&node), Some(at("2026-11-27T10:00:00Z")));
        assert!(excluded_from_load_balancers(&node) && !excluded_by_us(&node));
        let bare = Node::default();
        assert!(!node_ready(&bare) && !unschedulable(&bare) && !cordoned_by_us(&bare) && !opted_out(&bare));
        let not_ready: Node =
            serde_json::from_value(json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}))
                .unwrap();
        assert!(!node_ready(&not_ready));
    }
}
