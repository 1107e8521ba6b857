//! `RUN --mount`: what each mount contributes to the step's cache key (cheap, computed on
//! every build) and, only when the step really runs, the sandbox mounts that carry it out.
//!
//! - secret: the value (a file or an environment variable named by `--secret`) is read
//!   here and handed to the sandbox ([`Mount::Secret`]), which writes it only to a tmpfs of
//!   the step's own mount namespace and binds it read-only at its target: it never has a
//!   path on the host, and a killed build leaves none behind. With `env=`, it is put in the
//!   step's environment. Only its id enters the key; it never reaches a layer (the target
//!   sits in the sandbox's stub layer, never the upper directory), the config or a log.
//! - cache: a directory of regbuild's cache (`run-cache/`), created with the mount's mode
//!   and owner, bind-mounted read-write; `sharing=locked` (and `private`) hold an exclusive
//!   lock on it while the step runs. Never in a layer.
//! - bind: from the build context (read-only; `rw` binds a throw-away copy, as BuildKit
//!   discards such writes), or from a stage or image (its files materialised first); keyed
//!   by content.
//! - tmpfs: a fresh tmpfs.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::error::RunError;
use regbuild_frontend::stages::{CacheSharing, CopyFrom, RunMount};
use regbuild_sandbox::Mount;

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// Parses buildx's `--secret` spelling: `id=ID,src=PATH` (`source=`), `id=ID,env=VAR`,
/// `type=file|env`; a bare `id=ID` reads the environment variable `ID` if set, else the
/// file `ID`. Returns (id, source).
pub fn parse_secret(spec: &str) -> Result<(String, SecretSource), RunError> {
    let bad = |reason: String| RunError::SecretSource {
        id: spec.to_string(),
        reason,
    };
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{part:?} is not key=value")))?;
        match k.trim() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" if v == "file" || v == "env" => kind = Some(v.to_string()),
            other => {
                return Err(bad(format!(
                    "unknown key {other:?} (use id=, src=, env=, type=file|env)"
                )))
            }
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad("id= is required".into()))?;
    let source = match (src, env, kind.as_deref()) {
        (Some(p), None, None | Some("file")) => SecretSource::File(PathBuf::from(p)),
        (None, Some(v), None | Some("env")) => SecretSource::Env(v),
        (Some(v), None, Some("env")) => SecretSource::Env(v),
        (None, None, Some("env")) => SecretSource::Env(id.clone()),
        (None, None, Some("file")) => SecretSource::File(PathBuf::from(&id)),
        (None, None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (None, None, None) => SecretSource::File(PathBuf::from(&id)),
        _ => return Err(bad("give either src= or env=, not both".into())),
    };
    Ok((id, source))
}

/// A mount's target: absolute, joined with the WORKDIR when relative, never `/`.
pub fn target_path(workdir: &str, target: &str) -> Result<PathBuf, RunError> {
    let joined = crate::builder::stage::join_in_image(workdir, target);
    if joined == "/" {
        // Left out, the target is the WORKDIR (BuildKit's default), which may be `/`.
        let target = if target.is_empty() {
            format!("(none given: the WORKDIR {workdir})")
        } else {
            target.to_string()
        };
        return Err(RunError::Target {
            target,
            reason: "cannot mount over /",
        });
    }
    Ok(PathBuf::from(joined))
}

