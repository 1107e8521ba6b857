//! Writes a container image layer blob (a gzip-compressed tar) from a list of
//! [`LayerEntry`]s, byte-for-byte reproducibly, and computes its digests.
//!
//! This module is for turning already-collected entries into a blob on disk in
//! one streaming pass: tar writer → sha256/counter of the uncompressed stream
//! (the `diff_id`) → gzip → sha256/counter of the compressed stream (the
//! `digest`) → a temporary file. Every byte is compressed exactly once and no
//! file is ever held in memory whole. It is not for deciding *what* goes into a
//! layer (see `regbuild-context`) nor for uploading it.
//!
//! # Determinism rules
//!
//! The same entries (same in-layer paths, kinds, modes, owners, link targets
//! and file contents) and the same [`LayerOptions`] give the same bytes on any
//! machine:
//!
//! - Entries are sorted by their in-layer path, compared component by
//!   component as bytes, so a directory always precedes its contents and `a/b`
//!   sorts before `a.b` and `a-b`. Input order does not matter, except that
//!   for duplicate paths the last entry wins.
//! - Paths are written relative (no leading `/`), `.` components and repeated
//!   slashes are dropped, directories get a trailing `/`. Names are raw bytes
//!   (non-UTF-8 is kept as is).
//! - Headers are GNU-format tar headers. A name or link target longer than
//!   100 bytes is written as a GNU `././@LongLink` extension entry (type `L`
//!   for names, `K` for link targets; mode 0644, owner 0, mtime 0) followed by
//!   the entry whose name field holds the first 100 bytes.
//! - Every entry's mtime is [`LayerOptions::mtime`]; no atime/ctime, empty
//!   uname/gname, device numbers 0 except for device nodes. uid/gid come from
//!   the entry (they must fit in 32 bits); the mode is the entry's permission
//!   bits (`mode & 0o7777`, setuid/setgid/sticky included) and the type comes
//!   from [`EntryKind`].
//! - PAX records only carry extended attributes: an entry with
//!   [`LayerEntry::xattrs`] is preceded by one `x` extension entry named
//!   `././@PaxHeader` (mode 0644, owner 0, mtime 0) holding one
//!   `SCHILY.xattr.<name>` record per attribute, sorted by name (the form Go's
//!   `archive/tar`, and so containerd and Docker, read and write). Entries
//!   without xattrs get no PAX entry.
//! - File data is exactly the recorded `size` bytes; a source that is not a
//!   regular file or whose size differs when read is an error, never a
//!   silently different archive. A sparse file is written out whole (zeros
//!   included, as Docker does: no GNU or PAX sparse entries, which not every
//!   reader of layers understands), and a file over
//!   [`MAX_ENTRY_SIZE`](crate::tar_read::MAX_ENTRY_SIZE), which regbuild's
//!   reader refuses, is an error: every layer written here can be unpacked
//!   again.
//! - Symlink targets are written exactly as given (they are resolved in the
//!   container, not here). Hard links are type `1` entries naming the in-layer
//!   path of a regular file that precedes them.
//! - The archive ends with the two zero blocks written by the `tar` crate.
//! - Compression ([`crate::compress`]): gzip in fixed 1 MiB blocks (header mtime
//!   0, no file name, comment or extra field, OS byte 255 "unknown") or zstd, at
//!   a fixed level; the thread count never changes the bytes. The compressed
//!   bytes also depend on the deflate implementation, so the `digest` is only
//!   stable while the flate2 backend and version are pinned (Cargo.lock); the
//!   `diff_id` does not depend on them.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::compress::{Compression as LayerCompression, Compressor};
use crate::tar_read::MAX_ENTRY_SIZE;
use regbuild_oci::digest::{Digest, Hasher};
use tar::{EntryType, Header};
use tempfile::{NamedTempFile, TempPath};

/// Size of the tar `name` and `linkname` header fields.
const NAME_FIELD_LEN: usize = 100;
/// How many uncompressed bytes pass between two progress reports.
const PROGRESS_STEP: u64 = 1 << 20;

/// What an entry is; the tar type flag is derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose `size` bytes are read from `source` on disk.
    File {
        source: PathBuf,
        size: u64,
    },
    Dir,
    /// A symbolic link; `target` is written as-is.
    Symlink {
        target: PathBuf,
    },
    /// A hard link to the in-layer path of the first entry with that inode.
    HardLink {
        target: PathBuf,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// Extended attributes by name (defined with the reader, which writes none of layer's).
pub use crate::tar_read::Xattrs;

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// In-layer path: relative, no `..`, components joined with `/`.
    pub path: PathBuf,
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky; type bits are ignored.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Written as PAX `SCHILY.xattr.*` records; empty for everything but the files with
    /// `security.capability` that ADD, COPY and RUN keep.
    pub xattrs: Xattrs,
}

/// Knobs that change the produced bytes (`threads` only changes the speed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    /// mtime of every entry: SOURCE_DATE_EPOCH, or 0.
    pub mtime: u64,
    pub compression: LayerCompression,
    /// Compression threads (the output is the same for any count).
    pub threads: usize,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            mtime: 0,
            compression: LayerCompression::Gzip { level: 6 },
            threads: 1,
        }
    }
}

