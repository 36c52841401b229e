//! The agent's runtime: observe (host reads, watch caches) → decide
//! ([`crate::machine::decide`]) → execute one step → remember what it
//! learned → again. It waits only on watch events and real deadlines (the
//! next renewal, a drain round, the end of monitoring, the update check).
//!
//! One [`Agent`] drives one node; several can run in one process (the scale
//! benchmark's fleet mode), each with its own clients and identity.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use model::BottlerocketShadow;
use model::names;
use model::wire::{CordonRequest, DrainRequest, ShadowReply, SlotReply};
use runtime::cache::Source;
use tokio_util::sync::CancellationToken;

use crate::cluster::{self, Watches};
use crate::hostapi::{AsyncHostApi, CommandTimestamp, CommandType, Failure, HostStatus};
use crate::machine::{self, Memory, Observation, Outcome, OwnHost, Renewal, Step};
use crate::metrics::Metrics;
use crate::proxy::{Proxy, ProxyError};

/// Everything one agent needs.
pub struct Agent {
    pub node: String,
    pub machine: machine::WalkSettings,
    pub host: AsyncHostApi,
    pub proxy: Proxy,
    pub client: kube::Client,
    pub watches: Watches,
    pub metrics: Metrics,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("node", &self.node).finish_non_exhaustive()
    }
}

/// What the agent knows of its host's commands between reads.
#[derive(Debug, Default)]
struct HostCtx {
    /// The timestamp of the last command the agent saw finish (or read).
    last_command: Option<CommandTimestamp>,
    /// The status a command just finished with, if the last step ran one.
    after: Option<HostStatus>,
}

/// Why a step could not be carried out (the loop backs off and decides again).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Host(#[from] crate::hostapi::Error),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("listing the node's pods: {0}")]
    Pods(kube::Error),
}

