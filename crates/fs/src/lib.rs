//! Filesystems and layers: what turns files into layer blobs and layer blobs back into files.
//!
//! - [`layer`] writes entries as a deterministic tar, [`compress`] compresses it (gzip in
//!   parallel blocks, zstd) and recognises and decodes compressed streams, and [`growing`]
//!   lets a layer file be read while it is still being written;
//! - [`tar_read`] is the one reader of tar streams (hostile input assumed), which
//!   [`extract`] uses to unpack archives and image layers (whiteouts, overlay) into a
//!   directory safely, zeros as holes, within what [`disk`] says the filesystem can take;
//! - [`upper`] turns an overlayfs upper directory (what a `RUN` step changed) into layer
//!   entries: whiteouts, opaque directories, hard links, kept xattrs;
//! - [`lower`] goes the other way for `RUN`: each base layer unpacked once, by diff_id,
//!   into a store of overlayfs lower directories;
//! - where overlayfs is unavailable, [`materialize`] applies those lower directories into
//!   one plain root filesystem and [`snapshot`] diffs it after the step, writing the
//!   upper directory overlayfs would have made;
//! - [`scratch`] makes scratch directories that die with their process and finds those a
//!   killed process left.
//!
//! Not here: the build context walk and `.dockerignore` (`regbuild-context`), matching globs
//! and cleaning paths (`regbuild-paths`), what a Dockerfile
//! means (`regbuild-frontend`), where layers go (`regbuild-registry`), the layer cache
//! (`regbuild::builder::cache`).

pub mod compress;
pub mod disk;
pub mod extract;
pub mod growing;
pub mod layer;
pub mod lower;
pub mod materialize;
pub mod scratch;
pub mod snapshot;
pub mod tar_read;
pub mod upper;
