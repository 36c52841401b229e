//! The authproxy's flags. Every flag has an environment-variable fallback;
//! durations are humantime (`30s`, `15m`). Bad values are refused at start
//! with a message naming the flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use runtime::flags::{CommonFlags, duration};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "authproxy",
    version,
    about = "The agents' only path to write: mTLS + TokenReview, bound to the caller's node"
)]
pub struct Config {
    /// Address of the HTTPS (mTLS) API for agents.
    #[arg(long, env = "BRUPOP_LISTEN", default_value = "[::]:8443")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub common: CommonFlags,
    /// Server certificate chain (PEM), e.g. cert-manager's tls.crt.
    #[arg(long, env = "BRUPOP_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// Server private key (PEM), e.g. cert-manager's tls.key.
    #[arg(long, env = "BRUPOP_TLS_KEY")]
    pub tls_key: PathBuf,
    /// CA bundle (PEM) that agents' client certificates must chain to, e.g. cert-manager's ca.crt.
    #[arg(long, env = "BRUPOP_CLIENT_CA")]
    pub client_ca: PathBuf,
    /// More CAs (PEM bundle) client certificates may chain to; an absent or
    /// empty file adds none. The optional `brupop-ca-bundle` ConfigMap: old
    /// and new CA during a CA key rotation (SECURITY.md).
    #[arg(long, env = "BRUPOP_EXTRA_CA")]
    pub extra_ca: Option<PathBuf>,
    /// How often the certificate files are checked for rotation.
    #[arg(long, env = "BRUPOP_CERT_RELOAD_INTERVAL", default_value = "10s", value_parser = duration)]
    pub cert_reload_interval: Duration,
    /// Audience agents' projected tokens must carry (checked by TokenReview).
    #[arg(long, env = "BRUPOP_TOKEN_AUDIENCE", default_value = "brupop-authproxy")]
    pub token_audience: String,
    /// Namespace of the agent pods (default: the operator namespace).
    #[arg(long, env = "BRUPOP_AGENT_NAMESPACE")]
    pub agent_namespace: Option<String>,
    /// ServiceAccount the agent DaemonSet runs as; only its tokens are accepted.
    #[arg(long, env = "BRUPOP_AGENT_SERVICE_ACCOUNT", default_value = "brupop-agent")]
    pub agent_service_account: String,
    /// Label selector of the nodes this installation manages (as the
    /// leader's): a shadow is created only for a node it matches.
    #[arg(long, env = "BRUPOP_NODE_SELECTOR", default_value = "bottlerocket.aws/updater-interface-version=2.0.0")]
    pub node_selector: String,
    /// Longest renewal of a slot Lease (the longest step, a reboot, must fit).
    #[arg(long, env = "BRUPOP_MAX_SLOT_LEASE", default_value = "15m", value_parser = duration)]
    pub max_slot_lease: Duration,
    /// Longest a successful token check is cached: never past the token's
    /// expiry, and only while the token's pod lives (the authproxy watches
    /// the agent pods). Projected tokens live an hour by default.
    #[arg(long, env = "BRUPOP_TOKEN_CACHE_TTL", default_value = "1h", value_parser = duration)]
    pub token_cache_ttl: Duration,
    /// Most tokens cached at once.
    #[arg(long, env = "BRUPOP_TOKEN_CACHE_SIZE", default_value_t = 20_000)]
    pub token_cache_size: usize,
    /// Deadline of one request, cluster calls included.
    #[arg(long, env = "BRUPOP_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Requests per second allowed per node (a burst of twice as many is allowed).
    #[arg(long, env = "BRUPOP_RATE_LIMIT", default_value_t = 20)]
    pub rate_limit: u32,
    /// Requests per second allowed per peer address before authentication
    /// (a burst of twice as many): a holder of the client certificate cannot
    /// make the authproxy review tokens faster than this.
    #[arg(long, env = "BRUPOP_PEER_RATE_LIMIT", default_value_t = 20)]
    pub peer_rate_limit: u32,
    /// Connections open at once per peer address (an agent uses one).
    #[arg(long, env = "BRUPOP_MAX_CONNECTIONS_PER_PEER", default_value_t = 8)]
    pub max_connections_per_peer: usize,
    /// Connections open at once in all, above which the busiest peer's
    /// oldest is closed to make room (at twice this, new ones are refused).
    /// One replica must hold the whole fleet's open connections during a
    /// rolling update: at about 29 KiB each (measured), 7,000 fit the
    /// shipped 256Mi memory limit with the process's own ~30 MiB.
    #[arg(long, env = "BRUPOP_MAX_CONNECTIONS", default_value_t = 7_000)]
    pub max_connections: usize,
    /// An agent's connection with no request for this long is closed (it
    /// reconnects when it next asks), and a request's head must arrive
    /// within it.
    #[arg(long, env = "BRUPOP_IDLE_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// TokenReviews (with their pod lookups) in flight at once, apart from
    /// the budget of `--kube-max-in-flight`: reviews of unknown tokens cannot
    /// hold up renewals of agents already authenticated. One peer may have
    /// at most two in flight.
    #[arg(long, env = "BRUPOP_TOKEN_REVIEW_MAX_IN_FLIGHT", default_value_t = 8)]
    pub token_review_max_in_flight: usize,
    /// How long a refused token stays refused without another TokenReview.
    #[arg(long, env = "BRUPOP_REFUSAL_CACHE_TTL", default_value = "10s", value_parser = duration)]
    pub refusal_cache_ttl: Duration,
    /// Most Kubernetes API requests in flight at once; more wait their turn.
    /// A whole fleet asking at once (a release published to thousands of
    /// nodes) then costs the API server this many connections from each
    /// authproxy replica, not one per agent.
    #[arg(long, env = "BRUPOP_KUBE_MAX_IN_FLIGHT", default_value_t = 32)]
    pub kube_max_in_flight: usize,
}

impl Config {
    pub fn agent_namespace(&self) -> &str {
        self.agent_namespace.as_deref().unwrap_or(&self.common.namespace)
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        self.common.validate()?;
        model::selector::parse(&self.node_selector).map_err(|e| format!("--node-selector: {e}"))?;
        if self.max_slot_lease < Duration::from_secs(10) {
            return Err(format!("--max-slot-lease {:?} is too short (at least 10s)", self.max_slot_lease));
        }
        if self.rate_limit == 0 {
            return Err("--rate-limit must be at least 1".to_owned());
        }
        if self.peer_rate_limit == 0 {
            return Err("--peer-rate-limit must be at least 1".to_owned());
        }
        if self.max_connections_per_peer == 0 || self.max_connections < self.max_connections_per_peer {
            return Err(format!(
                "--max-connections ({}) must be at least --max-connections-per-peer ({}), which must be at least 1",
                self.max_connections, self.max_connections_per_peer
            ));
        }
        if self.idle_timeout < Duration::from_secs(1) {
            return Err(format!("--idle-timeout {:?} is too short (at least 1s)", self.idle_timeout));
        }
        if self.token_review_max_in_flight == 0 {
            return Err("--token-review-max-in-flight must be at least 1".to_owned());
        }
        if self.kube_max_in_flight == 0 {
            return Err("--kube-max-in-flight must be at least 1".to_owned());
        }
        if self.token_audience.is_empty() {
            return Err("--token-audience must not be empty".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn bad_durations_name_the_flag() {
        let err = Config::try_parse_from([
            "authproxy",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--client-ca",
            "a",
            "--max-slot-lease",
            "forever",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--max-slot-lease") && err.contains("forever"), "{err}");
    }
}
