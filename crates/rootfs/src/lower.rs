//! The base-layer store for `RUN`: each image layer unpacked once, by diff_id, into a
//! directory that overlayfs takes as a read-only lower directory, and reused by every later
//! build.
//!
//! [`unpack_lower`] unpacks one layer blob into an empty directory (overlay-format
//! whiteouts, exact metadata, diff_id computed on the way). [`LowerStore`] keeps those
//! directories under `<root>/<trusted|user>/<algorithm>/<hex>` (the two namespaces of the
//! opaque xattr cannot share a directory) and publishes each one by an atomic rename, so a
//! directory that is there is complete, and concurrent builders agree on one copy.
//!
//! Not here: deciding which layers a step needs, mounting the overlay (`regbuild-sandbox`),
//! garbage collection of unused layers, and the reverse direction, an upper directory back
//! into a layer ([`crate::upper`]).
//!
//! Directories in the store may have modes such as 0500 or 0000, exactly as the layer says,
//! so a plain `remove_dir_all` fails for anyone but root: remove them with
//! [`crate::tree::remove_tree`].
//! Unpacks in progress live in `<root>/<trusted|user>/tmp`, each a
//! [`crate::scratch::LiveDir`] locked by its process until it is published or removed, so a
//! partial unpack never enters the store, and what a killed process left there is told
//! apart from an unpack still running ([`LowerStore::abandoned_unpacks`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use regbuild_oci::digest::Digest;
use rustix::fs::{renameat_with, Mode, RenameFlags, CWD};
use rustix::io::Errno;

use crate::tree::remove_tree;
pub use crate::unpack::{unpack_lower, unpack_lower_from, LowerError, LowerOptions, LowerStats};
pub use crate::upper::OverlayXattrs;

/// Where unpacks in progress live, inside the namespace directory (same filesystem as
/// their final place, so the rename is atomic).
const TMP_DIR: &str = "tmp";
/// The prefix of an unpack in progress there.
const UNPACK_PREFIX: &str = "unpack-";
/// Mode of a lower directory's root: the layer does not say, and overlayfs takes the
/// merged root's attributes from the top layer.
const ROOT_MODE: u32 = 0o755;

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LowerError + 'a {
    move |source| LowerError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Unpacked layers under one root, for one overlay xattr namespace.
#[derive(Debug, Clone)]
pub struct LowerStore {
    /// `<root>/<trusted|user>`.
    dir: PathBuf,
    xattrs: OverlayXattrs,
}

impl LowerStore {
    /// Opens (creating it if needed) the store under `root` for overlays that keep their
    /// xattrs in the `xattrs` namespace.
    pub fn open(root: &Path, xattrs: OverlayXattrs) -> Result<LowerStore, LowerError> {
        let namespace = match xattrs {
            OverlayXattrs::Trusted => "trusted",
            OverlayXattrs::User => "user",
        };
        let dir = root.join(namespace);
        let tmp = dir.join(TMP_DIR);
        crate::scratch::create_dir_all_with_mode(&tmp, 0o700)
            .map_err(io_error("creating", &tmp))?;
        spread_subdirs(&tmp);
        Ok(LowerStore { dir, xattrs })
    }

