//! The one reader of tar streams: 512-byte blocks in, entries out, each with its header
//! (after GNU long names and PAX records were applied) and a reader of its data that streams
//! from the input. Extraction (`crate::extract`) and `regbuild inspect` both read archives
//! with it.
//!
//! It walks the blocks itself and only uses [`tar::Header`] to decode fields: the `tar`
//! crate's `Archive` reads extension records (GNU long names, PAX) whole, with no cap, and
//! every archive read here is treated as hostile. So:
//!
//! - every header's checksum is checked (unsigned and signed sums are both accepted: both
//!   kinds of writer exist);
//! - extension records are capped at [`MAX_EXTENSION_LEN`] and read before any allocation
//!   only when under it; PAX `path`, `linkpath`, `size`, `uid`, `gid` and
//!   `SCHILY.xattr.<name>` records are kept, others ignored; GNU long names lose their
//!   trailing NULs; PAX global headers are skipped;
//! - [`Limits`] bound the number of headers and the declared data sizes, checked before
//!   anything is read (a [`Budget`] can carry the counts over several streams);
//! - reading stops at the first all-zero block (trailing data is not read) or at a clean
//!   end between headers or where an entry's padding should start, as GNU tar and Go's
//!   `archive/tar` accept; a stream ending anywhere else is [`TarErrorKind::Truncated`];
//! - old GNU sparse entries have their extension blocks skipped (each counts as a header),
//!   their data is not interpreted.
//!
//! Where its two users read archives differently on purpose, [`Rules`] says which way.
//!
//! It is not for writing tars (`crate::layer`), for deciding what a name means on disk
//! (cleaning, whiteouts: `crate::extract`) or for decompression (`crate::compress`).

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use tar::{EntryType, Header};

/// Size of a tar header and of the unit data is padded to.
pub const BLOCK: usize = 512;
/// Largest GNU long name/link or PAX record accepted. Real names are at most
/// a few KiB; this bound keeps a hostile header from claiming gigabytes.
pub const MAX_EXTENSION_LEN: u64 = 1 << 20;
/// In a GNU sparse header, the byte that says extension blocks follow.
const GNU_SPARSE_ISEXTENDED: usize = 482;
/// The same flag in each sparse extension block.
const GNU_SPARSE_EXT_ISEXTENDED: usize = 504;
/// Where a header keeps its type flag.
const TYPEFLAG_AT: usize = 156;
/// Extended attributes by name (`security.capability`, …): sorted, so the bytes do not
/// depend on the order they were found in. The reader's, so that it needs nothing of the
/// writer (`crate::layer`, which re-exports it).
pub type Xattrs = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// The PAX record key prefix of an extended attribute (Go's `archive/tar`, GNU tar, star).
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// The largest entry regbuild reads (64 GiB of data), and so the largest it writes: a RUN
/// step leaving a larger file fails at that step (`regbuild_rootfs::upper`), and no layer is
/// built with one (`crate::layer`), so every layer regbuild pushes, it can unpack again. It
/// bounds the work one entry can cause; no file an image should carry comes near it.
pub const MAX_ENTRY_SIZE: u64 = 64 << 30;

/// Sizes and counts past which an archive is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest declared data size of a single entry.
    pub max_entry_size: u64,
    /// Largest sum of declared data sizes. An `Overlay` sums over all its
    /// layers. Skipped entries count too: their data is read all the same.
    pub max_total_size: u64,
    /// Most headers, extension headers included. An `Overlay` counts over
    /// all its layers.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_size: MAX_ENTRY_SIZE,
            max_total_size: 256 << 30,
            max_entries: 10_000_000,
        }
    }
}

impl Limits {
    /// No limit at all.
    pub const NONE: Limits = Limits {
        max_entry_size: u64::MAX,
        max_total_size: u64::MAX,
        max_entries: u64::MAX,
    };
}

/// What [`Limits`] are checked against: headers read and data sizes declared so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    entries: u64,
    bytes: u64,
}