/// What the key sees of one mount. `bind_identity` gives the identity of a bind source
/// from a stage or image (its layers); a context source is hashed here.
pub fn key_part(
    m: &RunMount,
    workdir: &str,
    context: &Context<'_>,
    bind_identity: &dyn Fn(&CopyFrom) -> Result<String, RunError>,
) -> Result<String, RunError> {
    Ok(match m {
        RunMount::Bind {
            from,
            source,
            target,
            rw,
        } => {
            let origin = match from {
                Some(f) => bind_identity(f)?,
                None => {
                    let (real, rel) = context_source(context.dir, source)?;
                    format!("context:{}", tree_hash(&real, &rel, context.ignore)?)
                }
            };
            format!(
                "bind {origin} source={source} target={} rw={rw}",
                target_path(workdir, target)?.display()
            )
        }
        RunMount::Cache {
            id,
            target,
            from,
            source,
            sharing,
            readonly,
            mode,
            uid,
            gid,
        } => {
            let seed = match from {
                Some(f) => format!(" from={} source={source}", bind_identity(f)?),
                None => String::new(),
            };
            format!(
                "cache id={id} target={} sharing={sharing:?} ro={readonly} mode={mode:o} uid={uid} gid={gid}{seed}",
                target_path(workdir, target)?.display()
            )
        }
        // The id, where it appears and how: never the value.
        RunMount::Secret {
            id,
            target,
            env,
            required,
            mode,
            uid,
            gid,
        } => format!(
            "secret id={id} target={target:?} env={env:?} required={required} mode={mode:o} uid={uid} gid={gid}"
        ),
        RunMount::Tmpfs { target, size } => format!(
            "tmpfs target={} size={size:?}",
            target_path(workdir, target)?.display()
        ),
    })
}

/// The build context as bind mounts see it: the directory and its `.dockerignore`.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub dir: &'a Path,
    pub ignore: &'a regbuild_context::dockerignore::DockerIgnore,
}

/// A bind source inside the build context, refused if it leaves it (symlinks included):
/// its real path and its path relative to the context root (for `.dockerignore`).
fn context_source(context: &Path, source: &str) -> Result<(PathBuf, String), RunError> {
    let bad = |reason: String| RunError::BindSource {
        path: source.to_string(),
        reason,
    };
    let root = context
        .canonicalize()
        .map_err(|e| RunError::io(context, e))?;
    let rel = crate::builder::stage::join_in_image("/", source);
    let path = root.join(rel.trim_start_matches('/'));
    let real = path
        .canonicalize()
        .map_err(|e| bad(format!("not in the build context: {e}")))?;
    let rel = real
        .strip_prefix(&root)
        .map_err(|_| bad("leaves the build context".into()))?
        .to_string_lossy()
        .into_owned();
    Ok((real, rel))
}

/// `source` (an in-image path) under `root`, a stage's or image's files extracted here,
/// resolved with symlinks followed inside `root` only: a source (or a parent) that is a
/// symlink out of `root` is refused, so a mount never reaches the host's files.
fn source_in(root: &Path, source: &str) -> Result<PathBuf, RunError> {
    let bad = |reason: &str| RunError::BindSource {
        path: source.to_string(),
        reason: reason.to_string(),
    };
    let root = root.canonicalize().map_err(|e| RunError::io(root, e))?;
    let rel = crate::builder::stage::join_in_image("/", source);
    let real = root
        .join(rel.trim_start_matches('/'))
        .canonicalize()
        .map_err(|_| bad("no such file or directory in that stage or image"))?;
    if !real.starts_with(&root) {
        return Err(bad(
            "is a symlink that leaves that stage's or image's files",
        ));
    }
    Ok(real)
}

/// Whether a context path (relative) is left out by `.dockerignore`; `dir`: it is a directory
/// nothing below which can be included again.
fn ignored(ignore: &regbuild_context::dockerignore::DockerIgnore, rel: &str, dir: bool) -> bool {
    !rel.is_empty() && ignore.is_excluded(rel) && (!dir || !ignore.may_include_below(rel))
}

