//! `plan` and `explain`: the leader's decision ([`leader::decide::explain`]),
//! run here on a snapshot of what the leader reads, with the settings it
//! publishes (`status.leaderDefaults`) under the policy's spec. What it
//! says is what the leader's next pass decides if nothing changes first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use leader::decide::{GateAnswer, GateObservation, Hold, Observed};
use leader::settings::{Defaults, resolve, window_state};
use model::alert_gate::AlertGateState;
use model::shadow::Failure;
use model::{BottlerocketShadow, UpdatePolicy};
use serde::{Deserialize, Serialize};

/// What the leader reads, as read by the plugin.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub policy: UpdatePolicy,
    pub leases: Vec<Lease>,
    pub shadows: Vec<BottlerocketShadow>,
    /// The managed Nodes (the leader's node selector).
    pub managed: Vec<Node>,
    /// Every Node's name.
    pub all_nodes: BTreeSet<String>,
}

/// `kubectl brupop plan`, as data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    pub phase: String,
    pub message: String,
    /// Granted by the next pass, in serving order: (node, version).
    pub granted: Vec<(String, String)>,
    /// Who is next, in serving order (the granted first).
    pub queue: Vec<String>,
    /// Every other managed node and what holds it back, by node name.
    pub held: Vec<HeldNode>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeldNode {
    pub node: String,
    pub hold: Hold,
    /// The hold, said for a person.
    pub why: String,
}

/// The leader's flags as it published them.
pub fn defaults(policy: &UpdatePolicy) -> Result<Defaults, String> {
    let published = policy.status.as_ref().and_then(|s| s.leader_defaults.as_ref()).ok_or_else(|| {
        "the leader has not published its settings (status.leaderDefaults): is a leader of this version running?"
            .to_owned()
    })?;
    Defaults::from_published(published)
}

/// Runs the leader's decision on `snap` at `now`.
pub fn plan(snap: &Snapshot, now: Timestamp) -> Result<PlanReport, String> {
    let defaults = defaults(&snap.policy)?;
    let (settings, windows) = resolve(&defaults, Some(&snap.policy.spec));
    let status = snap.policy.status.clone().unwrap_or_default();
    // Prometheus is the leader's to ask: its last verdict stands in for an answer now.
    let gate = settings.alert_gate.as_ref().map(|g| GateObservation {
        gate: g.clone(),
        at: now,
        answer: match status.alert_gate.as_ref() {
            Some(a) if a.state == AlertGateState::Firing => GateAnswer::Firing(a.firing.clone()),
            Some(a) if a.state == AlertGateState::Clear => GateAnswer::Clear,
            Some(a) => GateAnswer::Unreachable(a.message.clone()),
            None => GateAnswer::Unreachable("no answer yet".to_owned()),
        },
    });
    let nodes: BTreeMap<String, _> =
        snap.managed.iter().filter_map(leader::observe::node_view).map(|n| (n.name.clone(), n)).collect();
    let shadows: BTreeMap<String, _> =
        snap.shadows.iter().filter_map(leader::observe::shadow_view).map(|s| (s.node.clone(), s)).collect();
    let mut slots: Vec<_> = snap.leases.iter().filter_map(leader::observe::slot_view).collect();
    slots.sort_by_key(|s| s.index);
    let obs = Observed {
        now,
        nodes: &nodes,
        all_nodes: &snap.all_nodes,
        shadows: &shadows,
        slots: &slots,
        policy: Some(&status),
        policy_generation: snap.policy.metadata.generation,
        window: window_state(&windows, now),
        gate: gate.as_ref(),
    };
    let (decided, why) = leader::decide::explain(obs, &settings);
    Ok(PlanReport {
        phase: decided.status.phase.as_str().to_owned(),
        message: decided.status.message,
        granted: why.granted,
        queue: why.queue,
        held: why.held.into_iter().map(|(node, hold)| HeldNode { node, why: hold.to_string(), hold }).collect(),
    })
}