/// A finished layer blob and what a registry and an image config need about it.
#[derive(Debug)]
pub struct BuiltLayer {
    /// The compressed blob on disk; deleted when dropped.
    pub file: TempPath,
    /// The digest of the compressed bytes.
    pub digest: Digest,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Compressed size in bytes.
    pub size: u64,
    pub uncompressed_size: u64,
    /// Entries written, after duplicates were dropped (extension headers not counted).
    pub entries: usize,
    /// The layer media type its compression calls for.
    pub media_type: &'static str,
    /// The layer cache key of what it holds (`regbuild::builder::cache`), when built for a COPY.
    pub key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("invalid layer path {path:?}: {reason}")]
    InvalidPath { path: PathBuf, reason: &'static str },
    #[error("invalid link target {target:?} of layer entry {path:?}: {reason}")]
    InvalidLinkTarget {
        path: PathBuf,
        target: PathBuf,
        reason: &'static str,
    },
    #[error("hard link {path:?} must point to a regular file earlier in the layer, but {target:?} is not one")]
    HardLinkTarget { path: PathBuf, target: PathBuf },
    #[error("layer entry {path:?} is inside {parent:?}, which is not a directory in the layer")]
    ParentNotDir { path: PathBuf, parent: PathBuf },
    #[error("layer entry {path:?} holds {size} bytes, over the limit of {limit} bytes per entry that regbuild reads back: it could not unpack this layer")]
    EntryTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("layer entry {path:?} has uid {uid} / gid {gid}; both must fit in 32 bits")]
    InvalidOwner { path: PathBuf, uid: u64, gid: u64 },
    #[error("layer entry {path:?} has an extended attribute named {name:?}: {reason}")]
    InvalidXattr {
        path: PathBuf,
        name: String,
        reason: &'static str,
    },
    #[error("gzip level {0} is out of range (0..=9)")]
    GzipLevel(u32),
    #[error("{disk:?} (layer entry {path:?}) is not a regular file")]
    NotRegularFile { path: PathBuf, disk: PathBuf },
    #[error("{disk:?} (layer entry {path:?}) changed while the layer was built: expected {expected} bytes")]
    SourceChanged {
        path: PathBuf,
        disk: PathBuf,
        expected: u64,
    },
    #[error("reading {disk:?} (layer entry {path:?}): {source}")]
    ReadSource {
        path: PathBuf,
        disk: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating a temporary file in {dir:?}: {source}")]
    TempFile {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing layer entry {path:?} to {file:?}: {source}")]
    WriteEntry {
        path: PathBuf,
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("finishing layer file {file:?}: {source}")]
    Finish {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes `entries` as a deterministic gzip-compressed tar into a new
/// temporary file in `tmp_dir`. `progress` is called with the number of
/// uncompressed bytes written so far (about every MiB, and once at the end).
pub fn build_layer(
    entries: Vec<LayerEntry>,
    opts: &LayerOptions,
    tmp_dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<BuiltLayer, LayerError> {
    build_layer_announced(entries, opts, tmp_dir, progress, None)
}

/// [`build_layer`], announcing every compressed byte written to the file to `growing` (so
/// the blob can be uploaded while it is packed). The caller ends `growing`.
pub fn build_layer_announced(
    entries: Vec<LayerEntry>,
    opts: &LayerOptions,
    tmp_dir: &Path,
    progress: &mut dyn FnMut(u64),
    growing: Option<std::sync::Arc<crate::growing::Growing>>,
) -> Result<BuiltLayer, LayerError> {
    if let LayerCompression::Gzip { level } = opts.compression {
        if level > 9 {
            return Err(LayerError::GzipLevel(level));
        }
    }
    let prepared = prepare(entries)?;
    let tmp = NamedTempFile::new_in(tmp_dir).map_err(|source| LayerError::TempFile {
        dir: tmp_dir.to_path_buf(),
        source,
    })?;
    let file_path = tmp.path().to_path_buf();

    let announced = crate::growing::Announce::new(tmp, file_path.clone(), growing);
    let compressed = DigestWriter::new(BufWriter::new(announced));
    let gz = Compressor::new(opts.compression, opts.threads, compressed).map_err(|source| {
        LayerError::Finish {
            file: file_path.clone(),
            source,
        }
    })?;
    let uncompressed = DigestWriter::new(gz);
    let mut builder = tar::Builder::new(ProgressWriter::new(uncompressed, &mut *progress));

    for entry in &prepared {
        append_entry(&mut builder, entry, opts.mtime, &file_path)?;
    }

    let finish_err = |source| LayerError::Finish {
        file: file_path.clone(),
        source,
    };
    let uncompressed = builder.into_inner().map_err(finish_err)?.into_inner();
    let (gz, diff_id, uncompressed_size) = uncompressed.finish();
    let (buffered, digest, size) = gz.finish().map_err(finish_err)?.finish();
    let tmp = buffered
        .into_inner()
        .map_err(|e| finish_err(e.into_error()))?
        .into_inner();
    progress(uncompressed_size);

    Ok(BuiltLayer {
        file: tmp.into_temp_path(),
        digest,
        diff_id,
        size,
        uncompressed_size,
        entries: prepared.len(),
        media_type: opts.compression.media_type(),
        key: None,
    })
}

/// The diff_id `entries` give with `opts` (the sha256 of the uncompressed tar
/// [`build_layer`] writes) and its size, without compressing or writing anything: a pass
/// that costs reading the files, so a layer can be named before it is packed.
pub fn diff_id_of(
    entries: Vec<LayerEntry>,
    opts: &LayerOptions,
) -> Result<(Digest, u64), LayerError> {
    let prepared = prepare(entries)?;
    let mut builder = tar::Builder::new(DigestWriter::new(io::sink()));
    let nowhere = PathBuf::from("(diff_id pass)");
    for entry in &prepared {
        append_entry(&mut builder, entry, opts.mtime, &nowhere)?;
    }
    let hashed = builder.into_inner().map_err(|source| LayerError::Finish {
        file: nowhere.clone(),
        source,
    })?;
    let (_, diff_id, size) = hashed.finish();
    Ok((diff_id, size))
}

/// An entry with its path (and hard-link target) normalized to the bytes
/// written in the archive, without the directory trailing slash.
struct Prepared {
    key: Vec<u8>,
    link: Option<Vec<u8>>,
    entry: LayerEntry,
}

impl Prepared {
    fn is_dir(&self) -> bool {
        matches!(self.entry.kind, EntryKind::Dir)
    }
}

/// Normalizes, sorts, de-duplicates (last wins) and validates the entries.
fn prepare(entries: Vec<LayerEntry>) -> Result<Vec<Prepared>, LayerError> {
    let mut items = entries
        .into_iter()
        .map(prepare_one)
        .collect::<Result<Vec<_>, _>>()?;
    // Stable sort: among equal paths the input order is kept, so the last
    // of each run is the last one given.
    items.sort_by(|a, b| cmp_keys(&a.key, &b.key));
    let mut unique: Vec<Prepared> = Vec::with_capacity(items.len());
    for item in items {
        if unique.last().is_some_and(|last| last.key == item.key) {
            unique.pop();
        }
        unique.push(item);
    }
    for (index, item) in unique.iter().enumerate() {
        check_parent(&unique, index, item)?;
        check_hard_link(&unique, index, item)?;
    }
    Ok(unique)
}

fn prepare_one(entry: LayerEntry) -> Result<Prepared, LayerError> {
    // What regbuild writes, it must be able to read (`tar_read::MAX_ENTRY_SIZE`).
    if let EntryKind::File { size, .. } = entry.kind {
        if size > MAX_ENTRY_SIZE {
            return Err(LayerError::EntryTooLarge {
                path: entry.path,
                size,
                limit: MAX_ENTRY_SIZE,
            });
        }
    }
    // Linux ids are 32-bit; larger values would not survive tar's 8-byte fields.
    if entry.uid > u64::from(u32::MAX) || entry.gid > u64::from(u32::MAX) {
        return Err(LayerError::InvalidOwner {
            path: entry.path,
            uid: entry.uid,
            gid: entry.gid,
        });
    }
    if let Some((name, reason)) = entry
        .xattrs
        .keys()
        .find_map(|n| bad_xattr_name(n).map(|r| (n, r)))
    {
        return Err(LayerError::InvalidXattr {
            path: entry.path,
            name: String::from_utf8_lossy(name).into_owned(),
            reason,
        });
    }
    let key = normalize(&entry.path).map_err(|reason| LayerError::InvalidPath {
        path: entry.path.clone(),
        reason,
    })?;
    let link = match &entry.kind {
        EntryKind::HardLink { target } => Some(normalize(target)),
        EntryKind::Symlink { target } => Some(raw_target(target)),
        _ => None,
    };
    let link = link
        .transpose()
        .map_err(|reason| LayerError::InvalidLinkTarget {
            path: entry.path.clone(),
            target: link_target(&entry.kind).to_path_buf(),
            reason,
        })?;
    Ok(Prepared { key, link, entry })
}

fn link_target(kind: &EntryKind) -> &Path {
    match kind {
        EntryKind::HardLink { target } | EntryKind::Symlink { target } => target,
        _ => Path::new(""),
    }
}

/// Why an xattr name cannot be written as a PAX `SCHILY.xattr.<name>=` key, if it cannot:
/// readers split the record at its first `=`, and Linux names are C strings.
fn bad_xattr_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("the name is empty")
    } else if name.contains(&0) {
        Some("the name contains a NUL byte")
    } else if name.contains(&b'=') {
        Some("the name contains `=`")
    } else {
        None
    }
}

/// In-layer path → archive name bytes: normal components joined with `/`.
fn normalize(path: &Path) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    for component in path.components() {
        let name = match component {
            Component::Normal(name) => name.as_bytes(),
            Component::CurDir => continue,
            Component::ParentDir => return Err("contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        };
        if name.contains(&0) {
            return Err("contains a NUL byte");
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(name);
    }
    if out.is_empty() {
        return Err("is empty");
    }
    Ok(out)
}

/// Symlink targets are kept verbatim; only what tar cannot store is refused.
fn raw_target(target: &Path) -> Result<Vec<u8>, &'static str> {
    let bytes = target.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err("is empty");
    }
    if bytes.contains(&0) {
        return Err("contains a NUL byte");
    }
    Ok(bytes.to_vec())
}

/// Orders normalized paths component by component, so that a directory is
/// immediately followed by its contents (`a`, `a/b`, `a.b`).
fn cmp_keys(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'))
}

fn find(items: &[Prepared], key: &[u8]) -> Option<usize> {
    items.binary_search_by(|item| cmp_keys(&item.key, key)).ok()
}

/// The nearest ancestor present in the layer must be a directory (it is
/// itself checked against its own ancestors, so one level suffices).
fn check_parent(items: &[Prepared], index: usize, item: &Prepared) -> Result<(), LayerError> {
    // Usually the entry just before, in this order: one comparison, not a search (a chain
    // of N nested directories stays linear in the length of its names).
    let parent = item
        .key
        .iter()
        .rposition(|&c| c == b'/')
        .map(|i| &item.key[..i]);
    if let (Some(parent), Some(before)) = (parent, index.checked_sub(1).map(|i| &items[i])) {
        if before.key == parent && before.is_dir() {
            return Ok(());
        }
    }
    let mut ancestor = item.key.as_slice();
    while let Some(slash) = ancestor.iter().rposition(|&c| c == b'/') {
        ancestor = &ancestor[..slash];
        if let Some(i) = find(items, ancestor) {
            if items[i].is_dir() {
                return Ok(());
            }
            return Err(LayerError::ParentNotDir {
                path: item.entry.path.clone(),
                parent: items[i].entry.path.clone(),
            });
        }
    }
    Ok(())
}

fn check_hard_link(items: &[Prepared], index: usize, item: &Prepared) -> Result<(), LayerError> {
    let EntryKind::HardLink { target } = &item.entry.kind else {
        return Ok(());
    };
    let Some(key) = &item.link else {
        return Ok(());
    };
    // Extractors create the link from an already extracted file.
    match find(items, key) {
        Some(i) if i < index && matches!(items[i].entry.kind, EntryKind::File { .. }) => Ok(()),
        _ => Err(LayerError::HardLinkTarget {
            path: item.entry.path.clone(),
            target: target.clone(),
        }),
    }
}

/// Writes one entry (with its long-name extensions) and, for files, the data.
fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    item: &Prepared,
    mtime: u64,
    layer_file: &Path,
) -> Result<(), LayerError> {
    let path = &item.entry.path;
    // Open before writing anything so a bad source fails cleanly.
    let mut source = match &item.entry.kind {
        EntryKind::File { source, size } => Some(SourceReader::open(path, source, *size)?),
        _ => None,
    };
    let mut name = item.key.clone();
    if item.is_dir() {
        name.push(b'/');
    }
    let header = entry_header(item, &name, mtime);
    let write_err = |source| LayerError::WriteEntry {
        path: path.clone(),
        file: layer_file.to_path_buf(),
        source,
    };
    if name.len() > NAME_FIELD_LEN {
        append_long(builder, EntryType::GNULongName, &name).map_err(write_err)?;
    }
    if let Some(link) = item.link.as_deref().filter(|l| l.len() > NAME_FIELD_LEN) {
        append_long(builder, EntryType::GNULongLink, link).map_err(write_err)?;
    }
    if !item.entry.xattrs.is_empty() {
        append_xattrs(builder, &item.entry.xattrs).map_err(write_err)?;
    }
    match source.as_mut() {
        Some(reader) => builder
            .append(&header, &mut *reader)
            .map_err(|e| reader.attribute(e, layer_file)),
        None => builder.append(&header, io::empty()).map_err(write_err),
    }
}

fn entry_header(item: &Prepared, name: &[u8], mtime: u64) -> Header {
    let entry = &item.entry;
    let (entry_type, size) = match &entry.kind {
        EntryKind::File { size, .. } => (EntryType::Regular, *size),
        EntryKind::Dir => (EntryType::Directory, 0),
        EntryKind::Symlink { .. } => (EntryType::Symlink, 0),
        EntryKind::HardLink { .. } => (EntryType::Link, 0),
        EntryKind::CharDevice { .. } => (EntryType::Char, 0),
        EntryKind::BlockDevice { .. } => (EntryType::Block, 0),
        EntryKind::Fifo => (EntryType::Fifo, 0),
    };
    let mut header = Header::new_gnu();
    header.set_entry_type(entry_type);
    if let EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } =
        entry.kind
    {
        // Infallible for GNU headers; the fields stay zero (as for every other entry) if not.
        let _ = header.set_device_major(major);
        let _ = header.set_device_minor(minor);
    }
    header.set_size(size);
    header.set_mode(entry.mode & 0o7777);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(mtime);
    // Raw copies: the long forms, if any, went into extension entries.
    copy_truncated(&mut header.as_old_mut().name, name);
    if let Some(link) = &item.link {
        copy_truncated(&mut header.as_old_mut().linkname, link);
    }
    header.set_cksum();
    header
}

