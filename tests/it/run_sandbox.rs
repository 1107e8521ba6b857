//! The RUN sandbox tried as an attacker would (issue 20): a hostile step runs a static probe
//! (`tests/fixtures/escape/probe.c`) that tries each way out that was once open — every
//! capability, no seccomp filter, a usable device node of the host's disk, the sandbox's
//! init ptrace-able and holding a descriptor to the host, descriptors inherited from
//! regbuild's caller, a writable `/proc/sys` and `/sys` — as root and rootless, with
//! overlayfs and with the snapshot-diff (`native`) snapshotter. The probe only reports; the
//! assertions are here.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
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
    // On a terminal, lines end in \r\n: every `probe:NAME=VALUE` up to white space.
    let results: BTreeMap<String, String> = text
        .split("probe:")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
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

/// `cmd` run on a new pseudo-terminal that is its controlling terminal (util-linux
/// `script`), as when a user runs regbuild in a shell: its output comes on stdout, its
/// environment is `cmd`'s (all of it replaced when `clear_env`), descriptor 7 passes through.
fn on_a_terminal(cmd: &Command, clear_env: bool) -> Command {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let mut line = quote(cmd.get_program());
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &line, "/dev/null"]);
    if clear_env {
        script.env_clear();
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    script.stdin(std::process::Stdio::null());
    script
}

/// What every configuration must show: the escapes issue 20 found, each closed.
/// Docker's default capabilities.
const DOCKER_CAPS: &str = "00000000a80425fb";
/// Those without NET_RAW and NET_BIND_SERVICE: a root step on the host's network.
const HOST_NETWORK_CAPS: &str = "00000000a80401fb";

fn assert_confined(r: &BTreeMap<String, String>, how: &str, caps: &str) {
    let get = |k: &str| r.get(k).map(String::as_str).unwrap_or("missing");
    let expect = |k: &str, v: &str| assert_eq!(get(k), v, "{how}: probe:{k} in {r:#?}");
    let refused = |k: &str| assert_ne!(get(k), "ok", "{how}: probe:{k} succeeded in {r:#?}");
    // Docker's default capabilities, bounding set included; nothing inheritable or ambient.
    for k in ["cap_eff", "cap_prm", "cap_bnd"] {
        expect(k, caps);
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
    // Raw sockets: none on the host's network (as root: no NET_RAW there; rootless: the
    // user namespace does not own it); with --network none, in the step's own namespace.
    let raw = if caps == HOST_NETWORK_CAPS || how.starts_with("rootless") {
        "EPERM"
    } else {
        "ok"
    };
    expect("socket_raw", raw);
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
    // No controlling terminal: nothing to type into the user's shell.
    expect("tty_open", "ENXIO");
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
    for (snapshotter, network) in [
        ("overlayfs", "default"),
        ("native", "default"),
        ("overlayfs", "none"),
    ] {
        let ctx = context_with(&[("Dockerfile", df.as_str())]);
        let tag = format!("{host}/probe/root-{snapshotter}-{network}:1");
        let disk = format!("PROBE_DISK={}", host_disk());
        let mark = format!("PROBE_MARKER={}", marker.display());
        let cmd = regbuild(&[
            "push",
            "-t",
            &tag,
            "--snapshotter",
            snapshotter,
            "--network",
            network,
            "--no-progress",
            "--build-arg",
            &disk,
            "--build-arg",
            &mark,
            "--no-cache",
            ctx.path().to_str().unwrap(),
        ]);
        let mut cmd = on_a_terminal(&cmd, false);
        with_fd7(&mut cmd, &marker);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let r = probe_results(&out);
        let caps = if network == "none" {
            DOCKER_CAPS
        } else {
            HOST_NETWORK_CAPS
        };
        assert_confined(&r, &format!("root, {snapshotter}, network {network}"), caps);
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
        let cmd = crate::run_steps::rootless_command(
            dir.path(),
            &[
                "push",
                "-t",
                &tag,
                "--snapshotter",
                snapshotter,
                // Progress bars on a terminal without TERM: step output must still show.
                "--build-arg",
                &disk,
                "--build-arg",
                &mark,
                "--no-cache",
                ctx.to_str().unwrap(),
            ],
        );
        let mut cmd = on_a_terminal(&cmd, true);
        with_fd7(&mut cmd, &marker);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let r = probe_results(&out);
        assert_confined(&r, &format!("rootless, {snapshotter}"), DOCKER_CAPS);
        // No device nodes at all in a user namespace.
        assert_eq!(r["mknod_null"], "EPERM", "rootless, {snapshotter}");
    }
    // A setuid file of the user's (a subordinate id's, in the store) reaches nobody else:
    // the cache the user's home gave 0755 is made 0700.
    let tag = format!("{host}/probe/rootless-suid:1");
    let ctx = dir.path().join("ctx-suid");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {host}/probe/base:1\nRUN cp /bin/busybox /bin/made-suid && chmod 4755 /bin/made-suid\nRUN true\n"),
    )
    .unwrap();
    run(Command::new("chown")
        .args(["-R", &format!("{ROOTLESS_USER}:")])
        .arg(&ctx));
    let out = crate::run_steps::as_rootless(
        dir.path(),
        &["push", "-t", &tag, "--keep-setuid", ctx.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cache = dir.path().join("cache");
    assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o7777, 0o700);
    let suid = setuid_files(&cache);
    assert!(
        suid.iter().any(|p| p.ends_with("bin/made-suid")),
        "{suid:?}"
    );
    for file in &suid {
        let got = as_nobody(file.to_str().unwrap(), &["-c", "id -u"]);
        assert!(
            !got.status.success(),
            "nobody ran {}: {}",
            file.display(),
            stdout(&got)
        );
    }
}

#[test]
fn a_workdir_thousands_deep_is_made_and_one_past_path_max_refused_at_its_line() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    crate::run_steps::busybox_base(&host, "base/busybox");
    // 1,200 deep took 18 s of quadratic checks; each parent is now checked once.
    let deep = vec!["d"; 1200].join("/");
    let df = format!("FROM {host}/base/busybox:1\nWORKDIR /{deep}\nRUN pwd | wc -c > /depth\n");
    let tag = format!("{host}/apps/deep:1");
    let (_keep, rootfs) = crate::run_steps::pushed_rootfs(&tag, &df);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("depth"))
            .unwrap()
            .trim(),
        (deep.len() + 2).to_string()
    );
    let too_deep = vec!["d"; 2100].join("/");
    let df = format!("FROM {host}/base/busybox:1\nWORKDIR /{too_deep}\nRUN true\n");
    let ctx = context_with(&[("Dockerfile", df.as_str())]);
    let out = regbuild(&[
        "push",
        "-t",
        &format!("{host}/apps/too-deep:1"),
        ctx.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Dockerfile:2: WORKDIR is 4200 bytes long"),
        "{}",
        stderr(&out)
    );
}

