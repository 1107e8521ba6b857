//! Safe extraction of tar archives and image layers into a directory.
//!
//! This module is for two jobs: unpacking an archive named by `ADD`
//! ([`extract_archive`], plain tar semantics) and materialising all or part of
//! a base image's filesystem from its layers ([`Overlay`], OCI whiteout
//! semantics). It never executes anything and needs no privileges. Every
//! archive is treated as hostile. It is not for building layers (see
//! `crate::layer`). It does not give a faithful copy of a filesystem either:
//! ownership, timestamps and extended attributes are not applied, because
//! the extracted tree only feeds a build. Instead both record each written
//! path's owner, permission bits and extended attributes as its archive
//! header gave them ([`Extracted`], [`Overlay::metadata`]), and an
//! [`Overlay`] which paths are hard links ([`Overlay::hard_links`]), so a
//! layer can be rebuilt from the tree.
//!
//! A third job shares the engine: unpacking one layer as an overlayfs lower
//! directory for `RUN`, in `regbuild-rootfs` (`lower`), through [`engine`]. That
//! one is faithful: overlay-format whiteouts, exact modes, ownership, xattrs,
//! mtimes and device nodes when the process may. The safety rules below hold
//! for it too, except where it says otherwise (devices, directory modes).
//!
//! # Safety rules
//!
//! - Names: a leading `/` is stripped, as tar does (`/etc/x` is written to
//!   `dest/etc/x`). Empty and `.` components are dropped and `..` is resolved
//!   lexically (`a/../b` is `b`). A name that would leave the root, is empty
//!   or contains a NUL byte makes the whole extraction fail.
//! - Nothing is written through a symlink. Before each write, every parent
//!   component under `dest` is checked with `symlink_metadata`. If one is a
//!   symlink or not a directory, the entry is skipped with a note. This stops
//!   the classic "symlink `x -> /etc`, then file `x/passwd`" escape.
//! - Symlinks are written with their target verbatim: targets are resolved
//!   inside the container, never here.
//! - Hard-link targets are archive names, cleaned like entry names (so `/a`
//!   means `dest/a`). The target must already be a file or symlink in `dest`,
//!   reached without going through a symlink. A target that is not there yet
//!   is retried once at the end. Otherwise the link is skipped with a note.
//! - Device files and FIFOs are never created here (that needs privileges;
//!   only a lower directory makes them, when permitted).
//!   [`extract_archive`] records them ([`Extracted::specials`]) and leaves an
//!   empty placeholder file (mode 0600) at their path, so that later entries
//!   meet what tar would have made there (a non-directory); a hard link to
//!   one becomes another such record. An [`Overlay`] skips them with a note.
//!   Tar cannot hold sockets. GNU sparse files and unknown entry types are
//!   skipped with a note.
//! - Modes: files get the archive's permission bits, setuid/setgid/sticky
//!   included. The kernel may drop setgid for a group we are not in. Explicit
//!   directories get the archive bits plus `0o700`, so they stay owner-writable
//!   and extraction can continue. Implicit parent directories get `0o755`.
//! - [`Limits`] bound each entry's declared size, the total declared size and
//!   the number of headers. Entry data is streamed through a fixed buffer.
//!   Tar extension records (GNU long names, PAX) are capped at
//!   [`MAX_EXTENSION_LEN`]. The stream is read by [`crate::tar_read`], which
//!   walks the 512-byte blocks itself (the `tar` crate's `Archive` reads
//!   those records whole with no cap).
//! - Disk: regular files are written sparse (every 4 KiB-aligned block of
//!   zeros is a hole; the content reads back the same), so a layer of zeros
//!   (a gzip bomb, a sparse file its layer holds written out) costs almost no
//!   space. What is really written is bounded by the free space of `dest`'s
//!   filesystem when the first byte is written, less a reserve
//!   ([`crate::disk`]); going past it is [`ExtractError::DiskFull`]. [`Limits`]
//!   bound what is read, this what is written: with holes they differ.
//! - Format: reading stops at the first all-zero block (the end-of-archive
//!   marker) and trailing data is not read. A stream ending mid-header or
//!   mid-data is an error. A stream ending cleanly at a header boundary is
//!   accepted as the end, as GNU tar and Go's `archive/tar` do. A compressed
//!   stream cut short is caught by its decompressor.
//!
//! `dest` must exist, and nothing else may modify it during extraction. The
//! symlink checks and the writes that follow them are not atomic.
//!
//! # Parts
//!
//! This file holds the public API, turns what [`crate::tar_read`] reads into
//! members (names cleaned, entry types sorted out) and maps its errors;
//! `overlay` holds the whiteout and opaque-directory model of image layers;
//! `sink` writes members into `dest` under the rules above; `ahead` decodes an
//! archive on a thread of its own. [`engine`] makes members, the sink and the
//! decoding thread public for `regbuild-rootfs`, and `testing` (feature
//! `testing`) the archives and scenes the tests of both crates are written with.
//! Compression is detected and decoded by [`crate::compress`].

