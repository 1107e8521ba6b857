//! `regbuild inspect`: per-layer sizes, file counts, wasted bytes and setuid/setgid files of
//! an image in a registry, and the image's efficiency, in the spirit of
//! [dive](https://github.com/wagoodman/dive)'s analysis and its `--ci` rules.
//!
//! [`fetch`] does the I/O (manifest, config, every layer streamed and verified against its
//! digest and diff_id, never held whole); [`analysis`] is pure: tar entries in, numbers out.
//!
//! # Definitions
//!
//! Layers are applied bottom-up (layer 0 is the base's first layer), keeping for every path
//! of the filesystem seen so far which layer put it there and its size. Only regular files
//! have a size: directories, symlinks, hard links (which share another entry's data) and
//! devices count 0 bytes.
//!
//! - **file bytes of a layer**: the sizes of the regular files in its tar (every entry, even
//!   one that a later entry of the same tar replaces).
//! - **total size** of the image: the sum of the layers' file bytes, i.e. every version of
//!   every file, including those hidden later.
//! - A version of a file is **wasted** when it is not in the final filesystem although its
//!   bytes are in the image: an upper layer put another entry at its path (a file, a
//!   directory, anything), deleted it with a whiteout `.wh.<name>` (of the file or of a
//!   directory above it), hid it with an opaque marker `.wh..wh..opq` in a directory above
//!   it, or replaced a directory above it with a non-directory. A later entry at the same
//!   path within one layer wastes the earlier one too. Whiteouts and opaque markers act only
//!   on lower layers, wherever they stand in their own tar (OCI image-spec).
//! - **wasted bytes of a path**: the sum of the sizes of all its wasted versions, e.g. a file
//!   written in layers 0, 1 and 3 wastes the sizes of versions 0 and 1.
//! - **wasted bytes of a layer**: the bytes of *its own* versions that got wasted, i.e. waste
//!   is charged to the lower layer whose file was overwritten or deleted (what dive's layer
//!   view shows as wasted space inside that layer). A layer that only deletes wastes 0.
//! - **wasted bytes of the image**: the sum over layers (equivalently, over paths).
//! - **efficiency**: `1 - wasted / total size`, the share of the image's file bytes that are
//!   still visible in the final filesystem; 1.0 for an image without file bytes.
//! - **user wasted percent**: `wasted / total size`, in 0..1 (0 for an image without file
//!   bytes), checked by `--highest-user-wasted-percent` like dive's
//!   `highestUserWastedPercent`. Waste is always caused by a layer above the first (a layer
//!   can only hide what lies below it), so all waste counts as "user" waste; with this
//!   denominator the value stays in 0..1 and equals `1 - efficiency`.
//!
//! Differences from dive (`image/efficiency.go`), on purpose: dive counts, for every path
//! seen in more than one layer, the sizes of *all* its occurrences (the surviving copy
//! included) as wasted, scores efficiency as the sum of each such path's smallest occurrence
//! over the sum of all occurrences, and divides by the bytes of the layers above the first
//! for the user-wasted percent (which can exceed 1). Here only bytes that are really
//! unreachable count, so `wasted <= total size` always holds.
//!
//! **setuid/setgid files**: regular files and hard links whose mode has the setuid (04000)
//! or setgid (02000) bit; setgid directories are not listed. Per layer: those in its tar.
//! For the image: those left in the final filesystem.

pub mod analysis;
pub mod attestation;
pub mod fetch;

pub use analysis::{
    parse_fraction, parse_size, Analysis, LayerStats, Measure, RuleResult, Rules, SetidFile,
};
pub use fetch::{inspect, InspectError, Inspection, LayerInfo};
