//! Resolving a base image (`FROM`, `COPY --from=<image>`) to a manifest and config without
//! downloading its layers: the manifest and config are small; layers are only ever mounted,
//! skipped or streamed registry to registry by the writer.

use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{is_index, Descriptor, ManifestView};
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::manifests::Manifest;
use regbuild_registry::{Registry, RegistryError, Scopes};

/// Configs larger than this are refused (a config is a few KiB; this bounds garbage).
const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;

/// A base image, resolved.
#[derive(Clone, Debug)]
pub struct ResolvedBase {
    pub reference: ImageRef,
    /// The digest the reference resolved to (an index's digest for multi-platform bases).
    pub digest: Digest,
    /// The media type of what the reference resolved to (an index or a manifest).
    pub media_type: String,
    /// Every platform manifest of an index, `os/arch[/variant]` → digest (empty otherwise).
    pub platforms: Vec<(String, Digest)>,
    /// The platform manifest's digest (equals `digest` for single-platform bases).
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config: Vec<u8>,
    pub config_descriptor: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl ResolvedBase {
    /// True when the base uses Docker media types (the result must not mix them with OCI's).
    pub fn is_docker(&self) -> bool {
        self.manifest_media_type == regbuild_oci::manifest::DOCKER_MANIFEST
    }
}

/// The images a build resolved, by reference as written and the `FROM --platform` each is
/// wanted for.
pub type Bases = std::collections::HashMap<(String, Option<String>), ResolvedBase>;

/// The image `reference` (as written) resolved to, for whichever platform it was wanted.
pub fn named<'a>(bases: &'a Bases, reference: &str) -> Option<&'a ResolvedBase> {
    bases
        .iter()
        .find(|((name, _), _)| name == reference)
        .map(|(_, b)| b)
}

/// Why a base could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("base image {reference}: {source}")]
    Registry {
        reference: String,
        source: RegistryError,
    },
    #[error(
        "base image {reference} has no manifest for platform {platform} (it has: {available})"
    )]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    /// A manifest or index that is not valid JSON of its kind.
    #[error("base image {reference}: {source}")]
    Manifest {
        reference: String,
        source: serde_json::Error,
    },
    #[error("base image {reference}: manifest has no config")]
    NoConfig { reference: String },
    /// A dry run's base that names a blob or manifest the run did not compute (`what`).
    #[error("base image {reference}: {what} is not among the images this run computed")]
    NotPlanned { reference: String, what: String },
}

/// Where a base's manifests and config are read from: the registry, or the images a dry run
/// computed without writing them (`super::planned`).
pub(super) trait BaseSource {
    /// The manifest `reference` (a tag or digest) names.
    async fn manifest(&self, reference: &str) -> Result<Manifest, BaseError>;
    async fn config(&self, digest: &Digest) -> Result<Vec<u8>, BaseError>;
}

/// A repository of a registry.
struct FromRegistry<'a> {
    repo: regbuild_registry::Repo,
    name: &'a str,
}

impl BaseSource for FromRegistry<'_> {
    async fn manifest(&self, reference: &str) -> Result<Manifest, BaseError> {
        self.repo
            .get_manifest(reference)
            .await
            .map_err(|source| BaseError::Registry {
                reference: self.name.to_string(),
                source,
            })
    }

    async fn config(&self, digest: &Digest) -> Result<Vec<u8>, BaseError> {
        self.repo
            .get_blob_bytes(digest, MAX_CONFIG_BYTES)
            .await
            .map_err(|source| BaseError::Registry {
                reference: self.name.to_string(),
                source,
            })
    }
}

/// Resolves `reference` for `platform`: tag → digest, index → platform manifest, config.
pub async fn resolve(
    registry: &Registry,
    reference: &ImageRef,
    platform: &Platform,
) -> Result<ResolvedBase, BaseError> {
    let name = reference.to_string();
    let source = FromRegistry {
        repo: registry.repo(
            &reference.registry,
            &reference.repository,
            Scopes::pull(&reference.repository),
        ),
        name: &name,
    };
    resolve_from(&source, reference, platform).await
}

/// Resolves `reference` from `source` (see `resolve`).
pub(super) async fn resolve_from(
    source: &impl BaseSource,
    reference: &ImageRef,
    platform: &Platform,
) -> Result<ResolvedBase, BaseError> {
    let name = reference.to_string();
    let invalid = |source: serde_json::Error| BaseError::Manifest {
        reference: name.clone(),
        source,
    };
    let top = source.manifest(&reference.manifest_reference()).await?;
    let top_view = ManifestView::parse(&top.bytes).map_err(invalid)?;
    let top_view_for_platforms = top_view.clone();
    let (manifest, view) = if is_index(&top.media_type) {
        let child = top_view
            .manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| platform.is_served_by(p))
            })
            .ok_or_else(|| BaseError::NoPlatform {
                reference: name.clone(),
                platform: platform.to_string(),
                available: top_view
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let m = source.manifest(child.digest.as_str()).await?;
        let v = ManifestView::parse(&m.bytes).map_err(invalid)?;
        (m, v)
    } else {
        (top.clone(), top_view)
    };
    let config_descriptor = view.config.clone().ok_or_else(|| BaseError::NoConfig {
        reference: name.clone(),
    })?;
    let config = source.config(&config_descriptor.digest).await?;
    let platforms = top_view_for_platforms
        .manifests
        .iter()
        .filter_map(|d| {
            d.platform
                .as_ref()
                .map(|p| (p.to_string(), d.digest.clone()))
        })
        .collect();
    Ok(ResolvedBase {
        reference: reference.clone(),
        media_type: top.media_type.clone(),
        platforms,
        digest: top.digest,
        manifest_digest: manifest.digest,
        manifest_media_type: manifest.media_type,
        config,
        config_descriptor,
        layers: view.layers,
    })
}
