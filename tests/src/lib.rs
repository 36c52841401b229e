//! Test infrastructure of the project: the in-process Kubernetes API
//! simulator (`apisim`), the choice between it and a real API server
//! (`backend`), the Bottlerocket host simulator (`hostsim`) and the
//! end-to-end harness (`harness`).

pub mod apisim;
pub mod backend;
pub mod chaos;
pub mod deploy;
pub mod harness;
pub mod hostsim;
pub mod scale;
pub mod timeline;
pub mod timings;
