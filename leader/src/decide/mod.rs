//! The leader's decisions, as one pure function: [`decide`].
//!
//! Input: what the leader observes (managed nodes, shadows, slot Leases, the
//! previous UpdatePolicy status), the settings in force and the time. Output:
//! a [`Plan`]: the UpdatePolicy status to write first (failures counted,
//! halts, completions), then the writes to make (reclaims, spec resets,
//! grants, slot pool changes), and when to look again if nothing changes.
//!
//! This module must not do I/O, read the clock or the environment: that is
//! what lets the safety rules below be tested exhaustively.
//!
//! Rules (docs/protocol.md sections 3, 5 and 6):
//! - never more holders than slots; a node holds at most one slot;
//! - waiting nodes are served by (crash count, request time, name);
//! - nodes not Ready, opted out, or cordoned by an administrator (unless the
//!   policy says otherwise) are skipped;
//! - each failure is counted once: its key is recorded in the status before
//!   the shadow acknowledges it;
//! - an expired slot is counted (`SlotExpired`) and reclaimed; a slot whose
//!   node and shadow are gone is freed without counting;
//! - halts double per consecutive failure up to a cap; after the configured
//!   number the rollout stops until a person resumes it;
//! - shrinking the pool never revokes a held slot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use model::parse::Budget;
use model::policy::{Phase, RecordedFailure, UpdatePolicyStatus, expiry_key, failure_key};
use model::{BottlerocketShadowSpec, BottlerocketShadowStatus, FailureReason, ShadowState};

mod status;
#[cfg(test)]
mod tests;

/// How long after its expiry a slot is reclaimed. The authproxy refuses to
/// renew a slot at its expiry; this margin keeps a renewal that landed just
/// in time (or a few seconds of clock skew between replicas) from being
/// counted as an expiry.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(3);

/// How many counted failures the policy status keeps beyond unacknowledged ones.
pub const RECENT_FAILURES_KEPT: usize = 50;

/// A managed node, reduced to what the decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub ready: bool,
    pub unschedulable: bool,
    /// The cordon carries our annotation (so it is not an administrator's).
    pub cordoned_by_us: bool,
    pub opted_out: bool,
}

/// A slot Lease, reduced to what the decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotView {
    pub name: String,
    pub index: u32,
    pub holder: Option<String>,
    pub acquired: Option<Timestamp>,
    pub renewed: Option<Timestamp>,
    pub duration_seconds: Option<i32>,
    /// `spec.leaseTransitions` (the grant adds one).
    pub transitions: Option<i32>,
    pub resource_version: Option<String>,
}

impl SlotView {
    /// When the Lease stops being valid; `None` if it carries no renewal.
    pub fn expires(&self) -> Option<Timestamp> {
        let renewed = self.renewed.or(self.acquired)?;
        let secs = i64::from(self.duration_seconds.unwrap_or(0).max(0));
        renewed.checked_add(jiff::SignedDuration::from_secs(secs)).ok()
    }

    /// When the leader may reclaim it: [`EXPIRY_GRACE`] after its expiry.
    pub fn reclaimable_at(&self) -> Option<Timestamp> {
        self.expires().map(|e| add(e, EXPIRY_GRACE))
    }

    fn expired(&self, now: Timestamp) -> bool {
        self.holder.is_some() && self.reclaimable_at().is_none_or(|e| e <= now)
    }
}

/// A BottlerocketShadow, by node.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowView {
    pub node: String,
    pub spec: BottlerocketShadowSpec,
    pub status: Option<BottlerocketShadowStatus>,
}

/// The settings in force: the UpdatePolicy spec over the leader's flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub budget: Budget,
    pub paused: bool,
    pub failure_backoff: Duration,
    pub failure_backoff_max: Duration,
    pub max_consecutive_failures: u32,
    pub update_cordoned_nodes: bool,
    pub slot_lease_duration: Duration,
    pub resume_request: Option<String>,
    /// Set when the UpdatePolicy spec could not be used: no grants, and the
    /// status says why.
    pub invalid: Option<String>,
}

/// Whether a maintenance window is open now (computed by the caller from the
/// configured windows, so this module needs no calendar).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowState {
    pub open: bool,
    pub next_start: Option<Timestamp>,
    pub current_end: Option<Timestamp>,
}

impl WindowState {
    pub const ALWAYS: WindowState = WindowState { open: true, next_start: None, current_end: None };
}

