//! The lower rungs of isolation, end to end and as an attacker would try them. The chroot
//! rung (no namespace: what runs where a container's seccomp profile refuses them): the
//! step has `/dev`, its mounts and no `/proc`; it cannot chroot out, trace or read another
//! process, gain privileges through exec, write through a link out of its root, or leave a
//! process behind. The user-namespace rung (root's, where CAP_SYS_ADMIN is missing): the
//! container's ids mapped to themselves, no `/proc`, no mount. Needs root, `/bin/busybox`
//! and a static C toolchain (the probe).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use regbuild_sandbox::{Isolation, Mount, SandboxError, SecretValue, Spec};

#[macro_use]
mod common;
use common::*;

/// A chroot-rung spec over the fixture's root filesystem (changed in place).
fn chroot_spec(f: &Fixture, script: &str) -> Spec {
    let mut spec = Spec::new(
        Vec::new(),
        &f.lower,
        &f.work,
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    );
    spec.env = vec![("PATH".into(), "/bin".into())];
    spec.plain_root = true;
    spec.isolation = Isolation::Chroot;
    spec
}

/// Runs `spec` as the builder does: mount points made first.
fn run_chroot(spec: &Spec) -> (regbuild_sandbox::Outcome, String, String) {
    regbuild_sandbox::prepare_plain_root(spec).unwrap();
    run_ok(spec)
}

/// A static program that reports, one `name=value` per line, what the step may do to
/// reach past its root.
const PROBE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/ptrace.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <linux/capability.h>
int main(void) {
    printf("no_new_privs=%d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    printf("bound_sys_chroot=%d\n", prctl(PR_CAPBSET_READ, CAP_SYS_CHROOT, 0, 0, 0));
    printf("bound_sys_admin=%d\n", prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0));
    printf("bound_sys_ptrace=%d\n", prctl(PR_CAPBSET_READ, CAP_SYS_PTRACE, 0, 0, 0));
    printf("bound_net_raw=%d\n", prctl(PR_CAPBSET_READ, CAP_NET_RAW, 0, 0, 0));
    errno = 0;
    long r = ptrace(PTRACE_ATTACH, getppid(), 0, 0);
    printf("ptrace=%s\n", r == 0 ? "ok" : strerror(errno));
    char buf[8]; struct iovec l = { buf, 8 }, rem = { (void *)0x400000, 8 };
    errno = 0;
    r = process_vm_readv(getppid(), &l, 1, &rem, 1, 0);
    printf("process_vm_readv=%s\n", r >= 0 ? "ok" : strerror(errno));
    errno = 0;
    printf("chroot=%s\n", chroot("/tmp") == 0 ? "ok" : strerror(errno));
    /* The helper (this program's parent): its limits, priority and life are out of reach. */
    struct rlimit lim = { 7, 7 };
    errno = 0;
    printf("prlimit_parent=%s\n", prlimit(getppid(), RLIMIT_NOFILE, &lim, NULL) == 0 ? "ok" : strerror(errno));
    errno = 0;
    printf("prlimit_self=%s\n", prlimit(0, RLIMIT_CORE, NULL, &lim) == 0 ? "ok" : strerror(errno));
    errno = 0;
    printf("renice_parent=%s\n", setpriority(PRIO_PROCESS, getppid(), 19) == 0 ? "ok" : strerror(errno));
    errno = 0;
    printf("kill_parent=%s\n", kill(getppid(), 0) == 0 ? "ok" : strerror(errno));
    errno = 0;
    printf("kill_all=%s\n", kill(-1, 0) == 0 ? "ok" : strerror(errno));
    printf("own_session=%d\n", getsid(0) == getpid());
    errno = 0;
    printf("sigio_to_parent=%s\n", fcntl(1, F_SETOWN, getppid()) == 0 ? "ok" : strerror(errno));
    errno = 0;
    printf("renice_user=%s\n", setpriority(PRIO_USER, 0, 19) == 0 ? "ok" : strerror(errno));
    /* A process outside the step (the test) and its abstract socket: out of reach too. */
    errno = 0;
    printf("kill_outsider=%s\n", kill(atoi(getenv("PEER_PID")), 0) == 0 ? "ok" : strerror(errno));
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    const char *name = getenv("PEER_SOCK");
    memcpy(sa.sun_path + 1, name, strlen(name));
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    errno = 0;
    int c = connect(s, (struct sockaddr *)&sa, sizeof(sa.sun_family) + 1 + strlen(name));
    printf("abstract_socket=%s\n", c == 0 ? "ok" : strerror(errno));
    close(s);
    int fds = 0;
    for (int fd = 3; fd < 1024; fd++) if (fcntl(fd, F_GETFD) >= 0) fds++;
    printf("extra_fds=%d\n", fds);
    return 0;
}
"#;

