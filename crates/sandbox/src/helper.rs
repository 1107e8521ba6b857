//! The helper processes: the code that runs in the namespaces.
//!
//! For the child side only. The caller's process spawns a fresh helper process (a binary
//! that calls [`main_if_helper`] first thing in `main`, argv[1] = [`HELPER_MARKER`]), so no
//! work happens between `fork` and `exec` of a multi-threaded program except the `dup2`s in
//! `Command::pre_exec`. The helper is single-threaded, so it may `fork` freely:
//!
//! 1. **stage 1** (the helper): reads the [`Request`] on stdin; rootless, it unshares the
//!    user namespace, reports [`Event::UserNs`] and waits for [`GO`] while the caller writes
//!    the id maps; then it unshares mount, pid, ipc, uts (and net) namespaces and forks
//!    **init**. It waits on init through a pidfd while watching fd 4: [`KILL`] or end of
//!    file (the caller died or dropped the step) makes it SIGKILL init. Init's exit only
//!    completes once every process of its pid namespace is gone, so when stage 1 exits the
//!    step left no process.
//! 2. **init** (pid 1 of the new pid namespace, `PR_SET_PDEATHSIG` = SIGKILL): makes `/`
//!    private, mounts the overlay and `/proc`, `/dev`, `/sys`, the `/etc` files and the extra
//!    mounts, `pivot_root`s, spawns the command with exactly the given environment, reaps
//!    every orphan, and reports the command's exit status. Everything is mounted in the
//!    private mount namespace, which vanishes with its last process. Rootless, before
//!    reporting, it gives the caller access to what the command left in the upper directory
//!    (`open_up`).
//!
//! Not for: deciding id maps (the caller does, `idmap`), or streaming output (the command
//! inherits the stdout/stderr pipes the caller reads).

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::mount::{
    mount, mount_bind, mount_bind_recursive, mount_change, mount_remount, unmount, MountFlags,
    MountPropagationFlags, UnmountFlags,
};
use rustix::process::{
    pidfd_open, pidfd_send_signal, waitpid, Pid, PidfdFlags, Signal, WaitOptions,
};
use rustix::thread::{unshare_unsafe, UnshareFlags};

use crate::protocol::{ErrorKind, Event, Request, CTL_FD, GO, GO_FD, HELPER_MARKER, KILL};
use crate::spec::{Mount, Network, Spec};

/// If this process was started as the sandbox helper, run it and exit; else return.
///
/// Call it first thing in `main` of the binary that [`crate::Sandbox`] is given (or of the
/// program itself when it uses [`crate::Sandbox::current_exe`]).
pub fn main_if_helper() {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() != Some(HELPER_MARKER.as_ref()) {
        return;
    }
    // SAFETY: the caller placed these descriptors with dup2 before exec (protocol).
    let ctl = unsafe { File::from_raw_fd(CTL_FD) };
    let go = unsafe { File::from_raw_fd(GO_FD) };
    // Only the helpers hold them: the command must not inherit them.
    for f in [&ctl, &go] {
        let _ = rustix::io::fcntl_setfd(f, rustix::io::FdFlags::CLOEXEC);
    }
    let mut ctl = Reporter(ctl);
    let code = match stage1(&mut ctl, go) {
        Ok(()) => 0,
        Err(e) => {
            ctl.send(&e);
            1
        }
    };
    std::process::exit(code);
}

struct Reporter(File);

impl Reporter {
    fn send(&mut self, event: &Event) {
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        // One write per event: atomic on a pipe below PIPE_BUF, and both helpers share it.
        let _ = self.0.write_all(&line);
    }
    fn warn(&mut self, message: String) {
        self.send(&Event::Warning { message });
    }
}

fn fail(kind: ErrorKind, step: impl Into<String>, e: impl Into<io::Error>) -> Event {
    let e: io::Error = e.into();
    Event::Error {
        kind,
        step: step.into(),
        errno: e.raw_os_error(),
        message: e.to_string(),
    }
}

