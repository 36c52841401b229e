//! The leader's decisions, as one pure function: [`decide`], one method per rule.
//!
//! Input: what the leader observes (managed nodes, shadows, slot Leases, the
//! previous UpdatePolicy status), the settings in force and the time. Output:
//! a [`Plan`]: the UpdatePolicy status to write first (failures counted,
//! halts, completions), then the writes to make (reclaims, spec resets,
//! grants, slot pool changes), and when to look again if nothing changes.
//!
//! This module must not do I/O, read the clock or the environment: that is
//! what lets the safety rules below be tested without a cluster, one unit
//! test per situation and a property test over random clusters
//! (`tests/props.rs`: no grant beyond the slots, to a node that does not
//! wait, or while grants do not run).
//!
//! Rules (docs/protocol.md sections 3, 5 and 6):
//! - never more holders than slots; a node holds at most one slot;
//! - waiting nodes are served by (crash count, request time, name);
//! - nodes not Ready, opted out, or cordoned by an administrator (unless the
//!   policy says otherwise) are skipped;
//! - every grant is written to the ledger (`status.grants`) before its
//!   Lease; a slot held without a ledger entry was not granted by the leader
//!   and is revoked; a lost spec write is repaired only from the ledger and
//!   only while grants run;
//! - each failure is counted once: its key (shadow uid and failure id) is
//!   recorded in the status before the shadow acknowledges it; only a walk
//!   in the ledger can halt the rollout or, completing, reset the count;
//! - an expired slot is counted (`SlotExpired`) and reclaimed; a slot whose
//!   node and shadow are gone is freed without counting;
//! - halts double per consecutive failure up to a cap; after the configured
//!   number the rollout stops until a person resumes it;
//! - while the alert gate fires (or Prometheus cannot be asked and the gate
//!   says to block) nothing new is granted; slots already held go on;
//! - with a per-zone limit, a zone never has more nodes unavailable
//!   (updating, or not Ready) than its limit because of a grant, and with
//!   one zone at a time only one zone has nodes updating ([`zones`]);
//! - shrinking the pool never revokes a held slot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use model::policy::{GrantRecord, Phase, RecordedFailure, UpdatePolicyStatus, expiry_key, failure_key};
use model::{BottlerocketShadowSpec, FailureReason, ShadowState};

mod canary;
mod explain;
mod gate;
mod ledger;
mod queue;
mod status;
#[cfg(test)]
mod tests;
mod types;
mod zones;

pub use explain::{Explanation, Hold};
use ledger::adopt;
use queue::{serve_first, waiting_nodes, with_nodes};
pub use types::*;

/// How long after its expiry a slot is reclaimed. The authproxy refuses to
/// renew a slot at its expiry; this margin keeps a renewal that landed just
/// in time (or a few seconds of clock skew between replicas) from being
/// counted as an expiry.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(3);

/// How many counted failures the policy status keeps beyond unacknowledged ones.
pub const RECENT_FAILURES_KEPT: usize = 50;

/// Halt length after `consecutive` failures: `base × 2^(consecutive−1)`, capped.
pub fn backoff(base: Duration, max: Duration, consecutive: u32) -> Duration {
    let exp = consecutive.saturating_sub(1).min(32);
    base.checked_mul(1u32 << exp.min(31)).unwrap_or(max).min(max)
}

