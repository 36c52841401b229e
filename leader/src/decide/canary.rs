//! The canary of each new version: which grants of a version the canary
//! lets through. Pure, like its parent module.
//!
//! With `spec.canary`, the first time the leader sees a waiting node offer
//! a version it opens a canary for it (`status.canaries`):
//! - `Updating`: at most `needed` nodes (`canary.nodes` over the managed
//!   nodes, at least 1) are on the version or updating to it; no other
//!   node is granted it. Managed nodes already on the version, not
//!   updating, count as canaries passed: if they are enough when the
//!   canary opens, it opens `Passed`.
//! - `Soaking`: once `needed` nodes are on the version and none of its
//!   walks is under way, no new grant of it until `soakUntil`
//!   (`canary.soak` later; no soak: straight to `Passed`), or until
//!   `spec.canary.skipSoak` names the version.
//! - `Passed`: the version is granted like any other.
//! - `Failed`: a canary walk's failure (one that halts) stops the rollout
//!   (phase `Stopped`, whatever `maxConsecutiveFailures` says) until a
//!   resume request, which opens the canary again (`Updating`).
//!
//! Other versions are not held by a version's canary.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use model::policy::{CANARIES_MAX, CANARY_NODES_LISTED, CanaryState, CanaryStatus, RecordedFailure};

use super::CanarySettings;

/// How many more grants each version may take in this pass (a version not
/// listed: no limit).
#[derive(Debug, Default)]
pub(super) struct Allowance(BTreeMap<String, usize>);

impl Allowance {
    pub(super) fn unlimited(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `version` may take one more grant.
    pub(super) fn allows(&self, version: &str) -> bool {
        self.0.get(version).is_none_or(|n| *n > 0)
    }

    /// Takes one grant of `version`; false if none is left.
    pub(super) fn take(&mut self, version: &str) -> bool {
        match self.0.get_mut(version) {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }
}

/// What [`advance`] counts, per version.
#[derive(Debug, Default)]
pub(super) struct Counts<'a> {
    /// Managed nodes on the version and not updating.
    pub on: BTreeMap<&'a str, u32>,
    /// Walks to the version under way (granted, slot still held).
    pub in_flight: BTreeMap<String, u32>,
    pub managed: u32,
}

/// Opens a canary for each version in `offered` without one, moves each
/// canary on (passed, soak over or skipped), and says what each version may
/// still take. Without `settings` every canary is forgotten.
pub(super) fn advance<'v>(
    list: &mut Vec<CanaryStatus>,
    settings: Option<&CanarySettings>,
    offered: impl IntoIterator<Item = &'v str>,
    counts: &Counts<'_>,
    now: Timestamp,
) -> Allowance {
    let Some(c) = settings else {
        list.clear();
        return Allowance::default();
    };
    let needed = c.nodes.slots(counts.managed).min(counts.managed).max(1);
    let get = |m: &BTreeMap<&str, u32>, v: &str| m.get(v).copied().unwrap_or(0);
    let flying = |v: &str| counts.in_flight.get(v).copied().unwrap_or(0);
    for v in offered {
        if list.iter().any(|r| r.version == v) {
            continue;
        }
        let on = get(&counts.on, v);
        let (state, message) = if on >= needed {
            (CanaryState::Passed, format!("canary of {v} passed: {on} node(s) already on it"))
        } else {
            let soak = humantime::format_duration(c.soak);
            (CanaryState::Updating, format!("canary of {v}: {needed} node(s) update first, then a soak of {soak}"))
        };
        list.push(CanaryStatus {
            version: v.to_owned(),
            state,
            needed,
            passed: on,
            nodes: Vec::new(),
            soak_until: None,
            since: Time(now),
            message,
        });
    }
    let mut allowance = Allowance::default();
    for r in list.iter_mut() {
        r.needed = needed;
        r.passed = get(&counts.on, &r.version);
        let flying = flying(&r.version);
        if r.state == CanaryState::Updating && r.passed >= needed && flying == 0 {
            let names = r.nodes.join(", ");
            if c.soak.is_zero() {
                set(r, CanaryState::Passed, now, format!("canary of {} passed on {names}; no soak", r.version));
            } else {
                let until = super::add(now, c.soak);
                r.soak_until = Some(Time(until));
                let m = format!("canary of {} passed on {names}; no other node gets it until {until}", r.version);
                set(r, CanaryState::Soaking, now, m);
            }
        }
        if r.state == CanaryState::Soaking {
            if c.skip_soak.as_deref() == Some(r.version.as_str()) {
                let m = format!("soak of {} ended by spec.canary.skipSoak: the rollout of it proceeds", r.version);
                set(r, CanaryState::Passed, now, m);
            } else if r.soak_until.as_ref().is_none_or(|t| t.0 <= now) {
                let m = format!("soak of {} over: the rollout of it proceeds", r.version);
                set(r, CanaryState::Passed, now, m);
            }
        }
        let left = match r.state {
            CanaryState::Passed => continue,
            CanaryState::Updating => needed.saturating_sub(r.passed).saturating_sub(flying),
            CanaryState::Soaking | CanaryState::Failed => 0,
        };
        allowance.0.insert(r.version.clone(), left as usize);
    }
    trim(list);
    allowance
}

