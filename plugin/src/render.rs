//! What the plugin shows, built from the objects it read and rendered as
//! text, JSON or YAML. Pure: no I/O, the time is an argument.

use std::collections::BTreeMap;
use std::fmt::Write;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use model::policy::{CanaryStatus, RecordedFailure};
use model::{BottlerocketShadow, UpdatePolicy};
use serde::{Deserialize, Serialize};

use crate::Output;

/// How many of the last failures `status` shows.
pub const STATUS_FAILURES: usize = 5;

/// `kubectl brupop status`, as data (`-o json|yaml` prints this).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub namespace: String,
    pub phase: String,
    pub message: String,
    pub slots: u32,
    pub slots_held: u32,
    /// Every slot Lease, with its holder.
    pub slot_leases: Vec<SlotReport>,
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted_until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window_start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_gate: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<CanaryStatus>,
    pub managed_nodes: u32,
    pub nodes_waiting: u32,
    /// Nodes by state, version and offered version.
    pub progress: Vec<Progress>,
    /// When the rollout should be done, from the walks measured so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Eta>,
    /// The last [`STATUS_FAILURES`] failures the leader counted, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_failures: Vec<RecordedFailure>,
}

/// The rollout's ETA: `ceil(nodes left / slots) × median walk`, the median
/// of the last walks the leader recorded (`status.recentWalks`). It does not
/// count time outside windows, halts, canary soaks or zone limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Eta {
    pub seconds: u64,
    /// Managed nodes whose host offers a newer version.
    pub nodes_left: u32,
    pub median_walk_seconds: u64,
    /// How many walks the median is of.
    pub walks: u32,
}

