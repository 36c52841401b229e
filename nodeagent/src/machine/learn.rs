//! What the agent remembers, and the only two ways its memory changes:
//! [`observe`] (before each decision: a new grant starts a new walk) and
//! [`learn`] (after each step: what carrying it out found). Pure, like its
//! parent module: the runtime executes steps and reports an [`Outcome`]; every
//! rule about what that outcome means for the walk lives here.

use std::time::Duration;

use jiff::Timestamp;
use model::FailureReason;

use super::{Memory, Observation, Step, WalkSettings, add, granted_slot};

/// Consecutive failures of host steps during a walk before the walk ends.
pub const HOST_ATTEMPTS: u32 = 3;

/// What carrying out a [`Step`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Carried out; nothing to learn beyond that.
    Done,
    /// The authproxy renewed the slot; valid until then (the request's send
    /// time plus the granted duration, by the agent's clock).
    Renewed { valid_until: Timestamp },
    /// A drain round ran: pods still on the node, and how many of them a
    /// PodDisruptionBudget kept.
    Drained { remaining: u32, blocked: u32 },
    /// The host accepted the reboot (or went down while answering).
    RebootRequested,
    /// The host refused to reboot.
    RebootRefused(String),
    /// The pods on the node, as listed.
    Pods(Vec<super::SeenPod>),
    /// A refresh ran but the command finished `Failed` (the host keeps its
    /// lists; the next update check tries again).
    RefreshFailed,
    /// The authproxy says the slot is not the caller's (or expired).
    NotHolder,
    /// The slot is the caller's but not valid long enough for the step.
    LeaseTooShort,
    /// The host answered with an error. `final_now`: a command that ran and
    /// failed, or a host that cannot update in place (no retry helps).
    HostError { reason: FailureReason, message: String, final_now: bool },
    /// Anything else went wrong (network, API server): retried.
    Error,
}

/// Before a decision: what an observation teaches. A new grant (another
/// spec slot or transition time) starts a new walk: the previous walk's
/// progress is forgotten. The slot the node is seen to hold is remembered
/// until it is released, so an abort releases it even when the Lease left
/// the agent's view.
pub fn observe(mem: &mut Memory, o: &Observation<'_>, now: Timestamp) {
    let grant = o.shadow.map(|s| (s.spec.slot.clone(), s.spec.state_transition_timestamp.as_ref().map(|t| t.0)));
    if grant != mem.grant {
        mem.drain_started = None;
        mem.last_drain = None;
        mem.drain_rounds = 0;
        mem.reboot_requested = None;
        mem.pods_listed = None;
        mem.health = None;
        mem.health_checks = 0;
        mem.host_failures = 0;
        forget_lease(mem);
        mem.grant = grant;
    }
    if let Some(slot) = granted_slot(o, now)
        && mem.holding.as_deref() != Some(slot)
    {
        mem.holding = Some(slot.to_owned());
    }
    mem.host_busy_since = if o.host.busy { mem.host_busy_since.or(Some(now)) } else { None };
}

