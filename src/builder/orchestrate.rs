//! Walking a Dockerfile's stages into an image: resolve bases (manifest and config only),
//! build the needed stages (each once the stages it reads are built, independent ones at
//! the same time: `schedule`), apply each step to the stage's config, build its layers,
//! and hand the target to `assemble`. Nothing is written to a registry here.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::builder::add_remote;
use crate::builder::assemble;
use crate::builder::copy;
use crate::builder::error::{BuildError, StepError};
use crate::builder::layer::StageLayer;
use crate::builder::pack::PackSinks;
use crate::builder::report::DryRunStop;
use crate::builder::schedule;
use crate::builder::stage::StepContext;
use crate::builder::stage::{join_in_image, StageImage};
use crate::builder::stage_layers::{Finished, StageLayers};
use crate::image::base::ResolvedBase;
use crate::image::planned;
use crate::lock::{LockFile, LockedImage};
use regbuild_context::dockerignore::DockerIgnore;
use regbuild_frontend::dockerfile;
use regbuild_frontend::stages::{self, Base, BuildArgs, CopyFrom, CopySpec, Stage, StepKind};
use regbuild_fs::layer::BuiltLayer;
use regbuild_oci::config::{rfc3339, ImageConfig};
use regbuild_oci::digest::Digest;
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::publish::ImageSet;
use regbuild_registry::Registry;

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub platform: Platform,
    /// `SOURCE_DATE_EPOCH`, or 0: every timestamp in layers and config.
    pub epoch: u64,
    /// Keep setuid/setgid bits on files this build writes (stripped by default).
    pub keep_setuid: bool,
    /// Base digests pinned by a lock file: used instead of what tags point at now.
    pub pins: Option<LockFile>,
    /// Use the local layer cache (`--no-cache` turns it off).
    pub use_cache: bool,
    /// How new layers are compressed (`--compression`).
    pub compression: regbuild_fs::compress::Compression,
    /// `--squash`: merge the new layers (or all layers) into one.
    pub squash: crate::builder::squash::Squash,
    /// `--layering`: one layer per COPY, or big COPYs split by path.
    pub layering: crate::builder::layering::Layering,
    /// Images whose annotated layers may be reused by key (`--cache-from`, and the tags
    /// pushed); off with `use_cache`.
    pub cache_from: Vec<ImageRef>,
    /// References replaced before resolution (a workspace image named in FROM → the
    /// digest just pushed for it).
    pub overrides: HashMap<String, ImageRef>,
    /// Images computed but not written (a workspace dry run): bases read from here, not from
    /// the registry, when their digest is one of these.
    pub planned: Arc<planned::PlannedImages>,
    /// What the build cache artifact beside the image holds (`--registry-cache`).
    pub registry_cache: crate::builder::remote_cache::Mode,
    /// RUN steps' network default and secrets (`--network`, `--secret`).
    pub run: crate::builder::run::RunOptions,
    /// Execute nothing: a RUN step no cache holds stops its stage (and the stages built
    /// from it), and the build ends with [`BuildError::WouldRun`].
    pub dry_run: bool,
}

/// A built image, ready to be planned and written. Holds the temporary files its new layers
/// live in until it is dropped.
pub struct BuiltImage {
    pub set: ImageSet,
    /// The image manifest's digest: known before anything is pushed.
    pub digest: Digest,
    pub config: ImageConfig,
    pub base: Option<ResolvedBase>,
    /// Paths whose setuid/setgid bits were removed.
    pub stripped_setuid: Vec<String>,
    /// Warnings for the user, each naming `file:line` (foreign ELF binaries).
    pub warnings: Vec<String>,
    /// Every base image used, as lock entries (tag → digest); digest-pinned references in the
    /// Dockerfile are not listed.
    pub locked: Vec<LockedImage>,
    /// Every image the Dockerfile names (FROM, `COPY --from`, mounts), as written and the
    /// digest it resolved to: what the provenance lists as resolved dependencies.
    pub images_read: Vec<(String, Digest)>,
    /// Layers this build made (digest, size, created_by), in order.
    pub new_layers: Vec<(Digest, u64, String)>,
    /// What each RUN step did (executed or cached), in build order.
    pub run_steps: Vec<crate::builder::report::RunReport>,
    _layers: Vec<Arc<BuiltLayer>>,
    _tmp: crate::builder::scratch::ScratchDir,
}

impl BuiltImage {
    /// The build's scratch directory (files the push reads from live here).
    pub fn scratch(&self) -> &Path {
        self._tmp.path()
    }
}

