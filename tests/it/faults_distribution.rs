//! Faults between regbuild and the real distribution registry, injected by the test proxy
//! (`common::proxy`, with testregistry's fault rules): transient ones (503, 429 with
//! Retry-After, a dropped connection, 502) are retried and the image arrives intact; a
//! permanent one (403) fails promptly with a message naming the registry, repository and
//! operation, and leaves the tag alone.
//!
//! The first tests check the proxy itself with curl and skopeo. Every external command runs
//! with a time limit, so nothing here can hang.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::proxy::FaultProxy;
use crate::common::*;
use testregistry::{FaultAction, FaultRule};

/// Runs `cmd` (stdout and stderr captured), killing it after `limit`; panics on timeout.
fn bounded(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let out = out_reader.join().unwrap_or_default();
            let err = err_reader.join().unwrap_or_default();
            panic!(
                "{cmd:?} still running after {limit:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let output = Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    };
    (output, elapsed)
}

/// `bounded`, and the command must succeed.
fn bounded_ok(cmd: &mut Command, limit: Duration) -> Output {
    let dbg = format!("{cmd:?}");
    let (out, _) = bounded(cmd, limit);
    assert!(
        out.status.success(),
        "{dbg} failed ({:?}):\n{}\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

/// curl with its own time limit too; never fails by itself (`-f` is not given).
fn curl(args: &[&str]) -> Output {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "30"]).args(args);
    bounded(&mut c, Duration::from_secs(60)).0
}

/// `skopeo inspect --raw` digest, with a time limit (for references through the proxy).
fn digest_via(reference: &str) -> String {
    let out = bounded_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
        Duration::from_secs(120),
    );
    sha256(&out.stdout)
}

/// A one-layer umoci image in a fresh OCI layout (tag `v1`).
fn small_layout() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci_image(
        &layout,
        "v1",
        &[
            ("/data/noise.bin", noise(300_000, 42)),
            ("/etc/motd", b"through the proxy\n".to_vec()),
        ],
        None,
    );
    let src = format!("oci:{}:v1", layout.display());
    (dir, src)
}

/// Pushes a small image directly to the registry; returns the digest and size of its layer.
fn seed_blob(reg: &Distribution, repo: &str) -> (String, u64) {
    let (_dir, src) = small_layout();
    skopeo_copy(&src, &format!("docker://{}/{repo}:v1", reg.host), &[]);
    let manifest = raw_manifest(&format!("{}/{repo}:v1", reg.host));
    let layer = &manifest["layers"][0];
    (
        layer["digest"].as_str().unwrap().to_string(),
        layer["size"].as_u64().unwrap(),
    )
}

fn entries(proxy: &FaultProxy, method: &str, path_contains: &str) -> Vec<(u16, bool)> {
    proxy
        .log()
        .into_iter()
        .filter(|e| e.0 == method && e.1.contains(path_contains))
        .map(|e| (e.2, e.3))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The proxy itself.

#[test]
fn proxy_forwards_and_keeps_client_connections_alive() {
    let reg = Distribution::start();
    let proxy = FaultProxy::start(&reg.host);
    let url = format!("http://{}/v2/", proxy.host);
    // Two requests in one curl run share one connection.
    let out = curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects}\n",
        &url,
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "200 1\n200 0\n");
    let out = curl(&["-i", &url]);
    let text = stdout(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("docker-distribution-api-version: registry/2.0"),
        "{text}"
    );
    assert_eq!(
        proxy.log(),
        vec![
            ("GET".to_string(), "/v2/".to_string(), 200, false),
            ("GET".to_string(), "/v2/".to_string(), 200, false),
            ("GET".to_string(), "/v2/".to_string(), 200, false),
        ]
    );
    // Odd input: a start line without a target is answered 400; a TLS ClientHello (a client
    // probing for HTTPS) is closed at once; an oversized head is refused. The proxy lives on.
    assert_eq!(
        raw_exchange(&proxy.host, b"NONSENSE\r\n\r\n").get(..12),
        Some(&b"HTTP/1.1 400"[..])
    );
    assert_eq!(
        raw_exchange(&proxy.host, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]),
        b""
    );
    let mut huge = b"GET /v2/ HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100_000));
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        raw_exchange(&proxy.host, &huge).get(..12),
        Some(&b"HTTP/1.1 400"[..])
    );
    assert_eq!(http_status("GET", &proxy.host, "/v2/"), Some(200));
}