impl StepError {
    /// What the state machine learns from this error.
    fn outcome(&self) -> Outcome {
        match self {
            StepError::Host(h) => {
                Outcome::HostError { reason: h.failure_reason(), message: h.to_string(), final_now: h.is_final() }
            }
            StepError::Proxy(p) if p.is_not_holder() => Outcome::NotHolder,
            StepError::Proxy(p) if p.is_too_short() => Outcome::LeaseTooShort,
            StepError::Proxy(_) | StepError::Pods(_) => Outcome::Error,
        }
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A host view is used again after a cluster step only if that step took
/// less than this (the host may change by itself: a crash, a reboot).
const HOST_VIEW_REUSE: Duration = Duration::from_secs(1);

mod views;

use views::*;

fn add(t: Timestamp, d: Duration) -> Timestamp {
    machine::add(t, d)
}

/// The time from now until `t` (zero if it passed).
fn until_from_now(t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
}

impl Agent {
    /// Reads the running version and the update status. A status that stays
    /// locked (423) past the lock deadline means a command runs: the view
    /// says the host is busy rather than failing.
    async fn read_host(&self) -> Result<(OwnHost, Option<CommandTimestamp>), crate::hostapi::Error> {
        let os = self.host.os().await?;
        let status = match self.host.status().await {
            Ok(status) => status,
            Err(e) if matches!(e.failure(), Failure::LockHeld { .. }) => {
                tracing::info!(node = %self.node, error = %e, "a host command holds the update lock");
                return Ok((OwnHost { version: os.version_id, update: None, busy: true }, None));
            }
            Err(e) => return Err(e),
        };
        let last = status.last_command_timestamp().cloned();
        Ok((OwnHost { version: os.version_id, update: host_update(&status), busy: false }, last))
    }

    /// Runs until `shutdown`. Between steps only: a step in flight is
    /// abandoned safely (every step is idempotent and the walk resumes).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut synced = self.watches.views.synced.clone();
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = synced.wait_for(|s| *s) => {}
        }
        tracing::info!(node = %self.node, "agent watching its shadow, slot and node");
        let mut mem = Memory::new(&self.node, Timestamp::now());
        let mut backoff = MIN_BACKOFF;
        let mut host_down_since: Option<std::time::Instant> = None;
        // The host as read before a step that did not touch it: the next
        // decision uses it instead of reading the host again (most steps of
        // a walk are cluster steps; each read is two host requests).
        let mut still_current: Option<OwnHost> = None;
        let mut host_ctx = HostCtx::default();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let read = match still_current.take() {
                Some(h) => Ok(h),
                None => match self.while_renewing(self.read_host(), &mut mem, &shutdown).await {
                    None => break,
                    Some(r) => r.map(|(h, last)| {
                        if !h.busy {
                            host_ctx.last_command = last;
                        }
                        h
                    }),
                },
            };
            let host = match read {
                Ok(h) => {
                    host_down_since = None;
                    h
                }
                Err(e)
                    if mem.reboot_requested.is_some()
                        && host_down_since.is_none_or(|t| t.elapsed() < self.machine.reboot_timeout) =>
                {
                    // The host is rebooting, as asked: expected, not an error.
                    // Look again soon (the node is waiting on us) and say so once.
                    if host_down_since.is_none() {
                        host_down_since = Some(std::time::Instant::now());
                        tracing::info!(node = %self.node, error = %e, "waiting for the host to come back from its reboot");
                    }
                    let down_for = host_down_since.map_or(Duration::ZERO, |t| t.elapsed());
                    let pause = self.host.blocking().config().poll.delay(down_for);
                    self.pause(pause, &mem, &shutdown).await;
                    continue;
                }
                Err(e) => {
                    self.metrics.host_errors.with_label_values(&[&e.label()]).inc();
                    tracing::warn!(node = %self.node, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot read the host");
                    self.pause(backoff, &mem, &shutdown).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let shadow = self.watches.views.shadow.borrow().clone();
            // Until the watch of the slot the shadow names has listed, the
            // Lease is unknown, not absent: never conclude the slot is lost.
            let slot = shadow.as_ref().and_then(|s| s.spec.slot.clone());
            if slot.is_some() && *self.watches.views.lease_synced.borrow() != slot {
                self.sleep_until(Some(add(Timestamp::now(), Duration::from_secs(5))), &shutdown).await;
                continue;
            }
            let lease = self.watches.views.lease.borrow().as_ref().and_then(lease_view);
            let node = self.watches.views.node.borrow().as_ref().map(node_view);
            let now = Timestamp::now();
            let obs = Observation {
                node_name: &self.node,
                shadow: shadow.as_ref(),
                lease: lease.as_ref(),
                node: node.as_ref(),
                host: &host,
            };
            machine::observe(&mut mem, &obs, now);
            self.metrics.holding_slot.set(i64::from(machine::granted_slot(&obs, now).is_some()));
            let step = machine::decide(&obs, &mem, &self.machine, now);
            let label = step_label(&step);
            if let Step::Wait { until, why } = &step {
                tracing::debug!(node = %self.node, why = %why, until = until.map(|t| t.to_string()), "waiting");
                self.sleep_until(*until, &shutdown).await;
                continue;
            }
            self.metrics.steps.with_label_values(&[label]).inc();
            tracing::info!(node = %self.node, step = label, detail = describe(&step), "step");
            let started = std::time::Instant::now();
            let aborting = mem.aborting.is_some();
            let outcome = match self.execute(&step, &mut mem, &mut host_ctx, &shutdown).await {
                None => break,
                Some(Ok(outcome)) => outcome,
                Some(Err(e)) => {
                    self.note_error(&e);
                    tracing::warn!(node = %self.node, step = label, error = %e, "step failed");
                    e.outcome()
                }
            };
            machine::learn(&mut mem, &step, &outcome, &self.machine, Timestamp::now());
            let after = host_ctx.after.take();
            match outcome {
                Outcome::HostError { .. } | Outcome::Error | Outcome::NotHolder | Outcome::LeaseTooShort => {
                    // A walk that just started its abort goes on at once.
                    if mem.aborting.is_some() && !aborting {
                        continue;
                    }
                    tracing::debug!(node = %self.node, retry_in_ms = backoff.as_millis() as u64, "retrying after a failed step");
                    self.pause(backoff, &mem, &shutdown).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                _ => {
                    backoff = MIN_BACKOFF;
                    if let Some(status) = after {
                        // A command finished: its final status is the host's
                        // update status now; the running version is unchanged.
                        still_current = Some(OwnHost { update: host_update(&status), ..host });
                    } else if leaves_the_host_alone(&step) && started.elapsed() < HOST_VIEW_REUSE {
                        still_current = Some(host);
                    }
                }
            }
        }
        tracing::info!(node = %self.node, "agent stopped; the walk resumes from cluster and host state on restart");
    }

    fn note_error(&self, e: &StepError) {
        match e {
            StepError::Host(h) => self.metrics.host_errors.with_label_values(&[&h.label()]).inc(),
            StepError::Proxy(p) => self.metrics.proxy_errors.with_label_values(&[&p.label()]).inc(),
            StepError::Pods(_) => {}
        }
    }

    /// The renewal the state machine asks for now, from the current watches.
    fn renewal(&self, mem: &Memory) -> Renewal {
        let shadow = self.watches.views.shadow.borrow().clone();
        let lease = self.watches.views.lease.borrow().as_ref().and_then(lease_view);
        machine::renewal(&self.node, shadow.as_ref(), lease.as_ref(), mem, &self.machine, Timestamp::now())
    }

    /// Awaits `work` (a host command or read, which may take minutes)
    /// while renewing the slot whenever the state machine says so, so a
    /// long step never lets a live agent's slot lapse. `None` on shutdown.
    async fn while_renewing<T>(
        &self,
        work: impl std::future::Future<Output = T>,
        mem: &mut Memory,
        shutdown: &CancellationToken,
    ) -> Option<T> {
        tokio::pin!(work);
        let mut retry = MIN_BACKOFF;
        let mut not_before: Option<Timestamp> = None;
        loop {
            let renewal = self.renewal(mem);
            let now = Timestamp::now();
            let wake = match renewal {
                Renewal::Due(step @ Step::Renew { .. }) if not_before.is_none_or(|t| t <= now) => {
                    // The work goes on meanwhile (host calls run on their own
                    // threads); only its answer waits for the renewal.
                    let outcome = match self.execute_renew(&step).await {
                        Ok(o) => o,
                        Err(e) => {
                            self.note_error(&e);
                            tracing::warn!(node = %self.node, error = %e, "renewing the slot during a host step failed");
                            e.outcome()
                        }
                    };
                    machine::learn(mem, &step, &outcome, &self.machine, Timestamp::now());
                    if matches!(outcome, Outcome::Renewed { .. }) {
                        retry = MIN_BACKOFF;
                        not_before = None;
                    } else {
                        not_before = Some(add(Timestamp::now(), retry));
                        retry = (retry * 2).min(self.renew_retry_cap());
                    }
                    continue;
                }
                Renewal::Due(_) => not_before,
                Renewal::At(t) => Some(t),
                Renewal::NotHeld => None,
            };
            let d = wake.map_or(Duration::from_secs(24 * 3600), until_from_now);
            tokio::select! {
                () = shutdown.cancelled() => return None,
                r = &mut work => return Some(r),
                () = tokio::time::sleep(d) => {}
                () = self.watches.changed.notified() => {}
            }
        }
    }

    /// How long the agent may wait before retrying while it holds a slot:
    /// an eighth of the lease, so several retries fit before it lapses.
    fn renew_retry_cap(&self) -> Duration {
        (self.machine.slot_lease / 8).clamp(MIN_BACKOFF, MAX_BACKOFF)
    }

    /// Pauses for `d` (a retry backoff), but no later than the slot's next
    /// renewal, and shorter while a slot is held.
    async fn pause(&self, d: Duration, mem: &Memory, shutdown: &CancellationToken) {
        let d = match self.renewal(mem) {
            Renewal::NotHeld => d,
            Renewal::Due(_) => d.min(self.renew_retry_cap()),
            Renewal::At(t) => d.min(self.renew_retry_cap()).min(until_from_now(t)),
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(d) => {}
        }
    }

    /// Waits for a watch change, `until`, or shutdown.
    async fn sleep_until(&self, until: Option<Timestamp>, shutdown: &CancellationToken) {
        let d = until.map_or(Duration::from_secs(24 * 3600), |t| until_from_now(t) + Duration::from_millis(2));
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.watches.changed.notified() => {}
            () = tokio::time::sleep(d) => {}
        }
    }

    /// Runs a host command after the one the agent last saw finish, renewing
    /// the slot meanwhile; the status it finished with goes to `host`.
    async fn command(
        &self,
        cmd: CommandType,
        host: &mut HostCtx,
        mem: &mut Memory,
        shutdown: &CancellationToken,
    ) -> Option<Result<(), crate::hostapi::Error>> {
        let run = self.host.run_after(cmd, host.last_command.clone());
        let status = match self.while_renewing(run, mem, shutdown).await? {
            Ok(status) => status,
            Err(e) => return Some(Err(e)),
        };
        host.last_command = status.last_command_timestamp().cloned();
        host.after = Some(HostStatus::Initialized(status));
        Some(Ok(()))
    }

    /// Carries out `step`. `None` on shutdown; the memory changes only by
    /// renewals during long host steps (the caller learns the outcome).
    async fn execute(
        &self,
        step: &Step,
        mem: &mut Memory,
        host: &mut HostCtx,
        shutdown: &CancellationToken,
    ) -> Option<Result<Outcome, StepError>> {
        let cmd = match step {
            Step::Refresh => Some(CommandType::Refresh),
            Step::Prepare => Some(CommandType::Prepare),
            Step::Activate => Some(CommandType::Activate),
            Step::Deactivate => Some(CommandType::Deactivate),
            _ => None,
        };
        if let Some(cmd) = cmd {
            return Some(match self.command(cmd, host, mem, shutdown).await? {
                Ok(()) => Ok(Outcome::Done),
                Err(e) if cmd == CommandType::Refresh && matches!(e.failure(), Failure::CommandFailed { .. }) => {
                    // A failed refresh leaves the host's lists as they were; try again at the next check.
                    tracing::warn!(node = %self.node, error = %e, "refresh-updates failed");
                    Ok(Outcome::RefreshFailed)
                }
                Err(e) => Err(e.into()),
            });
        }
        tokio::select! {
            () = shutdown.cancelled() => None,
            r = self.execute_cluster_step(step) => Some(r),
        }
    }

    /// Renews the slot as `step` (a [`Step::Renew`]) says.
    async fn execute_renew(&self, step: &Step) -> Result<Outcome, StepError> {
        let Step::Renew { slot, duration } = step else {
            return Ok(Outcome::Done);
        };
        let sent = Timestamp::now();
        match self.proxy.renew(slot, *duration).await {
            Ok(view) => {
                let granted = Duration::from_secs(u64::try_from(view.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
                self.put_lease(&view);
                Ok(Outcome::Renewed { valid_until: add(sent, granted.min(*duration)) })
            }
            Err(e) => Err(self.fencing_refused(e)),
        }
    }

    /// Carries out a step that talks to the cluster (and the reboot).
    async fn execute_cluster_step(&self, step: &Step) -> Result<Outcome, StepError> {
        let now = Timestamp::now();
        match step {
            Step::Report(r) => self.put_shadow(self.proxy.report(r).await?),
            Step::RequestSlot(r) => self.put_shadow(self.proxy.request_slot(r).await?),
            Step::Renew { .. } => return self.execute_renew(step).await,
            Step::Cordon { slot, min_remaining, exclude_from_load_balancers } => {
                let req = CordonRequest {
                    slot: slot.clone(),
                    min_remaining_seconds: secs(*min_remaining),
                    exclude_from_load_balancers: *exclude_from_load_balancers,
                };
                let v = self.proxy.cordon(&req).await.map_err(|e| self.fencing_refused(e))?;
                self.put_node(|n| {
                    let spec = n.spec.get_or_insert_with(Default::default);
                    spec.unschedulable = Some(v.unschedulable);
                    let labels = n.metadata.labels.get_or_insert_with(Default::default);
                    if v.excluded_from_load_balancers {
                        labels.entry(names::EXCLUDE_LB_LABEL.into()).or_insert_with(|| "true".into());
                    }
                    let a = n.metadata.annotations.get_or_insert_with(Default::default);
                    if v.cordoned_by_us {
                        a.entry(names::CORDONED_ANNOTATION.into()).or_insert_with(|| now.to_string());
                    }
                    if v.excluded_by_us {
                        a.entry(names::LB_EXCLUDED_ANNOTATION.into()).or_insert_with(|| now.to_string());
                    }
                });
            }
            Step::Drain { slot, min_remaining, skip_pod_selector, grace_period_seconds, delete_blocked } => {
                let req = DrainRequest {
                    slot: slot.clone(),
                    min_remaining_seconds: secs(*min_remaining),
                    skip_pod_selector: Some(skip_pod_selector.clone()).filter(|s| !s.is_empty()),
                    grace_period_seconds: *grace_period_seconds,
                    delete_blocked: *delete_blocked,
                };
                let report = self.proxy.drain(&req).await.map_err(|e| self.fencing_refused(e))?;
                let blocked = u32::try_from(report.blocked()).unwrap_or(u32::MAX);
                tracing::info!(node = %self.node, remaining = report.remaining, blocked, skipped = report.skipped, "drain round");
                return Ok(Outcome::Drained { remaining: report.remaining, blocked });
            }
            Step::Reboot { .. } => {
                return Ok(match self.host.reboot().await {
                    Ok(()) => {
                        tracing::info!(node = %self.node, "reboot requested");
                        Outcome::RebootRequested
                    }
                    Err(e) if matches!(e.failure(), Failure::ConnectionDropped { .. }) => {
                        tracing::info!(node = %self.node, "the host went down while answering the reboot request");
                        Outcome::RebootRequested
                    }
                    Err(e) => Outcome::RebootRefused(e.to_string()),
                });
            }
            Step::Hook { slot, phase, min_remaining, clears } => {
                let req = model::wire::HookRequest {
                    slot: slot.clone(),
                    min_remaining_seconds: secs(*min_remaining),
                    phase: *phase,
                };
                let v = self.proxy.hook(&req).await.map_err(|e| self.fencing_refused(e))?;
                tracing::info!(node = %self.node, ?phase, changed = v.changed, "reboot hook");
                // Until the watch brings the Node: the hook ran, and the
                // confirmation it removed is gone.
                let marks = model::hooks::Marks { phase: v.phase, since: v.since, ..Default::default() };
                self.put_node(|n| {
                    let a = n.metadata.annotations.get_or_insert_with(Default::default);
                    if v.changed
                        && let Some(k) = clears
                    {
                        a.remove(k);
                    }
                    a.insert(names::HOOKS_ANNOTATION.into(), serde_json::to_string(&marks).unwrap_or_default());
                });
            }
            Step::ClearHooks => {
                self.proxy.clear_hooks().await?;
                self.put_node(|n| {
                    if let Some(a) = n.metadata.annotations.as_mut() {
                        a.remove(names::HOOKS_ANNOTATION);
                    }
                });
            }
            Step::RecordPods | Step::CheckHealth => {
                let pods = cluster::pods_on_node(&self.client, &self.node).await.map_err(StepError::Pods)?;
                return Ok(Outcome::Pods(pods));
            }
            Step::Uncordon => {
                let v = self.proxy.uncordon().await?;
                self.put_node(|n| {
                    n.spec.get_or_insert_with(Default::default).unschedulable = Some(v.unschedulable);
                    if let Some(a) = n.metadata.annotations.as_mut() {
                        a.remove(names::CORDONED_ANNOTATION);
                        a.remove(names::LB_EXCLUDED_ANNOTATION);
                    }
                    if !v.excluded_from_load_balancers
                        && let Some(l) = n.metadata.labels.as_mut()
                    {
                        l.remove(names::EXCLUDE_LB_LABEL);
                    }
                });
            }
            Step::Release { slot } => {
                let released = self.proxy.release(slot).await?;
                tracing::info!(node = %self.node, %slot, released = released.released, "slot released");
                self.watches.lease_tx.send_modify(|l| {
                    if let Some(spec) = l.as_mut().and_then(|l| l.spec.as_mut()) {
                        spec.holder_identity = None;
                    }
                });
            }
            Step::Fail { reason, message } => {
                self.metrics.failures.with_label_values(&[reason.as_str()]).inc();
                tracing::warn!(node = %self.node, reason = %reason, message = %message, "update failed; undoing it");
            }
            Step::AbortDone => {
                tracing::info!(node = %self.node, "update undone: node uncordoned, failure reported, slot released");
            }
            Step::Refresh | Step::Prepare | Step::Activate | Step::Deactivate | Step::Wait { .. } => {}
        }
        Ok(Outcome::Done)
    }

    /// A refused fenced call: the slot is gone (the walk aborts on the next
    /// decision) or too short (renew first).
    fn fencing_refused(&self, e: ProxyError) -> StepError {
        if e.is_not_holder() {
            tracing::warn!(node = %self.node, error = %e, "the slot is no longer ours");
            self.watches.lease_tx.send_modify(|l| {
                if let Some(spec) = l.as_mut().and_then(|l| l.spec.as_mut()) {
                    spec.holder_identity = None;
                }
            });
        }
        StepError::Proxy(e)
    }

    fn put_shadow(&self, view: ShadowReply) {
        let current = self.watches.views.shadow.borrow().clone();
        let mut shadow = current.unwrap_or_else(|| BottlerocketShadow::new(&view.name, view.spec.clone()));
        shadow.metadata.resource_version = view.resource_version;
        shadow.spec = view.spec;
        shadow.status = view.status;
        cluster::store(&self.watches.shadow_tx, &self.watches.fresh, "shadow", shadow, Source::Answer);
    }

    fn put_lease(&self, view: &SlotReply) {
        let mut lease = self.watches.views.lease.borrow().clone().unwrap_or_default();
        lease.metadata.name = Some(view.slot.clone());
        lease.metadata.resource_version = view.resource_version.clone();
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = view.holder.clone();
        spec.lease_duration_seconds = view.lease_duration_seconds;
        if let (Some(exp), Some(d)) = (view.expires_at, view.lease_duration_seconds) {
            spec.renew_time = exp.checked_sub(jiff::SignedDuration::from_secs(i64::from(d))).ok().map(MicroTime);
        }
        cluster::store(&self.watches.lease_tx, &self.watches.fresh, "lease", lease, Source::Answer);
    }

    fn put_node(&self, change: impl FnOnce(&mut Node)) {
        self.watches.node_tx.send_modify(|n| {
            if let Some(n) = n.as_mut() {
                change(n);
            }
        });
    }
}
