//! The stage model: a stage's image as the build makes it (config, layers and where each
//! layer's bytes are, base) and the layer kinds. Every step module (`copy`, `squash`,
//! `from_image`, …) reads and extends these; `orchestrate` drives them. Its own module so
//! that step modules and the orchestrator do not import each other.

use std::sync::Arc;

use crate::builder::error::StepError;
use crate::image::base::ResolvedBase;
use regbuild_fs::layer::BuiltLayer;
use regbuild_fs::layer::LayerEntry;
use regbuild_oci::config::ImageConfig;
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
fn file_digest(path: &std::path::Path) -> std::io::Result<regbuild_oci::digest::Digest> {
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

/// A stage's image as it is being built.
#[derive(Clone)]
pub struct StageImage {
    pub config: ImageConfig,
    pub layers: Vec<StageLayer>,
    pub base: Option<ResolvedBase>,
    /// Whether COPY and WORKDIR see the base's paths (`orchestrate::needs_base_paths`):
    /// from the first step of the stage (or of a stage it is built FROM) that needed them.
    pub base_listed: bool,
}

/// A command as it runs: the exec form as is, the shell form wrapped in the stage's SHELL
/// (default `/bin/sh -c`).
pub fn argv(
    config: &regbuild_oci::config::ImageConfig,
    c: &regbuild_frontend::stages::Command,
) -> Vec<String> {
    match c {
        regbuild_frontend::stages::Command::Exec(v) => v.clone(),
        regbuild_frontend::stages::Command::Shell(s) => {
            let mut v = config.shell();
            v.push(s.clone());
            v
        }
    }
}

/// A base's layers as a stage holds them: in its registry, never downloaded unless needed.
pub fn base_layers(b: &ResolvedBase) -> Vec<StageLayer> {
    b.layers
        .iter()
        .map(|d| StageLayer::Remote {
            descriptor: Box::new(d.clone()),
            registry: b.reference.registry.clone(),
            repository: b.reference.repository.clone(),
        })
        .collect()
}

/// `dir` resolved against `base` inside the image, cleaned (no `.`/`..`, never above `/`).
pub fn join_in_image(base: &str, dir: &str) -> String {
    if dir.starts_with('/') {
        regbuild_oci::config::clean_image_path(dir)
    } else {
        regbuild_oci::config::clean_image_path(&format!("{base}/{dir}"))
    }
}

/// A new layer: known from the cache, or to be packed (with the stage's other new layers,
/// see `crate::builder::pack`).
pub enum NewLayer {
    Pack(crate::builder::pack::PackJob),
    Cached(crate::builder::stage::CachedStageLayer),
    /// Already built (a RUN step's upper directory, packed as soon as the step ended).
    Built(Arc<BuiltLayer>),
    /// A RUN layer already in the layer store (so later steps can run on it) whose blob is
    /// still being packed on a thread of its own.
    Packing(Packing),
}

/// A layer being packed in the background: what later steps need is known (diff_id, key,
/// lower directory, entries); the blob is joined when the stage ends.
pub struct Packing {
    pub diff_id: regbuild_oci::digest::Digest,
    pub key: String,
    /// The store directory later steps mount as its lower.
    pub lower: std::path::PathBuf,
    /// Its entries (the paths later COPYs of the stage see).
    pub entries: Vec<LayerEntry>,
    pub(crate) handle: std::thread::JoinHandle<Result<Arc<BuiltLayer>, StepError>>,
}

impl Packing {
    /// Waits for the blob.
    pub fn join(self) -> Result<Arc<BuiltLayer>, StepError> {
        self.handle.join().unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the packing thread panicked".to_string());
            Err(StepError::PackingPanicked(message))
        })
    }
}

/// One layer a step makes (a COPY makes one, or several with `--layering=auto`).
pub struct StepLayer {
    pub layer: NewLayer,
    /// What the layer holds (kept for `--squash`).
    pub entries: Vec<LayerEntry>,
    /// The instruction, with `[part i/n]` when the COPY was split: its history entry.
    pub label: String,
}

/// What a step that makes layers returns: the seam where a step is carried out.
///
/// `orchestrate` hands each layer-making step (COPY/ADD via `copy::run`, WORKDIR's
/// directories) the stage's image and takes back this; an executor that runs a command
/// against the stage's root filesystem (RUN) returns the same, its upper directory packed as
/// one `StepLayer`, and the rest of the build (cache, pack, assemble, push) is unchanged.
pub struct StepOutput {
    pub layers: Vec<StepLayer>,
    pub stripped_setuid: Vec<String>,
    /// What the user should hear about (the caller adds `file:line`).
    pub warnings: Vec<String>,
}

/// What a step of a stage sees (COPY, ADD, WORKDIR, and RUN through `run::RunContext`): the
/// build's inputs, caches and stores, and `view`, the paths of the stage below the step.
pub struct StepContext<'a> {
    pub registry: &'a regbuild_registry::Registry,
    pub context: &'a std::path::Path,
    pub ignore: &'a regbuild_context::dockerignore::DockerIgnore,
    pub tmp: &'a std::path::Path,
    pub epoch: u64,
    pub keep_setuid: bool,
    pub compression: regbuild_fs::compress::Compression,
    pub layering: crate::builder::layering::Layering,
    pub cache: Option<&'a crate::builder::cache::LayerCache>,
    /// Layers found by key in the images named by `--cache-from` (or the tags pushed).
    pub remote: &'a std::collections::HashMap<String, crate::builder::remote_cache::RemoteLayer>,
    pub workdir: String,
    pub stages: &'a std::collections::HashMap<usize, StageImage>,
    pub bases: &'a crate::image::base::Bases,
    pub progress: &'a dyn regbuild_registry::progress::Progress,
    /// The instruction, as progress shows it.
    pub step_text: &'a str,
    /// A cached `COPY --from=<image>` layer may leave its entries unknown until needed.
    pub defer_entries: bool,
    /// The stage's paths below this step: its symlinks, directories and account files.
    pub view: &'a crate::builder::pathindex::View,
    /// The OCI architecture the stage is built for (ELF files of another one are warned of).
    pub architecture: &'a str,
}
