//! `regbuild prune`: frees regbuild's local cache directory. The cache only makes builds
//! faster (the registry stays the source of truth), so anything in it may go; what goes is
//! chosen by when it was last used.
//!
//! `scan` lists what the cache holds (I/O), `select` decides what to remove (pure: entries,
//! a policy and the time in, the entries to remove out), `remove` removes them. What is an
//! entry: an unpacked layer (`lowers/`, and `lowers-flat/` for rootless native steps), a RUN layer's blob (`run-blobs/`), a cache mount
//! (`run-cache/`), scratch a killed build left (`run-tmp/`, unpacks in progress, and its
//! temporary directory `$TMPDIR/regbuild-build-*`) and, with
//! `--all` only, the small per-layer records (`layers/`, `files/`, `layer-index/`,
//! `pushed/`): removing one of those costs the next build a rehash or a re-pack of a layer
//! that was otherwise a HEAD away, for bytes no disk misses.

pub mod remove;
pub mod scan;
pub mod select;

use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;

/// What an entry of the cache is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An image layer unpacked for RUN steps (`lowers/`).
    Lower,
    /// A RUN layer's blob, kept so a local cache hit needs no registry (`run-blobs/`).
    RunBlob,
    /// A `RUN --mount=type=cache` directory (`run-cache/`).
    CacheMount,
    /// Left by a build that was killed: a step's scratch, an unpack in progress.
    Scratch,
    /// Layer records, stat indexes, path indexes, pushed-blob records.
    Record,
}

/// One thing in the cache that is removed as a whole.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub path: PathBuf,
    /// Disk usage (allocated blocks; hard links counted once).
    pub bytes: u64,
    pub last_used: SystemTime,
    /// Files that go with it (its use stamp, a cache mount's lock file).
    pub companions: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Lock(#[from] crate::builder::cache_dir::CacheLockError),
    #[error("no cache directory: set REGBUILD_CACHE, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    NotRemoved { path: PathBuf, reason: String },
}