fn copy_truncated(field: &mut [u8; NAME_FIELD_LEN], value: &[u8]) {
    let len = value.len().min(NAME_FIELD_LEN);
    field[..len].copy_from_slice(&value[..len]);
}

/// Writes a GNU `././@LongLink` entry carrying `value` NUL-terminated.
fn append_long<W: Write>(
    builder: &mut tar::Builder<W>,
    kind: EntryType,
    value: &[u8],
) -> io::Result<()> {
    let mut header = Header::new_gnu();
    copy_truncated(&mut header.as_old_mut().name, b"././@LongLink");
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(value.len() as u64 + 1);
    header.set_entry_type(kind);
    header.set_cksum();
    builder.append(&header, value.chain(&[0u8][..]))
}

/// Writes the PAX extension entry carrying `xattrs` for the entry that follows.
fn append_xattrs<W: Write>(builder: &mut tar::Builder<W>, xattrs: &Xattrs) -> io::Result<()> {
    let mut records = Vec::new();
    for (name, value) in xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        records.extend(pax_record(&key, value));
    }
    let mut header = Header::new_gnu();
    copy_truncated(&mut header.as_old_mut().name, b"././@PaxHeader");
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(records.len() as u64);
    header.set_entry_type(EntryType::XHeader);
    header.set_cksum();
    builder.append(&header, records.as_slice())
}

