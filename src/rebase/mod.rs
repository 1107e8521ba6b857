//! `regbuild rebase IMAGE --base NEWREF -t TAG`: put an image on a new base without
//! rebuilding. The old base (from the image's annotations, or given) must be a prefix of
//! the image; its layers are swapped for the new base's, the config rewritten (`config`),
//! and nothing but the new config is uploaded: the new base's layers are mounted and the
//! image's own layers already exist. Indexes are rebased platform by platform.

pub mod config;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::builder::assemble::{BASE_DIGEST, BASE_NAME};
use crate::image::base::{self, ResolvedBase, TargetPlatform};
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{is_index, ManifestView, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
use regbuild_oci::reference::ImageRef;
use regbuild_registry::progress::Progress;
use regbuild_registry::publish::{BlobOrigin, BlobSpec, ImageSet, ManifestSpec, Plan, PutAs};
use regbuild_registry::report::Report;
use regbuild_registry::{Registry, Repo, Scopes};

pub struct RebaseRequest {
    pub image: ImageRef,
    pub new_base: ImageRef,
    /// The base the image was built on, when its annotations do not say.
    pub old_base: Option<ImageRef>,
    pub tags: Vec<ImageRef>,
    pub dry_run: bool,
}

pub struct Rebased {
    pub digest: Digest,
    pub report: Option<Report>,
    pub plans: Vec<Plan>,
}

/// Rebases and writes the result to the tags.
pub async fn rebase(
    registry: &Registry,
    req: &RebaseRequest,
    progress: Arc<dyn Progress>,
) -> Result<Rebased, String> {
    let repo = registry.repo(
        &req.image.registry,
        &req.image.repository,
        Scopes::pull(&req.image.repository),
    );
    let top = repo
        .get_manifest(&req.image.manifest_reference())
        .await
        .map_err(|e| e.to_string())?;
    let old_base = match &req.old_base {
        Some(b) => b.clone(),
        None => {
            let (name, digest) = crate::outdated::base_of_image(registry, &req.image)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "{}: no org.opencontainers.image.base.* annotations; name the old base with --old-base",
                        req.image
                    )
                })?;
            name.with_digest(&digest)
        }
    };
    // A digest given with the new base pins it; else its tag is resolved now.
    let new_top = match &req.new_base.digest {
        Some(d) => d.clone(),
        None => crate::outdated::current_digest(registry, &req.new_base)
            .await
            .map_err(|e| e.to_string())?,
    };
    let new_pinned = req.new_base.with_digest(&new_top);
    let new_written = match &req.new_base.tag {
        Some(t) => req.new_base.with_tag(t),
        None => req.new_base.clone(),
    };
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut set = ImageSet::default();
    let digest = if is_index(&top.media_type) {
        let index: Value = serde_json::from_slice(&top.bytes).map_err(|e| e.to_string())?;
        let view = ManifestView::parse(&top.bytes).map_err(|e| e.to_string())?;
        let mut entries = Vec::new();
        for (i, child) in view.manifests.iter().enumerate() {
            let platform = child
                .platform
                .as_ref()
                .map(|p| TargetPlatform {
                    os: p.os.clone(),
                    architecture: p.architecture.clone(),
                    variant: p.variant.clone(),
                })
                .ok_or_else(|| format!("{}: index entry {i} has no platform", req.image))?;
            let m = repo
                .get_manifest(child.digest.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let (spec, size) = rebase_one(
                registry,
                &repo,
                &m.bytes,
                &old_base,
                &new_pinned,
                &new_written,
                &platform,
                &mut set,
                tmp.path(),
            )
            .await
            .map_err(|e| format!("{} ({platform}): {e}", req.image))?;
            let mut entry = index["manifests"][i].clone();
            entry["digest"] = json!(spec.digest);
            entry["size"] = json!(size);
            entry["mediaType"] = json!(OCI_MANIFEST);
            entries.push(entry);
            set.add_manifest(spec);
        }
        let mut new_index = index.clone();
        new_index["mediaType"] = json!(OCI_INDEX);
        new_index["manifests"] = Value::Array(entries);
        set_base_annotations(&mut new_index, &new_written, &new_top);
        put_root(&mut set, new_index, OCI_INDEX)
    } else {
        let cfg_platform = TargetPlatform::linux_amd64();
        let (mut spec, _) = rebase_one(
            registry,
            &repo,
            &top.bytes,
            &old_base,
            &new_pinned,
            &new_written,
            &cfg_platform,
            &mut set,
            tmp.path(),
        )
        .await
        .map_err(|e| format!("{}: {e}", req.image))?;
        spec.put_as = PutAs::Tags;
        let d = spec.digest.clone();
        set.add_manifest(spec);
        d
    };
    let (report, plans) = crate::push::write_to_tags(
        registry,
        set,
        &req.tags,
        crate::push::WriteOptions {
            dry_run: req.dry_run,
            remember: false,
        },
        progress,
        None,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Rebased {
        digest,
        report,
        plans,
    })
}

