//! The agent's flags. Every flag has an environment-variable fallback (the
//! node name comes from the downward API); durations are humantime. Bad
//! values are refused at start with a message naming the flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use runtime::flags::{CommonFlags, duration};

use crate::machine;

#[derive(Parser, Debug, Clone)]
#[command(name = "nodeagent", version, about = "Drives one Bottlerocket node through its update while it holds a slot")]
pub struct Flags {
    /// The node this agent runs on (the downward API's spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    #[command(flatten)]
    pub common: CommonFlags,
    /// URL of the authproxy, through which every write goes. The default is
    /// the Service's short name, which resolves in the pod's own namespace.
    #[arg(long, env = "BRUPOP_AUTHPROXY_URL", default_value = "https://brupop-authproxy:8443")]
    pub authproxy_url: String,
    /// Client certificate (PEM) for mTLS with the authproxy.
    #[arg(long, env = "BRUPOP_CLIENT_CERT", default_value = "/etc/brupop/tls/tls.crt")]
    pub client_cert: PathBuf,
    /// Client private key (PEM).
    #[arg(long, env = "BRUPOP_CLIENT_KEY", default_value = "/etc/brupop/tls/tls.key")]
    pub client_key: PathBuf,
    /// CA bundle (PEM) the authproxy's certificate must chain to.
    #[arg(long, env = "BRUPOP_AUTHPROXY_CA", default_value = "/etc/brupop/tls/ca.crt")]
    pub authproxy_ca: PathBuf,
    /// More CAs (PEM bundle) the authproxy's certificate may chain to; an
    /// absent or empty file adds none. The optional `brupop-ca-bundle`
    /// ConfigMap: old and new CA during a CA key rotation (SECURITY.md).
    #[arg(long, env = "BRUPOP_EXTRA_CA")]
    pub extra_ca: Option<PathBuf>,
    /// Projected ServiceAccount token with the authproxy's audience.
    #[arg(long, env = "BRUPOP_TOKEN_FILE", default_value = "/var/run/secrets/brupop/token")]
    pub token_file: PathBuf,
    /// The host's Bottlerocket API socket.
    #[arg(long, env = "BRUPOP_HOST_SOCKET", default_value = "/run/api.sock")]
    pub host_socket: PathBuf,
    /// Lease duration asked for at each renewal; renewed every third of it.
    #[arg(long, env = "BRUPOP_SLOT_LEASE_DURATION", default_value = "2m", value_parser = duration)]
    pub slot_lease_duration: Duration,
    /// Lease extension before rebooting: the longest the node may be down (at most the authproxy's --max-slot-lease).
    #[arg(long, env = "BRUPOP_REBOOT_GRACE", default_value = "10m", value_parser = duration)]
    pub reboot_grace: Duration,
    /// How long after asking for the reboot the node must have gone down.
    #[arg(long, env = "BRUPOP_REBOOT_TIMEOUT", default_value = "5m", value_parser = duration)]
    pub reboot_timeout: Duration,
    /// How long a drain may take, from the cordon.
    #[arg(long, env = "BRUPOP_DRAIN_TIMEOUT", default_value = "10m", value_parser = duration)]
    pub drain_timeout: Duration,
    /// Pause between drain rounds while pods remain.
    #[arg(long, env = "BRUPOP_DRAIN_INTERVAL", default_value = "5s", value_parser = duration)]
    pub drain_interval: Duration,
    /// Lease time that must remain for a cordon or a drain round.
    #[arg(long, env = "BRUPOP_STEP_MARGIN", default_value = "30s", value_parser = duration)]
    pub step_margin: Duration,
    /// The longest the walk waits after the reboot for the node and the pods
    /// it ran before the drain (or their replacements on it) to be Ready;
    /// then it fails HealthCheckFailed. The UpdatePolicy's
    /// `health.timeout` overrides it for the walks it grants.
    #[arg(long, env = "BRUPOP_HEALTH_TIMEOUT", default_value = "5m", value_parser = duration)]
    pub health_timeout: Duration,
    /// The least the walk watches the updated node: a healthy node releases
    /// its slot once this much time has passed since it came back
    /// (`health.minimum`). `--monitoring-duration` is its former name.
    #[arg(long, alias = "monitoring-duration", env = "BRUPOP_HEALTH_MINIMUM", default_value = "5s", value_parser = duration)]
    pub health_minimum: Duration,
    /// Pause between health checks of a node not yet healthy (the first
    /// comes sooner).
    #[arg(long, env = "BRUPOP_HEALTH_POLL_INTERVAL", default_value = "5s", value_parser = duration)]
    pub health_poll_interval: Duration,
    /// Pods the health check never judges (a label selector, as `kubectl -l`
    /// takes it; `health.ignorePodSelector`).
    #[arg(long, env = "BRUPOP_HEALTH_IGNORE_POD_SELECTOR", default_value = "")]
    pub health_ignore_pod_selector: String,
    /// Pods the drain does not evict (a label selector; `drain.skipPodSelector`):
    /// they stay and restart with the node, and must come back Ready.
    #[arg(long, env = "BRUPOP_DRAIN_SKIP_POD_SELECTOR", default_value = "")]
    pub drain_skip_pod_selector: String,
    /// While a pod annotated not to be disrupted (`karpenter.sh/do-not-disrupt`
    /// or `brupop.bottlerocket.aws/do-not-disrupt`) runs on the node, the walk
    /// waits before the cordon at most this long, then fails DoNotDisrupt
    /// (node-only; `drain.doNotDisruptTimeout`).
    #[arg(long, env = "BRUPOP_DO_NOT_DISRUPT_TIMEOUT", default_value = "10m", value_parser = duration)]
    pub do_not_disrupt_timeout: Duration,
    /// Wait this long after excluding the node from external load balancers
    /// before evicting pods (`drain.loadBalancerWait`; the original operator's
    /// EXCLUDE_FROM_LB_WAIT_TIME_IN_SEC).
    #[arg(long, env = "BRUPOP_LOAD_BALANCER_WAIT", default_value = "0s", value_parser = duration)]
    pub load_balancer_wait: Duration,
    /// The grace period (seconds) every Eviction asks for; unset: each pod's
    /// own (`drain.gracePeriodSeconds`).
    #[arg(long, env = "BRUPOP_DRAIN_GRACE_PERIOD_SECONDS")]
    pub drain_grace_period_seconds: Option<i64>,
    /// Wait before asking again after a node-only failure; doubles per failure.
    #[arg(long, env = "BRUPOP_NODE_BACKOFF", default_value = "10m", value_parser = duration)]
    pub node_backoff: Duration,
    /// Longest node backoff.
    #[arg(long, env = "BRUPOP_NODE_BACKOFF_MAX", default_value = "6h", value_parser = duration)]
    pub node_backoff_max: Duration,
    /// How often the host is asked for new updates (±10%). The agent checks
    /// once at start, then once at a random point within the interval, so a
    /// fleet started together spreads its checks evenly over it.
    #[arg(long, env = "BRUPOP_UPDATE_CHECK_INTERVAL", default_value = "1h", value_parser = duration)]
    pub update_check_interval: Duration,
    /// Deadline of one host update command (prepare downloads the image).
    #[arg(long, env = "BRUPOP_HOST_COMMAND_TIMEOUT", default_value = "15m", value_parser = duration)]
    pub host_command_timeout: Duration,
    /// Pause between looks at a running host command once its first moments
    /// have passed; pauses then grow to 5% of the time it has taken.
    #[arg(long, env = "BRUPOP_HOST_POLL_MIN", default_value = "1s", value_parser = duration)]
    pub host_poll_min: Duration,
    /// Longest pause between looks at a running host command.
    #[arg(long, env = "BRUPOP_HOST_POLL_MAX", default_value = "5s", value_parser = duration)]
    pub host_poll_max: Duration,
    /// Exclude the node from external load balancers while it is cordoned.
    #[arg(long, env = "BRUPOP_EXCLUDE_FROM_LOAD_BALANCERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub exclude_from_load_balancers: bool,
    /// Deadline of one request to the authproxy.
    #[arg(long, env = "BRUPOP_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub request_timeout: Duration,
}

