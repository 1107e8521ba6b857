//! `--cache-mounts registry`: each `RUN --mount=type=cache` directory the build used is
//! stored as a gzip-compressed tarball in the build cache artifact (keyed by cache id and
//! platform), and restored on a runner whose cache directory lacks it, before the first step
//! that mounts it. Bounded by `--cache-mounts-max`: a bigger cache is warned of and kept
//! local; a restore stops at the same size. A tarball is uploaded only when its bytes
//! changed (same digest: the registry has it).
//!
//! Hand-written rather than the layer writer and extraction engine: a cache keeps its
//! files' own mtimes (build tools compare them), which layers deliberately do not. Written
//! with the `tar` crate's builder; read with regbuild's own tar reader only (the `tar`
//! crate reads an extension header whole into memory).
//!
//! Trust: whoever can push to the repository decides what a restored cache holds (as for
//! the layers found there by key). A restore keeps every entry inside the cache directory
//! (written relative to descriptors, never through a link), writes only files,
//! directories and symlinks, and drops setuid, setgid and sticky bits; owners are kept only
//! when regbuild runs as root.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use regbuild_frontend::stages::RunMount;
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::Descriptor;
use regbuild_registry::Registry;

use super::artifact::{MountBlob, MOUNT_MEDIA_TYPE};
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
        unpack(tarball, &made, owner.is_some(), max)?;
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

/// Entries a cache tarball may hold.
const MAX_ENTRIES: u64 = 1_000_000;

/// Writes the files, directories and symlinks of `tarball` inside `dest`, a new directory
/// only this process writes, at most `max` bytes (a header counted for each entry). The
/// stream is read by regbuild's own tar reader alone, which bounds every header (extension
/// headers included), entry and total; each entry is written relative to its parent's
/// descriptor, opened component by component without following a link, so no entry is
/// written through a symlink another made. Files, directories and symlinks keep their mode
/// bits (never setuid, setgid or sticky), mtimes and, as root, owners; a directory's are
/// set once everything below it is written.
fn unpack(tarball: &Path, dest: &Path, owners: bool, max: u64) -> std::io::Result<()> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(tarball)?);
    let limits = regbuild_fs::extract::Limits {
        max_entry_size: max,
        max_total_size: max,
        max_entries: MAX_ENTRIES,
    };
    let root = rustix::fs::open(dest, DIR_FLAGS, Mode::empty())?;
    let mut budget = regbuild_fs::tar_read::Budget::default();
    let mut total = 0u64;
    let mut dirs: Vec<(PathBuf, Stamp)> = Vec::new();
    let name = "cache mount";
    regbuild_fs::extract::engine::for_each_member(name, gz, &limits, &mut budget, |m, data| {
        total = total.saturating_add(512);
        let fail = |e: std::io::Error| regbuild_fs::extract::engine::read_error(name, &m.name, e);
        if total > max {
            return Err(fail(std::io::Error::other(
                "larger than --cache-mounts-max",
            )));
        }
        if m.path.as_os_str().is_empty() {
            return Ok(());
        }
        let stamp = Stamp {
            mode: m.mode() & 0o777,
            owner: owners.then(|| m.owner()),
            mtime: m.mtime,
        };
        if m.is_dir() {
            make_dir(&root, &m.path).map_err(fail)?;
            dirs.push((m.path.clone(), stamp));
        } else if m.is_file() {
            write_file(&root, &m.path, data, &stamp).map_err(fail)?;
        } else if let Some(target) = m.symlink_target() {
            write_symlink(&root, &m.path, target, &stamp).map_err(fail)?;
        }
        Ok(())
    })
    .map_err(other)?;
    // Deepest first: a directory's mtime is set after what was written below it.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
    for (path, stamp) in dirs {
        let fd = open_dir(&root, &path)?;
        stamp.apply(&fd)?;
    }
    Ok(())
}

/// What an entry's inode gets: mode bits, owner (as root), mtime.
struct Stamp {
    mode: u32,
    owner: Option<(u64, u64)>,
    mtime: u64,
}

impl Stamp {
    fn apply(&self, fd: &OwnedFd) -> std::io::Result<()> {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode))?;
        if let Some((uid, gid)) = self.owner {
            let (uid, gid) = (ids(uid)?, ids(gid)?);
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        rustix::fs::futimens(fd, &times(self.mtime))?;
        Ok(())
    }
}

