//! The agent API's HTTP/1.1, sized for thousands of idle keep-alive
//! connections: a connection waiting for its next request holds no buffer
//! of ours (the head's buffer starts at 64 bytes when a byte arrives and is
//! freed after each answer), where a general-purpose server keeps a read and
//! a write buffer of 8 KiB each for the connection's life.
//!
//! What it accepts is what the agent sends: a request head of at most
//! [`Limits::max_head`] bytes (else 431), a body framed by `Content-Length`
//! (a chunked body is refused with 411, both framings at once with 400, so
//! no two parsers can disagree on where a request ends) and kept up to
//! [`Limits::max_body`] bytes (a larger one is read and thrown away up to
//! [`Limits::discard`], then answered [`Body::TooLarge`] and the connection
//! closed). Every read and write has a deadline. Parsing is `httparse`'s,
//! the parser hyper uses; nothing here panics on input.
//!
//! It must not grow a buffer beyond the limits, wait without a deadline, or
//! read a second request while the first is being answered (one request at
//! a time per connection, as the agent sends them).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

/// Most headers a request may have.
const MAX_HEADERS: usize = 48;

/// A request's body as the handler gets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Complete (empty when the request had none).
    Full(Bytes),
    /// Larger than [`Limits::max_body`]: not kept. The answer closes the
    /// connection.
    TooLarge,
}

/// What one connection may cost.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Deadline for a request's head, from the connection's start and after
    /// each answer; an idle connection closes after this long. Also the
    /// deadline for its body once the head is in, and for writing an answer.
    pub idle_timeout: Duration,
    /// Largest request head, request line and headers (431 beyond).
    pub max_head: usize,
    /// Largest body kept.
    pub max_body: usize,
    /// Bytes of an oversized body read and thrown away before answering
    /// (answering while the client still writes makes its next write fail
    /// and the client never reads the answer).
    pub discard: usize,
}

/// Why a connection ended (for the log).
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The peer closed it, between requests.
    PeerClosed,
    /// No request within the idle deadline.
    Idle,
    /// Asked to stop (room for another peer, or the server stops).
    Stopped,
    /// A request that cannot be served; answered, then closed.
    Refused(&'static str),
    /// The peer asked for it (`Connection: close`, HTTP/1.0) or the answer did.
    Closed,
    /// A read or write failed or passed its deadline mid-request.
    Io(String),
}

struct Head {
    method: Method,
    /// The request target as sent (percent-encoding kept).
    target: String,
    version: Version,
    headers: HeaderMap,
}

enum Parsed {
    Partial,
    Complete(Head, usize),
}

/// A refusal from this layer: status, reason, message (the app's error shape).
struct Refusal(u16, &'static str, String);

fn parse_head(buf: &[u8], max_head: usize) -> Result<Parsed, Refusal> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal(431, "HeadTooLarge", format!("at most {MAX_HEADERS} request headers")));
        }
        Err(e) => return Err(Refusal(400, "BadRequest", format!("request head: {e}"))),
    };
    let httparse::Status::Complete(len) = status else {
        return if buf.len() >= max_head {
            Err(Refusal(431, "HeadTooLarge", format!("request heads are limited to {max_head} bytes")))
        } else {
            Ok(Parsed::Partial)
        };
    };
    if len > max_head {
        return Err(Refusal(431, "HeadTooLarge", format!("request heads are limited to {max_head} bytes")));
    }
    let bad = |what: &str| Refusal(400, "BadRequest", format!("request head: {what}"));
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|_| bad("invalid method"))?;
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad("invalid header value"))?;
        headers.append(name, value);
    }
    let target = req.path.unwrap_or_default().to_owned();
    Ok(Parsed::Complete(Head { method, target, version, headers }, len))
}