fn setup_err<E: Into<io::Error>>(step: impl Into<String>) -> impl FnOnce(E) -> Event {
    let step = step.into();
    move |e| fail(ErrorKind::Setup, step, e)
}

fn stage1(ctl: &mut Reporter, mut go: File) -> Result<(), Event> {
    let mut input = Vec::new();
    io::stdin()
        .read_to_end(&mut input)
        .map_err(setup_err("reading the request"))?;
    let req: Request = serde_json::from_slice(&input).map_err(|e| Event::Error {
        kind: ErrorKind::Setup,
        step: "reading the request".into(),
        errno: None,
        message: e.to_string(),
    })?;

    if req.user_ns {
        // SAFETY: single-threaded process; unsharing the user namespace affects only us.
        unsafe { unshare_unsafe(UnshareFlags::NEWUSER) }
            .map_err(|e| fail(ErrorKind::UserNs, "unshare(CLONE_NEWUSER)", e))?;
        ctl.send(&Event::UserNs);
        let mut b = [0u8; 1];
        match go.read(&mut b) {
            Ok(1) if b[0] == GO => {}
            _ => std::process::exit(0), // killed, or the caller went away
        }
        if req.setgroups {
            rustix::thread::set_thread_groups(&[]).map_err(setup_err("setgroups"))?;
        }
        let root_gid = rustix::process::Gid::from_raw(0);
        let root_uid = rustix::process::Uid::from_raw(0);
        rustix::thread::set_thread_res_gid(root_gid, root_gid, root_gid)
            .map_err(setup_err("setresgid(0) in the user namespace"))?;
        rustix::thread::set_thread_res_uid(root_uid, root_uid, root_uid)
            .map_err(setup_err("setresuid(0) in the user namespace"))?;
    }

    let mut flags =
        UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    if req.spec.network == Network::None {
        flags |= UnshareFlags::NEWNET;
    }
    // SAFETY: single-threaded process.
    unsafe { unshare_unsafe(flags) }.map_err(|e| fail(ErrorKind::Namespaces, "unshare", e))?;

    // A pipe whose write end only stage 1 holds: init sees it hang up if stage 1 died
    // before init set its parent-death signal.
    let (alive_r, alive_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(setup_err("pipe"))?;
    // SAFETY: this process is single-threaded (the helper starts no threads), so the child
    // may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(fail(ErrorKind::Setup, "fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(alive_w);
        drop(go);
        let code = match init(&req, ctl, alive_r) {
            Ok(event) => {
                ctl.send(&event);
                0
            }
            Err(event) => {
                ctl.send(&event);
                1
            }
        };
        std::process::exit(code);
    }
    drop(alive_r);
    let init_pid = Pid::from_raw(pid).expect("fork returned a positive pid");
    let pidfd = pidfd_open(init_pid, PidfdFlags::empty()).map_err(setup_err("pidfd_open"))?;
    let mut killed = false;
    let mut go_open = true;
    loop {
        let mut fds = vec![PollFd::new(&pidfd, PollFlags::IN)];
        if go_open {
            fds.push(PollFd::new(&go, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(fail(ErrorKind::Setup, "poll", e)),
            Ok(_) => {}
        }
        let init_done = !fds[0].revents().is_empty();
        let go_ready = go_open && !fds[1].revents().is_empty();
        drop(fds);
        if init_done {
            break;
        }
        if go_ready {
            let mut b = [0u8; 1];
            let n = go.read(&mut b).unwrap_or(0);
            if n == 0 || b[0] == KILL {
                go_open = false;
                killed = true;
                let _ = pidfd_send_signal(&pidfd, Signal::KILL);
            }
        }
    }
    let status = loop {
        match waitpid(Some(init_pid), WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(Some((_, st))) => break st,
            Ok(None) => continue,
            Err(e) => return Err(fail(ErrorKind::Setup, "waitpid(init)", e)),
        }
    };
    drop(alive_w);
    if killed {
        ctl.send(&Event::Killed);
    } else if let Some(sig) = status.terminating_signal() {
        return Err(Event::Error {
            kind: ErrorKind::Setup,
            step: "init".into(),
            errno: None,
            message: format!("the sandbox's init died of signal {sig}"),
        });
    }
    // Otherwise init reported the outcome (or its error) itself.
    Ok(())
}

/// pid 1 of the step's pid namespace. Returns the event that tells how the command ended.
fn init(req: &Request, ctl: &mut Reporter, alive: OwnedFd) -> Result<Event, Event> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(setup_err("prctl(PR_SET_PDEATHSIG)"))?;
    let mut fds = [PollFd::new(&alive, PollFlags::IN)];
    let _ = poll(
        &mut fds,
        Some(&rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
    );
    if !fds[0].revents().is_empty() {
        std::process::exit(1); // stage 1 is gone already
    }
    let spec = &req.spec;
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(setup_err("making / private"))?;
    rustix::system::sethostname(spec.hostname.as_bytes()).map_err(setup_err("sethostname"))?;
    if spec.network == Network::None {
        loopback_up().map_err(setup_err("bringing lo up"))?;
    }

    // The merged view's layers, top first: upper, then lowers top to bottom (a plain
    // root is its one layer, and its own stub layer).
    let mut layers: Vec<&Path> = vec![&spec.upper_dir];
    layers.extend(spec.lower_dirs.iter().rev().map(PathBuf::as_path));
    let targets = mount_targets(spec).map_err(|(what, e)| fail(ErrorKind::Setup, what, e))?;
    let stubs: &Path = if spec.plain_root {
        &spec.upper_dir
    } else {
        fs::create_dir_all(&req.stubs).map_err(setup_err("creating the stub layer"))?;
        &req.stubs
    };
    let mut usable = Vec::new();
    for (target, is_dir, required) in &targets {
        match stub(&layers, stubs, target, *is_dir, spec.plain_root) {
            Ok(()) => usable.push(true),
            Err(why) if !required => {
                ctl.warn(format!("{} not mounted: {why}", target.display()));
                usable.push(false);
            }
            Err(why) => {
                return Err(Event::Error {
                    kind: ErrorKind::Setup,
                    step: format!("mount target {}", target.display()),
                    errno: None,
                    message: why.to_string(),
                })
            }
        }
    }

    let root = &req.root;
    if spec.plain_root {
        mount_bind(&spec.upper_dir, root)
            .map_err(setup_err("bind-mounting the root filesystem"))?;
    } else {
        mount_overlay(req)?;
    }

    let r = |p: &str| root.join(p);
    let nsx = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    mount("proc", r("proc"), "proc", nsx, None).map_err(setup_err("mounting /proc"))?;
    mount_dev(&r("dev"))?;
    if mount("sysfs", r("sys"), "sysfs", nsx | MountFlags::RDONLY, None).is_err() {
        // A sysfs of our own needs a network namespace we own (rootless, host network):
        // bind the host's, read-only as far as the kernel lets us.
        mount_bind_recursive("/sys", r("sys")).map_err(setup_err("mounting /sys"))?;
        if mount_remount(r("sys"), MountFlags::BIND | MountFlags::RDONLY | nsx, "").is_err() {
            ctl.warn("/sys is the host's, bound read-write: it could not be made read-only".into());
        }
    }
    for (i, name) in ["resolv.conf", "hosts", "hostname"].iter().enumerate() {
        if usable[3 + i] {
            mount_bind(req.files.join(name), root.join("etc").join(name))
                .map_err(setup_err(format!("mounting /etc/{name}")))?;
        }
    }
    for m in &spec.mounts {
        let target = root.join(m.target().strip_prefix("/").unwrap_or(m.target()));
        match m {
            Mount::Bind {
                source, readonly, ..
            } => {
                mount_bind_recursive(source, &target)
                    .map_err(setup_err(format!("bind-mounting {}", source.display())))?;
                if *readonly {
                    mount_remount(&target, MountFlags::BIND | MountFlags::RDONLY, "").map_err(
                        setup_err(format!("making {} read-only", m.target().display())),
                    )?;
                }
            }
            Mount::Tmpfs { size_bytes, .. } => {
                let data = match size_bytes {
                    Some(n) => format!("mode=755,size={n}"),
                    None => "mode=755".to_string(),
                };
                let data = CString::new(data).expect("no NUL");
                mount(
                    "tmpfs",
                    &target,
                    "tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    data.as_c_str(),
                )
                .map_err(setup_err(format!(
                    "mounting tmpfs at {}",
                    m.target().display()
                )))?;
            }
        }
    }

    // Rootless: the upper directory, and the file that lists what was opened up in it,
    // reachable after pivot_root only through these.
    let upper_fd = if req.user_ns {
        use rustix::fs::{Mode, OFlags};
        let dir = rustix::fs::open(
            &spec.upper_dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(setup_err("opening the upper directory"))?;
        let list = File::create(req.files.join(crate::protocol::OPENED_UP_FILE))
            .map_err(setup_err("creating the opened-up list"))?;
        Some((dir, list))
    } else {
        None
    };
    rustix::process::chdir(root).map_err(setup_err("chdir to the new root"))?;
    rustix::process::pivot_root(".", ".").map_err(setup_err("pivot_root"))?;
    unmount(".", UnmountFlags::DETACH).map_err(setup_err("detaching the old root"))?;
    rustix::process::chdir("/").map_err(setup_err("chdir /"))?;

    if !spec.cwd.is_dir() {
        return Err(Event::Error {
            kind: ErrorKind::Setup,
            step: "working directory".into(),
            errno: None,
            message: format!(
                "{} is not a directory in the root filesystem",
                spec.cwd.display()
            ),
        });
    }
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .gid(spec.gid)
        .uid(spec.uid);
    let child = cmd
        .spawn()
        .map_err(|e| fail(ErrorKind::Exec, spec.argv[0].clone(), e))?;
    let main = child.id() as i32;
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, st))) if pid.as_raw_nonzero().get() == main => {
                if let Some((dir, list)) = &upper_fd {
                    // The step is over when its command is (as in Docker): what it left
                    // running goes first, so nothing changes the tree while it is opened up.
                    end_the_rest();
                    let entries = crate::open_up::open_up(dir, !spec.plain_root)
                        .map_err(|e| fail(ErrorKind::Setup, "opening up the upper directory", e))?;
                    crate::open_up::write_list(list, &entries)
                        .map_err(|e| fail(ErrorKind::Setup, "writing the opened-up list", e))?;
                }
                let st = std::process::ExitStatus::from_raw(st.as_raw());
                return Ok(match (st.code(), st.signal()) {
                    (Some(code), _) => Event::Exited { code },
                    (None, Some(signal)) => Event::Signaled { signal },
                    _ => Event::Exited { code: 255 },
                });
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(fail(ErrorKind::Setup, "wait", e)),
        }
    }
}

