//! Computes the runtime closure of ELF binaries for
//! `COPY --closure [--sysroot=DIR] <binary>... <dest-root>`: every file the
//! dynamic linker loads for them, found the way glibc's `ld.so` finds it (see
//! `ld.so(8)`), but by reading ELF headers only — nothing from the sysroot is
//! ever run (no `ldd`), so any architecture's sysroot works.
//!
//! It is not for copying the files or writing the layer: the caller turns the
//! [`ClosureFile`]s into entries under `<dest-root>`. Nor does it find what a
//! program loads by itself at run time with `dlopen` — glibc's NSS modules
//! (`libnss_*.so`, behind `getpwnam`/`getaddrinfo`), `gconv` modules, plugins:
//! no ELF header names them, so a Dockerfile that needs them copies them
//! itself.
//!
//! # Rules
//!
//! - Paths are inside the sysroot and every lookup stays there: each path
//!   component that is a symlink is followed within the sysroot (an absolute
//!   target starts again at the sysroot, `..` never climbs above it), so
//!   merged-usr links like `/lib -> usr/lib` work. At most 40 links are
//!   followed per lookup (Linux's limit); more is a [`ClosureError::SymlinkLoop`].
//! - Each binary is a program of its own: its `PT_INTERP` loader is loaded
//!   first (known by that path and its `DT_SONAME`), then the `DT_NEEDED`
//!   entries breadth first, as `ld.so` does. A name that an already loaded
//!   object answers to (a name it was loaded under, or its `DT_SONAME`) is not
//!   searched again, and a search that finds an already loaded file reuses it:
//!   the first object to need a library decides where it comes from.
//! - A `DT_NEEDED` containing `/` (after expanding `$ORIGIN`, `$LIB`,
//!   `$PLATFORM`) is a path. Otherwise it is searched for in
//!   1. the `DT_RPATH` of the needing object, then of the object that loaded
//!      that one, and so on up to the executable — only when the needing
//!      object has no `DT_RUNPATH` (an object with both ignores its
//!      `DT_RPATH`, as glibc does);
//!   2. (`LD_LIBRARY_PATH` is ignored: the build cannot know the environment
//!      the container will run with);
//!   3. the `DT_RUNPATH` of the needing object;
//!   4. the directories listed in the sysroot's `/etc/ld.so.conf`, following
//!      `include` globs (relative ones from the including file's directory),
//!      in place of `/etc/ld.so.cache`, which is not parsed: `ldconfig` builds
//!      the cache from exactly these directories plus the default ones, so the
//!      result agrees unless the cache is stale;
//!   5. unless the needing object has `DF_1_NODEFLIB`, the default
//!      directories: the multiarch ones for the object's machine and class
//!      (`/lib/x86_64-linux-gnu`, `/usr/lib/x86_64-linux-gnu`, …), for 64-bit
//!      objects `/lib64` and `/usr/lib64`, then `/lib` and `/usr/lib`.
//! - A candidate qualifies only if it is an ELF file of the same class,
//!   byte order and machine as the object that needs it; anything else of
//!   that name is skipped and the search goes on, as in `ld.so`.
//! - In rpaths, runpaths and `DT_NEEDED`: `$ORIGIN`/`${ORIGIN}` is the
//!   directory of the object — for the executable its symlink-free path (the
//!   kernel's `/proc/self/exe`), for a library the path it was found under.
//!   `$LIB` depends on how the sysroot's glibc was built (`lib64` upstream on
//!   64-bit, `lib/<multiarch>` on Debian, `lib` on Arch), so each of those is
//!   tried. `$PLATFORM` is known for x86 and AArch64 only; elsewhere the
//!   element using it is dropped, as `ld.so` drops one it cannot expand.
//!   Relative paths (in rpaths, `DT_NEEDED` or `PT_INTERP`) are taken from
//!   `/`, the working directory a container starts in by default.
//! - The result lists every loaded file as a [`ClosureKind::File`] at its
//!   symlink-free path, and every symlink met on the way — to the file
//!   (`libkrb5.so.3 -> libkrb5.so.3.3`) or to a directory above it
//!   (`/lib64 -> usr/lib64`) — as a [`ClosureKind::Symlink`] with its target
//!   verbatim, so the paths the loader uses work in the image. Absolute
//!   targets point into the image root, so they only work when `<dest-root>`
//!   is `/`.
//! - Hostile input cannot make it panic or run away: the number of objects,
//!   `DT_NEEDED` entries, search directories, files tried and `ld.so.conf`
//!   files are bounded ([`ClosureError::LimitExceeded`]), and there is no
//!   recursion except over `include` nesting, which is bounded too.
//!
//! Not handled: `glibc-hwcaps` subdirectories (`ld.so` falls back to the
//! plain directory, so the image works, maybe with a less optimised build),
//! `LD_PRELOAD` and `/etc/ld.so.preload`, and non-glibc loaders' own rules
//! (musl reads `/etc/ld-musl-*.path`, not `ld.so.conf`; its default
//! directories are covered by ours).

pub mod elf_machine;
mod elf_read;
mod search;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use elf_read::{read_elf, Arch, Dynamic, ElfInfo};
use search::*;

/// Symlinks followed while resolving one path: Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;
/// Linux's limits on a file name and a whole path.
const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4096;
/// Objects loaded for one binary; real programs stay in the hundreds.
const MAX_OBJECTS: usize = 4096;
/// `DT_NEEDED` entries of one object.
const MAX_NEEDED: usize = 4096;
/// Directories one rpath, runpath or the `ld.so.conf` tree may contribute.
const MAX_DIRS: usize = 4096;
/// Candidate files tried in one call, so that hostile rpaths cannot make the
/// search take forever.
const MAX_PROBES: usize = 1_000_000;
/// `ld.so.conf` files read in all, and how deep `include`s may nest.
const MAX_CONF_FILES: usize = 1024;
const MAX_CONF_DEPTH: usize = 16;
/// Strings one rpath element may expand to (each `$LIB` multiplies them).
const MAX_DST_RESULTS: usize = 64;
/// Largest `PT_DYNAMIC` and `PT_INTERP` segments read; real ones are a few
/// KiB, and this keeps a hostile header from making us read gigabytes.
const MAX_DYNAMIC_SIZE: u64 = 16 << 20;
const MAX_INTERP_SIZE: u64 = 4096;
/// Longest `DT_NEEDED`/`DT_RPATH`/`DT_RUNPATH` string read. The `object`
/// crate's own cached reader stops at 4 KiB, which Nix-style runpaths exceed.
const MAX_STRING_SIZE: u64 = 1 << 20;

/// What is at a [`ClosureFile::path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosureKind {
    /// A regular file; `source` is where it is on disk (sysroot joined, no
    /// symlinks left).
    File { source: PathBuf },
    /// A symlink; `target` is the link's content, verbatim.
    Symlink { target: PathBuf },
}

