//! The chroot rung: a step run in no namespace at all, for containers whose seccomp profile
//! refuses them (Docker's and containerd's default: no `unshare`, no `mount`, no namespace
//! flag on `clone`), as kaniko ran its steps. The container is the sandbox.
//!
//! For: stage 1 of an [`Isolation::Chroot`](crate::Isolation::Chroot) step. The root is
//! the plain root filesystem (the caller's copy of the stage, [`crate::Spec::plain_root`]);
//! what the namespace rung mounts is made in it before the command starts, and the caller
//! leaves those paths out of the layer: `/dev`'s standard nodes by `mknod`, the generated
//! `/etc` files written, a bind's source copied in (a read-write one's, a cache, copied
//! back once no process of the step is left: nothing of the root ever leaves it), a tmpfs
//! an empty directory, a secret a file with its mode and owner, removed when the step ends. No `/proc`, no `/sys`: apt, dpkg, useradd, gcc, go
//! and pip run without them. The command is `chroot`ed with the confinement of
//! [`crate::confine::Confinement::chroot`] (Docker's default capabilities less
//! `CAP_SYS_CHROOT` and the host-network drops, the default filter, no tracing,
//! `no_new_privs`, no hold on this process or regbuild: `seccomp::hands_off`). This process
//! is the step's child subreaper: when the command ends, or the caller says KILL or goes
//! away, every process the step left is killed, until the kernel says none is left.
//!
//! Not isolated here (docs/run.md's table of rungs says so): the step shares the container's
//! network, process ids, IPC and hostname, and as the container's root it may signal the
//! container's processes; a helper killed outright leaves the step's processes to the
//! container's init. The command cannot reach regbuild's memory (not dumpable, no
//! `CAP_SYS_PTRACE`, no tracing calls) nor any file outside its root (no `/proc`, no
//! descriptor, no `CAP_SYS_CHROOT`, no mount).
//!
//! Not for: choosing the rung (`regbuild::builder::run`), or making the root's contents.

use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::confine::Confinement;
use crate::protocol::{fail, setup_err, setup_failed, ErrorKind, Event, Request, CTL_FD, GO_FD};
use crate::spec::{Mount, Spec};
use crate::supervise::Reporter;

/// The character devices every step gets (major, minor), as runc's default spec.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The most rounds of killing the processes a step left (each round kills every child the
/// last one made an orphan); a step that forks faster than that is reported.
const KILL_ROUNDS: usize = 10_000;

/// Stage 1 of a chroot step: makes what the step sees, runs the command, ends every process
/// it left, gives back its caches, and reports how it ended.
pub(crate) fn stage1(ctl: &mut Reporter, mut go: File, req: &Request) -> Result<(), Event> {
    let spec = &req.spec;
    // Not dumpable: the command (same user, no CAP_SYS_PTRACE) cannot open /proc/<pid>/*.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(setup_err("prctl(PR_SET_DUMPABLE)"))?;
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(setup_err("prctl(PR_SET_CHILD_SUBREAPER)"))?;
    crate::supervise::keep_only(&[0, 1, 2, CTL_FD, GO_FD])
        .map_err(setup_err("closing descriptors"))?;
    // The step may not act on this process nor on regbuild (same user: see `Confinement::chroot`).
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let regbuild = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    let confinement = Confinement::chroot(spec.uid, spec.gid, [me, regbuild])
        .map_err(|e| setup_failed("confining the step", e.to_string()))?;
    if let Some(gap) = crate::confine::landlock_gap() {
        ctl.warn(gap);
    }
    let root = open_root(&spec.upper_dir)?;
    make_devices(&root)?;
    write_etc_files(&root, &req.files)?;
    let placed = place_mounts(&root, spec)?;
    let pid = spawn(spec, confinement)?;
    let watched = crate::supervise::watch_init(pid, &mut go);
    // Caches are copied back only once no process of the step is left (proven, not assumed):
    // a process still running could change them while they are read.
    end_the_rest()?;
    placed.give_back(&root)?;
    let (status, killed) = watched?;
    if killed {
        ctl.send(&Event::Killed);
        return Ok(());
    }
    ctl.send(&match (status.code(), status.signal()) {
        (Some(code), _) => Event::Exited { code },
        (None, Some(signal)) => Event::Signaled { signal },
        _ => Event::Exited { code: 255 },
    });
    Ok(())
}

