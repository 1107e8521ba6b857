//! The debug variant of an image: the same image with another image's layers on top (a
//! busybox giving `/bin/sh`, say), pushed beside it. Nothing is uploaded twice: the debug
//! image's layers are mounted from its repository, the image's own layers are already in
//! the target repository; only the new config (its diff_ids grow) is uploaded.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::builder::BuiltImage;
use crate::image::base::{self, TargetPlatform};
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{ManifestView, OCI_CONFIG, OCI_MANIFEST};
use regbuild_oci::reference::ImageRef;
use regbuild_registry::publish::{BlobOrigin, BlobSpec, ImageSet, ManifestSpec, PutAs};
use regbuild_registry::Registry;

/// The debug variant of each platform image (an index over them for several platforms).
/// `pushed` is where the normal image now lives: its blobs are mounted from there.
pub async fn variant(
    registry: &Registry,
    images: &[(&TargetPlatform, &BuiltImage)],
    debug_from: &ImageRef,
    pushed: &ImageRef,
    tmp: &std::path::Path,
) -> Result<(ImageSet, Digest), String> {
    let mut set = ImageSet::default();
    let mut children = Vec::new();
    for (platform, image) in images {
        let from = base::resolve(registry, debug_from, platform)
            .await
            .map_err(|e| format!("--debug-from: {e}"))?;
        let from_cfg: Value = serde_json::from_slice(&from.config).map_err(|e| e.to_string())?;
        let root = image.set.root().ok_or("the image has no manifest")?;
        let view = ManifestView::parse(&root.bytes).map_err(|e| e.to_string())?;
        let mut cfg = image.config.value().clone();
        let created = cfg["created"].clone();
        let from_ids = from_cfg["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(ids) = cfg["rootfs"]["diff_ids"].as_array_mut() {
            ids.extend(from_ids);
        }
        if let Some(h) = cfg["history"].as_array_mut() {
            for _ in &from.layers {
                h.push(json!({"created": created, "created_by": format!("regbuild --debug-from {debug_from}")}));
            }
        }
        let cfg_bytes = serde_json::to_vec(&cfg).map_err(|e| e.to_string())?;
        let cfg_digest = Digest::of(&cfg_bytes);
        let cfg_path = tmp.join(format!("debug-config-{}.json", cfg_digest.hex()));
        std::fs::write(&cfg_path, &cfg_bytes).map_err(|e| e.to_string())?;

        let mut layers: Vec<Value> = Vec::new();
        let from_repo = (&from.reference.registry, &from.reference.repository);
        let sources = view
            .layers
            .iter()
            .map(|d| (d, (&pushed.registry, &pushed.repository)))
            .chain(from.layers.iter().map(|d| (d, from_repo)));
        for (d, (registry, repository)) in sources {
            let d = set.add_remote_layer(d, registry, repository);
            layers.push(serde_json::to_value(&d).map_err(|e| e.to_string())?);
        }
        set.add_blob(BlobSpec {
            digest: cfg_digest.clone(),
            size: cfg_bytes.len() as u64,
            origin: BlobOrigin::File(cfg_path),
        });
        let mut manifest: Value = serde_json::from_slice(&root.bytes).map_err(|e| e.to_string())?;
        manifest["config"] =
            json!({"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": cfg_bytes.len()});
        manifest["layers"] = Value::Array(layers);
        let bytes = Bytes::from(serde_json::to_vec(&manifest).map_err(|e| e.to_string())?);
        let digest = Digest::of(&bytes);
        children.push(((*platform).clone(), digest.clone(), bytes.len()));
        set.add_manifest(ManifestSpec {
            media_type: OCI_MANIFEST.into(),
            bytes,
            digest,
            put_as: if images.len() == 1 {
                PutAs::Tags
            } else {
                PutAs::Digest
            },
            subject: None,
            artifact_type: None,
        });
    }
    if children.len() == 1 {
        let d = children[0].1.clone();
        return Ok((set, d));
    }
    let entries: Vec<Value> = children
        .iter()
        .map(|(p, d, size)| {
            let mut plat = json!({"architecture": p.architecture, "os": p.os});
            if let Some(v) = &p.variant {
                plat["variant"] = json!(v);
            }
            json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size, "platform": plat})
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": regbuild_oci::manifest::OCI_INDEX, "manifests": entries});
    let bytes = Bytes::from(serde_json::to_vec(&index).map_err(|e| e.to_string())?);
    let digest = Digest::of(&bytes);
    set.add_manifest(ManifestSpec {
        media_type: regbuild_oci::manifest::OCI_INDEX.into(),
        bytes,
        digest: digest.clone(),
        put_as: PutAs::Tags,
        subject: None,
        artifact_type: None,
    });
    Ok((set, digest))
}
