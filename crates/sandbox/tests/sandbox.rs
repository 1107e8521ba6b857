//! The sandbox, end to end, on a tiny busybox root filesystem built from the host.
//! These tests need root (they run the rootless case as `regbuild-test-user` through
//! `setpriv`) and `/bin/busybox` (Debian: busybox-static).

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use regbuild_sandbox::{MappingKind, Mount, Network, SandboxError, Spec, Status};

const TEST_USER: &str = "regbuild-test-user";
const ROOTLESS_DIR_ENV: &str = "REGBUILD_SANDBOX_ROOTLESS_DIR";
const SIGINT_DIR_ENV: &str = "REGBUILD_SANDBOX_SIGINT_DIR";

#[macro_use]
mod common;
use common::*;

#[test]
fn exit_code_and_output_come_back() {
    need_root!();
    let f = Fixture::new();
    let (o, out, err) = run(&f.spec("echo hello; echo oops >&2; exit 7")).unwrap();
    assert_eq!(o.status, Status::Exited(7));
    assert_eq!(o.mapping, MappingKind::Host);
    assert_eq!(out, "hello\n");
    assert_eq!(err, "oops\n");
    let (o, _, _) = run(&f.spec("kill -TERM $$")).unwrap();
    assert_eq!(o.status, Status::Signaled(15));
}

#[test]
fn writes_land_in_upper_and_lowers_are_untouched() {
    need_root!();
    let f = Fixture::new();
    run_ok(&f.spec("echo new > /new.txt && mkdir -p /d/e && echo upper > /data/keep.txt"));
    assert_eq!(
        fs::read_to_string(f.upper.join("new.txt")).unwrap(),
        "new\n"
    );
    assert!(f.upper.join("d/e").is_dir());
    assert_eq!(
        fs::read_to_string(f.upper.join("data/keep.txt")).unwrap(),
        "upper\n"
    );
    assert_eq!(
        fs::read_to_string(f.lower.join("data/keep.txt")).unwrap(),
        "lower\n"
    );
    assert!(!f.lower.join("new.txt").exists());
    assert!(!f.lower.join("d").exists());
}

#[test]
fn deleting_a_lower_file_leaves_a_whiteout_in_upper() {
    need_root!();
    let f = Fixture::new();
    run_ok(&f.spec("rm /data/gone.txt && test ! -e /data/gone.txt"));
    let m = fs::symlink_metadata(f.upper.join("data/gone.txt")).unwrap();
    assert!(m.file_type().is_char_device(), "{m:?}");
    assert_eq!(m.rdev(), 0);
    assert_eq!(
        fs::read_to_string(f.lower.join("data/gone.txt")).unwrap(),
        "bye\n"
    );
}

#[test]
fn proc_dev_sys_and_etc_files_do_not_reach_upper() {
    need_root!();
    let f = Fixture::new();
    let mut spec = f.spec(
        "cat /etc/hostname; cat /proc/sys/kernel/hostname; grep -c localhost /etc/hosts; \
         test -f /etc/resolv.conf; ls /proc/self/fd >/dev/null; echo x > /dev/null; \
         head -c 4 /dev/urandom | wc -c; test -e /sys/kernel; \
         touch /sys/x 2>/dev/null && echo sys-writable; echo $$",
    );
    spec.hostname = "step-host".into();
    // grep, head, wc, test are busybox applets reached through sh's builtins or busybox.
    for app in ["head", "wc", "test"] {
        let _ = std::os::unix::fs::symlink("busybox", f.lower.join("bin").join(app));
    }
    let (_, out, _) = run_ok(&spec);
    let lines: Vec<&str> = out.lines().collect();
    // The step's init is pid 1 of its pid namespace, the command pid 2.
    assert_eq!(lines, ["step-host", "step-host", "2", "4", "2"], "{out}");
    assert!(
        entries(&f.upper).is_empty(),
        "upper holds {:?}",
        entries(&f.upper)
    );
    assert!(
        entries(&f.work).is_empty(),
        "work dir holds {:?}",
        entries(&f.work)
    );
    assert!(!f.lower.join("etc").exists() && !f.lower.join("proc").exists());
}

