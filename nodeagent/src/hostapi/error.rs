//! Errors of the host API client: one variant per action, each carrying what
//! went wrong.
//!
//! What this module does: names every way a call to the host can fail, so the
//! agent's state machine can decide without reading strings (409 in the wrong
//! state, 404 without a chosen or staged update, a `Failed` command, a lock
//! that stays held, a host that cannot update in place, a connection dropped
//! after a reboot request). Plain-text bodies from the host are kept.
//!
//! What it must not do: decide what the agent does about an error; the
//! mapping to a failure reason ([`Error::failure_reason`]) is a suggestion the
//! state machine may use.

use std::time::Duration;

use model::state::FailureReason;

use super::types::{Command, CommandType};

/// Which call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `GET /os`
    ReadOs,
    /// `GET /updates/status`
    ReadStatus,
    /// `POST /actions/refresh-updates` and waiting for it
    Refresh,
    /// `POST /actions/prepare-update` and waiting for it
    Prepare,
    /// `POST /actions/activate-update` and waiting for it
    Activate,
    /// `POST /actions/deactivate-update` and waiting for it
    Deactivate,
    /// `POST /actions/reboot`
    Reboot,
}

impl Action {
    /// The action that runs this command.
    pub fn of(cmd: CommandType) -> Action {
        match cmd {
            CommandType::Refresh => Action::Refresh,
            CommandType::Prepare => Action::Prepare,
            CommandType::Activate => Action::Activate,
            CommandType::Deactivate => Action::Deactivate,
        }
    }

    /// A short lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadOs => "read_os",
            Action::ReadStatus => "read_status",
            Action::Refresh => "refresh",
            Action::Prepare => "prepare",
            Action::Activate => "activate",
            Action::Deactivate => "deactivate",
            Action::Reboot => "reboot",
        }
    }
}

/// A call to the host failed; the variant says which call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `GET /os` failed.
    #[error("reading the host's OS version: {0}")]
    ReadOs(Failure),
    /// `GET /updates/status` failed.
    #[error("reading the host's update status: {0}")]
    ReadStatus(Failure),
    /// refresh-updates failed.
    #[error("refresh-updates: {0}")]
    Refresh(Failure),
    /// prepare-update failed.
    #[error("prepare-update: {0}")]
    Prepare(Failure),
    /// activate-update failed.
    #[error("activate-update: {0}")]
    Activate(Failure),
    /// deactivate-update failed.
    #[error("deactivate-update: {0}")]
    Deactivate(Failure),
    /// reboot failed.
    #[error("reboot: {0}")]
    Reboot(Failure),
}

/// What went wrong in a call to the host.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// 409: the command is not allowed in the host's update state.
    #[error("not allowed in the host's update state (409): {body}")]
    NotAllowed {
        /// The host's plain-text explanation.
        body: String,
    },
    /// 404 on prepare: the host has no chosen update (any more).
    #[error("the host has no chosen update (404): {body}")]
    NoChosenUpdate {
        /// The host's plain-text explanation.
        body: String,
    },
    /// 404 on activate or deactivate: no image on the staging partition.
    #[error("no update image is staged (404): {body}")]
    NothingStaged {
        /// The host's plain-text explanation.
        body: String,
    },
    /// 404 on the status: no update action since boot. Reported as an error
    /// only where a status was needed (while waiting for a command, whose
    /// result a reboot or reset has then lost).
    #[error("the host's update status is uninitialized (404): {body}")]
    StatusUninitialized {
        /// The host's plain-text explanation.
        body: String,
    },
    /// 423 on every attempt until the lock deadline: a command holds the
    /// update lock (perhaps one this agent started before it restarted;
    /// [`super::HostApi::wait_for`] can follow it) or readers keep it busy.
    #[error("the update lock stayed held for {waited:?} ({attempts} attempts answered 423): {body}")]
    LockHeld {
        /// The last plain-text body.
        body: String,
        /// How many requests answered 423.
        attempts: u32,
        /// How long the client retried.
        waited: Duration,
    },
    /// 500 `Unable to start the update dispatcher`: this variant cannot update
    /// in place. Retrying does not help.
    #[error("the host cannot update in place (500): {body}")]
    CannotUpdateInPlace {
        /// The host's plain-text explanation.
        body: String,
    },
    /// A 5xx answer (e.g. 500 `Failed to reboot, ...`).
    #[error("the host answered {status}: {body}")]
    Server {
        /// The HTTP status code.
        status: u16,
        /// The host's plain-text explanation.
        body: String,
    },
    /// An answer the API does not document for this call (e.g. 405, or 404
    /// with an empty body: an unknown path).
    #[error("unexpected answer {status}: {body:?}")]
    UnexpectedStatus {
        /// The HTTP status code.
        status: u16,
        /// The body, as text.
        body: String,
    },
    /// The command ran and finished with `cmd_status` other than `Success`.
    #[error(
        "the command finished {status} with exit status {exit}: {stderr}",
        status = .command.cmd_status,
        exit = .command.exit_status.map_or("(none)".to_owned(), |e| e.to_string()),
        stderr = .command.stderr.as_deref().unwrap_or("(no stderr)").trim_end()
    )]
    CommandFailed {
        /// The finished command, with its exit status and stderr.
        command: Command,
    },
    /// The command did not finish before its deadline.
    #[error("the command did not finish within {waited:?} (last seen: {last_seen})")]
    Timeout {
        /// How long the client waited for it.
        waited: Duration,
        /// What the last status read showed.
        last_seen: String,
    },
    /// The request was sent (or being sent) and the connection closed without
    /// an answer: after a reboot request, the host is probably going down.
    #[error("the connection closed after the request was sent (the host may be going down): {0}")]
    ConnectionDropped(String),
    /// The socket could not be reached or the exchange failed before the
    /// request was sent.
    #[error("cannot talk to the host API: {0}")]
    Io(#[source] std::io::Error),
    /// The answer could not be understood.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The blocking task running the call panicked or was cancelled.
    #[error("the call was interrupted: {0}")]
    Interrupted(String),
}

