//! The result of writing an image, as printed by `--json` (the shape `promote` and `push`
//! share) and summarised on the last line of stdout.

use serde::Serialize;

use regbuild_oci::digest::Digest;

/// What happened to one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobAction {
    /// The destination already had it.
    Exists,
    /// Mounted from another repository of the same registry: no bytes moved.
    Mounted,
    /// Its bytes were sent to the destination.
    Uploaded,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlobReport {
    pub digest: Digest,
    pub size: u64,
    pub action: BlobAction,
}

/// What happened to one manifest reference (a tag, or a digest for children).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestAction {
    /// Written with a PUT.
    Put,
    /// The reference already resolved to this digest: no PUT, no registry write.
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestReport {
    pub reference: String,
    pub digest: Digest,
    pub action: ManifestAction,
}

/// `{"digest", "references", "blobs": [...], "bytes_uploaded", "manifests": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub digest: Digest,
    pub references: Vec<String>,
    pub blobs: Vec<BlobReport>,
    pub bytes_uploaded: u64,
    /// Every manifest reference written or found already in place, in put order.
    pub manifests: Vec<ManifestReport>,
}

impl Report {
    pub fn count(&self, action: BlobAction) -> usize {
        self.blobs.iter().filter(|b| b.action == action).count()
    }
}
