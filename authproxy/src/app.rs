//! One agent request, from bytes to answer: the peer's rate limit, route,
//! size and type checks, authentication and node binding, the node's rate
//! limit, body decoding and validation, the operation, metrics. Nothing
//! reaches the cluster before the caller is authenticated and bound to the
//! node the path names, and nothing is authenticated beyond the peer
//! address's rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use model::wire::{
    self, ApiError, CordonRequest, DrainRequest, Endpoint, HookRequest, InvalidRequest, ReleaseSlot, RenewSlot,
    StatusReport, UncordonRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{AuthError, Authenticator};
use crate::http1::Body;
use crate::metrics::Metrics;
use crate::ops::{Cluster, OpError};

/// Token buckets per key (a node, a peer address): `rate` requests per
/// second, bursts of `2 × rate`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: u32) -> Self {
        RateLimiter { rate: f64::from(rate), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `node`; false when the node is over its rate.
    pub fn allow(&self, node: &str, now: Instant) -> bool {
        let burst = 2.0 * self.rate;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(60));
        }
        let (tokens, last) = buckets.entry(node.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Bytes of an oversized body read and thrown away before the 413 is sent.
/// Answering while the client still writes makes its next write fail and
/// the kernel reset the connection, so the client would never read the
/// answer; past this, the connection is closed anyway (the request
/// deadline bounds the time either way).
pub const DISCARD_BYTES: usize = 64 * wire::MAX_BODY_BYTES;

/// Everything a request needs.
pub struct App {
    pub auth: Arc<Authenticator>,
    pub cluster: Cluster,
    /// A client that never retries by itself, for evictions (a 429 must reach us).
    pub evict_client: kube::Client,
    /// Per node, after authentication.
    pub limiter: RateLimiter,
    /// Per peer address, before anything else.
    pub peer_limiter: RateLimiter,
    pub metrics: Metrics,
    pub request_timeout: Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

type Answer = Response<Bytes>;

fn json_answer<T: Serialize>(status: StatusCode, body: &T) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|e| format!("{{\"message\":\"encoding: {e}\"}}").into_bytes());
    let mut r = Response::new(Bytes::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(code: u16, reason: &str, message: impl Into<String>) -> Answer {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_answer(status, &ApiError { code, reason: reason.to_owned(), message: message.into() })
}

// A refusal is an answer built once per request; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Answer> {
    serde_json::from_slice(body).map_err(|e| error(400, "InvalidBody", format!("request body: {e}")))
}

/// An empty body stands for `{}` (for endpoints whose fields are all optional).
#[allow(clippy::result_large_err)]
fn decode_or_default<T: DeserializeOwned>(body: &[u8]) -> Result<T, Answer> {
    if body.iter().all(u8::is_ascii_whitespace) { decode(b"{}") } else { decode(body) }
}

fn invalid(e: InvalidRequest) -> Answer {
    error(422, "Invalid", e.to_string())
}

fn respond<T: Serialize>(result: Result<T, OpError>) -> Answer {
    match result {
        Ok(v) => json_answer(StatusCode::OK, &v),
        Err(e) => op_error(&e),
    }
}

fn op_error(e: &OpError) -> Answer {
    let (code, reason) = e.status();
    error(code, reason, e.to_string())
}

impl App {
    /// Answers one request from `peer`; never panics on input.
    pub async fn handle(&self, peer: IpAddr, req: Request<Body>) -> Answer {
        let start = Instant::now();
        let path = req.uri().path().to_owned();
        let endpoint = Endpoint::parse(&path);
        let label = endpoint.map_or("unknown", |(_, e)| e.label());
        if !self.peer_limiter.allow(&peer.to_string(), start) {
            self.metrics.denied.with_label_values(&["PeerRateLimited"]).inc();
            let mut r = error(429, "PeerRateLimited", format!("{peer} sends too many requests; slow down"));
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            self.metrics.requests.with_label_values(&[label, r.status().as_str()]).inc();
            return r;
        }
        let answer = match tokio::time::timeout(self.request_timeout, self.route(peer, req, endpoint)).await {
            Ok(a) => a,
            Err(_) => error(504, "Timeout", format!("the request took longer than {:?}", self.request_timeout)),
        };
        self.metrics.requests.with_label_values(&[label, answer.status().as_str()]).inc();
        self.metrics.latency.with_label_values(&[label]).observe(start.elapsed().as_secs_f64());
        answer
    }

    async fn route(&self, peer: IpAddr, req: Request<Body>, endpoint: Option<(&str, Endpoint)>) -> Answer {
        let Some((asked, endpoint)) = endpoint else {
            return error(404, "NotFound", format!("no such endpoint: {}", req.uri().path()));
        };
        if req.method() != Method::POST {
            return error(405, "MethodNotAllowed", "every endpoint takes POST");
        }
        let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let json = content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        let token = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let body = match req.into_body() {
            Body::Full(b) => b,
            Body::TooLarge => {
                // Too large: what was read past the limit was discarded, and
                // the connection is not reused.
                let limit = wire::MAX_BODY_BYTES;
                let mut r = error(413, "BodyTooLarge", format!("request bodies are limited to {limit} bytes"));
                r.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
        };
        if !body.is_empty() && !json {
            return error(415, "UnsupportedMediaType", "send Content-Type: application/json");
        }
        let caller = match self.authenticate(peer, token.as_deref()).await {
            Ok(node) => node,
            Err(answer) => return answer,
        };
        if caller != asked {
            self.metrics.denied.with_label_values(&["NodeMismatch"]).inc();
            tracing::warn!(caller = %caller, asked = %asked, endpoint = endpoint.label(), "refused: a node asked about another node");
            return error(403, "NodeMismatch", format!("caller runs on node {caller} but asked about node {asked}"));
        }
        if !self.limiter.allow(&caller, Instant::now()) {
            self.metrics.denied.with_label_values(&["RateLimited"]).inc();
            let mut r = error(429, "RateLimited", format!("node {caller} sends too many requests; slow down"));
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            return r;
        }
        self.dispatch(&caller, endpoint, &body).await
    }

    async fn authenticate(&self, peer: IpAddr, token: Option<&str>) -> Result<String, Answer> {
        let result = match token {
            None => Err(AuthError::MissingToken),
            Some(t) => self.auth.caller_node(peer, t).await,
        };
        result.map_err(|e| {
            let (code, reason) = match &e {
                AuthError::MissingToken | AuthError::Unauthenticated(_) => (401, "Unauthenticated"),
                AuthError::Denied(d) => (403, d.reason()),
                AuthError::Upstream(_) => (503, "AuthUnavailable"),
                AuthError::Busy(_) => (429, "TooManyReviews"),
            };
            self.metrics.denied.with_label_values(&[reason]).inc();
            tracing::warn!(%peer, error = %e, "request refused");
            let mut r = error(code, reason, e.to_string());
            if code == 429 {
                r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            }
            r
        })
    }

    async fn dispatch(&self, node: &str, endpoint: Endpoint, body: &[u8]) -> Answer {
        let result: Result<Answer, Answer> = async {
            match endpoint {
                Endpoint::ReportStatus => {
                    let r: StatusReport = decode(body)?;
                    r.validate().map_err(invalid)?;
                    Ok(respond(self.cluster.report_status(node, &r).await))
                }
                Endpoint::RequestSlot => {
                    let r: Option<StatusReport> =
                        if body.iter().all(u8::is_ascii_whitespace) { None } else { Some(decode(body)?) };
                    if let Some(r) = &r {
                        r.validate().map_err(invalid)?;
                    }
                    Ok(respond(self.cluster.request_slot(node, r.as_ref()).await))
                }
                Endpoint::RenewSlot => {
                    let r: RenewSlot = decode(body)?;
                    r.validate().map_err(invalid)?;
                    Ok(respond(self.cluster.renew(node, &r).await))
                }
                Endpoint::ReleaseSlot => {
                    let r: ReleaseSlot = decode(body)?;
                    r.validate().map_err(invalid)?;
                    Ok(respond(self.cluster.release(node, &r).await))
                }
                Endpoint::Cordon => {
                    let r: CordonRequest = decode(body)?;
                    r.validate().map_err(invalid)?;
                    Ok(respond(self.cluster.cordon(node, &r).await))
                }
                Endpoint::Uncordon => {
                    let r: UncordonRequest = decode_or_default(body)?;
                    Ok(respond(self.cluster.uncordon(node, &r).await))
                }
                Endpoint::Drain => {
                    let r: DrainRequest = decode(body)?;
                    r.validate().map_err(invalid)?;
                    Ok(respond(self.cluster.drain(node, &r, &self.evict_client).await))
                }
                Endpoint::Hook => {
                    let r: HookRequest = decode(body)?;
                    r.validate().map_err(invalid)?;
                    Ok(respond(self.cluster.hook(node, &r).await))
                }
                Endpoint::ClearHooks => Ok(respond(self.cluster.clear_hooks(node).await)),
            }
        }
        .await;
        let answer = result.unwrap_or_else(|a| a);
        if answer.status().is_server_error() {
            tracing::warn!(node, endpoint = endpoint.label(), status = %answer.status(), "request failed");
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_the_rate() {
        let l = RateLimiter::new(5);
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| l.allow("node-1", t0)).count();
        assert_eq!(allowed, 10, "burst of twice the rate");
        assert!(!l.allow("node-1", t0));
        assert!(l.allow("node-2", t0), "buckets are per node");
        assert!(l.allow("node-1", t0 + Duration::from_millis(200)), "one more after 1/rate seconds");
    }
}
