//! Has a base moved? Compares what a base's tag points at now with the digest an image was
//! built from: the lock file's pin, a `name:tag@sha256:` pin in the Dockerfile, or a pushed
//! image's `org.opencontainers.image.base.*` annotations — and, likewise, every other image
//! the build read (`COPY --from=<image>`, in the lock file and in `dev.regbuild.sources`).

use serde::Serialize;

use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{is_index, ManifestView};
use regbuild_oci::model::{parse_sources, BASE_DIGEST, BASE_NAME, SOURCES};
use regbuild_oci::reference::ImageRef;
use regbuild_registry::{Registry, RegistryError, Scopes};

/// Why a base could not be checked. Each names the image or base at fault.
#[derive(Debug, thiserror::Error)]
pub enum OutdatedError {
    #[error("base {0}: no such tag in the registry")]
    NoSuchTag(String),
    #[error("base {reference}: {source}")]
    Base {
        reference: String,
        source: Box<RegistryError>,
    },
    #[error("{image}: {source}")]
    Registry {
        image: String,
        source: Box<RegistryError>,
    },
    #[error("{image}: {source}")]
    Manifest {
        image: String,
        source: serde_json::Error,
    },
    #[error("{image}: {what} annotation: {source}")]
    Annotation {
        image: String,
        what: String,
        source: AnnotationError,
    },
}

/// Why a base or sources annotation cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    #[error("{0}")]
    Reference(#[from] regbuild_oci::reference::ReferenceError),
    #[error("{0}")]
    Digest(#[from] regbuild_oci::digest::DigestError),
    #[error("`{0}` is not reference@digest")]
    NotPinned(String),
}

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
pub async fn current_digest(
    registry: &Registry,
    reference: &ImageRef,
) -> Result<Digest, OutdatedError> {
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
        Ok(None) => Err(OutdatedError::NoSuchTag(tag_only.to_string())),
        Err(source) => Err(OutdatedError::Base {
            reference: tag_only.to_string(),
            source: Box::new(source),
        }),
    }
}

/// Compares `pinned` with what `reference`'s tag points at now.
pub async fn check(
    registry: &Registry,
    image: &str,
    reference: &ImageRef,
    pinned: &Digest,
) -> Result<BaseStatus, OutdatedError> {
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

/// What a pushed image says it was built from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuiltFrom {
    /// `org.opencontainers.image.base.*`: the base's tag and the digest it resolved to.
    pub base: Option<(ImageRef, Digest)>,
    /// `dev.regbuild.sources`: the other images the build read, each by the digest it read.
    pub sources: Vec<(ImageRef, Digest)>,
}

/// The annotations of one manifest that say what it was built from, unparsed.
#[derive(Default)]
struct Found {
    base: Option<(String, String)>,
    sources: Option<String>,
}

