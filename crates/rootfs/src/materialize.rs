//! A stage's root filesystem as one plain directory: overlay lower directories (the store's,
//! [`crate::lower`]) applied bottom-up, for `RUN` steps where overlayfs is unavailable (the
//! snapshot-diff fallback, [`crate::snapshot`]).
//!
//! The lower directories are in overlay form: a character device 0/0 deletes the path
//! below it, a directory with `<ns>.overlay.opaque` = `y` hides everything below it in the
//! lower layers, and any other entry replaces what is below (a directory merges with a
//! directory). The result is what the overlay would show: regular files are copied
//! (`copy_file_range`, so a filesystem with reflinks shares the blocks), hard links within a
//! layer stay hard links, symlinks, device nodes and FIFOs are recreated, and each path gets
//! the owner, mode, mtime and `security.capability` of the layer that decides it
//! (directories last, deepest first, so a directory made 0500 is no obstacle while it is
//! filled). What the process may not do (chown to other ids, mknod, set capabilities,
//! without root) is counted in [`Materialized::skipped`], as the store's unpack does.
//!
//! Not here: unpacking layer blobs (the store does), running anything, or diffing
//! ([`crate::snapshot`]). Paths are only ever created in directories this module made, and
//! never through a symlink: entries are checked with `lstat` before they are replaced.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{
    chmodat, chownat, lsetxattr, mknodat, utimensat, AtFlags, FileType, Mode, Timespec, Timestamps,
    XattrFlags, CWD,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

use crate::upper::OverlayXattrs;

/// The one extended attribute a layer keeps, hence the one carried over.
pub(crate) const CAPABILITY: &str = "security.capability";

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0:?} must be an empty directory to materialize a root filesystem into")]
    DestNotEmpty(PathBuf),
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> MaterializeError + 'a {
    move |source| MaterializeError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`materialize`] made.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Materialized {
    /// Paths written (over all layers; a path replaced by a later layer counts twice).
    pub entries: u64,
    /// Regular-file bytes copied.
    pub bytes: u64,
    /// What could not be reproduced here, with why (not root: owners, device nodes).
    pub skipped: Vec<(PathBuf, &'static str)>,
}

/// Applies `lowers` (bottom first) into the empty directory `dest`. `xattrs` is the
/// namespace of the opaque markers in `lowers`.
pub fn materialize(
    lowers: &[PathBuf],
    dest: &Path,
    xattrs: OverlayXattrs,
) -> Result<Materialized, MaterializeError> {
    if fs::read_dir(dest)
        .map_err(io_err("reading", dest))?
        .next()
        .is_some()
    {
        return Err(MaterializeError::DestNotEmpty(dest.to_path_buf()));
    }
    let mut opaque_name = xattrs.prefix().to_vec();
    opaque_name.extend_from_slice(b"opaque");
    let mut m = Materializer {
        dest,
        opaque: OsStr::from_bytes(&opaque_name).to_owned(),
        dirs: HashMap::new(),
        links: HashMap::new(),
        out: Materialized::default(),
    };
    for lower in lowers {
        m.links.clear();
        m.dir(lower, Path::new(""))?;
    }
    // Directories last, deepest first: their modes may forbid writing into them.
    let mut dirs: Vec<(PathBuf, (PathBuf, Metadata))> = m.dirs.drain().collect();
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, (src, meta)) in dirs {
        let disk = dest.join(&rel);
        // Deleted or replaced by a later layer (by a symlink too, anywhere on the way: never
        // followed, it could point out of `dest`): nothing to apply.
        if is_real_dir_below(dest, &rel) {
            apply_attrs(&src, &meta, &disk, &rel, &mut m.out.skipped)?;
        }
    }
    Ok(m.out)
}

/// Whether every component of `rel` below `root`, the last included, is a directory and not
/// a symlink.
fn is_real_dir_below(root: &Path, rel: &Path) -> bool {
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => {}
            _ => return false,
        }
    }
    true
}

struct Materializer<'a> {
    dest: &'a Path,
    opaque: std::ffi::OsString,
    /// Every directory's deciding source and its metadata, applied at the end.
    dirs: HashMap<PathBuf, (PathBuf, Metadata)>,
    /// (dev, ino) in the current lower → the first path written for it.
    links: HashMap<(u64, u64), PathBuf>,
    out: Materialized,
}