/// The number of slots for `budget` over `managed` nodes: never more than
/// the managed nodes (none without any).
pub fn pool_size(budget: model::parse::Budget, managed: usize) -> u32 {
    let managed = u32::try_from(managed).unwrap_or(u32::MAX);
    budget.slots(managed).min(managed)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

fn since(now: Timestamp, then: Timestamp) -> Option<Duration> {
    Duration::try_from(now.duration_since(then)).ok()
}

/// The leader's decisions. See the module documentation for the rules; each
/// is one method of `Pass`, applied in this order.
pub fn decide(obs: Observed<'_>, settings: &Settings) -> Plan {
    decide_with(obs, settings, false).0
}

/// [`decide`], and why each managed node is or is not granted by it: the
/// same pass, asked to record what held each node back (the plugin's
/// `plan` and `explain`; the leader does not ask). Nodes without a shadow
/// are `NotReported`.
pub fn explain(obs: Observed<'_>, settings: &Settings) -> (Plan, Explanation) {
    let (plan, why, queue) = decide_with(obs, settings, true);
    let mut held = why.unwrap_or_default();
    for name in obs.nodes.keys() {
        if !obs.shadows.contains_key(name) {
            held.insert(name.clone(), Hold::NotReported);
        }
    }
    let granted = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Grant { node, spec, .. } => Some((node.clone(), spec.version.clone().unwrap_or_default())),
            _ => None,
        })
        .collect();
    (plan, Explanation { granted, queue, held })
}

fn decide_with(
    obs: Observed<'_>,
    settings: &Settings,
    explaining: bool,
) -> (Plan, Option<BTreeMap<String, Hold>>, Vec<String>) {
    let Some(previous) = obs.policy else {
        let plan = Plan {
            status: UpdatePolicyStatus::default(),
            counted: Vec::new(),
            completed: Vec::new(),
            actions: vec![Action::CreatePolicy],
            wake_at: None,
        };
        return (plan, explaining.then(BTreeMap::new), Vec::new());
    };
    let mut pass = Pass::new(obs, previous, settings);
    if explaining {
        pass.why = Some(BTreeMap::new());
    }
    pass.resume();
    pass.count_reported_failures();
    pass.check_slots();
    pass.settle_released_grants();
    pass.forget_unmanaged_shadows();
    let size = pass.size_pool();
    pass.st.alert_gate = gate::verdict(settings.alert_gate.as_ref(), obs.gate, obs.now);
    let phase = status::phase(&pass.st, settings, obs.window, obs.now);
    pass.repair_lost_grants(phase);
    let waiting = pass.grant(phase, size);
    let why = pass.why.take();
    let queue = std::mem::take(&mut pass.queue);
    (pass.finish(phase, size, waiting), why, queue)
}

/// One pass of decisions: what the rules have decided so far.
struct Pass<'a, 's> {
    obs: Observed<'a>,
    settings: &'s Settings,
    /// The UpdatePolicy status being built.
    st: UpdatePolicyStatus,
    /// Keys of failures already in the status when the pass began.
    recorded: BTreeSet<String>,
    counted: Vec<RecordedFailure>,
    completed: Vec<Completed>,
    actions: Vec<Action>,
    /// Shadow specs to write, one per node (several rules may touch one node).
    specs: BTreeMap<String, BottlerocketShadowSpec>,
    /// Failure keys still unacknowledged: kept in the status however old.
    keep_keys: BTreeSet<String>,
    /// Slot holders: node → the slots it holds.
    holders: BTreeMap<&'a str, Vec<&'a ObservedSlot>>,
    /// Slots not grantable in this pass (reclaimed, freed).
    unavailable: BTreeSet<&'a str>,
    /// The grant ledger as the pass began (adopted from the specs and Leases
    /// if the status had none).
    ledger: Vec<GrantRecord>,
    /// Grants decided in this pass, for the ledger.
    new_grants: Vec<GrantRecord>,
    /// Asked to explain ([`explain`]): what holds each managed node back.
    why: Option<BTreeMap<String, Hold>>,
    /// Asked to explain: the nodes that may be granted, in serving order.
    queue: Vec<String>,
}

