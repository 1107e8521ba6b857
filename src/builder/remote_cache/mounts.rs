//! `--cache-mounts registry`: each `RUN --mount=type=cache` directory the build used is
//! stored as a gzip-compressed tarball in the build cache artifact (keyed by cache id and
//! platform), and restored on a runner whose cache directory lacks it, before the first step
//! that mounts it. Bounded by `--cache-mounts-max`: a bigger cache is warned of and kept
//! local; a restore stops at the same size. A tarball is uploaded only when its bytes
//! changed (same digest: the registry has it).
//!
//! The tarball itself, both ways, is `tarball`'s.
//!
//! Trust: whoever can push to the repository decides what a restored cache holds (as for
//! the layers found there by key). A restore keeps every entry inside the cache directory
//! (written relative to descriptors, never through a link), writes only files,
//! directories and symlinks, and drops setuid, setgid and sticky bits; owners are kept only
//! when regbuild runs as root.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use regbuild_frontend::stages::RunMount;
use regbuild_oci::manifest::Descriptor;
use regbuild_registry::Registry;

use super::artifact::MountBlob;
use super::{RemoteBlob, RemoteCache};
use crate::builder::cache_dir::{mount_dir as cache_dir, try_lock_mount as try_lock};

/// Where cache mounts go (`--cache-mounts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheMounts {
    /// Stored in (and restored from) the registry's build cache.
    pub registry: bool,
    /// The most a cache may hold to be stored (bytes of its files).
    pub max: u64,
}

impl Default for CacheMounts {
    fn default() -> Self {
        CacheMounts {
            registry: false,
            max: 1 << 30,
        }
    }
}

/// Restores the cache mounts of `mounts` this machine lacks from the registry's build cache,
/// each under its lock; what could not be restored starts empty (said in the returned
/// warnings).
pub async fn restore(
    registry: &Registry,
    remote: &RemoteCache,
    platform: &str,
    caches: &Path,
    mounts: &[RunMount],
    limits: (CacheMounts, bool),
    tmp: &Path,
) -> Vec<String> {
    let (opts, privileged) = limits;
    let mut warnings = Vec::new();
    if !opts.registry {
        return warnings;
    }
    for m in mounts {
        let RunMount::Cache {
            id,
            from: None,
            mode,
            uid,
            gid,
            ..
        } = m
        else {
            continue;
        };
        let dir = cache_dir(caches, id);
        let Some(blob) = remote.mounts.get(&(id.clone(), platform.to_string())) else {
            continue;
        };
        if std::fs::symlink_metadata(&dir).is_ok() {
            continue;
        }
        let fetched = match regbuild_rootfs::scratch::create_dir_all_with_mode(caches, 0o700) {
            Ok(()) => fetch(registry, blob, opts.max, tmp).await,
            Err(e) => Err(e),
        };
        let owner = privileged.then_some((*uid, *gid));
        let restored = fetched.and_then(|file| {
            let r = tokio::task::block_in_place(|| {
                unpack_into_place(&file, caches, &dir, *mode, owner, opts.max)
            });
            let _ = std::fs::remove_file(&file);
            r
        });
        match restored {
            Ok(true) => {
                tracing::info!(cache = %id, bytes = blob.descriptor.size, "restored a cache mount from the registry")
            }
            Ok(false) => {}
            Err(e) => warnings.push(format!(
                "cache mount {id}: not restored from the registry ({e}); it starts empty"
            )),
        }
    }
    warnings
}

/// Downloads a cache tarball (verified) into `tmp`.
async fn fetch(
    registry: &Registry,
    blob: &RemoteBlob,
    max: u64,
    tmp: &Path,
) -> std::io::Result<PathBuf> {
    use futures::StreamExt;
    if blob.descriptor.size > max {
        return Err(std::io::Error::other(format!(
            "{} bytes, over --cache-mounts-max",
            blob.descriptor.size
        )));
    }
    let stream = blob
        .repo(registry)
        .get_blob(&blob.descriptor.digest, Some(blob.descriptor.size))
        .await
        .map_err(std::io::Error::other)?;
    let file = tempfile::Builder::new()
        .prefix("cache-mount-")
        .tempfile_in(tmp)?;
    let (mut f, path) = file.keep().map_err(|e| e.error)?;
    let mut stream = stream.into_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => f.write_all(&c)?,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(std::io::Error::other(e));
            }
        }
    }
    Ok(path)
}

/// Unpacks `tarball` into a new directory renamed to `dir` under its lock (false: another
/// build holds it, or made it meanwhile).
fn unpack_into_place(
    tarball: &Path,
    caches: &Path,
    dir: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
    max: u64,
) -> std::io::Result<bool> {
    let Some(_lock) = try_lock(&dir.with_extension("lock")).map_err(other)? else {
        return Ok(false);
    };
    if std::fs::symlink_metadata(dir).is_ok() {
        return Ok(false);
    }
    let fresh = tempfile::Builder::new()
        .prefix(".new-")
        .tempdir_in(caches)?;
    let made = fresh.path().join("dir");
    let placed = (|| {
        std::fs::create_dir(&made)?;
        super::tarball::unpack(tarball, &made, owner.is_some(), max)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&made, Some(uid), Some(gid))?;
        }
        std::fs::rename(&made, dir)
    })();
    if let Err(e) = placed {
        // Rootless, a directory the tarball made read-only would stop the TempDir's removal.
        let _ = crate::builder::cache_dir::remove_tree(fresh.path());
        return Err(e);
    }
    Ok(true)
}

/// Cache mounts one artifact lists at most.
const MAX_MOUNTS: usize = 64;
/// What the cache mounts carried forward weigh at most, in `--cache-mounts-max`s.
const CARRIED_MAX: u64 = 4;

