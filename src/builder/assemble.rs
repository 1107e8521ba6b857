//! Turning a built stage into what a registry must hold: the config blob, the image manifest
//! (OCI, annotated with its base), and the list of blobs with where each one's bytes are.
//!
//! A Docker-media-type base is converted to OCI media types (the layer bytes are the same),
//! so the result never mixes the two and can carry annotations.

use std::path::Path;

use bytes::Bytes;
use serde_json::json;

use crate::builder::cache::KEY_ANNOTATION;
use crate::builder::orchestrate::{StageImage, StageLayer};
use crate::image::base::ResolvedBase;
use crate::image::config::ImageConfig;
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{OCI_CONFIG, OCI_MANIFEST};
use regbuild_registry::publish::{BlobOrigin, BlobSpec, ImageSet, LazyFile, ManifestSpec, PutAs};

pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// The other images a build read (`COPY --from=<image>`, bases of the stages it copied
/// from), as `reference@digest` separated by commas, sorted: what `outdated` checks besides
/// the base. Absent when there are none, so such manifests stay as they were.
pub const SOURCES: &str = "dev.regbuild.sources";

/// The `SOURCES` entries for a build that resolved `read` and is built on `base`: each
/// tagged image other than the base, by the digest it resolved to. Images named by digest
/// alone cannot move and are left out.
pub fn sources<'a>(
    read: impl IntoIterator<Item = &'a ResolvedBase>,
    base: Option<&ResolvedBase>,
) -> Vec<String> {
    let mut out: Vec<String> = read
        .into_iter()
        .filter(|r| base.is_none_or(|b| b.reference != r.reference || b.digest != r.digest))
        .filter_map(|r| {
            let tag = r.reference.tag.as_ref()?;
            Some(format!("{}@{}", r.reference.with_tag(tag), r.digest))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Parses a `SOURCES` value back into `reference@digest` entries.
pub fn parse_sources(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

pub struct Assembled {
    pub set: ImageSet,
    pub digest: Digest,
    pub config: ImageConfig,
}

/// Builds config and manifest for `image`; the config is written under `tmp` for upload.
/// `sources`: the other images the build read (see `sources`).
pub fn assemble(
    image: &StageImage,
    sources: &[String],
    created: &str,
    tmp: &Path,
) -> Result<Assembled, String> {
    let mut config = image.config.clone();
    config.set_created(created);
    let config_bytes = config.to_bytes();
    let config_digest = Digest::of(&config_bytes);
    let config_path = tmp.join(format!("config-{}.json", config_digest.hex()));
    std::fs::write(&config_path, &config_bytes)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;

    let mut set = ImageSet::default();
    let mut layers = Vec::new();
    for layer in &image.layers {
        match layer {
            StageLayer::Remote {
                descriptor,
                registry,
                repository,
            } => {
                let d = set.add_remote_layer(descriptor, registry, repository);
                layers.push(serde_json::to_value(&d).map_err(|e| e.to_string())?);
            }
            StageLayer::Cached(c) => {
                let digest: Digest = c.record.digest.parse().map_err(|e| format!("{e}"))?;
                layers.push(json!({
                    "mediaType": c.record.media_type,
                    "digest": digest,
                    "size": c.record.size,
                    "annotations": {KEY_ANNOTATION: c.key},
                }));
                let origin = match &c.found_in {
                    // Found in a registry by key: mounted or copied from there if needed.
                    Some((registry, repository)) => BlobOrigin::Registry {
                        registry: registry.clone(),
                        repository: repository.clone(),
                    },
                    // Known from the local cache: packed only if the destination lacks it.
                    None => {
                        let c = c.clone();
                        BlobOrigin::Lazy(LazyFile(std::sync::Arc::new(move || {
                            c.built().map(|b| b.file.to_path_buf())
                        })))
                    }
                };
                set.add_blob(BlobSpec {
                    digest,
                    size: c.record.size,
                    origin,
                });
            }
            StageLayer::Local(built) => {
                let digest: Digest = built.digest.parse().map_err(|e| format!("{e}"))?;
                let mut d = json!({
                    "mediaType": built.media_type,
                    "digest": digest,
                    "size": built.size,
                });
                if let Some(key) = &built.key {
                    d["annotations"] = json!({ KEY_ANNOTATION: key });
                }
                layers.push(d);
                set.add_blob(BlobSpec {
                    digest,
                    size: built.size,
                    origin: BlobOrigin::File(built.file.to_path_buf()),
                });
            }
        }
    }
    set.add_blob(BlobSpec {
        digest: config_digest.clone(),
        size: config_bytes.len() as u64,
        origin: BlobOrigin::File(config_path),
    });
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": layers,
    });
    if let Some(base) = &image.base {
        manifest["annotations"] = json!({
            BASE_NAME: base.reference.to_string(),
            BASE_DIGEST: base.digest,
        });
    }
    if !sources.is_empty() {
        if !manifest["annotations"].is_object() {
            manifest["annotations"] = json!({});
        }
        manifest["annotations"][SOURCES] = json!(sources.join(","));
    }
    let bytes = Bytes::from(serde_json::to_vec(&manifest).map_err(|e| e.to_string())?);
    let digest = Digest::of(&bytes);
    set.add_manifest(ManifestSpec {
        media_type: OCI_MANIFEST.to_string(),
        bytes,
        digest: digest.clone(),
        put_as: PutAs::Tags,
        subject: None,
        artifact_type: None,
    });
    Ok(Assembled {
        set,
        digest,
        config,
    })
}
