//! Materialising paths of another stage or image for `COPY --from`: layers are applied top
//! down and fetching stops as soon as every wanted path is settled, so an image's lower
//! layers are downloaded only when the requested files live there. Downloads are verified
//! against their digests before anything is extracted from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::builder::error::StepError;
use crate::builder::layer::StageLayer;
use regbuild_fs::extract::{self, EntryMeta, Limits, Overlay};
use regbuild_fs::layer::{BuiltLayer, Xattrs};
use regbuild_oci::manifest::Descriptor;
use regbuild_registry::{Registry, Scopes};
use std::collections::HashMap;

/// What the layers said of the paths [`extract_paths`] wrote, by path relative to `dest`.
pub struct Materialized {
    /// Ownership and mode.
    pub meta: HashMap<PathBuf, EntryMeta>,
    /// Extended attributes (`security.capability`, which a rootless extraction cannot set
    /// on the disk): what `COPY --from` carries on.
    pub xattrs: Arc<HashMap<PathBuf, Xattrs>>,
}

/// Extracts `wanted` (image paths, relative; empty = everything) of the image made of
/// `layers` into `dest`; returns what the layers said of each written path.
pub async fn extract_paths(
    registry: &Registry,
    layers: &[StageLayer],
    wanted: Vec<PathBuf>,
    dest: &Path,
    tmp: &Path,
) -> Result<Materialized, StepError> {
    let overlay = apply_layers(registry, layers, wanted.clone(), dest, tmp).await?;
    // A wanted hard link to a file that was not wanted (cargo links its binary: `COPY
    // --from=build /out/app`): its content was passed by before the link came. Once more,
    // wanting the targets too: the links are then made (the targets stay in `dest`, where
    // the caller takes only what it asked for).
    let unreached: Vec<PathBuf> = overlay.unreached_link_targets().to_vec();
    let overlay = if unreached.is_empty() || wanted.is_empty() {
        overlay
    } else {
        drop(overlay);
        empty_dir(dest).map_err(|source| StepError::File {
            path: dest.to_path_buf(),
            source,
        })?;
        let mut wider = wanted;
        wider.extend(unreached);
        apply_layers(registry, layers, wider, dest, tmp).await?
    };
    let meta = overlay.metadata().clone();
    let xattrs = Arc::new(overlay.xattrs().clone());
    tokio::task::block_in_place(|| overlay.finish())?;
    Ok(Materialized { meta, xattrs })
}

/// Removes everything in `dir`, keeping `dir`.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        regbuild_rootfs::tree::remove_tree(&entry?.path())?;
    }
    Ok(())
}

/// Applies `layers` top down into `dest` until `wanted` is settled; the overlay is not
/// finished (its pending hard links are not resolved yet).
async fn apply_layers(
    registry: &Registry,
    layers: &[StageLayer],
    wanted: Vec<PathBuf>,
    dest: &Path,
    tmp: &Path,
) -> Result<Overlay, StepError> {
    let mut overlay = Overlay::new(dest, wanted, Limits::default());
    for layer in layers.iter().rev() {
        if overlay.settled() {
            break;
        }
        match where_bytes_are(layer)? {
            Bytes::Registry(host, repo, descriptor) => {
                let path = download(registry, host, repo, &descriptor, tmp).await?;
                let name = descriptor.digest.to_string();
                let result = tokio::task::block_in_place(|| {
                    let (_, reader) = extract::open_archive(&path)?;
                    overlay.apply_layer(&name, reader)
                });
                let _ = std::fs::remove_file(&path);
                result?;
            }
            Bytes::Built(built) => tokio::task::block_in_place(|| {
                // gzip or zstd, as the build was asked to compress.
                let (_, reader) = extract::open_archive(&built.file)?;
                overlay.apply_layer(built.digest.as_str(), reader)
            })?,
        }
    }
    Ok(overlay)
}

/// Where a layer's bytes are read from.
enum Bytes<'a> {
    /// Only a registry holds them: a base's layer, or a RUN layer found there by key.
    Registry(&'a str, &'a str, Box<Descriptor>),
    /// A file here: built by this build, or by the local cache on demand.
    Built(Arc<BuiltLayer>),
}

fn where_bytes_are(layer: &StageLayer) -> Result<Bytes<'_>, StepError> {
    Ok(match layer {
        StageLayer::Remote {
            descriptor,
            registry,
            repository,
        } => Bytes::Registry(registry, repository, descriptor.clone()),
        StageLayer::Cached(c) => match c.registry_source() {
            Some((host, repo, d)) if !c.buildable() => Bytes::Registry(host, repo, Box::new(d)),
            _ => Bytes::Built(tokio::task::block_in_place(|| c.built())?),
        },
        StageLayer::Local(built) => Bytes::Built(built.clone()),
    })
}

/// Streams a blob into a new file under `tmp` (the caller removes it); the stream fails on
/// a digest mismatch.
pub(crate) async fn download(
    registry: &Registry,
    host: &str,
    repository: &str,
    descriptor: &Descriptor,
    tmp: &Path,
) -> Result<PathBuf, StepError> {
    // A name of its own: stages built at the same time may fetch the same blob.
    let path = tempfile::Builder::new()
        .prefix(&format!("blob-{}-", descriptor.digest.hex()))
        .tempfile_in(tmp)
        .and_then(|f| f.into_temp_path().keep().map_err(|e| e.error))
        .map_err(|source| StepError::TempDir {
            dir: tmp.to_path_buf(),
            source,
        })?;
    let fetched = download_to(registry, host, repository, descriptor, &path).await;
    if fetched.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    fetched.map(|()| path)
}

async fn download_to(
    registry: &Registry,
    host: &str,
    repository: &str,
    descriptor: &regbuild_oci::manifest::Descriptor,
    path: &Path,
) -> Result<(), StepError> {
    let file_error = |source| StepError::File {
        path: path.to_path_buf(),
        source,
    };
    if let Some(local) = registry.stand_in(&descriptor.digest) {
        // A blob a dry run computed: the callers remove what they get, so a copy.
        tokio::fs::copy(&local, path)
            .await
            .map_err(|source| StepError::File {
                path: local.clone(),
                source,
            })?;
        return Ok(());
    }
    let repo = registry.repo(host, repository, Scopes::pull(repository));
    let _job = registry.job().await;
    let blob = repo
        .get_blob(&descriptor.digest, Some(descriptor.size))
        .await?;
    let failure = blob.failure_slot();
    let mut file = tokio::fs::File::create(path).await.map_err(file_error)?;
    let mut stream = blob.into_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => file.write_all(&c).await.map_err(file_error)?,
            Err(e) => {
                let recorded = failure.lock().ok().and_then(|mut f| f.take());
                return Err(recorded.map_or(StepError::Download(e), StepError::from));
            }
        }
    }
    file.flush().await.map_err(|source| StepError::Io {
        path: path.to_path_buf(),
        source,
    })
}
