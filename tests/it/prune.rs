//! `regbuild prune` on a cache a real RUN build filled: what went unused goes, the next
//! build rebuilds it and gets the same digest, a running push keeps prune away, `--all`
//! empties the cache, and an unprivileged user removes what its rootless steps made.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::common::*;
use crate::run_steps::{busybox_base, push_dockerfile, rootless_user, ROOTLESS_USER};
use serde_json::Value;

fn prune(cache: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["prune"];
    all.extend_from_slice(args);
    regbuild(&all)
        .env("REGBUILD_CACHE", cache)
        .output()
        .unwrap()
}

fn prune_json(cache: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = prune(cache, &all);
    assert!(out.status.success(), "prune failed: {}", stderr(&out));
    json(&out)
}

fn removed_kinds(report: &Value) -> Vec<String> {
    let mut k: Vec<String> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k.dedup();
    k
}

fn lowers(cache: &Path) -> Vec<PathBuf> {
    dir_entries(&cache.join("lowers/trusted/sha256"))
        .into_iter()
        .chain(dir_entries(&cache.join("lowers/user/sha256")))
        .chain(dir_entries(&cache.join("lowers-flat/user/sha256")))
        .filter(|p| !p.to_string_lossy().ends_with(".used"))
        .collect()
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

fn digest(out: &std::process::Output) -> String {
    assert!(out.status.success(), "push failed: {}", stderr(out));
    let v: Value = json(out);
    v["digest"].as_str().unwrap().to_string()
}

#[test]
fn prune_removes_what_went_unused_and_never_what_a_running_push_holds() {
    if !needs_root("the RUN sandbox path of this test") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let cache = tempfile::tempdir().unwrap();
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN --mount=type=cache,target=/c echo x > /c/x && echo hi > /hi\n\
         RUN echo two > /two\n"
    );
    let tag = format!("{host}/apps/prune:1");
    let first = digest(&push_dockerfile(
        &tag,
        &df,
        &[],
        &["--json"],
        Some(cache.path()),
    ));
    let before = lowers(cache.path());
    assert!(
        before.len() >= 2,
        "the base and the first step unpacked: {before:?}"
    );

    // A dry run lists every kind a RUN build leaves and removes nothing.
    let dry = prune_json(cache.path(), &["--dry-run", "--older-than", "0s"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        removed_kinds(&dry),
        ["cache-mount", "lower", "run-blob"],
        "{dry}"
    );
    assert_eq!(lowers(cache.path()), before, "a dry run removes nothing");

    // The unpacked layers go unused for a month; the rest was used just now.
    let month_ago = SystemTime::now() - Duration::from_secs(30 * 86_400);
    for l in &before {
        set_mtime(l, month_ago);
        let stamp = PathBuf::from(format!("{}.used", l.display()));
        if stamp.exists() {
            set_mtime(&stamp, month_ago);
        }
    }
    let report = prune_json(cache.path(), &[]);
    assert_eq!(removed_kinds(&report), ["lower"], "{report}");
    assert_eq!(report["removed"].as_array().unwrap().len(), before.len());
    assert!(report["freed_bytes"].as_u64().unwrap() > 0);
    assert!(lowers(cache.path()).is_empty());
    assert!(
        !dir_entries(&cache.path().join("run-blobs")).is_empty(),
        "recently used blobs kept"
    );
    assert!(
        !dir_entries(&cache.path().join("run-cache")).is_empty(),
        "recently used cache kept"
    );

    // The next build re-executes (--no-cache), unpacks again and gets the same image.
    let again = digest(&push_dockerfile(
        &tag,
        &df,
        &[],
        &["--json", "--no-cache"],
        Some(cache.path()),
    ));
    assert_eq!(again, first);
    assert!(!lowers(cache.path()).is_empty());

    // A push holds the cache (its shared lock): prune refuses and removes nothing.
    let held = std::fs::File::open(cache.path().join("lock")).unwrap();
    held.lock_shared().unwrap();
    let out = prune(cache.path(), &["--all"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("in use by a running regbuild push"),
        "{}",
        stderr(&out)
    );
    assert!(!lowers(cache.path()).is_empty());
    drop(held);

    let all = prune_json(cache.path(), &["--all"]);
    assert!(removed_kinds(&all).contains(&"record".to_string()), "{all}");
    for dir in ["run-blobs", "run-cache", "run-tmp", "layers", "files"] {
        assert!(
            dir_entries(&cache.path().join(dir)).is_empty(),
            "{dir} left"
        );
    }
    assert!(lowers(cache.path()).is_empty());
    // An empty cache: nothing to do, still a report.
    let empty = prune_json(cache.path(), &["--all"]);
    assert_eq!(empty["freed_bytes"], 0);
}

#[test]
fn rootless_steps_may_leave_what_the_user_cannot_read_and_prune_still_removes_it() {
    if !needs_root("to create the unprivileged user") {
        return;
    }
    rootless_user();
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    // Files of another id inside the namespace land on the user's subordinate ids, here
    // with modes that leave the user outside no access (as apt's partial/ directories).
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {host}/base/busybox:1\n\
             RUN --mount=type=cache,target=/c mkdir -p /srv/d /c/d && echo x > /srv/d/f && echo y > /c/d/g \\\n \
               && chown -R 1000:1000 /srv /c/d && chmod 600 /srv/d/f && chmod 500 /srv/d && chmod 700 /c/d \\\n \
               && mkdir /many && for i in $(seq 2000); do echo > /many/file-$i; done \\\n \
               && chown -R 1000:1000 /many && chmod 600 /many/*\n\
             RUN ls /srv/d > /listing\n"
        ),
    )
    .unwrap();
    crate::run_steps::rootless_home(dir.path());
    let as_user = |args: &[&str]| crate::run_steps::as_rootless(dir.path(), args);
    let ctx_arg = ctx.display().to_string();
    // Both ways of running a step: the overlay's upper directory and the plain root.
    for (snapshotter, fresh) in [("overlayfs", ""), ("native", "--no-cache")] {
        let tag = format!("{host}/apps/prune-rootless:{snapshotter}");
        let mut args = vec!["push", "--snapshotter", snapshotter, "-t", &tag, &ctx_arg];
        if !fresh.is_empty() {
            args.insert(1, fresh);
        }
        let out = as_user(&args);
        let err = stderr(&out);
        if no_user_namespace(&out, ROOTLESS_USER) {
            return;
        }
        assert!(
            out.status.success(),
            "rootless push ({snapshotter}) failed: {err}"
        );
        assert!(!err.contains("not removed"), "{err}");
        // The layer has the owners and modes the step gave, and the next step read it.
        use std::os::unix::fs::PermissionsExt;
        let (_d, bundle) = pull_and_unpack(&tag, &[]);
        let rootfs = bundle.join("rootfs");
        let d = std::fs::metadata(rootfs.join("srv/d")).unwrap();
        assert_eq!(
            (d.uid(), d.gid(), d.permissions().mode() & 0o7777),
            (1000, 1000, 0o500),
            "{snapshotter}"
        );
        let f = std::fs::metadata(rootfs.join("srv/d/f")).unwrap();
        assert_eq!(
            (f.uid(), f.permissions().mode() & 0o7777),
            (1000, 0o600),
            "{snapshotter}"
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("srv/d/f")).unwrap(),
            "x\n"
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("listing")).unwrap(),
            "f\n"
        );
        // Thousands of entries opened up (a long list) keep their bits too.
        let last = std::fs::metadata(rootfs.join("many/file-2000")).unwrap();
        assert_eq!(
            (last.uid(), last.permissions().mode() & 0o7777),
            (1000, 0o600)
        );
        for left in ["tmp", "cache/run-tmp"] {
            assert!(
                dir_entries(&dir.path().join(left)).is_empty(),
                "{left} not empty"
            );
        }
    }

    // The cache mount keeps a directory of a subordinate id the user cannot enter.
    let cache = dir.path().join("cache");
    let user_uid = std::fs::metadata(&cache).unwrap().uid();
    let mounts = dir_entries(&cache.join("run-cache"));
    let foreign = mounts
        .iter()
        .any(|m| std::fs::symlink_metadata(m.join("d")).is_ok_and(|md| md.uid() != user_uid));
    assert!(
        foreign,
        "no directory of a subordinate id in {mounts:?}: the test proves nothing"
    );

    let out = as_user(&["prune", "--all", "--json"]);
    assert!(out.status.success(), "prune failed: {}", stderr(&out));
    assert!(dir_entries(&cache.join("run-cache")).is_empty());
    assert!(lowers(&cache).is_empty(), "left: {:?}", lowers(&cache));
}
