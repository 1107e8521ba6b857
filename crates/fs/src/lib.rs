//! Filesystems and layers: what turns files into layer blobs and layer blobs back into files.
//!
//! `context` walks a build context (filtered by `dockerignore`), `layer` writes entries as a
//! deterministic tar, `compress` compresses it (gzip in parallel blocks, zstd), `extract`
//! reads archives and image layers (whiteouts, overlay) into a directory safely, and
//! `growing` lets a layer file be read while it is still being written.
//!
//! Not here: what a Dockerfile means (`regbuild-frontend`), where layers go
//! (`regbuild-registry`), the layer cache (`regbuild::builder::cache`).

pub mod compress;
pub mod context;
pub mod dockerignore;
pub mod extract;
pub mod growing;
pub mod layer;