impl Materializer<'_> {
    fn dir(&mut self, lower: &Path, rel: &Path) -> Result<(), MaterializeError> {
        let src_dir = lower.join(rel);
        for dirent in fs::read_dir(&src_dir).map_err(io_err("reading", &src_dir))? {
            let dirent = dirent.map_err(io_err("reading", &src_dir))?;
            let child = rel.join(dirent.file_name());
            let src = lower.join(&child);
            let disk = self.dest.join(&child);
            let meta = fs::symlink_metadata(&src).map_err(io_err("reading", &src))?;
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                remove(&disk)?;
                continue;
            }
            self.out.entries += 1;
            if ft.is_dir() {
                match fs::symlink_metadata(&disk) {
                    Ok(d) if d.is_dir() => {
                        if self.is_opaque(&src)? {
                            crate::tree::empty_dir(&disk).map_err(io_err("emptying", &disk))?;
                        }
                    }
                    Ok(_) => {
                        remove(&disk)?;
                        make_dir(&disk)?;
                    }
                    Err(_) => make_dir(&disk)?,
                }
                self.dirs.insert(child.clone(), (src.clone(), meta));
                self.dir(lower, &child)?;
                continue;
            }
            remove(&disk)?;
            self.leaf(&src, &meta, &disk, &child)?;
        }
        Ok(())
    }

    /// Anything but a directory.
    fn leaf(
        &mut self,
        src: &Path,
        meta: &Metadata,
        disk: &Path,
        rel: &Path,
    ) -> Result<(), MaterializeError> {
        let ft = meta.file_type();
        if ft.is_file() {
            if meta.nlink() > 1 {
                let inode = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&inode) {
                    fs::hard_link(first, disk).map_err(io_err("linking", disk))?;
                    return Ok(());
                }
                self.links.insert(inode, disk.to_path_buf());
            }
            self.out.bytes += fs::copy(src, disk).map_err(io_err("copying to", disk))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(src).map_err(io_err("reading", src))?;
            std::os::unix::fs::symlink(target, disk).map_err(io_err("creating", disk))?;
        } else if ft.is_socket() {
            // Never in a layer; nothing to recreate.
            return Ok(());
        } else {
            let kind = if ft.is_fifo() {
                FileType::Fifo
            } else if ft.is_char_device() {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            match mknodat(CWD, disk, kind, Mode::from_raw_mode(0o600), meta.rdev()) {
                Ok(()) => {}
                Err(Errno::PERM) => {
                    self.out
                        .skipped
                        .push((rel.to_path_buf(), "mknod not permitted"));
                    return Ok(());
                }
                Err(e) => return Err(io_err("creating", disk)(e.into())),
            }
        }
        apply_attrs(src, meta, disk, rel, &mut self.out.skipped)
    }

    fn is_opaque(&self, src: &Path) -> Result<bool, MaterializeError> {
        match xattr::get(src, &self.opaque) {
            Ok(v) => Ok(v.as_deref() == Some(&b"y"[..])),
            Err(e) if e.raw_os_error() == Some(libc_eopnotsupp()) => Ok(false),
            Err(e) => Err(io_err("reading the xattrs of", src)(e)),
        }
    }
}

const fn libc_eopnotsupp() -> i32 {
    95
}

fn make_dir(disk: &Path) -> Result<(), MaterializeError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(disk)
        .map_err(io_err("creating", disk))
}

/// Removes whatever is at `disk` (never following a symlink); nothing there is fine.
fn remove(disk: &Path) -> Result<(), MaterializeError> {
    crate::tree::remove_tree(disk).map_err(io_err("removing", disk))
}

