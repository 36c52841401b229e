//! The nodeagent: drives one Bottlerocket node through its update while it
//! holds a slot, resuming from cluster and host state after any crash or reboot.
//!
//! Built so far: the state machine ([`machine`]), a pure function.

pub mod machine;
