//! The end-to-end harness: real `leader`, `authproxy` and `nodeagent`
//! processes against a Kubernetes API (the in-process simulator, or a real
//! API server named by `BRUPOP_TEST_KUBECONFIG`) and simulated Bottlerocket
//! hosts, with the harness playing kubelet and cert-manager.
//!
//! - [`fleet`]: one call brings up a whole test cluster;
//! - [`certs`]: the CA and certificates cert-manager would issue;
//! - [`bins`]: builds and finds the component binaries;
//! - [`process`]: child processes, killed on drop;
//! - [`kubelet`]: pods terminating, nodes rebooting, agents restarting;
//! - [`netproxy`]: per-agent network links a test can cut;
//! - [`monitor`]: the invariant monitor;
//! - [`wait`], [`checks`]: waiting on conditions with deadlines, and what tests look at;
//! - [`previous`]: the previous build, for upgrade tests;
//! - [`prometheus`]: a real Prometheus process and a metric a test switches.

pub mod bins;
pub mod certs;
pub mod checks;
pub mod control;
pub mod fleet;
pub mod kubelet;
pub mod monitor;
pub mod netproxy;
pub mod options;
pub mod previous;
pub mod process;
pub mod prometheus;
pub mod tlsclient;
pub mod wait;

pub use checks::{metric, scrape};
pub use fleet::{Fleet, FleetOptions, TEST_LEASE};
pub use wait::wait_for;
