//! The snapshot diff: what a `RUN` step changed in a plain root filesystem (one
//! [`crate::materialize`]d where overlayfs is unavailable), told without hashing contents,
//! and written as the overlay upper directory the kernel would have made, so that
//! [`crate::upper`] turns it into the same layer entries as on the overlay path.
//!
//! For: [`Snapshot::take`] before the step (per path: type, device, inode, birth time,
//! mode, owner, size, mtime and ctime with nanoseconds), [`Snapshot::diff`] after it, and
//! [`Changes::write_upper`]. Not for: making the root ([`crate::materialize`]), running the
//! step, or reading an upper directory into entries ([`crate::upper`]).
//!
//! # Why ctime
//!
//! Every write, truncate, chmod, chown, link, rename or xattr change of an inode sets its
//! ctime to the current time, and no system call lets a process set it back (`utimensat`
//! sets it too). So a file whose contents changed with the same size and an mtime put back
//! is still seen, and contents are never read. Symlinks cannot change in place (a new
//! target is a new inode). A path whose inode or birth time differs was replaced. One
//! ctime change is not a change: removing another hard link of a file (its link count went
//! down and nothing else moved), which overlayfs does not copy up either; a write with the
//! mtime put back in the same step as such an unlink is the one thing this misses.
//!
//! # Rules (as Docker's and containerd's differs, and as overlayfs fills its upper dir)
//!
//! - An added or changed path is an entry, and so is every directory above it (overlayfs
//!   copies parents up); a directory whose own stamp changed is an entry even if nothing
//!   below it did (chmod, a child deleted).
//! - A deleted path is a whiteout, except below a deleted or replaced directory (its one
//!   whiteout, or its opaque marker, covers the rest).
//! - A directory replaced by another (removed and recreated: other inode or birth time) or
//!   made where a non-directory was is opaque, with its full contents (overlayfs marks a
//!   directory made over a whiteout opaque).
//! - Excluded paths (what the runtime provides: `/proc`, mount targets) are neither walked
//!   nor compared.
//!
//! Memory is one small record per path of the root filesystem (about a hundred bytes).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{linkat, lsetxattr, mknodat, statx, AtFlags, FileType, Mode, StatxFlags, CWD};
use rustix::io::Errno;

use crate::materialize::apply_attrs;
use crate::upper::OverlayXattrs;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Attrs(#[from] crate::materialize::MaterializeError),
    /// overlayfs refuses to create the device that marks a deletion (a container's root
    /// filesystem is an overlay): the cache directory must be on another filesystem.
    #[error("making the whiteout {path:?}: the cache directory is on overlayfs (a container's root filesystem), which cannot hold the device that marks a deletion: put REGBUILD_CACHE on a volume (an emptyDir in Kubernetes, -v in podman or docker)")]
    WhiteoutOnOverlay { path: PathBuf },
}

/// Whether `path` is on an overlay filesystem.
fn on_overlayfs(path: &Path) -> bool {
    const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as u64 == OVERLAYFS_SUPER_MAGIC)
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What identifies a path's state without reading its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    /// File type and permission bits.
    mode: u32,
    dev: u64,
    ino: u64,
    /// Birth time (0 where the filesystem does not say): tells a recreated inode that got
    /// the same number from the original.
    btime: (i64, u32),
    uid: u32,
    gid: u32,
    nlink: u32,
    size: u64,
    rdev: (u32, u32),
    mtime: (i64, u32),
    ctime: (i64, u32),
}

impl Stamp {
    fn of(path: &Path) -> io::Result<Stamp> {
        let flags = StatxFlags::BASIC_STATS | StatxFlags::BTIME;
        let st = statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, flags)?;
        let btime = if st.stx_mask & StatxFlags::BTIME.bits() != 0 {
            (st.stx_btime.tv_sec, st.stx_btime.tv_nsec)
        } else {
            (0, 0)
        };
        Ok(Stamp {
            mode: u32::from(st.stx_mode),
            dev: (u64::from(st.stx_dev_major) << 32) | u64::from(st.stx_dev_minor),
            ino: st.stx_ino,
            btime,
            uid: st.stx_uid,
            gid: st.stx_gid,
            nlink: st.stx_nlink,
            size: st.stx_size,
            rdev: (st.stx_rdev_major, st.stx_rdev_minor),
            mtime: (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
            ctime: (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
        })
    }

    fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }

    /// Whether `now` is a change of `self` that overlayfs would have copied up. One is not:
    /// another name of the file was removed (fewer links and a new ctime, nothing else), as
    /// overlayfs then only whites out that name.
    fn changed_to(&self, now: &Stamp) -> bool {
        if self == now {
            return false;
        }
        let unlinked = Stamp {
            nlink: self.nlink,
            ctime: self.ctime,
            ..*now
        };
        !(now.nlink < self.nlink && unlinked == *self)
    }

    /// The same directory (not removed and recreated), whatever happened inside it.
    fn same_inode(&self, other: &Stamp) -> bool {
        (self.dev, self.ino, self.btime) == (other.dev, other.ino, other.btime)
    }
}

/// One path of the snapshot, and below a directory its children.
#[derive(Debug)]
struct Node {
    stamp: Stamp,
    children: HashMap<OsString, Node>,
}

/// The state of a tree at one moment.
#[derive(Debug)]
pub struct Snapshot {
    root: HashMap<OsString, Node>,
    excluded: Vec<PathBuf>,
    paths: usize,
}

/// What changed, in walk order (a directory before what is below it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub items: Vec<(PathBuf, Change)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Added or changed (or the parent of such): its current state is the entry.
    Entry { opaque: bool },
    /// Deleted.
    Whiteout,
}

impl Snapshot {
    /// Records everything below `root` but `excluded` (in-tree paths, relative or absolute).
    pub fn take(root: &Path, excluded: &[PathBuf]) -> Result<Snapshot, SnapshotError> {
        let excluded: Vec<PathBuf> = excluded.iter().map(|p| relative(p)).collect();
        let mut paths = 0;
        let root_map = take_dir(root, Path::new(""), &excluded, &mut paths)?;
        Ok(Snapshot {
            root: root_map,
            excluded,
            paths,
        })
    }

    /// How many paths were recorded.
    pub fn len(&self) -> usize {
        self.paths
    }

    pub fn is_empty(&self) -> bool {
        self.paths == 0
    }

    /// What differs in `root` now from when the snapshot was taken.
    pub fn diff(&self, root: &Path) -> Result<Changes, SnapshotError> {
        let mut changes = Changes::default();
        let mut d = Differ {
            root,
            excluded: &self.excluded,
            changes: &mut changes,
        };
        d.dir(Path::new(""), Some(&self.root))?;
        Ok(changes)
    }
}

fn relative(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

fn take_dir(
    root: &Path,
    rel: &Path,
    excluded: &[PathBuf],
    paths: &mut usize,
) -> Result<HashMap<OsString, Node>, SnapshotError> {
    let disk = root.join(rel);
    let mut out = HashMap::new();
    for dirent in fs::read_dir(&disk).map_err(io_err("reading", &disk))? {
        let dirent = dirent.map_err(io_err("reading", &disk))?;
        let name = dirent.file_name();
        let child = rel.join(&name);
        if excluded.iter().any(|e| child.starts_with(e)) {
            continue;
        }
        let path = root.join(&child);
        let stamp = Stamp::of(&path).map_err(io_err("reading", &path))?;
        *paths += 1;
        let children = if stamp.is_dir() {
            take_dir(root, &child, excluded, paths)?
        } else {
            HashMap::new()
        };
        out.insert(name, Node { stamp, children });
    }
    Ok(out)
}

struct Differ<'a> {
    root: &'a Path,
    excluded: &'a [PathBuf],
    changes: &'a mut Changes,
}