impl PlanReport {
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Phase: {}: {}", self.phase, self.message);
        if self.queue.is_empty() {
            let _ = writeln!(o, "Queue: no node waits for a slot");
        } else {
            let _ = writeln!(o, "Queue (serving order):");
        }
        for (i, node) in self.queue.iter().enumerate() {
            let what = match self.granted.iter().find(|(n, _)| n == node) {
                Some((_, v)) => format!("granted {v} at the leader's next pass"),
                None => self.held.iter().find(|h| h.node == *node).map_or_else(String::new, |h| h.why.clone()),
            };
            let _ = writeln!(o, "  {:>3}. {node}  {what}", i + 1);
        }
        let others: Vec<&HeldNode> = self.held.iter().filter(|h| !self.queue.contains(&h.node)).collect();
        if !others.is_empty() {
            let _ = writeln!(o, "Held back:");
            for h in others {
                let _ = writeln!(o, "  {}  {}", h.node, h.why);
            }
        }
        o
    }
}

/// `kubectl brupop explain NODE`, as data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    pub node: String,
    pub managed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The newer version its host offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered: Option<String>,
    /// The grant on its shadow: (slot, version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted: Option<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_requested_at: Option<Timestamp>,
    pub crash_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// Whether it moves, and why not.
    pub verdict: String,
}

/// Explains one node from the plan and its shadow.
pub fn explain_node(snap: &Snapshot, plan: &PlanReport, node: &str) -> NodeReport {
    let managed = snap.managed.iter().any(|n| n.metadata.name.as_deref() == Some(node));
    let shadow = snap.shadows.iter().find(|s| s.node_name() == Some(node));
    let st = shadow.and_then(|s| s.status.as_ref());
    let spec = shadow.map(|s| &s.spec);
    let verdict = if !managed {
        "not managed: it lacks the leader's node selector labels".to_owned()
    } else if let Some((_, v)) = plan.granted.iter().find(|(n, _)| n == node) {
        format!("the leader's next pass grants it {v}")
    } else if let Some(h) = plan.held.iter().find(|h| h.node == node) {
        h.why.clone()
    } else if let Some(i) = plan.queue.iter().position(|n| n == node) {
        format!("waiting: number {} in the queue", i + 1)
    } else {
        "nothing holds it".to_owned()
    };
    NodeReport {
        node: node.to_owned(),
        managed,
        state: st.map(|s| s.current_state.as_str().to_owned()),
        version: st.map(|s| s.current_version.clone()),
        offered: st.and_then(|s| s.offered_version()).map(str::to_owned),
        granted: spec.and_then(|s| Some((s.slot.clone()?, s.version.clone()?))),
        slot_requested_at: st.and_then(|s| s.slot_requested_at.as_ref()).map(|t| t.0),
        crash_count: st.map_or(0, |s| s.crash_count),
        last_failure: st.and_then(|s| s.last_failure.clone()),
        verdict,
    }
}

impl NodeReport {
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Node {}{}", self.node, if self.managed { "" } else { " (not managed)" });
        match (&self.state, &self.version) {
            (Some(s), Some(v)) => _ = writeln!(o, "  state: {s} on {v}"),
            _ => _ = writeln!(o, "  state: not reported (no shadow status)"),
        }
        let _ = writeln!(o, "  offered: {}", self.offered.as_deref().unwrap_or("nothing newer"));
        if let Some((slot, v)) = &self.granted {
            let _ = writeln!(o, "  granted: {v} on {slot}");
        }
        if let Some(t) = self.slot_requested_at {
            let _ = writeln!(o, "  asked for a slot at {t}");
        }
        let _ = writeln!(o, "  failures in a row: {}", self.crash_count);
        if let Some(f) = &self.last_failure {
            let _ = writeln!(o, "  last failure: {} at {} in {}: {}", f.reason, f.time.0, f.state, f.message);
        }
        let _ = writeln!(o, "  now: {}", self.verdict);
        o
    }
}