/// Sends `bytes` on a fresh connection and reads until the proxy closes it (bounded).
fn raw_exchange(host: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn a_status_rule_answers_once_then_forwards() {
    let reg = Distribution::start();
    let proxy = FaultProxy::start(&reg.host);
    proxy.add_rule(FaultRule::new(
        "GET",
        "/v2/",
        FaultAction::status_retry_after(503, "1"),
    ));
    let url = format!("http://{}/v2/", proxy.host);
    let out = curl(&["-i", &url]);
    let text = stdout(&out);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("Retry-After: 1\r\n"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["errors"][0]["code"], "UNAVAILABLE", "{text}");
    let out = curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(stdout(&out), "200");
    // A rule for another method does not count GETs; nth counts only matching requests.
    proxy.add_rule(
        FaultRule::new(None, "/v2/_catalog", FaultAction::status(500))
            .nth(2)
            .times(2),
    );
    let codes: Vec<String> = (0..4)
        .map(|_| {
            stdout(&curl(&[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{}/v2/_catalog", proxy.host),
            ]))
        })
        .collect();
    assert_eq!(codes, ["200", "500", "500", "200"]);
    let log = proxy.log();
    assert_eq!(log[0], ("GET".into(), "/v2/".into(), 503, true));
    assert_eq!(log[1], ("GET".into(), "/v2/".into(), 200, false));
    assert_eq!(
        log[2..].iter().map(|e| (e.2, e.3)).collect::<Vec<_>>(),
        [(200, false), (500, true), (500, true), (200, false)]
    );
}

#[test]
fn a_delay_rule_delays_and_forwards() {
    let reg = Distribution::start();
    let proxy = FaultProxy::start(&reg.host);
    proxy.add_rule(FaultRule::new(
        "GET",
        "/v2/",
        FaultAction::Delay(Duration::from_millis(700)),
    ));
    let started = Instant::now();
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{}/v2/", proxy.host),
    ]);
    assert_eq!(stdout(&out), "200");
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(entries(&proxy, "GET", "/v2/"), [(200, true)]);
}

#[test]
fn close_without_response_makes_curl_fail() {
    let reg = Distribution::start();
    let proxy = FaultProxy::start(&reg.host);
    proxy.add_rule(FaultRule::new(
        "GET",
        "/v2/",
        FaultAction::CloseBeforeResponse,
    ));
    let url = format!("http://{}/v2/", proxy.host);
    let out = curl(&["-o", "/dev/null", &url]);
    // 52: empty reply from server.
    assert_eq!(out.status.code(), Some(52), "{}", stderr(&out));
    let out = curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(stdout(&out), "200");
    assert_eq!(entries(&proxy, "GET", "/v2/"), [(0, true), (200, false)]);
}