impl Found {
    fn of(manifest: &serde_json::Value) -> Found {
        let a = manifest.get("annotations");
        let text = |key: &str| {
            a.and_then(|a| a.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        Found {
            base: text(BASE_NAME).zip(text(BASE_DIGEST)),
            sources: text(SOURCES),
        }
    }
}

/// The base a pushed image names in its annotations (the index's, else its first child's).
pub async fn base_of_image(
    registry: &Registry,
    image: &ImageRef,
) -> Result<Option<(ImageRef, Digest)>, OutdatedError> {
    Ok(built_from(registry, image).await?.base)
}

/// What a pushed image was built from, by its annotations (the index's, else its first
/// child's).
pub async fn built_from(registry: &Registry, image: &ImageRef) -> Result<BuiltFrom, OutdatedError> {
    let registry_error = |source| OutdatedError::Registry {
        image: image.to_string(),
        source: Box::new(source),
    };
    let manifest_error = |source| OutdatedError::Manifest {
        image: image.to_string(),
        source,
    };
    let repo = registry.repo(
        &image.registry,
        &image.repository,
        Scopes::pull(&image.repository),
    );
    let m = repo
        .get_manifest(&image.manifest_reference())
        .await
        .map_err(registry_error)?;
    let view: serde_json::Value = serde_json::from_slice(&m.bytes).map_err(manifest_error)?;
    let mut found = Found::of(&view);
    if (found.base.is_none() || found.sources.is_none()) && is_index(&m.media_type) {
        let idx = ManifestView::parse(&m.bytes).map_err(manifest_error)?;
        if let Some(child) = idx.manifests.first() {
            let c = repo
                .get_manifest(child.digest.as_str())
                .await
                .map_err(registry_error)?;
            let cv: serde_json::Value = serde_json::from_slice(&c.bytes).map_err(manifest_error)?;
            let child = Found::of(&cv);
            found.base = found.base.or(child.base);
            found.sources = found.sources.or(child.sources);
        }
    }
    parse_found(image, found)
}

fn parse_found(image: &ImageRef, found: Found) -> Result<BuiltFrom, OutdatedError> {
    let annotation = |what: &str, source: AnnotationError| OutdatedError::Annotation {
        image: image.to_string(),
        what: what.to_string(),
        source,
    };
    let pinned = |r: &str, d: &str, what: &str| -> Result<(ImageRef, Digest), OutdatedError> {
        let bad = |e: AnnotationError| annotation(what, e);
        Ok((
            r.parse()
                .map_err(|e: regbuild_oci::reference::ReferenceError| bad(e.into()))?,
            d.parse()
                .map_err(|e: regbuild_oci::digest::DigestError| bad(e.into()))?,
        ))
    };
    let base = match &found.base {
        Some((name, digest)) => Some(pinned(name, digest, "base")?),
        None => None,
    };
    let mut sources = Vec::new();
    for entry in found
        .sources
        .as_deref()
        .map(parse_sources)
        .into_iter()
        .flatten()
    {
        let (r, d) = entry
            .rsplit_once('@')
            .ok_or_else(|| annotation(SOURCES, AnnotationError::NotPinned(entry.to_string())))?;
        sources.push(pinned(r, d, SOURCES)?);
    }
    Ok(BuiltFrom { base, sources })
}

/// Every image `image` was built from (its base, then the other images it read), checked.
/// `label` names it in the result.
pub async fn check_image(
    registry: &Registry,
    label: &str,
    image: &ImageRef,
) -> Result<Vec<BaseStatus>, OutdatedError> {
    let from = built_from(registry, image).await?;
    let mut out = Vec::new();
    for (reference, pinned) in from.base.iter().chain(from.sources.iter()) {
        out.push(check(registry, label, reference, pinned).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageRef {
        "r.example/app:1".parse().unwrap()
    }

    #[test]
    fn sources_are_read_beside_the_base() {
        let d1 = Digest::of(b"lib");
        let d2 = Digest::of(b"base");
        let v = serde_json::json!({"annotations": {
            BASE_NAME: "r.example/os/base:1",
            BASE_DIGEST: d2.to_string(),
            SOURCES: format!("r.example/lib:2@{d1},r.example/tools:3@{d2}"),
        }});
        let from = parse_found(&image(), Found::of(&v)).unwrap();
        assert_eq!(from.base.unwrap().0.to_string(), "r.example/os/base:1");
        let sources: Vec<(String, Digest)> = from
            .sources
            .into_iter()
            .map(|(r, d)| (r.to_string(), d))
            .collect();
        assert_eq!(
            sources,
            vec![
                ("r.example/lib:2".to_string(), d1),
                ("r.example/tools:3".to_string(), d2)
            ]
        );
    }

    #[test]
    fn a_malformed_sources_annotation_is_an_error_naming_the_image() {
        let v = serde_json::json!({"annotations": {SOURCES: "r.example/lib:2"}});
        let err = parse_found(&image(), Found::of(&v))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("r.example/app:1") && err.contains("reference@digest"),
            "{err}"
        );
    }

    #[test]
    fn no_annotations_say_nothing() {
        let from = parse_found(&image(), Found::of(&serde_json::json!({}))).unwrap();
        assert_eq!(from, BuiltFrom::default());
    }
}
