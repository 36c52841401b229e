//! The host simulator judged on the wire against how a real host's API
//! answers (status codes, bodies, lock, command order), with a hand-written HTTP client
//! (`tests::hostsim::raw`) so that the nodeagent's client plays no part.
//!
//! - `wire`: endpoints, status codes, bodies and the JSON shape;
//! - `state_machine`: every row of the state-machine table, the check order
//!   and the update lock;
//! - `faults`: every scripted fault;
//! - `reboot`: going down, coming back, rollback, and the harness's events.

#[path = "hostsim/faults.rs"]
mod faults;
#[path = "hostsim/reboot.rs"]
mod reboot;
#[path = "hostsim/state_machine.rs"]
mod state_machine;
#[path = "hostsim/support.rs"]
mod support;
#[path = "hostsim/wire.rs"]
mod wire;