/// Builds the image described by `req`.
pub async fn build(
    registry: &Registry,
    req: &BuildRequest,
    progress: &dyn regbuild_registry::progress::Progress,
    early: Option<&regbuild_registry::publish::EarlyUploads>,
) -> Result<BuiltImage, BuildError> {
    let (df, args, first, images) = referenced(req)?;
    let file = req.dockerfile.display().to_string();
    let (bases, locked) = resolve_bases(registry, req, &first, images, &file).await?;
    let plan = stages::evaluate(&df, &args, &mut |r: &str| {
        crate::image::base::named(&bases, r)
            .map(|b| {
                ImageConfig::from_base(&b.config)
                    .map(|c| c.env())
                    .unwrap_or_default()
            })
            .ok_or_else(|| {
                stages::BaseEnvError::from(StepError::BaseNotResolved(r.to_string()).to_string())
            })
    })?;

    let tmp = crate::builder::scratch::build_tmp().map_err(|source| BuildError::TempDir {
        path: std::env::temp_dir().display().to_string(),
        source,
    })?;
    let ignore = load_dockerignore(&req.context)?;
    let needed = schedule::needed_stages(&plan);
    if let Some((line, e)) =
        crate::builder::preflight::missing_sources(&plan, &needed, &req.context)
    {
        return Err(at_line(&file, line, e.into()));
    }
    let cache = if req.use_cache {
        crate::builder::cache::LayerCache::open()
    } else {
        None
    };
    let remote = if req.use_cache {
        crate::builder::remote_cache::read(registry, &req.cache_from, &req.platform).await
    } else {
        crate::builder::remote_cache::RemoteCache::default()
    };
    let indexer = crate::builder::pathindex::Indexer::new(
        registry,
        &remote.paths,
        cache.as_ref().map(|c| c.root()),
        tmp.path(),
    );
    let created = rfc3339(req.epoch);
    let run_env = RunEnv::new(&plan, &needed, tmp.path(), &file)?;
    let inputs = StageInputs {
        registry,
        req,
        progress,
        early,
        plan: &plan,
        file: &file,
        bases: &bases,
        tmp: tmp.path(),
        ignore: &ignore,
        cache: cache.as_ref(),
        remote: &remote,
        indexer: &indexer,
        created: &created,
        // Only layers the pushed image will hold go to the registry early: those of the
        // target stage and the stages it is built FROM, and none when squashing replaces
        // them.
        pushed_stages: schedule::final_chain(&plan),
        run_env: &run_env,
    };
    let outputs = build_stages(&inputs, &needed).await?;
    if outputs.values().any(|o| o.stopped) {
        return Err(BuildError::WouldRun(dry_run_stop(
            &file, &plan, &needed, &outputs,
        )));
    }
    let mut merged = Merged::of(outputs, plan.target, &file)?;
    merged.export = cache_export(
        req,
        &plan,
        &indexer,
        &remote,
        &mut merged,
        &run_env,
        tmp.path(),
    );
    finish_image(registry, req, &bases, merged, tmp, &created, locked).await
}

/// What the build cache artifact records (`cache_artifact`), None with
/// `--registry-cache off`: the RUN steps' key inputs, the path lists the build looked at
/// and (with `--cache-mounts registry`) the cache mounts it used; with `min` (the default)
/// only what concerns the layers the pushed image holds, with `max` every stage's layers and
/// their path lists too (builder stages may hold what their authors kept out of the image).
fn cache_export(
    req: &BuildRequest,
    plan: &stages::Build,
    indexer: &crate::builder::pathindex::Indexer<'_>,
    remote: &crate::builder::remote_cache::RemoteCache,
    merged: &mut Merged,
    run_env: &RunEnv,
    tmp: &Path,
) -> Option<crate::builder::cache_artifact::CacheExport> {
    use crate::builder::cache_artifact::{digest_and_key, CacheExport};
    use crate::builder::remote_cache::Mode;
    let max = match req.registry_cache {
        Mode::Off => return None,
        Mode::Min => false,
        Mode::Max => true,
    };
    let squashed = req.squash != crate::builder::squash::Squash::None;
    // The layers the artifact may speak of: every stage's (max), else the pushed image's.
    let shown: Vec<StageLayer> = if max {
        merged.stage_layers.clone()
    } else {
        let kept = |l: &&StageLayer| !squashed || matches!(l, StageLayer::Remote { .. });
        merged.image.layers.iter().filter(kept).cloned().collect()
    };
    let shown_keys: std::collections::HashSet<String> =
        shown.iter().filter_map(|l| digest_and_key(l).1).collect();
    let steps: Vec<_> = merged
        .run_steps
        .iter()
        .filter_map(|r| r.recorded.clone())
        .filter(|s| max || shown_keys.contains(&s.key))
        .collect();
    // The path lists a fresh runner would otherwise download a layer for: the bases' layers
    // and the RUN steps'. A COPY's layer found by key is listed from the entries its key
    // was made of, at no cost.
    let run_keys: std::collections::HashSet<&str> = steps.iter().map(|s| s.key.as_str()).collect();
    let listed: Vec<_> = shown
        .iter()
        .map(digest_and_key)
        .filter(|(_, key)| key.as_deref().is_none_or(|k| run_keys.contains(k)))
        .collect();
    // Cache mounts too: with `min`, only those of the stages the image is built from (a
    // builder's module or build cache holds what the image leaves out).
    let chain = schedule::final_chain(plan);
    let ids = cache_ids(plan, (!max).then_some(&chain));
    let used = merged
        .run_steps
        .iter()
        .flat_map(|r| r.cache_mounts.iter().cloned())
        .filter(|(id, _)| ids.contains(id))
        .collect();
    let mounts = crate::builder::remote_cache::mounts::export(
        remote,
        &used,
        &ids,
        &req.platform.to_string(),
        &run_env.cache_root.join("run-cache"),
        req.run.cache_mounts,
        tmp,
        &mut merged.warnings,
    );
    Some(CacheExport {
        layers: if max { shown } else { Vec::new() },
        paths: indexer.looked_at(&listed),
        steps,
        mounts,
    })
}

