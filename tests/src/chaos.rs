//! Chaos: a rollout under a random schedule of faults, checked by the
//! invariant monitor over its whole history and by the end state.
//!
//! A schedule is generated from a seed alone ([`Schedule::generate`]), so a
//! failing seed replays the same schedule (`cargo run -p tests --bin chaos
//! -- --first-seed S --schedules 1`). It runs a rollout of its nodes and
//! slots at the harness's production-proportioned timings, with two leader
//! replicas, and injects, at random times: kills and restarts of either or
//! both leaders, restarts of the authproxy, kills of agents at any step, cut
//! agent links, host faults (failed, slow and refused commands, a reboot that
//! takes long or drops its connection, a crash), a deleted node, and policy
//! changes (slots, pause and resume). Then every fault is undone, a person's
//! resume clears any halt or stop the faults caused, and the rollout must
//! finish within a bound derived from the timings.
//!
//! The checker ([`Report::violations`]): everything the monitor records
//! (slots held beyond the most ever allowed, a node holding two slots, more
//! nodes disrupted than slots, a grant while not granting), and at the end:
//! no node cordoned by us, no shadow mid-walk without its slot, no slot
//! held, every remaining node on the new version, no shadow left for a
//! deleted node, and the rollout finished in time.
//!
//! Not checked yet: that every failure is counted exactly once (the
//! injected failures against the UpdatePolicy's count), zone and group
//! limits, API faults and leader↔API partitions (the harness cannot inject
//! them into a running fleet yet).

use std::time::{Duration, Instant};

use model::ShadowState;

use crate::harness::{Fleet, FleetOptions};
use crate::hostsim::{CommandKind, Fault};
use crate::timings::Rng;

/// The version every schedule's rollout goes to.
pub const TARGET: &str = "1.21.0";

/// One thing done to the running fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    KillLeader(usize),
    StartLeader(usize),
    RestartAuthproxy,
    KillAgent(usize),
    StartAgent(usize),
    Cut(usize),
    Restore(usize),
    HostFault(usize, Fault),
    ClearHost(usize),
    /// The host crashes and boots again (what it was doing is lost).
    CrashHost(usize),
    DeleteNode(usize),
    SetSlots(u32),
    Pause,
    Resume,
}

/// How big schedules are.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub nodes: (usize, usize),
    pub slots: (u32, u32),
    /// Fault episodes per schedule.
    pub episodes: (usize, usize),
    /// Faults start within this long after the new version is offered.
    pub window: Duration,
}

impl Size {
    /// The envelope: 10–30 nodes, 1–5 slots.
    pub const FULL: Size = Size { nodes: (10, 30), slots: (1, 5), episodes: (4, 10), window: Duration::from_secs(40) };
    /// For `cargo test` and CI: fewer nodes, the same kinds of faults.
    pub const SMALL: Size = Size { nodes: (5, 8), slots: (1, 3), episodes: (3, 6), window: Duration::from_secs(20) };
}

/// A generated schedule: the fleet's shape and the steps at their times
/// (from the moment the new version is offered).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub seed: u64,
    pub nodes: usize,
    pub slots: u32,
    pub steps: Vec<(Duration, Step)>,
}

