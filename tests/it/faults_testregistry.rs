//! The fault matrix on testregistry: for each request kind (blob HEAD, mount POST, upload
//! POST/PATCH/PUT, manifest HEAD/GET/PUT, token GET) × each transient fault (503, 429 with
//! Retry-After, connection cut mid-body, 401 as if the token expired), the operation
//! succeeds and the result is intact; permanent faults fail in bounded time and leave the
//! old tags alone.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::*;
use testregistry::{Auth, Config, FaultAction, FaultRule, TestRegistry};

/// What a scenario does to the registry.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// `push` of a FROM-scratch context, with chunked uploads (POST, PATCH…, PUT).
    Push,
    /// `promote` between two repositories of the registry (mounts).
    Promote,
    /// `outdated` of a pushed image (manifest GET of the image, HEAD of its base's tag).
    Outdated,
}

/// The request kinds of the matrix: (name, scenario, method, path fragment).
const KINDS: &[(&str, Scenario, &str, &str)] = &[
    ("blob HEAD", Scenario::Push, "HEAD", "/blobs/sha256"),
    ("mount POST", Scenario::Promote, "POST", "mount="),
    ("upload POST", Scenario::Push, "POST", "/blobs/uploads/"),
    ("upload PATCH", Scenario::Push, "PATCH", "/blobs/uploads/"),
    ("upload PUT", Scenario::Push, "PUT", "/blobs/uploads/"),
    ("manifest HEAD", Scenario::Outdated, "HEAD", "/manifests/"),
    ("manifest GET", Scenario::Outdated, "GET", "/manifests/"),
    ("manifest PUT", Scenario::Push, "PUT", "/manifests/"),
    ("token GET", Scenario::Push, "GET", "/token"),
];

struct World {
    reg: TestRegistry,
    config: tempfile::TempDir,
    ctx: tempfile::TempDir,
    /// This world's layer cache (`REGBUILD_CACHE`).
    cache: tempfile::TempDir,
}

async fn world() -> World {
    let reg = TestRegistry::start(Config {
        auth: Auth::token("ci", "pw"),
        ..Config::default()
    })
    .await
    .unwrap();
    let config = docker_config_with(&reg.host(), "ci", "pw");
    // 36 KiB of incompressible data with a 4 KiB chunk threshold and 8 KiB chunks: the
    // layer goes in 5 PATCHes.
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY data.bin /data.bin\nCOPY small.txt /small.txt\nUSER 1\n",
        ),
        ("small.txt", "small\n"),
    ]);
    // The same bytes as before the generator moved to `common` (same seed, same steps).
    std::fs::write(
        ctx.path().join("data.bin"),
        noise(36 * 1024, 0x2545_f491_4f6c_dd1d),
    )
    .unwrap();
    World {
        reg,
        config,
        ctx,
        cache: tempfile::tempdir().unwrap(),
    }
}

