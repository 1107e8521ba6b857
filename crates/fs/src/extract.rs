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
//! - Device files and FIFOs are never created (that needs privileges).
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
//!   [`MAX_EXTENSION_LEN`]. The `tar` crate's `Archive` reads those records
//!   whole with no cap. That is why this module walks the 512-byte blocks
//!   itself and only uses `tar::Header` to decode fields.
//! - Format: reading stops at the first all-zero block (the end-of-archive
//!   marker) and trailing data is not read. A stream ending mid-header or
//!   mid-data is an error. A stream ending cleanly at a header boundary is
//!   accepted as the end, as GNU tar and Go's `archive/tar` do. A compressed
//!   stream cut short is caught by its decompressor.
//!
//! `dest` must exist, and nothing else may modify it during extraction. The
//! symlink checks and the writes that follow them are not atomic.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::layer::Xattrs;

/// Size of a tar header and of the unit data is padded to.
const BLOCK: usize = 512;
/// Largest GNU long name/link or PAX record accepted. Real names are at most
/// a few KiB; this bound keeps a hostile header from claiming gigabytes.
pub const MAX_EXTENSION_LEN: u64 = 1 << 20;
/// Memory the xz decoder may use. `xz -9` needs about 65 MiB, so this only
/// refuses streams that ask for absurd dictionaries.
const XZ_MEMLIMIT: u64 = 256 << 20;
/// Buffer for file data and for reading archives from disk.
const COPY_BUF_LEN: usize = 64 << 10;
/// Mode of parent directories the archive does not list.
const IMPLICIT_DIR_MODE: u32 = 0o755;
/// In a GNU sparse header, the byte that says extension blocks follow.
const GNU_SPARSE_ISEXTENDED: usize = 482;
/// The same flag in each sparse extension block.
const GNU_SPARSE_EXT_ISEXTENDED: usize = 504;
/// Where a POSIX or GNU header keeps its `ustar` magic.
const USTAR_MAGIC_AT: usize = 257;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Names with this prefix are AUFS bookkeeping, except the opaque marker.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The PAX record key prefix of an extended attribute (Go's `archive/tar`, GNU tar, star).
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// How a stream is compressed. Detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "no",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        }
    }
}

/// Sizes and counts past which an archive is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest declared data size of a single entry.
    pub max_entry_size: u64,
    /// Largest sum of declared data sizes. An [`Overlay`] sums over all its
    /// layers. Skipped entries count too: their data is read all the same.
    pub max_total_size: u64,
    /// Most headers, extension headers included. An [`Overlay`] counts over
    /// all its layers.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_size: 64 << 30,
            max_total_size: 256 << 30,
            max_entries: 10_000_000,
        }
    }
}

/// What an extraction wrote and what it refused to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Entries written to `dest` (files, directories, symlinks, hard links).
    pub entries: u64,
    /// Regular-file bytes written.
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
    #[error("starting {format} decompression: {source}")]
    Decompress {
        format: &'static str,
        #[source]
        source: io::Error,
    },
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

/// Detects the compression from a stream's first bytes: gzip, zstd or xz by
/// magic number, and no compression (a tar) for anything else.
pub fn detect_compression(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else {
        Compression::None
    }
}

/// Wraps `reader` in a decoder for `compression`. Concatenated gzip members,
/// zstd frames and xz streams are all decoded, as other tools do. Corrupt or
/// truncated data shows up later, as a read error.
pub fn decompress<'a>(
    reader: impl Read + 'a,
    compression: Compression,
) -> Result<Box<dyn Read + 'a>, ExtractError> {
    let failed = |source| ExtractError::Decompress {
        format: compression.name(),
        source,
    };
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        // zstd's default window limit (128 MiB) already refuses frames that
        // ask for more memory than that.
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader).map_err(failed)?),
        Compression::Xz => {
            let stream =
                xz2::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, xz2::stream::CONCATENATED)
                    .map_err(|e| failed(e.into()))?;
            Box::new(xz2::read::XzDecoder::new_stream(reader, stream))
        }
    })
}

/// Opens the file at `path`, sniffs its compression and returns its
/// decompressed content.
pub fn open_archive(path: &Path) -> Result<(Compression, Box<dyn Read>), ExtractError> {
    let open_error = |source| ExtractError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    let mut reader = BufReader::with_capacity(COPY_BUF_LEN, file);
    // Peek without consuming, so the decoder sees the magic too.
    let compression = detect_compression(reader.fill_buf().map_err(open_error)?);
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
    let mut sink = Sink::new(dest, true);
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

/// Applies image layers top-down (the top layer first) into `dest`, the way
/// an overlay stack resolves them. Only entries under the wanted paths are
/// extracted.
///
/// An entry of a lower layer is skipped when an upper layer already provided
/// its path or made an ancestor something other than a directory. It is also
/// skipped when an upper whiteout (`.wh.<name>`) or opaque marker
/// (`.wh..wh..opq`) hides it. Whiteouts only affect lower layers and are never
/// written. Within one layer, a later entry replaces an earlier one, as in
/// tar.
///
/// The header of everything written is recorded: see [`Overlay::metadata`].
///
/// After an error, discard both the `Overlay` and `dest`.
pub struct Overlay {
    sink: Sink,
    limits: Limits,
    budget: Budget,
    /// Cleaned wanted paths. Empty means everything.
    wanted: Vec<PathBuf>,
    /// What the layers applied so far put at each path, as lower layers see it.
    upper: HashMap<PathBuf, Mark>,
}

impl Overlay {
    /// `wanted` holds paths relative to the image root. A leading `/` is
    /// allowed and `..` stops at the root. Empty, or containing the root,
    /// means everything.
    pub fn new(dest: &Path, wanted: Vec<PathBuf>, limits: Limits) -> Overlay {
        let wanted: Vec<PathBuf> = wanted
            .iter()
            .filter_map(|path| clean(path.as_os_str().as_bytes(), true).ok())
            .collect();
        let wanted = if wanted.iter().any(|w| w.as_os_str().is_empty()) {
            Vec::new()
        } else {
            wanted
        };
        Overlay {
            sink: Sink::new(dest, false),
            limits,
            budget: Budget::default(),
            wanted,
            upper: HashMap::new(),
        }
    }

    /// Applies one layer, given as an uncompressed tar stream, below the
    /// layers applied so far. `name` (e.g. the layer digest) is used in errors.
    pub fn apply_layer(&mut self, name: &str, tar: impl Read) -> Result<(), ExtractError> {
        let mut pass = LayerPass {
            sink: &mut self.sink,
            wanted: &mut self.wanted,
            upper: &self.upper,
            current: HashMap::new(),
        };
        for_each_member(name, tar, &self.limits, &mut self.budget, |member, data| {
            pass.visit(name, member, data)
        })?;
        let current = pass.current;
        for (path, mark) in current {
            merge_mark(&mut self.upper, path, mark);
        }
        self.sink.unavailable.clear();
        // Links waiting for a target this layer provided. Lower layers cannot
        // change the target or the link's path any more, so linking now gives
        // what `finish` would, and `metadata` is complete after the last layer.
        self.sink.resolve_pending(false)
    }

    /// Metadata of every path written into `dest`, by path relative to
    /// `dest`: what the header of the entry that won (top layer first; the
    /// last one within a layer) said. For a directory an upper layer only
    /// implied, that is the lower layer's entry, as for its mode on disk.
    ///
    /// Covers files, directories, symlinks and hard links. Parent directories
    /// no layer lists are [`EntryMeta::IMPLICIT_DIR`]. Not covered: `dest`
    /// itself (a `./` entry changes nothing), whiteouts, skipped entries and
    /// hard links still waiting for their target. Those get linked or
    /// skipped by the time a layer is applied, so after the last
    /// [`apply_layer`](Overlay::apply_layer) this is complete: [`finish`](Overlay::finish)
    /// writes nothing more.
    ///
    /// A hard link's metadata is its own header's; on disk it shares the
    /// target's inode. PAX `uid`/`gid` records are honoured (see [`EntryMeta`]).
    pub fn metadata(&self) -> &HashMap<PathBuf, EntryMeta> {
        &self.sink.meta
    }

    /// The hard links written into `dest`: link path → target path, both
    /// relative to `dest`, each with an entry in [`metadata`](Overlay::metadata).
    ///
    /// A link is left out when its target was replaced after it was made
    /// (a later entry of the same layer at the target's path): it then holds
    /// the old content on its own and is better treated as a plain file.
    /// A target may itself be a hard link (chains end at a file or symlink),
    /// and where the filesystem refused links the "link" is a copy in `dest`.
    pub fn hard_links(&self) -> &HashMap<PathBuf, PathBuf> {
        &self.sink.links
    }

    /// True when every wanted path is settled, so lower layers need not be
    /// fetched at all. A path is settled when it, or an ancestor, was found
    /// as a non-directory, deleted by a whiteout, or found as a directory
    /// marked opaque. Never true when everything is wanted.
    pub fn settled(&self) -> bool {
        !self.wanted.is_empty()
            && self.wanted.iter().all(|wanted| {
                wanted
                    .ancestors()
                    .any(|path| self.upper.get(path).is_some_and(|m| m.hides_lower()))
            })
    }

    /// Resolves hard links whose target had not been extracted when they were
    /// met, and returns what was written.
    pub fn finish(mut self) -> Result<ExtractStats, ExtractError> {
        self.sink.resolve_pending(true)?;
        Ok(self.sink.stats)
    }
}

/// What a layer put at a path, as seen from the layers below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// A directory. Lower content merges into it unless `opaque`. `explicit`
    /// when the layer had an entry for the directory itself, not only for
    /// something inside it. A lower entry for an implicit directory still
    /// sets its mode.
    Dir { opaque: bool, explicit: bool },
    /// A file, symlink, hard link or special file.
    NonDir,
    /// Deleted by a whiteout.
    Whiteout,
}

impl Mark {
    /// Whether lower layers' entries below this path are hidden.
    fn hides_lower(self) -> bool {
        !matches!(self, Mark::Dir { opaque: false, .. })
    }