impl Schedule {
    pub fn generate(seed: u64, size: Size) -> Schedule {
        let mut rng = Rng::new(seed);
        let nodes = rng.range(size.nodes.0 as u64, size.nodes.1 as u64) as usize;
        let slots = rng.range(u64::from(size.slots.0), u64::from(size.slots.1)) as u32;
        let lease = crate::harness::options::TEST_LEASE;
        let episodes = rng.range(size.episodes.0 as u64, size.episodes.1 as u64);
        let mut steps = Vec::new();
        let mut deleted = false;
        for _ in 0..episodes {
            let at = rng.duration(Duration::ZERO, size.window);
            // Faults last from a fraction of a lease to a few leases.
            let d = rng.duration(lease / 4, lease * 3);
            let node = rng.range(0, nodes as u64 - 1) as usize;
            match rng.range(0, 10) {
                0 => {
                    let i = rng.range(0, 2) as usize;
                    // 2 means both replicas.
                    let which: Vec<usize> = if i == 2 { vec![0, 1] } else { vec![i] };
                    for i in which {
                        steps.push((at, Step::KillLeader(i)));
                        steps.push((at + d, Step::StartLeader(i)));
                    }
                }
                1 => steps.push((at, Step::RestartAuthproxy)),
                2 => {
                    steps.push((at, Step::KillAgent(node)));
                    steps.push((at + d, Step::StartAgent(node)));
                }
                3 => {
                    steps.push((at, Step::Cut(node)));
                    steps.push((at + d, Step::Restore(node)));
                }
                4 | 5 => {
                    let fault = match rng.range(0, 4) {
                        0 => Fault::CommandFails {
                            command: *rng.pick(&[CommandKind::Prepare, CommandKind::Activate]),
                            exit_status: 1,
                            stderr: "chaos: the command failed".into(),
                        },
                        1 => Fault::SlowCommand {
                            command: *rng.pick(&[CommandKind::Prepare, CommandKind::Activate]),
                            duration: rng.duration(lease, lease * 4),
                        },
                        2 => Fault::RebootDelayed(rng.duration(lease / 2, lease * 2)),
                        3 => Fault::RebootDropsConnection,
                        _ => Fault::ActionFails { command: CommandKind::Prepare, body: "chaos: busy".into() },
                    };
                    steps.push((at, Step::HostFault(node, fault)));
                    steps.push((at + d, Step::ClearHost(node)));
                }
                6 => steps.push((at, Step::CrashHost(node))),
                7 if !deleted && nodes > 2 => {
                    deleted = true;
                    steps.push((at, Step::DeleteNode(node)));
                }
                8 => steps.push((at, Step::SetSlots(rng.range(1, u64::from(slots) + 1) as u32))),
                _ => {
                    steps.push((at, Step::Pause));
                    steps.push((at + d, Step::Resume));
                }
            }
        }
        steps.sort_by_key(|(at, _)| *at);
        Schedule { seed, nodes, slots, steps }
    }

    /// When the last step is done.
    pub fn faults_end(&self) -> Duration {
        self.steps.last().map_or(Duration::ZERO, |(at, _)| *at)
    }

    /// How long the rollout may take once the faults are over: a walk per
    /// node per slot (at the lowest slot count the schedule sets), each at
    /// most ten leases (host commands and the reboot are each longer than a
    /// lease; a failed walk's backoff is a few seconds), plus a minute for
    /// leases to expire and halts to end.
    pub fn liveness_bound(&self) -> Duration {
        let lease = crate::harness::options::TEST_LEASE;
        let min_slots = self
            .steps
            .iter()
            .filter_map(|(_, s)| if let Step::SetSlots(n) = s { Some(*n) } else { None })
            .chain([self.slots])
            .min()
            .unwrap_or(1)
            .max(1) as usize;
        let rounds = self.nodes.div_ceil(min_slots) as u32;
        Duration::from_secs(60) + lease * 10 * rounds
    }
}

/// What one schedule did and found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub slots: u32,
    pub steps: usize,
    pub violations: Vec<String>,
    /// From the new version's offer to the last node done.
    pub rollout: Duration,
    pub peak_held: usize,
    pub peak_disrupted: usize,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "seed {} nodes {} slots {} steps {} rollout {:.1}s peak held {} disrupted {} violations {}",
            self.seed,
            self.nodes,
            self.slots,
            self.steps,
            self.rollout.as_secs_f64(),
            self.peak_held,
            self.peak_disrupted,
            self.violations.len()
        )
    }
}

