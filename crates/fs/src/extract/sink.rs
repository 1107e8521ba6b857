//! Writing archive members into a destination directory, and nothing else: the safety rules
//! of the [module documentation](super) (nothing written through a symlink, hard links
//! only to what is already inside, devices and FIFOs never created, modes as the archive
//! says) are enforced here, and what was written is recorded ([`Sink::meta`] and the other
//! maps) so a layer can be rebuilt from the tree.
//!
//! Regular files are written sparse: every [`HOLE_BLOCK`]-aligned block of zeros in their
//! data is left unwritten (a hole, which reads back as zeros and takes no space), so a
//! layer of zeros — a sparse file written out by its layer, or a gzip bomb — costs almost
//! no disk. The content read back is the same byte for byte. The blocks really written are
//! charged to a [`DiskBudget`] (the free space of `dest`'s filesystem, less a reserve), and
//! going past it stops the extraction with [`ExtractError::DiskFull`]. Directories, inodes
//! and other metadata are not charged: the reserve covers them.
//!
//! It does not read tar streams (`crate::tar_read`), clean names (the members come cleaned)
//! or decide what an upper layer hides (`super::overlay`).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{
    clean, read_error, EntryMeta, ExtractError, ExtractStats, Kind, Member, Special, COPY_BUF_LEN,
    IMPLICIT_DIR_MODE,
};
use crate::disk::{DiskBudget, DiskError, DiskLimit};
use crate::layer::Xattrs;
use rustix::fs::{makedev, mknodat, FileType, Mode, CWD};
use rustix::io::Errno;

/// The granularity of holes: the block ext4, xfs and btrfs allocate by default. A run of
/// zeros that does not cover one whole aligned block is written (it could not be a hole).
pub(super) const HOLE_BLOCK: u64 = 4096;

/// What becomes of device nodes and FIFOs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Specials {
    /// Left out with a note: an [`Overlay`](super::Overlay).
    Skip,
    /// Recorded behind an empty placeholder file: [`extract_archive`](super::extract_archive).
    Placeholder,
    /// Made with mknod when the process may, else left out with a note: a lower directory
    /// (`regbuild-rootfs`), which must be what the layer says.
    Create,
}

