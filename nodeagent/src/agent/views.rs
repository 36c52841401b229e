//! What the agent's loop reads its observations through, and small rules
//! beside it: views of its Lease, Node and host status for the state
//! machine, the update-check schedule, which steps leave the host alone, and
//! step names for metrics and logs. Pure functions; no I/O.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use model::names;

use crate::hostapi::{HostStatus, UpdateState};
use crate::machine::{HostUpdate, HostUpdateState, LeaseView, NodeView, Step};

/// A number in `[0, 1)` from the node name and the time (splitmix64), so
/// agents of one fleet draw different numbers.
pub(super) fn unit(node: &str, now: Timestamp) -> f64 {
    let mut z = node.bytes().fold(now.as_nanosecond() as u64, |h, b| h.rotate_left(5) ^ u64::from(b));
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// How long after an update check at `now` the next one comes. The first
/// check after the agent starts is followed by one at a point drawn evenly
/// within one interval: agents started together (a DaemonSet rollout, a new
/// cluster) then check evenly spread over the interval instead of in step,
/// so the update repository sees no bursts and a new release reaches the
/// fleet at an even pace. Later checks come every interval `±10%`.
pub(super) fn next_check_in(interval: Duration, node: &str, now: Timestamp, first: bool) -> Duration {
    let u = unit(node, now);
    if first { interval.mul_f64(u) } else { interval.mul_f64(0.9 + 0.2 * u) }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_checks_of_a_fleet_started_together_spread_over_the_interval() {
        let interval = Duration::from_secs(100);
        let now: Timestamp = "2026-11-27T11:00:00Z".parse().unwrap();
        let firsts: Vec<f64> =
            (0..1000).map(|i| next_check_in(interval, &format!("node-{i:05}"), now, true).as_secs_f64()).collect();
        // Evenly spread: every tenth of the interval gets about a tenth of the fleet.
        for decile in 0..10 {
            let n = firsts.iter().filter(|s| (**s / 10.0).floor() as usize == decile).count();
            assert!((60..=140).contains(&n), "{n} of 1000 first checks in decile {decile}");
        }
        for i in 0..1000 {
            let later = next_check_in(interval, &format!("node-{i:05}"), now, false).as_secs_f64();
            assert!((90.0..110.0).contains(&later), "a later check {later}s after the last, not within ±10%");
        }
    }
}
