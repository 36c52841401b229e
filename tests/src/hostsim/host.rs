//! One simulated host: its configuration, its power (up, going down, down),
//! the commands running in the background, and the handle tests hold.
//!
//! What this module does: wires the pure [`Machine`] to time and I/O. An
//! accepted action takes the update lock and its work runs as a task for the
//! configured time; the outcome (from the faults active when it finishes)
//! lands in `most_recent_command`. A reboot request is recorded (event and
//! [`Power::reboots_requested`]) before the answer is sent, then the host
//! goes down (socket removed, connections closed, status file lost) and comes
//! back by itself after the downtime ([`RebootMode::Automatic`]) or when the
//! harness calls [`HostSim::boot`] ([`RebootMode::Manual`]).
//!
//! What it must not do: decide the host's answers (the machine and the
//! faults do) or parse HTTP (`server.rs` does).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use super::config::{BootError, HostConfig, HostEvent, HostState, Power, PowerState, RebootMode, Timings};
use super::faults::{Fault, Faults, NO_DISPATCHER};
use super::machine::{BootOutcome, Machine, VersionLock};
use super::repo::Repository;
use super::server;
use super::types::{CommandKind, UpdateStatus};

/// The state shared by the handle, the server and the background tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    socket: PathBuf,
    repository: Repository,
    inner: Mutex<Inner>,
    events: broadcast::Sender<HostEvent>,
    power: watch::Sender<Power>,
    faults_changed: watch::Sender<u64>,
    /// Requests answered, and how many of them 423.
    pub(crate) answered: std::sync::atomic::AtomicU64,
    pub(crate) locked: std::sync::atomic::AtomicU64,
}

/// How many API requests a host answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestCount {
    /// Every answered request.
    pub answered: u64,
    /// Of which answered 423 (the update lock held).
    pub locked: u64,
}

/// Reads a host's [`RequestCount`] (see [`HostSim::request_counter`]).
#[derive(Debug, Clone)]
pub struct RequestCounter(Arc<Shared>);

impl RequestCounter {
    /// The requests answered so far.
    pub fn get(&self) -> RequestCount {
        use std::sync::atomic::Ordering::Relaxed;
        RequestCount { answered: self.0.answered.load(Relaxed), locked: self.0.locked.load(Relaxed) }
    }
}

impl std::ops::Add for RequestCount {
    type Output = RequestCount;
    fn add(self, o: RequestCount) -> RequestCount {
        RequestCount { answered: self.answered + o.answered, locked: self.locked + o.locked }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) machine: Machine,
    pub(crate) faults: Faults,
    timings: Timings,
    reboot_mode: RebootMode,
    /// Changes when the host goes down and when it boots: work and locks of
    /// an earlier generation are void.
    pub(crate) generation: u64,
    server: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the server answers for an action or a read.
#[derive(Debug)]
pub(crate) enum Reply {
    /// 200 with a JSON body.
    Json(Vec<u8>),
    /// 204.
    NoContent,
    /// An error status with a plain-text body.
    Text(u16, String),
    /// 204 with `Connection: close`: the host goes down once it is sent.
    RebootAccepted,
    /// Never answer: the host goes down with the connection open.
    Vanish,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: HostEvent) {
        // No subscriber is fine: the power watch keeps the latest state.
        let _ = self.events.send(event);
    }

    /// `GET /os`.
    pub(crate) fn os(&self) -> Reply {
        let inner = self.lock();
        match inner.faults.os_body() {
            Some(body) => Reply::Json(body.into_bytes()),
            None => Reply::Json(serde_json::to_vec(&inner.machine.os()).unwrap_or_default()),
        }
    }

    /// `GET /updates/status`: takes the shared lock (423 while a command
    /// runs), holds it for `status_read_hold`, reads, releases.
    pub(crate) async fn read_status(self: &Arc<Self>) -> Reply {
        let (guard, hold) = {
            let mut inner = self.lock();
            if let Err(refusal) = inner.machine.lock_shared() {
                return Reply::Text(refusal.status, refusal.body.into());
            }
            let guard = ReadLockGuard { shared: Arc::clone(self), generation: inner.generation };
            (guard, inner.timings.status_read_hold)
        };
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        let reply = {
            let inner = self.lock();
            if inner.faults.status_unreadable() {
                Reply::Text(500, "Unable to read update status".into())
            } else {
                match inner.machine.read_status() {
                    Ok(status) => Reply::Json(inner.faults.render_status(status)),
                    Err(refusal) => Reply::Text(refusal.status, refusal.body.into()),
                }
            }
        };
        drop(guard);
        reply
    }

