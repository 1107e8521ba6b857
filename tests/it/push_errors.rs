//! `regbuild push` refuses bad input before anything is written: a clear message naming the
//! file and line (or the reference), exit code 2 when refused before any registry was asked
//! (the Dockerfile, a reference) and 1 otherwise, no panic, no tag, no upload.

use crate::common::*;

/// Pushes `dockerfile` (with `files` in the context) and expects failure (exit 1) mentioning
/// `needles`.
fn refused(reg: &Distribution, dockerfile: &str, files: &[(&str, &str)], needles: &[&str]) {
    refused_with(1, reg, dockerfile, files, needles)
}

/// `refused`, exiting with `code` (2: the Dockerfile itself is bad input).
fn refused_with(
    code: i32,
    reg: &Distribution,
    dockerfile: &str,
    files: &[(&str, &str)],
    needles: &[&str],
) {
    let mut all = vec![("Dockerfile", dockerfile)];
    all.extend_from_slice(files);
    let ctx = context_with(&all);
    let mark = reg.access_log().len();
    let out = regbuild(&[
        "push",
        "-t",
        &format!("{}/bad/image:v1", reg.host),
        ctx.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{dockerfile}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in: {err}");
    }
    let writes: Vec<_> = reg
        .access_log_since(mark)
        .into_iter()
        .filter(|a| a.method != "GET" && a.method != "HEAD")
        .collect();
    assert!(writes.is_empty(), "nothing written: {writes:#?}");
}

#[test]
fn paths_leaving_the_context_are_refused() {
    let reg = Distribution::start();
    refused(
        &reg,
        "FROM scratch\nCOPY ../secret /s\n",
        &[],
        &["Dockerfile:2", "../secret"],
    );
    refused(
        &reg,
        "FROM scratch\nCOPY /etc/passwd /p\n",
        &[],
        &["Dockerfile:2", "/etc/passwd"],
    );
}

#[test]
fn a_symlink_resolving_outside_the_context_is_refused() {
    let reg = Distribution::start();
    let ctx = context_with(&[("Dockerfile", "FROM scratch\nCOPY link /x\n")]);
    std::os::unix::fs::symlink("/etc/hostname", ctx.path().join("link")).unwrap();
    let out = regbuild(&[
        "push",
        "-t",
        &format!("{}/bad/image:v1", reg.host),
        ctx.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dockerfile:2") && err.contains("link"),
        "{err}"
    );
}

#[test]
fn unknown_instructions_and_malformed_json_are_refused() {
    let reg = Distribution::start();
    refused_with(
        2,
        &reg,
        "FROM scratch\nFROBNICATE x\n",
        &[],
        &["Dockerfile:2", "FROBNICATE"],
    );
    refused_with(
        2,
        &reg,
        "FROM scratch\nSHELL [\"/bin/sh\", \n",
        &[],
        &["Dockerfile:2", "SHELL"],
    );
}

#[test]
fn a_missing_source_file_is_named() {
    let reg = Distribution::start();
    refused(
        &reg,
        "FROM scratch\nCOPY nothere.txt /x\n",
        &[],
        &["Dockerfile:2", "nothere.txt"],
    );
}

#[test]
fn an_unknown_base_is_named() {
    let reg = Distribution::start();
    let base = format!("{}/no/such-base:v1", reg.host);
    refused(
        &reg,
        &format!("FROM {base}\nCOPY a /a\n"),
        &[("a", "x")],
        &["Dockerfile:1", &base],
    );
}

#[test]
fn an_invalid_tag_is_refused_before_building() {
    let ctx = context_with(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "x")]);
    let out = regbuild(&[
        "push",
        "-t",
        "127.0.0.1:1/Bad Tag:!",
        ctx.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid image reference `127.0.0.1:1/Bad Tag:!`"),
        "{err}"
    );
}

#[test]
fn a_path_missing_from_a_copy_from_stage_names_the_stage() {
    let reg = Distribution::start();
    refused(
        &reg,
        "FROM scratch AS builder\nCOPY f /f\nFROM scratch\nCOPY --from=builder /out/app /app\n",
        &[("f", "x")],
        &["Dockerfile:4", "\"out/app\" not found in stage builder"],
    );
}

/// Ids are 32-bit and 4294967295 means "unchanged" to chown(2): larger ones are refused,
/// naming `file:line`, with exit 2 before any registry is asked (`USER 99999999999` used
/// to run its steps as uid 1215752191, wrapped).
#[test]
fn user_and_group_ids_past_32_bits_exit_2_naming_the_line() {
    let reg = Distribution::start();
    let base = format!("FROM {}/base/busybox:1\n", reg.host);
    for (dockerfile, needles) in [
        (
            format!("{base}USER 99999999999\nRUN id -u\n"),
            [
                "Dockerfile:2",
                "USER 99999999999: uid 99999999999 is out of range",
            ],
        ),
        (
            format!("{base}COPY --chown=1:4294967295 a /a\n"),
            [
                "Dockerfile:2",
                "--chown=1:4294967295: gid 4294967295 is out of range",
            ],
        ),
        (
            format!("{base}RUN --mount=type=cache,target=/c,uid=4294967296 id -u\n"),
            ["Dockerfile:2", "uid 4294967296 is out of range"],
        ),
    ] {
        let mark = reg.access_log().len();
        refused_with(2, &reg, &dockerfile, &[("a", "x")], &needles);
        let asked = reg.access_log_since(mark);
        assert!(
            asked.is_empty(),
            "{dockerfile}: the registry was asked: {asked:#?}"
        );
    }
}

#[test]
fn a_base_that_is_no_reference_and_a_dockerfile_not_in_utf8_exit_2() {
    let reg = Distribution::start();
    refused_with(
        2,
        &reg,
        "FROM ::::bad@@ref\nRUN true\n",
        &[],
        &["Dockerfile:1", "invalid image reference `::::bad@@ref`"],
    );
    // Bytes that are no UTF-8 (a Latin-1 file): the Dockerfile cannot be read as one.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        b"FROM scratch\nCOPY caf\xe9 /\n",
    )
    .unwrap();
    let out = regbuild(&[
        "push",
        "-t",
        &format!("{}/bad/image:v1", reg.host),
        ctx.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("valid UTF-8"), "{}", stderr(&out));
}