/// How a stream is read where readers of tar disagree. Extraction and `inspect` each state
/// theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub limits: Limits,
    /// `true`: header-only entry types (hard links, symlinks, character and block devices,
    /// directories, FIFOs) have no data whatever their size field says, as Go's
    /// `archive/tar` reads them. `false`: every entry's data is as long as its size says.
    pub header_only_types_have_no_data: bool,
    /// `true`: a PAX `path`/`linkpath` record wins over a GNU long name/link whatever their
    /// order. `false`: the later extension header wins.
    pub pax_names_win: bool,
    /// `true`: extension headers that no entry follows are an error. `false`: ignored.
    pub refuse_dangling_extensions: bool,
    /// Most extension blocks of one old GNU sparse entry; `None`: only
    /// [`Limits::max_entries`] bounds them.
    pub max_sparse_blocks: Option<u64>,
}

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TarErrorKind {
    #[error("{0}")]
    Read(io::Error),
    /// The stream ends inside a header, extension record or entry data.
    #[error("truncated")]
    Truncated,
    #[error("header checksum mismatch")]
    BadChecksum,
    #[error("bad size field: {0}")]
    BadSize(io::Error),
    #[error(
        "extension header of {size} bytes is over the limit of {}",
        MAX_EXTENSION_LEN
    )]
    ExtensionTooLong { size: u64 },
    #[error("malformed PAX record")]
    MalformedPax,
    #[error("bad PAX size record")]
    BadPaxSize,
    #[error("extension header not followed by an entry")]
    DanglingExtension,
    #[error("endless sparse header chain")]
    SparseChainTooLong,
    #[error("over the limit of {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("declares {size} bytes, over the limit of {limit} per entry")]
    EntryTooLarge { size: u64, limit: u64 },
    #[error("takes the data over the limit of {limit} bytes in total")]
    TotalTooLarge { limit: u64 },
}

/// What the reader was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading or checking a header block.
    Header,
    /// Reading a GNU long name/link or PAX record.
    Extension,
    /// Skipping the padding after an extension record.
    ExtensionPadding,
    /// Skipping a PAX global header's records.
    GlobalExtension,
    /// Skipping an old GNU sparse entry's extension blocks.
    SparseMap,
    /// Skipping what the caller left of an entry's data.
    Data,
    /// Skipping the padding after an entry's data.
    Padding,
    /// At the end of the archive.
    End,
}

/// A tar stream that could not be read, and where.
#[derive(Debug, thiserror::Error)]
#[error("{kind} (near {near:?})")]
pub struct TarError {
    pub kind: TarErrorKind,
    pub stage: Stage,
    /// The name in the latest header read; for an entry, its name after extensions.
    pub near: PathBuf,
    /// The name of the latest entry (not extension header) read; empty before the first.
    pub last_entry: PathBuf,
}

/// What [`TarReader::next_item`] read.
pub enum Item<'a, R> {
    /// A GNU long name/link, PAX or PAX global header: it applies to the next entry.
    Extension,
    Entry(Entry<'a, R>),
}

/// An entry whose header was read. Its data is read through [`Entry::data`]; whatever is
/// left of it is skipped by the next [`TarReader::next_item`].
pub struct Entry<'a, R> {
    reader: &'a mut TarReader<R>,
}

/// The data of an entry: exactly [`Entry::size`] bytes, fewer if the stream ends early
/// (the next [`TarReader::next_item`] then reports it truncated).
pub struct Data<'a, R> {
    reader: &'a mut TarReader<R>,
}

/// Reads a tar stream entry by entry. See the module documentation.
pub struct TarReader<R> {
    input: R,
    rules: Rules,
    budget: Budget,
    ext: Extensions,
    near: PathBuf,
    last_entry: PathBuf,
    current: Current,
    /// Bytes of the current entry's data not read yet.
    data_left: u64,
    /// Padding after the current entry's data, still to skip.
    padding: u64,
    /// The current entry's sparse extension blocks are still to skip.
    sparse_pending: bool,
    /// An entry was returned and not finished yet.
    in_entry: bool,
    ended: bool,
}

/// The header of the current entry, with its extensions applied.
#[derive(Default)]
struct Current {
    block: Vec<u8>,
    path: Vec<u8>,
    link: Vec<u8>,
    size: u64,
    uid: Option<u64>,
    gid: Option<u64>,
    xattrs: Xattrs,
}

