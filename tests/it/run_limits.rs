//! What a RUN step may leave in its layer: every layer regbuild pushes, it can unpack again
//! for a later step, so a file over the per-file limit of its layer reader fails the step
//! that made it (naming the file) instead of pushing a layer regbuild would then refuse.
//! The limit is 64 GiB; `--max-layer-file-size` (hidden, for tests) lowers it, so a sparse
//! file of a few MiB stands for `truncate -s 100G`.

use std::path::Path;

use crate::common::*;
use crate::run_steps::{busybox_base, push_dockerfile};

/// Every file under `dir` named `name`.
fn files_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(e.path());
            } else if e.file_name() == name {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn a_step_leaving_a_file_over_the_limit_fails_at_that_step_and_tags_nothing() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let limit = ["--max-layer-file-size", "2MiB"];
    let cache = tempfile::tempdir().unwrap();
    let df = format!(
        "FROM {host}/base/busybox:1\nRUN echo ok > /fine\n\n\
         RUN truncate -s 3M /big && echo made-big\nRUN echo never-ran\n"
    );
    let tag = format!("{host}/apps/too-big:1");
    let mark = reg.access_log().len();
    let out = push_dockerfile(&tag, &df, &[], &limit, Some(cache.path()));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in [
        "Dockerfile:4: RUN: the step left /big of 3145728 bytes (0 bytes on disk",
        "over the limit of 2097152 bytes per file",
    ] {
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
    assert!(err.contains("made-big"), "the step ran: {err}");
    assert!(!err.contains("never-ran"), "no later step ran: {err}");
    assert_eq!(
        http_status("GET", &host, "/v2/apps/too-big/manifests/1"),
        Some(404),
        "no tag"
    );
    let log = reg.access_log_since(mark);
    let puts = manifest_puts(&log);
    assert!(puts.is_empty(), "no manifest written: {puts:#?}");
    assert!(
        files_named(cache.path(), "big").is_empty(),
        "the step's upper directory is gone"
    );

    // At the limit the step passes, and the sparse file is in the layer written out.
    let df = format!("FROM {host}/base/busybox:1\nRUN truncate -s 2M /big\n");
    let tag = format!("{host}/apps/at-limit:1");
    let out = push_dockerfile(&tag, &df, &[], &limit, Some(cache.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let (_dir, bundle) = pull_and_unpack(&tag, &[]);
    let big = std::fs::read(bundle.join("rootfs/big")).unwrap();
    assert_eq!(big.len(), 2 << 20);
    assert!(big.iter().all(|b| *b == 0));
}