/// Every cache mount id the RUN steps of the Dockerfile (of `only` these stages) name.
fn cache_ids(
    plan: &stages::Build,
    only: Option<&std::collections::HashSet<usize>>,
) -> std::collections::BTreeSet<String> {
    plan.stages
        .iter()
        .enumerate()
        .filter(|(i, _)| only.is_none_or(|o| o.contains(i)))
        .flat_map(|(_, s)| s.steps.iter())
        .filter_map(|step| match &step.kind {
            StepKind::Run(spec) => Some(spec.mounts.iter()),
            _ => None,
        })
        .flatten()
        .filter_map(|m| match m {
            stages::RunMount::Cache { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// Every image the Dockerfile names, resolved to a manifest and config (pins of the lock
/// file and overrides applied), and the ones a lock file should pin.
async fn resolve_bases(
    registry: &Registry,
    req: &BuildRequest,
    first: &stages::Build,
    images: Vec<(String, Option<String>)>,
    file: &str,
) -> Result<(crate::image::base::Bases, Vec<LockedImage>), BuildError> {
    let mut bases = crate::image::base::Bases::new();
    let mut locked: Vec<LockedImage> = Vec::new();
    for (r, platform) in images {
        if bases.contains_key(&(r.clone(), platform.clone())) {
            continue;
        }
        let at = |e: StepError| at_line(file, line_of_image(first, &r), e);
        let written: ImageRef = match req.overrides.get(&r) {
            Some(o) => o.clone(),
            None => r
                .parse()
                .map_err(|e: regbuild_oci::reference::ReferenceError| at(e.into()))?,
        };
        let plat = match &platform {
            Some(p) => Platform::parse(p).map_err(|e| at(e.into()))?,
            None => req.platform.clone(),
        };
        // A digest in the Dockerfile always wins; else the lock file's pin; else the tag.
        let pinned = match (&written.digest, &req.pins) {
            (None, Some(lock)) => lock.get(&written.to_string()).map(|e| e.digest.clone()),
            _ => None,
        };
        let target = match &pinned {
            Some(d) => written.with_digest(d),
            None => written.clone(),
        };
        let mut resolved = planned::resolve(registry, &req.planned, &target, &plat)
            .await
            .map_err(|e| at(e.into()))?;
        let overridden = req.overrides.contains_key(&r);
        // Annotations name the base by its tag; the digest is recorded beside it.
        resolved.reference = match (&written.tag, overridden) {
            (Some(t), true) => written.with_tag(t),
            _ => written.clone(),
        };
        if written.digest.is_none() && !overridden {
            locked.push(LockedImage {
                reference: written.to_string(),
                digest: resolved.digest.clone(),
                media_type: resolved.media_type.clone(),
                platforms: resolved.platforms.iter().cloned().collect(),
            });
        }
        bases.insert((r, platform), resolved);
    }
    Ok((bases, locked))
}

/// The stages' results merged in stage order, not in the order stages finished: reports,
/// `--json` steps, the new layers and the image are the same however the stages overlapped.
struct Merged {
    image: StageImage,
    all_layers: Vec<Arc<BuiltLayer>>,
    stripped: Vec<String>,
    warnings: Vec<String>,
    new_layers: Vec<(Digest, u64, String)>,
    layer_entries: HashMap<String, Vec<regbuild_fs::layer::LayerEntry>>,
    run_steps: Vec<crate::builder::report::RunReport>,
    /// Every stage's layers (the target's before a squash), for the build cache artifact.
    stage_layers: Vec<StageLayer>,
    /// What the build cache artifact records (None with `--registry-cache off`).
    export: Option<crate::builder::cache_artifact::CacheExport>,
}

impl Merged {
    fn of(
        outputs: BTreeMap<usize, StageOutput>,
        target: usize,
        file: &str,
    ) -> Result<Merged, BuildError> {
        let mut records = StageRecords::default();
        let mut image = None;
        let mut stage_layers = Vec::new();
        for (i, output) in outputs {
            stage_layers.extend(output.image.layers.iter().cloned());
            let out = output.records;
            records.layers.extend(out.layers);
            records.stripped.extend(out.stripped);
            records.warnings.extend(out.warnings);
            records.new_layers.extend(out.new_layers);
            records.layer_entries.extend(out.layer_entries);
            records.run_steps.extend(out.run_steps);
            if i == target {
                image = Some(output.image);
            }
        }
        let image = image.ok_or_else(|| BuildError::TargetNotBuilt {
            path: file.to_string(),
        })?;
        Ok(Merged {
            image,
            all_layers: records.layers,
            stripped: records.stripped,
            warnings: records.warnings,
            new_layers: records.new_layers,
            layer_entries: records.layer_entries,
            run_steps: records.run_steps,
            stage_layers,
            export: None,
        })
    }
}

/// The target stage squashed as asked, then assembled into the blobs and manifest to push.
async fn finish_image(
    registry: &Registry,
    req: &BuildRequest,
    bases: &crate::image::base::Bases,
    merged: Merged,
    tmp: crate::builder::scratch::ScratchDir,
    created: &str,
    locked: Vec<LockedImage>,
) -> Result<BuiltImage, BuildError> {
    let Merged {
        image: mut final_image,
        mut all_layers,
        export,
        ..
    } = merged;
    let file = req.dockerfile.display().to_string();
    crate::builder::squash::squash(
        registry,
        &mut final_image,
        req.squash,
        &merged.layer_entries,
        tmp.path(),
        req.epoch,
        req.compression,
        created,
    )
    .await
    .map_err(|e| BuildError::Squash {
        path: file,
        source: Box::new(e),
    })?;
    // A squashed layer is new: keep its file alive with the others.
    for l in &final_image.layers {
        if let StageLayer::Local(b) = l {
            if !all_layers.iter().any(|x| Arc::ptr_eq(x, b)) {
                all_layers.push(b.clone());
            }
        }
    }
    let sources = assemble::sources(bases.values(), final_image.base.as_ref());
    let assembled =
        assemble::assemble(&final_image, &sources, created, tmp.path()).map_err(|e| {
            BuildError::Assemble {
                path: tmp.path().display().to_string(),
                source: Box::new(e),
            }
        })?;
    let mut set = assembled.set;
    if let Some(export) = export {
        crate::builder::cache_artifact::add_artifact(&mut set, export, tmp.path()).map_err(
            |source| BuildError::TempDir {
                path: tmp.path().display().to_string(),
                source,
            },
        )?;
    }
    Ok(BuiltImage {
        set,
        digest: assembled.digest,
        config: assembled.config,
        base: final_image.base,
        stripped_setuid: merged.stripped,
        warnings: merged.warnings,
        locked,
        images_read: {
            let mut read: Vec<(String, Digest)> = bases
                .values()
                .map(|b| (b.reference.to_string(), b.digest.clone()))
                .collect();
            read.sort();
            read.dedup();
            read
        },
        new_layers: merged.new_layers,
        run_steps: merged.run_steps,
        _layers: all_layers,
        _tmp: tmp,
    })
}

/// What every stage's build reads: the request, the bases, the build-wide stores.
struct StageInputs<'a> {
    registry: &'a Registry,
    req: &'a BuildRequest,
    progress: &'a dyn regbuild_registry::progress::Progress,
    early: Option<&'a regbuild_registry::publish::EarlyUploads>,
    plan: &'a stages::Build,
    file: &'a str,
    bases: &'a crate::image::base::Bases,
    tmp: &'a Path,
    ignore: &'a DockerIgnore,
    cache: Option<&'a crate::builder::cache::LayerCache>,
    remote: &'a crate::builder::remote_cache::RemoteCache,
    indexer: &'a crate::builder::pathindex::Indexer<'a>,
    created: &'a str,
    pushed_stages: std::collections::HashSet<usize>,
    run_env: &'a RunEnv,
}

/// What building one stage made, handed back rather than pushed into shared state.
struct StageOutput {
    image: StageImage,
    records: StageRecords,
    /// A dry run stopped at a RUN step no cache holds (the last of `records.run_steps`).
    stopped: bool,
}

/// A stage's contributions to the build's reports and kept files, in step order.
#[derive(Default)]
struct StageRecords {
    /// New layer files to keep alive until the push is done.
    layers: Vec<Arc<BuiltLayer>>,
    stripped: Vec<String>,
    warnings: Vec<String>,
    new_layers: Vec<(Digest, u64, String)>,
    layer_entries: HashMap<String, Vec<regbuild_fs::layer::LayerEntry>>,
    run_steps: Vec<crate::builder::report::RunReport>,
}

/// Where a dry run stopped (see [`DryRunStop`]).
fn dry_run_stop(
    file: &str,
    plan: &stages::Build,
    needed: &[usize],
    outputs: &BTreeMap<usize, StageOutput>,
) -> DryRunStop {
    let name = |i: usize| {
        plan.stages[i]
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{i}"))
    };
    DryRunStop {
        file: file.to_string(),
        steps: outputs
            .values()
            .flat_map(|o| o.records.run_steps.iter().cloned())
            .collect(),
        not_planned: needed
            .iter()
            .filter(|i| !outputs.contains_key(i))
            .map(|i| name(*i))
            .collect(),
    }
}
/// Builds the `needed` stages, each as soon as the stages it reads are built, so independent
/// stages overlap. They are futures of this task, not spawned tasks (they borrow the
/// build's state): they overlap wherever one awaits — a RUN command (which runs on its own
/// thread), a download, an unpack. No bound beyond the number of stages; the registry
/// bounds transfers (`--jobs`). The first failure ends the build: dropping the others
/// kills their running steps and removes their scratch.
async fn build_stages(
    inputs: &StageInputs<'_>,
    needed: &[usize],
) -> Result<BTreeMap<usize, StageOutput>, BuildError> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut schedule = schedule::Schedule::new(inputs.plan, needed);
    let mut built: HashMap<usize, StageImage> = HashMap::new();
    let mut outputs = BTreeMap::new();
    let mut running = FuturesUnordered::new();
    loop {
        for i in schedule.take_ready(running.len()) {
            // The stages built so far, as this stage's COPY --from, FROM and mounts see them.
            let done = built.clone();
            running.push(async move { (i, build_stage(inputs, i, done).await) });
        }
        let Some((i, result)) = running.next().await else {
            break;
        };
        let out = result?;
        if out.stopped {
            // Its image is not known: the stages built from it cannot be planned.
            schedule.stopped(i);
        } else {
            built.insert(i, out.image.clone());
            schedule.finished(i);
        }
        outputs.insert(i, out);
    }
    Ok(outputs)
}

/// Builds stage `i` on the stages built before it (`built`).
async fn build_stage(
    inputs: &StageInputs<'_>,
    i: usize,
    built: HashMap<usize, StageImage>,
) -> Result<StageOutput, BuildError> {
    let StageInputs {
        req,
        plan,
        file,
        bases,
        created,
        ..
    } = *inputs;
    let stage = &plan.stages[i];
    let mut image = start_stage(stage, &built, bases, &req.platform, file)?;
    let mut out = StageRecords::default();
    let mut layers = StageLayers::default();
    let sinks = stage_sinks(inputs, i);
    let place = StagePlace::of(stage, i, &req.platform);
    for (step_no, step) in stage.steps.iter().enumerate() {
        let at = |e: StepError| at_line(file, step.line, e);
        let view = step_view(inputs, &mut image, &layers, &step.kind)
            .await
            .map_err(at)?;
        let ctx = place.copy_context(inputs, &image, &built, &step.text, &view);
        let step_out = match &step.kind {
            StepKind::Copy(spec) if add_remote::wanted(spec) => {
                Some(add_remote::run(&ctx, spec).await.map_err(at)?)
            }
            StepKind::Copy(spec) => Some(copy::run(&ctx, spec).await.map_err(at)?),
            StepKind::Run(spec) => {
                let run = RunStep {
                    place: &place,
                    step_no,
                    step,
                    sinks: &sinks,
                };
                match run_step(inputs, &ctx, &run, spec, &mut image, &mut layers, &mut out).await? {
                    Some(o) => Some(o),
                    None => {
                        return Ok(StageOutput {
                            image,
                            records: out,
                            stopped: true,
                        })
                    }
                }
            }
            StepKind::Workdir(_) => {
                workdir_step(&ctx, &mut image, &view, created, step).map_err(at)?
            }
            other => {
                apply_config_step(&mut image.config, other);
                image.config.push_history(created, &step.text, true);
                None
            }
        };
        if let Some(step_out) = step_out {
            out.stripped
                .extend(step_out.stripped_setuid.iter().cloned());
            let warnings = step_out.warnings.iter();
            out.warnings
                .extend(warnings.map(|w| format!("{file}:{}: {w}", step.line)));
            layers.push(&mut image, step.line, step_out, created, &mut out.layers);
        }
    }
    let joined = layers.finish(
        &mut image,
        &sinks,
        file,
        &mut Finished {
            all_layers: &mut out.layers,
            new_layers: &mut out.new_layers,
            layer_entries: &mut out.layer_entries,
        },
    )?;
    // Layers packed in the background: their RUN reports get the digest now.
    for report in &mut out.run_steps {
        if let Some((_, digest)) = joined.iter().find(|(line, _)| *line == report.line) {
            if report.layer.is_empty() {
                report.layer = digest.to_string();
            }
        }
    }
    Ok(StageOutput {
        image,
        records: out,
        stopped: false,
    })
}

fn at_line(file: &str, line: usize, e: StepError) -> BuildError {
    BuildError::At {
        file: file.to_string(),
        line,
        source: Box::new(e),
    }
}

/// Where a stage's new layers go once packed: the cache, the progress, and (for the stages
/// the pushed image holds, unless squashing replaces them) the registry at once.
fn stage_sinks<'a>(inputs: &StageInputs<'a>, i: usize) -> PackSinks<'a> {
    let squash = inputs.req.squash;
    PackSinks {
        tmp: inputs.tmp,
        cache: inputs.cache,
        progress: inputs.progress,
        early: inputs.early.filter(|_| {
            inputs.pushed_stages.contains(&i) && squash == crate::builder::squash::Squash::None
        }),
    }
}

