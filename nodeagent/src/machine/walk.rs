//! The granted part of the walk, and the abort. Pure, like its parent module.

use std::time::Duration;

use jiff::Timestamp;

/// Pause after the first drain round that left pods; doubles per round up to
/// `--drain-interval`. Short, because pods without a long grace period are
/// gone within milliseconds and the whole fleet waits on each drain; the
/// doubling keeps a slow drain to a dozen rounds a minute.
const DRAIN_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
use model::walk::HookPhase;
use model::{FailureReason, ShadowState};

use super::{HostUpdateState, Memory, Observation, Step, WalkSettings, add, failure_report, reported, resting_report};

/// A node that holds its slot: the next step of the walk from `state`.
pub(super) fn granted(
    o: &Observation<'_>,
    mem: &Memory,
    cfg: &WalkSettings,
    now: Timestamp,
    slot: &str,
    state: ShadowState,
) -> Step {
    // The regular renewal comes first (the caller, `super::renewal`).
    if o.host.busy {
        return busy_host(mem, cfg, now);
    }
    let desired = o.shadow.and_then(|s| s.spec.version.as_deref()).unwrap_or_default();
    match state {
        // A reboot the host accepted may still happen: keep cordon and slot.
        ShadowState::ErrorReset if reboot_pending(o) => pending_wait(),
        // The failure was reported but the slot not released: finish the abort.
        ShadowState::ErrorReset => finish_abort(o, mem).unwrap_or(Step::Release { slot: slot.to_owned() }),
        ShadowState::Idle => stage(o, mem, now, slot, desired),
        ShadowState::StagedAndPerformedUpdate => before_reboot(o, mem, cfg, now, slot, desired),
        ShadowState::RebootedIntoUpdate => after_boot(o, cfg, now, slot, desired),
        ShadowState::MonitoringUpdate => monitoring(o, mem, cfg, now, desired),
    }
}

/// Idle with a grant: refresh, prepare, report. (Activation comes after
/// the drain: see [`before_reboot`].)
fn stage(o: &Observation<'_>, mem: &Memory, now: Timestamp, slot: &str, desired: &str) -> Step {
    if o.host.version == desired {
        // The update is complete (the agent reported Idle on it): give the slot back.
        let report = resting_report(o, ShadowState::Idle);
        return if reported(o, &report) { Step::Release { slot: slot.to_owned() } } else { Step::Report(report) };
    }
    let Some(update) = o.host.update.as_ref() else {
        return Step::Refresh;
    };
    let staged_is = |next: bool| update.staged.as_ref().is_some_and(|(v, n)| v == desired && *n == next);
    match update.state {
        HostUpdateState::Ready if staged_is(true) => {
            Step::Report(StatusReportExt::walking(o, ShadowState::StagedAndPerformedUpdate))
        }
        HostUpdateState::Ready => Step::Deactivate,
        HostUpdateState::Staged if staged_is(false) => {
            Step::Report(StatusReportExt::walking(o, ShadowState::StagedAndPerformedUpdate))
        }
        HostUpdateState::Staged | HostUpdateState::Available | HostUpdateState::Idle => {
            let granted_at = o.shadow.and_then(|s| s.spec.state_transition_timestamp.as_ref()).map(|t| t.0);
            // The host's offer is fresh if refreshed since the grant, or by the
            // periodic update check whose next run is still ahead.
            let checked_recently = mem.next_update_check.is_some_and(|t| t > now);
            let fresh = mem.last_refresh.is_some_and(|r| checked_recently || granted_at.is_none_or(|g| r >= g));
            if !fresh {
                Step::Refresh
            } else if update.chosen.as_deref() == Some(desired) {
                Step::Prepare
            } else {
                // The host no longer offers the granted version: give the slot
                // back; the node asks again for what it offers now.
                Step::Release { slot: slot.to_owned() }
            }
        }
    }
}

/// A command holds the host's update lock during the walk (one that a
/// crashed agent started, most likely): wait for it to end, until the
/// command deadline, then give up the walk.
fn busy_host(mem: &Memory, cfg: &WalkSettings, now: Timestamp) -> Step {
    let since = mem.host_busy_since.unwrap_or(now);
    if now >= add(since, cfg.host_command_timeout) {
        return Step::Fail {
            reason: FailureReason::HostApiError,
            message: format!(
                "a host command has held the update lock for {:?} (since {since}) and has not finished",
                cfg.host_command_timeout
            ),
        };
    }
    Step::Wait { until: Some(now), why: "a host command holds the update lock".to_owned() }
}

