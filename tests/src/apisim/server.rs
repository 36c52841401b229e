//! The HTTP(S) server: accepts connections on a loopback listener, runs one
//! hyper HTTP/1.1 connection task per connection, and for each request
//! authenticates, applies faults, logs, and dispatches to the handlers.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Shared;
use super::auth::Identity;
use super::discovery;
use super::errors::ApiError;
use super::faults::{RequestInfo, Verdict};
use super::handlers::{self, Headers};
use super::route::{self, Query, Reply, ReplyBody, Target, not_served};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Concurrent HTTP/2 streams per connection (watches are long-lived streams).
const MAX_STREAMS: u32 = 100_000;

/// Largest request body accepted (kube-apiserver: 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// The error that makes hyper close the connection without an answer.
#[derive(Debug)]
struct Partitioned;

impl std::fmt::Display for Partitioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by a simulated network partition")
    }
}

impl std::error::Error for Partitioned {}

/// Accepts connections until `shutdown` changes.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let tls = shared.tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.server.clone()));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            // HTTP/1.1 (kube-rs) or HTTP/2 (kubectl, and clients that
            // multiplex many watches over one connection).
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http2().max_concurrent_streams(MAX_STREAMS);
            match tls {
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        });
    }
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

fn header_str(req: &Request<Incoming>, name: header::HeaderName) -> String {
    req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Partitioned> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = Query::parse(req.uri().query());
    let headers = Headers {
        accept: header_str(&req, header::ACCEPT),
        content_type: header_str(&req, header::CONTENT_TYPE),
        user_agent: header_str(&req, header::USER_AGENT),
    };
    let target = route::parse_path(&path);
    let mut info = match &target {
        Target::Resource(p) => RequestInfo {
            verb: route::verb(&method, p, &query).to_owned(),
            resource: p.resource_key(),
            user: String::new(),
            namespace: p.namespace.clone().unwrap_or_default(),
            name: p.name.clone().unwrap_or_default(),
        },
        _ => {
            RequestInfo { verb: method.as_str().to_ascii_lowercase(), resource: path.clone(), ..RequestInfo::default() }
        }
    };
    let user = match bearer(&req) {
        None => Identity::anonymous(),
        Some(token) => {
            let result = shared.tokens.authenticate(&shared.store.lock(), &token, None);
            match result {
                Ok(Some((id, _))) => id,
                _ => {
                    shared.log.record(info, 401);
                    return Ok(respond(Reply::error(&ApiError::unauthorized()), ""));
                }
            }
        }
    };
    info.user = user.username.clone();
    let (verdict, delay) = shared.faults.check(&info);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match verdict {
        Verdict::Drop => {
            shared.log.record(info, 0);
            return Err(Partitioned);
        }
        Verdict::Fail(code) => {
            shared.log.record(info, code);
            return Ok(respond(Reply::error(&ApiError::injected(code)), ""));
        }
        Verdict::Proceed => {}
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            shared.log.record(info, 413);
            return Ok(respond(Reply::error(&ApiError::too_large()), ""));
        }
    };
    let reply =
        dispatch(&shared, &method, &target, &query, &headers, &user, &body).unwrap_or_else(|e| Reply::error(&e));
    shared.log.record(info, reply.code);
    let table = read_table(&headers, &reply);
    Ok(respond(reply, table))
}

fn read_table<'a>(h: &Headers, reply: &Reply) -> &'a str {
    if super::read::wants_table(&h.accept) && reply.code < 300 && matches!(reply.body, ReplyBody::Json(_)) {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        ""
    }
}

fn dispatch(
    shared: &Shared,
    method: &Method,
    target: &Target,
    q: &Query,
    h: &Headers,
    user: &Identity,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let get_only = || {
        if *method == Method::GET || *method == Method::HEAD {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"))
        }
    };
    match target {
        Target::Version => {
            get_only()?;
            Ok(Reply::value(200, &discovery::version()))
        }
        Target::Health => Ok(Reply { code: 200, body: ReplyBody::Text("ok"), warnings: Vec::new() }),
        Target::Api => {
            get_only()?;
            Ok(Reply::value(200, &discovery::api(&shared.server_address)))
        }
        Target::Apis => {
            get_only()?;
            Ok(Reply::value(200, &discovery::apis(&shared.store.lock())))
        }
        Target::Group(g) => {
            get_only()?;
            Ok(discovery::group(&shared.store.lock(), g).map_or_else(page_not_found, |v| Reply::value(200, &v)))
        }
        Target::GroupVersion(g, v) => {
            get_only()?;
            if g.is_empty() && v != "v1" {
                return Err(not_served());
            }
            let inner = shared.store.lock();
            if !g.is_empty() && discovery::group(&inner, g).is_none() {
                return Ok(page_not_found());
            }
            discovery::resource_list(&inner, g, v).map(|v| Reply::value(200, &v)).ok_or_else(not_served)
        }
        Target::Resource(p) if !p.group.is_empty() && discovery::group(&shared.store.lock(), &p.group).is_none() => {
            // Like the real server's mux: a group nobody serves is not an API path.
            Ok(page_not_found())
        }
        Target::Resource(p) => handlers::resource(shared, method, p, q, h, user, body),
        Target::OpenApiIndex => {
            get_only()?;
            Ok(Reply::value(200, &super::openapi::index(&shared.store.lock())))
        }
        Target::OpenApi(g, v) => {
            get_only()?;
            Ok(super::openapi::group_version(&shared.store.lock(), g, v)
                .map_or_else(page_not_found, |d| Reply::value(200, &d)))
        }
        Target::Unknown => Err(not_served()),
    }
}

fn page_not_found() -> Reply {
    Reply { code: 404, body: ReplyBody::Text("404 page not found\n"), warnings: Vec::new() }
}

fn respond(reply: Reply, content_type: &str) -> Response<Body> {
    let mut builder = Response::builder().status(reply.code).header(header::CACHE_CONTROL, "no-cache, private");
    for w in &reply.warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {w:?}")) {
            builder = builder.header(header::WARNING, v);
        }
    }
    let (ct, body): (&str, Body) = match reply.body {
        ReplyBody::Json(b) => {
            (if content_type.is_empty() { "application/json" } else { content_type }, Full::new(b).boxed_unsync())
        }
        ReplyBody::Text(t) => ("text/plain; charset=utf-8", Full::new(Bytes::from_static(t.as_bytes())).boxed_unsync()),
        ReplyBody::Watch(w) => {
            let stream = w.into_stream().map(|b| Ok::<_, Infallible>(Frame::data(b)));
            ("application/json", StreamBody::new(stream).boxed_unsync())
        }
    };
    builder
        .header(header::CONTENT_TYPE, ct)
        .body(body)
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
}
