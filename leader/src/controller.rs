//! The decision loop: observe → decide → act → report, driven by changes
//! (watch events, the answers to our own writes) and by real deadlines (the
//! next slot expiry, the end of a halt, a window edge). No fixed-interval
//! polling: an idle fleet costs no API requests beyond the watches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::act::{ActError, Actor};
use crate::decide::{self, Observed, ShadowView, SlotView, WindowState};
use crate::observe::Shared;
use crate::settings::{self, Defaults};

/// After an error, the next pass waits this long at least (then doubles, up to 30 s).
const ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// Runs passes while leading until `shutdown`.
pub async fn run(
    shared: Arc<Shared>,
    actor: Actor,
    defaults: Defaults,
    mut leading: watch::Receiver<bool>,
    mut synced: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let mut wake_at: Option<Timestamp> = None;
    let mut backoff = ERROR_BACKOFF;
    loop {
        let sleep_for = wake_at.map_or(Duration::from_secs(3600), |t| {
            Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO) + Duration::from_millis(5)
        });
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = shared.changed.notified() => {}
            () = tokio::time::sleep(sleep_for) => {}
            changed = leading.changed() => if changed.is_err() { return },
            changed = synced.changed() => if changed.is_err() { return },
        }
        let is_leader = *leading.borrow();
        actor.metrics.leader.set(i64::from(is_leader));
        if !is_leader || !*synced.borrow() {
            continue;
        }
        match pass(&shared, &actor, &defaults).await {
            Ok(next) => {
                wake_at = next;
                backoff = ERROR_BACKOFF;
            }
            Err(ActError::NotLeader) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "pass failed; deciding again");
                wake_at = Some(Timestamp::now().checked_add(backoff).unwrap_or(Timestamp::MAX));
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One pass: returns when to wake if nothing changes.
async fn pass(shared: &Shared, actor: &Actor, defaults: &Defaults) -> Result<Option<Timestamp>, ActError> {
    let policy = actor.ensure_policy().await?;
    let now = Timestamp::now();
    let (settings, windows) = settings::resolve(defaults, Some(&policy.spec));
    let window = WindowState {
        open: windows.is_open(now),
        next_start: windows.next_start(now),
        current_end: windows.current_end(now),
    };
    let (nodes, shadows, slots): (BTreeMap<_, _>, BTreeMap<_, _>, Vec<SlotView>) = shared.with(|s| {
        (
            s.nodes.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect(),
            s.shadows.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect(),
            s.slots.values().map(|v| v.value.clone()).collect(),
        )
    });
    let previous = policy.status.clone().unwrap_or_default();
    let plan = decide::decide(
        Observed {
            now,
            nodes: &nodes,
            shadows: &shadows,
            slots: &slots,
            policy: &previous,
            policy_generation: policy.metadata.generation,
            window,
        },
        &settings,
    );
    actor.apply(&plan, &policy, now).await?;
    actor.report_failures(&plan);
    let managed: Vec<&ShadowView> = shadows.values().filter(|s| nodes.contains_key(&s.node)).collect();
    actor.metrics.observe(&managed, &slots, &plan.status, now);
    Ok(plan.wake_at)
}
