//! The stage model: a stage's image as the build makes it (config, layers, base), what a
//! step is given and what it gives back (the layer kinds are `layer`'s). Every step module (`copy`, `squash`,
//! `from_image`, …) reads and extends these; `orchestrate` drives them. Its own module so
//! that step modules and the orchestrator do not import each other.

use std::sync::Arc;

use crate::builder::error::StepError;
use crate::builder::layer::StageLayer;
use crate::image::base::ResolvedBase;
use regbuild_fs::layer::BuiltLayer;
use regbuild_fs::layer::LayerEntry;
use regbuild_oci::config::ImageConfig;

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
    Cached(crate::builder::layer::CachedStageLayer),
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
    /// What the registry knows: layers by key, path lists, cache mounts, recorded steps
    /// (from the images named by `--cache-from`, or the tags pushed, and their cache artifacts).
    pub remote: &'a crate::builder::remote_cache::RemoteCache,
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