    /// Where the layer `diff_id` is, or would be, unpacked.
    pub fn path_of(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.algorithm()).join(diff_id.hex())
    }

    /// The directory of `diff_id` if it is in the store. A directory there is complete:
    /// only whole unpacks are renamed into place.
    pub fn get(&self, diff_id: &Digest) -> Option<PathBuf> {
        let path = self.path_of(diff_id);
        fs::symlink_metadata(&path)
            .is_ok_and(|meta| meta.is_dir())
            .then_some(path)
    }

    /// The directory of `diff_id`, unpacking `archive` (its blob) first if it is not in the
    /// store. The unpack goes to a temporary directory in the store, is checked against
    /// `diff_id` and renamed into place; if another process got there first, its copy is
    /// kept and ours removed. A failed unpack leaves nothing behind.
    pub fn ensure(&self, diff_id: &Digest, archive: &Path) -> Result<PathBuf, LowerError> {
        self.ensure_with(diff_id, |dest, opts| unpack_lower(archive, dest, opts))
    }

    /// [`ensure`](Self::ensure) reading the blob from `stream` as it arrives (a download:
    /// fetching and unpacking overlap); `name` stands for it in errors. The stream is read
    /// to its end before the directory is published. The stream is not read at all when
    /// the store has the layer already.
    pub fn ensure_from(
        &self,
        diff_id: &Digest,
        name: &str,
        stream: impl io::Read + Send + 'static,
    ) -> Result<PathBuf, LowerError> {
        self.ensure_with(diff_id, |dest, opts| {
            unpack_lower_from(name, stream, dest, opts)
        })
    }

    /// [`ensure`](Self::ensure) with the unpack done by `unpack` (given the temporary
    /// directory and the options; it must leave that directory empty on error), e.g. in
    /// another process that may set owners this one cannot.
    pub fn ensure_with(
        &self,
        diff_id: &Digest,
        unpack: impl FnOnce(&Path, &LowerOptions) -> Result<LowerStats, LowerError>,
    ) -> Result<PathBuf, LowerError> {
        if let Some(path) = self.get(diff_id) {
            return Ok(path);
        }
        let tmp = self.temp_dir()?;
        let opts = LowerOptions {
            xattrs: self.xattrs,
            expected_diff_id: Some(diff_id.clone()),
            ..LowerOptions::default()
        };
        if let Err(e) = unpack(tmp.path(), &opts) {
            let _ = remove_tree(tmp.path());
            return Err(e);
        }
        self.publish(diff_id, tmp.path()).inspect_err(|_| {
            let _ = remove_tree(tmp.path());
        })
    }

    /// Unpacks that processes which died left in the store's temporary directory (never a
    /// running one's): for the caller to remove, with the remover it needs.
    pub fn abandoned_unpacks(&self) -> Vec<PathBuf> {
        crate::scratch::find_abandoned(&self.dir.join(TMP_DIR), UNPACK_PREFIX)
    }

    /// Moves `dir`, a directory already in lower-directory form (an overlay upper directory
    /// after a `RUN` step, with the same xattr namespace), into the store as `diff_id`, by
    /// rename: `dir` must be on the store's filesystem. Its content is not checked against
    /// `diff_id`. If the store already has `diff_id`, `dir` is removed and the copy in the
    /// store returned. On error `dir` stays where it was.
    pub fn adopt(&self, diff_id: &Digest, dir: &Path) -> Result<PathBuf, LowerError> {
        if let Some(path) = self.get(diff_id) {
            remove_tree(dir).map_err(io_error("removing", dir))?;
            return Ok(path);
        }
        self.publish(diff_id, dir)
    }

    /// Renames `dir` to the place of `diff_id` unless something is there already, in which
    /// case `dir` is removed: both hold the same layer.
    fn publish(&self, diff_id: &Digest, dir: &Path) -> Result<PathBuf, LowerError> {
        let path = self.path_of(diff_id);
        if let Some(parent) = path.parent() {
            crate::scratch::create_dir_all_with_mode(parent, 0o700)
                .map_err(io_error("creating", parent))?;
        }
        let renamed = match renameat_with(CWD, dir, CWD, &path, RenameFlags::NOREPLACE) {
            // Filesystems without RENAME_NOREPLACE: a plain rename still refuses to replace
            // a non-empty directory, and replacing an empty one (an empty layer) is harmless.
            Err(Errno::INVAL) => fs::rename(dir, &path),
            other => other.map_err(io::Error::from),
        };
        match renamed {
            Ok(()) => Ok(path),
            // Ours goes; if it cannot (a rootless unpack left files of subordinate ids),
            // it stays in the unpack directory for `regbuild prune`: the layer is there.
            Err(e) if lost_race(&e) => {
                let _ = remove_tree(dir);
                Ok(path)
            }
            Err(e) => Err(io_error("moving into the store", dir)(e)),
        }
    }

    /// A new empty directory for an unpack, next to the final places, locked by this
    /// process until it is published or removed.
    fn temp_dir(&self) -> Result<crate::scratch::LiveDir, LowerError> {
        let tmp = self.dir.join(TMP_DIR);
        crate::scratch::LiveDir::create(&tmp, UNPACK_PREFIX, ROOT_MODE)
            .map_err(io_error("creating an unpack directory in", &tmp))
    }
}

