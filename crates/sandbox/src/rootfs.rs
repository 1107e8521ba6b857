//! The step's root filesystem, assembled by init in the step's private mount namespace,
//! before `pivot_root`.
//!
//! For: the root (an overlay of the lowers and the upper directory, or a plain directory
//! bound in place), mounted `nodev`; `/proc` with runc's masked and read-only paths; `/dev`
//! as a small `nodev` tmpfs holding only the standard nodes (bound from the host's `/dev`),
//! a new `devpts` instance and `/dev/shm`; `/sys` read-only with its masked paths; the
//! generated `/etc` files; the step's extra mounts (binds `nosuid,nodev`, tmpfs, and
//! secrets, written to a tmpfs of this namespace and bound read-only). Mount points are
//! made in a stub layer between the lowers and the upper directory ([`stub`]), so none
//! lands in the step's layer.
//!
//! Not for: namespaces, processes and what the command may do once it runs (`helper`,
//! `confine`).

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::StatVfsMountFlags;
use rustix::mount::{mount, mount_bind, mount_bind_recursive, mount_remount, MountFlags};

use crate::error::SandboxError;
use crate::protocol::{fail, setup_err, setup_failed, ErrorKind, Event, Request};
use crate::spec::{Mount, Network, Spec};

/// runc's (and Docker's) masked paths: a directory gets an empty read-only tmpfs over it,
/// a file `/dev/null`.
const MASKED: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// runc's (and Docker's) read-only paths.
const READ_ONLY: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// The links of every step's `/dev` (runc's default spec), name and target.
pub(crate) const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// The device nodes a step gets, bound from the host's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Where init mounts the tmpfs that holds the step's secrets (inside `Request::files`).
const SECRETS_DIR: &str = "secrets";

/// Mounts everything the step sees on `req.root`. `warn` receives what the caller should
/// tell the user (an optional mount that could not be made).
pub(crate) fn assemble(req: &Request, warn: &mut dyn FnMut(String)) -> Result<(), Event> {
    let spec = &req.spec;
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
                warn(format!("{} not mounted: {why}", target.display()));
                usable.push(false);
            }
            Err(why) => {
                return Err(setup_failed(
                    format!("mount target {}", target.display()),
                    why.to_string(),
                ))
            }
        }
    }

    let root = &req.root;
    if spec.plain_root {
        bind(&spec.upper_dir, root, MountFlags::NODEV)
            .map_err(setup_err("bind-mounting the root filesystem"))?;
    } else {
        mount_overlay(req)?;
    }
    let r = |p: &str| root.join(p);
    let nsx = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    // The user-namespace rung has none: a container with masked /proc paths refuses a new
    // one, and binding the container's would show its processes.
    if spec.isolation == crate::spec::Isolation::Namespaces {
        mount("proc", r("proc"), "proc", nsx, None).map_err(setup_err("mounting /proc"))?;
    }
    mount_dev(&r("dev"))?;
    mount_sys(root, spec.network, warn)?;
    mask(root)?;
    for (i, name) in ["resolv.conf", "hosts", "hostname"].iter().enumerate() {
        if usable[3 + i] {
            let target = root.join("etc").join(name);
            bind(&req.files.join(name), &target, nsx)
                .map_err(setup_err(format!("mounting /etc/{name}")))?;
        }
    }
    write_secrets(req, warn)?;
    for (i, m) in spec.mounts.iter().enumerate() {
        let target = root.join(m.target().strip_prefix("/").unwrap_or(m.target()));
        extra_mount(req, i, m, &target)?;
    }
    Ok(())
}

/// One of the step's extra mounts at `target` (in the new root); `i` is its index.
fn extra_mount(req: &Request, i: usize, m: &Mount, target: &Path) -> Result<(), Event> {
    let shown = m.target().display();
    match m {
        Mount::Bind {
            source, readonly, ..
        } => {
            let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
            if *readonly {
                flags |= MountFlags::RDONLY;
            }
            mount_bind_recursive(source, target)
                .map_err(io::Error::from)
                .and_then(|()| remount_bind(target, flags))
                .map_err(setup_err(format!("bind-mounting {}", source.display())))
        }
        Mount::Tmpfs { size_bytes, .. } => {
            let data = match size_bytes {
                Some(n) => format!("mode=755,size={n}"),
                None => "mode=755".to_string(),
            };
            mount_tmpfs(target, MountFlags::NOSUID | MountFlags::NODEV, &data)
                .map_err(setup_err(format!("mounting tmpfs at {shown}")))
        }
        Mount::Secret { .. } => {
            let file = req.files.join(SECRETS_DIR).join(i.to_string());
            let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
            bind(&file, target, flags | MountFlags::NOEXEC)
                .map_err(setup_err(format!("mounting the secret at {shown}")))
        }
    }
}