fn set_base_annotations(v: &mut Value, new_base: &ImageRef, digest: &Digest) {
    if !v["annotations"].is_object() {
        v["annotations"] = json!({});
    }
    v["annotations"][BASE_NAME] = json!(new_base.to_string());
    v["annotations"][BASE_DIGEST] = json!(digest);
}

fn put_root(set: &mut ImageSet, v: Value, media_type: &str) -> Digest {
    let bytes = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
    let digest = Digest::of(&bytes);
    set.add_manifest(ManifestSpec {
        media_type: media_type.to_string(),
        bytes,
        digest: digest.clone(),
        put_as: PutAs::Tags,
        subject: None,
        artifact_type: None,
    });
    digest
}

/// Rebases one platform manifest; its blobs go into `set`, its manifest is returned (put by
/// digest) with its size.
#[allow(clippy::too_many_arguments)]
async fn rebase_one(
    registry: &Registry,
    repo: &Repo,
    manifest_bytes: &[u8],
    old_base: &ImageRef,
    new_base_pinned: &ImageRef,
    new_base_written: &ImageRef,
    platform: &TargetPlatform,
    set: &mut ImageSet,
    tmp: &std::path::Path,
) -> Result<(ManifestSpec, usize), String> {
    let view = ManifestView::parse(manifest_bytes).map_err(|e| e.to_string())?;
    let config_desc = view
        .config
        .clone()
        .ok_or("the image manifest has no config")?;
    let image_cfg_bytes = repo
        .get_blob_bytes(&config_desc.digest, 8 * 1024 * 1024)
        .await
        .map_err(|e| e.to_string())?;
    let image_cfg: Value = serde_json::from_slice(&image_cfg_bytes).map_err(|e| e.to_string())?;
    let platform = TargetPlatform {
        os: image_cfg["os"].as_str().unwrap_or(&platform.os).to_string(),
        architecture: image_cfg["architecture"]
            .as_str()
            .unwrap_or(&platform.architecture)
            .to_string(),
        variant: image_cfg["variant"]
            .as_str()
            .map(str::to_string)
            .or(platform.variant.clone()),
    };
    let old = resolve(registry, old_base, &platform, "old base").await?;
    let new = resolve(registry, new_base_pinned, &platform, "new base").await?;
    let old_cfg: Value = serde_json::from_slice(&old.config).map_err(|e| e.to_string())?;
    let new_cfg: Value = serde_json::from_slice(&new.config).map_err(|e| e.to_string())?;
    let image_layers: Vec<String> = view.layers.iter().map(|d| d.digest.to_string()).collect();
    let old_layers: Vec<String> = old.layers.iter().map(|d| d.digest.to_string()).collect();
    config::check_prefix(&image_layers, &old_layers, &image_cfg, &old_cfg)
        .map_err(|e| format!("cannot rebase from {old_base}: {e}"))?;
    let out_cfg =
        config::rebase_config(&image_cfg, &old_cfg, &new_cfg).map_err(|e| e.to_string())?;
    let cfg_bytes = serde_json::to_vec(&out_cfg).map_err(|e| e.to_string())?;
    let cfg_digest = Digest::of(&cfg_bytes);
    let cfg_path = tmp.join(format!("config-{}.json", cfg_digest.hex()));
    std::fs::write(&cfg_path, &cfg_bytes).map_err(|e| e.to_string())?;

    // The new base's layers (mounted from its repository), then the image's own.
    let image_repo = (repo.registry_name().to_string(), repo.name().to_string());
    let new_repo = (
        new.reference.registry.clone(),
        new.reference.repository.clone(),
    );
    let sources = new.layers.iter().map(|d| (d, &new_repo)).chain(
        view.layers
            .iter()
            .skip(old.layers.len())
            .map(|d| (d, &image_repo)),
    );
    let mut layers = Vec::new();
    for (d, (registry, repository)) in sources {
        let d = set.add_remote_layer(d, registry, repository);
        layers.push(serde_json::to_value(&d).map_err(|e| e.to_string())?);
    }
    set.add_blob(BlobSpec {
        digest: cfg_digest.clone(),
        size: cfg_bytes.len() as u64,
        origin: BlobOrigin::File(cfg_path),
    });
    let mut manifest: Value = serde_json::from_slice(manifest_bytes).map_err(|e| e.to_string())?;
    manifest["mediaType"] = json!(OCI_MANIFEST);
    manifest["config"] =
        json!({"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": cfg_bytes.len()});
    manifest["layers"] = Value::Array(layers);
    set_base_annotations(
        &mut manifest,
        new_base_written,
        &new_base_pinned.digest.clone().unwrap_or(new.digest.clone()),
    );
    let bytes = Bytes::from(serde_json::to_vec(&manifest).map_err(|e| e.to_string())?);
    let size = bytes.len();
    Ok((
        ManifestSpec {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::of(&bytes),
            bytes,
            put_as: PutAs::Digest,
            subject: None,
            artifact_type: None,
        },
        size,
    ))
}

async fn resolve(
    registry: &Registry,
    r: &ImageRef,
    platform: &TargetPlatform,
    what: &str,
) -> Result<ResolvedBase, String> {
    base::resolve(registry, r, platform)
        .await
        .map_err(|e| format!("{what}: {e}"))
}
