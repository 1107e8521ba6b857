//! The caller's side: start a step, stream its output, kill it, collect its [`Outcome`].
//!
//! For [`Sandbox`], [`Running`], [`KillHandle`]. Not for anything that happens inside the
//! namespaces (`helper`), nor for turning the upper directory into a layer (the build does,
//! with `regbuild-rootfs`).

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};

use crate::error::SandboxError;
use crate::idmap::{self, MappingKind};
use crate::protocol::{ErrorKind, Event, Request, CTL_FD, GO, GO_FD, HELPER_MARKER, KILL};
use crate::spec::{Network, Spec};

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
    /// Ended by [`KillHandle::kill`] (or a dropped [`Running`]).
    Killed,
}

impl Status {
    pub fn success(self) -> bool {
        self == Status::Exited(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// How ids were mapped (rootless runs say whether only one id existed).
    pub mapping: MappingKind,
    /// How to read back the owners of what the step wrote (host ids → the step's).
    pub host_ids: crate::idmap::HostIds,
    /// Things the caller should tell the user (single-id map, a read-write /sys, …).
    pub warnings: Vec<String>,
    /// Rootless: entries of the upper directory whose permission bits were widened so this
    /// process can read and remove them (path relative to the upper directory, the bits
    /// they had, which belong in the layer). Empty as root.
    pub opened_up: Vec<(PathBuf, u32)>,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Runs steps through a helper binary (see [`crate::helper`] for why a helper).
#[derive(Debug, Clone)]
pub struct Sandbox {
    helper: PathBuf,
    single_id: bool,
}

/// Ends a running step from any thread.
#[derive(Debug, Clone)]
pub struct KillHandle(Arc<File>);

impl KillHandle {
    /// Ends the step: its init is SIGKILLed, which kills every process of the step.
    /// Harmless once the step has ended (the write then fails with EPIPE; Rust programs
    /// ignore SIGPIPE, a host that does not should ignore it too).
    pub fn kill(&self) {
        let _ = (&*self.0).write_all(&[KILL]);
    }
}

/// A started step. Read [`Running::stdout`] and [`Running::stderr`] (both, or the step may
/// block on a full pipe), then [`Running::wait`]. Dropping it kills the step and waits.
#[derive(Debug)]
pub struct Running {
    child: Option<Child>,
    ctl: Option<BufReader<File>>,
    go: Arc<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    mapping: MappingKind,
    host_ids: crate::idmap::HostIds,
    warnings: Vec<String>,
    work: Work,
}

#[derive(Debug, Clone)]
struct Work {
    ovl: PathBuf,
    root: PathBuf,
    stubs: PathBuf,
    files: PathBuf,
}

impl Work {
    fn new(dir: &Path) -> Work {
        Work {
            ovl: dir.join("ovl"),
            root: dir.join("root"),
            stubs: dir.join("stubs"),
            files: dir.join("files"),
        }
    }
    /// Removes what the run put in the work dir. Best effort: nothing is mounted there any
    /// more (the mounts lived in the step's mount namespace).
    fn clean(&self) {
        for d in [&self.ovl, &self.root, &self.stubs, &self.files] {
            let _ = force_remove(d);
        }
    }
}

/// `remove_dir_all` that first opens up directories: overlay leaves `work/work` (and, with
/// `volatile`, `work/incompat/volatile`) with mode 000, which only root could read.
fn force_remove(path: &Path) -> io::Result<()> {
    let m = fs::symlink_metadata(path)?;
    if !m.is_dir() {
        return fs::remove_file(path);
    }
    if m.permissions().mode() & 0o700 != 0o700 {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    }
    for entry in fs::read_dir(path)? {
        force_remove(&entry?.path())?;
    }
    fs::remove_dir(path)
}

impl Sandbox {
    /// Runs steps through `helper`: a binary whose `main` calls
    /// [`crate::helper::main_if_helper`] first (this crate ships `regbuild-sandbox-helper`).
    pub fn new(helper: impl Into<PathBuf>) -> Sandbox {
        Sandbox {
            helper: helper.into(),
            single_id: false,
        }
    }

    /// Rootless: map only the caller's id (as `0`) even when `/etc/subuid` ranges and
    /// `newuidmap` exist (no setuid helper is run then). No effect as root.
    pub fn single_id(mut self, yes: bool) -> Sandbox {
        self.single_id = yes;
        self
    }

    /// Runs steps by re-executing this program (`/proc/self/exe`), whose `main` must call
    /// [`crate::helper::main_if_helper`] first.
    pub fn current_exe() -> Sandbox {
        Sandbox::new("/proc/self/exe")
    }

    /// Runs `spec` to its end, calling `on_output` with each chunk of output as it comes
    /// (on this thread), and says how it ended.
    pub fn run(
        &self,
        spec: &Spec,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<Outcome, SandboxError> {
        self.run_with(spec, |_| {}, on_output)
    }

    /// As [`Sandbox::run`], handing `on_start` a [`KillHandle`] once the step runs (so
    /// another thread, a signal handler's, can end it).
    pub fn run_with(
        &self,
        spec: &Spec,
        on_start: impl FnOnce(KillHandle),
        mut on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<Outcome, SandboxError> {
        let mut running = self.spawn(spec)?;
        on_start(running.kill_handle());
        let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
        let readers: Vec<_> = [
            (Stream::Stdout, running.stdout.take()),
            (Stream::Stderr, running.stderr.take()),
        ]
        .into_iter()
        .filter_map(|(s, f)| f.map(|f| (s, f)))
        .map(|(stream, mut f)| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match f.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if tx.send((stream, buf[..n].to_vec())).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
        drop(tx);
        for (stream, chunk) in rx {
            on_output(stream, &chunk);
        }
        for r in readers {
            let _ = r.join();
        }
        running.wait()
    }

    /// Starts `spec` and returns at once (after the id maps are written, rootless).
    pub fn spawn(&self, spec: &Spec) -> Result<Running, SandboxError> {
        let rootless = check(spec)?;
        let userns_as_root = !rootless && spec.isolation == crate::spec::Isolation::Userns;
        let plan = if rootless {
            Some(idmap::plan(self.single_id))
        } else {
            userns_as_root.then(idmap::Plan::identity)
        };
        let mapping = plan.as_ref().map_or(MappingKind::Host, |p| p.kind.clone());
        let host_ids = plan.as_ref().map(|p| p.host_ids()).unwrap_or_default();
        mapping.maps(spec.uid, spec.gid)?;
        let mut warnings: Vec<String> = plan
            .as_ref()
            .and_then(|p| p.warning.clone())
            .into_iter()
            .collect();

        fs::create_dir_all(&spec.work_dir)
            .map_err(|e| SandboxError::io(format!("creating {}", spec.work_dir.display()), e))?;
        let work = Work::new(&spec.work_dir);
        for d in [&work.ovl, &work.root, &work.files] {
            fs::create_dir(d).map_err(|e| {
                SandboxError::io(
                    format!("creating {} (is the work dir empty?)", d.display()),
                    e,
                )
            })?;
        }
        let mut guard = CleanOnError(Some(work.clone()));
        write_etc_files(spec, &work.files)?;

        let request = Request {
            spec: spec.clone(),
            user_ns: rootless || userns_as_root,
            setgroups: matches!(mapping, MappingKind::Ranges { .. }) || userns_as_root,
            open_up: rootless,
            ovl_work: work.ovl.clone(),
            root: work.root.clone(),
            stubs: work.stubs.clone(),
            files: work.files.clone(),
        };
        let request = serde_json::to_vec(&request).expect("a request serializes");

        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| SandboxError::io("creating a pipe", e.into()))
        };
        let (ctl_r, ctl_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (ctl_raw, go_raw) = (ctl_w.as_raw_fd(), go_r.as_raw_fd());
        let mut cmd = Command::new(&self.helper);
        cmd.arg(HELPER_MARKER)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w));
        // SAFETY: only fcntl/dup2, which are async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::fcntl(ctl_raw, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(go_raw, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, CTL_FD) < 0 || libc::dup2(b, GO_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            SandboxError::io(
                format!("starting the sandbox helper {}", self.helper.display()),
                e,
            )
        })?;
        drop(ctl_w);
        drop(go_r);
        let go = Arc::new(File::from(go_w));
        let mut running = Running {
            ctl: Some(BufReader::new(File::from(ctl_r))),
            go,
            stdout: Some(File::from(out_r)),
            stderr: Some(File::from(err_r)),
            mapping,
            host_ids,
            warnings: Vec::new(),
            work: work.clone(),
            child: None,
        };
        let mut stdin = child.stdin.take().expect("piped stdin");
        running.child = Some(child);
        // From here on, dropping `running` kills and cleans.
        guard.0 = None;
        if let Err(e) = stdin.write_all(&request) {
            drop(stdin);
            return Err(
                running.fail_early(SandboxError::io("sending the request to the helper", e))
            );
        }
        drop(stdin);

        if let Some(plan) = plan {
            running = map_user_ns(running, &plan)?;
        }
        running.warnings.append(&mut warnings);
        Ok(running)
    }
}