/// One `"<len> <key>=<value>\n"` record; `<len>` counts the whole record, its own digits
/// included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut record = format!("{len} ").into_bytes();
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// Reads exactly the size recorded in the header: a file that shrinks or grows
/// meanwhile would otherwise corrupt the archive or make it irreproducible.
struct SourceReader {
    path: PathBuf,
    disk: PathBuf,
    file: File,
    size: u64,
    remaining: u64,
    changed: bool,
    read_failed: bool,
}

impl SourceReader {
    fn open(path: &Path, disk: &Path, size: u64) -> Result<Self, LayerError> {
        let read_err = |source| LayerError::ReadSource {
            path: path.to_path_buf(),
            disk: disk.to_path_buf(),
            source,
        };
        let not_regular = || LayerError::NotRegularFile {
            path: path.to_path_buf(),
            disk: disk.to_path_buf(),
        };
        // lstat first: opening a FIFO would block, and a symlink would be followed.
        if !fs::symlink_metadata(disk).map_err(read_err)?.is_file() {
            return Err(not_regular());
        }
        let file = File::open(disk).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(not_regular());
        }
        if meta.len() != size {
            return Err(LayerError::SourceChanged {
                path: path.to_path_buf(),
                disk: disk.to_path_buf(),
                expected: size,
            });
        }
        Ok(SourceReader {
            path: path.to_path_buf(),
            disk: disk.to_path_buf(),
            file,
            size,
            remaining: size,
            changed: false,
            read_failed: false,
        })
    }

    /// Tells a failure of this file apart from a failure to write the layer.
    fn attribute(&self, source: io::Error, layer_file: &Path) -> LayerError {
        let (path, disk) = (self.path.clone(), self.disk.clone());
        if self.changed {
            LayerError::SourceChanged {
                path,
                disk,
                expected: self.size,
            }
        } else if self.read_failed {
            LayerError::ReadSource { path, disk, source }
        } else {
            LayerError::WriteEntry {
                path,
                file: layer_file.to_path_buf(),
                source,
            }
        }
    }

    fn changed_error(&mut self) -> io::Error {
        self.changed = true;
        io::Error::other("source file changed size while being read")
    }
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // One probe byte tells whether the file grew past its recorded size.
            let mut probe = [0u8; 1];
            return match self.file.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(self.changed_error()),
                Err(e) => {
                    self.read_failed = true;
                    Err(e)
                }
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        match self.file.read(&mut buf[..want]) {
            Ok(0) if want > 0 => Err(self.changed_error()),
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.read_failed = true;
                Err(e)
            }
        }
    }
}

/// Passes bytes through while hashing and counting them.
struct DigestWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W> DigestWriter<W> {
    fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Returns the inner writer, the digest and the byte count.
    fn finish(self) -> (W, Digest, u64) {
        let count = self.hasher.len();
        (self.inner, self.hasher.finish(), count)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reports the running byte count at most once per [`PROGRESS_STEP`].
struct ProgressWriter<'p, W> {
    inner: W,
    written: u64,
    next_report: u64,
    progress: &'p mut dyn FnMut(u64),
}

impl<'p, W> ProgressWriter<'p, W> {
    fn new(inner: W, progress: &'p mut dyn FnMut(u64)) -> Self {
        ProgressWriter {
            inner,
            written: 0,
            next_report: PROGRESS_STEP,
            progress,
        }
    }

    fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        if self.written >= self.next_report {
            (self.progress)(self.written);
            self.next_report = self.written.saturating_add(PROGRESS_STEP);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// What a reader sees of one archive entry.
    #[derive(Debug)]
    struct Seen {
        path: Vec<u8>,
        kind: EntryType,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        link: Option<Vec<u8>>,
        data: Vec<u8>,
        uname: Vec<u8>,
    }

    fn opts() -> LayerOptions {
        LayerOptions::default()
    }

    fn build(entries: Vec<LayerEntry>, tmp: &Path) -> BuiltLayer {
        build_with(entries, &opts(), tmp)
    }

    fn build_with(entries: Vec<LayerEntry>, opts: &LayerOptions, tmp: &Path) -> BuiltLayer {
        build_layer(entries, opts, tmp, &mut |_| {}).expect("build layer")
    }

    fn sha256_hex(bytes: &[u8]) -> Digest {
        Digest::of(bytes)
    }

    fn decompress(layer: &BuiltLayer) -> Vec<u8> {
        let file = File::open(&layer.file).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn read_back(layer: &BuiltLayer) -> Vec<Seen> {
        let tar_bytes = decompress(layer);
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            seen.push(Seen {
                path: entry.path_bytes().into_owned(),
                kind: header.entry_type(),
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                mtime: header.mtime().unwrap(),
                link: entry.link_name_bytes().map(|l| l.into_owned()),
                data,
                uname: header.username_bytes().unwrap_or_default().to_vec(),
            });
        }
        seen
    }

    fn write_file(path: &Path, content: &[u8], mode: u32) {
        fs::write(path, content).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn file(path: &str, source: &Path, mode: u32) -> LayerEntry {
        let size = fs::metadata(source).unwrap().len();
        LayerEntry {
            path: PathBuf::from(path),
            kind: EntryKind::File {
                source: source.to_path_buf(),
                size,
            },
            mode,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    fn dir(path: impl Into<PathBuf>) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    fn symlink(path: impl Into<PathBuf>, target: impl Into<PathBuf>) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: EntryKind::Symlink {
                target: target.into(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    fn hardlink(path: &str, target: &str) -> LayerEntry {
        LayerEntry {
            path: PathBuf::from(path),
            kind: EntryKind::HardLink {
                target: PathBuf::from(target),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    /// A small tree of every kind, in a scrambled order.
    fn sample(src: &Path) -> Vec<LayerEntry> {
        let a = src.join("a.txt");
        let b = src.join("b.sh");
        write_file(&a, b"hello\n", 0o644);
        write_file(&b, b"#!/bin/sh\necho hi\n", 0o755);
        vec![
            file("app/bin/run.sh", &b, 0o4755),
            dir("app/bin"),
            symlink("app/current", "/app/bin/run.sh"),
            file("app/a.txt", &a, 0o644),
            dir("app"),
            hardlink("app/bin/zz.sh", "app/bin/run.sh"),
            dir("app/empty"),
        ]
    }

    #[test]
    fn same_entries_give_identical_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let entries = sample(tmp.path());
        let one = build(entries.clone(), tmp.path());
        let two = build(entries, tmp.path());
        assert_eq!(one.digest, two.digest);
        assert_eq!(one.diff_id, two.diff_id);
        assert_eq!(fs::read(&one.file).unwrap(), fs::read(&two.file).unwrap());
    }

    #[test]
    fn the_diff_id_pass_names_the_layer_build_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let entries = sample(tmp.path());
        let (diff_id, size) = diff_id_of(entries.clone(), &opts()).unwrap();
        let layer = build(entries, tmp.path());
        assert_eq!((diff_id, size), (layer.diff_id, layer.uncompressed_size));
    }

    #[test]
    fn input_order_does_not_matter() {
        let tmp = tempfile::tempdir().unwrap();
        let entries = sample(tmp.path());
        let mut reversed = entries.clone();
        reversed.reverse();
        assert_eq!(
            build(entries, tmp.path()).digest,
            build(reversed, tmp.path()).digest
        );
    }

    #[test]
    fn digests_match_the_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = build(sample(tmp.path()), tmp.path());
        let blob = fs::read(&layer.file).unwrap();
        let tar_bytes = decompress(&layer);
        assert_eq!(layer.digest, sha256_hex(&blob));
        assert_eq!(layer.diff_id, sha256_hex(&tar_bytes));
        assert_eq!(layer.size, blob.len() as u64);
        assert_eq!(layer.uncompressed_size, tar_bytes.len() as u64);
        assert_eq!(layer.entries, 7);
        // Two zero blocks end the archive; the whole is block-aligned.
        assert_eq!(tar_bytes.len() % 512, 0);
        assert!(tar_bytes[tar_bytes.len() - 1024..].iter().all(|&b| b == 0));
    }

    #[test]
    fn gzip_header_is_machine_independent() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = build(sample(tmp.path()), tmp.path());
        let blob = fs::read(&layer.file).unwrap();
        // magic, deflate, no flags, mtime 0, xfl 0 (level 6), OS 255.
        assert_eq!(&blob[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn entries_read_back_sorted_with_fixed_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let options = LayerOptions {
            mtime: 1_700_000_000,
            compression: LayerCompression::Gzip { level: 9 },
            threads: 1,
        };
        let mut entries = sample(tmp.path());
        entries[0].uid = 1000;
        entries[0].gid = 2000;
        let seen = read_back(&build_with(entries, &options, tmp.path()));
        let names: Vec<&[u8]> = seen.iter().map(|s| s.path.as_slice()).collect();
        assert_eq!(
            names,
            [
                &b"app/"[..],
                b"app/a.txt",
                b"app/bin/",
                b"app/bin/run.sh",
                b"app/bin/zz.sh",
                b"app/current",
                b"app/empty/",
            ]
        );
        assert!(seen.iter().all(|s| s.mtime == 1_700_000_000));
        assert!(seen.iter().all(|s| s.uname.is_empty()));
        let run = &seen[3];
        assert_eq!(run.kind, EntryType::Regular);
        assert_eq!(run.mode, 0o4755);
        assert_eq!((run.uid, run.gid), (1000, 2000));
        assert_eq!(run.data, b"#!/bin/sh\necho hi\n");
        assert_eq!(seen[1].mode, 0o644);
        assert_eq!(seen[1].data, b"hello\n");
        assert_eq!(seen[0].kind, EntryType::Directory);
        assert_eq!(seen[6].kind, EntryType::Directory);
        assert_eq!(seen[4].kind, EntryType::Link);
        assert_eq!(seen[4].link.as_deref(), Some(&b"app/bin/run.sh"[..]));
        assert_eq!(seen[5].kind, EntryType::Symlink);
        assert_eq!(seen[5].link.as_deref(), Some(&b"/app/bin/run.sh"[..]));
    }

    fn special(path: &str, kind: EntryKind, mode: u32) -> LayerEntry {
        LayerEntry {
            kind,
            mode,
            ..dir(path)
        }
    }

    #[test]
    fn devices_fifos_and_xattrs_are_written_as_docker_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("ping");
        write_file(&src, b"ELF", 0o755);
        // Binary, with bytes a PAX record must survive: `=` and NUL (a newline too: below).
        let capability = vec![1u8, 0, 0, 2, b'=', 0, 0x20];
        let long = format!("bin/{}", "p".repeat(120));
        let with_caps = |path: &str| LayerEntry {
            xattrs: [(b"security.capability".to_vec(), capability.clone())]
                .into_iter()
                .collect(),
            ..file(path, &src, 0o755)
        };
        let entries = vec![
            dir("dev"),
            special(
                "dev/null",
                EntryKind::CharDevice { major: 1, minor: 3 },
                0o666,
            ),
            LayerEntry {
                gid: 6,
                ..special(
                    "dev/sda",
                    EntryKind::BlockDevice { major: 8, minor: 0 },
                    0o660,
                )
            },
            special("run/initctl", EntryKind::Fifo, 0o600),
            with_caps("bin/ping"),
            with_caps(&long),
        ];
        let layer = build(entries.clone(), tmp.path());
        assert_eq!(build(entries.clone(), tmp.path()).digest, layer.digest);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            File::open(&layer.file).unwrap(),
        ));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut xattrs = Vec::new();
            if let Some(pax) = entry.pax_extensions().unwrap() {
                for ext in pax {
                    let ext = ext.unwrap();
                    xattrs.push((ext.key_bytes().to_vec(), ext.value_bytes().to_vec()));
                }
            }
            let h = entry.header();
            // Other entries leave the device fields empty (as before devices existed).
            let device = matches!(h.entry_type(), EntryType::Char | EntryType::Block);
            let number = |n: io::Result<Option<u32>>| if device { n.unwrap().unwrap() } else { 0 };
            seen.push((
                entry.path_bytes().into_owned(),
                h.entry_type(),
                h.mode().unwrap(),
                h.gid().unwrap(),
                number(h.device_major()),
                number(h.device_minor()),
                xattrs,
            ));
        }
        let caps = vec![(b"SCHILY.xattr.security.capability".to_vec(), capability)];
        let want = vec![
            (
                b"bin/ping".to_vec(),
                EntryType::Regular,
                0o755,
                0,
                0,
                0,
                caps.clone(),
            ),
            (
                long.clone().into_bytes(),
                EntryType::Regular,
                0o755,
                0,
                0,
                0,
                caps,
            ),
            (
                b"dev/".to_vec(),
                EntryType::Directory,
                0o755,
                0,
                0,
                0,
                vec![],
            ),
            (
                b"dev/null".to_vec(),
                EntryType::Char,
                0o666,
                0,
                1,
                3,
                vec![],
            ),
            (
                b"dev/sda".to_vec(),
                EntryType::Block,
                0o660,
                6,
                8,
                0,
                vec![],
            ),
            (
                b"run/initctl".to_vec(),
                EntryType::Fifo,
                0o600,
                0,
                0,
                0,
                vec![],
            ),
        ];
        assert_eq!(seen, want);

        // Each of them decides the bytes.
        let variants = [
            special(
                "dev/null",
                EntryKind::CharDevice { major: 1, minor: 5 },
                0o666,
            ),
            special(
                "dev/null",
                EntryKind::BlockDevice { major: 1, minor: 3 },
                0o666,
            ),
            special("dev/null", EntryKind::Fifo, 0o666),
        ];
        for variant in variants {
            let mut changed = entries.clone();
            changed[1] = variant;
            assert_ne!(build(changed, tmp.path()).digest, layer.digest);
        }
        let mut changed = entries.clone();
        changed[4]
            .xattrs
            .insert(b"security.capability".to_vec(), vec![2]);
        assert_ne!(build(changed, tmp.path()).digest, layer.digest);

        // Records are length-delimited, so a newline in a value survives (the `tar` crate's
        // reader splits at newlines; Go's, and ours, do not).
        let mut newline = entries[4].clone();
        newline
            .xattrs
            .insert(b"security.capability".to_vec(), b"a\nb".to_vec());
        let layer = build(vec![newline], tmp.path());
        let out = tempfile::tempdir().unwrap();
        let (_, reader) = crate::extract::open_archive(&layer.file).unwrap();
        let got = crate::extract::extract_archive("layer", reader, out.path(), &Default::default())
            .unwrap();
        assert_eq!(
            got.xattrs[Path::new("bin/ping")][&b"security.capability"[..]],
            b"a\nb"
        );
    }

    #[test]
    fn xattr_names_pax_cannot_hold_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [&b""[..], b"user.a=b", b"user.\0"] {
            let entry = LayerEntry {
                xattrs: [(name.to_vec(), b"v".to_vec())].into_iter().collect(),
                ..dir("d")
            };
            let err = build_layer(vec![entry], &opts(), tmp.path(), &mut |_| {}).unwrap_err();
            assert!(matches!(err, LayerError::InvalidXattr { .. }), "{err}");
            assert!(err.to_string().contains("\"d\""), "{err}");
        }
    }

    #[test]
    fn children_follow_their_parent_directly() {
        let tmp = tempfile::tempdir().unwrap();
        let entries = vec![dir("a.b"), dir("a-b"), dir("a/b"), dir("a"), dir("a/b/c")];
        let seen = read_back(&build(entries, tmp.path()));
        let names: Vec<&[u8]> = seen.iter().map(|s| s.path.as_slice()).collect();
        assert_eq!(names, [&b"a/"[..], b"a/b/", b"a/b/c/", b"a-b/", b"a.b/"]);
    }

    #[test]
    fn any_change_changes_the_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        write_file(&a, b"one", 0o644);
        write_file(&b, b"two", 0o644);
        let base = build(vec![file("x", &a, 0o644)], tmp.path()).digest;
        let variants = [
            vec![file("x", &b, 0o644)],
            vec![file("x", &a, 0o755)],
            vec![file("y", &a, 0o644)],
            vec![LayerEntry {
                uid: 1,
                ..file("x", &a, 0o644)
            }],
        ];
        for entries in variants {
            assert_ne!(build(entries, tmp.path()).digest, base);
        }
        let later = LayerOptions { mtime: 1, ..opts() };
        assert_ne!(
            build_with(vec![file("x", &a, 0o644)], &later, tmp.path()).digest,
            base
        );
    }

    #[test]
    fn last_duplicate_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        write_file(&a, b"first", 0o644);
        write_file(&b, b"second", 0o644);
        let layer = build(
            vec![file("x", &a, 0o644), dir("d"), file("x", &b, 0o600)],
            tmp.path(),
        );
        let seen = read_back(&layer);
        assert_eq!(layer.entries, 2);
        assert_eq!(seen[1].data, b"second");
        assert_eq!(seen[1].mode, 0o600);
    }

