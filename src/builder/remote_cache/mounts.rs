//! `--cache-mounts registry`: each `RUN --mount=type=cache` directory the build used is
//! stored as a gzip-compressed tarball in the build cache artifact (keyed by cache id and
//! platform), and restored on a runner whose cache directory lacks it, before the first step
//! that mounts it. Bounded by `--cache-mounts-max`: a bigger cache is warned of and kept
//! local; a restore stops at the same size. A tarball is uploaded only when its bytes
//! changed (same digest: the registry has it).
//!
//! Hand-written over the `tar` crate rather than the layer writer: a cache keeps its files'
//! own mtimes (build tools compare them), which layers deliberately do not.
//!
//! Trust: whoever can push to the repository decides what a restored cache holds (as for
//! the layers found there by key). A restore keeps every entry inside the cache directory
//! (the `tar` crate's `unpack_in`), writes only files, directories and symlinks, and drops
//! setuid, setgid and sticky bits; owners are kept only when regbuild runs as root.

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
    std::fs::create_dir(&made)?;
    if let Err(e) = unpack(tarball, &made, owner.is_some(), max) {
        // Rootless, a directory the tarball made read-only would stop the TempDir's removal.
        let _ = crate::builder::cache_dir::remove_tree(fresh.path());
        return Err(e);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&made, std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&made, Some(uid), Some(gid))?;
    }
    std::fs::rename(&made, dir)?;
    Ok(true)
}

/// Entries a cache tarball may hold.
const MAX_ENTRIES: u64 = 1_000_000;

/// Reads `tarball` through regbuild's own tar reader, which bounds every header (extension
/// headers included), entry and total before the `tar` crate, which reads an extension
/// header whole, ever sees it.
fn check(tarball: &Path, max: u64) -> std::io::Result<()> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(tarball)?);
    let limits = regbuild_fs::extract::Limits {
        max_entry_size: max,
        max_total_size: max,
        max_entries: MAX_ENTRIES,
    };
    let mut budget = regbuild_fs::tar_read::Budget::default();
    regbuild_fs::extract::engine::for_each_member(
        "cache mount",
        gz,
        &limits,
        &mut budget,
        |_, _| Ok(()),
    )
    .map_err(other)
}

/// Unpacks files, directories and symlinks of `tarball` inside `dest`, at most `max` bytes.
fn unpack(tarball: &Path, dest: &Path, owners: bool, max: u64) -> std::io::Result<()> {
    check(tarball, max)?;
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(tarball)?);
    let mut archive = tar::Archive::new(gz);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(owners);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    // No setuid, setgid or sticky bit comes out of a registry.
    archive.set_mask(0o7000);
    let mut total = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry?;
        use tar::EntryType::*;
        if !matches!(entry.header().entry_type(), Regular | Directory | Symlink) {
            continue;
        }
        // Each entry counts a header's worth: empty files and directories are not free.
        total = total.saturating_add(entry.size()).saturating_add(512);
        if total > max {
            return Err(std::io::Error::other("larger than --cache-mounts-max"));
        }
        let name = entry.path()?.into_owned();
        let inside = name.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        if !inside {
            continue;
        }
        // A name an earlier entry made a symlink is never written through.
        let at = dest.join(&name);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        entry.unpack_in(dest)?;
    }
    Ok(())
}

/// Cache mounts one artifact lists at most.
const MAX_MOUNTS: usize = 64;

/// The cache mounts to list in the build cache artifact: each one `used` (id, platform),
/// tarred if it fits `opts.max` (its file in `tmp`, or None when the registry already holds
/// the same bytes), and each other one of the Dockerfile's (`ids`) the registry's build
/// cache had (carried forward, within `opts.max`).
pub fn export(
    remote: &RemoteCache,
    used: &BTreeSet<(String, String)>,
    ids: &BTreeSet<String>,
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
    for ((id, platform), blob) in &remote.mounts {
        let keep = ids.contains(id) && blob.descriptor.size <= opts.max && out.len() < MAX_MOUNTS;
        if keep && !done.contains(&(id.clone(), platform.clone())) {
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
                b.append_data(&mut header, &path, std::fs::File::from(fd).take(size))?;
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
