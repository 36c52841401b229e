//! The grant ledger's rules (docs/protocol.md section 3): what counts as a
//! grant of the leader, the hold cap, repairs. Pure, like its parent module.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use model::policy::{GrantRecord, NodeBackoff, Phase, RecordedFailure, expiry_key};
use model::{FailureReason, ShadowState};

use super::{Action, Observed, ObservedShadow, ObservedSlot, Pass, add, backoff, planned_ref};

/// The ledger a leader without one starts from: every held slot whose
/// holder's spec names it (what a previous leader granted), once.
pub(super) fn adopt(obs: &Observed<'_>) -> Vec<GrantRecord> {
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

impl<'a, 's> Pass<'a, 's> {
    /// The ledger entry of the walk `sh` was granted, if any: same node,
    /// same shadow (a re-created shadow is another node).
    pub(super) fn walk_of(&self, sh: &ObservedShadow) -> Option<&GrantRecord> {
        self.ledger.iter().find(|g| g.node == sh.node && g.shadow_uid == sh.uid)
    }

    /// The ledger's grant of `slot` to `holder`, if it is one.
    pub(super) fn grant_of(&self, slot: &str, holder: &str) -> Option<&GrantRecord> {
        let shadow = self.obs.shadows.get(holder);
        self.ledger
            .iter()
            .find(|g| g.slot == slot && g.node == holder && shadow.is_none_or(|sh| sh.uid == g.shadow_uid))
    }

    pub(super) fn in_ledger(&self, slot: &str, holder: &str) -> bool {
        self.grant_of(slot, holder).is_some()
    }

    /// Whether `node` waits for a reboot its host accepted (its shadow says
    /// so) that no person has released (Node annotation with that boot ID).
    pub(super) fn reboot_pending(&self, node: &str) -> bool {
        let pending = self.obs.shadows.get(node).and_then(|sh| sh.status.as_ref()?.reboot_pending.as_ref());
        let released = self.obs.nodes.get(node).and_then(|n| n.reboot_released.as_deref());
        pending.is_some_and(|p| released != Some(p.boot_id.as_str()))
    }

    /// A slot held past `maxSlotHold` (renewed all along: the agent is alive
    /// but its walk does not end, by fault or on purpose) is counted once
    /// (`SlotHeldTooLong`, node-only), reclaimed, and its node backed off by
    /// the leader itself: the agent's own node backoff cannot be relied on
    /// for a node that misbehaves.
    pub(super) fn take_back(&mut self, slot: &'a ObservedSlot, holder: &str, granted_at: Timestamp) {
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

    /// Rule 7: a grant whose spec write was lost is written again, from the
    /// ledger alone (what the leader granted, never what a Lease or a shadow
    /// says) and only while grants run: the node still holds the slot, still
    /// waits, and its spec was not reset since the grant.
    pub(super) fn repair_lost_grants(&mut self, phase: Phase) {
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
}