    /// The mark after `later` is recorded at a path that already has `self`:
    /// later in the same layer, or from the layer below.
    fn then(self, later: Mark) -> Mark {
        match (self, later) {
            // A deleted-then-recreated directory hides what lies below it.
            (Mark::Whiteout, Mark::Dir { explicit, .. })
            | (Mark::Dir { explicit, .. }, Mark::Whiteout) => Mark::Dir {
                opaque: true,
                explicit,
            },
            (
                Mark::Dir {
                    opaque: o1,
                    explicit: e1,
                },
                Mark::Dir {
                    opaque: o2,
                    explicit: e2,
                },
            ) => Mark::Dir {
                opaque: o1 || o2,
                explicit: e1 || e2,
            },
            // An implicit parent does not turn a file back into a directory.
            (
                Mark::NonDir,
                Mark::Dir {
                    explicit: false, ..
                },
            ) => Mark::NonDir,
            (_, later) => later,
        }
    }
}

fn merge_mark(marks: &mut HashMap<PathBuf, Mark>, path: PathBuf, mark: Mark) {
    marks
        .entry(path)
        .and_modify(|old| *old = old.then(mark))
        .or_insert(mark);
}

/// State while one layer is applied.
struct LayerPass<'a> {
    sink: &'a mut Sink,
    wanted: &'a mut Vec<PathBuf>,
    upper: &'a HashMap<PathBuf, Mark>,
    /// Marks of this layer. They hide content of lower layers only, so they
    /// join `upper` once the layer is done.
    current: HashMap<PathBuf, Mark>,
}

impl LayerPass<'_> {
    fn visit(
        &mut self,
        archive: &str,
        member: &Member,
        data: &mut dyn Read,
    ) -> Result<(), ExtractError> {
        if member.path.as_os_str().is_empty() {
            return self.sink.write(archive, member, data).map(drop);
        }
        if let Some(whiteout) = whiteout_of(&member.path) {
            match whiteout {
                Whiteout::Remove(target) => self.whiteout(target, Mark::Whiteout),
                Whiteout::Opaque(dir) => self.whiteout(
                    dir,
                    Mark::Dir {
                        opaque: true,
                        explicit: false,
                    },
                ),
                Whiteout::Meta => {}
                Whiteout::Malformed => self.sink.note(&member.path, "malformed whiteout name"),
            }
            return Ok(());
        }
        let is_dir = member.kind == Kind::Dir;
        if !self.wants(&member.path) || self.hidden(&member.path, is_dir) {
            if !is_dir {
                // A hard link later in this layer cannot get this content.
                self.sink.unavailable.insert(member.path.clone());
            }
            return Ok(());
        }
        self.record(&member.path, is_dir);
        let outcome = self.sink.write(archive, member, data)?;
        // The target may come from a lower layer: make sure it is extracted.
        if outcome == Outcome::Pending && !self.wanted.is_empty() {
            if let Ok(target) = clean(&member.link, false) {
                self.wanted.push(target);
            }
        }
        Ok(())
    }

    fn wants(&self, path: &Path) -> bool {
        self.wanted.is_empty()
            || self
                .wanted
                .iter()
                .any(|wanted| path.starts_with(wanted) || wanted.starts_with(path))
    }

    fn ancestor_hides(&self, path: &Path) -> bool {
        path.ancestors()
            .skip(1)
            .any(|ancestor| self.upper.get(ancestor).is_some_and(|m| m.hides_lower()))
    }

    /// Whether an upper layer hides this layer's entry at `path`.
    fn hidden(&self, path: &Path, is_dir: bool) -> bool {
        self.ancestor_hides(path)
            || match self.upper.get(path) {
                None => false,
                // The upper layer only implied the directory: take our mode.
                Some(Mark::Dir {
                    explicit: false, ..
                }) => !is_dir,
                Some(_) => true,
            }
    }

    /// Records an entry of this layer, and the directories it implies.
    fn record(&mut self, path: &Path, is_dir: bool) {
        let implicit = Mark::Dir {
            opaque: false,
            explicit: false,
        };
        for ancestor in path.ancestors().skip(1) {
            if ancestor.as_os_str().is_empty() {
                break;
            }
            merge_mark(&mut self.current, ancestor.to_path_buf(), implicit);
        }
        let mark = if is_dir {
            Mark::Dir {
                opaque: false,
                explicit: true,
            }
        } else {
            Mark::NonDir
        };
        merge_mark(&mut self.current, path.to_path_buf(), mark);
    }

    fn whiteout(&mut self, target: PathBuf, mark: Mark) {
        let already_gone = matches!(self.upper.get(&target), Some(Mark::NonDir | Mark::Whiteout));
        if self.wants(&target) && !already_gone && !self.ancestor_hides(&target) {
            merge_mark(&mut self.current, target, mark);
        }
    }
}

enum Whiteout {
    /// `.wh.<name>`: `<name>` is deleted from lower layers.
    Remove(PathBuf),
    /// `.wh..wh..opq`: lower content of this directory is hidden.
    Opaque(PathBuf),
    /// Other `.wh..wh.` names: AUFS bookkeeping, ignored as Docker does.
    Meta,
    Malformed,
}

fn whiteout_of(path: &Path) -> Option<Whiteout> {
    let base = path.file_name()?.as_bytes();
    let name = base.strip_prefix(WHITEOUT_PREFIX)?;
    let parent = path.parent().unwrap_or(Path::new(""));
    Some(if base == OPAQUE_MARKER {
        Whiteout::Opaque(parent.to_path_buf())
    } else if base.starts_with(WHITEOUT_META_PREFIX) {
        Whiteout::Meta
    } else if name.is_empty() || name == b"." || name == b".." {
        Whiteout::Malformed
    } else {
        Whiteout::Remove(parent.join(OsStr::from_bytes(name)))
    })
}

// ---------------------------------------------------------------------------
// Reading tar streams

/// One archive member, after extension headers were applied.
struct Member {
    /// The name as stored, for messages.
    name: PathBuf,
    /// The cleaned path relative to `dest`. Empty for the root itself.
    path: PathBuf,
    kind: Kind,
    /// Symlinks: the target, verbatim. Hard links: the target's archive name.
    link: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    xattrs: Xattrs,
}

