//! Renewing, releasing and fencing a slot Lease, as pure functions. The
//! caller writes the result with the Lease's resourceVersion, so a concurrent
//! change (the leader reclaiming it) makes the write fail with 409 instead of
//! overwriting it.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use model::names::SLOT_LABEL;
use model::wire::SlotReply;

/// Why a slot operation is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("lease {0} is not an update slot (it lacks the {SLOT_LABEL} label)")]
    NotASlot(String),
    #[error("slot {slot} is held by {}, not by {caller}", holder.as_deref().unwrap_or("nobody"))]
    NotHolder { slot: String, holder: Option<String>, caller: String },
    #[error("slot {slot} expired at {expired}; it cannot be renewed, only reclaimed by the leader")]
    Expired { slot: String, expired: Timestamp },
    #[error("slot {slot} is valid for {remaining_seconds}s more, {needed_seconds}s are needed: renew it first")]
    TooShort { slot: String, remaining_seconds: i64, needed_seconds: i64 },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotASlot(_) => "NotASlot",
            Refusal::NotHolder { .. } | Refusal::Expired { .. } => "NotHolder",
            Refusal::TooShort { .. } => "LeaseTooShort",
        }
    }
}

fn name(lease: &Lease) -> String {
    lease.metadata.name.clone().unwrap_or_default()
}

fn is_slot(lease: &Lease) -> bool {
    lease.metadata.labels.as_ref().is_some_and(|l| l.get(SLOT_LABEL).is_some_and(|v| v == "true"))
}

use model::objects::lease_expires as expires;

/// The Lease as the wire API shows it.
pub fn view(lease: &Lease) -> SlotReply {
    let spec = lease.spec.as_ref();
    SlotReply {
        slot: name(lease),
        resource_version: lease.metadata.resource_version.clone(),
        holder: spec.and_then(|s| s.holder_identity.clone()),
        expires_at: expires(lease),
        lease_duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
    }
}

/// Checks that `caller` holds the slot and it stays valid for `min_remaining`.
pub fn fence(lease: &Lease, caller: &str, min_remaining: Duration, now: Timestamp) -> Result<(), Refusal> {
    let slot = name(lease);
    if !is_slot(lease) {
        return Err(Refusal::NotASlot(slot));
    }
    let holder = model::objects::lease_holder(lease);
    if holder != Some(caller) {
        return Err(Refusal::NotHolder { slot, holder: holder.map(str::to_owned), caller: caller.to_owned() });
    }
    let expiry = expires(lease).unwrap_or(now);
    if expiry <= now {
        return Err(Refusal::Expired { slot, expired: expiry });
    }
    let remaining = expiry.duration_since(now).as_secs();
    let needed = i64::try_from(min_remaining.as_secs()).unwrap_or(i64::MAX);
    if remaining < needed {
        return Err(Refusal::TooShort { slot, remaining_seconds: remaining, needed_seconds: needed });
    }
    Ok(())
}

/// The Lease renewed by `caller` for `requested` (capped at `max`) from `now`.
pub fn renew(
    lease: &Lease,
    caller: &str,
    requested: Duration,
    max: Duration,
    now: Timestamp,
) -> Result<Lease, Refusal> {
    fence(lease, caller, Duration::ZERO, now)?;
    let secs = requested.min(max).as_secs().max(1);
    let mut next = lease.clone();
    let spec = next.spec.get_or_insert_with(Default::default);
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(i32::try_from(secs).unwrap_or(i32::MAX));
    Ok(next)
}

/// The Lease released by `caller`, or `Ok(None)` if the caller does not hold
/// it (already released or reclaimed: nothing to do).
pub fn release(lease: &Lease, caller: &str) -> Result<Option<Lease>, Refusal> {
    if !is_slot(lease) {
        return Err(Refusal::NotASlot(name(lease)));
    }
    if model::objects::lease_holder(lease) != Some(caller) {
        return Ok(None);
    }
    let mut next = lease.clone();
    let spec = next.spec.get_or_insert_with(Default::default);
    spec.holder_identity = None;
    spec.acquire_time = None;
    spec.renew_time = None;
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    fn at(secs: i64) -> Timestamp {
        let t0: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        t0.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap()
    }

    fn slot(holder: Option<&str>, renewed: i64, secs: i32) -> Lease {
        let mut l = Lease::default();
        l.metadata.name = Some("brupop-slot-0".into());
        l.metadata.labels = Some([(SLOT_LABEL.to_owned(), "true".to_owned())].into());
        l.spec = Some(LeaseSpec {
            holder_identity: holder.map(Into::into),
            acquire_time: Some(MicroTime(at(renewed))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        });
        l
    }

    #[test]
    fn the_holder_renews_and_the_duration_is_capped() {
        let renewed =
            renew(&slot(Some("node-1"), 0, 60), "node-1", Duration::from_secs(3600), Duration::from_secs(900), at(30))
                .unwrap();
        let spec = renewed.spec.unwrap();
        assert_eq!(spec.renew_time, Some(MicroTime(at(30))));
        assert_eq!(spec.lease_duration_seconds, Some(900));
        assert_eq!(spec.holder_identity.as_deref(), Some("node-1"));
    }

    #[test]
    fn another_node_cannot_renew() {
        let err =
            renew(&slot(Some("node-1"), 0, 60), "node-2", Duration::from_secs(60), Duration::from_secs(900), at(1))
                .unwrap_err();
        assert_eq!(err.reason(), "NotHolder");
        assert_eq!(err.to_string(), "slot brupop-slot-0 is held by node-1, not by node-2");
        assert!(renew(&slot(None, 0, 60), "node-2", Duration::from_secs(60), Duration::from_secs(900), at(1)).is_err());
    }

    #[test]
    fn an_expired_slot_cannot_be_renewed() {
        let err =
            renew(&slot(Some("node-1"), 0, 60), "node-1", Duration::from_secs(60), Duration::from_secs(900), at(60))
                .unwrap_err();
        assert!(matches!(err, Refusal::Expired { .. }));
    }

    #[test]
    fn a_lease_that_is_not_a_slot_is_refused() {
        let mut l = slot(Some("node-1"), 0, 60);
        l.metadata.labels = None;
        assert!(matches!(fence(&l, "node-1", Duration::ZERO, at(1)), Err(Refusal::NotASlot(_))));
        assert!(matches!(release(&l, "node-1"), Err(Refusal::NotASlot(_))));
    }

    #[test]
    fn fencing_needs_enough_time_left() {
        let l = slot(Some("node-1"), 0, 60);
        assert_eq!(fence(&l, "node-1", Duration::from_secs(30), at(20)), Ok(()));
        let err = fence(&l, "node-1", Duration::from_secs(30), at(40)).unwrap_err();
        assert_eq!(err.reason(), "LeaseTooShort");
    }

    #[test]
    fn release_clears_the_holder_and_a_retry_is_harmless() {
        let released = release(&slot(Some("node-1"), 0, 60), "node-1").unwrap().unwrap();
        assert_eq!(released.spec.as_ref().unwrap().holder_identity, None);
        assert_eq!(release(&released, "node-1"), Ok(None));
        assert_eq!(release(&slot(Some("node-2"), 0, 60), "node-1"), Ok(None), "never releases another node's slot");
    }

    #[test]
    fn view_shows_the_expiry() {
        let v = view(&slot(Some("node-1"), 10, 60));
        assert_eq!(v.expires_at, Some(at(70)));
        assert_eq!(v.holder.as_deref(), Some("node-1"));
    }
}