impl Eta {
    /// `None` without a measured walk or nothing left.
    pub fn compute(walk_seconds: &[u64], nodes_left: u32, slots: u32) -> Option<Eta> {
        if walk_seconds.is_empty() || nodes_left == 0 {
            return None;
        }
        let mut w = walk_seconds.to_vec();
        w.sort_unstable();
        let median = w[w.len() / 2];
        let rounds = u64::from(nodes_left.div_ceil(slots.max(1)));
        Some(Eta {
            seconds: rounds * median,
            nodes_left,
            median_walk_seconds: median,
            walks: u32::try_from(w.len()).unwrap_or(u32::MAX),
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SlotReport {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed: Option<Timestamp>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub state: String,
    pub version: String,
    /// The newer version the host offers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered: Option<String>,
    pub nodes: u32,
}

impl StatusReport {
    /// The report for what was read: the policy, the Leases of the
    /// operator's namespace (the slot Leases are picked out by name) and
    /// every shadow.
    pub fn new(namespace: &str, policy: &UpdatePolicy, leases: &[Lease], shadows: &[BottlerocketShadow]) -> Self {
        let st = policy.status.clone().unwrap_or_default();
        let mut slot_leases: Vec<(u32, SlotReport)> = leases
            .iter()
            .filter_map(|l| {
                let name = l.metadata.name.clone()?;
                let index = model::names::slot_index(&name)?;
                let spec = l.spec.as_ref();
                let holder = spec.and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty());
                let renewed = spec.and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref())).map(|t| t.0);
                Some((index, SlotReport { name, renewed: holder.as_ref().and(renewed), holder }))
            })
            .collect();
        slot_leases.sort_by_key(|(i, _)| *i);
        let mut counts: BTreeMap<(String, String, Option<String>), u32> = BTreeMap::new();
        for sh in shadows {
            let Some(s) = &sh.status else { continue };
            let key = (
                s.current_state.as_str().to_owned(),
                s.current_version.clone(),
                s.offered_version().map(str::to_owned),
            );
            *counts.entry(key).or_default() += 1;
        }
        let progress = counts
            .into_iter()
            .map(|((state, version, offered), nodes)| Progress { state, version, offered, nodes })
            .collect();
        let skip = st.recent_failures.len().saturating_sub(STATUS_FAILURES);
        let left =
            shadows.iter().filter(|sh| sh.status.as_ref().is_some_and(|s| s.offered_version().is_some())).count();
        let walks: Vec<u64> = st.recent_walks.iter().map(|w| w.seconds).collect();
        let eta = Eta::compute(&walks, u32::try_from(left).unwrap_or(u32::MAX), st.slots);
        StatusReport {
            namespace: namespace.to_owned(),
            phase: st.phase.as_str().to_owned(),
            message: st.message.clone(),
            slots: st.slots,
            slots_held: st.slots_held,
            slot_leases: slot_leases.into_iter().map(|(_, s)| s).collect(),
            consecutive_failures: st.consecutive_failures,
            halted_until: st.halted_until.as_ref().map(|t| t.0),
            halt_reason: st.halt_reason.map(|r| r.as_str().to_owned()),
            next_window_start: st.next_window_start.as_ref().map(|t| t.0),
            alert_gate: st.alert_gate.as_ref().map(|g| g.message.clone()),
            canaries: st.canaries.clone(),
            managed_nodes: st.managed_nodes,
            nodes_waiting: st.nodes_waiting,
            progress,
            eta,
            recent_failures: st.recent_failures.into_iter().skip(skip).collect(),
        }
    }

    /// One screen of text; times relative to `now`.
    pub fn text(&self, now: Timestamp) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Rollout {}/default: {}", self.namespace, self.phase);
        let _ = writeln!(o, "  {}", self.message);
        let free = self.slots.saturating_sub(self.slots_held);
        let _ = writeln!(o, "Slots: {} ({} held, {free} free)", self.slots, self.slots_held);
        for s in &self.slot_leases {
            match (&s.holder, s.renewed) {
                (Some(h), Some(t)) => _ = writeln!(o, "  {}  {h}  renewed {}", s.name, ago(now, t)),
                (Some(h), None) => _ = writeln!(o, "  {}  {h}", s.name),
                (None, _) => _ = writeln!(o, "  {}  free", s.name),
            }
        }
        match (self.halted_until, &self.halt_reason) {
            (Some(t), reason) => {
                _ = writeln!(
                    o,
                    "Halt: until {t} ({}), {} consecutive failure(s){}",
                    ahead(now, t),
                    self.consecutive_failures,
                    reason.as_ref().map_or_else(String::new, |r| format!(", last {r}"))
                )
            }
            (None, _) if self.consecutive_failures > 0 => {
                _ = writeln!(o, "Halt: none; {} consecutive failure(s)", self.consecutive_failures)
            }
            (None, _) => _ = writeln!(o, "Halt: none"),
        }
        match self.next_window_start {
            Some(t) => _ = writeln!(o, "Window: closed; the next opens at {t} ({})", ahead(now, t)),
            None => _ = writeln!(o, "Window: open"),
        }
        if let Some(g) = &self.alert_gate {
            let _ = writeln!(o, "Alert gate: {g}");
        }
        for c in &self.canaries {
            let soak =
                c.soak_until.as_ref().map_or_else(String::new, |t| format!(" until {} ({})", t.0, ahead(now, t.0)));
            let _ =
                writeln!(o, "Canary {}: {}{soak}, {} of {} passed", c.version, c.state.as_str(), c.passed, c.needed);
            let _ = writeln!(o, "  {}", c.message);
        }
        let _ = writeln!(o, "Nodes: {} managed, {} waiting", self.managed_nodes, self.nodes_waiting);
        for p in &self.progress {
            let offered = p.offered.as_ref().map_or_else(String::new, |v| format!(" (offered {v})"));
            let _ = writeln!(o, "  {:>4}  {} on {}{offered}", p.nodes, p.state, p.version);
        }
        if let Some(e) = &self.eta {
            let _ = writeln!(
                o,
                "ETA: {} ({} nodes left / {} slots x median walk {}s of the last {} walks; not counting windows, halts or soaks)",
                humantime_secs(e.seconds),
                e.nodes_left,
                self.slots.max(1),
                e.median_walk_seconds,
                e.walks
            );
        }
        if !self.recent_failures.is_empty() {
            let _ = writeln!(o, "Last failures:");
            for f in &self.recent_failures {
                let counted = if f.ungranted { " (not counted: no grant)" } else { "" };
                let _ = writeln!(o, "  {}  {}  {}{counted}: {}", f.time.0, f.node, f.reason, f.message);
            }
        }
        o
    }
}

/// One line of `kubectl brupop history`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub time: Timestamp,
    /// What it is about: `UpdatePolicy/default`, `node/<name>`.
    pub about: String,
    pub reason: String,
    pub message: String,
}

