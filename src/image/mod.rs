//! The image being built: its config (`config`), and bases resolved from a registry
//! without downloading their layers (`base`), or from images computed but not written
//! (`planned`); the OCI platform values (`platform_values`); manifests, indexes and their
//! transformations (`model`).

pub mod base;
pub mod config;
pub mod model;
pub mod planned;
pub mod platform_values;