fn open_root(dir: &Path) -> Result<OwnedFd, Event> {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(setup_err("opening the root filesystem"))
}

/// Opens `path` (absolute, inside the root) below `root` without following any symlink: what
/// a step or a base left on the way is never followed out of the root, nor within it.
fn open_in(root: &OwnedFd, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    Ok(rustix::fs::openat2(
        root,
        &rel,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        // openat2 refuses a mode without O_CREAT.
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::BENEATH,
    )?)
}

fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// The parent directory of `path` in the root (opened) and the last name.
fn parent_in(root: &OwnedFd, path: &Path) -> io::Result<(OwnedFd, PathBuf)> {
    let rel = relative(path);
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no name", path.display())))?;
    let parent = open_in(
        root,
        rel.parent().unwrap_or(Path::new("")),
        OFlags::RDONLY | OFlags::DIRECTORY,
    )?;
    Ok((parent, PathBuf::from(name)))
}

/// `/dev`'s standard nodes (`mknod`: CAP_MKNOD is in Docker's default set), `shm`, `pts`
/// and the `/proc/self/fd` links, in the `/dev` the caller stubbed.
fn make_devices(root: &OwnedFd) -> Result<(), Event> {
    let dev = open_in(root, Path::new("/dev"), OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(setup_err("opening /dev in the root"))?;
    for (name, major, minor) in DEVICES {
        remove_at(&dev, Path::new(name));
        rustix::fs::mknodat(
            &dev,
            name,
            rustix::fs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        )
        .map_err(|e| {
            setup_failed(
                format!("making /dev/{name}"),
                format!("{e} (the chroot rung makes /dev with mknod: the container needs CAP_MKNOD, which Docker's default capabilities include and podman's do not: --cap-add=MKNOD)"),
            )
        })?;
        rustix::fs::chmodat(
            &dev,
            name,
            Mode::from_raw_mode(0o666),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(setup_err(format!("chmod /dev/{name}")))?;
    }
    for (name, mode) in [("shm", 0o1777), ("pts", 0o755)] {
        remove_at(&dev, Path::new(name));
        rustix::fs::mkdirat(&dev, name, Mode::from_raw_mode(mode))
            .map_err(setup_err(format!("making /dev/{name}")))?;
        rustix::fs::chmodat(
            &dev,
            name,
            Mode::from_raw_mode(mode),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(setup_err(format!("chmod /dev/{name}")))?;
    }
    for (name, to) in crate::rootfs::DEV_LINKS {
        remove_at(&dev, Path::new(name));
        rustix::fs::symlinkat(to, &dev, name).map_err(setup_err(format!("linking /dev/{name}")))?;
    }
    Ok(())
}

/// Removes `name` below `dir` (a file, a link or a whole directory), never following a link.
fn remove_at(dir: &OwnedFd, name: &Path) {
    match rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => {
            if let Ok(sub) = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                let names: Vec<PathBuf> = rustix::fs::Dir::read_from(&sub)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| {
                        use std::os::unix::ffi::OsStrExt;
                        PathBuf::from(std::ffi::OsStr::from_bytes(e.file_name().to_bytes()))
                    })
                    .filter(|n| n != Path::new(".") && n != Path::new(".."))
                    .collect();
                for n in names {
                    remove_at(&sub, &n);
                }
            }
            let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::REMOVEDIR);
        }
        Ok(_) => {
            let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty());
        }
        Err(_) => {}
    }
}