fn ids(id: u64) -> std::io::Result<u32> {
    u32::try_from(id)
        .ok()
        .filter(|&i| i != u32::MAX)
        .ok_or_else(|| std::io::Error::other("owner id out of range"))
}

fn times(mtime: u64) -> rustix::fs::Timestamps {
    let at = rustix::fs::Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    rustix::fs::Timestamps {
        last_access: at,
        last_modification: at,
    }
}

/// The directory `path` (relative to `root`), opened component by component without
/// following a link.
fn open_dir(root: &OwnedFd, path: &Path) -> std::io::Result<OwnedFd> {
    let mut fd = rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
    for c in path.components() {
        fd = rustix::fs::openat(&fd, c.as_os_str(), DIR_FLAGS, Mode::empty())?;
    }
    Ok(fd)
}

/// The parent of `path` (made where missing, private until its own entry says otherwise)
/// and `path`'s last name.
fn parent_of<'p>(
    root: &OwnedFd,
    path: &'p Path,
) -> std::io::Result<(OwnedFd, &'p std::ffi::OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("an entry without a name"))?;
    let mut fd = rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
    for c in path.parent().into_iter().flat_map(Path::components) {
        let c = c.as_os_str();
        fd = match rustix::fs::openat(&fd, c, DIR_FLAGS, Mode::empty()) {
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::mkdirat(&fd, c, Mode::from_raw_mode(0o700))?;
                rustix::fs::openat(&fd, c, DIR_FLAGS, Mode::empty())?
            }
            other => other?,
        };
    }
    Ok((fd, name))
}

/// Removes what is at `name` in `dir` unless it is a directory (which stays, or refuses).
fn clear(dir: &OwnedFd, name: &std::ffi::OsStr, keep_dir: bool) -> std::io::Result<()> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => match keep_dir {
            true => Ok(()),
            false => Err(std::io::Error::other("a directory stands there")),
        },
        Ok(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
    }
}

fn make_dir(root: &OwnedFd, path: &Path) -> std::io::Result<()> {
    let (parent, name) = parent_of(root, path)?;
    clear(&parent, name, true)?;
    match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn write_file(
    root: &OwnedFd,
    path: &Path,
    data: &mut dyn Read,
    stamp: &Stamp,
) -> std::io::Result<()> {
    let (parent, name) = parent_of(root, path)?;
    clear(&parent, name, false)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&parent, name, flags, Mode::from_raw_mode(0o600))?;
    let mut file = std::fs::File::from(fd);
    std::io::copy(data, &mut file)?;
    let fd = OwnedFd::from(file);
    stamp.apply(&fd)
}

