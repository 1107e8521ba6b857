//! Unpacking one image layer as an overlayfs lower directory: the third way the extraction
//! engine of `regbuild-fs` writes members, next to `ADD`'s plain tar
//! ([`regbuild_fs::extract::extract_archive`]) and the merged view of a whole image
//! ([`regbuild_fs::extract::Overlay`]).
//!
//! Unlike those two, the result must be what the layer says, because a `RUN` step sees it
//! as its root filesystem: OCI whiteouts become overlayfs whiteouts (character device 0/0)
//! and opaque markers the `<prefix>opaque=y` xattr; modes are exact (directories too,
//! applied once their contents are written), ownership, xattrs and mtimes are applied when
//! the process may, devices and FIFOs are made with mknod when it may. The safety rules of
//! the [extraction module](regbuild_fs::extract) still hold: the members come from the same
//! reader and the same [`Sink`] writes them ([`regbuild_fs::extract::engine`]). Metadata
//! is applied afterwards, deepest paths first, only to paths that sink wrote, with calls
//! that never follow a symlink in the last component; parents were checked when the sink
//! wrote below them.
//!
//! The sha256 of the uncompressed stream, trailing blocks included, is computed on the way:
//! it is the layer's diff_id.
//!
//! [`crate::lower`]'s store keeps what this unpacks, and re-exports it.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use regbuild_oci::digest::{Digest, Hasher};
use rustix::fs::{
    chmodat, chownat, lsetxattr, utimensat, AtFlags, Mode, Timespec, Timestamps, XattrFlags, CWD,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

use regbuild_fs::disk::DiskLimit;
use regbuild_fs::extract::engine::{
    for_each_member, read_error, Member, Outcome, ReadAhead, Sink, Specials, OPAQUE_MARKER,
    WHITEOUT_META_PREFIX, WHITEOUT_PREFIX,
};
use regbuild_fs::extract::{open_stream, ExtractError, Limits};
use regbuild_fs::tar_read::Budget;

use crate::upper::OverlayXattrs;

/// How [`unpack_lower`] unpacks a layer.
#[derive(Debug, Clone, Default)]
pub struct LowerOptions {
    /// The namespace of the opaque xattr: `Trusted` for an overlay mounted by real root,
    /// `User` for one mounted with `userxattr`. Setting `trusted.*` needs root, so a layer
    /// with an opaque directory fails to unpack as `Trusted` without it.
    pub xattrs: OverlayXattrs,
    /// When set, a layer whose uncompressed stream hashes otherwise is an error.
    pub expected_diff_id: Option<Digest>,
    pub limits: Limits,
    /// How much file data the unpack may write (default: the free space of `dest`'s
    /// filesystem less a reserve, see [`regbuild_fs::disk`]).
    pub disk: DiskLimit,
}

/// What [`unpack_lower`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Entries written (files, directories, symlinks, links, nodes, whiteouts).
    pub entries: u64,
    /// Regular-file bytes written.
    pub bytes: u64,
    /// Whiteouts made (`.wh.NAME` entries).
    pub whiteouts: u64,
    /// Directories marked opaque (`.wh..wh..opq` entries).
    pub opaque_dirs: u64,
    /// Paths whose owner could not be set (not root, or an id outside the user namespace).
    pub ownership_skipped: u64,
    /// Extended attributes not set (not permitted, or not supported by the filesystem).
    pub xattrs_skipped: u64,
    /// Entries left out, each with the reason (as [`regbuild_fs::extract::ExtractStats::skipped`]).
    pub skipped: Vec<(PathBuf, &'static str)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("{dest:?} must be an empty directory to unpack a layer into")]
    DestNotEmpty { dest: PathBuf },
    #[error("layer {archive:?} has diff_id {actual}, not the expected {expected}")]
    DiffIdMismatch {
        archive: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Unpacks the layer blob `archive` (gzip, zstd, xz or plain tar, detected from its first
/// bytes) into the empty directory `dest`, so that `dest` used as an overlayfs lower
/// directory shows exactly that layer. See the [module documentation](self).
///
/// `dest` itself keeps its mode, owner and times (a `./` entry changes nothing): overlayfs
/// takes the merged root's from the top layer, and the store gives each root 0755.
///
/// On any error, including a diff_id other than [`LowerOptions::expected_diff_id`], `dest`
/// is emptied again.
pub fn unpack_lower(
    archive: &Path,
    dest: &Path,
    opts: &LowerOptions,
) -> Result<LowerStats, LowerError> {
    unpack_into(archive, dest, opts, || ReadAhead::open(archive))
}

/// [`unpack_lower`] reading the blob from `stream` (a download, as it arrives) instead of a
/// file; `name` (the blob's digest) stands for the archive in errors. The stream is read to
/// its end before this returns `Ok`, so a download that verifies its digest at the end has
/// been verified by then.
pub fn unpack_lower_from(
    name: &str,
    stream: impl Read + Send + 'static,
    dest: &Path,
    opts: &LowerOptions,
) -> Result<LowerStats, LowerError> {
    let archive = Path::new(name);
    unpack_into(archive, dest, opts, || {
        ReadAhead::start(archive, move || {
            open_stream(stream).map(|(_, reader)| reader)
        })
    })
}

fn unpack_into(
    archive: &Path,
    dest: &Path,
    opts: &LowerOptions,
    input: impl FnOnce() -> Result<ReadAhead, ExtractError>,
) -> Result<LowerStats, LowerError> {
    let io_error = |action, source| LowerError::Io {
        action,
        path: dest.to_path_buf(),
        source,
    };
    let mut listing = fs::read_dir(dest).map_err(|e| io_error("reading", e))?;
    if listing.next().is_some() {
        return Err(LowerError::DestNotEmpty {
            dest: dest.to_path_buf(),
        });
    }
    let unpacked = input()
        .map_err(LowerError::from)
        .and_then(|input| unpack(archive, input, dest, opts));
    if unpacked.is_err() {
        // Best effort: the unpack error is the one worth reporting.
        let _ = crate::tree::empty_dir(dest);
    }
    unpacked
}

/// Tees everything read into a sha256.
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = buf
            .get(..n)
            .ok_or_else(|| io::Error::other("decoder returned more bytes than asked for"))?;
        self.hasher.update(chunk);
        Ok(n)
    }
}

/// What an entry's name makes of it in a layer.
enum Marker {
    /// `D/.wh..wh..opq`: `D` is opaque.
    Opaque(PathBuf),
    /// `D/.wh.NAME`: `D/NAME` is deleted.
    Whiteout(PathBuf),
    /// Another `.wh..wh.` name, or a whiteout of nothing: AUFS bookkeeping.
    Ignored(&'static str),
    Plain,
}

fn marker(member: &Member) -> Marker {
    let Some(file_name) = member.path.file_name() else {
        return Marker::Plain;
    };
    let name = file_name.as_bytes();
    let parent = member.path.parent().unwrap_or(Path::new(""));
    if name == OPAQUE_MARKER {
        return Marker::Opaque(parent.to_path_buf());
    }
    if name.starts_with(WHITEOUT_META_PREFIX) {
        return Marker::Ignored("AUFS bookkeeping entry (.wh..wh.*): not written");
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        // `.wh.`, `.wh..` and `.wh...` would name nothing, the directory or its parent.
        Some(b"" | b"." | b"..") => Marker::Ignored("whiteout of no name"),
        Some(hidden) => Marker::Whiteout(parent.join(OsStr::from_bytes(hidden))),
        None => Marker::Plain,
    }
}

/// Counts kept while unpacking.
#[derive(Default)]
struct Counts {
    whiteouts: u64,
    opaque_dirs: u64,
    ownership_skipped: u64,
    xattrs_skipped: u64,
}

/// `input` is decoded on another core: inflate is about half of an unpack's CPU time.
fn unpack(
    archive: &Path,
    input: ReadAhead,
    dest: &Path,
    opts: &LowerOptions,
) -> Result<LowerStats, LowerError> {
    let name = archive.display().to_string();
    let mut input = Hashing {
        inner: input,
        hasher: Hasher::new(),
    };
    let mut sink = Sink::new(dest, Specials::Create, opts.disk);
    let mut mtimes: HashMap<PathBuf, u64> = HashMap::new();
    let mut counts = Counts::default();
    let opaque_xattr = [opts.xattrs.prefix(), b"opaque".as_slice()].concat();
    for_each_member(
        &name,
        &mut input,
        &opts.limits,
        &mut Budget::default(),
        |member, data| {
            match marker(member) {
                Marker::Opaque(dir) => {
                    if sink.ensure_dir(&name, &member.name, &dir)? == Outcome::Written {
                        let disk = sink.dest().join(&dir);
                        lsetxattr(
                            &disk,
                            OsStr::from_bytes(&opaque_xattr),
                            b"y",
                            XattrFlags::empty(),
                        )
                        .map_err(|e| ExtractError::Write {
                            archive: name.clone(),
                            entry: member.name.clone(),
                            disk,
                            source: e.into(),
                        })?;
                        counts.opaque_dirs += 1;
                    }
                }
                Marker::Whiteout(path) => {
                    if sink.whiteout(&name, &member.name, &path)? == Outcome::Written {
                        counts.whiteouts += 1;
                    }
                }
                Marker::Ignored(why) => sink.note(&member.path, why),
                Marker::Plain => {
                    if sink.write(&name, member, data)? == Outcome::Written {
                        mtimes.insert(member.path.clone(), member.mtime);
                    }
                }
            }
            Ok(())
        },
    )?;
    sink.resolve_pending(true)?;
    // The diff_id covers the whole stream, end-of-archive blocks and anything after them.
    io::copy(&mut input, &mut io::sink())
        .map_err(|e| read_error(&name, Path::new("(end of archive)"), e))?;
    let diff_id = input.hasher.finish();
    if let Some(expected) = &opts.expected_diff_id {
        if *expected != diff_id {
            return Err(LowerError::DiffIdMismatch {
                archive: archive.to_path_buf(),
                expected: expected.clone(),
                actual: diff_id,
            });
        }
    }
    apply_metadata(&name, &mut sink, &mtimes, &mut counts)?;
    Ok(LowerStats {
        diff_id,
        entries: sink.stats.entries,
        bytes: sink.stats.bytes,
        whiteouts: counts.whiteouts,
        opaque_dirs: counts.opaque_dirs,
        ownership_skipped: counts.ownership_skipped,
        xattrs_skipped: counts.xattrs_skipped,
        skipped: std::mem::take(&mut sink.stats.skipped),
    })
}

/// Applies owner, mode, xattrs and mtime of every path the sink wrote, deepest first, so a
/// directory made read-only (or 0000) no longer needs to be entered. Hard links are left
/// alone: they share the target's inode, whose own header says what it is (as tar does).
/// The order per path matters: chown clears setuid/setgid and `security.capability`, so
/// the mode and the xattrs come after it, and the mtime last.
fn apply_metadata(
    archive: &str,
    sink: &mut Sink,
    mtimes: &HashMap<PathBuf, u64>,
    counts: &mut Counts,
) -> Result<(), ExtractError> {
    let mut paths: Vec<PathBuf> = sink
        .meta
        .keys()
        .filter(|path| !sink.links.contains_key(*path))
        .cloned()
        .collect();
    paths.sort_by_key(|path| Reverse(path.components().count()));
    let mut notes = Vec::new();
    for rel in paths {
        let (Some(meta), disk) = (sink.meta.get(&rel), sink.dest().join(&rel)) else {
            continue;
        };
        let write_error = |source: io::Error| ExtractError::Write {
            archive: archive.to_string(),
            entry: rel.clone(),
            disk: disk.clone(),
            source,
        };
        let on_disk = fs::symlink_metadata(&disk).map_err(write_error)?;
        if (meta.uid, meta.gid) != (u64::from(on_disk.uid()), u64::from(on_disk.gid())) {
            match owner(meta.uid, meta.gid) {
                Some((uid, gid)) => {
                    match chownat(CWD, &disk, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(()) => {}
                        Err(Errno::PERM | Errno::INVAL) => counts.ownership_skipped += 1,
                        Err(e) => return Err(write_error(e.into())),
                    }
                }
                None => counts.ownership_skipped += 1,
            }
        }
        if !on_disk.file_type().is_symlink() {
            chmodat(CWD, &disk, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(|e| write_error(e.into()))?;
        }
        for (key, value) in sink.xattrs.get(&rel).into_iter().flatten() {
            // Overlay's own xattrs (redirect, metacopy, origin…) would make the kernel
            // read this directory as something else: only whiteout markers may set them.
            let overlay = [OverlayXattrs::Trusted, OverlayXattrs::User]
                .iter()
                .any(|ns| key.starts_with(ns.prefix()));
            if overlay {
                notes.push((rel.clone(), "overlay xattr in the archive: not applied"));
                continue;
            }
            match lsetxattr(&disk, OsStr::from_bytes(key), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(
                    Errno::PERM
                    | Errno::ACCESS
                    | Errno::OPNOTSUPP
                    | Errno::INVAL
                    | Errno::RANGE
                    | Errno::TOOBIG,
                ) => counts.xattrs_skipped += 1,
                Err(e) => return Err(write_error(e.into())),
            }
        }
        if let Some(&mtime) = mtimes.get(&rel) {
            let at = Timespec {
                tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
                tv_nsec: 0,
            };
            let times = Timestamps {
                last_access: at,
                last_modification: at,
            };
            utimensat(CWD, &disk, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| write_error(e.into()))?;
        }
    }
    for (path, why) in notes {
        sink.note(&path, why);
    }
    Ok(())
}

/// The ids chown can take: `u32::MAX` means "unchanged" to the kernel, larger ones do not fit.
fn owner(uid: u64, gid: u64) -> Option<(Uid, Gid)> {
    let uid = u32::try_from(uid).ok().filter(|id| *id != u32::MAX)?;
    let gid = u32::try_from(gid).ok().filter(|id| *id != u32::MAX)?;
    Some((Uid::from_raw(uid), Gid::from_raw(gid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use regbuild_fs::compress::Codec;
    use regbuild_fs::extract::testing::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use tar::EntryType;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// Writes `tar` (compressed with `codec`) next to `dest` and unpacks it there.
    fn unpack_in(
        scene: &Scene,
        codec: Codec,
        tar: &[u8],
        opts: &LowerOptions,
    ) -> Result<LowerStats, LowerError> {
        let blob = scene.root.path().join("layer.blob");
        fs::write(&blob, compressed(codec, tar)).unwrap();
        let unpacked = unpack_lower(&blob, &scene.dest(), opts);
        fs::remove_file(&blob).unwrap();
        unpacked
    }

    fn user_opts() -> LowerOptions {
        LowerOptions {
            xattrs: OverlayXattrs::User,
            ..LowerOptions::default()
        }
    }

    fn xattr(scene: &Scene, rel: &str, name: &str) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        let n = rustix::fs::lgetxattr(scene.dest().join(rel), name, &mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    #[test]
    fn whiteouts_become_char_devices_and_opaque_markers_xattrs() {
        let scene = Scene::new();
        let tar = Tar::new()
            .dir("etc", 0o755)
            .file("etc/.wh.gone", b"", 0o644)
            .dir("var/cache", 0o755)
            .file("var/cache/.wh..wh..opq", b"", 0o644)
            .file("var/cache/kept", b"new", 0o644)
            .file("implied/.wh..wh..opq", b"", 0o644)
            .file(".wh..wh.plnk", b"", 0o644)
            .file("a/.wh...", b"", 0o644)
            .bytes();
        let stats = unpack_in(&scene, Codec::Gzip, &tar, &user_opts()).unwrap();
        assert_eq!((stats.whiteouts, stats.opaque_dirs), (1, 2));

        let gone = fs::symlink_metadata(scene.dest().join("etc/gone")).unwrap();
        assert!(gone.file_type().is_char_device(), "{gone:?}");
        assert_eq!(gone.rdev(), 0);
        assert_eq!(
            xattr(&scene, "var/cache", "user.overlay.opaque"),
            Some(b"y".to_vec())
        );
        assert_eq!(
            xattr(&scene, "implied", "user.overlay.opaque"),
            Some(b"y".to_vec())
        );
        assert_eq!(scene.read("var/cache/kept"), "new");
        for marker in [
            "etc/.wh.gone",
            "var/cache/.wh..wh..opq",
            ".wh..wh.plnk",
            "a/.wh...",
        ] {
            assert!(!scene.exists(marker), "{marker} written");
        }
        assert_eq!(
            skipped_reason_lower(&stats, ".wh..wh.plnk"),
            "AUFS bookkeeping entry (.wh..wh.*): not written"
        );
        assert_eq!(
            skipped_reason_lower(&stats, "a/.wh..."),
            "whiteout of no name"
        );
        scene.assert_outside_untouched();
    }

    #[test]
    fn trusted_opaque_xattr_as_root() {
        if !crate::prerequisite::needs_root("setting trusted.* xattrs") {
            return;
        }
        let scene = Scene::new();
        let tar = Tar::new().file("d/.wh..wh..opq", b"", 0o644).bytes();
        unpack_in(&scene, Codec::None, &tar, &LowerOptions::default()).unwrap();
        assert_eq!(
            xattr(&scene, "d", "trusted.overlay.opaque"),
            Some(b"y".to_vec())
        );
        assert_eq!(xattr(&scene, "d", "user.overlay.opaque"), None);
    }

    fn skipped_reason_lower(stats: &LowerStats, path: &str) -> &'static str {
        stats
            .skipped
            .iter()
            .find(|(p, _)| p == Path::new(path))
            .unwrap_or_else(|| panic!("{path} not skipped: {stats:?}"))
            .1
    }

    #[test]
    fn modes_are_exact_and_applied_after_the_contents() {
        let scene = Scene::new();
        let tar = Tar::new()
            .dir("ro", 0o500)
            .file("ro/inside", b"x", 0o400)
            .dir("locked", 0o000)
            .dir("locked/deeper", 0o555)
            .file("locked/deeper/f", b"y", 0o644)
            .owned(EntryType::Regular, "bin/su", b"ELF", 0o4755, (0, 0))
            .dir("tmp", 0o1777)
            .bytes();
        unpack_in(&scene, Codec::Zstd, &tar, &user_opts()).unwrap();
        assert_eq!(scene.mode("locked"), 0o000);
        // Opened up again to look inside without root.
        fs::set_permissions(
            scene.dest().join("locked"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        for (path, mode) in [
            ("ro", 0o500),
            ("ro/inside", 0o400),
            ("locked/deeper", 0o555),
            ("locked/deeper/f", 0o644),
            ("bin/su", 0o4755),
            ("bin", 0o755),
            ("tmp", 0o1777),
        ] {
            assert_eq!(scene.mode(path), mode, "{path}");
        }
        // What cleanup code must be able to do.
        fs::set_permissions(
            scene.dest().join("locked"),
            fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        crate::tree::remove_tree(&scene.dest()).unwrap();
        assert!(!scene.dest().exists());
    }

    #[test]
    fn ownership_when_root_else_counted() {
        let scene = Scene::new();
        let tar = Tar::new()
            .owned(EntryType::Directory, "home/u", b"", 0o750, (1000, 1000))
            .owned(EntryType::Regular, "home/u/f", b"x", 0o6755, (1000, 50))
            .link(EntryType::Symlink, "home/u/l", "f")
            .bytes();
        let stats = unpack_in(&scene, Codec::None, &tar, &user_opts()).unwrap();
        let owner = |rel: &str| {
            let meta = fs::symlink_metadata(scene.dest().join(rel)).unwrap();
            (meta.uid(), meta.gid())
        };
        if is_root() {
            assert_eq!(stats.ownership_skipped, 0);
            assert_eq!(owner("home/u"), (1000, 1000));
            assert_eq!(owner("home/u/f"), (1000, 50));
            assert_eq!(owner("home/u/l"), (0, 0));
            assert_eq!(scene.mode("home/u/f"), 0o6755, "chown did not eat setuid");
        } else {
            assert!(stats.ownership_skipped >= 2, "{stats:?}");
        }
    }

    #[test]
    fn hard_links_symlinks_and_mtimes() {
        let scene = Scene::new();
        let mut tar = Tar::new();
        let mut h = header(EntryType::Regular, 4, 0o755);
        h.set_mtime(1_000_000);
        tar.0.append_data(&mut h, "bin/tool", &b"tool"[..]).unwrap();
        let mut h = header(EntryType::Directory, 0, 0o755);
        h.set_mtime(2_000_000);
        tar.0.append_data(&mut h, "bin", io::empty()).unwrap();
        let mut h = header(EntryType::Symlink, 0, 0o777);
        h.set_mtime(3_000_000);
        tar.0.append_link(&mut h, "bin/sh", "/bin/tool").unwrap();
        let tar = tar
            .hardlink("bin/tool2", "bin/tool")
            .hardlink("early", "late")
            .file("late", b"late", 0o600)
            .bytes();
        let stats = unpack_in(&scene, Codec::None, &tar, &user_opts()).unwrap();
        assert!(stats.skipped.is_empty(), "{stats:?}");
        let meta = |rel: &str| fs::symlink_metadata(scene.dest().join(rel)).unwrap();
        assert_eq!(meta("bin/tool").ino(), meta("bin/tool2").ino());
        assert_eq!(meta("bin/tool").nlink(), 2);
        assert_eq!(meta("early").ino(), meta("late").ino());
        assert_eq!(
            fs::read_link(scene.dest().join("bin/sh")).unwrap(),
            Path::new("/bin/tool")
        );
        assert_eq!(meta("bin/tool").mtime(), 1_000_000);
        assert_eq!(meta("bin").mtime(), 2_000_000, "directories last");
        assert_eq!(
            meta("bin/sh").mtime(),
            3_000_000,
            "the link, not its target"
        );
    }

    #[test]
    fn never_writes_through_symlinks_or_out_of_dest() {
        let scene = Scene::new();
        let outside = scene.outside();
        let tar = Tar::new()
            .symlink("evil", outside.to_str().unwrap())
            .file("evil/pwned", b"gotcha", 0o644)
            .file("evil/.wh.x", b"", 0o644)
            .file("evil/.wh..wh..opq", b"", 0o644)
            .hardlink("hard", "../outside/secret")
            .bytes();
        let stats = unpack_in(&scene, Codec::None, &tar, &user_opts()).unwrap();
        for path in ["evil/pwned", "evil/x"] {
            assert_eq!(
                skipped_reason_lower(&stats, path),
                "a parent directory is a symlink",
                "{stats:?}"
            );
        }
        assert_eq!(
            skipped_reason_lower(&stats, "evil"),
            "opaque marker in something that is not a directory"
        );
        assert_eq!(
            skipped_reason_lower(&stats, "hard"),
            "hard link target leads out of the destination"
        );
        assert_eq!(fs::read_link(scene.dest().join("evil")).unwrap(), outside);
        scene.assert_outside_untouched();

        // `..` out of the root refuses the layer, and leaves `dest` empty.
        let scene = Scene::new();
        let tar = hostile(&[
            raw_entry(b"ok", EntryType::Regular, b"", b"ok"),
            raw_entry(b"../evil", EntryType::Regular, b"", b"x"),
        ]);
        let err = unpack_in(&scene, Codec::None, &tar, &user_opts()).unwrap_err();
        assert!(
            matches!(err, LowerError::Extract(ExtractError::UnsafePath { .. })),
            "{err}"
        );
        assert_eq!(fs::read_dir(scene.dest()).unwrap().count(), 0);
        scene.assert_outside_untouched();
    }

    #[test]
    fn overlay_xattrs_from_the_archive_are_refused() {
        let scene = Scene::new();
        let tar = hostile(&[
            raw_entry(
                b"PaxHeaders/d",
                EntryType::XHeader,
                b"",
                &[
                    pax_kv("SCHILY.xattr.user.overlay.redirect", b"/etc"),
                    pax_kv("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                    pax_kv("SCHILY.xattr.user.note", b"kept"),
                ]
                .concat(),
            ),
            raw_entry(b"d/", EntryType::Directory, b"", b""),
        ]);
        let stats = unpack_in(&scene, Codec::None, &tar, &user_opts()).unwrap();
        assert_eq!(xattr(&scene, "d", "user.overlay.redirect"), None);
        assert_eq!(xattr(&scene, "d", "trusted.overlay.opaque"), None);
        assert_eq!(xattr(&scene, "d", "user.note"), Some(b"kept".to_vec()));
        assert_eq!(
            skipped_reason_lower(&stats, "d"),
            "overlay xattr in the archive: not applied"
        );
    }

    #[test]
    fn devices_and_fifos_made_when_permitted() {
        let scene = Scene::new();
        let tar = hostile(&[
            device_entry(b"dev/null", EntryType::Char, 1, 3, 0o666),
            raw_entry(b"run/fifo", EntryType::Fifo, b"", b""),
            raw_entry(b"dev/also-null", EntryType::Link, b"dev/null", b""),
        ]);
        let stats = unpack_in(&scene, Codec::None, &tar, &user_opts()).unwrap();
        let fifo = fs::symlink_metadata(scene.dest().join("run/fifo")).unwrap();
        assert!(fifo.file_type().is_fifo(), "anyone may make a FIFO");
        assert_eq!(scene.mode("run/fifo"), 0o644);
        if is_root() {
            let null = fs::symlink_metadata(scene.dest().join("dev/null")).unwrap();
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
            assert_eq!(scene.mode("dev/null"), 0o666);
            assert_eq!(null.nlink(), 2, "the hard link shares the node");
        } else {
            assert_eq!(
                skipped_reason_lower(&stats, "dev/null"),
                "character device: needs privileges"
            );
        }
    }

    #[test]
    fn diff_id_is_the_sha256_of_the_uncompressed_stream() {
        let tar = sample_tar();
        for codec in [Codec::None, Codec::Gzip, Codec::Zstd] {
            let scene = Scene::new();
            let stats = unpack_in(&scene, codec, &tar, &user_opts()).unwrap();
            assert_eq!(stats.diff_id, Digest::of(&tar), "{codec:?}");
        }
        // Trailing bytes after the end marker are part of the blob's diff_id too.
        let mut padded = tar.clone();
        padded.extend_from_slice(&[0u8; 4096]);
        let scene = Scene::new();
        let stats = unpack_in(&scene, Codec::Gzip, &padded, &user_opts()).unwrap();
        assert_eq!(stats.diff_id, Digest::of(&padded));
    }

    #[test]
    fn a_diff_id_mismatch_leaves_nothing_behind() {
        let scene = Scene::new();
        let tar = Tar::new()
            .dir("locked", 0o000)
            .file("locked/f", b"x", 0o000)
            .bytes();
        let opts = LowerOptions {
            expected_diff_id: Some(Digest::of(b"another layer")),
            ..user_opts()
        };
        let err = unpack_in(&scene, Codec::Gzip, &tar, &opts).unwrap_err();
        let LowerError::DiffIdMismatch { actual, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(*actual, Digest::of(&tar));
        assert_eq!(fs::read_dir(scene.dest()).unwrap().count(), 0);

        // The right one passes.
        let opts = LowerOptions {
            expected_diff_id: Some(Digest::of(&tar)),
            ..user_opts()
        };
        unpack_in(&scene, Codec::Gzip, &tar, &opts).unwrap();
        assert_eq!(scene.mode("locked"), 0o000);
        crate::tree::remove_tree(&scene.dest()).unwrap();
    }

    #[test]
    fn refuses_a_dest_that_is_not_empty() {
        let scene = Scene::new();
        fs::write(scene.dest().join("mine"), "mine").unwrap();
        let err = unpack_in(&scene, Codec::None, &sample_tar(), &user_opts()).unwrap_err();
        assert!(matches!(err, LowerError::DestNotEmpty { .. }), "{err}");
        assert_eq!(scene.read("mine"), "mine", "left alone");
    }

    #[test]
    fn truncated_layers_leave_nothing_behind() {
        let scene = Scene::new();
        let tar = Tar::new().file("big", &[7u8; 5000], 0o644).bytes();
        let cut = &tar[..2048];
        let err = unpack_in(&scene, Codec::None, cut, &user_opts()).unwrap_err();
        assert!(
            matches!(err, LowerError::Extract(ExtractError::Truncated { .. })),
            "{err}"
        );
        assert_eq!(fs::read_dir(scene.dest()).unwrap().count(), 0);
    }

    /// A piece of a file's content.
    enum Part<'a> {
        Zeros(u64),
        Data(&'a [u8]),
    }
    use Part::{Data, Zeros};

    /// A gzip layer streamed to a file (never whole in memory) with these files.
    fn zeros_layer(scene: &Scene, entries: &[(&str, Vec<Part>)]) -> PathBuf {
        let blob = scene.root.path().join("zeros.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            fs::File::create(&blob).unwrap(),
            flate2::Compression::best(),
        );
        let mut tar = tar::Builder::new(gz);
        for (path, parts) in entries {
            let mut reader: Box<dyn Read> = Box::new(io::empty());
            let mut size = 0;
            for part in parts {
                reader = match *part {
                    Zeros(n) => {
                        size += n;
                        Box::new(reader.chain(io::repeat(0).take(n)))
                    }
                    Data(bytes) => {
                        size += bytes.len() as u64;
                        Box::new(reader.chain(bytes))
                    }
                };
            }
            let mut h = header(EntryType::Regular, size, 0o644);
            tar.append_data(&mut h, path, reader).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        blob
    }

    /// Blocks of 512 bytes `rel` takes on disk.
    fn blocks(scene: &Scene, rel: &str) -> u64 {
        fs::symlink_metadata(scene.dest().join(rel))
            .unwrap()
            .blocks()
    }

    #[test]
    fn a_gzip_bomb_of_zeros_unpacks_as_holes_with_its_content_unchanged() {
        const MIB: u64 = 1 << 20;
        let scene = Scene::new();
        let blob = zeros_layer(
            &scene,
            &[
                ("bomb", vec![Zeros(64 * MIB)]),
                (
                    "mixed",
                    vec![Zeros(MIB + 3), Data(b"data"), Zeros(2 * MIB), Data(b"end")],
                ),
                ("tail", vec![Data(b"head"), Zeros(2 * MIB)]),
            ],
        );
        let compressed = fs::metadata(&blob).unwrap().len();
        assert!(compressed < MIB, "a bomb: {compressed} bytes for 68 MiB");
        let stats = unpack_lower(&blob, &scene.dest(), &user_opts()).unwrap();
        assert_eq!(stats.bytes, 64 * MIB + (3 * MIB + 10) + (2 * MIB + 4));

        assert_eq!(
            fs::metadata(scene.dest().join("bomb")).unwrap().len(),
            64 * MIB
        );
        assert_eq!(blocks(&scene, "bomb"), 0, "64 MiB of zeros take no block");
        // Data takes the blocks it is in, and only those (ext4 allocates 4 KiB: 8 × 512).
        assert!(
            blocks(&scene, "mixed") <= 3 * 8,
            "{}",
            blocks(&scene, "mixed")
        );
        assert!(blocks(&scene, "tail") <= 8, "{}", blocks(&scene, "tail"));

        let mut mixed = vec![0u8; (MIB + 3) as usize];
        mixed.extend_from_slice(b"data");
        mixed.resize(mixed.len() + (2 * MIB) as usize, 0);
        mixed.extend_from_slice(b"end");
        assert!(fs::read(scene.dest().join("mixed")).unwrap() == mixed);
        let mut tail = b"head".to_vec();
        tail.resize(4 + (2 * MIB) as usize, 0);
        assert!(fs::read(scene.dest().join("tail")).unwrap() == tail);
        let mut bomb = fs::File::open(scene.dest().join("bomb")).unwrap();
        let mut buf = vec![0u8; MIB as usize];
        let mut read = 0;
        loop {
            let n = bomb.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|b| *b == 0));
            read += n as u64;
        }
        assert_eq!(read, 64 * MIB);
    }

    #[test]
    fn small_files_are_charged_the_blocks_they_take() {
        let scene = Scene::new();
        // 3,000 bytes of data in 300 files: 300 blocks of 4 KiB on disk.
        let mut tar = Tar::new();
        for i in 0..300 {
            tar = tar.file(&format!("f{i:03}"), b"0123456789", 0o644);
        }
        let tar = tar.bytes();
        let budget = |bytes| LowerOptions {
            disk: DiskLimit::Bytes(bytes),
            ..user_opts()
        };
        let err = unpack_in(&scene, Codec::None, &tar, &budget(299 * 4096)).unwrap_err();
        let LowerError::Extract(ExtractError::DiskFull { entry, full, .. }) = &err else {
            panic!("{err}");
        };
        assert_eq!(
            (entry.as_path(), full.written),
            (Path::new("f299"), 299 * 4096)
        );
        let stats = unpack_in(&scene, Codec::None, &tar, &budget(300 * 4096)).unwrap();
        assert_eq!(stats.bytes, 3_000);
    }

    #[test]
    fn an_unpack_stops_at_its_disk_budget_and_leaves_nothing() {
        const MIB: u64 = 1 << 20;
        let scene = Scene::new();
        let data: Vec<u8> = (0..2 * MIB).map(|i| (i * 7 % 251) as u8 + 1).collect();
        let blob = zeros_layer(
            &scene,
            &[
                ("small", vec![Data(b"fits")]),
                ("zeros", vec![Zeros(32 * MIB)]),
                ("dir/big", vec![Data(&data)]),
            ],
        );
        let budget = LowerOptions {
            disk: DiskLimit::Bytes(MIB),
            ..user_opts()
        };
        let err = unpack_lower(&blob, &scene.dest(), &budget).unwrap_err();
        let LowerError::Extract(ExtractError::DiskFull { entry, full, .. }) = &err else {
            panic!("{err}");
        };
        assert_eq!(entry, Path::new("dir/big"), "32 MiB of zeros cost nothing");
        assert_eq!(full.allowed, MIB);
        assert!(
            full.written <= MIB && full.written + full.wanted > MIB,
            "{full:?}"
        );
        let text = err.to_string();
        for needle in [
            blob.display().to_string().as_str(),
            "\"dir/big\"",
            "more than 1048576 bytes (1.0 MiB)",
            scene.dest().display().to_string().as_str(),
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert_eq!(fs::read_dir(scene.dest()).unwrap().count(), 0, "emptied");

        // Through the store: the unpack directory goes, nothing is published.
        let store =
            crate::lower::LowerStore::open(&scene.root.path().join("lowers"), OverlayXattrs::User)
                .unwrap();
        let diff_id = Digest::of(b"not checked: the unpack fails first");
        let err = store
            .ensure_with(&diff_id, |dest, opts| {
                let opts = LowerOptions {
                    disk: DiskLimit::Bytes(MIB),
                    ..opts.clone()
                };
                unpack_lower(&blob, dest, &opts)
            })
            .unwrap_err();
        assert!(
            matches!(err, LowerError::Extract(ExtractError::DiskFull { .. })),
            "{err}"
        );
        assert_eq!(store.get(&diff_id), None);
        let tmp = scene.root.path().join("lowers/user/tmp");
        assert_eq!(
            fs::read_dir(tmp).unwrap().count(),
            0,
            "no partial unpack left"
        );
    }
}