#[test]
fn environment_is_exactly_the_given_one() {
    need_root!();
    assert!(std::env::var_os("PATH").is_some() && std::env::var_os("CARGO_PKG_NAME").is_some());
    let f = Fixture::new();
    let mut spec = f.spec("");
    spec.argv = vec!["/bin/env".into()];
    spec.env = vec![
        ("PATH".into(), "/bin".into()),
        ("FOO".into(), "bar baz".into()),
    ];
    let (_, out, _) = run_ok(&spec);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["FOO=bar baz", "PATH=/bin"]);
}

fn interfaces(proc_net_dev: &str) -> Vec<String> {
    let mut v: Vec<String> = proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn network_none_has_only_loopback_up() {
    need_root!();
    let f = Fixture::new();
    let mut spec = f.spec("cat /proc/net/dev; echo FLAGS; cat /sys/class/net/lo/flags");
    spec.network = Network::None;
    let (_, out, _) = run_ok(&spec);
    let (dev, flags) = out.split_once("FLAGS\n").unwrap();
    assert_eq!(interfaces(dev), ["lo"]);
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up");

    spec.network = Network::Default;
    let (_, out, _) = run_ok(&spec);
    let (dev, _) = out.split_once("FLAGS\n").unwrap();
    let host = interfaces(&fs::read_to_string("/proc/net/dev").unwrap());
    assert_eq!(
        interfaces(dev),
        host,
        "Network::Default shares the host's network"
    );
}

#[test]
fn uid_and_gid_are_applied() {
    need_root!();
    let f = Fixture::new();
    let mut spec = f.spec("id -u; id -g; touch /tmpfile");
    fs::create_dir(f.lower.join("tmp")).unwrap();
    spec.uid = 1234;
    spec.gid = 2345;
    spec.argv[2] = "id -u; id -g; touch /tmp/owned".into();
    fs::set_permissions(
        f.lower.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let (_, out, _) = run_ok(&spec);
    assert_eq!(out, "1234\n2345\n");
    let m = fs::metadata(f.upper.join("tmp/owned")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 2345));
}

#[test]
fn a_missing_program_is_a_typed_error() {
    need_root!();
    let f = Fixture::new();
    let mut spec = f.spec("");
    spec.argv = vec!["/bin/no-such-program".into()];
    match run(&spec) {
        Err(SandboxError::Exec { program, .. }) => assert_eq!(program, "/bin/no-such-program"),
        other => panic!("{other:?}"),
    }
    assert!(entries(&f.work).is_empty());
}

#[test]
fn a_background_process_does_not_outlive_the_step() {
    need_root!();
    let f = Fixture::new();
    let (_, out, _) = run_ok(&f.spec(&(started_sleep("1001") + "echo started $p")));
    assert!(out.starts_with("started "), "{out}");
    assert_eq!(sleepers("1001"), Vec::<u32>::new());
}

fn wait_ready(running: &mut regbuild_sandbox::Running) {
    let mut lines = BufReader::new(running.stdout.as_ref().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
}

#[test]
fn killing_a_running_step_from_another_thread_leaves_nothing() {
    need_root!();
    let f = Fixture::new();
    let mut running = sandbox()
        .spawn(&f.spec(&(started_sleep("1003") + &started_sleep("1002") + "echo ready; wait")))
        .unwrap();
    wait_ready(&mut running);
    assert_eq!(sleepers("1002").len(), 1, "the step runs");
    assert_eq!(sleepers("1003").len(), 1, "its background child runs");
    let handle = running.kill_handle();
    std::thread::spawn(move || handle.kill()).join().unwrap();
    let outcome = running.wait().unwrap();
    assert_eq!(outcome.status, Status::Killed);
    assert!(sleepers("1002").is_empty() && sleepers("1003").is_empty());
    assert!(
        entries(&f.work).is_empty(),
        "work dir holds {:?}",
        entries(&f.work)
    );
}

#[test]
fn dropping_a_running_step_kills_it() {
    need_root!();
    let f = Fixture::new();
    let mut running = sandbox()
        .spawn(&f.spec(&(started_sleep("1004") + "echo ready; wait")))
        .unwrap();
    wait_ready(&mut running);
    assert_eq!(sleepers("1004").len(), 1);
    drop(running);
    assert!(sleepers("1004").is_empty());
    assert!(entries(&f.work).is_empty());
}

/// As root: runs `rootless_entry` of this test binary as `regbuild-test-user`.
#[test]
fn rootless_basic_run() {
    need_root!();
    if Command::new("id")
        .arg(TEST_USER)
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        let ok = Command::new("useradd")
            .args(["-m", TEST_USER])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {TEST_USER}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let ok = Command::new("chown")
        .arg(format!("{TEST_USER}:"))
        .arg(tmp.path())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            TEST_USER,
            "--regid",
            TEST_USER,
            "--init-groups",
            "--",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rootless_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROOTLESS_DIR_ENV, tmp.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    if let Some(err) = text.lines().find_map(|l| l.strip_prefix("USERNS-ERROR ")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "this kernel cannot make a user namespace for {TEST_USER}, and CI is set: {err}"
        );
        println!("not run here: this kernel cannot make a user namespace for {TEST_USER}: {err}");
        assert!(
            [
                "kernel.",
                "user.max_user_namespaces",
                "container",
                "refused"
            ]
            .iter()
            .any(|c| err.contains(c)),
            "the error names no cause: {err}"
        );
        return;
    }
    let field = |k: &str| {
        text.lines()
            .find_map(|l| Some(l[l.find(k)? + k.len()..].to_string()))
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .to_string()
    };
    assert_eq!(field("STATUS "), "Exited(0)");
    assert_eq!(field("OUT "), "0 0 hi");
    assert!(field("MAPPING ").starts_with("Ranges"), "{text}");
    assert_eq!(field("NONE-NET "), "lo");
    assert_eq!(field("OPAQUE "), "y");
    if let Some(l) = text.lines().find(|l| l.contains("rootless run(")) {
        println!("{l}");
    }
    assert_eq!(
        field("SINGLE "),
        format!("SingleId 0 {} 1 1", uid_of(TEST_USER))
    );
    assert_eq!(field("UNMAPPED "), "ok");
    assert_eq!(field("KILL "), "1 Killed 0");
    let upper = tmp.path().join("upper");
    assert_eq!(fs::read_to_string(upper.join("f")).unwrap(), "hi\n");
    let wh = fs::symlink_metadata(upper.join("data/gone.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(entries(&upper), ["data", "f"]);
    assert!(entries(&tmp.path().join("work")).is_empty());
}

fn xattr(path: &Path, name: &str) -> String {
    let mut buf = [0u8; 16];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => format!("<{e}>"),
    }
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The unprivileged half of `rootless_basic_run`; does nothing unless that test runs it.
#[test]
fn rootless_entry() {
    let Some(dir) = std::env::var_os(ROOTLESS_DIR_ENV) else {
        return;
    };
    assert!(!is_root());
    let f = Fixture::at(Path::new(&dir));
    let spec = f.spec("echo $(id -u) $(id -g) hi; echo hi > /f; rm /data/gone.txt");
    match run(&spec) {
        Err(e @ SandboxError::UserNamespace { .. }) => {
            println!("USERNS-ERROR {e}");
            return;
        }
        Err(e) => panic!("{e}"),
        Ok((o, out, err)) => {
            println!("STATUS {:?}", o.status);
            println!("OUT {}", out.trim());
            println!("MAPPING {:?}", o.mapping);
            eprintln!("stderr: {err} warnings: {:?}", o.warnings);
        }
    }
    let none = tempfile::tempdir_in(&dir).unwrap();
    let mut spec = f.spec("cat /proc/net/dev");
    spec.upper_dir = none.path().join("u");
    spec.work_dir = none.path().join("w");
    fs::create_dir(&spec.upper_dir).unwrap();
    spec.network = Network::None;
    let (_, out, _) = run_ok(&spec);
    println!("NONE-NET {}", interfaces(&out).join(","));

    // An opaque directory, as overlay marks it in a user namespace.
    let op = tempfile::tempdir_in(&dir).unwrap();
    let mut spec = f.spec("rm -r /data && mkdir /data && echo n > /data/n");
    spec.upper_dir = op.path().join("u");
    spec.work_dir = op.path().join("w");
    fs::create_dir(&spec.upper_dir).unwrap();
    run_ok(&spec);
    println!(
        "OPAQUE {}",
        xattr(&spec.upper_dir.join("data"), "user.overlay.opaque")
    );

    // A single-id map: only 0 exists, and asking for another id is a typed error.
    let single = tempfile::tempdir_in(&dir).unwrap();
    let mut spec = f.spec("cat /proc/self/uid_map");
    spec.upper_dir = single.path().join("u");
    spec.work_dir = single.path().join("w");
    fs::create_dir(&spec.upper_dir).unwrap();
    let (o, out, _) = {
        let (mut out, mut o) = (Vec::new(), None);
        o.get_or_insert(
            sandbox()
                .single_id(true)
                .run(&spec, |_, c| out.extend_from_slice(c))
                .unwrap(),
        );
        (o.unwrap(), String::from_utf8(out).unwrap(), ())
    };
    let map: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    println!(
        "SINGLE {:?} {} {}",
        o.mapping,
        map.join(" "),
        o.warnings.len()
    );
    spec.uid = 1000;
    match sandbox().single_id(true).run(&spec, |_, _| {}) {
        Err(SandboxError::UnmappedId {
            what: "uid",
            id: 1000,
            ..
        }) => println!("UNMAPPED ok"),
        other => println!("UNMAPPED {other:?}"),
    }

    // Killing a rootless step leaves no process.
    let k = tempfile::tempdir_in(&dir).unwrap();
    let mut spec = f.spec(&(started_sleep("1006") + "echo ready; wait"));
    spec.upper_dir = k.path().join("u");
    spec.work_dir = k.path().join("w");
    fs::create_dir(&spec.upper_dir).unwrap();
    let mut running = sandbox().spawn(&spec).unwrap();
    wait_ready(&mut running);
    let before = sleepers("1006").len();
    running.kill_handle().kill();
    let status = running.wait().unwrap().status;
    println!("KILL {before} {status:?} {}", sleepers("1006").len());
}

/// As root: a process using the sandbox dies of SIGINT mid-step; the step's processes go
/// with it (the helper sees its control pipe close and kills the step's init).
#[test]
fn the_caller_dying_of_sigint_leaves_no_process() {
    need_root!();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigint_entry", "--nocapture", "--test-threads=1"])
        .env(SIGINT_DIR_ENV, tmp.path())
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "the entry ended early"
        );
    }
    let me = child.id();
    // The helper, a child of the entry process: watch it through a pidfd (stable while
    // its parent lives, which it does until the SIGINT below).
    let helper = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1));
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(&me.to_string())
                && String::from_utf8_lossy(&cmd).contains("__regbuild-sandbox-helper")
        })
        .expect("the helper runs");
    let pid = rustix::process::Pid::from_raw(helper).unwrap();
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    assert_eq!(sleepers("1007").len(), 1);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(me as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success());
    let mut fds = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    rustix::event::poll(&mut fds, None).unwrap();
    assert!(sleepers("1007").is_empty(), "the step outlived its caller");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(tmp.path().to_str().unwrap()));
}

