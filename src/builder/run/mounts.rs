//! `RUN --mount`: what each mount contributes to the step's cache key (cheap, computed on
//! every build) and, only when the step really runs, the sandbox mounts that carry it out.
//!
//! - secret: the value (a file or an environment variable named by `--secret`) is written
//!   to a private directory on a tmpfs (`/dev/shm`, else `$XDG_RUNTIME_DIR`), mode 0400,
//!   bind-mounted read-only at its target and removed when the step ends; or, with `env=`,
//!   put in the step's environment. Only its id enters the key; it never reaches a layer
//!   (the target sits in the sandbox's stub layer, never the upper directory), the config or
//!   a log.
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
        return Err(RunError::Target {
            target: target.to_string(),
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
    context: &Path,
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
                None => format!("context:{}", tree_hash(&context_source(context, source)?)?),
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

/// A bind source inside the build context, refused if it leaves it (symlinks included).
fn context_source(context: &Path, source: &str) -> Result<PathBuf, RunError> {
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
    if !real.starts_with(&root) {
        return Err(bad("leaves the build context".into()));
    }
    Ok(real)
}

/// sha256 over a tree's paths, kinds, modes, link targets and file contents (not mtimes).
fn tree_hash(root: &Path) -> Result<String, RunError> {
    let mut h = Sha256::new();
    let mut stack = vec![PathBuf::new()];
    let mut buf = vec![0u8; 64 << 10];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| RunError::io(&path, e))?;
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

/// The sandbox side of a step's mounts; dropping it removes the secrets and releases locks.
#[derive(Default)]
pub struct Prepared {
    pub mounts: Vec<Mount>,
    /// Variables from `type=secret,env=`: added to the step's environment only.
    pub env: Vec<(String, String)>,
    /// In-image paths the layer must not hold.
    pub targets: Vec<PathBuf>,
    _secrets: Option<tempfile::TempDir>,
    _locks: Vec<std::fs::File>,
    _copies: Vec<tempfile::TempDir>,
}

/// What `prepare` needs besides the mounts.
pub struct MountInputs<'a> {
    pub workdir: &'a str,
    pub context: &'a Path,
    pub secrets: &'a BTreeMap<String, SecretSource>,
    /// regbuild's cache directory (cache mounts live under it), else the build's tmp.
    pub cache_root: &'a Path,
    pub tmp: &'a Path,
    /// Whether this process may chown (root).
    pub privileged: bool,
}

/// Makes the mounts real. `materialize` gives the host directory holding a stage's or
/// image's files for a bind `from=` (already extracted by the caller).
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
            RunMount::Bind {
                from,
                source,
                target,
                rw,
            } => {
                let target = target_path(inputs.workdir, target)?;
                let host = match from {
                    None => context_source(inputs.context, source)?,
                    Some(f) => {
                        let root = from_dirs(f).ok_or_else(|| RunError::BindSource {
                            path: source.clone(),
                            reason: "its stage or image was not prepared".into(),
                        })?;
                        let rel = crate::builder::stage::join_in_image("/", source);
                        let p = root.join(rel.trim_start_matches('/'));
                        if std::fs::symlink_metadata(&p).is_err() {
                            return Err(RunError::BindSource {
                                path: source.clone(),
                                reason: "no such file or directory in that stage or image".into(),
                            });
                        }
                        p
                    }
                };
                let host = if *rw {
                    // Writes to a rw bind are discarded (BuildKit): bind a copy.
                    let copy = tempfile::Builder::new()
                        .prefix("bind-")
                        .tempdir_in(inputs.tmp)
                        .map_err(|e| RunError::io(inputs.tmp, e))?;
                    let dest = copy.path().join("src");
                    copy_tree(&host, &dest)?;
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
                let target = target_path(inputs.workdir, target)?;
                let name = format!("{:x}", Sha256::digest(id.as_bytes()));
                let dir = inputs.cache_root.join("run-cache").join(&name[..32]);
                if !dir.exists() {
                    match from.as_ref().and_then(from_dirs) {
                        // A new cache starts as a copy of `source` in that stage or image.
                        Some(root) => {
                            let rel = crate::builder::stage::join_in_image("/", source);
                            let seed = root.join(rel.trim_start_matches('/'));
                            std::fs::create_dir_all(inputs.cache_root.join("run-cache"))
                                .map_err(|e| RunError::io(&dir, e))?;
                            copy_tree(&seed, &dir)?;
                        }
                        None => std::fs::create_dir_all(&dir).map_err(|e| RunError::io(&dir, e))?,
                    }
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode))
                        .map_err(|e| RunError::io(&dir, e))?;
                    if inputs.privileged {
                        std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid))
                            .map_err(|e| RunError::io(&dir, e))?;
                    }
                }
                if *sharing != CacheSharing::Shared {
                    // private is served as locked: one step at a time, never a torn cache.
                    let lock_path = dir.with_extension("lock");
                    let f = std::fs::File::create(&lock_path)
                        .map_err(|e| RunError::io(&lock_path, e))?;
                    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
                        .map_err(|e| RunError::io(&lock_path, e.into()))?;
                    out._locks.push(f);
                }
                out.targets.push(target.clone());
                out.mounts.push(Mount::Bind {
                    source: dir,
                    target,
                    readonly: *readonly,
                });
            }
            RunMount::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(source) = inputs.secrets.get(id) else {
                    if *required {
                        return Err(RunError::MissingSecret { id: id.clone() });
                    }
                    continue;
                };
                let value = read_secret(id, source)?;
                if let Some(var) = env {
                    out.env
                        .push((var.clone(), String::from_utf8_lossy(&value).into_owned()));
                    if target.is_none() {
                        continue;
                    }
                }
                let target = match target {
                    Some(t) => target_path(inputs.workdir, t)?,
                    None => PathBuf::from(format!("/run/secrets/{id}")),
                };
                if out._secrets.is_none() {
                    out._secrets = Some(secret_dir()?);
                }
                let dir = out._secrets.as_ref().map(|d| d.path().to_path_buf());
                let dir = dir.unwrap_or_default();
                let file = dir.join(format!("{:x}", Sha256::digest(id.as_bytes())));
                write_secret(&file, &value, *mode)?;
                if inputs.privileged {
                    std::os::unix::fs::chown(&file, Some(*uid), Some(*gid))
                        .map_err(|e| RunError::io(&file, e))?;
                }
                out.targets.push(target.clone());
                out.mounts.push(Mount::Bind {
                    source: file,
                    target,
                    readonly: true,
                });
            }
        }
    }
    Ok(out)
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

