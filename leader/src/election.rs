//! Leader election with a `coordination.k8s.io/v1` Lease, exposed as a
//! `watch` channel (`true` while this replica leads) that every writer checks.
//!
//! - A candidate takes the Lease when it is free or its holder has not
//!   renewed for `lease_duration`, measured on the candidate's own clock from
//!   when it last *saw the record change* (so clock skew between replicas
//!   does not matter), with a resourceVersion-checked write.
//! - The leader renews every `retry_period`; if it has not renewed
//!   successfully for `renew_deadline` (< `lease_duration`) it steps down at
//!   once, before its claim can expire, so two leaders never act together.
//! - On shutdown a leader releases the Lease so the standby takes over
//!   without waiting for expiry.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::Api;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
            match step(&api, &cfg, &mut seen, &mut seen_since).await {
                Ok(true) => {
                    last_renewal = Some(Instant::now());
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
                    tracing::warn!(error = %e, "leader election: cannot reach the Lease");
                    if leading && last_renewal.is_none_or(|t| t.elapsed() >= cfg.renew_deadline) {
                        tracing::warn!(
                            deadline_ms = cfg.renew_deadline.as_millis() as u64,
                            "could not renew before the deadline; stepping down"
                        );
                        tx.send_replace(false);
                    }
                }
            }
            // Step down on time even when a call hangs: the next check is bounded too.
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(cfg.retry_period) => {}
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
    match tokio::time::timeout(cfg.retry_period.max(Duration::from_millis(500)), call).await {
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
