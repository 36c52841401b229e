//! A tiny hand-written HTTP/1.1 client over a Unix socket, for tests that
//! judge a host's answers on the wire.
//!
//! What this module does: sends one request per connection (`Connection:
//! close`), reads the answer to the end, and splits it into status, headers
//! and body (by `Content-Length`, or to end of stream), reporting a body
//! shorter than announced. It shares nothing with the nodeagent's client, so
//! tests of the simulator do not depend on the code they help test.
//!
//! What it must not do: retry, follow redirects, or interpret bodies.

use std::io;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// One answer as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The status line's version, e.g. `HTTP/1.1`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Sends `method path` to the socket and reads the whole answer.
pub async fn request(socket: &Path, method: &str, path: &str) -> io::Result<RawResponse> {
    let mut stream = UnixStream::connect(socket).await?;
    let head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse(&raw)
}

/// Splits a complete answer.
pub fn parse(raw: &[u8]) -> io::Result<RawResponse> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    if raw.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed without an answer"));
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_owned();
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status code"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse::<usize>().ok());
    let body = match length {
        Some(n) if n > rest.len() => return Err(bad("body shorter than Content-Length")),
        Some(n) => rest[..n].to_vec(),
        None => rest.to_vec(),
    };
    Ok(RawResponse { version, status, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_splits_into_status_headers_and_body() {
        let r = parse(b"HTTP/1.1 423 Locked\r\nContent-Type: text/plain\r\ncontent-length: 16\r\n\r\nUpdate lock held")
            .unwrap();
        assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 423));
        assert_eq!(r.header("Content-Type"), Some("text/plain"));
        assert_eq!(r.text(), "Update lock held");
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
        assert_eq!(parse(b"").unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
