//! Writing an image to a registry: what the registry must hold (`Image`), a pure `plan` of
//! HEAD results into exists / mount / copy / upload, and `execute`, which carries the plan out
//! with bounded concurrency and puts manifests only after every blob is confirmed;
//! `remembered` keeps where local blobs were pushed before, so a later push mounts them.

pub mod early;
pub mod execute;
pub mod model;
pub mod plan;
pub mod remembered;

pub use early::{EarlyOutcome, EarlyUploads};
pub use execute::{execute, probe};
pub use model::{BlobOrigin, BlobSpec, ImageSet, LazyFile, ManifestSpec, PutAs};
pub use plan::{plan, BlobStep, Known, Plan};
