//! regbuild: a registry-native, daemonless container image builder.
//!
//! The application crate: build orchestration (`builder`), the commands over it (`push`,
//! `rebase`, `promote`, `outdated`, `workspace`, `inspect`, `lock`) and the command line
//! (`cli`). The model, the registry client, the Dockerfile front end, the filesystem and
//! layer code and the closure resolver are crates of their own (see ARCHITECTURE.md).

pub mod builder;
pub mod cli;
pub mod image;
pub mod inspect;
pub mod lock;
pub mod outdated;
pub mod promote;
pub mod provenance;
pub mod prune;
pub mod push;
pub mod rebase;
pub mod sbom;
pub mod workspace;
