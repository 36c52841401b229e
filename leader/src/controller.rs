//! The decision loop: observe → decide → act → report, driven by changes
//! (watch events, the answers to our own writes, a changed answer of the
//! alert gate's Prometheus) and by real deadlines (the next slot expiry, the
//! end of a halt, a window edge). No fixed-interval polling of the cluster:
//! an idle fleet costs no API requests beyond the watches.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::act::{ActError, Actor};
use crate::decide::{self, GateObservation, GateSettings, Observed, ObservedShadow, ObservedSlot, Settings};
use crate::gate::GateHandle;
use crate::observe::Shared;
use crate::settings::{self, Defaults};
use crate::window::Windows;
use model::UpdatePolicy;

/// Passes are at least this far apart; events in between are folded into
/// one. The gap grows with the cost of a decision (see [`pass_gap`]).
const MIN_PASS_INTERVAL: Duration = Duration::from_millis(2);
/// The widest gap between passes, however slow a decision was.
const MAX_PASS_INTERVAL: Duration = Duration::from_millis(50);

/// The gap before the next pass: twice what the last decision cost, within
/// [`MIN_PASS_INTERVAL`, `MAX_PASS_INTERVAL`]. A busy fleet's events then
/// cost the leader at most about a third of a core in decisions, and a
/// small fleet's re-grants do not wait for a fixed fold. (Four times made
/// the 5,000-node re-grant p50 35.9 ms instead of 16.2 ms.)
fn pass_gap(last_decision: Duration) -> Duration {
    (last_decision * 2).clamp(MIN_PASS_INTERVAL, MAX_PASS_INTERVAL)
}