/// `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname` as the caller generated them.
fn write_etc_files(root: &OwnedFd, files: &Path) -> Result<(), Event> {
    for name in ["resolv.conf", "hosts", "hostname"] {
        let body = fs::read(files.join(name)).map_err(setup_err(format!("reading {name}")))?;
        let target = Path::new("/etc").join(name);
        write_file(root, &target, &body, 0o644, (0, 0))
            .map_err(setup_err(format!("writing /etc/{name}")))?;
    }
    Ok(())
}

/// Writes `body` to `path` in the root, replacing what was there (never through a link).
fn write_file(
    root: &OwnedFd,
    path: &Path,
    body: &[u8],
    mode: u32,
    (uid, gid): (u32, u32),
) -> io::Result<()> {
    let (parent, name) = parent_in(root, path)?;
    remove_at(&parent, &name);
    let fd = rustix::fs::openat(
        &parent,
        &name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut file = File::from(fd);
    io::Write::write_all(&mut file, body)?;
    rustix::fs::fchown(
        &file,
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(gid)),
    )?;
    rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// What was copied into the root from a read-write bind (a cache), to copy back, and the
/// secrets written, to remove.
struct Placed {
    copied: Vec<(PathBuf, PathBuf)>,
    secrets: Vec<PathBuf>,
}

/// The step's extra mounts made without mounting (see the module doc).
fn place_mounts(root: &OwnedFd, spec: &Spec) -> Result<Placed, Event> {
    let mut placed = Placed {
        copied: Vec::new(),
        secrets: Vec::new(),
    };
    for m in &spec.mounts {
        let target = m.target();
        let shown = || format!("mount {}", target.display());
        match m {
            Mount::Secret {
                value,
                mode,
                uid,
                gid,
                ..
            } => {
                write_file(root, target, &value.0, *mode, (*uid, *gid))
                    .map_err(setup_err(shown()))?;
                placed.secrets.push(target.to_path_buf());
            }
            Mount::Tmpfs { .. } => {
                let (parent, name) = parent_in(root, target).map_err(setup_err(shown()))?;
                remove_at(&parent, &name);
                rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(0o1777))
                    .map_err(setup_err(shown()))?;
            }
            // Copied, never moved: nothing of the root ever leaves it (a directory moved out
            // while a process of the step had it as its working directory would be a way
            // out of the chroot), and no file of the step shares an inode with the host's.
            Mount::Bind {
                source, readonly, ..
            } => {
                let (parent, name) = parent_in(root, target).map_err(setup_err(shown()))?;
                remove_at(&parent, &name);
                copy_into(source, &parent, &name).map_err(setup_err(format!(
                    "copying {} to {}",
                    source.display(),
                    target.display()
                )))?;
                if !readonly && source.is_dir() {
                    placed.copied.push((source.clone(), target.to_path_buf()));
                }
            }
        }
    }
    Ok(placed)
}

impl Placed {
    /// Copies each read-write bind's directory back over its source, once no process of the
    /// step is left (the caller proved it), read through descriptors that follow no link:
    /// what the step left there comes back as it is (links as links, never followed; no
    /// device node, fifo or socket). One the step replaced by something else starts again
    /// empty. The new copy is made aside and swapped in.
    fn give_back(self, root: &OwnedFd) -> Result<(), Event> {
        // The root is the caller's scratch, removed with the step; a secret goes first.
        for target in &self.secrets {
            if let Ok((parent, name)) = parent_in(root, target) {
                remove_at(&parent, &name);
            }
        }
        for (source, target) in self.copied {
            // Unique to this step (the caller holds the cache's lock meanwhile, too).
            let aside = source.with_extension(format!("back-{}", std::process::id()));
            let _ = fs::remove_dir_all(&aside);
            let copied = parent_in(root, &target).and_then(|(parent, name)| {
                copy_out(&parent, &name, &aside)?;
                if !fs::symlink_metadata(&aside)?.is_dir() {
                    return Err(io::Error::other("no longer a directory"));
                }
                Ok(())
            });
            if copied.is_err() {
                let _ = fs::remove_dir_all(&aside);
                let _ = fs::remove_file(&aside);
                fs::create_dir(&aside).map_err(setup_err(format!("making {}", aside.display())))?;
            }
            let swap = fs::remove_dir_all(&source).and_then(|()| fs::rename(&aside, &source));
            swap.map_err(setup_err(format!("giving back {}", source.display())))?;
        }
        Ok(())
    }
}

