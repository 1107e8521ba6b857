//! Turns an overlayfs upper directory (what one `RUN` step changed, with the unpacked base
//! layers as lower directories) into the entries of one OCI layer, for [`regbuild_fs::layer`].
//!
//! This module is for reading an upper directory after the step's overlay was unmounted (or
//! at least after the step ended) and saying, in the image-spec's changeset terms, what it
//! adds, replaces and deletes. It is not for mounting anything, running the step, deciding
//! which paths the runtime provides (the caller lists them), stripping setuid/setgid bits
//! (the caller applies the same rule as for `COPY`: the entries keep the bits found on disk,
//! so `regbuild::builder::copy`'s `strip_setuid` applies to [`UpperDiff::entries`] as they
//! are), nor for writing the tar ([`regbuild_fs::layer`]). Unix only; names are raw bytes.
//!
//! # Rules (the kernel's overlayfs, image-spec layer changesets)
//!
//! - A character device 0/0 is a deleted path: entry `.wh.<name>` in its directory, an empty
//!   regular file, mode 0600, the device's owner (as Docker's overlay differ writes it).
//!   Whiteouts may share one inode (the kernel links them); they are never hard links.
//! - A directory with `<ns>.overlay.opaque` = `y` (`<ns>` is `trusted`, or `user` when the
//!   overlay was mounted with `userxattr`, see [`OverlayXattrs`]) replaced a lower one or was
//!   removed and recreated: the directory entry, then `.wh..wh..opq` inside it (an empty
//!   file with the directory's permission bits and owner) before its other entries.
//! - Regular files, directories, symlinks, device nodes and FIFOs are entries with their
//!   uid, gid and permission bits (setuid/setgid/sticky kept) and their mtime clamped to
//!   [`UpperOptions::source_date_epoch`] ([`UpperDiff::mtimes`]). Regular files sharing a
//!   device and inode become hard links to the first of their paths in layer order.
//!   Sockets cannot be in a tar and are left out ([`UpperDiff::sockets`]).
//!   A hard link entry carries no attributes: it shares its target's.
//! - Extended attributes: only `security.capability` is kept (what Docker and containerd
//!   put in layers); every other one, `<ns>.overlay.*` and `user.overlay.*` included, is
//!   dropped. An upper directory written with `redirect_dir` or `metacopy` (a
//!   `<ns>.overlay.redirect` or `<ns>.overlay.metacopy` attribute) does not hold the whole
//!   change and is refused ([`UpperError::NotSelfContained`]).
//! - Paths the runtime provides ([`UpperOptions::excluded`]: `/proc`, `/etc/resolv.conf`,
//!   secret and cache mount targets, …) are left out with everything below them, whiteouts
//!   of them included; a path that merely starts with the same bytes (`/etc/hosts.allow`
//!   for `/etc/hosts`) is kept. Their parent directories stay (they are in the upper
//!   directory because the step, or the mount point, touched them).
//! - A name that starts with `.wh.` cannot be told from a whiteout in a layer and is
//!   refused ([`UpperError::WhiteoutName`]). The upper directory's root itself is not an
//!   entry.
//! - A regular file larger than [`UpperOptions::max_file_size`] (by default
//!   [`MAX_ENTRY_SIZE`], the largest entry regbuild's reader accepts) is refused
//!   ([`UpperError::FileTooLarge`]): the step fails, naming the file, instead of pushing a
//!   layer that regbuild could not unpack for a later step. Its apparent size counts:
//!   the layer holds a sparse file written out (zeros included, as Docker writes it; GNU
//!   and PAX sparse entries are not written, as not every reader of layers takes them), so
//!   `truncate -s 100G /big` is a 100 GiB entry.
//!
//! # Order and determinism
//!
//! [`UpperDiff::entries`] are in the order [`regbuild_fs::layer`] writes (component by
//! component, as bytes), except that an opaque marker is listed directly after its
//! directory. File entries point at the files in the upper directory (whiteouts and
//! opaque markers at one empty file the diff owns), so nothing is read into memory and the
//! same upper directory gives the same entries and, with the same [`LayerOptions`], the
//! same layer bytes. [`regbuild_fs::layer`] writes one mtime for every entry
//! ([`LayerOptions::mtime`]) and sorts entries itself, which puts siblings whose names sort
//! before `.wh..wh..opq` (`.bashrc`, `-x`) ahead of the marker in the tar; readers that
//! apply a layer's opaque markers to lower layers only (ours, containerd, Docker) are not
//! affected.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use tempfile::TempPath;

use regbuild_fs::layer::{
    self, BuiltLayer, EntryKind, LayerEntry, LayerError, LayerOptions, Xattrs,
};
use regbuild_fs::tar_read::MAX_ENTRY_SIZE;

/// The only extended attribute a layer keeps.
const KEPT_XATTR: &[u8] = b"security.capability";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Mode of a whiteout entry.
const WHITEOUT_MODE: u32 = 0o600;

/// Which namespace the overlay kept its own extended attributes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayXattrs {
    /// `trusted.overlay.*`: the default, for a mount by real root.
    #[default]
    Trusted,
    /// `user.overlay.*`: mounted with `userxattr` (in a user namespace, kernel ≥ 5.11).
    User,
}

impl OverlayXattrs {
    pub(crate) fn prefix(self) -> &'static [u8] {
        match self {
            OverlayXattrs::Trusted => b"trusted.overlay.",
            OverlayXattrs::User => b"user.overlay.",
        }
    }
}

/// What to diff and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpperOptions {
    pub xattrs: OverlayXattrs,
    /// In-image paths the runtime provides (`/proc`, `/dev`, `/etc/hosts`, mount targets):
    /// left out with everything below them. Absolute or relative; `.` components are
    /// ignored, `..`, the root and empty paths are refused.
    pub excluded: Vec<PathBuf>,
    /// `SOURCE_DATE_EPOCH`: no mtime in [`UpperDiff::mtimes`] is later than this.
    pub source_date_epoch: Option<u64>,
    /// The largest regular file (apparent size) the layer may hold; default and most
    /// useful: [`MAX_ENTRY_SIZE`]. A larger one is [`UpperError::FileTooLarge`].
    pub max_file_size: u64,
}

