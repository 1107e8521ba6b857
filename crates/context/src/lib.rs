//! The build context: what a `COPY` takes from the directory the build was given.
//!
//! - [`context`] resolves a `COPY`'s sources in the context (globs, symlinks kept inside
//!   it, `--parents`, `--exclude`) and walks them into the entries of a layer, sorted as
//!   the layer writes them;
//! - [`dockerignore`] reads `.dockerignore` and says, with Docker's rules, what is in the
//!   context and which excluded directories a walk may skip.
//!
//! Not here: writing the layer or the entry types it is made of (`regbuild-fs`), matching
//! globs and cleaning paths as text (`regbuild-paths`), what a Dockerfile means
//! (`regbuild-frontend`), unpacking archives that `ADD` names (`regbuild_fs::extract`), or
//! the layer cache (`regbuild::builder::cache`).

pub mod context;
pub mod dockerignore;
