//! The property test over timings: random durations for every part of a
//! node's update, each between 0.05 and 5 slot leases (log-uniform, so
//! short and long parts are equally likely), and always within its own
//! deadline. Whatever the mix, every node must update, no slot may expire,
//! no failure may be recorded, and never more nodes may be disrupted than
//! slots allow (the invariant monitor).
//!
//! Each case comes from a seed, so any case replays exactly:
//! `cargo test -p tests --test e2e production_timings` runs a few,
//! `cargo run -p tests --bin timings -- --cases 30` many more.

use std::time::{Duration, Instant};

use model::ShadowState;

use crate::harness::{Fleet, FleetOptions, TEST_LEASE};
use crate::hostsim::Timings;

/// Shortest and longest part, in slot leases.
pub const MIN_LEASES: f64 = 0.05;
pub const MAX_LEASES: f64 = 5.0;

/// A small deterministic generator (splitmix64): cases and chaos schedules
/// replay from their seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }

    /// A duration in `lo..=hi` (millisecond steps).
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        Duration::from_millis(self.range(lo.as_millis() as u64, hi.as_millis() as u64))
    }

    /// Log-uniform in `[lo, hi]`.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }
}

/// One case: how long each part of every node's update takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub seed: u64,
    pub lease: Duration,
    pub refresh: Duration,
    pub prepare: Duration,
    pub activate: Duration,
    pub deactivate: Duration,
    pub reboot: Duration,
    /// How long an evicted pod takes to terminate.
    pub drain: Duration,
    pub monitoring: Duration,
}

impl Case {
    /// The case of `seed` for the test fleet's slot lease. Parts with a
    /// deadline stay under 80% of it (the reboot under the reboot grace,
    /// the drain under the drain timeout, each command under the command
    /// deadline), so every walk can succeed.
    pub fn generate(seed: u64) -> Case {
        let lease = TEST_LEASE;
        let deadlines = FleetOptions::scaled(lease);
        let deadline = |flag: &str| {
            deadlines
                .agent_args
                .iter()
                .find(|(k, _)| k == flag)
                .and_then(|(_, v)| model::parse::duration(v).ok())
                .unwrap_or(Duration::MAX)
                .mul_f64(0.8)
        };
        let mut rng = Rng::new(seed);
        let mut part = |cap: Duration| lease.mul_f64(rng.log_uniform(MIN_LEASES, MAX_LEASES)).min(cap);
        let command = deadline("host-command-timeout");
        Case {
            seed,
            lease,
            refresh: part(command),
            prepare: part(command),
            activate: part(command),
            deactivate: part(command),
            reboot: part(deadline("reboot-grace")),
            drain: part(deadline("drain-timeout")),
            monitoring: part(Duration::MAX),
        }
    }

    /// The fleet of this case: `nodes` nodes sharing `slots` slots.
    pub fn options(&self, nodes: usize, slots: u32) -> FleetOptions {
        let mut o = FleetOptions::scaled(self.lease)
            .agent_flag("health-minimum", format!("{}ms", self.monitoring.as_millis().max(1)))
            .agent_flag("health-timeout", format!("{}ms", self.monitoring.max(self.lease.mul_f64(2.5)).as_millis()));
        o.nodes = nodes;
        o.slots = slots;
        o.host_timings = Timings {
            refresh: self.refresh,
            prepare: self.prepare,
            activate: self.activate,
            deactivate: self.deactivate,
            reboot_downtime: self.reboot,
            status_read_hold: Duration::ZERO,
        };
        o.pod_termination = self.drain;
        o
    }

    /// The longest a node's walk can take, with slack for a busy machine.
    pub fn walk_bound(&self) -> Duration {
        let parts = self.refresh * 2 + self.prepare + self.activate + self.reboot + self.drain + self.monitoring;
        parts + self.lease * 4 + Duration::from_secs(10)
    }

    /// One line for logs: each part in leases.
    pub fn describe(&self) -> String {
        let r = |d: Duration| d.as_secs_f64() / self.lease.as_secs_f64();
        format!(
            "seed {} (lease {:?}): refresh {:.2}, prepare {:.2}, activate {:.2}, deactivate {:.2}, reboot {:.2}, drain {:.2}, monitoring {:.2} leases",
            self.seed,
            self.lease,
            r(self.refresh),
            r(self.prepare),
            r(self.activate),
            r(self.deactivate),
            r(self.reboot),
            r(self.drain),
            r(self.monitoring)
        )
    }
}

/// What one case did.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: Case,
    pub elapsed: Duration,
    /// Host API requests per node update (answered by the hosts).
    pub host_requests_per_update: f64,
    /// Of which answered 423.
    pub locked_per_update: f64,
    /// Everything that went wrong; empty when the case passed.
    pub problems: Vec<String>,
}

/// Runs `case` on a fleet of `nodes` nodes and `slots` slots: publishes a
/// release, waits for every node to run it, and checks the rules. Returns
/// the problems found instead of panicking, so a runner can go on.
pub async fn run(case: Case, nodes: usize, slots: u32) -> anyhow::Result<CaseResult> {
    let name = format!("timings-{}", case.seed % 100_000);
    let fleet = Fleet::start(&name, case.options(nodes, slots)).await?;
    let started = Instant::now();
    let mut problems = Vec::new();
    let ready = crate::harness::wait::try_wait_for(Duration::from_secs(60), &mut || async {
        let n = fleet.shadows().await.iter().filter(|s| s.status.is_some()).count();
        if n == nodes { Ok(()) } else { Err(format!("{n}/{nodes} reported")) }
    })
    .await;
    if let Err(e) = ready {
        problems.push(format!("agents did not report: {e}"));
    }
    let before = fleet.hosts.requests();
    fleet.hosts.publish("1.21.0");
    let waves = nodes.div_ceil(slots.max(1) as usize) as u32;
    let bound = case.walk_bound() * waves + Duration::from_secs(30);
    let done = crate::harness::wait::try_wait_for(bound, &mut || async {
        let shadows = fleet.shadows().await;
        let all = shadows.len() == nodes
            && shadows.iter().all(|s| {
                s.spec.slot.is_none()
                    && s.status
                        .as_ref()
                        .is_some_and(|st| st.current_state == ShadowState::Idle && st.current_version == "1.21.0")
            });
        if all { Ok(()) } else { Err(fleet.progress().await) }
    })
    .await;
    if let Err(last) = done {
        problems.push(format!("not every node updated within {bound:?}: {last}"));
    }
    let after = fleet.hosts.requests();
    let status = fleet.policy().await.and_then(|p| p.status).unwrap_or_default();
    for f in &status.recent_failures {
        problems.push(format!("failure recorded on {}: {} ({})", f.node, f.reason, f.message));
    }
    for s in fleet.shadows().await {
        if let Some(f) = s.status.as_ref().and_then(|st| st.last_failure.as_ref()) {
            problems.push(format!("{} reported {}: {}", s.node_name().unwrap_or_default(), f.reason, f.message));
        }
    }
    problems.extend(fleet.monitor.violations());
    problems.extend(fleet.monitor.leftovers());
    let updates = nodes.max(1) as f64;
    let result = CaseResult {
        elapsed: started.elapsed(),
        host_requests_per_update: (after.answered - before.answered) as f64 / updates,
        locked_per_update: (after.locked - before.locked) as f64 / updates,
        problems,
        case,
    };
    fleet.stop().await;
    Ok(result)
}
