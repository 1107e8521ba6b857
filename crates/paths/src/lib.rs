//! Paths as text: the glob engine and lexical path cleaning that the Dockerfile front end,
//! the build context and the shared-library closure agree on.
//!
//! - [`glob`] is the one glob engine, with the rules of `.dockerignore`, `COPY` sources and
//!   fnmatch(3);
//! - [`clean`] cleans a path as Go's `path.Clean` does.
//!
//! Not here: anything that touches the file system or does I/O — walking the build
//! context and reading `.dockerignore` (`regbuild-context`), layers and their compression
//! (`regbuild-fs`). This crate has no async runtime, compression or system-call
//! dependency, so a crate that only matches and cleans paths (`regbuild-frontend`,
//! `regbuild-closure`) does not build them.

pub mod clean;
pub mod glob;
