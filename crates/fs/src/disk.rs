//! How many bytes an unpack may write: the free space of the filesystem it writes to, as
//! measured when it starts writing, less a reserve. [`crate::extract`] charges every block
//! of regular-file data it really writes (holes are free; a block partly used counts
//! whole, as the filesystem allocates it) to a [`DiskBudget`] and stops with [`DiskFull`]
//! before going past it, so a layer (or an `ADD`ed archive) that expands to more than the
//! disk holds fails cleanly instead of filling the disk.
//!
//! The declared-size [`Limits`](crate::tar_read::Limits) stay as they are: they bound the
//! work of reading an archive (bytes decompressed and looked at), this bounds what is
//! written. With holes the two differ on purpose: a 100 GiB file of zeros declares 100 GiB
//! and writes nothing, so neither bound can stand in for the other.
//!
//! Not here: writing (`crate::extract`), and concurrent unpacks: each one measures the free
//! space for itself, so two unpacks started together may each be allowed most of it (the
//! reserve is what is left for them and for the rest of the build).

use std::io;
use std::path::{Path, PathBuf};

/// The least space an unpack leaves free: room for the rest of the build on the same disk
/// (the step's upper directory, the layer's blob and its compressed copy, cache records)
/// and for other processes, which a disk filled to its last block breaks.
pub const RESERVE_MIN: u64 = 1 << 30;
/// On larger filesystems the reserve is this share of their size (percent): 1 GiB of a
/// 2 TB disk is too little to build on.
pub const RESERVE_PERCENT: u64 = 5;

/// How much an unpack may write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DiskLimit {
    /// The free space of the destination's filesystem (what an unprivileged user may use)
    /// when the first byte is written, less [`reserve`] of it.
    #[default]
    Free,
    /// At most this many bytes, whatever the disk has (tests; a caller with a quota).
    Bytes(u64),
}

/// The reserve kept on a filesystem of `size` bytes with `free` bytes free:
/// max([`RESERVE_MIN`], [`RESERVE_PERCENT`] % of `size`), but never more than half of
/// `free`, so a small filesystem (a CI runner's tmpfs) still unpacks small layers.
pub fn reserve(size: u64, free: u64) -> u64 {
    RESERVE_MIN.max(size / 100 * RESERVE_PERCENT).min(free / 2)
}

/// An unpack would write more than its budget allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "it would write more than {} to the filesystem of {} ({}): {} written, {} more wanted{}",
    in_units(*.allowed),
    .mount.display(),
    .dest.display(),
    in_units(*.written),
    in_units(*.wanted),
    how_allowed(.measured)
)]
pub struct DiskFull {
    /// The directory being unpacked into.
    pub dest: PathBuf,
    /// Where that directory's filesystem is mounted.
    pub mount: PathBuf,
    pub allowed: u64,
    pub written: u64,
    pub wanted: u64,
    /// (free, reserve) when the budget came from the free space.
    pub measured: Option<(u64, u64)>,
}