mod ahead;
mod overlay;
mod sink;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// The engine's parts, for a writer of members outside this crate: `regbuild-rootfs`
/// unpacks a layer as an overlayfs lower directory with them, deciding itself what
/// whiteouts and metadata become.
///
/// - [`for_each_member`] reads a tar stream with [`crate::tar_read`] under [`Limits`] and
///   gives each [`Member`] (name cleaned, entry type sorted out) with a reader of its data;
///   [`read_error`] names a read error as extraction does;
/// - a [`Sink`] writes members into a directory under the [safety rules](super), devices and
///   FIFOs as its [`Specials`] says, and tells what became of each
///   ([`Outcome`](engine::Outcome)); what it
///   wrote and recorded (owners, modes, xattrs, hard links) is in its public fields;
/// - [`ReadAhead`](engine::ReadAhead) decodes an archive (file or stream) on a thread of its own;
/// - [`OPAQUE_MARKER`](engine::OPAQUE_MARKER), [`WHITEOUT_META_PREFIX`](engine::WHITEOUT_META_PREFIX)
///   and [`WHITEOUT_PREFIX`](engine::WHITEOUT_PREFIX) are the OCI whiteout names.
///
/// Not for: extracting an archive or a merged image (the functions and [`Overlay`] above
/// do that, and keep their own semantics); anything here may change with its one caller.
pub mod engine {
    pub use super::ahead::ReadAhead;
    pub use super::overlay::{OPAQUE_MARKER, WHITEOUT_META_PREFIX, WHITEOUT_PREFIX};
    pub use super::sink::{Outcome, Sink, Specials};
    pub use super::{for_each_member, read_error, Member};
}

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::compress::{Codec, DecompressError};
use crate::layer::Xattrs;
use crate::tar_read::{fill, Budget, Item, Rules, TarError, TarErrorKind, TarReader, BLOCK};
use sink::{Sink, Specials};

pub use crate::compress::{decompress, detect_compression};
pub use crate::tar_read::{Limits, MAX_EXTENSION_LEN};
pub use overlay::Overlay;

/// Buffer for file data and for reading archives from disk.
const COPY_BUF_LEN: usize = 64 << 10;
/// Mode of parent directories the archive does not list.
const IMPLICIT_DIR_MODE: u32 = 0o755;
/// Where a POSIX or GNU header keeps its `ustar` magic.
const USTAR_MAGIC_AT: usize = 257;

/// What an extraction wrote and what it refused to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Entries written to `dest` (files, directories, symlinks, hard links).
    pub entries: u64,
    /// Regular-file bytes written (their runs of zeros as holes, which take no space).
    pub bytes: u64,
    /// Entries left out for safety or lack of privileges, each with the
    /// reason. Entries hidden by an upper layer or outside the wanted paths
    /// are not listed: leaving those out is the normal outcome.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("opening archive {path:?}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error("archive {archive} is truncated (near entry {entry:?})")]
    Truncated { archive: String, entry: PathBuf },
    #[error("reading archive {archive} near entry {entry:?}: {source}")]
    Read {
        archive: String,
        entry: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("archive {archive} is malformed near entry {entry:?}: {reason}")]
    Malformed {
        archive: String,
        entry: PathBuf,
        reason: String,
    },
    #[error("archive {archive}: entry {entry:?} has an unsafe name: {reason}")]
    UnsafePath {
        archive: String,
        entry: PathBuf,
        reason: &'static str,
    },
    #[error("archive {archive}: entry {entry:?} declares {size} bytes, over the limit of {limit} per entry")]
    EntryTooLarge {
        archive: String,
        entry: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("archive {archive}: entry {entry:?} takes the data over the limit of {limit} bytes in total")]
    TotalTooLarge {
        archive: String,
        entry: PathBuf,
        limit: u64,
    },
    #[error("archive {archive}: entry {entry:?} goes over the limit of {limit} entries")]
    TooManyEntries {
        archive: String,
        entry: PathBuf,
        limit: u64,
    },
    #[error("archive {archive}: unpacking entry {entry:?}: {full}")]
    DiskFull {
        archive: String,
        entry: PathBuf,
        full: Box<crate::disk::DiskFull>,
    },
    #[error("archive {archive}: writing entry {entry:?} to {disk:?}: {source}")]
    Write {
        archive: String,
        entry: PathBuf,
        disk: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What [`extract_archive`] wrote into `dest`, with what the archive said about each path.
#[derive(Debug, Default)]
pub struct Extracted {
    pub stats: ExtractStats,
    /// Header metadata of every path written, by path relative to `dest` (as
    /// [`Overlay::metadata`]): the last entry at a path wins, implicit parents are
    /// [`EntryMeta::IMPLICIT_DIR`], `dest` itself is not listed.
    pub meta: HashMap<PathBuf, EntryMeta>,
    /// The device nodes and FIFOs of the archive, by path: an empty placeholder file stands
    /// at each of these paths in `dest`.
    pub specials: HashMap<PathBuf, Special>,
    /// The PAX `SCHILY.xattr.*` records of the paths that had any.
    pub xattrs: HashMap<PathBuf, Xattrs>,
}

/// A device node or FIFO, which extraction records instead of creating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
    Fifo,
}

