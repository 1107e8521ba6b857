//! Bad input on the command line: a clear message naming what is wrong, a non-zero exit, no
//! panic, nothing written.

use crate::common::*;

/// Fails with exit 1 (it failed), naming each of `needles`.
fn fails_with(args: &[&str], needles: &[&str]) {
    fails_with_code(args, 1, needles)
}

/// Fails with exit `code` (2: bad input refused before any registry was asked).
fn fails_with_code(args: &[&str], code: i32, needles: &[&str]) {
    let out = regbuild(args).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected `{n}` in: {err}");
    }
    assert!(
        stdout(&out).is_empty(),
        "nothing on stdout: {}",
        stdout(&out)
    );
}

#[test]
fn malformed_references_are_named_and_exit_2() {
    fails_with_code(
        &["promote", "Not A Ref!!", "127.0.0.1:1/x:v1"],
        2,
        &["invalid image reference `Not A Ref!!`"],
    );
    fails_with_code(
        &["promote", "127.0.0.1:1/x:v1", "127.0.0.1:1/UPPER:v1"],
        2,
        &["`127.0.0.1:1/UPPER:v1`", "lowercase"],
    );
    fails_with_code(
        &["promote", "127.0.0.1:1/x@sha256:1234", "127.0.0.1:1/y"],
        2,
        &["`127.0.0.1:1/x@sha256:1234`"],
    );
}

#[test]
fn unknown_repository_or_tag_is_named_and_nothing_is_written() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    fails_with(
        &[
            "promote",
            &format!("{host}/nothere:v9"),
            &format!("{host}/dst:v1"),
        ],
        &["GET manifest v9", &format!("{host}/nothere"), "404"],
    );
    let log = reg.access_log();
    assert!(
        log.iter().all(|a| a.method == "GET" || a.method == "HEAD"),
        "nothing written: {log:#?}"
    );
}

#[test]
fn an_unreachable_registry_is_a_clear_error() {
    // Port 1 (tcpmux) has no listener here; a free port picked now may be another test's
    // registry by the time regbuild connects.
    let port = 1;
    fails_with(
        &[
            "promote",
            &format!("127.0.0.1:{port}/a:v1"),
            &format!("127.0.0.1:{port}/b:v1"),
        ],
        &[&format!("127.0.0.1:{port}"), "connection failed"],
    );
}

/// One exit-code convention for every command: input refused before any registry was asked
/// exits 2, whichever command refused it.
#[test]
fn a_bad_platform_exits_2_for_every_command() {
    let ctx = context_with(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "x")]);
    let dir = ctx.path().to_str().unwrap();
    for args in [
        vec!["push", "--platform", "bogus", "-t", "127.0.0.1:1/x:1", dir],
        vec!["inspect", "--platform", "bogus", "127.0.0.1:1/x:1"],
        vec!["lock", "--platform", "bogus", dir],
    ] {
        fails_with_code(&args, 2, &["bogus"]);
    }
    fails_with_code(
        &["push", "--build-arg", "=x", "-t", "127.0.0.1:1/x:1", dir],
        2,
        &["--build-arg `=x`"],
    );
}

/// Values that would leave an upload unable to advance (chunks of 0 bytes: a loop of empty
/// PATCHes) or a run unable to start are bad usage: exit 2 naming the flag, and the
/// registry is never asked.
#[test]
fn sizes_and_counts_that_cannot_progress_exit_2_before_any_request() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let mark = reg.access_log().len();
    let ctx = context_with(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "x")]);
    let dir = ctx.path().to_str().unwrap();
    let (src, dst) = (format!("{host}/a:1"), format!("{host}/b:1"));
    for (flag, value) in [
        ("--chunk-size", "0"),
        ("--chunk-size", "0MiB"),
        ("--chunk-size", "0.1"),
        ("--jobs", "0"),
        ("--retries", "0"),
        ("--deadline", "0"),
    ] {
        fails_with_code(&[flag, value, "promote", &src, &dst], 2, &[flag]);
        fails_with_code(&["push", flag, value, "-t", &dst, dir], 2, &[flag]);
    }
    assert!(
        reg.access_log_since(mark).is_empty(),
        "the registry was asked: {:#?}",
        reg.access_log_since(mark)
    );
}

/// A deadline too far away for the clock to hold is no deadline, not a panic.
#[test]
fn a_deadline_past_what_the_clock_holds_is_no_deadline() {
    let port = free_port();
    fails_with(
        &[
            "--deadline",
            "18446744073709551615",
            "promote",
            &format!("127.0.0.1:{port}/a:1"),
            &format!("127.0.0.1:{port}/b:1"),
        ],
        &[&format!("127.0.0.1:{port}"), "connection failed"],
    );
}

/// BuildKit features regbuild lacks (its labs channel, or not built here) are refused with
/// the file, the line and the flag, before any registry is asked.
#[test]
fn buildkit_flags_regbuild_lacks_are_named_with_their_line_and_exit_2() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let mark = reg.access_log().len();
    for (step, flag) in [
        ("RUN --security=insecure true", "RUN --security"),
        ("RUN --device=/dev/fuse true", "RUN --device"),
        ("RUN --mount=type=ssh true", "ssh"),
    ] {
        let df = format!("FROM {host}/base:1\n{step}\n");
        let ctx = context_with(&[("Dockerfile", &df)]);
        let dir = ctx.path().to_str().unwrap();
        fails_with_code(
            &["push", "-t", &format!("{host}/x:1"), dir],
            2,
            &["Dockerfile:2:", flag],
        );
    }
    assert!(
        reg.access_log_since(mark).is_empty(),
        "the registry was asked"
    );
}

/// A minimal container has no CA certificates: regbuild falls back to the bundled roots
/// instead of panicking in its HTTP client (`regbuild_registry::tls`).
#[test]
fn no_ca_certificates_on_the_machine_is_no_panic() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let nowhere = tempfile::tempdir().unwrap();
    let missing = nowhere.path().join("none.pem");
    let ctx = context_with(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "x")]);
    let out = regbuild(&[
        "push",
        "-t",
        &format!("{host}/tls/none:1"),
        ctx.path().to_str().unwrap(),
    ])
    .env("SSL_CERT_FILE", &missing)
    .env("SSL_CERT_DIR", nowhere.path())
    .output()
    .unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
    // And a TLS registry is still verified (here: refused, naming the host), not skipped.
    let out = regbuild(&["inspect", "127.0.0.1:1/x:1"])
        .env("SSL_CERT_FILE", &missing)
        .env("SSL_CERT_DIR", nowhere.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
}