    #[test]
    fn long_names_and_targets_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("f");
        write_file(&src, b"data", 0o644);
        let exactly_100 = "n".repeat(100);
        let over_100 = format!("{}/{}", "d".repeat(60), "f".repeat(60));
        let over_255 = format!("{}/{}/{}", "d".repeat(60), "e".repeat(200), "g".repeat(200));
        let long_target = format!("/{}", "t".repeat(300));
        let entries = vec![
            file(&exactly_100, &src, 0o644),
            dir("d".repeat(60)),
            file(&over_100, &src, 0o644),
            dir(format!("{}/{}", "d".repeat(60), "e".repeat(200))),
            symlink(over_255.clone(), long_target.clone()),
            hardlink(
                &format!("{}/{}", "d".repeat(60), "h".repeat(150)),
                &over_100,
            ),
        ];
        let seen = read_back(&build(entries, tmp.path()));
        let find = |name: &str| seen.iter().find(|s| s.path == name.as_bytes()).unwrap();
        assert_eq!(find(&exactly_100).data, b"data");
        assert_eq!(find(&over_100).data, b"data");
        assert!(seen
            .iter()
            .any(|s| s.path == format!("{}/{}/", "d".repeat(60), "e".repeat(200)).as_bytes()));
        assert_eq!(
            find(&over_255).link.as_deref(),
            Some(long_target.as_bytes())
        );
        let link = find(&format!("{}/{}", "d".repeat(60), "h".repeat(150)));
        assert_eq!(link.kind, EntryType::Link);
        assert_eq!(link.link.as_deref(), Some(over_100.as_bytes()));
    }

