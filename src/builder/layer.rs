//! A layer of a stage's image, by where its bytes are: in a registry (a base's layer, or
//! one found there by key), built here, or known from a cache and built only when
//! something needs its bytes. Its own module so that the modules that read layers
//! (`pathindex`, `rootfs`, `run::lowers`) need nothing else of the stage model.

use std::sync::Arc;

use crate::builder::error::StepError;
use regbuild_fs::layer::BuiltLayer;
use regbuild_fs::layer::LayerEntry;
use regbuild_oci::manifest::Descriptor;

/// Produces a layer's entries on first use (blocking; called where blocking is allowed).
pub type DeferredEntries = Arc<dyn Fn() -> Result<Vec<LayerEntry>, StepError> + Send + Sync>;

/// One layer of a stage: from a registry, or built here.
#[derive(Clone)]
pub enum StageLayer {
    Remote {
        descriptor: Box<Descriptor>,
        registry: String,
        repository: String,
    },
    Local(Arc<BuiltLayer>),
    /// Known from the layer cache: digest, diff_id and size without building it; its file
    /// is built only if something needs the bytes.
    Cached(Arc<CachedStageLayer>),
}

/// A layer whose digest the cache knew; built on first use and checked against it.
pub struct CachedStageLayer {
    pub record: crate::builder::cache::CachedLayer,
    /// Its layer cache key (annotated on its descriptor).
    pub key: String,
    /// The registry and repository it was found in by key (None: the local cache).
    pub found_in: Option<(String, String)>,
    entries: Vec<regbuild_fs::layer::LayerEntry>,
    /// Set when `entries` is not known yet (a cached `COPY --from=<image>` layer, whose
    /// source is not downloaded unless the bytes are needed).
    deferred: Option<DeferredEntries>,
    opts: regbuild_fs::layer::LayerOptions,
    tmp: std::path::PathBuf,
    /// A RUN layer's blob kept by the local cache (it cannot be rebuilt from sources).
    stored: Option<std::path::PathBuf>,
    built: std::sync::Mutex<Option<Arc<BuiltLayer>>>,
}

impl CachedStageLayer {
    pub fn new(
        record: crate::builder::cache::CachedLayer,
        key: String,
        entries: Vec<regbuild_fs::layer::LayerEntry>,
        opts: regbuild_fs::layer::LayerOptions,
        tmp: &std::path::Path,
    ) -> CachedStageLayer {
        CachedStageLayer {
            record,
            key,
            found_in: None,
            entries,
            deferred: None,
            opts,
            tmp: tmp.to_path_buf(),
            stored: None,
            built: std::sync::Mutex::new(None),
        }
    }

    /// Where its bytes are when a registry holds them (found there by key): host,
    /// repository and the blob's descriptor. None for a layer the local cache can produce.
    pub fn registry_source(&self) -> Option<(&str, &str, Descriptor)> {
        let (host, repo) = self.found_in.as_ref()?;
        let d = Descriptor::new(
            &self.record.media_type,
            self.record.digest.clone(),
            self.record.size,
        );
        Some((host, repo, d))
    }

    /// A layer whose blob the local cache kept (`blob`): used as is when needed.
    pub fn stored(
        record: crate::builder::cache::CachedLayer,
        key: String,
        blob: std::path::PathBuf,
        opts: regbuild_fs::layer::LayerOptions,
        tmp: &std::path::Path,
    ) -> CachedStageLayer {
        CachedStageLayer {
            stored: Some(blob),
            ..CachedStageLayer::new(record, key, Vec::new(), opts, tmp)
        }
    }

    /// A stored blob, linked (or copied) into the build's tmp and checked against the record.
    fn link_stored(&self, blob: &std::path::Path) -> Result<BuiltLayer, StepError> {
        let file = tempfile::Builder::new()
            .prefix("run-layer-")
            .tempfile_in(&self.tmp)
            .map_err(|source| StepError::TempDir {
                dir: self.tmp.clone(),
                source,
            })?
            .into_temp_path();
        let io = |source| StepError::File {
            path: blob.to_path_buf(),
            source,
        };
        std::fs::remove_file(&file).map_err(io)?;
        if std::fs::hard_link(blob, &file).is_err() {
            std::fs::copy(blob, &file).map_err(io)?;
        }
        let digest = file_digest(&file).map_err(io)?;
        if digest != self.record.digest {
            return Err(StepError::CachedLayerChanged {
                built: digest,
                expected: self.record.digest.clone(),
            });
        }
        Ok(BuiltLayer {
            file,
            digest,
            diff_id: self.record.diff_id.clone(),
            size: self.record.size,
            uncompressed_size: self.record.uncompressed_size,
            entries: 0,
            media_type: self.opts.compression.media_type(),
            key: Some(self.key.clone()),
        })
    }

    /// A layer whose entries are produced only when its bytes are needed.
    pub fn deferred(
        record: crate::builder::cache::CachedLayer,
        key: String,
        entries: DeferredEntries,
        opts: regbuild_fs::layer::LayerOptions,
        tmp: &std::path::Path,
    ) -> CachedStageLayer {
        CachedStageLayer {
            deferred: Some(entries),
            ..CachedStageLayer::new(record, key, Vec::new(), opts, tmp)
        }
    }

    /// The blob the local cache kept for it (a RUN layer), if any.
    pub fn stored_blob(&self) -> Option<&std::path::Path> {
        self.stored.as_deref()
    }

    /// Its entries when they are known without producing anything (a COPY layer).
    pub fn known_entries(&self) -> Option<&[regbuild_fs::layer::LayerEntry]> {
        (self.stored.is_none() && self.deferred.is_none() && !self.entries.is_empty())
            .then_some(self.entries.as_slice())
    }

    /// Whether its bytes can be made here (from its entries, its source or a stored blob);
    /// else (a RUN layer found in a registry) they must be downloaded from `found_in`.
    pub fn buildable(&self) -> bool {
        self.stored.is_some() || self.deferred.is_some() || !self.entries.is_empty()
    }

    /// What the layer holds (blocking: a deferred layer materialises its source now).
    pub fn entries(&self) -> Result<Vec<regbuild_fs::layer::LayerEntry>, StepError> {
        match &self.deferred {
            Some(produce) => produce(),
            None => Ok(self.entries.clone()),
        }
    }

    /// The layer's file, built now if it was not yet (blocking).
    pub fn built(&self) -> Result<Arc<BuiltLayer>, StepError> {
        let mut slot = self.built.lock().map_err(|_| StepError::Poisoned)?;
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let b = match &self.stored {
            Some(blob) => self.link_stored(blob)?,
            None => regbuild_fs::layer::build_layer(
                self.entries()?,
                &self.opts,
                &self.tmp,
                &mut |_| {},
            )?,
        };
        if b.digest != self.record.digest {
            return Err(StepError::CachedLayerChanged {
                built: b.digest,
                expected: self.record.digest.clone(),
            });
        }
        let b = Arc::new(b);
        *slot = Some(b.clone());
        Ok(b)
    }
}

/// The sha256 of a file's bytes, streamed.
pub fn file_digest(path: &std::path::Path) -> std::io::Result<regbuild_oci::digest::Digest> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = regbuild_oci::digest::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}