/// The history from the policy's recorded failures and the Events (each
/// `(time, about, reason, note)`), oldest first, the newest `limit`. An
/// Event that reports a failure already recorded is shown once.
pub fn history(policy: &UpdatePolicy, events: Vec<HistoryEntry>, limit: usize) -> Vec<HistoryEntry> {
    let st = policy.status.clone().unwrap_or_default();
    let mut all: Vec<HistoryEntry> = st
        .recent_failures
        .iter()
        .map(|f| HistoryEntry {
            time: f.time.0,
            about: format!("node/{}", f.node),
            reason: f.reason.as_str().to_owned(),
            message: f.message.clone(),
        })
        .collect();
    let failures: Vec<(String, String)> = all.iter().map(|e| (e.about.clone(), e.reason.clone())).collect();
    all.extend(events.into_iter().filter(|e| !failures.contains(&(e.about.clone(), e.reason.clone()))));
    all.sort_by(|a, b| (a.time, &a.about).cmp(&(b.time, &b.about)));
    let skip = all.len().saturating_sub(limit);
    all.into_iter().skip(skip).collect()
}

/// `entries` as text, one per line.
pub fn history_text(entries: &[HistoryEntry]) -> String {
    let mut o = String::new();
    for e in entries {
        let _ = writeln!(o, "{}  {:<28} {:<22} {}", e.time, e.about, e.reason, e.message);
    }
    if entries.is_empty() {
        o.push_str("nothing recorded yet\n");
    }
    o
}

/// `value` in the format asked for (text is the caller's).
pub fn structured<T: Serialize>(value: &T, output: Output) -> String {
    match output {
        Output::Yaml => serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot render: {e}\n")),
        _ => serde_json::to_string_pretty(value).map(|s| s + "\n").unwrap_or_else(|e| format!("cannot render: {e}\n")),
    }
}