/// After a step: what its outcome teaches.
pub fn learn(mem: &mut Memory, step: &Step, outcome: &Outcome, cfg: &WalkSettings, now: Timestamp) {
    if !matches!(outcome, Outcome::HostError { .. } | Outcome::Error) {
        mem.host_failures = 0;
    }
    match (step, outcome) {
        (Step::Refresh, _) => {
            // The next check is due whatever this one found: a failed refresh
            // leaves the host's lists as they were, try again next time.
            let first = mem.last_refresh.is_none();
            let wait = next_check_in(cfg.update_check_interval, mem.check_seed, now, first);
            mem.next_update_check = Some(add(now, wait));
            if matches!(outcome, Outcome::Done | Outcome::RefreshFailed) {
                mem.last_refresh = Some(now);
            }
        }
        (Step::Renew { slot, duration }, Outcome::Renewed { valid_until }) => {
            mem.lease_slot = Some(slot.clone());
            mem.lease_valid_until = Some(*valid_until);
            mem.lease_asked = Some(*duration);
        }
        (Step::Cordon { .. }, Outcome::Done) => {
            mem.drain_started = mem.drain_started.or(Some(now));
        }
        (Step::Drain { .. }, Outcome::Drained { remaining, blocked }) => {
            mem.drain_started = mem.drain_started.or(Some(now));
            mem.last_drain = Some((now, *remaining, *blocked));
            mem.drain_rounds += 1;
        }
        (Step::Reboot { .. }, Outcome::RebootRequested) => mem.reboot_requested = Some(now),
        (Step::Reboot { .. }, Outcome::RebootRefused(message)) => {
            mem.aborting = Some((FailureReason::RebootFailed, message.clone()));
        }
        (Step::RecordPods, Outcome::Pods(pods)) => mem.pods_listed = Some((now, pods.clone())),
        (Step::CheckHealth, Outcome::Pods(pods)) => {
            mem.health = Some((now, pods.clone()));
            mem.health_checks = mem.health_checks.saturating_add(1);
        }
        (Step::Release { .. }, Outcome::Done) => {
            forget_lease(mem);
            mem.holding = None;
        }
        (Step::Fail { reason, message }, _) => mem.aborting = Some((*reason, message.clone())),
        (Step::AbortDone, _) => {
            mem.aborting = None;
            mem.skip_deactivate = false;
            mem.drain_started = None;
            mem.last_drain = None;
            mem.reboot_requested = None;
            mem.pods_listed = None;
            mem.health = None;
            mem.health_checks = 0;
        }
        (_, Outcome::NotHolder | Outcome::LeaseTooShort) => forget_lease(mem),
        (step, Outcome::HostError { reason, message, final_now }) => {
            host_error(mem, step, *reason, message, *final_now)
        }
        _ => {}
    }
}

/// A host error during a walk: a command that ran and failed ends the walk
/// at once, other errors after a few attempts. An undo (deactivate) that
/// keeps failing never keeps the node: the abort goes on without it.
fn host_error(mem: &mut Memory, step: &Step, reason: FailureReason, message: &str, final_now: bool) {
    let walking = mem.holding.is_some() || mem.aborting.is_some();
    if !walking {
        return;
    }
    if matches!(step, Step::Deactivate) {
        mem.skip_deactivate = true;
        return;
    }
    mem.host_failures = mem.host_failures.saturating_add(1);
    if (final_now || mem.host_failures >= HOST_ATTEMPTS) && mem.aborting.is_none() {
        mem.aborting = Some((reason, message.to_owned()));
    }
}

fn forget_lease(mem: &mut Memory) {
    mem.lease_valid_until = None;
    mem.lease_asked = None;
}

/// A seed for the spread of update checks, from the node name.
pub(super) fn seed(node: &str) -> u64 {
    node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A number in `[0, 1)` from the seed and the time (splitmix64), so agents
/// of one fleet draw different numbers.
fn unit(seed: u64, now: Timestamp) -> f64 {
    let mut z = seed ^ (now.as_nanosecond() as u64);
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
pub fn next_check_in(interval: Duration, seed: u64, now: Timestamp, first: bool) -> Duration {
    let u = unit(seed, now);
    if first { interval.mul_f64(u) } else { interval.mul_f64(0.9 + 0.2 * u) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_checks_of_a_fleet_started_together_spread_over_the_interval() {
        let interval = Duration::from_secs(100);
        let now: Timestamp = "2026-11-27T11:00:00Z".parse().unwrap();
        let firsts: Vec<f64> = (0..1000)
            .map(|i| next_check_in(interval, seed(&format!("node-{i:05}")), now, true).as_secs_f64())
            .collect();
        // Evenly spread: every tenth of the interval gets about a tenth of the fleet.
        for decile in 0..10 {
            let n = firsts.iter().filter(|s| (**s / 10.0).floor() as usize == decile).count();
            assert!((60..=140).contains(&n), "{n} of 1000 first checks in decile {decile}");
        }
        for i in 0..1000 {
            let later = next_check_in(interval, seed(&format!("node-{i:05}")), now, false).as_secs_f64();
            assert!((90.0..110.0).contains(&later), "a later check {later}s after the last, not within ±10%");
        }
    }
}
