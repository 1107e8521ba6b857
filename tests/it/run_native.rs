//! `RUN` without overlayfs (`--snapshotter native`): the stage's layers copied into one plain
//! root, the step run in it, and a snapshot diff written as the upper directory overlayfs
//! would have made. The strongest check is determinism: the same Dockerfile built both ways
//! gives the same layer digests, whiteouts, opaque directories, hard links, owners, modes,
//! symlinks, devices and FIFOs included.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::run_steps::busybox_base;

/// Steps that delete, replace, link, chown, chmod and retarget, each on top of the last
/// (so the second and third steps also see a RUN layer with whiteouts and an opaque
/// directory below them).
fn dockerfile(host: &str) -> String {
    format!(
        "FROM {host}/base/busybox:1\n\
         RUN echo hello > /greeting && mkdir -p /data/sub && echo x > /data/sub/f \\\n \
           && rm /etc/motd && rm -r /olddir && rm -r /replaced && mkdir /replaced && echo new > /replaced/only \\\n \
           && ln /greeting /data/hard && ln -s ../greeting /data/soft && chmod 0750 /data/sub \\\n \
           && chown 1000:1000 /data/sub/f && mkfifo /data/fifo && mknod /data/null c 1 3 \\\n \
           && cp /bin/busybox /su && chmod 4755 /su\n\
         RUN rm /greeting && echo changed > /replaced/only && chmod 0600 /etc/passwd \\\n \
           && rm -r /data/sub && rm /data/soft && ln -s /etc /data/soft && touch /tmp/x && rm /tmp/x \\\n \
           && rm -r /replaced && mkdir /replaced && echo again > /replaced/again\n\
         WORKDIR /work/dir\n\
         USER app\n\
         RUN id -u > /tmp/uid && pwd > /tmp/pwd\n"
    )
}

#[test]
fn native_and_overlayfs_give_the_same_layers() {
    if !needs_root("mknod, chown in the step, as the overlay run does") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let df = dockerfile(&host);
    let mut digests = Vec::new();
    for snapshotter in ["overlayfs", "native"] {
        let cache = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let tag = format!("{host}/apps/{snapshotter}:1");
        let ctx = context_with(&[("Dockerfile", &df)]);
        let out = regbuild(&[
            "push",
            "-v",
            "--no-cache",
            "--snapshotter",
            snapshotter,
            "-t",
            &tag,
            &ctx.path().display().to_string(),
        ])
        .env("REGBUILD_CACHE", cache.path())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{snapshotter}: {err}");
        assert_eq!(
            err.contains("snapshot diff"),
            snapshotter == "native",
            "-v says which path ran: {err}"
        );
        assert!(
            dir_entries(tmp.path()).is_empty(),
            "{:?}",
            dir_entries(tmp.path())
        );
        let scratch = dir_entries(&cache.path().join("run-tmp"));
        assert!(scratch.is_empty(), "step scratch left: {scratch:?}");
        digests.push(layer_digests(&tag));
    }
    let base = layer_digests(&format!("{host}/base/busybox:1"));
    // The base, three RUN layers and WORKDIR's (it makes the directory as a layer).
    assert_eq!(digests[0].len(), base.len() + 4, "{digests:?}");
    assert_eq!(digests[0], digests[1], "overlayfs vs native");

    // And the layers mean what the steps did.
    let (_d, bundle) = pull_and_unpack(&format!("{host}/apps/native:1"), &[]);
    let rootfs = bundle.join("rootfs");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(!rootfs.join("greeting").exists(), "whiteout");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("data/hard")).unwrap(),
        "hello\n"
    );
    assert!(!rootfs.join("data/sub").exists());
    assert!(!rootfs.join("replaced/only").exists(), "opaque again");
    assert!(rootfs.join("replaced/again").exists());
    assert_eq!(
        std::fs::read_link(rootfs.join("data/soft")).unwrap(),
        Path::new("/etc")
    );
    let meta = |p: &str| std::fs::symlink_metadata(rootfs.join(p)).unwrap();
    assert_eq!(meta("etc/passwd").mode() & 0o7777, 0o600);
    assert_eq!(meta("su").mode() & 0o7777, 0o755, "setuid stripped");
    assert!(meta("data/fifo").file_type().is_fifo());
    assert!(meta("data/null").file_type().is_char_device());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("tmp/pwd")).unwrap(),
        "/work/dir\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("tmp/uid")).unwrap(),
        "1000\n"
    );
    assert!(
        !rootfs.join("etc/resolv.conf").exists(),
        "provided, not in a layer"
    );
}