fn set(r: &mut CanaryStatus, state: CanaryState, now: Timestamp, message: String) {
    r.state = state;
    r.since = Time(now);
    r.message = message;
    if state != CanaryState::Soaking {
        r.soak_until = None;
    }
}

/// Keeps at most [`CANARIES_MAX`]: the oldest passed ones go first.
fn trim(list: &mut Vec<CanaryStatus>) {
    while list.len() > CANARIES_MAX {
        let i = list.iter().position(|r| r.state == CanaryState::Passed).unwrap_or(0);
        list.remove(i);
    }
}

/// Lists `node` among the canaries of `version` if its canary is under way.
pub(super) fn note_grant(list: &mut [CanaryStatus], version: &str, node: &str) {
    if let Some(r) = list.iter_mut().find(|r| r.version == version && r.state == CanaryState::Updating)
        && r.nodes.len() < CANARY_NODES_LISTED
        && !r.nodes.iter().any(|n| n == node)
    {
        r.nodes.push(node.to_owned());
    }
}

/// A counted failure of a walk to `version`: if that version's canary is
/// under way, it failed (the rollout stops).
pub(super) fn fail(list: &mut [CanaryStatus], version: &str, failure: &RecordedFailure, now: Timestamp) {
    if let Some(r) = list.iter_mut().find(|r| r.version == version && r.state == CanaryState::Updating) {
        let m = format!(
            "canary of {version} failed on {}: {}: {}; the rollout stopped: set spec.resumeRequest to a new value to try the canary again",
            failure.node, failure.reason, failure.message
        );
        set(r, CanaryState::Failed, now, m);
    }
}

/// A resume request: every failed canary is tried again.
pub(super) fn resume(list: &mut [CanaryStatus], now: Timestamp) {
    for r in list.iter_mut().filter(|r| r.state == CanaryState::Failed) {
        r.nodes.clear();
        let m = format!("canary of {} resumed: its canary nodes update again", r.version);
        set(r, CanaryState::Updating, now, m);
    }
}

/// The failed canary that stops the rollout, if any.
pub(super) fn failed(list: &[CanaryStatus]) -> Option<&CanaryStatus> {
    list.iter().find(|r| r.state == CanaryState::Failed)
}

/// One clause for the status message while grants run: the first canary
/// under way or soaking.
pub(super) fn summary(list: &[CanaryStatus]) -> Option<String> {
    list.iter().find_map(|r| match r.state {
        CanaryState::Updating => Some(format!("canary of {}: {} of {} passed", r.version, r.passed, r.needed)),
        CanaryState::Soaking => Some(format!(
            "canary of {} soaking until {}",
            r.version,
            r.soak_until.as_ref().map_or_else(|| "?".to_owned(), |t| t.0.to_string())
        )),
        CanaryState::Passed | CanaryState::Failed => None,
    })
}

/// When a soak ends.
pub(super) fn wake_at(list: &[CanaryStatus]) -> impl Iterator<Item = Timestamp> + '_ {
    list.iter().filter(|r| r.state == CanaryState::Soaking).filter_map(|r| r.soak_until.as_ref().map(|t| t.0))
}