/// From pid 1: kills every other process of the namespace and reaps them.
fn end_the_rest() {
    // SAFETY: kill(-1) from pid 1 signals every other process of its pid namespace.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    while let Ok(Some(_)) | Err(rustix::io::Errno::INTR) =
        rustix::process::wait(WaitOptions::empty())
    {}
}

/// A place the sandbox mounts something: (path, is a directory, required).
pub(crate) type Target = (PathBuf, bool, bool);

/// Where the sandbox mounts something. The `/etc` files are optional (a directory or a
/// dangling parent there is warned of).
pub(crate) fn mount_targets(spec: &Spec) -> Result<Vec<Target>, (String, io::Error)> {
    let mut targets: Vec<Target> = vec![
        ("/proc".into(), true, true),
        ("/dev".into(), true, true),
        ("/sys".into(), true, true),
        ("/etc/resolv.conf".into(), false, false),
        ("/etc/hosts".into(), false, false),
        ("/etc/hostname".into(), false, false),
    ];
    for m in &spec.mounts {
        let is_dir = match m {
            Mount::Tmpfs { .. } => true,
            Mount::Bind { source, .. } => fs::metadata(source)
                .map_err(|e| (format!("bind source {}", source.display()), e))?
                .is_dir(),
        };
        targets.push((m.target().to_path_buf(), is_dir, true));
    }
    Ok(targets)
}