    #[test]
    fn non_utf8_names_and_targets_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("f");
        write_file(&src, b"data", 0o644);
        let short = PathBuf::from(OsStr::from_bytes(b"caf\xe9"));
        // Long and starting with an invalid byte: no UTF-8 prefix at all.
        let mut long_bytes = vec![0xff];
        long_bytes.extend(std::iter::repeat_n(b'x', 150));
        let long = PathBuf::from(OsStr::from_bytes(&long_bytes));
        let target = PathBuf::from(OsStr::from_bytes(b"../\xfe\xfd"));
        let entries = vec![
            LayerEntry {
                path: short.clone(),
                ..file("unused", &src, 0o644)
            },
            symlink(long.clone(), target),
            dir(PathBuf::from(OsStr::from_bytes(b"\xc3("))),
        ];
        let seen = read_back(&build(entries, tmp.path()));
        let paths: Vec<&[u8]> = seen.iter().map(|s| s.path.as_slice()).collect();
        assert_eq!(paths, [&b"caf\xe9"[..], b"\xc3(/", &long_bytes[..]]);
        assert_eq!(seen[0].data, b"data");
        assert_eq!(seen[2].link.as_deref(), Some(&b"../\xfe\xfd"[..]));
    }

    #[test]
    fn paths_are_normalized() {
        let tmp = tempfile::tempdir().unwrap();
        let entries = vec![dir("./a//b/"), dir("a")];
        let seen = read_back(&build(entries, tmp.path()));
        let paths: Vec<&[u8]> = seen.iter().map(|s| s.path.as_slice()).collect();
        assert_eq!(paths, [&b"a/"[..], b"a/b/"]);
    }

    #[test]
    fn bad_paths_are_refused_with_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let nul = PathBuf::from(OsStr::from_bytes(b"a\0b"));
        for path in [
            PathBuf::from("/etc"),
            PathBuf::from("a/../../b"),
            PathBuf::from(""),
            PathBuf::from("."),
            nul,
        ] {
            let err =
                build_layer(vec![dir(path.clone())], &opts(), tmp.path(), &mut |_| {}).unwrap_err();
            assert!(matches!(err, LayerError::InvalidPath { .. }), "{err}");
        }
        let err = build_layer(vec![dir("/etc/x")], &opts(), tmp.path(), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("/etc/x"), "{err}");
    }

    #[test]
    fn bad_links_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("f");
        write_file(&src, b"x", 0o644);
        let cases = vec![
            vec![hardlink("a", "missing")],
            vec![dir("d"), hardlink("a", "d")],
            // The target must come first in the archive.
            vec![file("z", &src, 0o644), hardlink("a", "z")],
            vec![file("a", &src, 0o644), hardlink("b", "../a")],
            vec![symlink("s", "")],
            vec![symlink("s", OsStr::from_bytes(b"a\0"))],
        ];
        for entries in cases {
            let err = build_layer(entries, &opts(), tmp.path(), &mut |_| {}).unwrap_err();
            assert!(
                matches!(
                    err,
                    LayerError::HardLinkTarget { .. } | LayerError::InvalidLinkTarget { .. }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn entry_below_a_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("f");
        write_file(&src, b"x", 0o644);
        for below in ["a/b", "a/b/c"] {
            let entries = vec![file("a", &src, 0o644), dir(below), dir("z")];
            let err = build_layer(entries, &opts(), tmp.path(), &mut |_| {}).unwrap_err();
            assert!(matches!(err, LayerError::ParentNotDir { .. }), "{err}");
            assert!(err.to_string().contains(below), "{err}");
        }
        // Missing parents are fine: the base image may provide them.
        build(vec![dir("x/y/z"), dir("x")], tmp.path());
    }

    #[test]
    fn bad_options_and_owners_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let level = LayerOptions {
            compression: LayerCompression::Gzip { level: 10 },
            threads: 1,
            ..opts()
        };
        assert!(matches!(
            build_layer(vec![dir("a")], &level, tmp.path(), &mut |_| {}),
            Err(LayerError::GzipLevel(10))
        ));
        let owner = LayerEntry {
            uid: u64::MAX,
            ..dir("a")
        };
        assert!(matches!(
            build_layer(vec![owner], &opts(), tmp.path(), &mut |_| {}),
            Err(LayerError::InvalidOwner { .. })
        ));
    }

    #[test]
    fn no_layer_holds_an_entry_its_reader_would_refuse() {
        let tmp = tempfile::tempdir().unwrap();
        let huge = LayerEntry {
            path: "big".into(),
            kind: EntryKind::File {
                // Refused before anything is read: the source need not exist.
                source: tmp.path().join("never-read"),
                size: MAX_ENTRY_SIZE + 1,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Xattrs::new(),
        };
        for err in [
            build_layer(vec![huge.clone()], &opts(), tmp.path(), &mut |_| {}).unwrap_err(),
            diff_id_of(vec![huge], &opts()).unwrap_err(),
        ] {
            let LayerError::EntryTooLarge { path, size, limit } = &err else {
                panic!("{err}");
            };
            assert_eq!(
                (path.as_path(), *size, *limit),
                (Path::new("big"), MAX_ENTRY_SIZE + 1, MAX_ENTRY_SIZE)
            );
            assert_eq!(*limit, crate::tar_read::Limits::default().max_entry_size);
        }
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let options = LayerOptions {
            mtime: u64::MAX,
            compression: LayerCompression::Gzip { level: 0 },
            threads: 1,
        };
        let entry = LayerEntry {
            uid: u64::from(u32::MAX),
            gid: u64::from(u32::MAX),
            mode: u32::MAX,
            ..dir("a")
        };
        let layer = build_with(vec![entry], &options, tmp.path());
        let seen = read_back(&layer);
        assert_eq!(seen[0].mode, 0o7777);
        assert_eq!(seen[0].uid, u64::from(u32::MAX));
        assert_eq!(seen[0].mtime, u64::MAX);
        assert!(build_with(vec![], &opts(), tmp.path()).size > 0);
    }

    #[test]
    fn source_problems_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("f");
        write_file(&src, b"12345", 0o644);
        let wrong_size = LayerEntry {
            kind: EntryKind::File {
                source: src.clone(),
                size: 3,
            },
            ..file("x", &src, 0o644)
        };
        let missing = LayerEntry {
            kind: EntryKind::File {
                source: tmp.path().join("gone"),
                size: 0,
            },
            ..dir("x")
        };
        let not_file = LayerEntry {
            kind: EntryKind::File {
                source: tmp.path().to_path_buf(),
                size: 0,
            },
            ..dir("x")
        };
        for (entry, expect) in [
            (wrong_size, "changed"),
            (missing, "gone"),
            (not_file, "not a regular file"),
        ] {
            let err = build_layer(vec![entry], &opts(), tmp.path(), &mut |_| {}).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(expect), "{message}");
            assert!(message.contains("\"x\""), "{message}");
        }
    }

    #[test]
    fn source_reader_notices_growth_and_shrinkage() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("f");
        write_file(&src, b"12345", 0o644);
        let mut reader = SourceReader::open(Path::new("x"), &src, 5).unwrap();
        fs::write(&src, b"1234567").unwrap();
        assert!(io::copy(&mut reader, &mut io::sink()).is_err());
        assert!(reader.changed);

        write_file(&src, b"12345", 0o644);
        let mut reader = SourceReader::open(Path::new("x"), &src, 5).unwrap();
        fs::write(&src, b"12").unwrap();
        assert!(io::copy(&mut reader, &mut io::sink()).is_err());
        let err = reader.attribute(io::Error::other("x"), Path::new("layer"));
        assert!(matches!(err, LayerError::SourceChanged { .. }), "{err}");
    }

    #[test]
    fn missing_tmp_dir_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = build_layer(vec![dir("a")], &opts(), &missing, &mut |_| {}).unwrap_err();
        assert!(matches!(err, LayerError::TempFile { .. }));
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn large_file_streams_and_reports_progress() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("big");
        let size = 50 * 1024 * 1024 + 7;
        {
            // Sparse zeros with a little data at the end.
            let f = File::create(&src).unwrap();
            f.set_len(size - 7).unwrap();
            let mut f = fs::OpenOptions::new().append(true).open(&src).unwrap();
            f.write_all(b"the end").unwrap();
        }
        let mut reports = Vec::new();
        let layer = build_layer(
            vec![file("big", &src, 0o644)],
            &opts(),
            tmp.path(),
            &mut |n| reports.push(n),
        )
        .unwrap();
        assert!(layer.uncompressed_size > size);
        assert!(layer.size < layer.uncompressed_size / 100);
        assert!(reports.len() >= 50);
        assert!(reports.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(reports.last(), Some(&layer.uncompressed_size));

        // Check the content and diff_id by streaming, not buffering.
        let mut decoder = flate2::read::GzDecoder::new(File::open(&layer.file).unwrap());
        let mut hasher = DigestWriter::new(io::sink());
        io::copy(&mut decoder, &mut hasher).unwrap();
        let (_, diff_id, count) = hasher.finish();
        assert_eq!(diff_id, layer.diff_id);
        assert_eq!(count, layer.uncompressed_size);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            File::open(&layer.file).unwrap(),
        ));
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.size(), size);
        let mut tail = Vec::new();
        io::copy(&mut (&mut entry).take(size - 7), &mut io::sink()).unwrap();
        entry.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, b"the end");
    }

    #[test]
    fn the_layer_file_is_removed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = build(vec![dir("a")], tmp.path());
        let path = layer.file.to_path_buf();
        assert!(path.exists());
        drop(layer);
        assert!(!path.exists());
    }
}