/// Writes the step's secrets (file `i` for mount `i`) to a tmpfs mounted in this mount
/// namespace only: the host sees an empty directory, and the tmpfs goes with the namespace.
fn write_secrets(req: &Request, warn: &mut dyn FnMut(String)) -> Result<(), Event> {
    let secrets: Vec<(usize, &Mount)> = req
        .spec
        .mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m, Mount::Secret { .. }))
        .collect();
    if secrets.is_empty() {
        return Ok(());
    }
    let dir = req.files.join(SECRETS_DIR);
    fs::create_dir_all(&dir).map_err(setup_err("creating the secrets' mount point"))?;
    let bytes: usize = secrets
        .iter()
        .map(|(_, m)| match m {
            Mount::Secret { value, .. } => value.0.len() + 4096,
            _ => 0,
        })
        .sum();
    let nsx = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    mount_tmpfs(&dir, nsx, &format!("mode=700,size={}", bytes + 65536))
        .map_err(setup_err("mounting the secrets' tmpfs"))?;
    for (i, m) in secrets {
        let Mount::Secret {
            value,
            mode,
            uid,
            gid,
            target,
        } = m
        else {
            continue;
        };
        let path = dir.join(i.to_string());
        let shown = target.display();
        File::create(&path)
            .and_then(|mut f| f.write_all(&value.0))
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(*mode & 0o7777)))
            .map_err(setup_err(format!("writing the secret for {shown}")))?;
        match std::os::unix::fs::lchown(&path, Some(*uid), Some(*gid)) {
            Ok(()) => {}
            // An id the user namespace does not map (a single-id rootless run).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => warn(format!(
                "secret at {shown}: uid={uid},gid={gid} not applied (not mapped in this rootless run)"
            )),
            Err(e) => return Err(fail(ErrorKind::Setup, format!("owning the secret at {shown}"), e)),
        }
    }
    // Read-only from here on: the bind mounts made of its files are read-only too.
    mount_remount(&dir, nsx | MountFlags::RDONLY, c"mode=700")
        .map_err(setup_err("making the secrets' tmpfs read-only"))
}

fn mount_tmpfs(target: &Path, flags: MountFlags, data: &str) -> io::Result<()> {
    let data = CString::new(data).map_err(io::Error::other)?;
    mount("tmpfs", target, "tmpfs", flags, data.as_c_str()).map_err(Into::into)
}

/// Binds `source` on `target` with the mount flags `add`.
fn bind(source: &Path, target: &Path, add: MountFlags) -> io::Result<()> {
    mount_bind(source, target)?;
    remount_bind(target, add)
}

