//! The HTTPS listener: connections admitted per peer address and in all
//! before the TLS handshake ([`runtime::conngate`]), the handshake with the
//! current certificates (a deadline per handshake), HTTP/1.1 per connection
//! ([`crate::http1`]: no buffer held while idle, an idle deadline), graceful
//! shutdown (stop accepting, let in-flight requests finish, bounded).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use model::wire;
use runtime::conngate::{ConnGate, ConnLimits, Permit, accept};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::app::{App, DISCARD_BYTES};
use crate::http1::{self, End};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head. An agent's (a projected token of about 1 KiB
/// and a few headers) fits many times; a larger head is refused (431), never
/// buffered.
pub const MAX_HEAD_BYTES: usize = 8192;

/// What the listener holds at most.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    pub conns: ConnLimits,
    /// Deadline for a request's head, from the connection's start and after
    /// each answer: an idle connection closes after this long.
    pub idle_timeout: Duration,
}

/// Serves agents until `shutdown`, then waits up to `drain` for open requests.
pub async fn serve(
    listener: TcpListener,
    tls: watch::Receiver<Arc<ServerConfig>>,
    app: Arc<App>,
    shutdown: CancellationToken,
    drain: Duration,
    limits: ServerLimits,
) {
    let gate = ConnGate::new(limits.conns);
    loop {
        let Some((stream, peer)) = accept(&listener, &shutdown, "authproxy").await else { break };
        let permit = match gate.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                app.metrics.connections_refused.with_label_values(&[why.label()]).inc();
                tracing::debug!(%peer, reason = why.label(), "connection refused");
                drop(stream);
                continue;
            }
        };
        app.metrics.connections.set(i64::try_from(gate.open()).unwrap_or(i64::MAX));
        // Answers are small and written as several TLS records: without
        // TCP_NODELAY, Nagle holds the last record until the agent's delayed
        // ACK (40 ms on Linux) and every such answer waits for it.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let acceptor = TlsAcceptor::from(tls.borrow().clone());
        let (app, gate, shutdown) = (app.clone(), gate.clone(), shutdown.clone());
        tokio::spawn(async move {
            let metrics = app.metrics.clone();
            serve_one(stream, peer, acceptor, app, &permit, &shutdown, limits).await;
            drop(permit);
            metrics.connections.set(i64::try_from(gate.open()).unwrap_or(i64::MAX));
        });
    }
    // Close the listening socket at once: new connections are refused (the
    // agent retries elsewhere or later) instead of queueing on a dying server.
    drop(listener);
    tracing::info!(open = gate.open(), "stopped accepting; finishing open requests");
    let until = tokio::time::Instant::now() + drain;
    while gate.open() > 0 {
        if tokio::time::Instant::now() >= until {
            tracing::warn!(open = gate.open(), "open requests did not finish within {drain:?}; closing them");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One connection: the handshake, then HTTP/1.1 until the peer leaves, the
/// idle deadline passes, the gate asks for the place back or the server stops.
async fn serve_one(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    permit: &Permit,
    shutdown: &CancellationToken,
    limits: ServerLimits,
) {
    let tls_stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let limits = http1::Limits {
        idle_timeout: limits.idle_timeout,
        max_head: MAX_HEAD_BYTES,
        max_body: wire::MAX_BODY_BYTES,
        discard: DISCARD_BYTES,
    };
    let ip = peer.ip();
    // The handler's future is boxed: inline, its largest state (a request
    // to the API server in flight) would be part of every connection's task
    // for the connection's life, idle or not.
    let handle = |req| Box::pin(app.handle(ip, req));
    let end = http1::serve(tls_stream, limits, permit.close_requested(), shutdown, handle).await;
    match end {
        End::PeerClosed | End::Idle | End::Stopped | End::Closed => tracing::trace!(%peer, ?end, "connection ended"),
        End::Refused(reason) => tracing::debug!(%peer, reason, "request refused; connection closed"),
        End::Io(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
    }
}
