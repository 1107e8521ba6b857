//! Adding the build cache artifact (`remote_cache::artifact`) to the set a push writes: the layers of
//! the build's other stages (with where their bytes are, as `assemble` says for image
//! layers), the path lists the build looked at, the cache mounts and the recorded steps,
//! as a referrer of the image manifest, put by digest. Nothing here talks to a registry.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::builder::layer::StageLayer;
use crate::builder::pathindex::LayerIndex;
use crate::builder::remote_cache::artifact::{
    Artifact, KeyedLayer, MountBlob, ARTIFACT_TYPE, PATHS_MEDIA_TYPE,
};
use crate::builder::remote_cache::RemoteBlob;
use crate::builder::report::RecordedStep;
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{Descriptor, ManifestView, OCI_MANIFEST};
use regbuild_registry::publish::{BlobOrigin, BlobSpec, ImageSet, ManifestSpec, PutAs};

/// What the build found out that the next runner should not have to again.
#[derive(Default)]
pub struct CacheExport {
    /// Every layer of every stage the build made or reused (the image's own are skipped).
    pub layers: Vec<StageLayer>,
    /// The path lists COPY and WORKDIR looked at, by layer digest.
    pub paths: BTreeMap<Digest, Arc<LayerIndex>>,
    pub steps: Vec<RecordedStep>,
    /// Cache mounts: a new tarball's file, or where the registry holds the same bytes.
    pub mounts: Vec<(MountBlob, Option<PathBuf>, Option<RemoteBlob>)>,
}

/// A layer's digest and its key when this tool made it.
pub fn digest_and_key(l: &StageLayer) -> (Digest, Option<String>) {
    match l {
        StageLayer::Remote { descriptor, .. } => (descriptor.digest.clone(), None),
        StageLayer::Local(b) => (b.digest.clone(), b.key.clone()),
        StageLayer::Cached(c) => (c.record.digest.clone(), Some(c.key.clone())),
    }
}

/// Adds the artifact referring to `set`'s tagged manifest (its files written under `tmp`);
/// returns its digest, or None when there is nothing to record.
pub fn add_artifact(
    set: &mut ImageSet,
    export: CacheExport,
    tmp: &Path,
) -> std::io::Result<Option<Digest>> {
    let Some(root) = set.root().cloned() else {
        return Ok(None);
    };
    // A layer the image lists under the same key is found there; the same bytes made by
    // another step (a RUN whose layer a COPY --from reproduces) have a key of their own.
    let in_image: HashSet<(Digest, String)> = ManifestView::parse(&root.bytes)
        .map(|v| {
            v.layers
                .into_iter()
                .filter_map(|d| {
                    let key = d
                        .annotations
                        .as_ref()?
                        .get(crate::builder::remote_cache::artifact::KEY)?
                        .clone();
                    Some((d.digest, key))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut artifact = Artifact {
        steps: export.steps,
        ..Artifact::default()
    };
    for l in &export.layers {
        let (digest, key) = digest_and_key(l);
        let Some(key) = key.filter(|k| !in_image.contains(&(digest.clone(), k.clone()))) else {
            continue;
        };
        let diff_id = match l {
            StageLayer::Local(b) => b.diff_id.clone(),
            StageLayer::Cached(c) => c.record.diff_id.clone(),
            StageLayer::Remote { .. } => continue,
        };
        let mut descriptor = crate::builder::assemble::add_layer(set, l);
        descriptor.annotations = None;
        artifact.layers.push(KeyedLayer {
            descriptor,
            key,
            diff_id,
        });
    }
    for (layer, index) in &export.paths {
        let blob = index.to_blob()?;
        let descriptor = Descriptor::of(PATHS_MEDIA_TYPE, &blob);
        let file = write(
            tmp,
            &format!("paths-{}.json.gz", descriptor.digest.hex()),
            &blob,
        )?;
        set.add_blob(BlobSpec {
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            origin: BlobOrigin::File(file),
        });
        artifact.paths.insert(layer.clone(), descriptor);
    }
    for (m, file, remote) in export.mounts {
        let origin = match (file, remote) {
            (Some(f), _) => BlobOrigin::File(f),
            (None, Some(r)) => BlobOrigin::Registry {
                registry: r.registry,
                repository: r.repository,
            },
            (None, None) => continue,
        };
        set.add_blob(BlobSpec {
            digest: m.descriptor.digest.clone(),
            size: m.descriptor.size,
            origin,
        });
        artifact.mounts.push(m);
    }
    if artifact.is_empty() && artifact.steps.is_empty() {
        return Ok(None);
    }
    let subject = Descriptor::new(
        &root.media_type,
        root.digest.clone(),
        root.bytes.len() as u64,
    );
    let written = artifact.write(&subject);
    let config = write(
        tmp,
        &format!(
            "cache-config-{}.json",
            written.config_descriptor.digest.hex()
        ),
        &written.config,
    )?;
    set.add_blob(BlobSpec {
        digest: written.config_descriptor.digest.clone(),
        size: written.config_descriptor.size,
        origin: BlobOrigin::File(config),
    });
    set.add_manifest(ManifestSpec {
        media_type: OCI_MANIFEST.to_string(),
        bytes: Bytes::from(written.manifest),
        digest: written.digest.clone(),
        put_as: PutAs::Digest,
        subject: Some(root.digest.clone()),
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        optional: true,
    });
    Ok(Some(written.digest))
}

fn write(tmp: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let path = tmp.join(name);
    std::fs::write(&path, bytes)?;
    Ok(path)
}