impl<'a, 's> Pass<'a, 's> {
    fn new(obs: Observed<'a>, previous: &UpdatePolicyStatus, settings: &'s Settings) -> Self {
        let mut holders: BTreeMap<&str, Vec<&ObservedSlot>> = BTreeMap::new();
        for s in obs.slots {
            if let Some(h) = &s.holder {
                holders.entry(h.as_str()).or_default().push(s);
            }
        }
        let ledger = previous.grants.clone().unwrap_or_else(|| adopt(&obs));
        Pass {
            obs,
            settings,
            ledger,
            new_grants: Vec::new(),
            recorded: previous.recent_failures.iter().map(|f| f.key.clone()).collect(),
            st: previous.clone(),
            counted: Vec::new(),
            completed: Vec::new(),
            actions: Vec::new(),
            specs: BTreeMap::new(),
            keep_keys: BTreeSet::new(),
            holders,
            unavailable: BTreeSet::new(),
            why: None,
            queue: Vec::new(),
        }
    }

    /// Counts a failure once: a key already recorded is not counted again.
    /// A fleet-halting failure of a granted walk raises the consecutive
    /// count and halts.
    fn count(&mut self, rec: RecordedFailure) {
        if self.recorded.contains(&rec.key) {
            return;
        }
        if rec.reason.halts_fleet() && !rec.ungranted {
            let st = &mut self.st;
            st.consecutive_failures = st.consecutive_failures.saturating_add(1);
            let s = self.settings;
            let until = add(self.obs.now, backoff(s.failure_backoff, s.failure_backoff_max, st.consecutive_failures));
            st.halted_until = Some(Time(until));
            st.halt_reason = Some(rec.reason);
            // A canary walk's failure stops the rollout.
            if let Some(g) = self.ledger.iter().find(|g| g.node == rec.node) {
                canary::fail(&mut self.st.canaries, &g.version, &rec, self.obs.now);
            }
        }
        self.st.recent_failures.push(rec.clone());
        self.counted.push(rec);
    }

    /// Rule 1: a new resume request clears halts and the failure count.
    fn resume(&mut self) {
        let request = &self.settings.resume_request;
        if request.is_some() && *request != self.st.acknowledged_resume {
            self.st.acknowledged_resume = request.clone();
            self.st.consecutive_failures = 0;
            self.st.halted_until = None;
            self.st.halt_reason = None;
            canary::resume(&mut self.st.canaries, self.obs.now);
        }
    }

    /// Rule 2: failures reported by agents are counted (status first), then
    /// acknowledged on the spec.
    fn count_reported_failures(&mut self) {
        let now = self.obs.now;
        let mut unacked: Vec<(&ObservedShadow, &model::shadow::Failure)> = self
            .obs
            .shadows
            .values()
            .filter_map(|sh| {
                let f = sh.status.as_ref()?.last_failure.as_ref()?;
                (f.id > sh.spec.acknowledged_failure.unwrap_or(0)).then_some((sh, f))
            })
            .collect();
        unacked.sort_by(|a, b| (a.1.time.0, &a.0.node).cmp(&(b.1.time.0, &b.0.node)));
        for (sh, f) in unacked {
            let key = failure_key(sh.key(), f.id);
            self.keep_keys.insert(key.clone());
            // Recorded under the node name by a leader before keys had uids.
            let legacy = failure_key(&sh.node, f.id);
            if self.recorded.contains(&legacy) {
                self.recorded.insert(key.clone());
                self.keep_keys.insert(legacy);
            }
            // A node never granted this walk (or whose walk the leader has
            // already seen end) cannot halt the fleet, whatever it reports.
            let ungranted = self.walk_of(sh).is_none();
            self.count(RecordedFailure {
                key,
                node: sh.node.clone(),
                reason: f.reason,
                message: f.message.clone(),
                time: f.time.clone(),
                ungranted,
            });
            let mut spec = planned(&self.specs, sh);
            spec.acknowledged_failure = Some(f.id);
            // The grant stays on the spec while the node still holds its slot:
            // its agent follows the slot the spec names, and releases it once its
            // undo is done (rule 4 resets the spec then, or reclaim on expiry).
            let holds_granted = spec.slot.as_deref().is_some_and(|granted| {
                self.obs
                    .slots
                    .iter()
                    .any(|s| s.name == granted && s.holder.as_deref() == Some(sh.node.as_str()) && !s.expired(now))
            });
            if !holds_granted {
                reset_grant(&mut spec, now);
            }
            self.specs.insert(sh.node.clone(), spec);
        }
    }