// === impl Error ===

impl Error {
    /// The error for `failure` in `action`.
    pub fn new(action: Action, failure: Failure) -> Self {
        match action {
            Action::ReadOs => Error::ReadOs(failure),
            Action::ReadStatus => Error::ReadStatus(failure),
            Action::Refresh => Error::Refresh(failure),
            Action::Prepare => Error::Prepare(failure),
            Action::Activate => Error::Activate(failure),
            Action::Deactivate => Error::Deactivate(failure),
            Action::Reboot => Error::Reboot(failure),
        }
    }

    /// Which call failed.
    pub fn action(&self) -> Action {
        match self {
            Error::ReadOs(_) => Action::ReadOs,
            Error::ReadStatus(_) => Action::ReadStatus,
            Error::Refresh(_) => Action::Refresh,
            Error::Prepare(_) => Action::Prepare,
            Error::Activate(_) => Action::Activate,
            Error::Deactivate(_) => Action::Deactivate,
            Error::Reboot(_) => Action::Reboot,
        }
    }

    /// What went wrong.
    pub fn failure(&self) -> &Failure {
        match self {
            Error::ReadOs(f)
            | Error::ReadStatus(f)
            | Error::Refresh(f)
            | Error::Prepare(f)
            | Error::Activate(f)
            | Error::Deactivate(f)
            | Error::Reboot(f) => f,
        }
    }

    /// What went wrong, taken out (to report it as another action's error).
    pub fn into_failure(self) -> Failure {
        match self {
            Error::ReadOs(f)
            | Error::ReadStatus(f)
            | Error::Refresh(f)
            | Error::Prepare(f)
            | Error::Activate(f)
            | Error::Deactivate(f)
            | Error::Reboot(f) => f,
        }
    }

    /// Whether trying again cannot help: the command ran and failed, did not
    /// finish by its deadline (the host still holds its update lock), or the
    /// host cannot update in place.
    pub fn is_final(&self) -> bool {
        matches!(
            self.failure(),
            Failure::CommandFailed { .. } | Failure::Timeout { .. } | Failure::CannotUpdateInPlace { .. }
        )
    }

    /// `<action>_<failure>`, e.g. `prepare_command_failed`, for metrics.
    pub fn label(&self) -> String {
        format!("{}_{}", self.action().as_str(), self.failure().label())
    }

    /// The failure reason the protocol (section 5) suggests for this error,
    /// if the agent gives up on it.
    pub fn failure_reason(&self) -> FailureReason {
        match (self.action(), self.failure()) {
            (Action::Prepare, Failure::CommandFailed { .. } | Failure::Timeout { .. }) => FailureReason::PrepareFailed,
            (Action::Activate, Failure::CommandFailed { .. } | Failure::Timeout { .. }) => {
                FailureReason::ActivateFailed
            }
            (Action::Reboot, _) => FailureReason::RebootFailed,
            (_, Failure::CannotUpdateInPlace { .. } | Failure::NoChosenUpdate { .. }) => {
                FailureReason::UpdateUnavailable
            }
            _ => FailureReason::HostApiError,
        }
    }
}

