//! The pure state machine of a simulated Bottlerocket host: its two
//! partitions, its update status file and its update lock.
//!
//! What this module does: decides, for each update action, the fact sheet's
//! answer (423 → 409 → 404, creating the status file first when it is
//! missing, even for a refused action), takes the update lock for a command
//! that starts, and applies a finished command's outcome (state, lists,
//! partitions, `most_recent_command`). It also models boot: the bootloader
//! boots the partition marked next-to-boot, or falls back to the old one
//! when the new image fails to boot, and the status file (in tmpfs) is gone.
//!
//! What it must not do: I/O, read the clock, or sleep. The caller passes the
//! time (`now`) and the repository's releases in, and decides how long a
//! command runs and whether it fails.

use std::cmp::Ordering;

use super::types::{
    CmdStatus, CommandKind, CommandResult, Image, OsInfo, PartitionInfo, UpdateState, UpdateStatus, compare_versions,
    format_timestamp,
};

/// 423 body.
pub const LOCK_HELD: &str = "Update lock held";
/// 409 body.
pub const NOT_ALLOWED: &str = "Update action not allowed according to update state";
/// 404 body of prepare-update.
pub const NO_CHOSEN_UPDATE: &str = "Previously chosen Update no longer exists";
/// 404 body of activate-update and deactivate-update.
pub const NOTHING_STAGED: &str = "No update image applied to staging partition";
/// 404 body of `GET /updates/status` after boot.
pub const STATUS_UNINITIALIZED: &str = "Update status is uninitialized, refresh-updates to initialize it";

/// The host's `version-lock` setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VersionLock {
    /// The newest listed version newer than the running one.
    #[default]
    Latest,
    /// Exactly this version, even if older than the running one.
    Pinned(String),
}

impl VersionLock {
    /// `latest` or a version, as the setting is written.
    pub fn parse(text: &str) -> VersionLock {
        match text {
            "latest" | "" => VersionLock::Latest,
            v => VersionLock::Pinned(v.to_owned()),
        }
    }
}

/// The version `lock` selects from `available` for a host running `running`.
/// A pinned version equal to the running one selects nothing: there is
/// nothing to update to.
pub fn choose_update(available: &[String], running: &str, lock: &VersionLock) -> Option<String> {
    match lock {
        VersionLock::Latest => available
            .iter()
            .filter(|v| compare_versions(v, running) == Ordering::Greater)
            .max_by(|a, b| compare_versions(a, b))
            .cloned(),
        VersionLock::Pinned(v) => (v != running && available.iter().any(|a| a == v)).then(|| v.clone()),
    }
}

/// `available` sorted newest first, without duplicates.
pub fn newest_first(available: &[String]) -> Vec<String> {
    let mut list = available.to_vec();
    list.sort_by(|a, b| compare_versions(b, a));
    list.dedup();
    list
}

/// An answer that refuses an action or a read: status code and plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status code.
    pub status: u16,
    /// Plain-text body.
    pub body: &'static str,
}

impl Refusal {
    const LOCKED: Refusal = Refusal { status: 423, body: LOCK_HELD };
}

/// How a command's work ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The work succeeded (prepare may still fail if its image vanished).
    Success,
    /// The work failed with this exit status and stderr.
    Failed {
        /// Non-zero exit status (a signal number if killed).
        exit_status: i32,
        /// What the worker printed.
        stderr: String,
    },
}

/// The two partitions and the bootloader's choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image on each partition (`None`: never written).
    pub partitions: [Option<Image>; 2],
    /// The partition the host booted from.
    pub booted: usize,
    /// The partition the bootloader boots next.
    pub next_to_boot: usize,
}

/// What a boot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOutcome {
    /// The version now running.
    pub version: String,
    /// The version the bootloader tried and gave up on, if it fell back.
    pub rolled_back_from: Option<String>,
}

/// One simulated host's update machinery.
#[derive(Debug, Clone)]
pub struct Machine {
    variant: String,
    arch: String,
    version_lock: VersionLock,
    disk: Disk,
    status: Option<UpdateStatus>,
    readers: u32,
    running: Option<CommandKind>,
    last_finish: Option<jiff::Timestamp>,
}

// === impl Machine ===

impl Machine {
    /// A host that booted `version` from partition 0, with no status file.
    pub fn new(variant: &str, arch: &str, version: &str, version_lock: VersionLock) -> Machine {
        let image = Image { arch: arch.to_owned(), version: version.to_owned(), variant: variant.to_owned() };
        Machine {
            variant: variant.to_owned(),
            arch: arch.to_owned(),
            version_lock,
            disk: Disk { partitions: [Some(image), None], booted: 0, next_to_boot: 0 },
            status: None,
            readers: 0,
            running: None,
            last_finish: None,
        }
    }