/// Runs `program args` as `nobody`, another local user.
fn as_nobody(program: &str, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
        ])
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

/// Every setuid file below `dir` (as root sees it).
fn setuid_files(dir: &Path) -> Vec<PathBuf> {
    let out = run(Command::new("find")
        .arg(dir)
        .args(["-perm", "-4000", "-type", "f"]));
    stdout(&out).lines().map(PathBuf::from).collect()
}

#[test]
fn the_cache_is_private_so_setuid_files_and_devices_it_unpacks_hand_nobody_root() {
    if !needs_root("makes a setuid-root base and runs as another user") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    // A base with a setuid-root shell and a block device anyone may open (mode 0666).
    busybox_base_with(&host, "hostile/base", |root| {
        std::fs::copy("/bin/busybox", root.join("bin/suid-sh")).unwrap();
        std::fs::set_permissions(
            root.join("bin/suid-sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        run(Command::new("mknod")
            .args(["-m", "0666"])
            .arg(root.join("disk"))
            .args(["b", "254", "0"]));
    });
    // REGBUILD_CACHE under a directory everyone may read, as /tmp or a shared home.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        shared.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cache = shared.path().join("cache");
    let df = format!(
        "FROM {host}/hostile/base:1\n\
         RUN cp /bin/busybox /bin/made-suid && chmod 4755 /bin/made-suid\n"
    );
    let ctx = context_with(&[("Dockerfile", df.as_str())]);
    let tag = format!("{host}/hostile/app:1");
    let out = regbuild(&[
        "push",
        "-t",
        &tag,
        "--keep-setuid",
        ctx.path().to_str().unwrap(),
    ])
    .env("REGBUILD_CACHE", &cache)
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o7777, 0o700);
    // The store does hold them (what a step needs), out of every other user's reach.
    let suid = setuid_files(&cache);
    assert!(
        suid.iter().any(|p| p.ends_with("bin/suid-sh"))
            && suid.iter().any(|p| p.ends_with("bin/made-suid")),
        "{suid:?}"
    );
    for file in &suid {
        let got = as_nobody(file.to_str().unwrap(), &["-c", "id -u"]);
        assert!(
            !got.status.success() && !stdout(&got).contains('0'),
            "another user ran {}: {}{}",
            file.display(),
            stdout(&got),
            stderr(&got)
        );
    }
    let found = as_nobody("find", &[cache.to_str().unwrap(), "-perm", "-4000"]);
    assert!(stdout(&found).trim().is_empty(), "{}", stdout(&found));
    let disks = run(Command::new("find").arg(&cache).args(["-type", "b"]));
    for disk in stdout(&disks).lines() {
        let got = as_nobody("head", &["-c", "1", disk]);
        assert!(!got.status.success(), "another user opened {disk}");
    }
}

