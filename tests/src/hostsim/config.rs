//! What a simulated host is set up with and what it reports: its
//! configuration ([`HostConfig`], [`Timings`], [`RebootMode`]), its events
//! ([`HostEvent`]), its power ([`Power`]) and snapshots ([`HostState`]).
//!
//! What this module does: holds plain data types with defaults that keep
//! tests in milliseconds.
//!
//! What it must not do: run anything; `host.rs` does.

use std::io;
use std::time::Duration;

use super::faults::Fault;
use super::machine::{Disk, VersionLock};
use super::repo::Repository;
use super::types::{CommandKind, CommandResult, UpdateStatus};

/// How long each command and a reboot take. The defaults keep tests in
/// milliseconds; the scale benchmark sets a fixed per-node host time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    /// refresh-updates
    pub refresh: Duration,
    /// prepare-update
    pub prepare: Duration,
    /// activate-update
    pub activate: Duration,
    /// deactivate-update
    pub deactivate: Duration,
    /// From going down to answering again (doubled when the bootloader
    /// falls back to the old image).
    pub reboot_downtime: Duration,
    /// How long each status read holds the shared lock (an action arriving
    /// meanwhile gets 423). Zero by default; tests that need the 423 use
    /// `HostSim::hold_status_lock` or [`Fault::LockContention`].
    pub status_read_hold: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            refresh: Duration::from_millis(5),
            prepare: Duration::from_millis(20),
            activate: Duration::from_millis(5),
            deactivate: Duration::from_millis(5),
            reboot_downtime: Duration::from_millis(50),
            status_read_hold: Duration::ZERO,
        }
    }
}

impl Timings {
    /// A real host's proportions to a slot lease of `lease` (the shipped
    /// lease is 2 minutes): prepare-update (which downloads and writes the
    /// image) takes 1.5 leases and the reboot 1.2, as minutes-long prepares
    /// and reboots do against the shipped 2-minute lease; refresh, activate
    /// and deactivate take seconds, a small part of a lease.
    pub fn production(lease: Duration) -> Timings {
        Timings {
            refresh: lease / 30,
            prepare: lease.mul_f64(1.5),
            activate: lease / 60,
            deactivate: lease / 60,
            reboot_downtime: lease.mul_f64(1.2),
            status_read_hold: Duration::ZERO,
        }
    }

    /// Every command and the reboot downtime take `each`.
    pub fn uniform(each: Duration) -> Timings {
        Timings {
            refresh: each,
            prepare: each,
            activate: each,
            deactivate: each,
            reboot_downtime: each,
            status_read_hold: Duration::ZERO,
        }
    }

    /// The time `cmd` takes.
    pub fn of(&self, cmd: CommandKind) -> Duration {
        match cmd {
            CommandKind::Refresh => self.refresh,
            CommandKind::Prepare => self.prepare,
            CommandKind::Activate => self.activate,
            CommandKind::Deactivate => self.deactivate,
        }
    }
}

/// Whether a host comes back from a reboot by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebootMode {
    /// Boots again after [`Timings::reboot_downtime`].
    #[default]
    Automatic,
    /// Stays down until `HostSim::boot`.
    Manual,
}

/// How a host is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// A name for logs and events (the node's name in a fleet).
    pub name: String,
    /// e.g. `aws-k8s-1.29`
    pub variant: String,
    /// e.g. `x86_64`
    pub arch: String,
    /// The version the host runs at start.
    pub running_version: String,
    /// The releases of a private repository (ignored with `repository`).
    pub available: Vec<String>,
    /// A repository shared with other hosts.
    pub repository: Option<Repository>,
    /// The `version-lock` setting.
    pub version_lock: VersionLock,
    /// Command and reboot times.
    pub timings: Timings,
    /// Comes back from a reboot by itself or when told.
    pub reboot_mode: RebootMode,
    /// Faults active from the start.
    pub faults: Vec<Fault>,
}

impl HostConfig {
    /// A host running `version` whose repository lists only that version.
    pub fn new(version: &str) -> HostConfig {
        HostConfig {
            name: "host".into(),
            variant: "aws-k8s-1.29".into(),
            arch: "x86_64".into(),
            running_version: version.into(),
            available: vec![version.into()],
            repository: None,
            version_lock: VersionLock::Latest,
            timings: Timings::default(),
            reboot_mode: RebootMode::Automatic,
            faults: Vec::new(),
        }
    }

    /// With this name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// With these releases in its private repository.
    pub fn available(mut self, versions: &[&str]) -> Self {
        self.available = versions.iter().map(|v| (*v).to_owned()).collect();
        self
    }

    /// Refreshing from this shared repository.
    pub fn repository(mut self, repository: Repository) -> Self {
        self.repository = Some(repository);
        self
    }

    /// With this `version-lock` (`latest` or a version).
    pub fn version_lock(mut self, lock: &str) -> Self {
        self.version_lock = VersionLock::parse(lock);
        self
    }

    /// With these timings.
    pub fn timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }

    /// With this reboot mode.
    pub fn reboot_mode(mut self, mode: RebootMode) -> Self {
        self.reboot_mode = mode;
        self
    }

    /// With this fault active from the start.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }
}

/// What happened on a host, in order. Subscribe with `HostSim::events`
/// before acting; `HostSim::power` keeps the latest power state, which
/// cannot be missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// An update action was accepted (204) and its work started.
    CommandStarted(CommandKind),
    /// A command's work finished and was written to the status.
    CommandFinished(CommandResult),
    /// `POST /actions/reboot` was accepted: the host goes down next.
    RebootRequested,
    /// The host is down: the socket is gone, connections are closed.
    Down,
    /// The new image did not boot; the bootloader falls back.
    BootFailed {
        /// The image that failed.
        version: String,
    },
    /// The host answers again, running `version`.
    Up {
        /// The version it booted.
        version: String,
    },
}

/// Whether the host answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    /// Serving its API.
    Up,
    /// A reboot was accepted; the host is about to go down.
    GoingDown,
    /// Not serving; waiting to boot.
    Down,
}

/// The host's power, as a watch value that always holds the latest state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Power {
    /// Up, going down or down.
    pub state: PowerState,
    /// How many times the host booted (1 after start).
    pub boots: u64,
    /// The version it runs (or ran before going down).
    pub version: String,
    /// How many reboot requests it accepted, ever. A harness that compares
    /// this with what it handled never loses a request.
    pub reboots_requested: u64,
    /// How many boots fell back to the old image.
    pub rollbacks: u64,
}

/// Why `HostSim::boot` did not boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The host is not down.
    #[error("host {0} is not down")]
    NotDown(String),
    /// [`Fault::RebootNeverReturns`] is active.
    #[error("host {0} never comes back (fault RebootNeverReturns)")]
    NeverReturns(String),
    /// The socket could not be bound.
    #[error("host {name}: binding {path}: {source}")]
    Bind {
        /// The host.
        name: String,
        /// The socket.
        path: String,
        /// Why.
        source: io::Error,
    },
}

/// A snapshot of a host for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    /// Power.
    pub power: Power,
    /// The status file, if any.
    pub update_status: Option<UpdateStatus>,
    /// The command holding the update lock.
    pub running_command: Option<CommandKind>,
    /// The partitions.
    pub disk: Disk,
    /// Status readers holding the shared lock.
    pub status_readers: u32,
}
