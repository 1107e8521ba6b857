//! `inspect --sbom` and `inspect --provenance`: the attestation of an image (for one
//! platform of an index) a push stored as a referrer of its manifest, read back through the
//! referrers API or the tag schema. The newest of a type wins (a tag-schema index lists
//! them in the order they were added).

use regbuild_oci::manifest::ManifestView;
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::{Registry, RegistryError, Scopes};

/// The most an attestation document may weigh.
const MAX_DOCUMENT: u64 = 64 << 20;

/// The document of the newest referrer of `image` (for `platform`) with `artifact_type`
/// (None: there is none).
pub async fn document(
    registry: &Registry,
    image: &ImageRef,
    platform: &Platform,
    artifact_type: &str,
) -> Result<Option<Vec<u8>>, Box<dyn std::error::Error + Send + Sync>> {
    let resolved = crate::image::base::resolve(registry, image, platform).await?;
    let repo = registry.repo(
        &image.registry,
        &image.repository,
        Scopes::pull(&image.repository),
    );
    let referrers = repo.referrers(&resolved.manifest_digest).await?;
    let Some(newest) = referrers
        .iter()
        .rev()
        .find(|d| d.artifact_type.as_deref() == Some(artifact_type))
    else {
        return Ok(None);
    };
    let manifest = repo.get_manifest(newest.digest.as_str()).await?;
    let view = ManifestView::parse(&manifest.bytes)?;
    let Some(layer) = view.layers.first() else {
        return Err(Box::new(RegistryError::Protocol {
            registry: image.registry.clone(),
            repository: image.repository.clone(),
            op: format!("GET manifest {}", newest.digest),
            message: "the attestation has no document".into(),
        }));
    };
    Ok(Some(
        repo.get_blob_bytes(&layer.digest, MAX_DOCUMENT).await?,
    ))
}