/// Staged: cordon, drain (both fenced), then activate and reboot.
///
/// The update is activated only once the node is drained, just before the
/// reboot: an agent that dies earlier leaves at most a staged update, which
/// no reboot (planned or not) boots into, never an activated one on a node
/// still serving pods.
fn before_reboot(
    o: &Observation<'_>,
    mem: &Memory,
    cfg: &WalkSettings,
    now: Timestamp,
    slot: &str,
    desired: &str,
) -> Step {
    if o.host.version == desired {
        return Step::Report(StatusReportExt::walking(o, ShadowState::RebootedIntoUpdate));
    }
    let update = o.host.update.as_ref();
    let activated = update.is_some_and(|u| {
        u.state == HostUpdateState::Ready && u.staged.as_ref().is_some_and(|(v, next)| v == desired && *next)
    });
    let staged = update
        .is_some_and(|u| u.state == HostUpdateState::Staged && u.staged.as_ref().is_some_and(|(v, _)| v == desired));
    if !activated && !staged {
        // The update is gone and the old version runs: the host rebooted
        // (its update status lives in tmpfs) and came back on the old image.
        return Step::Fail {
            reason: FailureReason::RolledBack,
            message: format!("the node booted {} instead of {desired}: the new image did not boot", o.host.version),
        };
    }
    let node = o.node.cloned().unwrap_or_default();
    let before_cordon = !node.unschedulable || (cfg.exclude_from_load_balancers && !node.excluded);
    let recorded = o.shadow.and_then(|s| s.status.as_ref()).is_some_and(|s| s.pods_before_drain.is_some());
    if before_cordon || !recorded {
        let Some((listed_at, pods)) = &mem.pods_listed else {
            return Step::RecordPods;
        };
        // Pods that must not be disrupted hold the walk before the cordon.
        if before_cordon && let Some(step) = wait_for_do_not_disrupt(o, cfg, now, *listed_at, pods) {
            return step;
        }
        // Record which pods run Ready on the node, in the status (it
        // outlives this agent, which the reboot restarts): after the
        // reboot the health check judges these and nothing else.
        if !recorded {
            let mut report = StatusReportExt::walking(o, ShadowState::StagedAndPerformedUpdate);
            report.pods_before_drain =
                Some(super::record(pods, &cfg.health_ignore_pod_selector, &cfg.drain_skip_pod_selector));
            return Step::Report(report);
        }
        // The before-drain hook, and the confirmation it waits for, before
        // the cordon: the drain's deadline does not pay for the wait.
        if before_cordon && let Some(step) = hook(o, cfg, now, slot, HookPhase::BeforeDrain) {
            return step;
        }
    }
    if before_cordon {
        return Step::Cordon {
            slot: slot.to_owned(),
            min_remaining: cfg.step_margin,
            exclude_from_load_balancers: cfg.exclude_from_load_balancers,
        };
    }
    let drained = mem.last_drain.is_some_and(|(_, remaining, _)| remaining == 0);
    if !drained {
        let cordoned = mem.drain_started.or(node.cordoned_at).unwrap_or(now);
        // Load balancers stop sending traffic before anything is evicted;
        // the drain's deadline starts after that wait.
        let lb_wait = if cfg.exclude_from_load_balancers { cfg.load_balancer_wait } else { Duration::ZERO };
        let started = add(cordoned, lb_wait);
        if mem.last_drain.is_none() && now < started {
            return Step::Wait {
                until: Some(started),
                why: format!("excluded from load balancers; waiting {lb_wait:?} before draining"),
            };
        }
        let deadline = add(started, cfg.drain_timeout);
        if now >= deadline {
            let (remaining, blocked) = mem.last_drain.map_or((0, 0), |(_, r, b)| (r, b));
            let (reason, why) = if blocked > 0 {
                (FailureReason::DrainBlocked, "PodDisruptionBudgets refused their eviction")
            } else {
                (FailureReason::DrainTimeout, "they did not terminate")
            };
            return Step::Fail {
                reason,
                message: format!("drain did not finish within {:?}: {remaining} pod(s) left, {why}", cfg.drain_timeout),
            };
        }
        if let Some((at, remaining, _)) = mem.last_drain
            && remaining > 0
        {
            // Pods usually go within moments: look again soon, then less often.
            let pause = DRAIN_FIRST_PAUSE
                .saturating_mul(1 << mem.drain_rounds.saturating_sub(1).min(16))
                .min(cfg.drain_interval);
            let next = add(at, pause).min(deadline);
            if now < next {
                return Step::Wait { until: Some(next), why: format!("draining: {remaining} pod(s) left") };
            }
        }
        return Step::Drain {
            slot: slot.to_owned(),
            min_remaining: cfg.step_margin,
            skip_pod_selector: cfg.drain_skip_pod_selector.clone(),
            grace_period_seconds: cfg.drain_grace_period_seconds,
            delete_blocked: cfg.delete_blocked_pods_after.is_some_and(|d| now >= add(started, d)),
        };
    }
    if !activated {
        return Step::Activate;
    }
    if let Some(asked) = mem.reboot_requested {
        let deadline = add(asked, cfg.reboot_timeout);
        if now >= deadline {
            // The host accepted the reboot and may still carry it out: no
            // undo (an uncordoned node could reboot undrained while another
            // holds the slot). The failure is reported with the boot ID to
            // wait for; the slot stays renewed and the cordon on.
            let mut report = failure_report(
                o,
                FailureReason::RebootFailed,
                &format!(
                    "the host accepted the reboot but is still up {:?} later; the node keeps its cordon and slot until it reboots or a person releases it",
                    cfg.reboot_timeout
                ),
            );
            report.reboot_pending_boot_id =
                Some(o.node.and_then(|n| n.boot_id.clone()).unwrap_or_else(|| UNKNOWN_BOOT.to_owned()));
            return Step::Report(report);
        }
        return Step::Wait { until: Some(deadline), why: "waiting for the reboot".to_owned() };
    }
    // Extend the slot for the reboot, check what the authproxy granted, then
    // reboot at once.
    let known = mem.lease_slot.as_deref() == Some(slot);
    let valid = mem.lease_valid_until.filter(|_| known);
    let asked_grace = mem.lease_asked.is_some_and(|d| d >= cfg.reboot_grace);
    match valid {
        Some(until) if asked_grace && until >= add(now, cfg.reboot_grace.mul_f64(0.9)) => {
            Step::Reboot { slot: slot.to_owned() }
        }
        Some(until) if asked_grace => Step::Fail {
            reason: FailureReason::RebootFailed,
            message: format!(
                "the authproxy granted the slot until {until}, the reboot needs {:?}: raise its --max-slot-lease or lower --reboot-grace",
                cfg.reboot_grace
            ),
        },
        _ => Step::Renew { slot: slot.to_owned(), duration: cfg.reboot_grace },
    }
}