impl Default for UpperOptions {
    fn default() -> Self {
        UpperOptions {
            xattrs: OverlayXattrs::default(),
            excluded: Vec::new(),
            source_date_epoch: None,
            max_file_size: MAX_ENTRY_SIZE,
        }
    }
}

/// The layer entries of an upper directory.
#[derive(Debug)]
pub struct UpperDiff {
    /// Sorted as described in the module documentation; setuid/setgid bits as on disk.
    pub entries: Vec<LayerEntry>,
    /// The mtime of each entry (same index), clamped to `SOURCE_DATE_EPOCH`. The layer
    /// writer does not take per-entry mtimes yet: it writes [`LayerOptions::mtime`].
    pub mtimes: Vec<u64>,
    /// Whiteout entries (deleted paths).
    pub whiteouts: usize,
    /// Opaque directories (replaced, or removed and recreated).
    pub opaque_dirs: usize,
    /// In-layer paths left out because they are, or are the top of, an excluded path.
    pub excluded: Vec<PathBuf>,
    /// In-layer paths of sockets, which a tar cannot hold.
    pub sockets: Vec<PathBuf>,
    /// The empty file whiteouts and opaque markers are read from; deleted when dropped.
    empty: TempPath,
}

impl UpperDiff {
    /// Writes [`entries`](UpperDiff::entries) with [`layer::build_layer`], keeping the
    /// empty file the whiteouts are read from until it is done.
    pub fn build_layer(
        self,
        opts: &LayerOptions,
        tmp_dir: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<BuiltLayer, LayerError> {
        let built = layer::build_layer(self.entries, opts, tmp_dir, progress);
        drop(self.empty);
        built
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpperError {
    #[error("reading {disk:?} in the overlay upper directory: {source}")]
    Read {
        disk: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the overlay upper directory {0:?} is not a directory")]
    NotADirectory(PathBuf),
    #[error("excluded path {path:?} is invalid: {reason}")]
    InvalidExclude { path: PathBuf, reason: &'static str },
    #[error("{disk:?} has the extended attribute {xattr}: the overlay was mounted with redirect_dir or metacopy, so its upper directory does not hold the whole change")]
    NotSelfContained { disk: PathBuf, xattr: String },
    #[error("{disk:?} is named like a whiteout (.wh.*), which a layer cannot hold as a file")]
    WhiteoutName { disk: PathBuf },
    #[error("/{} is {size} bytes ({allocated} on disk), over the limit of {limit} bytes per file in a layer: regbuild could not unpack the layer for a later step", .path.display())]
    FileTooLarge {
        /// In-layer path.
        path: PathBuf,
        size: u64,
        /// Bytes the file takes on disk (less than `size` when it is sparse).
        allocated: u64,
        limit: u64,
    },
    #[error("creating the empty file whiteouts are written from in {dir:?}: {source}")]
    TempFile {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads the upper directory `upper` into layer entries. `tmp_dir` receives one empty file
/// (whiteouts and opaque markers are written from it), owned by the result.
pub fn diff_upper(
    upper: &Path,
    opts: &UpperOptions,
    tmp_dir: &Path,
) -> Result<UpperDiff, UpperError> {
    let excluded = opts
        .excluded
        .iter()
        .map(|path| normalize_excluded(path))
        .collect::<Result<Vec<_>, _>>()?;
    let meta = fs::symlink_metadata(upper).map_err(|source| UpperError::Read {
        disk: upper.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(UpperError::NotADirectory(upper.to_path_buf()));
    }
    let empty = tempfile::NamedTempFile::new_in(tmp_dir)
        .map_err(|source| UpperError::TempFile {
            dir: tmp_dir.to_path_buf(),
            source,
        })?
        .into_temp_path();
    let mut walk = Walk {
        opts,
        excluded,
        empty: empty.to_path_buf(),
        first_of_inode: HashMap::new(),
        diff: UpperDiff {
            entries: Vec::new(),
            mtimes: Vec::new(),
            whiteouts: 0,
            opaque_dirs: 0,
            excluded: Vec::new(),
            sockets: Vec::new(),
            empty,
        },
    };
    walk.dir(upper, Path::new(""))?;
    Ok(walk.diff)
}

/// `path` as an in-layer path (relative, no `.`), or why it cannot be one.
fn normalize_excluded(path: &Path) -> Result<PathBuf, UpperError> {
    let invalid = |reason| UpperError::InvalidExclude {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(invalid("contains `..`")),
            Component::Prefix(_) => return Err(invalid("has a prefix")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(invalid("is the root or empty: nothing would be left"));
    }
    Ok(out)
}

struct Walk<'a> {
    opts: &'a UpperOptions,
    excluded: Vec<PathBuf>,
    empty: PathBuf,
    /// (device, inode) of regular files with several links → their first in-layer path.
    first_of_inode: HashMap<(u64, u64), PathBuf>,
    diff: UpperDiff,
}

/// One directory entry of the upper directory, before it becomes layer entries.
struct Child {
    /// The name in the layer: `.wh.<name>` for a whiteout.
    layer_name: OsString,
    name: OsString,
    meta: Metadata,
    whiteout: bool,
}

impl Walk<'_> {
    /// Emits the entries below the directory `disk` (in-layer path `rel`; empty for the root).
    fn dir(&mut self, disk: &Path, rel: &Path) -> Result<(), UpperError> {
        let read_err = |source| UpperError::Read {
            disk: disk.to_path_buf(),
            source,
        };
        let mut children = Vec::new();
        for dirent in fs::read_dir(disk).map_err(read_err)? {
            let dirent = dirent.map_err(read_err)?;
            let name = dirent.file_name();
            let child_disk = disk.join(&name);
            let meta = fs::symlink_metadata(&child_disk).map_err(|source| UpperError::Read {
                disk: child_disk.clone(),
                source,
            })?;
            let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
            if name.as_bytes().starts_with(WHITEOUT_PREFIX) {
                return Err(UpperError::WhiteoutName { disk: child_disk });
            }
            let layer_name = if whiteout {
                let mut n = OsString::from(OsStr::from_bytes(WHITEOUT_PREFIX));
                n.push(&name);
                n
            } else {
                name.clone()
            };
            children.push(Child {
                layer_name,
                name,
                meta,
                whiteout,
            });
        }
        children.sort_by(|a, b| a.layer_name.as_bytes().cmp(b.layer_name.as_bytes()));
        for child in children {
            let child_rel = rel.join(&child.name);
            if self.is_excluded(&child_rel) {
                self.diff.excluded.push(child_rel);
                continue;
            }
            self.child(&disk.join(&child.name), rel, child_rel, child)?;
        }
        Ok(())
    }

    fn is_excluded(&self, rel: &Path) -> bool {
        self.excluded.iter().any(|ex| rel.starts_with(ex))
    }

    fn child(
        &mut self,
        disk: &Path,
        parent_rel: &Path,
        rel: PathBuf,
        child: Child,
    ) -> Result<(), UpperError> {
        let meta = &child.meta;
        let mtime = self.mtime(meta);
        if child.whiteout {
            self.diff.whiteouts += 1;
            let path = parent_rel.join(&child.layer_name);
            let entry = self.empty_file(path, WHITEOUT_MODE, meta);
            self.push(entry, mtime);
            return Ok(());
        }
        let file_type = meta.file_type();
        if file_type.is_socket() {
            self.diff.sockets.push(rel);
            return Ok(());
        }
        let (xattrs, opaque) = self.xattrs(disk)?;
        let kind = if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_symlink() {
            let target = fs::read_link(disk).map_err(|source| UpperError::Read {
                disk: disk.to_path_buf(),
                source,
            })?;
            EntryKind::Symlink { target }
        } else if file_type.is_file() {
            self.file_kind(disk, &rel, meta)?
        } else if file_type.is_char_device() {
            let (major, minor) = dev_numbers(meta.rdev());
            EntryKind::CharDevice { major, minor }
        } else if file_type.is_block_device() {
            let (major, minor) = dev_numbers(meta.rdev());
            EntryKind::BlockDevice { major, minor }
        } else {
            EntryKind::Fifo
        };
        let is_dir = matches!(kind, EntryKind::Dir);
        // A hard link shares its target's attributes; extractors take them from the target.
        let xattrs = match kind {
            EntryKind::HardLink { .. } => Xattrs::new(),
            _ => xattrs,
        };
        self.push(
            LayerEntry {
                path: rel.clone(),
                kind,
                mode: meta.mode() & 0o7777,
                uid: u64::from(meta.uid()),
                gid: u64::from(meta.gid()),
                xattrs,
            },
            mtime,
        );
        if is_dir {
            if opaque {
                self.diff.opaque_dirs += 1;
                let marker = self.empty_file(rel.join(OPAQUE_MARKER), meta.mode() & 0o777, meta);
                self.push(marker, mtime);
            }
            self.dir(disk, &rel)?;
        }
        Ok(())
    }

    /// A regular file, or a hard link to the first path of its inode.
    fn file_kind(
        &mut self,
        disk: &Path,
        rel: &Path,
        meta: &Metadata,
    ) -> Result<EntryKind, UpperError> {
        if meta.nlink() > 1 {
            let inode = (meta.dev(), meta.ino());
            if let Some(first) = self.first_of_inode.get(&inode) {
                return Ok(EntryKind::HardLink {
                    target: first.clone(),
                });
            }
            self.first_of_inode.insert(inode, rel.to_path_buf());
        }
        if meta.len() > self.opts.max_file_size {
            return Err(UpperError::FileTooLarge {
                path: rel.to_path_buf(),
                size: meta.len(),
                allocated: meta.blocks().saturating_mul(512),
                limit: self.opts.max_file_size,
            });
        }
        Ok(EntryKind::File {
            source: disk.to_path_buf(),
            size: meta.len(),
        })
    }

    /// The attributes a layer keeps, and whether the entry is marked opaque.
    fn xattrs(&self, disk: &Path) -> Result<(Xattrs, bool), UpperError> {
        let read_err = |source| UpperError::Read {
            disk: disk.to_path_buf(),
            source,
        };
        let mut kept = Xattrs::new();
        let mut opaque = false;
        let names = match xattr::list(disk) {
            Ok(names) => names,
            // A filesystem without xattrs has none to keep.
            Err(e) if e.raw_os_error() == Some(95) => return Ok((kept, false)), // EOPNOTSUPP
            Err(e) => return Err(read_err(e)),
        };
        let prefix = self.opts.xattrs.prefix();
        for name in names {
            let bytes = name.as_bytes();
            if let Some(own) = bytes.strip_prefix(prefix) {
                match own {
                    b"opaque" => {
                        opaque = xattr::get(disk, &name).map_err(read_err)?.as_deref()
                            == Some(&b"y"[..]);
                    }
                    b"redirect" | b"metacopy" => {
                        return Err(UpperError::NotSelfContained {
                            disk: disk.to_path_buf(),
                            xattr: name.to_string_lossy().into_owned(),
                        })
                    }
                    _ => {}
                }
            } else if bytes == KEPT_XATTR {
                // Gone between list and get: nothing to keep.
                if let Some(value) = xattr::get(disk, &name).map_err(read_err)? {
                    kept.insert(bytes.to_vec(), value);
                }
            }
        }
        Ok((kept, opaque))
    }

    fn empty_file(&self, path: PathBuf, mode: u32, owner: &Metadata) -> LayerEntry {
        LayerEntry {
            path,
            kind: EntryKind::File {
                source: self.empty.clone(),
                size: 0,
            },
            mode,
            uid: u64::from(owner.uid()),
            gid: u64::from(owner.gid()),
            xattrs: Xattrs::new(),
        }
    }

    fn mtime(&self, meta: &Metadata) -> u64 {
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        match self.opts.source_date_epoch {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        }
    }

    fn push(&mut self, entry: LayerEntry, mtime: u64) {
        self.diff.entries.push(entry);
        self.diff.mtimes.push(mtime);
    }
}

/// Major and minor numbers of a Linux `dev_t` (glibc's `gnu_dev_major`/`gnu_dev_minor`).
fn dev_numbers(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::fs::{lchown, symlink, PermissionsExt};
    use std::process::{Child as Process, Command, Stdio};

    use rustix::fs::{
        makedev, mknodat, utimensat, AtFlags, FileType, Mode, Timespec, Timestamps, CWD,
    };
    use tar::EntryType;

    use regbuild_fs::extract::{open_archive, Limits, Overlay};
    use regbuild_fs::tar_read::{Item, Rules, TarReader};

    /// A valid `vfs_cap_data` v2 (revision 2, effective, `cap_net_raw` permitted): the
    /// kernel refuses malformed `security.capability` values.
    const CAP_NET_RAW: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn write(path: &Path, content: &[u8], mode: u32) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, content).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mkdir(path: &Path, mode: u32) {
        fs::create_dir_all(path).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mknod(path: &Path, file_type: FileType, major: u32, minor: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        mknodat(
            CWD,
            path,
            file_type,
            Mode::from_raw_mode(0o644),
            makedev(major, minor),
        )
        .unwrap();
    }

    fn whiteout(path: &Path) {
        mknod(path, FileType::CharacterDevice, 0, 0);
    }

    fn set_mtime(path: &Path, secs: i64) {
        let t = Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: t,
            last_modification: t,
        };
        utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    fn diff_with(upper: &Path, opts: &UpperOptions) -> UpperDiff {
        diff_upper(upper, opts, &std::env::temp_dir()).expect("diff upper")
    }

    fn diff(upper: &Path) -> UpperDiff {
        diff_with(upper, &UpperOptions::default())
    }

    fn paths(diff: &UpperDiff) -> Vec<String> {
        diff.entries
            .iter()
            .map(|e| e.path.to_string_lossy().into_owned())
            .collect()
    }

    fn entry<'a>(diff: &'a UpperDiff, path: &str) -> &'a LayerEntry {
        diff.entries
            .iter()
            .find(|e| e.path == Path::new(path))
            .unwrap_or_else(|| panic!("{path} not in {:?}", paths(diff)))
    }

    /// One entry of a layer as `regbuild_fs::tar_read` reads it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Seen {
        path: String,
        kind: EntryType,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        link: String,
        device: (u32, u32),
        data: Vec<u8>,
        xattrs: Xattrs,
    }

    fn read_layer(file: &Path) -> Vec<Seen> {
        let (_, input) = open_archive(file).unwrap();
        let rules = Rules {
            limits: Limits::default(),
            header_only_types_have_no_data: true,
            pax_names_win: true,
            refuse_dangling_extensions: true,
            max_sparse_blocks: None,
        };
        let mut reader = TarReader::new(input, rules);
        let mut seen = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            let Item::Entry(entry) = item else { continue };
            let header = entry.header().clone();
            let path = String::from_utf8(entry.path_bytes().to_vec()).unwrap();
            let link = String::from_utf8(entry.link_bytes().to_vec()).unwrap();
            let xattrs = entry.xattrs().clone();
            let mut data = Vec::new();
            entry.data().unwrap().read_to_end(&mut data).unwrap();
            seen.push(Seen {
                path,
                kind: header.entry_type(),
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                mtime: header.mtime().unwrap(),
                link,
                device: match header.entry_type() {
                    EntryType::Char | EntryType::Block => (
                        header.device_major().unwrap().unwrap(),
                        header.device_minor().unwrap().unwrap(),
                    ),
                    _ => (0, 0),
                },
                data,
                xattrs,
            });
        }
        seen
    }

    fn build(diff: UpperDiff, tmp: &Path) -> BuiltLayer {
        diff.build_layer(&LayerOptions::default(), tmp, &mut |_| {})
            .expect("build layer")
    }

    #[test]
    fn whiteouts_and_opaque_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        mkdir(&upper.join("etc"), 0o755);
        whiteout(&upper.join("etc/gone"));
        whiteout(&upper.join("etc/also-gone"));
        write(&upper.join("etc/kept"), b"kept", 0o644);
        mkdir(&upper.join("root"), 0o700);
        xattr::set(upper.join("root"), "trusted.overlay.opaque", b"y").unwrap();
        write(&upper.join("root/.bashrc"), b"rc", 0o644);
        write(&upper.join("root/z"), b"z", 0o644);
        // Not "y": the kernel does not treat it as opaque (e.g. "x" marks xwhiteouts).
        mkdir(&upper.join("srv"), 0o755);
        xattr::set(upper.join("srv"), "trusted.overlay.opaque", b"x").unwrap();
        lchown(upper.join("root"), Some(5), Some(6)).unwrap();

        let d = diff(&upper);
        assert_eq!(
            paths(&d),
            [
                "etc",
                "etc/.wh.also-gone",
                "etc/.wh.gone",
                "etc/kept",
                "root",
                "root/.wh..wh..opq",
                "root/.bashrc",
                "root/z",
                "srv",
            ]
        );
        assert_eq!((d.whiteouts, d.opaque_dirs), (2, 1));
        for (path, mode, owner) in [
            ("etc/.wh.gone", 0o600, (0, 0)),
            ("root/.wh..wh..opq", 0o700, (5, 6)),
        ] {
            let e = entry(&d, path);
            assert!(matches!(e.kind, EntryKind::File { size: 0, .. }), "{e:?}");
            assert_eq!((e.mode, (e.uid, e.gid)), (mode, owner), "{path}");
        }
        assert!(d.entries.iter().all(|e| e.xattrs.is_empty()));

        // In the layer: whiteouts are empty regular files, overlay's own xattrs are gone.
        let tmp_layers = tempfile::tempdir().unwrap();
        let seen = read_layer(&build(d, tmp_layers.path()).file);
        let names: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
        assert!(names.contains(&"etc/.wh.gone"), "{names:?}");
        assert!(names.contains(&"root/.wh..wh..opq"), "{names:?}");
        for s in seen.iter().filter(|s| s.path.contains(".wh.")) {
            assert_eq!((s.kind, s.data.len()), (EntryType::Regular, 0), "{s:?}");
        }
        assert!(seen.iter().all(|s| s.xattrs.is_empty()));
    }

    #[test]
    fn userxattr_mounts_mark_opaque_in_the_user_namespace() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        mkdir(&upper.join("d"), 0o755);
        xattr::set(upper.join("d"), "user.overlay.opaque", b"y").unwrap();
        let user = UpperOptions {
            xattrs: OverlayXattrs::User,
            ..Default::default()
        };
        assert_eq!(paths(&diff_with(&upper, &user)), ["d", "d/.wh..wh..opq"]);
        // Without `userxattr` that attribute is not the overlay's: no marker, and dropped.
        let trusted = diff(&upper);
        assert_eq!(paths(&trusted), ["d"]);
        assert!(trusted.entries[0].xattrs.is_empty());
    }

    #[test]
    fn files_links_devices_and_owners_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        write(&upper.join("bin/su"), b"su", 0o755);
        lchown(upper.join("bin/su"), Some(0), Some(42)).unwrap();
        // After the chown, which clears the bit.
        fs::set_permissions(upper.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
        write(&upper.join("b/first"), b"shared", 0o644);
        fs::create_dir_all(upper.join("a")).unwrap();
        // Same inode twice: the path first in layer order ("a/…") is the file.
        fs::hard_link(upper.join("b/first"), upper.join("a/second")).unwrap();
        symlink("../bin/su", upper.join("b/link")).unwrap();
        mknod(&upper.join("dev0/null"), FileType::CharacterDevice, 1, 3);
        mknod(
            &upper.join("dev0/big"),
            FileType::CharacterDevice,
            4095,
            1_048_575,
        );
        mknod(&upper.join("dev0/sda"), FileType::BlockDevice, 8, 0);
        mknod(&upper.join("dev0/fifo"), FileType::Fifo, 0, 0);
        fs::set_permissions(upper.join("dev0/fifo"), fs::Permissions::from_mode(0o620)).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(upper.join("b/sock")).unwrap();
        mkdir(&upper.join("tmp"), 0o1777);
        lchown(upper.join("tmp"), Some(7), Some(8)).unwrap();
        lchown(upper.join("b/link"), Some(9), Some(10)).unwrap();
        let d = diff(&upper);

        assert_eq!(
            paths(&d),
            [
                "a",
                "a/second",
                "b",
                "b/first",
                "b/link",
                "bin",
                "bin/su",
                "dev0",
                "dev0/big",
                "dev0/fifo",
                "dev0/null",
                "dev0/sda",
                "tmp",
            ]
        );
        assert_eq!(d.sockets, [PathBuf::from("b/sock")]);
        let su = entry(&d, "bin/su");
        // The setuid bit is left for the caller's COPY rule (strip_setuid) to decide.
        assert_eq!((su.mode, su.uid, su.gid), (0o4755, 0, 42));
        assert!(matches!(
            entry(&d, "a/second").kind,
            EntryKind::File { size: 6, .. }
        ));
        assert_eq!(
            entry(&d, "b/first").kind,
            EntryKind::HardLink {
                target: "a/second".into()
            }
        );
        let link = entry(&d, "b/link");
        assert_eq!(
            (&link.kind, link.uid, link.gid),
            (
                &EntryKind::Symlink {
                    target: "../bin/su".into()
                },
                9,
                10
            )
        );
        assert_eq!(
            entry(&d, "dev0/big").kind,
            EntryKind::CharDevice {
                major: 4095,
                minor: 1_048_575
            }
        );
        assert_eq!(
            entry(&d, "dev0/sda").kind,
            EntryKind::BlockDevice { major: 8, minor: 0 }
        );
        let fifo = entry(&d, "dev0/fifo");
        assert_eq!((&fifo.kind, fifo.mode), (&EntryKind::Fifo, 0o620));
        let t = entry(&d, "tmp");
        assert_eq!((t.mode, t.uid, t.gid), (0o1777, 7, 8));

        let layers = tempfile::tempdir().unwrap();
        let seen = read_layer(&build(d, layers.path()).file);
        let find = |p: &str| seen.iter().find(|s| s.path == p).unwrap().clone();
        assert_eq!(find("a/second").data, b"shared");
        assert_eq!(
            (find("b/first").kind, find("b/first").link.as_str()),
            (EntryType::Link, "a/second")
        );
        assert_eq!(find("dev0/null").device, (1, 3));
        assert_eq!(find("dev0/big").device, (4095, 1_048_575));
        assert_eq!(find("dev0/sda").kind, EntryType::Block);
        assert_eq!(find("bin/su").mode, 0o4755);
    }

    #[test]
    fn excluded_paths_and_only_those_are_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        write(&upper.join("etc/resolv.conf"), b"nameserver", 0o644);
        write(&upper.join("etc/hosts.allow"), b"keep", 0o644);
        write(&upper.join("etc/hostsx/y"), b"keep", 0o644);
        whiteout(&upper.join("etc/hosts"));
        write(&upper.join("proc/1/status"), b"x", 0o644);
        write(&upper.join("procfs"), b"keep", 0o644);
        write(&upper.join("run/secrets/token"), b"secret", 0o600);
        write(&upper.join("run/other"), b"keep", 0o644);
        // The first path of an inode is excluded: the other one becomes the file.
        write(&upper.join("cache/c"), b"linked", 0o644);
        fs::hard_link(upper.join("cache/c"), upper.join("keep-link")).unwrap();
        let opts = UpperOptions {
            excluded: vec![
                "/etc/resolv.conf".into(),
                "/etc/hosts".into(),
                "/proc".into(),
                "run/./secrets/".into(),
                "/cache".into(),
            ],
            ..Default::default()
        };
        let d = diff_with(&upper, &opts);
        assert_eq!(
            paths(&d),
            [
                "etc",
                "etc/hosts.allow",
                "etc/hostsx",
                "etc/hostsx/y",
                "keep-link",
                "procfs",
                "run",
                "run/other"
            ]
        );
        assert!(matches!(
            entry(&d, "keep-link").kind,
            EntryKind::File { .. }
        ));
        assert_eq!(d.whiteouts, 0);
        let excluded: Vec<&str> = d.excluded.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            excluded,
            [
                "cache",
                "etc/hosts",
                "etc/resolv.conf",
                "proc",
                "run/secrets"
            ]
        );