#[test]
fn a_cache_directory_other_users_can_write_is_refused_and_a_readable_one_made_private() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let ctx = context_with(&[("Dockerfile", "FROM scratch\nCOPY Dockerfile /\n")]);
    let tag = format!("{host}/apps/private:1");
    let parent = tempfile::tempdir().unwrap();
    let cache = parent.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = regbuild(&["push", "-t", &tag, ctx.path().to_str().unwrap()])
        .env("REGBUILD_CACHE", &cache)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&cache.display().to_string()) && err.contains("0777"),
        "{err}"
    );
    assert_eq!(
        http_status("GET", &host, "/v2/apps/private/manifests/1"),
        Some(404)
    );
    // An older regbuild's 0755: made 0700, and the push goes on.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = regbuild(&["push", "-t", &tag, ctx.path().to_str().unwrap()])
        .env("REGBUILD_CACHE", &cache)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o7777, 0o700);
    // A new one is made 0700, and so is every directory regbuild makes in it.
    let fresh = parent.path().join("fresh/cache");
    let out = regbuild(&["push", "-t", &tag, ctx.path().to_str().unwrap()])
        .env("REGBUILD_CACHE", &fresh)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for dir in [fresh.clone(), fresh.join("layers"), fresh.join("files")] {
        assert_eq!(
            std::fs::metadata(&dir).unwrap().mode() & 0o777,
            0o700,
            "{}",
            dir.display()
        );
    }
    // Under a directory another user owns (who could rename the cache away and put a tree
    // of theirs in its place): refused.
    if !needs_root("gives a directory to another user") {
        return;
    }
    let theirs = parent.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    run(Command::new("chown").arg("nobody").arg(&theirs));
    let out = regbuild(&["push", "-t", &tag, ctx.path().to_str().unwrap()])
        .env("REGBUILD_CACHE", theirs.join("cache"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to uid 65534"),
        "{}",
        stderr(&out)
    );
}

/// A child killed if the test fails before it ends (a hung build must not outlive it).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether any file below `dir` holds `needle`.
pub fn any_file_holds(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    let out = Command::new("grep")
        .args(["-rlsF", "--", std::str::from_utf8(needle).unwrap()])
        .arg(dir)
        .output()
        .unwrap();
    stdout(&out).lines().next().map(PathBuf::from)
}