    /// Rule 3: every held slot is checked: its holder gone (freed), not in
    /// the ledger (revoked), expired (counted, reclaimed), a second slot of
    /// one node (freed). A grant whose spec write was lost is repaired
    /// later, once the phase is known ([`Pass::repair_lost_grants`]).
    fn check_slots(&mut self) {
        let obs = self.obs;
        for slot in obs.slots {
            let Some(holder) = slot.holder.as_deref() else {
                continue;
            };
            let shadow = obs.shadows.get(holder);
            // (A Node that exists but left the selector keeps the slot until
            // it is released or expires: its walk finishes or is undone.)
            if shadow.is_none() && !obs.nodes.contains_key(holder) && !obs.all_nodes.contains(holder) {
                self.free(slot, holder);
                continue;
            }
            if !self.in_ledger(&slot.name, holder) {
                self.actions.push(Action::Revoke {
                    slot: slot.name.clone(),
                    holder: holder.to_owned(),
                    resource_version: slot.resource_version.clone(),
                });
                self.unavailable.insert(&slot.name);
                continue;
            }
            if slot.expired(obs.now) {
                self.reclaim(slot, holder);
                continue;
            }
            // A node holding two slots keeps the one its spec names (or the lowest).
            let held = &self.holders[holder];
            if held.len() > 1 {
                let keep = shadow
                    .and_then(|sh| sh.spec.slot.as_deref())
                    .filter(|n| held.iter().any(|s| s.name == *n))
                    .unwrap_or(held[0].name.as_str());
                if slot.name != keep {
                    self.free(slot, holder);
                    continue;
                }
            }
            let granted_at = self.grant_of(&slot.name, holder).map(|g| g.granted_at.0);
            // A pending reboot keeps its slot past the cap (it halted the
            // fleet and a person is told), until a person releases it.
            if let Some(granted_at) = granted_at
                && obs.now >= add(granted_at, self.settings.max_slot_hold)
                && !self.reboot_pending(holder)
            {
                self.take_back(slot, holder, granted_at);
            }
        }
    }

    fn free(&mut self, slot: &'a ObservedSlot, holder: &str) {
        self.actions.push(Action::Free {
            slot: slot.name.clone(),
            holder: holder.to_owned(),
            resource_version: slot.resource_version.clone(),
        });
        self.unavailable.insert(&slot.name);
    }

    /// An expired slot is counted (`SlotExpired`, keyed by slot, holder and
    /// acquisition) before it is cleared; unless its node left the selector
    /// (a person took it out of the rollout, and the DaemonSet removed its
    /// agent): reclaimed and its cordon lifted, but not a failure.
    fn reclaim(&mut self, slot: &'a ObservedSlot, holder: &str) {
        let unmanaged = !self.obs.nodes.contains_key(holder) && self.obs.all_nodes.contains(holder);
        if !unmanaged {
            let acquired = slot.acquired.map(|t| t.to_string()).unwrap_or_default();
            let key = expiry_key(&slot.name, holder, &acquired);
            self.keep_keys.insert(key.clone());
            self.count(RecordedFailure {
                key,
                node: holder.to_owned(),
                reason: FailureReason::SlotExpired,
                message: format!(
                    "slot {} held by {holder} expired at {} without being renewed or released",
                    slot.name,
                    slot.expires().map_or_else(|| "an unknown time".to_owned(), |t| t.to_string())
                ),
                time: Time(self.obs.now),
                ungranted: false,
            });
        }
        self.actions.push(Action::Reclaim {
            slot: slot.name.clone(),
            holder: holder.to_owned(),
            resource_version: slot.resource_version.clone(),
            reason: FailureReason::SlotExpired,
            lift_cordon: !self.reboot_pending(holder),
        });
        self.unavailable.insert(&slot.name);
    }