/// Before the cordon: while pods that must not be disrupted run on the
/// node, wait (listing the pods again every `--health-poll-interval`), at
/// most `do_not_disrupt_timeout` from when the walk staged the update
/// (`status.state_transition_timestamp`, so a restart keeps the deadline);
/// then fail `DoNotDisrupt`. `None`: none runs, go on.
fn wait_for_do_not_disrupt(
    o: &Observation<'_>,
    cfg: &WalkSettings,
    now: Timestamp,
    listed_at: Timestamp,
    pods: &[super::SeenPod],
) -> Option<Step> {
    let blockers = super::must_not_disrupt(pods);
    if blockers.is_empty() {
        return None;
    }
    let status = o.shadow.and_then(|s| s.status.as_ref());
    let staged_at = status
        .filter(|s| s.current_state == ShadowState::StagedAndPerformedUpdate)
        .and_then(|s| s.state_transition_timestamp.as_ref())
        .map_or(listed_at, |t| t.0);
    let deadline = add(staged_at, cfg.do_not_disrupt_timeout);
    let list = cut(&blockers, 10);
    if listed_at >= deadline {
        return Some(Step::Fail {
            reason: FailureReason::DoNotDisrupt,
            message: format!(
                "pods that must not be disrupted still run on the node after {:?}: {list}",
                cfg.do_not_disrupt_timeout
            ),
        });
    }
    let next = add(listed_at, cfg.health_poll_interval).min(deadline);
    Some(if now < next {
        Step::Wait { until: Some(next), why: format!("waiting for pods that must not be disrupted: {list}") }
    } else {
        Step::RecordPods
    })
}

