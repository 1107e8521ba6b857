//! What the cache directory's users agree on: a lock (every push holds it shared for its
//! whole run, `regbuild prune` exclusively, so nothing is removed under a running build),
//! use stamps (when an entry was last used, which prune sorts by), and how its trees are
//! removed ([`remove_tree`]).
//!
//! The lock is `flock(2)` on `<cache>/lock`, so it dies with its process: a killed build
//! never leaves the cache locked. Use stamps are empty files `<entry>.used` beside the entry
//! whose mtime is the last use: touching an unpacked layer's own directory would change
//! what a step sees as the mtime of `/`.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

/// How long a push waits for a running prune to finish before giving up.
const WAIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum CacheLockError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: the cache is in use by a running regbuild push; prune again when it has finished"
    )]
    InUse { path: PathBuf },
    #[error("{path}: a regbuild prune held the cache for more than {} s", WAIT.as_secs())]
    Timeout { path: PathBuf },
    /// The cache root is not private to this user: what builds unpack there (setuid files,
    /// device nodes of base images) must be out of other users' reach.
    #[error("cache directory {path}: {reason}; use a directory only you can write (`chmod 700` it, or set REGBUILD_CACHE)")]
    NotPrivate { path: PathBuf, reason: String },
}

/// Makes the cache root private to this user: created with mode 0700 (its missing parents
/// too); refused when another user owns it or when its group or others may write it;
/// tightened to 0700 when others may only read or search it (older regbuilds made it
/// 0755). Below it, regbuild makes its own directories 0700; the trees it unpacks keep the
/// modes their layers give (setuid files, devices), which is safe only because nobody else
/// can reach them.
pub fn prepare_root(root: &Path) -> Result<(), CacheLockError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io = |source| CacheLockError::Io {
        path: root.to_path_buf(),
        source,
    };
    let refuse = |reason: String| CacheLockError::NotPrivate {
        path: root.to_path_buf(),
        reason,
    };
    regbuild_rootfs::scratch::create_dir_all_with_mode(root, 0o700).map_err(io)?;
    let meta = std::fs::metadata(root).map_err(io)?;
    if !meta.is_dir() {
        return Err(refuse("not a directory".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refuse(format!(
            "owned by uid {}, not by you (uid {me})",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "mode {mode:04o} lets other users write it (they could plant layers that later builds run)"
        )));
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        tracing::info!(path = %root.display(), "cache directory made private (mode 0700, was {mode:04o})");
    }
    // Whoever may rename an ancestor may put another tree in the cache's place.
    let real = std::fs::canonicalize(root).map_err(io)?;
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(io)?;
        match ancestor_risk(meta.uid(), meta.mode(), me) {
            AncestorRisk::None => {}
            AncestorRisk::Owner(uid) => {
                return Err(refuse(format!(
                    "its parent {} belongs to uid {uid}, who could put another tree in its place",
                    dir.display()
                )))
            }
            // A volume every process may write (Kubernetes' emptyDir is 0777): refused, it
            // would fail most pods, where one user runs everything; said.
            AncestorRisk::Writable(mode) => tracing::warn!(
                "cache directory {}: its parent {} is writable by every user (mode {mode:04o}) \
                 without the sticky bit: another local user could replace the cache",
                root.display(),
                dir.display()
            ),
        }
    }
    Ok(())
}

/// How a directory above the cache lets another user replace the cache.
#[derive(Debug, PartialEq, Eq)]
enum AncestorRisk {
    None,
    /// Owned by someone else than root and this user.
    Owner(u32),
    /// Writable by others without the sticky bit (`/tmp`'s sticky bit keeps others from
    /// renaming what is not theirs).
    Writable(u32),
}

fn ancestor_risk(uid: u32, mode: u32, me: u32) -> AncestorRisk {
    if uid != 0 && uid != me {
        AncestorRisk::Owner(uid)
    } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        AncestorRisk::Writable(mode & 0o7777)
    } else {
        AncestorRisk::None
    }
}

/// A held lock on the cache directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

fn lock_file(root: &Path) -> Result<(File, PathBuf), CacheLockError> {
    let path = root.join("lock");
    let io = |source| CacheLockError::Io {
        path: path.clone(),
        source,
    };
    prepare_root(root)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    Ok((file, path))
}

impl CacheLock {
    /// Held by a push: many at once; waits (bounded) while a prune runs.
    pub fn shared(root: &Path) -> Result<CacheLock, CacheLockError> {
        let (file, path) = lock_file(root)?;
        let until = Instant::now() + WAIT;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockShared) {
                Ok(()) => return Ok(CacheLock { _file: file }),
                Err(Errno::WOULDBLOCK) if Instant::now() < until => std::thread::sleep(POLL),
                Err(Errno::WOULDBLOCK) => return Err(CacheLockError::Timeout { path }),
                Err(e) => {
                    return Err(CacheLockError::Io {
                        path,
                        source: e.into(),
                    })
                }
            }
        }
    }

    /// Held by prune: only when no push runs (it does not wait for one).
    pub fn exclusive(root: &Path) -> Result<CacheLock, CacheLockError> {
        let (file, path) = lock_file(root)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(CacheLock { _file: file }),
            Err(Errno::WOULDBLOCK) => Err(CacheLockError::InUse { path }),
            Err(e) => Err(CacheLockError::Io {
                path,
                source: e.into(),
            }),
        }
    }
}

