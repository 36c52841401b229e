//! The Kubernetes client, built the same way by every component, and the
//! write parameters that name the component as the field manager.
//!
//! - `Config::infer`: in-cluster, else `KUBECONFIG`;
//! - kube's own retries off (`default_retry = false`): a 409 or a 429 must
//!   reach the caller, which decides (kube-rs notes, trap 1);
//! - optionally at most N requests in flight (the authproxy: a whole fleet
//!   asking at once then costs the API server N connections per replica);
//! - every write names its field manager (kube sends none by itself, and
//!   `managedFields` is how people see who changed what).

use anyhow::Context;
use kube::api::{PatchParams, PostParams};

/// How the client is built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// Most API requests in flight at once; more wait their turn.
    pub max_in_flight: Option<usize>,
}

/// The client of the cluster this process runs in (or `KUBECONFIG`'s).
pub async fn client(options: ClientOptions) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::infer().await.context("finding the Kubernetes API (in-cluster or KUBECONFIG)")?;
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config).context("building the Kubernetes client")?;
    Ok(match options.max_in_flight {
        Some(n) => builder.with_layer(&tower::limit::ConcurrencyLimitLayer::new(n)).build(),
        None => builder.build(),
    })
}

/// Create parameters naming `manager` as the field manager.
pub fn post_params(manager: &str) -> PostParams {
    PostParams { field_manager: Some(manager.to_owned()), ..Default::default() }
}

/// Patch and update parameters naming `manager` as the field manager.
pub fn patch_params(manager: &str) -> PatchParams {
    PatchParams { field_manager: Some(manager.to_owned()), ..Default::default() }
}
