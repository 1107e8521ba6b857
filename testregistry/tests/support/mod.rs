//! A minimal HTTP/1.1 client over raw TCP, one connection per request, so
//! tests see exactly what the server sent (including cut-off bodies).

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;

use base64::Engine;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use testregistry::{Config, TestRegistry};

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// False when the connection closed before Content-Length bytes arrived.
    pub complete: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The first error code of an OCI error body.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn location(&self) -> &str {
        self.header("location").expect("Location header")
    }
}

pub fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Sends one request; `target` is a path (`/v2/..`) or an `http://` URL.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Resp> {
    let (addr, path) = match target.strip_prefix("http://") {
        Some(rest) => {
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            (host.parse().expect("host:port"), path.to_string())
        }
        None => (addr, target.to_string()),
    };
    let mut stream = TcpStream::connect(addr).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut buf = Vec::new();
    // Bytes read before a reset stay in `buf`; an empty `buf` means no answer.
    let read = stream.read_to_end(&mut buf).await;
    if buf.is_empty() {
        return Err(read
            .err()
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response")));
    }
    parse(&buf, method == "HEAD")
}

fn parse(buf: &[u8], head_request: bool) -> io::Result<Resp> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("incomplete head"))?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("head not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
        complete: true,
    };
    if head_request || status == 204 || status == 304 {
        return Ok(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        let (body, complete) = dechunk(rest);
        resp.body = body;
        resp.complete = complete;
    } else if let Some(len) = resp
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        resp.complete = rest.len() >= len;
        resp.body = rest[..rest.len().min(len)].to_vec();
    } else {
        resp.body = rest.to_vec();
    }
    Ok(resp)
}

fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let size = std::str::from_utf8(&data[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else {
            return (out, false);
        };
        if size == 0 {
            return (out, true);
        }
        data = &data[eol + 2..];
        if data.len() < size {
            out.extend_from_slice(data);
            return (out, false);
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}

/// Resolves a `Location` value against the path it answered (RFC 3986 §5.2
/// for the three shapes registries use). Returns a path or an absolute URL.
pub fn resolve(request_path: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with('/') {
        return location.to_string();
    }
    let base = request_path.split('?').next().unwrap_or("");
    let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
    let (rel_path, query) = match location.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (location, None),
    };
    let merged = format!("{dir}{rel_path}");
    let mut out: Vec<&str> = Vec::new();
    for seg in merged.split('/') {
        match seg {
            "." => {}
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
            }
            s => out.push(s),
        }
    }
    let path = out.join("/");
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// Appends a query parameter to a path or URL that may already have a query.
pub fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

pub async fn start(config: Config) -> TestRegistry {
    TestRegistry::start(config).await.expect("start registry")
}

pub async fn req(
    reg: &TestRegistry,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    send(reg.addr(), method, target, headers, body)
        .await
        .expect("response")
}

/// POST a new session and return its resolved location.
pub async fn open_session(reg: &TestRegistry, repo: &str) -> String {
    let path = format!("/v2/{repo}/blobs/uploads/");
    let r = req(reg, "POST", &path, &[], b"").await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.header("range"), Some("0-0"));
    assert!(r.header("docker-upload-uuid").is_some());
    resolve(&path, r.location())
}