/// One path of the closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosureFile {
    /// Absolute path inside the sysroot (and so in the image), e.g.
    /// `/usr/lib/x86_64-linux-gnu/libc.so.6`.
    pub path: PathBuf,
    pub kind: ClosureKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ClosureError {
    #[error("COPY --closure binary {path:?} must be an absolute path inside the sysroot")]
    RelativeBinary { path: PathBuf },
    #[error("COPY --closure binary {path:?} does not exist in sysroot {sysroot:?}")]
    BinaryNotFound { path: PathBuf, sysroot: PathBuf },
    #[error("COPY --closure binary {path:?} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path:?} is not an ELF file, so COPY --closure cannot tell what it loads")]
    NotElf { path: PathBuf },
    #[error("malformed ELF file {path:?}: {reason}")]
    BadElf { path: PathBuf, reason: ElfProblem },
    #[error(
        "program loader {interpreter:?} (PT_INTERP) of {binary:?} is not in the sysroot \
         or not an ELF file of the same class and machine"
    )]
    InterpreterNotFound {
        binary: PathBuf,
        interpreter: PathBuf,
    },
    #[error(
        "library {library:?} needed by {binary:?} was not found in the sysroot (searched its \
         RPATH/RUNPATH, the directories of /etc/ld.so.conf and the default library directories \
         for an ELF file of the same class and machine)"
    )]
    LibraryNotFound { binary: PathBuf, library: String },
    #[error("too many levels of symbolic links resolving {path:?} in the sysroot")]
    SymlinkLoop { path: PathBuf },
    #[error("computing the runtime closure of {binary:?}: more than {limit} {what}")]
    LimitExceeded {
        binary: PathBuf,
        what: &'static str,
        limit: usize,
    },
    #[error("reading {path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why an ELF file's program headers or dynamic section cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ElfProblem {
    /// What the `object` crate could not read.
    #[error("{0}")]
    Read(object::read::Error),
    #[error("PT_INTERP of {size} bytes")]
    InterpTooLarge { size: u64 },
    #[error("PT_DYNAMIC of {size} bytes")]
    DynamicTooLarge { size: u64 },
    #[error("more than {} DT_NEEDED entries", MAX_NEEDED)]
    TooManyNeeded,
    #[error("DT_STRTAB is missing")]
    NoStringTable,
    #[error("DT_STRTAB is not in a loaded segment")]
    StringTableNotLoaded,
    #[error("cannot get the file size")]
    NoFileSize,
    #[error("dynamic entry {tag:#x} has a bad string")]
    BadString { tag: i64 },
}

/// Returns every file `binaries` (absolute paths inside `sysroot`) load at run
/// time, themselves included, sorted by path without duplicates. See the
/// module documentation for the rules.
pub fn closure(sysroot: &Path, binaries: &[PathBuf]) -> Result<Vec<ClosureFile>, ClosureError> {
    let mut walk = Walk {
        sysroot,
        binary: PathBuf::new(),
        elves: HashMap::new(),
        conf_dirs: None,
        probes: 0,
        out: BTreeMap::new(),
    };
    for binary in binaries {
        walk.binary = binary.clone();
        walk.program(binary)?;
    }
    Ok(walk
        .out
        .into_iter()
        .map(|(path, kind)| ClosureFile { path, kind })
        .collect())
}

/// A path resolved inside the sysroot.
struct Resolved {
    /// Absolute, symlink-free path inside the sysroot.
    path: PathBuf,
    /// Symlinks followed on the way: (path inside the sysroot, target).
    links: Vec<(PathBuf, PathBuf)>,
    meta: Metadata,
}

/// One object loaded into the program being followed.
struct Loaded {
    /// Path it was loaded under, for messages.
    path: PathBuf,
    /// What `$ORIGIN` stands for in its strings.
    origin: PathBuf,
    /// Index of the object whose `DT_NEEDED` loaded it.
    loader: Option<usize>,
    arch: Arch,
    flags: u32,
    dynamic: Rc<Dynamic>,
    /// `DT_RPATH` and `DT_RUNPATH`, expanded.
    rpath: Vec<PathBuf>,
    runpath: Vec<PathBuf>,
}

/// A library found by a search, before it is loaded.
struct Found {
    /// The path it was found under (`$ORIGIN` comes from it).
    path: PathBuf,
    resolved: Resolved,
    info: Rc<ElfInfo>,
}

/// State of one [`closure`] call.
struct Walk<'a> {
    sysroot: &'a Path,
    /// The binary being followed, for [`ClosureError::LimitExceeded`].
    binary: PathBuf,
    /// Parsed files by symlink-free path; `None` for files that are not ELF.
    elves: HashMap<PathBuf, Option<Rc<ElfInfo>>>,
    conf_dirs: Option<Rc<Vec<PathBuf>>>,
    probes: usize,
    out: BTreeMap<PathBuf, ClosureKind>,
}

