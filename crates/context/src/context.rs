//! Works out what one `COPY` instruction puts into a layer: resolves its
//! sources in the build context (globs included), walks directories and
//! returns the [`LayerEntry`]s for `regbuild_fs::layer`, sorted the way the layer
//! writes them.
//!
//! It is not for writing the layer, parsing the Dockerfile or matching
//! `.dockerignore` patterns (`crate::dockerignore`, which the caller passes),
//! nor for stripping setuid bits (the caller does that on the result). Unix only: names are raw bytes
//! (`OsStr`), never `String`, so non-UTF-8 names survive.
//!
//! # Semantics (Docker `COPY`)
//!
//! - Sources are relative to the context; an absolute source names a path from
//!   the context's root (`/a.txt` is `a.txt`, as BuildKit reads it), and its
//!   `..` stops at that root as Go's `path.Clean` does (`/../x` is `x`). A
//!   relative `..` that leaves the context, a source that does not exist and a
//!   source that is a symlink resolving outside the context are refused. `..`
//!   is resolved lexically first (`a/../b` is `b`).
//! - Globs (`*`, `?`, `[...]`, `[^...]`/`[!...]`, `\` escapes; Go
//!   `filepath.Match` rules, a wildcard never matches `/`; matched by
//!   [`regbuild_paths::glob`]) are matched against
//!   context paths segment by segment; matches are taken in sorted order. A
//!   glob that matches nothing is an error. Like BuildKit, the literal part
//!   before the first wildcard may go through symlinks (staying inside the
//!   context), but below it symlinked directories are not entered; a match
//!   that is itself a symlink is followed like any source.
//! - A directory source copies its *contents* into `dest`. A file source goes
//!   to `dest/<name>` if `dest` ends with `/` (or `/.`) or there are several
//!   sources or glob matches in all, else to `dest` itself.
//! - Every directory above the copied entries that the layer must create (the
//!   ancestors of `dest`, and `dest` itself when it is a directory) is added as
//!   a directory entry with mode 0755, owner 0:0.
//! - A symlink named directly as a source (or as a path component of one) is
//!   followed, but only within the context. Symlinks met while walking a
//!   directory are copied as symlinks, never followed, so walks terminate.
//! - `.dockerignore` decides what is in the context the way BuildKit's context
//!   transfer does (`tonistiigi/fsutil`'s filtered walk): a path is left out
//!   when `ignore` excludes it, but an excluded directory is still entered
//!   when an exception (`!pattern`) may match below it
//!   ([`DockerIgnore::may_include_below`]), and it is then part of the
//!   context (with its own mode) exactly when something below it is. So
//!   `docs` + `!docs/README.md` copies `docs/` and `docs/README.md`. A source
//!   not in the context, or a glob match that is not, counts as missing.
//! - Modes are the permission bits on disk (setuid/setgid/sticky kept) unless
//!   `chmod` is given, which then applies to copied files and directories
//!   (not to symlinks, which get 0777, nor to created parents). Owner is 0:0
//!   unless `chown` is given (created parents stay 0:0).
//! - Regular files sharing one device and inode within the COPY become hard
//!   links to the first of their paths in layer order.
//! - Sockets, FIFOs and devices are skipped when met while walking a
//!   directory (as Docker does for sockets); naming one directly is an error.
//! - When two sources give the same in-layer path the last one wins; entries
//!   left below a path that ended up a non-directory are dropped.
//! - `--exclude` patterns ([`SourceOptions::exclude`]) follow `.dockerignore`'s
//!   rules (patternmatcher: `**`, `!` exceptions, a matched directory takes
//!   everything below it) but are matched, as BuildKit's copy (fsutil) matches
//!   them, against each path relative to the source that holds it: `*.txt`
//!   leaves out a directory source's top-level `.txt` files, `**/*.txt` all of
//!   them. A source itself, a glob match included, is never excluded (BuildKit
//!   does the same, moby/buildkit#5489). An excluded directory is entered when
//!   an exception may match below it, and kept only if something below is.
//! - `--parents` ([`SourceOptions::parents`], `crate::context::parents`) keeps
//!   each source's parent directories under `dest`, from the context's root or
//!   from a `/./` pivot in the source.
//! - A file keeps its `security.capability` (`setcap`), the one extended
//!   attribute BuildKit's layers carry (its copy keeps them all on disk, and
//!   containerd's tar writer then writes only that one). It is read from the
//!   disk, or, for a materialised stage or image, from the layers' tar headers
//!   ([`SourceOptions::recorded_xattrs`]): a rootless extraction cannot set it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dockerignore::DockerIgnore;
use regbuild_fs::layer::{EntryKind, LayerEntry, Xattrs};
use regbuild_paths::glob::{Dialect, Glob, GlobError};

mod parents;

/// Mode of the directories the layer creates above the copied entries.
const CREATED_DIR_MODE: u32 = 0o755;
/// Mode written for symlinks (their mode is meaningless on Linux).
const SYMLINK_MODE: u32 = 0o777;
/// The one extended attribute a copied file keeps in the layer (see the module docs).
const KEPT_XATTR: &str = "security.capability";

/// One `COPY` instruction, with paths already resolved by the caller.
pub struct CopyRequest<'a> {
    /// Build context root.
    pub context: &'a Path,
    /// Sources as written in the Dockerfile; may contain globs.
    pub sources: &'a [String],
    /// Absolute in-image destination, e.g. `/app/`.
    pub dest: &'a str,
    pub chown: Option<(u64, u64)>,
    pub chmod: Option<u32>,
    /// What `.dockerignore` leaves out of `context` (`DockerIgnore::default()`: nothing).
    pub ignore: &'a DockerIgnore,
    /// How the sources are read beyond that (`&SourceOptions::default()`: as COPY reads the
    /// context).
    pub options: &'a SourceOptions,
}

/// How a COPY reads its sources beyond the context walk.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// `--exclude` patterns, as written (see the module docs).
    pub exclude: Vec<String>,
    /// `--parents`: each source keeps its parent directories (see [`parents`]).
    pub parents: bool,
    /// The extended attributes of each path below `context` (relative to it), as the tar
    /// headers it was extracted from gave them: read in place of the disk's when set.
    pub recorded_xattrs: Option<Arc<HashMap<PathBuf, Xattrs>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("COPY source {src:?} is outside the build context")]
    OutsideContext { src: String },
    #[error("COPY source {src:?} is a symlink that resolves outside the build context")]
    SymlinkOutsideContext { src: String },
    #[error("COPY source {src:?} not found in the build context")]
    NotFound { src: String },
    #[error("no source files were specified: pattern {pattern:?} matched nothing")]
    NoMatch { pattern: String },
    #[error("COPY source {src:?} is not a valid pattern: {reason}")]
    BadPattern { src: String, reason: &'static str },
    #[error("COPY {flag} pattern {pattern:?} is invalid: {problem}")]
    BadFlagPattern {
        flag: &'static str,
        pattern: String,
        problem: crate::dockerignore::PatternError,
    },
    #[error("COPY source {src:?} is not a regular file, directory or symlink")]
    Unsupported { src: String },
    #[error("COPY destination {dest:?} is invalid: {reason}")]
    InvalidDest { dest: String, reason: &'static str },
    #[error("resolving COPY source {src:?}: {source}")]
    Resolve {
        src: String,
        #[source]
        source: io::Error,
    },
    #[error("reading {path:?} in the build context: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Returns the layer entries for `req`, sorted by in-layer path (component by
/// component, the order `regbuild_fs::layer` writes), without duplicate paths.
pub fn collect(req: &CopyRequest) -> Result<Vec<LayerEntry>, ContextError> {
    let root = fs::canonicalize(req.context).map_err(|source| ContextError::Io {
        path: req.context.to_path_buf(),
        source,
    })?;
    let dest = Dest::parse(req.dest)?;
    let exclude = flag_patterns("--exclude", &req.options.exclude)?;
    if req.options.parents {
        return parents::collect(req, &root, &dest, &exclude);
    }
    let mut matches = Vec::new();
    for src in req.sources {
        for lexical in expand_source(&root, src, req.ignore)? {
            matches.push((src.as_str(), lexical));
        }
    }
    let dest_is_dir = dest.explicit_dir || matches.len() > 1;

    let mut resolved = Vec::with_capacity(matches.len());
    for (src, lexical) in &matches {
        resolved.push(resolve(&root, lexical, src, req.ignore)?);
    }
    let creates_dest = dest_is_dir || resolved.iter().any(|s| s.meta.is_dir());
    let mut out = created_dirs(&dest.components, creates_dest);
    for source in &resolved {
        add_source(source, &dest, dest_is_dir, req, &exclude, &mut out)?;
    }
    Ok(finalize(out))
}

/// The destination split into in-image path components.
struct Dest {
    components: Vec<OsString>,
    /// Ends with `/` (or `/.`, `/..`), or is the root.
    explicit_dir: bool,
}

impl Dest {
    fn parse(dest: &str) -> Result<Dest, ContextError> {
        let invalid = |reason| ContextError::InvalidDest {
            dest: dest.to_string(),
            reason,
        };
        if !dest.starts_with('/') {
            return Err(invalid("must be an absolute path"));
        }
        if dest.contains('\0') {
            return Err(invalid("contains a NUL byte"));
        }
        let mut components: Vec<OsString> = Vec::new();
        for part in dest.split('/') {
            match part {
                "" | "." => {}
                // Like Go's path.Clean: `..` at the root stays at the root.
                ".." => {
                    components.pop();
                }
                name => components.push(OsString::from(name)),
            }
        }
        let last = dest.rsplit('/').next().unwrap_or("");
        let explicit_dir = components.is_empty() || matches!(last, "" | "." | "..");
        Ok(Dest {
            components,
            explicit_dir,
        })
    }

    fn path(&self) -> PathBuf {
        self.components.iter().collect()
    }
}

/// A source resolved inside the context.
struct Source<'a> {
    src: &'a str,
    /// Name the source was given by (a followed symlink keeps its own name).
    name: Option<OsString>,
    /// Canonical path on disk.
    disk: PathBuf,
    /// `disk` relative to the context root.
    rel: PathBuf,
    /// Metadata of `disk`, symlinks followed.
    meta: Metadata,
}

/// An entry plus the inode it came from, for hard-link detection.
struct Collected {
    entry: LayerEntry,
    inode: Option<(u64, u64)>,
}

// ---------------------------------------------------------------- sources

/// One `/`-separated segment of a source after lexical cleaning.
enum Segment {
    Literal(OsString),
    Glob(Pattern),
}

/// Expands one source as written into context-relative lexical paths.
fn expand_source(
    root: &Path,
    src: &str,
    ignore: &DockerIgnore,
) -> Result<Vec<PathBuf>, ContextError> {
    let segments = parse_source(src)?;
    if let Some(path) = literal_path(&segments) {
        return Ok(vec![path]);
    }
    let mut found = expand_glob(root, &segments, ignore)?;
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Err(ContextError::NoMatch {
            pattern: src.to_string(),
        });
    }
    Ok(found)
}