#[test]
fn cut_response_mid_body_makes_curl_report_a_partial_transfer() {
    let reg = Distribution::start();
    let (digest, size) = seed_blob(&reg, "self/cut");
    assert!(size > 100_000, "layer of {size} bytes");
    let proxy = FaultProxy::start(&reg.host);
    proxy.add_rule(FaultRule::new("GET", "/blobs/", FaultAction::CloseMidBody));
    let url = format!("http://{}/v2/self/cut/blobs/{digest}", proxy.host);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    let out = curl(&["-L", "-o", file.to_str().unwrap(), &url]);
    // 18: partial file (transfer closed with bytes remaining).
    assert_eq!(out.status.code(), Some(18), "{}", stderr(&out));
    let got = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert_eq!(got, size / 2);
    // The next GET is whole; HEAD gives the length without a body and does not hang.
    let out = curl(&[
        "-L",
        "-o",
        file.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(stdout(&out), "200", "{}", stderr(&out));
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(sha256(&bytes), digest);
    let out = curl(&["-I", &url]);
    let head = stdout(&out).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {size}\r\n")),
        "{head}"
    );
    assert_eq!(
        entries(&proxy, "GET", "/blobs/"),
        [(200, true), (200, false)]
    );
    assert_eq!(entries(&proxy, "HEAD", "/blobs/"), [(200, false)]);
}

/// The actions the proxy tests above do not use work as in testregistry: a corrupted body
/// keeps its length and headers, a status rule with its own body sends that body, and a cut
/// of an answer without a body (HEAD) sends nothing at all.
#[test]
fn corrupt_bodies_own_status_bodies_and_cut_heads_act_as_in_testregistry() {
    let reg = Distribution::start();
    let (digest, size) = seed_blob(&reg, "self/corrupt");
    let proxy = FaultProxy::start(&reg.host);
    proxy.add_rule(FaultRule::new("GET", "/blobs/", FaultAction::CorruptBody));
    proxy.add_rule(FaultRule::new("HEAD", "/blobs/", FaultAction::CloseMidBody));
    proxy.add_rule(FaultRule::new(
        "GET",
        "/v2/_catalog",
        FaultAction::Status {
            status: 500,
            retry_after: None,
            body: Some(("text/plain".into(), b"boom".to_vec())),
        },
    ));
    let url = format!("http://{}/v2/self/corrupt/blobs/{digest}", proxy.host);
    let dir = tempfile::tempdir().unwrap();
    let download = |name: &str| {
        let file = dir.path().join(name);
        let out = curl(&[
            "-L",
            "-o",
            file.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &url,
        ]);
        assert_eq!(stdout(&out), "200", "{}", stderr(&out));
        std::fs::read(file).unwrap()
    };
    let corrupted = download("corrupted");
    let mut whole = download("whole");
    assert_eq!(corrupted.len() as u64, size);
    assert_eq!(sha256(&whole), digest);
    FaultAction::corrupt(&mut whole);
    assert_eq!(corrupted, whole, "the bits testregistry flips");

    let out = curl(&["-I", &url]);
    // 52: empty reply from server.
    assert_eq!(out.status.code(), Some(52), "{}", stderr(&out));
    let out = curl(&["-I", &url]);
    assert!(stdout(&out).starts_with("HTTP/1.1 200"), "{}", stdout(&out));

    let out = curl(&["-i", &format!("http://{}/v2/_catalog", proxy.host)]);
    let text = stdout(&out);
    assert!(text.starts_with("HTTP/1.1 500"), "{text}");
    assert!(text.contains("Content-Type: text/plain\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nboom"), "{text}");

    assert_eq!(
        entries(&proxy, "GET", "/blobs/"),
        [(200, true), (200, false)]
    );
    assert_eq!(
        entries(&proxy, "HEAD", "/blobs/"),
        [(200, true), (200, false)]
    );
    assert_eq!(entries(&proxy, "GET", "/v2/_catalog"), [(500, true)]);
}

#[test]
fn chunked_upload_bodies_are_forwarded_and_locations_point_back_at_the_proxy() {
    let reg = Distribution::start();
    let proxy = FaultProxy::start(&reg.host);
    let content = noise(1_500_000, 7);
    let digest = sha256(&content);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    std::fs::write(&file, &content).unwrap();

    let out = curl(&[
        "-i",
        "-X",
        "POST",
        "-H",
        "Content-Length: 0",
        &format!("http://{}/v2/self/chunked/blobs/uploads/", proxy.host),
    ]);
    let text = stdout(&out);
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
    let location = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location: {text}"));
    assert!(
        location.starts_with(&format!("http://{}/", proxy.host)),
        "{location}"
    );
    let put_url = format!("{location}&digest={digest}");
    let out = curl(&[
        "-X",
        "PUT",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &put_url,
    ]);
    assert_eq!(stdout(&out), "201", "{}", stderr(&out));
    // The blob is in the real registry, whole.
    assert_eq!(
        http_status(
            "HEAD",
            &reg.host,
            &format!("/v2/self/chunked/blobs/{digest}")
        ),
        Some(200)
    );
    let log = proxy.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!((log[0].0.as_str(), log[0].2), ("POST", 202));
    assert_eq!((log[1].0.as_str(), log[1].2), ("PUT", 201));
}

#[test]
fn skopeo_copies_an_image_through_the_proxy() {
    let reg = Distribution::start();
    let proxy = FaultProxy::start(&reg.host);
    let (_dir, src) = small_layout();
    bounded_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(&src)
            .arg(format!("docker://{}/self/copied:v1", proxy.host)),
        Duration::from_secs(120),
    );
    let direct = skopeo_digest(&format!("{}/self/copied:v1", reg.host), &[]);
    assert_eq!(
        digest_via(&format!("{}/self/copied:v1", proxy.host)),
        direct
    );
    let log = proxy.log();
    assert!(log.iter().all(|e| !e.3), "{log:#?}");
    assert!(
        log.iter()
            .any(|e| e.0 == "PUT" && e.1.contains("/manifests/v1") && e.2 == 201),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|e| e.0 == "PUT" && e.1.contains("/blobs/uploads/") && e.2 == 201),
        "{log:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// regbuild against faults.

/// `regbuild push -f Dockerfile.test -t <tag> <hello context>`, bounded.
fn push_hello(tag: &str, limit: Duration) -> (Output, Duration) {
    let ctx = hello_context();
    let dockerfile = repo_root().join("Dockerfile.test");
    bounded(
        &mut regbuild(&[
            "push",
            "-f",
            dockerfile.to_str().unwrap(),
            "-t",
            tag,
            ctx.path().to_str().unwrap(),
        ]),
        limit,
    )
}

#[test]
fn transient_faults_are_retried_and_the_image_arrives_intact() {
    let reg = Distribution::start();
    let proxy = FaultProxy::start(&reg.host);
    let rules = [
        ("HEAD", "/blobs/sha256:", FaultAction::status(503)),
        (
            "POST",
            "/blobs/uploads/",
            FaultAction::status_retry_after(429, "1"),
        ),
        ("PUT", "/blobs/uploads/", FaultAction::CloseBeforeResponse),
        ("PUT", "/manifests/", FaultAction::status(502)),
    ];
    for (method, path, action) in rules.iter().cloned() {
        proxy.add_rule(FaultRule::new(method, path, action));
    }
    let (out, elapsed) = push_hello(
        &format!("{}/apps/hello:1", proxy.host),
        Duration::from_secs(180),
    );
    let log = proxy.log();
    let report = format!(
        "after {elapsed:?}, status {:?}\nstdout:\n{}\nstderr:\n{}\nproxy log:\n{log:#?}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(!stderr(&out).contains("panicked"), "{report}");
    let last = stdout(&out).lines().last().unwrap_or_default().to_string();
    let prefix = format!("{}/apps/hello@sha256:", proxy.host);
    assert!(last.starts_with(&prefix), "{report}");
    let digest = last.rsplit('@').next().unwrap().to_string();

    // Every fault happened once, and each was followed by a success of the same kind.
    for (method, path, action) in &rules {
        let status = match action {
            FaultAction::Status { status, .. } => *status,
            _ => 0,
        };
        let hits: Vec<(u16, bool)> = entries(&proxy, method, path);
        assert_eq!(
            hits.iter().filter(|h| h.1).count(),
            1,
            "{method} {path}: {report}"
        );
        assert!(
            hits.contains(&(status, true)),
            "{method} {path} faulted with {status}: {report}"
        );
        assert!(
            hits.iter().any(|h| !h.1 && (200..300).contains(&h.0))
                || (*method == "HEAD" && hits.iter().any(|h| !h.1 && h.0 == 404)),
            "{method} {path} succeeded after the fault: {report}"
        );
    }

    // The real registry, asked directly, has the tag at that digest, and the image is whole.
    assert_eq!(
        skopeo_digest(&format!("{}/apps/hello:1", reg.host), &[]),
        digest,
        "{report}"
    );
    let dir = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("docker://{}/apps/hello:1", reg.host),
        &format!("oci:{}:copy", dir.path().join("layout").display()),
        &[],
    );
}

#[test]
fn a_permanent_403_on_the_manifest_fails_promptly_and_keeps_the_old_tag() {
    let reg = Distribution::start();
    // A different image already holds the tag.
    let old_ctx = context_with(&[
        ("Dockerfile", "FROM scratch\nCOPY old.txt /old.txt\n"),
        ("old.txt", "the previous release\n"),
    ]);
    bounded_ok(
        &mut regbuild(&[
            "push",
            "-t",
            &format!("{}/apps/hello:1", reg.host),
            old_ctx.path().to_str().unwrap(),
        ]),
        Duration::from_secs(120),
    );
    let old = skopeo_digest(&format!("{}/apps/hello:1", reg.host), &[]);

    let proxy = FaultProxy::start(&reg.host);
    proxy
        .add_rule(FaultRule::new("PUT", "/manifests/", FaultAction::status(403)).times(usize::MAX));
    let (out, elapsed) = push_hello(
        &format!("{}/apps/hello:1", proxy.host),
        Duration::from_secs(90),
    );
    let err = stderr(&out);
    let report = format!(
        "after {elapsed:?}, status {:?}\nstdout:\n{}\nstderr:\n{err}\nproxy log:\n{:#?}",
        out.status,
        stdout(&out),
        proxy.log()
    );
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(elapsed < Duration::from_secs(60), "{report}");
    assert!(!err.contains("panicked"), "{report}");
    for needle in [proxy.host.as_str(), "apps/hello", "PUT manifest", "403"] {
        assert!(
            err.contains(needle),
            "expected `{needle}` in stderr: {report}"
        );
    }
    let puts = entries(&proxy, "PUT", "/manifests/");
    assert!(
        !puts.is_empty() && puts.iter().all(|p| *p == (403, true)),
        "{report}"
    );
    assert_eq!(
        skopeo_digest(&format!("{}/apps/hello:1", reg.host), &[]),
        old,
        "the tag moved: {report}"
    );
}