/// Everything the leader observed, at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub now: Timestamp,
    pub nodes: &'a BTreeMap<String, NodeView>,
    pub shadows: &'a BTreeMap<String, ShadowView>,
    pub slots: &'a [SlotView],
    pub policy: &'a UpdatePolicyStatus,
    pub policy_generation: Option<i64>,
    pub window: WindowState,
}

/// A write the leader makes after the policy status is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create slot Lease `name` (free).
    CreateSlot { name: String },
    /// Delete a free surplus slot (checked by resourceVersion).
    DeleteSlot { name: String, resource_version: Option<String> },
    /// Clear the holder of an expired slot (already counted in the status).
    Reclaim { slot: String, holder: String, resource_version: Option<String> },
    /// Clear the holder of a slot whose node and shadow are gone (not a failure).
    Free { slot: String, holder: String, resource_version: Option<String> },
    /// Give a free slot to a waiting node: the Lease first (checked against
    /// `resource_version`; `transitions` is its `leaseTransitions` there),
    /// then the shadow spec.
    Grant {
        slot: String,
        node: String,
        version: String,
        resource_version: Option<String>,
        transitions: Option<i32>,
        waited: Option<Duration>,
    },
    /// Write the shadow spec (reset after release/reclaim, acknowledgement, or repair of a grant).
    SetSpec { node: String, spec: BottlerocketShadowSpec },
    /// Delete the shadow of a node that is no longer managed, if its Node no longer exists.
    DeleteShadowIfNodeGone { node: String },
}

/// A node that finished its update (released its slot on the granted version).
#[derive(Clone, Debug, PartialEq)]
pub struct Completed {
    pub node: String,
    pub version: String,
    /// From grant to the leader noticing the release.
    pub duration: Option<Duration>,
}

/// The leader's decisions for one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The UpdatePolicy status to write before any action.
    pub status: UpdatePolicyStatus,
    /// Failures counted in this pass (for metrics and Events).
    pub counted: Vec<RecordedFailure>,
    /// Updates completed in this pass.
    pub completed: Vec<Completed>,
    pub actions: Vec<Action>,
    /// When to decide again if nothing changes (next expiry, end of a halt, window edge).
    pub wake_at: Option<Timestamp>,
}

impl Plan {
    pub fn grants(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| matches!(a, Action::Grant { .. }))
    }
}

