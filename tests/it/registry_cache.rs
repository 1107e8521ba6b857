//! The registry is the cache a fresh CI runner needs: every push here starts with an empty
//! `REGBUILD_CACHE`, as an ephemeral runner does. Builder stages are found in the build
//! cache artifact beside the pushed image (no step runs, nothing is uploaded, no base layer
//! is downloaded), a changed source re-runs only the steps after it and says why, path
//! lists of base layers come from the registry, cache mounts are restored when asked, and
//! the artifacts are never visible as images.

use crate::common::*;
use crate::run_steps::busybox_base;
use serde_json::Value;

const ARTIFACT_TYPE: &str = "application/vnd.regbuild.build-cache.v1+json";

async fn in_blocking(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// `push --json` of `ctx` to `tag` with a new, empty cache directory (a fresh runner).
fn fresh_push(ctx: &std::path::Path, tag: &str, extra: &[&str]) -> Value {
    let cache = tempfile::tempdir().unwrap();
    let (report, _) = push_json_to(ctx, &[tag], extra, Some(cache.path()));
    report
}

fn statuses(report: &Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_string())
        .collect()
}

/// The referrers of `digest` in `repo` through the tag schema (distribution 2.8).
fn tag_schema_referrers(host: &str, repo: &str, digest: &str) -> Vec<Value> {
    let index = raw_manifest(&format!("{host}/{repo}:{}", digest.replace(':', "-")));
    index["manifests"].as_array().cloned().unwrap_or_default()
}

#[test]
fn an_unchanged_multi_stage_build_on_a_fresh_runner_runs_and_uploads_nothing() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let base_layers = layer_digests(&format!("{host}/base/busybox:1"));
    let ctx = context_with(&[(
        "Dockerfile",
        &format!(
            "FROM {host}/base/busybox:1 AS b\n\
             RUN head -c 16 /dev/urandom | od -x > /f\n\
             FROM {host}/base/busybox:1\n\
             COPY --from=b /f /f\n"
        ),
    )]);
    // The default (`min`) stores no builder stage: a fresh runner runs it again.
    let private = format!("{host}/apps/private:1");
    assert_eq!(
        statuses(&fresh_push(ctx.path(), &private, &[])),
        ["executed"]
    );
    assert_eq!(
        statuses(&fresh_push(ctx.path(), &private, &[])),
        ["executed"]
    );

    let tag = format!("{host}/apps/multi:1");
    let max = ["--registry-cache", "max"];
    let first = fresh_push(ctx.path(), &tag, &max);
    assert_eq!(statuses(&first), ["executed"], "{first:#}");

    let mark = reg.access_log().len();
    let second = fresh_push(ctx.path(), &tag, &max);
    let log = reg.access_log_since(mark);
    assert_eq!(statuses(&second), ["cached"], "{second:#}");
    assert_eq!(second["digest"], first["digest"], "the same image");
    assert_eq!(second["bytes_uploaded"], 0, "{second:#}");
    assert_eq!(blob_uploads(&log), 0, "{log:#?}");
    assert_eq!(
        layer_gets(&log, &base_layers),
        0,
        "no base layer downloaded: {log:#?}"
    );
    assert!(manifest_puts(&log).is_empty(), "nothing written: {log:#?}");
    // The builder's layer is in no manifest of the image: only the artifact lists it.
    let image = raw_manifest(&tag);
    assert_eq!(image["layers"].as_array().unwrap().len(), 2, "{image:#}");
    let referrers = tag_schema_referrers(&host, "apps/multi", first["digest"].as_str().unwrap());
    assert_eq!(referrers.len(), 1, "{referrers:#?}");
    assert_eq!(referrers[0]["artifactType"], ARTIFACT_TYPE);
    // No tag but the image's and the referrers tag schema's (distribution 2.8 has no API).
    let list = run(std::process::Command::new("curl")
        .args(["-sf", &format!("http://{host}/v2/apps/multi/tags/list")]));
    let tags: Value = serde_json::from_slice(&list.stdout).unwrap();
    let referrers_tag = first["digest"].as_str().unwrap().replace(':', "-");
    let mut tags: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1", referrers_tag.as_str()]);
}