/// Copies `name` below `parent` (in the step's root) to the host path `dest`, with modes and
/// owners, opening every entry without following a link; links are copied as links; device
/// nodes, fifos and sockets are left out.
fn copy_out(parent: &OwnedFd, name: &Path, dest: &Path) -> io::Result<()> {
    use rustix::fs::{AtFlags, FileType};
    let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let ids = (
        Some(rustix::process::Uid::from_raw(st.st_uid)),
        Some(rustix::process::Gid::from_raw(st.st_gid)),
    );
    let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => {
            let to = rustix::fs::readlinkat(parent, name, Vec::new())?;
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(to.as_bytes()), dest)?;
            std::os::unix::fs::lchown(dest, Some(st.st_uid), Some(st.st_gid))?;
        }
        FileType::Directory => {
            let dir = rustix::fs::openat(
                parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            fs::create_dir(dest)?;
            for entry in rustix::fs::Dir::read_from(&dir)? {
                let entry = entry?;
                let n = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
                if n != "." && n != ".." {
                    copy_out(&dir, Path::new(n), &dest.join(n))?;
                }
            }
            let out = File::open(dest)?;
            rustix::fs::fchown(&out, ids.0, ids.1)?;
            rustix::fs::fchmod(&out, mode)?;
        }
        FileType::RegularFile => {
            let from = rustix::fs::openat(
                parent,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut to = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dest)?;
            io::copy(&mut File::from(from), &mut to)?;
            rustix::fs::fchown(&to, ids.0, ids.1)?;
            rustix::fs::fchmod(&to, mode)?;
        }
        _ => {}
    }
    Ok(())
}

/// Copies `source` (a host file or directory of the caller's: the context, a stage's files)
/// to `name` below `parent`, with modes and owners; links copied as links, never followed;
/// device nodes, sockets and fifos left out.
fn copy_into(source: &Path, parent: &OwnedFd, name: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(source)?;
    let ids = (
        Some(rustix::process::Uid::from_raw(meta.uid())),
        Some(rustix::process::Gid::from_raw(meta.gid())),
    );
    let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
    let ft = meta.file_type();
    if ft.is_symlink() {
        rustix::fs::symlinkat(fs::read_link(source)?, parent, name)?;
        rustix::fs::chownat(
            parent,
            name,
            ids.0,
            ids.1,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
    } else if ft.is_dir() {
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?;
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for entry in fs::read_dir(source)? {
            let entry = entry?;
            copy_into(&entry.path(), &dir, Path::new(&entry.file_name()))?;
        }
        rustix::fs::fchown(&dir, ids.0, ids.1)?;
        rustix::fs::fchmod(&dir, mode)?;
    } else if ft.is_file() {
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut to = File::from(fd);
        io::copy(&mut File::open(source)?, &mut to)?;
        rustix::fs::fchown(&to, ids.0, ids.1)?;
        rustix::fs::fchmod(&to, mode)?;
    }
    Ok(())
}

/// Starts the command `chroot`ed in the root, confined; returns its pid.
fn spawn(spec: &Spec, confinement: Confinement) -> Result<rustix::process::Pid, Event> {
    let root = spec.upper_dir.clone();
    let cwd = spec.cwd.clone();
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    // SAFETY: stage 1 is single-threaded, so the child may run arbitrary code before exec.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // A session of its own: `kill 0` (a script's cleanup trap) signals the step's
            // processes, not its helper's group.
            rustix::process::setsid()?;
            rustix::process::chroot(&root)?;
            rustix::process::chdir("/")?;
            rustix::process::chdir(&cwd)?;
            confinement.apply()
        })
    };
    let child = cmd
        .spawn()
        .map_err(|e| fail(ErrorKind::Exec, spec.argv[0].clone(), e))?;
    let pid = rustix::process::Pid::from_raw(child.id() as i32)
        .ok_or_else(|| setup_failed("spawn", "no pid".to_string()))?;
    // Waited for through its pid (watch_init), not through `child`.
    std::mem::forget(child);
    Ok(pid)
}

