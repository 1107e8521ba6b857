//! The registry as a layer cache: layers this tool pushes carry their layer cache key in a
//! descriptor annotation (`cache::KEY_ANNOTATION`), so a build on a machine with an empty
//! cache (a fresh CI runner) reads the manifest and config of the images it is told to look
//! at (`--cache-from`, by default the tags it pushes) and reuses any layer whose key matches,
//! without packing it. The key covers every input of the layer (paths, modes, owners, content
//! hashes, instruction, compression), so a match means the same bytes; a reused layer the
//! destination lacks is mounted from where it was found (or copied, from another registry).
//!
//! Trust: whoever can push to a `--cache-from` repository decides what such a layer holds, as
//! with any base image; by default only the destination's own tags are read.

use std::collections::HashMap;

use crate::builder::cache::{CachedLayer, KEY_ANNOTATION};
use crate::image::base;
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::Registry;

/// A layer found in a registry by its key.
#[derive(Clone, Debug)]
pub struct RemoteLayer {
    pub record: CachedLayer,
    /// Where it was found: mounted (or copied) from there when the destination lacks it.
    pub registry: String,
    pub repository: String,
}

/// Where a layer known by its cache key was found.
pub enum Hit {
    /// The local layer cache's record.
    Local(CachedLayer),
    /// A layer of a pushed or `--cache-from` image.
    Remote(RemoteLayer),
}

/// The one lookup of a layer by key, for every kind of step: the local cache first (a record
/// `usable` accepts: a RUN layer needs its stored blob), else the layers found by key in the
/// registry.
pub fn lookup(
    local: Option<&crate::builder::cache::LayerCache>,
    remote: &HashMap<String, RemoteLayer>,
    key: &str,
    usable: impl Fn(&CachedLayer) -> bool,
) -> Option<Hit> {
    local
        .and_then(|cache| cache.get(key))
        .filter(|record| usable(record))
        .map(Hit::Local)
        .or_else(|| remote.get(key).cloned().map(Hit::Remote))
}

/// Layers found by key in `images` (for `platform`). An image that cannot be read (missing
/// tag, no access) only contributes nothing.
pub async fn remote_layers(
    registry: &Registry,
    images: &[ImageRef],
    platform: &Platform,
) -> HashMap<String, RemoteLayer> {
    let reads = images.iter().map(|r| async move {
        match base::resolve(registry, r, platform).await {
            Ok(resolved) => layers_by_key(&resolved)
                .into_iter()
                .map(|(key, record)| {
                    let found = RemoteLayer {
                        record,
                        registry: r.registry.clone(),
                        repository: r.repository.clone(),
                    };
                    (key, found)
                })
                .collect(),
            Err(e) => {
                tracing::debug!(image = %r, error = %e, "no layers from this cache source");
                Vec::new()
            }
        }
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
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