/// The cache mounts to list in the build cache artifact: each one `used` (id, platform),
/// tarred if it fits `opts.max` (its file in `tmp`, or None when the registry already holds
/// the same bytes), and each other one of the Dockerfile's (`ids`) the registry's build
/// cache had for the build's platforms (carried forward: each within `opts.max`, all
/// within [`CARRIED_MAX`] times it).
#[allow(clippy::too_many_arguments)]
pub fn export(
    remote: &RemoteCache,
    used: &BTreeSet<(String, String)>,
    ids: &BTreeSet<String>,
    platform: &str,
    caches: &Path,
    opts: CacheMounts,
    tmp: &Path,
    warnings: &mut Vec<String>,
) -> Vec<(MountBlob, Option<PathBuf>, Option<RemoteBlob>)> {
    let mut out = Vec::new();
    if !opts.registry {
        return out;
    }
    let mut done = BTreeSet::new();
    for (id, platform) in used {
        let dir = cache_dir(caches, id);
        match tar_cache(&dir, opts.max, tmp) {
            Ok(Some((file, descriptor))) => {
                let known = remote.mounts.get(&(id.clone(), platform.clone()));
                let unchanged = known.filter(|k| k.descriptor.digest == descriptor.digest);
                let blob = MountBlob {
                    id: id.clone(),
                    platform: platform.clone(),
                    descriptor,
                };
                match unchanged {
                    Some(k) => {
                        let _ = std::fs::remove_file(&file);
                        out.push((blob, None, Some(k.clone())));
                    }
                    None => out.push((blob, Some(file), None)),
                }
                done.insert((id.clone(), platform.clone()));
            }
            Ok(None) => warnings.push(format!(
                "cache mount {id}: over --cache-mounts-max ({} bytes), kept on this machine only",
                opts.max
            )),
            Err(e) => warnings.push(format!(
                "cache mount {id}: not stored in the registry ({e}), kept on this machine only"
            )),
        }
    }
    let platforms: BTreeSet<&str> = used
        .iter()
        .map(|(_, p)| p.as_str())
        .chain([platform])
        .collect();
    let mut carried = 0u64;
    let mut known: Vec<_> = remote.mounts.iter().collect();
    known.sort_by(|a, b| a.0.cmp(b.0));
    for ((id, platform), blob) in known {
        let size = blob.descriptor.size;
        let keep = ids.contains(id)
            && platforms.contains(platform.as_str())
            && size <= opts.max
            && carried.saturating_add(size) <= opts.max.saturating_mul(CARRIED_MAX)
            && out.len() < MAX_MOUNTS;
        if keep && !done.contains(&(id.clone(), platform.clone())) {
            carried += size;
            let m = MountBlob {
                id: id.clone(),
                platform: platform.clone(),
                descriptor: blob.descriptor.clone(),
            };
            out.push((m, None, Some(blob.clone())));
        }
    }
    out
}

/// The cache directory `dir` as a tarball (see `tarball::write`), under the cache's lock.
fn tar_cache(dir: &Path, max: u64, tmp: &Path) -> std::io::Result<Option<(PathBuf, Descriptor)>> {
    let _lock = try_lock(&dir.with_extension("lock"))
        .map_err(other)?
        .ok_or_else(|| std::io::Error::other("another build holds it"))?;
    super::tarball::write(dir, max, tmp)
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{FileType, Mode};

    #[test]
    fn a_cache_round_trips_with_its_mtimes_and_links_but_no_setuid() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let caches = tmp.path().join("run-cache");
        std::fs::create_dir(&caches).unwrap();
        let dir = cache_dir(&caches, "go");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f"), b"cached").unwrap();
        std::fs::set_permissions(dir.join("a/b/f"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::os::unix::fs::symlink("b/f", dir.join("a/link")).unwrap();
        // A link out of the cache stays a link; a FIFO is left out (never read, never waited on).
        std::os::unix::fs::symlink("/etc/hostname", dir.join("host")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(dir.join("a/b/f"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let (file, d) = tar_cache(&dir, 1 << 20, tmp.path()).unwrap().unwrap();
        let (_, d2) = tar_cache(&dir, 1 << 20, tmp.path()).unwrap().unwrap();
        assert_eq!(d.digest, d2.digest, "the same cache gives the same bytes");
        assert!(
            tar_cache(&dir, 3, tmp.path()).unwrap().is_none(),
            "over the bound"
        );

        let other = cache_dir(&caches, "go-elsewhere");
        assert!(unpack_into_place(&file, &caches, &other, 0o755, None, 1 << 20).unwrap());
        assert_eq!(std::fs::read(other.join("a/b/f")).unwrap(), b"cached");
        let meta = std::fs::metadata(other.join("a/b/f")).unwrap();
        assert_eq!(meta.modified().unwrap(), old);
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        assert_eq!(
            std::fs::read_link(other.join("a/link")).unwrap(),
            Path::new("b/f")
        );
        assert_eq!(
            std::fs::read_link(other.join("host")).unwrap(),
            Path::new("/etc/hostname")
        );
        assert!(std::fs::symlink_metadata(other.join("fifo")).is_err());
        assert!(
            !unpack_into_place(&file, &caches, &other, 0o755, None, 1 << 20).unwrap(),
            "never over an existing cache"
        );
        let small = cache_dir(&caches, "small");
        assert!(unpack_into_place(&file, &caches, &small, 0o755, None, 3).is_err());
        assert!(
            std::fs::symlink_metadata(&small).is_err(),
            "a failed restore leaves nothing"
        );
    }
}