/// Checks what can be checked of `spec` here before anything starts; returns whether this
/// process runs rootless.
fn check(spec: &Spec) -> Result<bool, SandboxError> {
    spec.validate()?;
    for (what, dir) in std::iter::once(("upper_dir", &spec.upper_dir))
        .chain(spec.lower_dirs.iter().map(|l| ("lower dir", l)))
    {
        if !dir.is_dir() {
            return Err(SandboxError::InvalidSpec(format!(
                "{what} {} is not a directory",
                dir.display()
            )));
        }
    }
    let rootless = !rustix::process::geteuid().is_root();
    if rootless && spec.isolation == crate::spec::Isolation::Chroot {
        return Err(SandboxError::InvalidSpec(
            "the chroot rung runs as root only (it needs CAP_SYS_CHROOT and CAP_MKNOD)".into(),
        ));
    }
    Ok(rootless)
}

/// Waits for the helper's new user namespace, writes its id maps and lets it go on.
fn map_user_ns(mut running: Running, plan: &idmap::Plan) -> Result<Running, SandboxError> {
    match running.next_event() {
        Some(Event::UserNs) => {}
        Some(Event::Error {
            kind,
            step,
            errno,
            message,
        }) => return Err(running.fail_early(event_error(kind, step, errno, message))),
        other => {
            return Err(running.fail_early(SandboxError::Helper(format!(
                "expected the user namespace, got {other:?}"
            ))))
        }
    }
    let pid = running.child.as_ref().expect("child").id();
    if let Err(e) = plan.apply(pid) {
        return Err(running.fail_early(e));
    }
    if let Err(e) = (&*running.go).write_all(&[GO]) {
        return Err(running.fail_early(SandboxError::io("signalling the helper", e)));
    }
    Ok(running)
}

