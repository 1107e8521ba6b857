//! The RUN sandbox tried as an attacker would (issue 20): a hostile step runs a static probe
//! (`tests/fixtures/escape/probe.c`) that tries each way out that was once open — every
//! capability, no seccomp filter, a usable device node of the host's disk, the sandbox's
//! init ptrace-able and holding a descriptor to the host, descriptors inherited from
//! regbuild's caller, a writable `/proc/sys` and `/sys` — as root and rootless, with
//! overlayfs and with the snapshot-diff (`native`) snapshotter. The probe only reports; the
//! assertions are here.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::*;
use crate::run_steps::{busybox_base_with, rootless_home, rootless_user, ROOTLESS_USER};

/// The probe, compiled once per test process.
fn probe_binary() -> &'static Path {
    static PROBE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = PROBE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("probe");
        run(Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&out)
            .arg(repo_root().join("tests/fixtures/escape/probe.c")));
        (dir, out)
    });
    path
}

/// The busybox base with the probe at `/bin/probe`, pushed to `host/probe/base:1`.
fn probe_base(host: &str) {
    busybox_base_with(host, "probe/base", |root| {
        std::fs::copy(probe_binary(), root.join("bin/probe")).unwrap();
    });
}

/// `MAJOR:MINOR` of the block device the host's root filesystem is on.
fn host_disk() -> String {
    let dev = std::fs::metadata("/").unwrap().dev();
    // SAFETY-free arithmetic of glibc's gnu_dev_major/minor.
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    format!("{major}:{minor}")
}

const PROBE_DOCKERFILE: &str = "FROM {host}/probe/base:1\n\
     ARG PROBE_DISK\n\
     ARG PROBE_MARKER\n\
     RUN /bin/probe\n";

/// The probe's `probe:NAME=VALUE` lines out of regbuild's output.
fn probe_results(out: &Output) -> BTreeMap<String, String> {
    let text = format!("{}\n{}", stdout(out), stderr(out));
    let results: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once("probe:"))
        .filter_map(|(_, kv)| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    assert_eq!(
        results.get("done").map(String::as_str),
        Some("yes"),
        "the probe did not run to its end:\n{text}"
    );
    results
}

