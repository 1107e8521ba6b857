//! A small fault-injecting HTTP/1.1 proxy for registry tests, plain std::net and threads.
//!
//! Clients talk to it as if it were the registry (origin-form requests, their own `Host`
//! header, kept as sent so that distribution's absolute `Location`s point back here). Every
//! request is read whole (Content-Length or chunked body), matched against the rules, and
//! then either answered by a fault or forwarded to the upstream over a fresh connection
//! (`Connection: close`), whose whole answer is relayed back with a Content-Length. Client
//! connections stay alive across requests unless the client asks to close.
//!
//! Faults are testregistry's: its rules ([`FaultRule`]), counted and matched by its engine
//! ([`Faults`]: every rule whose method and path match counts the request; the first rule, in
//! the order added, whose window `nth ..= nth + times - 1` holds its count decides), and its
//! actions ([`FaultAction`]) do here what they do in testregistry. Everything sent is recorded
//! in `log()`.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use testregistry::{FaultAction, FaultRule, Faults};

/// Bound on a request or response head (start line plus headers).
const MAX_HEAD: usize = 64 * 1024;
/// Bound on the number of header lines.
const MAX_HEADERS: usize = 256;
/// Bound on a body held in memory.
const MAX_BODY: usize = 512 * 1024 * 1024;
/// A client connection idle this long is closed.
const CLIENT_IDLE: Duration = Duration::from_secs(120);
const UPSTREAM_CONNECT: Duration = Duration::from_secs(10);
const UPSTREAM_IO: Duration = Duration::from_secs(120);

/// One log line: method, path and query, status sent (0 when the connection was closed
/// without an answer), and whether a rule faulted the request.
pub type ProxyLogEntry = (String, String, u16, bool);

