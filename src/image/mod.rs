//! The image being built: its config (`config`), and bases resolved from a registry
//! without downloading their layers (`base`).

pub mod base;
pub mod config;
pub mod platform_values;