    /// `POST` of an update action.
    pub(crate) fn action(self: &Arc<Self>, cmd: CommandKind) -> Reply {
        let mut inner = self.lock();
        if inner.faults.cannot_update_in_place() {
            return Reply::Text(500, NO_DISPATCHER.into());
        }
        if let Some(body) = inner.faults.action_error(cmd) {
            return Reply::Text(500, body);
        }
        if inner.faults.take_contention() {
            return Reply::Text(423, super::machine::LOCK_HELD.into());
        }
        if let Err(refusal) = inner.machine.begin(cmd) {
            return Reply::Text(refusal.status, refusal.body.into());
        }
        let duration = inner.faults.plan(cmd, inner.timings.of(cmd)).duration;
        let generation = inner.generation;
        let shared = Arc::clone(self);
        let mut faults_changed = self.faults_changed.subscribe();
        inner.tasks.retain(|t| !t.is_finished());
        inner.tasks.push(tokio::spawn(async move {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                // Hangs while the fault lasts; runs its normal time after.
                None => loop {
                    if faults_changed.changed().await.is_err() {
                        return;
                    }
                    let (hangs, normal) = {
                        let inner = shared.lock();
                        (inner.faults.hangs(cmd), inner.timings.of(cmd))
                    };
                    if !hangs {
                        tokio::time::sleep(normal).await;
                        break;
                    }
                },
            }
            shared.finish(cmd, generation);
        }));
        drop(inner);
        self.emit(HostEvent::CommandStarted(cmd));
        Reply::NoContent
    }

    fn finish(&self, cmd: CommandKind, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let outcome = inner.faults.plan(cmd, Duration::ZERO).outcome;
        let repository = self.repository.versions();
        let done = inner.machine.finish(cmd, outcome, &repository, jiff::Timestamp::now());
        drop(inner);
        if let Some(result) = done {
            self.emit(HostEvent::CommandFinished(result));
        }
    }

    /// `POST /actions/reboot`: not gated by state or lock. The request is
    /// recorded before anything is answered, so it is never lost; the host
    /// goes down once the answer's connection closes (or shortly after).
    pub(crate) fn reboot(self: &Arc<Self>, connection_done: Arc<Notify>) -> Reply {
        let inner = self.lock();
        if let Some(body) = inner.faults.reboot_refused() {
            return Reply::Text(500, body);
        }
        let generation = inner.generation;
        let vanish = inner.faults.reboot_drops_connection();
        let delay = inner.faults.reboot_delay();
        drop(inner);
        self.emit(HostEvent::RebootRequested);
        let shared = Arc::clone(self);
        let going_down = move |shared: &Arc<Self>| {
            shared.power.send_modify(|p| {
                p.state = PowerState::GoingDown;
                p.reboots_requested += 1;
            });
        };
        if let Some(delay) = delay {
            // A stuck shutdown: accepted, up (and serving) for `delay`.
            self.power.send_modify(|p| p.reboots_requested += 1);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                shared.power.send_modify(|p| p.state = PowerState::GoingDown);
                shared.go_down(generation);
            });
            return Reply::RebootAccepted;
        }
        going_down(&shared);
        tokio::spawn(async move {
            if !vanish {
                tokio::select! {
                    () = connection_done.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            shared.go_down(generation);
        });
        if vanish { Reply::Vanish } else { Reply::RebootAccepted }
    }

    /// The host goes down (if it is still in `generation`): the socket file
    /// is removed at once, the server and its connections are stopped, a
    /// running command is lost, and so is the status file.
    fn go_down(self: &Arc<Self>, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation || self.power.borrow().state == PowerState::Down {
            return;
        }
        inner.generation += 1;
        let _ = std::fs::remove_file(&self.socket);
        if let Some(server) = inner.server.take() {
            server.abort();
        }
        for task in inner.tasks.drain(..) {
            task.abort();
        }
        inner.machine.power_off();
        self.power.send_modify(|p| p.state = PowerState::Down);
        self.emit(HostEvent::Down);
        if inner.reboot_mode == RebootMode::Automatic && !inner.faults.never_returns() {
            let disk = inner.machine.disk();
            let next = disk.partitions[disk.next_to_boot].as_ref();
            let falls_back =
                disk.next_to_boot != disk.booted && next.is_some_and(|i| inner.faults.boot_fails(&i.version));
            let downtime = inner.timings.reboot_downtime * if falls_back { 2 } else { 1 };
            let down = inner.generation;
            let shared = Arc::clone(self);
            inner.tasks.push(tokio::spawn(async move {
                tokio::time::sleep(downtime).await;
                if shared.lock().generation == down {
                    // Errors (a fault added meanwhile) leave the host down.
                    let _ = shared.boot();
                }
            }));
        }
    }

    /// Boots a host that is down.
    fn boot(self: &Arc<Self>) -> Result<BootOutcome, BootError> {
        let mut inner = self.lock();
        if self.power.borrow().state != PowerState::Down {
            return Err(BootError::NotDown(self.name.clone()));
        }
        if inner.faults.never_returns() {
            return Err(BootError::NeverReturns(self.name.clone()));
        }
        let disk = inner.machine.disk();
        let fails = disk.partitions[disk.next_to_boot].as_ref().is_some_and(|i| inner.faults.boot_fails(&i.version));
        let outcome = inner.machine.boot(fails);
        if let Some(version) = &outcome.rolled_back_from {
            self.emit(HostEvent::BootFailed { version: version.clone() });
        }
        self.come_up(&mut inner)?;
        self.power.send_modify(|p| {
            p.state = PowerState::Up;
            p.boots += 1;
            p.version = outcome.version.clone();
            p.rollbacks += u64::from(outcome.rolled_back_from.is_some());
        });
        self.emit(HostEvent::Up { version: outcome.version.clone() });
        Ok(outcome)
    }

    /// Binds the socket and starts serving a new generation.
    fn come_up(self: &Arc<Self>, inner: &mut Inner) -> Result<(), BootError> {
        let bind_error =
            |source| BootError::Bind { name: self.name.clone(), path: self.socket.display().to_string(), source };
        match std::fs::remove_file(&self.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind_error(e)),
        }
        let listener = tokio::net::UnixListener::bind(&self.socket).map_err(bind_error)?;
        inner.generation += 1;
        inner.tasks.retain(|t| !t.is_finished());
        inner.server = Some(tokio::spawn(server::serve(Arc::clone(self), listener)));
        Ok(())
    }

    fn faults_changed(&self) {
        self.faults_changed.send_modify(|n| *n += 1);
    }
}

