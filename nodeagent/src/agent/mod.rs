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
use model::names;
use model::wire::{CordonRequest, DrainRequest, ShadowView, SlotView};
use model::{BottlerocketShadow, FailureReason};
use tokio_util::sync::CancellationToken;

use crate::cluster::{self, Watches};
use crate::hostapi::{AsyncHostApi, CommandTimestamp, CommandType, Failure, HostStatus};
use crate::machine::{self, HostView, Memory, Observation, Step};
use crate::metrics::Metrics;
use crate::proxy::{Proxy, ProxyError};

/// Everything one agent needs.
pub struct Agent {
    pub node: String,
    pub machine: machine::Config,
    pub update_check_interval: Duration,
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

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a host that is rebooting is looked at (a refused connection
/// to the local socket costs next to nothing; the node holds a slot).
const REBOOT_POLL: Duration = Duration::from_millis(10);
/// A host view is used again after a cluster step only if that step took
/// less than this (the host may change by itself: a crash, a reboot).
const HOST_VIEW_REUSE: Duration = Duration::from_secs(1);
/// Consecutive failures of one host command during a walk before giving up on it.
const HOST_ATTEMPTS: u32 = 3;

mod views;

use views::*;

fn add(t: Timestamp, d: Duration) -> Timestamp {
    machine::add(t, d)
}

impl Agent {
    async fn read_host(&self) -> Result<(HostView, Option<CommandTimestamp>), crate::hostapi::Error> {
        let os = self.host.os().await?;
        let status = self.host.status().await?;
        let last = status.last_command_timestamp().cloned();
        Ok((HostView { version: os.version_id, update: host_update(&status) }, last))
    }

    /// Runs a host command after the one the agent last saw finish; the
    /// status it finished with goes to `host` (no read before or after).
    async fn command(&self, cmd: CommandType, host: &mut HostCtx) -> Result<(), crate::hostapi::Error> {
        let status = self.host.run_after(cmd, host.last_command.clone()).await?;
        host.last_command = status.last_command_timestamp().cloned();
        host.after = Some(HostStatus::Initialized(status));
        Ok(())
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
        let mut mem = Memory { next_update_check: Some(Timestamp::now()), ..Memory::default() };
        let mut backoff = MIN_BACKOFF;
        let mut host_failures = 0u32;
        let mut last_grant: Option<(Option<String>, Option<MicroTime>)> = None;
        let mut host_down_since: Option<std::time::Instant> = None;
        // The host as read before a step that did not touch it: the next
        // decision uses it instead of reading the host again (most steps of
        // a walk are cluster steps; each read is two host requests).
        let mut still_current: Option<HostView> = None;
        let mut host_ctx = HostCtx::default();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let read = match still_current.take() {
                Some(h) => Ok(h),
                None => self.read_host().await.map(|(h, last)| {
                    host_ctx.last_command = last;
                    h
                }),
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
                    self.sleep(crate::hostapi::long_wait_delay(REBOOT_POLL, down_for), None, &shutdown).await;
                    continue;
                }
                Err(e) => {
                    self.metrics.host_errors.with_label_values(&[&e.label()]).inc();
                    tracing::warn!(node = %self.node, error = %e, retry_in = ?backoff, "cannot read the host");
                    self.sleep(backoff, None, &shutdown).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let shadow = self.watches.views.shadow.borrow().clone();
            // A new grant starts a new walk: forget the previous walk's progress.
            let grant = shadow.as_ref().map(|s| (s.spec.slot.clone(), s.spec.state_transition_timestamp.clone()));
            if grant != last_grant {
                mem.drain_started = None;
                mem.last_drain = None;
                mem.drain_rounds = 0;
                mem.reboot_requested = None;
                mem.health = None;
                last_grant = grant;
            }
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
            let held = machine::granted_slot(&obs, now);
            if let Some(slot) = held
                && mem.holding.as_deref() != Some(slot)
            {
                mem.holding = Some(slot.to_owned());
            }
            let granted = held.is_some();
            self.metrics.holding_slot.set(i64::from(granted));
            let step = machine::decide(&obs, &mem, &self.machine, now);
            let label = step_label(&step);
            if !matches!(step, Step::Wait { .. }) {
                self.metrics.steps.with_label_values(&[label]).inc();
                tracing::info!(node = %self.node, step = label, detail = ?step, "step");
            }
            if let Step::Wait { until, why } = &step {
                tracing::debug!(node = %self.node, why = %why, until = ?until, "waiting");
                self.sleep_until(*until, &shutdown).await;
                continue;
            }
            let started = std::time::Instant::now();
            let result = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.execute(&step, &mut mem, granted, &mut host_ctx) => r,
            };
            let after = host_ctx.after.take();
            match result {
                Ok(()) => {
                    backoff = MIN_BACKOFF;
                    host_failures = 0;
                    if let Some(status) = after {
                        // A command finished: its final status is the host's
                        // update status now; the running version is unchanged.
                        still_current = Some(HostView { update: host_update(&status), ..host });
                    } else if leaves_the_host_alone(&step) && started.elapsed() < HOST_VIEW_REUSE {
                        still_current = Some(host);
                    }
                }
                Err(e) => {
                    self.note_error(&e);
                    tracing::warn!(node = %self.node, step = label, error = %e, retry_in = ?backoff, "step failed");
                    if let StepError::Host(h) = &e
                        && granted
                    {
                        host_failures += 1;
                        if let Some(fail) = self.host_failure(h, host_failures, &step) {
                            mem.aborting = Some(fail);
                            continue;
                        }
                    }
                    self.sleep(backoff, None, &shutdown).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
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

    /// Whether a host error during a walk ends it, and with which failure.
    fn host_failure(&self, e: &crate::hostapi::Error, attempts: u32, step: &Step) -> Option<(FailureReason, String)> {
        let reason = e.failure_reason();
        // A command that ran and failed is final at once; other errors get a few tries.
        let final_now = matches!(e.failure(), Failure::CommandFailed { .. } | Failure::CannotUpdateInPlace { .. });
        if !(final_now || attempts >= HOST_ATTEMPTS) {
            return None;
        }
        if matches!(step, Step::Deactivate) {
            // An undo that keeps failing must not keep the node: report and go on.
            return None;
        }
        Some((reason, e.to_string()))
    }

    async fn sleep(&self, d: Duration, _until: Option<Timestamp>, shutdown: &CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(d) => {}
        }
    }

    /// Waits for a watch change, `until`, or shutdown.
    async fn sleep_until(&self, until: Option<Timestamp>, shutdown: &CancellationToken) {
        let d = until.map_or(Duration::from_secs(24 * 3600), |t| {
            Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO) + Duration::from_millis(2)
        });
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.watches.changed.notified() => {}
            () = tokio::time::sleep(d) => {}
        }
    }

    async fn execute(&self, step: &Step, mem: &mut Memory, granted: bool, host: &mut HostCtx) -> Result<(), StepError> {
        let now = Timestamp::now();
        match step {
            Step::Refresh => {
                let result = self.command(CommandType::Refresh, host).await;
                let first = mem.last_refresh.is_none();
                let wait = next_check_in(self.update_check_interval, &self.node, now, first);
                mem.next_update_check = Some(add(now, wait));
                match result {
                    Ok(_) => mem.last_refresh = Some(Timestamp::now()),
                    Err(e) if matches!(e.failure(), Failure::CommandFailed { .. }) => {
                        // A failed refresh leaves the host's lists as they were; try again at the next check.
                        tracing::warn!(node = %self.node, error = %e, "refresh-updates failed");
                        mem.last_refresh = Some(Timestamp::now());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Step::Report(r) => self.put_shadow(self.proxy.report(r).await?),
            Step::RequestSlot(r) => self.put_shadow(self.proxy.request_slot(r).await?),
            Step::Prepare => {
                self.command(CommandType::Prepare, host).await?;
            }
            Step::Activate => {
                self.command(CommandType::Activate, host).await?;
            }
            Step::Deactivate => {
                if let Err(e) = self.command(CommandType::Deactivate, host).await {
                    if granted || mem.aborting.is_some() {
                        mem.skip_deactivate = true;
                    }
                    return Err(e.into());
                }
            }
            Step::Renew { slot, duration } => self.renew(slot, *duration, mem).await?,
            Step::Cordon { slot, min_remaining, exclude_from_load_balancers } => {
                let req = CordonRequest {
                    slot: slot.clone(),
                    min_remaining_seconds: secs(*min_remaining),
                    exclude_from_load_balancers: *exclude_from_load_balancers,
                };
                match self.proxy.cordon(&req).await {
                    Ok(v) => {
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
                        mem.drain_started = mem.drain_started.or(Some(now));
                    }
                    Err(e) => return Err(self.fencing_refused(e, mem)),
                }
            }
            Step::Drain { slot, min_remaining } => {
                let req = DrainRequest { slot: slot.clone(), min_remaining_seconds: secs(*min_remaining) };
                mem.drain_started = mem.drain_started.or(Some(now));
                match self.proxy.drain(&req).await {
                    Ok(report) => {
                        let blocked = u32::try_from(report.blocked()).unwrap_or(u32::MAX);
                        tracing::info!(node = %self.node, remaining = report.remaining, blocked, skipped = report.skipped, "drain round");
                        mem.last_drain = Some((Timestamp::now(), report.remaining, blocked));
                        mem.drain_rounds += 1;
                    }
                    Err(e) => return Err(self.fencing_refused(e, mem)),
                }
            }
            Step::Reboot { slot, grace } => {
                self.renew(slot, *grace, mem).await?;
                let valid = mem.lease_valid_until.unwrap_or(now);
                if valid < add(now, grace.mul_f64(0.9)) {
                    mem.aborting = Some((
                        FailureReason::RebootFailed,
                        format!(
                            "the authproxy granted the slot until {valid}, the reboot needs {grace:?}: raise its --max-slot-lease or lower --reboot-grace"
                        ),
                    ));
                    return Ok(());
                }
                match self.host.reboot().await {
                    Ok(()) => {}
                    Err(e) if matches!(e.failure(), Failure::ConnectionDropped { .. }) => {
                        tracing::info!(node = %self.node, "the host went down while answering the reboot request");
                    }
                    Err(e) => {
                        mem.aborting = Some((FailureReason::RebootFailed, e.to_string()));
                        return Ok(());
                    }
                }
                mem.reboot_requested = Some(Timestamp::now());
                tracing::info!(node = %self.node, "reboot requested");
            }
            Step::CheckHealth => {
                let bad = cluster::pods_not_ready(&self.client, &self.node).await.map_err(StepError::Pods)?;
                mem.health = Some((Timestamp::now(), bad));
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
                mem.lease_valid_until = None;
                mem.holding = None;
            }
            Step::Fail { reason, message } => {
                self.metrics.failures.with_label_values(&[reason.as_str()]).inc();
                tracing::warn!(node = %self.node, reason = %reason, message = %message, "update failed; undoing it");
                mem.aborting = Some((*reason, message.clone()));
            }
            Step::AbortDone => {
                tracing::info!(node = %self.node, "update undone: node uncordoned, failure reported, slot released");
                mem.aborting = None;
                mem.skip_deactivate = false;
                mem.drain_started = None;
                mem.last_drain = None;
                mem.reboot_requested = None;
                mem.health = None;
            }
            Step::Wait { .. } => {}
        }
        Ok(())
    }

    async fn renew(&self, slot: &str, duration: Duration, mem: &mut Memory) -> Result<(), StepError> {
        let sent = Timestamp::now();
        match self.proxy.renew(slot, duration).await {
            Ok(view) => {
                let granted = Duration::from_secs(u64::try_from(view.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
                mem.lease_slot = Some(slot.to_owned());
                mem.lease_valid_until = Some(add(sent, granted.min(duration)));
                self.put_lease(&view);
                Ok(())
            }
            Err(e) => Err(self.fencing_refused(e, mem)),
        }
    }

    /// A refused fenced call: the slot is gone (the walk aborts on the next
    /// decision) or too short (renew first).
    fn fencing_refused(&self, e: ProxyError, mem: &mut Memory) -> StepError {
        if e.is_not_holder() {
            tracing::warn!(node = %self.node, error = %e, "the slot is no longer ours");
            self.watches.lease_tx.send_modify(|l| {
                if let Some(spec) = l.as_mut().and_then(|l| l.spec.as_mut()) {
                    spec.holder_identity = None;
                }
            });
            mem.lease_valid_until = None;
        } else if e.is_too_short() {
            mem.lease_valid_until = None;
        }
        StepError::Proxy(e)
    }

    fn put_shadow(&self, view: ShadowView) {
        let current = self.watches.views.shadow.borrow().clone();
        let mut shadow = current.unwrap_or_else(|| BottlerocketShadow::new(&view.name, view.spec.clone()));
        shadow.metadata.resource_version = view.resource_version;
        shadow.spec = view.spec;
        shadow.status = view.status;
        cluster::store(&self.watches.shadow_tx, Some(shadow));
    }

    fn put_lease(&self, view: &SlotView) {
        let mut lease = self.watches.views.lease.borrow().clone().unwrap_or_default();
        lease.metadata.name = Some(view.slot.clone());
        lease.metadata.resource_version = view.resource_version.clone();
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = view.holder.clone();
        spec.lease_duration_seconds = view.lease_duration_seconds;
        if let (Some(exp), Some(d)) = (view.expires_at, view.lease_duration_seconds) {
            spec.renew_time = exp.checked_sub(jiff::SignedDuration::from_secs(i64::from(d))).ok().map(MicroTime);
        }
        cluster::store(&self.watches.lease_tx, Some(lease));
    }

    fn put_node(&self, change: impl FnOnce(&mut Node)) {
        self.watches.node_tx.send_modify(|n| {
            if let Some(n) = n.as_mut() {
                change(n);
            }
        });
    }
}