#[test]
fn sigkill_during_a_secret_step_leaves_the_secret_nowhere_and_the_next_build_cleans_up() {
    use std::io::BufRead;
    let reg = Distribution::start();
    let host = reg.host.clone();
    crate::run_steps::busybox_base(&host, "base/busybox");
    let secret = format!("never-on-disk-{}", free_port());
    // A number no other process has on its command line.
    let seconds = format!("87{}", free_port());
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN --mount=type=secret,id=tok,target=/run/secrets/tok,env=TOK sleep {seconds} & \
           while [ \"$(cat /proc/$!/comm)\" != sleep ]; do :; done; \
           [ \"$(cat /run/secrets/tok)\" = \"$TOK\" ] && echo step-started || echo step-started-without-secret; wait\n"
    );
    let ctx = context_with(&[("Dockerfile", &df)]);
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tag = format!("{host}/apps/killed:1");
    let mut child = KillOnDrop(
        regbuild(&[
            "push",
            "--secret",
            "id=tok,env=REGBUILD_TEST_TOKEN",
            "-t",
            &tag,
            ctx.path().to_str().unwrap(),
        ])
        .env("REGBUILD_CACHE", cache.path())
        .env("TMPDIR", tmp.path())
        .env("REGBUILD_TEST_TOKEN", &secret)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut lines = std::io::BufReader::new(child.0.stderr.take().unwrap()).lines();
    let seen = crate::run_steps::read_until_step_says(&mut lines, "step-started");
    assert!(
        seen.last().is_some_and(|l| l.ends_with("] step-started")),
        "the step did not start with its secret: {seen:?}"
    );
    // The step's sleep, watched through a pidfd: its end is an event, not a guess.
    let sleeper: Vec<String> = processes_with(&format!("sleep {seconds}"))
        .into_iter()
        .filter(|p| p.contains(&format!(": sleep {seconds}")))
        .collect();
    assert_eq!(sleeper.len(), 1, "{sleeper:?}");
    let pid: i32 = sleeper[0].split(':').next().unwrap().parse().unwrap();
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    run(Command::new("kill").args(["-KILL", &child.0.id().to_string()]));
    assert_eq!(child.0.wait().unwrap().signal(), Some(9));
    let mut fds = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    assert_eq!(
        rustix::event::poll(&mut fds, Some(&timeout)).unwrap(),
        1,
        "the step outlived regbuild by 30 s"
    );
    // The secret is on no host path: not in /dev/shm, the temporary or the cache directory.
    for dir in [Path::new("/dev/shm"), tmp.path(), cache.path()] {
        assert_eq!(
            any_file_holds(dir, secret.as_bytes()),
            None,
            "in {}",
            dir.display()
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&cache.path().display().to_string()),
        "{mounts}"
    );
    // What the killed build left (its temporary directory, the step's scratch) ...
    let entries = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir).map_or(Vec::new(), |r| r.flatten().map(|e| e.path()).collect())
    };
    assert!(
        !entries(tmp.path()).is_empty(),
        "the killed build left no temporary directory"
    );
    assert!(
        !entries(&cache.path().join("run-tmp")).is_empty(),
        "no step scratch was left"
    );
    // ... is removed by the next build.
    let df = format!("FROM {host}/base/busybox:1\nRUN echo next > /next\n");
    let ctx = context_with(&[("Dockerfile", &df)]);
    let out = regbuild(&[
        "push",
        "-t",
        &format!("{host}/apps/next:1"),
        ctx.path().to_str().unwrap(),
    ])
    .env("REGBUILD_CACHE", cache.path())
    .env("TMPDIR", tmp.path())
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(entries(tmp.path()), Vec::<PathBuf>::new());
    assert_eq!(
        entries(&cache.path().join("run-tmp")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        http_status("GET", &host, "/v2/apps/killed/manifests/1"),
        Some(404)
    );
}

/// The busybox base with `extra` applied to its root and `config` (umoci config flags)
/// to its configuration, pushed to `host/repo:1`.
fn base_with_config(host: &str, repo: &str, extra: impl FnOnce(&Path), config: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    extra(&root);
    crate::run_steps::push_rootfs(&root, host, repo, config);
}

#[test]
fn a_base_image_s_working_directory_never_reaches_above_the_step_s_root() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let marker = format!("regbuild-workdir-escape-{}", free_port());
    let hostile = format!("/../../../../../../../../../../tmp/{marker}");
    base_with_config(
        &host,
        "hostile/workdir",
        |_| {},
        &["--config.workingdir", &hostile],
    );
    let df = format!("FROM {host}/hostile/workdir:1\nRUN /bin/busybox pwd > /where\n");
    let tag = format!("{host}/hostile/workdir-app:1");
    let (_keep, rootfs) = crate::run_steps::pushed_rootfs(&tag, &df);
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "the base's WorkingDir made a directory on the host"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("where")).unwrap(),
        format!("/tmp/{marker}\n")
    );
}

#[test]
fn what_a_later_step_sees_is_what_the_pushed_layer_holds() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    // /etc/hostname a directory: the sandbox cannot mount its file there, and the layer
    // leaves the path out (regbuild provides it), so the next step must not see it either.
    base_with_config(
        &host,
        "hostile/hostname",
        |root| std::fs::create_dir_all(root.join("etc/hostname")).unwrap(),
        &["--config.env", "PATH=/bin"],
    );
    let df = format!(
        "FROM {host}/hostile/hostname:1\n\
         RUN /bin/busybox sh -c 'echo planted > /etc/hostname/planted'\n\
         RUN /bin/busybox sh -c 'test ! -e /etc/hostname/planted'\n"
    );
    let ctx = context_with(&[("Dockerfile", df.as_str())]);
    let out = regbuild(&[
        "push",
        "-t",
        &format!("{host}/hostile/hostname-app:1"),
        ctx.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "a later step saw what the layer left out: {}",
        stderr(&out)
    );
}