/// A status reader holding the host's shared lock: update actions answer
/// 423 until it is dropped. From [`HostSim::hold_status_lock`].
#[derive(Debug)]
pub struct ReadLockGuard {
    shared: Arc<Shared>,
    generation: u64,
}

impl Drop for ReadLockGuard {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if inner.generation == self.generation {
            inner.machine.unlock_shared();
        }
    }
}

/// A running simulated host. Dropping it stops the host and removes its
/// socket.
#[derive(Debug)]
pub struct HostSim {
    shared: Arc<Shared>,
}

// === impl HostSim ===

impl HostSim {
    /// Starts a host serving its API on `socket` (a stale file there is
    /// replaced). Must be called within a tokio runtime.
    pub async fn start(socket: impl Into<PathBuf>, config: HostConfig) -> io::Result<HostSim> {
        let repository = config.repository.clone().unwrap_or_else(|| Repository::new(config.available.clone()));
        let mut faults = Faults::default();
        for fault in config.faults {
            faults.set(fault);
        }
        let machine = Machine::new(&config.variant, &config.arch, &config.running_version, config.version_lock);
        let shared = Arc::new(Shared {
            name: config.name,
            socket: socket.into(),
            repository,
            inner: Mutex::new(Inner {
                machine,
                faults,
                timings: config.timings,
                reboot_mode: config.reboot_mode,
                generation: 0,
                server: None,
                tasks: Vec::new(),
            }),
            events: broadcast::channel(128).0,
            power: watch::channel(Power {
                state: PowerState::Up,
                boots: 1,
                version: config.running_version,
                reboots_requested: 0,
                rollbacks: 0,
            })
            .0,
            faults_changed: watch::channel(0).0,
            answered: Default::default(),
            locked: Default::default(),
        });
        {
            let mut inner = shared.lock();
            shared.come_up(&mut inner).map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(HostSim { shared })
    }

    /// The API requests this host answered so far.
    pub fn requests(&self) -> RequestCount {
        self.request_counter().get()
    }

    /// A handle that reads [`HostSim::requests`] and does not keep the host up.
    pub fn request_counter(&self) -> RequestCounter {
        RequestCounter(Arc::clone(&self.shared))
    }

    /// The host's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The host's API socket.
    pub fn socket_path(&self) -> &Path {
        &self.shared.socket
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<HostEvent> {
        self.shared.events.subscribe()
    }

    /// The latest power state, as a watch. A predicate given to its
    /// `wait_for` must not call into this host (the host updates the watch
    /// while holding its own lock).
    pub fn power(&self) -> watch::Receiver<Power> {
        self.shared.power.subscribe()
    }

    /// Boots a host that is down (manual mode, or to bring back a host whose
    /// fault kept it down). Must be called within a tokio runtime.
    pub fn boot(&self) -> Result<BootOutcome, BootError> {
        self.shared.boot()
    }

    /// The host loses power without a reboot request (a crash): it goes
    /// down and comes back like after a reboot.
    pub fn crash(&self) {
        let generation = self.shared.lock().generation;
        self.shared.go_down(generation);
    }

    /// Adds a fault (replacing one of the same kind for the same command).
    pub fn set_fault(&self, fault: Fault) {
        self.shared.lock().faults.set(fault);
        self.shared.faults_changed();
    }

    /// Removes faults matching `pred`.
    pub fn remove_faults(&self, pred: impl Fn(&Fault) -> bool) {
        self.shared.lock().faults.remove(pred);
        self.shared.faults_changed();
    }

    /// Removes every fault; a hanging command then runs its normal time.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
        self.shared.faults_changed();
    }

    /// The active faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.shared.lock().faults.list().to_vec()
    }