fn build_probe(dir: &Path) -> PathBuf {
    build_static(dir, "probe", PROBE)
}

/// A static C program `name` built from `source` in `dir`.
fn build_static(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let made = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .expect("these tests need a C compiler (gcc, libc6-dev)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    out
}

#[test]
fn a_chroot_step_has_dev_and_its_etc_files_but_no_proc() {
    need_root!();
    let f = Fixture::new();
    let spec = chroot_spec(
        &f,
        "echo gone > /dev/null && head -c 5 /dev/zero | wc -c && head -c 3 /dev/urandom | wc -c \
         && [ ! -e /proc/self ] && [ ! -e /sys/kernel ] && cat /etc/hostname && id -u \
         && rm /data/gone.txt && echo new > /data/new",
    );
    let (_, out, err) = run_chroot(&spec);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, ["5", "3", "regbuild", "0"], "{err}");
    assert!(!f.lower.join("data/gone.txt").exists());
    assert_eq!(
        fs::read_to_string(f.lower.join("data/new")).unwrap(),
        "new\n"
    );
    let null = fs::metadata(f.lower.join("dev/null")).unwrap();
    assert_eq!(null.rdev(), libc::makedev(1, 3));
}

#[test]
fn a_chroot_step_cannot_chroot_trace_gain_privileges_or_touch_its_helper() {
    need_root!();
    let f = Fixture::new();
    let probe = build_probe(f.work.parent().unwrap());
    fs::copy(&probe, f.lower.join("bin/probe")).unwrap();
    fs::create_dir(f.lower.join("tmp")).unwrap();
    // The probe is the step's command itself, so its parent is the helper.
    let mut spec = chroot_spec(&f, "");
    spec.argv = vec!["/bin/probe".into()];
    // An abstract socket of this (outside) process, which the step must not reach.
    use std::os::linux::net::SocketAddrExt;
    let name = format!("regbuild-probe-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    spec.env
        .push(("PEER_PID".into(), std::process::id().to_string()));
    spec.env.push(("PEER_SOCK".into(), name));
    let (_, out, err) = run_chroot(&spec);
    let got: std::collections::BTreeMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once('=')).collect();
    let want = [
        ("no_new_privs", "1"),
        ("bound_sys_chroot", "0"),
        ("bound_sys_admin", "0"),
        ("bound_sys_ptrace", "0"),
        ("bound_net_raw", "0"),
        ("ptrace", "Operation not permitted"),
        ("process_vm_readv", "Operation not permitted"),
        ("chroot", "Operation not permitted"),
        ("prlimit_parent", "Operation not permitted"),
        ("prlimit_self", "ok"),
        ("renice_parent", "Operation not permitted"),
        ("kill_parent", "Operation not permitted"),
        ("kill_all", "Operation not permitted"),
        ("own_session", "1"),
        ("sigio_to_parent", "Operation not permitted"),
        ("renice_user", "Operation not permitted"),
        // Landlock's scopes (Linux 6.12; the CI machine has them).
        ("kill_outsider", "Operation not permitted"),
        ("abstract_socket", "Operation not permitted"),
        ("extra_fds", "0"),
    ];
    for (k, v) in want {
        assert_eq!(got.get(k).copied(), Some(v), "{k}: {out}\n{err}");
    }
}

