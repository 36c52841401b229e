//! The agent's state machine, as one pure function: [`decide`].
//!
//! Input: what the agent observes right now (its shadow, its slot Lease, its
//! Node, its host), what it remembers since it started ([`Memory`], lost on a
//! restart, so nothing here *depends* on it for safety), its configuration
//! and the time. Output: the one next [`Step`] to take. The agent's runtime
//! executes the step, observes again and asks again; after a crash or a
//! reboot it starts from an empty memory and resumes from what it observes.
//!
//! This module must not do I/O, read the clock or the environment.
//!
//! The walk (docs/protocol.md section 4): `Idle` → (granted) refresh,
//! prepare, activate → `StagedAndPerformedUpdate` → cordon (fenced), drain
//! rounds (fenced), reboot (lease extended first) → `RebootedIntoUpdate` →
//! uncordon → `MonitoringUpdate` → health checks (the node and the pods it
//! ran before the drain Ready) → `Idle` → release. A failure
//! starts an abort: deactivate if not rebooted, uncordon, report `ErrorReset`,
//! release.

use std::time::Duration;

use jiff::Timestamp;
use model::wire::{FailureReport, StatusReport};
use model::{BottlerocketShadow, FailureReason, ShadowState};

mod health;
mod learn;
#[cfg(test)]
mod tests;
mod walk;

pub use health::{SeenPod, judge, must_not_disrupt, record};
pub use learn::{Outcome, learn, observe};

/// The slot Lease named by the shadow's spec, as last observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnLease {
    pub name: String,
    pub holder: Option<String>,
    /// `renewTime + leaseDurationSeconds`, by the cluster's clocks.
    pub expires: Option<Timestamp>,
}

/// The agent's own Node, as last observed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OwnNode {
    pub ready: bool,
    pub unschedulable: bool,
    /// Our cordon annotation is present.
    pub cordoned_by_us: bool,
    /// When we cordoned it (the annotation's value), if known.
    pub cordoned_at: Option<Timestamp>,
    /// The load-balancer exclusion label is present (ours or a person's).
    pub excluded: bool,
    /// Our load-balancer exclusion annotation is present.
    pub excluded_by_us: bool,
    pub opted_out: bool,
    /// The kubelet's boot ID (`status.nodeInfo.bootID`).
    pub boot_id: Option<String>,
    /// The boot ID a person released a pending reboot for (annotation).
    pub reboot_released: Option<String>,
    /// The reboot hooks' record on the Node (what ran, since when).
    pub hooks: Option<model::hooks::Marks>,
    /// The Node's annotations (a hook waits for one of them).
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// The host's update state (`/updates/status`), reduced to what decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostUpdateState {
    Idle,
    Available,
    Staged,
    Ready,
}

/// The host, as read at the start of this step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnHost {
    /// `/os` `version_id`: the running version.
    pub version: String,
    /// `/updates/status`, or `None` while it is uninitialized (404 after
    /// boot) or unreadable because a command holds the update lock.
    pub update: Option<HostUpdate>,
    /// A command holds the host's update lock: its status reads kept
    /// answering 423, so where the update stands is unknown until it ends.
    pub busy: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostUpdate {
    pub state: HostUpdateState,
    /// `chosen_update.version`.
    pub chosen: Option<String>,
    /// `staging_partition`: version and `next_to_boot`.
    pub staged: Option<(String, bool)>,
}

/// Everything the agent observes, at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    pub node_name: &'a str,
    pub shadow: Option<&'a BottlerocketShadow>,
    pub lease: Option<&'a OwnLease>,
    pub node: Option<&'a OwnNode>,
    pub host: &'a OwnHost,
}