fn write_symlink(root: &OwnedFd, path: &Path, target: &[u8], stamp: &Stamp) -> std::io::Result<()> {
    let (parent, name) = parent_of(root, path)?;
    clear(&parent, name, false)?;
    rustix::fs::symlinkat(std::ffi::OsStr::from_bytes(target), &parent, name)?;
    if let Some((uid, gid)) = stamp.owner {
        rustix::fs::chownat(
            &parent,
            name,
            Some(rustix::fs::Uid::from_raw(ids(uid)?)),
            Some(rustix::fs::Gid::from_raw(ids(gid)?)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    rustix::fs::utimensat(
        &parent,
        name,
        &times(stamp.mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
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

/// The cache directory `dir` as a gzip tarball in `tmp` with its descriptor (None: its
/// files hold more than `max` bytes).
fn tar_cache(dir: &Path, max: u64, tmp: &Path) -> std::io::Result<Option<(PathBuf, Descriptor)>> {
    let _lock = try_lock(&dir.with_extension("lock"))
        .map_err(other)?
        .ok_or_else(|| std::io::Error::other("another build holds it"))?;
    let root = rustix::fs::open(dir, DIR_FLAGS, Mode::empty())?;
    let file = tempfile::Builder::new()
        .prefix("cache-mount-")
        .suffix(".tar.gz")
        .tempfile_in(tmp)?;
    let gz =
        flate2::GzBuilder::new().write(file.as_file().try_clone()?, flate2::Compression::new(6));
    let mut builder = tar::Builder::new(gz);
    let mut total = 0u64;
    if !append_dir(&mut builder, &root, Path::new(""), 0, &mut total, max)? {
        return Ok(None);
    }
    builder.into_inner()?.finish()?.sync_all()?;
    let (_, path) = file.keep().map_err(|e| e.error)?;
    let digest = file_digest(&path)?;
    let size = std::fs::metadata(&path)?.len();
    Ok(Some((
        path,
        Descriptor::new(MOUNT_MEDIA_TYPE, digest, size),
    )))
}

/// Opening a directory of a cache: never through a symlink (a step of a concurrent build
/// sharing the cache could swap one in).
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
/// Directories deeper than this are not stored (each level holds a descriptor).
const MAX_DEPTH: usize = 256;

/// Appends what the directory `dir` (at `rel` in the cache) holds, sorted, parents first:
/// directories, regular files and symlinks, each read relative to its parent's descriptor
/// without following links (sockets, FIFOs and devices are left out). False once the files
/// hold more than `max` bytes.
fn append_dir<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &OwnedFd,
    rel: &Path,
    depth: usize,
    total: &mut u64,
    max: u64,
) -> std::io::Result<bool> {
    if depth > MAX_DEPTH {
        return Err(std::io::Error::other("directories nested too deeply"));
    }
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsString::from_vec(name));
        }
    }
    names.sort();
    for name in names {
        let path = rel.join(&name);
        *total = total.saturating_add(512);
        let st = rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        let mut header = header_of(&st);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let sub = rustix::fs::openat(dir, name.as_os_str(), DIR_FLAGS, Mode::empty())?;
                header.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut header, &path, std::io::empty())?;
                if !append_dir(b, &sub, &path, depth + 1, total, max)? {
                    return Ok(false);
                }
            }
            FileType::RegularFile => {
                // Named without opening it (O_PATH: a device node swapped in is never
                // opened), checked, then opened through that descriptor.
                let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let named = rustix::fs::openat(dir, name.as_os_str(), flags, Mode::empty())?;
                let st = rustix::fs::fstat(&named)?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    continue;
                }
                let fd = reopen(&named)?;
                let size = st.st_size.max(0) as u64;
                *total = total.saturating_add(size);
                if *total > max {
                    return Ok(false);
                }
                let mut header = header_of(&st);
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                // Exactly `size` bytes, zeros after a file that shrank meanwhile: the
                // header's size and the data never disagree.
                let data = std::fs::File::from(fd)
                    .take(size)
                    .chain(std::io::repeat(0))
                    .take(size);
                b.append_data(&mut header, &path, data)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name.as_os_str(), Vec::new())?;
                *total = total.saturating_add(target.as_bytes().len() as u64);
                let target = std::ffi::OsStr::from_bytes(target.as_bytes());
                header.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut header, &path, target)?;
            }
            _ => {}
        }
    }
    Ok(true)
}

/// Opens for reading the regular file an `O_PATH` descriptor names (through
/// `/proc/self/fd`, the one way to reopen such a descriptor).
fn reopen(named: &OwnedFd) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", named.as_raw_fd());
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path.as_str(), flags, Mode::empty())?)
}

/// A tar header with a file's mode bits, owner and mtime.
fn header_of(st: &rustix::fs::Stat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn file_digest(path: &Path) -> std::io::Result<Digest> {
    let mut f = std::fs::File::open(path)?;
    let mut h = regbuild_oci::digest::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_huge_extension_header_is_refused_before_it_is_read() {
        // A PAX header declaring 64 MiB (of zeros: a tiny gzip), which the `tar` crate
        // would read whole into memory.
        let tmp = tempfile::tempdir().unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("pax").unwrap();
        h.set_size(64 << 20);
        h.set_mode(0o644);
        h.set_cksum();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(h.as_bytes()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).unwrap();
        }
        let file = tmp.path().join("bomb.tar.gz");
        std::fs::write(&file, gz.finish().unwrap()).unwrap();
        let dest = tmp.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        assert!(unpack(&file, &dest, false, 1 << 30).is_err());
        assert!(std::fs::read_dir(&dest).unwrap().next().is_none());
    }

    #[test]
    fn a_restore_stays_inside_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        // A symlink to a directory outside, then a file written through it.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "esc", &outside).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "esc/pwned", &b"bad"[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b.into_inner().unwrap()).unwrap();
        let file = tmp.path().join("evil.tar.gz");
        std::fs::write(&file, gz.finish().unwrap()).unwrap();
        let dest = tmp.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let _ = unpack(&file, &dest, false, 1 << 20);
        assert!(!outside.join("pwned").exists());
    }
}