    /// Rule 4: a shadow whose granted slot is no longer its own completed its
    /// update (released on the granted version: the consecutive-failure count
    /// resets) or lost it; either way its grant is reset.
    fn settle_released_grants(&mut self) {
        let now = self.obs.now;
        let slot_by_name: BTreeMap<&str, &ObservedSlot> = self.obs.slots.iter().map(|s| (s.name.as_str(), s)).collect();
        for sh in self.obs.shadows.values() {
            // Only shadows naming a slot matter here (most do not: no copy for them).
            let Some(granted) = planned_ref(&self.specs, sh).slot.clone() else {
                continue;
            };
            let still_held = slot_by_name
                .get(granted.as_str())
                .is_some_and(|s| s.holder.as_deref() == Some(sh.node.as_str()) && !s.expired(now))
                && !self.unavailable.contains(granted.as_str());
            if still_held {
                continue;
            }
            let mut spec = planned(&self.specs, sh);
            // Only a walk the leader granted (and of the version granted)
            // completes an update.
            let walk = self.walk_of(sh).filter(|g| g.slot == granted && spec.version.as_deref() == Some(&g.version));
            let done = walk.is_some()
                && sh.status.as_ref().is_some_and(|s| {
                    s.current_state == ShadowState::Idle && spec.version.as_deref() == Some(s.current_version.as_str())
                });
            if done {
                self.completed.push(Completed {
                    node: sh.node.clone(),
                    version: spec.version.clone().unwrap_or_default(),
                    duration: spec.state_transition_timestamp.as_ref().and_then(|t| since(now, t.0)),
                });
                let max = self.settings.max_consecutive_failures;
                if max == 0 || self.st.consecutive_failures < max {
                    self.st.consecutive_failures = 0;
                }
            }
            reset_grant(&mut spec, now);
            self.specs.insert(sh.node.clone(), spec);
        }
    }

    /// Rule 5: the shadow of a node no longer managed is deleted. Once its
    /// Node is gone (not among all the cluster's Nodes) at once, after
    /// which a slot it held is freed (rule 3). A Node that exists but left
    /// the selector (its opt-in label removed) keeps its shadow while it
    /// holds a slot, expired or not: the walk under way finishes (its agent
    /// releases the slot) or is undone (the slot expires and is reclaimed,
    /// its cordon lifted, not counted: rule 3); then the shadow goes.
    fn forget_unmanaged_shadows(&mut self) {
        for (sh, node) in with_nodes(self.obs.shadows, self.obs.nodes) {
            if node.is_some() {
                continue;
            }
            if !self.obs.all_nodes.contains(&sh.node) {
                self.actions.push(Action::DeleteShadowIfNodeGone { node: sh.node.clone() });
            } else if !self.holders.contains_key(sh.node.as_str()) {
                self.actions.push(Action::DeleteShadowIfUnmanaged { node: sh.node.clone() });
            }
        }
    }

    /// Rule 6: the slot pool follows the budget, never beyond the number of
    /// managed nodes (a count of 2147483647 would otherwise have the leader
    /// create Leases until it runs out of memory); shrinking never revokes a
    /// held slot (surplus slots go once free). Returns the pool's size.
    fn size_pool(&mut self) -> u32 {
        // A budget window open now replaces the policy's budget.
        let size = pool_size(self.obs.window.budget.unwrap_or(self.settings.budget), self.obs.nodes.len());
        let existing: BTreeSet<u32> = self.obs.slots.iter().map(|s| s.index).collect();
        for i in 0..size {
            if !existing.contains(&i) {
                self.actions.push(Action::CreateSlot { name: model::names::slot_name(i) });
            }
        }
        for s in self.obs.slots {
            if s.index >= size && s.holder.is_none() {
                self.actions
                    .push(Action::DeleteSlot { name: s.name.clone(), resource_version: s.resource_version.clone() });
            }
        }
        size
    }