/// What every step of one stage shares: its name, platform and number of steps.
struct StagePlace {
    name: String,
    /// The platform the stage is built for (`FROM --platform` builds a builder stage for
    /// another one).
    platform: Platform,
    steps: usize,
}

impl StagePlace {
    fn of(stage: &Stage, i: usize, build: &Platform) -> StagePlace {
        StagePlace {
            name: stage.name.clone().unwrap_or_else(|| format!("stage-{i}")),
            platform: stage
                .platform
                .as_deref()
                .and_then(|p| Platform::parse(p).ok())
                .unwrap_or_else(|| build.clone()),
            steps: stage.steps.len(),
        }
    }

    /// What a step of the stage sees (COPY's, WORKDIR's and RUN's context).
    fn copy_context<'a>(
        &'a self,
        inputs: &StageInputs<'a>,
        image: &StageImage,
        built: &'a HashMap<usize, StageImage>,
        step_text: &'a str,
        view: &'a crate::builder::pathindex::View,
    ) -> StepContext<'a> {
        let req = inputs.req;
        StepContext {
            registry: inputs.registry,
            context: &req.context,
            ignore: inputs.ignore,
            tmp: inputs.tmp,
            epoch: req.epoch,
            keep_setuid: req.keep_setuid,
            compression: req.compression,
            layering: req.layering,
            cache: inputs.cache,
            remote: inputs.remote,
            workdir: image.config.workdir(),
            stages: built,
            bases: inputs.bases,
            progress: inputs.progress,
            step_text,
            // --squash merges entries it must know now.
            defer_entries: req.squash == crate::builder::squash::Squash::None,
            view,
            architecture: &self.platform.architecture,
        }
    }
}

