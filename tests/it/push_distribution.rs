//! `regbuild push` end to end against the real distribution registry: build Dockerfile.test,
//! pull the result back with skopeo, unpack it with umoci, run the program under chroot.

use std::process::Command;

use crate::common::*;

fn push_hello(host: &str, tags: &[&str], extra: &[&str]) -> std::process::Output {
    let ctx = hello_context();
    let dockerfile = repo_root().join("Dockerfile.test");
    let mut args = vec![
        "push".to_string(),
        "-f".into(),
        dockerfile.display().to_string(),
    ];
    for t in tags {
        args.push("-t".into());
        args.push(format!("{host}/{t}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(ctx.path().display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&mut regbuild(&argv))
}

#[test]
fn dockerfile_test_builds_pushes_and_runs_under_chroot() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let out = push_hello(&host, &["apps/hello:1.0"], &[]);
    let last = stdout(&out).lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with(&format!("{host}/apps/hello@sha256:")),
        "{last}"
    );
    let digest = last.rsplit('@').next().unwrap().to_string();
    assert_eq!(
        skopeo_digest(&format!("{host}/apps/hello:1.0"), &[]),
        digest
    );

    let config = skopeo_config(&format!("{host}/apps/hello:1.0"));
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/app/bin/hello"]));
    assert_eq!(
        c["Cmd"],
        serde_json::json!(["--config", "/etc/hello/hello.conf"])
    );
    assert_eq!(c["User"], "65534:65534");
    assert_eq!(c["WorkingDir"], "/app");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{c}");
    assert_eq!(c["Labels"]["org.opencontainers.image.version"], "1.0.0");
    assert_eq!(c["StopSignal"], "SIGTERM");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"GREETING=hello from regbuild"), "{env:?}");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    // WORKDIR /app makes its directory (a layer, as BuildKit), then the two COPYs.
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);

    let (_keep, bundle) = pull_and_unpack(&format!("{host}/apps/hello:1.0"), &[]);
    let rootfs = bundle.join("rootfs");
    let mode = std::fs::metadata(rootfs.join("app/bin/hello")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o7777, 0o755);
    let run_out = run(Command::new("/usr/sbin/chroot")
        .arg("--userspec=65534:65534")
        .arg(&rootfs)
        .args(["/app/bin/hello", "--config", "/etc/hello/hello.conf"])
        .env_clear()
        .env("GREETING", "hello from regbuild"));
    let text = stdout(&run_out);
    assert!(text.contains("hello from regbuild"), "{text}");
    assert!(text.contains("mode = \"production\""), "{text}");
    assert!(text.contains("uid=65534"), "{text}");
    // Written by the RUN step of the builder stage, copied into the image.
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/hello/BUILD-INFO")).unwrap(),
        "regbuild-hello 1.0.0, written by a RUN step\n"
    );
    assert!(
        !rootfs.join("bin/busybox").exists(),
        "the builder's shell stays in its stage"
    );
}

