//! RUN in the lower rungs of isolation (`--isolation chroot` and `userns`, what `auto`
//! falls to where namespaces are refused): a build with a secret, a cache mount, a user
//! added after RUN and a second stage comes out right in each; the secret reaches no layer
//! and no output; the cache persists across builds; a root without CAP_SYS_ADMIN (as in a
//! container with the runtime's default capabilities) falls to the user-namespace rung by
//! itself and says so.

use std::path::Path;

use crate::common::*;
use crate::run_steps::busybox_base;

const SECRET: &str = "chroot-rung-secret-never-stored";

fn dockerfile(host: &str, round: u32) -> String {
    format!(
        "FROM {host}/base/busybox:1 AS build\n\
         RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-64 > /secret-sum \\\n \
           && if [ -e /proc/self ]; then echo proc > /proc-seen; else echo none > /proc-seen; fi\n\
         RUN --mount=type=cache,id=count,target=/var/cache/count \\\n \
           n=$(cat /var/cache/count/n 2>/dev/null || echo 0); echo $((n+1)) > /var/cache/count/n; \\\n \
           echo $n > /seen # round {round}\n\
         RUN echo 'svc:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && mkdir -p /home/app/data \\\n \
           && chown svc /home/app/data\n\
         USER svc\n\
         RUN id -u > /home/app/data/uid\n\
         FROM {host}/base/busybox:1\n\
         COPY --from=build /secret-sum /seen /proc-seen /out/\n\
         COPY --from=build /home/app/data/uid /out/uid\n\
         COPY --from=build /etc/passwd /out/passwd\n"
    )
}

fn push(
    host: &str,
    round: u32,
    cache: &Path,
    wrap: &[&str],
    extra: &[&str],
) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("tok");
    std::fs::write(&secret, SECRET).unwrap();
    let ctx = context_with(&[("Dockerfile", &dockerfile(host, round))]);
    let tag = format!("{host}/apps/chroot:{round}");
    let secret_arg = format!("id=tok,src={}", secret.display());
    let ctx_dir = ctx.path().display().to_string();
    let mut args = vec!["push", "-v", "--secret", &secret_arg, "-t", &tag];
    args.extend_from_slice(extra);
    args.push(&ctx_dir);
    let built = regbuild(&args);
    let mut cmd = if wrap.is_empty() {
        built
    } else {
        wrapped(wrap, &built)
    };
    cmd.env("REGBUILD_CACHE", cache);
    cmd.output().unwrap()
}

fn check_image(host: &str, round: u32, seen: &str) {
    let (_d, bundle) = pull_and_unpack(&format!("{host}/apps/chroot:{round}"), &[]);
    let root = bundle.join("rootfs");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    use sha2::Digest as _;
    assert_eq!(
        read("out/secret-sum"),
        format!("{}\n", hex::encode(sha2::Sha256::digest(SECRET)))
    );
    assert_eq!(
        read("out/proc-seen"),
        "none\n",
        "no /proc in the chroot rung"
    );
    assert_eq!(read("out/seen").trim(), seen, "the cache mount's count");
    assert_eq!(read("out/uid").trim(), "1234", "USER after RUN");
    assert!(read("out/passwd").contains("svc:x:1234:"));
    for f in walk(&root) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET),
            "the secret is in {}",
            f.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            out.extend(walk(&e.path()));
        } else if ty.is_file() {
            out.push(e.path());
        }
    }
    out
}

fn builds_right_with_secrets_and_caches(isolation: &str, said: &str) {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let cache = tempfile::tempdir().unwrap();
    for (round, seen) in [(1, "0"), (2, "1")] {
        let out = push(&host, round, cache.path(), &[], &["--isolation", isolation]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "{text}");
        assert!(!text.contains(SECRET), "the secret is in the output");
        assert!(text.contains(said), "the rung is said at -v: {text}");
        check_image(&host, round, seen);
    }
}

#[test]
fn the_chroot_rung_builds_right_with_secrets_and_caches() {
    if needs_root("the chroot rung runs as root only") {
        builds_right_with_secrets_and_caches("chroot", "chroot, native");
    }
}