/// What the agent remembers since it started. Empty after a restart: the
/// machine then re-establishes it (renews before trusting its lease, drains
/// again, which is idempotent). Only [`observe`] and [`learn`] change it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Local knowledge of the slot: valid until, by the agent's clock, from its
    /// last successful renewal (request sent time + granted duration).
    pub lease_valid_until: Option<Timestamp>,
    /// The slot that `lease_valid_until` is about.
    pub lease_slot: Option<String>,
    /// The duration asked for at that renewal (the reboot's asks for the
    /// reboot grace).
    pub lease_asked: Option<Duration>,
    /// The grant this walk follows (the spec's slot and its transition time):
    /// a new grant starts a new walk.
    pub grant: Option<(Option<String>, Option<Timestamp>)>,
    /// Consecutive errors of host steps while holding a slot.
    pub host_failures: u32,
    /// Seeds the spread of update checks (from the node name).
    pub check_seed: u64,
    /// Last successful `refresh-updates`.
    pub last_refresh: Option<Timestamp>,
    /// When the next periodic update check is due (jittered by the runtime).
    pub next_update_check: Option<Timestamp>,
    /// First drain round of this walk.
    pub drain_started: Option<Timestamp>,
    /// Last drain round: when, pods remaining, pods blocked by a PDB.
    pub last_drain: Option<(Timestamp, u32, u32)>,
    /// Drain rounds of this walk so far.
    pub drain_rounds: u32,
    /// When the reboot was requested.
    pub reboot_requested: Option<Timestamp>,
    /// The pods on the node as last listed for the record before the drain
    /// (step [`Step::RecordPods`]), and when.
    pub pods_listed: Option<(Timestamp, Vec<SeenPod>)>,
    /// The pods on the node at the last health check after the reboot, and when.
    pub health: Option<(Timestamp, Vec<SeenPod>)>,
    /// Health checks of this walk so far (their pauses grow).
    pub health_checks: u32,
    /// The slot this agent last saw itself hold, until it releases it. An
    /// abort releases it even when the Lease is no longer in view (the spec
    /// stopped naming it): the authproxy answers `released: false` if it is
    /// not ours any more.
    pub holding: Option<String>,
    /// A failure being undone.
    pub aborting: Option<(FailureReason, String)>,
    /// Deactivating kept failing during this abort: go on without it (the
    /// failure message says so) rather than keep the node and its slot.
    pub skip_deactivate: bool,
    /// Since when a command has held the host's update lock (status reads
    /// answer 423), as first seen by this agent.
    pub host_busy_since: Option<Timestamp>,
}

impl Memory {
    /// The memory of an agent for `node` that starts at `now`: it checks for
    /// updates at once.
    pub fn new(node: &str, now: Timestamp) -> Memory {
        Memory { next_update_check: Some(now), check_seed: learn::seed(node), ..Memory::default() }
    }
}

/// The agent's settings (durations from its flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkSettings {
    /// Duration asked for at each regular renewal; renewed every third of it.
    pub slot_lease: Duration,
    /// Lease extension before rebooting: the longest the node may be down.
    pub reboot_grace: Duration,
    /// How long the agent waits for the reboot to happen after asking for it.
    pub reboot_timeout: Duration,
    pub drain_timeout: Duration,
    /// Pause between drain rounds while pods remain.
    pub drain_interval: Duration,
    /// Lease time that must remain for a cordon or a drain round.
    pub step_margin: Duration,
    /// After the reboot: the longest wait for the node and its pods to be Ready.
    pub health_timeout: Duration,
    /// After the reboot: the least the node is watched.
    pub health_minimum: Duration,
    /// Longest pause between health checks.
    pub health_poll_interval: Duration,
    /// Pods never judged (label selector; empty: none).
    pub health_ignore_pod_selector: String,
    /// Pods the drain leaves on the node (label selector; empty: none).
    pub drain_skip_pod_selector: String,
    /// The grace period each Eviction asks for (`None`: each pod's own).
    pub drain_grace_period_seconds: Option<i64>,
    /// The longest wait before the cordon for pods that must not be disrupted.
    pub do_not_disrupt_timeout: Duration,
    /// Wait after the load-balancer exclusion before the first eviction.
    pub load_balancer_wait: Duration,
    /// The granted reboot hooks (none from flags).
    pub hooks: Option<model::walk::HooksSpec>,
    /// Opt-in (policy only): delete pods a PodDisruptionBudget still keeps
    /// this long after the drain began.
    pub delete_blocked_pods_after: Option<Duration>,
    pub node_backoff: Duration,
    pub node_backoff_max: Duration,
    pub exclude_from_load_balancers: bool,
    /// How often the host is asked for new updates (±10%).
    pub update_check_interval: Duration,
    /// Deadline of one host command; also how long a walk waits for a
    /// command it did not start (after a restart) to let go of the lock.
    pub host_command_timeout: Duration,
}