impl Differ<'_> {
    /// Compares the directory `rel` with `old` (its children then; `None`: it is new or
    /// replaced, so everything below is an entry). Returns whether anything was emitted.
    fn dir(
        &mut self,
        rel: &Path,
        old: Option<&HashMap<OsString, Node>>,
    ) -> Result<bool, SnapshotError> {
        let disk = self.root.join(rel);
        let mut names = Vec::new();
        for dirent in fs::read_dir(&disk).map_err(io_err("reading", &disk))? {
            names.push(dirent.map_err(io_err("reading", &disk))?.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut emitted = false;
        for name in &names {
            let child = rel.join(name);
            if self.is_excluded(&child) {
                continue;
            }
            let path = self.root.join(&child);
            let now = Stamp::of(&path).map_err(io_err("reading", &path))?;
            let before = old.and_then(|o| o.get(name));
            if now.is_dir() {
                // (changed itself, opaque, the old children to compare with)
                let (changed, opaque, below) = match before {
                    None => (true, false, None),
                    Some(b) if b.stamp.is_dir() && b.stamp.same_inode(&now) => {
                        (b.stamp.changed_to(&now), false, Some(&b.children))
                    }
                    // Removed and recreated, or made where a non-directory was.
                    Some(_) => (true, true, None),
                };
                let at = self.changes.items.len();
                self.changes
                    .items
                    .push((child.clone(), Change::Entry { opaque }));
                let inner = self.dir(&child, below)?;
                if changed || inner {
                    emitted = true;
                } else {
                    self.changes.items.truncate(at);
                }
            } else if before.is_none_or(|b| b.stamp.changed_to(&now)) {
                self.changes
                    .items
                    .push((child, Change::Entry { opaque: false }));
                emitted = true;
            }
        }
        if let Some(old) = old {
            let mut gone: Vec<&OsString> = old
                .keys()
                .filter(|n| {
                    names
                        .binary_search_by(|x| x.as_bytes().cmp(n.as_bytes()))
                        .is_err()
                })
                .collect();
            gone.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in gone {
                let child = rel.join(name);
                if !self.is_excluded(&child) {
                    self.changes.items.push((child, Change::Whiteout));
                    emitted = true;
                }
            }
        }
        Ok(emitted)
    }

    fn is_excluded(&self, rel: &Path) -> bool {
        self.excluded.iter().any(|e| rel.starts_with(e))
    }
}

/// What [`Changes::write_upper`] could not reproduce exactly (not root: owners of
/// directories), with why. The caller takes owners from the root filesystem then.
pub type Skipped = Vec<(PathBuf, &'static str)>;

impl Changes {
    /// Writes the changes of `root` into the empty directory `upper` as overlayfs would
    /// have: non-directories as hard links to their inode in `root` (owner, mode, xattrs,
    /// contents shared, and hard links between them kept), copied where linking is refused;
    /// directories made with `root`'s attributes, opaque ones with `<ns>.overlay.opaque=y`;
    /// deletions as character devices 0/0. `root` and `upper` must be on one filesystem
    /// for the links (a copy is made otherwise).
    pub fn write_upper(
        &self,
        root: &Path,
        upper: &Path,
        xattrs: OverlayXattrs,
    ) -> Result<Skipped, SnapshotError> {
        let mut opaque_name = xattrs.prefix().to_vec();
        opaque_name.extend_from_slice(b"opaque");
        let opaque_name = std::ffi::OsStr::from_bytes(&opaque_name);
        let mut skipped = Skipped::new();
        let mut dirs = Vec::new();
        for (rel, change) in &self.items {
            let dest = upper.join(rel);
            let src = root.join(rel);
            match change {
                Change::Whiteout => {
                    mknodat(CWD, &dest, FileType::CharacterDevice, Mode::empty(), 0).map_err(
                        |e| match e {
                            rustix::io::Errno::PERM if on_overlayfs(upper) => {
                                SnapshotError::WhiteoutOnOverlay { path: dest.clone() }
                            }
                            e => io_err("making the whiteout", &dest)(e.into()),
                        },
                    )?;
                }
                Change::Entry { opaque } => {
                    let meta = fs::symlink_metadata(&src).map_err(io_err("reading", &src))?;
                    if meta.is_dir() {
                        fs::DirBuilder::new()
                            .mode(0o700)
                            .create(&dest)
                            .map_err(io_err("creating", &dest))?;
                        if *opaque {
                            lsetxattr(&dest, opaque_name, b"y", rustix::fs::XattrFlags::empty())
                                .map_err(|e| io_err("marking opaque", &dest)(e.into()))?;
                        }
                        dirs.push((rel.clone(), meta));
                        continue;
                    }
                    match linkat(CWD, &src, CWD, &dest, AtFlags::empty()) {
                        Ok(()) => {}
                        // protected_hardlinks (another owner's file, not root), or another
                        // filesystem: a copy with the same attributes.
                        Err(Errno::PERM | Errno::XDEV) => {
                            copy_leaf(&src, &meta, &dest)?;
                            apply_attrs(&src, &meta, &dest, rel, &mut skipped)?;
                        }
                        Err(e) => return Err(io_err("linking", &dest)(e.into())),
                    }
                }
            }
        }
        dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, meta) in dirs {
            apply_attrs(
                &root.join(&rel),
                &meta,
                &upper.join(&rel),
                &rel,
                &mut skipped,
            )?;
        }
        Ok(skipped)
    }

    /// How many whiteouts and opaque directories there are (for `-v`).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for (_, change) in &self.items {
            match change {
                Change::Entry { opaque: false } => c.0 += 1,
                Change::Entry { opaque: true } => c.1 += 1,
                Change::Whiteout => c.2 += 1,
            }
        }
        c
    }
}