/// The path a source names if none of its segments is a glob.
fn literal_path(segments: &[Segment]) -> Option<PathBuf> {
    segments
        .iter()
        .map(|s| match s {
            Segment::Literal(name) => Some(name.as_os_str()),
            Segment::Glob(_) => None,
        })
        .collect()
}

fn parse_source(src: &str) -> Result<Vec<Segment>, ContextError> {
    // Rooted at the context: `..` cannot climb above it.
    let rooted = src.starts_with('/');
    let bad = |reason| ContextError::BadPattern {
        src: src.to_string(),
        reason,
    };
    if src.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let mut segments = Vec::new();
    for part in src.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() && !rooted {
                    return Err(ContextError::OutsideContext {
                        src: src.to_string(),
                    });
                }
            }
            _ => {
                let pattern = Pattern::parse(part).map_err(|e| bad(pattern_problem(e)))?;
                segments.push(match pattern.literal() {
                    Some(name) => Segment::Literal(OsString::from(name)),
                    None => Segment::Glob(pattern),
                });
            }
        }
    }
    Ok(segments)
}

/// A glob candidate: its context-relative lexical path and where it is on disk.
struct Candidate {
    lexical: PathBuf,
    disk: PathBuf,
}

/// Matches `segments` level by level, like BuildKit: the literal prefix
/// before the first wildcard may go through symlinks (within the context);
/// below it only real directories are entered, so symlink loops cannot make
/// the expansion explode. Literal segments are joined unchecked; existence
/// is checked on the final candidates.
fn expand_glob(
    root: &Path,
    segments: &[Segment],
    ignore: &DockerIgnore,
) -> Result<Vec<PathBuf>, ContextError> {
    let mut current = vec![Candidate {
        lexical: PathBuf::new(),
        disk: root.to_path_buf(),
    }];
    let mut in_prefix = true;
    for segment in segments {
        let mut next = Vec::new();
        for base in &current {
            match segment {
                Segment::Literal(name) => next.push(Candidate {
                    lexical: base.lexical.join(name),
                    disk: base.disk.join(name),
                }),
                Segment::Glob(pattern) => {
                    let Some(dir) = glob_base(root, base, in_prefix) else {
                        continue;
                    };
                    if entered(ignore, &base.lexical) {
                        list_matches(&dir, &base.lexical, pattern, ignore, &mut next)?;
                    }
                }
            }
        }
        if matches!(segment, Segment::Glob(_)) {
            in_prefix = false;
        }
        current = next;
    }
    Ok(current
        .into_iter()
        .filter(|c| fs::symlink_metadata(&c.disk).is_ok())
        .map(|c| c.lexical)
        .collect())
}

/// The directory to list for `base`, if it is one: in the literal prefix
/// symlinks are followed but must stay in the context; below a wildcard the
/// candidate must itself be a directory.
fn glob_base(root: &Path, base: &Candidate, in_prefix: bool) -> Option<PathBuf> {
    if in_prefix {
        let real = fs::canonicalize(&base.disk).ok()?;
        (real.starts_with(root) && real.is_dir()).then_some(real)
    } else {
        let meta = fs::symlink_metadata(&base.disk).ok()?;
        meta.is_dir().then(|| base.disk.clone())
    }
}

