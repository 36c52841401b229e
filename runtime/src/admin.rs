//! The admin server: plain HTTP, separate from any TLS port, so Prometheus
//! and kubelet probes need no client certificate.
//!
//! - `GET /metrics`: the component's registry in Prometheus text format;
//! - `GET /healthz`: 200 while the process serves requests;
//! - `GET /readyz`: 200 once the component says it is ready (every watch has
//!   delivered its first list, for example), 503 before and while shutting down.
//!
//! It must not be a way to exhaust the component: HTTP/1.1 only (hyper's
//! protocol sniffing has no deadline), connections capped in all and per
//! peer address ([`crate::conngate`]), a deadline on reading a request's
//! head that also closes connections left idle between requests, a small
//! read buffer (a larger request head is refused, not buffered), a longest
//! life per connection, and a pause after a failed accept. Its own gauge
//! and counter (`brupop_admin_connections`,
//! `brupop_admin_connections_refused_total`) show what it holds and refuses.
//! Who may reach the port at all is the NetworkPolicy's business.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::conngate::{ConnGate, ConnLimits, accept};

/// What one admin server holds at most, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    pub conns: ConnLimits,
    /// Deadline to read a request's head, from the connection's start and
    /// again after each answer (so an idle keep-alive connection closes).
    pub header_timeout: Duration,
    /// A connection is closed after this long whatever it does (a peer that
    /// never reads its answer cannot hold one for ever).
    pub max_life: Duration,
}

/// Read buffer per connection: the smallest hyper allows. A request head
/// larger than this is refused (431). Scrapes and probes send a few hundred bytes.
pub const MAX_BUF_BYTES: usize = 8192;

impl Default for AdminLimits {
    /// Room for Prometheus (one keep-alive connection per scraper), kubelet
    /// probes (a new connection each, from the node's address) and a
    /// person's curl, with a wide margin; 256 connections of at most
    /// ~20 KiB each (read and write buffers) bound the server near 5 MiB.
    fn default() -> Self {
        AdminLimits {
            conns: ConnLimits { max_total: 256, max_per_peer: 16 },
            header_timeout: Duration::from_secs(10),
            max_life: Duration::from_secs(60),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn answer(req: &Request<Incoming>, registry: &Registry, ready: bool) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if ready => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => {
            let mut buf = Vec::new();
            match TextEncoder::new().encode(&registry.gather(), &mut buf) {
                Ok(()) => {
                    let mut r = text(StatusCode::OK, buf);
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    r
                }
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n"),
    }
}

/// Binds the admin port (`[::]` binds both stacks: [`crate::listen`]).
/// Separate from [`serve`] so a bad address is reported at start.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    crate::listen::bind(addr)
}

/// Serves until `shutdown` is cancelled, with the default [`AdminLimits`].
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    ready: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    serve_with(listener, registry, ready, shutdown, AdminLimits::default()).await;
}

fn admin_metrics(registry: &Registry) -> (IntGauge, IntCounterVec) {
    let open = IntGauge::new("brupop_admin_connections", "Connections the admin server holds open.")
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
    let refused = IntCounterVec::new(
        Opts::new(
            "brupop_admin_connections_refused_total",
            "Connections the admin server closed at once, by reason (server_full, peer_full).",
        ),
        &["reason"],
    )
    .unwrap_or_else(|e| unreachable!("static metric: {e}"));
    // A registry that already has them (a second server on it) keeps its own.
    let _ = registry.register(Box::new(open.clone()));
    let _ = registry.register(Box::new(refused.clone()));
    (open, refused)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve_with(
    listener: TcpListener,
    registry: Registry,
    ready: watch::Receiver<bool>,
    shutdown: CancellationToken,
    limits: AdminLimits,
) {
    let gate = ConnGate::new(limits.conns);
    let (open, refused) = admin_metrics(&registry);
    loop {
        let Some((stream, peer)) = accept(&listener, &shutdown, "admin").await else { return };
        let permit = match gate.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                refused.with_label_values(&[why.label()]).inc();
                tracing::debug!(%peer, reason = why.label(), "admin server: connection refused");
                drop(stream);
                continue;
            }
        };
        open.set(i64::try_from(gate.open()).unwrap_or(i64::MAX));
        let registry = registry.clone();
        let ready = ready.clone();
        let shutdown = shutdown.clone();
        let (gate, open) = (gate.clone(), open.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let is_ready = *ready.borrow() && !shutdown.is_cancelled();
                let r = answer(&req, &registry, is_ready);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Some(limits.header_timeout))
                .max_buf_size(MAX_BUF_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            let close = permit.close_requested().clone();
            let served = async move {
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => r,
                    () = close.cancelled() => {
                        // Room for a newer peer: an idle connection closes
                        // now, one answering finishes its answer first.
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                }
            };
            match tokio::time::timeout(limits.max_life, served).await {
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin connection ended"),
                Ok(Ok(())) => {}
                Err(_) => tracing::debug!(%peer, "admin connection closed at its longest life"),
            }
            drop(permit);
            open.set(i64::try_from(gate.open()).unwrap_or(i64::MAX));
        });
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    use super::*;

