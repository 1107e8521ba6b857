//! Work of this program, outside any step, as root of a user namespace that maps the user's
//! subordinate ids (`/etc/subuid`, `/etc/subgid` through `newuidmap`/`newgidmap`): what a
//! rootless build must do with owners other than its own, such as unpacking a base layer
//! whose files belong to `app` or `_apt`. On the host those files then belong to the
//! matching subordinate ids, so the steps, whose namespace maps the same ranges, see the
//! owners the image says.
//!
//! The caller ([`run_task`]) starts this program again with [`USERNS_MARKER`], a task name
//! and its arguments; the new process ([`enter_if_task`], first thing in `main`, while it
//! is single-threaded) unshares its user namespace, says so with one byte on stdout, waits
//! for one byte on stdin while the caller writes the maps, becomes root of the namespace and
//! returns the task for `main` to run; its stdout and stderr are the task's answer. Only
//! with subordinate ranges: with a single-id map nothing could be owned by anyone else.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use rustix::thread::{unshare_unsafe, UnshareFlags};

use crate::error::SandboxError;
use crate::idmap::{self, MappingKind};

/// argv[1] that makes this program run a task in a user namespace.
pub const USERNS_MARKER: &str = "__regbuild-userns-task";
const READY: u8 = b'u';
const GO: u8 = b'g';

/// Whether [`run_task`] can map more than the user's own id here (subordinate ranges and
/// the setuid map tools exist). Root needs no namespace at all.
pub fn ranges_available() -> bool {
    matches!(idmap::plan(false).kind, MappingKind::Ranges { .. })
}

/// Runs `task` with `args` in `exe` (this program: `/proc/self/exe`) as root of a user
/// namespace mapping the user's subordinate ranges; returns its output once it ended.
pub fn run_task(
    exe: &Path,
    task: &str,
    args: &[OsString],
) -> Result<std::process::Output, SandboxError> {
    let plan = idmap::plan(false);
    if !matches!(plan.kind, MappingKind::Ranges { .. }) {
        return Err(SandboxError::Helper(
            "no subordinate id ranges for this user".into(),
        ));
    }
    let mut child = Command::new(exe)
        .arg(USERNS_MARKER)
        .arg(task)
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SandboxError::io(format!("starting {}", exe.display()), e))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut ready = [0u8; 1];
    let started = stdout.read_exact(&mut ready).is_ok() && ready[0] == READY;
    if started {
        plan.apply(child.id())?;
        let _ = stdin.write_all(&[GO]);
    }
    drop(stdin);
    let mut out = Vec::new();
    let _ = stdout.read_to_end(&mut out);
    let mut err = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut err);
    }
    let status = child
        .wait()
        .map_err(|e| SandboxError::io("waiting for the user-namespace task", e))?;
    if !started {
        return Err(SandboxError::Helper(format!(
            "the user-namespace task did not start ({status}): {}",
            String::from_utf8_lossy(&err).trim()
        )));
    }
    Ok(std::process::Output {
        status,
        stdout: out,
        stderr: err,
    })
}

/// If this process was started by [`run_task`]: enters the namespace and returns the task
/// and its arguments (the caller runs it and exits); else None. Call it first in `main`.
pub fn enter_if_task() -> Option<(String, Vec<OsString>)> {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() != Some(USERNS_MARKER.as_ref()) {
        return None;
    }
    let task = args.next()?.to_string_lossy().into_owned();
    let rest: Vec<OsString> = args.collect();
    let fail = |what: &str, e: std::io::Error| -> ! {
        eprintln!("{what}: {e}");
        std::process::exit(1)
    };
    // SAFETY: called first thing in main, before any thread exists.
    if let Err(e) = unsafe { unshare_unsafe(UnshareFlags::NEWUSER) } {
        fail("unshare(CLONE_NEWUSER)", e.into());
    }
    let mut stdout = std::io::stdout();
    if let Err(e) = stdout.write_all(&[READY]).and_then(|()| stdout.flush()) {
        fail("signalling the caller", e);
    }
    let mut go = [0u8; 1];
    if std::io::stdin().read_exact(&mut go).is_err() || go[0] != GO {
        std::process::exit(1);
    }
    let root_gid = rustix::process::Gid::from_raw(0);
    let root_uid = rustix::process::Uid::from_raw(0);
    if let Err(e) = rustix::thread::set_thread_groups(&[]) {
        fail("setgroups", e.into());
    }
    if let Err(e) = rustix::thread::set_thread_res_gid(root_gid, root_gid, root_gid) {
        fail("setresgid(0)", e.into());
    }
    if let Err(e) = rustix::thread::set_thread_res_uid(root_uid, root_uid, root_uid) {
        fail("setresuid(0)", e.into());
    }
    Some((task, rest))
}