/// Mounts the overlay of `req.spec` on `req.root`. Its failures are [`ErrorKind::Overlay`]:
/// nothing has run yet, so the caller may fall back to a plain root.
fn mount_overlay(req: &Request) -> Result<(), Event> {
    let spec = &req.spec;
    let esc = |p: &Path| {
        p.to_string_lossy()
            .replace('\\', "\\\\")
            .replace(':', "\\:")
            .replace(',', "\\,")
    };
    let mut lower = esc(&req.stubs);
    for l in spec.lower_dirs.iter().rev() {
        lower.push(':');
        lower.push_str(&esc(l));
    }
    // The upper dir must be self-contained: no redirects, no metacopy, no index. In a user
    // namespace, `userxattr` already rules redirects and metacopy out, and the kernel
    // refuses an explicit `redirect_dir=off` beside it. `volatile`: no sync of the upper
    // filesystem at unmount (a step that did not finish is redone, never resumed); the
    // work dir it marks dirty is removed after the step.
    let mut opts = format!(
        "lowerdir={lower},upperdir={},workdir={},metacopy=off,index=off,volatile",
        esc(&spec.upper_dir),
        esc(&req.ovl_work)
    );
    opts.push_str(if req.user_ns {
        ",userxattr"
    } else {
        ",redirect_dir=off"
    });
    let opts = CString::new(opts)
        .map_err(|e| fail(ErrorKind::Overlay, "overlay options", io::Error::other(e)))?;
    if opts.as_bytes().len() >= 4096 {
        return Err(Event::Error {
            kind: ErrorKind::Overlay,
            step: "mounting the overlay".into(),
            errno: None,
            message: format!(
                "the overlay options are {} bytes, over the kernel's 4095: use fewer or shorter lower directories",
                opts.as_bytes().len()
            ),
        });
    }
    mount(
        "overlay",
        &req.root,
        "overlay",
        MountFlags::empty(),
        opts.as_c_str(),
    )
    .map_err(|e| {
        let mut ev = fail(ErrorKind::Overlay, "mounting the overlay", e);
        if let Event::Error { message, .. } = &mut ev {
            message.push_str(if req.user_ns {
                " (rootless overlayfs needs Linux 5.11 or later for userxattr, an upper \
                 filesystem with user xattrs, and upper/work dirs on one filesystem)"
            } else {
                " (upper and work dirs must be on one filesystem that supports overlay \
                 upper dirs: not overlayfs itself, nor NFS)"
            });
        }
        ev
    })?;

    Ok(())
}

