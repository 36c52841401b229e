//! The leader's metrics, registered once into one registry. The original
//! operator's `brupop_hosts_state` and `brupop_hosts_version` are kept so
//! existing dashboards keep working.

use std::collections::BTreeMap;

use model::policy::{Phase, UpdatePolicyStatus};
use model::{FailureReason, ShadowState};
use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::decide::{ObservedShadow, ObservedSlot};

#[derive(Clone, Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub hosts_state: GaugeVec,
    pub hosts_version: GaugeVec,
    pub update_started: IntCounter,
    pub update_failures: IntCounterVec,
    pub slots: GaugeVec,
    pub nodes_waiting: IntGauge,
    pub grants_halted: IntGauge,
    pub halt_remaining: Gauge,
    pub consecutive_failures: IntGauge,
    pub next_window_start: Gauge,
    pub update_duration: Histogram,
    pub leader: IntGauge,
    /// 1 for the current phase of the rollout, 0 for the others.
    pub phase: GaugeVec,
    /// How long the longest-held slot has been held.
    pub longest_held: Gauge,
    /// The `maxSlotHold` in force (the alert on long holds follows it).
    pub max_slot_hold: Gauge,
    /// Nodes whose host accepted a reboot it has not carried out.
    pub reboots_pending: IntGauge,
    /// Passes that stopped on an error, by the action that failed.
    pub errors: IntCounterVec,
    /// Slots held without a grant in the ledger, cleared.
    pub revoked: IntCounter,
    pub shadows_removed: IntCounter,
    /// Failures reported by nodes without a grant (never halting), by reason.
    pub ungranted_failures: IntCounterVec,
    /// 1 while the alert gate holds new grants.
    pub alert_gate_blocking: IntGauge,
    /// Questions the alert gate asked Prometheus, by what it read (clear, firing, unreachable).
    pub alert_gate_checks: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge_vec =
            |name: &str, help: &str, label: &str| GaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric");
        let hosts_state = gauge_vec("brupop_hosts_state", "Managed nodes by update state", "state");
        // The original operator's name and label name, so its users' dashboards keep working.
        let hosts_version =
            gauge_vec("brupop_hosts_version", "Managed nodes by running OS version", "bottlerocket_version");
        let slots = gauge_vec("brupop_slots", "Update slots by state (held, free)", "state");
        let update_started =
            IntCounter::new("brupop_update_started_total", "Updates started (slots granted)").expect("valid metric");
        let update_failures = IntCounterVec::new(
            Opts::new("brupop_update_failures_total", "Update failures counted by the leader, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let nodes_waiting = IntGauge::new("brupop_nodes_waiting", "Nodes waiting for a slot").expect("valid metric");
        let grants_halted =
            IntGauge::new("brupop_grants_halted", "1 while new grants are halted or stopped after failures")
                .expect("valid metric");
        let halt_remaining =
            Gauge::new("brupop_halt_remaining_seconds", "Seconds until the current halt ends (0 if none)")
                .expect("valid metric");
        let consecutive_failures = IntGauge::new(
            "brupop_consecutive_failures",
            "Update-implicating failures since the last success or resume",
        )
        .expect("valid metric");
        let next_window_start = Gauge::new(
            "brupop_next_window_start_timestamp_seconds",
            "Unix time the next maintenance window opens (0 inside a window or without windows)",
        )
        .expect("valid metric");
        let update_duration = Histogram::with_opts(
            HistogramOpts::new("brupop_update_duration_seconds", "From grant to release of a completed update")
                .buckets(vec![5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0]),
        )
        .expect("valid metric");
        let leader = IntGauge::new("brupop_leader", "1 while this replica is the active leader").expect("valid metric");
        let phase = gauge_vec(
            "brupop_rollout_phase",
            "1 for the rollout's current phase (Running, Paused, OutsideWindow, Blocked, Halted, Stopped, InvalidSpec)",
            "phase",
        );
        let reboots_pending = IntGauge::new(
            "brupop_reboots_pending",
            "Nodes whose host accepted a reboot and is still up past the agent's --reboot-timeout (kept cordoned, holding their slot)",
        )
        .expect("valid metric");
        let max_slot_hold = Gauge::new(
            "brupop_max_slot_hold_seconds",
            "The longest one walk may hold a slot (UpdatePolicy maxSlotHold, else --max-slot-hold)",
        )
        .expect("valid metric");
        let longest_held =
            Gauge::new("brupop_slot_longest_held_seconds", "How long the slot held longest has been held (0 if none)")
                .expect("valid metric");
        for r in FailureReason::ALL {
            update_failures.with_label_values(&[r.as_str()]);
        }
        let errors = IntCounterVec::new(
            Opts::new(
                "brupop_leader_errors_total",
                "Passes of the leader that stopped on an error, by the action that failed",
            ),
            &["action"],
        )
        .expect("valid metric");
        for a in crate::act::ActError::LABELS {
            errors.with_label_values(&[a]);
        }
        let revoked = IntCounter::new(
            "brupop_slots_revoked_total",
            "Slots found held without a grant in the leader's ledger, and cleared",
        )
        .expect("valid metric");
        let shadows_removed = IntCounter::new(
            "brupop_unmanaged_shadows_removed_total",
            "Shadows deleted because their Node left the node selector (its opt-in label removed) and held no slot",
        )
        .expect("valid metric");
        let ungranted_failures = IntCounterVec::new(
            Opts::new(
                "brupop_ungranted_failures_total",
                "Failures reported by nodes that held no grant for them (recorded, never halting), by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let alert_gate_blocking = IntGauge::new(
            "brupop_alert_gate_blocking",
            "1 while the UpdatePolicy's alert gate holds new grants (an alert it watches fires, or Prometheus cannot be asked and onUnreachable is Block)",
        )
        .expect("valid metric");
        let alert_gate_checks = IntCounterVec::new(
            Opts::new(
                "brupop_alert_gate_checks_total",
                "Questions the alert gate asked Prometheus, by what it read (clear, firing, unreachable)",
            ),
            &["result"],
        )
        .expect("valid metric");
        for r in ["clear", "firing", "unreachable"] {
            alert_gate_checks.with_label_values(&[r]);
        }
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(hosts_state.clone()),
            Box::new(hosts_version.clone()),
            Box::new(slots.clone()),
            Box::new(update_started.clone()),
            Box::new(update_failures.clone()),
            Box::new(nodes_waiting.clone()),
            Box::new(grants_halted.clone()),
            Box::new(halt_remaining.clone()),
            Box::new(consecutive_failures.clone()),
            Box::new(next_window_start.clone()),
            Box::new(update_duration.clone()),
            Box::new(leader.clone()),
            Box::new(phase.clone()),
            Box::new(longest_held.clone()),
            Box::new(max_slot_hold.clone()),
            Box::new(reboots_pending.clone()),
            Box::new(errors.clone()),
            Box::new(revoked.clone()),
            Box::new(shadows_removed.clone()),
            Box::new(ungranted_failures.clone()),
            Box::new(alert_gate_blocking.clone()),
            Box::new(alert_gate_checks.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("registered once");
        }
        Metrics {
            registry,
            hosts_state,
            hosts_version,
            update_started,
            update_failures,
            slots,
            nodes_waiting,
            grants_halted,
            halt_remaining,
            consecutive_failures,
            next_window_start,
            update_duration,
            leader,
            phase,
            longest_held,
            max_slot_hold,
            reboots_pending,
            errors,
            revoked,
            shadows_removed,
            ungranted_failures,
            alert_gate_blocking,
            alert_gate_checks,
        }
    }

    /// Gauges from the current picture (called after every pass).
    /// Sets the gauges that come from the rollout status and the slots:
    /// cheap, so done on every pass.
    pub fn observe_rollout(&self, slots: &[ObservedSlot], status: &UpdatePolicyStatus, now: jiff::Timestamp) {
        for p in Phase::ALL {
            self.phase.with_label_values(&[p.as_str()]).set(if p == status.phase { 1.0 } else { 0.0 });
        }
        let longest = slots
            .iter()
            .filter(|s| s.holder.is_some())
            .filter_map(|s| s.acquired)
            .map(|t| now.duration_since(t).as_secs_f64().max(0.0))
            .fold(0.0, f64::max);
        self.longest_held.set(longest);
        self.slots.with_label_values(&["held"]).set(f64::from(status.slots_held));
        self.slots.with_label_values(&["free"]).set(f64::from(status.slots_free));
        self.nodes_waiting.set(i64::from(status.nodes_waiting));
        let halted = matches!(status.phase, Phase::Halted | Phase::Stopped);
        self.grants_halted.set(i64::from(halted));
        let remaining = status.halted_until.as_ref().map_or(0.0, |t| t.0.duration_since(now).as_secs_f64().max(0.0));
        self.halt_remaining.set(if status.phase == Phase::Halted { remaining } else { 0.0 });
        self.consecutive_failures.set(i64::from(status.consecutive_failures));
        self.alert_gate_blocking.set(i64::from(status.alert_gate.as_ref().is_some_and(|g| g.blocking)));
        self.next_window_start.set(status.next_window_start.as_ref().map_or(0.0, |t| t.0.as_second() as f64));
    }

    /// Sets the per-node gauges (nodes by state and by version): a walk over
    /// every shadow, so the controller does it at most once a second.
    pub fn observe_nodes(&self, shadows: &[&ObservedShadow]) {
        let mut states: BTreeMap<ShadowState, f64> = ShadowState::ALL.iter().map(|s| (*s, 0.0)).collect();
        let mut versions: BTreeMap<String, f64> = BTreeMap::new();
        let mut pending = 0;
        for sh in shadows {
            if let Some(st) = &sh.status {
                pending += i64::from(st.reboot_pending.is_some());
                *states.entry(st.current_state).or_default() += 1.0;
                *versions.entry(st.current_version.clone()).or_default() += 1.0;
            }
        }
        for (s, n) in states {
            self.hosts_state.with_label_values(&[s.as_str()]).set(n);
        }
        self.reboots_pending.set(pending);
        self.hosts_version.reset();
        for (v, n) in versions {
            self.hosts_version.with_label_values(&[v.as_str()]).set(n);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::BottlerocketShadowStatus;
    use prometheus::Encoder;

    #[test]
    fn node_metrics_use_the_original_operators_names_and_labels() {
        let m = Metrics::new();
        let shadow = |v: &str, s: ShadowState| ObservedShadow {
            node: "n".into(),
            uid: "uid-n".into(),
            spec: Default::default(),
            status: Some(BottlerocketShadowStatus {
                current_version: v.into(),
                current_state: s,
                ..Default::default()
            }),
        };
        let (a, b) = (shadow("1.20.0", ShadowState::Idle), shadow("1.21.0", ShadowState::MonitoringUpdate));
        m.observe_nodes(&[&a, &b]);
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&m.registry.gather(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("brupop_hosts_version{bottlerocket_version=\"1.20.0\"} 1"), "{text}");
        assert!(text.contains("brupop_hosts_state{state=\"MonitoringUpdate\"} 1"), "{text}");
    }
}
