//! The authproxy: the only path by which agents write to the cluster.
//!
//! Every request is authenticated twice (a client certificate chaining to
//! the configured CA, then a projected ServiceAccount token checked by
//! TokenReview with the authproxy's audience), bound to the node the
//! caller's pod runs on, and refused if it names any other node. It then
//! performs one write on that node's behalf: its shadow's status, its slot
//! Lease (renew, release; never grant), cordon/uncordon of its Node, or a
//! drain round of the pods on it. It keeps no state but caches.
//!
//! Layout: [`authz`], [`leaseops`], [`drain`], [`report`] hold the pure
//! rules; [`auth`] and [`ops`] do the cluster I/O; [`app`] handles one
//! request; [`server`] and [`tls`] the HTTPS listener.

pub mod app;
#[cfg(test)]
mod app_fuzz;
pub mod auth;
pub mod authz;
pub mod config;
pub mod drain;
pub mod http1;
pub mod leaseops;
pub mod metrics;

pub mod ops;
pub mod podwatch;
pub mod report;
pub mod server;
pub mod tls;
pub mod tokencache;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use runtime::admin;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Runs the authproxy until `shutdown` is cancelled.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let files = tls::TlsFiles {
        cert: cfg.tls_cert.clone(),
        key: cfg.tls_key.clone(),
        client_ca: cfg.client_ca.clone(),
        extra_ca: cfg.extra_ca.clone(),
    };
    let (tls, reload_task) =
        tls::watch_files(files, cfg.cert_reload_interval, shutdown.clone()).context("loading the TLS files")?;
    let client =
        runtime::client::client(runtime::client::ClientOptions { max_in_flight: Some(cfg.kube_max_in_flight) }).await?;
    let metrics = metrics::Metrics::new();
    let agent = authz::AgentAccount {
        namespace: cfg.agent_namespace().to_owned(),
        service_account: cfg.agent_service_account.clone(),
    };
    let cache = tokencache::TokenCache::new(cfg.token_cache_size, cfg.token_cache_ttl);
    let refusals = tokencache::TokenCache::new(cfg.token_cache_size, cfg.refusal_cache_ttl);
    // Reviews of unknown tokens get a budget of their own (see `auth`).
    let review_client =
        runtime::client::client(runtime::client::ClientOptions { max_in_flight: Some(cfg.token_review_max_in_flight) })
            .await?;
    let (pods, pods_synced, pods_task) =
        podwatch::AgentPods::spawn(client.clone(), cfg.agent_namespace(), shutdown.clone());
    let auth = auth::Authenticator::new(
        review_client,
        cfg.token_audience.clone(),
        agent,
        (cache, refusals),
        pods,
        metrics.clone(),
    );
    let instance = std::env::var("POD_NAME").ok();
    let selector = model::selector::parse(&cfg.node_selector).map_err(|e| anyhow::anyhow!("--node-selector: {e}"))?;
    let app = Arc::new(app::App {
        auth,
        cluster: ops::Cluster::new(
            client.clone(),
            cfg.common.namespace.clone(),
            cfg.max_slot_lease,
            (cfg.node_selector.clone(), selector),
            instance,
        ),
        evict_client: client,
        limiter: app::RateLimiter::new(cfg.rate_limit),
        peer_limiter: app::RateLimiter::new(cfg.peer_rate_limit),
        metrics: metrics.clone(),
        request_timeout: cfg.request_timeout,
    });
    let listener = runtime::listen::bind(cfg.listen).with_context(|| format!("--listen {}", cfg.listen))?;
    let admin_listener = admin::bind(cfg.common.admin_listen)
        .await
        .with_context(|| format!("--admin-listen {}", cfg.common.admin_listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        namespace = %cfg.common.namespace,
        audience = %cfg.token_audience,
        "authproxy serving"
    );
    // Ready once the agent pods are listed: before, every request costs a
    // review (correct, slower), so traffic is better sent to a ready replica.
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    let ready_tx = Arc::new(ready_tx);
    let (mark, mut synced) = (ready_tx.clone(), pods_synced);
    tokio::spawn(async move {
        if synced.wait_for(|s| *s).await.is_ok() {
            mark.send_replace(true);
        }
    });
    let admin_task = tokio::spawn(admin::serve(admin_listener, metrics.registry.clone(), ready, shutdown.clone()));
    let limits = server::ServerLimits {
        conns: runtime::conngate::ConnLimits {
            max_total: cfg.max_connections,
            max_per_peer: cfg.max_connections_per_peer,
        },
        idle_timeout: cfg.idle_timeout,
    };
    server::serve(listener, tls, app, shutdown.clone(), cfg.request_timeout + Duration::from_secs(1), limits).await;
    ready_tx.send_replace(false);
    shutdown.cancel();
    let _ = admin_task.await;
    let _ = reload_task.await;
    let _ = pods_task.await;
    tracing::info!("authproxy stopped");
    Ok(())
}
