//! Image hierarchies: a workspace file (`regbuild.toml`) lists images whose FROM may name
//! other images of the workspace. `graph` orders them (pure), `run` builds them in that
//! order — independent ones concurrently — pushing only what changed and rebuilding (or
//! rebasing) every dependent of a changed base.

pub mod file;
pub mod graph;
pub mod run;

pub use file::{Workspace, WorkspaceImage};
pub use run::{outdated_all, push_all, ImageOutcome, Outcome};
