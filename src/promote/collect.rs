//! Reading the source side of a promote: the root manifest, every child of an index, every
//! referrer (recursively), and the blobs they all reference.

use std::collections::HashSet;

use futures::future::try_join_all;

use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{is_index, ManifestView};
use regbuild_registry::publish::{BlobOrigin, BlobSpec, ImageSet, ManifestSpec, PutAs};
use regbuild_registry::{Manifest, RegistryError, Repo};

/// Indexes of indexes deeper than this are refused (a loop or a hostile registry).
const MAX_DEPTH: usize = 8;

/// Which referrers a promote copies.
#[derive(Clone, Copy, Debug)]
pub struct Referrers {
    pub wanted: bool,
    /// regbuild's build cache artifacts too.
    pub build_cache: bool,
}

/// Everything `reference` in `src` consists of, ordered for putting.
pub async fn collect(
    registry: &regbuild_registry::Registry,
    src: &Repo,
    reference: &str,
    referrers: Referrers,
) -> Result<ImageSet, RegistryError> {
    let root = src.get_manifest(reference).await?;
    let mut set = ImageSet::default();
    let mut seen = HashSet::new();
    let mut subjects = Vec::new();
    add_tree(
        registry,
        src,
        root,
        PutAs::Tags,
        None,
        &mut set,
        &mut seen,
        &mut subjects,
        0,
    )
    .await?;
    if referrers.wanted {
        let mut queue = subjects;
        let mut depth = 0;
        while !queue.is_empty() && depth < MAX_DEPTH {
            let mut next = Vec::new();
            for subject in queue {
                for d in src.referrers(&subject).await? {
                    let cache = crate::builder::remote_cache::artifact::ARTIFACT_TYPE;
                    let left = !referrers.build_cache && d.artifact_type.as_deref() == Some(cache);
                    if seen.contains(&d.digest) || left {
                        continue;
                    }
                    let m = src.get_manifest(d.digest.as_str()).await?;
                    // The index's word is not enough (whoever pushes writes a tag-schema
                    // index): the manifest's own type decides.
                    let own = ManifestView::parse(&m.bytes)
                        .ok()
                        .and_then(|v| v.artifact_type);
                    if !referrers.build_cache && own.as_deref() == Some(cache) {
                        continue;
                    }
                    add_tree(
                        registry,
                        src,
                        m,
                        PutAs::Digest,
                        Some(subject.clone()),
                        &mut set,
                        &mut seen,
                        &mut next,
                        0,
                    )
                    .await?;
                }
            }
            queue = next;
            depth += 1;
        }
    }
    Ok(set)
}

/// Adds `manifest` and everything below it: children first, then the manifest itself.
/// Every manifest digest added is pushed to `subjects` (referrers may point at any of them).
#[allow(clippy::too_many_arguments)]
fn add_tree<'a>(
    registry: &'a regbuild_registry::Registry,
    src: &'a Repo,
    manifest: Manifest,
    put_as: PutAs,
    subject: Option<Digest>,
    set: &'a mut ImageSet,
    seen: &'a mut HashSet<Digest>,
    subjects: &'a mut Vec<Digest>,
    depth: usize,
) -> futures::future::BoxFuture<'a, Result<(), RegistryError>> {
    Box::pin(async move {
        if depth > MAX_DEPTH {
            return Err(src.protocol_error(
                &format!("GET manifest {}", manifest.digest),
                "indexes nested too deeply",
            ));
        }
        seen.insert(manifest.digest.clone());
        let view = ManifestView::parse(&manifest.bytes).map_err(|e| {
            src.protocol_error(
                &format!("GET manifest {}", manifest.digest),
                format!("not a manifest: {e}"),
            )
        })?;
        if is_index(&manifest.media_type) {
            let fetches = view
                .manifests
                .iter()
                .filter(|d| !seen.contains(&d.digest))
                .map(|d| async move {
                    let _job = registry.job().await;
                    src.get_manifest(d.digest.as_str()).await
                });
            let children = try_join_all(fetches).await?;
            for child in children {
                add_tree(
                    registry,
                    src,
                    child,
                    PutAs::Digest,
                    None,
                    set,
                    seen,
                    subjects,
                    depth + 1,
                )
                .await?;
            }
        }
        for b in view.blobs() {
            set.add_blob(BlobSpec {
                digest: b.digest.clone(),
                size: b.size,
                origin: BlobOrigin::Registry {
                    registry: src.registry_name().to_string(),
                    repository: src.name().to_string(),
                },
            });
        }
        subjects.push(manifest.digest.clone());
        set.add_manifest(ManifestSpec {
            media_type: manifest.media_type,
            digest: manifest.digest,
            bytes: manifest.bytes,
            put_as,
            subject: subject.or(view.subject.map(|s| s.digest)),
            artifact_type: view.artifact_type.or(view.config.map(|c| c.media_type)),
            optional: false,
        });
        Ok(())
    })
}
