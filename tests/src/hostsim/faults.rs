//! Scripted faults of a simulated host, and how they change its answers.
//!
//! What this module does: names every misbehaviour a test can ask of a host
//! ([`Fault`]), and applies the set of active faults to a command's plan
//! (duration, outcome, hang) and to the bytes of a status answer (a raw
//! body, a truncated body, fields removed or set to `null`, fewer timestamp
//! fraction digits).
//!
//! What it must not do: touch the state machine or do I/O; `host.rs` and
//! `server.rs` consult it.

use std::time::Duration;

use serde_json::Value;

use super::machine::Outcome;
use super::types::{CommandKind, UpdateStatus};

/// The 500 body of every update action on a host that cannot update in place.
pub const NO_DISPATCHER: &str = "Unable to start the update dispatcher";

/// A misbehaviour a test scripts on one host. Faults stay until cleared
/// (`HostSim::clear_faults`), except [`Fault::LockContention`], which counts
/// down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The command runs its normal time, then finishes `cmd_status: Failed`
    /// with this exit status and stderr.
    CommandFails {
        /// Which command.
        command: CommandKind,
        /// Non-zero exit status (negative or a signal number allowed).
        exit_status: i32,
        /// What the worker printed.
        stderr: String,
    },
    /// The command takes the update lock and never finishes (reads answer
    /// 423) until the fault is cleared or the host reboots.
    CommandHangs(CommandKind),
    /// The command takes this long instead of its configured time.
    SlowCommand {
        /// Which command.
        command: CommandKind,
        /// How long it runs.
        duration: Duration,
    },
    /// The action answers 500 with this body and starts nothing.
    ActionFails {
        /// Which command's action.
        command: CommandKind,
        /// The plain-text body.
        body: String,
    },
    /// The next `count` update actions answer 423, as if a status reader
    /// held the shared lock at that moment.
    LockContention {
        /// How many actions are refused.
        count: u32,
    },
    /// `GET /updates/status` answers 200 `application/json` with this body
    /// instead of the status (malformed JSON, unknown values, ...).
    StatusBody(String),
    /// `GET /updates/status` answers only the first `bytes` bytes of the real
    /// status (with a matching `Content-Length`): partial JSON.
    TruncatedStatus {
        /// How many bytes are sent.
        bytes: usize,
    },
    /// The status is served without this field; a dotted path such as
    /// `chosen_update` or `most_recent_command.exit_status`.
    StatusFieldAbsent(String),
    /// The status is served with this field (dotted path) set to `null`.
    StatusFieldNull(String),
    /// Timestamps are served with this many fraction digits (0, 3 or 6;
    /// a real host usually writes 9).
    TimestampDigits(u8),
    /// `GET /updates/status` answers 500: the status file cannot be read.
    StatusUnreadable,
    /// `GET /os` answers 200 with this body instead.
    OsBody(String),
    /// The variant cannot update in place: every update action answers 500
    /// `Unable to start the update dispatcher` and the status stays 404.
    CannotUpdateInPlace,
    /// `reboot` answers 500 with this body (e.g. `Failed to reboot, ...`).
    RebootRefused(String),
    /// `reboot`: the host goes down before answering; the client sees the
    /// connection close after sending its request.
    RebootDropsConnection,
    /// `reboot` is accepted (202) but the host stays up this long before it
    /// goes down (a stuck shutdown): meanwhile it answers as usual.
    RebootDelayed(Duration),
    /// After a reboot the host stays down: it neither comes back by itself
    /// nor on `HostSim::boot`, until this fault is cleared.
    RebootNeverReturns,
    /// The next boot into a new image fails and the bootloader falls back to
    /// the old partition (a longer outage in automatic mode). With a version,
    /// only that image fails to boot.
    RollbackOnBoot(Option<String>),
}

/// What a command will do once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// How long its work takes; `None` while it hangs.
    pub duration: Option<Duration>,
    /// How it ends.
    pub outcome: Outcome,
}

/// The faults active on one host.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    active: Vec<Fault>,
}

// === impl Faults ===

impl Faults {
    /// Adds `fault`, replacing one of the same kind for the same command.
    pub fn set(&mut self, fault: Fault) {
        self.active.retain(|f| !same_slot(f, &fault));
        self.active.push(fault);
    }

    /// Removes every fault.
    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// Removes faults matching `pred`.
    pub fn remove(&mut self, pred: impl Fn(&Fault) -> bool) {
        self.active.retain(|f| !pred(f));
    }

    /// The active faults.
    pub fn list(&self) -> &[Fault] {
        &self.active
    }

    fn has(&self, pred: impl Fn(&Fault) -> bool) -> bool {
        self.active.iter().any(pred)
    }

    /// Every update action answers 500.
    pub fn cannot_update_in_place(&self) -> bool {
        self.has(|f| matches!(f, Fault::CannotUpdateInPlace))
    }