impl WalkSettings {
    /// The settings of a walk granted with `walk` (shadow `spec.walk`): each
    /// value set there replaces the flag's. A value that does not read (the
    /// leader checks them before it grants) leaves the flag's.
    pub fn granted(&self, walk: Option<&model::walk::WalkSpec>) -> WalkSettings {
        let mut cfg = self.clone();
        let Some(walk) = walk else {
            return cfg;
        };
        let dur = |v: &Option<String>, into: &mut Duration| {
            if let Some(d) = v.as_deref().and_then(|s| model::parse::duration(s).ok()) {
                *into = d;
            }
        };
        let sel = |v: &Option<String>, into: &mut String| {
            if let Some(s) = v.as_deref().filter(|s| model::selector::parse(s).is_ok()) {
                s.clone_into(into);
            }
        };
        if let Some(h) = &walk.health {
            dur(&h.timeout, &mut cfg.health_timeout);
            dur(&h.minimum, &mut cfg.health_minimum);
            sel(&h.ignore_pod_selector, &mut cfg.health_ignore_pod_selector);
        }
        cfg.hooks.clone_from(&walk.hooks);
        if let Some(d) = &walk.drain {
            dur(&d.timeout, &mut cfg.drain_timeout);
            dur(&d.do_not_disrupt_timeout, &mut cfg.do_not_disrupt_timeout);
            dur(&d.load_balancer_wait, &mut cfg.load_balancer_wait);
            cfg.delete_blocked_pods_after =
                d.delete_blocked_pods_after.as_deref().and_then(|s| model::parse::duration(s).ok());
            sel(&d.skip_pod_selector, &mut cfg.drain_skip_pod_selector);
            if let Some(g) = d.grace_period_seconds.filter(|g| (0..=model::walk::GRACE_PERIOD_MAX_SECONDS).contains(g))
            {
                cfg.drain_grace_period_seconds = Some(g);
            }
        }
        cfg
    }
}

/// The one next thing to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `refresh-updates` on the host.
    Refresh,
    /// Write the status.
    Report(StatusReport),
    /// Write the status and ask for a slot, in one request.
    RequestSlot(StatusReport),
    Prepare,
    Activate,
    Deactivate,
    /// Renew the slot for `duration`.
    Renew {
        slot: String,
        duration: Duration,
    },
    /// Fenced cordon (the authproxy checks the slot).
    Cordon {
        slot: String,
        min_remaining: Duration,
        exclude_from_load_balancers: bool,
    },
    /// One fenced drain round.
    Drain {
        slot: String,
        min_remaining: Duration,
        /// Pods not to evict (label selector; empty: none).
        skip_pod_selector: String,
        grace_period_seconds: Option<i64>,
        /// Delete the pods a PodDisruptionBudget keeps (opted in, and due).
        delete_blocked: bool,
    },
    /// Reboot the host. Only ever decided right after a renewal for the
    /// reboot grace that the authproxy granted (section 4, reboot).
    Reboot {
        slot: String,
    },
    /// List the pods on the node, to record which ran before the drain.
    RecordPods,
    /// List the pods on the node, to judge them after the reboot.
    CheckHealth,
    /// Run the granted reboot hook of `phase` (fenced): set its marks on
    /// the Node and remove the annotation it waits for (`clears`).
    Hook {
        slot: String,
        phase: model::walk::HookPhase,
        min_remaining: Duration,
        clears: Option<String>,
    },
    /// Remove every reboot hook mark from the Node.
    ClearHooks,
    /// Lift our cordon and load-balancer exclusion.
    Uncordon,
    Release {
        slot: String,
    },
    /// Start undoing the walk because of this failure.
    Fail {
        reason: FailureReason,
        message: String,
    },
    /// The abort is complete (status reported, slot released).
    AbortDone,
    /// Nothing to do until something changes or `until`.
    Wait {
        until: Option<Timestamp>,
        why: String,
    },
}