/// Seconds as "1h 5m", "3m 20s", "42s".
fn humantime_secs(s: u64) -> String {
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// `t` before `now`, as "3s ago".
fn ago(now: Timestamp, t: Timestamp) -> String {
    let s = now.duration_since(t).as_secs();
    if s >= 0 { format!("{}s ago", s) } else { format!("in {}s", -s) }
}

/// `t` after `now`, as "in 42s".
fn ahead(now: Timestamp, t: Timestamp) -> String {
    let s = t.duration_since(now).as_secs();
    if s >= 0 { format!("in {}s", s) } else { format!("{}s ago", -s) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
    use model::policy::{CanaryState, Phase, UpdatePolicyStatus};
    use model::{BottlerocketShadowSpec, BottlerocketShadowStatus, FailureReason, ShadowState, UpdatePolicySpec};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn lease(name: &str, holder: Option<&str>) -> Lease {
        let mut l = Lease::default();
        l.metadata.name = Some(name.into());
        l.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            renew_time: holder.map(|_| MicroTime(t("2026-12-07T10:00:00Z"))),
            ..Default::default()
        });
        l
    }

    fn shadow(node: &str, state: ShadowState, version: &str, target: &str) -> BottlerocketShadow {
        let mut sh = BottlerocketShadow::new(&model::names::shadow_name(node), BottlerocketShadowSpec::default());
        sh.status = Some(BottlerocketShadowStatus {
            current_state: state,
            current_version: version.into(),
            target_version: target.into(),
            ..Default::default()
        });
        sh
    }

    fn policy() -> UpdatePolicy {
        let mut p = UpdatePolicy::new("default", UpdatePolicySpec::default());
        p.status = Some(UpdatePolicyStatus {
            phase: Phase::Halted,
            message: "halted until 2026-12-07T10:05:00Z after 1 consecutive failure(s)".into(),
            slots: 2,
            slots_held: 1,
            consecutive_failures: 1,
            halted_until: Some(Time(t("2026-12-07T10:05:00Z"))),
            halt_reason: Some(FailureReason::PrepareFailed),
            managed_nodes: 3,
            nodes_waiting: 1,
            canaries: vec![CanaryStatus {
                version: "1.21.0".into(),
                state: CanaryState::Soaking,
                needed: 1,
                passed: 1,
                nodes: vec!["a".into()],
                soak_until: Some(Time(t("2026-12-07T11:00:00Z"))),
                since: Time(t("2026-12-07T10:00:00Z")),
                message: "canary of 1.21.0 passed on a".into(),
            }],
            recent_failures: (0..7)
                .map(|i| RecordedFailure {
                    key: format!("k{i}"),
                    node: "b".into(),
                    reason: FailureReason::PrepareFailed,
                    message: format!("failure {i}"),
                    time: Time(t("2026-12-07T09:00:00Z")),
                    ungranted: false,
                })
                .collect(),
            ..Default::default()
        });
        p
    }

    #[test]
    fn status_counts_nodes_by_state_and_version_and_lists_slots_in_order() {
        let leases =
            [lease("brupop-slot-1", None), lease("brupop-slot-0", Some("a")), lease("brupop-leader", Some("x"))];
        let shadows = [
            shadow("a", ShadowState::Idle, "1.21.0", "1.21.0"),
            shadow("b", ShadowState::Idle, "1.20.0", "1.21.0"),
            shadow("c", ShadowState::Idle, "1.20.0", "1.21.0"),
        ];
        let r = StatusReport::new("ns", &policy(), &leases, &shadows);
        let names: Vec<&str> = r.slot_leases.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["brupop-slot-0", "brupop-slot-1"], "slot Leases only, by index");
        assert_eq!(r.slot_leases[0].holder.as_deref(), Some("a"));
        assert_eq!(r.progress.len(), 2);
        assert_eq!(
            (r.progress[0].version.as_str(), r.progress[0].offered.as_deref(), r.progress[0].nodes),
            ("1.20.0", Some("1.21.0"), 2)
        );
        assert_eq!(r.recent_failures.len(), STATUS_FAILURES, "the last ones only");
        assert_eq!(r.recent_failures.last().unwrap().message, "failure 6");
        let text = r.text(t("2026-12-07T10:00:30Z"));
        for want in [
            "Rollout ns/default: Halted",
            "Slots: 2 (1 held, 1 free)",
            "brupop-slot-0  a  renewed 30s ago",
            "brupop-slot-1  free",
            "Halt: until 2026-12-07T10:05:00Z (in 270s), 1 consecutive failure(s), last PrepareFailed",
            "Canary 1.21.0: Soaking until 2026-12-07T11:00:00Z (in 3570s), 1 of 1 passed",
            "2  Idle on 1.20.0 (offered 1.21.0)",
            "Last failures:",
        ] {
            assert!(text.contains(want), "{want:?} in:\n{text}");
        }
        // The structured forms read back.
        let back: StatusReport = serde_json::from_str(&structured(&r, Output::Json)).unwrap();
        assert_eq!(back, r);
        let back: StatusReport = serde_saphyr::from_str(&structured(&r, Output::Yaml)).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_eta_is_rounds_of_slots_times_the_median_walk() {
        let e = Eta::compute(&[60, 600, 120], 5, 2).unwrap();
        assert_eq!((e.seconds, e.median_walk_seconds, e.walks), (3 * 120, 120, 3));
        assert_eq!(Eta::compute(&[], 5, 2), None, "no walk measured yet");
        assert_eq!(Eta::compute(&[60], 0, 2), None, "nothing left");
        assert_eq!(Eta::compute(&[60], 3, 0).unwrap().seconds, 180, "no slots counts as one");
        assert_eq!(humantime_secs(3725), "1h 2m");
    }

    #[test]
    fn history_merges_failures_and_events_in_time_order_without_doubles() {
        let event = |time: &str, about: &str, reason: &str| HistoryEntry {
            time: t(time),
            about: about.into(),
            reason: reason.into(),
            message: String::new(),
        };
        let events = vec![
            event("2026-12-07T09:30:00Z", "UpdatePolicy/default", "Halted"),
            event("2026-12-07T09:00:00Z", "node/b", "PrepareFailed"),
            event("2026-12-07T08:00:00Z", "UpdatePolicy/default", "CanaryUpdating"),
        ];
        let h = history(&policy(), events, 100);
        let reasons: Vec<&str> = h.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons.first(), Some(&"CanaryUpdating"));
        assert_eq!(reasons.last(), Some(&"Halted"));
        assert_eq!(
            reasons.iter().filter(|r| **r == "PrepareFailed").count(),
            7,
            "the Event of a recorded failure is not shown twice"
        );
        assert_eq!(history(&policy(), Vec::new(), 3).len(), 3);
    }
}
