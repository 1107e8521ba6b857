//! regbuild: a registry-native, daemonless container image builder.
//!
//! `registry` talks the OCI Distribution API; `promote` copies images between repositories
//! and registries; `cli` is the command line over them.

pub mod build;
pub mod cli;
pub mod digest;
pub mod growing;
pub mod image;
pub mod inspect;
pub mod lock;
pub mod manifest;
pub mod outdated;
pub mod progress;
pub mod promote;
pub mod publish;
pub mod push;
pub mod rebase;
pub mod reference;
pub mod registry;
pub mod report;
pub mod workspace;