/// Gives `disk` the owner, mode, `security.capability` and mtime of `src` (`meta`), in
/// that order (chown clears setuid bits and capabilities). Not permitted → `skipped`.
pub(crate) fn apply_attrs(
    src: &Path,
    meta: &Metadata,
    disk: &Path,
    rel: &Path,
    skipped: &mut Vec<(PathBuf, &'static str)>,
) -> Result<(), MaterializeError> {
    let err = |e: Errno| io_err("setting the attributes of", disk)(e.into());
    let on_disk = fs::symlink_metadata(disk).map_err(io_err("reading", disk))?;
    if (on_disk.uid(), on_disk.gid()) != (meta.uid(), meta.gid()) {
        let (uid, gid) = (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid()));
        match chownat(CWD, disk, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::INVAL) => {
                skipped.push((rel.to_path_buf(), "chown not permitted"))
            }
            Err(e) => return Err(err(e)),
        }
    }
    let is_link = meta.file_type().is_symlink();
    if !is_link {
        chmodat(
            CWD,
            disk,
            Mode::from_raw_mode(meta.mode() & 0o7777),
            AtFlags::empty(),
        )
        .map_err(err)?;
        if let Ok(Some(cap)) = xattr::get(src, CAPABILITY) {
            match lsetxattr(disk, CAPABILITY, &cap, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::PERM | Errno::ACCESS | Errno::OPNOTSUPP | Errno::INVAL) => {
                    skipped.push((rel.to_path_buf(), "security.capability not permitted"))
                }
                Err(e) => return Err(err(e)),
            }
        }
    }
    let at = |sec: i64, nsec: i64| Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    let times = Timestamps {
        last_access: at(meta.atime(), meta.atime_nsec()),
        last_modification: at(meta.mtime(), meta.mtime_nsec()),
    };
    utimensat(CWD, disk, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(err)
}

#[cfg(test)]
mod symlink_tests {
    use super::*;

    #[test]
    fn a_later_symlink_on_the_way_stops_attributes_from_reaching_its_target() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside/x");
        fs::create_dir_all(&outside).unwrap();
        let dest = t.path().join("dest");
        fs::create_dir_all(dest.join("real/x")).unwrap();
        std::os::unix::fs::symlink(t.path().join("outside"), dest.join("lib")).unwrap();
        assert!(is_real_dir_below(&dest, Path::new("real/x")));
        assert!(
            !is_real_dir_below(&dest, Path::new("lib/x")),
            "through a symlink"
        );
        assert!(!is_real_dir_below(&dest, Path::new("lib")));
        assert!(!is_real_dir_below(&dest, Path::new("missing")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn write(path: &Path, content: &str, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn whiteout(path: &Path) -> bool {
        mknodat(
            CWD,
            path,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0),
            0,
        )
        .is_ok()
    }

    #[test]
    fn layers_apply_bottom_up_with_whiteouts_opaque_dirs_links_and_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, dest) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("root"),
        );
        fs::create_dir_all(&dest).unwrap();
        write(&a.join("etc/motd"), "base", 0o644);
        write(&a.join("etc/gone"), "gone", 0o644);
        write(&a.join("opt/old/x"), "x", 0o644);
        write(&a.join("bin/tool"), "tool", 0o4755);
        fs::hard_link(a.join("bin/tool"), a.join("bin/tool2")).unwrap();
        symlink("tool", a.join("bin/t")).unwrap();
        write(&a.join("ro/f"), "f", 0o444);
        fs::set_permissions(a.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        write(&b.join("etc/motd"), "top", 0o600);
        write(&b.join("opt/old/y"), "y", 0o644);
        fs::create_dir_all(b.join("bin")).unwrap();
        let can_whiteout = whiteout(&b.join("etc/gone"));
        // The user namespace's opaque marker is settable without root.
        let opaque = xattr::set(b.join("opt/old"), "user.overlay.opaque", b"y").is_ok();
        let out = materialize(&[a.clone(), b.clone()], &dest, OverlayXattrs::User).unwrap();
        let r = |p: &str| dest.join(p);
        assert_eq!(fs::read_to_string(r("etc/motd")).unwrap(), "top");
        assert_eq!(fs::metadata(r("etc/motd")).unwrap().mode() & 0o7777, 0o600);
        if can_whiteout {
            assert!(!r("etc/gone").exists(), "whiteout deletes");
        }
        if opaque {
            assert!(!r("opt/old/x").exists(), "opaque hides the lower");
        }
        assert!(r("opt/old/y").exists());
        let (t, t2) = (
            fs::metadata(r("bin/tool")).unwrap(),
            fs::metadata(r("bin/tool2")).unwrap(),
        );
        assert_eq!(t.ino(), t2.ino(), "hard link kept");
        assert_ne!(
            t.ino(),
            fs::metadata(a.join("bin/tool")).unwrap().ino(),
            "copied"
        );
        assert_eq!(t.mode() & 0o7777, 0o4755);
        assert_eq!(fs::read_link(r("bin/t")).unwrap(), Path::new("tool"));
        assert_eq!(fs::metadata(r("ro")).unwrap().mode() & 0o7777, 0o500);
        assert_eq!(
            fs::metadata(r("etc/motd")).unwrap().mtime(),
            fs::metadata(b.join("etc/motd")).unwrap().mtime()
        );
        assert!(out.bytes >= 4 + 4 + 1 + 1 + 3);
        crate::tree::remove_tree(&dest).unwrap();
    }

