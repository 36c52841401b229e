//! Leader election with a `coordination.k8s.io/v1` Lease, exposed as a
//! `watch` channel (`true` while this replica leads) that every writer checks.
//!
//! - A candidate takes the Lease when it is free or its holder has not
//!   renewed for `lease_duration`, measured on the candidate's own clock from
//!   when it last *saw the record change* (so clock skew between replicas
//!   does not matter), with a resourceVersion-checked write.
//! - The leader renews every `retry_period`; if it has not renewed
//!   successfully for `renew_deadline`, counted from when it *sent* its last
//!   successful renewal, it steps down at that moment, even while a call
//!   hangs, before its claim can expire, so two leaders never act together.
//!
//! Why that holds ([`check_timings`] refuses flags that break it): the
//! server records a renewal after the leader sent it, and the standby
//! counts `lease_duration` from when it *saw* that record, later still, on
//! its own monotonic clock; the leader counts `renew_deadline` from the
//! send on its own. Wall-clock skew between the replicas therefore cancels
//! out. What remains is the leader's own lateness in stepping down (a busy
//! runtime) and a write it had in flight at that moment (every write of the
//! leader is checked by resourceVersion, so a late one can only fail), for
//! which the rule keeps [`ELECTION_MARGIN`] between the two:
//! `renew_deadline + ELECTION_MARGIN <= lease_duration`. The lease duration
//! is whole seconds, as it is written to the Lease (the standby reads it
//! from there), and `2 × retry_period <= renew_deadline`, so one lost
//! renewal never makes a leader step down.
//! - On shutdown a leader releases the Lease so the standby takes over
//!   without waiting for expiry.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::Api;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What separates the leader's step-down from the earliest takeover by a
/// standby (see the module documentation).
pub const ELECTION_MARGIN: Duration = Duration::from_secs(1);

/// Checks the election timings by the rule in the module documentation;
/// the error names the flags.
pub fn check_timings(lease_duration: Duration, renew_deadline: Duration, retry_period: Duration) -> Result<(), String> {
    if lease_duration < Duration::from_secs(1) || lease_duration.subsec_nanos() != 0 {
        return Err(format!(
            "--lease-duration ({lease_duration:?}) must be a whole number of seconds, at least 1s: it is written to the election Lease in seconds"
        ));
    }
    if renew_deadline + ELECTION_MARGIN > lease_duration {
        return Err(format!(
            "--renew-deadline ({renew_deadline:?}) plus a margin of {ELECTION_MARGIN:?} must not exceed --lease-duration ({lease_duration:?}): a leader must step down before a standby may take over"
        ));
    }
    if retry_period.is_zero() || retry_period * 2 > renew_deadline {
        return Err(format!(
            "--retry-period ({retry_period:?}) must be above zero and at most half of --renew-deadline ({renew_deadline:?}), so one lost renewal does not end a leadership"
        ));
    }
    Ok(())
}

/// Election settings.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What a candidate decides about the Lease it sees. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours: renew it.
    Renew,
    /// Free or expired: take it.
    Take,
    /// Held by another replica that is alive.
    Wait { holder: String },
}

/// Decides from the observed record; `unchanged_for` is how long (on our
/// clock) the holder and renew time have stayed the same.
pub fn claim(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration, lease_duration: Duration) -> Claim {
    let holder = spec.and_then(|s| s.holder_identity.as_deref()).filter(|h| !h.is_empty());
    match holder {
        None => Claim::Take,
        Some(h) if h == me => Claim::Renew,
        Some(h) => {
            let duration = spec
                .and_then(|s| s.lease_duration_seconds)
                .map_or(lease_duration, |s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
            if unchanged_for >= duration { Claim::Take } else { Claim::Wait { holder: h.to_owned() } }
        }
    }
}

fn record(spec: Option<&LeaseSpec>) -> (Option<String>, Option<MicroTime>) {
    (spec.and_then(|s| s.holder_identity.clone()), spec.and_then(|s| s.renew_time.clone()))
}

/// Runs the election until `shutdown`; the returned receiver says whether we lead.
pub fn spawn(
    api: Api<Lease>,
    cfg: ElectionConfig,
    shutdown: CancellationToken,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut seen: (Option<String>, Option<MicroTime>) = (None, None);
        let mut seen_since = Instant::now();
        let mut last_renewal: Option<Instant> = None;
        loop {
            let leading = *tx.borrow();
            // The step-down deadline, counted from the send of the last
            // successful renewal (the server recorded it later than that).
            let deadline = last_renewal.map(|t| t + cfg.renew_deadline).filter(|_| leading);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                tracing::warn!(
                    deadline_ms = cfg.renew_deadline.as_millis() as u64,
                    "could not renew before the deadline; stepping down"
                );
                tx.send_replace(false);
                continue;
            }
            let started = Instant::now();
            match step(&api, &cfg, &mut seen, &mut seen_since, deadline).await {
                Ok(true) => {
                    last_renewal = Some(started);
                    if !leading {
                        tracing::info!(identity = %cfg.identity, lease = %cfg.lease_name, "became the leader");
                        tx.send_replace(true);
                    }
                }
                Ok(false) => {
                    if leading {
                        tracing::warn!(identity = %cfg.identity, "lost the leader lease to another replica; stepping down");
                        tx.send_replace(false);
                    }
                }
                Err(e) => {
                    // A leader steps down at its deadline (above), not at the first error.
                    tracing::warn!(error = %e, "leader election: cannot reach the Lease");
                }
            }
            // Step down on time even when a call hangs: the step is bounded
            // by the deadline, and so is the wait for the next one.
            let next = Instant::now() + cfg.retry_period;
            let wake = deadline.filter(|_| *tx.borrow()).map_or(next, |d| d.min(next));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        if *tx.borrow() {
            tx.send_replace(false);
            if let Err(e) = release(&api, &cfg).await {
                tracing::warn!(error = %e, "could not release the leader lease; the standby takes over when it expires");
            } else {
                tracing::info!("released the leader lease");
            }
        }
    });
    (rx, task)
}

