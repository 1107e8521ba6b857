//! Has a base moved? Compares what a base's tag points at now with the digest an image was
//! built from: the lock file's pin, a `name:tag@sha256:` pin in the Dockerfile, or a pushed
//! image's `org.opencontainers.image.base.*` annotations.

use serde::Serialize;

use crate::build::assemble::{BASE_DIGEST, BASE_NAME};
use crate::digest::Digest;
use crate::manifest::{is_index, ManifestView};
use crate::reference::ImageRef;
use crate::registry::{Registry, Scopes};

/// One base, checked.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BaseStatus {
    /// What was checked: a pushed image reference or the Dockerfile / lock file.
    pub image: String,
    /// The base's reference (its tag).
    pub reference: String,
    pub pinned: Digest,
    pub current: Digest,
    pub moved: bool,
}

/// What the tag `reference` points at now.
pub async fn current_digest(registry: &Registry, reference: &ImageRef) -> Result<Digest, String> {
    let repo = registry.repo(
        &reference.registry,
        &reference.repository,
        Scopes::pull(&reference.repository),
    );
    let tag_only = match &reference.tag {
        Some(t) => reference.with_tag(t),
        None => reference.clone(),
    };
    match repo.head_manifest(&tag_only.manifest_reference()).await {
        Ok(Some(info)) => Ok(info.digest),
        Ok(None) => Err(format!("base {tag_only}: no such tag in the registry")),
        Err(e) => Err(format!("base {tag_only}: {e}")),
    }
}

/// Compares `pinned` with what `reference`'s tag points at now.
pub async fn check(
    registry: &Registry,
    image: &str,
    reference: &ImageRef,
    pinned: &Digest,
) -> Result<BaseStatus, String> {
    let current = current_digest(registry, reference).await?;
    Ok(BaseStatus {
        image: image.to_string(),
        reference: match &reference.tag {
            Some(t) => reference.with_tag(t).to_string(),
            None => reference.to_string(),
        },
        pinned: pinned.clone(),
        moved: current != *pinned,
        current,
    })
}

/// The base a pushed image names in its annotations (the index's, else its first child's).
pub async fn base_of_image(
    registry: &Registry,
    image: &ImageRef,
) -> Result<Option<(ImageRef, Digest)>, String> {
    let repo = registry.repo(
        &image.registry,
        &image.repository,
        Scopes::pull(&image.repository),
    );
    let m = repo
        .get_manifest(&image.manifest_reference())
        .await
        .map_err(|e| format!("{image}: {e}"))?;
    let view: serde_json::Value =
        serde_json::from_slice(&m.bytes).map_err(|e| format!("{image}: {e}"))?;
    let mut found = annotations(&view);
    if found.is_none() && is_index(&m.media_type) {
        let idx = ManifestView::parse(&m.bytes).map_err(|e| format!("{image}: {e}"))?;
        if let Some(child) = idx.manifests.first() {
            let c = repo
                .get_manifest(child.digest.as_str())
                .await
                .map_err(|e| format!("{image}: {e}"))?;
            let cv: serde_json::Value =
                serde_json::from_slice(&c.bytes).map_err(|e| format!("{image}: {e}"))?;
            found = annotations(&cv);
        }
    }
    match found {
        None => Ok(None),
        Some((name, digest)) => {
            let r: ImageRef = name
                .parse()
                .map_err(|e| format!("{image}: base annotation: {e}"))?;
            let d: Digest = digest
                .parse()
                .map_err(|e| format!("{image}: base annotation: {e}"))?;
            Ok(Some((r, d)))
        }
    }
}

fn annotations(v: &serde_json::Value) -> Option<(String, String)> {
    let a = v.get("annotations")?;
    Some((
        a.get(BASE_NAME)?.as_str()?.to_string(),
        a.get(BASE_DIGEST)?.as_str()?.to_string(),
    ))
}