impl Flags {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        model::parse::node_name(&self.node_name).map_err(|e| format!("--node-name: {e}"))?;
        self.common.validate()?;
        if self.step_margin.mul_f64(1.5) >= self.slot_lease_duration {
            return Err(format!(
                "--step-margin ({:?}) must be less than two thirds of --slot-lease-duration ({:?}): the agent renews when a third is used",
                self.step_margin, self.slot_lease_duration
            ));
        }
        if self.reboot_grace < self.step_margin {
            return Err("--reboot-grace must be at least --step-margin".to_owned());
        }
        if self.host_poll_min.is_zero() || self.host_poll_min > self.host_poll_max {
            return Err("--host-poll-min must be more than zero and at most --host-poll-max".to_owned());
        }
        if self.node_backoff > self.node_backoff_max {
            return Err("--node-backoff must not exceed --node-backoff-max".to_owned());
        }
        if self.health_minimum > self.health_timeout {
            return Err("--health-minimum must not exceed --health-timeout".to_owned());
        }
        if self.health_poll_interval.is_zero() {
            return Err("--health-poll-interval must be more than zero".to_owned());
        }
        for (flag, v) in [
            ("--health-ignore-pod-selector", &self.health_ignore_pod_selector),
            ("--drain-skip-pod-selector", &self.drain_skip_pod_selector),
        ] {
            model::selector::parse(v).map_err(|e| format!("{flag}: {e}"))?;
        }
        if self.drain_grace_period_seconds.is_some_and(|g| !(0..=model::walk::GRACE_PERIOD_MAX_SECONDS).contains(&g)) {
            return Err(format!(
                "--drain-grace-period-seconds must be within 0..={}",
                model::walk::GRACE_PERIOD_MAX_SECONDS
            ));
        }
        if !self.authproxy_url.starts_with("https://") {
            return Err(format!("--authproxy-url {:?} must be an https:// URL", self.authproxy_url));
        }
        Ok(())
    }

    /// The longest a walk can hold its slot with these deadlines, when every
    /// step takes as long as it may: four host commands (refresh, prepare,
    /// activate, and a deactivate if it aborts), the wait for pods that must
    /// not be disrupted, the load-balancer wait, the drain, the reboot (the
    /// slot is extended by `--reboot-grace` for it) and the health wait. The
    /// leader's `maxSlotHold` must be longer (docs/protocol.md section 3).
    pub fn longest_walk(&self) -> Duration {
        self.host_command_timeout * 4
            + self.do_not_disrupt_timeout
            + self.load_balancer_wait
            + self.drain_timeout
            + self.reboot_grace
            + self.health_timeout
    }

    /// The state machine's settings.
    pub fn machine(&self) -> machine::WalkSettings {
        machine::WalkSettings {
            slot_lease: self.slot_lease_duration,
            reboot_grace: self.reboot_grace,
            reboot_timeout: self.reboot_timeout,
            drain_timeout: self.drain_timeout,
            drain_interval: self.drain_interval,
            step_margin: self.step_margin,
            health_timeout: self.health_timeout,
            health_minimum: self.health_minimum,
            health_poll_interval: self.health_poll_interval,
            health_ignore_pod_selector: self.health_ignore_pod_selector.clone(),
            drain_skip_pod_selector: self.drain_skip_pod_selector.clone(),
            drain_grace_period_seconds: self.drain_grace_period_seconds,
            do_not_disrupt_timeout: self.do_not_disrupt_timeout,
            load_balancer_wait: self.load_balancer_wait,
            hooks: None,
            delete_blocked_pods_after: None,
            node_backoff: self.node_backoff,
            node_backoff_max: self.node_backoff_max,
            exclude_from_load_balancers: self.exclude_from_load_balancers,
            update_check_interval: self.update_check_interval,
            host_command_timeout: self.host_command_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Flags::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Flags, String> {
        Flags::try_parse_from(["nodeagent", "--node-name", "node-1"].iter().chain(args.iter()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_flag() {
        assert_eq!(parse(&[]).unwrap().validate(), Ok(()));
        let err = parse(&["--reboot-grace", "a while"]).unwrap_err();
        assert!(err.contains("--reboot-grace"), "{err}");
        let err = parse(&["--step-margin", "90s"]).unwrap().validate().unwrap_err();
        assert!(err.contains("--step-margin"), "{err}");
        let err = parse(&["--drain-skip-pod-selector", "a in b"]).unwrap().validate().unwrap_err();
        assert!(err.contains("--drain-skip-pod-selector"), "{err}");
        let err = parse(&["--health-minimum", "10m"]).unwrap().validate().unwrap_err();
        assert!(err.contains("--health-minimum"), "{err}");
        let old_name = parse(&["--monitoring-duration", "7s"]).unwrap();
        assert_eq!(old_name.health_minimum, Duration::from_secs(7));
        let err = parse(&["--authproxy-url", "http://x"]).unwrap().validate().unwrap_err();
        assert!(err.contains("https"), "{err}");
    }
}