/// The body's length by `Content-Length` (absent: none), or a refusal.
fn body_length(headers: &HeaderMap) -> Result<u64, Refusal> {
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(if headers.contains_key(CONTENT_LENGTH) {
            Refusal(400, "BadRequest", "both Transfer-Encoding and Content-Length".to_owned())
        } else {
            Refusal(411, "LengthRequired", "request bodies need a Content-Length (no Transfer-Encoding)".to_owned())
        });
    }
    let mut length = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        for part in v.to_str().unwrap_or("x").split(',') {
            let part = part.trim();
            let n = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| Refusal(400, "BadRequest", format!("invalid Content-Length {part:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(Refusal(400, "BadRequest", "conflicting Content-Length values".to_owned()));
            }
            length = Some(n);
        }
    }
    Ok(length.unwrap_or(0))
}

/// Whether a header holds `token` in its comma-separated list.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn refusal_answer(r: &Refusal) -> Response<Bytes> {
    let body = serde_json::json!({"code": r.0, "reason": r.1, "message": r.2});
    let mut a = Response::new(Bytes::from(body.to_string()));
    *a.status_mut() = StatusCode::from_u16(r.0).unwrap_or(StatusCode::BAD_REQUEST);
    a.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    a
}

/// Status line, headers and body, as one buffer (one TLS write).
fn encode(answer: &Response<Bytes>, close: bool, head_only: bool) -> Vec<u8> {
    let body = answer.body();
    let mut out = Vec::with_capacity(128 + body.len());
    let status = answer.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in answer.headers() {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

async fn write_answer<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8], deadline: Instant) -> Result<(), String> {
    let write = async {
        io.write_all(bytes).await?;
        io.flush().await
    };
    match timeout_at(deadline, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing the answer: {e}")),
        Err(_) => Err("writing the answer took too long".to_owned()),
    }
}

/// Reads at least one more byte into `buf` (growing it by at most `step`);
/// `Ok(false)` at end of stream.
async fn read_more<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>, step: usize) -> std::io::Result<bool> {
    // An empty buffer takes a 64-byte first allocation from `read_buf`: an
    // idle connection costs no more than that when its next request starts.
    if !buf.is_empty() && buf.capacity() == buf.len() {
        buf.reserve(step);
    }
    Ok(io.read_buf(buf).await? > 0)
}

/// Answers a refusal and closes the connection.
async fn refuse<S: AsyncWrite + Unpin>(io: &mut S, r: &Refusal, limits: &Limits) -> End {
    let deadline = Instant::now() + limits.idle_timeout.min(Duration::from_secs(5));
    let _ = write_answer(io, &encode(&refusal_answer(r), true, false), deadline).await;
    close(io, deadline).await;
    End::Refused(r.1)
}

async fn close<S: AsyncWrite + Unpin>(io: &mut S, deadline: Instant) {
    let _ = timeout_at(deadline, io.shutdown()).await;
}

