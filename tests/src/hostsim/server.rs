//! The HTTP/1.1 side of a simulated host: accept loop, routing, and the wire
//! shape of answers.
//!
//! What this module does: serves one host generation (from boot to going
//! down) on its Unix socket with hyper, routes the five update endpoints and
//! `/os` to the host, and writes answers as a real host does: compact JSON
//! with `application/json` on 200, no body on 204, plain-text error bodies,
//! 404 with an empty body for an unknown path, 405 for a wrong method on a
//! known one. Each accepted connection is a task owned by the accept loop, so
//! stopping the loop (the host going down) closes every connection.
//!
//! What it must not do: decide answers (the host does) or outlive its
//! generation.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::host::{Reply, Shared};
use super::types::CommandKind;

/// Serves `listener` until the task is aborted; aborting it drops every
/// connection task with it.
pub(crate) async fn serve(shared: Arc<Shared>, listener: UnixListener) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(Arc::clone(&shared), stream));
                }
                // e.g. out of file descriptors: back off rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One connection; `done` is notified when it closes (a reboot waits for
/// its 204 to be written before the host goes down).
async fn connection(shared: Arc<Shared>, stream: UnixStream) {
    let done = Arc::new(Notify::new());
    let service = {
        let done = Arc::clone(&done);
        service_fn(move |request| {
            let shared = Arc::clone(&shared);
            let done = Arc::clone(&done);
            async move { Ok::<_, Infallible>(handle(&shared, request, done).await) }
        })
    };
    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
    done.notify_one();
}

async fn handle(shared: &Arc<Shared>, request: Request<Incoming>, done: Arc<Notify>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let command = CommandKind::from_path(&path);
    let reply = match (method, path.as_str(), command) {
        (Method::GET, "/os", _) => shared.os(),
        (Method::GET, "/updates/status", _) => shared.read_status().await,
        (Method::POST, "/actions/reboot", _) => shared.reboot(done),
        (Method::POST, _, Some(cmd)) => shared.action(cmd),
        (_, "/os" | "/updates/status" | "/actions/reboot", _) | (_, _, Some(_)) => Reply::Text(405, String::new()),
        _ => Reply::Text(404, String::new()),
    };
    if matches!(reply, Reply::Vanish) {
        // The host goes down with this request unanswered.
        std::future::pending::<()>().await;
    }
    shared.answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if matches!(reply, Reply::Text(423, _)) {
        shared.locked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    response(reply)
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let (status, content_type, body, close) = match reply {
        Reply::Json(body) => (200, Some("application/json"), body, false),
        Reply::NoContent => (204, None, Vec::new(), false),
        Reply::RebootAccepted | Reply::Vanish => (204, None, Vec::new(), true),
        Reply::Text(status, body) if body.is_empty() => (status, None, Vec::new(), false),
        Reply::Text(status, body) => (status, Some("text/plain; charset=utf-8"), body.into_bytes(), false),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(content_type) = content_type {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if close {
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