async fn regbuild_in(w: &World, args: Vec<String>) -> Output {
    let config = w.config.path().to_path_buf();
    let cache = w.cache.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        regbuild(&argv)
            .env("DOCKER_CONFIG", &config)
            .env("REGBUILD_CACHE", &cache)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn push_args(w: &World, tag: &str) -> Vec<String> {
    vec![
        "push".into(),
        "--chunk-threshold".into(),
        "4KiB".into(),
        "--chunk-size".into(),
        "8KiB".into(),
        "-t".into(),
        format!("{}/app:{tag}", w.reg.host()),
        w.ctx.path().display().to_string(),
    ]
}

/// Runs `scenario` once cleanly (setting up what it needs) and returns the digest the
/// faulted run must reproduce.
async fn prepare(w: &World, scenario: Scenario) -> String {
    let out = regbuild_in(w, push_args(w, "clean")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = stdout(&out)
        .lines()
        .last()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_string();
    if let Scenario::Outdated = scenario {
        // An image with a base to check: FROM the clean push.
        let ctx = context_with(&[
            (
                "Dockerfile",
                &format!("FROM {}/app:clean\nCOPY f /f\nUSER 1\n", w.reg.host()),
            ),
            ("f", "f"),
        ]);
        let args = vec![
            "push".into(),
            "-t".into(),
            format!("{}/derived:1", w.reg.host()),
            ctx.path().display().to_string(),
        ];
        let out = regbuild_in(w, args).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    digest
}

async fn run_scenario(w: &World, scenario: Scenario) -> Output {
    let host = w.reg.host();
    let args: Vec<String> = match scenario {
        // Another repository: every blob is uploaded again (the record of where this
        // machine pushed them, which would mount them from `app`, is forgotten).
        Scenario::Push => {
            let _ = std::fs::remove_dir_all(w.cache.path().join("pushed"));
            let mut a = push_args(w, "faulted");
            let i = a.iter().position(|x| x.ends_with("/app:faulted")).unwrap();
            a[i] = format!("{host}/fresh:faulted");
            a
        }
        Scenario::Promote => vec![
            "promote".into(),
            format!("{host}/app:clean"),
            format!("{host}/promoted:faulted"),
        ],
        Scenario::Outdated => vec!["outdated".into(), format!("{host}/derived:1")],
    };
    regbuild_in(w, args).await
}

/// One cell of the matrix: the fault fires on the first matching request, the scenario
/// still succeeds, and what it wrote is intact.
async fn cell(kind: &(&str, Scenario, &str, &str), fault: &str) {
    let (name, scenario, method, path) = *kind;
    let w = world().await;
    let digest = prepare(&w, scenario).await;
    let action = match fault {
        "503" => FaultAction::status(503),
        "429" => FaultAction::status_retry_after(429, "1"),
        "cut" => FaultAction::CloseMidBody,
        "401" => FaultAction::status(401),
        other => panic!("{other}"),
    };
    w.reg.clear_log();
    w.reg.add_fault(FaultRule::new(method, path, action));
    let started = Instant::now();
    let out = run_scenario(&w, scenario).await;
    let took = started.elapsed();
    // The rule fires on the first matching request: there must have been one.
    let log = w.reg.requests();
    let first = log
        .iter()
        .find(|r| r.method == method && r.path.contains(path));
    assert!(
        first.is_some(),
        "{name} × {fault}: no such request, so no fault: {log:#?}"
    );
    if let (Some(r), Ok(code)) = (first, fault.parse::<u16>()) {
        assert_eq!(
            r.status, code,
            "{name} × {fault}: the first {method} was the faulted one"
        );
    }
    assert!(
        out.status.success(),
        "{name} × {fault}: failed after {took:?}: {}",
        stderr(&out)
    );
    match scenario {
        Scenario::Push => {
            let (_, bytes) = w.reg.manifest("fresh", "faulted").expect("tagged");
            let got = sha256(&bytes);
            assert_eq!(got, digest, "{name} × {fault}: same image as the clean run");
            let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            for l in m["layers"].as_array().unwrap() {
                let d = l["digest"].as_str().unwrap();
                let blob = w.reg.blob("fresh", d).expect("layer present");
                let sum = sha256(&blob);
                assert_eq!(sum, d, "{name} × {fault}: layer intact");
            }
        }
        Scenario::Promote => {
            assert_eq!(
                w.reg.manifest("promoted", "faulted"),
                w.reg.manifest("app", "clean")
            );
        }
        Scenario::Outdated => {
            assert!(stdout(&out).contains("up to date"), "{}", stdout(&out));
        }
    }
}

async fn column(fault: &str) {
    for kind in KINDS {
        // A 401 from the token endpoint itself means the credentials are wrong: that is
        // a permanent failure, not an expired token.
        if fault == "401" && kind.0 == "token GET" {
            continue;
        }
        cell(kind, fault).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_kind_survives_503() {
    column("503").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_kind_survives_429_with_retry_after() {
    column("429").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_kind_survives_a_connection_cut_mid_body() {
    column("cut").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_kind_survives_a_401_token_expiry() {
    column("401").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resumed_chunked_upload_continues_from_what_the_registry_holds() {
    let w = world().await;
    // The connection drops on the third PATCH: the client must ask the session how much it
    // holds (GET, Range) and continue from there, not start over.
    w.reg.add_fault(
        FaultRule::new("PATCH", "/blobs/uploads/", FaultAction::CloseBeforeResponse).nth(3),
    );
    // Not streamed while packing (one PATCH of unknown length): uploaded in chunks after.
    let mut args = push_args(&w, "resumed");
    args.insert(1, "--no-stream-upload".into());
    let out = regbuild_in(&w, args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let log = w.reg.requests();
    let patches: Vec<_> = log.iter().filter(|r| r.method == "PATCH").collect();
    let status_gets = log
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(
        status_gets, 1,
        "one status request after the failure: {log:#?}"
    );
    let starts: Vec<&str> = patches
        .iter()
        .map(|p| {
            p.content_range
                .as_deref()
                .unwrap_or("")
                .split('-')
                .next()
                .unwrap_or("")
        })
        .collect();
    // ~36 KiB in 8 KiB chunks: five chunks, the third sent twice; a restart from zero
    // would begin again at 0.
    assert_eq!(
        starts,
        vec!["0", "8192", "16384", "16384", "24576", "32768"],
        "{patches:#?}"
    );
    let sessions = log
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(
        sessions, 3,
        "one session per blob (two layers and the config), none restarted"
    );
    let (_, bytes) = w.reg.manifest("app", "resumed").unwrap();
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for l in m["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        let blob = w.reg.blob("app", d).unwrap();
        assert_eq!(sha256(&blob), d);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_416_resyncs_from_the_session_range() {
    let w = world().await;
    w.reg
        .add_fault(FaultRule::new("PATCH", "/blobs/uploads/", FaultAction::status(416)).nth(2));
    let out = regbuild_in(&w, push_args(&w, "resynced")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(w.reg.manifest("app", "resynced").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_faults_fail_in_bounded_time_and_leave_tags_alone() {
    for (method, path, status) in [
        ("PUT", "/manifests/", 403u16),
        ("POST", "/blobs/uploads/", 403),
        ("PUT", "/blobs/uploads/", 400),
    ] {
        let w = world().await;
        let before = prepare(&w, Scenario::Push).await;
        // Tag `faulted` points at the clean image; a changed context must not move it.
        let out = regbuild_in(&w, push_args(&w, "faulted")).await;
        assert!(out.status.success());
        std::fs::write(w.ctx.path().join("small.txt"), "changed\n").unwrap();
        w.reg
            .add_fault(FaultRule::new(method, path, FaultAction::status(status)).times(usize::MAX));
        let started = Instant::now();
        let out = regbuild_in(&w, push_args(&w, "faulted")).await;
        assert!(started.elapsed() < Duration::from_secs(60), "bounded");
        assert_eq!(out.status.code(), Some(1), "{method} {path} {status}");
        let err = stderr(&out);
        assert!(
            err.contains(&w.reg.host())
                && err.contains("/app")
                && err.contains(&status.to_string()),
            "{err}"
        );
        let (_, bytes) = w.reg.manifest("app", "faulted").unwrap();
        let now = sha256(&bytes);
        assert_eq!(now, before, "{method} {path}: the tag did not move");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_beyond_the_cap_fails_with_a_clear_message() {
    let w = world().await;
    w.reg.add_fault(
        FaultRule::new(
            "HEAD",
            "/blobs/",
            FaultAction::status_retry_after(503, "3600"),
        )
        .times(usize::MAX),
    );
    let started = Instant::now();
    let out = regbuild_in(&w, push_args(&w, "x")).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Retry-After"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_in_any_repository_moves_no_tag_in_any() {
    let w = world().await;
    let host = w.reg.host();
    // The second repository refuses every upload session: staging fails there, after the
    // first repository received all its blobs but before any tag was put.
    w.reg.add_fault(
        FaultRule::new(
            "POST",
            "/v2/second/blobs/uploads/",
            FaultAction::status(403),
        )
        .times(usize::MAX),
    );
    let args = vec![
        "push".to_string(),
        "-t".into(),
        format!("{host}/first:1"),
        "-t".into(),
        format!("{host}/second:1"),
        w.ctx.path().display().to_string(),
    ];
    let out = regbuild_in(&w, args).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        w.reg.manifest("first", "1").is_none(),
        "the first repository's tag did not move"
    );
    assert!(w.reg.manifest("second", "1").is_none());
    let manifest_puts = w
        .reg
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
        .count();
    assert_eq!(manifest_puts, 0);
}

/// Registries that answer garbage: a clear error naming the operation, no panic, no hang.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_answers_give_clear_errors() {
    let w = world().await;
    let host = w.reg.host();
    let digest = prepare(&w, Scenario::Push).await;
    // A manifest body that always breaks off mid-way (its Content-Length is a lie).
    w.reg.add_fault(
        FaultRule::new("GET", "/manifests/clean", FaultAction::CloseMidBody).times(usize::MAX),
    );
    let started = Instant::now();
    let out = regbuild_in(
        &w,
        vec![
            "promote".into(),
            format!("{host}/app:clean"),
            format!("{host}/copy:1"),
        ],
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("GET manifest clean") && !err.contains("panicked"),
        "{err}"
    );
    w.reg.clear_faults();

    // A manifest over the 4 MiB limit is refused unread.
    let huge = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{{"x":"{}"}}}}"#,
        "a".repeat(5 * 1024 * 1024)
    );
    w.reg.put_manifest(
        "app",
        "huge",
        "application/vnd.oci.image.manifest.v1+json",
        huge.as_bytes(),
    );
    let out = regbuild_in(
        &w,
        vec![
            "promote".into(),
            format!("{host}/app:huge"),
            format!("{host}/copy:2"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("larger than 4194304 bytes"),
        "{}",
        stderr(&out)
    );

    // A non-JSON error body with an unknown status.
    w.reg.add_fault(
        FaultRule::new(
            "GET",
            "/manifests/clean",
            FaultAction::Status {
                status: 418,
                retry_after: None,
                body: Some(("text/plain".into(), b"\x00\xffnot json".to_vec())),
            },
        )
        .times(usize::MAX),
    );
    let out = regbuild_in(
        &w,
        vec![
            "promote".into(),
            format!("{host}/app:clean"),
            format!("{host}/copy:3"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HTTP 418"), "{}", stderr(&out));
    assert!(w.reg.tags("copy").is_empty(), "nothing tagged");
    let _ = digest;
}
