//! The authproxy's metrics, registered once into one registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone, Debug)]
pub struct Metrics {
    pub registry: Registry,
    /// Requests by endpoint and HTTP status code.
    pub requests: IntCounterVec,
    /// Request latency by endpoint.
    pub latency: HistogramVec,
    /// TokenReviews sent, by result (`authenticated`, `rejected`, `error`).
    pub token_reviews: IntCounterVec,
    /// Token cache lookups by result (`hit`, `miss`, `refused`).
    pub token_cache: IntCounterVec,
    /// Refused requests by reason (`NodeMismatch`, `Unauthenticated`, ...).
    pub denied: IntCounterVec,
    /// Agent (TLS) connections open.
    pub connections: IntGauge,
    /// Agent connections closed at once, by reason (`peer_full`, `server_full`).
    pub connections_refused: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("brupop_authproxy_requests_total", "Agent requests by endpoint and HTTP status code"),
            &["endpoint", "code"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("brupop_authproxy_request_duration_seconds", "Agent request latency by endpoint")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["endpoint"],
        )
        .expect("valid metric");
        let token_reviews = IntCounterVec::new(
            Opts::new("brupop_authproxy_tokenreviews_total", "TokenReviews sent to the API server, by result"),
            &["result"],
        )
        .expect("valid metric");
        let token_cache = IntCounterVec::new(
            Opts::new(
                "brupop_authproxy_token_cache_total",
                "Token cache lookups by result (hit, miss, refused: a refusal remembered, pod_gone: the token's pod went or was replaced)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let denied = IntCounterVec::new(
            Opts::new("brupop_authproxy_denied_total", "Requests refused before reaching the cluster, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let connections =
            IntGauge::new("brupop_authproxy_connections", "Agent (TLS) connections open").expect("valid metric");
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "brupop_authproxy_connections_refused_total",
                "Agent connections closed before the TLS handshake, by reason (peer_full, server_full)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for c in [&requests, &token_reviews, &token_cache, &denied, &connections_refused] {
            registry.register(Box::new(c.clone())).expect("registered once");
        }
        registry.register(Box::new(latency.clone())).expect("registered once");
        registry.register(Box::new(connections.clone())).expect("registered once");
        Metrics { registry, requests, latency, token_reviews, token_cache, denied, connections, connections_refused }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