/// Kills every process the step left (they are this process's children or, orphaned, its
/// children again as the subreaper) and reaps them, round after round, until the kernel
/// says no child is left (`waitid` with `__WALL` answers `ECHILD`: with no child of any
/// kind, clone children with another exit signal included, no descendant exists). Fails
/// closed: a list of processes that cannot be read is an error, never "none left".
fn end_the_rest() -> Result<(), Event> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    for _ in 0..KILL_ROUNDS {
        if !any_child().map_err(|e| fail(ErrorKind::Setup, "waitid", e))? {
            return Ok(());
        }
        let (children, below) = descendants_of(me)
            .map_err(|e| fail(ErrorKind::Setup, "listing the step's processes", e))?;
        // Every process below is stopped first (a stopped process forks no more), then all
        // are killed: a chain that forks faster than one generation per round is caught.
        for sig in [libc::SIGSTOP, libc::SIGKILL] {
            for pid in children.iter().chain(&below) {
                // SAFETY: a plain kill. A child's pid cannot be reused meanwhile (nobody
                // else reaps it); a deeper one's can, between the listing and here, which
                // at worst signals a process of the step's own user that just started.
                unsafe { libc::kill(*pid, sig) };
            }
        }
        // Each killed child is waited for by its pid (SIGKILL ends it); then any other that
        // ended on its own.
        for pid in &children {
            reap(*pid, 0);
        }
        while reap(-1, libc::WNOHANG) {}
    }
    Err(setup_failed(
        "ending the step's processes",
        format!("processes kept appearing after {KILL_ROUNDS} rounds of killing"),
    ))
}

/// Whether this process has any child left, running or ended, of any kind (`__WALL`).
/// libc: rustix's `waitid` does not take `__WALL`.
fn any_child() -> io::Result<bool> {
    loop {
        // SAFETY: waitid writes only into `info`, a zeroed siginfo_t it may fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL;
        let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) };
        if rc == 0 {
            return Ok(true);
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::ECHILD) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(io::Error::last_os_error()),
        }
    }
}

/// Reaps `pid` (-1: any child), of any kind (`__WALL`); whether one was reaped.
fn reap(pid: libc::pid_t, flags: libc::c_int) -> bool {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only the status word.
        let rc = unsafe { libc::waitpid(pid, &mut status, flags | libc::__WALL) };
        if rc > 0 {
            return true;
        }
        if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return false;
    }
}

/// The pids whose parent is `parent`, and those below them (from one reading of `/proc`,
/// the container's). Any error but a process that ended meanwhile is an error.
fn descendants_of(parent: i32) -> io::Result<(Vec<i32>, Vec<i32>)> {
    let mut parents = std::collections::HashMap::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let stat = match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => s,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => continue,
            Err(e) => return Err(e),
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
        if let Some(ppid) = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<i32>().ok())
        {
            parents.insert(pid, ppid);
        }
    }
    let children: Vec<i32> = parents
        .iter()
        .filter(|(_, pp)| **pp == parent)
        .map(|(p, _)| *p)
        .collect();
    let mut below = Vec::new();
    let mut frontier = children.clone();
    // Bounded by the processes listed: each is visited at most once.
    while let Some(p) = frontier.pop() {
        for (c, pp) in &parents {
            if *pp == p && !below.contains(c) {
                below.push(*c);
                frontier.push(*c);
            }
        }
    }
    Ok((children, below))
}