/// Extension headers waiting for the entry they describe.
#[derive(Debug, Default)]
struct Extensions {
    path: Option<Vec<u8>>,
    path_from_pax: bool,
    link: Option<Vec<u8>>,
    link_from_pax: bool,
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

impl<R: Read> TarReader<R> {
    pub fn new(input: R, rules: Rules) -> TarReader<R> {
        TarReader::with_budget(input, rules, Budget::default())
    }

    /// Counts the limits from `budget` on, e.g. what earlier layers used.
    pub fn with_budget(input: R, rules: Rules, budget: Budget) -> TarReader<R> {
        TarReader {
            input,
            rules,
            budget,
            ext: Extensions::default(),
            near: PathBuf::new(),
            last_entry: PathBuf::new(),
            current: Current::default(),
            data_left: 0,
            padding: 0,
            sparse_pending: false,
            in_entry: false,
            ended: false,
        }
    }

    /// What was counted against the limits so far.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// The next header: an extension header or an entry, `None` at the end of the archive.
    /// What the previous entry left of its data is skipped first.
    pub fn next_item(&mut self) -> Result<Option<Item<'_, R>>, TarError> {
        if self.in_entry {
            self.finish_entry()?;
        }
        if self.ended {
            return Ok(None);
        }
        let mut block = [0u8; BLOCK];
        if !self.read_header(&mut block)? {
            return self.end();
        }
        let header = Header::from_byte_slice(&block);
        self.near = os_path(&header.path_bytes());
        self.count_entry(Stage::Header)?;
        if !checksum_ok(&block, header) {
            return Err(self.error(TarErrorKind::BadChecksum, Stage::Header));
        }
        let size = header
            .entry_size()
            .map_err(|e| self.error(TarErrorKind::BadSize(e), Stage::Header))?;
        match header.entry_type() {
            EntryType::GNULongName => {
                let name = trim_nuls(self.read_extension(size)?);
                self.set_path(name, false);
            }
            EntryType::GNULongLink => {
                let link = trim_nuls(self.read_extension(size)?);
                self.set_link(link, false);
            }
            EntryType::XHeader => {
                let records = self.read_extension(size)?;
                self.apply_pax(&records)?;
            }
            // Archive-wide defaults: nothing read here depends on them.
            EntryType::XGlobalHeader => {
                self.charge(size, Stage::GlobalExtension)?;
                self.skip(size, Stage::GlobalExtension)?;
                self.skip(padding(size), Stage::GlobalExtension)?;
            }
            _ => {
                self.start_entry(&block, size)?;
                return Ok(Some(Item::Entry(Entry { reader: self })));
            }
        }
        Ok(Some(Item::Extension))
    }

    /// Reads the next header block. Returns false at the end of the archive.
    fn read_header(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let filled = fill(&mut self.input, block)
            .map_err(|e| self.error(TarErrorKind::Read(e), Stage::Header))?;
        match filled {
            BLOCK => Ok(block.iter().any(|b| *b != 0)),
            // A clean end at a header boundary: accepted, as other tars do.
            0 => Ok(false),
            _ => Err(self.error(TarErrorKind::Truncated, Stage::Header)),
        }
    }

