//! The image being built: its config (`config`), and bases resolved from a registry
//! without downloading their layers (`base`), or from images computed but not written
//! (`planned`).

pub mod base;
pub mod config;
pub mod planned;
