//! The nodeagent: drives one Bottlerocket node through its update while it
//! holds a slot, resuming from cluster and host state after any crash or reboot.
//!
//! - [`machine`]: the state machine, a pure function of what the agent observes;
//! - [`hostapi`]: the client of the host's Bottlerocket update API.

pub mod hostapi;
pub mod machine;