/// The paths a COPY or WORKDIR sees (an empty view for other steps). The base's paths are
/// listed from the first step whose result can depend on them on, for the rest of the
/// stage and the stages built FROM it: what a step sees depends on the Dockerfile and the
/// layers, never on what a cache holds.
async fn step_view(
    inputs: &StageInputs<'_>,
    image: &mut StageImage,
    layers: &StageLayers,
    kind: &StepKind,
) -> Result<crate::builder::pathindex::View, StepError> {
    let context_dir = |s: &str| is_context_dir(&inputs.req.context, s);
    if needs_base_paths(kind, &image.config.workdir(), &context_dir) {
        image.base_listed = true;
    }
    if !matches!(kind, StepKind::Copy(_) | StepKind::Workdir(_)) {
        return Ok(crate::builder::pathindex::View::default());
    }
    Ok(stage_view(inputs.indexer, image, layers).await?)
}

/// A RUN step's place in its stage.
struct RunStep<'a> {
    place: &'a StagePlace,
    step_no: usize,
    step: &'a stages::Step,
    sinks: &'a PackSinks<'a>,
}

/// One RUN step: found in a cache, or run on the stage's layers (its pending COPY layers
/// packed first). None: a dry run stops here (the step is reported as `would run`).
async fn run_step(
    inputs: &StageInputs<'_>,
    ctx: &StepContext<'_>,
    run: &RunStep<'_>,
    spec: &stages::RunSpec,
    image: &mut StageImage,
    layers: &mut StageLayers,
    out: &mut StageRecords,
) -> Result<Option<crate::builder::stage::StepOutput>, BuildError> {
    let (req, file, line) = (inputs.req, inputs.file, run.step.line);
    let at = |e: StepError| at_line(file, line, e);
    if req.squash == crate::builder::squash::Squash::New {
        return Err(at(StepError::SquashNewWithRun));
    }
    let (store, flat_store, scratch, cache_root) = inputs.run_env.parts().map_err(at)?;
    let place = run.place;
    let rctx = crate::builder::run::RunContext {
        copy: ctx,
        options: &req.run,
        store,
        flat_store,
        scratch,
        cache_root,
        platform: &place.platform,
        label: format!("[{} {}/{}]", place.name, run.step_no + 1, place.steps),
        stage: place.name.clone(),
        step_no: run.step_no,
        early: run.sinks.early,
    };
    let planned =
        crate::builder::run::plan(&rctx, spec, image, layers.identities(image)).map_err(at)?;
    let (step_out, report) = if planned.is_hit() {
        crate::builder::run::cached(&rctx, line, planned).map_err(at)?
    } else if req.dry_run {
        out.run_steps
            .push(crate::builder::run::would_run(&rctx, line, planned));
        return Ok(None);
    } else {
        // The command needs the stage's files: its pending layers now.
        layers.pack_pending(image, run.sinks, file, &mut out.layers)?;
        let lowers = layers.lowers(image).map_err(at)?;
        let diff_ids = image.config.diff_ids();
        crate::builder::run::execute(&rctx, spec, line, planned, &lowers, &diff_ids)
            .await
            .map_err(at)?
    };
    out.run_steps.push(report);
    Ok(Some(step_out))
}