impl Member {
    fn meta(&self) -> EntryMeta {
        EntryMeta {
            uid: self.uid,
            gid: self.gid,
            mode: self.mode & 0o7777,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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
    fn skip_reason(self) -> &'static str {
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

/// What the limits are checked against. It persists across an overlay's
/// layers.
#[derive(Debug, Default)]
struct Budget {
    entries: u64,
    bytes: u64,
}

/// Extension headers waiting for the member they describe.
#[derive(Debug, Default)]
struct Extensions {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    xattrs: Xattrs,
}

impl Extensions {
    /// Whether nothing that matters for reading the stream is waiting.
    /// Ownership and xattrs alone do not make an extension header dangling.
    fn is_empty(&self) -> bool {
        self.path.is_none() && self.link.is_none() && self.size.is_none()
    }
}

/// Calls `visit` with each member of the tar stream and a reader of its
/// data. `visit` need not read the data: what it leaves is skipped.
fn for_each_member<R: Read>(
    archive: &str,
    input: R,
    limits: &Limits,
    budget: &mut Budget,
    mut visit: impl FnMut(&Member, &mut dyn Read) -> Result<(), ExtractError>,
) -> Result<(), ExtractError> {
    let mut stream = TarStream {
        input,
        archive,
        limits,
        budget,
        near: PathBuf::new(),
        ext: Extensions::default(),
        started: false,
    };
    while let Some(member) = stream.next_member()? {
        let mut data = (&mut stream.input).take(member.size);
        visit(&member, &mut data)?;
        let rest = data.limit();
        stream.skip(rest)?;
        if stream.skip_padding(padding(member.size))? {
            // The input ended right after the last member's data, without padding or the
            // end-of-archive blocks: some writers (umoci 0.4 `insert`) produce exactly that,
            // and Go's reader accepts it. The data itself was complete.
            break;
        }
    }
    Ok(())
}

struct TarStream<'a, R> {
    input: R,
    archive: &'a str,
    limits: &'a Limits,
    budget: &'a mut Budget,
    /// The name in the latest header, for messages.
    near: PathBuf,
    ext: Extensions,
    started: bool,
}

impl<R: Read> TarStream<'_, R> {
    fn next_member(&mut self) -> Result<Option<Member>, ExtractError> {
        let mut block = [0u8; BLOCK];
        loop {
            if !self.read_header(&mut block)? {
                return self.end();
            }
            let header = Header::from_byte_slice(&block);
            self.near = os_path(&header.path_bytes());
            self.count_entry()?;
            if !checksum_ok(&block, header) {
                return Err(self.malformed("header checksum mismatch".into()));
            }
            let size = header
                .entry_size()
                .map_err(|e| self.malformed(format!("bad size field: {e}")))?;
            match header.entry_type() {
                EntryType::GNULongName => {
                    self.ext.path = Some(trim_nuls(self.read_extension(size)?));
                }
                EntryType::GNULongLink => {
                    self.ext.link = Some(trim_nuls(self.read_extension(size)?));
                }
                EntryType::XHeader => {
                    let records = self.read_extension(size)?;
                    self.apply_pax(&records)?;
                }
                // Archive-wide defaults: nothing extracted here depends on them.
                EntryType::XGlobalHeader => {
                    self.charge(size)?;
                    self.skip(size)?;
                    self.skip(padding(size))?;
                }
                _ => return self.member(&block, size).map(Some),
            }
        }
    }

    /// Reads the next header block. Returns false at the end of the archive.
    fn read_header(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, ExtractError> {
        let filled = fill(&mut self.input, block).map_err(|e| self.read_error(e))?;
        self.started = true;
        match filled {
            BLOCK => Ok(block.iter().any(|b| *b != 0)),
            // A clean end at a header boundary: accepted, as other tars do.
            0 => Ok(false),
            _ => Err(self.truncated()),
        }
    }

    fn end(&self) -> Result<Option<Member>, ExtractError> {
        if self.ext.is_empty() {
            Ok(None)
        } else {
            Err(self.malformed("extension header not followed by an entry".into()))
        }
    }

    fn member(&mut self, block: &[u8; BLOCK], header_size: u64) -> Result<Member, ExtractError> {
        let header = Header::from_byte_slice(block);
        let ext = std::mem::take(&mut self.ext);
        let raw_name = ext.path.unwrap_or_else(|| header.path_bytes().into_owned());
        let link = ext
            .link
            .or_else(|| header.link_name_bytes().map(Cow::into_owned))
            .unwrap_or_default();
        let size = ext.size.unwrap_or(header_size);
        self.near = os_path(&raw_name);
        self.charge(size)?;
        let path = clean(&raw_name, false).map_err(|problem| ExtractError::UnsafePath {
            archive: self.archive.to_string(),
            entry: self.near.clone(),
            reason: problem.for_name(),
        })?;
        let mode = header
            .mode()
            .map_err(|e| self.malformed(format!("bad mode field: {e}")))?;
        // Unlike the mode, ownership never affected extraction: a bad field
        // reads as 0 rather than failing archives that used to extract.
        let uid = ext.uid.unwrap_or_else(|| header.uid().unwrap_or(0));
        let gid = ext.gid.unwrap_or_else(|| header.gid().unwrap_or(0));
        let entry_type = header.entry_type();
        // As for ownership: an empty or unreadable device field reads as 0.
        let device = || {
            let number = |n: io::Result<Option<u32>>| n.ok().flatten().unwrap_or(0);
            (number(header.device_major()), number(header.device_minor()))
        };
        let kind = kind_of(entry_type, &raw_name, device);
        if entry_type.is_gnu_sparse()
            && header.as_gnu().is_some()
            && block[GNU_SPARSE_ISEXTENDED] != 0
        {
            self.skip_sparse_extensions()?;
        }
        Ok(Member {
            name: self.near.clone(),
            path,
            kind,
            link,
            mode,
            uid,
            gid,
            size,
            xattrs: ext.xattrs,
        })
    }

    /// Reads a GNU long name/link or PAX record, refusing absurd sizes before
    /// allocating anything.
    fn read_extension(&mut self, size: u64) -> Result<Vec<u8>, ExtractError> {
        if size > MAX_EXTENSION_LEN {
            return Err(self.malformed(format!(
                "extension header of {size} bytes is over the limit of {MAX_EXTENSION_LEN}"
            )));
        }
        self.charge(size)?;
        let mut data = Vec::new();
        (&mut self.input)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| self.read_error(e))?;
        if (data.len() as u64) < size {
            return Err(self.truncated());
        }
        self.skip(padding(size))?;
        Ok(data)
    }

    /// Applies the PAX records we need: `path`, `linkpath` and `size`, plus
    /// `uid` and `gid` for [`EntryMeta`] (ignored when not a decimal number)
    /// and `SCHILY.xattr.<name>` (the last record for a name wins). Names and
    /// times are not used.
    fn apply_pax(&mut self, mut records: &[u8]) -> Result<(), ExtractError> {
        // Some writers leave NUL padding after the last record.
        while records.iter().any(|b| *b != 0) {
            let Some((key, value, rest)) = pax_record(records) else {
                return Err(self.malformed("malformed PAX record".into()));
            };
            match key {
                b"path" => self.ext.path = Some(value.to_vec()),
                b"linkpath" => self.ext.link = Some(value.to_vec()),
                b"size" => {
                    let size = std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| self.malformed("bad PAX size record".into()))?;
                    self.ext.size = Some(size);
                }
                b"uid" | b"gid" => {
                    let id = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                    if key == b"uid" {
                        self.ext.uid = id.or(self.ext.uid);
                    } else {
                        self.ext.gid = id.or(self.ext.gid);
                    }
                }
                _ => {
                    if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                        self.ext.xattrs.insert(name.to_vec(), value.to_vec());
                    }
                }
            }
            records = rest;
        }
        Ok(())
    }

    /// Old GNU sparse headers chain extra 512-byte blocks before the data.
    /// Each one counts as an entry, so a chain cannot run forever.
    fn skip_sparse_extensions(&mut self) -> Result<(), ExtractError> {
        let mut block = [0u8; BLOCK];
        loop {
            self.count_entry()?;
            if fill(&mut self.input, &mut block).map_err(|e| self.read_error(e))? < BLOCK {
                return Err(self.truncated());
            }
            if block[GNU_SPARSE_EXT_ISEXTENDED] == 0 {
                return Ok(());
            }
        }
    }

    fn count_entry(&mut self) -> Result<(), ExtractError> {
        self.budget.entries += 1;
        if self.budget.entries > self.limits.max_entries {
            return Err(ExtractError::TooManyEntries {
                archive: self.archive.to_string(),
                entry: self.near.clone(),
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Checks a declared data size against the limits. This runs before any
    /// of the data is read.
    fn charge(&mut self, size: u64) -> Result<(), ExtractError> {
        if size > self.limits.max_entry_size {
            return Err(ExtractError::EntryTooLarge {
                archive: self.archive.to_string(),
                entry: self.near.clone(),
                size,
                limit: self.limits.max_entry_size,
            });
        }
        let total = self.budget.bytes.saturating_add(size);
        if total > self.limits.max_total_size {
            return Err(ExtractError::TotalTooLarge {
                archive: self.archive.to_string(),
                entry: self.near.clone(),
                limit: self.limits.max_total_size,
            });
        }
        self.budget.bytes = total;
        Ok(())
    }

    fn skip(&mut self, len: u64) -> Result<(), ExtractError> {
        let skipped = io::copy(&mut (&mut self.input).take(len), &mut io::sink())
            .map_err(|e| self.read_error(e))?;
        if skipped < len {
            return Err(self.truncated());
        }
        Ok(())
    }

    /// Skips a member's padding; `true` when the input ended exactly where padding began.
    fn skip_padding(&mut self, len: u64) -> Result<bool, ExtractError> {
        let skipped = io::copy(&mut (&mut self.input).take(len), &mut io::sink())
            .map_err(|e| self.read_error(e))?;
        match skipped {
            n if n == len => Ok(false),
            0 => Ok(true),
            _ => Err(self.truncated()),
        }
    }

    fn truncated(&self) -> ExtractError {
        ExtractError::Truncated {
            archive: self.archive.to_string(),
            entry: self.near.clone(),
        }
    }

    fn malformed(&self, reason: String) -> ExtractError {
        ExtractError::Malformed {
            archive: self.archive.to_string(),
            entry: self.near.clone(),
            reason,
        }
    }

    fn read_error(&self, source: io::Error) -> ExtractError {
        read_error(self.archive, &self.near, source)
    }
}

fn read_error(archive: &str, entry: &Path, source: io::Error) -> ExtractError {
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

/// Reads until `buf` is full or the input ends. Returns how much was read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest @ [_, ..]) = buf.get_mut(filled..) {
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn padding(size: u64) -> u64 {
    let block = BLOCK as u64;
    (block - size % block) % block
}

/// Accepts unsigned and signed header sums: both kinds of writer exist.
fn checksum_ok(block: &[u8; BLOCK], header: &Header) -> bool {
    let Ok(stored) = header.cksum() else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, byte) in block.iter().enumerate() {
        // The checksum field itself counts as spaces.
        let byte = if (148..156).contains(&i) { b' ' } else { *byte };
        unsigned += i64::from(byte);
        signed += i64::from(i8::from_ne_bytes([byte]));
    }
    let stored = i64::from(stored);
    stored == unsigned || stored == signed
}

/// Splits off one `"<len> <key>=<value>\n"` PAX record.
fn pax_record(records: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let space = records.iter().position(|b| *b == b' ')?;
    let len: usize = std::str::from_utf8(records.get(..space)?)
        .ok()?
        .parse()
        .ok()?;
    let record = records.get(..len)?;
    let body = record.get(space + 1..)?.strip_suffix(b"\n")?;
    let eq = body.iter().position(|b| *b == b'=')?;
    Some((body.get(..eq)?, body.get(eq + 1..)?, records.get(len..)?))
}

fn trim_nuls(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

fn os_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameProblem {
    Empty,
    Nul,
    Escapes,
}

impl NameProblem {
    fn for_name(self) -> &'static str {
        match self {
            NameProblem::Empty => "the name is empty",
            NameProblem::Nul => "the name contains a NUL byte",
            NameProblem::Escapes => "`..` leads out of the destination",
        }
    }

    fn for_link(self) -> &'static str {
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
fn clean(raw: &[u8], clamp: bool) -> Result<PathBuf, NameProblem> {
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

// ---------------------------------------------------------------------------
// Writing into the destination

/// What happened to one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Written,
    Skipped(&'static str),
    /// A hard link whose target is not in `dest` yet. It is retried at the end.
    Pending,
}

/// State of the parents of a path under `dest`.
enum Parents {
    Ok,
    Blocked(&'static str),
    /// Only when not creating them.
    Missing,
}

/// Names a member in errors raised while writing it.
struct Ctx<'a> {
    archive: &'a str,
    entry: &'a Path,
}

impl Ctx<'_> {
    fn write_error(&self, disk: &Path, source: io::Error) -> ExtractError {
        ExtractError::Write {
            archive: self.archive.to_string(),
            entry: self.entry.to_path_buf(),
            disk: disk.to_path_buf(),
            source,
        }
    }
}

struct PendingLink {
    archive: String,
    name: PathBuf,
    path: PathBuf,
    target: PathBuf,
    meta: EntryMeta,
    xattrs: Xattrs,
}

/// Writes members into `dest`, refusing anything that would leave it.
struct Sink {
    dest: PathBuf,
    stats: ExtractStats,
    pending: Vec<PendingLink>,
    /// Non-directory members of the layer being applied that were not
    /// written (shadowed or not wanted). Their content is gone, so a hard
    /// link to one of them cannot be made.
    unavailable: HashSet<PathBuf>,
    buf: Vec<u8>,
    /// Whether device nodes and FIFOs are recorded (behind placeholders) rather than
    /// skipped: [`extract_archive`] records them, an [`Overlay`] skips them.
    keep_specials: bool,
    /// Header metadata of each path written, for [`Overlay::metadata`].
    meta: HashMap<PathBuf, EntryMeta>,
    /// Device nodes and FIFOs recorded, by path; a placeholder file stands there.
    specials: HashMap<PathBuf, Special>,
    /// Extended attributes of the paths written with any.
    xattrs: HashMap<PathBuf, Xattrs>,
    /// Hard links written, link → target, for [`Overlay::hard_links`].
    links: HashMap<PathBuf, PathBuf>,
    /// Target → links made to it. May list links since replaced: check
    /// `links` before trusting an entry.
    linked_from: HashMap<PathBuf, Vec<PathBuf>>,
}

impl Sink {
    fn new(dest: &Path, keep_specials: bool) -> Sink {
        Sink {
            dest: dest.to_path_buf(),
            stats: ExtractStats::default(),
            pending: Vec::new(),
            unavailable: HashSet::new(),
            buf: vec![0; COPY_BUF_LEN],
            keep_specials,
            meta: HashMap::new(),
            specials: HashMap::new(),
            xattrs: HashMap::new(),
            links: HashMap::new(),
            linked_from: HashMap::new(),
        }
    }

    /// Records what was just written at `path`, replacing whatever was there.
    /// `link_target` is set for a hard link, `special` for a device or FIFO.
    fn remember(
        &mut self,
        path: &Path,
        meta: EntryMeta,
        link_target: Option<&Path>,
        special: Option<Special>,
        xattrs: &Xattrs,
    ) {
        // A hard link to a recorded special is another record (its own placeholder).
        let special = special.or_else(|| link_target.and_then(|t| self.specials.get(t).copied()));
        let link_target = link_target.filter(|_| special.is_none());
        match special {
            Some(s) => self.specials.insert(path.to_path_buf(), s),
            None => self.specials.remove(path),
        };
        if xattrs.is_empty() {
            self.xattrs.remove(path);
        } else {
            self.xattrs.insert(path.to_path_buf(), xattrs.clone());
        }
        // Links to what was at `path` keep the old inode: no longer links to
        // the new content.
        for link in self.linked_from.remove(path).unwrap_or_default() {
            if self.links.get(&link).is_some_and(|target| target == path) {
                self.links.remove(&link);
            }
        }
        match link_target {
            Some(target) => {
                self.links.insert(path.to_path_buf(), target.to_path_buf());
                self.linked_from
                    .entry(target.to_path_buf())
                    .or_default()
                    .push(path.to_path_buf());
            }
            None => {
                self.links.remove(path);
            }
        }
        self.meta.insert(path.to_path_buf(), meta);
    }

    fn note(&mut self, path: &Path, why: &'static str) {
        self.stats.skipped.push((path.to_path_buf(), why));
    }

    fn write(
        &mut self,
        archive: &str,
        member: &Member,
        data: &mut dyn Read,
    ) -> Result<Outcome, ExtractError> {
        let ctx = Ctx {
            archive,
            entry: &member.name,
        };
        if member.path.as_os_str().is_empty() {
            return Ok(self.root_entry(member));
        }
        let outcome = match member.kind {
            Kind::Dir => self.dir(&ctx, member)?,
            Kind::File => self.file(&ctx, member, data)?,
            Kind::Symlink => self.symlink(&ctx, member)?,
            Kind::HardLink => self.hard_link_member(&ctx, member)?,
            Kind::Special(_) if self.keep_specials => self.placeholder(&ctx, &member.path)?,
            Kind::Special(special) => Outcome::Skipped(special.skip_reason()),
            Kind::Unsupported(why) => Outcome::Skipped(why),
        };
        self.record(&member.path, outcome);
        if outcome == Outcome::Written {
            let target = match member.kind {
                // Cleaned fine already, or it would not have been written.
                Kind::HardLink => clean(&member.link, false).ok(),
                _ => None,
            };
            let special = match member.kind {
                Kind::Special(special) => Some(special),
                _ => None,
            };
            self.remember(
                &member.path,
                member.meta(),
                target.as_deref(),
                special,
                &member.xattrs,
            );
        }
        Ok(outcome)
    }

    /// `./` is common and names `dest` itself, which is left as it is.
    fn root_entry(&mut self, member: &Member) -> Outcome {
        if member.kind == Kind::Dir {
            return Outcome::Written;
        }
        let why = "entry would replace the destination directory itself";
        self.note(&member.name, why);
        Outcome::Skipped(why)
    }

    fn record(&mut self, path: &Path, outcome: Outcome) {
        match outcome {
            Outcome::Written => self.stats.entries += 1,
            Outcome::Skipped(why) => self.note(path, why),
            Outcome::Pending => {}
        }
    }

    fn dir(&mut self, ctx: &Ctx, member: &Member) -> Result<Outcome, ExtractError> {
        if let Parents::Blocked(why) = self.parents(ctx, &member.path, true)? {
            return Ok(Outcome::Skipped(why));
        }
        let disk = self.dest.join(&member.path);
        let io_error = |e| ctx.write_error(&disk, e);
        match fs::symlink_metadata(&disk) {
            Ok(meta) if meta.is_dir() => {}
            // A file or symlink in the way is replaced, never followed.
            Ok(_) => {
                fs::remove_file(&disk).map_err(io_error)?;
                fs::create_dir(&disk).map_err(io_error)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&disk).map_err(io_error)?;
            }
            Err(e) => return Err(io_error(e)),
        }
        // Owner-writable, so the rest of the archive can still go in.
        let mode = (member.mode & 0o7777) | 0o700;
        fs::set_permissions(&disk, Permissions::from_mode(mode)).map_err(io_error)?;
        Ok(Outcome::Written)
    }

    fn file(
        &mut self,
        ctx: &Ctx,
        member: &Member,
        data: &mut dyn Read,
    ) -> Result<Outcome, ExtractError> {
        if let Some(why) = self.make_room(ctx, &member.path)? {
            return Ok(Outcome::Skipped(why));
        }
        let disk = self.dest.join(&member.path);
        // create_new (O_EXCL) does not follow a symlink that appeared meanwhile.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&disk)
            .map_err(|e| ctx.write_error(&disk, e))?;
        let written = copy_data(ctx, data, &mut file, &disk, &mut self.buf)?;
        // fchmod after writing: the umask cannot strip bits, and read-only
        // modes do not get in our way.
        file.set_permissions(Permissions::from_mode(member.mode & 0o7777))
            .map_err(|e| ctx.write_error(&disk, e))?;
        self.stats.bytes += written;
        Ok(Outcome::Written)
    }

    /// An empty file standing for a device node or FIFO at `path`.
    fn placeholder(&mut self, ctx: &Ctx, path: &Path) -> Result<Outcome, ExtractError> {
        if let Some(why) = self.make_room(ctx, path)? {
            return Ok(Outcome::Skipped(why));
        }
        let disk = self.dest.join(path);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&disk)
            .map_err(|e| ctx.write_error(&disk, e))?;
        Ok(Outcome::Written)
    }

    fn symlink(&mut self, ctx: &Ctx, member: &Member) -> Result<Outcome, ExtractError> {
        if member.link.is_empty() {
            return Ok(Outcome::Skipped("symlink with an empty target"));
        }
        if member.link.contains(&0) {
            return Ok(Outcome::Skipped("symlink target contains a NUL byte"));
        }
        if let Some(why) = self.make_room(ctx, &member.path)? {
            return Ok(Outcome::Skipped(why));
        }
        let disk = self.dest.join(&member.path);
        std::os::unix::fs::symlink(OsStr::from_bytes(&member.link), &disk)
            .map_err(|e| ctx.write_error(&disk, e))?;
        Ok(Outcome::Written)
    }

    fn hard_link_member(&mut self, ctx: &Ctx, member: &Member) -> Result<Outcome, ExtractError> {
        let target = match clean(&member.link, false) {
            Ok(target) => target,
            Err(problem) => return Ok(Outcome::Skipped(problem.for_link())),
        };
        if self.unavailable.contains(&target) {
            return Ok(Outcome::Skipped(
                "hard link target was not extracted (shadowed by an upper layer or not wanted)",
            ));
        }
        let outcome = self.hard_link(ctx, &member.path, &target, false)?;
        if outcome == Outcome::Pending {
            self.pending.push(PendingLink {
                archive: ctx.archive.to_string(),
                name: member.name.clone(),
                path: member.path.clone(),
                target,
                meta: member.meta(),
                xattrs: member.xattrs.clone(),
            });
        }
        Ok(outcome)
    }

    /// Links `path` to `target`, both relative to `dest`. A missing target is
    /// `Pending` until the `last_try`.
    fn hard_link(
        &mut self,
        ctx: &Ctx,
        path: &Path,
        target: &Path,
        last_try: bool,
    ) -> Result<Outcome, ExtractError> {
        let missing = if last_try {
            Outcome::Skipped("hard link target not found")
        } else {
            Outcome::Pending
        };
        if target.as_os_str().is_empty() {
            return Ok(Outcome::Skipped("hard link to the archive root"));
        }
        if target == path {
            return Ok(Outcome::Skipped("hard link to itself"));
        }
        match self.parents(ctx, target, false)? {
            Parents::Ok => {}
            Parents::Missing => return Ok(missing),
            Parents::Blocked(_) => {
                return Ok(Outcome::Skipped(
                    "hard link target is reached through a symlink or non-directory",
                ))
            }
        }
        let source = self.dest.join(target);
        let is_file = match fs::symlink_metadata(&source) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(missing),
            Err(e) => return Err(ctx.write_error(&source, e)),
            Ok(meta) if meta.is_dir() => return Ok(Outcome::Skipped("hard link to a directory")),
            Ok(meta) if !meta.is_file() && !meta.file_type().is_symlink() => {
                return Ok(Outcome::Skipped("hard link to a special file"))
            }
            Ok(meta) => meta.is_file(),
        };
        if self.specials.contains_key(target) {
            // Not linked: each record gets a placeholder of its own (see `remember`).
            return self.placeholder(ctx, path);
        }
        if let Some(why) = self.make_room(ctx, path)? {
            return Ok(Outcome::Skipped(why));
        }
        let disk = self.dest.join(path);
        // Some filesystems refuse links. A regular file can be copied instead;
        // the source is known not to be a symlink, so the copy stays in `dest`.
        fs::hard_link(&source, &disk)
            .or_else(|e| {
                if is_file {
                    fs::copy(&source, &disk).map(drop)
                } else {
                    Err(e)
                }
            })
            .map_err(|e| ctx.write_error(&disk, e))?;
        Ok(Outcome::Written)
    }

    /// Makes the pending hard links whose target is now there. On the
    /// `last_try` the others are skipped; otherwise they stay pending.
    fn resolve_pending(&mut self, last_try: bool) -> Result<(), ExtractError> {
        for link in std::mem::take(&mut self.pending) {
            let ctx = Ctx {
                archive: &link.archive,
                entry: &link.name,
            };
            let outcome = self.hard_link(&ctx, &link.path, &link.target, last_try)?;
            self.record(&link.path, outcome);
            match outcome {
                Outcome::Written => {
                    let (meta, xattrs) = (link.meta.clone(), link.xattrs.clone());
                    self.remember(&link.path, meta, Some(&link.target), None, &xattrs);
                }
                Outcome::Pending => self.pending.push(link),
                Outcome::Skipped(_) => {}
            }
        }
        Ok(())
    }

    /// Checks the parents of `path` under `dest`, creating missing ones if
    /// `create`. Each existing parent must be a real directory: writing
    /// through a symlinked parent is how archives escape their destination.
    fn parents(&mut self, ctx: &Ctx, path: &Path, create: bool) -> Result<Parents, ExtractError> {
        let Some(parent) = path.parent() else {
            return Ok(Parents::Ok);
        };
        let mut disk = self.dest.clone();
        let mut rel = PathBuf::new();
        for component in parent.components() {
            disk.push(component);
            rel.push(component);
            match fs::symlink_metadata(&disk) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Ok(Parents::Blocked("a parent directory is a symlink"))
                }
                Ok(_) => return Ok(Parents::Blocked("a parent is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    make_dir(&disk, IMPLICIT_DIR_MODE).map_err(|e| ctx.write_error(&disk, e))?;
                    self.remember(&rel, EntryMeta::IMPLICIT_DIR, None, None, &Xattrs::new());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Parents::Missing),
                Err(e) => return Err(ctx.write_error(&disk, e)),
            }
        }
        Ok(Parents::Ok)
    }

    /// Prepares to write a non-directory at `path`: creates its parents and
    /// removes whatever is there. An empty directory is removed, as tar does.
    /// Returns why not when that cannot be done safely.
    fn make_room(&mut self, ctx: &Ctx, path: &Path) -> Result<Option<&'static str>, ExtractError> {
        if let Parents::Blocked(why) = self.parents(ctx, path, true)? {
            return Ok(Some(why));
        }
        let disk = self.dest.join(path);
        let removed = match fs::symlink_metadata(&disk) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => Err(e),
            Ok(meta) if meta.is_dir() => fs::remove_dir(&disk),
            Ok(_) => fs::remove_file(&disk),
        };
        match removed {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                Ok(Some("a non-empty directory is in its place"))
            }
            Err(e) => Err(ctx.write_error(&disk, e)),
        }
    }
}