/// The reboot hook of `phase`, if the grant has one: run it (fenced), then
/// wait for its confirmation until its timeout (counted from when it ran,
/// as the Node's record says, so a restart keeps the deadline), then fail
/// `HookTimeout`. `None`: nothing (more) to do for it.
fn hook(o: &Observation<'_>, cfg: &WalkSettings, now: Timestamp, slot: &str, phase: HookPhase) -> Option<Step> {
    let spec = cfg.hooks.as_ref()?.of(phase)?;
    let node = o.node.cloned().unwrap_or_default();
    let ran = node.hooks.as_ref().and_then(|m| m.phase).is_some_and(|p| p >= phase);
    if !ran {
        return Some(Step::Hook {
            slot: slot.to_owned(),
            phase,
            min_remaining: cfg.step_margin,
            clears: spec.wait_for_annotation.clone(),
        });
    }
    let current = node.hooks.as_ref().and_then(|m| m.phase) == Some(phase);
    if !current || model::hooks::confirmed(&node.annotations, spec) {
        return None;
    }
    let key = spec.wait_for_annotation.as_deref().unwrap_or_default();
    let want = spec.wait_for_value.as_deref().map_or_else(|| "any value".to_owned(), |v| format!("{v:?}"));
    let since = node.hooks.as_ref().and_then(|m| m.since).unwrap_or(now);
    let deadline = add(since, spec.wait());
    if now >= deadline {
        return Some(Step::Fail {
            reason: FailureReason::HookTimeout,
            message: format!(
                "the {phase:?} hook waited {:?} for the annotation {key} ({want}) on the node; it did not come",
                spec.wait()
            ),
        });
    }
    Some(Step::Wait {
        until: Some(deadline),
        why: format!("{phase:?} hook: waiting for the annotation {key} ({want})"),
    })
}

/// Booted into the new version: the after-reboot hook, uncordon, then monitor.
fn after_boot(o: &Observation<'_>, cfg: &WalkSettings, now: Timestamp, slot: &str, desired: &str) -> Step {
    if o.host.version != desired {
        return rolled_back(o, desired);
    }
    if let Some(step) = hook(o, cfg, now, slot, HookPhase::AfterReboot) {
        return step;
    }
    let node = o.node.cloned().unwrap_or_default();
    if node.cordoned_by_us || node.excluded_by_us {
        return Step::Uncordon;
    }
    Step::Report(StatusReportExt::walking(o, ShadowState::MonitoringUpdate))
}

fn rolled_back(o: &Observation<'_>, desired: &str) -> Step {
    Step::Fail {
        reason: FailureReason::RolledBack,
        message: format!("the node runs {} instead of {desired} after rebooting", o.host.version),
    }
}

/// Pause after the first health check that found the node unwell;
/// doubles per check up to `--health-poll-interval`. Pods restarting after
/// a boot are mostly Ready within seconds.
const HEALTH_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// After the reboot: the health gate. The walk ends as soon as the node is
/// Ready and every pod it ran before the drain (or its replacement on the
/// node) is Ready again, once `health_minimum` has passed since monitoring
/// began; it fails `HealthCheckFailed` if that does not hold by
/// `health_timeout`. Each check lists the pods afresh ([`Step::CheckHealth`]).
fn monitoring(o: &Observation<'_>, mem: &Memory, cfg: &WalkSettings, now: Timestamp, desired: &str) -> Step {
    if o.host.version != desired {
        return rolled_back(o, desired);
    }
    let node = o.node.cloned().unwrap_or_default();
    if node.cordoned_by_us || node.excluded_by_us {
        return Step::Uncordon;
    }
    let status = o.shadow.and_then(|s| s.status.as_ref());
    let since = status.and_then(|s| s.state_transition_timestamp.as_ref()).map_or(now, |t| t.0);
    let minimum_end = add(since, cfg.health_minimum);
    let deadline = add(since, cfg.health_timeout);
    // Only a check made during this monitoring counts.
    let Some((at, pods)) = mem.health.as_ref().filter(|(at, _)| *at >= since) else {
        return Step::CheckHealth;
    };
    let recorded = status.and_then(|s| s.pods_before_drain.as_deref()).unwrap_or_default();
    let mut problems = super::judge(recorded, pods, &cfg.health_ignore_pod_selector);
    if !node.ready {
        problems.insert(0, "the node is not Ready".to_owned());
    }
    if problems.is_empty() {
        if *at >= minimum_end {
            // The walk ends: the hooks' marks go first.
            if node.hooks.is_some() {
                return Step::ClearHooks;
            }
            return Step::Report(resting_report(o, ShadowState::Idle));
        }
        // Healthy early: look once more when the minimum has passed.
        return if now < minimum_end {
            Step::Wait {
                until: Some(minimum_end),
                why: "the updated node is healthy; watching it a little longer".to_owned(),
            }
        } else {
            Step::CheckHealth
        };
    }
    if *at >= deadline {
        return Step::Fail {
            reason: FailureReason::HealthCheckFailed,
            message: format!("{:?} after the reboot: {}", cfg.health_timeout, cut(&problems, 10)),
        };
    }
    let pause = HEALTH_FIRST_PAUSE
        .saturating_mul(1 << mem.health_checks.saturating_sub(1).min(16))
        .min(cfg.health_poll_interval);
    let next = add(*at, pause).min(deadline);
    if now < next {
        return Step::Wait {
            until: Some(next),
            why: format!("waiting for the updated node to be healthy: {}", cut(&problems, 3)),
        };
    }
    Step::CheckHealth
}