pub(crate) fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// The slot this node holds now, if the shadow grants it and the Lease agrees.
pub fn granted_slot<'a>(o: &Observation<'a>, now: Timestamp) -> Option<&'a str> {
    held_slot(o.node_name, o.shadow, o.lease, now)
}

/// [`granted_slot`] from the node's name, shadow and slot Lease alone.
pub fn held_slot<'a>(
    node_name: &str,
    shadow: Option<&'a BottlerocketShadow>,
    lease: Option<&OwnLease>,
    now: Timestamp,
) -> Option<&'a str> {
    let shadow = shadow?;
    let slot = shadow.spec.slot.as_deref()?;
    if shadow.spec.state != ShadowState::StagedAndPerformedUpdate || shadow.spec.version.is_none() {
        return None;
    }
    let lease = lease.filter(|l| l.name == slot)?;
    let mine = lease.holder.as_deref() == Some(node_name);
    let valid = lease.expires.is_some_and(|e| e > now);
    (mine && valid).then_some(slot)
}

/// When the slot must next be renewed (section 4, renewals).
#[derive(Clone, Debug, PartialEq)]
pub enum Renewal {
    /// The node holds no slot.
    NotHeld,
    /// Renew now.
    Due(Step),
    /// The next renewal is due at this time.
    At(Timestamp),
}

/// The renewal rule: while the node holds its slot, renew it when a third of
/// the lease is used. What the agent renewed itself is what it trusts;
/// before its first renewal (after a grant or a restart) it trusts the
/// Lease as observed, whose expiry the cluster set. This is the whole rule,
/// whatever the agent is doing meanwhile: the runtime asks it between steps
/// and *during* long ones (a host command, a host read, a wait), so no step
/// lets a live agent's slot lapse. Disruptive steps are fenced by the
/// authproxy anyway.
pub fn renewal(
    node_name: &str,
    shadow: Option<&BottlerocketShadow>,
    lease: Option<&OwnLease>,
    mem: &Memory,
    cfg: &WalkSettings,
    now: Timestamp,
) -> Renewal {
    let Some(slot) = held_slot(node_name, shadow, lease, now) else {
        return Renewal::NotHeld;
    };
    let renew_before = cfg.slot_lease.mul_f64(2.0 / 3.0);
    let known = mem.lease_slot.as_deref() == Some(slot);
    let observed = lease.filter(|l| l.name == slot).and_then(|l| l.expires);
    match mem.lease_valid_until.filter(|_| known).or(observed) {
        Some(until) => {
            let due = sub(until, renew_before);
            if now < due { Renewal::At(due) } else { Renewal::Due(renew_step(slot, cfg.slot_lease)) }
        }
        None => Renewal::Due(renew_step(slot, cfg.slot_lease)),
    }
}

fn renew_step(slot: &str, duration: Duration) -> Step {
    Step::Renew { slot: slot.to_owned(), duration }
}

pub(crate) fn sub(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d).ok().and_then(|d| t.checked_sub(d).ok()).unwrap_or(Timestamp::MIN)
}

