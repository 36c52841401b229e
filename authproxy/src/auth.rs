//! Authentication of agents: TokenReview of the projected token (with the
//! authproxy's audience), then the pod the token is bound to, then the pure
//! rule in [`crate::authz`]. Successful results are cached per token.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::authz::{self, AgentAccount, Denial, Identity, PodFacts};
use crate::metrics::Metrics;
use crate::tokencache::TokenCache;

/// Why a caller is not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token in the Authorization header")]
    MissingToken,
    #[error("token not accepted: {0}")]
    Unauthenticated(String),
    #[error(transparent)]
    Denied(#[from] Denial),
    #[error("cannot check the token now: {0}")]
    Upstream(String),
}

/// Checks callers; cheap after the first request of each token.
pub struct Authenticator {
    client: kube::Client,
    audience: String,
    agent: AgentAccount,
    cache: TokenCache<String>,
    metrics: Metrics,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("audience", &self.audience)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(
        client: kube::Client,
        audience: String,
        agent: AgentAccount,
        cache: TokenCache<String>,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Authenticator { client, audience, agent, cache, metrics })
    }

    /// The node the caller runs on.
    pub async fn caller_node(&self, token: &str) -> Result<String, AuthError> {
        if let Some(node) = self.cache.get(token, Instant::now()) {
            self.metrics.token_cache.with_label_values(&["hit"]).inc();
            return Ok(node);
        }
        self.metrics.token_cache.with_label_values(&["miss"]).inc();
        let identity = self.review(token).await?;
        let pod_name = authz::bound_pod(&identity, &self.agent)?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.agent.namespace);
        let pod = pods
            .get_opt(&pod_name)
            .await
            .map_err(|e| AuthError::Upstream(format!("looking up pod {pod_name}: {e}")))?;
        let facts = pod.map(|p| PodFacts {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            name: p.metadata.name.clone().unwrap_or_default(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            service_account: p
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        });
        let node = authz::caller_node(&identity, &self.agent, facts.as_ref())?;
        self.cache.insert(token, node.clone(), Instant::now(), SystemTime::now());
        Ok(node)
    }

    async fn review(&self, token: &str) -> Result<Identity, AuthError> {
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_owned(), audiences: Some(vec![self.audience.clone()]) },
            ..Default::default()
        };
        let pp = runtime::client::post_params(model::names::managers::AUTHPROXY);
        let answer = match reviews.create(&pp, &review).await {
            Ok(a) => a,
            Err(e) => {
                self.metrics.token_reviews.with_label_values(&["error"]).inc();
                return Err(AuthError::Upstream(format!("TokenReview: {e}")));
            }
        };
        let status = answer.status.unwrap_or_default();
        let audience_ok = status.audiences.as_ref().is_none_or(|a| a.contains(&self.audience));
        if status.authenticated != Some(true) || !audience_ok {
            self.metrics.token_reviews.with_label_values(&["rejected"]).inc();
            let why = status.error.unwrap_or_else(|| format!("not authenticated for audience {}", self.audience));
            return Err(AuthError::Unauthenticated(why));
        }
        self.metrics.token_reviews.with_label_values(&["authenticated"]).inc();
        let user = status.user.unwrap_or_default();
        Ok(Identity { username: user.username.unwrap_or_default(), extra: user.extra.unwrap_or_default() })
    }
}