/// Gives the command a readable descriptor 7 on `file` that is not close-on-exec, as a
/// caller's shell would (`exec 7<file`).
fn with_fd7(cmd: &mut Command, file: &Path) {
    let f = std::fs::File::open(file).unwrap();
    let raw = std::os::fd::IntoRawFd::into_raw_fd(f);
    // SAFETY: dup2 between fork and exec, async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// What every configuration must show: the escapes issue 20 found, each closed.
fn assert_confined(r: &BTreeMap<String, String>, how: &str) {
    let get = |k: &str| r.get(k).map(String::as_str).unwrap_or("missing");
    let expect = |k: &str, v: &str| assert_eq!(get(k), v, "{how}: probe:{k} in {r:#?}");
    let refused = |k: &str| assert_ne!(get(k), "ok", "{how}: probe:{k} succeeded in {r:#?}");
    // Docker's default capabilities, bounding set included; nothing inheritable or ambient.
    for k in ["cap_eff", "cap_prm", "cap_bnd"] {
        expect(k, "00000000a80425fb");
    }
    expect("cap_inh", "0000000000000000");
    expect("cap_amb", "0000000000000000");
    // A seccomp filter, without no_new_privs (setuid programs keep working in steps).
    expect("seccomp", "2");
    expect("no_new_privs", "0");
    for k in [
        "mount_tmpfs",
        "remount_sys_rw",
        "unshare_user",
        "unshare_mount",
        "keyctl",
        "bpf",
        "ptrace_init",
        "socket_vsock",
    ] {
        expect(k, "EPERM");
    }
    expect("clone3", "ENOSYS");
    expect("socket_inet", "ok");
    expect("chroot", "ok");
    // Device nodes a step makes open nothing (nodev), whatever mknod said.
    for k in [
        "open_mknod_null",
        "open_mknod_kmsg",
        "open_mknod_disk",
        "open_dev_disk",
    ] {
        refused(k);
    }
    expect("devpts", "yes");
    expect("ptmx", "ok");
    let mut dev: Vec<&str> = get("dev").split(',').filter(|s| !s.is_empty()).collect();
    dev.sort_unstable();
    assert_eq!(
        dev,
        [
            "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
            "tty", "urandom", "zero"
        ],
        "{how}: /dev"
    );
    // No descriptor beyond 0-2, none inherited from regbuild's caller.
    expect("fds", "none");
    expect("read_fd7", "EBADF");
    // init is not dumpable: none of its descriptors, its root, memory or environment opens.
    for k in ["proc1_fd_open", "proc1_environ", "proc1_root", "proc1_mem"] {
        refused(k);
    }
    expect("host_marker", "no");
    // Read-only and masked kernel interfaces (as root, EROFS; rootless the host's files
    // may refuse first with EACCES).
    for k in ["proc_sys_write", "proc_sys_net_write", "sys_write"] {
        refused(k);
    }
    let mut masked = 0;
    for name in ["kcore", "keys", "timer_list", "interrupts", "sched_debug"] {
        if Path::new("/proc").join(name).exists() {
            expect(&format!("masked_{name}"), "empty");
            masked += 1;
        }
    }
    assert!(
        masked > 0,
        "no masked /proc file exists on this host to check"
    );
    if Path::new("/sys/firmware").exists() {
        expect("sys_firmware_entries", "0");
    }
}

/// A marker file only its owner may read, standing for the user's credentials.
fn marker_in(dir: &Path) -> PathBuf {
    let marker = dir.join("docker/config.json");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(
        &marker,
        r#"{"auths":{"x":{"auth":"c2VjcmV0OnBhc3N3b3Jk"}}}"#,
    )
    .unwrap();
    std::fs::set_permissions(&marker, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    marker
}

#[test]
fn a_root_build_s_step_is_confined_as_docker_confines_a_container() {
    if !needs_root("builds as root") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    probe_base(&host);
    let home = tempfile::tempdir().unwrap();
    let marker = marker_in(home.path());
    let df = PROBE_DOCKERFILE.replace("{host}", &host);
    for snapshotter in ["overlayfs", "native"] {
        let ctx = context_with(&[("Dockerfile", df.as_str())]);
        let tag = format!("{host}/probe/root-{snapshotter}:1");
        let disk = format!("PROBE_DISK={}", host_disk());
        let mark = format!("PROBE_MARKER={}", marker.display());
        let mut cmd = regbuild(&[
            "push",
            "-t",
            &tag,
            "--snapshotter",
            snapshotter,
            "--build-arg",
            &disk,
            "--build-arg",
            &mark,
            "--no-cache",
            ctx.path().to_str().unwrap(),
        ]);
        with_fd7(&mut cmd, &marker);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let r = probe_results(&out);
        assert_confined(&r, &format!("root, {snapshotter}"));
        // Root may make device nodes (CAP_MKNOD, as in Docker); they open nothing.
        assert_eq!(r["mknod_null"], "ok", "root, {snapshotter}");
        assert_eq!(r["open_mknod_null"], "EACCES", "root, {snapshotter}");
        assert_eq!(r["open_mknod_disk"], "EACCES", "root, {snapshotter}");
        // Root bypasses file modes: only the read-only mounts stop these.
        for k in ["proc_sys_write", "proc_sys_net_write", "sys_write"] {
            assert_eq!(r[k], "EROFS", "root, {snapshotter}: probe:{k}");
        }
    }
}

#[test]
fn a_rootless_build_s_step_is_confined_and_never_reaches_the_user_s_files() {
    if !needs_root("creates the unprivileged user") {
        return;
    }
    rootless_user();
    let reg = Distribution::start();
    let host = reg.host.clone();
    probe_base(&host);
    let dir = tempfile::tempdir().unwrap();
    let df = PROBE_DOCKERFILE.replace("{host}", &host);
    std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
    std::fs::write(dir.path().join("ctx/Dockerfile"), &df).unwrap();
    rootless_home(dir.path());
    let marker = marker_in(dir.path());
    run(Command::new("chown")
        .args(["-R", &format!("{ROOTLESS_USER}:")])
        .arg(dir.path()));
    for snapshotter in ["overlayfs", "native"] {
        let tag = format!("{host}/probe/rootless-{snapshotter}:1");
        let disk = format!("PROBE_DISK={}", host_disk());
        let mark = format!("PROBE_MARKER={}", marker.display());
        let ctx = dir.path().join("ctx");
        let mut cmd = crate::run_steps::rootless_command(
            dir.path(),
            &[
                "push",
                "-t",
                &tag,
                "--snapshotter",
                snapshotter,
                "--build-arg",
                &disk,
                "--build-arg",
                &mark,
                "--no-cache",
                ctx.to_str().unwrap(),
            ],
        );
        with_fd7(&mut cmd, &marker);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let r = probe_results(&out);
        assert_confined(&r, &format!("rootless, {snapshotter}"));
        // No device nodes at all in a user namespace.
        assert_eq!(r["mknod_null"], "EPERM", "rootless, {snapshotter}");
    }
}
