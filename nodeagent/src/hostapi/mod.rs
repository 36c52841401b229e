//! The client of the Bottlerocket host's update API (`/run/api.sock`).
//!
//! The agent reads what its host runs (`GET /os`), where the host is in its
//! update (`GET /updates/status`), and drives it with the four update
//! commands and `reboot`. This client follows the host API's behaviour
//! exactly as the Bottlerocket API server and its update dispatcher
//! implement it:
//!
//! - HTTP/1.1 over the Unix socket with `ureq`, one connection per request,
//!   no DNS (`transport.rs`);
//! - tolerant parsing: absent or `null` optional fields, signed exit status,
//!   timestamps kept as sent, unknown enum values a clear error (`types.rs`);
//! - 423 retried on actions with a short doubling backoff and on reads as a
//!   running command is looked at; commands are asynchronous on the host,
//!   so [`HostApi::run`] notes the previous command's timestamp, POSTs, and
//!   polls (less often as it runs longer: [`PollSchedule`]) until a command of that
//!   type with another timestamp appears, within a per-command deadline
//!   (`client.rs`);
//! - every failure typed, named after the action ([`Error`], [`Failure`]);
//! - async wrappers that keep blocking calls off the runtime's worker
//!   threads ([`AsyncHostApi`]).
//!
//! This module must not decide what the agent does next: it never resumes,
//! retries a failed command, or picks a version. The agent's state machine
//! reads the host state first and decides.

mod async_api;
mod client;
mod error;
mod transport;
mod types;

pub use async_api::AsyncHostApi;
pub use client::{Backoff, CommandDeadlines, DEFAULT_SOCKET, HostApi, HostApiConfig, PollSchedule};
pub use error::{Action, Error, Failure};
pub use types::{
    Command, CommandStatus, CommandTimestamp, CommandType, HostStatus, OsInfo, StagedImage, UpdateImage, UpdateState,
    UpdateStatus, parse_os, parse_update_status,
};