    /// The server as shipped (on `[::]`, both stacks); the address dialled
    /// is IPv4 loopback, so tests can choose distinct 127.0.x.y peers.
    async fn start(limits: AdminLimits) -> (SocketAddr, CancellationToken) {
        let listener = bind(crate::listen::any(0)).await.unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, listener.local_addr().unwrap().port()));
        let (tx, ready) = watch::channel(true);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            serve_with(listener, Registry::new(), ready, stop, limits).await;
            drop(tx);
        });
        (addr, shutdown)
    }

    /// A connection from `src` (any 127.0.0.0/8 address is loopback), so
    /// the server sees distinct peers.
    async fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let s = TcpSocket::new_v4()?;
        s.bind(SocketAddr::from((src, 0)))?;
        s.connect(addr).await
    }

    /// Reads until the peer closes (or `deadline`); true if it closed.
    async fn closed_within(s: &mut TcpStream, deadline: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let until = Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// One request with `Connection: close`; the whole answer as text.
    async fn get(src: Ipv4Addr, addr: SocketAddr, path: &str) -> Result<String, String> {
        let work = async {
            let mut s = connect_from(src, addr).await.map_err(|e| format!("connect: {e}"))?;
            let req = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.map_err(|e| format!("read: {e}"))?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        };
        tokio::time::timeout(Duration::from_secs(5), work).await.map_err(|_| "no answer within 5s".to_owned())?
    }

    fn sample(metrics: &str, line_start: &str) -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {line_start} in\n{metrics}"))
    }

    /// Polls the server's own gauge from a fresh peer until `ok` holds.
    async fn wait_open(addr: SocketAddr, deadline: Duration, ok: impl Fn(f64) -> bool) -> f64 {
        let until = Instant::now() + deadline;
        loop {
            let m = get(Ipv4Addr::new(127, 0, 3, 1), addr, "/metrics").await.unwrap();
            // This scrape's own connection is counted too.
            let open = sample(&m, "brupop_admin_connections ") - 1.0;
            if ok(open) || Instant::now() > until {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousands_of_idle_connections_leave_the_admin_server_serving_and_bounded() {
        let limits = AdminLimits {
            conns: ConnLimits { max_total: 100, max_per_peer: 16 },
            header_timeout: Duration::from_secs(3),
            max_life: Duration::from_secs(60),
        };
        let (addr, shutdown) = start(limits).await;
        // 3,000 connections from 60 peers that never send a byte.
        let mut idle = Vec::new();
        for peer in 1..=60u8 {
            for _ in 0..50 {
                idle.push(connect_from(Ipv4Addr::new(127, 0, 1, peer), addr).await.unwrap());
            }
        }
        let answer = get(Ipv4Addr::new(127, 0, 2, 1), addr, "/healthz").await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "a probe from a new peer is served: {answer}");
        let open = wait_open(addr, Duration::from_secs(5), |n| n <= 100.0).await;
        assert!(open <= 100.0, "the server holds at most its cap of the idle connections: {open}");
        let m = get(Ipv4Addr::new(127, 0, 2, 2), addr, "/metrics").await.unwrap();
        let refused = sample(&m, "brupop_admin_connections_refused_total{reason=\"peer_full\"}");
        // (How many depends on how fast the evicted ones closed.)
        assert!(refused >= 1.0, "peers over their cap are refused and counted: {refused}");
        // The idle ones close at the head deadline, without any request.
        let open = wait_open(addr, limits.header_timeout + Duration::from_secs(5), |n| n == 0.0).await;
        assert_eq!(open, 0.0, "idle connections are closed at the head deadline");
        for s in &mut idle {
            assert!(closed_within(s, Duration::from_secs(1)).await, "every idle connection was closed");
        }
        shutdown.cancel();
    }

    /// The shipped listener answers probes and scrapes over IPv6 and IPv4
    /// (how it names an IPv4 peer: `listen`'s tests).
    #[tokio::test]
    async fn the_admin_port_answers_on_ipv6_and_ipv4_loopback() {
        let (v4, shutdown) = start(AdminLimits::default()).await;
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v4.port()));
        for addr in [v6, v4] {
            let work = async {
                let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
                s.write_all(b"GET /healthz HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                let mut out = Vec::new();
                s.read_to_end(&mut out).await.map_err(|e| format!("read: {e}"))?;
                Ok::<_, String>(String::from_utf8_lossy(&out).into_owned())
            };
            let answer = tokio::time::timeout(Duration::from_secs(5), work).await.expect("an answer within 5s");
            let answer = answer.unwrap_or_else(|e| panic!("{addr}: {e}"));
            assert!(answer.starts_with("HTTP/1.1 200"), "{addr}: {answer}");
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_large_or_slow_request_head_is_refused_not_buffered() {
        let limits = AdminLimits { header_timeout: Duration::from_secs(2), ..AdminLimits::default() };
        let (addr, shutdown) = start(limits).await;
        // A head larger than the read buffer: refused, never held.
        let mut s = connect_from(Ipv4Addr::LOCALHOST, addr).await.unwrap();
        let mut head = b"GET /healthz HTTP/1.1\r\nx-pad: ".to_vec();
        head.resize(head.len() + 64 * 1024, b'a');
        let _ = s.write_all(&head).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 431"), "an oversized head is refused: {answer:?}");
        // A head sent a byte at a time is cut off at the deadline.
        let mut s = connect_from(Ipv4Addr::LOCALHOST, addr).await.unwrap();
        let started = Instant::now();
        let trickle = async {
            for b in b"GET /healthz HTTP/1.1\r\nx-slow: ".iter().cycle() {
                if s.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let _ = tokio::time::timeout(limits.header_timeout + Duration::from_secs(10), trickle).await;
        let took = started.elapsed();
        assert!(took < limits.header_timeout + Duration::from_secs(5), "a trickled head was held for {took:?}");
        shutdown.cancel();
    }
}