struct CleanOnError(Option<Work>);
impl Drop for CleanOnError {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.clean();
        }
    }
}

fn write_etc_files(spec: &Spec, files: &Path) -> Result<(), SandboxError> {
    let resolv = match spec.network {
        Network::Default => fs::read("/etc/resolv.conf").unwrap_or_default(),
        Network::None => Vec::new(),
    };
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
        spec.hostname
    );
    for (name, body) in [
        ("resolv.conf", resolv),
        ("hosts", hosts.into_bytes()),
        ("hostname", format!("{}\n", spec.hostname).into_bytes()),
    ] {
        let p = files.join(name);
        fs::write(&p, body).map_err(|e| SandboxError::io(format!("writing {}", p.display()), e))?;
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o644));
    }
    Ok(())
}

fn event_error(kind: ErrorKind, step: String, errno: Option<i32>, message: String) -> SandboxError {
    let os = || {
        errno.map_or_else(
            || io::Error::other(message.clone()),
            io::Error::from_raw_os_error,
        )
    };
    match kind {
        ErrorKind::UserNs => SandboxError::UserNamespace {
            cause: idmap::diagnose_userns(errno),
            errno: os(),
        },
        ErrorKind::Namespaces => SandboxError::Namespaces {
            errno: os(),
            hint: if errno == Some(libc::EPERM) {
                "creating mount/pid namespaces needs CAP_SYS_ADMIN, which this process does \
                 not have (in a container: its capabilities or seccomp profile refuse \
                 unshare); as root, `--isolation auto` (the default) or `chroot` runs steps \
                 without namespaces, the container being the sandbox as with kaniko"
                    .into()
            } else {
                format!("unshare failed at {step}")
            },
        },
        ErrorKind::Setup => SandboxError::Setup { step, message },
        ErrorKind::Overlay => SandboxError::Overlay { errno, message },
        ErrorKind::Exec => SandboxError::Exec {
            program: step,
            message,
        },
    }
}