#[test]
fn an_unknown_snapshotter_is_bad_usage() {
    let out = regbuild(&["push", "--snapshotter", "vfs", "-t", "x/y:1", "."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--snapshotter vfs: use auto, overlayfs or native"),
        "{}",
        stderr(&out)
    );
}

const ROOTLESS_USER: &str = "regbuild-rootless";

#[test]
fn rootless_native_steps_run_as_an_unprivileged_user() {
    if !needs_root("to create the unprivileged user") {
        return;
    }
    let exists = Command::new("id")
        .arg(ROOTLESS_USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        run(Command::new("useradd").args(["-m", ROOTLESS_USER]));
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let dir = tempfile::tempdir().unwrap();
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN echo one > /out.txt && rm /etc/motd && rm -r /replaced && mkdir /replaced \\\n \
           && echo n > /replaced/only && echo o > /owned && chown 1000:1000 /owned && id -u > /uid\n\
         RUN echo second >> /out.txt && rm -r /olddir\n"
    );
    std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
    std::fs::write(dir.path().join("ctx/Dockerfile"), df).unwrap();
    crate::run_steps::rootless_home(dir.path());
    let tag = format!("{host}/apps/rootless-native:1");
    let out = crate::run_steps::as_rootless(
        dir.path(),
        &[
            "push",
            "-v",
            "--snapshotter",
            "native",
            "-t",
            &tag,
            &dir.path().join("ctx").display().to_string(),
        ],
    );
    let err = stderr(&out);
    if no_user_namespace(&out, ROOTLESS_USER) {
        return;
    }
    assert!(out.status.success(), "rootless native push failed: {err}");
    assert!(err.contains("snapshot diff"), "{err}");
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("out.txt")).unwrap(),
        "one\nsecond\n"
    );
    assert_eq!(std::fs::read_to_string(rootfs.join("uid")).unwrap(), "0\n");
    assert!(!rootfs.join("etc/motd").exists(), "whiteout");
    assert!(!rootfs.join("olddir").exists(), "whiteout of a directory");
    assert!(!rootfs.join("replaced/keep-not").exists(), "opaque");
    assert!(rootfs.join("replaced/only").exists());
    use std::os::unix::fs::MetadataExt;
    // Owners in the layer are the ids the step saw, not the host's.
    assert_eq!(std::fs::metadata(rootfs.join("out.txt")).unwrap().uid(), 0);
    let mapped = std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{ROOTLESS_USER}:")));
    if mapped {
        let owned = std::fs::metadata(rootfs.join("owned")).unwrap();
        assert_eq!((owned.uid(), owned.gid()), (1000, 1000));
    }
    assert!(dir_entries(&dir.path().join("tmp")).is_empty());
    let scratch = dir_entries(&dir.path().join("cache/run-tmp"));
    assert!(scratch.is_empty(), "step scratch left: {scratch:?}");
}

#[test]
fn a_failing_or_interrupted_native_step_leaves_no_copy_of_the_root_behind() {
    use std::io::BufRead;
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let push = |df: &str, tag: &str| {
        let ctx = context_with(&[("Dockerfile", df)]);
        let mut cmd = regbuild(&[
            "push",
            "--snapshotter",
            "native",
            "-t",
            tag,
            &ctx.path().display().to_string(),
        ]);
        cmd.env("REGBUILD_CACHE", cache.path())
            .env("TMPDIR", tmp.path());
        (ctx, cmd)
    };
    let left = || {
        let mut v = dir_entries(tmp.path());
        v.extend(dir_entries(&cache.path().join("run-tmp")));
        v
    };

    let (_ctx, mut cmd) = push(
        &format!("FROM {host}/base/busybox:1\nRUN echo x > /made && chmod 000 / && exit 3\n"),
        &format!("{host}/apps/native-fails:1"),
    );
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("exit status 3"), "{}", stderr(&out));
    assert!(left().is_empty(), "left after a failure: {:?}", left());

    let seconds = format!("87{}", free_port());
    let (_ctx, mut cmd) = push(
        &format!(
            "FROM {host}/base/busybox:1\n\
             RUN sleep {seconds} & while [ \"$(cat /proc/$!/comm)\" != sleep ]; do :; done; echo step-started; wait\n"
        ),
        &format!("{host}/apps/native-interrupted:1"),
    );
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.ends_with("] step-started"));
    assert!(started, "the step runs");
    // The copy of the root exists while the step runs.
    let scratch = dir_entries(&cache.path().join("run-tmp"));
    assert!(
        scratch
            .iter()
            .any(|d| d.join("rootfs/bin/busybox").exists()),
        "{scratch:?}"
    );
    run(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let _rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(left().is_empty(), "left after SIGINT: {:?}", left());
}

/// More layers than one overlay mount can name (the kernel takes 4095 bytes of options):
/// `auto` carries on with the snapshot diff and says so once; `overlayfs` fails the step.
#[test]
fn auto_falls_back_when_the_overlay_cannot_be_mounted_and_says_so_once() {
    if !needs_root("the overlay path is tried first") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let mut df = format!("FROM {host}/base/busybox:1\n");
    for i in 0..24 {
        df.push_str(&format!("RUN echo {i} > /step-{i}\n"));
    }
    for snapshotter in ["auto", "overlayfs"] {
        let dir = tempfile::tempdir().unwrap();
        // Long lower-directory paths, so that a couple of dozen layers are too many.
        let cache = dir.path().join("c".repeat(200));
        let ctx = context_with(&[("Dockerfile", &df)]);
        let tag = format!("{host}/apps/many-{snapshotter}:1");
        let out = regbuild(&[
            "push",
            "--snapshotter",
            snapshotter,
            "-t",
            &tag,
            &ctx.path().display().to_string(),
        ])
        .env("REGBUILD_CACHE", &cache)
        .output()
        .unwrap();
        let err = stderr(&out);
        if snapshotter == "overlayfs" {
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(err.contains("over the kernel's 4095"), "{err}");
            continue;
        }
        assert!(out.status.success(), "{err}");
        let said = err
            .matches("overlayfs unavailable (options too long")
            .count();
        assert_eq!(said, 1, "said once: {err}");
        assert!(
            err.contains("RUN steps use a snapshot diff (slower)"),
            "{err}"
        );
        let (_d, bundle) = pull_and_unpack(&tag, &[]);
        for i in [0, 23] {
            let f = bundle.join(format!("rootfs/step-{i}"));
            assert_eq!(std::fs::read_to_string(f).unwrap(), format!("{i}\n"));
        }
        assert!(dir_entries(&cache.join("run-tmp")).is_empty());
    }
}