/// Ownership and permission bits of an entry, as its tar header gave them.
///
/// `uid` and `gid` come from the PAX `uid`/`gid` records when the entry has
/// them and they are decimal numbers, else from the header fields (octal or
/// GNU base-256). An empty or unreadable header field reads as 0. Names
/// (`uname`/`gname`) are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    pub uid: u64,
    pub gid: u64,
    /// `mode & 0o7777` from the header: the bits the archive asked for, not
    /// the ones on disk (directories are made owner-writable there).
    pub mode: u32,
}

impl EntryMeta {
    /// What a parent directory that no entry lists is recorded as:
    /// `root:root`, mode `0o755`.
    pub const IMPLICIT_DIR: EntryMeta = EntryMeta {
        uid: 0,
        gid: 0,
        mode: IMPLICIT_DIR_MODE,
    };
}

/// Opens the file at `path`, sniffs its compression and returns its
/// decompressed content.
pub fn open_archive(path: &Path) -> Result<(Codec, Box<dyn Read>), ExtractError> {
    let open_error = |source| ExtractError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    open_stream(file).map_err(|e| match e {
        ExtractError::Open { source, .. } => open_error(source),
        other => other,
    })
}

/// [`open_archive`] for a stream (a download): sniffs its compression from the first bytes
/// and returns its decompressed content. Read errors are `Open` errors with an empty path.
pub fn open_stream<'a>(
    stream: impl Read + 'a,
) -> Result<(Codec, Box<dyn Read + 'a>), ExtractError> {
    let mut reader = BufReader::with_capacity(COPY_BUF_LEN, stream);
    // Peek without consuming, so the decoder sees the magic too.
    let compression =
        detect_compression(reader.fill_buf().map_err(|source| ExtractError::Open {
            path: PathBuf::new(),
            source,
        })?);
    Ok((compression, decompress(reader, compression)?))
}

/// `ADD`'s rule for what to unpack. A regular file is an archive when its
/// content, after gzip, zstd or xz decompression if its magic says so, starts
/// with a tar header that has the `ustar` magic. Everything else (a
/// compressed non-tar, pre-POSIX tars, unreadable files) is copied as a file.
pub fn is_archive(path: &Path) -> bool {
    // Checked first so a FIFO in the context cannot block us.
    if !fs::metadata(path).is_ok_and(|meta| meta.is_file()) {
        return false;
    }
    let Ok((_, mut reader)) = open_archive(path) else {
        return false;
    };
    let mut block = [0u8; BLOCK];
    matches!(fill(&mut reader, &mut block), Ok(BLOCK))
        && block.get(USTAR_MAGIC_AT..USTAR_MAGIC_AT + 5) == Some(b"ustar".as_slice())
}

/// Extracts the tar stream `tar` into the existing directory `dest`. This is
/// for `ADD`: plain tar semantics, so a later entry replaces an earlier one at
/// the same path and `.wh.` names are ordinary files. `name` is used in
/// errors.
pub fn extract_archive(
    name: &str,
    tar: impl Read,
    dest: &Path,
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    let mut sink = Sink::new(dest, Specials::Placeholder, crate::disk::DiskLimit::Free);
    let mut budget = Budget::default();
    for_each_member(name, tar, limits, &mut budget, |member, data| {
        sink.write(name, member, data).map(drop)
    })?;
    sink.resolve_pending(true)?;
    Ok(Extracted {
        stats: sink.stats,
        meta: sink.meta,
        specials: sink.specials,
        xattrs: sink.xattrs,
    })
}

