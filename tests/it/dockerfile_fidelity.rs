//! Real Dockerfiles build right (issue 21): patterns of public Dockerfiles that once failed
//! or gave a wrong image, each built against the real registry and read back.

use crate::common::*;
use crate::run_steps::busybox_base;
use std::path::{Path, PathBuf};

#[test]
fn steps_that_change_nothing_give_identical_layers_and_the_next_step_still_runs() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    // The first two steps write nothing: two layers with one diff_id below the third step,
    // which overlayfs refused as a lower directory given twice (ELOOP).
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN cat /etc/motd\n\
         RUN ls /\n\
         RUN echo done > /done\n"
    );
    let tag = format!("{host}/fidelity/empty-layers:1");
    let (_keep, rootfs) = crate::run_steps::pushed_rootfs(&tag, &df);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("done")).unwrap(),
        "done\n"
    );
}

#[test]
fn copy_from_a_stage_takes_a_hard_link_whose_content_another_name_carries() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    // Build tools hard-link what they make (cargo: `target/release/app` and its `deps/`
    // twin). In the layer, the content goes with the name that sorts first (`out/a`); the
    // other (`out/b`) is a link to it, and only the link is asked for.
    let df = format!(
        "FROM {host}/base/busybox:1 AS build\n\
         RUN mkdir -p /out && echo built > /out/a && ln /out/a /out/b\n\
         FROM {host}/base/busybox:1\n\
         COPY --from=build /out/b /usr/local/bin/app\n"
    );
    let tag = format!("{host}/fidelity/hard-link:1");
    let (_keep, rootfs) = crate::run_steps::pushed_rootfs(&tag, &df);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("usr/local/bin/app")).unwrap(),
        "built\n"
    );
    assert!(
        !rootfs.join("out").exists(),
        "only what COPY asked for is in the image"
    );
}

/// Pushes `df` with `files` in the context (it must succeed) and unpacks the image.
fn pushed_with(tag: &str, df: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let out = crate::run_steps::push_dockerfile(tag, df, files, &[], None);
    assert!(out.status.success(), "push failed: {}", stderr(&out));
    let (keep, bundle) = pull_and_unpack(tag, &[]);
    (keep, bundle.join("rootfs"))
}

#[test]
fn copy_of_a_file_to_an_existing_directory_without_a_slash_goes_into_it() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let files = [("a.txt", "a\n")];
    // A stage that runs nothing: the base's /etc is known from its path list.
    let df = format!("FROM {host}/base/busybox:1\nCOPY a.txt /etc\n");
    let (_keep, rootfs) = pushed_with(&format!("{host}/fidelity/into-base-dir:1"), &df, &files);
    assert!(rootfs.join("etc").is_dir(), "/etc is still a directory");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/a.txt")).unwrap(),
        "a\n"
    );
    assert!(
        rootfs.join("etc/passwd").is_file(),
        "and keeps the base's files"
    );
    // A directory an earlier RUN made; the next RUN still finds it a directory.
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN mkdir /opt && mkdir /opt/tools\n\
         COPY a.txt /opt/tools\n\
         RUN test -f /opt/tools/a.txt && echo ok > /checked\n"
    );
    let (_keep, rootfs) = pushed_with(&format!("{host}/fidelity/into-run-dir:1"), &df, &files);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("opt/tools/a.txt")).unwrap(),
        "a\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("checked")).unwrap(),
        "ok\n"
    );
    // A name that is no directory is still the file's new name.
    let df = format!("FROM {host}/base/busybox:1\nCOPY a.txt /etc/renamed\n");
    let (_keep, rootfs) = pushed_with(&format!("{host}/fidelity/renamed:1"), &df, &files);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/renamed")).unwrap(),
        "a\n"
    );
}

#[test]
fn an_unchanged_build_has_one_digest_whatever_the_local_cache_holds() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    // The COPY's layer once had `app/` or not, as the WORKDIR layer of the first stage came
    // from the local cache or (by key) from the registry.
    let df = format!(
        "FROM {host}/base/busybox:1 AS base\n\
         WORKDIR /app\n\
         FROM base\n\
         COPY a .\n"
    );
    let files = [("a", "a\n")];
    let tag = format!("{host}/fidelity/reproducible:1");
    let mut digests = Vec::new();
    let warm = tempfile::tempdir().unwrap();
    for cache in ["empty", "warm", "warm", "empty"] {
        let empty = tempfile::tempdir().unwrap();
        let dir = if cache == "warm" {
            warm.path()
        } else {
            empty.path()
        };
        let out = crate::run_steps::push_dockerfile(&tag, &df, &files, &[], Some(dir));
        assert!(out.status.success(), "push failed: {}", stderr(&out));
        digests.push(skopeo_digest(&tag, &[]));
    }
    assert!(
        digests.iter().all(|d| *d == digests[0]),
        "one digest for one input: {digests:?}"
    );
}

