//! Fleet mode: many agents in one process. Each is a full instance of the
//! nodeagent library (`nodeagent::build` + `Agent::run`, the same code path as
//! the binary) with its own identity: its own ServiceAccount token and
//! Kubernetes client for its watches, its own projected token and client
//! certificate for the authproxy, its own host socket.
//!
//! The benchmark starts this as a child process (so the API simulator's
//! process and the agents' process each stay under the file-descriptor
//! limit), handing it a JSON spec of the agents.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// One agent of the fleet.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AgentSpec {
    pub node: String,
    /// Its ordinary ServiceAccount token (watches).
    pub api_token: String,
    /// Directory of its client certificate (tls.crt, tls.key, ca.crt).
    pub tls_dir: PathBuf,
    /// File holding its projected token of the authproxy's audience.
    pub token_file: PathBuf,
}

/// The simulated hosts of this process's agents.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct HostsSpec {
    pub running: String,
    pub timings: crate::hostsim::Timings,
    /// When this file appears, its content (a version) is published to every host.
    pub release_file: PathBuf,
    /// Where the hosts' request counts are written, every 100 ms.
    pub requests_file: PathBuf,
}

/// Everything the child needs.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FleetSpec {
    /// Kubeconfig of the API (server and CA; tokens are per agent).
    pub kubeconfig: PathBuf,
    pub namespace: String,
    pub authproxy_url: String,
    /// Agent flags (name without `--`, value), the same for every agent.
    pub args: Vec<(String, String)>,
    pub hosts: HostsSpec,
    pub agents: Vec<AgentSpec>,
}

/// Runs the fleet until SIGTERM/SIGINT.
pub async fn run(spec: FleetSpec) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shutdown = CancellationToken::new();
    let metrics = nodeagent::metrics::Metrics::new();
    // The agents' hosts live here, next to their agents (each process keeps
    // its own share of sockets, under the descriptor limit).
    let template = crate::hostsim::HostConfig::new(&spec.hosts.running)
        .available(&[&spec.hosts.running])
        .timings(spec.hosts.timings);
    let hosts = crate::hostsim::HostFleet::start(spec.agents.iter().map(|a| a.node.clone()), template).await?;
    let release_file = spec.hosts.release_file.clone();
    let repository = hosts.repository().clone();
    let publisher = tokio::spawn(async move {
        loop {
            if let Ok(v) = std::fs::read_to_string(&release_file) {
                repository.publish(v.trim());
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let counts = {
        let file = spec.hosts.requests_file.clone();
        let hosts: Vec<crate::hostsim::RequestCounter> =
            hosts.hosts().iter().map(crate::hostsim::HostSim::request_counter).collect();
        tokio::spawn(async move {
            loop {
                let sum = hosts.iter().map(|h| h.get()).fold(crate::hostsim::RequestCount::default(), |a, b| a + b);
                let tmp = file.with_extension("tmp");
                if std::fs::write(&tmp, serde_json::to_vec(&sum).unwrap_or_default()).is_ok() {
                    let _ = std::fs::rename(&tmp, &file);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let mut handles = Vec::with_capacity(spec.agents.len());
    for a in &spec.agents {
        let socket = hosts
            .host(&a.node)
            .map(|h| h.socket_path().to_owned())
            .ok_or_else(|| anyhow::anyhow!("no host for {}", a.node))?;
        let mut argv = vec![
            "nodeagent".to_owned(),
            format!("--node-name={}", a.node),
            format!("--namespace={}", spec.namespace),
            format!("--authproxy-url={}", spec.authproxy_url),
            format!("--client-cert={}", a.tls_dir.join("tls.crt").display()),
            format!("--client-key={}", a.tls_dir.join("tls.key").display()),
            format!("--authproxy-ca={}", a.tls_dir.join("ca.crt").display()),
            format!("--token-file={}", a.token_file.display()),
            format!("--host-socket={}", socket.display()),
        ];
        argv.extend(spec.args.iter().map(|(k, v)| format!("--{k}={v}")));
        let cfg = <nodeagent::config::Flags as clap::Parser>::try_parse_from(argv)?;
        cfg.validate().map_err(anyhow::Error::msg)?;
        let kube_cfg = crate::backend::config_from_kubeconfig(&spec.kubeconfig, Some(&a.api_token)).await?;
        let client = kube::Client::try_from(kube_cfg)?;
        let agent = nodeagent::build(&cfg, client, metrics.clone(), &shutdown);
        handles.push(tokio::spawn(agent.run(shutdown.clone())));
    }
    eprintln!("fleet: {} agents running", handles.len());
    runtime::shutdown::on_signal(shutdown.clone()).await;
    publisher.abort();
    counts.abort();
    for h in handles {
        let _ = h.await;
    }
    drop(hosts);
    Ok(())
}