// ---------------------------------------------------------------------------
// Members: what the tar reader found, as extraction sees it

/// One archive member, after extension headers were applied.
pub struct Member {
    /// The name as stored, for messages.
    pub name: PathBuf,
    /// The cleaned path relative to `dest`. Empty for the root itself.
    pub path: PathBuf,
    pub(super) kind: Kind,
    /// Symlinks: the target, verbatim. Hard links: the target's archive name.
    pub(super) link: Vec<u8>,
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    /// Seconds since the epoch, from the header field (PAX `mtime` records are not read).
    pub mtime: u64,
    pub(super) xattrs: Xattrs,
}

impl Member {
    /// A regular file (its data follows).
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// A symlink's target, verbatim.
    pub fn symlink_target(&self) -> Option<&[u8]> {
        (self.kind == Kind::Symlink).then_some(self.link.as_slice())
    }

    /// Permission bits, setuid/setgid/sticky included, as the header gave them.
    pub fn mode(&self) -> u32 {
        self.mode & 0o7777
    }

    /// (uid, gid) as the header (or its PAX records) gave them.
    pub fn owner(&self) -> (u64, u64) {
        (self.uid, self.gid)
    }

    pub(super) fn meta(&self) -> EntryMeta {
        EntryMeta {
            uid: self.uid,
            gid: self.gid,
            mode: self.mode & 0o7777,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    /// A device node or FIFO: recorded by [`extract_archive`], skipped by an [`Overlay`].
    Special(Special),
    /// Never written. The reason is noted.
    Unsupported(&'static str),
}

impl Special {
    /// Why an [`Overlay`] leaves it out.
    pub(super) fn skip_reason(self) -> &'static str {
        match self {
            Special::Char { .. } => "character device: needs privileges",
            Special::Block { .. } => "block device: needs privileges",
            Special::Fifo => "FIFO: not extracted",
        }
    }
}

/// `device` is read only for device entries: `(major, minor)`.
fn kind_of(entry_type: EntryType, raw_name: &[u8], device: impl FnOnce() -> (u32, u32)) -> Kind {
    match entry_type {
        // Pre-POSIX archives mark directories only by a trailing slash.
        EntryType::Regular | EntryType::Continuous if raw_name.ends_with(b"/") => Kind::Dir,
        EntryType::Regular | EntryType::Continuous => Kind::File,
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Symlink,
        EntryType::Link => Kind::HardLink,
        EntryType::Char => {
            let (major, minor) = device();
            Kind::Special(Special::Char { major, minor })
        }
        EntryType::Block => {
            let (major, minor) = device();
            Kind::Special(Special::Block { major, minor })
        }
        EntryType::Fifo => Kind::Special(Special::Fifo),
        EntryType::GNUSparse => Kind::Unsupported("GNU sparse file: not supported"),
        _ => Kind::Unsupported("unsupported tar entry type"),
    }
}

/// How extraction reads a stream: the archive's own sizes for every entry's data, the
/// later of a PAX record and a GNU long name wins, a dangling extension header is an
/// error, and `limits` bound everything (sparse chains included).
fn rules(limits: &Limits) -> Rules {
    Rules {
        limits: *limits,
        header_only_types_have_no_data: false,
        pax_names_win: false,
        refuse_dangling_extensions: true,
        max_sparse_blocks: None,
    }
}

/// Calls `visit` with each member of the tar stream and a reader of its
/// data. `visit` need not read the data: what it leaves is skipped.
/// `budget` carries the limits' counts from stream to stream.
pub fn for_each_member(
    archive: &str,
    input: impl Read,
    limits: &Limits,
    budget: &mut Budget,
    mut visit: impl FnMut(&Member, &mut dyn Read) -> Result<(), ExtractError>,
) -> Result<(), ExtractError> {
    let mut reader = TarReader::with_budget(input, rules(limits), *budget);
    let mut walk = || {
        while let Some(item) = reader.next_item().map_err(|e| tar_error(archive, e))? {
            let Item::Entry(entry) = item else {
                continue;
            };
            let member = member(archive, &entry)?;
            let mut data = entry.data().map_err(|e| tar_error(archive, e))?;
            visit(&member, &mut data)?;
        }
        Ok(())
    };
    let walked = walk();
    *budget = reader.budget();
    walked
}

/// The member an entry is, or why it cannot be extracted.
fn member<R: Read>(
    archive: &str,
    entry: &crate::tar_read::Entry<'_, R>,
) -> Result<Member, ExtractError> {
    let raw_name = entry.path_bytes();
    let name = os_path(raw_name);
    let path = clean(raw_name, false).map_err(|problem| ExtractError::UnsafePath {
        archive: archive.to_string(),
        entry: name.clone(),
        reason: problem.for_name(),
    })?;
    let header = entry.header();
    let mode = header.mode().map_err(|e| ExtractError::Malformed {
        archive: archive.to_string(),
        entry: name.clone(),
        reason: format!("bad mode field: {e}"),
    })?;
    // Unlike the mode, ownership never affected extraction: a bad field
    // reads as 0 rather than failing archives that used to extract.
    let uid = entry.pax_uid().unwrap_or_else(|| header.uid().unwrap_or(0));
    let gid = entry.pax_gid().unwrap_or_else(|| header.gid().unwrap_or(0));
    // As for ownership: an empty or unreadable device field reads as 0.
    let device = || {
        let number = |n: io::Result<Option<u32>>| n.ok().flatten().unwrap_or(0);
        (number(header.device_major()), number(header.device_minor()))
    };
    let kind = kind_of(header.entry_type(), raw_name, device);
    Ok(Member {
        name,
        path,
        kind,
        link: entry.link_bytes().to_vec(),
        mode,
        uid,
        gid,
        mtime: header.mtime().unwrap_or(0),
        xattrs: entry.xattrs().clone(),
    })
}

/// What a tar reading error is for extraction: the archive and the entry it was near.
fn tar_error(archive: &str, error: TarError) -> ExtractError {
    let TarError { kind, near, .. } = error;
    let archive = archive.to_string();
    match kind {
        TarErrorKind::Read(source) => read_error(&archive, &near, source),
        TarErrorKind::Truncated => ExtractError::Truncated {
            archive,
            entry: near,
        },
        TarErrorKind::TooManyEntries { limit } => ExtractError::TooManyEntries {
            archive,
            entry: near,
            limit,
        },
        TarErrorKind::EntryTooLarge { size, limit } => ExtractError::EntryTooLarge {
            archive,
            entry: near,
            size,
            limit,
        },
        TarErrorKind::TotalTooLarge { limit } => ExtractError::TotalTooLarge {
            archive,
            entry: near,
            limit,
        },
        malformed => ExtractError::Malformed {
            archive,
            entry: near,
            reason: malformed.to_string(),
        },
    }
}

/// A read error near `entry` of `archive`: [`ExtractError::Truncated`] when the stream
/// ended early, [`ExtractError::Read`] otherwise.
pub fn read_error(archive: &str, entry: &Path, source: io::Error) -> ExtractError {
    if source.kind() == io::ErrorKind::UnexpectedEof {
        ExtractError::Truncated {
            archive: archive.to_string(),
            entry: entry.to_path_buf(),
        }
    } else {
        ExtractError::Read {
            archive: archive.to_string(),
            entry: entry.to_path_buf(),
            source,
        }
    }
}

fn os_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameProblem {
    Empty,
    Nul,
    Escapes,
}

impl NameProblem {
    pub(super) fn for_name(self) -> &'static str {
        match self {
            NameProblem::Empty => "the name is empty",
            NameProblem::Nul => "the name contains a NUL byte",
            NameProblem::Escapes => "`..` leads out of the destination",
        }
    }

    pub(super) fn for_link(self) -> &'static str {
        match self {
            NameProblem::Empty => "hard link with an empty target",
            NameProblem::Nul => "hard link target contains a NUL byte",
            NameProblem::Escapes => "hard link target leads out of the destination",
        }
    }
}

