//! What the sandbox's end-to-end tests share: a tiny busybox root filesystem built from the
//! host, running a spec and collecting its output, and the processes a step may have left.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use regbuild_sandbox::{Outcome, Sandbox, SandboxError, Spec, Status, Stream};

pub fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_regbuild-sandbox-helper"))
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub struct Fixture {
    pub _tmp: Option<tempfile::TempDir>,
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let mut f = Fixture::at(tmp.path());
        f._tmp = Some(tmp);
        f
    }

    /// A root filesystem in `dir/lower` (busybox and its applets, a /data with two files),
    /// an empty `dir/upper` and `dir/work`.
    pub fn at(dir: &Path) -> Fixture {
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "these tests need /bin/busybox: apt-get install -y busybox-static"
        );
        let lower = dir.join("lower");
        fs::create_dir_all(lower.join("bin")).unwrap();
        fs::copy(busybox, lower.join("bin/busybox")).unwrap();
        for app in [
            "sh", "echo", "ls", "cat", "touch", "rm", "id", "mkdir", "ln", "ip", "ping", "env",
            "sleep", "hostname", "grep", "true", "chroot", "head", "wc", "setsid", "stat", "chown",
            "mount",
        ] {
            std::os::unix::fs::symlink("busybox", lower.join("bin").join(app)).unwrap();
        }
        fs::create_dir(lower.join("data")).unwrap();
        fs::write(lower.join("data/keep.txt"), "lower\n").unwrap();
        fs::write(lower.join("data/gone.txt"), "bye\n").unwrap();
        let upper = dir.join("upper");
        let work = dir.join("work");
        fs::create_dir(&upper).unwrap();
        fs::create_dir(&work).unwrap();
        Fixture {
            _tmp: None,
            lower,
            upper,
            work,
        }
    }

    pub fn spec(&self, script: &str) -> Spec {
        let mut spec = Spec::new(
            vec![self.lower.clone()],
            &self.upper,
            &self.work,
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        );
        spec.env = vec![("PATH".into(), "/bin".into())];
        spec
    }
}

pub fn run(spec: &Spec) -> Result<(Outcome, String, String), SandboxError> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = sandbox().run(spec, |s, chunk| match s {
        Stream::Stdout => out.extend_from_slice(chunk),
        Stream::Stderr => err.extend_from_slice(chunk),
    })?;
    Ok((
        outcome,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    ))
}

pub fn run_ok(spec: &Spec) -> (Outcome, String, String) {
    let (o, out, err) = run(spec).unwrap();
    assert_eq!(o.status, Status::Exited(0), "stdout: {out}\nstderr: {err}");
    (o, out, err)
}

pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A shell snippet that starts `sleep <secs>` in the background and returns only once it
/// runs `sleep` (so that the tests' checks of /proc cannot race with its start).
pub fn started_sleep(secs: &str) -> String {
    // `comm` turns from `sh` to `sleep` at exec (the forked shell's cmdline would already
    // hold the script's text).
    format!(
        "sleep {secs} & p=$!; until [ \"$(cat /proc/$p/comm 2>/dev/null)\" = sleep ]; do :; done; "
    )
}

/// Processes whose argv is exactly `sleep <secs>`.
pub fn sleepers(secs: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            args.len() == 2 && args[0].ends_with(b"sleep") && args[1] == secs.as_bytes()
        })
        .collect()
}

macro_rules! need_root {
    () => {
        if !is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "needs root, and CI is set"
            );
            eprintln!("not run here: needs root");
            return;
        }
    };
}