/// The directory of the cache mount `id` under `caches` (`run-cache/`; its lock file:
/// `.lock` beside it).
pub fn mount_dir(caches: &Path, id: &str) -> PathBuf {
    use sha2::Digest as _;
    let name = format!("{:x}", sha2::Sha256::digest(id.as_bytes()));
    caches.join(&name[..32])
}

/// The exclusive lock of a cache mount's lock file `path` if nobody holds it now.
pub fn try_lock_mount(path: &Path) -> io::Result<Option<File>> {
    let f = File::create(path)?;
    match flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The use stamp of `entry`.
pub fn stamp_of(entry: &Path) -> PathBuf {
    let mut name = entry.as_os_str().to_owned();
    name.push(".used");
    PathBuf::from(name)
}

/// Records that `entry` was used now. Best effort: a cache that cannot be stamped still
/// works; prune then sees the entry's own age.
pub fn mark_used(entry: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let stamp = stamp_of(entry);
    // Never through a symlink: a stamp is a file of ours or nothing.
    let touched = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&stamp)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    if let Err(e) = touched {
        tracing::debug!(path = %stamp.display(), error = %e, "use stamp not written");
    }
}

/// A tree [`remove_tree`] could not remove, and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct NotRemoved {
    pub path: PathBuf,
    pub reason: String,
}

/// Removes `path` (a tree or a file; gone already is fine). Trees may hold directories with
/// modes like 0500 (as their layer says) and, made by a rootless RUN step, files of the
/// user's subordinate ids that the user cannot unlink outside a user namespace: those are
/// removed as root of one that maps the same `/etc/subuid` ranges, through util-linux's
/// `unshare --map-root-user --map-auto` (essential in Debian; the one process this runs).
pub fn remove_tree(path: &Path) -> Result<(), NotRemoved> {
    let err = match regbuild_rootfs::tree::remove_tree(path) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    // EACCES and EPERM both.
    if err.kind() != io::ErrorKind::PermissionDenied || rustix::process::geteuid().is_root() {
        return Err(NotRemoved {
            path: path.to_path_buf(),
            reason: err.to_string(),
        });
    }
    let out = Command::new("unshare")
        .args([
            "--map-root-user",
            "--map-auto",
            "rm",
            "-rf",
            "--one-file-system",
            "--",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(o) if o.status.success() && std::fs::symlink_metadata(path).is_err() => Ok(()),
        Ok(o) => Err(NotRemoved {
            path: path.to_path_buf(),
            reason: format!(
                "{err}; in a user namespace too ({}): remove it as root",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        }),
        Err(e) => Err(NotRemoved {
            path: path.to_path_buf(),
            reason: format!(
                "{err}; and `unshare` (util-linux) could not run: {e}; remove it as root"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_ancestor_another_user_owns_or_anyone_may_rename_in_is_a_risk() {
        assert_eq!(ancestor_risk(0, 0o40755, 1000), AncestorRisk::None);
        assert_eq!(ancestor_risk(1000, 0o40700, 1000), AncestorRisk::None);
        assert_eq!(ancestor_risk(0, 0o41777, 1000), AncestorRisk::None, "/tmp");
        assert_eq!(
            ancestor_risk(1001, 0o40755, 1000),
            AncestorRisk::Owner(1001)
        );
        assert_eq!(
            ancestor_risk(0, 0o40777, 1000),
            AncestorRisk::Writable(0o777)
        );
        assert_eq!(ancestor_risk(0, 0o40775, 0), AncestorRisk::Writable(0o775));
    }

    use super::*;

    #[test]
    fn prune_is_refused_while_a_push_holds_the_cache_and_allowed_after() {
        let dir = tempfile::tempdir().unwrap();
        let push = CacheLock::shared(dir.path()).unwrap();
        let other_push = CacheLock::shared(dir.path()).unwrap();
        let err = CacheLock::exclusive(dir.path()).unwrap_err();
        assert!(matches!(err, CacheLockError::InUse { .. }), "{err}");
        drop(push);
        drop(other_push);
        let prune = CacheLock::exclusive(dir.path()).unwrap();
        drop(prune);
    }

    #[test]
    fn a_stamp_sits_beside_its_entry_and_moves_with_each_use() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("abc");
        std::fs::create_dir(&entry).unwrap();
        assert_eq!(stamp_of(&entry), dir.path().join("abc.used"));
        mark_used(&entry);
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(stamp_of(&entry))
            .unwrap()
            .set_modified(old)
            .unwrap();
        mark_used(&entry);
        let now = std::fs::metadata(stamp_of(&entry))
            .unwrap()
            .modified()
            .unwrap();
        assert!(now > old + Duration::from_secs(3600));
    }
}
