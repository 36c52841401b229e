//! Test infrastructure of the project: the in-process Kubernetes API
//! simulator (`apisim`), the choice between it and a real API server
//! (`backend`), and later the Bottlerocket host simulator and the end-to-end
//! harness (see README "Status").

pub mod apisim;
pub mod backend;