/// Cleans an archive name into a relative path. `/` is the root, and empty
/// and `.` components are dropped. `..` goes up lexically, and going above
/// the root is an error unless `clamp` (then it stays at the root, as path
/// resolution does).
pub(super) fn clean(raw: &[u8], clamp: bool) -> Result<PathBuf, NameProblem> {
    if raw.is_empty() {
        return Err(NameProblem::Empty);
    }
    if raw.contains(&0) {
        return Err(NameProblem::Nul);
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() && !clamp {
                    return Err(NameProblem::Escapes);
                }
            }
            _ => parts.push(part),
        }
    }
    Ok(parts.iter().map(|part| OsStr::from_bytes(part)).collect())
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use tar::EntryType;

    #[test]
    fn round_trips_gzip_zstd_xz() {
        let tar = sample_tar();
        for kind in [Codec::None, Codec::Gzip, Codec::Zstd, Codec::Xz] {
            let blob = compressed(kind, &tar);
            assert_eq!(detect_compression(&blob), kind);
            let mut out = Vec::new();
            decompress(blob.as_slice(), kind)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, tar, "{kind:?}");

            let scene = Scene::new();
            let file = scene.root.path().join("blob");
            fs::write(&file, &blob).unwrap();
            let (found, reader) = open_archive(&file).unwrap();
            assert_eq!(found, kind);
            extract_archive("blob", reader, &scene.dest(), &Limits::default()).unwrap();
            assert_eq!(scene.read("d/f"), "hello");
        }
    }

    #[test]
    fn is_archive_tells_tars_from_other_files() {
        let scene = Scene::new();
        let dir = scene.root.path();
        let write = |name: &str, data: &[u8]| {
            fs::write(dir.join(name), data).unwrap();
            dir.join(name)
        };
        assert!(!is_archive(&write("notes.txt", b"just some text\n")));
        assert!(is_archive(&write(
            "a.tar.gz",
            &compressed(Codec::Gzip, &sample_tar())
        )));
        assert!(is_archive(&write("a.tar", &sample_tar())));
        assert!(is_archive(&write(
            "a.tar.zst",
            &compressed(Codec::Zstd, &sample_tar())
        )));
        assert!(is_archive(&write(
            "a.tar.xz",
            &compressed(Codec::Xz, &sample_tar())
        )));
        // Compressed, but not a tar: copied as is.
        assert!(!is_archive(&write(
            "notes.gz",
            &compressed(Codec::Gzip, &[b'x'; 2000])
        )));
        assert!(!is_archive(&write("empty", b"")));
        assert!(!is_archive(dir));
        assert!(!is_archive(&dir.join("missing")));
    }

    #[test]
    fn refuses_names_that_leave_the_root() {
        for name in [&b"../evil"[..], b"a/../../evil", b"..", b"/../evil"] {
            let scene = Scene::new();
            let archive = hostile(&[raw_entry(name, EntryType::Regular, b"", b"x")]);
            let err = scene.extract(&archive).unwrap_err();
            assert!(
                matches!(err, ExtractError::UnsafePath { .. }),
                "{name:?}: {err}"
            );
            let message = err.to_string();
            assert!(message.contains("test.tar"), "{message}");
            assert!(
                message.contains(&String::from_utf8_lossy(name).to_string()),
                "{message}"
            );
            scene.assert_outside_untouched();
        }
    }

    #[test]
    fn cleans_harmless_dots_and_absolute_names() {
        let scene = Scene::new();
        let archive = hostile(&[
            raw_entry(b"a/../b", EntryType::Regular, b"", b"b"),
            raw_entry(b"/etc/x", EntryType::Regular, b"", b"x"),
            raw_entry(b".//c/./d", EntryType::Regular, b"", b"d"),
            raw_entry(b"/", EntryType::Directory, b"", b""),
        ]);
        let stats = scene.extract(&archive).unwrap();
        assert_eq!(scene.read("b"), "b");
        assert_eq!(scene.read("etc/x"), "x");
        assert_eq!(scene.read("c/d"), "d");
        assert!(stats.skipped.is_empty(), "{stats:?}");
        scene.assert_outside_untouched();
    }

    #[test]
    fn refuses_empty_names_and_names_with_nul() {
        let long_name_with_nul = raw_entry(
            b"././@LongLink",
            EntryType::GNULongName,
            b"",
            b"etc/pass\0wd\0",
        );
        let cases = [
            vec![raw_entry(b"", EntryType::Regular, b"", b"x")],
            vec![
                long_name_with_nul,
                raw_entry(b"short", EntryType::Regular, b"", b"x"),
            ],
            vec![
                raw_entry(b"pax", EntryType::XHeader, b"", &pax_kv("path", b"a\0b")),
                raw_entry(b"short", EntryType::Regular, b"", b"x"),
            ],
        ];
        for case in cases {
            let scene = Scene::new();
            let err = scene.extract(&hostile(&case)).unwrap_err();
            assert!(matches!(err, ExtractError::UnsafePath { .. }), "{err}");
            assert!(!scene.exists("short") && !scene.exists("etc"));
        }
    }
}