        for bad in ["/", "", "a/../b", "."] {
            let opts = UpperOptions {
                excluded: vec![bad.into()],
                ..Default::default()
            };
            let err = diff_upper(&upper, &opts, tmp.path()).unwrap_err();
            assert!(
                matches!(err, UpperError::InvalidExclude { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn only_security_capability_is_kept_and_redirects_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        write(&upper.join("ping"), b"elf", 0o755);
        xattr::set(upper.join("ping"), "security.capability", &CAP_NET_RAW).unwrap();
        xattr::set(upper.join("ping"), "user.note", b"dropped").unwrap();
        xattr::set(upper.join("ping"), "user.overlay.origin", b"dropped").unwrap();
        xattr::set(upper.join("ping"), "trusted.overlay.origin", b"dropped").unwrap();
        let d = diff(&upper);
        let want: Xattrs = [(KEPT_XATTR.to_vec(), CAP_NET_RAW.to_vec())].into();
        assert_eq!(d.entries[0].xattrs, want);
        let layers = tempfile::tempdir().unwrap();
        assert_eq!(read_layer(&build(d, layers.path()).file)[0].xattrs, want);

        for name in ["trusted.overlay.redirect", "trusted.overlay.metacopy"] {
            let upper = tmp.path().join(name);
            mkdir(&upper.join("d"), 0o755);
            xattr::set(upper.join("d"), name, b"/elsewhere").unwrap();
            let err = diff_upper(&upper, &UpperOptions::default(), tmp.path()).unwrap_err();
            assert!(matches!(err, UpperError::NotSelfContained { .. }), "{err}");
            assert!(err.to_string().contains(name), "{err}");
            // The same names in the other namespace are user data (dropped, not refused).
            let user = UpperOptions {
                xattrs: OverlayXattrs::User,
                ..Default::default()
            };
            assert!(diff_with(&upper, &user).entries[0].xattrs.is_empty());
        }
    }

    #[test]
    fn mtimes_are_clamped_to_source_date_epoch() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        write(&upper.join("old"), b"", 0o644);
        write(&upper.join("new"), b"", 0o644);
        whiteout(&upper.join("wh"));
        symlink("old", upper.join("sym")).unwrap();
        set_mtime(&upper.join("old"), 100);
        set_mtime(&upper.join("new"), 5_000);
        set_mtime(&upper.join("wh"), 7_000);
        set_mtime(&upper.join("sym"), 9_000);
        let mtimes = |epoch| {
            let opts = UpperOptions {
                source_date_epoch: epoch,
                ..Default::default()
            };
            let d = diff_with(&upper, &opts);
            assert_eq!(paths(&d), [".wh.wh", "new", "old", "sym"]);
            d.mtimes
        };
        assert_eq!(mtimes(None), [7_000, 5_000, 100, 9_000]);
        assert_eq!(mtimes(Some(1_000)), [1_000, 1_000, 100, 1_000]);
    }

    #[test]
    fn the_same_upper_directory_gives_the_same_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        for i in 0..50 {
            write(
                &upper.join(format!("d{}/f{i}", i % 7)),
                format!("{i}").as_bytes(),
                0o644,
            );
        }
        whiteout(&upper.join("d1/gone"));
        mkdir(&upper.join("d2"), 0o755);
        xattr::set(upper.join("d2"), "trusted.overlay.opaque", b"y").unwrap();
        let layers = tempfile::tempdir().unwrap();
        let one = build(diff(&upper), layers.path());
        let two = build(diff(&upper), layers.path());
        assert_eq!((&one.digest, &one.diff_id), (&two.digest, &two.diff_id));
        // And it depends on the content: a changed file changes the layer.
        write(&upper.join("d0/f0"), b"changed", 0o644);
        assert_ne!(build(diff(&upper), layers.path()).diff_id, one.diff_id);
    }

    #[test]
    fn bad_upper_directories_and_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let err = diff_upper(&missing, &UpperOptions::default(), tmp.path()).unwrap_err();
        assert!(matches!(err, UpperError::Read { .. }) && err.to_string().contains("missing"));
        write(&tmp.path().join("file"), b"", 0o644);
        let err = diff_upper(
            &tmp.path().join("file"),
            &UpperOptions::default(),
            tmp.path(),
        )
        .unwrap_err();
        assert!(matches!(err, UpperError::NotADirectory(_)), "{err}");
        let upper = tmp.path().join("upper");
        write(&upper.join("d/.wh.x"), b"", 0o644);
        let err = diff_upper(&upper, &UpperOptions::default(), tmp.path()).unwrap_err();
        assert!(matches!(err, UpperError::WhiteoutName { .. }), "{err}");
        let err = diff_upper(
            &tmp.path().join("upper/d/.."),
            &UpperOptions::default(),
            &missing,
        )
        .unwrap_err();
        assert!(matches!(err, UpperError::TempFile { .. }), "{err}");
    }