/// Adds the children of `dir` whose names match `pattern` and are in the context.
fn list_matches(
    dir: &Path,
    lexical: &Path,
    pattern: &Pattern,
    ignore: &DockerIgnore,
    out: &mut Vec<Candidate>,
) -> Result<(), ContextError> {
    let io_err = |source| ContextError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for child in fs::read_dir(dir).map_err(io_err)? {
        let child = child.map_err(io_err)?;
        let name = child.file_name();
        if !pattern.matches(name.as_bytes()) {
            continue;
        }
        let rel = lexical.join(&name);
        let is_dir = child.file_type().is_ok_and(|t| t.is_dir());
        if in_context(ignore, &child.path(), &rel, is_dir)? {
            out.push(Candidate {
                lexical: rel,
                disk: child.path(),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- .dockerignore

fn excludes(ignore: &DockerIgnore, rel: &Path) -> bool {
    !ignore.is_empty() && ignore.is_excluded(&rel.to_string_lossy())
}

/// Whether the walk enters the directory `rel`: it is not excluded, or an exception may
/// match below it.
fn enters(ignore: &DockerIgnore, rel: &Path) -> bool {
    ignore.is_empty() || ignore.may_include_below(&rel.to_string_lossy())
}

/// Whether the walk from the context root reaches `rel`'s children: it enters `rel` and
/// every directory above it.
fn entered(ignore: &DockerIgnore, rel: &Path) -> bool {
    ignore.is_empty()
        || rel
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .all(|a| enters(ignore, a))
}

/// Whether `rel` (on disk at `disk`, not followed if a symlink) is in the context Docker
/// sends: the walk reaches it, and it is not excluded or is a directory with something in
/// the context below it.
fn in_context(
    ignore: &DockerIgnore,
    disk: &Path,
    rel: &Path,
    is_dir: bool,
) -> Result<bool, ContextError> {
    if ignore.is_empty() {
        return Ok(true);
    }
    if !rel.parent().is_none_or(|p| entered(ignore, p)) {
        return Ok(false);
    }
    if !excludes(ignore, rel) {
        return Ok(true);
    }
    if !is_dir || !enters(ignore, rel) {
        return Ok(false);
    }
    holds_included(ignore, disk, rel)
}

/// Whether anything below the excluded directory `rel` (at `disk`) is in the context.
fn holds_included(ignore: &DockerIgnore, disk: &Path, rel: &Path) -> Result<bool, ContextError> {
    let mut stack = vec![(disk.to_path_buf(), rel.to_path_buf())];
    while let Some((disk, rel)) = stack.pop() {
        let io_err = |source| ContextError::Io {
            path: disk.clone(),
            source,
        };
        for child in fs::read_dir(&disk).map_err(io_err)? {
            let child = child.map_err(io_err)?;
            let child_rel = rel.join(child.file_name());
            let is_dir = child.file_type().is_ok_and(|t| t.is_dir());
            if !excludes(ignore, &child_rel) {
                return Ok(true);
            }
            if is_dir && enters(ignore, &child_rel) {
                stack.push((child.path(), child_rel));
            }
        }
    }
    Ok(false)
}

/// Follows `lexical` (symlinks included) and checks it stays in the context.
fn resolve<'a>(
    root: &Path,
    lexical: &Path,
    src: &'a str,
    ignore: &DockerIgnore,
) -> Result<Source<'a>, ContextError> {
    let not_found = || ContextError::NotFound {
        src: src.to_string(),
    };
    let lexical_is_dir = match fs::symlink_metadata(root.join(lexical)) {
        Ok(meta) => meta.is_dir(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(_) => false,
    };
    if !in_context(ignore, &root.join(lexical), lexical, lexical_is_dir)? {
        return Err(not_found());
    }
    let disk = match fs::canonicalize(root.join(lexical)) {
        Ok(disk) => disk,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(source) => {
            return Err(ContextError::Resolve {
                src: src.to_string(),
                source,
            })
        }
    };
    let Ok(rel) = disk.strip_prefix(root).map(Path::to_path_buf) else {
        return Err(ContextError::SymlinkOutsideContext {
            src: src.to_string(),
        });
    };
    let meta = fs::metadata(&disk).map_err(|source| ContextError::Resolve {
        src: src.to_string(),
        source,
    })?;
    // The target of a followed symlink must be in the context too.
    if rel != lexical && !in_context(ignore, &disk, &rel, meta.is_dir())? {
        return Err(not_found());
    }
    Ok(Source {
        src,
        name: lexical.file_name().map(OsStr::to_os_string),
        disk,
        rel,
        meta,
    })
}

// ---------------------------------------------------------------- entries

/// Directory entries for `dest`'s ancestors (and `dest` itself if it is a
/// directory).
fn created_dirs(dest: &[OsString], include_dest: bool) -> Vec<Collected> {
    let count = if include_dest {
        dest.len()
    } else {
        dest.len().saturating_sub(1)
    };
    (1..=count)
        .map(|n| Collected {
            entry: LayerEntry {
                path: dest[..n].iter().collect(),
                kind: EntryKind::Dir,
                mode: CREATED_DIR_MODE,
                uid: 0,
                gid: 0,
                xattrs: Default::default(),
            },
            inode: None,
        })
        .collect()
}

/// Compiles a flag's patterns with `.dockerignore`'s rules.
fn flag_patterns(flag: &'static str, patterns: &[String]) -> Result<DockerIgnore, ContextError> {
    DockerIgnore::from_patterns(patterns, Path::new(flag)).map_err(|e| {
        ContextError::BadFlagPattern {
            flag,
            pattern: e.pattern,
            problem: e.problem,
        }
    })
}

fn add_source(
    source: &Source,
    dest: &Dest,
    dest_is_dir: bool,
    req: &CopyRequest,
    exclude: &DockerIgnore,
    out: &mut Vec<Collected>,
) -> Result<(), ContextError> {
    if source.meta.is_dir() {
        let start = WalkStart {
            disk: source.disk.clone(),
            rel: source.rel.clone(),
            layer: dest.path(),
            in_source: PathBuf::new(),
        };
        let filters = Filters {
            exclude,
            include: None,
        };
        return walk(start, &filters, req, Vec::new(), out);
    }
    if !source.meta.is_file() {
        return Err(ContextError::Unsupported {
            src: source.src.to_string(),
        });
    }
    let mut path = dest.path();
    if dest_is_dir {
        // A file source always has a name: only the root has none.
        if let Some(name) = &source.name {
            path.push(name);
        }
    }
    out.push(file_entry(
        path,
        &source.rel,
        source.disk.clone(),
        &source.meta,
        req,
    ));
    Ok(())
}

/// Where a directory walk starts: on disk, in the context (for `.dockerignore`), in the
/// layer, and relative to the source (for `--exclude` and `--parents`).
struct WalkStart {
    disk: PathBuf,
    rel: PathBuf,
    layer: PathBuf,
    in_source: PathBuf,
}

/// What a walk matches against source-relative paths, besides `.dockerignore`.
struct Filters<'a> {
    /// `--exclude`.
    exclude: &'a DockerIgnore,
    /// `--parents`: only what this pattern matches (or lies below a match) is kept.
    include: Option<&'a DockerIgnore>,
}

/// What the walk does with one child.
enum Verdict {
    Keep,
    Skip,
    /// A directory left out itself but entered: kept only if something below it is.
    Enter,
}

impl Filters<'_> {
    fn verdict(
        &self,
        ignore: &DockerIgnore,
        rel: &Path,
        in_source: &Path,
        is_dir: bool,
    ) -> Verdict {
        let ignored = excludes(ignore, rel);
        if self.exclude.is_empty() && self.include.is_none() {
            return match (ignored, is_dir && enters(ignore, rel)) {
                (false, _) => Verdict::Keep,
                (true, true) => Verdict::Enter,
                (true, false) => Verdict::Skip,
            };
        }
        let in_source = in_source.to_string_lossy();
        let excluded = !self.exclude.is_empty() && self.exclude.is_excluded(&in_source);
        let included = self.include.is_none_or(|i| i.is_excluded(&in_source));
        if !ignored && !excluded && included {
            return Verdict::Keep;
        }
        // An include pattern may match below any directory: the caller starts the walk
        // at the pattern's literal part, so this stays below it.
        let enters = is_dir
            && (!ignored || enters(ignore, rel))
            && (!excluded || self.exclude.may_include_below(&in_source));
        if enters {
            Verdict::Enter
        } else {
            Verdict::Skip
        }
    }
}

/// Walks a directory without following symlinks, with an explicit stack so deep trees
/// cannot overflow the call stack. A directory the walk enters without keeping it
/// (`entered`: it starts with the ones the caller passes) is kept only if something below
/// it is (as fsutil sends an excluded parent only before an included child, and its copy
/// makes a parent directory only once something in it is copied).
fn walk(
    start: WalkStart,
    filters: &Filters,
    req: &CopyRequest,
    mut entered: Vec<Collected>,
    out: &mut Vec<Collected>,
) -> Result<(), ContextError> {
    let mut stack = vec![start];
    let first = out.len();
    while let Some(dir) = stack.pop() {
        let io_err = |source| ContextError::Io {
            path: dir.disk.clone(),
            source,
        };
        for child in fs::read_dir(&dir.disk).map_err(io_err)? {
            let child = child.map_err(io_err)?;
            let name = child.file_name();
            let child_disk = child.path();
            let meta = child.metadata().map_err(|source| ContextError::Io {
                path: child_disk.clone(),
                source,
            })?;
            let next = WalkStart {
                disk: child_disk,
                rel: dir.rel.join(&name),
                layer: dir.layer.join(&name),
                in_source: dir.in_source.join(&name),
            };
            let file_type = meta.file_type();
            match filters.verdict(req.ignore, &next.rel, &next.in_source, file_type.is_dir()) {
                Verdict::Skip => {}
                Verdict::Enter => {
                    entered.push(dir_entry(next.layer.clone(), &meta, req));
                    stack.push(next);
                }
                Verdict::Keep if file_type.is_dir() => {
                    out.push(dir_entry(next.layer.clone(), &meta, req));
                    stack.push(next);
                }
                Verdict::Keep if file_type.is_file() => {
                    out.push(file_entry(next.layer, &next.rel, next.disk, &meta, req));
                }
                Verdict::Keep if file_type.is_symlink() => {
                    let target = fs::read_link(&next.disk).map_err(|source| ContextError::Io {
                        path: next.disk.clone(),
                        source,
                    })?;
                    out.push(symlink_entry(next.layer, target, req));
                }
                // Sockets, FIFOs and devices: skipped (see module docs).
                Verdict::Keep => {}
            }
        }
    }
    if !entered.is_empty() {
        let kept: std::collections::BTreeSet<PathBuf> =
            out[first..].iter().map(|c| c.entry.path.clone()).collect();
        // In path order a directory's descendants directly follow it.
        out.extend(entered.into_iter().filter(|dir| {
            let path = &dir.entry.path;
            kept.range::<Path, _>((Bound::Excluded(path.as_path()), Bound::Unbounded))
                .next()
                .is_some_and(|next| next.starts_with(path))
        }));
    }
    Ok(())
}

fn owner(req: &CopyRequest) -> (u64, u64) {
    req.chown.unwrap_or((0, 0))
}

fn copied_mode(meta: &Metadata, req: &CopyRequest) -> u32 {
    req.chmod.unwrap_or(meta.mode()) & 0o7777
}

fn file_entry(
    path: PathBuf,
    rel: &Path,
    disk: PathBuf,
    meta: &Metadata,
    req: &CopyRequest,
) -> Collected {
    let (uid, gid) = owner(req);
    let xattrs = kept_xattrs(rel, &disk, req);
    Collected {
        entry: LayerEntry {
            path,
            kind: EntryKind::File {
                source: disk,
                size: meta.len(),
            },
            mode: copied_mode(meta, req),
            uid,
            gid,
            xattrs,
        },
        inode: (meta.nlink() > 1).then(|| (meta.dev(), meta.ino())),
    }
}

/// The file's `security.capability`: from the recorded tar headers when there are some,
/// else from the disk. An attribute that cannot be read is left out, as BuildKit's copy
/// only logs such an error.
fn kept_xattrs(rel: &Path, disk: &Path, req: &CopyRequest) -> Xattrs {
    let value = match &req.options.recorded_xattrs {
        Some(recorded) => recorded
            .get(rel)
            .and_then(|x| x.get(KEPT_XATTR.as_bytes()))
            .cloned(),
        None => xattr::get(disk, KEPT_XATTR).ok().flatten(),
    };
    value
        .map(|v| [(KEPT_XATTR.as_bytes().to_vec(), v)].into())
        .unwrap_or_default()
}

fn dir_entry(path: PathBuf, meta: &Metadata, req: &CopyRequest) -> Collected {
    let (uid, gid) = owner(req);
    Collected {
        entry: LayerEntry {
            path,
            kind: EntryKind::Dir,
            mode: copied_mode(meta, req),
            uid,
            gid,
            xattrs: Default::default(),
        },
        inode: None,
    }
}

fn symlink_entry(path: PathBuf, target: PathBuf, req: &CopyRequest) -> Collected {
    let (uid, gid) = owner(req);
    Collected {
        entry: LayerEntry {
            path,
            kind: EntryKind::Symlink { target },
            mode: SYMLINK_MODE,
            uid,
            gid,
            xattrs: Default::default(),
        },
        inode: None,
    }
}

/// Sorts (`Path`'s order compares normal components as bytes, the same order
/// `regbuild_fs::layer` uses), keeps the last of duplicate paths, drops entries
/// below non-directories and turns repeated inodes into hard links.
fn finalize(mut items: Vec<Collected>) -> Vec<LayerEntry> {
    items.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    let mut unique: Vec<Collected> = Vec::with_capacity(items.len());
    for item in items {
        if unique
            .last()
            .is_some_and(|last| last.entry.path == item.entry.path)
        {
            unique.pop();
        }
        unique.push(item);
    }
    prune_below_non_dirs(&mut unique);
    link_hard_links(unique)
}

/// In sorted order an entry's descendants follow it directly.
fn prune_below_non_dirs(items: &mut Vec<Collected>) {
    let mut blocker: Option<PathBuf> = None;
    items.retain(|item| {
        let path = &item.entry.path;
        if let Some(b) = &blocker {
            if path.starts_with(b) {
                return false;
            }
        }
        blocker = match item.entry.kind {
            EntryKind::Dir => None,
            _ => Some(path.clone()),
        };
        true
    });
}

fn link_hard_links(items: Vec<Collected>) -> Vec<LayerEntry> {
    let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
    items
        .into_iter()
        .map(|item| {
            let mut entry = item.entry;
            if let Some(inode) = item.inode {
                match first.get(&inode) {
                    Some(target) => {
                        entry.kind = EntryKind::HardLink {
                            target: target.clone(),
                        }
                    }
                    None => {
                        first.insert(inode, entry.path.clone());
                    }
                }
            }
            entry
        })
        .collect()
}

// ---------------------------------------------------------------- globs

/// One path segment pattern with Go `filepath.Match` semantics ([`Dialect::CopySource`]).
#[derive(Debug)]
struct Pattern(Glob);

impl Pattern {
    fn parse(segment: &str) -> Result<Pattern, GlobError> {
        Glob::new(segment, Dialect::CopySource).map(Pattern)
    }

    /// The unescaped text if the pattern has no wildcard.
    fn literal(&self) -> Option<String> {
        self.0.literal()
    }

    /// Invalid UTF-8 bytes count as one U+FFFD each, like Go.
    fn matches(&self, name: &[u8]) -> bool {
        self.0.matches_bytes(name)
    }
}

/// Why a `COPY` source segment is not a valid pattern.
fn pattern_problem(e: GlobError) -> &'static str {
    match e {
        GlobError::TrailingBackslash => "trailing `\\`",
        GlobError::UnclosedClass => "unclosed `[`",
        GlobError::UnescapedInClass => "unescaped `]` or `-` in a character class",
        GlobError::ReversedRange { .. } => "character range is out of order",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regbuild_fs::layer::{build_layer, LayerOptions};
    use std::fs::{File, FileTimes};
    use std::io::Read;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, SystemTime};

    static NOTHING: std::sync::LazyLock<DockerIgnore> =
        std::sync::LazyLock::new(DockerIgnore::default);
    static AS_COPY: std::sync::LazyLock<SourceOptions> =
        std::sync::LazyLock::new(SourceOptions::default);

    fn req<'a>(context: &'a Path, sources: &'a [String], dest: &'a str) -> CopyRequest<'a> {
        CopyRequest {
            context,
            sources,
            dest,
            chown: None,
            chmod: None,
            ignore: &NOTHING,
            options: &AS_COPY,
        }
    }

    fn dockerignore(patterns: &[&str]) -> DockerIgnore {
        DockerIgnore::from_patterns(patterns, Path::new(".dockerignore")).unwrap()
    }

    fn srcs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn copy(context: &Path, sources: &[&str], dest: &str) -> Result<Vec<LayerEntry>, ContextError> {
        let sources = srcs(sources);
        collect(&req(context, &sources, dest))
    }

    fn paths(entries: &[LayerEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                let mut p = e.path.to_string_lossy().into_owned();
                if e.kind == EntryKind::Dir {
                    p.push('/');
                }
                p
            })
            .collect()
    }

    fn get<'a>(entries: &'a [LayerEntry], path: &str) -> &'a LayerEntry {
        entries
            .iter()
            .find(|e| e.path == Path::new(path))
            .unwrap_or_else(|| panic!("no entry {path} in {:?}", paths(entries)))
    }

    fn write(path: &Path, content: &[u8], mode: u32) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, content).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// context/
    ///   src/a.txt (0644), src/run.sh (04755), src/sub/b.txt, src/empty/,
    ///   src/link -> a.txt, src/abs -> /etc/passwd
    ///   top.txt, x.md
    fn sample() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(&root.join("src/a.txt"), b"a", 0o644);
        write(&root.join("src/run.sh"), b"#!/bin/sh", 0o4755);
        write(&root.join("src/sub/b.txt"), b"b", 0o600);
        fs::create_dir(root.join("src/empty")).unwrap();
        symlink("a.txt", root.join("src/link")).unwrap();
        symlink("/etc/passwd", root.join("src/abs")).unwrap();
        write(&root.join("top.txt"), b"top", 0o644);
        write(&root.join("x.md"), b"x", 0o644);
        tmp
    }

    fn layer_digest(
        entries: Vec<LayerEntry>,
    ) -> (regbuild_oci::digest::Digest, regbuild_oci::digest::Digest) {
        let tmp = tempfile::tempdir().unwrap();
        let layer =
            build_layer(entries, &LayerOptions::default(), tmp.path(), &mut |_| {}).unwrap();
        (layer.digest, layer.diff_id)
    }

    #[test]
    fn directory_source_copies_its_contents() {
        let ctx = sample();
        let entries = copy(ctx.path(), &["src"], "/app/").unwrap();
        assert_eq!(
            paths(&entries),
            [
                "app/",
                "app/a.txt",
                "app/abs",
                "app/empty/",
                "app/link",
                "app/run.sh",
                "app/sub/",
                "app/sub/b.txt"
            ]
        );
        // Without a trailing slash the destination is still the directory.
        assert_eq!(
            paths(&copy(ctx.path(), &["src/"], "/app").unwrap()),
            paths(&entries)
        );
    }

    #[test]
    fn modes_and_owners() {
        let ctx = sample();
        let entries = copy(ctx.path(), &["src"], "/opt/app/").unwrap();
        assert_eq!(get(&entries, "opt").mode, 0o755);
        assert_eq!(get(&entries, "opt/app").mode, 0o755);
        assert_eq!(get(&entries, "opt/app/a.txt").mode, 0o644);
        assert_eq!(get(&entries, "opt/app/run.sh").mode, 0o4755);
        assert_eq!(get(&entries, "opt/app/sub/b.txt").mode, 0o600);
        assert!(entries.iter().all(|e| e.uid == 0 && e.gid == 0));

        let sources = srcs(&["src"]);
        let request = CopyRequest {
            chown: Some((1000, 1001)),
            chmod: Some(0o640),
            ..req(ctx.path(), &sources, "/opt/app/")
        };
        let entries = collect(&request).unwrap();
        // Created parents stay root-owned 0755.
        for parent in ["opt", "opt/app"] {
            let e = get(&entries, parent);
            assert_eq!((e.mode, e.uid, e.gid), (0o755, 0, 0));
        }
        for copied in [
            "opt/app/a.txt",
            "opt/app/run.sh",
            "opt/app/sub",
            "opt/app/sub/b.txt",
        ] {
            let e = get(&entries, copied);
            assert_eq!((e.mode, e.uid, e.gid), (0o640, 1000, 1001), "{copied}");
        }
        let link = get(&entries, "opt/app/link");
        assert_eq!((link.mode, link.uid, link.gid), (0o777, 1000, 1001));
    }

    #[test]
    fn file_source_destinations() {
        let ctx = sample();
        let into_dir = copy(ctx.path(), &["top.txt"], "/app/").unwrap();
        assert_eq!(paths(&into_dir), ["app/", "app/top.txt"]);
        let as_file = copy(ctx.path(), &["top.txt"], "/etc/app/conf").unwrap();
        assert_eq!(paths(&as_file), ["etc/", "etc/app/", "etc/app/conf"]);
        let several = copy(ctx.path(), &["top.txt", "x.md"], "/app").unwrap();
        assert_eq!(paths(&several), ["app/", "app/top.txt", "app/x.md"]);
        let root = copy(ctx.path(), &["top.txt"], "/").unwrap();
        assert_eq!(paths(&root), ["top.txt"]);
        let dot = copy(ctx.path(), &["./src/sub/b.txt"], "/work/.").unwrap();
        assert_eq!(paths(&dot), ["work/", "work/b.txt"]);
        match &get(&as_file, "etc/app/conf").kind {
            EntryKind::File { source, size } => {
                assert_eq!(*size, 3);
                assert_eq!(fs::read(source).unwrap(), b"top");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn globs() {
        let ctx = sample();
        let txt = copy(ctx.path(), &["*.txt"], "/app/").unwrap();
        assert_eq!(paths(&txt), ["app/", "app/top.txt"]);
        let single = copy(ctx.path(), &["*.md"], "/app/readme").unwrap();
        assert_eq!(paths(&single), ["app/", "app/readme"]);
        let many = copy(ctx.path(), &["[tx]*.*"], "/app").unwrap();
        assert_eq!(paths(&many), ["app/", "app/top.txt", "app/x.md"]);
        let nested = copy(ctx.path(), &["s?c/*/?.txt"], "/d/").unwrap();
        assert_eq!(paths(&nested), ["d/", "d/b.txt"]);
        // A matched directory copies its contents, like a plain source.
        let dirs = copy(ctx.path(), &["sr*"], "/d/").unwrap();
        assert!(paths(&dirs).contains(&"d/sub/b.txt".to_string()));
        let negated = copy(ctx.path(), &["src/[^a-l]*"], "/d/").unwrap();
        assert_eq!(paths(&negated), ["d/", "d/b.txt", "d/run.sh"]);
    }

    #[test]
    fn glob_without_match_is_an_error_naming_it() {
        let ctx = sample();
        let err = copy(ctx.path(), &["*.rs"], "/app/").unwrap_err();
        assert!(matches!(err, ContextError::NoMatch { .. }));
        let message = err.to_string();
        assert!(
            message.contains("no source files were specified"),
            "{message}"
        );
        assert!(message.contains("*.rs"), "{message}");
        // A glob never matches through a file.
        assert!(copy(ctx.path(), &["top.txt/*"], "/app/").is_err());
    }

    #[test]
    fn bad_patterns_are_refused() {
        let ctx = sample();
        for pattern in ["src/[a", "a\\", "[]", "[z-a]", "[a-]"] {
            let err = copy(ctx.path(), &[pattern], "/app/").unwrap_err();
            assert!(
                matches!(err, ContextError::BadPattern { .. }),
                "{pattern}: {err}"
            );
        }
        // An escaped wildcard is a literal name.
        write(&ctx.path().join("star*"), b"*", 0o644);
        assert_eq!(
            paths(&copy(ctx.path(), &["star\\*"], "/d/").unwrap()),
            ["d/", "d/star*"]
        );
    }

    #[test]
    fn pattern_matching() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("*", b"", true),
            ("*", b".hidden", true),
            ("a*b*c", b"aXbYc", true),
            ("a*b*c", b"aXbY", false),
            ("*.txt", b"a.txt.bak", false),
            ("*.txt*", b"a.txt.bak", true),
            ("?", b"\xc3\xa9", true),
            ("?", b"ab", false),
            ("?", b"\xff", true),
            ("[a-c]x", b"bx", true),
            ("[!a-c]x", b"dx", true),
            ("[^a-c]x", b"bx", false),
            ("[\\]]", b"]", true),
            ("\\*", b"*", true),
            ("\\*", b"a", false),
            ("caf\u{e9}", "café".as_bytes(), true),
        ];
        for (pattern, name, expect) in cases {
            let parsed = Pattern::parse(pattern).unwrap();
            assert_eq!(parsed.matches(name), *expect, "{pattern} vs {name:?}");
        }
    }

    #[test]
    fn escapes_are_refused_naming_the_source() {
        let ctx = sample();
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("secret"), b"s", 0o644);
        symlink(outside.path().join("secret"), ctx.path().join("out")).unwrap();
        symlink(outside.path(), ctx.path().join("outdir")).unwrap();
        symlink("../../..", ctx.path().join("src/up")).unwrap();
        type Check = fn(&ContextError) -> bool;
        let cases: &[(&str, Check)] = &[
            // Absolute: from the context's root, never the host's.
            ("/etc/passwd", |e| {
                matches!(e, ContextError::NotFound { .. })
            }),
            ("/../../etc/passwd", |e| {
                matches!(e, ContextError::NotFound { .. })
            }),
            ("../x", |e| matches!(e, ContextError::OutsideContext { .. })),
            ("src/../../x", |e| {
                matches!(e, ContextError::OutsideContext { .. })
            }),
            ("out", |e| {
                matches!(e, ContextError::SymlinkOutsideContext { .. })
            }),
            ("outdir/secret", |e| {
                matches!(e, ContextError::SymlinkOutsideContext { .. })
            }),
            ("src/up", |e| {
                matches!(e, ContextError::SymlinkOutsideContext { .. })
            }),
            ("src/abs", |e| {
                matches!(
                    e,
                    ContextError::SymlinkOutsideContext { .. } | ContextError::NotFound { .. }
                )
            }),
            ("missing.txt", |e| {
                matches!(e, ContextError::NotFound { .. })
            }),
        ];
        for (source, check) in cases {
            let err = copy(ctx.path(), &[source], "/app/").unwrap_err();
            assert!(check(&err), "{source}: {err:?}");
            assert!(err.to_string().contains(source), "{source}: {err}");
        }
        // `..` that stays inside is fine.
        assert_eq!(
            paths(&copy(ctx.path(), &["src/../top.txt"], "/d/").unwrap()),
            ["d/", "d/top.txt"]
        );
        // An absolute source is read from the context's root; its `..` stops there.
        for rooted in ["/top.txt", "/../top.txt", "/src/../../top.txt", "//top.txt"] {
            assert_eq!(
                paths(&copy(ctx.path(), &[rooted], "/d/").unwrap()),
                ["d/", "d/top.txt"],
                "{rooted}"
            );
        }
        assert_eq!(
            paths(&copy(ctx.path(), &["/*.txt"], "/d/").unwrap()),
            paths(&copy(ctx.path(), &["*.txt"], "/d/").unwrap())
        );
        // Globs do not look into directories outside the context.
        assert!(matches!(
            copy(ctx.path(), &["outdir/*"], "/d/").unwrap_err(),
            ContextError::NoMatch { .. }
        ));
    }

    #[test]
    fn symlinks_inside_are_copied_as_symlinks() {
        let ctx = sample();
        let entries = copy(ctx.path(), &["src"], "/app/").unwrap();
        assert_eq!(
            get(&entries, "app/link").kind,
            EntryKind::Symlink {
                target: PathBuf::from("a.txt")
            }
        );
        // Targets are kept as-is, even pointing outside: resolved in the container.
        assert_eq!(
            get(&entries, "app/abs").kind,
            EntryKind::Symlink {
                target: PathBuf::from("/etc/passwd")
            }
        );
    }

    #[test]
    fn symlink_sources_are_followed_inside_the_context() {
        let ctx = sample();
        symlink("src/sub", ctx.path().join("sublink")).unwrap();
        let file = copy(ctx.path(), &["src/link"], "/app/").unwrap();
        assert_eq!(paths(&file), ["app/", "app/link"]);
        match &get(&file, "app/link").kind {
            EntryKind::File { source, .. } => assert_eq!(fs::read(source).unwrap(), b"a"),
            other => panic!("{other:?}"),
        }
        let dir = copy(ctx.path(), &["sublink"], "/app/").unwrap();
        assert_eq!(paths(&dir), ["app/", "app/b.txt"]);
        // A symlinked directory in the middle of a source path is followed too.
        let through = copy(ctx.path(), &["sublink/b.txt"], "/app/").unwrap();
        assert_eq!(paths(&through), ["app/", "app/b.txt"]);
    }

    #[test]
    fn symlink_loops_terminate() {
        let ctx = sample();
        let root = ctx.path();
        symlink(".", root.join("src/self")).unwrap();
        symlink("..", root.join("src/sub/parent")).unwrap();
        symlink("loop_b", root.join("loop_a")).unwrap();
        symlink("loop_a", root.join("loop_b")).unwrap();
        let entries = copy(root, &["."], "/app/").unwrap();
        assert!(matches!(
            get(&entries, "app/src/self").kind,
            EntryKind::Symlink { .. }
        ));
        assert!(matches!(
            get(&entries, "app/loop_a").kind,
            EntryKind::Symlink { .. }
        ));
        // Following a looping source fails instead of hanging.
        let err = copy(root, &["loop_a"], "/app/").unwrap_err();
        assert!(err.to_string().contains("loop_a"), "{err}");
        // A source symlink to a directory containing a loop back to it.
        let again = copy(root, &["src/self"], "/app/").unwrap();
        assert!(matches!(
            get(&again, "app/self").kind,
            EntryKind::Symlink { .. }
        ));
        // Below a wildcard, symlinked directories are not entered...
        let err = copy(root, &["*/*/parent/?.txt"], "/app/").unwrap_err();
        assert!(matches!(err, ContextError::NoMatch { .. }), "{err}");
        // ...so even a deep pattern over several loops stays small.
        for i in 0..6 {
            fs::create_dir(root.join(format!("d{i}"))).unwrap();
            symlink("..", root.join(format!("d{i}/up"))).unwrap();
        }
        let deep = ["*"; 24].join("/");
        assert!(matches!(
            copy(root, &[&deep], "/app/").unwrap_err(),
            ContextError::NoMatch { .. }
        ));
        // Before the first wildcard, a symlinked directory is followed.
        let through = copy(root, &["src/sub/parent/?.txt"], "/app/").unwrap();
        assert_eq!(paths(&through), ["app/", "app/a.txt"]);
    }

    #[test]
    fn hard_links_point_to_the_first_path() {
        let ctx = tempfile::tempdir().unwrap();
        let root = ctx.path();
        write(&root.join("d/z.txt"), b"shared", 0o644);
        fs::hard_link(root.join("d/z.txt"), root.join("d/a.txt")).unwrap();
        fs::hard_link(root.join("d/z.txt"), root.join("d/m.txt")).unwrap();
        write(&root.join("d/solo.txt"), b"solo", 0o644);
        let entries = copy(root, &["d"], "/x/").unwrap();
        assert!(matches!(
            get(&entries, "x/a.txt").kind,
            EntryKind::File { .. }
        ));
        for name in ["x/m.txt", "x/z.txt"] {
            assert_eq!(
                get(&entries, name).kind,
                EntryKind::HardLink {
                    target: PathBuf::from("x/a.txt")
                }
            );
        }
        assert!(matches!(
            get(&entries, "x/solo.txt").kind,
            EntryKind::File { .. }
        ));

        let tmp = tempfile::tempdir().unwrap();
        let layer =
            build_layer(entries, &LayerOptions::default(), tmp.path(), &mut |_| {}).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            File::open(&layer.file).unwrap(),
        ));
        let kinds: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert_eq!(kinds[1], ("x/a.txt".to_string(), tar::EntryType::Regular));
        assert_eq!(kinds[2], ("x/m.txt".to_string(), tar::EntryType::Link));
    }

    #[test]
    fn ignored_paths_are_skipped() {
        let ctx = sample();
        let ignore = dockerignore(&["src/sub", "**/*.sh"]);
        let with = |sources: &[String]| {
            collect(&CopyRequest {
                ignore: &ignore,
                options: &Default::default(),
                ..req(ctx.path(), sources, "/app/")
            })
        };
        let entries = with(&srcs(&["src"])).unwrap();
        assert_eq!(
            paths(&entries),
            ["app/", "app/a.txt", "app/abs", "app/empty/", "app/link"]
        );
        for source in ["src/sub/b.txt", "src/run.sh", "src/sub"] {
            assert!(
                matches!(
                    with(&srcs(&[source])).unwrap_err(),
                    ContextError::NotFound { .. }
                ),
                "{source}"
            );
        }
        assert!(matches!(
            with(&srcs(&["src/*.sh"])).unwrap_err(),
            ContextError::NoMatch { .. }
        ));
        // A symlink source whose target is excluded is missing too.
        symlink("run.sh", ctx.path().join("src/runlink")).unwrap();
        assert!(matches!(
            with(&srcs(&["src/runlink"])).unwrap_err(),
            ContextError::NotFound { .. }
        ));
    }

    #[test]
    fn patterns_see_context_relative_paths() {
        let ctx = sample();
        // Relative to the context, not to the source directory being walked.
        let ignore = dockerignore(&["src/sub/b.txt", "b.txt", "sub"]);
        let sources = srcs(&["src/sub", "src/a.txt"]);
        let entries = collect(&CopyRequest {
            ignore: &ignore,
            options: &Default::default(),
            ..req(ctx.path(), &sources, "/app/")
        })
        .unwrap();
        assert_eq!(paths(&entries), ["app/", "app/a.txt"]);
    }

    /// The exclusion-descent cases of tonistiigi/fsutil's filter_test.go (commit 6d9dc2e;
    /// the walk BuildKit sends the context with), as data, plus `.dockerignore` cases of
    /// the same rule: (tree, patterns, what `COPY . /` copies). Tree entries ending in `/`
    /// are directories. An excluded directory is entered when an exception may match
    /// below it, and copied when something below it is.
    const FSUTIL_EXCLUDE_WALKS: &[(&[&str], &[&str], &[&str])] = &[
        // TestWalkerExclude
        (
            &["bar", "foo/", "foo2", "foo/bar2"],
            &["foo*", "!foo/bar2"],
            &["bar", "foo/", "foo/bar2"],
        ),
        // TestWalkerPermissionDenied, without the unreadable directory.
        (&["foo/", "foo/bar/"], &["**/bar"], &["foo/"]),
        (
            &["foo/", "foo/bar/"],
            &["**/bar", "!foo/bar/baz"],
            &["foo/"],
        ),
        (
            &["foo/", "foo/bar/"],
            &["**/bar", "!foo/bar"],
            &["foo/", "foo/bar/"],
        ),
        // TestFilteredOpenInvert: what Open finds is what the walk sends.
        (
            &["foo/bar/baz/x", "foo/bar/baz/y"],
            &["foo", "!foo/bar", "foo/bar/baz", "!foo/bar/baz/x"],
            &["foo/", "foo/bar/", "foo/bar/baz/", "foo/bar/baz/x"],
        ),
        // TestFilteredOpen
        (&["foo", "bar"], &["bar"], &["foo"]),
        // patternmatcher's TestPatternMatchesFolderExclusions, as a walk.
        (
            &[
                "docs/README.md",
                "docs/other.md",
                "docs/sub/x.md",
                "src/main.rs",
            ],
            &["docs", "!docs/README.md"],
            &["docs/", "docs/README.md", "src/", "src/main.rs"],
        ),
        // multiPatternTests: `**` + `!util/docker/web`.
        (
            &[
                "util/docker/web/index.html",
                "util/docker/web/css/site.css",
                "util/docker/other.txt",
                "util/x.txt",
                "top.txt",
            ],
            &["**", "!util/docker/web"],
            &[
                "util/",
                "util/docker/",
                "util/docker/web/",
                "util/docker/web/css/",
                "util/docker/web/css/site.css",
                "util/docker/web/index.html",
            ],
        ),
        // An exception with a wildcard: every excluded directory is entered.
        (
            &["vendor/a/x.go", "vendor/a/x.c", "vendor/b/y.c", "main.go"],
            &["vendor", "!**/*.go"],
            &["main.go", "vendor/", "vendor/a/", "vendor/a/x.go"],
        ),
        // Prefix-only exceptions elsewhere: the excluded directory is skipped whole.
        (
            &["a/keep", "b/c", "b/d"],
            &["a", "b", "!b/c"],
            &["b/", "b/c"],
        ),
        // An exception for a directory brings all of it back.
        (
            &["build/out/app", "build/out/lib/x.so", "build/tmp/junk"],
            &["build", "!build/out"],
            &[
                "build/",
                "build/out/",
                "build/out/app",
                "build/out/lib/",
                "build/out/lib/x.so",
            ],
        ),
    ];

    fn tree_of(entries: &[&str]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for e in entries {
            let path = tmp.path().join(e);
            if e.ends_with('/') {
                fs::create_dir_all(&path).unwrap();
            } else {
                write(&path, e.as_bytes(), 0o644);
            }
        }
        tmp
    }

    #[test]
    fn excluded_directories_are_entered_when_an_exception_may_match_below() {
        let mut wrong = Vec::new();
        for &(tree, patterns, want) in FSUTIL_EXCLUDE_WALKS {
            let ctx = tree_of(tree);
            let ignore = dockerignore(patterns);
            let sources = srcs(&["."]);
            let got = collect(&CopyRequest {
                ignore: &ignore,
                options: &Default::default(),
                ..req(ctx.path(), &sources, "/")
            })
            .map(|e| paths(&e));
            if got.as_deref().ok()
                != Some(
                    want.iter()
                        .map(|w| w.to_string())
                        .collect::<Vec<_>>()
                        .as_slice(),
                )
            {
                wrong.push(format!(
                    "{patterns:?} over {tree:?}: {got:?}, want {want:?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn sources_below_an_excluded_directory_are_found_when_re_included() {
        let ctx = tree_of(&["docs/README.md", "docs/other.md", "docs/sub/x.md", "empty/"]);
        let ignore = dockerignore(&["docs", "!docs/README.md", "empty", "!empty/nothing"]);
        let copy = |source: &str| {
            let sources = srcs(&[source]);
            collect(&CopyRequest {
                ignore: &ignore,
                options: &Default::default(),
                ..req(ctx.path(), &sources, "/x/")
            })
            .map(|e| paths(&e))
        };
        assert_eq!(copy("docs/README.md").unwrap(), ["x/", "x/README.md"]);
        assert_eq!(copy("docs").unwrap(), ["x/", "x/README.md"]);
        assert_eq!(copy("docs/*.md").unwrap(), ["x/", "x/README.md"]);
        assert_eq!(
            copy("*").unwrap(),
            ["x/", "x/README.md"],
            "only docs/ is in the context"
        );
        for missing in ["docs/other.md", "docs/sub", "docs/sub/x.md", "empty"] {
            assert!(
                matches!(copy(missing), Err(ContextError::NotFound { .. })),
                "{missing}: {:?}",
                copy(missing)
            );
        }
    }

    #[test]
    fn special_files_are_skipped_while_walking_and_refused_as_sources() {
        let ctx = sample();
        let _listener = UnixListener::bind(ctx.path().join("src/sock")).unwrap();
        let entries = copy(ctx.path(), &["src"], "/app/").unwrap();
        assert!(!paths(&entries).contains(&"app/sock".to_string()));
        let err = copy(ctx.path(), &["src/sock"], "/app/").unwrap_err();
        assert!(matches!(err, ContextError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("src/sock"));
    }

    #[test]
    fn non_utf8_names_survive() {
        let ctx = tempfile::tempdir().unwrap();
        let name = OsStr::from_bytes(b"caf\xe9.txt");
        write(&ctx.path().join("d").join(name), b"bytes", 0o644);
        let entries = copy(ctx.path(), &["d"], "/app/").unwrap();
        assert_eq!(entries[1].path, Path::new("app").join(name));
        let globbed = copy(ctx.path(), &["d/caf?.txt"], "/app/").unwrap();
        assert_eq!(globbed[1].path, Path::new("app").join(name));
        let tmp = tempfile::tempdir().unwrap();
        let layer =
            build_layer(entries, &LayerOptions::default(), tmp.path(), &mut |_| {}).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            File::open(&layer.file).unwrap(),
        ));
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            names.push((entry.path_bytes().into_owned(), data));
        }
        assert_eq!(names[1], (b"app/caf\xe9.txt".to_vec(), b"bytes".to_vec()));
    }

    #[test]
    fn later_sources_win_and_shadowed_children_go() {
        let ctx = tempfile::tempdir().unwrap();
        let root = ctx.path();
        write(&root.join("one/x/inner.txt"), b"inner", 0o644);
        write(&root.join("two/x"), b"file now", 0o644);
        let entries = copy(root, &["one", "two"], "/d/").unwrap();
        assert_eq!(paths(&entries), ["d/", "d/x"]);
        let entries = copy(root, &["two", "one"], "/d/").unwrap();
        assert_eq!(paths(&entries), ["d/", "d/x/", "d/x/inner.txt"]);
    }

    #[test]
    fn order_matches_the_layer_order() {
        let ctx = tempfile::tempdir().unwrap();
        for name in ["a/b", "a.b", "a-b", "a/c/d"] {
            write(&ctx.path().join(name), b"", 0o644);
        }
        let entries = copy(ctx.path(), &["."], "/").unwrap();
        assert_eq!(
            paths(&entries),
            ["a/", "a/b", "a/c/", "a/c/d", "a-b", "a.b"]
        );
    }

    #[test]
    fn bad_destinations_are_refused() {
        let ctx = sample();
        for dest in ["app/", "", "/a\0b"] {
            let err = copy(ctx.path(), &["top.txt"], dest).unwrap_err();
            assert!(
                matches!(err, ContextError::InvalidDest { .. }),
                "{dest:?}: {err}"
            );
        }
        assert_eq!(
            paths(&copy(ctx.path(), &["top.txt"], "/a/../b/").unwrap()),
            ["b/", "b/top.txt"]
        );
        assert_eq!(
            paths(&copy(ctx.path(), &["top.txt"], "/../..").unwrap()),
            ["top.txt"]
        );
    }

    #[test]
    fn missing_context_is_reported() {
        let ctx = tempfile::tempdir().unwrap();
        let missing = ctx.path().join("nope");
        let err = copy(&missing, &["."], "/").unwrap_err();
        assert!(matches!(err, ContextError::Io { .. }));
        assert!(err.to_string().contains("nope"));
    }

    /// Builds the same tree with files created in the given order.
    fn tree(order: &[usize]) -> tempfile::TempDir {
        let files: [(&str, &[u8], u32); 4] = [
            ("app/main.py", b"print('hi')\n", 0o644),
            ("app/bin/tool", b"\x7fELF", 0o755),
            ("app/data/z.json", b"{}", 0o600),
            ("README", b"readme", 0o644),
        ];
        let ctx = tempfile::tempdir().unwrap();
        for &i in order {
            let (name, content, mode) = files[i];
            write(&ctx.path().join(name), content, mode);
        }
        fs::create_dir_all(ctx.path().join("app/empty")).unwrap();
        fs::set_permissions(
            ctx.path().join("app/empty"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        for dir in ["app", "app/bin", "app/data"] {
            fs::set_permissions(ctx.path().join(dir), fs::Permissions::from_mode(0o755)).unwrap();
        }
        symlink("bin/tool", ctx.path().join("app/tool")).unwrap();
        ctx
    }

    #[test]
    fn same_tree_gives_the_same_layer() {
        let first = tree(&[0, 1, 2, 3]);
        let second = tree(&[3, 2, 1, 0]);
        let one = layer_digest(copy(first.path(), &["."], "/srv/").unwrap());
        let two = layer_digest(copy(second.path(), &["."], "/srv/").unwrap());
        assert_eq!(one, two);

        // Touching every file (mtime and atime) changes nothing.
        let past = SystemTime::UNIX_EPOCH + Duration::from_secs(123_456_789);
        for name in ["app/main.py", "app/bin/tool", "app/data/z.json", "README"] {
            let f = File::options()
                .write(true)
                .open(first.path().join(name))
                .unwrap();
            f.set_times(FileTimes::new().set_accessed(past).set_modified(past))
                .unwrap();
        }
        let touched = layer_digest(copy(first.path(), &["."], "/srv/").unwrap());
        assert_eq!(one, touched);

        // But a content change does change it.
        write(&first.path().join("README"), b"readme!", 0o644);
        assert_ne!(
            one,
            layer_digest(copy(first.path(), &["."], "/srv/").unwrap())
        );
    }

    /// `cap_net_bind_service=+ep` as `setcap` writes it (vfs_cap_data revision 2).
    const NET_BIND_SERVICE: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    fn capability(entry: &LayerEntry) -> Option<&[u8]> {
        entry.xattrs.get(KEPT_XATTR.as_bytes()).map(Vec::as_slice)
    }

    #[test]
    fn recorded_capabilities_are_kept_and_other_xattrs_are_not() {
        let ctx = sample();
        let mut xattrs: Xattrs = [(b"user.note".to_vec(), b"dropped".to_vec())].into();
        xattrs.insert(KEPT_XATTR.as_bytes().to_vec(), NET_BIND_SERVICE.to_vec());
        let recorded: HashMap<PathBuf, Xattrs> = [(PathBuf::from("src/run.sh"), xattrs)].into();
        let options = SourceOptions {
            recorded_xattrs: Some(Arc::new(recorded)),
            ..SourceOptions::default()
        };
        let sources = srcs(&["src"]);
        let entries = collect(&CopyRequest {
            chown: Some((1000, 1000)),
            options: &options,
            ..req(ctx.path(), &sources, "/app/")
        })
        .unwrap();
        let run = get(&entries, "app/run.sh");
        assert_eq!(capability(run), Some(NET_BIND_SERVICE.as_slice()));
        // BuildKit chowns before it copies the attributes: `--chown` keeps it.
        assert_eq!((run.uid, run.xattrs.len()), (1000, 1));
        assert!(entries
            .iter()
            .filter(|e| e.path != Path::new("app/run.sh"))
            .all(|e| e.xattrs.is_empty()));
        // A file source, named directly, keeps it too.
        let sources = srcs(&["src/run.sh"]);
        let entries = collect(&CopyRequest {
            options: &options,
            ..req(ctx.path(), &sources, "/bin/run")
        })
        .unwrap();
        assert_eq!(
            capability(get(&entries, "bin/run")),
            Some(NET_BIND_SERVICE.as_slice())
        );
    }

    #[test]
    fn capabilities_on_disk_are_read_from_the_context() {
        let ctx = sample();
        let file = ctx.path().join("src/run.sh");
        if let Err(e) = xattr::set(&file, KEPT_XATTR, &NET_BIND_SERVICE) {
            assert!(
                std::env::var_os("CI").is_none(),
                "setting security.capability failed with CI set: {e}"
            );
            println!("skipped: setting security.capability needs CAP_SETFCAP ({e})");
            return;
        }
        let entries = copy(ctx.path(), &["src"], "/app/").unwrap();
        assert_eq!(
            capability(get(&entries, "app/run.sh")),
            Some(NET_BIND_SERVICE.as_slice())
        );
        assert_eq!(capability(get(&entries, "app/a.txt")), None);
        // The attribute is in the layer's tar headers, so the layer changes with it.
        let without = tempfile::tempdir().unwrap();
        write(&without.path().join("run.sh"), b"#!/bin/sh", 0o4755);
        let with = copy(ctx.path(), &["src/run.sh"], "/run.sh").unwrap();
        assert_ne!(
            layer_digest(with),
            layer_digest(copy(without.path(), &["run.sh"], "/run.sh").unwrap())
        );
    }

    /// BuildKit's `--exclude` test context (frontend/dockerfile/exclude_patterns_test.go).
    fn media() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for (name, body) in [
            ("dir1/file-101.png", "2"),
            ("dir1/file-102.txt", "3"),
            ("dir1/file-103.jpeg", "4"),
            ("dir2/file-201.pdf", "6"),
            ("dir2/file-202.jpeg", "7"),
            ("dir2/file-203.png", "8"),
            ("dir3/file-301.mp3", "9"),
            ("dir3/file-302.mpeg", "10"),
            ("dir4/file-401.txt", "11"),
            ("dir4/sub/file-411.txt", "12"),
        ] {
            write(&root.join(name), body.as_bytes(), 0o600);
        }
        symlink("file-401.txt", root.join("dir4/file-402.txt")).unwrap();
        symlink("file-404.txt", root.join("dir4/file-403.txt")).unwrap();
        tmp
    }

    fn copy_with(
        context: &Path,
        sources: &[&str],
        dest: &str,
        options: SourceOptions,
    ) -> Result<Vec<LayerEntry>, ContextError> {
        let sources = srcs(sources);
        collect(&CopyRequest {
            options: &options,
            ..req(context, &sources, dest)
        })
    }

    fn excluding(patterns: &[&str]) -> SourceOptions {
        SourceOptions {
            exclude: srcs(patterns),
            ..SourceOptions::default()
        }
    }

    #[test]
    fn exclude_patterns_match_paths_relative_to_each_source() {
        let ctx = media();
        let c = |sources: &[&str], dest, patterns: &[&str]| {
            paths(&copy_with(ctx.path(), sources, dest, excluding(patterns)).unwrap())
        };
        assert_eq!(
            c(&["."], "/1", &["*/*.png", "*/*.jpeg"]),
            [
                "1/",
                "1/dir1/",
                "1/dir1/file-102.txt",
                "1/dir2/",
                "1/dir2/file-201.pdf",
                "1/dir3/",
                "1/dir3/file-301.mp3",
                "1/dir3/file-302.mpeg",
                "1/dir4/",
                "1/dir4/file-401.txt",
                "1/dir4/file-402.txt",
                "1/dir4/file-403.txt",
                "1/dir4/sub/",
                "1/dir4/sub/file-411.txt",
            ]
        );
        assert_eq!(c(&["dir3/"], "/3/", &["*.mp3"]), ["3/", "3/file-302.mpeg"]);
        // Relative to each match of `dir*`; a pattern without `**` stays at its level.
        assert_eq!(
            c(
                &["dir*"],
                "/4/",
                &["*.mp3", "*.jpeg", "*.png", "*.pdf", "*.txt"]
            ),
            ["4/", "4/file-302.mpeg", "4/sub/", "4/sub/file-411.txt"]
        );
        // `**` reaches every level; the directory itself does not match: it stays.
        assert_eq!(c(&["dir4"], "/5/", &["**/*.txt"]), ["5/", "5/sub/"]);
        // Everything excluded: the destination is still made.
        assert_eq!(c(&["dir*"], "/6", &["*"]), ["6/"]);
        // A directory is left out whole; an exception brings back what it names, and the
        // directory above it.
        assert_eq!(
            c(
                &["."],
                "/7/",
                &["dir1", "dir2", "dir3", "dir4", "!dir1/file-102.txt"]
            ),
            ["7/", "7/dir1/", "7/dir1/file-102.txt"]
        );
        // A source is never excluded itself, a glob match included (moby/buildkit#5489).
        assert_eq!(
            c(&["dir1/*.txt"], "/8/", &["*.txt"]),
            ["8/", "8/file-102.txt"]
        );
    }

    #[test]
    fn exclude_and_dockerignore_both_apply() {
        let ctx = media();
        let sources = srcs(&["."]);
        let ignore = dockerignore(&["dir1", "dir3"]);
        let options = excluding(&["dir2"]);
        let entries = collect(&CopyRequest {
            ignore: &ignore,
            options: &options,
            ..req(ctx.path(), &sources, "/x/")
        })
        .unwrap();
        assert!(paths(&entries)
            .iter()
            .all(|p| p.starts_with("x/dir4") || p == "x/"));
        let bad = copy_with(ctx.path(), &["."], "/x/", excluding(&["[z-a]"])).unwrap_err();
        assert!(
            matches!(
                bad,
                ContextError::BadFlagPattern {
                    flag: "--exclude",
                    ..
                }
            ),
            "{bad:?}"
        );
    }

    fn with_parents(exclude: &[&str]) -> SourceOptions {
        SourceOptions {
            parents: true,
            ..excluding(exclude)
        }
    }

    #[test]
    fn parents_keep_the_directories_above_each_source() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for name in [
            "x/a.txt",
            "y/a.txt",
            "x/y/a.txt",
            "x/y/b.txt",
            "x/y/c.md",
            "src/a.txt",
            "src/x/b.txt",
            "src/x/y/c.txt",
            "src/x/y/d.md",
        ] {
            write(&root.join(name), name.as_bytes(), 0o644);
        }
        fs::set_permissions(root.join("x"), fs::Permissions::from_mode(0o700)).unwrap();
        let c = |sources: &[&str], exclude: &[&str]| {
            paths(&copy_with(root, sources, "/p", with_parents(exclude)).unwrap())
        };
        assert_eq!(
            c(&["./x/a.txt", "./y/a.txt"], &[]),
            ["p/", "p/x/", "p/x/a.txt", "p/y/", "p/y/a.txt"]
        );
        let entries = copy_with(root, &["x/a.txt"], "/p", with_parents(&[])).unwrap();
        assert_eq!(
            get(&entries, "p/x").mode,
            0o700,
            "a kept parent keeps its mode"
        );
        assert_eq!(get(&entries, "p").mode, CREATED_DIR_MODE);
        // `/./` marks where the kept part starts.
        assert_eq!(
            c(&["./x/./y/*.txt"], &[]),
            ["p/", "p/y/", "p/y/a.txt", "p/y/b.txt"]
        );
        assert_eq!(
            c(&["./src/**/*.txt"], &[]),
            [
                "p/",
                "p/src/",
                "p/src/a.txt",
                "p/src/x/",
                "p/src/x/b.txt",
                "p/src/x/y/",
                "p/src/x/y/c.txt",
            ]
        );
        // A directory brings everything below it; --exclude is relative to the base.
        assert_eq!(
            c(&["src/x"], &["**/*.md"]),
            [
                "p/",
                "p/src/",
                "p/src/x/",
                "p/src/x/b.txt",
                "p/src/x/y/",
                "p/src/x/y/c.txt"
            ]
        );
        assert_eq!(
            c(&["x/./y"], &["y/*.md"]),
            ["p/", "p/y/", "p/y/a.txt", "p/y/b.txt"]
        );
        // A path without wildcards must exist; a pattern may match nothing.
        assert!(matches!(
            copy_with(root, &["x/missing.txt"], "/p", with_parents(&[])).unwrap_err(),
            ContextError::NotFound { .. }
        ));
        assert_eq!(c(&["nothing/*.txt"], &[]), ["p/"]);
        // Absolute sources too: from the context's root.
        assert_eq!(c(&["/x/a.txt"], &[]), ["p/", "p/x/", "p/x/a.txt"]);
    }
}
