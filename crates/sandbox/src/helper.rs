//! The helper processes: the code that runs in the namespaces.
//!
//! For the child side only. The caller's process spawns a fresh helper process (a binary
//! that calls [`main_if_helper`] first thing in `main`, argv[1] = [`HELPER_MARKER`]), so no
//! work happens between `fork` and `exec` of a multi-threaded program except the `dup2`s in
//! `Command::pre_exec`. The helper is single-threaded, so it may `fork` freely:
//!
//! 1. **stage 1** (the helper): starts a session of its own (no controlling terminal for
//!    anything of the step), closes every descriptor it did not get from the protocol
//!    (regbuild's caller may have left some open); reads the [`Request`] on stdin;
//!    rootless, it unshares the user namespace, reports [`Event::UserNs`] and waits for
//!    [`GO`] while the caller writes the id maps; then it unshares mount, pid, ipc, uts (and
//!    net) namespaces and forks **init**. It waits on init through a pidfd while watching
//!    fd 4: [`KILL`] or end of file (the caller died or dropped the step) makes it SIGKILL
//!    init. Init's exit only completes once every process of its pid namespace is gone, so
//!    when stage 1 goes on, the step left no process. Rootless, stage 1 then gives the
//!    caller access to what the step left in the upper directory (`open_up`), through a
//!    descriptor it opened before init existed: stage 1 is outside the step's pid
//!    namespace, so nothing of the step can see it, let alone that descriptor.
//! 2. **init** (pid 1 of the new pid namespace, `PR_SET_PDEATHSIG` = SIGKILL, not
//!    dumpable, holding no descriptor but the control pipe and stdio): makes `/` private,
//!    assembles the root filesystem (`rootfs`), `pivot_root`s, spawns the command confined
//!    (`confine`: default capabilities, seccomp filter, only descriptors 0–2, the step's
//!    user) with exactly the given environment, reaps every orphan, and reports the
//!    command's exit status. Not dumpable, it cannot be ptraced nor its `/proc/1/*` opened
//!    by the command, which lacks `CAP_SYS_PTRACE`. Everything is mounted in the private
//!    mount namespace, which vanishes with its last process.
//!
//! Not for: deciding id maps (the caller does, `idmap`), or streaming output (the command
//! inherits the stdout/stderr pipes the caller reads).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::mount::{mount_change, unmount, MountPropagationFlags, UnmountFlags};
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::thread::{unshare_unsafe, UnshareFlags};

use crate::confine::Confinement;
use crate::protocol::{
    fail, setup_err, setup_failed, ErrorKind, Event, Request, CTL_FD, GO, GO_FD, HELPER_MARKER,
};
use crate::spec::Network;
use crate::supervise::{keep_only, watch_init, Reporter};

