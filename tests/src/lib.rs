//! Test infrastructure of the project: the in-process Kubernetes API
//! simulator, the Bottlerocket host simulator and the end-to-end harness
//! live here as they are built (see README "Status").

pub mod apisim;