fn make_dir(disk: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir(disk)?;
    // Set explicitly: create_dir's mode is filtered by the umask.
    fs::set_permissions(disk, Permissions::from_mode(mode))
}

/// Streams an entry's data into `out`. A short stream is caught by the caller
/// when it skips the rest of the entry.
fn copy_data(
    ctx: &Ctx,
    data: &mut dyn Read,
    out: &mut File,
    disk: &Path,
    buf: &mut [u8],
) -> Result<u64, ExtractError> {
    let mut total = 0u64;
    loop {
        let n = match data.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(ctx.archive, ctx.entry, e)),
        };
        let Some(chunk) = buf.get(..n) else {
            let bad = io::Error::other("decoder returned more bytes than asked for");
            return Err(read_error(ctx.archive, ctx.entry, bad));
        };
        out.write_all(chunk).map_err(|e| ctx.write_error(disk, e))?;
        total += chunk.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::os::unix::fs::MetadataExt;
    use tar::Builder;

    // --- archive builders ---------------------------------------------------

    fn header(kind: EntryType, size: u64, mode: u32) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(0);
        header
    }

    /// Builds well-formed archives with the `tar` crate.
    struct Tar(Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(Builder::new(Vec::new()))
        }

        fn file(mut self, path: &str, data: &[u8], mode: u32) -> Tar {
            let mut h = header(EntryType::Regular, data.len() as u64, mode);
            self.0.append_data(&mut h, path, data).unwrap();
            self
        }

        fn dir(mut self, path: &str, mode: u32) -> Tar {
            let mut h = header(EntryType::Directory, 0, mode);
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }

        /// A file or directory with an owner.
        fn owned(
            mut self,
            kind: EntryType,
            path: &str,
            data: &[u8],
            mode: u32,
            ids: (u64, u64),
        ) -> Tar {
            let mut h = header(kind, data.len() as u64, mode);
            h.set_uid(ids.0);
            h.set_gid(ids.1);
            self.0.append_data(&mut h, path, data).unwrap();
            self
        }

        fn link(mut self, kind: EntryType, path: &str, target: &str) -> Tar {
            let mut h = header(kind, 0, 0o777);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }

        fn symlink(self, path: &str, target: &str) -> Tar {
            self.link(EntryType::Symlink, path, target)
        }

        fn hardlink(self, path: &str, target: &str) -> Tar {
            self.link(EntryType::Link, path, target)
        }

        /// Appends hand-made blocks, bypassing the builder's name checks.
        fn raw(mut self, blocks: Vec<u8>) -> Tar {
            self.0.get_mut().extend_from_slice(&blocks);
            self
        }

        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    /// A header (plus padded data) with any name, link and type.
    fn raw_entry(name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
        raw_sized(name, kind, link, data, data.len() as u64)
    }

    /// Like `raw_entry`, with a declared size that need not match the data.
    fn raw_sized(name: &[u8], kind: EntryType, link: &[u8], data: &[u8], size: u64) -> Vec<u8> {
        let mut h = header(kind, size, 0o644);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len() + padding(data.len() as u64) as usize, 0);
        out
    }

    fn pax_kv(key: &str, value: &[u8]) -> Vec<u8> {
        let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        let mut record = format!("{len} {key}=").into_bytes();
        record.extend_from_slice(value);
        record.push(b'\n');
        record
    }

    fn end_marker() -> Vec<u8> {
        vec![0; 2 * BLOCK]
    }

    fn hostile(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = entries.concat();
        out.extend(end_marker());
        out
    }

    // --- helpers ------------------------------------------------------------

    /// A scratch root with `dest` and a sibling `outside` that must stay empty.
    struct Scene {
        root: tempfile::TempDir,
    }

    impl Scene {
        fn new() -> Scene {
            let root = tempfile::tempdir().unwrap();
            fs::create_dir(root.path().join("dest")).unwrap();
            fs::create_dir(root.path().join("outside")).unwrap();
            Scene { root }
        }

        fn dest(&self) -> PathBuf {
            self.root.path().join("dest")
        }

        fn outside(&self) -> PathBuf {
            self.root.path().join("outside")
        }

        fn extract(&self, archive: &[u8]) -> Result<ExtractStats, ExtractError> {
            self.unpack(archive).map(|e| e.stats)
        }

        fn unpack(&self, archive: &[u8]) -> Result<Extracted, ExtractError> {
            extract_archive("test.tar", archive, &self.dest(), &Limits::default())
        }

        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.dest().join(rel)).unwrap()
        }

        fn exists(&self, rel: &str) -> bool {
            fs::symlink_metadata(self.dest().join(rel)).is_ok()
        }

        fn mode(&self, rel: &str) -> u32 {
            fs::symlink_metadata(self.dest().join(rel)).unwrap().mode() & 0o7777
        }

        fn assert_outside_untouched(&self) {
            let leaked: Vec<_> = fs::read_dir(self.outside()).unwrap().collect();
            assert!(leaked.is_empty(), "wrote outside dest: {leaked:?}");
            let siblings: Vec<_> = fs::read_dir(self.root.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(siblings.len(), 2, "wrote next to dest: {siblings:?}");
        }
    }

    fn skipped_reason(stats: &ExtractStats, path: &str) -> &'static str {
        stats
            .skipped
            .iter()
            .find(|(p, _)| p == Path::new(path))
            .unwrap_or_else(|| panic!("{path} not skipped: {stats:?}"))
            .1
    }

    // --- compression --------------------------------------------------------

    fn sample_tar() -> Vec<u8> {
        Tar::new()
            .dir("d", 0o755)
            .file("d/f", b"hello", 0o644)
            .bytes()
    }

    fn compressed(kind: Compression, data: &[u8]) -> Vec<u8> {
        match kind {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(data).unwrap();
                enc.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 1).unwrap(),
            Compression::Xz => {
                let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
                enc.write_all(data).unwrap();
                enc.finish().unwrap()
            }
        }
    }

    #[test]
    fn detects_compression_from_magic() {
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(
            detect_compression(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(detect_compression(b"hello"), Compression::None);
        assert_eq!(detect_compression(&[0x1f]), Compression::None);
        assert_eq!(detect_compression(&[]), Compression::None);
    }

    #[test]
    fn round_trips_gzip_zstd_xz() {
        let tar = sample_tar();
        for kind in [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Xz,
        ] {
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
            &compressed(Compression::Gzip, &sample_tar())
        )));
        assert!(is_archive(&write("a.tar", &sample_tar())));
        assert!(is_archive(&write(
            "a.tar.zst",
            &compressed(Compression::Zstd, &sample_tar())
        )));
        assert!(is_archive(&write(
            "a.tar.xz",
            &compressed(Compression::Xz, &sample_tar())
        )));
        // Compressed, but not a tar: copied as is.
        assert!(!is_archive(&write(
            "notes.gz",
            &compressed(Compression::Gzip, &[b'x'; 2000])
        )));
        assert!(!is_archive(&write("empty", b"")));
        assert!(!is_archive(dir));
        assert!(!is_archive(&dir.join("missing")));
    }

    // --- plain extraction ---------------------------------------------------

    #[test]
    fn extracts_files_dirs_and_links_with_their_modes() {
        let scene = Scene::new();
        let archive = Tar::new()
            .dir("./", 0o700)
            .dir("bin", 0o555)
            .file("bin/tool", b"#!/bin/sh\n", 0o4755)
            .file("etc/conf", b"a=1\n", 0o640)
            .symlink("etc/passwd-link", "/etc/passwd")
            .hardlink("bin/tool2", "bin/tool")
            .bytes();
        let stats = scene.extract(&archive).unwrap();

        assert_eq!(stats.entries, 5);
        assert_eq!(stats.bytes, 14);
        assert!(stats.skipped.is_empty(), "{stats:?}");
        assert_eq!(scene.mode("bin"), 0o755, "directories stay owner-writable");
        assert_eq!(scene.mode("bin/tool"), 0o4755, "setuid kept");
        assert_eq!(scene.mode("etc/conf"), 0o640);
        assert_eq!(scene.mode("etc"), IMPLICIT_DIR_MODE);
        assert_eq!(
            fs::read_link(scene.dest().join("etc/passwd-link")).unwrap(),
            Path::new("/etc/passwd"),
            "symlink targets are verbatim"
        );
        let ino = |p: &str| fs::metadata(scene.dest().join(p)).unwrap().ino();
        assert_eq!(ino("bin/tool2"), ino("bin/tool"));
        assert_eq!(scene.mode(""), 0o755, "dest itself untouched");
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let scene = Scene::new();
        let archive = Tar::new()
            .file("a", b"first", 0o644)
            .symlink("a", "/etc/shadow")
            .file("a", b"second", 0o600)
            .dir("d", 0o755)
            .file("d", b"was an empty dir", 0o644)
            .dir("full", 0o755)
            .file("full/x", b"x", 0o644)
            .file("full", b"not allowed", 0o644)
            .bytes();
        let stats = scene.extract(&archive).unwrap();
        assert_eq!(scene.read("a"), "second");
        assert_eq!(scene.read("d"), "was an empty dir");
        assert_eq!(
            skipped_reason(&stats, "full"),
            "a non-empty directory is in its place"
        );
        assert_eq!(scene.read("full/x"), "x");
    }

    #[test]
    fn long_gnu_names_and_pax_overrides_are_honoured() {
        let scene = Scene::new();
        let long = format!("{}/file", "d".repeat(150));
        let archive = Tar::new()
            .file(&long, b"long", 0o644)
            .raw(raw_entry(
                b"PaxHeaders/x",
                EntryType::XHeader,
                b"",
                &[pax_kv("path", b"pax/name"), pax_kv("mtime", b"1.5")].concat(),
            ))
            .raw(raw_entry(b"ignored", EntryType::Regular, b"", b"from pax"))
            .raw(raw_entry(
                b"PaxHeaders/y",
                EntryType::XHeader,
                b"",
                &pax_kv("size", b"3"),
            ))
            .raw(raw_sized(b"sized", EntryType::Regular, b"", b"abc", 0))
            .bytes();
        scene.extract(&archive).unwrap();
        assert_eq!(scene.read(&long), "long");
        assert_eq!(scene.read("pax/name"), "from pax");
        assert!(!scene.exists("ignored"));
        assert_eq!(scene.read("sized"), "abc", "PAX size overrides the header");
    }

    // --- hostile names ------------------------------------------------------

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

    #[test]
    fn never_writes_through_a_symlinked_parent() {
        let scene = Scene::new();
        let outside = scene.outside();
        let archive = Tar::new()
            .symlink("evil", outside.to_str().unwrap())
            .symlink("up", "..")
            .file("evil/pwned", b"gotcha", 0o644)
            .file("up/outside/pwned", b"gotcha", 0o644)
            .dir("evil/sub", 0o755)
            .symlink("evil/link", "/etc")
            .file("real", b"real", 0o644)
            .hardlink("evil/hard", "real")
            .bytes();
        let stats = scene.extract(&archive).unwrap();
        for path in [
            "evil/pwned",
            "up/outside/pwned",
            "evil/sub",
            "evil/link",
            "evil/hard",
        ] {
            assert_eq!(
                skipped_reason(&stats, path),
                "a parent directory is a symlink"
            );
        }
        assert_eq!(fs::read_link(scene.dest().join("evil")).unwrap(), outside);
        scene.assert_outside_untouched();
    }

    #[test]
    fn refuses_hostile_hard_links() {
        let scene = Scene::new();
        fs::write(scene.outside().join("secret"), "secret").unwrap();
        let outside = scene.outside();
        let archive = Tar::new()
            .file("real", b"real", 0o644)
            .dir("dir", 0o755)
            .symlink("out", outside.to_str().unwrap())
            .hardlink("escape", "../outside/secret")
            .hardlink("through", "out/secret")
            .hardlink("missing", "nowhere")
            .hardlink("todir", "dir")
            .hardlink("self", "self")
            .hardlink("absolute", "/real")
            .bytes();
        let stats = scene.extract(&archive).unwrap();
        assert_eq!(
            skipped_reason(&stats, "escape"),
            "hard link target leads out of the destination"
        );
        assert_eq!(
            skipped_reason(&stats, "through"),
            "hard link target is reached through a symlink or non-directory"
        );
        assert_eq!(
            skipped_reason(&stats, "missing"),
            "hard link target not found"
        );
        assert_eq!(skipped_reason(&stats, "todir"), "hard link to a directory");
        assert_eq!(skipped_reason(&stats, "self"), "hard link to itself");
        // Absolute targets are archive names, cleaned like entry names.
        assert_eq!(scene.read("absolute"), "real");
        assert_eq!(
            fs::read_to_string(outside.join("secret")).unwrap(),
            "secret"
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    }

    #[test]
    fn resolves_hard_links_that_precede_their_target() {
        let scene = Scene::new();
        let archive = Tar::new()
            .hardlink("early", "late")
            .file("late", b"content", 0o644)
            .bytes();
        let stats = scene.extract(&archive).unwrap();
        assert_eq!(scene.read("early"), "content");
        assert_eq!(stats.entries, 2);
    }

    /// A device or FIFO header (`raw_entry` leaves the device fields empty).
    fn device_entry(name: &[u8], kind: EntryType, major: u32, minor: u32, mode: u32) -> Vec<u8> {
        let mut h = header(kind, 0, mode);
        h.set_path(OsStr::from_bytes(name)).unwrap();
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_uid(0);
        h.set_gid(6);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn records_devices_and_fifos_behind_placeholders() {
        let scene = Scene::new();
        let archive = hostile(&[
            device_entry(b"dev/null", EntryType::Char, 1, 3, 0o666),
            device_entry(b"dev/sda", EntryType::Block, 8, 0, 0o660),
            raw_entry(b"run/fifo", EntryType::Fifo, b"", b""),
            raw_entry(b"run/fifo/below", EntryType::Regular, b"", b"x"),
            raw_entry(b"dev/zero", EntryType::Link, b"dev/null", b""),
            raw_entry(b"ok", EntryType::Regular, b"", b"ok"),
        ]);
        let got = scene.unpack(&archive).unwrap();
        assert_eq!(
            got.specials,
            [
                ("dev/null".into(), Special::Char { major: 1, minor: 3 }),
                ("dev/zero".into(), Special::Char { major: 1, minor: 3 }),
                ("dev/sda".into(), Special::Block { major: 8, minor: 0 }),
                ("run/fifo".into(), Special::Fifo),
            ]
            .into_iter()
            .collect()
        );
        assert_eq!(got.meta[Path::new("dev/sda")], meta(0, 6, 0o660));
        for placeholder in ["dev/null", "dev/zero", "dev/sda", "run/fifo"] {
            let on_disk = fs::symlink_metadata(scene.dest().join(placeholder)).unwrap();
            assert!(on_disk.is_file() && on_disk.len() == 0, "{placeholder}");
            assert_eq!(
                on_disk.nlink(),
                1,
                "a link to a special is a record of its own"
            );
        }
        assert_eq!(
            skipped_reason(&got.stats, "run/fifo/below"),
            "a parent is not a directory",
            "as tar: nothing goes below a FIFO"
        );
        assert_eq!(scene.read("ok"), "ok");

        // A later entry at the same path replaces the record.
        let scene = Scene::new();
        let archive = hostile(&[
            raw_entry(b"run/fifo", EntryType::Fifo, b"", b""),
            raw_entry(b"run/fifo", EntryType::Regular, b"", b"now a file"),
        ]);
        let got = scene.unpack(&archive).unwrap();
        assert!(got.specials.is_empty(), "{got:?}");
        assert_eq!(scene.read("run/fifo"), "now a file");
    }

    #[test]
    fn an_overlay_skips_devices_and_fifos() {
        let scene = Scene::new();
        let layer = hostile(&[
            device_entry(b"dev/null", EntryType::Char, 1, 3, 0o666),
            device_entry(b"dev/sda", EntryType::Block, 8, 0, 0o660),
            raw_entry(b"run/fifo", EntryType::Fifo, b"", b""),
            raw_entry(b"ok", EntryType::Regular, b"", b"ok"),
        ]);
        let mut overlay = Overlay::new(&scene.dest(), Vec::new(), Limits::default());
        overlay.apply_layer("layer", layer.as_slice()).unwrap();
        let stats = overlay.finish().unwrap();
        assert_eq!(
            skipped_reason(&stats, "dev/null"),
            "character device: needs privileges"
        );
        assert_eq!(
            skipped_reason(&stats, "dev/sda"),
            "block device: needs privileges"
        );
        assert_eq!(skipped_reason(&stats, "run/fifo"), "FIFO: not extracted");
        assert!(!scene.exists("dev/null") && !scene.exists("run/fifo"));
        assert_eq!(scene.read("ok"), "ok");
    }

    #[test]
    fn records_pax_xattrs_per_path() {
        let scene = Scene::new();
        let capability = [1u8, 0, 0, 2, 0, 0x20, 0, 0, b'\n', b'=', 0];
        let archive = hostile(&[
            raw_entry(
                b"PaxHeaders/ping",
                EntryType::XHeader,
                b"",
                &[
                    pax_kv("SCHILY.xattr.security.capability", &capability),
                    pax_kv("SCHILY.xattr.user.note", b"first"),
                    pax_kv("SCHILY.xattr.user.note", b"last wins"),
                    pax_kv("LIBARCHIVE.xattr.user.other", b"aWdub3JlZA=="),
                ]
                .concat(),
            ),
            raw_entry(b"bin/ping", EntryType::Regular, b"", b"ELF"),
            raw_entry(b"bin/plain", EntryType::Regular, b"", b"x"),
        ]);
        let got = scene.unpack(&archive).unwrap();
        let want: Xattrs = [
            (b"security.capability".to_vec(), capability.to_vec()),
            (b"user.note".to_vec(), b"last wins".to_vec()),
        ]
        .into_iter()
        .collect();
        assert_eq!(got.xattrs.len(), 1, "{:?}", got.xattrs);
        assert_eq!(got.xattrs[Path::new("bin/ping")], want);
        assert_eq!(scene.read("bin/ping"), "ELF");
    }

    // --- limits and broken archives -----------------------------------------

    #[test]
    fn enforces_size_and_count_limits() {
        let scene = Scene::new();
        let small = Limits {
            max_entry_size: 1 << 20,
            max_total_size: 3 << 20,
            max_entries: 4,
        };
        // Declared huge, no data: refused before any reading.
        let huge = hostile(&[raw_sized(b"big", EntryType::Regular, b"", b"", 1 << 40)]);
        let err = extract_archive("huge.tar", huge.as_slice(), &scene.dest(), &small).unwrap_err();
        assert!(matches!(err, ExtractError::EntryTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("huge.tar") && err.to_string().contains("big"));

        let chunk = vec![7u8; 1 << 20];
        let mut tar = Tar::new();
        for name in ["a", "b", "c", "d"] {
            tar = tar.file(name, &chunk, 0o644);
        }
        let err = extract_archive("total.tar", tar.bytes().as_slice(), &scene.dest(), &small)
            .unwrap_err();
        assert!(
            matches!(err, ExtractError::TotalTooLarge { ref entry, .. } if entry == Path::new("d")),
            "{err}"
        );

        let mut tar = Tar::new();
        for name in ["1", "2", "3", "4", "5"] {
            tar = tar.file(name, b"", 0o644);
        }
        let err =
            extract_archive("many.tar", tar.bytes().as_slice(), &scene.dest(), &small).unwrap_err();
        assert!(
            matches!(err, ExtractError::TooManyEntries { ref entry, .. } if entry == Path::new("5")),
            "{err}"
        );
    }

    #[test]
    fn refuses_oversized_extension_headers_without_reading_them() {
        let scene = Scene::new();
        let archive = hostile(&[raw_sized(
            b"././@LongLink",
            EntryType::GNULongName,
            b"",
            b"",
            MAX_EXTENSION_LEN + 1,
        )]);
        let err = scene.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    }

    #[test]
    fn reports_truncated_archives() {
        let mut archive = Tar::new().file("big", &[1u8; 4096], 0o644).bytes();
        archive.truncate(BLOCK + 1000);
        let scene = Scene::new();
        let err = scene.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Truncated { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "archive test.tar is truncated (near entry \"big\")"
        );

        let archive = Tar::new().file("x", b"x", 0o644).bytes();
        let err = scene.extract(&archive[..BLOCK + BLOCK + 100]).unwrap_err();
        assert!(matches!(err, ExtractError::Truncated { .. }), "{err}");

        // Cut compressed streams: the decoders notice.
        let tar = Tar::new().file("z", &[3u8; 100_000], 0o644).bytes();
        for kind in [Compression::Gzip, Compression::Zstd, Compression::Xz] {
            let blob = compressed(kind, &tar);
            let reader = decompress(&blob[..blob.len() / 2], kind).unwrap();
            let err = extract_archive("layer.tar.c", reader, &scene.dest(), &Limits::default())
                .unwrap_err();
            assert!(
                matches!(err, ExtractError::Truncated { .. }),
                "{kind:?}: {err}"
            );
            assert!(err.to_string().contains("layer.tar.c"), "{err}");
        }
    }

    #[test]
    fn accepts_a_clean_end_without_end_marker_and_empty_streams() {
        let scene = Scene::new();
        let archive = raw_entry(b"f", EntryType::Regular, b"", b"data");
        scene.extract(&archive).unwrap();
        assert_eq!(scene.read("f"), "data");
        assert_eq!(scene.extract(b"").unwrap(), ExtractStats::default());
    }

    #[test]
    fn rejects_bad_checksums_and_dangling_extensions() {
        let scene = Scene::new();
        let mut entry = raw_entry(b"f", EntryType::Regular, b"", b"data");
        entry[0] = b'g';
        let err = scene.extract(&hostile(&[entry])).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");

        let dangling = hostile(&[raw_entry(
            b"pax",
            EntryType::XHeader,
            b"",
            &pax_kv("path", b"x"),
        )]);
        let err = scene.extract(&dangling).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");

        let garbage = hostile(&[raw_entry(
            b"pax",
            EntryType::XHeader,
            b"",
            b"99999 path=x\n",
        )]);
        let err = scene.extract(&garbage).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    }

    #[test]
    fn survives_arbitrary_bytes() {
        // A cheap stand-in for fuzzing: mangled archives must error, not panic.
        let base = Tar::new()
            .file(&format!("{}/f", "x".repeat(120)), b"abc", 0o644)
            .symlink("s", "/t")
            .bytes();
        for i in (0..base.len()).step_by(7) {
            let mut bytes = base.clone();
            bytes[i] ^= 0xff;
            let scene = Scene::new();
            let _ = scene.extract(&bytes);
            let _ = scene.extract(&bytes[..i]);
            scene.assert_outside_untouched();
        }
    }

    // --- overlay ------------------------------------------------------------

    fn run_overlay(scene: &Scene, wanted: &[&str], layers: &[Vec<u8>]) -> (Overlay, Vec<bool>) {
        let wanted = wanted.iter().map(PathBuf::from).collect();
        let mut overlay = Overlay::new(&scene.dest(), wanted, Limits::default());
        let mut settled = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            overlay
                .apply_layer(&format!("layer{i}"), Cursor::new(layer))
                .unwrap();
            settled.push(overlay.settled());
        }
        (overlay, settled)
    }

    #[test]
    fn overlay_whiteout_in_upper_layer_hides_lower_file() {
        let scene = Scene::new();
        let upper = Tar::new()
            .dir("etc", 0o755)
            .file("etc/.wh.old", b"", 0o644)
            .file("etc/new", b"new", 0o644)
            .file(".wh.gone", b"", 0o644)
            .bytes();
        let lower = Tar::new()
            .dir("etc", 0o700)
            .file("etc/old", b"old", 0o644)
            .file("etc/keep", b"keep", 0o644)
            .dir("gone", 0o755)
            .file("gone/deep", b"deep", 0o644)
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[upper, lower]);
        let stats = overlay.finish().unwrap();
        assert!(!scene.exists("etc/old"));
        assert!(!scene.exists("gone"));
        assert!(!scene.exists("etc/.wh.old") && !scene.exists(".wh.gone"));
        assert_eq!(scene.read("etc/new"), "new");
        assert_eq!(scene.read("etc/keep"), "keep");
        assert_eq!(scene.mode("etc"), 0o755, "upper directory's mode wins");
        assert!(stats.skipped.is_empty(), "{stats:?}");
    }

    #[test]
    fn overlay_opaque_directory_hides_lower_content() {
        let scene = Scene::new();
        let upper = Tar::new()
            .dir("d", 0o755)
            .file("d/.wh..wh..opq", b"", 0o644)
            .file("d/a", b"upper a", 0o644)
            .file("d/.wh..wh.plnk", b"", 0o644)
            .bytes();
        let lower = Tar::new()
            .dir("d", 0o755)
            .file("d/a", b"lower a", 0o644)
            .file("d/b", b"lower b", 0o644)
            .file("e", b"e", 0o644)
            .bytes();
        let (_, settled) = run_overlay(&scene, &["d/b"], &[upper.clone(), lower.clone()]);
        assert_eq!(settled, [true, true], "opaque dir settles what is below it");

        let scene = Scene::new();
        run_overlay(&scene, &[], &[upper, lower]);
        assert_eq!(scene.read("d/a"), "upper a");
        assert!(!scene.exists("d/b"));
        assert!(!scene.exists("d/.wh..wh.plnk"));
        assert_eq!(scene.read("e"), "e");
    }

    #[test]
    fn overlay_upper_entries_shadow_lower_ones() {
        let scene = Scene::new();
        let upper = Tar::new()
            .file("f", b"new", 0o600)
            .symlink("lib", "usr/lib")
            .file("implied/x", b"x", 0o644)
            .bytes();
        let lower = Tar::new()
            .file("f", b"old", 0o644)
            .dir("lib", 0o755)
            .file("lib/libc.so", b"elf", 0o755)
            .dir("implied", 0o711)
            .symlink("implied/x", "elsewhere")
            .file("implied/y", b"y", 0o644)
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[upper, lower]);
        let stats = overlay.finish().unwrap();
        assert_eq!(scene.read("f"), "new");
        assert_eq!(scene.mode("f"), 0o600);
        assert_eq!(
            fs::read_link(scene.dest().join("lib")).unwrap(),
            Path::new("usr/lib")
        );
        assert_eq!(scene.read("implied/x"), "x");
        assert_eq!(scene.read("implied/y"), "y");
        assert_eq!(
            scene.mode("implied"),
            0o711,
            "lower layer sets an implied dir's mode"
        );
        assert!(stats.skipped.is_empty(), "shadowing is silent: {stats:?}");
        scene.assert_outside_untouched();
    }

    #[test]
    fn overlay_settles_when_wanted_paths_are_found() {
        let upper = Tar::new()
            .dir("usr", 0o755)
            .dir("usr/bin", 0o755)
            .file("usr/bin/tool", b"tool", 0o755)
            .file("usr/bin/.wh.removed", b"", 0o644)
            .bytes();
        let lower = Tar::new().file("usr/bin/other", b"", 0o755).bytes();

        let scene = Scene::new();
        let (_, settled) = run_overlay(&scene, &["/usr/bin/tool"], std::slice::from_ref(&upper));
        assert_eq!(settled, [true]);
        assert_eq!(scene.read("usr/bin/tool"), "tool");

        let scene = Scene::new();
        let (_, settled) = run_overlay(
            &scene,
            &["usr/bin/tool", "usr/bin/removed/x"],
            std::slice::from_ref(&upper),
        );
        assert_eq!(settled, [true], "a whiteout settles too");

        let scene = Scene::new();
        let (_, settled) = run_overlay(&scene, &["usr/bin"], &[upper.clone(), lower.clone()]);
        assert_eq!(
            settled,
            [false, false],
            "a plain directory merges with lower ones"
        );
        assert!(scene.exists("usr/bin/other"));

        let scene = Scene::new();
        let (_, settled) = run_overlay(&scene, &[], &[upper]);
        assert_eq!(settled, [false], "everything wanted: never settled");
    }

    #[test]
    fn overlay_extracts_only_wanted_paths() {
        let scene = Scene::new();
        let layer = Tar::new()
            .dir("etc", 0o750)
            .dir("etc/app", 0o755)
            .file("etc/app/conf", b"conf", 0o644)
            .file("etc/other", b"other", 0o644)
            .file("etc/app.bak", b"bak", 0o644)
            .file("var/log", b"log", 0o644)
            .bytes();
        let (overlay, settled) = run_overlay(&scene, &["etc/app"], &[layer]);
        assert_eq!(settled, [false]);
        let stats = overlay.finish().unwrap();
        assert_eq!(scene.read("etc/app/conf"), "conf");
        assert_eq!(
            scene.mode("etc"),
            0o750,
            "wanted path's parents keep their modes"
        );
        assert!(!scene.exists("etc/other") && !scene.exists("etc/app.bak") && !scene.exists("var"));
        assert_eq!(stats.entries, 3);
    }

    #[test]
    fn overlay_hard_links_reach_into_lower_layers_but_not_shadowed_content() {
        // The target comes from a lower layer: the link waits for it.
        let scene = Scene::new();
        let upper = Tar::new().hardlink("bin/b", "bin/a").bytes();
        let lower = Tar::new()
            .file("bin/a", b"lower a", 0o755)
            .file("bin/unrelated", b"", 0o755)
            .bytes();
        let (overlay, settled) = run_overlay(&scene, &["bin/b"], &[upper, lower]);
        assert_eq!(settled, [false, true], "waits for the link target");
        overlay.finish().unwrap();
        assert_eq!(scene.read("bin/b"), "lower a");
        assert!(!scene.exists("bin/unrelated"));

        // The target was replaced upstairs: linking would give the wrong content.
        let scene = Scene::new();
        let upper = Tar::new().file("a", b"upper a", 0o644).bytes();
        let lower = Tar::new()
            .file("a", b"lower a", 0o644)
            .hardlink("b", "a")
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[upper, lower]);
        let stats = overlay.finish().unwrap();
        assert!(!scene.exists("b"));
        assert!(skipped_reason(&stats, "b").starts_with("hard link target was not extracted"));
    }

    fn meta(uid: u64, gid: u64, mode: u32) -> EntryMeta {
        EntryMeta { uid, gid, mode }
    }

    #[test]
    fn overlay_records_the_winning_headers_metadata() {
        let scene = Scene::new();
        let upper = Tar::new()
            .owned(EntryType::Regular, "f", b"upper", 0o640, (1000, 1000))
            .file("d/new", b"new", 0o644)
            .file("plain/x", b"x", 0o644)
            .bytes();
        let lower = Tar::new()
            .dir("./", 0o700)
            .owned(EntryType::Regular, "f", b"lower", 0o4755, (0, 0))
            .owned(EntryType::Directory, "d", b"", 0o750, (5, 6))
            .owned(EntryType::Directory, "ro", b"", 0o555, (7, 8))
            .symlink("s", "/etc/passwd")
            .file("d/old", b"old", 0o600)
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[upper, lower]);
        let got = overlay.metadata().clone();
        assert_eq!(
            got[Path::new("f")],
            meta(1000, 1000, 0o640),
            "upper file wins"
        );
        assert_eq!(scene.read("f"), "upper");
        assert_eq!(
            got[Path::new("d")],
            meta(5, 6, 0o750),
            "lower layer's header for the dir the upper layer implied"
        );
        assert_eq!(got[Path::new("ro")], meta(7, 8, 0o555));
        assert_eq!(scene.mode("ro"), 0o755, "on disk: owner bits added");
        assert_eq!(got[Path::new("d/new")], meta(0, 0, 0o644));
        assert_eq!(got[Path::new("d/old")], meta(0, 0, 0o600));
        assert_eq!(got[Path::new("s")], meta(0, 0, 0o777));
        assert_eq!(
            got[Path::new("plain")],
            EntryMeta::IMPLICIT_DIR,
            "no layer lists it"
        );
        assert!(
            !got.contains_key(Path::new("")),
            "dest itself is not written"
        );
        assert_eq!(got.len(), 8, "{got:?}");
        assert!(overlay.hard_links().is_empty());
        let stats = overlay.finish().unwrap();
        assert_eq!(stats.entries, 7, "implicit dirs are not entries");
    }

    #[test]
    fn overlay_records_hard_links_once_their_target_is_there() {
        let scene = Scene::new();
        let upper = Tar::new().hardlink("bin/b", "bin/a").bytes();
        let lower = Tar::new()
            .owned(EntryType::Regular, "bin/a", b"a", 0o755, (2, 3))
            .hardlink("bin/c", "/bin/a")
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[upper, lower]);
        // Complete after the last layer, before `finish`.
        let links = overlay.hard_links();
        assert_eq!(links.len(), 2, "{links:?}");
        assert_eq!(links[Path::new("bin/b")], Path::new("bin/a"));
        assert_eq!(links[Path::new("bin/c")], Path::new("bin/a"));
        assert_eq!(overlay.metadata()[Path::new("bin/b")], meta(0, 0, 0o777));
        assert_eq!(overlay.metadata()[Path::new("bin/a")], meta(2, 3, 0o755));
        assert_eq!(scene.read("bin/b"), "a");
        let before = overlay.metadata().clone();
        let stats = overlay.finish().unwrap();
        assert_eq!(stats.entries, 3);
        assert_eq!(before.len(), 4, "bin, bin/a, bin/b, bin/c: {before:?}");

        // A link whose target is replaced afterwards keeps the old content:
        // no longer a link to that path. A link replaced by a file neither.
        let scene = Scene::new();
        let layer = Tar::new()
            .file("a", b"old", 0o644)
            .hardlink("b", "a")
            .hardlink("c", "b")
            .hardlink("d", "a")
            .file("a", b"new", 0o600)
            .file("d", b"own", 0o644)
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[layer]);
        assert_eq!(scene.read("b"), "old");
        let links = overlay.hard_links();
        assert_eq!(links.len(), 1, "{links:?}");
        assert_eq!(links[Path::new("c")], Path::new("b"));
        assert_eq!(overlay.metadata()[Path::new("a")], meta(0, 0, 0o600));
        assert_eq!(overlay.metadata()[Path::new("b")], meta(0, 0, 0o777));
        assert_eq!(overlay.metadata()[Path::new("d")], meta(0, 0, 0o644));
    }

    #[test]
    fn overlay_metadata_takes_pax_ids_and_survives_bad_id_fields() {
        let scene = Scene::new();
        let mut no_ids = raw_entry(b"blank", EntryType::Regular, b"", b"x");
        // raw_entry leaves uid/gid empty; make gid garbage too.
        no_ids[116..124].copy_from_slice(b"zzzzzzz\0");
        let mut fixed = Header::from_byte_slice(&no_ids[..BLOCK]).clone();
        fixed.set_cksum();
        no_ids[..BLOCK].copy_from_slice(fixed.as_bytes());
        let layer = hostile(&[
            raw_entry(
                b"PaxHeaders/big",
                EntryType::XHeader,
                b"",
                &[pax_kv("uid", b"70000000"), pax_kv("gid", b"not a number")].concat(),
            ),
            raw_entry(b"big", EntryType::Regular, b"", b"x"),
            no_ids,
            raw_entry(
                b"PaxHeaders/end",
                EntryType::XHeader,
                b"",
                &pax_kv("uid", b"1"),
            ),
        ]);
        let (overlay, _) = run_overlay(&scene, &[], &[layer]);
        assert_eq!(
            overlay.metadata()[Path::new("big")],
            meta(70_000_000, 0, 0o644)
        );
        assert_eq!(overlay.metadata()[Path::new("blank")], meta(0, 0, 0o644));
        assert_eq!(scene.read("blank"), "x");
    }

    #[test]
    fn overlay_errors_name_the_layer() {
        let scene = Scene::new();
        let mut overlay = Overlay::new(&scene.dest(), Vec::new(), Limits::default());
        let bad = hostile(&[raw_entry(b"../../x", EntryType::Regular, b"", b"x")]);
        let err = overlay
            .apply_layer("sha256:abc", bad.as_slice())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "archive sha256:abc: entry \"../../x\" has an unsafe name: `..` leads out of the destination"
        );
    }
}
