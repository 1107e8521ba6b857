//! The registry as the cache. Layers this tool pushes carry their layer cache key in a
//! descriptor annotation (`cache::KEY_ANNOTATION`), and beside each pushed image manifest
//! a build cache artifact (`artifact`, a referrer of the manifest) lists what the image
//! does not hold: the builder stages' layers by key, the path lists of the layers COPY and
//! WORKDIR looked at, the cache mounts (opt-in) and the RUN steps' key inputs. A build on a
//! machine with an empty cache (a fresh CI runner) reads both for the images it is told to
//! look at (`--cache-from`, by default the tags it pushes) and reuses any layer whose key
//! matches, without packing, downloading or running anything. The key covers every input
//! of the layer (paths, modes, owners, content hashes, instruction, compression), so a
//! match means the same bytes; a reused layer the destination lacks is mounted from where
//! it was found (or copied, from another registry).
//!
//! Trust: whoever can push to a `--cache-from` repository decides what such a layer (or
//! path list, or cache mount) holds, as with any base image; by default only the
//! destination's own tags are read.

pub mod artifact;
pub mod explain;
pub mod mounts;
mod tarball;

use std::collections::HashMap;

use crate::builder::cache::{CachedLayer, KEY_ANNOTATION};
use crate::image::base;
use artifact::{Artifact, RecordedStep, ARTIFACT_TYPE};
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::Descriptor;
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::{Registry, Repo, Scopes};

/// Cache artifacts read per image at most (one per build that pushed this manifest).
const MAX_ARTIFACTS: usize = 4;
/// The most an artifact's config (the recorded steps) may weigh.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// What the build cache artifact holds (`--registry-cache`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No artifact.
    Off,
    /// What concerns the pushed image's own layers: their path lists, their RUN steps' key
    /// inputs, the cache mounts (with `--cache-mounts registry`).
    #[default]
    Min,
    /// Also every other stage's layers (builder stages) and their path lists.
    Max,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "off" => Ok(Mode::Off),
            "min" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            other => Err(format!("{other:?}: use off, min or max")),
        }
    }
}

/// A layer found in a registry by its key.
#[derive(Clone, Debug)]
pub struct RemoteLayer {
    pub record: CachedLayer,
    /// Where it was found: mounted (or copied) from there when the destination lacks it.
    pub registry: String,
    pub repository: String,
}

/// A blob a cache artifact lists, and where it is.
#[derive(Clone, Debug)]
pub struct RemoteBlob {
    pub descriptor: Descriptor,
    pub registry: String,
    pub repository: String,
}

impl RemoteBlob {
    pub fn repo(&self, registry: &Registry) -> Repo {
        registry.repo(
            &self.registry,
            &self.repository,
            Scopes::pull(&self.repository),
        )
    }
}

/// What the registry knows for this build.
#[derive(Clone, Debug, Default)]
pub struct RemoteCache {
    /// Layers by key: the images' own and their cache artifacts'.
    pub layers: HashMap<String, RemoteLayer>,
    /// Layer digest → its path list.
    pub paths: HashMap<Digest, RemoteBlob>,
    /// (cache id, platform) → the cache mount's tarball.
    pub mounts: HashMap<(String, String), RemoteBlob>,
    /// The RUN steps the artifacts recorded (what a miss is explained against).
    pub steps: Vec<RecordedStep>,
}

/// Where a layer known by its cache key was found.
pub enum Hit {
    /// The local layer cache's record.
    Local(CachedLayer),
    /// A layer of a pushed or `--cache-from` image, or of its cache artifact.
    Remote(RemoteLayer),
}

/// The one lookup of a layer by key, for every kind of step: the local cache first (a record
/// `usable` accepts: a RUN layer needs its stored blob), else the layers found by key in the
/// registry.
pub fn lookup(
    local: Option<&crate::builder::cache::LayerCache>,
    remote: &RemoteCache,
    key: &str,
    usable: impl Fn(&CachedLayer) -> bool,
) -> Option<Hit> {
    local
        .and_then(|cache| cache.get(key))
        .filter(|record| usable(record))
        .map(Hit::Local)
        .or_else(|| remote.layers.get(key).cloned().map(Hit::Remote))
}

