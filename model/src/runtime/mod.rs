//! Process plumbing every binary of the project shares: the plain-HTTP admin
//! server (`/metrics`, `/healthz`, `/readyz`), logging setup and the one
//! shutdown signal. Behind the `runtime` feature, which only the binaries'
//! runtime code enables; the types and rules above it stay free of I/O.

pub mod admin;
pub mod events;
pub mod shutdown;
pub mod telemetry;
