//! The nodeagent: drives one Bottlerocket node through its update while it
//! holds a slot, resuming from cluster and host state after any crash or reboot.
//!
//! - [`machine`]: the state machine, a pure function of what the agent observes;
//! - [`hostapi`]: the client of the host's Bottlerocket update API;
//! - [`cluster`]: the read-only watches of its shadow, Node and slot Lease;
//! - [`proxy`]: every write, through the authproxy (mTLS + projected token);
//! - [`agent`]: the loop that observes, decides and executes.
//!
//! The agent never writes to the cluster directly, never reboots without
//! holding its slot, and never lifts a cordon it did not make.

pub mod agent;
pub mod cluster;
pub mod config;
pub mod hostapi;
pub mod machine;
pub mod metrics;
pub mod proxy;

use anyhow::Context;
use runtime::admin;
use tokio_util::sync::CancellationToken;

use crate::config::Flags;
use std::time::Duration;

use crate::hostapi::{AsyncHostApi, Backoff, CommandDeadlines, HostApiConfig, PollSchedule};

/// Builds one agent from its configuration and a Kubernetes client (its own
/// ServiceAccount's), starting its watches.
pub fn build(
    cfg: &Flags,
    client: kube::Client,
    metrics: metrics::Metrics,
    shutdown: &CancellationToken,
) -> agent::Agent {
    let mut host_cfg = HostApiConfig::new(cfg.host_socket.clone());
    let d = cfg.host_command_timeout;
    host_cfg.deadlines = CommandDeadlines { refresh: d, prepare: d, activate: d, deactivate: d };
    // A running command is looked at less and less often (`PollSchedule`);
    // an action refused because a status reader held the lock for a moment
    // is retried at once.
    host_cfg.poll = PollSchedule { min: cfg.host_poll_min, max: cfg.host_poll_max };
    // A status read that keeps answering 423 this long means a command is
    // running: the agent's state machine decides what to do about it.
    host_cfg.lock_deadline = cfg.host_poll_max * 6;
    host_cfg.lock_backoff = Backoff { initial: Duration::from_millis(5), max: Duration::from_millis(20) };
    let proxy = proxy::Proxy::new(proxy::ProxyConfig {
        url: cfg.authproxy_url.clone(),
        node: cfg.node_name.clone(),
        client_cert: cfg.client_cert.clone(),
        client_key: cfg.client_key.clone(),
        ca: cfg.authproxy_ca.clone(),
        extra_ca: cfg.extra_ca.clone(),
        token: cfg.token_file.clone(),
        timeout: cfg.request_timeout,
    });
    let watches = cluster::spawn(&client, &cfg.common.namespace, &cfg.node_name, shutdown.child_token());
    agent::Agent {
        node: cfg.node_name.clone(),
        machine: cfg.machine(),
        host: AsyncHostApi::new(host_cfg),
        proxy,
        client,
        watches,
        metrics,
    }
}

/// Runs the agent (and its admin server) until `shutdown`.
pub async fn run(cfg: Flags, shutdown: CancellationToken) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let client = runtime::client::client(Default::default()).await?;
    let metrics = metrics::Metrics::new();
    let admin_listener = admin::bind(cfg.common.admin_listen)
        .await
        .with_context(|| format!("--admin-listen {}", cfg.common.admin_listen))?;
    let agent = build(&cfg, client, metrics.clone(), &shutdown);
    let ready = agent.watches.views.synced.clone();
    let admin_task = tokio::spawn(admin::serve(admin_listener, metrics.registry.clone(), ready, shutdown.clone()));
    tracing::info!(node = %cfg.node_name, authproxy = %cfg.authproxy_url, host = %cfg.host_socket.display(), "nodeagent started");
    agent.run(shutdown.clone()).await;
    shutdown.cancel();
    let _ = admin_task.await;
    Ok(())
}