/// Halt length after `consecutive` failures: `base × 2^(consecutive−1)`, capped.
pub fn backoff(base: Duration, max: Duration, consecutive: u32) -> Duration {
    let exp = consecutive.saturating_sub(1).min(32);
    base.checked_mul(1u32 << exp.min(31)).unwrap_or(max).min(max)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

fn since(now: Timestamp, then: Timestamp) -> Option<Duration> {
    Duration::try_from(now.duration_since(then)).ok()
}

/// The leader's decisions. See the module documentation for the rules.
pub fn decide(obs: Observed<'_>, settings: &Settings) -> Plan {
    let now = obs.now;
    let mut st = obs.policy.clone();
    let mut counted = Vec::new();
    let mut completed = Vec::new();
    let mut actions = Vec::new();
    // Shadow specs to write, one per node (several reasons may touch one node).
    let mut specs: BTreeMap<String, BottlerocketShadowSpec> = BTreeMap::new();

    // 1. A new resume request clears halts and the failure count.
    if settings.resume_request.is_some() && settings.resume_request != st.acknowledged_resume {
        st.acknowledged_resume = settings.resume_request.clone();
        st.consecutive_failures = 0;
        st.halted_until = None;
        st.halt_reason = None;
    }

    let recorded: BTreeSet<String> = st.recent_failures.iter().map(|f| f.key.clone()).collect();
    let count = |st: &mut UpdatePolicyStatus, rec: RecordedFailure, counted: &mut Vec<RecordedFailure>| {
        if recorded.contains(&rec.key) {
            return;
        }
        if rec.reason.halts_fleet() {
            st.consecutive_failures = st.consecutive_failures.saturating_add(1);
            let until =
                add(now, backoff(settings.failure_backoff, settings.failure_backoff_max, st.consecutive_failures));
            st.halted_until = Some(Time(until));
            st.halt_reason = Some(rec.reason);
        }
        st.recent_failures.push(rec.clone());
        counted.push(rec);
    };

    // 2. Failures reported by agents: count (status first), then acknowledge on the spec.
    let mut unacked: Vec<(&ShadowView, &model::shadow::Failure)> = obs
        .shadows
        .values()
        .filter_map(|sh| {
            let f = sh.status.as_ref()?.last_failure.as_ref()?;
            (f.id > sh.spec.acknowledged_failure.unwrap_or(0)).then_some((sh, f))
        })
        .collect();
    unacked.sort_by(|a, b| (a.1.time.0, &a.0.node).cmp(&(b.1.time.0, &b.0.node)));
    let mut keep_keys: BTreeSet<String> = BTreeSet::new();
    for (sh, f) in &unacked {
        let key = failure_key(&sh.node, f.id);
        keep_keys.insert(key.clone());
        let rec = RecordedFailure {
            key,
            node: sh.node.clone(),
            reason: f.reason,
            message: f.message.clone(),
            time: f.time.clone(),
        };
        count(&mut st, rec, &mut counted);
        let mut spec = planned(&specs, sh);
        spec.acknowledged_failure = Some(f.id);
        // The grant stays on the spec while the node still holds its slot:
        // its agent follows the slot the spec names, and releases it once its
        // undo is done (step 4 resets the spec then, or reclaim on expiry).
        let holds_granted = spec.slot.as_deref().is_some_and(|granted| {
            obs.slots
                .iter()
                .any(|s| s.name == granted && s.holder.as_deref() == Some(sh.node.as_str()) && !s.expired(now))
        });
        if !holds_granted {
            reset_grant(&mut spec, now);
        }
        specs.insert(sh.node.clone(), spec);
    }

    // 3. Slots: expiry, vanished holders, releases, repairs.
    let mut holders: BTreeMap<&str, Vec<&SlotView>> = BTreeMap::new();
    for s in obs.slots {
        if let Some(h) = &s.holder {
            holders.entry(h.as_str()).or_default().push(s);
        }
    }
    let mut unavailable: BTreeSet<&str> = BTreeSet::new(); // slots not grantable this pass
    for slot in obs.slots {
        let Some(holder) = slot.holder.as_deref() else {
            continue;
        };
        let shadow = obs.shadows.get(holder);
        if shadow.is_none() && !obs.nodes.contains_key(holder) {
            actions.push(Action::Free {
                slot: slot.name.clone(),
                holder: holder.to_owned(),
                resource_version: slot.resource_version.clone(),
            });
            unavailable.insert(&slot.name);
            continue;
        }
        if slot.expired(now) {
            let acquired = slot.acquired.map(|t| t.to_string()).unwrap_or_default();
            let key = expiry_key(&slot.name, holder, &acquired);
            keep_keys.insert(key.clone());
            let rec = RecordedFailure {
                key,
                node: holder.to_owned(),
                reason: FailureReason::SlotExpired,
                message: format!(
                    "slot {} held by {holder} expired at {} without being renewed or released",
                    slot.name,
                    slot.expires().map_or_else(|| "an unknown time".to_owned(), |t| t.to_string())
                ),
                time: Time(now),
            };
            count(&mut st, rec, &mut counted);
            actions.push(Action::Reclaim {
                slot: slot.name.clone(),
                holder: holder.to_owned(),
                resource_version: slot.resource_version.clone(),
            });
            unavailable.insert(&slot.name);
            continue;
        }
        // A node holding two slots keeps the one its spec names (or the lowest).
        let held = &holders[holder];
        if held.len() > 1 {
            let keep = shadow
                .and_then(|sh| sh.spec.slot.as_deref())
                .filter(|n| held.iter().any(|s| s.name == *n))
                .unwrap_or(held[0].name.as_str());
            if slot.name != keep {
                actions.push(Action::Free {
                    slot: slot.name.clone(),
                    holder: holder.to_owned(),
                    resource_version: slot.resource_version.clone(),
                });
                unavailable.insert(&slot.name);
                continue;
            }
        }
        // Repair a grant whose spec write was lost: the node still waits, and
        // its spec was not reset after this Lease was acquired.
        if let Some(sh) = shadow {
            let spec = planned(&specs, sh);
            let reset_after_grant = match (&spec.state_transition_timestamp, slot.acquired) {
                (Some(reset), Some(acquired)) => reset.0 >= acquired,
                _ => false,
            };
            if spec.slot.is_none() && sh.unacked_failure_is_none() && sh.is_waiting() && !reset_after_grant {
                let mut spec = spec;
                spec.slot = Some(slot.name.clone());
                spec.version = spec.version.or_else(|| sh.status.as_ref().and_then(|s| s.target_version.clone()));
                spec.state = ShadowState::StagedAndPerformedUpdate;
                spec.state_transition_timestamp = Some(MicroTime(now));
                specs.insert(sh.node.clone(), spec);
            }
        }
    }

    // 4. Shadows whose granted slot is no longer theirs: completion or loss.
    let slot_by_name: BTreeMap<&str, &SlotView> = obs.slots.iter().map(|s| (s.name.as_str(), s)).collect();
    for sh in obs.shadows.values() {
        // Only shadows naming a slot matter here (most do not: no copy for them).
        let Some(granted) = planned_ref(&specs, sh).slot.clone() else {
            continue;
        };
        let spec = planned(&specs, sh);
        let still_held = slot_by_name
            .get(granted.as_str())
            .is_some_and(|s| s.holder.as_deref() == Some(sh.node.as_str()) && !s.expired(now));
        if still_held {
            continue;
        }
        let done = sh.status.as_ref().is_some_and(|s| {
            s.current_state == ShadowState::Idle && spec.version.as_deref() == Some(s.current_version.as_str())
        });
        if done {
            completed.push(Completed {
                node: sh.node.clone(),
                version: spec.version.clone().unwrap_or_default(),
                duration: spec.state_transition_timestamp.as_ref().and_then(|t| since(now, t.0)),
            });
            let max = settings.max_consecutive_failures;
            if max == 0 || st.consecutive_failures < max {
                st.consecutive_failures = 0;
            }
        }
        let mut spec = spec;
        reset_grant(&mut spec, now);
        specs.insert(sh.node.clone(), spec);
    }

    // 5. Shadows of nodes no longer managed: deleted if the Node is gone (the
    //    writer checks), after which a slot it held is freed (step 3).
    for (sh, node) in with_nodes(obs.shadows, obs.nodes) {
        if node.is_none() {
            actions.push(Action::DeleteShadowIfNodeGone { node: sh.node.clone() });
        }
    }

    // 6. The slot pool.
    let managed = u32::try_from(obs.nodes.len()).unwrap_or(u32::MAX);
    let size = settings.budget.slots(managed);
    let existing: BTreeSet<u32> = obs.slots.iter().map(|s| s.index).collect();
    for i in 0..size {
        if !existing.contains(&i) {
            actions.push(Action::CreateSlot { name: model::names::slot_name(i) });
        }
    }
    for s in obs.slots {
        if s.index >= size && s.holder.is_none() {
            actions.push(Action::DeleteSlot { name: s.name.clone(), resource_version: s.resource_version.clone() });
        }
    }

    // 7. Whether grants run now.
    let phase = status::phase(&st, settings, obs.window, now);

    // 8. Grants.
    let held: usize = obs.slots.iter().filter(|s| s.holder.is_some()).count();
    let mut waiting = waiting_nodes(&obs, settings, &holders, &specs);
    if phase == Phase::Running {
        // A slot still named by a spec is granted again only once that spec
        // is reset (protocol section 3): a reset planned in this pass is
        // written with the grant, so the slot can go at once.
        let named: BTreeSet<&str> =
            obs.shadows.values().filter_map(|sh| planned_ref(&specs, sh).slot.as_deref()).collect();
        let free: Vec<&SlotView> = obs
            .slots
            .iter()
            .filter(|s| s.holder.is_none() && s.index < size)
            .filter(|s| !unavailable.contains(s.name.as_str()) && !named.contains(s.name.as_str()))
            .collect();
        let room = (size as usize).saturating_sub(held);
        serve_first(&mut waiting, room.min(free.len()));
        for (slot, (sh, version)) in free.into_iter().zip(waiting.iter()).take(room) {
            let waited = sh.status.as_ref().and_then(|s| s.slot_requested_at.as_ref()).and_then(|t| since(now, t.0));
            actions.push(Action::Grant {
                slot: slot.name.clone(),
                node: sh.node.clone(),
                version: (*version).to_owned(),
                resource_version: slot.resource_version.clone(),
                transitions: slot.transitions,
                waited,
            });
        }
    }

    // 9. Spec writes go before grants in the plan (written together; a
    //    reset is what lets this pass grant the slot again).
    let spec_actions: Vec<Action> = specs
        .into_iter()
        .filter(|(node, spec)| obs.shadows.get(node).is_some_and(|sh| sh.spec != *spec))
        .map(|(node, spec)| Action::SetSpec { node, spec })
        .collect();
    let first_grant = actions.iter().position(|a| matches!(a, Action::Grant { .. })).unwrap_or(actions.len());
    actions.splice(first_grant..first_grant, spec_actions);

    // 10. The status.
    status::trim_recent(&mut st.recent_failures, &keep_keys);
    let grants = actions.iter().filter(|a| matches!(a, Action::Grant { .. })).count();
    status::fill(&mut st, phase, settings, obs, size, held + grants, waiting.len().saturating_sub(grants), managed);
    let wake_at = status::wake_at(&st, obs, phase);
    Plan { status: st, counted, completed, actions, wake_at }
}

/// The spec a shadow will have after this pass's writes.
fn planned(specs: &BTreeMap<String, BottlerocketShadowSpec>, sh: &ShadowView) -> BottlerocketShadowSpec {
    planned_ref(specs, sh).clone()
}

/// [`planned`], borrowed.
fn planned_ref<'a>(
    specs: &'a BTreeMap<String, BottlerocketShadowSpec>,
    sh: &'a ShadowView,
) -> &'a BottlerocketShadowSpec {
    specs.get(&sh.node).unwrap_or(&sh.spec)
}

