//! Authentication of agents: TokenReview of the projected token (with the
//! authproxy's audience), then the pod the token is bound to, then the pure
//! rule in [`crate::authz`]. Successful results are cached per token for the
//! token's life (capped by `--token-cache-ttl`), and used only while the
//! token's pod is still the live one ([`crate::podwatch`]): an honest agent
//! costs one review per token, and a deleted or replaced pod's token stops
//! working within seconds. Refusals are cached for a short time, so a
//! repeated bad token costs no review.
//!
//! Reviews have their own budget: they go through a client of their own
//! (`--token-review-max-in-flight`), apart from the one that serves
//! authenticated agents' work, and one peer address may have at most
//! [`REVIEWS_PER_PEER`] in flight; more are refused at once (429), never
//! queued. A flood of unknown tokens therefore cannot delay the renewals
//! of agents already authenticated, nor take every review from the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::authz::{self, AgentAccount, Denial, Identity, PodFacts};
use crate::metrics::Metrics;
use crate::podwatch::AgentPods;
use crate::tokencache::TokenCache;

/// What a successful check found: the caller's node, and the pod its token
/// is bound to (the cached result holds only while that pod lives).
#[derive(Clone, Debug)]
pub struct Caller {
    pub node: String,
    pub pod: String,
    pub uid: String,
}

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
    #[error("too many token checks in flight from {0}; retry later")]
    Busy(IpAddr),
}

/// TokenReviews one peer address may have in flight at once (an agent has one).
pub const REVIEWS_PER_PEER: usize = 2;

/// A refusal worth remembering: the same token gets the same answer.
#[derive(Clone, Debug)]
pub enum Refused {
    Unauthenticated(String),
    Denied(Denial),
}

impl From<Refused> for AuthError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Unauthenticated(m) => AuthError::Unauthenticated(m),
            Refused::Denied(d) => AuthError::Denied(d),
        }
    }
}

/// Counts reviews in flight per peer; a place is freed when its guard drops.
#[derive(Debug, Default)]
struct InFlight(Mutex<HashMap<IpAddr, usize>>);

struct InFlightGuard<'a>(&'a InFlight, IpAddr);

impl InFlight {
    fn enter(&self, peer: IpAddr) -> Option<InFlightGuard<'_>> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(peer).or_insert(0);
        if *n >= REVIEWS_PER_PEER {
            return None;
        }
        *n += 1;
        Some(InFlightGuard(self, peer))
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut m = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Checks callers; cheap after the first request of each token.
pub struct Authenticator {
    /// Reviews and pod lookups only: its own in-flight budget.
    client: kube::Client,
    audience: String,
    agent: AgentAccount,
    cache: TokenCache<Caller>,
    refusals: TokenCache<Refused>,
    pods: AgentPods,
    in_flight: InFlight,
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
    /// `client` should be one for reviews alone (see the module documentation).
    pub fn new(
        client: kube::Client,
        audience: String,
        agent: AgentAccount,
        (cache, refusals): (TokenCache<Caller>, TokenCache<Refused>),
        pods: AgentPods,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Authenticator {
            client,
            audience,
            agent,
            cache,
            refusals,
            pods,
            in_flight: InFlight::default(),
            metrics,
        })
    }

    /// The node the caller (connected from `peer`) runs on.
    pub async fn caller_node(&self, peer: IpAddr, token: &str) -> Result<String, AuthError> {
        let now = Instant::now();
        if let Some(c) = self.cache.get(token, now) {
            if self.pods.is_live(&c.pod, &c.uid) == Some(true) {
                self.metrics.token_cache.with_label_values(&["hit"]).inc();
                return Ok(c.node);
            }
            // The pod went or was replaced (or the pod watch is relisting):
            // check again, which refuses a dead pod's token.
            self.metrics.token_cache.with_label_values(&["pod_gone"]).inc();
        }
        if let Some(refused) = self.refusals.get(token, now) {
            self.metrics.token_cache.with_label_values(&["refused"]).inc();
            return Err(refused.into());
        }
        self.metrics.token_cache.with_label_values(&["miss"]).inc();
        let Some(_place) = self.in_flight.enter(peer) else {
            return Err(AuthError::Busy(peer));
        };
        let result = self.check(token).await.map(|c| c.node);
        let refused = match &result {
            Err(AuthError::Unauthenticated(m)) => Some(Refused::Unauthenticated(m.clone())),
            Err(AuthError::Denied(d)) => Some(Refused::Denied(d.clone())),
            _ => None,
        };
        if let Some(r) = refused {
            self.refusals.insert(token, r, Instant::now(), SystemTime::now());
        }
        result
    }

    async fn check(&self, token: &str) -> Result<Caller, AuthError> {
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
        let uid = facts.map(|f| f.uid).unwrap_or_default();
        let caller = Caller { node, pod: pod_name, uid };
        self.cache.insert(token, caller.clone(), Instant::now(), SystemTime::now());
        Ok(caller)
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
        let audience_ok = audience_confirmed(status.audiences.as_deref(), &self.audience);
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

/// Whether a TokenReview's answer confirms the token is for `audience`. An
/// API server that ignores the audiences asked for answers without
/// `status.audiences`: such a token may be meant for anyone, so it is refused.
fn audience_confirmed(answered: Option<&[String]>, audience: &str) -> bool {
    answered.is_some_and(|a| a.iter().any(|x| x == audience))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_that_does_not_confirm_the_audience_is_refused() {
        let ours = "brupop-authproxy".to_owned();
        assert!(audience_confirmed(Some(std::slice::from_ref(&ours)), &ours));
        assert!(!audience_confirmed(None, &ours), "no audiences in the answer");
        assert!(!audience_confirmed(Some(&[]), &ours));
        assert!(!audience_confirmed(Some(&["https://kubernetes.default.svc".to_owned()]), &ours));
    }

    #[test]
    fn one_peer_has_at_most_two_reviews_in_flight() {
        let f = InFlight::default();
        let (a, b) = (IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3]));
        let g1 = f.enter(a).unwrap();
        let _g2 = f.enter(a).unwrap();
        assert!(f.enter(a).is_none());
        assert!(f.enter(b).is_some(), "another peer has its own places");
        drop(g1);
        assert!(f.enter(a).is_some(), "a finished review frees its place");
    }
}
