//! The leader: the only component that decides which node may update when.
//!
//! It grants update slots (Leases) to waiting nodes, records the desired
//! state on their BottlerocketShadow specs, reclaims expired slots, and
//! halts grants with exponential backoff when updates fail. It keeps no
//! state outside the cluster: every decision is the pure function
//! [`decide::decide`] of what it observes, so a restart or a failover loses
//! nothing.
//!
//! Pipeline: [`observe`] (watches) → [`decide`] (pure) → [`act`] (writes)
//! → events and [`metrics`]; [`controller`] runs it, [`election`] decides
//! which replica may, [`settings`] and [`window`] turn the UpdatePolicy into
//! what the decisions need, [`gate`] asks Prometheus for the alert gate.

pub mod act;
pub mod config;
pub mod controller;
pub mod decide;
pub mod election;
pub mod gate;
pub mod metrics;
pub mod migration;
pub mod observe;
pub mod settings;
pub mod window;

use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use runtime::admin;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Runs the leader (watches, election, decision loop, admin server) until `shutdown`.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let client = runtime::client::client(Default::default()).await?;
    migration::check(&client, &cfg.common.namespace).await.map_err(anyhow::Error::msg)?;
    let identity = cfg.identity();
    let metrics = metrics::Metrics::new();
    let admin_listener = admin::bind(cfg.common.admin_listen)
        .await
        .with_context(|| format!("--admin-listen {}", cfg.common.admin_listen))?;
    let shared = Arc::new(observe::Shared::default());
    let synced = observe::spawn(&client, &cfg.common.namespace, &cfg.node_selector, shared.clone());
    let admin_task =
        tokio::spawn(admin::serve(admin_listener, metrics.registry.clone(), synced.clone(), shutdown.clone()));
    let election_cfg = election::ElectionConfig {
        lease_name: cfg.leader_election_lease.clone(),
        identity: identity.clone(),
        lease_duration: cfg.lease_duration,
        renew_deadline: cfg.renew_deadline,
        retry_period: cfg.retry_period,
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), &cfg.common.namespace);
    let election_stop = CancellationToken::new();
    let (leading, election_task) = election::spawn(leases, election_cfg, election_stop.clone());
    tracing::info!(%identity, namespace = %cfg.common.namespace, node_selector = %cfg.node_selector, "leader started; waiting to lead");
    let gate = gate::spawn(metrics.clone(), shutdown.clone());
    let selector = model::selector::parse(&cfg.node_selector).map_err(|e| anyhow::anyhow!("--node-selector: {e}"))?;
    let actor = act::Actor::new(
        client,
        cfg.common.namespace.clone(),
        selector,
        shared.clone(),
        leading.clone(),
        identity,
        metrics,
    );
    let defaults = settings::Defaults {
        budget: cfg.max_concurrent_updates,
        failure_backoff: cfg.failure_backoff,
        failure_backoff_max: cfg.failure_backoff_max,
        max_consecutive_failures: cfg.max_consecutive_failures,
        windows: cfg.update_windows.clone(),
        slot_lease_duration: cfg.slot_lease_duration,
        max_slot_hold: cfg.max_slot_hold,
        node_selector: cfg.node_selector.clone(),
    };
    controller::run(shared, actor, defaults, leading, synced, gate, shutdown.clone()).await;
    // Stop granting first (the loop has returned), then give up leadership.
    election_stop.cancel();
    let _ = election_task.await;
    let _ = admin_task.await;
    tracing::info!("leader stopped");
    Ok(())
}