/// The status the agent would report while resting.
fn resting_report(o: &Observation<'_>, state: ShadowState) -> StatusReport {
    let target = o.host.update.as_ref().and_then(|u| u.chosen.clone()).filter(|t| *t != o.host.version);
    StatusReport {
        state,
        current_version: o.host.version.clone(),
        target_version: target,
        failure: None,
        reboot_pending_boot_id: None,
        pods_before_drain: None,
    }
}

/// Whether the shadow's status already says what `report` says.
fn reported(o: &Observation<'_>, report: &StatusReport) -> bool {
    o.shadow.and_then(|s| s.status.as_ref()).is_some_and(|s| {
        s.current_state == report.state
            && s.current_version == report.current_version
            && s.offered_version() == report.target_version.as_deref().filter(|t| *t != report.current_version)
            && s.reboot_pending.as_ref().map(|p| &p.boot_id) == report.reboot_pending_boot_id.as_ref()
    })
}

/// The agent's next step. See the module documentation.
pub fn decide(o: &Observation<'_>, mem: &Memory, cfg: &WalkSettings, now: Timestamp) -> Step {
    if let Some((reason, message)) = &mem.aborting {
        return walk::abort(o, mem, *reason, message, now);
    }
    if o.host.busy && granted_slot(o, now).is_none() {
        // A command runs (a periodic update check, or one a crashed agent
        // started): nothing to decide about the host until it ends.
        return Step::Wait { until: Some(now), why: "a host command holds the update lock".to_owned() };
    }
    // The host's update status is lost on every boot: initialize it first,
    // except while the node holds its slot and runs the granted version: the
    // rest of that walk looks only at the running version, and the slot is
    // not kept waiting for a refresh (the status is initialized once the
    // node rests).
    let booted_granted = || {
        o.shadow.and_then(|s| s.spec.version.as_deref()) == Some(o.host.version.as_str())
            && granted_slot(o, now).is_some()
    };
    if o.host.update.is_none() && !o.host.busy && !booted_granted() {
        return Step::Refresh;
    }
    let Some(shadow) = o.shadow else {
        return Step::Report(resting_report(o, ShadowState::Idle));
    };
    let state = shadow.status.as_ref().map_or(ShadowState::Idle, |s| s.current_state);
    match granted_slot(o, now) {
        Some(slot) => {
            // The walk follows the settings granted with its slot.
            let walk_cfg = cfg.granted(shadow.spec.walk.as_ref());
            match renewal(o.node_name, o.shadow, o.lease, mem, cfg, now) {
                Renewal::Due(renew) => renew,
                // A wait never outlasts the next renewal.
                Renewal::At(due) => match walk::granted(o, mem, &walk_cfg, now, slot, state) {
                    Step::Wait { until, why } => Step::Wait { until: Some(until.map_or(due, |u| u.min(due))), why },
                    step => step,
                },
                Renewal::NotHeld => walk::granted(o, mem, &walk_cfg, now, slot, state),
            }
        }
        None if state.is_updating() => Step::Fail { reason: FailureReason::SlotLost, message: lost_message(o, now) },
        None => resting(o, shadow, mem, cfg, now, state),
    }
}

fn lost_message(o: &Observation<'_>, now: Timestamp) -> String {
    let spec_slot = o.shadow.and_then(|s| s.spec.slot.clone());
    match (spec_slot, o.lease) {
        (None, _) => "the leader withdrew the grant (shadow spec names no slot)".to_owned(),
        (Some(s), None) => format!("slot {s} could not be read"),
        (Some(s), Some(l)) if l.holder.as_deref() != Some(o.node_name) => {
            format!("slot {s} is held by {}", l.holder.as_deref().unwrap_or("nobody"))
        }
        (Some(s), Some(l)) => format!(
            "slot {s} expired at {}, now is {now}",
            l.expires.map_or_else(|| "an unknown time".to_owned(), |t| t.to_string())
        ),
    }
}