// === impl Failure ===

impl Failure {
    /// The HTTP status code the host answered, if this failure is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::NotAllowed { .. } => Some(409),
            Failure::NoChosenUpdate { .. } | Failure::NothingStaged { .. } | Failure::StatusUninitialized { .. } => {
                Some(404)
            }
            Failure::LockHeld { .. } => Some(423),
            Failure::CannotUpdateInPlace { .. } => Some(500),
            Failure::Server { status, .. } | Failure::UnexpectedStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The plain-text body the host answered, if this failure is an answer.
    pub fn body(&self) -> Option<&str> {
        match self {
            Failure::NotAllowed { body }
            | Failure::NoChosenUpdate { body }
            | Failure::NothingStaged { body }
            | Failure::StatusUninitialized { body }
            | Failure::LockHeld { body, .. }
            | Failure::CannotUpdateInPlace { body }
            | Failure::Server { body, .. }
            | Failure::UnexpectedStatus { body, .. } => Some(body),
            _ => None,
        }
    }

    /// A short lower-case name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::NotAllowed { .. } => "not_allowed",
            Failure::NoChosenUpdate { .. } => "no_chosen_update",
            Failure::NothingStaged { .. } => "nothing_staged",
            Failure::StatusUninitialized { .. } => "status_uninitialized",
            Failure::LockHeld { .. } => "lock_held",
            Failure::CannotUpdateInPlace { .. } => "cannot_update_in_place",
            Failure::Server { .. } => "server_error",
            Failure::UnexpectedStatus { .. } => "unexpected_status",
            Failure::CommandFailed { .. } => "command_failed",
            Failure::Timeout { .. } => "timeout",
            Failure::ConnectionDropped(_) => "connection_dropped",
            Failure::Io(_) => "io",
            Failure::Malformed(_) => "malformed",
            Failure::Interrupted(_) => "interrupted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostapi::types::{CommandStatus, CommandTimestamp};

    #[test]
    fn a_failed_prepare_reads_as_prepare_failed_with_its_stderr() {
        let err = Error::new(
            Action::Prepare,
            Failure::CommandFailed {
                command: Command {
                    cmd_type: CommandType::Prepare,
                    cmd_status: CommandStatus::Failed,
                    timestamp: CommandTimestamp::parse("2026-11-24T10:00:07Z").unwrap(),
                    exit_status: Some(1),
                    stderr: Some("Failed to write image\n".into()),
                },
            },
        );
        assert_eq!(
            err.to_string(),
            "prepare-update: the command finished Failed with exit status 1: Failed to write image"
        );
        assert_eq!(err.failure_reason(), FailureReason::PrepareFailed);
        assert_eq!(err.label(), "prepare_command_failed");
        assert_eq!(err.failure().status(), None);
        assert!(err.is_final());
    }

    #[test]
    fn a_command_past_its_deadline_fails_the_walk_like_a_failed_command() {
        let timeout = || Failure::Timeout { waited: Duration::from_secs(900), last_seen: "423".into() };
        let err = Error::new(Action::Prepare, timeout());
        assert_eq!(err.failure_reason(), FailureReason::PrepareFailed);
        assert!(err.is_final(), "the host still holds its lock: retrying cannot help");
        assert_eq!(Error::new(Action::Activate, timeout()).failure_reason(), FailureReason::ActivateFailed);
        let flaky = Error::new(Action::Prepare, Failure::Server { status: 500, body: "busy".into() });
        assert!(!flaky.is_final());
    }

    #[test]
    fn http_failures_keep_status_and_body() {
        let err = Error::new(
            Action::Refresh,
            Failure::CannotUpdateInPlace { body: "Unable to start the update dispatcher".into() },
        );
        assert_eq!(err.failure().status(), Some(500));
        assert_eq!(err.failure().body(), Some("Unable to start the update dispatcher"));
        assert_eq!(err.failure_reason(), FailureReason::UpdateUnavailable);
        assert_eq!(err.action(), Action::Refresh);
        let err =
            Error::new(Action::Reboot, Failure::Server { status: 500, body: "Failed to reboot, inhibited".into() });
        assert_eq!(err.failure_reason(), FailureReason::RebootFailed);
        assert_eq!(err.to_string(), "reboot: the host answered 500: Failed to reboot, inhibited");
    }
}