    /// Rule 8: while grants run (`phase`), free slots go to waiting nodes in
    /// serving order. Returns how many nodes wait.
    fn grant(&mut self, phase: Phase, size: u32) -> usize {
        let obs = self.obs;
        let held: usize = obs.slots.iter().filter(|s| s.holder.is_some()).count();
        let backed_off: BTreeMap<&str, Timestamp> = self
            .st
            .node_backoffs
            .iter()
            .filter(|b| b.until.0 > obs.now)
            .filter(|b| obs.shadows.get(&b.node).is_some_and(|sh| sh.uid == b.shadow_uid))
            .map(|b| (b.node.as_str(), b.until.0))
            .collect();
        let mut waiting = waiting_nodes(&obs, self.settings, &self.holders, &self.specs, self.why.as_mut());
        // Release age: every version a waiting node offers is recorded
        // (whatever the phase, so a pause counts towards it); a version
        // younger than minReleaseAge is not granted yet.
        queue::record_offered(&mut self.st.versions_offered, waiting.iter().map(|(_, v)| *v), obs.now);
        // Canary: a version's first nodes, then its soak.
        let counts = self.canary_counts();
        let mut allowance = canary::advance(
            &mut self.st.canaries,
            self.settings.canary.as_ref(),
            waiting.iter().map(|(_, v)| *v),
            &counts,
            obs.now,
        );
        let mut why = self.why.take();
        let explaining = why.is_some();
        let mut hold = |sh: &ObservedShadow, h: Hold| {
            if let Some(w) = why.as_mut() {
                w.insert(sh.node.clone(), h);
            }
        };
        waiting.retain(|(sh, _)| {
            let backs_off = backed_off.get(sh.node.as_str());
            if let Some(until) = backs_off {
                hold(sh, Hold::BackedOff { until: *until });
            }
            backs_off.is_none()
        });
        let asking = waiting.len();
        if let Some(age) = self.settings.min_release_age {
            let offered = &self.st.versions_offered;
            waiting.retain(|(sh, v)| {
                let ok = queue::old_enough(offered, v, age, obs.now);
                if !ok {
                    let until = queue::grantable_at(offered, v, age);
                    hold(sh, Hold::TooYoung { version: (*v).to_owned(), until });
                }
                ok
            });
        }
        // Nodes held back by the release age still count as waiting.
        let too_young = asking - waiting.len();
        if phase != Phase::Running {
            // Explaining: the order they would be served in once grants run.
            if explaining {
                let all = waiting.len();
                serve_first(&mut waiting, all);
                self.queue = waiting.iter().map(|(sh, _)| sh.node.clone()).collect();
            }
            for (sh, _) in &waiting {
                hold(sh, Hold::Phase { phase: phase.as_str().to_owned() });
            }
            self.why = why;
            return asking;
        }
        // A slot still named by a spec is granted again only once that spec
        // is reset (protocol section 3): a reset planned in this pass is
        // written with the grant, so the slot can go at once.
        let named: BTreeSet<&str> =
            obs.shadows.values().filter_map(|sh| planned_ref(&self.specs, sh).slot.as_deref()).collect();
        let free: Vec<&ObservedSlot> = obs
            .slots
            .iter()
            .filter(|s| s.holder.is_none() && s.index < size)
            .filter(|s| !self.unavailable.contains(s.name.as_str()) && !named.contains(s.name.as_str()))
            .collect();
        let room = (size as usize).saturating_sub(held).min(free.len());
        // The zones and canaries pass over the queue in serving order (all
        // of it: a full zone's or a held version's nodes are skipped, not
        // waited for); without them only the first `room` need ordering,
        // unless the pass explains every node.
        let mut zones = self.settings.zones.as_ref().map(|limit| {
            let holders: BTreeSet<&str> = self.holders.keys().copied().collect();
            (limit, zones::Zones::new(limit, obs.nodes, &holders))
        });
        let ordered = if zones.is_none() && allowance.unlimited() && !explaining { room } else { waiting.len() };
        serve_first(&mut waiting, ordered);
        let zone_of =
            |limit: &ZoneLimit, sh: &ObservedShadow| obs.nodes.get(&sh.node).map_or("", |n| zones::zone_of(limit, n));
        if let Some((limit, z)) = &zones {
            z.order(&mut waiting, |(sh, _)| zone_of(limit, sh));
        }
        let mut chosen: Vec<(&ObservedShadow, &str)> = Vec::new();
        // With an explanation: who is next, in order (granted now first).
        let mut queue = Vec::new();
        for (sh, v) in &waiting {
            if chosen.len() >= room {
                if !explaining {
                    break;
                }
                queue.push(sh.node.clone());
                hold(sh, Hold::NoFreeSlot { position: queue.len() });
                continue;
            }
            if !allowance.allows(v) {
                let c = self.st.canaries.iter().find(|c| c.version == *v);
                hold(
                    sh,
                    Hold::Canary {
                        version: (*v).to_owned(),
                        state: c.map_or("Updating", |c| c.state.as_str()).to_owned(),
                        until: c.and_then(|c| c.soak_until.as_ref()).map(|t| t.0),
                    },
                );
                continue;
            }
            if let Some((limit, z)) = zones.as_mut() {
                let zone = zone_of(limit, sh);
                if !z.admit(zone) {
                    hold(sh, Hold::Zone { zone: zone.to_owned() });
                    continue;
                }
            }
            allowance.take(v);
            chosen.push((*sh, *v));
            if explaining {
                queue.push(sh.node.clone());
            }
        }
        self.why = why;
        self.queue = queue;
        for (slot, (sh, version)) in free.into_iter().zip(chosen.iter()) {
            canary::note_grant(&mut self.st.canaries, version, &sh.node);
            let waited =
                sh.status.as_ref().and_then(|s| s.slot_requested_at.as_ref()).and_then(|t| since(obs.now, t.0));
            let spec = BottlerocketShadowSpec {
                state: ShadowState::StagedAndPerformedUpdate,
                state_transition_timestamp: Some(MicroTime(obs.now)),
                version: Some((*version).to_owned()),
                slot: Some(slot.name.clone()),
                acknowledged_failure: planned_ref(&self.specs, sh).acknowledged_failure,
                walk: self.settings.walk.clone(),
            };
            self.new_grants.push(GrantRecord {
                node: sh.node.clone(),
                shadow_uid: sh.uid.clone(),
                slot: slot.name.clone(),
                version: (*version).to_owned(),
                granted_at: Time(obs.now),
            });
            self.actions.push(Action::Grant {
                slot: slot.name.clone(),
                node: sh.node.clone(),
                lease_duration: self.settings.slot_lease_duration,
                spec,
                resource_version: slot.resource_version.clone(),
                transitions: slot.transitions,
                waited,
            });
        }
        waiting.len() + too_young
    }