#[test]
fn no_process_of_a_chroot_step_outlives_it() {
    need_root!();
    let f = Fixture::new();
    // A daemon in a session of its own, and one left to its parent, each started for sure
    // (its file written) before the step ends: both gone when the run returns.
    let spec = chroot_spec(
        &f,
        "mkdir -p /tmp; setsid sh -c 'echo > /tmp/a; exec sleep 7341' & \
         sh -c 'echo > /tmp/b; exec sleep 7342' & \
         until [ -e /tmp/a ] && [ -e /tmp/b ]; do :; done; echo started",
    );
    let (_, out, _) = run_chroot(&spec);
    assert_eq!(out.trim(), "started");
    for n in ["7341", "7342"] {
        assert_eq!(processes_mentioning(n), Vec::<u32>::new(), "{n}");
    }
}

/// Starts a clone child whose exit signal is not SIGCHLD (invisible to a plain `wait`),
/// which execs `sleep ARGV[1]`, and returns once it runs.
const CLONE_KID: &str = r#"
#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>
static char stack[1 << 16];
static char *secs;
static int kid(void *a) {
    (void)a;
    execl("/bin/sleep", "sleep", secs, (char *)0);
    return 1;
}
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    secs = argv[1];
    if (clone(kid, stack + sizeof stack, 0, 0) < 0) return 1;
    write(1, "cloned\n", 7);
    return 0;
}
"#;

#[test]
fn a_clone_child_without_sigchld_does_not_outlive_a_chroot_step() {
    need_root!();
    let f = Fixture::new();
    let kid = build_static(f.work.parent().unwrap(), "clonekid", CLONE_KID);
    fs::copy(&kid, f.lower.join("bin/clonekid")).unwrap();
    let mut spec = chroot_spec(&f, "");
    // Its command line names 7344 from its start (`clonekid 7344`) to its exec (`sleep 7344`).
    spec.argv = vec!["/bin/clonekid".into(), "7344".into()];
    let (_, out, _) = run_chroot(&spec);
    assert_eq!(out.trim(), "cloned");
    assert_eq!(processes_mentioning("7344"), Vec::<u32>::new());
}

#[test]
fn a_process_waiting_in_a_cache_is_killed_before_the_cache_is_copied_back() {
    need_root!();
    let f = Fixture::new();
    let cache = f.work.parent().unwrap().join("cache");
    fs::create_dir_all(&cache).unwrap();
    // A daemon whose working directory is the cache, waiting to walk `..` once the cache has
    // left the root: killed first; the cache is copied back, never moved out of the root.
    let mut spec = chroot_spec(
        &f,
        "cd /c && setsid sh -c 'echo > /c/up; exec sleep 7343' & \
         until [ -e /c/up ]; do :; done; echo started",
    );
    spec.mounts = vec![Mount::Bind {
        source: cache.clone(),
        target: "/c".into(),
        readonly: false,
    }];
    let (_, out, _) = run_chroot(&spec);
    assert_eq!(out.trim(), "started");
    assert_eq!(processes_mentioning("7343"), Vec::<u32>::new());
    assert!(fs::symlink_metadata(&cache).unwrap().is_dir());
    assert!(cache.join("up").is_file(), "what the step wrote came back");
    assert!(
        f.lower.join("c/up").is_file(),
        "the root keeps its own copy"
    );
}

/// Processes whose command line holds `needle` (a shell about to exec, or what it ran).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .filter(|pid| *pid != std::process::id())
        .collect()
}

#[test]
fn mounts_are_placed_without_mounting_and_caches_come_back() {
    need_root!();
    let f = Fixture::new();
    let host = f.work.parent().unwrap().join("host");
    let cache = host.join("cache");
    let context = host.join("context");
    fs::create_dir_all(&cache).unwrap();
    fs::create_dir_all(&context).unwrap();
    fs::write(cache.join("old"), "kept\n").unwrap();
    fs::write(context.join("src.txt"), "source\n").unwrap();
    let mut spec = chroot_spec(
        &f,
        "cat /run/secrets/tok && stat -c '%a %u' /run/secrets/tok \
         && cat /var/cache/x/old && echo more > /var/cache/x/new \
         && cat /src/src.txt && ! echo no > /src/src.txt.w 2>/dev/null; \
         touch /scratch/t && echo done",
    );
    spec.mounts = vec![
        Mount::Secret {
            target: "/run/secrets/tok".into(),
            value: SecretValue(b"s3cret-value\n".to_vec()),
            mode: 0o400,
            uid: 0,
            gid: 0,
        },
        Mount::Bind {
            source: cache.clone(),
            target: "/var/cache/x".into(),
            readonly: false,
        },
        Mount::Bind {
            source: context.clone(),
            target: "/src".into(),
            readonly: true,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size_bytes: None,
        },
    ];
    let (_, out, err) = run_chroot(&spec);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["s3cret-value", "400 0", "kept", "source", "done"],
        "{err}"
    );
    // The cache is back where it was, with what the step wrote.
    assert_eq!(fs::read_to_string(cache.join("new")).unwrap(), "more\n");
    assert_eq!(fs::read_to_string(cache.join("old")).unwrap(), "kept\n");
    // The secret is gone from the root; the context was copied, never written.
    assert!(!f.lower.join("run/secrets/tok").exists());
    assert_eq!(fs::read_dir(&context).unwrap().count(), 1);
}