/// Asks the filesystem to place each new directory made directly in `dir` where it sees fit
/// (ext4's `chattr +T`, `FS_TOPDIR_FL`), instead of next to `dir`. Best effort: filesystems
/// without the flag ignore it.
///
/// Why: ext4 without a journal does not reuse an inode freed in the last minute or more
/// while another is free in the same block group, and finds one by scanning past every such
/// inode on each allocation. A tree unpacked next to one just removed (a store emptied, the
/// scratch of the previous step) then costs about a millisecond of CPU per file created —
/// 5 s for a Debian base instead of under 1 s. A top directory's children start in a
/// group of their own, away from those inodes; their contents follow them.
pub fn spread_subdirs(dir: &Path) {
    use rustix::fs::{ioctl_getflags, ioctl_setflags, open, IFlags, OFlags};
    let Ok(fd) = open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    if let Ok(flags) = ioctl_getflags(&fd) {
        if !flags.contains(IFlags::TOPDIR) {
            let _ = ioctl_setflags(&fd, flags | IFlags::TOPDIR);
        }
    }
}

fn lost_race(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Barrier};

    /// A store in a scratch dir, and a layer blob for it.
    struct Scene {
        root: tempfile::TempDir,
    }

    impl Scene {
        fn new() -> Scene {
            Scene {
                root: tempfile::tempdir().unwrap(),
            }
        }

        fn store(&self) -> LowerStore {
            LowerStore::open(&self.root.path().join("lowers"), OverlayXattrs::User).unwrap()
        }

        /// A gzip layer with a read-only directory, and its diff_id.
        fn layer(&self, name: &str) -> (PathBuf, Digest) {
            let mut builder = tar::Builder::new(Vec::new());
            for (path, mode, kind) in [
                ("etc", 0o555, tar::EntryType::Directory),
                ("etc/name", 0o444, tar::EntryType::Regular),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(kind);
                h.set_mode(mode);
                let data = if kind == tar::EntryType::Regular {
                    name.as_bytes()
                } else {
                    b""
                };
                h.set_size(data.len() as u64);
                builder.append_data(&mut h, path, data).unwrap();
            }
            let tar = builder.into_inner().unwrap();
            let blob = self.root.path().join(format!("{name}.tar.gz"));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut gz, &tar).unwrap();
            fs::write(&blob, gz.finish().unwrap()).unwrap();
            (blob, Digest::of(&tar))
        }

        fn tmp_is_empty(&self) -> bool {
            let tmp = self.root.path().join("lowers/user/tmp");
            fs::read_dir(tmp).unwrap().next().is_none()
        }
    }

    #[test]
    fn ensure_unpacks_once_and_get_finds_it() {
        let scene = Scene::new();
        let store = scene.store();
        let (blob, diff_id) = scene.layer("one");
        assert_eq!(store.get(&diff_id), None);
        let path = store.ensure(&diff_id, &blob).unwrap();
        assert_eq!(
            path,
            scene
                .root
                .path()
                .join("lowers/user/sha256")
                .join(diff_id.hex())
        );
        assert_eq!(fs::read_to_string(path.join("etc/name")).unwrap(), "one");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            ROOT_MODE
        );
        assert_eq!(store.get(&diff_id), Some(path.clone()));
        // The second time, the blob is not even read.
        fs::remove_file(&blob).unwrap();
        assert_eq!(store.ensure(&diff_id, &blob).unwrap(), path);
        assert!(scene.tmp_is_empty());
    }

    #[test]
    fn ensure_from_a_stream_unpacks_it_and_a_failing_stream_leaves_nothing() {
        let scene = Scene::new();
        let store = scene.store();
        let (blob, diff_id) = scene.layer("streamed");
        let bytes = fs::read(&blob).unwrap();
        let path = store
            .ensure_from(&diff_id, "streamed", io::Cursor::new(bytes.clone()))
            .unwrap();
        assert_eq!(
            fs::read_to_string(path.join("etc/name")).unwrap(),
            "streamed"
        );

        // All the bytes, then an error where a download reports a digest mismatch: refused.
        struct FailsAtTheEnd(io::Cursor<Vec<u8>>);
        impl io::Read for FailsAtTheEnd {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "digest mismatch",
                    )),
                    n => Ok(n),
                }
            }
        }
        let (blob, diff_id) = scene.layer("forged");
        let stream = FailsAtTheEnd(io::Cursor::new(fs::read(&blob).unwrap()));
        let err = store.ensure_from(&diff_id, "forged", stream).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert_eq!(store.get(&diff_id), None);
        assert!(scene.tmp_is_empty());
    }

    #[test]
    fn a_blob_that_is_not_the_layer_leaves_nothing_behind() {
        let scene = Scene::new();
        let store = scene.store();
        let (blob, _) = scene.layer("one");
        let (_, other) = scene.layer("two");
        let err = store.ensure(&other, &blob).unwrap_err();
        assert!(matches!(err, LowerError::DiffIdMismatch { .. }), "{err}");
        assert_eq!(store.get(&other), None);
        assert!(scene.tmp_is_empty());
    }

    #[test]
    fn concurrent_ensures_of_one_layer_agree_on_one_directory() {
        let scene = Scene::new();
        let store = scene.store();
        let (blob, diff_id) = scene.layer("raced");
        let barrier = Arc::new(Barrier::new(4));
        let paths: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    let (blob, diff_id) = (&blob, &diff_id);
                    s.spawn(move || {
                        barrier.wait();
                        store.ensure(diff_id, blob).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(paths.iter().all(|p| *p == paths[0]), "{paths:?}");
        let published = fs::read_dir(scene.root.path().join("lowers/user/sha256")).unwrap();
        assert_eq!(published.count(), 1);
        assert!(scene.tmp_is_empty());
        assert_eq!(
            fs::read_to_string(paths[0].join("etc/name")).unwrap(),
            "raced"
        );
    }

    #[test]
    fn losing_the_rename_race_keeps_theirs_and_removes_ours() {
        let scene = Scene::new();
        let store = scene.store();
        let (blob, diff_id) = scene.layer("theirs");
        let theirs = store.ensure(&diff_id, &blob).unwrap();
        // Ours, unpacked meanwhile, read-only like the real thing.
        let live = store.temp_dir().unwrap();
        let ours = live.path().to_path_buf();
        fs::create_dir(ours.join("etc")).unwrap();
        fs::write(ours.join("etc/name"), "ours").unwrap();
        fs::set_permissions(ours.join("etc"), Permissions::from_mode(0o000)).unwrap();
        assert_eq!(store.publish(&diff_id, &ours).unwrap(), theirs);
        assert!(!ours.exists());
        assert_eq!(
            fs::read_to_string(theirs.join("etc/name")).unwrap(),
            "theirs"
        );
    }

    #[test]
    fn only_unpacks_whose_process_died_are_abandoned() {
        let scene = Scene::new();
        let store = scene.store();
        let running = store.temp_dir().unwrap();
        let dead = store.dir.join(TMP_DIR).join(format!("{UNPACK_PREFIX}dead"));
        fs::create_dir(&dead).unwrap();
        assert_eq!(store.abandoned_unpacks(), vec![dead]);
        assert!(running.path().is_dir());
    }

    #[test]
    fn adopt_moves_a_prepared_directory_in() {
        let scene = Scene::new();
        let store = scene.store();
        let upper = scene.root.path().join("lowers/upper-after-run");
        fs::create_dir_all(upper.join("opt")).unwrap();
        fs::write(upper.join("opt/new"), "new").unwrap();
        let diff_id = Digest::of(b"the layer the step made");
        let path = store.adopt(&diff_id, &upper).unwrap();
        assert_eq!(store.get(&diff_id), Some(path.clone()));
        assert_eq!(fs::read_to_string(path.join("opt/new")).unwrap(), "new");
        assert!(!upper.exists());

        // The same layer again: already there, so the new copy goes.
        fs::create_dir_all(&upper).unwrap();
        assert_eq!(store.adopt(&diff_id, &upper).unwrap(), path);
        assert!(!upper.exists());
    }

    #[test]
    fn the_unpack_directory_spreads_its_subdirectories() {
        use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
        let scene = Scene::new();
        scene.store();
        let flags = |dir: &Path| ioctl_getflags(fs::File::open(dir).unwrap());
        let tmp = scene.root.path().join("lowers/user/tmp");
        if flags(&tmp).is_ok_and(|f| f.contains(IFlags::TOPDIR)) {
            return;
        }
        // Not set: only right if this filesystem refuses the flag.
        let probe = scene.root.path().join("probe");
        fs::create_dir(&probe).unwrap();
        let refused = flags(&probe)
            .and_then(|f| ioctl_setflags(fs::File::open(&probe).unwrap(), f | IFlags::TOPDIR))
            .is_err();
        assert!(
            refused,
            "{tmp:?} is not marked though the filesystem takes the flag"
        );
    }

    #[test]
    fn trusted_and_user_stores_are_apart() {
        let scene = Scene::new();
        let root = scene.root.path().join("lowers");
        let user = LowerStore::open(&root, OverlayXattrs::User).unwrap();
        let trusted = LowerStore::open(&root, OverlayXattrs::Trusted).unwrap();
        let (blob, diff_id) = scene.layer("one");
        user.ensure(&diff_id, &blob).unwrap();
        assert_eq!(trusted.get(&diff_id), None);
    }
}