/// The first `n` problems, and how many more.
fn cut(problems: &[String], n: usize) -> String {
    let mut s = problems.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if problems.len() > n {
        s.push_str(&format!(" and {} more", problems.len() - n));
    }
    s
}

/// The boot ID reported when the Node shows none (then only a person's
/// release, with this value, ends a pending reboot).
pub(super) const UNKNOWN_BOOT: &str = "unknown";

/// Whether a reboot the host accepted is still pending: the shadow says so
/// and the Node still shows the boot ID of that time, and no person has
/// released it (annotation set to that boot ID).
pub(super) fn reboot_pending(o: &Observation<'_>) -> bool {
    let Some(p) = o.shadow.and_then(|s| s.status.as_ref()).and_then(|s| s.reboot_pending.as_ref()) else {
        return false;
    };
    let node = o.node.cloned().unwrap_or_default();
    let same_boot = node.boot_id.as_deref().unwrap_or(UNKNOWN_BOOT) == p.boot_id;
    same_boot && node.reboot_released.as_deref() != Some(p.boot_id.as_str())
}

/// While a reboot is pending: nothing but the slot's renewals.
pub(super) fn pending_wait() -> Step {
    Step::Wait {
        until: None,
        why: "a reboot the host accepted is pending: keeping the cordon and the slot until the node reboots or a person releases it".to_owned(),
    }
}

/// Undo steps that do not need the failure: deactivate an activated but not
/// booted update, lift our cordon. `None` when nothing is left to undo.
fn finish_abort(o: &Observation<'_>, mem: &Memory) -> Option<Step> {
    // A busy host (a command holds its lock) cannot deactivate now; an
    // activation that completes later is undone when the node rests.
    let activated = o.host.update.as_ref().is_some_and(|u| u.state == HostUpdateState::Ready) && !mem.skip_deactivate;
    if activated {
        return Some(Step::Deactivate);
    }
    let node = o.node.cloned().unwrap_or_default();
    if node.cordoned_by_us || node.excluded_by_us {
        return Some(Step::Uncordon);
    }
    node.hooks.is_some().then_some(Step::ClearHooks)
}

/// The abort sequence: report the failure, undo, release the slot.
///
/// The report comes first: once the shadow says `ErrorReset`, an agent that
/// crashes mid-abort and restarts with no memory finishes the undo and
/// releases (`granted` in state `ErrorReset`, or `resting`), instead of
/// finding a deactivated update and walking again with the failure
/// unreported. It also lands while the slot is held, so the leader counts it
/// against the walk it granted (docs/protocol.md section 5).
pub(super) fn abort(o: &Observation<'_>, mem: &Memory, reason: FailureReason, message: &str, _now: Timestamp) -> Step {
    let already = o.shadow.and_then(|s| s.status.as_ref()).is_some_and(|s| {
        s.current_state == ShadowState::ErrorReset
            && s.last_failure.as_ref().is_some_and(|f| f.reason == reason && f.message == message)
    });
    if !already {
        return Step::Report(failure_report(o, reason, message));
    }
    if let Some(step) = finish_abort(o, mem) {
        return step;
    }
    let observed = o.lease.filter(|l| l.holder.as_deref() == Some(o.node_name)).map(|l| l.name.clone());
    match observed.or_else(|| mem.holding.clone()) {
        Some(slot) => Step::Release { slot },
        None => Step::AbortDone,
    }
}

/// Reports of walking states carry the granted version as the target.
struct StatusReportExt;

impl StatusReportExt {
    fn walking(o: &Observation<'_>, state: ShadowState) -> model::wire::StatusReport {
        let mut report = resting_report(o, state);
        let desired = o.shadow.and_then(|s| s.spec.version.clone());
        report.target_version = desired.filter(|d| *d != o.host.version);
        report
    }
}
