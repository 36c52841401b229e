//! The options of a test fleet ([`FleetOptions`]): sizes, the simulated
//! hosts' timings, and every component's flags, scaled from the shipped
//! defaults so that their proportions hold (docs/protocol.md section 8).

use std::time::Duration;

use crate::hostsim::{RebootMode, Timings};

/// Durations and sizes of a test fleet, scaled down from production defaults.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    pub nodes: usize,
    pub slots: u32,
    pub running: String,
    pub pods_per_node: usize,
    pub leaders: usize,
    pub host_timings: Timings,
    pub reboot_mode: RebootMode,
    /// How long an evicted pod takes to terminate (the harness's kubelet).
    pub pod_termination: Duration,
    /// How long after a boot the node's pods turn Ready (after the Node).
    pub pod_start_after_boot: Duration,
    /// Start the agent processes (off for tests that speak to the authproxy themselves).
    pub agents: bool,
    /// Node names are `<prefix><i>`; default `<run id>-node-` (unique per fleet).
    pub node_prefix: Option<String>,
    /// Run in the shipped namespace under the shipped ServiceAccounts and RBAC
    /// (from `deploy/bottlerocket-update-operator.yaml`), on a server that
    /// enforces RBAC. One such fleet per API server at a time.
    pub shipped_rbac: bool,
    /// With `shipped_rbac`: install into this namespace instead, as a
    /// kustomize overlay of `deploy/base` setting `namespace:` makes it.
    pub install_namespace: Option<String>,
    /// Agent flags (name without `--`, value).
    pub agent_args: Vec<(String, String)>,
    /// Leader flags.
    pub leader_args: Vec<(String, String)>,
    /// Authproxy flags.
    pub authproxy_args: Vec<(String, String)>,
    /// Run these builds of the components instead of the current ones
    /// (flags they do not know are left out); [`Fleet::upgrade`] replaces
    /// them with the current build.
    pub binaries: Option<super::bins::Binaries>,
    /// Install these CRDs (another build's `deploy/base/crds.yaml`) instead of
    /// the current ones.
    pub crds_yaml: Option<String>,
}

/// The slot lease of a test fleet: the shipped 2 minutes scaled down 40
/// times (see [`FleetOptions::scaled`]).
pub const TEST_LEASE: Duration = Duration::from_secs(3);

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

impl FleetOptions {
    /// A fleet whose every duration keeps its shipped proportion to a slot
    /// lease of `lease` (shipped: 2 minutes): the agents', leader's and
    /// authproxy's deadlines, and the simulated hosts, whose prepare-update
    /// and reboot each take longer than a lease, as on real nodes (see
    /// [`Timings::production`]). Leases are whole seconds and the leader
    /// reclaims a slot 3 s after it expired (clock skew between machines
    /// does not shrink with the lease), so a dead agent's slot goes within
    /// `lease + 3 s`. Node and fleet backoffs and the update check are
    /// shorter than scaled, so tests do not wait minutes for a retry;
    /// neither makes the agent's job easier.
    pub fn scaled(lease: Duration) -> FleetOptions {
        let l = |f: f64| ms(lease.mul_f64(f));
        // Shipped values, for a 2-minute lease, in the comments.
        let step_margin = Duration::from_secs(lease.mul_f64(0.25).as_secs_f64().ceil().max(1.0) as u64);
        FleetOptions {
            nodes: 3,
            slots: 1,
            running: "1.20.0".into(),
            pods_per_node: 2,
            leaders: 1,
            host_timings: Timings::production(lease),
            reboot_mode: RebootMode::Automatic,
            // Pods that handle SIGTERM go within seconds.
            pod_termination: lease / 12,
            // Containers restart within seconds of the kubelet (shipped: 20s).
            pod_start_after_boot: lease / 6,
            agents: true,
            node_prefix: None,
            shipped_rbac: false,
            install_namespace: None,
            agent_args: vec![
                ("slot-lease-duration".into(), format!("{}s", lease.as_secs().max(1))), // 2m
                ("reboot-grace".into(), l(5.0)),                                        // 10m
                ("reboot-timeout".into(), l(2.5)),                                      // 5m
                ("drain-timeout".into(), l(5.0)),                                       // 10m
                ("do-not-disrupt-timeout".into(), l(5.0)),                              // 10m
                ("drain-interval".into(), l(1.0 / 24.0)),                               // 5s
                ("step-margin".into(), ms(step_margin)),                                // 30s (whole seconds)
                ("health-timeout".into(), l(2.5)),                                      // 5m
                ("health-minimum".into(), l(1.0 / 24.0)),                               // 5s
                ("health-poll-interval".into(), l(1.0 / 24.0)),                         // 5s
                ("host-command-timeout".into(), l(7.5)),                                // 15m
                ("host-poll-min".into(), l(1.0 / 120.0)),                               // 1s
                ("host-poll-max".into(), l(1.0 / 24.0)),                                // 5s
                // 30s; debug builds on a busy machine need more than a scaled 0.75s.
                ("request-timeout".into(), ms(lease.mul_f64(0.25).max(Duration::from_secs(2)))),
                ("node-backoff".into(), "2s".into()),             // 10m
                ("node-backoff-max".into(), "10s".into()),        // 6h
                ("update-check-interval".into(), "300ms".into()), // 1h
            ],
            leader_args: vec![
                ("slot-lease-duration".into(), format!("{}s", lease.as_secs().max(1))), // 2m
                ("failure-backoff".into(), "1s".into()),                                // 5m
                ("failure-backoff-max".into(), "8s".into()),                            // 1h
                ("max-consecutive-failures".into(), "3".into()),
                ("max-slot-hold".into(), l(60.0)), // 2h
                ("lease-duration".into(), "3s".into()),
                ("renew-deadline".into(), "2s".into()),
                ("retry-period".into(), "300ms".into()),
            ],
            authproxy_args: vec![
                ("max-slot-lease".into(), l(7.5)), // 15m
                ("cert-reload-interval".into(), "200ms".into()),
                ("rate-limit".into(), "500".into()),
            ],
            binaries: None,
            crds_yaml: None,
        }
    }

    /// Sets one agent flag (name without `--`), replacing its value.
    pub fn agent_flag(mut self, name: &str, value: impl Into<String>) -> FleetOptions {
        set_flag(&mut self.agent_args, name, value.into());
        self
    }

    /// Sets one leader flag.
    pub fn leader_flag(mut self, name: &str, value: impl Into<String>) -> FleetOptions {
        set_flag(&mut self.leader_args, name, value.into());
        self
    }

    /// Sets one authproxy flag.
    pub fn authproxy_flag(mut self, name: &str, value: impl Into<String>) -> FleetOptions {
        set_flag(&mut self.authproxy_args, name, value.into());
        self
    }
}

fn set_flag(flags: &mut Vec<(String, String)>, name: &str, value: String) {
    flags.retain(|(k, _)| k != name);
    flags.push((name.to_owned(), value));
}

impl Default for FleetOptions {
    /// [`FleetOptions::scaled`] to [`TEST_LEASE`].
    fn default() -> Self {
        FleetOptions::scaled(TEST_LEASE)
    }
}
