//! What a destination must hold after a write: blobs (each knowing where its bytes are) and
//! manifests in the order they may be put.

use std::path::PathBuf;

use bytes::Bytes;

use regbuild_oci::digest::Digest;

/// Where a blob's bytes can be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobOrigin {
    /// In a repository of a registry: mountable on the same registry, streamable otherwise.
    Registry {
        registry: String,
        repository: String,
    },
    /// A file built locally.
    File(PathBuf),
    /// A file built only if needed (a layer known from the cache: built when the registry
    /// lacks it).
    Lazy(LazyFile),
}

/// Why a lazy file could not be produced (the producer's own error).
pub type LazyFileError = Box<dyn std::error::Error + Send + Sync>;

/// Produces a local blob's file on first use.
#[derive(Clone)]
pub struct LazyFile(pub std::sync::Arc<dyn Fn() -> Result<PathBuf, LazyFileError> + Send + Sync>);

impl LazyFile {
    pub fn path(&self) -> Result<PathBuf, LazyFileError> {
        (self.0)()
    }
}

impl std::fmt::Debug for LazyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyFile")
    }
}

impl PartialEq for LazyFile {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LazyFile {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobSpec {
    pub digest: Digest,
    pub size: u64,
    pub origin: BlobOrigin,
}

/// How a manifest is put: by its digest (children, referrers) or under the destination's tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutAs {
    Digest,
    Tags,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestSpec {
    pub media_type: String,
    pub bytes: Bytes,
    pub digest: Digest,
    pub put_as: PutAs,
    /// For referrers: the manifest they refer to, so the tag-schema fallback can index them.
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    /// A referrer whose refusal is warned of, not fatal (a cache beside the image: the
    /// image is written whatever becomes of it).
    pub optional: bool,
}

/// Everything one write puts: blobs first, then manifests in this order (children before
/// their index, the tagged root, then referrers).
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    pub blobs: Vec<BlobSpec>,
    pub manifests: Vec<ManifestSpec>,
}

impl ImageSet {
    /// Adds a blob unless one with the same digest is already listed.
    pub fn add_blob(&mut self, blob: BlobSpec) {
        if !self.blobs.iter().any(|b| b.digest == blob.digest) {
            self.blobs.push(blob);
        }
    }

    /// Adds a manifest unless the same digest is already listed with the same `put_as`.
    pub fn add_manifest(&mut self, m: ManifestSpec) {
        if !self
            .manifests
            .iter()
            .any(|have| have.digest == m.digest && have.put_as == m.put_as)
        {
            self.manifests.push(m);
        }
    }

    /// Adds a layer that lives in `registry`/`repository` (mounted from there on the same
    /// registry) and returns its descriptor as it goes into an OCI manifest: Docker's gzip
    /// layer type becomes OCI's, the bytes being the same.
    pub fn add_remote_layer(
        &mut self,
        layer: &regbuild_oci::manifest::Descriptor,
        registry: &str,
        repository: &str,
    ) -> regbuild_oci::manifest::Descriptor {
        let mut d = layer.clone();
        if d.media_type == regbuild_oci::manifest::DOCKER_LAYER_GZIP {
            d.media_type = regbuild_oci::manifest::OCI_LAYER_GZIP.to_string();
        }
        self.add_blob(BlobSpec {
            digest: d.digest.clone(),
            size: d.size,
            origin: BlobOrigin::Registry {
                registry: registry.to_string(),
                repository: repository.to_string(),
            },
        });
        d
    }

    /// The manifest put under the tags.
    pub fn root(&self) -> Option<&ManifestSpec> {
        self.manifests.iter().find(|m| m.put_as == PutAs::Tags)
    }
}