    #[test]
    fn a_file_replaces_a_directory_and_a_directory_a_symlink_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, dest) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("root"),
        );
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir_all(&outside).unwrap();
        write(&a.join("d/inner"), "i", 0o644);
        fs::create_dir_all(&a).unwrap();
        symlink(&outside, a.join("link")).unwrap();
        write(&b.join("d"), "now a file", 0o644);
        write(&b.join("link/escape"), "stays inside", 0o644);
        materialize(&[a, b], &dest, OverlayXattrs::User).unwrap();
        assert_eq!(fs::read_to_string(dest.join("d")).unwrap(), "now a file");
        assert!(fs::symlink_metadata(dest.join("link")).unwrap().is_dir());
        assert!(dest.join("link/escape").is_file());
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "symlink not followed"
        );
    }

    #[test]
    fn as_root_owners_devices_and_capabilities_are_kept() {
        if !crate::prerequisite::needs_root("owners, device nodes and security.capability") {
            return;
        }
        // A valid vfs_cap_data v2 (cap_net_raw permitted and effective).
        const CAP_NET_RAW: [u8; 20] = [
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let tmp = tempfile::tempdir().unwrap();
        let (a, dest) = (tmp.path().join("a"), tmp.path().join("root"));
        fs::create_dir_all(&dest).unwrap();
        write(&a.join("usr/bin/ping"), "ping", 0o755);
        xattr::set(a.join("usr/bin/ping"), CAPABILITY, &CAP_NET_RAW).unwrap();
        write(&a.join("home/u/f"), "f", 0o4755);
        std::os::unix::fs::lchown(a.join("home/u/f"), Some(1000), Some(1001)).unwrap();
        // chown cleared it in the lower too: set again.
        fs::set_permissions(a.join("home/u/f"), fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::lchown(a.join("home/u"), Some(1000), Some(1000)).unwrap();
        let null = rustix::fs::makedev(1, 3);
        mknodat(
            CWD,
            a.join("dev-null"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            null,
        )
        .unwrap();
        fs::set_permissions(a.join("dev-null"), fs::Permissions::from_mode(0o666)).unwrap();
        let out = materialize(&[a], &dest, OverlayXattrs::Trusted).unwrap();
        assert_eq!(out.skipped, []);
        let m = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
        assert_eq!(
            xattr::get(dest.join("usr/bin/ping"), CAPABILITY)
                .unwrap()
                .as_deref(),
            Some(&CAP_NET_RAW[..])
        );
        assert_eq!((m("home/u/f").uid(), m("home/u/f").gid()), (1000, 1001));
        assert_eq!(
            m("home/u/f").mode() & 0o7777,
            0o4755,
            "chown did not eat setuid"
        );
        assert_eq!(m("home/u").uid(), 1000);
        assert!(m("dev-null").file_type().is_char_device());
        assert_eq!(m("dev-null").rdev(), null);
        assert_eq!(m("dev-null").mode() & 0o7777, 0o666);
    }

    #[test]
    fn a_non_empty_destination_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("x"), "").unwrap();
        let err = materialize(&[], tmp.path(), OverlayXattrs::User).unwrap_err();
        assert!(matches!(err, MaterializeError::DestNotEmpty(_)), "{err}");
    }
}
