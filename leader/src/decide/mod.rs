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
//! - shrinking the pool never revokes a held slot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use model::parse::Budget;
use model::policy::{GrantRecord, NodeBackoff, Phase, RecordedFailure, UpdatePolicyStatus, expiry_key, failure_key};
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
pub struct ObservedNode {
    pub name: String,
    pub ready: bool,
    pub unschedulable: bool,
    /// The cordon carries our annotation (so it is not an administrator's).
    pub cordoned_by_us: bool,
    pub opted_out: bool,
    /// The boot ID a person released a pending reboot for (annotation).
    pub reboot_released: Option<String>,
}

/// A slot Lease, reduced to what the decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedSlot {
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

impl ObservedSlot {
    /// When the Lease stops being valid; `None` if it carries no renewal.
    pub fn expires(&self) -> Option<Timestamp> {
        model::objects::lease_expiry(self.renewed.or(self.acquired), self.duration_seconds)
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
pub struct ObservedShadow {
    pub node: String,
    /// `metadata.uid`: tells a re-created shadow from the one it replaces.
    pub uid: String,
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
    /// The longest one walk may hold a slot (see [`Pass::check_slots`]).
    pub max_slot_hold: Duration,
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
    pub nodes: &'a BTreeMap<String, ObservedNode>,
    pub shadows: &'a BTreeMap<String, ObservedShadow>,
    pub slots: &'a [ObservedSlot],
    /// The UpdatePolicy's status (default if it has none); `None` when
    /// no UpdatePolicy object exists.
    pub policy: Option<&'a UpdatePolicyStatus>,
    pub policy_generation: Option<i64>,
    pub window: WindowState,
}

/// A write the leader makes after the policy status is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the UpdatePolicy `default` (empty spec: the leader's flags
    /// apply). Decided when the policy watch listed none; nothing else is
    /// decided until it exists, since every other action depends on its
    /// status being durable first.
    CreatePolicy,
    /// Create slot Lease `name` (free).
    CreateSlot { name: String },
    /// Delete a free surplus slot (checked by resourceVersion).
    DeleteSlot { name: String, resource_version: Option<String> },
    /// Clear the holder of a slot that expired (`SlotExpired`) or was held
    /// past `maxSlotHold` (`SlotHeldTooLong`), already counted in the status;
    /// then lift the operator's cordon from its node, unless a reboot is
    /// pending there (the host may still go down: it stays drained).
    Reclaim { slot: String, holder: String, resource_version: Option<String>, reason: FailureReason, lift_cordon: bool },
    /// Clear the holder of a slot whose node and shadow are gone (not a failure).
    Free { slot: String, holder: String, resource_version: Option<String> },
    /// Clear the holder of a slot the leader did not grant (no ledger entry):
    /// written by someone else, or by a walk the leader no longer knows.
    Revoke { slot: String, holder: String, resource_version: Option<String> },
    /// Give a free slot to a waiting node: the Lease first (checked against
    /// `resource_version`; `transitions` is its `leaseTransitions` there),
    /// held for `lease_duration` from now, then the shadow `spec`.
    Grant {
        slot: String,
        node: String,
        lease_duration: Duration,
        spec: BottlerocketShadowSpec,
        resource_version: Option<String>,
        transitions: Option<i32>,
        waited: Option<Duration>,
    },
    /// Write the shadow spec (reset after release/reclaim, acknowledgement, or repair of a grant).
    SetSpec { node: String, spec: BottlerocketShadowSpec },
    /// Delete the shadow of a node that is no longer managed, if its Node no longer exists.
    DeleteShadowIfNodeGone { node: String },
}

impl Action {
    /// The version a grant hands out.
    pub fn granted_version(&self) -> Option<&str> {
        match self {
            Action::Grant { spec, .. } => spec.version.as_deref(),
            _ => None,
        }
    }
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

/// The leader's decisions. See the module documentation for the rules; each
/// is one method of [`Pass`], applied in this order.
pub fn decide(obs: Observed<'_>, settings: &Settings) -> Plan {
    let Some(previous) = obs.policy else {
        return Plan {
            status: UpdatePolicyStatus::default(),
            counted: Vec::new(),
            completed: Vec::new(),
            actions: vec![Action::CreatePolicy],
            wake_at: None,
        };
    };
    let mut pass = Pass::new(obs, previous, settings);
    pass.resume();
    pass.count_reported_failures();
    pass.check_slots();
    pass.settle_released_grants();
    pass.forget_unmanaged_shadows();
    let size = pass.size_pool();
    let phase = status::phase(&pass.st, settings, obs.window, obs.now);
    pass.repair_lost_grants(phase);
    let waiting = pass.grant(phase, size);
    pass.finish(phase, size, waiting)
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
        }
    }