/// WORKDIR: the config, and a layer with the directories that do not exist yet.
fn workdir_step(
    ctx: &StepContext<'_>,
    image: &mut StageImage,
    view: &crate::builder::pathindex::View,
    created: &str,
    step: &stages::Step,
) -> Result<Option<crate::builder::stage::StepOutput>, StepError> {
    apply_config_step(&mut image.config, &step.kind);
    let dirs = workdir_dirs(view, &image.config)?;
    if dirs.is_empty() {
        image.config.push_history(created, &step.text, true);
        return Ok(None);
    }
    let ctx = StepContext {
        workdir: image.config.workdir(),
        ..*ctx
    };
    Ok(Some(copy::layers_of(&ctx, dirs, Vec::new(), None)?))
}

/// Directories bases commonly replace by a symlink (merged-usr, `/var/run -> /run`).
const LINKED_DIRS: &[&str] = &[
    "bin", "sbin", "lib", "lib32", "lib64", "libx32", "var/run", "var/lock",
];

/// Whether a step's result can depend on the paths of the base's layers (each layer not
/// listed before is downloaded once): a COPY into `/` or under a directory bases commonly
/// link elsewhere, a `--chown` by name, a destination without a trailing `/` that may be an
/// existing directory (a file copied there goes into it, as Docker copies), and every
/// WORKDIR (it creates only what is missing). Any other COPY sees only the layers this
/// build made and reads no base layer: "stages that execute nothing never download their
/// base" stays true for them.
fn needs_base_paths(kind: &StepKind, workdir: &str, is_context_dir: &dyn Fn(&str) -> bool) -> bool {
    match kind {
        StepKind::Workdir(_) => true,
        StepKind::Copy(spec) => {
            let by_name = spec.chown.as_deref().is_some_and(|c| {
                c.split(':')
                    .any(|p| !p.is_empty() && p.parse::<u64>().is_err())
            });
            let dest = join_in_image(workdir, &spec.dest);
            let dest = dest.trim_start_matches('/');
            let linked = LINKED_DIRS
                .iter()
                .any(|d| dest == *d || dest.starts_with(&format!("{d}/")));
            by_name || dest.is_empty() || linked || may_be_existing_dir(spec, is_context_dir)
        }
        _ => false,
    }
}

/// Whether a COPY's destination, written without a trailing `/`, decides where its sources
/// go: when one may be a file (a directory's content goes into the destination either way).
fn may_be_existing_dir(spec: &CopySpec, is_context_dir: &dyn Fn(&str) -> bool) -> bool {
    let d = spec.dest.as_str();
    let written_as_dir = d.ends_with('/') || d == "." || d.ends_with("/.");
    let all_context_dirs = spec.from.is_none()
        && spec.heredocs.is_empty()
        && !spec.closure
        && spec.sources.iter().all(|s| is_context_dir(s));
    !written_as_dir && !spec.closure && !all_context_dirs
}

/// A COPY source that is a directory of the context, as written (no wildcard).
fn is_context_dir(context: &Path, source: &str) -> bool {
    !source.contains(['*', '?', '['])
        && !source.split('/').any(|c| c == "..")
        && context.join(source.trim_start_matches('/')).is_dir()
}

/// The stage's filesystem so far as paths: the layers this build made (its stages' and the
/// new ones still to pack), and the base's once a step of the stage's chain needed them.
async fn stage_view(
    indexer: &crate::builder::pathindex::Indexer<'_>,
    image: &StageImage,
    layers: &StageLayers,
) -> Result<crate::builder::pathindex::View, crate::builder::error::IndexError> {
    use crate::builder::pathindex::Source;
    let sources: Vec<Source<'_>> = image
        .layers
        .iter()
        .filter(|l| image.base_listed || !matches!(l, StageLayer::Remote { .. }))
        .map(Source::Layer)
        .chain(layers.view_sources())
        .collect();
    indexer.view(&sources).await
}

/// WORKDIR's directory, as BuildKit makes it: the components that do not exist yet, owned
/// by the current USER (names resolved in the stage's /etc/passwd and /etc/group).
fn workdir_dirs(
    lower: &crate::builder::pathindex::View,
    config: &ImageConfig,
) -> Result<Vec<regbuild_fs::layer::LayerEntry>, StepError> {
    let missing = lower.missing_dirs(&config.workdir());
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let (uid, gid) = match config.user().filter(|u| !u.is_empty()) {
        Some(user) => {
            crate::builder::owner::resolve(&user, &lower.accounts()).map_err(|source| {
                StepError::WorkdirOwner {
                    user: user.clone(),
                    source,
                }
            })?
        }
        None => (0, 0),
    };
    Ok(missing
        .into_iter()
        .map(|path| regbuild_fs::layer::LayerEntry {
            path: path.into(),
            kind: regbuild_fs::layer::EntryKind::Dir,
            mode: 0o755,
            uid,
            gid,
            xattrs: Default::default(),
        })
        .collect())
}

/// Where RUN steps keep unpacked layers and make their scratch directories: regbuild's
/// cache directory (so later builds reuse them), else the build's temporary directory.
/// Opened only when a stage the target needs has a RUN step.
struct RunEnv {
    store: Option<regbuild_rootfs::lower::LowerStore>,
    /// Rootless with `--snapshotter native`: layers unpacked by the user itself (every file
    /// the user's), which a plain root can be copied from; `store` keeps owners (files of
    /// subordinate ids the user cannot read). None when one store serves both (root).
    flat: Option<regbuild_rootfs::lower::LowerStore>,
    scratch: PathBuf,
    cache_root: PathBuf,
}