/// What `images` (for `platform`) and their cache artifacts know. An image that cannot be
/// read (missing tag, no access) only contributes nothing.
pub async fn read(registry: &Registry, images: &[ImageRef], platform: &Platform) -> RemoteCache {
    let reads = images.iter().map(|r| async move {
        match base::resolve(registry, r, platform).await {
            Ok(resolved) => {
                let artifacts = artifacts_of(registry, r, &resolved.manifest_digest).await;
                Some((r, resolved, artifacts))
            }
            Err(e) => {
                tracing::debug!(image = %r, error = %e, "no layers from this cache source");
                None
            }
        }
    });
    let mut out = RemoteCache::default();
    for (r, resolved, artifacts) in futures::future::join_all(reads).await.into_iter().flatten() {
        let at = |descriptor: Descriptor| RemoteBlob {
            descriptor,
            registry: r.registry.clone(),
            repository: r.repository.clone(),
        };
        let found = |record: CachedLayer| RemoteLayer {
            record,
            registry: r.registry.clone(),
            repository: r.repository.clone(),
        };
        for (key, record) in layers_by_key(&resolved) {
            out.layers.entry(key).or_insert_with(|| found(record));
        }
        for a in artifacts {
            for l in a.layers {
                let record = CachedLayer {
                    digest: l.descriptor.digest.clone(),
                    diff_id: l.diff_id,
                    size: l.descriptor.size,
                    uncompressed_size: 0,
                    media_type: l.descriptor.media_type.clone(),
                };
                out.layers.entry(l.key).or_insert_with(|| found(record));
            }
            for (layer, list) in a.paths {
                out.paths.entry(layer).or_insert_with(|| at(list));
            }
            for m in a.mounts {
                out.mounts
                    .entry((m.id, m.platform))
                    .or_insert_with(|| at(m.descriptor));
            }
            out.steps.extend(a.steps);
        }
    }
    out
}

/// The cache artifacts referring to the image manifest `subject` in `image`'s repository.
async fn artifacts_of(registry: &Registry, image: &ImageRef, subject: &Digest) -> Vec<Artifact> {
    let repo = registry.repo(
        &image.registry,
        &image.repository,
        Scopes::pull(&image.repository),
    );
    let referrers = match repo.referrers(subject).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%image, error = %e, "no build cache artifact readable");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let ours = referrers
        .into_iter()
        .filter(|d| d.artifact_type.as_deref() == Some(ARTIFACT_TYPE))
        .take(MAX_ARTIFACTS);
    for d in ours {
        match read_artifact(&repo, &d).await {
            Some(a) => out.push(a),
            None => {
                tracing::debug!(%image, artifact = %d.digest, "build cache artifact unreadable")
            }
        }
    }
    if !out.is_empty() {
        tracing::info!(%image, artifacts = out.len(), "read the registry's build cache");
    }
    out
}

async fn read_artifact(repo: &Repo, d: &Descriptor) -> Option<Artifact> {
    let manifest = repo.get_manifest(d.digest.as_str()).await.ok()?;
    let view = regbuild_oci::manifest::ManifestView::parse(&manifest.bytes).ok()?;
    let config = view.config?;
    let config = repo
        .get_blob_bytes(&config.digest, MAX_CONFIG_BYTES)
        .await
        .ok()?;
    Artifact::parse(&manifest.bytes, &config)
}

/// The annotated layers of one image, with their diff_ids from its config.
fn layers_by_key(image: &base::ResolvedBase) -> Vec<(String, CachedLayer)> {
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(&image.config) else {
        return Vec::new();
    };
    let Some(diff_ids) = config["rootfs"]["diff_ids"].as_array() else {
        return Vec::new();
    };
    if diff_ids.len() != image.layers.len() {
        return Vec::new();
    }
    image
        .layers
        .iter()
        .zip(diff_ids)
        .filter_map(|(layer, diff_id)| {
            let key = layer.annotations.as_ref()?.get(KEY_ANNOTATION)?;
            Some((
                key.clone(),
                CachedLayer {
                    digest: layer.digest.clone(),
                    diff_id: diff_id.as_str()?.parse().ok()?,
                    size: layer.size,
                    uncompressed_size: 0,
                    media_type: layer.media_type.clone(),
                },
            ))
        })
        .collect()
}