/// One round: returns whether we hold the Lease afterwards.
async fn step(
    api: &Api<Lease>,
    cfg: &ElectionConfig,
    seen: &mut (Option<String>, Option<MicroTime>),
    seen_since: &mut Instant,
    deadline: Option<Instant>,
) -> Result<bool, kube::Error> {
    let call = async {
        let current = api.get_opt(&cfg.lease_name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let observed = record(spec);
        if observed != *seen {
            *seen = observed;
            *seen_since = Instant::now();
        }
        let now = Timestamp::now();
        let pp = runtime::client::post_params(model::names::managers::LEADER);
        let decision = claim(spec, &cfg.identity, seen_since.elapsed(), cfg.lease_duration);
        match (current, decision) {
            (_, Claim::Wait { .. }) => Ok(false),
            (None, _) => {
                let mut lease = Lease::default();
                lease.metadata.name = Some(cfg.lease_name.clone());
                lease.spec = Some(new_spec(cfg, now, 0));
                match api.create(&pp, &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(false),
                    Err(e) => Err(e),
                }
            }
            (Some(mut lease), c) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                if c == Claim::Take {
                    let transitions = spec.lease_transitions.unwrap_or(0) + 1;
                    *spec = new_spec(cfg, now, transitions);
                } else {
                    spec.renew_time = Some(MicroTime(now));
                    spec.lease_duration_seconds = Some(secs(cfg.lease_duration));
                }
                match api.replace(&cfg.lease_name, &pp, &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    };
    let limit = Instant::now() + cfg.retry_period.max(Duration::from_millis(500));
    let limit = deadline.map_or(limit, |d| d.min(limit));
    match tokio::time::timeout_at(limit.into(), call).await {
        Ok(r) => r,
        Err(_) => Err(kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "election call timed out",
        )))),
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

fn new_spec(cfg: &ElectionConfig, now: Timestamp, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(secs(cfg.lease_duration)),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

async fn release(api: &Api<Lease>, cfg: &ElectionConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.lease_name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    spec.acquire_time = None;
    let pp = runtime::client::post_params(model::names::managers::LEADER);
    api.replace(&cfg.lease_name, &pp, &lease).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, secs: i32) -> LeaseSpec {
        LeaseSpec { holder_identity: holder.map(Into::into), lease_duration_seconds: Some(secs), ..Default::default() }
    }

    #[test]
    fn election_timings_keep_a_margin_between_step_down_and_takeover() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(check_timings(s(15), s(10), s(2)), Ok(()), "the shipped defaults");
        assert_eq!(check_timings(s(3), s(2), ms(300)), Ok(()), "the test fleet's");
        assert_eq!(check_timings(s(11), s(10), s(2)), Ok(()), "exactly the margin");
        let e = check_timings(s(10), ms(9500), s(2)).unwrap_err();
        assert!(e.contains("--renew-deadline") && e.contains("--lease-duration"), "{e}");
        let e = check_timings(ms(2500), ms(1000), ms(200)).unwrap_err();
        assert!(e.contains("--lease-duration") && e.contains("whole"), "{e}");
        let e = check_timings(s(15), s(10), s(6)).unwrap_err();
        assert!(e.contains("--retry-period") && e.contains("--renew-deadline"), "{e}");
        assert!(check_timings(s(15), s(10), Duration::ZERO).unwrap_err().contains("--retry-period"));
    }

    #[test]
    fn a_free_lease_is_taken() {
        assert_eq!(claim(None, "a", Duration::ZERO, Duration::from_secs(15)), Claim::Take);
        assert_eq!(claim(Some(&spec(None, 15)), "a", Duration::ZERO, Duration::from_secs(15)), Claim::Take);
        assert_eq!(claim(Some(&spec(Some(""), 15)), "a", Duration::ZERO, Duration::from_secs(15)), Claim::Take);
    }

    #[test]
    fn our_own_lease_is_renewed() {
        assert_eq!(
            claim(Some(&spec(Some("a"), 15)), "a", Duration::from_secs(100), Duration::from_secs(15)),
            Claim::Renew
        );
    }

    #[test]
    fn a_live_holder_is_respected_and_a_silent_one_replaced() {
        let s = spec(Some("b"), 15);
        assert_eq!(
            claim(Some(&s), "a", Duration::from_secs(14), Duration::from_secs(15)),
            Claim::Wait { holder: "b".into() }
        );
        assert_eq!(claim(Some(&s), "a", Duration::from_secs(15), Duration::from_secs(15)), Claim::Take);
    }
}