#[test]
fn a_changed_source_with_cache_from_re_runs_only_the_steps_after_it_and_says_why() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let df = format!(
        "FROM {host}/base/busybox:1 AS b\n\
         RUN head -c 16 /dev/urandom | od -x > /dep\n\
         COPY src.txt /src.txt\n\
         RUN cat /src.txt /dep > /out\n\
         FROM {host}/base/busybox:1\n\
         COPY --from=b /out /out\n"
    );
    let v1 = context_with(&[("Dockerfile", &df), ("src.txt", "one\n")]);
    let v2 = context_with(&[("Dockerfile", &df), ("src.txt", "two\n")]);
    let first = fresh_push(
        v1.path(),
        &format!("{host}/apps/app:1"),
        &["--registry-cache", "max"],
    );
    assert_eq!(statuses(&first), ["executed", "executed"], "{first:#}");
    let cache_from = format!("{host}/apps/app:1");
    let second = fresh_push(
        v2.path(),
        &format!("{host}/apps/app:2"),
        &["--cache-from", &cache_from, "--registry-cache", "max"],
    );
    assert_eq!(statuses(&second), ["cached", "executed"], "{second:#}");
    let why = second["steps"][1]["miss"].as_str().unwrap_or_default();
    assert!(why.contains("layers below it changed"), "{second:#}");
    assert!(
        second["steps"][0].get("miss").is_none(),
        "a hit has no miss: {second:#}"
    );
    let out = |tag: &str| {
        let (_keep, bundle) = pull_and_unpack(&format!("{host}/apps/app:{tag}"), &[]);
        read(&bundle.join("rootfs"), "out")
    };
    let (one, two) = (out("1"), out("2"));
    assert!(
        one.starts_with("one\n") && two.starts_with("two\n"),
        "{one:?} {two:?}"
    );
    let dep = |out: &str| out.lines().skip(1).map(str::to_string).collect::<Vec<_>>();
    assert!(!dep(&one).is_empty(), "{one:?}");
    assert_eq!(dep(&one), dep(&two), "the builder's first step was reused");
}

#[test]
fn a_fresh_runner_reads_base_path_lists_from_the_registry() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let base_layers = layer_digests(&format!("{host}/base/busybox:1"));
    let tag = format!("{host}/apps/workdir:1");
    let v1 = context_with(&[
        (
            "Dockerfile",
            &format!("FROM {host}/base/busybox:1\nWORKDIR /app\nCOPY a.txt .\n"),
        ),
        ("a.txt", "a\n"),
    ]);
    let mark = reg.access_log().len();
    fresh_push(v1.path(), &tag, &[]);
    let first = reg.access_log_since(mark);
    assert!(
        layer_gets(&first, &base_layers) >= 1,
        "the first runner lists the base: {first:#?}"
    );

    // Another runner, another Dockerfile: only the path list is the same.
    let v2 = context_with(&[
        (
            "Dockerfile",
            &format!("FROM {host}/base/busybox:1\nWORKDIR /srv/data\nCOPY b.txt .\nUSER app\n"),
        ),
        ("b.txt", "b\n"),
    ]);
    let mark = reg.access_log().len();
    fresh_push(v2.path(), &tag, &[]);
    let second = reg.access_log_since(mark);
    assert_eq!(
        layer_gets(&second, &base_layers),
        0,
        "no base layer downloaded: {second:#?}"
    );
    let (_keep, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(read(&bundle.join("rootfs"), "srv/data/b.txt"), "b\n");
    assert_eq!(skopeo_config(&tag)["config"]["User"], "app");
}