/// Why a budget could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{0}")]
    Full(Box<DiskFull>),
    #[error("measuring the free space of the filesystem of {dest:?}: {source}")]
    Measure {
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The bytes one unpack may still write into `dest`; measured at the first charge.
#[derive(Debug)]
pub struct DiskBudget {
    dest: PathBuf,
    limit: DiskLimit,
    /// (allowed, free and reserve when measured), once known.
    allowed: Option<(u64, Option<(u64, u64)>)>,
    written: u64,
}

impl DiskBudget {
    pub fn new(dest: &Path, limit: DiskLimit) -> DiskBudget {
        DiskBudget {
            dest: dest.to_path_buf(),
            limit,
            allowed: None,
            written: 0,
        }
    }

    /// Bytes charged so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Charges `bytes` about to be written; an error, and nothing charged, when they would
    /// go past the budget.
    pub fn charge(&mut self, bytes: u64) -> Result<(), DiskError> {
        let (allowed, measured) = match self.allowed {
            Some(known) => known,
            None => {
                let known = self.measure()?;
                self.allowed = Some(known);
                known
            }
        };
        let total = self.written.saturating_add(bytes);
        if total > allowed {
            return Err(DiskError::Full(Box::new(DiskFull {
                mount: mount_point(&self.dest),
                dest: self.dest.clone(),
                allowed,
                written: self.written,
                wanted: bytes,
                measured,
            })));
        }
        self.written = total;
        Ok(())
    }

    fn measure(&self) -> Result<(u64, Option<(u64, u64)>), DiskError> {
        match self.limit {
            DiskLimit::Bytes(n) => Ok((n, None)),
            DiskLimit::Free => {
                let stat = rustix::fs::statvfs(&self.dest).map_err(|e| DiskError::Measure {
                    dest: self.dest.clone(),
                    source: e.into(),
                })?;
                let free = stat.f_bavail.saturating_mul(stat.f_frsize);
                let size = stat.f_blocks.saturating_mul(stat.f_frsize);
                let reserve = reserve(size, free);
                Ok((free.saturating_sub(reserve), Some((free, reserve))))
            }
        }
    }
}

/// The mount point of `path`'s filesystem: its highest ancestor on the same device (for
/// messages; `path` itself when that cannot be told).
fn mount_point(path: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let Ok(path) = path.canonicalize() else {
        return path.to_path_buf();
    };
    let Ok(dev) = std::fs::metadata(&path).map(|m| m.dev()) else {
        return path;
    };
    let mut top = path.as_path();
    while let Some(parent) = top.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == dev => top = parent,
            _ => break,
        }
    }
    top.to_path_buf()
}

fn how_allowed(measured: &Option<(u64, u64)>) -> String {
    match measured {
        Some((free, reserve)) => format!(
            " (the filesystem had {} free when the unpack started; {} of it is kept free for \
             the rest of the build)",
            in_units(*free),
            in_units(*reserve)
        ),
        None => " (the limit it was given)".to_string(),
    }
}

/// `12345678 bytes (11.8 MiB)`: exact, and readable.
fn in_units(n: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    const GIB: f64 = (1u64 << 30) as f64;
    let f = n as f64;
    if f >= GIB {
        format!("{n} bytes ({:.1} GiB)", f / GIB)
    } else if f >= MIB {
        format!("{n} bytes ({:.1} MiB)", f / MIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_reserve_is_a_gib_or_five_percent_but_at_most_half_the_free_space() {
        assert_eq!(reserve(10 * GIB, 5 * GIB), GIB);
        assert_eq!(reserve(1000 * GIB, 500 * GIB), 50 * GIB);
        // A 512 MiB tmpfs with 400 MiB free still unpacks up to 200 MiB.
        assert_eq!(reserve(GIB / 2, 400 << 20), 200 << 20);
        assert_eq!(reserve(0, 0), 0);
    }

    #[test]
    fn a_budget_refuses_the_charge_that_would_pass_it_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut budget = DiskBudget::new(dir.path(), DiskLimit::Bytes(10_000));
        budget.charge(6_000).unwrap();
        let DiskError::Full(full) = budget.charge(5_000).unwrap_err() else {
            panic!("not a full disk");
        };
        assert_eq!(
            (full.allowed, full.written, full.wanted),
            (10_000, 6_000, 5_000)
        );
        let text = full.to_string();
        assert!(text.contains("more than 10000 bytes"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert_eq!(
            budget.written(),
            6_000,
            "nothing charged for the refused bytes"
        );
        budget.charge(4_000).unwrap();
    }

    #[test]
    fn the_free_space_is_measured_on_the_destination_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let stat = rustix::fs::statvfs(dir.path()).unwrap();
        let free = stat.f_bavail * stat.f_frsize;
        let mut budget = DiskBudget::new(dir.path(), DiskLimit::Free);
        // More than the disk has can never be charged, whatever else runs meanwhile.
        let DiskError::Full(full) = budget.charge(free + 1).unwrap_err() else {
            panic!("not a full disk");
        };
        let (measured_free, reserve) = full.measured.unwrap();
        assert!(reserve > 0 && reserve <= measured_free / 2 + 1, "{full:?}");
        assert_eq!(full.allowed, measured_free - reserve);
        assert!(full.to_string().contains("kept free"), "{full}");
        assert!(dir.path().starts_with(&full.mount), "{full:?}");
    }
}