/// Why a mount target could not be made in the stub layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StubError {
    #[error("{0} is a directory")]
    IsADirectory(PathBuf),
    #[error("/{path} exists and is not a {wanted}")]
    WrongType { path: PathBuf, wanted: &'static str },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Makes sure `target` exists in the merged view, as a directory when `is_dir`, by creating
/// it (and any missing parent) in the stub layer, which sits above the lower directories and
/// below the upper one, so no mount point ever lands in the upper directory. A parent that
/// exists in the merged view is recreated in the stub layer with the same mode, owner and
/// times, so that a later copy-up of it stays faithful. With `plain` (a plain root, which
/// is its own stub layer), a symlink where a file goes is removed first, never followed.
pub(crate) fn stub(
    layers: &[&Path],
    stubs: &Path,
    target: &Path,
    is_dir: bool,
    plain: bool,
) -> Result<(), StubError> {
    let rel: PathBuf = target
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let comps: Vec<_> = rel.components().collect();
    let mut cur = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let last = i + 1 == comps.len();
        let found = merged_lookup(layers, &cur);
        let in_stub = stubs.join(&cur);
        match found {
            Some(m) if m.is_dir() => {
                if last {
                    if !is_dir {
                        return Err(StubError::IsADirectory(target.to_path_buf()));
                    }
                    return Ok(());
                }
                if !in_stub.exists() {
                    fs::create_dir(&in_stub)?;
                    copy_attrs(&in_stub, &m)?;
                }
            }
            Some(m) if last && !is_dir && m.file_type().is_file() => return Ok(()),
            Some(m) if !last || is_dir || !m.file_type().is_symlink() => {
                return Err(StubError::WrongType {
                    path: cur,
                    wanted: if last && !is_dir { "file" } else { "directory" },
                })
            }
            // Missing, or a symlink where a file goes (resolv.conf -> ../run/…): shadow it.
            _ => {
                if last && !is_dir {
                    if plain && found.is_some() {
                        fs::remove_file(&in_stub)?;
                    }
                    File::create(&in_stub)?;
                } else {
                    fs::create_dir_all(&in_stub)?;
                    fs::set_permissions(&in_stub, fs::Permissions::from_mode(0o755))?;
                }
                if !last || is_dir {
                    continue;
                }
                return Ok(());
            }
        }
    }
    Ok(())
}