impl Running {
    /// A handle that ends the step from any thread.
    pub fn kill_handle(&self) -> KillHandle {
        KillHandle(self.go.clone())
    }

    fn next_event(&mut self) -> Option<Event> {
        let ctl = self.ctl.as_mut()?;
        let mut line = String::new();
        loop {
            line.clear();
            match ctl.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            match serde_json::from_str::<Event>(&line) {
                Ok(Event::Warning { message }) => self.warnings.push(message),
                Ok(e) => return Some(e),
                Err(_) => continue,
            }
        }
    }

    fn fail_early(mut self, e: SandboxError) -> SandboxError {
        let _ = self.finish();
        e
    }

    /// Waits for the step to end. When this returns, no process of the step is left and
    /// nothing of it is mounted.
    pub fn wait(mut self) -> Result<Outcome, SandboxError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<Outcome, SandboxError> {
        self.stdout.take();
        self.stderr.take();
        let mut ended: Option<Result<Status, SandboxError>> = None;
        while let Some(ev) = self.next_event() {
            let r = match ev {
                Event::Exited { code } => Ok(Status::Exited(code)),
                Event::Signaled { signal } => Ok(Status::Signaled(signal)),
                Event::Killed => Ok(Status::Killed),
                Event::Error {
                    kind,
                    step,
                    errno,
                    message,
                } => Err(event_error(kind, step, errno, message)),
                Event::UserNs | Event::Warning { .. } => continue,
            };
            // The first word is init's; a later Killed (kill after the end) changes nothing.
            ended.get_or_insert(r);
        }
        self.ctl = None;
        // The helper exits once its init has, and init's exit completes only when every
        // process of the step's pid namespace is gone.
        let helper = self.child.take().map(|mut c| c.wait());
        let opened_up =
            crate::open_up::read_list(&self.work.files.join(crate::protocol::OPENED_UP_FILE));
        self.work.clean();
        let opened_up = opened_up.map_err(|e| SandboxError::io("reading the opened-up list", e))?;
        let status = match (ended, helper) {
            (Some(r), _) => r?,
            (None, Some(Ok(st))) => {
                return Err(SandboxError::Helper(format!(
                    "the helper ended ({st}) without a word"
                )))
            }
            (None, Some(Err(e))) => return Err(SandboxError::io("waiting for the helper", e)),
            (None, None) => return Err(SandboxError::Helper("already waited".into())),
        };
        Ok(Outcome {
            status,
            mapping: self.mapping.clone(),
            host_ids: self.host_ids,
            warnings: std::mem::take(&mut self.warnings),
            opened_up,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Killing an ended step is harmless; this also unblocks a helper waiting for GO.
            KillHandle(self.go.clone()).kill();
            let _ = self.finish();
        }
    }
}
