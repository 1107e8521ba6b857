//! The OCI image model: digests, image references, media types, descriptors, platforms, the
//! image config (`config`), and manifests, indexes and their pure transformations (`model`:
//! append layers, rebase, index of platforms, annotations), in the spirit of
//! go-containerregistry's `pkg/v1` and `mutate`.
//!
//! Pure data and pure functions: nothing here does I/O, talks to a registry or touches a
//! filesystem. Everything else in regbuild speaks these types.

pub mod config;
pub mod digest;
pub mod manifest;
pub mod model;
pub mod platform;
pub mod reference;