impl Walk<'_> {
    /// Adds the closure of one binary, as one program: its own loader, its
    /// libraries found by their loading rules.
    fn program(&mut self, binary: &Path) -> Result<(), ClosureError> {
        if !binary.is_absolute() {
            return Err(ClosureError::RelativeBinary {
                path: binary.to_path_buf(),
            });
        }
        let resolved = self
            .resolve(binary)?
            .ok_or_else(|| ClosureError::BinaryNotFound {
                path: binary.to_path_buf(),
                sysroot: self.sysroot.to_path_buf(),
            })?;
        if !resolved.meta.is_file() {
            return Err(ClosureError::NotAFile {
                path: binary.to_path_buf(),
            });
        }
        let info = self
            .elf(&resolved.path)?
            .ok_or_else(|| ClosureError::NotElf {
                path: binary.to_path_buf(),
            })?;
        let dynamic = loadable(&info, binary)?;
        self.record(&resolved);
        // The kernel gives ld.so the symlink-free path, so that is $ORIGIN.
        let origin = parent(&resolved.path);
        let main = Loaded::new(self, binary, None, &info, dynamic, &origin)?;
        let mut objects = vec![main];
        let mut by_name: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut by_file: HashMap<PathBuf, usize> = HashMap::new();
        by_file.insert(resolved.path, 0);
        if let Some(soname) = &objects[0].dynamic.soname {
            by_name.insert(soname.clone(), 0);
        }

        if let Some(interp) = objects[0].dynamic.interp.clone() {
            let path = rooted(&interp);
            let not_found = || ClosureError::InterpreterNotFound {
                binary: binary.to_path_buf(),
                interpreter: path.clone(),
            };
            let (resolved, info) = self.candidate(&path, info.arch)?.ok_or_else(not_found)?;
            let dynamic = loadable(&info, &path)?;
            self.record(&resolved);
            let loaded = Loaded::new(self, &path, None, &info, dynamic, &parent(&path))?;
            by_name.insert(interp, 1);
            if let Some(soname) = &loaded.dynamic.soname {
                by_name.entry(soname.clone()).or_insert(1);
            }
            by_file.entry(resolved.path).or_insert(1);
            objects.push(loaded);
        }

        // Breadth first, like ld.so: this decides which object's search
        // path finds a library that several objects need.
        let mut next = 0;
        while next < objects.len() {
            let dynamic = Rc::clone(&objects[next].dynamic);
            for name in &dynamic.needed {
                if by_name.contains_key(name) {
                    continue;
                }
                let found = self.find(name, next, &objects)?.ok_or_else(|| {
                    ClosureError::LibraryNotFound {
                        binary: objects[next].path.clone(),
                        library: String::from_utf8_lossy(name).into_owned(),
                    }
                })?;
                if let Some(&same) = by_file.get(&found.resolved.path) {
                    by_name.insert(name.clone(), same);
                    continue;
                }
                if objects.len() >= MAX_OBJECTS {
                    return Err(self.limit("shared objects", MAX_OBJECTS));
                }
                let dynamic = loadable(&found.info, &found.path)?;
                self.record(&found.resolved);
                let index = objects.len();
                let loaded = Loaded::new(
                    self,
                    &found.path,
                    Some(next),
                    &found.info,
                    dynamic,
                    &parent(&found.path),
                )?;
                by_name.insert(name.clone(), index);
                if let Some(soname) = &loaded.dynamic.soname {
                    by_name.entry(soname.clone()).or_insert(index);
                }
                by_file.insert(found.resolved.path, index);
                objects.push(loaded);
            }
            next += 1;
        }
        Ok(())
    }

    /// Finds the library `name` needed by `objects[needer]`.
    fn find(
        &mut self,
        name: &[u8],
        needer: usize,
        objects: &[Loaded],
    ) -> Result<Option<Found>, ClosureError> {
        let object = &objects[needer];
        let names = expand_dst(name, &object.origin, object.arch, object.flags);
        if names.iter().any(|n| n.contains(&b'/')) {
            for name in names.iter().filter(|n| !n.is_empty()) {
                let path = rooted(name);
                if let Some((resolved, info)) = self.candidate(&path, object.arch)? {
                    return Ok(Some(Found {
                        path,
                        resolved,
                        info,
                    }));
                }
            }
            return Ok(None);
        }

        let mut dirs: Vec<&Path> = Vec::new();
        if object.dynamic.runpath.is_none() {
            let mut saw_main = false;
            let mut at = Some(needer);
            while let Some(i) = at {
                dirs.extend(objects[i].rpath.iter().map(PathBuf::as_path));
                saw_main |= i == 0;
                at = objects[i].loader;
            }
            if !saw_main {
                dirs.extend(objects[0].rpath.iter().map(PathBuf::as_path));
            }
        }
        dirs.extend(object.runpath.iter().map(PathBuf::as_path));
        let conf = self.conf_dirs()?;
        dirs.extend(conf.iter().map(PathBuf::as_path));
        let defaults = if object.dynamic.nodeflib {
            Vec::new()
        } else {
            default_dirs(object.arch, object.flags)
        };
        dirs.extend(defaults.iter().map(PathBuf::as_path));

        let mut tried = HashSet::new();
        for dir in dirs {
            if !tried.insert(dir) {
                continue;
            }
            for name in &names {
                if name.is_empty() {
                    continue;
                }
                let path = dir.join(OsStr::from_bytes(name));
                if let Some((resolved, info)) = self.candidate(&path, object.arch)? {
                    return Ok(Some(Found {
                        path,
                        resolved,
                        info,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The file at `path` if it is an ELF file of `arch`, `None` if there is
    /// no such file (or another kind of file) there.
    fn candidate(
        &mut self,
        path: &Path,
        arch: Arch,
    ) -> Result<Option<(Resolved, Rc<ElfInfo>)>, ClosureError> {
        self.probes += 1;
        if self.probes > MAX_PROBES {
            return Err(self.limit("library search probes", MAX_PROBES));
        }
        let Some(resolved) = self.resolve(path)? else {
            return Ok(None);
        };
        if !resolved.meta.is_file() {
            return Ok(None);
        }
        match self.elf(&resolved.path)? {
            Some(info) if info.arch == arch => Ok(Some((resolved, info))),
            _ => Ok(None),
        }
    }

    /// Parses (once) the ELF file at symlink-free `path`.
    fn elf(&mut self, path: &Path) -> Result<Option<Rc<ElfInfo>>, ClosureError> {
        if let Some(info) = self.elves.get(path) {
            return Ok(info.clone());
        }
        let host = self.host(path);
        let info = read_elf(&host)
            .map_err(|source| ClosureError::Io { path: host, source })?
            .map(Rc::new);
        self.elves.insert(path.to_path_buf(), info.clone());
        Ok(info)
    }

    /// Adds a resolved file and the symlinks leading to it to the result.
    fn record(&mut self, resolved: &Resolved) {
        for (link, target) in &resolved.links {
            self.out.insert(
                link.clone(),
                ClosureKind::Symlink {
                    target: target.clone(),
                },
            );
        }
        self.out.insert(
            resolved.path.clone(),
            ClosureKind::File {
                source: self.host(&resolved.path),
            },
        );
    }

    /// Resolves `path` inside the sysroot, following symlinks there the way
    /// the kernel would inside a chroot. `None` if it does not exist.
    fn resolve(&self, path: &Path) -> Result<Option<Resolved>, ClosureError> {
        let mut pending = Vec::new();
        push_steps(&mut pending, path);
        let mut current = PathBuf::from("/");
        let mut links = Vec::new();
        let mut meta = None;
        while let Some(step) = pending.pop() {
            match step {
                Step::Root => {
                    current = PathBuf::from("/");
                    meta = None;
                }
                Step::Parent => {
                    // At the root this stays there, as `/..` does.
                    current.pop();
                    meta = None;
                }
                Step::Name(name) => {
                    // What the kernel refuses with ENAMETOOLONG does not
                    // exist for ld.so either: it goes on searching.
                    if name.len() > NAME_MAX {
                        return Ok(None);
                    }
                    let candidate = current.join(&name);
                    let host = self.host(&candidate);
                    if host.as_os_str().len() >= PATH_MAX {
                        return Ok(None);
                    }
                    let m = match fs::symlink_metadata(&host) {
                        Ok(m) => m,
                        Err(e) if is_missing(&e) => return Ok(None),
                        Err(source) => return Err(ClosureError::Io { path: host, source }),
                    };
                    if m.file_type().is_symlink() {
                        if links.len() >= MAX_SYMLINKS {
                            return Err(ClosureError::SymlinkLoop {
                                path: path.to_path_buf(),
                            });
                        }
                        let target = fs::read_link(&host)
                            .map_err(|source| ClosureError::Io { path: host, source })?;
                        push_steps(&mut pending, &target);
                        links.push((candidate, target));
                        meta = None;
                    } else if !m.is_dir() && !pending.is_empty() {
                        // A file used as a directory: ENOTDIR.
                        return Ok(None);
                    } else {
                        current = candidate;
                        meta = Some(m);
                    }
                }
            }
        }
        let meta = match meta {
            Some(meta) => meta,
            None => {
                let host = self.host(&current);
                match fs::metadata(&host) {
                    Ok(m) => m,
                    Err(e) if is_missing(&e) => return Ok(None),
                    Err(source) => return Err(ClosureError::Io { path: host, source }),
                }
            }
        };
        Ok(Some(Resolved {
            path: current,
            links,
            meta,
        }))
    }

    /// Where the sysroot path `path` is on disk.
    fn host(&self, path: &Path) -> PathBuf {
        self.sysroot.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn limit(&self, what: &'static str, limit: usize) -> ClosureError {
        ClosureError::LimitExceeded {
            binary: self.binary.clone(),
            what,
            limit,
        }
    }

    /// The directories of the sysroot's `/etc/ld.so.conf`, read once.
    fn conf_dirs(&mut self) -> Result<Rc<Vec<PathBuf>>, ClosureError> {
        if let Some(dirs) = &self.conf_dirs {
            return Ok(Rc::clone(dirs));
        }
        let mut dirs = Vec::new();
        let mut seen = HashSet::new();
        self.read_conf(Path::new("/etc/ld.so.conf"), 0, &mut seen, &mut dirs)?;
        let mut unique = HashSet::new();
        dirs.retain(|d| unique.insert(d.clone()));
        let dirs = Rc::new(dirs);
        self.conf_dirs = Some(Rc::clone(&dirs));
        Ok(dirs)
    }

    /// Reads one `ld.so.conf` file the way `ldconfig` does: `#` comments,
    /// `include <glob>...`, `hwcap` lines (ignored), otherwise one directory
    /// per line (an old-style `=type` suffix dropped). A missing file is
    /// empty; a file already read is not read again, so include loops end.
    fn read_conf(
        &mut self,
        file: &Path,
        depth: usize,
        seen: &mut HashSet<PathBuf>,
        dirs: &mut Vec<PathBuf>,
    ) -> Result<(), ClosureError> {
        if depth > MAX_CONF_DEPTH {
            return Err(self.limit("nested ld.so.conf includes", MAX_CONF_DEPTH));
        }
        let Some(resolved) = self.resolve(file)? else {
            return Ok(());
        };
        if !resolved.meta.is_file() || !seen.insert(resolved.path.clone()) {
            return Ok(());
        }
        if seen.len() > MAX_CONF_FILES {
            return Err(self.limit("ld.so.conf files", MAX_CONF_FILES));
        }
        let host = self.host(&resolved.path);
        let text = fs::read(&host).map_err(|source| ClosureError::Io { path: host, source })?;
        for line in text.split(|&b| b == b'\n') {
            let line = line.split(|&b| b == b'#').next().unwrap_or_default();
            let line = line.trim_ascii();
            if let Some(patterns) = directive(line, b"include") {
                let patterns = patterns.split(|&b| b == b' ' || b == b'\t');
                for pattern in patterns.filter(|p| !p.is_empty()) {
                    let pattern = parent(file).join(OsStr::from_bytes(pattern));
                    for path in self.glob(&pattern)? {
                        self.read_conf(&path, depth + 1, seen, dirs)?;
                    }
                }
            } else if directive(&line.to_ascii_lowercase(), b"hwcap").is_some() {
                continue;
            } else {
                let dir = line.split(|&b| b == b'=').next().unwrap_or_default();
                let dir = dir.trim_ascii_end();
                // ldconfig runs from `/`, where a relative entry means nothing
                // stable; only absolute ones are honoured.
                if dir.first() == Some(&b'/') {
                    dirs.push(PathBuf::from(OsStr::from_bytes(dir)));
                    if dirs.len() > MAX_DIRS {
                        return Err(self.limit("ld.so.conf directories", MAX_DIRS));
                    }
                }
            }
        }
        Ok(())
    }

    /// Expands a glob (`*`, `?`, `[...]`, per path component) inside the
    /// sysroot, sorted like glob(3). Names starting with `.` match only a
    /// pattern starting with `.`. Matches are not checked to exist.
    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, ClosureError> {
        let mut current = vec![PathBuf::from("/")];
        for component in pattern.components() {
            let name = match component {
                Component::Normal(name) => name,
                Component::ParentDir => {
                    current.iter_mut().for_each(|p| p.push(".."));
                    continue;
                }
                _ => continue,
            };
            if !name.as_bytes().iter().any(|b| b"*?[".contains(b)) {
                current.iter_mut().for_each(|p| p.push(name));
                continue;
            }
            let mut next = Vec::new();
            for dir in &current {
                let Some(resolved) = self.resolve(dir)? else {
                    continue;
                };
                if !resolved.meta.is_dir() {
                    continue;
                }
                // Unreadable directories match nothing, as in glob(3).
                let Ok(entries) = fs::read_dir(self.host(&resolved.path)) else {
                    continue;
                };
                let mut names: Vec<OsString> = entries
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .filter(|n| {
                        let n = n.as_bytes();
                        (n.first() != Some(&b'.') || name.as_bytes().first() == Some(&b'.'))
                            && fnmatch(name.as_bytes(), n)
                    })
                    .collect();
                names.sort();
                for n in names {
                    next.push(dir.join(n));
                    if next.len() > MAX_CONF_FILES {
                        return Err(self.limit("ld.so.conf include matches", MAX_CONF_FILES));
                    }
                }
            }
            current = next;
        }
        current.sort();
        Ok(current)
    }
}

impl Loaded {
    fn new(
        walk: &Walk<'_>,
        path: &Path,
        loader: Option<usize>,
        info: &ElfInfo,
        dynamic: Rc<Dynamic>,
        origin: &Path,
    ) -> Result<Self, ClosureError> {
        let expand = |list: &Option<Vec<u8>>| {
            search_path(list.as_deref(), origin, info.arch, info.flags)
                .ok_or_else(|| walk.limit("directories in one RPATH/RUNPATH", MAX_DIRS))
        };
        Ok(Loaded {
            path: path.to_path_buf(),
            origin: origin.to_path_buf(),
            loader,
            arch: info.arch,
            flags: info.flags,
            rpath: expand(&dynamic.rpath)?,
            runpath: expand(&dynamic.runpath)?,
            dynamic,
        })
    }
}

/// The dynamic information of a file about to be loaded, or why it is broken.
fn loadable(info: &ElfInfo, path: &Path) -> Result<Rc<Dynamic>, ClosureError> {
    info.dynamic
        .as_ref()
        .map(Rc::clone)
        .map_err(|&reason| ClosureError::BadElf {
            path: path.to_path_buf(),
            reason,
        })
}

enum Step {
    Root,
    Parent,
    Name(OsString),
}

/// Pushes the components of `path` so that popping yields them in order.
fn push_steps(pending: &mut Vec<Step>, path: &Path) {
    let start = pending.len();
    for component in path.components() {
        match component {
            Component::RootDir => pending.push(Step::Root),
            Component::ParentDir => pending.push(Step::Parent),
            Component::Normal(name) => pending.push(Step::Name(name.to_os_string())),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
    pending[start..].reverse();
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The directory of a sysroot path (`/` for `/` itself).
fn parent(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new("/")).to_path_buf()
}

/// A path from an ELF string; relative ones are taken from `/`.
fn rooted(bytes: &[u8]) -> PathBuf {
    Path::new("/").join(OsStr::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    /// A directory removed when dropped: `tempfile::tempdir` without its dependencies
    /// (rustix), so nothing in this crate's `cargo tree` makes system calls of its own.
    struct TempDir(PathBuf);

    impl TempDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir() -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("regbuild-closure-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    /// The host binary the tests follow: curl if installed, else ls.
    fn host_binary() -> PathBuf {
        let curl = PathBuf::from("/usr/bin/curl");
        if curl.exists() {
            curl
        } else {
            PathBuf::from("/bin/ls")
        }
    }

    /// Says that a prerequisite this machine lacks keeps (part of) a test from running: a
    /// failure when `CI` is set, where a missing prerequisite must never pass as a skipped
    /// test; on a developer's machine a note saying what is missing (the caller returns).
    fn not_here(what: &str) {
        assert!(
            std::env::var_os("CI").is_none(),
            "a prerequisite is missing and CI is set: {what}"
        );
        eprintln!("not run here: {what}");
    }

    /// Whether `cc` runs, to build `what`; when it does not, [`not_here`] says so.
    fn needs_cc(what: &str) -> bool {
        let found = Command::new("cc")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            not_here(&format!(
                "no C compiler to build {what}: `cc --version` fails (install the Debian package gcc)"
            ));
        }
        found
    }

    fn cc(args: &[&OsStr]) {
        let out = Command::new("cc").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "cc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn dynamic_of(path: &Path) -> Rc<Dynamic> {
        let info = read_elf(path).unwrap().unwrap();
        info.dynamic.clone().unwrap()
    }

    fn arch_of(path: &Path) -> Arch {
        read_elf(path).unwrap().unwrap().arch
    }

    fn by_path(files: &[ClosureFile]) -> BTreeMap<PathBuf, ClosureKind> {
        assert!(
            files.windows(2).all(|w| w[0].path < w[1].path),
            "not sorted or duplicated: {files:#?}"
        );
        files
            .iter()
            .map(|f| (f.path.clone(), f.kind.clone()))
            .collect()
    }

    /// Resolves `path` in an image holding only `files` (directories not
    /// listed are plain ones): the File entry it ends at, if any.
    fn image_resolve(files: &BTreeMap<PathBuf, ClosureKind>, path: &Path) -> Option<PathBuf> {
        let mut pending = Vec::new();
        push_steps(&mut pending, path);
        let mut current = PathBuf::from("/");
        let mut hops = 0;
        while let Some(step) = pending.pop() {
            match step {
                Step::Root => current = PathBuf::from("/"),
                Step::Parent => {
                    current.pop();
                }
                Step::Name(name) => {
                    let candidate = current.join(name);
                    match files.get(&candidate) {
                        Some(ClosureKind::Symlink { target }) => {
                            hops += 1;
                            assert!(hops < 50, "loop at {candidate:?}");
                            push_steps(&mut pending, target);
                        }
                        _ => current = candidate,
                    }
                }
            }
        }
        matches!(files.get(&current), Some(ClosureKind::File { .. })).then_some(current)
    }

    fn entry_named<'f>(
        files: &'f BTreeMap<PathBuf, ClosureKind>,
        name: &str,
    ) -> Option<(&'f PathBuf, &'f ClosureKind)> {
        files
            .iter()
            .find(|(p, _)| p.file_name() == Some(OsStr::new(name)))
    }

    /// The files `ldd` says `binary` loads (the reference we must match).
    fn ldd(binary: &Path) -> Option<Vec<PathBuf>> {
        let out = Command::new("ldd").arg(binary).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let paths = text
            .lines()
            .filter_map(|line| {
                let word = match line.split_once("=>") {
                    Some((_, after)) => after.split_whitespace().next()?,
                    None => line.split_whitespace().next()?,
                };
                word.starts_with('/').then(|| PathBuf::from(word))
            })
            .collect();
        Some(paths)
    }

    #[test]
    fn host_binary_closure() {
        let binary = host_binary();
        let files = closure(Path::new("/"), std::slice::from_ref(&binary)).unwrap();
        let files = by_path(&files);
        for (path, kind) in &files {
            if let ClosureKind::File { source } = kind {
                assert_eq!(source, path, "sysroot / means sources are the paths");
            }
        }
        assert!(
            image_resolve(&files, &binary).is_some(),
            "{binary:?} in {files:#?}"
        );

        let dynamic = dynamic_of(&binary);
        let interp = rooted(dynamic.interp.as_ref().unwrap());
        assert!(
            image_resolve(&files, &interp).is_some(),
            "loader {interp:?} must work in the image: {files:#?}"
        );
        let (_, libc) = entry_named(&files, "libc.so.6").expect("libc.so.6");
        assert!(matches!(libc, ClosureKind::File { .. }));
        for needed in &dynamic.needed {
            let needed = String::from_utf8_lossy(needed);
            assert!(entry_named(&files, &needed).is_some(), "{needed} missing");
        }
        if binary.ends_with("curl") {
            let (path, kind) = entry_named(&files, "libcurl.so.4").expect("libcurl.so.4");
            let ClosureKind::Symlink { target } = kind else {
                panic!("libcurl.so.4 should be a symlink: {kind:?}");
            };
            assert!(
                target.to_string_lossy().contains("libcurl.so.4."),
                "{target:?}"
            );
            let real = image_resolve(&files, path).unwrap();
            assert!(real.to_string_lossy().contains("libcurl.so.4."), "{real:?}");
        }

        // The real loader agrees, file for file.
        let Some(reference) = ldd(&binary) else {
            not_here(&format!(
                "`ldd {}` fails, so the closure is not cross-checked with the real loader \
                 (ldd is in the Debian package libc-bin)",
                binary.display()
            ));
            return;
        };
        let ours: BTreeMap<PathBuf, ()> = files
            .iter()
            .filter(|(_, k)| matches!(k, ClosureKind::File { .. }))
            .map(|(p, _)| (p.clone(), ()))
            .collect();
        let mut theirs: BTreeMap<PathBuf, ()> = BTreeMap::new();
        theirs.insert(fs::canonicalize(&binary).unwrap(), ());
        for path in &reference {
            let in_image = image_resolve(&files, path);
            assert!(
                in_image.is_some(),
                "ldd's {path:?} does not resolve in {files:#?}"
            );
            theirs.insert(fs::canonicalize(path).unwrap(), ());
        }
        assert_eq!(ours, theirs);
    }

    #[test]
    fn static_binary_is_alone() {
        if !needs_cc("a static binary") {
            return;
        }
        let tmp = tempdir();
        let src = tmp.path().join("hello.c");
        fs::write(&src, "int main(void) { return 0; }\n").unwrap();
        let bin = tmp.path().join("hello");
        cc(&[
            "-static".as_ref(),
            "-o".as_ref(),
            bin.as_os_str(),
            src.as_os_str(),
        ]);
        let files = closure(Path::new("/"), std::slice::from_ref(&bin)).unwrap();
        assert_eq!(
            files,
            vec![ClosureFile {
                path: bin.clone(),
                kind: ClosureKind::File { source: bin },
            }]
        );
    }

    /// A sysroot made of `binary`'s host closure in another layout: every
    /// library flat in /usr/lib (reached as /lib too), the loader behind an
    /// absolute symlink, libcurl/libz only via an ld.so.conf include, and a
    /// wrong-machine libc.so.6 decoy earlier in the search.
    fn fake_sysroot(root: &Path, binary: &Path) -> (PathBuf, PathBuf) {
        let files = closure(Path::new("/"), &[binary.to_path_buf()]).unwrap();
        let interp = rooted(dynamic_of(binary).interp.as_ref().unwrap());
        let interp_real = fs::canonicalize(&interp).unwrap();
        let lib = root.join("usr/lib");
        let custom = root.join("opt/custom/lib");
        fs::create_dir_all(&lib).unwrap();
        fs::create_dir_all(&custom).unwrap();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("etc/ld.so.conf.d")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        let in_root = PathBuf::from("/usr/bin").join(binary.file_name().unwrap());
        fs::copy(binary, root.join(in_root.strip_prefix("/").unwrap())).unwrap();
        let place = |name: &OsStr| {
            let s = name.to_string_lossy();
            if s.starts_with("libcurl.") || s.starts_with("libz.") {
                custom.join(name)
            } else {
                lib.join(name)
            }
        };
        for f in &files {
            let name = f.path.file_name().unwrap();
            match &f.kind {
                ClosureKind::File { source } if *source != fs::canonicalize(binary).unwrap() => {
                    let dest = if *source == interp_real {
                        lib.join(interp.file_name().unwrap())
                    } else {
                        place(name)
                    };
                    fs::copy(source, dest).unwrap();
                }
                ClosureKind::Symlink { target } if target.components().count() == 1 => {
                    symlink(target, place(name)).unwrap();
                }
                _ => {}
            }
        }
        // The loader's own path, through a directory symlink and an absolute one.
        let interp_dir = interp.parent().unwrap();
        let interp_name = interp.file_name().unwrap();
        if interp_dir != Path::new("/lib") {
            let rel = interp_dir.strip_prefix("/").unwrap();
            if rel == Path::new("lib64") {
                symlink("usr/lib64", root.join("lib64")).unwrap();
                fs::create_dir_all(root.join("usr/lib64")).unwrap();
                symlink(
                    Path::new("/lib").join(interp_name),
                    root.join("usr/lib64").join(interp_name),
                )
                .unwrap();
            } else {
                fs::create_dir_all(root.join(rel)).unwrap();
                symlink(
                    Path::new("/lib").join(interp_name),
                    root.join(rel).join(interp_name),
                )
                .unwrap();
            }
        }
        // A decoy of another machine, found first by name.
        fs::create_dir_all(root.join("opt/early")).unwrap();
        let mut decoy = vec![0u8; 64];
        decoy[..4].copy_from_slice(&elf::ELFMAG);
        decoy[4] = 2;
        decoy[5] = 1;
        decoy[6] = 1;
        decoy[16] = 3;
        let host_machine = arch_of(binary).machine;
        let other = if host_machine == elf::EM_AARCH64 {
            elf::EM_X86_64
        } else {
            elf::EM_AARCH64
        };
        decoy[18..20].copy_from_slice(&other.0.to_le_bytes());
        decoy[20] = 1;
        fs::write(root.join("opt/early/libc.so.6"), decoy).unwrap();

        fs::write(
            root.join("etc/ld.so.conf"),
            "# test\ninclude ld.so.conf.d/*.conf\n",
        )
        .unwrap();
        fs::write(root.join("etc/ld.so.conf.d/00-early.conf"), "/opt/early\n").unwrap();
        fs::write(
            root.join("etc/ld.so.conf.d/custom.conf"),
            "/opt/custom/lib/\n",
        )
        .unwrap();
        (in_root, interp)
    }

    #[test]
    fn fake_sysroot_resolves_inside() {
        let tmp = tempdir();
        let root = tmp.path().join("sysroot");
        let binary = host_binary();
        let (in_root, interp) = fake_sysroot(&root, &binary);
        // Asked for through the /bin -> usr/bin link.
        let asked = PathBuf::from("/bin").join(in_root.file_name().unwrap());
        let files = closure(&root, std::slice::from_ref(&asked)).unwrap();
        let map = by_path(&files);
        for f in &files {
            if let ClosureKind::File { source } = &f.kind {
                assert!(source.starts_with(&root), "host path {source:?} escaped");
                let rel = f.path.strip_prefix("/").unwrap();
                assert_eq!(*source, root.join(rel));
                assert!(fs::symlink_metadata(source).unwrap().is_file());
            }
        }
        assert_eq!(
            map.get(Path::new("/bin")),
            Some(&ClosureKind::Symlink {
                target: "usr/bin".into()
            })
        );
        assert!(image_resolve(&map, &asked).is_some());
        assert!(
            image_resolve(&map, &interp).is_some(),
            "{interp:?} in {map:#?}"
        );
        let libc = image_resolve(&map, Path::new("/lib/libc.so.6"));
        assert_eq!(libc.as_deref(), Some(Path::new("/usr/lib/libc.so.6")));
        assert!(
            !map.keys().any(|p| p.starts_with("/opt/early")),
            "decoy taken"
        );
        if binary.ends_with("curl") {
            assert!(matches!(
                map.get(Path::new("/opt/custom/lib/libcurl.so.4")),
                Some(ClosureKind::Symlink { .. })
            ));
        }
        assert!(map.keys().any(|p| p.starts_with("/opt/custom/lib")));
    }

    #[test]
    fn missing_library_is_named() {
        let tmp = tempdir();
        let binary = host_binary();
        let dynamic = dynamic_of(&binary);
        let interp = rooted(dynamic.interp.as_ref().unwrap());
        fs::create_dir_all(tmp.path().join("usr/bin")).unwrap();
        fs::copy(&binary, tmp.path().join("usr/bin/prog")).unwrap();
        let interp_copy = tmp.path().join(interp.strip_prefix("/").unwrap());
        fs::create_dir_all(interp_copy.parent().unwrap()).unwrap();
        fs::copy(&interp, &interp_copy).unwrap();

        let err = closure(tmp.path(), &["/usr/bin/prog".into()]).unwrap_err();
        let ClosureError::LibraryNotFound { binary, library } = &err else {
            panic!("unexpected {err}");
        };
        assert_eq!(binary, Path::new("/usr/bin/prog"));
        assert_eq!(library.as_bytes(), dynamic.needed[0].as_slice());
        let message = err.to_string();
        assert!(message.contains("/usr/bin/prog") && message.contains(library.as_str()));

        // Without the loader, that is what is reported.
        fs::remove_file(&interp_copy).unwrap();
        let err = closure(tmp.path(), &["/usr/bin/prog".into()]).unwrap_err();
        assert!(
            matches!(&err, ClosureError::InterpreterNotFound { interpreter, .. } if *interpreter == interp),
            "{err}"
        );
    }

    /// Builds libfoo.so.1 in `prefix/lib` and `prefix/bin/prog` using it
    /// through the rpath `rpath`, with extra link flags.
    fn build_origin_program(prefix: &Path, rpath: &str, flags: &[&str]) -> PathBuf {
        let lib = prefix.join("lib");
        let bin = prefix.join("bin");
        fs::create_dir_all(&lib).unwrap();
        fs::create_dir_all(&bin).unwrap();
        let foo_c = prefix.join("foo.c");
        let main_c = prefix.join("main.c");
        fs::write(&foo_c, "int foo(void) { return 42; }\n").unwrap();
        fs::write(
            &main_c,
            "int foo(void);\nint main(void) { return foo() != 42; }\n",
        )
        .unwrap();
        let so = lib.join("libfoo.so.1");
        cc(&[
            "-shared".as_ref(),
            "-fPIC".as_ref(),
            "-Wl,-soname,libfoo.so.1".as_ref(),
            "-o".as_ref(),
            so.as_os_str(),
            foo_c.as_os_str(),
        ]);
        symlink("libfoo.so.1", lib.join("libfoo.so")).unwrap();
        let prog = bin.join("prog");
        let rpath_flag = format!("-Wl,-rpath,{rpath}");
        let lib_flag = format!("-L{}", lib.display());
        let mut args: Vec<&OsStr> = vec![
            "-o".as_ref(),
            prog.as_os_str(),
            main_c.as_os_str(),
            lib_flag.as_ref(),
            "-lfoo".as_ref(),
            rpath_flag.as_ref(),
        ];
        args.extend(flags.iter().map(OsStr::new));
        cc(&args);
        prog
    }

    #[test]
    fn origin_rpath_and_runpath() {
        if !needs_cc("an $ORIGIN program") {
            return;
        }
        let tmp = tempdir();
        // Longer than 4 KiB, with a name too long for the kernel first.
        let long = format!(
            "/{}:{}$ORIGIN/../lib",
            "n".repeat(300),
            "/nonexistent/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:"
                .repeat(70)
        );
        let new_dtags = &["-Wl,--enable-new-dtags"][..];
        let old_dtags = &["-Wl,--disable-new-dtags"][..];
        for (name, rpath, flags) in [
            ("runpath", "$ORIGIN/../lib", new_dtags),
            ("rpath", "${ORIGIN}/../lib", old_dtags),
            ("long", long.as_str(), new_dtags),
        ] {
            let prefix = tmp.path().join(name);
            let prog = build_origin_program(&prefix, rpath, flags);
            let dynamic = dynamic_of(&prog);
            if name == "rpath" {
                assert!(dynamic.rpath.is_some() && dynamic.runpath.is_none());
            } else {
                assert!(dynamic.runpath.is_some() && dynamic.rpath.is_none());
            }
            let written = dynamic.rpath.as_ref().or(dynamic.runpath.as_ref());
            assert_eq!(written.map(Vec::as_slice), Some(rpath.as_bytes()));
            let files = closure(Path::new("/"), std::slice::from_ref(&prog)).unwrap();
            let map = by_path(&files);
            let so = prefix.join("lib/libfoo.so.1");
            assert!(
                matches!(map.get(&so), Some(ClosureKind::File { .. })),
                "{name}: {map:#?}"
            );
            assert!(entry_named(&map, "libc.so.6").is_some());

            // Run through a symlink elsewhere, $ORIGIN is still the real dir.
            let alias_dir = tmp.path().join(format!("{name}-alias"));
            fs::create_dir_all(&alias_dir).unwrap();
            let alias = alias_dir.join("prog");
            symlink(&prog, &alias).unwrap();
            let files = closure(Path::new("/"), std::slice::from_ref(&alias)).unwrap();
            let map = by_path(&files);
            assert!(map.contains_key(&so), "{name} via symlink: {map:#?}");
            assert_eq!(
                map.get(&alias),
                Some(&ClosureKind::Symlink {
                    target: prog.clone()
                })
            );

            // Gone from $ORIGIN/../lib, it is missing (not found elsewhere).
            fs::rename(&so, prefix.join("libfoo.so.1.away")).unwrap();
            let err = closure(Path::new("/"), std::slice::from_ref(&prog)).unwrap_err();
            assert!(
                matches!(&err, ClosureError::LibraryNotFound { binary, library }
                    if *binary == prog && library == "libfoo.so.1"),
                "{err}"
            );
        }
    }

    #[test]
    fn symlink_loops_end_in_an_error() {
        let tmp = tempdir();
        symlink("b", tmp.path().join("a")).unwrap();
        symlink("/a", tmp.path().join("b")).unwrap();
        symlink("self/x", tmp.path().join("self")).unwrap();
        for path in ["/a", "/self", "/b/c"] {
            let err = closure(tmp.path(), &[path.into()]).unwrap_err();
            assert!(
                matches!(&err, ClosureError::SymlinkLoop { path: p } if p == Path::new(path)),
                "{path}: {err}"
            );
        }
    }

    #[test]
    fn bad_inputs_are_named() {
        let tmp = tempdir();
        fs::write(tmp.path().join("script"), "#!/bin/sh\necho hi\n").unwrap();
        fs::write(tmp.path().join("short"), b"\x7fELF\x02\x01").unwrap();
        fs::create_dir(tmp.path().join("dir")).unwrap();
        let err = closure(tmp.path(), &["/script".into()]).unwrap_err();
        assert!(
            matches!(&err, ClosureError::NotElf { path } if path == Path::new("/script")),
            "{err}"
        );
        assert!(err.to_string().contains("/script"));
        let err = closure(tmp.path(), &["/short".into()]).unwrap_err();
        assert!(matches!(err, ClosureError::NotElf { .. }), "{err}");
        let err = closure(tmp.path(), &["/dir".into()]).unwrap_err();
        assert!(matches!(err, ClosureError::NotAFile { .. }), "{err}");
        let err = closure(tmp.path(), &["/nope".into()]).unwrap_err();
        assert!(matches!(err, ClosureError::BinaryNotFound { .. }), "{err}");
        let err = closure(tmp.path(), &["script".into()]).unwrap_err();
        assert!(matches!(err, ClosureError::RelativeBinary { .. }), "{err}");
        assert_eq!(closure(tmp.path(), &[]).unwrap(), Vec::new());
    }

    /// Damaged copies of a real binary and of its libc never panic.
    #[test]
    fn hostile_elf_files_do_not_panic() {
        let tmp = tempdir();
        let root = tmp.path().join("sysroot");
        let binary = host_binary();
        let (in_root, _) = fake_sysroot(&root, &binary);
        let bin_path = root.join(in_root.strip_prefix("/").unwrap());
        let libc_path = root.join("usr/lib/libc.so.6");
        let bin = fs::read(&bin_path).unwrap();
        let libc = fs::read(&libc_path).unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) as usize) % n.max(1)
        };
        let mut outcomes = [0usize; 2];
        for round in 0..160 {
            let (path, original) = if round % 2 == 0 {
                (&bin_path, &bin)
            } else {
                (&libc_path, &libc)
            };
            let mut data = original.clone();
            // Headers are where damage matters: mostly hit the first 4 KiB.
            for _ in 0..1 + rand(8) {
                let span = if rand(4) == 0 { data.len() } else { 4096 };
                let at = rand(span.min(data.len()));
                data[at] = rand(256) as u8;
            }
            if rand(6) == 0 {
                data.truncate(rand(data.len()));
            }
            fs::write(path, &data).unwrap();
            let result = closure(&root, std::slice::from_ref(&in_root));
            outcomes[usize::from(result.is_ok())] += 1;
        }
        fs::write(&bin_path, &bin).unwrap();
        fs::write(&libc_path, &libc).unwrap();
        assert!(closure(&root, &[in_root]).is_ok());
        eprintln!(
            "damaged files: {} errors, {} still fine",
            outcomes[0], outcomes[1]
        );
    }

    #[test]
    fn ld_so_conf_includes() {
        let tmp = tempdir();
        let root = tmp.path();
        fs::create_dir_all(root.join("etc/ld.so.conf.d")).unwrap();
        fs::create_dir_all(root.join("usr/share/ld")).unwrap();
        fs::write(
            root.join("etc/ld.so.conf"),
            "# comment\ninclude ld.so.conf.d/*.conf /etc/extra.conf\n\
             /opt/a/lib/ \nhwcap 1 foo\n/usr/x=libc6\nrelative/dir\n\tinclude\t/etc/ld.so.conf\n",
        )
        .unwrap();
        fs::write(root.join("etc/ld.so.conf.d/b.conf"), "/opt/b\n").unwrap();
        fs::write(
            root.join("etc/ld.so.conf.d/a.conf"),
            "  /opt/a2 # trailing\n",
        )
        .unwrap();
        fs::write(root.join("etc/ld.so.conf.d/.hidden.conf"), "/opt/hidden\n").unwrap();
        fs::write(root.join("etc/ld.so.conf.d/skip.txt"), "/opt/skip\n").unwrap();
        fs::write(
            root.join("usr/share/ld/c.conf"),
            "/opt/c\ninclude /etc/ld.so.conf\n",
        )
        .unwrap();
        symlink("/usr/share/ld/c.conf", root.join("etc/ld.so.conf.d/c.conf")).unwrap();
        fs::write(root.join("etc/extra.conf"), "/opt/extra\n").unwrap();
        let mut walk = Walk {
            sysroot: root,
            binary: PathBuf::new(),
            elves: HashMap::new(),
            conf_dirs: None,
            probes: 0,
            out: BTreeMap::new(),
        };
        let dirs = walk.conf_dirs().unwrap();
        let want: Vec<PathBuf> = [
            "/opt/a2",
            "/opt/b",
            "/opt/c",
            "/opt/extra",
            "/opt/a/lib",
            "/usr/x",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(*dirs, want);
    }

    #[test]
    fn resolve_stays_in_the_sysroot() {
        let tmp = tempdir();
        let root = tmp.path();
        fs::create_dir_all(root.join("usr/lib/x")).unwrap();
        fs::write(root.join("usr/lib/x/f"), "").unwrap();
        symlink("../../../../../usr/lib", root.join("lib")).unwrap();
        symlink("/lib/x/f", root.join("usr/lib/x/abs")).unwrap();
        let walk = Walk {
            sysroot: root,
            binary: PathBuf::new(),
            elves: HashMap::new(),
            conf_dirs: None,
            probes: 0,
            out: BTreeMap::new(),
        };
        let r = walk.resolve(Path::new("/lib/x/abs")).unwrap().unwrap();
        assert_eq!(r.path, Path::new("/usr/lib/x/f"));
        assert_eq!(
            r.links,
            vec![
                (
                    PathBuf::from("/lib"),
                    PathBuf::from("../../../../../usr/lib")
                ),
                (PathBuf::from("/usr/lib/x/abs"), PathBuf::from("/lib/x/f")),
                (
                    PathBuf::from("/lib"),
                    PathBuf::from("../../../../../usr/lib")
                ),
            ]
        );
        assert!(walk.resolve(Path::new("/../../lib/x/f")).unwrap().is_some());
        assert!(walk.resolve(Path::new("/usr/lib/x/f/g")).unwrap().is_none());
        assert!(walk.resolve(Path::new("/missing/f")).unwrap().is_none());
    }

    #[test]
    fn dst_expansion() {
        let arch = Arch {
            class64: true,
            big_endian: false,
            machine: elf::EM_X86_64,
        };
        let origin = Path::new("/opt/app/bin");
        let one = |s: &str| expand_dst(s.as_bytes(), origin, arch, 0);
        assert_eq!(one("$ORIGIN/../lib"), vec![b"/opt/app/bin/../lib".to_vec()]);
        assert_eq!(one("${ORIGIN}/x"), vec![b"/opt/app/bin/x".to_vec()]);
        assert_eq!(one("$ORIGINAL/x"), vec![b"$ORIGINAL/x".to_vec()]);
        assert_eq!(one("/a/$PLATFORM"), vec![b"/a/x86_64".to_vec()]);
        assert_eq!(one("$FOO"), vec![b"$FOO".to_vec()]);
        assert_eq!(
            one("/usr/$LIB/x"),
            vec![
                b"/usr/lib64/x".to_vec(),
                b"/usr/lib/x86_64-linux-gnu/x".to_vec(),
                b"/usr/lib/x".to_vec()
            ]
        );
        let riscv = Arch {
            machine: elf::EM_RISCV,
            ..arch
        };
        assert!(expand_dst(b"/a/$PLATFORM", origin, riscv, 0).is_empty());
        let many = "$LIB/".repeat(40);
        assert!(expand_dst(many.as_bytes(), origin, arch, 0).len() <= MAX_DST_RESULTS * 3);
        let dirs = search_path(Some(b"$ORIGIN::relative:/abs"), origin, arch, 0).unwrap();
        assert_eq!(
            dirs,
            ["/opt/app/bin", "/relative", "/abs"]
                .map(PathBuf::from)
                .to_vec()
        );
    }

    #[test]
    fn fnmatch_rules() {
        assert!(fnmatch(b"*.conf", b"a.conf"));
        assert!(fnmatch(b"*.conf", b".conf"));
        assert!(!fnmatch(b"*.conf", b"a.conf.bak"));
        assert!(fnmatch(b"a?c", b"abc"));
        assert!(!fnmatch(b"a?c", b"ac"));
        assert!(fnmatch(b"[a-c]x", b"bx"));
        assert!(!fnmatch(b"[!a-c]x", b"bx"));
        assert!(fnmatch(b"[^a-c]x", b"dx"));
        assert!(fnmatch(b"[]]", b"]"));
        assert!(fnmatch(b"[", b"["));
        assert!(fnmatch(b"\\*", b"*"));
        assert!(!fnmatch(b"\\*", b"a"));
        assert!(fnmatch(b"*a*b*", b"xxaxxbxx"));
        assert!(!fnmatch(b"*a*b", b"xxaxxbxx"));
        assert!(fnmatch(b"*", b""));
    }
}
