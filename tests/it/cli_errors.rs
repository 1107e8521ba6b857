//! Bad input on the command line: a clear message naming what is wrong, a non-zero exit, no
//! panic, nothing written.

use crate::common::*;

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = regbuild(args).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
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
fn malformed_references_are_named() {
    fails_with(
        &["promote", "Not A Ref!!", "127.0.0.1:1/x:v1"],
        &["invalid image reference `Not A Ref!!`"],
    );
    fails_with(
        &["promote", "127.0.0.1:1/x:v1", "127.0.0.1:1/UPPER:v1"],
        &["`127.0.0.1:1/UPPER:v1`", "lowercase"],
    );
    fails_with(
        &["promote", "127.0.0.1:1/x@sha256:1234", "127.0.0.1:1/y"],
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
    let port = free_port();
    fails_with(
        &[
            "promote",
            &format!("127.0.0.1:{port}/a:v1"),
            &format!("127.0.0.1:{port}/b:v1"),
        ],
        &[&format!("127.0.0.1:{port}"), "connection failed"],
    );
}