/// Clears a grant from a spec (the node goes back to `Idle`).
fn reset_grant(spec: &mut BottlerocketShadowSpec, now: Timestamp) {
    if spec.state != ShadowState::Idle || spec.slot.is_some() || spec.version.is_some() {
        spec.state = ShadowState::Idle;
        spec.slot = None;
        spec.version = None;
        spec.state_transition_timestamp = Some(MicroTime(now));
    }
}

impl ShadowView {
    fn unacked_failure_is_none(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.last_failure.as_ref())
            .is_none_or(|f| f.id <= self.spec.acknowledged_failure.unwrap_or(0))
    }

    fn is_waiting(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.current_state == ShadowState::Idle && s.slot_requested_at.is_some())
    }
}

/// Each shadow (keyed by node name) with its managed Node, if any: both maps
/// walked together in key order, so a pass makes no lookup per shadow (at
/// thousands of nodes those lookups were the largest part of a pass).
fn with_nodes<'a>(
    shadows: &'a BTreeMap<String, ShadowView>,
    nodes: &'a BTreeMap<String, NodeView>,
) -> impl Iterator<Item = (&'a ShadowView, Option<&'a NodeView>)> {
    let mut nodes = nodes.iter().peekable();
    shadows.iter().map(move |(key, sh)| {
        while nodes.next_if(|(n, _)| n.as_str() < key.as_str()).is_some() {}
        (sh, nodes.next_if(|(n, _)| *n == key).map(|(_, v)| v))
    })
}

