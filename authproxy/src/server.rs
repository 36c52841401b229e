//! The HTTPS listener: TLS handshake with the current certificates (a
//! deadline per handshake), HTTP/1.1 per connection, graceful shutdown
//! (stop accepting, let in-flight requests finish, bounded).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::app::App;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves agents until `shutdown`, then waits up to `drain` for open requests.
pub async fn serve(
    listener: TcpListener,
    tls: watch::Receiver<Arc<ServerConfig>>,
    app: Arc<App>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Answers are small and written as several TLS records: without
        // TCP_NODELAY, Nagle holds the last record until the agent's delayed
        // ACK (40 ms on Linux) and every such answer waits for it.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let acceptor = TlsAcceptor::from(tls.borrow().clone());
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
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
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Some(Duration::from_secs(30)))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(tls_stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    // Close the listening socket at once: new connections are refused (the
    // agent retries elsewhere or later) instead of queueing on a dying server.
    drop(listener);
    tracing::info!(open = graceful.count(), "stopped accepting; finishing open requests");
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("open requests did not finish within {drain:?}; closing them");
    }
}
