//! The HTTP/1.1 layer against scripted peers over in-memory pipes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::*;

const LIMITS: Limits = Limits { idle_timeout: Duration::from_secs(5), max_head: 8192, max_body: 16384, discard: 65536 };

/// Echoes the method, path and body length; counts the requests.
fn echo(count: Arc<AtomicUsize>) -> impl Fn(Request<Body>) -> std::future::Ready<Response<Bytes>> {
    move |req| {
        count.fetch_add(1, Ordering::SeqCst);
        let body = match req.body() {
            Body::Full(b) => format!("{} {} {}", req.method(), req.uri().path(), b.len()),
            Body::TooLarge => "too large".to_owned(),
        };
        std::future::ready(Response::new(Bytes::from(body)))
    }
}

/// Starts a server on one end of a pipe; returns the other end and the
/// server's task (its `End`).
fn start(limits: Limits) -> (DuplexStream, Arc<AtomicUsize>, tokio::task::JoinHandle<End>, CancellationToken) {
    let (client, server) = duplex(1 << 20);
    let count = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (c, s) = (count.clone(), stop.clone());
    let task = tokio::spawn(async move { serve(server, limits, &s, &CancellationToken::new(), echo(c)).await });
    (client, count, task, stop)
}

/// Reads one answer: (status, headers text, body).
async fn answer(io: &mut DuplexStream) -> (u16, String, String) {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(io.read(&mut byte).await.unwrap(), 1, "answer ended early: {:?}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length: ")).map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await.unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn keep_alive_requests_are_answered_in_order_on_one_connection() {
    let (mut c, count, task, _) = start(LIMITS);
    c.write_all(b"POST /v1/a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello").await.unwrap();
    let (status, head, body) = answer(&mut c).await;
    assert_eq!((status, body.as_str()), (200, "POST /v1/a 5"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    // Two pipelined requests in one write, the second without a body.
    c.write_all(b"POST /v1/b HTTP/1.1\r\ncontent-length: 2\r\n\r\nhiPOST /v1/c HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(answer(&mut c).await.2, "POST /v1/b 2");
    assert_eq!(answer(&mut c).await.2, "POST /v1/c 0");
    drop(c);
    assert_eq!(task.await.unwrap(), End::PeerClosed);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_request_in_small_pieces_is_put_together() {
    let (mut c, _, _task, _) = start(LIMITS);
    let req = b"POST /v1/nodes/n/status HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"a\":\"bc\"}\n";
    for piece in req.chunks(3) {
        c.write_all(piece).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(answer(&mut c).await.2, "POST /v1/nodes/n/status 11");
}

#[tokio::test]
async fn connection_close_and_http_1_0_close_after_the_answer() {
    for req in [&b"POST / HTTP/1.1\r\nconnection: close\r\n\r\n"[..], b"POST / HTTP/1.0\r\n\r\n"] {
        let (mut c, _, task, _) = start(LIMITS);
        c.write_all(req).await.unwrap();
        let (status, head, _) = answer(&mut c).await;
        assert_eq!(status, 200);
        assert!(head.contains("connection: close"), "{head}");
        assert_eq!(task.await.unwrap(), End::Closed);
    }
}

#[tokio::test]
async fn refusals_answer_and_close() {
    let long = format!("POST / HTTP/1.1\r\nx-pad: {}\r\n\r\n", "a".repeat(9000));
    let many = format!("POST / HTTP/1.1\r\n{}\r\n", "x: y\r\n".repeat(60));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("head over 8 KiB", long.into_bytes(), 431),
        ("too many headers", many.into_bytes(), 431),
        ("garbage", b"\x16\x03\x01 not http\r\n\r\n".to_vec(), 400),
        ("chunked", b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 411),
        ("both framings", b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n".to_vec(), 400),
        ("conflicting lengths", b"POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n".to_vec(), 400),
        ("signed length", b"POST / HTTP/1.1\r\ncontent-length: +3\r\n\r\n".to_vec(), 400),
        ("huge length", b"POST / HTTP/1.1\r\ncontent-length: 99999999999999999999999\r\n\r\n".to_vec(), 400),
    ];
    for (what, req, want) in cases {
        let (mut c, count, task, _) = start(LIMITS);
        c.write_all(&req).await.unwrap();
        let (status, head, body) = answer(&mut c).await;
        assert_eq!(status, want, "{what}: {head}{body}");
        assert!(head.contains("connection: close"), "{what}: {head}");
        assert!(matches!(task.await.unwrap(), End::Refused(_)), "{what}");
        assert_eq!(count.load(Ordering::SeqCst), 0, "{what}: the handler never saw it");
    }
}

#[tokio::test]
async fn an_oversized_body_is_thrown_away_then_answered_and_closed() {
    let (mut c, _, task, _) = start(LIMITS);
    c.write_all(b"POST / HTTP/1.1\r\ncontent-length: 20000\r\n\r\n").await.unwrap();
    c.write_all(&[b' '; 20000]).await.unwrap();
    let (_, head, body) = answer(&mut c).await;
    assert_eq!(body, "too large");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(task.await.unwrap(), End::Closed);
}

#[tokio::test]
async fn expect_continue_is_answered_before_the_body() {
    let (mut c, _, _task, _) = start(LIMITS);
    c.write_all(b"POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 3\r\n\r\n").await.unwrap();
    let mut first = [0u8; 25];
    c.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"abc").await.unwrap();
    assert_eq!(answer(&mut c).await.2, "POST / 3");
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_closes_at_its_deadline_and_a_slow_head_is_refused() {
    let (c, _, task, _) = start(LIMITS);
    assert_eq!(task.await.unwrap(), End::Idle);
    drop(c);
    let (mut c, _, task, _) = start(LIMITS);
    c.write_all(b"POST / HTTP/1.1\r\nx-slow: ").await.unwrap();
    assert_eq!(task.await.unwrap(), End::Refused("RequestTimeout"));
}

#[tokio::test]
async fn a_stop_closes_an_idle_connection_at_once_and_a_busy_one_after_its_answer() {
    let (c, _, task, stop) = start(LIMITS);
    stop.cancel();
    assert_eq!(task.await.unwrap(), End::Stopped);
    drop(c);
    // A request whose handler sees the stop: its answer still goes out.
    let (mut c, server) = duplex(1 << 16);
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let inner = s.clone();
        serve(server, LIMITS, &s, &CancellationToken::new(), move |_| {
            inner.cancel();
            std::future::ready(Response::new(Bytes::from_static(b"done")))
        })
        .await
    });
    c.write_all(b"POST / HTTP/1.1\r\n\r\n").await.unwrap();
    let (_, head, body) = answer(&mut c).await;
    assert_eq!(body, "done");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(task.await.unwrap(), End::Stopped);
    assert!(stop.is_cancelled());
}

#[tokio::test]
async fn head_answers_carry_no_body() {
    let (mut c, _, _task, _) = start(LIMITS);
    c.write_all(b"HEAD /x HTTP/1.1\r\n\r\nPOST /y HTTP/1.1\r\n\r\n").await.unwrap();
    let mut got = vec![0u8; 0];
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("POST /y 0") {
        let n = c.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    assert!(!text.contains("HEAD /x"), "the HEAD answer's body was not sent: {text}");
}

/// A stream that records whether it was shut down (a clean close: for TLS,
/// the close_notify) rather than only dropped.
struct Recorder(DuplexStream, Arc<std::sync::atomic::AtomicBool>);

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.1.store(true, Ordering::SeqCst);
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn idle_stopped_and_left_connections_are_closed_cleanly_not_just_dropped() {
    // Idle past its deadline, stopped between requests, the peer gone:
    // each is shut down (a TLS close_notify on the real stream), so a
    // client's pool drops the connection instead of sending into it.
    for case in ["idle", "stop", "peer"] {
        let (client, server) = duplex(1 << 16);
        let shut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = CancellationToken::new();
        let (s, rec) = (stop.clone(), Recorder(server, shut.clone()));
        let count = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move { serve(rec, LIMITS, &s, &CancellationToken::new(), echo(count)).await });
        match case {
            "stop" => stop.cancel(),
            "peer" => drop(client),
            _ => {}
        }
        let end = task.await.unwrap();
        assert!(shut.load(Ordering::SeqCst), "{case}: {end:?} without a clean close");
    }
}
