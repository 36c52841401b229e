//! The alert gate's rule: whether Prometheus's last answer holds new grants
//! (docs/protocol.md section 6, "Alert gate"). Pure, like its parent module:
//! the answer is asked for at the edge (`leader::gate`) and handed in with
//! the time it came.

use jiff::Timestamp;
use model::alert_gate::{AlertGateState, AlertGateStatus, OnUnreachable};

use super::{GateAnswer, GateObservation, GateSettings, GateTarget, since};

/// What the gate decides now, for the status; `None` without a gate.
///
/// - no answer yet for this gate (none at all, or one asked for another
///   configuration), or an answer older than [`GateSettings::stale_after`],
///   counts as unreachable;
/// - unreachable blocks unless `onUnreachable: Ignore`, and says so;
/// - an alert it watches firing (a query returning series) blocks, naming them.
pub(super) fn verdict(
    gate: Option<&GateSettings>,
    seen: Option<&GateObservation>,
    now: Timestamp,
) -> Option<AlertGateStatus> {
    let gate = gate?;
    let answer = match seen {
        Some(o) if o.gate == *gate => {
            if since(now, o.at).is_some_and(|age| age > gate.stale_after()) {
                GateAnswer::Unreachable(format!(
                    "no answer since {} (asked every {})",
                    o.at,
                    humantime::format_duration(gate.poll_interval)
                ))
            } else {
                o.answer.clone()
            }
        }
        _ => GateAnswer::Unreachable(format!("no answer yet from {}", gate.url)),
    };
    Some(match answer {
        GateAnswer::Clear => AlertGateStatus {
            blocking: false,
            state: AlertGateState::Clear,
            firing: Vec::new(),
            message: match &gate.target {
                GateTarget::Alerts(names) => format!("clear: none of {} firing", names.join(", ")),
                GateTarget::Query(_) => "clear: the query returned no series".to_owned(),
            },
        },
        GateAnswer::Firing(firing) => AlertGateStatus {
            blocking: true,
            state: AlertGateState::Firing,
            message: match &gate.target {
                GateTarget::Alerts(_) => format!("firing: {}", firing.join(", ")),
                GateTarget::Query(_) => format!("the query returned {}", firing.join(", ")),
            },
            firing,
        },
        GateAnswer::Unreachable(why) => {
            let (blocking, what) = match gate.on_unreachable {
                OnUnreachable::Block => (true, "blocking"),
                OnUnreachable::Ignore => (false, "ignored"),
            };
            AlertGateStatus {
                blocking,
                state: AlertGateState::Unreachable,
                firing: Vec::new(),
                message: format!(
                    "Prometheus unreachable: {why}; {what} (onUnreachable: {})",
                    gate.on_unreachable.as_str()
                ),
            }
        }
    })
}

/// When the current answer goes stale, so a pass looks again then even if
/// the poller has gone quiet.
pub(super) fn stale_at(gate: Option<&GateSettings>, seen: Option<&GateObservation>) -> Option<Timestamp> {
    let gate = gate?;
    let seen = seen.filter(|o| o.gate == *gate)?;
    let at = super::add(seen.at, gate.stale_after());
    at.checked_add(jiff::SignedDuration::from_millis(1)).ok()
}
