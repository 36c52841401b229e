//! What the agent's loop reads its observations through, and small rules
//! beside it: views of its Lease, Node and host status for the state
//! machine, which steps leave the host alone, and step names for metrics
//! and logs. Pure functions; no I/O.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use model::objects;

use crate::hostapi::{HostStatus, UpdateState};
use crate::machine::{HostUpdate, HostUpdateState, OwnLease, OwnNode, Step};

pub(super) fn lease_view(lease: &Lease) -> Option<OwnLease> {
    Some(OwnLease {
        name: lease.metadata.name.clone()?,
        holder: objects::lease_holder(lease).map(str::to_owned),
        expires: objects::lease_expires(lease),
    })
}

pub(super) fn node_view(node: &Node) -> OwnNode {
    OwnNode {
        ready: objects::node_ready(node),
        unschedulable: objects::unschedulable(node),
        cordoned_by_us: objects::cordoned_by_us(node),
        cordoned_at: objects::cordoned_at(node),
        excluded: objects::excluded_from_load_balancers(node),
        excluded_by_us: objects::excluded_by_us(node),
        opted_out: objects::opted_out(node),
        boot_id: objects::boot_id(node).map(str::to_owned),
        reboot_released: objects::reboot_released(node).map(str::to_owned),
        hooks: model::hooks::marks(node),
        annotations: node.metadata.annotations.clone().unwrap_or_default(),
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
        | Step::RecordPods
        | Step::CheckHealth
        | Step::Hook { .. }
        | Step::ClearHooks
        | Step::Uncordon
        | Step::Release { .. }
        | Step::Fail { .. }
        | Step::AbortDone => true,
        Step::Refresh | Step::Prepare | Step::Activate | Step::Deactivate | Step::Reboot { .. } | Step::Wait { .. } => {
            false
        }
    }
}

/// What a step does, in words, for the log.
pub(super) fn describe(step: &Step) -> String {
    let report = |r: &model::wire::StatusReport| {
        let target = r.target_version.as_deref().map(|t| format!(" (offers {t})")).unwrap_or_default();
        let failure = r.failure.as_ref().map(|f| format!(", failure {} #{}: {}", f.reason, f.id, f.message));
        format!("{} on {}{target}{}", r.state, r.current_version, failure.unwrap_or_default())
    };
    let secs = |d: &std::time::Duration| format!("{}s", d.as_secs_f64());
    match step {
        Step::Report(r) => format!("report {}", report(r)),
        Step::RequestSlot(r) => format!("ask for a slot, reporting {}", report(r)),
        Step::Renew { slot, duration } => format!("renew {slot} for {}", secs(duration)),
        Step::Cordon { slot, min_remaining, exclude_from_load_balancers } => format!(
            "cordon (fenced by {slot}, {} left){}",
            secs(min_remaining),
            if *exclude_from_load_balancers { " and exclude from load balancers" } else { "" }
        ),
        Step::Drain { slot, min_remaining, .. } => {
            format!("drain round (fenced by {slot}, {} left)", secs(min_remaining))
        }
        Step::Reboot { slot } => format!("reboot, holding {slot}"),
        Step::Release { slot } => format!("release {slot}"),
        Step::Fail { reason, message } => format!("fail: {reason}: {message}"),
        Step::Wait { until, why } => {
            format!("wait until {}: {why}", until.map_or_else(|| "a change".to_owned(), |t| t.to_string()))
        }
        other => step_label(other).replace('_', " "),
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
        Step::RecordPods => "record_pods",
        Step::CheckHealth => "check_health",
        Step::Hook { .. } => "hook",
        Step::ClearHooks => "clear_hooks",
        Step::Uncordon => "uncordon",
        Step::Release { .. } => "release",
        Step::Fail { .. } => "fail",
        Step::AbortDone => "abort_done",
        Step::Wait { .. } => "wait",
    }
}