/// What happened to one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
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

    fn disk_error(&self, disk: &Path, error: DiskError) -> ExtractError {
        match error {
            DiskError::Full(full) => ExtractError::DiskFull {
                archive: self.archive.to_string(),
                entry: self.entry.to_path_buf(),
                full,
            },
            DiskError::Measure { source, .. } => self.write_error(disk, source),
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
pub struct Sink {
    dest: PathBuf,
    pub stats: ExtractStats,
    pending: Vec<PendingLink>,
    /// Non-directory members of the layer being applied that were not
    /// written (shadowed or not wanted). Their content is gone, so a hard
    /// link to one of them cannot be made.
    pub(super) unavailable: HashSet<PathBuf>,
    /// Targets of hard links that were wanted when their target was not (and so was not
    /// written): wanting them too, a second pass can make those links.
    pub(super) unreached_targets: Vec<PathBuf>,
    buf: Vec<u8>,
    /// What file data may still be written to `dest`'s filesystem.
    budget: DiskBudget,
    specials_mode: Specials,
    /// Header metadata of each path written, for [`Overlay::metadata`](super::Overlay::metadata).
    pub meta: HashMap<PathBuf, EntryMeta>,
    /// Device nodes and FIFOs recorded, by path; a placeholder file stands there.
    pub(super) specials: HashMap<PathBuf, Special>,
    /// Extended attributes of the paths written with any.
    pub xattrs: HashMap<PathBuf, Xattrs>,
    /// Hard links written, link → target, for [`Overlay::hard_links`](super::Overlay::hard_links).
    pub links: HashMap<PathBuf, PathBuf>,
    /// Target → links made to it. May list links since replaced: check
    /// `links` before trusting an entry.
    linked_from: HashMap<PathBuf, Vec<PathBuf>>,
    /// Paths this sink found or made to be real directories, and has not replaced since:
    /// an entry's parents are checked once each, not once per entry below them (a chain
    /// of N nested directories then costs O(N) checks, not O(N²) of O(N) each).
    known_dirs: HashSet<PathBuf>,
}

impl Sink {
    pub fn new(dest: &Path, specials_mode: Specials, disk: DiskLimit) -> Sink {
        Sink {
            dest: dest.to_path_buf(),
            stats: ExtractStats::default(),
            pending: Vec::new(),
            unavailable: HashSet::new(),
            unreached_targets: Vec::new(),
            buf: vec![0; COPY_BUF_LEN],
            budget: DiskBudget::new(dest, disk),
            specials_mode,
            meta: HashMap::new(),
            specials: HashMap::new(),
            xattrs: HashMap::new(),
            links: HashMap::new(),
            linked_from: HashMap::new(),
            known_dirs: HashSet::new(),
        }
    }

    /// Forgets that `path` and what is below it are directories: it is being replaced.
    fn forget_dirs(&mut self, path: &Path) {
        if self.known_dirs.remove(path) {
            self.known_dirs.retain(|d| !d.starts_with(path));
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

    pub fn note(&mut self, path: &Path, why: &'static str) {
        self.stats.skipped.push((path.to_path_buf(), why));
    }

    pub fn write(
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
            Kind::Special(special) => match self.specials_mode {
                Specials::Skip => Outcome::Skipped(special.skip_reason()),
                Specials::Placeholder => self.placeholder(&ctx, &member.path)?,
                Specials::Create => self.mknod(&ctx, &member.path, special, member.mode)?,
            },
            Kind::Unsupported(why) => Outcome::Skipped(why),
        };
        self.record(&member.path, outcome);
        if outcome == Outcome::Written {
            let target = match member.kind {
                // Cleaned fine already, or it would not have been written.
                Kind::HardLink => clean(&member.link, false).ok(),
                _ => None,
            };
            // Only placeholders are records: a node made for real is linked like a file.
            let special = match member.kind {
                Kind::Special(special) if self.specials_mode == Specials::Placeholder => {
                    Some(special)
                }
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
        self.known_dirs.insert(member.path.clone());
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
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&disk)
            .map_err(|e| ctx.write_error(&disk, e))?;
        let mut out = SparseFile {
            file: &file,
            disk: &disk,
            budget: &mut self.budget,
            charged_to: 0,
        };
        let written = copy_data(ctx, data, &mut out, &mut self.buf)?;
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

    /// A real device node or FIFO at `path` (mode fixed later by the caller: mknod is
    /// filtered by the umask). Not permitted is a skip, as for any unprivileged extraction.
    fn mknod(
        &mut self,
        ctx: &Ctx,
        path: &Path,
        special: Special,
        mode: u32,
    ) -> Result<Outcome, ExtractError> {
        if let Some(why) = self.make_room(ctx, path)? {
            return Ok(Outcome::Skipped(why));
        }
        let disk = self.dest.join(path);
        let (file_type, dev) = match special {
            Special::Char { major, minor } => (FileType::CharacterDevice, makedev(major, minor)),
            Special::Block { major, minor } => (FileType::BlockDevice, makedev(major, minor)),
            Special::Fifo => (FileType::Fifo, makedev(0, 0)),
        };
        let perm = Mode::from_raw_mode(mode & 0o7777);
        match mknodat(CWD, &disk, file_type, perm, dev) {
            Ok(()) => Ok(Outcome::Written),
            Err(Errno::PERM) => Ok(Outcome::Skipped(special.skip_reason())),
            Err(e) => Err(ctx.write_error(&disk, e.into())),
        }
    }

    /// An overlayfs whiteout (character device 0/0) at `path`, replacing whatever is there.
    /// Never skipped for lack of privileges: without it the lower directory would show what
    /// the layer deleted, so that is an error (kernels since 5.8 let anyone make one).
    pub fn whiteout(
        &mut self,
        archive: &str,
        name: &Path,
        path: &Path,
    ) -> Result<Outcome, ExtractError> {
        let ctx = Ctx {
            archive,
            entry: name,
        };
        if let Some(why) = self.make_room(&ctx, path)? {
            self.note(path, why);
            return Ok(Outcome::Skipped(why));
        }
        let disk = self.dest.join(path);
        mknodat(
            CWD,
            &disk,
            FileType::CharacterDevice,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(|e| ctx.write_error(&disk, e.into()))?;
        // Not an entry with metadata of its own: nothing to apply to it later.
        self.remember(path, EntryMeta::IMPLICIT_DIR, None, None, &Xattrs::new());
        self.meta.remove(path);
        self.stats.entries += 1;
        Ok(Outcome::Written)
    }

    /// Makes sure `path` (empty for `dest`) is a directory reached without symlinks,
    /// creating it as an implicit directory if missing: where an opaque marker goes.
    pub fn ensure_dir(
        &mut self,
        archive: &str,
        name: &Path,
        path: &Path,
    ) -> Result<Outcome, ExtractError> {
        let ctx = Ctx {
            archive,
            entry: name,
        };
        if path.as_os_str().is_empty() {
            return Ok(Outcome::Written);
        }
        if let Parents::Blocked(why) = self.parents(&ctx, path, true)? {
            self.note(path, why);
            return Ok(Outcome::Skipped(why));
        }
        let disk = self.dest.join(path);
        match fs::symlink_metadata(&disk) {
            Ok(meta) if meta.is_dir() => Ok(Outcome::Written),
            Ok(_) => {
                let why = "opaque marker in something that is not a directory";
                self.note(path, why);
                Ok(Outcome::Skipped(why))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                make_dir(&disk, IMPLICIT_DIR_MODE).map_err(|e| ctx.write_error(&disk, e))?;
                self.remember(path, EntryMeta::IMPLICIT_DIR, None, None, &Xattrs::new());
                Ok(Outcome::Written)
            }
            Err(e) => Err(ctx.write_error(&disk, e)),
        }
    }

    pub fn dest(&self) -> &Path {
        &self.dest
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
            self.unreached_targets.push(target.clone());
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
            Ok(meta)
                if !meta.is_file()
                    && !meta.file_type().is_symlink()
                    && self.specials_mode != Specials::Create =>
            {
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
    pub fn resolve_pending(&mut self, last_try: bool) -> Result<(), ExtractError> {
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
        // The usual case, one lookup: the parent came just before.
        if parent.as_os_str().is_empty() || self.known_dirs.contains(parent) {
            return Ok(Parents::Ok);
        }
        let mut disk = self.dest.clone();
        let mut rel = PathBuf::new();
        for component in parent.components() {
            disk.push(component);
            rel.push(component);
            if self.known_dirs.contains(&rel) {
                continue;
            }
            match fs::symlink_metadata(&disk) {
                Ok(meta) if meta.is_dir() => {
                    self.known_dirs.insert(rel.clone());
                }
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Ok(Parents::Blocked("a parent directory is a symlink"))
                }
                Ok(_) => return Ok(Parents::Blocked("a parent is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    make_dir(&disk, IMPLICIT_DIR_MODE).map_err(|e| ctx.write_error(&disk, e))?;
                    self.remember(&rel, EntryMeta::IMPLICIT_DIR, None, None, &Xattrs::new());
                    self.known_dirs.insert(rel.clone());
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
        // A non-directory goes here: if this was a (now empty) directory, it is no more.
        self.forget_dirs(path);
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
/// A new, empty file being written sparse, and the budget its bytes are charged to.
struct SparseFile<'a> {
    file: &'a File,
    disk: &'a Path,
    budget: &'a mut DiskBudget,
    /// The end of the last block charged: a block written in two runs is charged once.
    charged_to: u64,
}

impl SparseFile<'_> {
    /// Charges the blocks `[at, at + len)` touches that are not charged yet: the filesystem
    /// allocates whole blocks, so a layer of small files takes more than its bytes.
    fn charge(&mut self, at: u64, len: u64) -> Result<(), DiskError> {
        let from = (at - at % HOLE_BLOCK).max(self.charged_to);
        let to = at
            .saturating_add(len)
            .div_ceil(HOLE_BLOCK)
            .saturating_mul(HOLE_BLOCK);
        if to > from {
            self.budget.charge(to - from)?;
            self.charged_to = to;
        }
        Ok(())
    }
}

/// Copies an entry's data into `out`, leaving holes where whole aligned blocks are zeros
/// (the file is new, so what is not written reads as zeros); the entry's size.
fn copy_data(
    ctx: &Ctx,
    data: &mut dyn Read,
    out: &mut SparseFile,
    buf: &mut [u8],
) -> Result<u64, ExtractError> {
    let mut size = 0u64;
    // Where the data written so far ends: a file ending in a hole is extended at the end.
    let mut data_end = 0u64;
    loop {
        let n = match data.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(ctx.archive, ctx.entry, e)),
        };
        let Some(chunk) = buf.get(..n) else {
            let bad = io::Error::other("decoder returned more bytes than asked for");
            return Err(read_error(ctx.archive, ctx.entry, bad));
        };
        for run in data_runs(chunk, size) {
            let bytes = &chunk[run.clone()];
            let at = size + run.start as u64;
            out.charge(at, bytes.len() as u64)
                .map_err(|e| ctx.disk_error(out.disk, e))?;
            out.file
                .write_all_at(bytes, at)
                .map_err(|e| ctx.write_error(out.disk, e))?;
            data_end = at + bytes.len() as u64;
        }
        size += n as u64;
    }
    if data_end < size {
        out.file
            .set_len(size)
            .map_err(|e| ctx.write_error(out.disk, e))?;
    }
    Ok(size)
}

/// The parts of `chunk` (which starts at `offset` in its file) to write: everything but the
/// [`HOLE_BLOCK`]-aligned blocks, or the parts of them at the chunk's ends, that are all
/// zeros. Adjacent parts to write are merged.
fn data_runs(chunk: &[u8], offset: u64) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut pos = 0;
    while pos < chunk.len() {
        let at = offset + pos as u64;
        // From `at` to the next block boundary, within the chunk.
        let to_boundary = HOLE_BLOCK - at % HOLE_BLOCK;
        let end = chunk
            .len()
            .min(pos.saturating_add(usize::try_from(to_boundary).unwrap_or(usize::MAX)));
        if !is_zero(&chunk[pos..end]) {
            match runs.last_mut() {
                Some(last) if last.end == pos => last.end = end,
                _ => runs.push(pos..end),
            }
        }
        pos = end;
    }
    runs
}

/// Whether `bytes` are all zeros; in 64-byte steps the compiler vectorizes.
fn is_zero(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    blocks
        .by_ref()
        .all(|block| block.iter().fold(0u8, |acc, b| acc | b) == 0)
        && blocks.remainder().iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Special, IMPLICIT_DIR_MODE};
    use crate::layer::Xattrs;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use tar::EntryType;

    #[test]
    fn only_blocks_with_data_are_written() {
        use super::{data_runs, HOLE_BLOCK};
        let b = HOLE_BLOCK as usize;
        let mut chunk = vec![0u8; 4 * b];
        chunk[b + 10] = 1;
        chunk[3 * b] = 2;
        assert_eq!(data_runs(&chunk, 0), vec![b..2 * b, 3 * b..4 * b]);
        // Blocks are aligned in the file, not in the chunk.
        assert_eq!(
            data_runs(&chunk, 100),
            vec![b - 100..2 * b - 100, 3 * b - 100..4 * b - 100]
        );
        assert_eq!(data_runs(&vec![1u8; 3 * b + 5], 7), vec![0..3 * b + 5]);
        assert!(data_runs(&vec![0u8; 3 * b + 5], 7).is_empty());
        assert!(data_runs(&[], 0).is_empty());
    }

    #[test]
    fn an_added_archive_writes_zeros_as_holes() {
        let scene = Scene::new();
        let mut data = vec![0u8; 1 << 20];
        data[(1 << 19) + 1] = b'x';
        let archive = Tar::new().file("sparse", &data, 0o644).bytes();
        scene.extract(&archive).unwrap();
        let path = scene.dest().join("sparse");
        assert!(fs::read(&path).unwrap() == data);
        let blocks = fs::metadata(&path).unwrap().blocks();
        assert!(
            blocks <= 8,
            "1 MiB with one byte of data takes {blocks} blocks"
        );
    }

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
}