/// The caller half of `the_caller_dying_of_sigint_leaves_no_process`.
#[test]
fn sigint_entry() {
    let Some(dir) = std::env::var_os(SIGINT_DIR_ENV) else {
        return;
    };
    let f = Fixture::at(Path::new(&dir));
    let mut running = sandbox()
        .spawn(&f.spec(&(started_sleep("1007") + "echo ready; wait")))
        .unwrap();
    wait_ready(&mut running);
    println!("READY");
    let mut s = String::new();
    let _ = std::io::stdin().read_line(&mut s); // until killed
    drop(running);
}

#[test]
fn lower_dirs_stack_bottom_to_top() {
    need_root!();
    let f = Fixture::new();
    let top = f.lower.parent().unwrap().join("top");
    fs::create_dir_all(top.join("data")).unwrap();
    fs::write(top.join("data/keep.txt"), "top\n").unwrap();
    let mut spec = f.spec("cat /data/keep.txt");
    spec.lower_dirs.push(top);
    let (_, out, _) = run_ok(&spec);
    assert_eq!(out, "top\n");
    assert!(entries(&f.upper).is_empty());
}

#[test]
fn a_copied_up_parent_of_a_mount_point_keeps_its_attributes() {
    need_root!();
    let f = Fixture::new();
    let etc = f.lower.join("etc");
    fs::create_dir(&etc).unwrap();
    fs::write(etc.join("passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
    std::os::unix::fs::chown(&etc, Some(5), Some(6)).unwrap();
    fs::set_permissions(&etc, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let want = fs::metadata(&etc).unwrap();
    // /etc/hosts etc. are missing from the lower: their mount points come from the stub
    // layer, whose /etc must look like the lower's when the step copies /etc up.
    run_ok(&f.spec("echo x > /etc/new && test -f /etc/passwd"));
    let got = fs::metadata(f.upper.join("etc")).unwrap();
    assert_eq!((got.uid(), got.gid(), got.mode() & 0o7777), (5, 6, 0o750));
    assert_eq!(entries(&f.upper.join("etc")), ["new"]);
    assert_eq!(entries(&etc), ["passwd"]);
    assert_eq!(want.mode() & 0o7777, 0o750);
}

#[test]
fn extra_bind_and_tmpfs_mounts_stay_out_of_upper() {
    need_root!();
    let f = Fixture::new();
    let host = f.lower.parent().unwrap().join("host-src");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("in.txt"), "from host\n").unwrap();
    let rw = f.lower.parent().unwrap().join("host-rw");
    fs::create_dir(&rw).unwrap();
    let mut spec = f.spec(
        "cat /mnt/src/in.txt; echo no > /mnt/src/x 2>/dev/null && echo ro-writable; \
         echo yes > /cache/out.txt; echo t > /scratch/t; cat /scratch/t",
    );
    spec.mounts = vec![
        Mount::Bind {
            source: host.clone(),
            target: "/mnt/src".into(),
            readonly: true,
        },
        Mount::Bind {
            source: rw.clone(),
            target: "/cache".into(),
            readonly: false,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size_bytes: Some(1 << 20),
        },
    ];
    let (_, out, _) = run_ok(&spec);
    assert_eq!(out, "from host\nt\n");
    assert_eq!(fs::read_to_string(rw.join("out.txt")).unwrap(), "yes\n");
    assert!(!host.join("x").exists());
    assert!(
        entries(&f.upper).is_empty(),
        "upper holds {:?}",
        entries(&f.upper)
    );
}

#[test]
fn a_recreated_directory_is_opaque_in_upper() {
    need_root!();
    let f = Fixture::new();
    run_ok(&f.spec("rm -r /data && mkdir /data && echo n > /data/n"));
    assert_eq!(xattr(&f.upper.join("data"), "trusted.overlay.opaque"), "y");
    assert_eq!(entries(&f.upper.join("data")), ["n"]);
}

#[test]
fn a_missing_working_directory_is_named() {
    need_root!();
    let f = Fixture::new();
    let mut spec = f.spec("true");
    spec.cwd = "/no/such/dir".into();
    match run(&spec) {
        Err(e @ SandboxError::Setup { .. }) => {
            assert!(e.to_string().contains("/no/such/dir"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_plain_root_is_changed_in_place_with_mount_points_made_beforehand() {
    need_root!();
    let f = Fixture::new();
    let outside = f.work.parent().unwrap().join("outside");
    fs::create_dir(&outside).unwrap();
    // A symlink where /etc/resolv.conf is mounted must be replaced, never followed.
    fs::create_dir(f.lower.join("etc")).unwrap();
    std::os::unix::fs::symlink(outside.join("resolv.conf"), f.lower.join("etc/resolv.conf"))
        .unwrap();
    let mut spec = Spec::new(
        Vec::new(),
        &f.lower,
        &f.work,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "rm /data/gone.txt && echo new > /data/new && cat /proc/self/comm >/dev/null \
             && echo ok > /mnt/t/f"
                .into(),
        ],
    );
    spec.env = vec![("PATH".into(), "/bin".into())];
    spec.plain_root = true;
    spec.mounts = vec![Mount::Tmpfs {
        target: "/mnt/t".into(),
        size_bytes: None,
    }];
    regbuild_sandbox::prepare_plain_root(&spec).unwrap();
    for made in [
        "proc",
        "dev",
        "sys",
        "mnt/t",
        "etc/hosts",
        "etc/resolv.conf",
    ] {
        assert!(f.lower.join(made).exists(), "{made} made beforehand");
    }
    assert!(fs::symlink_metadata(f.lower.join("etc/resolv.conf"))
        .unwrap()
        .is_file());
    assert!(entries(&outside).is_empty(), "the symlink was not followed");
    run_ok(&spec);
    assert!(!f.lower.join("data/gone.txt").exists());
    assert_eq!(
        fs::read_to_string(f.lower.join("data/new")).unwrap(),
        "new\n"
    );
    assert!(
        entries(&f.lower.join("mnt/t")).is_empty(),
        "the tmpfs is gone"
    );
    assert!(entries(&f.lower.join("proc")).is_empty());
    assert!(entries(&f.upper).is_empty(), "no overlay");

    spec.lower_dirs = vec![f.lower.clone()];
    assert!(matches!(
        regbuild_sandbox::prepare_plain_root(&spec),
        Err(SandboxError::InvalidSpec(_))
    ));
}

#[test]
fn an_overlay_that_cannot_be_mounted_is_told_apart_and_nothing_runs() {
    need_root!();
    let f = Fixture::new();
    // More lower directories than the kernel's 4095 bytes of mount options can name.
    let mut lowers = vec![f.lower.clone()];
    for i in 0..40 {
        let d = f.work.parent().unwrap().join(format!("{i:0>120}"));
        fs::create_dir(&d).unwrap();
        lowers.push(d);
    }
    let marker = f.work.parent().unwrap().join("ran");
    let mut spec = f.spec("true");
    spec.lower_dirs = lowers;
    spec.mounts = vec![Mount::Bind {
        source: f.work.parent().unwrap().to_path_buf(),
        target: "/host".into(),
        readonly: false,
    }];
    spec.argv = vec!["/bin/touch".into(), "/host/ran".into()];
    let err = run(&spec).unwrap_err();
    assert!(matches!(err, SandboxError::Overlay { .. }), "{err}");
    let why = err.overlay_unavailable().expect("a reason to fall back");
    assert!(why.starts_with("options too long"), "{why}");
    assert!(!marker.exists(), "nothing ran");
    assert!(entries(&f.work).is_empty(), "{:?}", entries(&f.work));
    let other = SandboxError::Setup {
        step: "x".into(),
        message: "y".into(),
    };
    assert_eq!(other.overlay_unavailable(), None);
}