/// Orders the first `k` waiting nodes as they are served (crash count,
/// request time, name: a total order); the rest stay unordered. Only as
/// many as there are free slots are needed, so a pass does not sort the
/// whole queue.
fn serve_first(waiting: &mut [(&ShadowView, &str)], k: usize) {
    let key = |s: &ShadowView| {
        let st = s.status.as_ref();
        (st.map_or(0, |s| s.crash_count), st.and_then(|s| s.slot_requested_at.as_ref()).map(|t| t.0))
    };
    let order = |(a, _): &(&ShadowView, &str), (b, _): &(&ShadowView, &str)| {
        key(a).cmp(&key(b)).then_with(|| a.node.cmp(&b.node))
    };
    if k == 0 || waiting.is_empty() {
        return;
    }
    if k < waiting.len() {
        waiting.select_nth_unstable_by(k - 1, order);
    }
    let k = k.min(waiting.len());
    waiting[..k].sort_by(order);
}

/// Nodes waiting for a slot, unordered (see [`serve_first`]), with the version
/// each would be granted. Runs every pass over every shadow: no copies, and
/// the holders are met by a merge walk (both are in node-name order).
fn waiting_nodes<'a>(
    obs: &Observed<'a>,
    settings: &Settings,
    holders: &BTreeMap<&str, Vec<&SlotView>>,
    specs: &BTreeMap<String, BottlerocketShadowSpec>,
) -> Vec<(&'a ShadowView, &'a str)> {
    let mut holder_names = holders.keys().peekable();
    with_nodes(obs.shadows, obs.nodes)
        .filter_map(|(sh, node)| {
            let status = sh.status.as_ref()?;
            let target = status.target_version.as_deref()?;
            status.slot_requested_at.as_ref()?;
            while holder_names.next_if(|h| **h < sh.node.as_str()).is_some() {}
            let holds = holder_names.peek().is_some_and(|h| **h == sh.node.as_str());
            if !status.current_state.is_resting() || holds {
                return None;
            }
            let spec = specs.get(&sh.node).unwrap_or(&sh.spec);
            if spec.slot.is_some() || !sh.unacked_failure_is_none() {
                return None;
            }
            let node = node?;
            let admin_cordon = node.unschedulable && !node.cordoned_by_us;
            if !node.ready || node.opted_out || (admin_cordon && !settings.update_cordoned_nodes) {
                return None;
            }
            Some((sh, target))
        })
        .collect()
}
