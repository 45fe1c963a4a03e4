//! A minimal HTTP/1.1 client over `tokio::net::TcpStream`, enough for the service's JSON
//! requests: one request per connection (`Connection: close`), the answer read to the end.
//! Used by `--self-test` in `main.rs` and by `tests/bank_service.rs`, so neither needs an
//! HTTP client crate.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest a request may take, connection to last byte, before it fails.
const TIMEOUT: Duration = Duration::from_secs(30);

/// An answer: the status, the headers (names in lower case) and the body as JSON (`Null`
/// when empty, a JSON string when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Reply {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> io::Result<Reply> {
    send(addr, "GET", path, &[], None).await
}

/// `POST path` with a JSON body and, if given, an `Idempotency-Key` header.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    body: &Value,
    idempotency_key: Option<&str>,
) -> io::Result<Reply> {
    let headers: Vec<(&str, &str)> = idempotency_key
        .map(|key| ("Idempotency-Key", key))
        .into_iter()
        .collect();
    let body = serde_json::to_vec(body).map_err(io::Error::other)?;
    send(addr, "POST", path, &headers, Some(&body)).await
}

/// Sends one request with a raw body (JSON, or anything else a test wants to send).
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Reply> {
    let exchange = async {
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        if let Some(body) = body {
            stream.write_all(body).await?;
        }
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        parse(&answer)
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(reply) => reply,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{method} {path}: no complete answer within {TIMEOUT:?}"),
        )),
    }
}

fn parse(answer: &[u8]) -> io::Result<Reply> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("the answer has no end of headers"))?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = answer[end + 4..].to_vec();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(length) = header("content-length").and_then(|v| v.parse().ok()) {
        if body.len() < length {
            return Err(bad("the body is shorter than its Content-Length"));
        }
        body.truncate(length);
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut chunked: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = chunked.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&chunked[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        chunked = &chunked[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(chunked.get(..size)?);
        chunked = chunked.get(size + 2..)?;
    }
}
