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
use regbuild_oci::manifest::{Descriptor, ManifestView};
use regbuild_registry::Registry;

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error(transparent)]
    Scan(#[from] scan::ScanError),
    #[error("writing the SBOM under {dir}: {source}")]
    File { dir: String, source: std::io::Error },
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
    let layers = ManifestView::parse(&root.bytes)
        .map(|v| v.layers)
        .unwrap_or_default();
    let created_by = layer_history(image.config.value());
    let (found, distro) =
        scan::packages_of(registry, &image.set, &layers, &created_by, &tmp).await?;
    let base_layers = image.base.as_ref().map_or(0, |b| b.layers.len());
    let sbom = model::Sbom {
        name: name.to_string(),
        digest: root.digest.to_string(),
        base: image
            .base
            .as_ref()
            .map(|b| (b.reference.to_string(), b.digest.to_string())),
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
    let subject = Descriptor::new(
        &root.media_type,
        root.digest.clone(),
        root.bytes.len() as u64,
    );
    let io = |source| SbomError::File {
        dir: tmp.display().to_string(),
        source,
    };
    for (media_type, doc) in [
        (spdx::MEDIA_TYPE, spdx::write(&sbom)),
        (cyclonedx::MEDIA_TYPE, cyclonedx::write(&sbom)),
    ] {
        crate::image::referrer::add(&mut image.set, &subject, media_type, doc, created, &tmp)
            .map_err(io)?;
    }
    Ok(())
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