/// If this process was started as the sandbox helper, run it and exit; else return.
///
/// Call it first thing in `main` of the binary that [`crate::Sandbox`] is given (or of the
/// program itself when it uses [`crate::Sandbox::current_exe`]).
pub fn main_if_helper() {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() != Some(HELPER_MARKER.as_ref()) {
        return;
    }
    // A session of its own, without a controlling terminal: nothing of the step can open
    // the terminal regbuild was started from (`/dev/tty` gives ENXIO), so none can type into
    // the user's shell (TIOCSTI), read keystrokes or write to it behind regbuild's back.
    // Already a leader (a caller did it): EPERM, and the same result.
    let _ = rustix::process::setsid();
    // Only the protocol's descriptors (stdio, the control and go pipes) stay: whatever
    // else the helper inherited (regbuild's caller's open files) closes at the next exec,
    // and init closes it outright.
    let _ = crate::confine::close_on_exec_from(GO_FD as u32 + 1);
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

fn read_request() -> Result<Request, Event> {
    let mut input = Vec::new();
    io::stdin()
        .read_to_end(&mut input)
        .map_err(setup_err("reading the request"))?;
    serde_json::from_slice(&input).map_err(|e| setup_failed("reading the request", e.to_string()))
}

/// Rootless: becomes root of a new user namespace once the caller mapped it.
fn enter_user_ns(ctl: &mut Reporter, go: &mut File, setgroups: bool) -> Result<(), Event> {
    // SAFETY: single-threaded process; unsharing the user namespace affects only us.
    unsafe { unshare_unsafe(UnshareFlags::NEWUSER) }
        .map_err(|e| fail(ErrorKind::UserNs, "unshare(CLONE_NEWUSER)", e))?;
    ctl.send(&Event::UserNs);
    let mut b = [0u8; 1];
    match go.read(&mut b) {
        Ok(1) if b[0] == GO => {}
        _ => std::process::exit(0), // killed, or the caller went away
    }
    if setgroups {
        rustix::thread::set_thread_groups(&[]).map_err(setup_err("setgroups"))?;
    }
    let root_gid = rustix::process::Gid::from_raw(0);
    let root_uid = rustix::process::Uid::from_raw(0);
    rustix::thread::set_thread_res_gid(root_gid, root_gid, root_gid)
        .map_err(setup_err("setresgid(0) in the user namespace"))?;
    rustix::thread::set_thread_res_uid(root_uid, root_uid, root_uid)
        .map_err(setup_err("setresuid(0) in the user namespace"))
}

/// Rootless: the upper directory and the file that will list what is opened up in it,
/// opened by stage 1 before init exists (init drops its copies at once).
struct OpenUp {
    upper: OwnedFd,
    list: File,
    own: bool,
}

impl OpenUp {
    fn open(req: &Request) -> Result<OpenUp, Event> {
        use rustix::fs::{Mode, OFlags};
        let upper = rustix::fs::open(
            &req.spec.upper_dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(setup_err("opening the upper directory"))?;
        let list = File::create(req.files.join(crate::protocol::OPENED_UP_FILE))
            .map_err(setup_err("creating the opened-up list"))?;
        Ok(OpenUp {
            upper,
            list,
            own: !req.spec.plain_root,
        })
    }

    /// Once no process of the step is left: nothing changes the tree while it is opened up.
    fn run(&self) -> Result<(), Event> {
        let entries = crate::open_up::open_up(&self.upper, self.own)
            .map_err(|e| fail(ErrorKind::Setup, "opening up the upper directory", e))?;
        crate::open_up::write_list(&self.list, &entries)
            .map_err(|e| fail(ErrorKind::Setup, "writing the opened-up list", e))
    }
}

fn stage1(ctl: &mut Reporter, mut go: File) -> Result<(), Event> {
    let req = read_request()?;
    if req.spec.isolation == crate::spec::Isolation::Chroot {
        return crate::chroot::stage1(ctl, go, &req);
    }
    if req.user_ns {
        enter_user_ns(ctl, &mut go, req.setgroups)?;
    }
    let open_up = if req.user_ns && req.open_up {
        Some(OpenUp::open(&req)?)
    } else {
        None
    };

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
        drop(open_up);
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
    let (status, killed) = watch_init(init_pid, &mut go)?;
    drop(alive_w);
    // Opened up however the step ended: the caller must be able to remove what it left.
    if let Some(o) = &open_up {
        o.run()?;
    }
    if killed {
        ctl.send(&Event::Killed);
    } else if let Some(sig) = status.signal() {
        return Err(setup_failed(
            "init",
            format!("the sandbox's init died of signal {sig}"),
        ));
    }
    // Otherwise init reported the outcome (or its error) itself.
    Ok(())
}

/// pid 1 of the step's pid namespace. Returns the event that tells how the command ended.
fn init(req: &Request, ctl: &mut Reporter, alive: OwnedFd) -> Result<Event, Event> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(setup_err("prctl(PR_SET_PDEATHSIG)"))?;
    // Not dumpable: the command (without CAP_SYS_PTRACE) can neither ptrace init nor open
    // anything under /proc/1 (its descriptors, root, memory, environment).
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(setup_err("prctl(PR_SET_DUMPABLE)"))?;
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
    keep_only(&[0, 1, 2, CTL_FD, alive.as_raw_fd()]).map_err(setup_err("closing descriptors"))?;
    let spec = &req.spec;
    // Compiled before anything is mounted: a filter that cannot be made stops the step here.
    let host_network_as_root = !req.user_ns && spec.network == Network::Default;
    let confinement = Confinement::new(
        spec.uid,
        spec.gid,
        !req.user_ns || req.setgroups,
        host_network_as_root,
    )
    .map_err(|e| setup_failed("confining the step", e.to_string()))?;
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(setup_err("making / private"))?;
    match rustix::system::sethostname(spec.hostname.as_bytes()) {
        Ok(()) => {}
        // A container's profile may refuse it without CAP_SYS_ADMIN (podman's does): the
        // step's own UTS namespace keeps the container's name; /etc/hostname has ours.
        Err(e) if spec.isolation == crate::spec::Isolation::Userns => ctl.warn(format!(
            "the step's hostname stays the container's: sethostname refused ({e})"
        )),
        Err(e) => return Err(setup_err("sethostname")(e)),
    }
    if spec.network == Network::None {
        loopback_up().map_err(setup_err("bringing lo up"))?;
    }
    crate::rootfs::assemble(req, &mut |m| ctl.warn(m))?;
    let root = &req.root;
    rustix::process::chdir(root).map_err(setup_err("chdir to the new root"))?;
    rustix::process::pivot_root(".", ".").map_err(setup_err("pivot_root"))?;
    unmount(".", UnmountFlags::DETACH).map_err(setup_err("detaching the old root"))?;
    rustix::process::chdir("/").map_err(setup_err("chdir /"))?;

    if !spec.cwd.is_dir() {
        return Err(setup_failed(
            "working directory",
            format!(
                "{} is not a directory in the root filesystem",
                spec.cwd.display()
            ),
        ));
    }
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null());
    // SAFETY: init is single-threaded, so the child may run arbitrary code before exec.
    unsafe { cmd.pre_exec(move || confinement.apply()) };
    let child = cmd
        .spawn()
        .map_err(|e| fail(ErrorKind::Exec, spec.argv[0].clone(), e))?;
    let main = child.id() as i32;
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, st))) if pid.as_raw_nonzero().get() == main => {
                // The step is over when its command is (as in Docker).
                end_the_rest();
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