    /// The image the host runs.
    pub fn running_image(&self) -> Image {
        self.disk.partitions[self.disk.booted].clone().unwrap_or_else(|| self.image(""))
    }

    /// `GET /os`.
    pub fn os(&self) -> OsInfo {
        OsInfo::of(&self.running_image())
    }

    /// The partitions.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// The status file, if it exists.
    pub fn status(&self) -> Option<&UpdateStatus> {
        self.status.as_ref()
    }

    /// The command holding the update lock, if any.
    pub fn running_command(&self) -> Option<CommandKind> {
        self.running
    }

    /// The `version-lock` setting.
    pub fn version_lock(&self) -> &VersionLock {
        &self.version_lock
    }

    /// Changes the `version-lock` setting; it takes effect at the next refresh.
    pub fn set_version_lock(&mut self, lock: VersionLock) {
        self.version_lock = lock;
    }

    fn image(&self, version: &str) -> Image {
        Image { arch: self.arch.clone(), version: version.to_owned(), variant: self.variant.clone() }
    }

    /// `GET /updates/status`: 423 while a command holds the lock, 404 until
    /// the first update action after boot.
    pub fn read_status(&self) -> Result<&UpdateStatus, Refusal> {
        if self.running.is_some() {
            return Err(Refusal::LOCKED);
        }
        self.status.as_ref().ok_or(Refusal { status: 404, body: STATUS_UNINITIALIZED })
    }

    /// A status reader takes the shared lock (423 while a command runs).
    pub fn lock_shared(&mut self) -> Result<(), Refusal> {
        if self.running.is_some() {
            return Err(Refusal::LOCKED);
        }
        self.readers += 1;
        Ok(())
    }

    /// The status reader is done.
    pub fn unlock_shared(&mut self) {
        self.readers = self.readers.saturating_sub(1);
    }

    /// How many readers hold the shared lock.
    pub fn readers(&self) -> u32 {
        self.readers
    }

    /// An update action arrives: 423 if the lock is taken (by a command or a
    /// reader); otherwise the status file is created if missing, then 409 if
    /// `cmd` is not allowed in the state, 404 without a chosen (prepare) or
    /// staged (activate, deactivate) image. On `Ok` the command holds the
    /// lock until [`Machine::finish`].
    pub fn begin(&mut self, cmd: CommandKind) -> Result<(), Refusal> {
        if self.running.is_some() || self.readers > 0 {
            return Err(Refusal::LOCKED);
        }
        let running = self.running_image();
        let status = self.status.get_or_insert_with(|| fresh_status(running));
        let state = status.update_state;
        let allowed = match cmd {
            CommandKind::Refresh => true,
            CommandKind::Prepare => {
                matches!(state, UpdateState::Available | UpdateState::Staged)
            }
            CommandKind::Activate => state == UpdateState::Staged,
            CommandKind::Deactivate => state == UpdateState::Ready,
        };
        if !allowed {
            return Err(Refusal { status: 409, body: NOT_ALLOWED });
        }
        let missing = match cmd {
            CommandKind::Refresh => None,
            CommandKind::Prepare => status.chosen_update.is_none().then_some(NO_CHOSEN_UPDATE),
            CommandKind::Activate | CommandKind::Deactivate => {
                status.staging_partition.is_none().then_some(NOTHING_STAGED)
            }
        };
        if let Some(body) = missing {
            return Err(Refusal { status: 404, body });
        }
        self.running = Some(cmd);
        Ok(())
    }