/// Serves requests on `io` one after another until the peer leaves, the
/// idle deadline passes, a request is refused, or `stop` or `shutdown` is
/// cancelled (between requests: at once; during one: after its answer).
pub async fn serve<S, H, F>(
    mut io: S,
    limits: Limits,
    stop: &CancellationToken,
    shutdown: &CancellationToken,
    handler: H,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Fn(Request<Body>) -> F,
    F: Future<Output = Response<Bytes>>,
{
    let end = serve_requests(&mut io, limits, stop, shutdown, handler).await;
    // Between requests (idle, stopped, the peer gone): closed cleanly, a
    // TLS close_notify then FIN, so the client drops the connection from
    // its pool at once instead of sending its next request into it.
    if matches!(end, End::Idle | End::Stopped | End::PeerClosed) {
        close(&mut io, Instant::now() + CLOSE_WAIT).await;
    }
    end
}

/// How long a clean close may take (the close_notify written).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

async fn serve_requests<S, H, F>(
    io: &mut S,
    limits: Limits,
    stop: &CancellationToken,
    shutdown: &CancellationToken,
    handler: H,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Fn(Request<Body>) -> F,
    F: Future<Output = Response<Bytes>>,
{
    // Bytes received and not yet used: empty (no allocation) between
    // requests unless the peer sent the next one early.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let deadline = Instant::now() + limits.idle_timeout;
        // The head.
        let head = loop {
            match parse_head(&buf, limits.max_head) {
                Ok(Parsed::Complete(head, len)) => {
                    buf.drain(..len);
                    break head;
                }
                Ok(Parsed::Partial) => {}
                Err(r) => return refuse(io, &r, &limits).await,
            }
            let read = tokio::select! {
                r = timeout_at(deadline, read_more(io, &mut buf, 1024)) => r,
                () = stop.cancelled() => return End::Stopped,
                () = shutdown.cancelled() => return End::Stopped,
            };
            match read {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) if buf.iter().all(|b| b.is_ascii_whitespace()) => return End::PeerClosed,
                Ok(Ok(false)) => return End::Io("the peer closed the connection mid-request".to_owned()),
                Ok(Err(e)) => return End::Io(format!("reading a request: {e}")),
                Err(_) if buf.is_empty() => return End::Idle,
                Err(_) => {
                    let r = Refusal(408, "RequestTimeout", "the request head did not arrive in time".to_owned());
                    return refuse(io, &r, &limits).await;
                }
            }
        };
        let mut keep_alive = head.version == Version::HTTP_11 && !has_token(&head.headers, &CONNECTION, "close");
        let Ok(uri) = head.target.parse::<http::Uri>() else {
            let r = Refusal(400, "BadRequest", "request target is not a valid URI".to_owned());
            return refuse(io, &r, &limits).await;
        };
        let length = match body_length(&head.headers) {
            Ok(n) => n,
            Err(r) => return refuse(io, &r, &limits).await,
        };
        // The body, with a deadline of its own from the end of the head.
        let deadline = Instant::now() + limits.idle_timeout;
        let too_large = length > limits.max_body as u64;
        if has_token(&head.headers, &EXPECT, "100-continue")
            && !too_large
            && let Err(e) = write_answer(io, b"HTTP/1.1 100 Continue\r\n\r\n", deadline).await
        {
            return End::Io(e);
        }
        let body = if too_large {
            // Thrown away as it comes, at most `discard` bytes; then closed.
            keep_alive = false;
            let mut left = length.min(limits.discard as u64);
            let taken = (buf.len() as u64).min(left);
            buf.drain(..usize::try_from(taken).unwrap_or(buf.len()));
            left -= taken;
            let mut sink = [0u8; 1024];
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(sink.len()).min(sink.len());
                match timeout_at(deadline, io.read(&mut sink[..want])).await {
                    Ok(Ok(0)) => return End::Io("the peer closed the connection mid-body".to_owned()),
                    Ok(Ok(n)) => left -= n as u64,
                    Ok(Err(e)) => return End::Io(format!("reading a body: {e}")),
                    Err(_) => break,
                }
            }
            Body::TooLarge
        } else {
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            if buf.len() < length {
                buf.reserve_exact(length - buf.len());
            }
            while buf.len() < length {
                let want = length - buf.len();
                match timeout_at(deadline, read_more(io, &mut buf, want)).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => return End::Io("the peer closed the connection mid-body".to_owned()),
                    Ok(Err(e)) => return End::Io(format!("reading a body: {e}")),
                    Err(_) => return End::Io("the request body did not arrive in time".to_owned()),
                }
            }
            let rest = buf.split_off(length);
            Body::Full(Bytes::from(std::mem::replace(&mut buf, rest)))
        };
        let head_only = head.method == Method::HEAD;
        let mut request = Request::new(body);
        *request.method_mut() = head.method;
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers;
        *request.uri_mut() = uri;
        let answer = handler(request).await;
        keep_alive &= !has_token(answer.headers(), &CONNECTION, "close");
        keep_alive &= !stop.is_cancelled() && !shutdown.is_cancelled();
        let deadline = Instant::now() + limits.idle_timeout;
        if let Err(e) = write_answer(io, &encode(&answer, !keep_alive, head_only), deadline).await {
            return End::Io(e);
        }
        drop(answer);
        if !keep_alive {
            close(io, deadline).await;
            return if stop.is_cancelled() || shutdown.is_cancelled() { End::Stopped } else { End::Closed };
        }
        if buf.is_empty() {
            // Free it: the idle connection holds nothing of ours.
            buf = Vec::new();
        } else {
            buf.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