#[test]
fn copy_through_a_directory_symlink_a_run_made_keeps_the_link() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    // The link's target is the base's, which the RUN does not touch.
    crate::run_steps::busybox_base_with(&host, "base/busybox-data", |root| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(root.join("srv/data")).unwrap();
        std::fs::set_permissions(
            root.join("srv/data"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
    });
    let df = format!(
        "FROM {host}/base/busybox-data:1\n\
         RUN ln -s /srv/data /etc/x\n\
         COPY file.txt /etc/x/\n"
    );
    let files = [("file.txt", "through\n")];
    let (_keep, rootfs) = pushed_with(&format!("{host}/fidelity/through-link:1"), &df, &files);
    let link = std::fs::read_link(rootfs.join("etc/x")).expect("/etc/x is still a symlink");
    assert_eq!(link, Path::new("/srv/data"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("srv/data/file.txt")).unwrap(),
        "through\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(rootfs.join("srv/data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o700, "the link's target keeps its mode");
}

#[test]
fn a_dry_run_executes_no_step_and_says_which_would_run() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let df = format!(
        "FROM {host}/base/busybox:1 AS build\n\
         RUN echo built > /out\n\
         FROM {host}/base/busybox:1\n\
         COPY --from=build /out /out\n\
         RUN cat /out > /copied\n"
    );
    let tag = format!("{host}/fidelity/dry-run:1");
    let cache = tempfile::tempdir().unwrap();
    let push = |extra: &[&str]| {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let out = crate::run_steps::push_dockerfile(&tag, &df, &[], &args, Some(cache.path()));
        assert!(out.status.success(), "push failed: {}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let mark = reg.access_log().len();
    let dry = push(&["--dry-run"]);
    assert_eq!(dry["complete"], false, "{dry}");
    let steps = dry["steps"].as_array().unwrap();
    assert_eq!(
        steps.len(),
        1,
        "the builder's step, and nothing after it: {dry}"
    );
    assert_eq!(steps[0]["status"], "would run");
    assert_eq!(steps[0]["line"], 2);
    assert_eq!(dry["not_planned"], serde_json::json!(["stage-1"]));
    let log = reg.access_log_since(mark);
    assert!(
        !log.iter().any(|a| a.method != "GET" && a.method != "HEAD"),
        "a dry run writes nothing: {log:?}"
    );
    // It ran nothing, so it cached nothing: the real build executes both steps.
    let real = push(&[]);
    let statuses: Vec<&str> = real["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["executed", "executed"], "{real}");
    // Once every step is cached, a dry run plans the whole push again.
    let mark = reg.access_log().len();
    let out = crate::run_steps::push_dockerfile(&tag, &df, &[], &["--dry-run"], Some(cache.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("manifest"),
        "the plan: {}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("would run"), "{}", stdout(&out));
    let log = reg.access_log_since(mark);
    assert!(
        log.iter().all(|a| a.method == "GET" || a.method == "HEAD"),
        "{log:?}"
    );
}

#[test]
fn a_missing_or_escaping_context_source_fails_before_any_step_runs() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    for (source, says) in [
        (
            "missing.txt",
            "COPY source \"missing.txt\" not found in the build context",
        ),
        (
            "../outside",
            "COPY source \"../outside\" is outside the build context",
        ),
    ] {
        let df = format!(
            "FROM {host}/base/busybox:1\n\
             RUN echo the-step-ran\n\
             COPY {source} /x\n"
        );
        let out = crate::run_steps::push_dockerfile(
            &format!("{host}/fidelity/preflight:1"),
            &df,
            &[],
            &[],
            None,
        );
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(err.contains(&format!("Dockerfile:3: {says}")), "{err}");
        assert!(!err.contains("the-step-ran"), "the RUN ran first: {err}");
    }
}
