//! A multi-platform image: one manifest per platform, put by digest, under an OCI index put
//! at the tags. Layers shared between platforms (platform-independent COPYs) are listed once,
//! so they are uploaded once.

use bytes::Bytes;
use serde_json::json;

use crate::builder::assemble::{BASE_DIGEST, BASE_NAME};
use crate::builder::BuiltImage;
use crate::image::base::TargetPlatform;
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{OCI_INDEX, OCI_MANIFEST};
use regbuild_registry::publish::{ImageSet, ManifestSpec, PutAs};

/// The index over `images` and everything it needs.
pub fn assemble(images: &[(&TargetPlatform, &BuiltImage)]) -> (ImageSet, Digest) {
    let mut set = ImageSet::default();
    let mut entries = Vec::new();
    for (platform, image) in images {
        for b in &image.set.blobs {
            set.add_blob(b.clone());
        }
        for m in &image.set.manifests {
            let mut child = m.clone();
            child.put_as = PutAs::Digest;
            set.add_manifest(child);
        }
        let mut p = json!({"architecture": platform.architecture, "os": platform.os});
        if let Some(v) = &platform.variant {
            p["variant"] = json!(v);
        }
        entries.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": image.digest,
            "size": image.set.root().map(|m| m.bytes.len()).unwrap_or(0),
            "platform": p,
        }));
    }
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    });
    // All platforms built on one base (the usual case): the index names it too.
    let bases: Vec<_> = images
        .iter()
        .map(|(_, i)| {
            i.base
                .as_ref()
                .map(|b| (b.reference.to_string(), b.digest.clone()))
        })
        .collect();
    if let Some(Some((name, digest))) = bases.first() {
        if bases
            .iter()
            .all(|b| b.as_ref() == Some(&(name.clone(), digest.clone())))
        {
            index["annotations"] = json!({BASE_NAME: name, BASE_DIGEST: digest});
        }
    }
    let bytes = Bytes::from(serde_json::to_vec(&index).unwrap_or_default());
    let digest = Digest::of(&bytes);
    set.add_manifest(ManifestSpec {
        media_type: OCI_INDEX.to_string(),
        bytes,
        digest: digest.clone(),
        put_as: PutAs::Tags,
        subject: None,
        artifact_type: None,
    });
    (set, digest)
}
