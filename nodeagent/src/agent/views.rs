//! What the agent's loop reads its observations through, and small rules
//! beside it: views of its Lease, Node and host status for the state
//! machine, which steps leave the host alone, and step names for metrics
//! and logs. Pure functions; no I/O.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use model::names;

use crate::hostapi::{HostStatus, UpdateState};
use crate::machine::{HostUpdate, HostUpdateState, LeaseView, NodeView, Step};

pub(super) fn lease_view(lease: &Lease) -> Option<LeaseView> {
    let spec = lease.spec.as_ref();
    let renewed = spec.and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref())).map(|t| t.0);
    let secs = spec.and_then(|s| s.lease_duration_seconds).unwrap_or(0);
    Some(LeaseView {
        name: lease.metadata.name.clone()?,
        holder: spec.and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty()),
        expires: renewed.and_then(|r| r.checked_add(jiff::SignedDuration::from_secs(i64::from(secs))).ok()),
    })
}

pub(super) fn node_view(node: &Node) -> NodeView {
    let annotations = node.metadata.annotations.as_ref();
    let labels = node.metadata.labels.as_ref();
    NodeView {
        ready: node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True"),
        unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        cordoned_by_us: annotations.is_some_and(|a| a.contains_key(names::CORDONED_ANNOTATION)),
        cordoned_at: annotations.and_then(|a| a.get(names::CORDONED_ANNOTATION)).and_then(|v| v.parse().ok()),
        excluded: labels.is_some_and(|l| l.contains_key(names::EXCLUDE_LB_LABEL)),
        excluded_by_us: annotations.is_some_and(|a| a.contains_key(names::LB_EXCLUDED_ANNOTATION)),
        opted_out: annotations.and_then(|a| a.get(names::NODE_OPT_OUT_ANNOTATION)).is_some_and(|v| v == "true"),
    }
}

pub(super) fn host_update(status: &HostStatus) -> Option<HostUpdate> {
    let s = status.status()?;
    let state = match s.update_state {
        UpdateState::Idle => HostUpdateState::Idle,
        UpdateState::Available => HostUpdateState::Available,
        UpdateState::Staged => HostUpdateState::Staged,
        UpdateState::Ready => HostUpdateState::Ready,
    };
    Some(HostUpdate {
        state,
        chosen: s.chosen_version().map(str::to_owned),
        staged: s.staging_partition.as_ref().map(|p| (p.image.version.clone(), p.next_to_boot)),
    })
}

pub(super) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Whether `step` talks only to the cluster, so the host is as it was read.
pub(super) fn leaves_the_host_alone(step: &Step) -> bool {
    match step {
        Step::Report(_)
        | Step::RequestSlot(_)
        | Step::Renew { .. }
        | Step::Cordon { .. }
        | Step::Drain { .. }
        | Step::CheckHealth
        | Step::Uncordon
        | Step::Release { .. }
        | Step::Fail { .. }
        | Step::AbortDone => true,
        Step::Refresh | Step::Prepare | Step::Activate | Step::Deactivate | Step::Reboot { .. } | Step::Wait { .. } => {
            false
        }
    }
}

pub(super) fn step_label(step: &Step) -> &'static str {
    match step {
        Step::Refresh => "refresh",
        Step::Report(_) => "report",
        Step::RequestSlot(_) => "request_slot",
        Step::Prepare => "prepare",
        Step::Activate => "activate",
        Step::Deactivate => "deactivate",
        Step::Renew { .. } => "renew",
        Step::Cordon { .. } => "cordon",
        Step::Drain { .. } => "drain",
        Step::Reboot { .. } => "reboot",
        Step::CheckHealth => "check_health",
        Step::Uncordon => "uncordon",
        Step::Release { .. } => "release",
        Step::Fail { .. } => "fail",
        Step::AbortDone => "abort_done",
        Step::Wait { .. } => "wait",
    }
}