#[test]
fn the_userns_rung_builds_right_with_secrets_and_caches() {
    if needs_root("the user-namespace rung is root's") {
        builds_right_with_secrets_and_caches("userns", "userns, native");
    }
}

#[test]
fn without_cap_sys_admin_auto_falls_to_the_userns_rung_and_says_so() {
    if !needs_root("dropping CAP_SYS_ADMIN as root") || !needs_tool("setpriv", "util-linux") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let cache = tempfile::tempdir().unwrap();
    // Root without CAP_SYS_ADMIN: what a container with the runtime's default
    // capabilities gives; unshare is refused.
    let wrap = [
        "setpriv",
        "--bounding-set=-sys_admin",
        "--inh-caps=-sys_admin",
        "--",
    ];
    let out = push(&host, 1, cache.path(), &wrap, &[]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("namespaces refused here") && text.contains("user-namespace rung"),
        "{text}"
    );
    assert!(text.contains("userns, native"), "{text}");
    check_image(&host, 1, "0");
    // Asked for the sandbox only, the refusal is the error, naming the way out.
    let out = push(&host, 2, cache.path(), &wrap, &["--isolation", "sandbox"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("CAP_SYS_ADMIN") && err.contains("--isolation"),
        "{err}"
    );
}

#[test]
fn sigkill_during_a_chroot_step_leaves_no_process_or_secret_and_the_next_build_cleans_up() {
    use crate::run_sandbox::{any_file_holds, KillOnDrop};
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    if !needs_root("the chroot rung runs as root only") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let secret = format!("chroot-killed-{}", free_port());
    // A number no other process has on its command line: the step's command becomes it.
    let seconds = format!("86{}", free_port());
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN --mount=type=secret,id=tok [ \"$(cat /run/secrets/tok)\" = {secret} ] \
           && echo step-started && exec sleep {seconds}\n"
    );
    let ctx = context_with(&[("Dockerfile", &df)]);
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        regbuild(&[
            "push",
            "--isolation",
            "chroot",
            "--secret",
            "id=tok,env=REGBUILD_TEST_TOKEN",
            "-t",
            &format!("{host}/apps/killed:1"),
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
        "{seen:?}"
    );
    // The step's command (the shell that execs sleep) and its helper, watched through
    // pidfds: their ends are events, not guesses.
    let step: Vec<String> = processes_with(&format!("sleep {seconds}"));
    assert_eq!(step.len(), 1, "{step:?}");
    let pid: i32 = step[0].split(':').next().unwrap().parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let helper: i32 = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let watch = |p: i32| {
        rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(p).unwrap(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap()
    };
    let (step_fd, helper_fd) = (watch(pid), watch(helper));
    run(std::process::Command::new("kill").args(["-KILL", &child.0.id().to_string()]));
    assert_eq!(child.0.wait().unwrap().signal(), Some(9));
    for (what, fd) in [("the step", &step_fd), ("its helper", &helper_fd)] {
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: 30,
            tv_nsec: 0,
        };
        assert_eq!(
            rustix::event::poll(&mut fds, Some(&timeout)).unwrap(),
            1,
            "{what} outlived regbuild by 30 s"
        );
    }
    // The helper removed the secret from the step's root before it ended.
    for dir in [tmp.path(), cache.path()] {
        assert_eq!(
            any_file_holds(dir, secret.as_bytes()),
            None,
            "in {}",
            dir.display()
        );
    }
    // What the killed build left is removed by the next one.
    let df = format!("FROM {host}/base/busybox:1\nRUN echo next > /next\n");
    let ctx = context_with(&[("Dockerfile", &df)]);
    let out = regbuild(&[
        "push",
        "--isolation",
        "chroot",
        "-t",
        &format!("{host}/apps/next:1"),
        ctx.path().to_str().unwrap(),
    ])
    .env("REGBUILD_CACHE", cache.path())
    .env("TMPDIR", tmp.path())
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let entries = |dir: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir).map_or(Vec::new(), |r| r.flatten().map(|e| e.path()).collect())
    };
    assert_eq!(entries(tmp.path()), Vec::<std::path::PathBuf>::new());
    assert_eq!(
        entries(&cache.path().join("run-tmp")),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        http_status("GET", &host, "/v2/apps/killed/manifests/1"),
        Some(404)
    );
}
