//! What a newcomer sees: `-v` tells regbuild's own decisions (without colour codes when
//! stderr is not a terminal), `push --help` groups its options and marks the tag required,
//! platforms outside the OCI values are refused before anything is written, and warnings
//! (broken JSON, root, stripped setuid) come before the result line and before the plan.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use crate::common::*;
use testregistry::{Config, TestRegistry};

async fn in_blocking(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// `regbuild ARGS 2>&1`: stdout and stderr in the order they were written.
async fn interleaved(args: Vec<String>) -> (bool, String) {
    let exe = env!("CARGO_BIN_EXE_regbuild");
    let mut line = format!("'{exe}'");
    for a in &args {
        line.push_str(&format!(" '{a}'"));
    }
    line.push_str(" 2>&1");
    let mut sh = Command::new("sh");
    sh.args(["-c", &line])
        .env("REGBUILD_CACHE", module_cache(file!()))
        .env("DOCKER_CONFIG", tempfile::tempdir().unwrap().keep());
    let out = in_blocking(sh).await;
    (out.status.success(), stdout(&out))
}

#[tokio::test(flavor = "multi_thread")]
async fn verbose_tells_each_decision_without_colour_codes() {
    let reg = TestRegistry::start(Config::default()).await.unwrap();
    let ctx = context_with(&[
        ("Dockerfile", "FROM scratch\nCOPY f /f\nUSER 1\n"),
        ("f", "data"),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let tag = format!("{}/app:1", reg.host());
    let run = || {
        let mut c = regbuild(&["push", "-v", "--no-progress", "-t", &tag]);
        c.arg(ctx.path()).env("REGBUILD_CACHE", cache.path());
        c
    };
    let first = in_blocking(run()).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let err = stderr(&first);
    assert!(err.contains("layer cache miss"), "{err}");
    assert!(
        err.contains(&format!("{}/app: upload", reg.host())),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no colour codes when piped: {err:?}"
    );

    let second = in_blocking(run()).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(err.contains("layer cache hit (local)"), "{err}");
    assert!(
        err.contains(&format!("{}/app: exists", reg.host())),
        "{err}"
    );

    // Without -v: none of it.
    let mut quiet = regbuild(&["push", "--no-progress", "-t", &tag]);
    quiet.arg(ctx.path()).env("REGBUILD_CACHE", cache.path());
    let quiet = in_blocking(quiet).await;
    assert!(
        !stderr(&quiet).contains("layer cache"),
        "{}",
        stderr(&quiet)
    );
}

#[test]
fn push_help_groups_its_options_and_marks_the_tag_required() {
    let out = regbuild(&["push", "--help"]).output().unwrap();
    let help = stdout(&out);
    let global = help
        .find("Global options:")
        .expect("a Global options heading");
    let jobs = help.find("--jobs").unwrap();
    let squash = help.find("--squash").unwrap();
    assert!(jobs > global, "global options under their heading:\n{help}");
    assert!(squash < global, "push's own options first:\n{help}");
    for heading in ["Build:", "Output:", "Cache and upload:"] {
        assert!(help.contains(heading), "{heading} in:\n{help}");
    }
    let tag_line = help.lines().find(|l| l.contains("--tag")).unwrap();
    assert!(tag_line.contains("Required"), "{tag_line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_outside_the_oci_values_is_refused_before_anything_is_written() {
    let reg = TestRegistry::start(Config::default()).await.unwrap();
    let ctx = context_with(&[
        ("Dockerfile", "FROM scratch\nCOPY f /f\nUSER 1\n"),
        ("f", "x"),
    ]);
    let mut cmd = regbuild(&[
        "push",
        "--no-progress",
        "--platform",
        "linux/bogus",
        "-t",
        &format!("{}/app:1", reg.host()),
    ]);
    cmd.arg(ctx.path());
    let out = in_blocking(cmd).await;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("unknown architecture `bogus`"), "{err}");
    assert!(err.contains("arm64"), "the valid values are listed: {err}");
    assert!(
        reg.requests().is_empty(),
        "nothing sent: {:?}",
        reg.requests()
    );

    let from = format!("FROM --platform=linux/nope {}/base:1\n", reg.host());
    let dockerfile = context_with(&[("Dockerfile", &from)]);
    let mut cmd = regbuild(&[
        "push",
        "--no-progress",
        "-t",
        &format!("{}/app:2", reg.host()),
    ]);
    cmd.arg(dockerfile.path());
    let out = in_blocking(cmd).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Dockerfile:1") && err.contains("nope"),
        "{err}"
    );
    assert!(reg.requests().is_empty(), "the base is not even looked up");

    let out = regbuild(&["inspect", "--platform", "linux/bogus", "127.0.0.1:1/x:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown architecture"));
}

/// `push --no-progress EXTRA -t REG/app:1 CTX`.
fn quiet_push(reg: &TestRegistry, ctx: &tempfile::TempDir, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["push".to_string(), "--no-progress".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["-t".into(), format!("{}/app:1", reg.host())]);
    args.push(ctx.path().display().to_string());
    args
}

fn warning_context() -> tempfile::TempDir {
    // Runs as root, a broken exec form, a setuid file: three warnings.
    let ctx = context_with(&[
        ("Dockerfile", "FROM scratch\nCOPY su /su\nCMD [\"/su\"\n"),
        ("su", "#!/x\n"),
    ]);
    std::fs::set_permissions(
        ctx.path().join("su"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    ctx
}

#[tokio::test(flavor = "multi_thread")]
async fn warnings_come_before_the_result_line() {
    let reg = TestRegistry::start(Config::default()).await.unwrap();
    let ctx = warning_context();
    let (ok, text) = interleaved(quiet_push(&reg, &ctx, &[])).await;
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let result = lines
        .iter()
        .position(|l| l.contains("@sha256:"))
        .expect("a result line");
    assert_eq!(result, lines.len() - 1, "the result is last:\n{text}");
    for needle in [
        "Dockerfile:3: CMD [\"/su\" is not valid JSON",
        "runs as root",
        "stripped setuid/setgid bits from /su",
        // Where the default differs from docker build, the flag that restores it is named.
        "where docker build (BuildKit) keeps them: pass --keep-setuid",
    ] {
        let at = lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no warning {needle:?} in:\n{text}"));
        assert!(at < result, "{needle:?} before the result:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_says_its_warnings_before_the_plan_and_sizes_for_humans() {
    let reg = TestRegistry::start(Config::default()).await.unwrap();
    let ctx = warning_context();
    std::fs::write(ctx.path().join("big"), vec![7u8; 300_000]).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY su /su\nCOPY big /big\nCMD [\"/su\"\n",
    )
    .unwrap();
    let (ok, text) = interleaved(quiet_push(&reg, &ctx, &["--dry-run"])).await;
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let first_blob = lines
        .iter()
        .position(|l| l.starts_with("blob "))
        .expect("a plan");
    let last_warning = lines
        .iter()
        .rposition(|l| l.starts_with("warning:"))
        .expect("warnings");
    assert!(last_warning < first_blob, "warnings first:\n{text}");
    let plan: Vec<&&str> = lines.iter().filter(|l| l.starts_with("blob ")).collect();
    assert!(
        plan.iter()
            .all(|l| l.contains(" B ") || l.contains(" KiB ") || l.contains(" MiB ")),
        "sizes with units, as the progress shows them:\n{text}"
    );
    assert!(reg
        .requests()
        .iter()
        .all(|r| r.method == "GET" || r.method == "HEAD"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_elf_binary_for_another_architecture_is_warned_about() {
    let reg = TestRegistry::start(Config::default()).await.unwrap();
    let ctx = context_with(&[("Dockerfile", "FROM scratch\nCOPY tool /tool\nUSER 1\n")]);
    // This test program: an ELF file for the machine the tests run on.
    std::fs::copy(std::env::current_exe().unwrap(), ctx.path().join("tool")).unwrap();
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let push = |platform: &str| {
        let mut c = regbuild(&[
            "push",
            "--no-progress",
            "--dry-run",
            "--platform",
            &format!("linux/{platform}"),
            "-t",
            &format!("{}/app:1", reg.host()),
        ]);
        c.arg(ctx.path());
        c
    };
    let out = in_blocking(push(other)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "Dockerfile:2: /tool is an ELF file for {host}, but the image is built for {other}"
        )),
        "{err}"
    );
    let out = in_blocking(push(host)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("ELF"), "{}", stderr(&out));
}