/// A private directory on a tmpfs, so a secret never touches a disk.
fn secret_dir() -> Result<tempfile::TempDir, RunError> {
    let mut candidates = vec![PathBuf::from("/dev/shm")];
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(PathBuf::from(d));
    }
    for dir in &candidates {
        if is_tmpfs(dir) {
            if let Ok(d) = tempfile::Builder::new()
                .prefix("regbuild-secrets-")
                .tempdir_in(dir)
            {
                return Ok(d);
            }
        }
    }
    Err(RunError::SecretSource {
        id: String::new(),
        reason: "no tmpfs to hold secrets (/dev/shm or $XDG_RUNTIME_DIR)".into(),
    })
}

fn is_tmpfs(dir: &Path) -> bool {
    // TMPFS_MAGIC
    rustix::fs::statfs(dir).is_ok_and(|s| s.f_type == 0x0102_1994)
}

fn write_secret(path: &Path, value: &[u8], mode: u32) -> Result<(), RunError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| RunError::io(path, e))?;
    f.write_all(value).map_err(|e| RunError::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| RunError::io(path, e))
}

/// Copies a tree (files, directories, symlinks) for a rw bind.
fn copy_tree(from: &Path, to: &Path) -> Result<(), RunError> {
    let meta = std::fs::symlink_metadata(from).map_err(|e| RunError::io(from, e))?;
    if meta.file_type().is_symlink() {
        let t = std::fs::read_link(from).map_err(|e| RunError::io(from, e))?;
        std::os::unix::fs::symlink(t, to).map_err(|e| RunError::io(to, e))
    } else if meta.is_dir() {
        std::fs::create_dir(to).map_err(|e| RunError::io(to, e))?;
        for e in std::fs::read_dir(from).map_err(|e| RunError::io(from, e))? {
            let e = e.map_err(|e| RunError::io(from, e))?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
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
        let k1 = key_part(&m, "/", d.path(), &none).unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(d.path().join("a"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(k1, key_part(&m, "/", d.path(), &none).unwrap(), "touch");
        std::fs::write(d.path().join("a"), "2").unwrap();
        assert_ne!(k1, key_part(&m, "/", d.path(), &none).unwrap(), "content");
    }
}