/// Remounts the bind mount at `target` with `add`, keeping the flags it already has (in a
/// user namespace, the kernel refuses a remount that would drop a flag the mount's source
/// was locked with).
fn remount_bind(target: &Path, add: MountFlags) -> io::Result<()> {
    let have = rustix::fs::statvfs(target)?.f_flag;
    let mut flags = MountFlags::BIND | add;
    for (st, mf) in [
        (StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
        (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
    ] {
        if have.contains(st) {
            flags |= mf;
        }
    }
    mount_remount(target, flags, "").map_err(Into::into)
}

/// `/sys` read-only: a sysfs of our own where the kernel allows it (root, or a network
/// namespace of our own), else the host's bound read-only.
fn mount_sys(root: &Path, network: Network, warn: &mut dyn FnMut(String)) -> Result<(), Event> {
    let sys = root.join("sys");
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RDONLY;
    if mount("sysfs", &sys, "sysfs", flags, None).is_ok() {
        return Ok(());
    }
    // A sysfs of our own needs a network namespace we own (rootless, host network).
    mount_bind_recursive("/sys", &sys).map_err(setup_err("mounting /sys"))?;
    if remount_bind(&sys, flags).is_err() {
        let why = if network == Network::None {
            "(network none)"
        } else {
            "(host network)"
        };
        warn(format!(
            "/sys is the host's {why}, bound read-write: it could not be made read-only"
        ));
    }
    Ok(())
}

/// runc's masked and read-only paths, under the new `/proc` and `/sys`. Paths this kernel
/// lacks are skipped.
fn mask(root: &Path) -> Result<(), Event> {
    let null = root.join("dev/null");
    for rel in MASKED {
        let path = root.join(rel);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let done = if meta.is_dir() {
            mount_tmpfs(
                &path,
                MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                "size=0,mode=555",
            )
        } else {
            mount_bind(&null, &path).map_err(Into::into)
        };
        done.map_err(setup_err(format!("masking /{rel}")))?;
    }
    let ro = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    for rel in READ_ONLY {
        let path = root.join(rel);
        if fs::symlink_metadata(&path).is_err() {
            continue;
        }
        mount_bind_recursive(&path, &path)
            .map_err(io::Error::from)
            .and_then(|()| remount_bind(&path, ro))
            .map_err(setup_err(format!("making /{rel} read-only")))?;
    }
    Ok(())
}

/// `/dev`: a small tmpfs (`nodev`: a node a step makes there opens nothing) with the
/// standard nodes bound from the host's, a new `devpts` instance (`/dev/pts`, `/dev/ptmx`)
/// and `/dev/shm`.
fn mount_dev(dev: &Path) -> Result<(), Event> {
    let nsx = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    mount_tmpfs(dev, nsx, "mode=755,size=64k").map_err(setup_err("mounting /dev"))?;
    for name in DEVICES {
        let target = dev.join(name);
        File::create(&target).map_err(setup_err(format!("creating /dev/{name}")))?;
        mount_bind(Path::new("/dev").join(name), &target)
            .map_err(setup_err(format!("binding /dev/{name}")))?;
    }
    for (name, to) in DEV_LINKS {
        std::os::unix::fs::symlink(to, dev.join(name))
            .map_err(setup_err(format!("/dev/{name}")))?;
    }
    let pts = dev.join("pts");
    fs::create_dir(&pts).map_err(setup_err("/dev/pts"))?;
    let devpts = |data: &str| {
        let data = CString::new(data).map_err(io::Error::other)?;
        let flags = MountFlags::NOSUID | MountFlags::NOEXEC;
        mount("devpts", &pts, "devpts", flags, data.as_c_str()).map_err(io::Error::from)
    };
    // gid 5 (tty) is unmapped in a single-id user namespace: then the pty's group is 0.
    devpts("newinstance,ptmxmode=0666,mode=0620,gid=5")
        .or_else(|_| devpts("newinstance,ptmxmode=0666,mode=0620"))
        .map_err(setup_err("mounting /dev/pts"))?;
    let shm = dev.join("shm");
    fs::create_dir(&shm).map_err(setup_err("/dev/shm"))?;
    mount_tmpfs(&shm, nsx, "mode=1777,size=65536k").map_err(setup_err("mounting /dev/shm"))
}

/// Mounts the overlay of `req.spec` on `req.root`, `nodev`. Its failures are
/// [`ErrorKind::Overlay`]: nothing has run yet, so the caller may fall back to a plain root.
fn mount_overlay(req: &Request) -> Result<(), Event> {
    let spec = &req.spec;
    let esc = |p: &Path| {
        p.to_string_lossy()
            .replace('\\', "\\\\")
            .replace(':', "\\:")
            .replace(',', "\\,")
    };
    let mut lower = esc(&req.stubs);
    // A layer may stand twice in a stage (two steps that changed nothing, two identical
    // COPYs): overlayfs refuses a lower directory given twice (ELOOP). Its topmost
    // occurrence alone gives the same view: everything between the two is below it.
    let mut seen = std::collections::HashSet::new();
    for l in spec.lower_dirs.iter().rev() {
        if !seen.insert(l) {
            continue;
        }
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
        MountFlags::NODEV,
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
    })
}

/// A place the sandbox mounts something: (path, is a directory, required).
pub(crate) type Target = (PathBuf, bool, bool);

/// Makes the mount points of `spec` (`/proc`, `/dev`, `/sys`, the `/etc` files, the extra
/// mounts' targets) in its plain root filesystem ([`Spec::plain_root`]), as the helper would:
/// done by the caller before it snapshots the tree, they are then no change of the step.
/// A symlink where a file is mounted (`/etc/resolv.conf -> ../run/…`) is replaced by an
/// empty file (never followed); the caller leaves those paths out of the layer.
pub fn prepare_plain_root(spec: &Spec) -> Result<(), SandboxError> {
    if !spec.plain_root {
        return Err(SandboxError::InvalidSpec(
            "prepare_plain_root needs a plain root filesystem".into(),
        ));
    }
    spec.validate()?;
    let root = spec.upper_dir.as_path();
    let targets = mount_targets(spec).map_err(|(what, e)| SandboxError::io(what, e))?;
    for (target, is_dir, required) in targets {
        match stub(&[root], root, &target, is_dir, true) {
            Ok(()) => {}
            // The helper warns of these and does without.
            Err(_) if !required => {}
            Err(why) => {
                return Err(SandboxError::Setup {
                    step: format!("mount target {}", target.display()),
                    message: why.to_string(),
                })
            }
        }
    }
    Ok(())
}

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
            Mount::Secret { .. } => false,
            Mount::Bind { source, .. } => fs::metadata(source)
                .map_err(|e| (format!("bind source {}", source.display()), e))?
                .is_dir(),
        };
        targets.push((m.target().to_path_buf(), is_dir, true));
    }
    Ok(targets)
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