/// sha256 over a tree's paths, kinds, modes, link targets and file contents (not mtimes),
/// leaving out what `.dockerignore` excludes (`base`: the tree's path in the context).
fn tree_hash(
    root: &Path,
    base: &str,
    ignore: &regbuild_context::dockerignore::DockerIgnore,
) -> Result<String, RunError> {
    let mut h = Sha256::new();
    let mut stack = vec![PathBuf::new()];
    let mut buf = vec![0u8; 64 << 10];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| RunError::io(&path, e))?;
        let in_context = Path::new(base).join(&rel).to_string_lossy().into_owned();
        if ignored(ignore, &in_context, meta.is_dir()) {
            continue;
        }
        if !meta.is_dir() && ignore.is_excluded(&in_context) && !in_context.is_empty() {
            continue;
        }
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(meta.mode().to_be_bytes());
        if meta.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&path)
                .map_err(|e| RunError::io(&path, e))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            names.sort();
            for n in names.into_iter().rev() {
                stack.push(rel.join(n));
            }
        } else if meta.file_type().is_symlink() {
            let t = std::fs::read_link(&path).map_err(|e| RunError::io(&path, e))?;
            h.update(t.as_os_str().as_encoded_bytes());
        } else if meta.is_file() {
            let mut f = std::fs::File::open(&path).map_err(|e| RunError::io(&path, e))?;
            loop {
                let n = f.read(&mut buf).map_err(|e| RunError::io(&path, e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        h.update([0xff]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// The sandbox side of a step's mounts; dropping it releases the cache locks and removes
/// the copies made for `rw` binds.
#[derive(Default)]
pub struct Prepared {
    pub mounts: Vec<Mount>,
    /// Variables from `type=secret,env=`: added to the step's environment only.
    pub env: Vec<(String, String)>,
    /// In-image paths the layer must not hold.
    pub targets: Vec<PathBuf>,
    /// What the user should hear about (settings that could not be applied).
    pub warnings: Vec<String>,
    _locks: Vec<std::fs::File>,
    _copies: Vec<tempfile::TempDir>,
}

/// What `prepare` needs besides the mounts.
pub struct MountInputs<'a> {
    pub workdir: &'a str,
    pub context: Context<'a>,
    pub secrets: &'a BTreeMap<String, SecretSource>,
    /// regbuild's cache directory (cache mounts live under it), else the build's tmp.
    pub cache_root: &'a Path,
    pub tmp: &'a Path,
    /// Whether this process may chown (root).
    pub privileged: bool,
    /// Hold every cache's lock for the step, `sharing=shared` included (the chroot rung).
    pub hold_every_cache: bool,
}

/// Makes the mounts real. `from_dirs` gives the host directory holding a stage's or
/// image's files for a bind or cache `from=` (already extracted by the caller).
pub fn prepare(
    mounts: &[RunMount],
    inputs: &MountInputs<'_>,
    from_dirs: &dyn Fn(&CopyFrom) -> Option<PathBuf>,
) -> Result<Prepared, RunError> {
    let mut out = Prepared::default();
    for m in mounts {
        match m {
            RunMount::Tmpfs { target, size } => {
                let target = target_path(inputs.workdir, target)?;
                out.targets.push(target.clone());
                out.mounts.push(Mount::Tmpfs {
                    target,
                    size_bytes: *size,
                });
            }
            RunMount::Bind { .. } => bind_mount(m, inputs, from_dirs, &mut out)?,
            RunMount::Cache { .. } => cache_mount(m, inputs, from_dirs, &mut out)?,
            RunMount::Secret { .. } => secret_mount(m, inputs, &mut out)?,
        }
    }
    Ok(out)
}

/// `--mount=type=bind`: the context's (or a stage's, an image's) path, read-only; a copy
/// when `rw` (writes are discarded, as BuildKit does) or when `.dockerignore` hides some of it.
fn bind_mount(
    m: &RunMount,
    inputs: &MountInputs<'_>,
    from_dirs: &dyn Fn(&CopyFrom) -> Option<PathBuf>,
    out: &mut Prepared,
) -> Result<(), RunError> {
    let RunMount::Bind {
        from,
        source,
        target,
        rw,
    } = m
    else {
        return Ok(());
    };
    let target = target_path(inputs.workdir, target)?;
    // What the context's .dockerignore excludes is never shown to a step.
    let mut filtered = false;
    let host = match from {
        None => {
            let (real, rel) = context_source(inputs.context.dir, source)?;
            filtered = has_ignored(&real, &rel, inputs.context.ignore);
            real
        }
        Some(f) => {
            let root = from_dirs(f).ok_or_else(|| RunError::BindSource {
                path: source.clone(),
                reason: "its stage or image was not prepared".into(),
            })?;
            source_in(&root, source)?
        }
    };
    let host = if *rw || filtered {
        // Writes to a rw bind are discarded (BuildKit): bind a copy.
        let copy = tempfile::Builder::new()
            .prefix("bind-")
            .tempdir_in(inputs.tmp)
            .map_err(|e| RunError::io(inputs.tmp, e))?;
        let dest = copy.path().join("src");
        let filter = filtered.then_some((inputs.context.ignore, rel_of(inputs, &host)));
        copy_tree(&host, &dest, filter.as_ref().map(|(i, r)| (*i, r.as_str())))?;
        out._copies.push(copy);
        dest
    } else {
        host
    };
    out.targets.push(target.clone());
    out.mounts.push(Mount::Bind {
        source: host,
        target,
        readonly: !rw,
    });
    Ok(())
}

/// `--mount=type=cache`: a directory of regbuild's cache directory by id, made (or seeded
/// from a stage's or image's `source`) on first use, locked unless `sharing=shared`.
fn cache_mount(
    m: &RunMount,
    inputs: &MountInputs<'_>,
    from_dirs: &dyn Fn(&CopyFrom) -> Option<PathBuf>,
    out: &mut Prepared,
) -> Result<(), RunError> {
    let RunMount::Cache {
        id,
        target,
        from,
        source,
        sharing,
        readonly,
        mode,
        uid,
        gid,
    } = m
    else {
        return Ok(());
    };
    let target = target_path(inputs.workdir, target)?;
    let caches = inputs.cache_root.join("run-cache");
    regbuild_rootfs::scratch::create_dir_all_with_mode(&caches, 0o700)
        .map_err(|e| RunError::io(&caches, e))?;
    let dir = cache_dir(&caches, id);
    // Held while the cache is made (every sharing mode) and, unless shared,
    // while the step runs.
    let lock = lock_cache(&dir.with_extension("lock"))?;
    // Only a real directory is a cache: anything else there (a link a step of another
    // isolation managed to leave) would be followed by the bind mount. It is removed.
    if let Ok(meta) = std::fs::symlink_metadata(&dir) {
        if !meta.is_dir() {
            std::fs::remove_file(&dir).map_err(|e| RunError::io(&dir, e))?;
            out.warnings.push(format!(
                "cache mount {}: its cache was not a directory, started again",
                target.display()
            ));
        }
    }
    if std::fs::symlink_metadata(&dir).is_err() {
        // Made aside and renamed into place: a failed seed leaves no half cache.
        let fresh = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(&caches)
            .map_err(|e| RunError::io(&caches, e))?;
        let made = fresh.path().join("dir");
        match from.as_ref().and_then(from_dirs) {
            // A new cache starts as a copy of `source` in that stage or image.
            Some(root) => {
                let seed = source_in(&root, source)?;
                if !seed.is_dir() {
                    return Err(RunError::BindSource {
                        path: source.clone(),
                        reason: "a cache's source must be a directory".into(),
                    });
                }
                copy_tree(&seed, &made, None)?;
            }
            None => std::fs::create_dir(&made).map_err(|e| RunError::io(&made, e))?,
        }
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(*mode))
            .map_err(|e| RunError::io(&made, e))?;
        if inputs.privileged {
            std::os::unix::fs::chown(&made, Some(*uid), Some(*gid))
                .map_err(|e| RunError::io(&made, e))?;
        } else if (*uid, *gid) != (0, 0) {
            out.warnings.push(format!(
                "cache mount {}: uid={uid},gid={gid} not applied (rootless: the directory belongs to uid 0 inside)",
                target.display()
            ));
        }
        std::fs::rename(&made, &dir).map_err(|e| RunError::io(&dir, e))?;
    }
    crate::builder::cache_dir::mark_used(&dir);
    if *sharing != CacheSharing::Shared || inputs.hold_every_cache {
        // private is served as locked: one step at a time, never a torn cache.
        out._locks.push(lock);
    }
    out.targets.push(target.clone());
    out.mounts.push(Mount::Bind {
        source: dir,
        target,
        readonly: *readonly,
    });
    Ok(())
}

/// `--mount=type=secret`: handed to the sandbox (a tmpfs file of the step's own mount
/// namespace, never a host path) and/or as an environment variable.
fn secret_mount(
    m: &RunMount,
    inputs: &MountInputs<'_>,
    out: &mut Prepared,
) -> Result<(), RunError> {
    let RunMount::Secret {
        id,
        target,
        env,
        required,
        mode,
        uid,
        gid,
    } = m
    else {
        return Ok(());
    };
    let Some(source) = inputs.secrets.get(id) else {
        if *required {
            return Err(RunError::MissingSecret { id: id.clone() });
        }
        return Ok(());
    };
    let value = read_secret(id, source)?;
    if let Some(var) = env {
        out.env
            .push((var.clone(), String::from_utf8_lossy(&value).into_owned()));
        if target.is_none() {
            return Ok(());
        }
    }
    let target = secret_target(inputs.workdir, id, target.as_deref())?;
    out.targets.push(target.clone());
    out.mounts.push(Mount::Secret {
        target,
        value: regbuild_sandbox::SecretValue(value),
        mode: *mode,
        uid: *uid,
        gid: *gid,
    });
    Ok(())
}

/// A secret's in-image path: `target`, else `/run/secrets/ID`; an id that is not one path
/// component is refused (it would place the secret elsewhere).
pub fn secret_target(workdir: &str, id: &str, target: Option<&str>) -> Result<PathBuf, RunError> {
    match target {
        Some(t) => target_path(workdir, t),
        None if id.is_empty() || id == "." || id == ".." || id.contains('/') => {
            Err(RunError::Target {
                target: format!("/run/secrets/{id}"),
                reason: "a secret id without target= must be a file name (no '/', not '..')",
            })
        }
        None => Ok(PathBuf::from(format!("/run/secrets/{id}"))),
    }
}

use crate::builder::cache_dir::mount_dir as cache_dir;

/// How long a step waits for a cache mount another step holds.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// The exclusive lock of a cache directory if nobody holds it now.
fn try_lock(path: &Path) -> Result<Option<std::fs::File>, RunError> {
    crate::builder::cache_dir::try_lock_mount(path).map_err(|e| RunError::io(path, e))
}

/// Whether to give up waiting for the lock at `path`.
fn stop_waiting(path: &Path, started: std::time::Instant) -> Result<(), RunError> {
    if super::interrupt::interrupted() {
        return Err(RunError::Interrupted);
    }
    if started.elapsed() > LOCK_WAIT {
        return Err(RunError::io(
            path,
            std::io::Error::other("another build has held this cache mount for an hour"),
        ));
    }
    Ok(())
}

/// Takes the exclusive lock of a cache directory, waiting (bounded, and ended by SIGINT) for
/// another build that holds it.
fn lock_cache(path: &Path) -> Result<std::fs::File, RunError> {
    let started = std::time::Instant::now();
    loop {
        if let Some(f) = try_lock(path)? {
            return Ok(f);
        }
        stop_waiting(path, started)?;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Waits, without blocking the build's task, until no step holds the cache mounts of
/// `mounts`. Steps of other stages (and workspace images) are futures of the same task:
/// [`prepare`], which takes the locks without awaiting, must only be called when they are
/// free, right after this and with no await between, or it would wait for a step that
/// cannot go on.
pub async fn wait_for_caches(mounts: &[RunMount], cache_root: &Path) -> Result<(), RunError> {
    let caches = cache_root.join("run-cache");
    let locks: Vec<PathBuf> = mounts
        .iter()
        .filter_map(|m| match m {
            RunMount::Cache { id, .. } => Some(cache_dir(&caches, id).with_extension("lock")),
            _ => None,
        })
        .collect();
    if locks.is_empty() {
        return Ok(());
    }
    regbuild_rootfs::scratch::create_dir_all_with_mode(&caches, 0o700)
        .map_err(|e| RunError::io(&caches, e))?;
    let started = std::time::Instant::now();
    // All free in one pass (each taken and let go at once): while this waited for one,
    // another step may have taken one checked before.
    loop {
        let mut busy = None;
        for path in &locks {
            if try_lock(path)?.is_none() {
                busy = Some(path);
                break;
            }
        }
        let Some(path) = busy else {
            return Ok(());
        };
        stop_waiting(path, started)?;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Whether the context tree at `real` (`rel` in the context) holds anything `.dockerignore`
/// excludes (then a filtered copy is bound instead).
fn has_ignored(
    real: &Path,
    rel: &str,
    ignore: &regbuild_context::dockerignore::DockerIgnore,
) -> bool {
    if ignore.is_empty() {
        return false;
    }
    let mut stack = vec![(real.to_path_buf(), rel.to_string())];
    while let Some((path, rel)) = stack.pop() {
        if !rel.is_empty() && ignore.is_excluded(&rel) {
            return true;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let name = e.file_name();
                stack.push((
                    path.join(&name),
                    Path::new(&rel).join(&name).to_string_lossy().into_owned(),
                ));
            }
        }
    }
    false
}

/// `host`'s path relative to the context root (it is inside: `context_source` checked).
fn rel_of(inputs: &MountInputs<'_>, host: &Path) -> String {
    inputs
        .context
        .dir
        .canonicalize()
        .ok()
        .and_then(|root| {
            host.strip_prefix(root)
                .ok()
                .map(|r| r.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

fn read_secret(id: &str, source: &SecretSource) -> Result<Vec<u8>, RunError> {
    let bad = |reason: String| RunError::SecretSource {
        id: id.to_string(),
        reason,
    };
    match source {
        SecretSource::File(p) => std::fs::read(p).map_err(|e| bad(format!("{}: {e}", p.display()))),
        SecretSource::Env(v) => std::env::var(v)
            .map(String::into_bytes)
            .map_err(|_| bad(format!("the environment variable {v} is not set"))),
    }
}

/// Copies a tree (files, directories, symlinks) for a rw bind.
/// `filter`: the context's `.dockerignore` and `from`'s path in the context: excluded paths
/// are not copied.
fn copy_tree(
    from: &Path,
    to: &Path,
    filter: Option<(&regbuild_context::dockerignore::DockerIgnore, &str)>,
) -> Result<(), RunError> {
    let meta = std::fs::symlink_metadata(from).map_err(|e| RunError::io(from, e))?;
    if let Some((ignore, rel)) = filter {
        if ignored(ignore, rel, meta.is_dir()) || (!meta.is_dir() && ignore.is_excluded(rel)) {
            return Ok(());
        }
    }
    if meta.file_type().is_symlink() {
        let t = std::fs::read_link(from).map_err(|e| RunError::io(from, e))?;
        std::os::unix::fs::symlink(t, to).map_err(|e| RunError::io(to, e))
    } else if meta.is_dir() {
        std::fs::create_dir(to).map_err(|e| RunError::io(to, e))?;
        for e in std::fs::read_dir(from).map_err(|e| RunError::io(from, e))? {
            let e = e.map_err(|e| RunError::io(from, e))?;
            let below = filter.map(|(i, rel)| {
                (
                    i,
                    Path::new(rel)
                        .join(e.file_name())
                        .to_string_lossy()
                        .into_owned(),
                )
            });
            copy_tree(
                &e.path(),
                &to.join(e.file_name()),
                below.as_ref().map(|(i, r)| (*i, r.as_str())),
            )?;
        }
        std::fs::set_permissions(to, meta.permissions()).map_err(|e| RunError::io(to, e))
    } else {
        std::fs::copy(from, to)
            .map(drop)
            .map_err(|e| RunError::io(from, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_specs_parse_as_buildx_spells_them() {
        assert_eq!(
            parse_secret("id=tok,src=/run/t").unwrap(),
            ("tok".into(), SecretSource::File("/run/t".into()))
        );
        assert_eq!(
            parse_secret("id=tok,env=TOKEN").unwrap(),
            ("tok".into(), SecretSource::Env("TOKEN".into()))
        );
        assert_eq!(
            parse_secret("type=env,id=tok,source=TOKEN").unwrap(),
            ("tok".into(), SecretSource::Env("TOKEN".into()))
        );
        for bad in ["src=/x", "id=a,src=/x,env=Y", "id=a,colour=red", "id"] {
            assert!(parse_secret(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_join_the_workdir_and_never_cover_root() {
        assert_eq!(
            target_path("/src", "cache").unwrap(),
            PathBuf::from("/src/cache")
        );
        assert_eq!(target_path("/src", "/c").unwrap(), PathBuf::from("/c"));
        assert!(target_path("/", "/").is_err());
        assert!(target_path("/a", "..").is_err());
    }

    #[test]
    fn secret_ids_without_a_target_must_be_file_names() {
        assert_eq!(
            secret_target("/", "tok", None).unwrap(),
            PathBuf::from("/run/secrets/tok")
        );
        for id in ["../../etc/passwd", "a/b", "..", ""] {
            assert!(secret_target("/", id, None).is_err(), "{id}");
        }
        assert_eq!(
            secret_target("/w", "a/b", Some("k")).unwrap(),
            PathBuf::from("/w/k")
        );
    }

    #[test]
    fn sources_from_a_stage_stay_inside_its_files() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("dir")).unwrap();
        std::fs::write(d.path().join("host"), "h").unwrap();
        std::os::unix::fs::symlink(d.path().join("host"), root.join("out")).unwrap();
        std::os::unix::fs::symlink("dir", root.join("in")).unwrap();
        assert!(source_in(&root, "out").is_err());
        assert!(source_in(&root, "../host").is_err(), "`..` stays inside");
        assert_eq!(
            source_in(&root, "in").unwrap(),
            root.canonicalize().unwrap().join("dir")
        );
    }

    #[test]
    fn context_binds_cannot_leave_the_context() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("ctx")).unwrap();
        std::fs::write(d.path().join("outside"), "x").unwrap();
        std::os::unix::fs::symlink("../outside", d.path().join("ctx/link")).unwrap();
        std::fs::write(d.path().join("ctx/in"), "y").unwrap();
        let ctx = d.path().join("ctx");
        assert!(context_source(&ctx, "link").is_err());
        assert!(context_source(&ctx, "in").is_ok());
        assert!(context_source(&ctx, "../outside").is_err());
    }

    #[test]
    fn a_cache_that_is_a_link_is_replaced_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let cache_root = d.path().join("cache");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(cache_root.join("run-cache")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "host file").unwrap();
        // What a step of the chroot rung could once leave: the cache's entry a link.
        let dir = cache_dir(&cache_root.join("run-cache"), "c1");
        std::os::unix::fs::symlink(&outside, &dir).unwrap();
        let ignore = regbuild_context::dockerignore::DockerIgnore::default();
        let inputs = MountInputs {
            workdir: "/",
            context: Context {
                dir: d.path(),
                ignore: &ignore,
            },
            secrets: &BTreeMap::new(),
            cache_root: &cache_root,
            tmp: d.path(),
            privileged: false,
            hold_every_cache: false,
        };
        let m = RunMount::Cache {
            id: "c1".into(),
            target: "/c".into(),
            from: None,
            source: String::new(),
            sharing: CacheSharing::Locked,
            readonly: false,
            mode: 0o755,
            uid: 0,
            gid: 0,
        };
        let prepared = prepare(&[m], &inputs, &|_| None).unwrap();
        let Some(Mount::Bind { source, .. }) = prepared.mounts.first() else {
            panic!("a bind: {:?}", prepared.mounts);
        };
        assert!(std::fs::symlink_metadata(source).unwrap().is_dir());
        assert_eq!(std::fs::read_dir(source).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "host file"
        );
        assert!(prepared
            .warnings
            .iter()
            .any(|w| w.contains("not a directory")));
    }

    #[test]
    fn a_context_bind_is_keyed_by_content_not_mtime() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "1").unwrap();
        let none = |_: &CopyFrom| -> Result<String, RunError> { Ok(String::new()) };
        let m = RunMount::Bind {
            from: None,
            source: ".".into(),
            target: "/src".into(),
            rw: false,
        };
        let ignore = regbuild_context::dockerignore::DockerIgnore::default();
        let ctx = Context {
            dir: d.path(),
            ignore: &ignore,
        };
        let k1 = key_part(&m, "/", &ctx, &none).unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(d.path().join("a"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(k1, key_part(&m, "/", &ctx, &none).unwrap(), "touch");
        std::fs::write(d.path().join("a"), "2").unwrap();
        assert_ne!(k1, key_part(&m, "/", &ctx, &none).unwrap(), "content");
    }
}