    /// What the canaries count: managed nodes on each version and not
    /// updating, and walks to each version under way (in the ledger, their
    /// slot still held and not reclaimed in this pass).
    fn canary_counts(&self) -> canary::Counts<'a> {
        let obs = self.obs;
        let mut counts =
            canary::Counts { managed: u32::try_from(obs.nodes.len()).unwrap_or(u32::MAX), ..Default::default() };
        if self.settings.canary.is_none() {
            return counts;
        }
        for name in obs.nodes.keys() {
            if self.holders.contains_key(name.as_str()) {
                continue;
            }
            if let Some(st) = obs.shadows.get(name).and_then(|sh| sh.status.as_ref()) {
                *counts.on.entry(st.current_version.as_str()).or_default() += 1;
            }
        }
        for g in &self.ledger {
            let held = obs.slots.iter().any(|s| {
                s.name == g.slot
                    && s.holder.as_deref() == Some(g.node.as_str())
                    && !self.unavailable.contains(s.name.as_str())
            });
            if held {
                *counts.in_flight.entry(g.version.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// Rules 9 and 10: spec writes go before the grants (a reset is what lets
    /// this pass grant the slot again; they are written together, but a
    /// granted node's spec is the grant's); then the status.
    fn finish(mut self, phase: Phase, size: u32, waiting: usize) -> Plan {
        let obs = self.obs;
        let granted: BTreeSet<String> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Grant { node, .. } => Some(node.clone()),
                _ => None,
            })
            .collect();
        let spec_actions: Vec<Action> = std::mem::take(&mut self.specs)
            .into_iter()
            .filter(|(node, spec)| obs.shadows.get(node).is_some_and(|sh| sh.spec != *spec))
            .filter(|(node, _)| !granted.contains(node))
            .map(|(node, spec)| Action::SetSpec { node, spec })
            .collect();
        let mut actions = self.actions;
        let first_grant = actions.iter().position(|a| matches!(a, Action::Grant { .. })).unwrap_or(actions.len());
        actions.splice(first_grant..first_grant, spec_actions);
        // The ledger keeps the grants whose slot their node still holds, as
        // observed (a reclaim is seen through: if its write is lost, the
        // next pass reclaims again); the others ended: released, reclaimed,
        // or their Lease write failed. Then this pass's.
        let mut ledger: Vec<GrantRecord> = std::mem::take(&mut self.ledger)
            .into_iter()
            .filter(|g| {
                obs.slots.iter().any(|s| s.name == g.slot && s.holder.as_deref() == Some(g.node.as_str()))
                    && obs.shadows.get(&g.node).is_none_or(|sh| sh.uid == g.shadow_uid)
            })
            .collect();
        ledger.append(&mut self.new_grants);
        let mut st = self.st;
        st.grants = Some(ledger);
        for c in &self.completed {
            st.recent_walks.push(model::policy::WalkRecord {
                node: c.node.clone(),
                version: c.version.clone(),
                seconds: c.duration.map_or(0, |d| d.as_secs()),
                completed: Time(obs.now),
            });
        }
        let cut = st.recent_walks.len().saturating_sub(model::policy::RECENT_WALKS_MAX);
        st.recent_walks.drain(..cut);
        // A backoff lasts as long as the node's shadow.
        st.node_backoffs.retain(|b| obs.shadows.get(&b.node).is_some_and(|sh| sh.uid == b.shadow_uid));
        status::trim_recent(&mut st.recent_failures, &self.keep_keys);
        let grants = granted.len();
        let held: usize = obs.slots.iter().filter(|s| s.holder.is_some()).count();
        let managed = u32::try_from(obs.nodes.len()).unwrap_or(u32::MAX);
        status::fill(&mut st, phase, self.settings, obs, size, held + grants, waiting.saturating_sub(grants), managed);
        let wake_at = status::wake_at(&st, obs, phase, self.settings);
        Plan { status: st, counted: self.counted, completed: self.completed, actions, wake_at }
    }
}

/// The spec a shadow will have after this pass's writes.
fn planned(specs: &BTreeMap<String, BottlerocketShadowSpec>, sh: &ObservedShadow) -> BottlerocketShadowSpec {
    planned_ref(specs, sh).clone()
}

/// [`planned`], borrowed.
fn planned_ref<'a>(
    specs: &'a BTreeMap<String, BottlerocketShadowSpec>,
    sh: &'a ObservedShadow,
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

impl ObservedShadow {
    /// What keys its failures: the uid, or the node name if it has none.
    fn key(&self) -> &str {
        if self.uid.is_empty() { &self.node } else { &self.uid }
    }

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