    #[test]
    fn device_numbers_decode_like_the_kernel_encodes() {
        for (major, minor) in [
            (0, 0),
            (1, 3),
            (8, 17),
            (4095, 255),
            (4096, 256),
            (u32::MAX >> 12, (1 << 20) - 1),
        ] {
            assert_eq!(dev_numbers(makedev(major, minor)), (major, minor));
        }
    }

    // ---- a real overlayfs mount ----

    /// An overlay mounted in a private mount namespace held by a child process; it is gone
    /// when the child is killed (on drop, also after a panic).
    struct Mounted {
        holder: Process,
        /// The merged directory as seen through the holder's namespace.
        merged: PathBuf,
    }

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = self.holder.kill();
            let _ = self.holder.wait();
        }
    }

    /// Mounts the overlay, or says why overlayfs is unavailable (`Err`); any other failure
    /// panics.
    fn mount_overlay(
        lower: &Path,
        upper: &Path,
        work: &Path,
        merged: &Path,
        xattrs: OverlayXattrs,
    ) -> Result<Mounted, String> {
        let script = "mount -t overlay overlay -o \"$5lowerdir=$1,upperdir=$2,workdir=$3\" \"$4\" \
                      && echo mounted && exec sleep 600";
        let extra = match xattrs {
            OverlayXattrs::Trusted => "",
            OverlayXattrs::User => "userxattr,",
        };
        let mut holder = crate::test_spawn::spawn(
            Command::new("unshare")
                .args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    script,
                    "sh",
                ])
                .args([lower, upper, work, merged])
                .arg(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .expect("run unshare");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() == "mounted" {
            let merged = Path::new("/proc")
                .join(holder.id().to_string())
                .join("root")
                .join(merged.strip_prefix("/").unwrap());
            return Ok(Mounted { holder, merged });
        }
        let status = holder.wait().unwrap();
        let mut stderr = String::new();
        holder
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let known = fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if stderr.contains("unknown filesystem type") && !known.contains("overlay") {
            return Err(format!("overlayfs is not available: {}", stderr.trim()));
        }
        panic!("mounting the overlay failed ({status}): {stderr}");
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Node {
        Dir,
        File(Vec<u8>),
        Symlink(PathBuf),
        Fifo,
        Char(u32, u32),
    }

    /// Path → (what it is, mode, uid, gid).
    type Tree = BTreeMap<PathBuf, (Node, u32, u32, u32)>;

    /// Everything below `root` as `lstat` sees it, and the groups of paths sharing a file.
    fn snapshot(root: &Path) -> (Tree, BTreeSet<BTreeSet<PathBuf>>) {
        let mut tree = Tree::new();
        let mut inodes: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for dirent in fs::read_dir(&dir).unwrap() {
                let disk = dirent.unwrap().path();
                let rel = disk.strip_prefix(root).unwrap().to_path_buf();
                let meta = fs::symlink_metadata(&disk).unwrap();
                let ft = meta.file_type();
                let node = if ft.is_dir() {
                    stack.push(disk.clone());
                    Node::Dir
                } else if ft.is_symlink() {
                    Node::Symlink(fs::read_link(&disk).unwrap())
                } else if ft.is_file() {
                    if meta.nlink() > 1 {
                        inodes
                            .entry((meta.dev(), meta.ino()))
                            .or_default()
                            .insert(rel.clone());
                    }
                    Node::File(fs::read(&disk).unwrap())
                } else if ft.is_fifo() {
                    Node::Fifo
                } else {
                    let (major, minor) = dev_numbers(meta.rdev());
                    Node::Char(major, minor)
                };
                tree.insert(rel, (node, meta.mode() & 0o7777, meta.uid(), meta.gid()));
            }
        }
        let links = inodes.into_values().filter(|g| g.len() > 1).collect();
        (tree, links)
    }

    /// Applies `layer` above `base` with the extraction's overlay model and returns the tree
    /// it describes: nodes from disk, owners and modes from the headers, device nodes and
    /// FIFOs (which extraction records but never creates) from the layers themselves.
    fn apply(layers: &[&BuiltLayer], out: &Path) -> (Tree, BTreeSet<BTreeSet<PathBuf>>) {
        let mut overlay = Overlay::new(out, Vec::new(), Limits::default());
        for layer in layers {
            let (_, tar) = open_archive(&layer.file).unwrap();
            overlay.apply_layer(layer.digest.as_str(), tar).unwrap();
        }
        let meta = overlay.metadata().clone();
        let links = overlay.hard_links().clone();
        let stats = overlay.finish().unwrap();
        let (disk, _) = snapshot(out);
        let mut tree = Tree::new();
        for (path, (node, ..)) in disk {
            let m = &meta[&path];
            tree.insert(path, (node, m.mode, m.uid as u32, m.gid as u32));
        }
        for (path, why) in &stats.skipped {
            let seen = read_layer(&layers[0].file);
            let s = seen
                .iter()
                .find(|s| Path::new(&s.path) == path)
                .unwrap_or_else(|| panic!("skipped {path:?} ({why}) is not in the upper layer"));
            let node = match s.kind {
                EntryType::Fifo => Node::Fifo,
                EntryType::Char => Node::Char(s.device.0, s.device.1),
                other => panic!("{path:?} skipped ({why}) as {other:?}"),
            };
            tree.insert(path.clone(), (node, s.mode, s.uid as u32, s.gid as u32));
        }
        let mut groups: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for (link, target) in links {
            groups
                .entry(target.clone())
                .or_insert_with(|| [target].into())
                .insert(link);
        }
        (tree, groups.into_values().collect())
    }

    #[test]
    fn a_file_over_the_limit_fails_the_diff_naming_it_even_when_sparse() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        fs::create_dir_all(upper.join("var")).unwrap();
        let big = fs::File::create(upper.join("var/big")).unwrap();
        // Sparse: what the reader limits is the size the layer would declare.
        big.set_len(MAX_ENTRY_SIZE + 1).unwrap();
        fs::write(upper.join("small"), vec![1u8; 4096]).unwrap();
        let err = diff_upper(&upper, &UpperOptions::default(), tmp.path()).unwrap_err();
        let UpperError::FileTooLarge {
            path,
            size,
            allocated,
            limit,
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(path, Path::new("var/big"));
        assert_eq!((*size, *limit), (MAX_ENTRY_SIZE + 1, MAX_ENTRY_SIZE));
        assert_eq!(*allocated, 0);
        assert!(
            err.to_string()
                .starts_with("/var/big is 68719476737 bytes (0 on disk)"),
            "{err}"
        );

        // A lower limit is honoured, and a file at the limit is kept.
        fs::remove_file(upper.join("var/big")).unwrap();
        let at_limit = UpperOptions {
            max_file_size: 4096,
            ..Default::default()
        };
        assert_eq!(paths(&diff_with(&upper, &at_limit)), ["small", "var"]);
        let below = UpperOptions {
            max_file_size: 4095,
            ..Default::default()
        };
        let err = diff_upper(&upper, &below, tmp.path()).unwrap_err();
        assert!(
            matches!(
                err,
                UpperError::FileTooLarge {
                    size: 4096,
                    limit: 4095,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_real_overlay_upper_directory_applied_to_its_lower_gives_the_merged_view() {
        real_overlay(OverlayXattrs::Trusted);
    }

    #[test]
    fn the_same_with_userxattr() {
        real_overlay(OverlayXattrs::User);
    }

    /// Mounts an overlay, changes it as a RUN step might, and checks the layer made of its
    /// upper directory: read back, and applied onto the lower tree.
    fn real_overlay(xattrs: OverlayXattrs) {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = ["lower", "upper", "work", "merged", "out"].map(|d| {
            let p = tmp.path().join(d);
            fs::create_dir(&p).unwrap();
            p
        });
        let [lower, upper, work, merged, out] = &dirs;
        let l = |p: &str| lower.join(p);
        write(&l("etc/keep"), b"keep", 0o644);
        write(&l("etc/gone"), b"gone", 0o644);
        write(&l("etc/gone2"), b"gone2", 0o644);
        write(&l("opt/old/a"), b"a", 0o644);
        write(&l("opt/old/sub/b"), b"b", 0o644);
        write(&l("var/lib/db/x"), b"x", 0o600);
        write(&l("var/lib/state"), b"s", 0o644);
        write(&l("srv/data/f"), b"f", 0o644);
        write(&l("usr/bin/ping"), b"ping", 0o755);
        write(&l("home/u/.profile"), b"p", 0o644);
        lchown(l("home/u/.profile"), Some(1000), Some(1000)).unwrap();
        lchown(l("home/u"), Some(1000), Some(1000)).unwrap();

        let mounted = match mount_overlay(lower, upper, work, merged, xattrs) {
            Ok(m) => m,
            Err(reason) => {
                assert!(reason.starts_with("overlayfs is not available"));
                crate::prerequisite::not_here(&reason);
                return;
            }
        };
        let m = |p: &str| mounted.merged.join(p);
        // What a RUN step might do.
        fs::remove_file(m("etc/gone")).unwrap();
        fs::remove_file(m("etc/gone2")).unwrap();
        // chown/chmod of a lower file: copied up whole.
        lchown(m("etc/keep"), Some(1000), Some(1001)).unwrap();
        fs::set_permissions(m("etc/keep"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(m("usr/bin"), fs::Permissions::from_mode(0o700)).unwrap();
        // rm -rf a lower directory and recreate it: opaque.
        fs::remove_dir_all(m("opt/old")).unwrap();
        fs::create_dir(m("opt/old")).unwrap();
        write(&m("opt/old/new"), b"new", 0o644);
        write(&m("opt/old/.hidden"), b"sorts before the marker", 0o644);
        // Replace a lower directory by a new one moved over it.
        fs::create_dir(m("var/lib.new")).unwrap();
        write(&m("var/lib.new/fresh"), b"fresh", 0o644);
        fs::remove_dir_all(m("var/lib")).unwrap();
        fs::rename(m("var/lib.new"), m("var/lib")).unwrap();
        // A directory replaced by a symlink (kaniko #2308).
        fs::remove_dir_all(m("srv/data")).unwrap();
        symlink("/var/lib", m("srv/data")).unwrap();
        // New files: hard links (one to a lower file), a symlink, a FIFO, a device, setuid.
        write(&m("usr/local/bin/tool"), b"tool", 0o4755);
        fs::hard_link(m("usr/local/bin/tool"), m("usr/local/bin/tool2")).unwrap();
        fs::hard_link(m("usr/bin/ping"), m("usr/bin/ping.link")).unwrap();
        symlink("../../etc/keep", m("usr/local/conf")).unwrap();
        mknod(&m("run/fifo"), FileType::Fifo, 0, 0);
        mknod(&m("run/null"), FileType::CharacterDevice, 1, 3);
        xattr::set(m("usr/bin/ping"), "security.capability", &CAP_NET_RAW).unwrap();
        xattr::set(m("usr/bin/ping"), "user.dropped", b"1").unwrap();
        write(&m("home/u/.profile"), b"changed", 0o644);
        // What the runtime provides: in the merged view, never in the layer.
        write(&m("etc/resolv.conf"), b"nameserver 10.0.0.1", 0o644);
        write(&m("proc/1/status"), b"x", 0o644);
        let capability = xattr::get(m("usr/bin/ping"), "security.capability").unwrap();
        let (mut want, want_links) = snapshot(&mounted.merged);
        drop(mounted);
        want.remove(Path::new("etc/resolv.conf"));
        want.retain(|path, _| !path.starts_with("proc"));

        // The upper directory is what the kernel made of it.
        assert!(fs::symlink_metadata(upper.join("etc/gone"))
            .unwrap()
            .file_type()
            .is_char_device());
        let opts = UpperOptions {
            excluded: vec!["/etc/resolv.conf".into(), "/proc".into(), "/dev".into()],
            xattrs,
            source_date_epoch: Some(0),
            ..Default::default()
        };
        let d = diff_with(upper, &opts);
        assert_eq!((d.whiteouts, d.opaque_dirs), (2, 2), "{:?}", paths(&d));
        assert_eq!(
            d.excluded,
            [PathBuf::from("etc/resolv.conf"), "proc".into()]
        );
        assert!(d.mtimes.iter().all(|&t| t == 0));
        let layers = tempfile::tempdir().unwrap();
        let top = build(d, layers.path());
        let again = build(diff_with(upper, &opts), layers.path());
        assert_eq!(top.digest, again.digest);

        // Read back with the crate's reader.
        let seen = read_layer(&top.file);
        let find = |p: &str| {
            seen.iter()
                .find(|s| s.path == p)
                .unwrap_or_else(|| panic!("{p} not in the layer"))
        };
        for p in [
            "etc/.wh.gone",
            "etc/.wh.gone2",
            "opt/old/.wh..wh..opq",
            "var/lib/.wh..wh..opq",
        ] {
            assert_eq!(
                (find(p).kind, find(p).data.len()),
                (EntryType::Regular, 0),
                "{p}"
            );
        }
        let keep = find("etc/keep");
        assert_eq!(
            (keep.data.as_slice(), keep.mode, keep.uid, keep.gid),
            (&b"keep"[..], 0o640, 1000, 1001)
        );
        assert_eq!(find("srv/data").kind, EntryType::Symlink);
        assert_eq!(find("usr/local/bin/tool").mode, 0o4755);
        assert_eq!(find("usr/local/bin/tool2").kind, EntryType::Link);
        assert_eq!(find("usr/bin/ping.link").link, "usr/bin/ping");
        assert_eq!(find("run/null").device, (1, 3));
        let caps: Xattrs = [(KEPT_XATTR.to_vec(), capability.unwrap())].into();
        assert_eq!(find("usr/bin/ping").xattrs, caps);
        let with_xattrs: Vec<&str> = seen
            .iter()
            .filter(|s| !s.xattrs.is_empty())
            .map(|s| s.path.as_str())
            .collect();
        assert_eq!(with_xattrs, ["usr/bin/ping"]);
        assert!(!seen
            .iter()
            .any(|s| s.path.starts_with("proc") || s.path.contains("resolv")));

        // Applied onto the lower tree, the layer gives the merged view.
        let base = build(diff(lower), layers.path());
        let (got, got_links) = apply(&[&top, &base], out);
        let differences: Vec<_> = want
            .keys()
            .chain(got.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|p| want.get(*p) != got.get(*p))
            .map(|p| (p, want.get(p), got.get(p)))
            .collect();
        assert!(
            differences.is_empty(),
            "merged vs applied: {differences:#?}"
        );
        assert_eq!(got_links, want_links);
        assert_eq!(want_links.len(), 2, "{want_links:?}");
    }
}
