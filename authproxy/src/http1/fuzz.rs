//! Fuzzing the HTTP/1.1 layer with proptest: whatever bytes a peer sends,
//! in whatever pieces, the layer never panics, hands the handler only
//! requests within the limits, answers only well-formed responses, writes a
//! bounded amount per request, and ends (the peer's close or a deadline).
//! Inputs are random bytes and the real requests of `authproxy/fuzz/http`
//! (the corpus) truncated, spliced and with bytes changed. More cases:
//! `PROPTEST_CASES=20000 cargo test -p authproxy fuzz` (CI runs that).

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use super::*;

const LIMITS: Limits = Limits { idle_timeout: Duration::from_secs(5), max_head: 1024, max_body: 2048, discard: 8192 };

/// The corpus: real requests as the agent sends them.
fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/http");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let out: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(out.len() >= 5, "the corpus in {} is missing", dir.display());
    out
}

/// One peer's input: bytes, and where they are cut into separate writes.
fn input() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let corpus = corpus();
    let n = corpus.len();
    let mutated = (
        0..n,
        0..n,
        any::<prop::sample::Index>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<bool>(),
    )
        .prop_map(move |(a, b, cut, flips, splice)| {
            let mut bytes = corpus[a].clone();
            if splice {
                // The head of one request, the rest of another.
                let at = cut.index(bytes.len() + 1);
                bytes.truncate(at);
                bytes.extend_from_slice(&corpus[b][at.min(corpus[b].len())..]);
            } else {
                bytes.truncate(cut.index(bytes.len() + 1).max(1));
            }
            for (i, byte) in flips {
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] = byte;
                }
            }
            bytes
        });
    let random = prop::collection::vec(any::<u8>(), 0..3000);
    // A head that never ends, and a body longer than its framing says.
    let endless = (1usize..4000).prop_map(|n| {
        let mut b = b"POST /v1/nodes/n/status HTTP/1.1\r\nx: ".to_vec();
        b.resize(b.len() + n, b'a');
        b
    });
    let bytes = prop_oneof![4 => mutated, 2 => random, 1 => endless];
    (bytes, prop::collection::vec(1usize..700, 0..8))
}

/// Serves `bytes` written in pieces at `cuts`, then the peer's close; returns
/// what the server wrote, the bodies the handler got, and how it ended.
fn run(bytes: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<usize>, End) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let (mut client, server) = duplex(1 << 16);
        let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
        let s = seen.clone();
        let handler = move |req: Request<Body>| {
            let len = match req.body() {
                Body::Full(b) => b.len(),
                Body::TooLarge => usize::MAX,
            };
            s.lock().unwrap().push(len);
            std::future::ready(Response::new(Bytes::from_static(b"ok")))
        };
        let task = tokio::spawn(async move {
            serve(server, LIMITS, &CancellationToken::new(), &CancellationToken::new(), handler).await
        });
        // Write in pieces, reading the answers as they come (the server
        // waits for its answer to be read before the next request).
        let mut out = Vec::new();
        let mut rest = bytes;
        let mut cuts = cuts.iter().copied();
        let mut buf = [0u8; 4096];
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            if client.write_all(piece).await.is_err() {
                break;
            }
            while let Ok(Ok(read)) = tokio::time::timeout(Duration::from_millis(1), client.read(&mut buf)).await {
                if read == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..read]);
            }
        }
        let _ = client.shutdown().await;
        // Everything else it writes, until it closes (a deadline at most).
        let deadline = Instant::now() + LIMITS.idle_timeout * 4;
        while let Ok(Ok(read)) = timeout_at(deadline, client.read(&mut buf)).await {
            if read == 0 {
                break;
            }
            out.extend_from_slice(&buf[..read]);
        }
        let end = timeout_at(deadline, task).await.expect("the connection ends by its deadlines").unwrap();
        let seen = seen.lock().unwrap().clone();
        (out, seen, end)
    })
}

/// Checks the server's output is a sequence of well-formed answers.
fn answers(out: &[u8]) -> Result<usize, String> {
    let mut rest = out;
    let mut count = 0;
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(rest) {
            Ok(httparse::Status::Complete(len)) => len,
            other => return Err(format!("not an answer: {other:?}: {:?}", String::from_utf8_lossy(rest))),
        };
        let code = resp.code.ok_or("no status")?;
        if !(100..600).contains(&code) {
            return Err(format!("status {code}"));
        }
        let body: usize = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .unwrap_or(0);
        let total = if code == 100 { len } else { len + body };
        if rest.len() < total {
            return Err(format!("answer cut short: {:?}", String::from_utf8_lossy(rest)));
        }
        rest = &rest[total..];
        count += 1;
    }
    Ok(count)
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_any_bytes_in_any_pieces_are_answered_well_formed_and_the_connection_ends((bytes, cuts) in input()) {
        let (out, bodies, end) = run(&bytes, &cuts);
        let count = answers(&out).map_err(TestCaseError::fail)?;
        // Only requests within the limits reach the handler.
        for b in &bodies {
            prop_assert!(*b == usize::MAX || *b <= LIMITS.max_body, "a body of {b} bytes reached the handler");
        }
        // Every request the handler saw was answered, at most one refusal
        // and one 100 Continue besides; each answer is small.
        prop_assert!(count <= bodies.len() * 2 + 2, "{count} answers for {} requests", bodies.len());
        prop_assert!(out.len() <= (count + 1) * 512, "{} bytes written for {count} answers", out.len());
        // A request can only have been served if its head fit.
        prop_assert!(bodies.len() <= bytes.len() / 16 + 1);
        prop_assert!(!matches!(end, End::Stopped), "{end:?}");
    }

    #[test]
    fn fuzz_the_head_parser_never_panics_and_never_takes_more_than_the_limit(bytes in prop::collection::vec(any::<u8>(), 0..2048), max in 16usize..1500) {
        match parse_head(&bytes, max) {
            Ok(Parsed::Complete(_, len)) => prop_assert!(len <= max && len <= bytes.len()),
            Ok(Parsed::Partial) => prop_assert!(bytes.len() < max),
            Err(Refusal(code, _, _)) => prop_assert!(code == 400 || code == 431),
        }
    }
}

#[test]
fn every_corpus_request_is_served_as_it_stands() {
    for (i, bytes) in corpus().iter().enumerate() {
        let (out, bodies, end) = run(bytes, &[]);
        let count = answers(&out).unwrap();
        assert!(!bodies.is_empty(), "corpus file {i} was not served: {:?}", String::from_utf8_lossy(&out));
        assert!(count >= bodies.len(), "corpus file {i}");
        assert!(out.starts_with(b"HTTP/1.1 100") || out.starts_with(b"HTTP/1.1 200"), "corpus file {i}");
        assert_eq!(end, End::PeerClosed, "corpus file {i}");
    }
}
