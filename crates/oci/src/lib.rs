//! The OCI image model: digests, image references, media types, descriptors, and the
//! read views of manifests and indexes.
//!
//! Pure data and pure functions: nothing here does I/O, talks to a registry or touches a
//! filesystem. Everything else in regbuild speaks these types.

pub mod digest;
pub mod manifest;
pub mod platform;
pub mod reference;