impl RunEnv {
    fn new(
        plan: &stages::Build,
        needed: &[usize],
        tmp: &Path,
        file: &str,
    ) -> Result<RunEnv, BuildError> {
        let has_run = needed.iter().any(|&i| {
            plan.stages[i]
                .steps
                .iter()
                .any(|s| matches!(s.kind, StepKind::Run(_)))
        });
        let cache_root = crate::builder::cache::root()
            .filter(|r| std::fs::create_dir_all(r).is_ok())
            .unwrap_or_else(|| tmp.to_path_buf());
        let scratch = cache_root.join("run-tmp");
        if !has_run {
            return Ok(RunEnv {
                store: None,
                flat: None,
                scratch,
                cache_root,
            });
        }
        let io = |source| BuildError::TempDir {
            path: scratch.display().to_string(),
            source,
        };
        regbuild_rootfs::scratch::create_dir_all_with_mode(&scratch, 0o700).map_err(io)?;
        crate::builder::scratch::sweep_steps(&scratch);
        let open = |dir: &str| {
            regbuild_rootfs::lower::LowerStore::open(
                &cache_root.join(dir),
                crate::builder::run::overlay_xattrs(),
            )
            .map_err(|e| BuildError::At {
                file: file.to_string(),
                line: 0,
                source: Box::new(crate::builder::run::error::RunError::from(e).into()),
            })
        };
        let store = open("lowers")?;
        let flat = if crate::builder::run::userns_unpack::needed() {
            Some(open("lowers-flat")?)
        } else {
            None
        };
        for s in std::iter::once(&store).chain(&flat) {
            crate::builder::scratch::sweep_paths(s.abandoned_unpacks());
        }
        Ok(RunEnv {
            store: Some(store),
            flat,
            scratch,
            cache_root,
        })
    }

    /// The store, the flat store, the scratch directory and the cache directory.
    fn parts(&self) -> Result<RunParts<'_>, StepError> {
        let store = self.store.as_ref().ok_or(StepError::NoRunStore)?;
        let flat = self.flat.as_ref().unwrap_or(store);
        Ok((store, flat, &self.scratch, &self.cache_root))
    }
}

type RunParts<'a> = (
    &'a regbuild_rootfs::lower::LowerStore,
    &'a regbuild_rootfs::lower::LowerStore,
    &'a Path,
    &'a Path,
);

/// A base or `COPY --from` image the build needs: the reference as written (variables
/// expanded) and the `FROM --platform` it is wanted for.
pub type ImageUse = (String, Option<String>);

/// Parses and evaluates the Dockerfile far enough to list the images it needs.
#[allow(clippy::type_complexity)]
fn referenced(
    req: &BuildRequest,
) -> Result<
    (
        dockerfile::Dockerfile,
        BuildArgs,
        stages::Build,
        Vec<ImageUse>,
    ),
    BuildError,
> {
    let text =
        std::fs::read_to_string(&req.dockerfile).map_err(|source| BuildError::ReadDockerfile {
            path: req.dockerfile.display().to_string(),
            source,
        })?;
    let df = dockerfile::parse(&text, &req.dockerfile)?;
    if let Some(syntax) = &df.syntax {
        tracing::info!(
            file = %req.dockerfile.display(),
            "# syntax={syntax} is accepted and not followed: regbuild is its own Dockerfile frontend"
        );
    }
    let args = BuildArgs {
        values: req.build_args.clone(),
        target: req.target.clone(),
        platform: req.platform.clone(),
        build_platform: Platform::linux_amd64(),
    };
    // The bases' env feeds variable expansion later; here it is not needed yet.
    let first = stages::evaluate(&df, &args, &mut |_: &str| Ok(Vec::new()))?;
    let mut images: Vec<ImageUse> = Vec::new();
    for i in schedule::needed_stages(&first) {
        let stage = &first.stages[i];
        if let Base::Image(r) = &stage.base {
            images.push((r.clone(), stage.platform.clone()));
        }
        for step in &stage.steps {
            for from in schedule::step_sources(&step.kind) {
                match from {
                    CopyFrom::Image(r) if r != "scratch" => images.push((r.clone(), None)),
                    _ => {}
                }
            }
        }
    }
    images.dedup();
    Ok((df, args, first, images))
}

/// The images (bases and `COPY --from` images) the build of `req` needs, with the line
/// that names each, for `regbuild lock` and workspaces.
pub fn referenced_images(req: &BuildRequest) -> Result<Vec<(String, usize)>, BuildError> {
    let (_, _, first, images) = referenced(req)?;
    let mut out: Vec<(String, usize)> = Vec::new();
    for (r, _) in images {
        if !out.iter().any(|(x, _)| *x == r) {
            let line = line_of_image(&first, &r);
            out.push((r, line));
        }
    }
    Ok(out)
}

fn line_of_image(b: &stages::Build, r: &str) -> usize {
    for s in &b.stages {
        if matches!(&s.base, Base::Image(x) if x == r) {
            return s.line;
        }
        for step in &s.steps {
            if schedule::step_sources(&step.kind)
                .iter()
                .any(|f| matches!(f, CopyFrom::Image(x) if x == r))
            {
                return step.line;
            }
        }
    }
    0
}