struct Shared {
    upstream: String,
    stop: AtomicBool,
    faults: Mutex<Faults>,
    log: Mutex<Vec<ProxyLogEntry>>,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running proxy; stops (and closes every client connection) on drop.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`
    pub host: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            stop: AtomicBool::new(false),
            faults: Mutex::new(Faults::new()),
            log: Mutex::new(Vec::new()),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || accept_loop(listener, s))
            .expect("spawn the accept thread");
        FaultProxy {
            host: addr.to_string(),
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Adds a rule after those added before; it counts and fires as in testregistry.
    pub fn add_rule(&self, rule: FaultRule) {
        lock(&self.shared.faults).add(rule);
    }

    /// Every request handled so far, in the order they were answered.
    pub fn log(&self) -> Vec<ProxyLogEntry> {
        lock(&self.shared.log).clone()
    }

    /// The log entries a rule faulted.
    pub fn faulted(&self) -> Vec<ProxyLogEntry> {
        self.log().into_iter().filter(|e| e.3).collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for (_, s) in lock(&self.shared.conns).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).insert(id, clone);
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fault-proxy-conn-{id}"))
            .spawn(move || {
                serve(stream, &s);
                lock(&s.conns).remove(&id);
            });
        if spawned.is_err() {
            lock(&shared.conns).remove(&id);
        }
    }
}

/// A parsed head: the start line's three parts and the header lines.
struct Head {
    parts: [String; 3],
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when a header's comma-separated list holds `token` (ignoring case).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn is_chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    fn content_length(&self) -> io::Result<Option<usize>> {
        match self.get("content-length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| bad("invalid Content-Length")),
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// One line (without CR LF), at most `limit` bytes; None at EOF before any byte.
fn read_line(r: &mut impl BufRead, limit: usize) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n > limit {
            bad("line too long")
        } else {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-line")
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| bad("head is not UTF-8"))
}

/// A request or response head; None when the peer closed before sending anything.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD;
    // Tolerate empty lines before the start line (RFC 9112 §2.2).
    let start = loop {
        match read_line(r, budget)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => budget = budget.saturating_sub(2),
            Some(l) => break l,
        }
        if budget == 0 {
            return Err(bad("head too large"));
        }
    };
    budget = budget.saturating_sub(start.len() + 2);
    let mut it = start.splitn(3, ' ');
    let parts = [
        it.next().unwrap_or("").to_string(),
        it.next().unwrap_or("").to_string(),
        it.next().unwrap_or("").to_string(),
    ];
    if parts[0].is_empty() || parts[1].is_empty() {
        return Err(bad("malformed start line"));
    }
    let mut headers = Vec::new();
    loop {
        if budget == 0 || headers.len() > MAX_HEADERS {
            return Err(bad("head too large"));
        }
        let line = read_line(r, budget)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed in head"))?;
        budget = budget.saturating_sub(line.len() + 2);
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            // Obsolete folding: append to the previous value.
            if let Some((_, v)) = headers.last_mut() {
                let v: &mut String = v;
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            return Err(bad("folded first header"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("header without colon"))?;
        if name.is_empty() || name.contains(' ') {
            return Err(bad("bad header name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Some(Head { parts, headers }))
}

fn read_exact_body(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    if n > MAX_BODY {
        return Err(bad("body too large"));
    }
    let mut body = Vec::with_capacity(n.min(1 << 20));
    let got = r.by_ref().take(n as u64).read_to_end(&mut body)?;
    if got != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("body ended after {got} of {n} bytes"),
        ));
    }
    Ok(body)
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r, 4096)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed in chunks"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            let mut budget = MAX_HEAD;
            loop {
                let t = read_line(r, budget)?.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "closed in trailers")
                })?;
                if t.is_empty() {
                    return Ok(body);
                }
                budget = budget.saturating_sub(t.len() + 2);
                if budget == 0 {
                    return Err(bad("trailers too large"));
                }
            }
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(bad("body too large"));
        }
        body.extend(read_exact_body(r, size)?);
        let end = read_line(r, 2)?;
        if end.as_deref() != Some("") {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

fn read_to_eof(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    r.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
    if body.len() > MAX_BODY {
        return Err(bad("body too large"));
    }
    Ok(body)
}

/// Headers not relayed from hop to hop (framing is redone by the proxy).
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "content-length",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

struct Response {
    status: u16,
    reason: String,
    head: Head,
    body: Vec<u8>,
    /// The answer carries no body whatever its headers say (HEAD, 1xx, 204, 304).
    bodiless: bool,
}

fn forward(upstream: &str, req: &Head, body: &[u8]) -> io::Result<Response> {
    let addr: SocketAddr = upstream
        .parse()
        .map_err(|_| bad("upstream is not an address"))?;
    let stream = TcpStream::connect_timeout(&addr, UPSTREAM_CONNECT)?;
    stream.set_read_timeout(Some(UPSTREAM_IO))?;
    stream.set_write_timeout(Some(UPSTREAM_IO))?;
    let method = &req.parts[0];
    let mut out = format!("{} {} HTTP/1.1\r\n", method, req.parts[1]).into_bytes();
    for (n, v) in &req.headers {
        if !hop_by_hop(n) {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
    }
    let had_body = req.is_chunked() || req.get("content-length").is_some();
    if had_body || !body.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    (&stream).write_all(&out)?;
    (&stream).flush()?;

    let mut r = BufReader::new(&stream);
    loop {
        let head = read_head(&mut r)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "upstream closed without answer",
            )
        })?;
        let status: u16 = head.parts[1]
            .parse()
            .map_err(|_| bad("upstream status is not a number"))?;
        if (100..200).contains(&status) && status != 101 {
            continue; // interim answer
        }
        let bodiless =
            method.eq_ignore_ascii_case("HEAD") || status < 200 || status == 204 || status == 304;
        let body = if bodiless {
            Vec::new()
        } else if head.is_chunked() {
            read_chunked(&mut r)?
        } else if let Some(n) = head.content_length()? {
            read_exact_body(&mut r, n)?
        } else {
            read_to_eof(&mut r)?
        };
        let reason = head.parts[2].clone();
        return Ok(Response {
            status,
            reason,
            head,
            body,
            bodiless,
        });
    }
}

/// The bytes to send the client for `resp`; with `cut`, the full length announced and only
/// the first part of the body ([`FaultAction::cut`]).
fn relay_bytes(resp: &Response, close: bool, cut: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason).into_bytes();
    for (n, v) in &resp.head.headers {
        let keep_length = resp.bodiless && n.eq_ignore_ascii_case("content-length");
        if keep_length || !hop_by_hop(n) {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
    }
    let (sent, announced) = if cut {
        FaultAction::cut(resp.body.len())
    } else {
        (resp.body.len(), resp.body.len())
    };
    if !resp.bodiless {
        out.extend_from_slice(format!("Content-Length: {announced}\r\n").as_bytes());
    }
    if close || cut {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&resp.body[..sent]);
    out
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

/// An answer made by the proxy itself; `body` is its `Content-Type` and bytes.
fn synthetic(
    status: u16,
    body: Option<(String, Vec<u8>)>,
    retry_after: Option<&str>,
    head_only: bool,
    close: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nDocker-Distribution-Api-Version: registry/2.0\r\n",
        reason_phrase(status),
    )
    .into_bytes();
    let data = match body {
        Some((content_type, data)) => {
            out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            data
        }
        None => Vec::new(),
    };
    out.extend_from_slice(format!("Content-Length: {}\r\n", data.len()).as_bytes());
    if let Some(ra) = retry_after {
        out.extend_from_slice(format!("Retry-After: {ra}\r\n").as_bytes());
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&data);
    }
    out
}

/// The proxy's own error answer (a request it cannot read, an upstream that fails): a
/// distribution error body, code `UNKNOWN`, and the connection closed.
fn own_error(status: u16, message: &str, head_only: bool) -> Vec<u8> {
    let body = serde_json::json!({
        "errors": [{"code": "UNKNOWN", "message": message, "detail": null}]
    });
    let body = (
        "application/json; charset=utf-8".to_string(),
        body.to_string().into_bytes(),
    );
    synthetic(status, Some(body), None, head_only, true)
}

impl Shared {
    fn record(&self, method: &str, target: &str, status: u16, faulted: bool) {
        lock(&self.log).push((method.to_string(), target.to_string(), status, faulted));
    }
}

/// Serves one client connection: requests one after the other until it closes.
fn serve(client: TcpStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(CLIENT_IDLE));
    let _ = client.set_write_timeout(Some(UPSTREAM_IO));
    let _ = client.set_nodelay(true);
    let mut writer = match client.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(client);
    while !shared.stop.load(Ordering::SeqCst) {
        // Anything but an HTTP token first (a TLS ClientHello from a client probing for
        // HTTPS, say) is refused by closing at once, as there will be no line to read.
        match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(b) if !b[0].is_ascii_alphabetic() && b[0] != b'\r' && b[0] != b'\n' => break,
            Ok(_) => {}
        }
        let head = match read_head(&mut reader) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(_) => {
                let _ = writer.write_all(&own_error(400, "malformed request", false));
                break;
            }
        };
        let method = head.parts[0].clone();
        let target = head.parts[1].clone();
        let http10 = head.parts[2].eq_ignore_ascii_case("HTTP/1.0");
        let close = head.has_token("connection", "close")
            || (http10 && !head.has_token("connection", "keep-alive"));
        if head.has_token("expect", "100-continue")
            && !http10
            && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            break;
        }
        let body = if head.is_chunked() {
            read_chunked(&mut reader)
        } else {
            match head.content_length() {
                Ok(Some(n)) => read_exact_body(&mut reader, n),
                Ok(None) => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        };
        let body = match body {
            Ok(b) => b,
            Err(_) => {
                let _ = writer.write_all(&own_error(400, "unreadable body", false));
                shared.record(&method, &target, 400, false);
                break;
            }
        };
        let head_only = method.eq_ignore_ascii_case("HEAD");
        let action = lock(&shared.faults).check(&method, &target);
        let faulted = action.is_some();
        match &action {
            Some(
                fault @ FaultAction::Status {
                    status,
                    retry_after,
                    ..
                },
            ) => {
                let bytes = synthetic(
                    *status,
                    fault.status_body(),
                    retry_after.as_deref(),
                    head_only,
                    close,
                );
                // Logged before the client can see the answer, so a test reading the log
                // right after its request finds it.
                shared.record(&method, &target, *status, true);
                let ok = writer.write_all(&bytes).is_ok();
                if !ok || close {
                    break;
                }
                continue;
            }
            Some(FaultAction::CloseBeforeResponse) => {
                shared.record(&method, &target, 0, true);
                break;
            }
            Some(FaultAction::Delay(d)) => std::thread::sleep(*d),
            Some(FaultAction::CloseMidBody | FaultAction::CorruptBody) | None => {}
        }
        let cut = action == Some(FaultAction::CloseMidBody);
        match forward(&shared.upstream, &head, &body) {
            Ok(mut resp) => {
                shared.record(&method, &target, resp.status, faulted);
                if cut && resp.bodiless {
                    // Nothing to cut (HEAD, say): the answer is not sent at all.
                    break;
                }
                if action == Some(FaultAction::CorruptBody) {
                    FaultAction::corrupt(&mut resp.body);
                }
                let ok = writer.write_all(&relay_bytes(&resp, close, cut)).is_ok();
                let _ = writer.flush();
                if !ok || close || cut {
                    break;
                }
            }
            Err(e) => {
                let msg = format!("test proxy: upstream failed: {e}");
                shared.record(&method, &target, 502, faulted);
                let _ = writer.write_all(&own_error(502, &msg, head_only));
                break;
            }
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}