/// After an error, the next pass waits this long at least (then doubles, up to 30 s).
const ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// When the alert gate's configuration changes, the first pass waits for
/// Prometheus's first answer this long beyond the gate's timeout (at most),
/// so a leader start or a spec change does not show `Blocked` for the
/// instant before the first answer.
const FIRST_ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// Runs passes while leading until `shutdown`.
pub async fn run(
    shared: Arc<Shared>,
    actor: Actor,
    defaults: Defaults,
    mut leading: watch::Receiver<bool>,
    mut synced: watch::Receiver<bool>,
    mut gate: GateHandle,
    shutdown: CancellationToken,
) {
    let mut wake_at: Option<Timestamp> = None;
    let mut backoff = ERROR_BACKOFF;
    let mut last_pass = std::time::Instant::now();
    let mut gap = MIN_PASS_INTERVAL;
    // The gate awaiting its first answer, and until when a pass waits for it.
    let mut first_answer: Option<(GateSettings, std::time::Instant)> = None;
    loop {
        let sleep_for = wake_at.map_or(Duration::from_secs(3600), |t| {
            Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO) + Duration::from_millis(5)
        });
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = shared.changed.notified() => {}
            () = tokio::time::sleep(sleep_for) => {}
            changed = leading.changed() => if changed.is_err() { return },
            changed = synced.changed() => if changed.is_err() { return },
            changed = gate.answers.changed() => if changed.is_err() { return },
        }
        // Fold a burst of events into one pass (a few ms of latency, far
        // less work at scale).
        let since = last_pass.elapsed();
        if since < gap {
            tokio::time::sleep(gap - since).await;
        }
        let is_leader = *leading.borrow();
        actor.metrics.leader.set(i64::from(is_leader));
        let deciding = is_leader && *synced.borrow();
        // The settings in force; the gate poller follows them on every
        // replica (a standby that takes over has a fresh answer). A standby
        // reads only the spec.
        let policy = if deciding { shared.with(|s| s.policy.clone()) } else { None };
        let standby_spec = if deciding { None } else { shared.with(|s| s.policy.as_ref().map(|p| p.spec.clone())) };
        let spec = policy.as_ref().map(|p| &p.spec).or(standby_spec.as_ref());
        let (settings, windows) = settings::resolve(&defaults, spec);
        gate.config.send_if_modified(|c| {
            let changed = *c != settings.alert_gate;
            if changed {
                c.clone_from(&settings.alert_gate);
            }
            changed
        });
        if !deciding {
            continue;
        }
        let answer = gate.answers.borrow().clone();
        if let Some(wait) = first_answer_wait(&mut first_answer, settings.alert_gate.as_ref(), answer.as_ref()) {
            let until = Timestamp::now().checked_add(wait).unwrap_or(Timestamp::MAX);
            wake_at = Some(wake_at.map_or(until, |w| w.min(until)));
            continue;
        }
        last_pass = std::time::Instant::now();
        match pass(&shared, &actor, policy.as_ref(), &settings, &windows, answer.as_ref()).await {
            Ok((next, decision)) => {
                gap = pass_gap(decision);
                wake_at = next;
                backoff = ERROR_BACKOFF;
            }
            Err(ActError::NotLeader) => {}
            Err(e) => {
                actor.metrics.errors.with_label_values(&[e.metric_label()]).inc();
                tracing::warn!(error = %e, action = e.metric_label(), retry_in_ms = backoff.as_millis() as u64, "pass failed; deciding again");
                wake_at = Some(Timestamp::now().checked_add(backoff).unwrap_or(Timestamp::MAX));
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// How long a pass still waits for the first answer to a newly configured
/// gate (`None`: decide now). A gate waits once, for at most its timeout
/// and [`FIRST_ANSWER_MARGIN`]; after that no answer is an unreachable Prometheus.
fn first_answer_wait(
    first: &mut Option<(GateSettings, std::time::Instant)>,
    gate: Option<&GateSettings>,
    answer: Option<&GateObservation>,
) -> Option<Duration> {
    let gate = gate?;
    if answer.is_some_and(|a| a.gate == *gate) {
        return None;
    }
    if first.as_ref().is_none_or(|(g, _)| g != gate) {
        *first = Some((gate.clone(), std::time::Instant::now() + gate.timeout + FIRST_ANSWER_MARGIN));
    }
    let until = first.as_ref()?.1;
    let left = until.saturating_duration_since(std::time::Instant::now());
    (!left.is_zero()).then_some(left)
}

/// One pass: returns when to wake if nothing changes, and how long deciding took.
async fn pass(
    shared: &Shared,
    actor: &Actor,
    policy: Option<&UpdatePolicy>,
    settings: &Settings,
    windows: &Windows,
    gate: Option<&GateObservation>,
) -> Result<(Option<Timestamp>, Duration), ActError> {
    let now = Timestamp::now();
    let window = settings::window_state(windows, now);
    // Decide on the shared picture itself (no copy per pass), under its lock;
    // the gauges are computed there too.
    let deciding = std::time::Instant::now();
    let plan = shared.with(|s| {
        let slots: Vec<ObservedSlot> = s.slots.values().cloned().collect();
        let previous = policy.map(|p| p.status.clone().unwrap_or_default());
        let plan = decide::decide(
            Observed {
                now,
                nodes: &s.nodes,
                all_nodes: &s.all_nodes,
                shadows: &s.shadows,
                slots: &slots,
                policy: previous.as_ref(),
                policy_generation: policy.and_then(|p| p.metadata.generation),
                window,
                gate,
            },
            settings,
        );
        actor.metrics.observe_rollout(&slots, &plan.status, now);
        actor.metrics.max_slot_hold.set(settings.max_slot_hold.as_secs_f64());
        let metrics_later = if actor.metrics_due() {
            let managed: Vec<&ObservedShadow> =
                s.shadows.values().filter(|sh| s.nodes.contains_key(&sh.node)).collect();
            actor.metrics.observe_nodes(&managed);
            None
        } else {
            now.checked_add(jiff::SignedDuration::from_secs(1)).ok()
        };
        (plan, metrics_later)
    });
    let (plan, metrics_later) = plan;
    let decision = deciding.elapsed();
    let deferred = actor.apply(&plan, policy, now).await?;
    actor.report_failures(&plan);
    let deferred = deferred
        .and_then(|at| Timestamp::now().checked_add(at.saturating_duration_since(std::time::Instant::now())).ok());
    Ok(([plan.wake_at, deferred, metrics_later].into_iter().flatten().min(), decision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_gate_waits_once_for_its_first_answer_at_most_its_timeout() {
        let gate = GateSettings {
            url: "http://prom".into(),
            target: crate::decide::GateTarget::Alerts(vec!["A".into()]),
            poll_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            on_unreachable: model::alert_gate::OnUnreachable::Block,
        };
        let mut first = None;
        assert_eq!(first_answer_wait(&mut first, None, None), None, "no gate, no wait");
        let wait = first_answer_wait(&mut first, Some(&gate), None).unwrap();
        assert!(wait <= gate.timeout + FIRST_ANSWER_MARGIN && wait > gate.timeout, "{wait:?}");
        let answer =
            GateObservation { gate: gate.clone(), at: Timestamp::now(), answer: crate::decide::GateAnswer::Clear };
        assert_eq!(first_answer_wait(&mut first, Some(&gate), Some(&answer)), None, "answered: decide now");
        // The deadline is kept across passes: a gate that never answers stops waiting.
        first = Some((gate.clone(), std::time::Instant::now()));
        assert_eq!(first_answer_wait(&mut first, Some(&gate), None), None);
    }

    #[test]
    fn the_gap_between_passes_follows_the_cost_of_deciding() {
        let ms = Duration::from_millis;
        assert_eq!(pass_gap(Duration::from_micros(100)), ms(2), "a small fleet: at least 2 ms");
        assert_eq!(pass_gap(ms(3)), ms(6));
        assert_eq!(pass_gap(ms(40)), ms(50), "never more than 50 ms");
    }
}