    /// The 500 body scripted for `cmd`'s action.
    pub fn action_error(&self, cmd: CommandKind) -> Option<String> {
        self.active.iter().find_map(|f| match f {
            Fault::ActionFails { command, body } if *command == cmd => Some(body.clone()),
            _ => None,
        })
    }

    /// True (and counts down) if this action meets a status reader's lock.
    pub fn take_contention(&mut self) -> bool {
        for f in &mut self.active {
            if let Fault::LockContention { count } = f
                && *count > 0
            {
                *count -= 1;
                return true;
            }
        }
        false
    }

    /// Whether `cmd` hangs.
    pub fn hangs(&self, cmd: CommandKind) -> bool {
        self.has(|f| matches!(f, Fault::CommandHangs(c) if *c == cmd))
    }

    /// How `cmd` runs, given its configured `normal` duration.
    pub fn plan(&self, cmd: CommandKind, normal: Duration) -> Plan {
        let duration = self
            .active
            .iter()
            .find_map(|f| match f {
                Fault::SlowCommand { command, duration } if *command == cmd => Some(*duration),
                _ => None,
            })
            .unwrap_or(normal);
        let outcome = self
            .active
            .iter()
            .find_map(|f| match f {
                Fault::CommandFails { command, exit_status, stderr } if *command == cmd => {
                    Some(Outcome::Failed { exit_status: *exit_status, stderr: stderr.clone() })
                }
                _ => None,
            })
            .unwrap_or(Outcome::Success);
        Plan { duration: (!self.hangs(cmd)).then_some(duration), outcome }
    }

    /// The 500 body scripted for `reboot`.
    pub fn reboot_refused(&self) -> Option<String> {
        self.active.iter().find_map(|f| match f {
            Fault::RebootRefused(body) => Some(body.clone()),
            _ => None,
        })
    }

    /// `reboot` drops the connection instead of answering.
    pub fn reboot_drops_connection(&self) -> bool {
        self.has(|f| matches!(f, Fault::RebootDropsConnection))
    }

    /// How long an accepted reboot waits before the host goes down.
    pub fn reboot_delay(&self) -> Option<Duration> {
        self.active.iter().find_map(|f| match f {
            Fault::RebootDelayed(d) => Some(*d),
            _ => None,
        })
    }

    /// The host does not come back from a reboot.
    pub fn never_returns(&self) -> bool {
        self.has(|f| matches!(f, Fault::RebootNeverReturns))
    }

    /// Whether booting into `version` (a new image) fails.
    pub fn boot_fails(&self, version: &str) -> bool {
        self.has(|f| match f {
            Fault::RollbackOnBoot(None) => true,
            Fault::RollbackOnBoot(Some(v)) => v == version,
            _ => false,
        })
    }

    /// `GET /os` body override.
    pub fn os_body(&self) -> Option<String> {
        self.active.iter().find_map(|f| match f {
            Fault::OsBody(body) => Some(body.clone()),
            _ => None,
        })
    }

    /// `GET /updates/status` answers 500.
    pub fn status_unreadable(&self) -> bool {
        self.has(|f| matches!(f, Fault::StatusUnreadable))
    }

    /// The body of a 200 status answer: the status as JSON, changed by the
    /// active faults.
    pub fn render_status(&self, status: &UpdateStatus) -> Vec<u8> {
        if let Some(body) = self.active.iter().find_map(|f| match f {
            Fault::StatusBody(body) => Some(body.clone()),
            _ => None,
        }) {
            return body.into_bytes();
        }
        let edits = self
            .has(|f| matches!(f, Fault::StatusFieldAbsent(_) | Fault::StatusFieldNull(_) | Fault::TimestampDigits(_)));
        let mut body = if edits {
            // Through a JSON value (keys then come out sorted).
            serde_json::to_vec(&self.edited(status)).unwrap_or_default()
        } else {
            // Straight from the struct: keys in a real host's order.
            serde_json::to_vec(status).unwrap_or_default()
        };
        if let Some(bytes) = self.active.iter().find_map(|f| match f {
            Fault::TruncatedStatus { bytes } => Some(*bytes),
            _ => None,
        }) {
            body.truncate(bytes);
        }
        body
    }

    fn edited(&self, status: &UpdateStatus) -> Value {
        let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
        for f in &self.active {
            match f {
                Fault::StatusFieldAbsent(path) => edit(&mut value, path, None),
                Fault::StatusFieldNull(path) => edit(&mut value, path, Some(Value::Null)),
                Fault::TimestampDigits(digits) => {
                    if let Some(Value::String(ts)) = value.pointer_mut("/most_recent_command/timestamp") {
                        *ts = with_fraction_digits(ts, *digits);
                    }
                }
                _ => {}
            }
        }
        value
    }
}

