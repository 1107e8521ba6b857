//! A cache mount's contents as a tarball, both ways: written from the cache directory
//! (`write`: each entry read relative to its directory's descriptor, never through a link,
//! mtimes and owners kept, as build tools compare mtimes) and restored into a new directory
//! (`unpack`: read by regbuild's own bounded tar reader alone, each entry written relative to
//! its parent's descriptor). Hand-written rather than the layer writer and the extraction
//! engine: a layer deliberately loses mtimes, and the engine records owners and modes rather
//! than applying them; the `tar` crate writes (its reader loads an extension header whole).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::artifact::MOUNT_MEDIA_TYPE;
use regbuild_oci::manifest::Descriptor;

/// The cache directory `dir` as a gzip tarball in `tmp` with its descriptor (None: its
/// files hold more than `max` bytes). The caller holds the cache's lock.
pub(super) fn write(
    dir: &Path,
    max: u64,
    tmp: &Path,
) -> std::io::Result<Option<(PathBuf, Descriptor)>> {
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
    let digest = crate::builder::layer::file_digest(&path)?;
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
pub(super) fn unpack(tarball: &Path, dest: &Path, owners: bool, max: u64) -> std::io::Result<()> {
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
    .map_err(std::io::Error::other)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