    /// The running command's work ended with `outcome` at `now`, with
    /// `repository` listing the releases the host may install. Writes the
    /// new state and `most_recent_command`, then releases the lock. Returns
    /// the command written, or `None` if `cmd` was not running (a reboot
    /// lost it).
    pub fn finish(
        &mut self,
        cmd: CommandKind,
        outcome: Outcome,
        repository: &[String],
        now: jiff::Timestamp,
    ) -> Option<CommandResult> {
        if self.running != Some(cmd) {
            return None;
        }
        self.running = None;
        let running_version = self.running_image().version;
        let outcome = match (&outcome, cmd) {
            (Outcome::Success, CommandKind::Prepare) => {
                match self.status.as_ref().and_then(|s| s.chosen_update.as_ref()) {
                    Some(chosen) if repository.contains(&chosen.version) => outcome,
                    Some(chosen) => Outcome::Failed {
                        exit_status: 1,
                        stderr: format!("Failed to find update {} in the repository\n", chosen.version),
                    },
                    None => Outcome::Failed { exit_status: 1, stderr: "No chosen update\n".into() },
                }
            }
            _ => outcome,
        };
        let at = match self.last_finish {
            Some(last) if now <= last => last + jiff::SignedDuration::from_nanos(1),
            _ => now,
        };
        self.last_finish = Some(at);
        let chosen_image = self.status.as_ref().and_then(|s| s.chosen_update.clone());
        let other = 1 - self.disk.booted;
        let lock = self.version_lock.clone();
        let fresh = fresh_status(self.running_image());
        let status = self.status.get_or_insert(fresh);
        let (cmd_status, exit_status, stderr) = match outcome {
            Outcome::Failed { exit_status, stderr } => {
                if cmd == CommandKind::Refresh
                    && matches!(status.update_state, UpdateState::Idle | UpdateState::Available)
                {
                    status.update_state = UpdateState::Idle;
                }
                (CmdStatus::Failed, exit_status, stderr)
            }
            Outcome::Success => {
                let mut stderr = String::new();
                match cmd {
                    CommandKind::Refresh => {
                        let listed = newest_first(repository);
                        let chosen = choose_update(&listed, &running_version, &lock);
                        status.chosen_update = chosen.map(|v| Image {
                            arch: self.arch.clone(),
                            version: v,
                            variant: self.variant.clone(),
                        });
                        status.available_updates = listed;
                        if matches!(status.update_state, UpdateState::Idle | UpdateState::Available) {
                            status.update_state =
                                if status.chosen_update.is_some() { UpdateState::Available } else { UpdateState::Idle };
                        }
                    }
                    CommandKind::Prepare => {
                        if let Some(image) = chosen_image {
                            stderr = format!("Starting update to {}\n", image.version);
                            self.disk.partitions[other] = Some(image.clone());
                            self.disk.next_to_boot = self.disk.booted;
                            status.staging_partition = Some(PartitionInfo { image, next_to_boot: false });
                            status.active_partition.next_to_boot = true;
                            status.update_state = UpdateState::Staged;
                        }
                    }
                    CommandKind::Activate => {
                        self.disk.next_to_boot = other;
                        if let Some(staging) = status.staging_partition.as_mut() {
                            staging.next_to_boot = true;
                        }
                        status.active_partition.next_to_boot = false;
                        status.update_state = UpdateState::Ready;
                    }
                    CommandKind::Deactivate => {
                        self.disk.next_to_boot = self.disk.booted;
                        if let Some(staging) = status.staging_partition.as_mut() {
                            staging.next_to_boot = false;
                        }
                        status.active_partition.next_to_boot = true;
                        status.update_state = UpdateState::Staged;
                    }
                }
                (CmdStatus::Success, 0, stderr)
            }
        };
        let result =
            CommandResult { cmd_type: cmd, cmd_status, timestamp: format_timestamp(at, 9), exit_status, stderr };
        status.most_recent_command = Some(result.clone());
        Some(result)
    }

    /// The host goes down: a running command's result is lost, the lock is
    /// gone, and the status file (tmpfs) with it.
    pub fn power_off(&mut self) {
        self.running = None;
        self.readers = 0;
        self.status = None;
    }

    /// The host boots the partition marked next-to-boot. If that is a new
    /// image and `new_image_fails` is true, the bootloader falls back to the
    /// partition that booted before and marks it next-to-boot again.
    pub fn boot(&mut self, new_image_fails: bool) -> BootOutcome {
        self.power_off();
        let target = self.disk.next_to_boot;
        let switching = target != self.disk.booted && self.disk.partitions[target].is_some();
        let mut rolled_back_from = None;
        if switching && new_image_fails {
            rolled_back_from = self.disk.partitions[target].as_ref().map(|i| i.version.clone());
            self.disk.next_to_boot = self.disk.booted;
        } else if switching {
            self.disk.booted = target;
        } else {
            self.disk.next_to_boot = self.disk.booted;
        }
        BootOutcome { version: self.running_image().version, rolled_back_from }
    }
}

/// The status a host creates when an update action finds none: Idle, empty
/// lists, nothing staged, no command, the running image active.
fn fresh_status(running: Image) -> UpdateStatus {
    UpdateStatus {
        update_state: UpdateState::Idle,
        available_updates: Vec::new(),
        chosen_update: None,
        active_partition: PartitionInfo { image: running, next_to_boot: true },
        staging_partition: None,
        most_recent_command: None,
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
