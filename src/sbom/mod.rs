//! `push --sbom`: a software bill of materials for each image pushed, in SPDX 2.3 JSON and
//! CycloneDX 1.6 JSON, stored as OCI 1.1 referrers of the image manifest (artifact types
//! `application/spdx+json` and `application/vnd.cyclonedx+json`; the referrers API, else
//! the referrers tag schema, as every referrer this tool writes), so `promote` carries
//! them and no `unknown/unknown` entry enters an index.
//!
//! `packages` reads the package databases (pure), `scan` finds them in the image's layers,
//! `model` is what an SBOM says, `spdx` and `cyclonedx` write it (pure, deterministic: the
//! same image and `SOURCE_DATE_EPOCH` give the same bytes, so a re-push writes nothing).

pub mod cyclonedx;
pub mod model;
pub mod packages;
pub mod scan;
pub mod spdx;

use crate::builder::BuiltImage;
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{Descriptor, ManifestView};
use regbuild_registry::publish::ImageSet;
use regbuild_registry::Registry;

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error(transparent)]
    Scan(#[from] scan::ScanError),
    #[error("writing the SBOM under {dir}: {source}")]
    File { dir: String, source: std::io::Error },
}

/// An image whose SBOMs are made: what its set holds (where each layer's bytes are), its
/// manifest, config and base.
pub struct Subject<'a> {
    pub set: &'a ImageSet,
    /// The image manifest: its bytes and digest.
    pub manifest: &'a [u8],
    pub digest: &'a Digest,
    pub config: &'a serde_json::Value,
    /// The base: reference, digest and how many of the image's layers are its.
    pub base: Option<(String, String, usize)>,
}

/// Adds the SBOMs of `image` (pushed as `name`, `registry/repository`) to its set, as
/// referrers of its manifest.
pub async fn attach(
    registry: &Registry,
    image: &mut BuiltImage,
    name: &str,
    created: &str,
) -> Result<(), SbomError> {
    let tmp = image.scratch().to_path_buf();
    let Some(root) = image.set.root().cloned() else {
        return Ok(());
    };
    let subject = Subject {
        set: &image.set,
        manifest: &root.bytes,
        digest: &root.digest,
        config: image.config.value(),
        base: image.base.as_ref().map(|b| {
            (
                b.reference.to_string(),
                b.digest.to_string(),
                b.layers.len(),
            )
        }),
    };
    let docs = documents(registry, &subject, name, created, &tmp).await?;
    add(&mut image.set, &root, docs, created, &tmp)
}

/// Adds `docs` to `set` as referrers of the manifest `root`.
pub fn add(
    set: &mut ImageSet,
    root: &regbuild_registry::publish::ManifestSpec,
    docs: Vec<(&'static str, Vec<u8>)>,
    created: &str,
    tmp: &std::path::Path,
) -> Result<(), SbomError> {
    let subject = Descriptor::new(
        &root.media_type,
        root.digest.clone(),
        root.bytes.len() as u64,
    );
    for (media_type, doc) in docs {
        crate::image::referrer::add(set, &subject, media_type, doc, created, tmp).map_err(
            |source| SbomError::File {
                dir: tmp.display().to_string(),
                source,
            },
        )?;
    }
    Ok(())
}

/// The SPDX and CycloneDX documents of `image`, pushed as `name`.
pub async fn documents(
    registry: &Registry,
    image: &Subject<'_>,
    name: &str,
    created: &str,
    tmp: &std::path::Path,
) -> Result<Vec<(&'static str, Vec<u8>)>, SbomError> {
    let layers = ManifestView::parse(image.manifest)
        .map(|v| v.layers)
        .unwrap_or_default();
    let created_by = layer_history(image.config);
    let (found, distro) = scan::packages_of(registry, image.set, &layers, &created_by, tmp).await?;
    let base_layers = image.base.as_ref().map_or(0, |b| b.2);
    let sbom = model::Sbom {
        name: name.to_string(),
        digest: image.digest.to_string(),
        base: image.base.as_ref().map(|(r, d, _)| (r.clone(), d.clone())),
        distro,
        packages: found,
        layers: layers
            .iter()
            .enumerate()
            .skip(base_layers)
            .map(|(i, l)| {
                let made_by = created_by.get(i).cloned().unwrap_or_default();
                (l.digest.to_string(), made_by)
            })
            .collect(),
        created: created.to_string(),
        tool: format!("regbuild-{}", env!("CARGO_PKG_VERSION")),
    };
    Ok(vec![
        (spdx::MEDIA_TYPE, spdx::write(&sbom)),
        (cyclonedx::MEDIA_TYPE, cyclonedx::write(&sbom)),
    ])
}

/// Each layer's `created_by`, in layer order (history entries that made no layer skipped).
fn layer_history(config: &serde_json::Value) -> Vec<String> {
    config["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| !e["empty_layer"].as_bool().unwrap_or(false))
                .map(|e| e["created_by"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}
