//! Filesystems and layers: what turns files into layer blobs and layer blobs back into files.
//!
//! - [`layer`] writes entries as a deterministic tar, [`compress`] compresses it (gzip in
//!   parallel blocks, zstd) and recognises and decodes compressed streams, and [`growing`]
//!   lets a layer file be read while it is still being written;
//! - [`tar_read`] is the one reader of tar streams (hostile input assumed), which
//!   [`extract`] uses to unpack archives and image layers (whiteouts, overlay) into a
//!   directory safely, zeros as holes, within what [`disk`] says the filesystem can take;
//!   [`extract::engine`] lends its parts to writers of another kind (`RUN`'s lower
//!   directories, in `regbuild-rootfs`).
//!
//! Not here: `RUN`'s root filesystems — lower and upper directories, the plain root and its
//! snapshot diff, scratch directories (`regbuild-rootfs`) —, the build context walk and
//! `.dockerignore` (`regbuild-context`), matching globs and cleaning paths
//! (`regbuild-paths`), what a Dockerfile means (`regbuild-frontend`), where layers go
//! (`regbuild-registry`), the layer cache (`regbuild::builder::cache`).

pub mod compress;
pub mod disk;
pub mod extract;
pub mod growing;
pub mod layer;
pub mod tar_read;
