//! In-process Kubernetes API simulator (work in progress).

pub mod builtin;
pub mod errors;
pub mod fields;
pub mod managed;
pub mod resources;
pub mod selectors;
pub mod store;
pub mod util;
pub mod watch;