/// Two faults that cannot both apply (the later replaces the earlier).
fn same_slot(a: &Fault, b: &Fault) -> bool {
    use Fault::*;
    match (a, b) {
        (CommandFails { command: x, .. }, CommandFails { command: y, .. })
        | (SlowCommand { command: x, .. }, SlowCommand { command: y, .. })
        | (ActionFails { command: x, .. }, ActionFails { command: y, .. })
        | (CommandHangs(x), CommandHangs(y)) => x == y,
        (StatusFieldAbsent(x), StatusFieldAbsent(y)) | (StatusFieldNull(x), StatusFieldNull(y)) => x == y,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// Removes (`None`) or replaces the field at the dotted `path`.
fn edit(value: &mut Value, path: &str, new: Option<Value>) {
    let (parent, key) = match path.rsplit_once('.') {
        Some((parent, key)) => (format!("/{}", parent.replace('.', "/")), key),
        None => (String::new(), path),
    };
    if let Some(Value::Object(map)) = value.pointer_mut(&parent) {
        match new {
            Some(v) => {
                map.insert(key.to_owned(), v);
            }
            None => {
                map.remove(key);
            }
        }
    }
}

/// `2026-11-24T10:00:07.123456789Z` with `digits` fraction digits.
fn with_fraction_digits(ts: &str, digits: u8) -> String {
    let Some((base, rest)) = ts.split_once('.') else {
        return ts.to_owned();
    };
    let fraction = rest.trim_end_matches('Z');
    let keep = usize::from(digits.min(9)).min(fraction.len());
    if keep == 0 { format!("{base}Z") } else { format!("{base}.{}Z", &fraction[..keep]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostsim::types::{Image, PartitionInfo, UpdateState};

    fn status() -> UpdateStatus {
        UpdateStatus {
            update_state: UpdateState::Idle,
            available_updates: vec!["1.20.0".into()],
            chosen_update: None,
            active_partition: PartitionInfo {
                image: Image { arch: "x86_64".into(), version: "1.20.0".into(), variant: "v".into() },
                next_to_boot: true,
            },
            staging_partition: None,
            most_recent_command: Some(crate::hostsim::types::CommandResult {
                cmd_type: CommandKind::Refresh,
                cmd_status: crate::hostsim::types::CmdStatus::Success,
                timestamp: "2026-11-24T10:00:07.123456789Z".into(),
                exit_status: 0,
                stderr: String::new(),
            }),
        }
    }

    fn rendered(faults: &[Fault]) -> Value {
        let mut set = Faults::default();
        for f in faults {
            set.set(f.clone());
        }
        serde_json::from_slice(&set.render_status(&status())).unwrap()
    }

    #[test]
    fn fields_can_be_removed_or_nulled_by_path() {
        let v = rendered(&[
            Fault::StatusFieldAbsent("most_recent_command.exit_status".into()),
            Fault::StatusFieldNull("available_updates".into()),
            Fault::StatusFieldAbsent("staging_partition".into()),
        ]);
        assert!(v["most_recent_command"].get("exit_status").is_none());
        assert_eq!(v["available_updates"], Value::Null);
        assert!(v.get("staging_partition").is_none());
        assert_eq!(v["update_state"], "Idle");
    }

    #[test]
    fn timestamps_can_be_served_with_fewer_digits() {
        for (digits, expected) in
            [(0, "2026-11-24T10:00:07Z"), (3, "2026-11-24T10:00:07.123Z"), (6, "2026-11-24T10:00:07.123456Z")]
        {
            let v = rendered(&[Fault::TimestampDigits(digits)]);
            assert_eq!(v["most_recent_command"]["timestamp"], expected);
        }
    }

    #[test]
    fn a_later_fault_of_the_same_kind_replaces_the_earlier() {
        let mut set = Faults::default();
        set.set(Fault::LockContention { count: 1 });
        set.set(Fault::LockContention { count: 2 });
        set.set(Fault::CommandHangs(CommandKind::Prepare));
        set.set(Fault::CommandHangs(CommandKind::Activate));
        assert_eq!(set.list().len(), 3);
        assert!(set.take_contention() && set.take_contention() && !set.take_contention());
        assert_eq!(set.plan(CommandKind::Prepare, Duration::ZERO).duration, None);
        assert_eq!(set.plan(CommandKind::Refresh, Duration::from_millis(3)).duration, Some(Duration::from_millis(3)));
    }

    #[test]
    fn a_truncated_status_is_a_prefix_of_the_real_one() {
        let mut set = Faults::default();
        let full = set.render_status(&status());
        set.set(Fault::TruncatedStatus { bytes: 40 });
        let cut = set.render_status(&status());
        assert_eq!(cut, full[..40]);
        assert!(serde_json::from_slice::<Value>(&cut).is_err());
    }
}