#[test]
fn a_cache_the_step_replaced_by_a_link_is_not_followed_back() {
    need_root!();
    let f = Fixture::new();
    let host = f.work.parent().unwrap().join("host");
    let cache = host.join("cache");
    let precious = host.join("precious");
    fs::create_dir_all(&cache).unwrap();
    fs::create_dir_all(&precious).unwrap();
    fs::write(precious.join("f"), "mine\n").unwrap();
    // The step swaps its cache directory for a link to a host path: giving it back must
    // neither follow the link nor move the link over the cache's source.
    let mut spec = chroot_spec(
        &f,
        &format!(
            "rm -rf /c && ln -s {} /c && echo swapped",
            precious.display()
        ),
    );
    spec.mounts = vec![Mount::Bind {
        source: cache.clone(),
        target: "/c".into(),
        readonly: false,
    }];
    let (_, out, _) = run_chroot(&spec);
    assert_eq!(out.trim(), "swapped");
    let meta = fs::symlink_metadata(&cache).unwrap();
    assert!(meta.is_dir(), "the cache's source is a directory again");
    assert_eq!(
        fs::read_dir(&cache).unwrap().count(),
        0,
        "started again empty"
    );
    assert_eq!(fs::read_to_string(precious.join("f")).unwrap(), "mine\n");
}

#[test]
fn a_secret_is_never_written_through_a_link_of_the_base() {
    need_root!();
    let f = Fixture::new();
    let outside = f.work.parent().unwrap().join("outside");
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, f.lower.join("run")).unwrap();
    let mut spec = chroot_spec(&f, "true");
    spec.mounts = vec![Mount::Secret {
        target: "/run/secrets/tok".into(),
        value: SecretValue(b"s3cret\n".to_vec()),
        mode: 0o400,
        uid: 0,
        gid: 0,
    }];
    // Refused while making the mount points, or while placing the secret: never written.
    let result = regbuild_sandbox::prepare_plain_root(&spec).and_then(|()| run(&spec).map(|_| ()));
    assert!(result.is_err(), "a mount target under a link is refused");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn the_chroot_rung_refuses_what_it_cannot_isolate() {
    let f = Fixture::new();
    let mut spec = chroot_spec(&f, "true");
    spec.network = regbuild_sandbox::Network::None;
    assert!(matches!(spec.validate(), Err(SandboxError::InvalidSpec(_))));
    let mut spec = chroot_spec(&f, "true");
    spec.plain_root = false;
    assert!(matches!(spec.validate(), Err(SandboxError::InvalidSpec(_))));
}

#[test]
fn the_userns_rung_maps_the_ids_to_themselves_and_has_no_proc() {
    need_root!();
    let f = Fixture::new();
    let mut spec = chroot_spec(
        &f,
        "[ ! -e /proc/self ] && id -u && hostname && touch /data/own && chown 42:43 /data/own \
         && ! mount -t tmpfs t /tmp 2>/dev/null && echo ok",
    );
    spec.isolation = Isolation::Userns;
    let (_, out, err) = run_chroot(&spec);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "regbuild", "ok"],
        "{err}"
    );
    // Ids inside are the ids outside: what the step chowned is owned so on the host.
    let meta = fs::metadata(f.lower.join("data/own")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (42, 43));
}
