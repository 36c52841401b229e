//! Names, labels and annotations: every string the components agree on.
//!
//! Nothing here talks to a cluster; changing a value here changes the protocol
//! (see `docs/protocol.md`).

/// API group of the project's custom resources (shared with the original operator).
pub const GROUP: &str = "brupop.bottlerocket.aws";

/// The well-known label naming a node's zone: the default `topologyKey`.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Namespace the operator is installed in by default (the original operator's).
pub const DEFAULT_NAMESPACE: &str = "brupop-bottlerocket-aws";

/// The label that opts a node in; the agent DaemonSet selects on it too.
pub const NODE_OPT_IN_LABEL: &str = "bottlerocket.aws/updater-interface-version";
/// The only value of [`NODE_OPT_IN_LABEL`] this operator manages.
pub const NODE_OPT_IN_VALUE: &str = "2.0.0";

/// Node annotation a person sets to `"true"` to stop new updates on one node
/// without removing it from the operator (an update in progress finishes).
pub const NODE_OPT_OUT_ANNOTATION: &str = "brupop.bottlerocket.aws/opt-out";

/// Node annotation written in the same patch as a cordon the operator makes.
/// Its presence is what "cordoned by us" means: uncordon only ever undoes a
/// cordon that carries it, so an administrator's cordon is never lifted.
pub const CORDONED_ANNOTATION: &str = "brupop.bottlerocket.aws/cordoned";

/// Pod annotation (`"true"`): the pod must not be disrupted; while one runs
/// on a node, that node's walk waits before the cordon (docs/protocol.md
/// section 4).
pub const DO_NOT_DISRUPT_ANNOTATION: &str = "brupop.bottlerocket.aws/do-not-disrupt";
/// Karpenter's annotation with the same meaning, honoured too.
pub const KARPENTER_DO_NOT_DISRUPT_ANNOTATION: &str = "karpenter.sh/do-not-disrupt";

/// Node annotation a person sets to the boot ID of a pending reboot
/// (shadow `status.reboot_pending.boot_id`) to release the node's cordon
/// and slot without waiting for the reboot (docs/runbooks.md).
pub const RELEASE_REBOOT_ANNOTATION: &str = "brupop.bottlerocket.aws/release-reboot";

/// Node annotation the walk's reboot hooks keep: which hook last ran, since
/// when, and which labels and annotations it set (JSON; removed with them).
pub const HOOKS_ANNOTATION: &str = "brupop.bottlerocket.aws/hooks";

/// Node annotation written with the load-balancer exclusion label when the
/// operator (not a person) added that label.
pub const LB_EXCLUDED_ANNOTATION: &str = "brupop.bottlerocket.aws/excluded-from-load-balancers";

/// Well-known node label that removes a node from external load balancers.
pub const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// Label carried by every slot Lease; the leader, the authproxy and `kubectl
/// get leases -l brupop.bottlerocket.aws/slot` select on it.
pub const SLOT_LABEL: &str = "brupop.bottlerocket.aws/slot";

/// Label naming the node a BottlerocketShadow belongs to.
pub const SHADOW_NODE_LABEL: &str = "brupop.bottlerocket.aws/node";

/// `app.kubernetes.io/managed-by` value on objects this operator creates.
pub const MANAGED_BY: &str = "bottlerocket-update-operator";

/// Name of the single UpdatePolicy object the leader reads.
pub const POLICY_NAME: &str = "default";

/// Default name of the leader-election Lease.
pub const LEADER_LEASE_NAME: &str = "brupop-leader";

/// Field manager names, so `managedFields` tells who wrote what.
pub mod managers {
    pub const LEADER: &str = "brupop-leader";
    pub const AUTHPROXY: &str = "brupop-authproxy";
    pub const HARNESS: &str = "brupop-test-harness";
}

/// Prefix of slot Lease names; slot `i` is `brupop-slot-<i>`.
pub const SLOT_PREFIX: &str = "brupop-slot-";

/// Prefix of BottlerocketShadow names; a node's shadow is `brs-<node>`.
pub const SHADOW_PREFIX: &str = "brs-";

/// The name of slot `index`.
pub fn slot_name(index: u32) -> String {
    format!("{SLOT_PREFIX}{index}")
}

/// The index of a slot Lease name, or `None` if the name is not a slot's.
pub fn slot_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(SLOT_PREFIX)?;
    // "brupop-slot-01" is not a slot name: exactly one spelling per index.
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    digits.parse().ok()
}

/// The BottlerocketShadow name of a node.
pub fn shadow_name(node: &str) -> String {
    format!("{SHADOW_PREFIX}{node}")
}

/// The node a BottlerocketShadow name belongs to.
pub fn node_of_shadow(shadow: &str) -> Option<&str> {
    shadow.strip_prefix(SHADOW_PREFIX).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_round_trip_and_reject_other_spellings() {
        assert_eq!(slot_name(0), "brupop-slot-0");
        assert_eq!(slot_index("brupop-slot-17"), Some(17));
        for bad in ["brupop-slot-", "brupop-slot-01", "brupop-slot--1", "brupop-slot-x", "slot-1", "brupop-leader"] {
            assert_eq!(slot_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn shadow_names_follow_the_original_operator() {
        assert_eq!(shadow_name("ip-10-0-0-1.ec2.internal"), "brs-ip-10-0-0-1.ec2.internal");
        assert_eq!(node_of_shadow("brs-node-3"), Some("node-3"));
        assert_eq!(node_of_shadow("brs-"), None);
        assert_eq!(node_of_shadow("node-3"), None);
    }
}
