//! The UpdatePolicy status part of a decision: phase, message, counters and
//! when to look again. Pure, like its parent module.

use std::collections::BTreeSet;

use jiff::Timestamp;
use model::alert_gate::AlertGateState;
use model::policy::{Phase, RecordedFailure, UpdatePolicyStatus};

use super::{Observed, RECENT_FAILURES_KEPT, Settings, WindowState};

/// Whether grants run, in order of precedence.
pub(super) fn phase(st: &UpdatePolicyStatus, settings: &Settings, window: WindowState, now: Timestamp) -> Phase {
    let max = settings.max_consecutive_failures;
    if settings.invalid.is_some() {
        Phase::InvalidSpec
    } else if (max > 0 && st.consecutive_failures >= max) || super::canary::failed(&st.canaries).is_some() {
        Phase::Stopped
    } else if st.halted_until.as_ref().is_some_and(|t| t.0 > now) {
        Phase::Halted
    } else if settings.paused {
        Phase::Paused
    } else if !window.open {
        Phase::OutsideWindow
    } else if st.alert_gate.as_ref().is_some_and(|g| g.blocking) {
        Phase::Blocked
    } else {
        Phase::Running
    }
}

/// Keeps the newest [`RECENT_FAILURES_KEPT`] entries and every entry whose
/// failure is not yet acknowledged (its key is in `keep`).
pub(super) fn trim_recent(list: &mut Vec<RecordedFailure>, keep: &BTreeSet<String>) {
    let cut = list.len().saturating_sub(RECENT_FAILURES_KEPT);
    let mut i = 0;
    list.retain(|f| {
        i += 1;
        i > cut || keep.contains(&f.key)
    });
}

/// Fills in the phase, the message and the counters.
#[allow(clippy::too_many_arguments)]
pub(super) fn fill(
    st: &mut UpdatePolicyStatus,
    phase: Phase,
    settings: &Settings,
    obs: Observed<'_>,
    slots: u32,
    held: usize,
    waiting: usize,
    managed: u32,
) {
    let held = u32::try_from(held).unwrap_or(u32::MAX);
    let waiting_u = u32::try_from(waiting).unwrap_or(u32::MAX);
    st.phase = phase;
    st.slots = slots;
    st.slots_held = held;
    st.slots_free = slots.saturating_sub(held);
    st.nodes_waiting = waiting_u;
    st.managed_nodes = managed;
    st.observed_generation = obs.policy_generation;
    if settings.published.is_some() {
        st.leader_defaults.clone_from(&settings.published);
    }
    st.next_window_start = if obs.window.open {
        None
    } else {
        obs.window.next_start.map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time)
    };
    if st.halted_until.as_ref().is_some_and(|t| t.0 <= obs.now) {
        st.halted_until = None;
    }
    if !matches!(phase, Phase::Halted | Phase::Stopped) {
        st.halt_reason = None;
    }
    let last = st.recent_failures.iter().rev().find(|f| f.reason.halts_fleet());
    let culprit = last.map_or_else(String::new, |f| format!(" ({} on {})", f.reason, f.node));
    let gate = st.alert_gate.as_ref().map_or_else(String::new, |g| g.message.clone());
    st.message = match phase {
        Phase::Running if st.alert_gate.as_ref().is_some_and(|g| g.state == AlertGateState::Unreachable) => {
            format!("granting: {held} of {slots} slots held, {waiting} nodes waiting; alert gate: {gate}")
        }
        Phase::Running => {
            let young = settings.min_release_age.and_then(|age| {
                st.versions_offered
                    .iter()
                    .map(|o| (super::add(o.first_offered.0, age), &o.version))
                    .filter(|(t, _)| *t > obs.now)
                    .min()
            });
            let mut m = match young {
                Some((t, v)) => format!(
                    "granting: {held} of {slots} slots held, {waiting} nodes waiting; {v} is granted from {t} (spec.minReleaseAge)"
                ),
                None => format!("granting: {held} of {slots} slots held, {waiting} nodes waiting"),
            };
            if let Some(c) = super::canary::summary(&st.canaries) {
                m = format!("{m}; {c}");
            }
            m
        }
        Phase::Blocked => {
            format!("blocked by the alert gate: {gate}; {held} nodes finishing, {waiting} waiting")
        }
        Phase::Paused => {
            format!("paused by spec.paused; {held} nodes finishing, {waiting} waiting")
        }
        Phase::OutsideWindow => match (obs.window.blackout_until, obs.window.next_start) {
            (Some(end), Some(t)) => format!(
                "in a blackout (spec.updateExclusions) until {end}; grants start again at {t}; {held} nodes finishing, {waiting} waiting"
            ),
            (Some(end), None) => {
                format!("in a blackout (spec.updateExclusions) until {end}; no window opens within a year after it")
            }
            (None, Some(t)) => {
                format!("outside the maintenance windows; the next opens at {t}; {waiting} nodes waiting")
            }
            (None, None) => "outside the maintenance windows; none opens within a year".to_owned(),
        },
        Phase::Halted => format!(
            "halted until {} after {} consecutive failure(s){culprit}",
            st.halted_until.as_ref().map_or_else(|| "?".to_owned(), |t| t.0.to_string()),
            st.consecutive_failures
        ),
        Phase::Stopped => match super::canary::failed(&st.canaries) {
            Some(c) => format!("stopped: {}", c.message),
            None => format!(
                "stopped after {} consecutive failures{culprit}; to resume set spec.resumeRequest to a new value",
                st.consecutive_failures
            ),
        },
        Phase::InvalidSpec => settings.invalid.clone().unwrap_or_default(),
    };
}

/// When to decide again if nothing changes: the next slot expiry, the end of
/// a halt, a window edge, the end of the longest allowed hold of a granted
/// slot, the end of a node's backoff, or the alert gate's answer going stale.
pub(super) fn wake_at(
    st: &UpdatePolicyStatus,
    obs: Observed<'_>,
    _phase: Phase,
    settings: &Settings,
) -> Option<Timestamp> {
    let now = obs.now;
    let expiries = obs.slots.iter().filter(|s| s.holder.is_some()).filter_map(|s| s.reclaimable_at());
    let halt = st.halted_until.as_ref().map(|t| t.0);
    let window = if obs.window.open { obs.window.current_end } else { obs.window.next_start };
    let holds = st.grants.iter().flatten().map(|g| super::add(g.granted_at.0, settings.max_slot_hold));
    let backoffs = st.node_backoffs.iter().map(|b| b.until.0);
    let gate = super::gate::stale_at(settings.alert_gate.as_ref(), obs.gate);
    let ages = settings
        .min_release_age
        .into_iter()
        .flat_map(|age| st.versions_offered.iter().map(move |o| super::add(o.first_offered.0, age)));
    let budget = obs.window.budget_change_at;
    let soaks = super::canary::wake_at(&st.canaries);
    expiries
        .chain(soaks)
        .chain(halt)
        .chain(window)
        .chain(holds)
        .chain(backoffs)
        .chain(gate)
        .chain(ages)
        .chain(budget)
        .filter(|t| *t > now)
        .min()
}
