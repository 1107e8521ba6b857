//! Bases resolved from a registry without downloading their layers (`base`), or from
//! images computed but not written (`planned`). The image model itself (config, manifests,
//! indexes and their transformations) is `regbuild_oci`.

pub mod base;
pub mod planned;
pub mod referrer;
