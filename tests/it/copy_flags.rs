//! COPY and ADD flags and sources as BuildKit reads them, end to end on the real registry:
//! absolute sources (the context's root), `--exclude`, `--parents`, `RUN --mount` without a
//! target, and file capabilities kept by `COPY --from`. Each Dockerfile is pushed, pulled
//! back with skopeo and unpacked with umoci (or its layer's tar headers read).

use std::path::Path;

use crate::common::*;
use crate::run_steps::push_dockerfile;

/// Pushes `dockerfile` with `files` as its context (it must succeed); returns the unpacked
/// image's root filesystem, with the directory that keeps it.
fn pushed(
    tag: &str,
    dockerfile: &str,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, std::path::PathBuf) {
    let out = push_dockerfile(tag, dockerfile, files, &["--no-progress"], None);
    assert!(
        out.status.success(),
        "regbuild failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let (keep, bundle) = pull_and_unpack(tag, &[]);
    (keep, bundle.join("rootfs"))
}

fn read(root: &Path, path: &str) -> String {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn absolute_sources_are_read_from_the_context_root() {
    let reg = Distribution::start();
    let tag = format!("{}/flags/absolute:1", reg.host);
    let df = "FROM scratch\n\
              COPY /a.txt /dst/\n\
              COPY /../d/b.txt /up/\n\
              COPY /d /e/\n";
    let (_keep, root) = pushed(&tag, df, &[("a.txt", "a\n"), ("d/b.txt", "b\n")]);
    assert_eq!(read(&root, "/dst/a.txt"), "a\n");
    assert_eq!(
        read(&root, "/up/b.txt"),
        "b\n",
        "`..` stops at the context's root"
    );
    assert_eq!(read(&root, "/e/b.txt"), "b\n");
}

#[test]
fn a_mount_without_target_is_at_the_workdir() {
    if !needs_root("RUN steps in the sandbox") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    crate::run_steps::busybox_base(&host, "base/busybox");
    let tag = format!("{host}/flags/mount-target:1");
    // As docker/compose's Dockerfile mounts its `binary` stage.
    let df = format!(
        "FROM scratch AS binary\n\
         COPY tool.txt /tool.txt\n\
         FROM {host}/base/busybox:1\n\
         WORKDIR /mnt/bin\n\
         RUN --mount=from=binary cat /mnt/bin/tool.txt > /out.txt && pwd >> /out.txt\n"
    );
    let (_keep, root) = pushed(&tag, &df, &[("tool.txt", "from the stage\n")]);
    assert_eq!(read(&root, "/out.txt"), "from the stage\n/mnt/bin\n");
    assert!(
        !root.join("mnt/bin/tool.txt").exists(),
        "a bind mount leaves nothing in the layer"
    );

    // At the WORKDIR `/`, BuildKit refuses it ("invalid mount target"): so does regbuild.
    let df = format!(
        "FROM scratch AS binary\n\
         COPY tool.txt /tool.txt\n\
         FROM {host}/base/busybox:1\n\
         RUN --mount=from=binary true\n"
    );
    let tag = format!("{host}/flags/mount-root:1");
    let out = push_dockerfile(&tag, &df, &[("tool.txt", "x\n")], &["--no-progress"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("(none given: the WORKDIR /): cannot mount over /"),
        "{}",
        stderr(&out)
    );
}