#[test]
fn a_cache_mount_is_restored_on_a_fresh_runner_only_when_asked() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let ctx = context_with(&[(
        "Dockerfile",
        &format!(
            "FROM {host}/base/busybox:1\n\
             ARG N\n\
             RUN --mount=type=cache,target=/cache,id=seen \
               cat /cache/seen > /prev 2>/dev/null; echo run-$N >> /cache/seen\n"
        ),
    )]);
    let prev = |n: &str, extra: &[&str]| {
        let tag = format!("{host}/apps/mount:{n}");
        let mut args = vec!["--build-arg".to_string(), format!("N={n}")];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let report = fresh_push(ctx.path(), &tag, &args);
        assert_eq!(statuses(&report), ["executed"], "{report:#}");
        let (_keep, bundle) = pull_and_unpack(&tag, &[]);
        read(&bundle.join("rootfs"), "prev")
    };
    assert_eq!(prev("1", &["--cache-mounts", "registry"]), "");
    let cache_from = format!("{host}/apps/mount:1");
    assert_eq!(
        prev(
            "2",
            &["--cache-mounts", "registry", "--cache-from", &cache_from]
        ),
        "run-1\n",
        "the file the first runner wrote is seen"
    );
    // The default keeps cache mounts on the machine: a fresh runner starts empty.
    let cache_from = format!("{host}/apps/mount:2");
    assert_eq!(prev("3", &["--cache-from", &cache_from]), "");
    // Over the bound: kept local, said.
    let tag = format!("{host}/apps/mount:4");
    let cache = tempfile::tempdir().unwrap();
    let (_, err) = push_json_to(
        ctx.path(),
        &[&tag],
        &[
            "--build-arg",
            "N=4",
            "--cache-mounts",
            "registry",
            "--cache-mounts-max",
            "3",
        ],
        Some(cache.path()),
    );
    assert!(err.contains("over --cache-mounts-max"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_artifact_is_a_referrer_never_a_tag_and_promote_leaves_it_unless_asked() {
    use testregistry::{Config, TestRegistry};
    let reg = TestRegistry::start(Config::default()).await.unwrap();
    let host = reg.host();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch AS b\nCOPY a.txt /a\nFROM scratch\nCOPY --from=b /a /a\nUSER 1\n",
        ),
        ("a.txt", "a\n"),
    ]);
    let tag = format!("{host}/apps/art:1");
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = regbuild(&["push", "--json", "--registry-cache", "max", "-t", &tag]);
    cmd.arg(ctx.path()).env("REGBUILD_CACHE", cache.path());
    let out = in_blocking(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = json(&out)["digest"].as_str().unwrap().to_string();
    assert_eq!(
        reg.tags("apps/art"),
        ["1"],
        "the referrers API holds it: no extra tag"
    );
    let referrers = |repo: &str| {
        let url = format!("http://{host}/v2/{repo}/referrers/{digest}");
        let out = run(std::process::Command::new("curl").args(["-sf", &url]));
        let index: Value = serde_json::from_slice(&out.stdout).unwrap();
        index["manifests"].as_array().cloned().unwrap_or_default()
    };
    let listed = tokio::task::block_in_place(|| referrers("apps/art"));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["artifactType"], ARTIFACT_TYPE);

    for (dst, extra) in [
        ("prod/plain", None),
        ("prod/with", Some("--with-build-cache")),
    ] {
        let mut cmd = regbuild(&["promote", &tag, &format!("{host}/{dst}:1")]);
        if let Some(flag) = extra {
            cmd.arg(flag);
        }
        let out = in_blocking(cmd).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let listed = tokio::task::block_in_place(|| referrers(dst));
        assert_eq!(
            listed.len(),
            usize::from(extra.is_some()),
            "{dst}: {listed:?}"
        );
    }
}

#[test]
fn rootless_a_cache_mount_is_restored_on_a_fresh_runner() {
    use crate::run_steps::{as_rootless, rootless_home, rootless_user, ROOTLESS_USER};
    if !needs_root("to create the unprivileged user") {
        return;
    }
    rootless_user();
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let runner = |n: &str, extra: &[&str]| {
        // Each push on a runner of its own: an empty home, cache and temporary directory.
        let home = tempfile::tempdir().unwrap();
        let ctx = home.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!(
                "FROM {host}/base/busybox:1\nARG N\n\
                 RUN --mount=type=cache,target=/cache,id=seen \
                   cat /cache/seen > /prev 2>/dev/null; echo run-$N >> /cache/seen\n"
            ),
        )
        .unwrap();
        rootless_home(home.path());
        let tag = format!("{host}/apps/rootless-mount:{n}");
        let arg = format!("N={n}");
        let ctx_arg = ctx.display().to_string();
        let mut args = vec!["push", "--cache-mounts", "registry", "--build-arg", &arg];
        args.extend_from_slice(extra);
        args.extend(["-t", tag.as_str(), ctx_arg.as_str()]);
        let out = as_rootless(home.path(), &args);
        (out, tag)
    };
    let (out, _) = runner("1", &[]);
    if no_user_namespace(&out, ROOTLESS_USER) {
        return;
    }
    assert!(out.status.success(), "{}", stderr(&out));
    let from = format!("{host}/apps/rootless-mount:1");
    let (out, tag) = runner("2", &["--cache-from", &from]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_keep, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(read(&bundle.join("rootfs"), "prev"), "run-1\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_refuses_the_artifact_still_gets_the_image() {
    use testregistry::{Config, FaultAction, FaultRule, TestRegistry};
    let reg = TestRegistry::start(Config::default()).await.unwrap();
    // Manifests put by digest are refused: here only the build cache artifact is.
    reg.add_fault(FaultRule::new(
        "PUT",
        "/manifests/sha256:",
        FaultAction::status(400),
    ));
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch AS b\nCOPY a.txt /a\nFROM scratch\nCOPY --from=b /a /a\nUSER 1\n",
        ),
        ("a.txt", "a\n"),
    ]);
    let tag = format!("{}/apps/refused:1", reg.host());
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = regbuild(&["push", "--registry-cache", "max", "-t", &tag]);
    cmd.arg(ctx.path()).env("REGBUILD_CACHE", cache.path());
    let out = in_blocking(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused a referrer the image does not need"),
        "{}",
        stderr(&out)
    );
    assert!(reg.manifest("apps/refused", "1").is_some());
}