/// Runs one schedule on a fleet of its own.
pub async fn run(schedule: &Schedule) -> anyhow::Result<Report> {
    let opts = FleetOptions {
        nodes: schedule.nodes,
        slots: schedule.slots,
        leaders: 2,
        // A failure halts; a run of them stops the rollout: both are outcomes
        // a person ends with a resume, which the run does after the faults.
        ..FleetOptions::default()
    };
    let fleet = Fleet::start(&format!("chaos-{}", schedule.seed), opts).await?;
    let mut violations = Vec::new();
    fleet.wait_reported(Duration::from_secs(120)).await;
    fleet.hosts.publish(TARGET);
    let start = Instant::now();
    let mut killed_leaders = [false; 2];
    let mut killed_agents = std::collections::BTreeSet::new();
    let mut cut = std::collections::BTreeSet::new();
    let mut deleted = None;
    let mut paused = false;
    let mut max_slots = schedule.slots;
    for (at, step) in &schedule.steps {
        // The schedule's own clock: each step at its time.
        if let Some(wait) = at.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let node = |i: &usize| fleet.nodes[*i].clone();
        match step {
            Step::KillLeader(i) => {
                fleet.kill_leader(*i);
                killed_leaders[*i] = true;
            }
            Step::StartLeader(i) if killed_leaders[*i] => {
                killed_leaders[*i] = false;
                fleet.start_leader(*i);
            }
            Step::RestartAuthproxy => {
                let f = &fleet;
                tokio::task::block_in_place(|| f.restart_authproxy());
            }
            Step::KillAgent(i) if Some(*i) != deleted => {
                fleet.kill_agent(&node(i));
                killed_agents.insert(*i);
            }
            Step::StartAgent(i) if Some(*i) != deleted && killed_agents.contains(i) => {
                killed_agents.remove(i);
                fleet.start_agent(&node(i));
            }
            Step::Cut(i) => {
                fleet.cut(&node(i));
                cut.insert(*i);
            }
            Step::Restore(i) => {
                fleet.restore(&node(i));
                cut.remove(i);
            }
            Step::HostFault(i, fault) => {
                if let Some(h) = fleet.hosts.host(&node(i)) {
                    h.set_fault(fault.clone());
                }
            }
            Step::ClearHost(i) => {
                if let Some(h) = fleet.hosts.host(&node(i)) {
                    h.clear_faults();
                }
            }
            Step::CrashHost(i) if Some(*i) != deleted => {
                if let Some(h) = fleet.hosts.host(&node(i)) {
                    fleet.monitor.crashed(&node(i));
                    h.crash();
                }
            }
            Step::DeleteNode(i) => {
                fleet.delete_node(&node(i)).await;
                deleted = Some(*i);
                killed_agents.remove(i);
            }
            Step::SetSlots(n) => {
                // Slots held when it shrinks are kept until released: the
                // most ever allowed is the limit.
                max_slots = max_slots.max(*n);
                fleet.monitor.allow_slots(max_slots as usize);
                fleet.patch_policy(serde_json::json!({"maxConcurrentUpdates": n})).await;
            }
            Step::Pause => {
                fleet.patch_policy(serde_json::json!({"paused": true})).await;
                paused = true;
            }
            Step::Resume => {
                fleet.patch_policy(serde_json::json!({"paused": false})).await;
                paused = false;
            }
            _ => {}
        }
    }
    // The faults are over: everything back, and a person's resume.
    for (i, killed) in killed_leaders.iter().enumerate() {
        if *killed {
            fleet.start_leader(i);
        }
    }
    for i in &killed_agents {
        fleet.start_agent(&fleet.nodes[*i]);
    }
    for i in &cut {
        fleet.restore(&fleet.nodes[*i]);
    }
    for h in fleet.hosts.hosts() {
        h.clear_faults();
    }
    if paused {
        fleet.patch_policy(serde_json::json!({"paused": false})).await;
    }
    fleet.patch_policy(serde_json::json!({"maxConcurrentUpdates": schedule.slots})).await;
    fleet.resume().await;
    // Liveness: every remaining node on the new version within the bound.
    let remaining: Vec<String> =
        fleet.nodes.iter().enumerate().filter(|(i, _)| Some(*i) != deleted).map(|(_, n)| n.clone()).collect();
    let gone = deleted.map(|i| fleet.nodes[i].clone());
    let bound = schedule.liveness_bound();
    let mut check = || async {
        let shadows = fleet.shadows().await;
        let on = |n: &String| {
            shadows.iter().any(|s| {
                s.metadata.name.as_deref() == Some(model::names::shadow_name(n).as_str())
                    && s.spec.slot.is_none()
                    && s.status
                        .as_ref()
                        .is_some_and(|st| st.current_state == ShadowState::Idle && st.current_version == TARGET)
            })
        };
        let leaked = gone.as_ref().is_some_and(|g| {
            shadows.iter().any(|s| s.metadata.name.as_deref() == Some(model::names::shadow_name(g).as_str()))
        });
        let free = fleet.slots().await.iter().all(|(_, h)| h.is_none());
        if remaining.iter().all(on) && free && !leaked {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                fleet.progress().await,
                if leaked { " | the deleted node's shadow remains" } else { "" }
            ))
        }
    };
    let rollout = match crate::harness::wait::try_wait_for(bound, &mut check).await {
        Ok(()) => start.elapsed(),
        Err(e) => {
            violations.push(format!("the rollout did not finish within {bound:?} after the faults: {e}"));
            start.elapsed()
        }
    };
    violations.extend(fleet.monitor.violations());
    violations.extend(fleet.monitor.leftovers());
    let peaks = fleet.monitor.peaks();
    let report = Report {
        seed: schedule.seed,
        nodes: schedule.nodes,
        slots: schedule.slots,
        steps: schedule.steps.len(),
        violations,
        rollout,
        peak_held: peaks.held,
        peak_disrupted: peaks.disrupted,
    };
    if !report.violations.is_empty() {
        // The component logs, kept for reading beside the violations' times.
        let kept = std::env::temp_dir().join(format!("brupop-chaos-{}", schedule.seed));
        let _ = std::fs::create_dir_all(&kept);
        for e in std::fs::read_dir(&fleet.dir).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                let _ = std::fs::copy(e.path(), kept.join(e.file_name()));
            }
        }
        eprintln!("chaos seed {}: component logs kept in {}", schedule.seed, kept.display());
    }
    fleet.stop().await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_makes_the_same_schedule_and_seeds_differ() {
        let a = Schedule::generate(7, Size::FULL);
        let b = Schedule::generate(7, Size::FULL);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let c = Schedule::generate(8, Size::FULL);
        assert_ne!(format!("{a:?}"), format!("{c:?}"));
        for seed in 0..200 {
            let s = Schedule::generate(seed, Size::FULL);
            assert!((10..=30).contains(&s.nodes) && (1..=5).contains(&s.slots), "{s:?}");
            assert!(s.steps.windows(2).all(|w| w[0].0 <= w[1].0), "steps in time order");
            assert!(s.steps.iter().filter(|(_, st)| matches!(st, Step::DeleteNode(_))).count() <= 1);
            // Every kill has its restart, every cut its restore, every fault its clear.
            let count = |f: fn(&Step) -> bool| s.steps.iter().filter(|(_, st)| f(st)).count();
            assert_eq!(count(|s| matches!(s, Step::KillLeader(_))), count(|s| matches!(s, Step::StartLeader(_))));
            assert_eq!(count(|s| matches!(s, Step::Cut(_))), count(|s| matches!(s, Step::Restore(_))));
            assert_eq!(count(|s| matches!(s, Step::HostFault(..))), count(|s| matches!(s, Step::ClearHost(_))));
        }
    }

    #[test]
    fn the_liveness_bound_follows_nodes_and_the_fewest_slots() {
        let mut s = Schedule { seed: 0, nodes: 10, slots: 5, steps: vec![] };
        let two_rounds = s.liveness_bound();
        s.steps.push((Duration::ZERO, Step::SetSlots(1)));
        assert!(s.liveness_bound() >= two_rounds * 3);
    }
}