fn copy_leaf(src: &Path, meta: &fs::Metadata, dest: &Path) -> Result<(), SnapshotError> {
    let ft = meta.file_type();
    if ft.is_file() {
        fs::copy(src, dest).map_err(io_err("copying to", dest))?;
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io_err("reading", src))?;
        std::os::unix::fs::symlink(target, dest).map_err(io_err("creating", dest))?;
    } else if !ft.is_socket() {
        let kind = if ft.is_fifo() {
            FileType::Fifo
        } else if ft.is_char_device() {
            FileType::CharacterDevice
        } else {
            FileType::BlockDevice
        };
        mknodat(CWD, dest, kind, Mode::from_raw_mode(0o600), meta.rdev())
            .map_err(|e| io_err("creating", dest)(e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{lchown, symlink, PermissionsExt};

    use rustix::fs::{utimensat, Timespec, Timestamps};

    use crate::upper::{diff_upper, UpperOptions};

    /// A root to change, with its snapshot taken after `setup`.
    struct Scene {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        upper: PathBuf,
        snap: Option<Snapshot>,
        excluded: Vec<PathBuf>,
    }

    impl Scene {
        fn new(setup: impl FnOnce(&Path)) -> Scene {
            Scene::excluding(&[], setup)
        }

        fn excluding(excluded: &[&str], setup: impl FnOnce(&Path)) -> Scene {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("root");
            let upper = tmp.path().join("upper");
            fs::create_dir(&root).unwrap();
            fs::create_dir(&upper).unwrap();
            setup(&root);
            let excluded: Vec<PathBuf> = excluded.iter().map(PathBuf::from).collect();
            let snap = Some(Snapshot::take(&root, &excluded).unwrap());
            Scene {
                _tmp: tmp,
                root,
                upper,
                snap,
                excluded,
            }
        }

        fn p(&self, rel: &str) -> PathBuf {
            self.root.join(rel)
        }

        fn changes(&self) -> Vec<(String, Change)> {
            self.snap
                .as_ref()
                .unwrap()
                .diff(&self.root)
                .unwrap()
                .items
                .into_iter()
                .map(|(p, c)| (p.to_string_lossy().into_owned(), c))
                .collect()
        }

        /// The layer paths `crate::upper` reads from the written upper directory.
        fn layer_paths(&self) -> Vec<String> {
            let changes = self.snap.as_ref().unwrap().diff(&self.root).unwrap();
            changes
                .write_upper(&self.root, &self.upper, OverlayXattrs::User)
                .unwrap();
            let opts = UpperOptions {
                xattrs: OverlayXattrs::User,
                excluded: self.excluded.clone(),
                source_date_epoch: Some(0),
                ..Default::default()
            };
            let d = diff_upper(&self.upper, &opts, &std::env::temp_dir()).unwrap();
            d.entries
                .iter()
                .map(|e| e.path.to_string_lossy().into_owned())
                .collect()
        }
    }

    const E: Change = Change::Entry { opaque: false };
    const O: Change = Change::Entry { opaque: true };
    const W: Change = Change::Whiteout;

    fn write(path: &Path, content: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn items(list: &[(&str, Change)]) -> Vec<(String, Change)> {
        list.iter().map(|(p, c)| (p.to_string(), *c)).collect()
    }

    fn base(root: &Path) {
        write(&root.join("etc/motd"), "same size");
        write(&root.join("etc/keep"), "keep");
        write(&root.join("opt/tree/a/b"), "b");
        write(&root.join("opt/tree/c"), "c");
        write(&root.join("srv/x"), "x");
        symlink("motd", root.join("etc/link")).unwrap();
    }

    #[test]
    fn nothing_changed_is_nothing() {
        let s = Scene::new(base);
        let _ = fs::read(s.p("etc/motd")).unwrap();
        assert_eq!(s.changes(), []);
    }

    #[test]
    fn an_added_file_comes_with_its_parents() {
        let s = Scene::new(base);
        write(&s.p("opt/tree/a/new"), "n");
        write(&s.p("fresh/dir/f"), "f");
        assert_eq!(
            s.changes(),
            items(&[
                ("fresh", E),
                ("fresh/dir", E),
                ("fresh/dir/f", E),
                ("opt", E),
                ("opt/tree", E),
                ("opt/tree/a", E),
                ("opt/tree/a/new", E),
            ])
        );
    }

    #[test]
    fn same_size_contents_with_the_mtime_put_back_are_seen_through_ctime() {
        let s = Scene::new(base);
        let before = fs::symlink_metadata(s.p("etc/motd")).unwrap();
        fs::write(s.p("etc/motd"), "SAME SIZE").unwrap();
        let t = |sec, nsec| Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        };
        let times = Timestamps {
            last_access: t(before.atime(), before.atime_nsec() as _),
            last_modification: t(before.mtime(), before.mtime_nsec() as _),
        };
        utimensat(CWD, s.p("etc/motd"), &times, AtFlags::empty()).unwrap();
        let after = fs::symlink_metadata(s.p("etc/motd")).unwrap();
        assert_eq!(
            (after.len(), after.mtime(), after.mtime_nsec()),
            (before.len(), before.mtime(), before.mtime_nsec())
        );
        assert_eq!(s.changes(), items(&[("etc", E), ("etc/motd", E)]));
    }

    #[test]
    fn chmod_and_chown_are_changes() {
        let s = Scene::new(base);
        fs::set_permissions(s.p("etc/keep"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(s.p("srv"), fs::Permissions::from_mode(0o700)).unwrap();
        let uid = fs::metadata(s.p("opt/tree/c")).unwrap().uid();
        // As root a real chown; otherwise chown to oneself, which still sets ctime.
        let to = if rustix::process::geteuid().is_root() {
            1000
        } else {
            uid
        };
        lchown(s.p("opt/tree/c"), Some(to), None).unwrap();
        assert_eq!(
            s.changes(),
            items(&[
                ("etc", E),
                ("etc/keep", E),
                ("opt", E),
                ("opt/tree", E),
                ("opt/tree/c", E),
                ("srv", E),
            ])
        );
    }

    #[test]
    fn a_deleted_file_is_a_whiteout_and_a_deleted_tree_one_whiteout() {
        let s = Scene::new(base);
        fs::remove_file(s.p("etc/keep")).unwrap();
        fs::remove_dir_all(s.p("opt/tree")).unwrap();
        assert_eq!(
            s.changes(),
            items(&[("etc", E), ("etc/keep", W), ("opt", E), ("opt/tree", W)])
        );
        assert_eq!(
            s.layer_paths(),
            ["etc", "etc/.wh.keep", "opt", "opt/.wh.tree"]
        );
    }

    #[test]
    fn a_directory_replaced_by_a_file_and_the_reverse() {
        let s = Scene::new(base);
        fs::remove_dir_all(s.p("opt/tree")).unwrap();
        write(&s.p("opt/tree"), "a file now");
        fs::remove_file(s.p("srv/x")).unwrap();
        write(&s.p("srv/x/inner"), "a dir now");
        assert_eq!(
            s.changes(),
            items(&[
                ("opt", E),
                ("opt/tree", E),
                ("srv", E),
                ("srv/x", O),
                ("srv/x/inner", E),
            ])
        );
    }

    #[test]
    fn rm_rf_and_recreate_is_opaque_with_its_full_contents() {
        let s = Scene::new(base);
        fs::remove_dir_all(s.p("opt/tree")).unwrap();
        write(&s.p("opt/tree/c"), "c");
        assert_eq!(
            s.changes(),
            items(&[("opt", E), ("opt/tree", O), ("opt/tree/c", E)])
        );
        assert_eq!(
            s.layer_paths(),
            ["opt", "opt/tree", "opt/tree/.wh..wh..opq", "opt/tree/c"]
        );
    }

    #[test]
    fn hard_links_stay_hard_links_and_a_link_changes_its_target() {
        let s = Scene::new(base);
        fs::hard_link(s.p("etc/keep"), s.p("srv/keep.link")).unwrap();
        write(&s.p("srv/new"), "n");
        fs::hard_link(s.p("srv/new"), s.p("srv/new2")).unwrap();
        assert_eq!(
            s.changes(),
            items(&[
                ("etc", E),
                ("etc/keep", E),
                ("srv", E),
                ("srv/keep.link", E),
                ("srv/new", E),
                ("srv/new2", E),
            ])
        );
        let changes = s.snap.as_ref().unwrap().diff(&s.root).unwrap();
        changes
            .write_upper(&s.root, &s.upper, OverlayXattrs::User)
            .unwrap();
        let d = diff_upper(&s.upper, &UpperOptions::default(), &std::env::temp_dir()).unwrap();
        let kind = |p: &str| {
            d.entries
                .iter()
                .find(|e| e.path == Path::new(p))
                .map(|e| e.kind.clone())
                .unwrap()
        };
        assert_eq!(
            kind("srv/keep.link"),
            regbuild_fs::layer::EntryKind::HardLink {
                target: "etc/keep".into()
            }
        );
        assert_eq!(
            kind("srv/new2"),
            regbuild_fs::layer::EntryKind::HardLink {
                target: "srv/new".into()
            }
        );
    }

    #[test]
    fn removing_one_name_of_a_file_leaves_the_other_alone() {
        let s = Scene::new(|root| {
            base(root);
            fs::hard_link(root.join("etc/keep"), root.join("srv/keep2")).unwrap();
        });
        fs::remove_file(s.p("srv/keep2")).unwrap();
        assert_eq!(s.changes(), items(&[("srv", E), ("srv/keep2", W)]));
    }

    #[test]
    fn a_retargeted_symlink_is_a_change() {
        let s = Scene::new(base);
        fs::remove_file(s.p("etc/link")).unwrap();
        symlink("keep", s.p("etc/link")).unwrap();
        assert_eq!(s.changes(), items(&[("etc", E), ("etc/link", E)]));
        s.layer_paths();
        assert_eq!(
            fs::read_link(s.upper.join("etc/link")).unwrap(),
            Path::new("keep")
        );
    }

    #[test]
    fn excluded_paths_are_neither_compared_nor_whited_out() {
        let s = Scene::excluding(&["/proc", "etc/resolv.conf"], |root| {
            base(root);
            write(&root.join("proc/1/status"), "x");
            write(&root.join("etc/resolv.conf"), "ns");
        });
        fs::remove_dir_all(s.p("proc/1")).unwrap();
        fs::write(s.p("etc/resolv.conf"), "changed").unwrap();
        write(&s.p("proc/2"), "y");
        assert_eq!(s.changes(), []);
        fs::remove_file(s.p("etc/resolv.conf")).unwrap();
        // The parent changed (an entry went), the excluded path itself is not whited out.
        assert_eq!(s.changes(), items(&[("etc", E)]));
    }

    #[test]
    fn the_written_upper_directory_reads_as_the_layer_of_the_changes() {
        let s = Scene::new(base);
        fs::remove_file(s.p("etc/keep")).unwrap();
        fs::write(s.p("etc/motd"), "new").unwrap();
        fs::set_permissions(s.p("opt"), fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(s.layer_paths(), ["etc", "etc/.wh.keep", "etc/motd", "opt"]);
        let m = fs::symlink_metadata(s.upper.join("etc/motd")).unwrap();
        assert_eq!(m.ino(), fs::metadata(s.p("etc/motd")).unwrap().ino());
        assert_eq!(
            fs::metadata(s.upper.join("opt")).unwrap().mode() & 0o7777,
            0o750
        );
        assert!(fs::symlink_metadata(s.upper.join("etc/keep"))
            .unwrap()
            .file_type()
            .is_char_device());
    }
}