fn start_stage(
    stage: &Stage,
    built: &HashMap<usize, StageImage>,
    bases: &HashMap<(String, Option<String>), ResolvedBase>,
    platform: &Platform,
    file: &str,
) -> Result<StageImage, BuildError> {
    let missing = |e: StepError| BuildError::At {
        file: file.to_string(),
        line: stage.line,
        source: Box::new(e),
    };
    match &stage.base {
        Base::Scratch => {
            let mut config = ImageConfig::scratch(
                &platform.os,
                &platform.architecture,
                platform.variant.as_deref(),
            );
            // As BuildKit does: a Linux image without PATH gets the default one.
            config.set_env("PATH", stages::DEFAULT_PATH);
            Ok(StageImage {
                config,
                layers: Vec::new(),
                base: None,
                base_listed: false,
            })
        }
        Base::Stage(j) => {
            let mut image = built
                .get(j)
                .cloned()
                .ok_or_else(|| missing(StepError::BaseStageNotBuilt(*j)))?;
            // The parent's ONBUILD triggers ran as this stage's first steps (stages.rs).
            image.config.take_onbuild();
            Ok(image)
        }
        Base::Image(r) => {
            let b = bases
                .get(&(r.clone(), stage.platform.clone()))
                .ok_or_else(|| missing(StepError::BaseNotResolved(r.clone())))?;
            let mut config = ImageConfig::from_base(&b.config).map_err(|source| {
                missing(StepError::BaseConfig {
                    image: r.clone(),
                    source,
                })
            })?;
            let triggers = config.take_onbuild();
            if !triggers.is_empty() {
                tracing::warn!(base = %r, ?triggers, "the base has ONBUILD triggers; regbuild does not run them");
            }
            let layers = crate::builder::stage::base_layers(b);
            Ok(StageImage {
                config,
                layers,
                base: Some(b.clone()),
                base_listed: false,
            })
        }
    }
}

/// Applies an instruction that changes only the config.
fn apply_config_step(config: &mut ImageConfig, step: &StepKind) {
    match step {
        StepKind::Copy(_) => {}
        StepKind::Env(pairs) => config.set_envs(pairs),
        StepKind::Label(pairs) => {
            for (k, v) in pairs {
                config.set_label(k, v);
            }
        }
        StepKind::Arg(_) => {}
        StepKind::Workdir(dir) => {
            let joined = join_in_image(&config.workdir(), dir);
            config.set_workdir(&joined);
        }
        StepKind::User(u) => config.set_user(u),
        StepKind::Expose(ports) => {
            for p in ports {
                config.expose(p);
            }
        }
        StepKind::Volume(paths) => {
            for p in paths {
                config.add_volume(p);
            }
        }
        StepKind::Entrypoint(c) => {
            let argv = crate::builder::stage::argv(config, c);
            config.set_entrypoint(argv);
        }
        StepKind::Cmd(c) => {
            let argv = crate::builder::stage::argv(config, c);
            config.set_cmd(argv);
        }
        StepKind::StopSignal(s) => config.set_stop_signal(s),
        StepKind::Healthcheck(h) => {
            let ns = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as u64);
            let mut v = serde_json::json!({ "Test": h.test });
            for (k, d) in [
                ("Interval", ns(&h.interval)),
                ("Timeout", ns(&h.timeout)),
                ("StartPeriod", ns(&h.start_period)),
                ("StartInterval", ns(&h.start_interval)),
            ] {
                if let Some(d) = d {
                    v[k] = serde_json::json!(d);
                }
            }
            if let Some(r) = h.retries {
                v["Retries"] = serde_json::json!(r);
            }
            config.set_healthcheck(v);
        }
        StepKind::Shell(s) => config.set_shell(s.clone()),
        StepKind::OnBuild(i) => config.add_onbuild(i),
        StepKind::Maintainer(m) => config.set_author(m),
        StepKind::Run(_) => {}
    }
}

fn load_dockerignore(context: &Path) -> Result<DockerIgnore, BuildError> {
    let path = context.join(".dockerignore");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(DockerIgnore::parse(&text, &path)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerIgnore::default()),
        Err(source) => Err(BuildError::ReadIgnore {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_steps_whose_result_can_depend_on_the_base_read_its_paths() {
        let copy = |dest: &str, chown: Option<&str>| {
            StepKind::Copy(regbuild_frontend::stages::CopySpec {
                add: false,
                sources: vec!["x".into()],
                dest: dest.into(),
                from: None,
                chown: chown.map(str::to_string),
                chmod: None,
                link: false,
                closure: false,
                sysroot: None,
                exclude: Vec::new(),
                parents: false,
                keep_git_dir: false,
                checksum: None,
                unpack: None,
                heredocs: Vec::new(),
            })
        };
        let needs_base_paths = |k: &StepKind, w: &str| needs_base_paths(k, w, &|s| s == "dir");
        assert!(!needs_base_paths(&copy("/app/", None), "/"));
        assert!(!needs_base_paths(&copy(".", Some("1000:1000")), "/srv"));
        assert!(
            !needs_base_paths(&copy("/library/", None), "/"),
            "not under /lib"
        );
        assert!(needs_base_paths(&copy("/", None), "/"));
        assert!(needs_base_paths(&copy("bin/", None), "/"));
        assert!(needs_base_paths(&copy("/usr/../lib/x/", None), "/"));
        assert!(needs_base_paths(&copy("run/", None), "/var"));
        assert!(needs_base_paths(&copy("/app/", Some("node:node")), "/"));
        assert!(needs_base_paths(&StepKind::Workdir("/app".into()), "/"));
        // A file to a name that may be a directory of the base; a directory's content goes
        // into the destination whatever it is.
        assert!(needs_base_paths(&copy("/srv/app", None), "/"));
        assert!(needs_base_paths(&copy("app", None), "/srv"));
        let dir_copy = |dest: &str| match copy(dest, None) {
            StepKind::Copy(mut spec) => {
                spec.sources = vec!["dir".into()];
                StepKind::Copy(spec)
            }
            _ => unreachable!(),
        };
        assert!(!needs_base_paths(&dir_copy("/srv/app"), "/"));
        assert!(!needs_base_paths(&dir_copy("."), "/srv"));
        assert!(!needs_base_paths(&StepKind::User("1".into()), "/"));
    }

    #[test]
    fn workdir_joins_and_cleans() {
        assert_eq!(join_in_image("/", "app"), "/app");
        assert_eq!(join_in_image("/app", "sub/../bin"), "/app/bin");
        assert_eq!(join_in_image("/app", "/opt"), "/opt");
        assert_eq!(join_in_image("/", "../../etc"), "/etc");
    }
}