/// Not granted and not walking: tidy up, report, ask for a slot when there is
/// something to update to.
fn resting(
    o: &Observation<'_>,
    shadow: &BottlerocketShadow,
    mem: &Memory,
    cfg: &WalkSettings,
    now: Timestamp,
    state: ShadowState,
) -> Step {
    let node = o.node.cloned().unwrap_or_default();
    // A pending reboot keeps our cordon even without the slot (it expired
    // while the agent was away): the host may still reboot.
    if walk::reboot_pending(o) {
        return walk::pending_wait();
    }
    // Leftovers of a walk that was interrupted.
    if node.cordoned_by_us || node.excluded_by_us {
        return Step::Uncordon;
    }
    if node.hooks.is_some() {
        return Step::ClearHooks;
    }
    if o.host.update.as_ref().is_some_and(|u| u.state == HostUpdateState::Ready) {
        return Step::Deactivate;
    }
    if let Some(lease) = o.lease
        && lease.holder.as_deref() == Some(o.node_name)
        && shadow.spec.slot.as_deref() != Some(lease.name.as_str())
    {
        return Step::Release { slot: lease.name.clone() };
    }
    let status = shadow.status.as_ref();
    let report = resting_report(o, state);
    // Periodic update check.
    if mem.next_update_check.is_some_and(|t| t <= now) {
        return Step::Refresh;
    }
    let next_check = mem.next_update_check;
    if state == ShadowState::ErrorReset {
        // The leader must count the failure before the node tries again.
        if shadow.unacknowledged_failure().is_some() {
            return wait_or_report(o, report, None, "waiting for the leader to acknowledge the failure");
        }
        if report.target_version.is_some()
            && let Some(until) = node_backoff_until(shadow, cfg).filter(|t| *t > now)
        {
            let until = until.min(next_check.unwrap_or(until));
            return wait_or_report(o, report, Some(until), "node backing off after a failure");
        }
        return Step::Report(resting_report(o, ShadowState::Idle));
    }
    if report.target_version.is_some() && !node.opted_out {
        let requested = status.is_some_and(|s| s.slot_requested_at.is_some());
        if !requested || !reported(o, &report) {
            return Step::RequestSlot(report);
        }
        return Step::Wait { until: next_check, why: "waiting for a slot".to_owned() };
    }
    let why = if node.opted_out { "node opted out" } else { "up to date" };
    wait_or_report(o, report, next_check, why)
}

fn wait_or_report(o: &Observation<'_>, report: StatusReport, until: Option<Timestamp>, why: &str) -> Step {
    if reported(o, &report) { Step::Wait { until, why: why.to_owned() } } else { Step::Report(report) }
}

/// When a node that failed for a node-only reason may ask again.
fn node_backoff_until(shadow: &BottlerocketShadow, cfg: &WalkSettings) -> Option<Timestamp> {
    let status = shadow.status.as_ref()?;
    let failure = status.last_failure.as_ref()?;
    if failure.reason.halts_fleet() {
        return None;
    }
    let exp = status.crash_count.saturating_sub(1).min(20);
    let wait = cfg.node_backoff.checked_mul(1 << exp).unwrap_or(cfg.node_backoff_max).min(cfg.node_backoff_max);
    Some(add(failure.time.0, wait))
}

/// A failure report for this shadow: `ErrorReset` with the next failure id.
/// A retry before the status changed computes the same id, so the authproxy
/// treats it as the same failure.
pub(crate) fn failure_report(o: &Observation<'_>, reason: FailureReason, message: &str) -> StatusReport {
    let id = o.shadow.map_or(1, BottlerocketShadow::next_failure_id);
    let mut report = resting_report(o, ShadowState::ErrorReset);
    report.failure = Some(FailureReport { id, reason, message: message.to_owned() });
    report
}