    /// The version the host runs (`/os` `version_id`).
    pub fn os_version(&self) -> String {
        self.shared.lock().machine.running_image().version
    }

    /// The status file, if any.
    pub fn update_status(&self) -> Option<UpdateStatus> {
        self.shared.lock().machine.status().cloned()
    }

    /// A snapshot for assertions.
    pub fn state(&self) -> HostState {
        let inner = self.shared.lock();
        HostState {
            power: self.shared.power.borrow().clone(),
            update_status: inner.machine.status().cloned(),
            running_command: inner.machine.running_command(),
            disk: inner.machine.disk().clone(),
            status_readers: inner.machine.readers(),
        }
    }

    /// The repository the host refreshes from.
    pub fn repository(&self) -> &Repository {
        &self.shared.repository
    }

    /// Changes `version-lock`; it takes effect at the next refresh.
    pub fn set_version_lock(&self, lock: &str) {
        self.shared.lock().machine.set_version_lock(VersionLock::parse(lock));
    }

    /// Changes the timings of commands started from now on.
    pub fn set_timings(&self, timings: Timings) {
        self.shared.lock().timings = timings;
    }

    /// Changes the reboot mode of reboots from now on.
    pub fn set_reboot_mode(&self, mode: RebootMode) {
        self.shared.lock().reboot_mode = mode;
    }

    /// Takes the shared status lock as a concurrent status reader would:
    /// actions answer 423 until the guard is dropped. Fails with the
    /// machine's 423 if a command holds the lock.
    pub fn hold_status_lock(&self) -> Result<ReadLockGuard, u16> {
        let mut inner = self.shared.lock();
        inner.machine.lock_shared().map_err(|r| r.status)?;
        Ok(ReadLockGuard { shared: Arc::clone(&self.shared), generation: inner.generation })
    }
}

impl Drop for HostSim {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.generation += 1;
        if let Some(server) = inner.server.take() {
            server.abort();
        }
        for task in inner.tasks.drain(..) {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.shared.socket);
    }
}