#[test]
fn a_second_push_of_the_same_context_uploads_nothing_and_gives_the_same_digest() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let ctx = hello_context();
    let dockerfile = repo_root().join("Dockerfile.test");
    let push = |tag: &str| {
        let out = run(&mut regbuild(&[
            "push",
            "--json",
            "-f",
            dockerfile.to_str().unwrap(),
            "-t",
            &format!("{host}/apps/hello:{tag}"),
            ctx.path().to_str().unwrap(),
        ]));
        json(&out)
    };
    let first = push("a");
    assert!(first["bytes_uploaded"].as_u64().unwrap() > 0);
    // Touching every input changes no byte of any layer.
    run(Command::new("touch")
        .arg(ctx.path().join("hello"))
        .arg(ctx.path().join("config/hello.conf")));
    let mark = reg.access_log().len();
    let second = push("b");
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(second["bytes_uploaded"], 0);
    assert!(second["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["action"] == "exists"));
    let log = reg.access_log_since(mark);
    assert!(
        log.iter().all(|a| a.method == "HEAD"
            || a.method == "GET"
            || (a.method == "PUT" && a.uri.contains("/manifests/"))),
        "only HEADs and the manifest PUT: {log:#?}"
    );
}

#[test]
fn every_tag_gets_the_same_digest_and_json_has_the_report_shape() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let out = push_hello(
        &host,
        &["apps/hello:1.0", "apps/hello:latest", "mirror/hello:1.0"],
        &["--json"],
    );
    let report = json(&out);
    let digest = report["digest"].as_str().unwrap().to_string();
    for r in ["apps/hello:1.0", "apps/hello:latest", "mirror/hello:1.0"] {
        assert_eq!(skopeo_digest(&format!("{host}/{r}"), &[]), digest, "{r}");
    }
    let refs: Vec<&str> = report["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), 3, "{refs:?}");
    for b in report["blobs"].as_array().unwrap() {
        assert!(b["digest"].as_str().unwrap().starts_with("sha256:"));
        assert!(b["size"].as_u64().is_some());
        assert!(["exists", "mounted", "uploaded"].contains(&b["action"].as_str().unwrap()));
    }
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    // The layer cache warmed by a build (pushed elsewhere), as a dry run after a build finds
    // it: a cold one stops at the RUN step, which a dry run does not execute. Not left to
    // another test of the module having built first.
    let warm = Distribution::start();
    push_hello(&warm.host, &["apps/hello:warm"], &[]);
    let reg = Distribution::start();
    let host = reg.host.clone();
    let mark = reg.access_log().len();
    let out = push_hello(&host, &["apps/hello:dry"], &["--dry-run"]);
    let text = stdout(&out);
    assert!(text.contains("upload"), "{text}");
    assert!(text.contains("manifest"), "{text}");
    let log = reg.access_log_since(mark);
    assert!(
        log.iter().all(|a| a.method == "GET" || a.method == "HEAD"),
        "no POST/PUT/PATCH: {log:#?}"
    );
    assert!(!log
        .iter()
        .any(|a| a.method == "GET" && a.uri.contains("/blobs/")));
}

#[test]
fn a_base_pushed_by_skopeo_is_mounted_never_downloaded() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    // The base: three layers by umoci, pushed by skopeo into another repository.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci_image(
        &layout,
        "base",
        &[
            ("/etc/os-release", b"ID=umoci-base\n".to_vec()),
            ("/usr/share/data.bin", vec![3u8; 300_000]),
            ("/etc/motd", b"base motd\n".to_vec()),
        ],
        None,
    );
    skopeo_copy(
        &format!("oci:{}:base", layout.display()),
        &format!("docker://{host}/library/base:1"),
        &[],
    );
    let base_digest = skopeo_digest(&format!("{host}/library/base:1"), &[]);
    let ctx = context_with(&[
        (
            "Dockerfile",
            &format!("FROM {host}/library/base:1\nCOPY app.txt /srv/\nCMD [\"/bin/true\"]\n"),
        ),
        ("app.txt", "the app\n"),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let push = || {
        let mark = reg.access_log().len();
        let out = run(regbuild(&[
            "push",
            "--json",
            "-t",
            &format!("{host}/team/app:1"),
            ctx.path().to_str().unwrap(),
        ])
        .env("REGBUILD_CACHE", cache.path()));
        (json(&out), reg.access_log_since(mark))
    };
    let (report, log) = push();
    let base_blob_gets = |log: &[Access]| -> usize {
        log.iter()
            .filter(|a| a.method == "GET" && a.uri.starts_with("/v2/library/base/blobs/"))
            .count()
    };
    // Only the base's config is read (to inherit its settings): a COPY into /srv/ cannot
    // depend on the base's paths, so no layer is downloaded (a COPY into / or /bin, or to
    // /srv/app.txt, which could be a directory of the base, lists them once: see
    // push_features).
    assert_eq!(base_blob_gets(&log), 1, "{log:#?}");
    let (_, again) = push();
    assert_eq!(base_blob_gets(&again), 1, "{again:#?}");
    let mounts = log
        .iter()
        .filter(|a| {
            a.method == "POST"
                && a.uri.contains("mount=")
                && a.uri.contains("from=library%2Fbase")
                && a.status == 201
        })
        .count();
    assert_eq!(mounts, 3, "every base layer mounted: {log:#?}");
    let mounted = report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["action"] == "mounted")
        .count();
    assert_eq!(mounted, 3);
    // The manifest names its base.
    let manifest = raw_manifest(&format!("{host}/team/app:1"));
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        format!("{host}/library/base:1")
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        base_digest.as_str()
    );
    // Base files and the app's file are both there.
    let (_keep, bundle) = pull_and_unpack(&format!("{host}/team/app:1"), &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/motd")).unwrap(),
        "base motd\n"
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/srv/app.txt")).unwrap(),
        "the app\n"
    );
}