fn copy_attrs(path: &Path, m: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(m.uid()), Some(m.gid()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    let times = fs::FileTimes::new()
        .set_accessed(m.accessed()?)
        .set_modified(m.modified()?);
    File::open(path)?.set_times(times)
}

/// What overlayfs would show at `rel`: the top-most entry, honouring whiteouts (0/0
/// character devices) and opaque directories.
fn merged_lookup(layers: &[&Path], rel: &Path) -> Option<fs::Metadata> {
    let mut active: Vec<&Path> = layers.to_vec();
    let mut cur = PathBuf::new();
    let mut found = None;
    for c in rel.components() {
        cur.push(c);
        let mut next = Vec::new();
        found = None;
        for layer in &active {
            let p = layer.join(&cur);
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.file_type().is_char_device() && m.rdev() == 0 {
                break;
            }
            if m.is_dir() {
                if found.is_none() {
                    found = Some(m);
                }
                next.push(*layer);
                if is_opaque(&p) {
                    break;
                }
            } else {
                if found.is_none() {
                    found = Some(m);
                }
                break;
            }
        }
        match &found {
            Some(m) if m.is_dir() => active = next,
            _ => break,
        }
    }
    if found.is_some() && cur == rel {
        found
    } else {
        None
    }
}

fn is_opaque(p: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut buf = [0u8; 4];
            matches!(rustix::fs::lgetxattr(p, *name, &mut buf[..]), Ok(1) if buf[0] == b'y')
        })
}

fn mount_dev(dev: &Path) -> Result<(), Event> {
    let data = CString::new("mode=755,size=65536k").expect("no NUL");
    mount(
        "tmpfs",
        dev,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        data.as_c_str(),
    )
    .map_err(setup_err("mounting /dev"))?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        File::create(&target).map_err(setup_err(format!("creating /dev/{name}")))?;
        mount_bind(Path::new("/dev").join(name), &target)
            .map_err(setup_err(format!("binding /dev/{name}")))?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(name))
            .map_err(setup_err(format!("/dev/{name}")))?;
    }
    let shm = dev.join("shm");
    fs::create_dir(&shm).map_err(setup_err("/dev/shm"))?;
    let data = CString::new("mode=1777,size=65536k").expect("no NUL");
    mount(
        "shm",
        &shm,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        data.as_c_str(),
    )
    .map_err(setup_err("mounting /dev/shm"))?;
    Ok(())
}

/// `ip link set lo up` in the new network namespace (libc: rustix has no SIOCSIFFLAGS).
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed, NUL-terminated ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(s);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(sock);
    }
    Ok(())
}
