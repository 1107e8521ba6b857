//! Images computed but not written (a workspace dry run), readable as bases: a dependent is
//! planned on the digest its base *would* get, which no registry holds yet. Their layers are
//! named by the base's repository, where a real push puts them.

use std::collections::HashMap;

use super::base::{self, BaseError, BaseSource, ResolvedBase};
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{is_index, ManifestView};
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::manifests::Manifest;
use regbuild_registry::publish::{BlobOrigin, ImageSet};
use regbuild_registry::Registry;

/// The manifests and configs of images not written, by digest; `keep` holds what owns their
/// blob files while dependents read them (see `Registry::stand_in_blobs`).
#[derive(Clone, Default)]
pub struct PlannedImages {
    manifests: HashMap<Digest, Manifest>,
    configs: HashMap<Digest, Vec<u8>>,
    keep: Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for PlannedImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedImages")
            .field("manifests", &self.manifests.len())
            .field("kept", &self.keep.len())
            .finish()
    }
}

/// A planned image's config could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PlannedError {
    path: String,
    source: std::io::Error,
}

impl PlannedImages {
    /// Keeps `owner` (what owns the blob files) alive as long as these images are used.
    pub fn keep(&mut self, owner: std::sync::Arc<dyn std::any::Any + Send + Sync>) {
        self.keep.push(owner);
    }

    /// Adds the manifests of `set` and the configs they name (read from their local files).
    pub fn add(&mut self, set: &ImageSet) -> Result<(), PlannedError> {
        for m in &set.manifests {
            self.manifests.insert(
                m.digest.clone(),
                Manifest {
                    bytes: m.bytes.clone(),
                    digest: m.digest.clone(),
                    media_type: m.media_type.clone(),
                },
            );
            if is_index(&m.media_type) {
                continue;
            }
            let Some(config) = ManifestView::parse(&m.bytes).ok().and_then(|v| v.config) else {
                continue;
            };
            let file = set.blobs.iter().find_map(|b| match &b.origin {
                BlobOrigin::File(path) if b.digest == config.digest => Some(path),
                _ => None,
            });
            if let Some(path) = file {
                let bytes = std::fs::read(path).map_err(|source| PlannedError {
                    path: path.display().to_string(),
                    source,
                })?;
                self.configs.insert(config.digest.clone(), bytes);
            }
        }
        Ok(())
    }

    /// Adds every image of `other`.
    pub fn extend(&mut self, other: PlannedImages) {
        self.manifests.extend(other.manifests);
        self.configs.extend(other.configs);
        self.keep.extend(other.keep);
    }

    fn holds(&self, reference: &ImageRef) -> bool {
        reference
            .digest
            .as_ref()
            .is_some_and(|d| self.manifests.contains_key(d))
    }
}

/// Resolves `reference` as `base::resolve` does, from `planned` when its digest is one of
/// them.
pub async fn resolve(
    registry: &Registry,
    planned: &PlannedImages,
    reference: &ImageRef,
    platform: &Platform,
) -> Result<ResolvedBase, BaseError> {
    if !planned.holds(reference) {
        return base::resolve(registry, reference, platform).await;
    }
    let source = FromPlanned {
        planned,
        name: reference.to_string(),
    };
    base::resolve_from(&source, reference, platform).await
}

struct FromPlanned<'a> {
    planned: &'a PlannedImages,
    name: String,
}

impl FromPlanned<'_> {
    fn missing(&self, what: String) -> BaseError {
        BaseError::NotPlanned {
            reference: self.name.clone(),
            what,
        }
    }
}

impl BaseSource for FromPlanned<'_> {
    async fn manifest(&self, reference: &str) -> Result<Manifest, BaseError> {
        reference
            .parse::<Digest>()
            .ok()
            .and_then(|d| self.planned.manifests.get(&d).cloned())
            .ok_or_else(|| self.missing(format!("manifest {reference}")))
    }

    async fn config(&self, digest: &Digest) -> Result<Vec<u8>, BaseError> {
        self.planned
            .configs
            .get(digest)
            .cloned()
            .ok_or_else(|| self.missing(format!("config {digest}")))
    }
}
