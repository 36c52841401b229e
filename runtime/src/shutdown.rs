//! One shutdown signal, fanned out to every task.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGTERM or SIGINT (Ctrl-C). Returns the signal's name.
pub async fn on_signal(token: CancellationToken) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let name = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = token.cancelled() => "shutdown",
        },
        _ => {
            token.cancelled().await;
            "shutdown"
        }
    };
    token.cancel();
    name
}