    /// The ledger entry of the walk `sh` was granted, if any: same node,
    /// same shadow (a re-created shadow is another node).
    fn walk_of(&self, sh: &ObservedShadow) -> Option<&GrantRecord> {
        self.ledger.iter().find(|g| g.node == sh.node && g.shadow_uid == sh.uid)
    }

    /// The ledger's grant of `slot` to `holder`, if it is one.
    fn grant_of(&self, slot: &str, holder: &str) -> Option<&GrantRecord> {
        let shadow = self.obs.shadows.get(holder);
        self.ledger
            .iter()
            .find(|g| g.slot == slot && g.node == holder && shadow.is_none_or(|sh| sh.uid == g.shadow_uid))
    }

    fn in_ledger(&self, slot: &str, holder: &str) -> bool {
        self.grant_of(slot, holder).is_some()
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
            if shadow.is_none() && !obs.nodes.contains_key(holder) {
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

    /// Whether `node` waits for a reboot its host accepted (its shadow says
    /// so) that no person has released (Node annotation with that boot ID).
    fn reboot_pending(&self, node: &str) -> bool {
        let pending = self.obs.shadows.get(node).and_then(|sh| sh.status.as_ref()?.reboot_pending.as_ref());
        let released = self.obs.nodes.get(node).and_then(|n| n.reboot_released.as_deref());
        pending.is_some_and(|p| released != Some(p.boot_id.as_str()))
    }

    /// A slot held past `maxSlotHold` (renewed all along: the agent is alive
    /// but its walk does not end, by fault or on purpose) is counted once
    /// (`SlotHeldTooLong`, node-only), reclaimed, and its node backed off by
    /// the leader itself: the agent's own node backoff cannot be relied on
    /// for a node that misbehaves.
    fn take_back(&mut self, slot: &'a ObservedSlot, holder: &str, granted_at: Timestamp) {
        let key = format!("{}#held", expiry_key(&slot.name, holder, &granted_at.to_string()));
        let uid = self.obs.shadows.get(holder).map(|sh| sh.uid.clone()).unwrap_or_default();
        if !self.recorded.contains(&key) {
            let s = self.settings;
            let now = self.obs.now;
            let entry = self.st.node_backoffs.iter_mut().find(|b| b.node == holder && b.shadow_uid == uid);
            let offences = entry.as_ref().map_or(0, |b| b.offences).saturating_add(1);
            let until = Time(add(now, backoff(s.failure_backoff, s.failure_backoff_max, offences)));
            match entry {
                Some(b) => {
                    b.offences = offences;
                    b.until = until;
                }
                None => self.st.node_backoffs.push(NodeBackoff {
                    node: holder.to_owned(),
                    shadow_uid: uid,
                    until,
                    offences,
                }),
            }
        }
        self.keep_keys.insert(key.clone());
        self.count(RecordedFailure {
            key,
            node: holder.to_owned(),
            reason: FailureReason::SlotHeldTooLong,
            message: format!(
                "{holder} held slot {} from {granted_at} until {}, longer than maxSlotHold ({}); taken back",
                slot.name,
                self.obs.now,
                humantime::format_duration(self.settings.max_slot_hold)
            ),
            time: Time(self.obs.now),
            ungranted: false,
        });
        self.actions.push(Action::Reclaim {
            slot: slot.name.clone(),
            holder: holder.to_owned(),
            resource_version: slot.resource_version.clone(),
            reason: FailureReason::SlotHeldTooLong,
            lift_cordon: true,
        });
        self.unavailable.insert(&slot.name);
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
    /// acquisition) before it is cleared.
    fn reclaim(&mut self, slot: &'a ObservedSlot, holder: &str) {
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
        self.actions.push(Action::Reclaim {
            slot: slot.name.clone(),
            holder: holder.to_owned(),
            resource_version: slot.resource_version.clone(),
            reason: FailureReason::SlotExpired,
            lift_cordon: !self.reboot_pending(holder),
        });
        self.unavailable.insert(&slot.name);
    }

    /// Rule 7: a grant whose spec write was lost is written again, from the
    /// ledger alone (what the leader granted, never what a Lease or a shadow
    /// says) and only while grants run: the node still holds the slot, still
    /// waits, and its spec was not reset since the grant.
    fn repair_lost_grants(&mut self, phase: Phase) {
        if phase != Phase::Running {
            return;
        }
        let obs = self.obs;
        let mut repairs = Vec::new();
        for g in &self.ledger {
            let Some(sh) = obs.shadows.get(&g.node).filter(|sh| sh.uid == g.shadow_uid) else {
                continue;
            };
            let held = obs
                .slots
                .iter()
                .any(|s| s.name == g.slot && s.holder.as_deref() == Some(g.node.as_str()) && !s.expired(obs.now))
                && !self.unavailable.contains(g.slot.as_str());
            let spec = planned_ref(&self.specs, sh);
            let reset_after_grant = spec.state_transition_timestamp.as_ref().is_some_and(|t| t.0 >= g.granted_at.0);
            if held && spec.slot.is_none() && sh.unacked_failure_is_none() && sh.is_waiting() && !reset_after_grant {
                let mut spec = spec.clone();
                spec.slot = Some(g.slot.clone());
                spec.version = Some(g.version.clone());
                spec.state = ShadowState::StagedAndPerformedUpdate;
                spec.state_transition_timestamp = Some(MicroTime(obs.now));
                repairs.push((sh.node.clone(), spec));
            }
        }
        self.specs.extend(repairs);
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

    /// Rule 5: the shadow of a node no longer managed is deleted if the Node
    /// is gone (the writer checks), after which a slot it held is freed (rule 3).
    fn forget_unmanaged_shadows(&mut self) {
        for (sh, node) in with_nodes(self.obs.shadows, self.obs.nodes) {
            if node.is_none() {
                self.actions.push(Action::DeleteShadowIfNodeGone { node: sh.node.clone() });
            }
        }
    }

    /// Rule 6: the slot pool follows the budget; shrinking never revokes a
    /// held slot (surplus slots go once free). Returns the pool's size.
    fn size_pool(&mut self) -> u32 {
        let managed = u32::try_from(self.obs.nodes.len()).unwrap_or(u32::MAX);
        let size = self.settings.budget.slots(managed);
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
        let backed_off: BTreeSet<&str> = self
            .st
            .node_backoffs
            .iter()
            .filter(|b| b.until.0 > obs.now)
            .filter(|b| obs.shadows.get(&b.node).is_some_and(|sh| sh.uid == b.shadow_uid))
            .map(|b| b.node.as_str())
            .collect();
        let mut waiting = waiting_nodes(&obs, self.settings, &self.holders, &self.specs);
        waiting.retain(|(sh, _)| !backed_off.contains(sh.node.as_str()));
        if phase != Phase::Running {
            return waiting.len();
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
        let room = (size as usize).saturating_sub(held);
        serve_first(&mut waiting, room.min(free.len()));
        for (slot, (sh, version)) in free.into_iter().zip(waiting.iter()).take(room) {
            let waited =
                sh.status.as_ref().and_then(|s| s.slot_requested_at.as_ref()).and_then(|t| since(obs.now, t.0));
            let spec = BottlerocketShadowSpec {
                state: ShadowState::StagedAndPerformedUpdate,
                state_transition_timestamp: Some(MicroTime(obs.now)),
                version: Some((*version).to_owned()),
                slot: Some(slot.name.clone()),
                acknowledged_failure: planned_ref(&self.specs, sh).acknowledged_failure,
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
        waiting.len()
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

/// The ledger a leader without one starts from: every held slot whose
/// holder's spec names it (what a previous leader granted), once.
fn adopt(obs: &Observed<'_>) -> Vec<GrantRecord> {
    obs.slots
        .iter()
        .filter_map(|s| {
            let holder = s.holder.as_deref()?;
            let sh = obs.shadows.get(holder)?;
            (sh.spec.slot.as_deref() == Some(s.name.as_str())).then(|| GrantRecord {
                node: holder.to_owned(),
                shadow_uid: sh.uid.clone(),
                slot: s.name.clone(),
                version: sh.spec.version.clone().unwrap_or_default(),
                granted_at: Time(
                    sh.spec.state_transition_timestamp.as_ref().map(|t| t.0).or(s.acquired).unwrap_or(obs.now),
                ),
            })
        })
        .collect()
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

/// Each shadow (keyed by node name) with its managed Node, if any: both maps
/// walked together in key order, so a pass makes no lookup per shadow (at
/// thousands of nodes those lookups were the largest part of a pass).
fn with_nodes<'a>(
    shadows: &'a BTreeMap<String, ObservedShadow>,
    nodes: &'a BTreeMap<String, ObservedNode>,
) -> impl Iterator<Item = (&'a ObservedShadow, Option<&'a ObservedNode>)> {
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
fn serve_first(waiting: &mut [(&ObservedShadow, &str)], k: usize) {
    let key = |s: &ObservedShadow| {
        let st = s.status.as_ref();
        (st.map_or(0, |s| s.crash_count), st.and_then(|s| s.slot_requested_at.as_ref()).map(|t| t.0))
    };
    let order = |(a, _): &(&ObservedShadow, &str), (b, _): &(&ObservedShadow, &str)| {
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
    holders: &BTreeMap<&str, Vec<&ObservedSlot>>,
    specs: &BTreeMap<String, BottlerocketShadowSpec>,
) -> Vec<(&'a ObservedShadow, &'a str)> {
    let mut holder_names = holders.keys().peekable();
    with_nodes(obs.shadows, obs.nodes)
        .filter_map(|(sh, node)| {
            let status = sh.status.as_ref()?;
            let target = status.offered_version()?;
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