    fn end(&mut self) -> Result<Option<Item<'_, R>>, TarError> {
        if self.rules.refuse_dangling_extensions && !self.ext.is_empty() {
            return Err(self.error(TarErrorKind::DanglingExtension, Stage::End));
        }
        self.ended = true;
        Ok(None)
    }

    fn start_entry(&mut self, block: &[u8; BLOCK], header_size: u64) -> Result<(), TarError> {
        let header = Header::from_byte_slice(block);
        let ext = std::mem::take(&mut self.ext);
        let path = ext.path.unwrap_or_else(|| header.path_bytes().into_owned());
        let link = ext
            .link
            .or_else(|| header.link_name_bytes().map(Cow::into_owned))
            .unwrap_or_default();
        let declared = ext.size.unwrap_or(header_size);
        self.near = os_path(&path);
        self.last_entry = self.near.clone();
        self.charge(declared, Stage::Header)?;
        let header_only = matches!(block[TYPEFLAG_AT], b'1'..=b'6');
        let size = if self.rules.header_only_types_have_no_data && header_only {
            0
        } else {
            declared
        };
        self.sparse_pending = header.entry_type().is_gnu_sparse()
            && header.as_gnu().is_some()
            && block[GNU_SPARSE_ISEXTENDED] != 0;
        self.data_left = size;
        self.padding = padding(size);
        self.in_entry = true;
        self.current = Current {
            block: block.to_vec(),
            path,
            link,
            size,
            uid: ext.uid,
            gid: ext.gid,
            xattrs: ext.xattrs,
        };
        Ok(())
    }

    /// Skips what is left of the current entry: its sparse map, data and padding.
    fn finish_entry(&mut self) -> Result<(), TarError> {
        self.skip_sparse_map()?;
        let left = std::mem::take(&mut self.data_left);
        self.skip(left, Stage::Data)?;
        let padding = std::mem::take(&mut self.padding);
        self.in_entry = false;
        let skipped = io::copy(&mut (&mut self.input).take(padding), &mut io::sink())
            .map_err(|e| self.error(TarErrorKind::Read(e), Stage::Padding))?;
        match skipped {
            n if n == padding => Ok(()),
            // The input ended right after the entry's data, without padding or the
            // end-of-archive blocks: some writers (umoci 0.4 `insert`) produce exactly that,
            // and Go's reader accepts it. The data itself was complete.
            0 => {
                self.ended = true;
                Ok(())
            }
            _ => Err(self.error(TarErrorKind::Truncated, Stage::Padding)),
        }
    }

    fn set_path(&mut self, path: Vec<u8>, from_pax: bool) {
        if from_pax || !(self.rules.pax_names_win && self.ext.path_from_pax) {
            self.ext.path = Some(path);
            self.ext.path_from_pax = from_pax;
        }
    }

    fn set_link(&mut self, link: Vec<u8>, from_pax: bool) {
        if from_pax || !(self.rules.pax_names_win && self.ext.link_from_pax) {
            self.ext.link = Some(link);
            self.ext.link_from_pax = from_pax;
        }
    }

    /// Reads a GNU long name/link or PAX record, refusing absurd sizes before
    /// allocating anything.
    fn read_extension(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXTENSION_LEN {
            return Err(self.error(TarErrorKind::ExtensionTooLong { size }, Stage::Extension));
        }
        self.charge(size, Stage::Extension)?;
        let mut data = Vec::new();
        (&mut self.input)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| self.error(TarErrorKind::Read(e), Stage::Extension))?;
        if (data.len() as u64) < size {
            return Err(self.error(TarErrorKind::Truncated, Stage::Extension));
        }
        self.skip(padding(size), Stage::ExtensionPadding)?;
        Ok(data)
    }

    /// Applies the PAX records kept: `path`, `linkpath` and `size`, plus `uid` and `gid`
    /// (ignored when not a decimal number) and `SCHILY.xattr.<name>` (the last record for a
    /// name wins).
    fn apply_pax(&mut self, mut records: &[u8]) -> Result<(), TarError> {
        // Some writers leave NUL padding after the last record.
        while records.iter().any(|b| *b != 0) {
            let Some((key, value, rest)) = pax_record(records) else {
                return Err(self.error(TarErrorKind::MalformedPax, Stage::Extension));
            };
            match key {
                b"path" => self.set_path(value.to_vec(), true),
                b"linkpath" => self.set_link(value.to_vec(), true),
                b"size" => {
                    let size = std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| self.error(TarErrorKind::BadPaxSize, Stage::Extension))?;
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
    fn skip_sparse_map(&mut self) -> Result<(), TarError> {
        if !std::mem::take(&mut self.sparse_pending) {
            return Ok(());
        }
        let mut block = [0u8; BLOCK];
        let mut read = 0u64;
        loop {
            if self.rules.max_sparse_blocks.is_some_and(|max| read >= max) {
                return Err(self.error(TarErrorKind::SparseChainTooLong, Stage::SparseMap));
            }
            self.count_entry(Stage::SparseMap)?;
            let filled = fill(&mut self.input, &mut block)
                .map_err(|e| self.error(TarErrorKind::Read(e), Stage::SparseMap))?;
            if filled < BLOCK {
                return Err(self.error(TarErrorKind::Truncated, Stage::SparseMap));
            }
            read += 1;
            if block[GNU_SPARSE_EXT_ISEXTENDED] == 0 {
                return Ok(());
            }
        }
    }

    fn count_entry(&mut self, stage: Stage) -> Result<(), TarError> {
        self.budget.entries += 1;
        let limit = self.rules.limits.max_entries;
        if self.budget.entries > limit {
            return Err(self.error(TarErrorKind::TooManyEntries { limit }, stage));
        }
        Ok(())
    }

    /// Checks a declared data size against the limits. This runs before any
    /// of the data is read.
    fn charge(&mut self, size: u64, stage: Stage) -> Result<(), TarError> {
        let limits = self.rules.limits;
        if size > limits.max_entry_size {
            let limit = limits.max_entry_size;
            return Err(self.error(TarErrorKind::EntryTooLarge { size, limit }, stage));
        }
        let total = self.budget.bytes.saturating_add(size);
        if total > limits.max_total_size {
            let limit = limits.max_total_size;
            return Err(self.error(TarErrorKind::TotalTooLarge { limit }, stage));
        }
        self.budget.bytes = total;
        Ok(())
    }

    fn skip(&mut self, len: u64, stage: Stage) -> Result<(), TarError> {
        let skipped = io::copy(&mut (&mut self.input).take(len), &mut io::sink())
            .map_err(|e| self.error(TarErrorKind::Read(e), stage))?;
        if skipped < len {
            return Err(self.error(TarErrorKind::Truncated, stage));
        }
        Ok(())
    }

    fn error(&self, kind: TarErrorKind, stage: Stage) -> TarError {
        TarError {
            kind,
            stage,
            near: self.near.clone(),
            last_entry: self.last_entry.clone(),
        }
    }
}

impl<'a, R: Read> Entry<'a, R> {
    /// The entry's own header block (not its extension headers).
    pub fn header(&self) -> &Header {
        Header::from_byte_slice(&self.reader.current.block)
    }

    /// The name: a PAX `path` or GNU long name if there was one, else the header's
    /// (ustar prefix included).
    pub fn path_bytes(&self) -> &[u8] {
        &self.reader.current.path
    }

    /// The link target: a PAX `linkpath` or GNU long link if there was one, else the
    /// header's; empty when none.
    pub fn link_bytes(&self) -> &[u8] {
        &self.reader.current.link
    }

    /// Bytes of data: a PAX `size` if there was one, else the header's (0 for header-only
    /// types under [`Rules::header_only_types_have_no_data`]).
    pub fn size(&self) -> u64 {
        self.reader.current.size
    }

    /// The PAX `uid` record, when it was a decimal number.
    pub fn pax_uid(&self) -> Option<u64> {
        self.reader.current.uid
    }

    /// The PAX `gid` record, when it was a decimal number.
    pub fn pax_gid(&self) -> Option<u64> {
        self.reader.current.gid
    }

    /// The PAX `SCHILY.xattr.*` records.
    pub fn xattrs(&self) -> &Xattrs {
        &self.reader.current.xattrs
    }

    /// Reads the rest of the header (an old GNU sparse entry's extension blocks, which are
    /// not kept) and returns a reader of the data.
    pub fn data(self) -> Result<Data<'a, R>, TarError> {
        self.reader.skip_sparse_map()?;
        Ok(Data {
            reader: self.reader,
        })
    }
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let reader = &mut *self.reader;
        let want = buf
            .len()
            .min(usize::try_from(reader.data_left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = reader.input.read(&mut buf[..want])?;
        reader.data_left -= n.min(want) as u64;
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends. Returns how much was read.
pub(crate) fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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

/// The zeros that pad `size` bytes of data to a whole block.
pub fn padding(size: u64) -> u64 {
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

// These tests read through extraction, which maps each reading error to what users see.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::{decompress, Codec};
    use crate::extract::testing::*;
    use crate::extract::{extract_archive, ExtractError, ExtractStats};
    use std::path::Path;
    use tar::EntryType;

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
        for kind in [Codec::Gzip, Codec::Zstd, Codec::Xz] {
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
}
