//! The nodeagent. Not built yet: see README "Status" and the nodeagent issue.
//!
//! - [`hostapi`]: the client of the host's Bottlerocket update API.

pub mod hostapi;
