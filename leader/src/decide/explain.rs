//! Why each managed node is or is not granted now: the decision itself,
//! asked to say what held each node back ([`super::explain`]). The leader
//! never asks (its passes pay nothing for it); `kubectl brupop plan` and
//! `explain` do, from a snapshot, so what they say is what the leader's
//! next pass decides, from the same code.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The rule that holds a managed node back, in the order the decision
/// applies them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Hold {
    /// No BottlerocketShadow, or one without status: its agent has not reported.
    NotReported,
    /// Its host offers no newer version.
    NoNewerVersion,
    /// A newer version is offered but its agent is not asking for a slot
    /// (it backs off after a failure of its own, or has not asked yet).
    NotAsking,
    /// It is updating (holds a slot, or its walk is not at rest).
    Updating {
        state: String,
    },
    /// Its last failure is not yet counted and acknowledged by the leader.
    FailureNotAcknowledged,
    NotReady,
    /// Annotation `brupop.bottlerocket.aws/opt-out=true`.
    OptedOut,
    /// Cordoned by an administrator (`updateCordonedNodes` is false).
    AdminCordon,
    /// It held a slot past `maxSlotHold`; nothing for it until then.
    BackedOff {
        until: Timestamp,
    },
    /// Its version is younger than `minReleaseAge`.
    TooYoung {
        version: String,
        until: Option<Timestamp>,
    },
    /// Grants do not run (paused, outside a window, halted, stopped, blocked, invalid).
    Phase {
        phase: String,
    },
    /// Its version's canary holds it (canary nodes updating, or soaking).
    Canary {
        version: String,
        state: String,
        until: Option<Timestamp>,
    },
    /// Its zone has as many nodes unavailable as it may, or another zone goes first.
    Zone {
        zone: String,
    },
    /// It waits its turn: every free slot goes to a node before it.
    NoFreeSlot {
        position: usize,
    },
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::NotReported => write!(f, "its agent has not reported (no shadow status)"),
            Hold::NoNewerVersion => write!(f, "no newer version offered by its host"),
            Hold::NotAsking => write!(f, "a newer version is offered, but its agent is not asking for a slot"),
            Hold::Updating { state } if state == "Idle" => write!(f, "granted: its walk is starting"),
            Hold::Updating { state } => write!(f, "updating ({state})"),
            Hold::FailureNotAcknowledged => write!(f, "its last failure is not yet acknowledged by the leader"),
            Hold::NotReady => write!(f, "not Ready"),
            Hold::OptedOut => write!(f, "opted out (annotation brupop.bottlerocket.aws/opt-out)"),
            Hold::AdminCordon => write!(f, "cordoned by an administrator (spec.updateCordonedNodes is false)"),
            Hold::BackedOff { until } => write!(f, "backed off until {until} (held a slot past maxSlotHold)"),
            Hold::TooYoung { version, until: Some(t) } => {
                write!(f, "{version} is granted from {t} (spec.minReleaseAge)")
            }
            Hold::TooYoung { version, until: None } => write!(f, "{version} is too young (spec.minReleaseAge)"),
            Hold::Phase { phase } => write!(f, "grants do not run: {phase}"),
            Hold::Canary { version, state, until: Some(t) } => {
                write!(f, "canary of {version} {state} until {t}")
            }
            Hold::Canary { version, state, until: None } => write!(f, "canary of {version} {state}"),
            Hold::Zone { zone } => write!(f, "zone {zone:?} is at its limit, or another zone goes first"),
            Hold::NoFreeSlot { position } => write!(f, "waiting its turn: number {position} in the queue"),
        }
    }
}

/// What [`super::explain`] says about every managed node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The nodes this pass grants, with the version, in serving order.
    pub granted: Vec<(String, String)>,
    /// Every node that asks and may be granted, in serving order (the
    /// granted ones first): who is next. While grants do not run, the
    /// order they would be served in once they do (each also held by
    /// `Phase`).
    pub queue: Vec<String>,
    /// Every other managed node, and what holds it back.
    pub held: BTreeMap<String, Hold>,
}
