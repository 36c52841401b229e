//! The Bottlerocket host simulator: each simulated node serves the host
//! update API over HTTP/1.1 on a Unix socket, as a real host's API server
//! and update dispatcher behave (status codes, lock, asynchronous commands,
//! state machine), with scripted faults and a reboot the test harness can see.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tests::hostsim::{HostConfig, HostEvent, HostSim, RebootMode};
//! let host = HostSim::start(
//!     "/tmp/node-0.sock",
//!     HostConfig::new("1.20.0")
//!         .available(&["1.21.0", "1.20.0"])
//!         .reboot_mode(RebootMode::Manual),
//! )
//! .await?;
//! let mut events = host.events();
//! // ... the agent calls POST /actions/reboot ...
//! while let Ok(event) = events.recv().await {
//!     if event == HostEvent::Down {
//!         // kill the agent, mark the Node NotReady, then:
//!         host.boot().map_err(std::io::Error::other)?;
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Modules, each with one job:
//! - [`machine`]: the pure state machine (partitions, status file, update
//!   lock; no I/O, time passed in), with the fact sheet's table as tests;
//! - [`types`]: the JSON documents as a real host shapes them;
//! - [`faults`]: what a test can make a host do wrong;
//! - [`repo`]: the (shareable) repository of releases;
//! - `config.rs`: a host's configuration, events and power (plain data);
//! - `host.rs`: one host's handle, background commands, power and reboot;
//! - `server.rs`: the hyper server and routing;
//! - [`fleet`]: many hosts sharing a repository;
//! - [`raw`]: a hand-written HTTP client to judge the wire format.
//!
//! What the simulator must not do: share types or code with the nodeagent's
//! client (it must judge that client independently), or pass for a real host
//! where it differs from one.
//!
//! # Known differences from a real host
//!
//! - The update lock is a counter in memory, not `flock` on the status file;
//!   a status read holds the shared lock only for
//!   [`Timings::status_read_hold`] (zero by default) or while a test holds a
//!   [`ReadLockGuard`]; [`Fault::LockContention`] refuses the next actions
//!   with 423 deterministically.
//! - Update waves and the repository's signed metadata are not modelled: a
//!   refresh lists every release of the [`Repository`]. A prepare of a
//!   release withdrawn from it finishes `Failed` (a real host fails its
//!   download the same way).
//! - A pinned `version-lock` equal to the running version chooses nothing.
//! - `reboot` keeps working on a host that [cannot update in
//!   place](Fault::CannotUpdateInPlace): the fault applies to the four update
//!   actions, which are the ones the update dispatcher serves.
//! - While a host is down its socket file is removed (a connect fails with
//!   "not found"); connections open when it went down are closed.
//! - The status 500 body ([`Fault::StatusUnreadable`]), the prepare stderr
//!   and failure texts are the simulator's wording; the 423, 409, 404 and
//!   dispatcher-500 bodies are the real ones.
//! - A failed boot of a new image falls back after one attempt, taking twice
//!   the reboot downtime in automatic mode.
//! - Other settings, the rest of the API and authentication are absent:
//!   unknown paths answer 404 with an empty body; 405 carries no `Allow`.
//! - JSON keys come in a real host's order, except while a field fault
//!   ([`Fault::StatusFieldAbsent`], [`Fault::StatusFieldNull`],
//!   [`Fault::TimestampDigits`]) is active: the keys are then sorted.

mod config;
pub mod faults;
pub mod fleet;
mod host;
pub mod machine;
pub mod raw;
pub mod repo;
mod server;
pub mod types;

pub use config::{BootError, HostConfig, HostEvent, HostState, Power, PowerState, RebootMode, Timings};
pub use faults::Fault;
pub use fleet::HostFleet;
pub use host::{HostSim, ReadLockGuard, RequestCount, RequestCounter};
pub use machine::{BootOutcome, Disk, VersionLock};
pub use repo::Repository;
pub use types::{CmdStatus, CommandKind, CommandResult, Image, OsInfo, UpdateState, UpdateStatus};
