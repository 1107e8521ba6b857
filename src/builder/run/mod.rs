//! Dockerfile `RUN`: run the step's command in the stage's root filesystem and make what it
//! changed one layer — unless the registry or the local cache already has that layer.
//!
//! Two phases, so that a fresh CI runner re-executes nothing and downloads no base:
//! - [`plan`] (cheap, no base layer read): the step's argv, environment, identity and
//!   mounts, and its cache key (`key`); looked up in the local cache (record + stored blob)
//!   and in the layers found by key in the registry (`--cache-from`, the tags pushed).
//! - [`execute`], only on a miss: the stage's layers become overlay lower directories
//!   (`lowers`, each layer unpacked once by diff_id), the mounts are made (`mounts`), the
//!   command runs in `regbuild-sandbox` (new mount/pid/ipc/uts namespaces, rootless in a
//!   user namespace) with its output streamed line by line (`output`), and the overlay's
//!   upper directory — nothing else is walked — becomes the layer (`regbuild_rootfs::upper`).
//!   The upper directory then joins the store as that layer's lower directory, so the next
//!   step does not unpack it again.
//! - Where overlayfs is unavailable (`--snapshotter native`, or `auto` after the overlay
//!   mount failed), the lower directories are copied into one plain root
//!   (`regbuild_rootfs::materialize`), the step changes it in place, and a snapshot diff
//!   (`regbuild_rootfs::snapshot`) writes the upper directory overlayfs would have made, so the
//!   rest is the same path.
//!
//! The step sees only the stage's environment (ENV, the build args in scope, PATH and HOME
//! defaults): nothing of regbuild's own environment, credentials or `DOCKER_CONFIG`.

pub mod detached;
pub use crate::builder::error::run as error;
pub use crate::builder::report::{RunReport, WOULD_RUN};
pub mod interrupt;
pub mod key;
pub mod lowers;
pub mod mounts;
pub mod output;
pub mod rung;
pub mod turn;
pub mod userns_unpack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::builder::error::StepError;
use crate::builder::layer::{CachedStageLayer, StageLayer};
use crate::builder::stage::StepContext;
use crate::builder::stage::{NewLayer, StageImage, StepLayer, StepOutput};
use error::RunError;
use regbuild_frontend::stages::{Command, CopyFrom, RunMount, RunNetwork, RunSpec};
use regbuild_fs::layer::LayerOptions;
use regbuild_fs::tar_read::MAX_ENTRY_SIZE;
use regbuild_oci::platform::Platform;
use regbuild_rootfs::lower::LowerStore;
use regbuild_rootfs::upper::{OverlayXattrs, UpperOptions};

pub use mounts::{parse_secret, SecretSource};
pub use rung::{Isolation, Rung};

/// Build-wide settings for RUN steps (`regbuild push --network`, `--secret`,
/// `--snapshotter`).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The network of steps that do not say (`RUN --network`); default: the host's.
    pub network: Option<RunNetwork>,
    pub secrets: BTreeMap<String, SecretSource>,
    pub snapshotter: Snapshotter,
    /// Set (with why) once `auto` found overlayfs unavailable: later steps of the build go
    /// straight to the snapshot diff.
    pub overlay_unavailable: Arc<std::sync::OnceLock<String>>,
    /// Which rung of isolation steps run in (`--isolation`).
    pub isolation: Isolation,
    /// Set (with why) once `auto` found namespaces refused: later steps of the build go
    /// straight to the user-namespace rung.
    pub namespaces_refused: Arc<std::sync::OnceLock<String>>,
    /// Set (with why) once `auto` found the user-namespace rung refused too: later steps go
    /// straight to the chroot rung.
    pub userns_refused: Arc<std::sync::OnceLock<String>>,
    /// A lower limit than [`MAX_ENTRY_SIZE`] on the files a step may leave (the hidden
    /// `push --max-layer-file-size`, for tests: a step over the limit fails without
    /// writing 64 GiB); never a higher one.
    pub max_file_size: Option<u64>,
    /// Where cache mounts are kept (`--cache-mounts`, `--cache-mounts-max`).
    pub cache_mounts: crate::builder::remote_cache::mounts::CacheMounts,
}

/// How a step's filesystem and layer are made (BuildKit's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Snapshotter {
    /// overlayfs, else (the mount failed for a reason that means it is unavailable) native.
    #[default]
    Auto,
    /// overlayfs only: a failed mount fails the step.
    Overlayfs,
    /// A plain copy of the root filesystem per step and a snapshot diff.
    Native,
}

impl Snapshotter {
    pub fn parse(s: &str) -> Result<Snapshotter, String> {
        match s {
            "auto" => Ok(Snapshotter::Auto),
            "overlayfs" => Ok(Snapshotter::Overlayfs),
            "native" => Ok(Snapshotter::Native),
            other => Err(format!("{other}: use auto, overlayfs or native")),
        }
    }
}

/// In-image paths the sandbox provides: never part of a layer.
const PROVIDED: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "etc/resolv.conf",
    "etc/hosts",
    "etc/hostname",
];

/// What a RUN step needs beyond a COPY's context.
pub struct RunContext<'a, 'c> {
    pub copy: &'a StepContext<'c>,
    pub options: &'a RunOptions,
    pub store: &'a LowerStore,
    /// The store a rootless `native` step copies its root from (see `userns_unpack`); the
    /// same as `store` as root.
    pub flat_store: &'a LowerStore,
    /// Where the step's upper and work directories are made: on the store's filesystem,
    /// so the upper directory can be renamed into it.
    pub scratch: &'a Path,
    /// regbuild's cache directory (cache mounts), else the build's temporary directory.
    pub cache_root: &'a Path,
    /// The platform the stage is built for.
    pub platform: &'a Platform,
    /// `[build 2/5]`: what prefixes the step's output.
    pub label: String,
    /// The stage's name (or `stage-N`), for `--json`.
    pub stage: String,
    /// The step's place in its stage (0 for the first).
    pub step_no: usize,
    /// Where a new layer of an image being pushed starts uploading at once (while the next
    /// steps run); `None` for stages the pushed image does not hold.
    pub early: Option<&'a regbuild_registry::publish::EarlyUploads>,
}

/// The report of a step a dry run does not execute.
pub fn would_run(ctx: &RunContext<'_, '_>, line: usize, planned: Planned) -> RunReport {
    RunReport {
        stage: ctx.stage.clone(),
        line,
        instruction: ctx.copy.step_text.to_string(),
        status: WOULD_RUN,
        seconds: 0.0,
        layer: String::new(),
        miss: planned.miss,
        recorded: Some(planned.recorded),
        cache_mounts: Vec::new(),
    }
}

/// A step decided: what would run and its key.
pub struct Planned {
    pub key: String,
    /// The key and its inputs, as the build cache artifact records them.
    recorded: crate::builder::report::RecordedStep,
    /// On a miss: what changed against the registry's build cache.
    miss: Option<String>,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    user: String,
    workdir: String,
    network: RunNetwork,
    found: Option<Found>,
}

enum Found {
    /// The local cache's record and the blob it stored.
    Local(crate::builder::cache::CachedLayer, PathBuf),
    Remote(crate::builder::remote_cache::RemoteLayer),
}

/// The identity of a layer in RUN keys: its cache key when regbuild made it (the same on a
/// cold and a warm build), else its digest.
pub fn layer_identity(l: &StageLayer) -> String {
    match l {
        StageLayer::Remote { descriptor, .. } => descriptor.digest.to_string(),
        StageLayer::Local(b) => b.key.clone().unwrap_or_else(|| b.digest.to_string()),
        StageLayer::Cached(c) => c.key.clone(),
    }
}

/// Runs a task `regbuild_sandbox::userns` started (this process is root of a user
/// namespace); returns the exit status.
pub fn userns_task(task: &str, args: &[std::ffi::OsString]) -> i32 {
    match task {
        userns_unpack::TASK => userns_unpack::run(args),
        other => {
            eprintln!("unknown user-namespace task {other}");
            2
        }
    }
}

/// The ids of the step's cache mounts.
fn cache_ids(spec: &RunSpec) -> Vec<String> {
    spec.mounts
        .iter()
        .filter_map(|m| match m {
            regbuild_frontend::stages::RunMount::Cache { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// The blob a RUN layer's record points at, in the local cache.
fn stored_blob(cache_root: &Path, digest: &regbuild_oci::digest::Digest) -> PathBuf {
    cache_root.join("run-blobs").join(digest.hex())
}

/// Decides the step: argv, environment, identity, key, and whether a cache has the layer.
pub fn plan(
    ctx: &RunContext<'_, '_>,
    spec: &RunSpec,
    image: &StageImage,
    parents: Vec<String>,
) -> Result<Planned, StepError> {
    let config = &image.config;
    let argv = crate::builder::stage::argv(config, &spec.command);
    // ENV wins over a build arg of the same name, as in Docker.
    let mut env = config.env();
    let mut args = Vec::new();
    for (k, v) in &spec.args {
        if !env.iter().any(|(e, _)| e == k) {
            env.push((k.clone(), v.clone()));
            args.push(k.clone());
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push((
            "PATH".into(),
            regbuild_frontend::stages::DEFAULT_PATH.into(),
        ));
    }
    let user = config.user().unwrap_or_default();
    let workdir = config.workdir();
    let network = spec
        .network
        .or(ctx.options.network)
        .unwrap_or(RunNetwork::Default);
    let bind_identity = |f: &CopyFrom| bind_identity(ctx, f);
    let mounts = spec
        .mounts
        .iter()
        .map(|m| {
            let context = mounts::Context {
                dir: ctx.copy.context,
                ignore: ctx.copy.ignore,
            };
            mounts::key_part(m, &workdir, &context, &bind_identity)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let c = ctx.copy;
    let layer_format = format!(
        "{:?} mtime={} keep-setuid={}",
        c.compression, c.epoch, c.keep_setuid
    );
    let platform = ctx.platform.to_string();
    let inputs = key::KeyInputs {
        base_digest: image.base.as_ref().map(|b| b.digest.as_str()),
        parent_layers: parents,
        argv: &argv,
        script: spec.script.as_ref().map(|(_, body)| body.as_str()),
        env: &env,
        user: &user,
        workdir: &workdir,
        network: network_name(network),
        mounts,
        platform: &platform,
        layer_format,
    };
    let key = key::run_key(&inputs);
    let recorded = crate::builder::report::RecordedStep {
        stage: ctx.stage.clone(),
        run: ctx.step_no,
        instruction: c.step_text.to_string(),
        key: key.clone(),
        inputs: key::parts(&inputs, &args),
    };
    use crate::builder::remote_cache::{lookup, Hit};
    // A RUN layer cannot be rebuilt from sources: a local record counts with its blob only.
    let blob_of =
        |record: &crate::builder::cache::CachedLayer| stored_blob(ctx.cache_root, &record.digest);
    let found = lookup(c.cache, c.remote, &key, |r| blob_of(r).is_file()).map(|hit| match hit {
        Hit::Local(record) => {
            let blob = blob_of(&record);
            crate::builder::cache_dir::mark_used(&blob);
            Found::Local(record, blob)
        }
        Hit::Remote(r) => Found::Remote(r),
    });
    let miss = match &found {
        Some(_) => {
            tracing::info!(step = %c.step_text, %key, "RUN cache hit");
            None
        }
        None => {
            let why = crate::builder::remote_cache::explain::why_missed(&c.remote.steps, &recorded);
            tracing::info!(step = %c.step_text, %key, "RUN cache miss: executing ({why})");
            Some(why)
        }
    };
    Ok(Planned {
        key,
        recorded,
        miss,
        argv,
        env,
        user,
        workdir,
        network,
        found,
    })
}

fn network_name(n: RunNetwork) -> &'static str {
    match n {
        RunNetwork::Default => "default",
        RunNetwork::None => "none",
        RunNetwork::Host => "host",
    }
}

/// A bind source from a stage or image, as the key sees it: the layers it is made of.
fn bind_identity(ctx: &RunContext<'_, '_>, from: &CopyFrom) -> Result<String, RunError> {
    match from {
        CopyFrom::Stage(i) => {
            let stage = ctx
                .copy
                .stages
                .get(i)
                .ok_or(RunError::BindStageNotBuilt { from: *i })?;
            let ids: Vec<String> = stage.layers.iter().map(layer_identity).collect();
            Ok(format!("stage:{}", ids.join(",")))
        }
        CopyFrom::Image(r) => {
            let digest = crate::image::base::named(ctx.copy.bases, r)
                .map(|b| b.digest.to_string())
                .unwrap_or_default();
            Ok(format!("image:{r}@{digest}"))
        }
    }
}

impl Planned {
    /// Whether a cache has the layer (the step will not run).
    pub fn is_hit(&self) -> bool {
        self.found.is_some()
    }
}

/// The step's output when a cache had its layer: nothing runs, nothing is downloaded.
pub fn cached(
    ctx: &RunContext<'_, '_>,
    line: usize,
    planned: Planned,
) -> Result<(StepOutput, RunReport), StepError> {
    let c = ctx.copy;
    let started = Instant::now();
    let opts = layer_options(c);
    let layer = match planned.found {
        Some(Found::Local(record, blob)) => {
            CachedStageLayer::stored(record, planned.key, blob, opts, c.tmp)
        }
        Some(Found::Remote(r)) => {
            if let Some(cache) = c.cache {
                // Found by key in a registry: the local record makes the next build's plan
                // find it even offline; the blob is fetched only if something needs it.
                cache.put(&planned.key, &r.record);
            }
            let mut layer = CachedStageLayer::new(r.record, planned.key, Vec::new(), opts, c.tmp);
            layer.found_in = Some((r.registry, r.repository));
            layer
        }
        None => return Err(StepError::NotCached),
    };
    let digest = layer.record.digest.to_string();
    c.progress
        .event(regbuild_registry::progress::Event::LayerCached {
            id: c.step_text,
            digest: &digest,
            size: layer.record.size,
        });
    let report = RunReport {
        stage: ctx.stage.clone(),
        line,
        instruction: c.step_text.to_string(),
        status: "cached",
        seconds: started.elapsed().as_secs_f64(),
        layer: digest,
        miss: None,
        recorded: Some(planned.recorded),
        cache_mounts: Vec::new(),
    };
    Ok((
        StepOutput {
            layers: vec![StepLayer {
                layer: NewLayer::Cached(layer),
                entries: Vec::new(),
                label: c.step_text.to_string(),
            }],
            stripped_setuid: Vec::new(),
            warnings: Vec::new(),
        },
        report,
    ))
}

fn layer_options(c: &StepContext<'_>) -> LayerOptions {
    LayerOptions {
        mtime: c.epoch,
        compression: c.compression,
        threads: regbuild_fs::compress::threads(),
    }
}

/// Whether this process runs as real root (else steps run in a user namespace).
pub fn privileged() -> bool {
    rustix::process::geteuid().is_root()
}

/// The overlay xattr namespace steps (and the store) use here.
pub fn overlay_xattrs() -> OverlayXattrs {
    if privileged() {
        OverlayXattrs::Trusted
    } else {
        OverlayXattrs::User
    }
}

/// Runs the step: `layers` (with `diff_ids`, aligned) is the stage's filesystem below it.
/// In the rung `--isolation` and `--snapshotter` ask for; with `auto`, a refusal that means
/// a rung is unavailable here (namespaces, then overlayfs; nothing ran yet) makes this and
/// every later step of the build use the next one, said once.
pub async fn execute(
    ctx: &RunContext<'_, '_>,
    spec: &RunSpec,
    line: usize,
    planned: Planned,
    layers: &[lowers::Lower],
    diff_ids: &[String],
) -> Result<(StepOutput, RunReport), StepError> {
    let options = ctx.options;
    let mut rung = first_rung(options);
    let mut said = Vec::new();
    // Each fall is to a lower rung (overlay, native, userns, chroot): at most three.
    loop {
        // Chroot steps take turns across the container (`turn`).
        let _turn = match rung {
            Rung::Chroot => Some(turn::take().await?),
            _ => None,
        };
        let tried = execute_as(ctx, spec, line, &planned, layers, diff_ids, rung).await;
        let Some((next, message, first)) = fall_back(options, rung, &tried) else {
            let mut done = tried?;
            done.0.warnings.extend(said);
            return Ok(done);
        };
        tracing::info!("{message}");
        if first {
            said.push(message);
        }
        rung = next;
    }
}

/// The rung a step is first tried in: what was asked, less what `auto` found unavailable.
fn first_rung(options: &RunOptions) -> Rung {
    let auto = options.isolation == Isolation::Auto;
    if options.isolation == Isolation::Chroot || (auto && options.userns_refused.get().is_some()) {
        return Rung::Chroot;
    }
    if options.isolation == Isolation::Userns
        || (auto && options.namespaces_refused.get().is_some())
    {
        return Rung::Userns;
    }
    let native = match options.snapshotter {
        Snapshotter::Native => true,
        Snapshotter::Overlayfs => false,
        Snapshotter::Auto => options.overlay_unavailable.get().is_some(),
    };
    if native {
        Rung::Native
    } else {
        Rung::Overlay
    }
}

/// The rung to try next when `tried` failed because `rung` is unavailable here and `auto`
/// allows another (nothing ran), with the message to say and whether this is the first
/// time it is said.
fn fall_back(
    options: &RunOptions,
    rung: Rung,
    tried: &Result<(StepOutput, RunReport), StepError>,
) -> Option<(Rung, String, bool)> {
    let Err(StepError::Run(e)) = tried else {
        return None;
    };
    let RunError::Sandbox(s) = &**e else {
        return None;
    };
    // The lower rungs are root's (they need CAP_SETUID over the container's ids, or
    // CAP_SYS_CHROOT and CAP_MKNOD).
    let auto_as_root = options.isolation == Isolation::Auto && privileged();
    if auto_as_root && matches!(rung, Rung::Overlay | Rung::Native) {
        if let Some(reason) = s.namespaces_refused() {
            let first = options.namespaces_refused.set(reason.clone()).is_ok();
            return Some((Rung::Userns, rung::userns_message(&reason), first));
        }
    }
    if auto_as_root && rung == Rung::Userns {
        if let Some(reason) = s.userns_refused() {
            let first = options.userns_refused.set(reason.clone()).is_ok();
            return Some((Rung::Chroot, rung::chroot_message(&reason), first));
        }
    }
    if rung == Rung::Overlay && options.snapshotter == Snapshotter::Auto {
        let reason = s.overlay_unavailable()?;
        let first = options.overlay_unavailable.set(reason.clone()).is_ok();
        let message =
            format!("overlayfs unavailable ({reason}): RUN steps use a snapshot diff (slower)");
        return Some((Rung::Native, message, first));
    }
    None
}

/// [`execute`] in one rung (the snapshot diff on a plain root, else overlayfs). The phases:
/// the step's root, who it runs as, its mounts, the command in the sandbox, the upper
/// directory as layer entries, the layer packed (or packing).
async fn execute_as(
    ctx: &RunContext<'_, '_>,
    spec: &RunSpec,
    line: usize,
    planned: &Planned,
    layers: &[lowers::Lower],
    diff_ids: &[String],
    rung: Rung,
) -> Result<(StepOutput, RunReport), StepError> {
    let c = ctx.copy;
    let started = Instant::now();
    check_platform(ctx.platform)?;
    let root = step_root(ctx, layers, diff_ids, rung.plain()).await?;
    let prepared_at = Instant::now();
    let Identity { uid, gid, mut env } = identity(planned, &root.lowers)?;
    // WORKDIR is created when missing, as BuildKit does (it then belongs to the layer;
    // in a plain root, once the snapshot is taken).
    let make_workdir = !lowers::is_dir(&root.lowers, &planned.workdir);
    if make_workdir && root.rootfs.is_none() {
        let dir = root.upper.join(planned.workdir.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).map_err(|e| RunError::io(&dir, e))?;
    }
    let mut argv = planned.argv.clone();
    let mut prepared =
        step_mounts(ctx, spec, planned, root.scratch.path(), &mut argv, rung).await?;
    let mount_warnings = std::mem::take(&mut prepared.warnings);
    env.extend(prepared.env.iter().cloned());
    let mut sb = sandbox_spec(&root, argv, env, planned, (uid, gid), &prepared);
    sb.isolation = rung.isolation();
    // What the runtime provides and the targets of the mounts made: never in the layer
    // (a mount that was not made, an optional secret not given, leaves its path to the step).
    let mut excluded: Vec<PathBuf> = PROVIDED.iter().map(PathBuf::from).collect();
    excluded.extend(
        prepared
            .targets
            .iter()
            .map(|t| PathBuf::from(t.to_string_lossy().trim_start_matches('/'))),
    );
    let snapshot = match &root.rootfs {
        Some(rootfs) => Some(take_snapshot(
            &sb,
            rootfs,
            &excluded,
            make_workdir,
            planned,
        )?),
        None => None,
    };
    let ran_at = Instant::now();
    let outcome = run_command(ctx, spec, sb).await?;
    let command_secs = ran_at.elapsed().as_secs_f64();
    drop(prepared);
    let diffed_at = Instant::now();
    let (diff, stripped) = upper_entries(ctx, &root, snapshot.as_ref(), &outcome, excluded)?;
    let sockets = diff.sockets.len();
    upper_as_layer(&root.upper, &diff, &stripped)?;
    let (layer, digest, packed) = pack_step_layer(ctx, planned, diff, &root, &outcome)?;
    let total = started.elapsed().as_secs_f64();
    tracing::info!(
        step = %c.step_text,
        prepare_s = (prepared_at - started).as_secs_f64(),
        command_s = command_secs,
        diff_pack_s = diffed_at.elapsed().as_secs_f64(),
        total_s = total,
        rung = rung.name(),
        packing = packed,
        "RUN step timings"
    );
    let mut warnings = outcome.warnings;
    warnings.extend(mount_warnings);
    if sockets > 0 {
        warnings.push(format!(
            "RUN left {sockets} socket(s), which a layer cannot hold (left out)"
        ));
    }
    let report = RunReport {
        stage: ctx.stage.clone(),
        line,
        instruction: c.step_text.to_string(),
        status: "executed",
        seconds: total,
        // Empty while it packs: filled in when the stage's layers are.
        layer: digest,
        miss: planned.miss.clone(),
        recorded: Some(planned.recorded.clone()),
        cache_mounts: cache_ids(spec)
            .into_iter()
            .map(|id| (id, ctx.platform.to_string()))
            .collect(),
    };
    let layer = StepLayer {
        layer,
        entries: Vec::new(),
        label: c.step_text.to_string(),
    };
    let output = StepOutput {
        layers: vec![layer],
        stripped_setuid: stripped,
        warnings,
    };
    Ok((output, report))
}

/// Where a step runs: its lower directories (in `store`), its scratch (the upper and work
/// directories), and with the snapshot diff the plain root it changes in place.
struct StepRoot<'s> {
    store: &'s LowerStore,
    lowers: Vec<PathBuf>,
    scratch: crate::builder::scratch::ScratchDir,
    upper: PathBuf,
    work: PathBuf,
    rootfs: Option<PathBuf>,
}

async fn step_root<'s>(
    ctx: &RunContext<'s, '_>,
    layers: &[lowers::Lower],
    diff_ids: &[String],
    native: bool,
) -> Result<StepRoot<'s>, StepError> {
    let c = ctx.copy;
    // Rootless, owners are kept by unpacking in a user namespace, but a plain root is copied
    // by this process, which must read every file: native steps use the flat store.
    let keep_owners = !(native && userns_unpack::needed());
    let store = if keep_owners {
        ctx.store
    } else {
        ctx.flat_store
    };
    let lowers = lowers::ensure(c.registry, store, layers, diff_ids, c.tmp, keep_owners).await?;
    for dir in &lowers {
        crate::builder::cache_dir::mark_used(dir);
    }
    // Each step's upper directory away from the inodes of the steps removed before it.
    regbuild_rootfs::lower::spread_subdirs(ctx.scratch);
    let scratch = crate::builder::scratch::ScratchDir::create(
        ctx.scratch,
        crate::builder::scratch::STEP_PREFIX,
    )
    .map_err(|e| RunError::io(ctx.scratch, e))?;
    let upper = scratch.path().join("upper");
    let work = scratch.path().join("work");
    std::fs::create_dir(&upper).map_err(|e| RunError::io(&upper, e))?;
    // The snapshot-diff path: the stage's filesystem as one plain directory, changed in
    // place by the step (it lives in the scratch, so it goes with it however the step ends).
    let rootfs = if native {
        Some(plain_root(c.step_text, &lowers, scratch.path())?)
    } else {
        None
    };
    Ok(StepRoot {
        store,
        lowers,
        scratch,
        upper,
        work,
        rootfs,
    })
}

/// The lowers copied into one plain directory (`rootfs/` of the scratch).
fn plain_root(step_text: &str, lowers: &[PathBuf], scratch: &Path) -> Result<PathBuf, StepError> {
    let dir = scratch.join("rootfs");
    std::fs::create_dir(&dir).map_err(|e| RunError::io(&dir, e))?;
    let made = tokio::task::block_in_place(|| {
        regbuild_rootfs::materialize::materialize(lowers, &dir, overlay_xattrs())
    })
    .map_err(RunError::from)?;
    tracing::info!(
        step = %step_text,
        entries = made.entries,
        bytes = made.bytes,
        not_reproduced = made.skipped.len(),
        "RUN: snapshot diff (no overlayfs): root filesystem copied"
    );
    if interrupt::interrupted() {
        return Err(RunError::Interrupted.into());
    }
    Ok(dir)
}

/// USER (names resolved in the stage's own account files) and the environment, with HOME
/// from the user's passwd entry unless ENV set it.
fn identity(planned: &Planned, lowers: &[PathBuf]) -> Result<Identity, StepError> {
    let accounts = lowers::accounts(lowers);
    let (uid, gid) = if planned.user.is_empty() {
        (0, 0)
    } else {
        crate::builder::owner::resolve_ids(&planned.user, &accounts).map_err(|source| {
            RunError::User {
                user: planned.user.clone(),
                source,
            }
        })?
    };
    let mut env = planned.env.clone();
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push((
            "HOME".into(),
            lowers::home_of(accounts.passwd.as_deref(), u64::from(uid)),
        ));
    }
    Ok(Identity { uid, gid, env })
}

/// Who a step runs as, and its environment.
struct Identity {
    uid: u32,
    gid: u32,
    env: Vec<(String, String)>,
}

/// The step's `--mount`s made real (bind sources from stages and images materialised under
/// the build's tmp first), and a `RUN <<EOF` script bound in (its path added to `argv`).
async fn step_mounts(
    ctx: &RunContext<'_, '_>,
    spec: &RunSpec,
    planned: &Planned,
    scratch: &Path,
    argv: &mut Vec<String>,
    rung: Rung,
) -> Result<mounts::Prepared, StepError> {
    let c = ctx.copy;
    let mut from_dirs: Vec<(CopyFrom, PathBuf)> = Vec::new();
    for m in &spec.mounts {
        if let RunMount::Bind {
            from: Some(f),
            source,
            ..
        }
        | RunMount::Cache {
            from: Some(f),
            source,
            ..
        } = m
        {
            let dir = materialize_from(ctx, f, source).await?;
            from_dirs.push((f.clone(), dir));
        }
    }
    let inputs = mounts::MountInputs {
        workdir: &planned.workdir,
        context: mounts::Context {
            dir: c.context,
            ignore: c.ignore,
        },
        secrets: &ctx.options.secrets,
        cache_root: ctx.cache_root,
        tmp: c.tmp,
        privileged: privileged(),
        // The chroot rung copies a cache in and back: one step at a time, whatever the
        // sharing, or one step's copy-back races another's copy.
        hold_every_cache: rung == Rung::Chroot,
    };
    let find = |f: &CopyFrom| {
        from_dirs
            .iter()
            .find(|(x, _)| x == f)
            .map(|(_, d)| d.clone())
    };
    // A cache mount this machine lacks starts as the registry's copy, if asked.
    let restored = crate::builder::remote_cache::mounts::restore(
        c.registry,
        c.remote,
        &ctx.platform.to_string(),
        &ctx.cache_root.join("run-cache"),
        &spec.mounts,
        (ctx.options.cache_mounts, inputs.privileged),
        c.tmp,
    )
    .await;
    // Cache mounts a step of another stage holds are awaited here, not in `prepare`.
    mounts::wait_for_caches(&spec.mounts, ctx.cache_root).await?;
    let mut prepared = mounts::prepare(&spec.mounts, &inputs, &find)?;
    prepared.warnings.extend(restored);
    if let Some((path, body)) = &spec.script {
        let file = scratch.join("script");
        std::fs::write(&file, body).map_err(|e| RunError::io(&file, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| RunError::io(&file, e))?;
        prepared.mounts.push(regbuild_sandbox::Mount::Bind {
            source: file,
            target: PathBuf::from(path),
            readonly: true,
        });
        prepared.targets.push(PathBuf::from(path));
        if argv.is_empty() {
            argv.push(path.clone());
        }
    }
    Ok(prepared)
}

/// What the sandbox is given: the root (overlay of the lowers, or the plain root), the
/// command, its environment, identity, working directory, network and mounts.
fn sandbox_spec(
    root: &StepRoot<'_>,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    planned: &Planned,
    (uid, gid): (u32, u32),
    prepared: &mounts::Prepared,
) -> regbuild_sandbox::Spec {
    let mut sb = match &root.rootfs {
        Some(rootfs) => {
            let mut sb = regbuild_sandbox::Spec::new(Vec::new(), rootfs, &root.work, argv);
            sb.plain_root = true;
            sb
        }
        None => regbuild_sandbox::Spec::new(root.lowers.clone(), &root.upper, &root.work, argv),
    };
    sb.env = env;
    sb.cwd = PathBuf::from(&planned.workdir);
    sb.uid = uid;
    sb.gid = gid;
    sb.network = match planned.network {
        RunNetwork::None => regbuild_sandbox::Network::None,
        RunNetwork::Default | RunNetwork::Host => regbuild_sandbox::Network::Default,
    };
    sb.mounts = prepared.mounts.clone();
    sb
}

/// The plain root's stamps before the step (mount points made first, so that making them
/// is not a change of the step), and the WORKDIR made after them when missing.
fn take_snapshot(
    sb: &regbuild_sandbox::Spec,
    rootfs: &Path,
    excluded: &[PathBuf],
    make_workdir: bool,
    planned: &Planned,
) -> Result<regbuild_rootfs::snapshot::Snapshot, StepError> {
    regbuild_sandbox::prepare_plain_root(sb).map_err(RunError::from)?;
    let snap =
        tokio::task::block_in_place(|| regbuild_rootfs::snapshot::Snapshot::take(rootfs, excluded))
            .map_err(RunError::from)?;
    if make_workdir {
        make_dirs_in(rootfs, &planned.workdir)?;
    }
    Ok(snap)
}

/// Runs the command in the sandbox, its output prefixed, on a thread of its own (other
/// stages go on meanwhile: `detached`); a failure names its status and last lines.
async fn run_command(
    ctx: &RunContext<'_, '_>,
    spec: &RunSpec,
    sb: regbuild_sandbox::Spec,
) -> Result<regbuild_sandbox::Outcome, StepError> {
    let c = ctx.copy;
    let mut log = output::StepLog::new(ctx.label.clone(), c.progress);
    log.say(c.step_text);
    let sandbox = regbuild_sandbox::Sandbox::current_exe();
    let outcome = detached::run(sandbox, sb, |stream, bytes| {
        let s = match stream {
            regbuild_sandbox::Stream::Stdout => 0,
            regbuild_sandbox::Stream::Stderr => 1,
        };
        log.chunk(s, bytes);
    })
    .await;
    let tail = log.finish();
    let outcome = outcome.map_err(RunError::from)?;
    if interrupt::interrupted() {
        return Err(RunError::Interrupted.into());
    }
    if !outcome.status.success() {
        let status = match outcome.status {
            regbuild_sandbox::Status::Exited(code) => format!("exit status {code}"),
            regbuild_sandbox::Status::Signaled(sig) => format!("killed by signal {sig}"),
            regbuild_sandbox::Status::Killed => "killed".to_string(),
        };
        return Err(RunError::Failed {
            command: command_text(spec),
            status,
            tail,
        }
        .into());
    }
    Ok(outcome)
}

/// The upper directory as layer entries (with the snapshot diff, first written as the upper
/// directory overlayfs would have made), owners as the step saw them, setuid bits stripped
/// unless kept (returned).
fn upper_entries(
    ctx: &RunContext<'_, '_>,
    root: &StepRoot<'_>,
    snapshot: Option<&regbuild_rootfs::snapshot::Snapshot>,
    outcome: &regbuild_sandbox::Outcome,
    excluded: Vec<PathBuf>,
) -> Result<(regbuild_rootfs::upper::UpperDiff, Vec<String>), StepError> {
    let c = ctx.copy;
    let upper = &root.upper;
    let mut owners_from_root = std::collections::HashSet::new();
    if let (Some(rootfs), Some(snap)) = (&root.rootfs, snapshot) {
        let changes = tokio::task::block_in_place(|| snap.diff(rootfs)).map_err(RunError::from)?;
        let (entries, opaque, whiteouts) = changes.counts();
        tracing::info!(
            step = %c.step_text,
            paths = snap.len(),
            entries,
            opaque,
            whiteouts,
            "RUN: snapshot diff (no overlayfs)"
        );
        let skipped =
            tokio::task::block_in_place(|| changes.write_upper(rootfs, upper, overlay_xattrs()))
                .map_err(RunError::from)?;
        owners_from_root = skipped.into_iter().map(|(p, _)| p).collect();
    }
    // The upper directory is the layer: nothing else is walked.
    let upper_opts = UpperOptions {
        xattrs: overlay_xattrs(),
        excluded,
        source_date_epoch: (c.epoch > 0).then_some(c.epoch),
        max_file_size: ctx
            .options
            .max_file_size
            .map_or(MAX_ENTRY_SIZE, |n| n.min(MAX_ENTRY_SIZE)),
    };
    let mut diff = tokio::task::block_in_place(|| {
        regbuild_rootfs::upper::diff_upper(upper, &upper_opts, c.tmp)
    })
    .map_err(RunError::from)?;
    // Rootless: what init opened up for us keeps, in the layer, the bits the step gave it.
    restore_opened_modes(&mut diff.entries, &outcome.opened_up);
    // Owners the written upper directory could not take (not root): the root's.
    if let Some(rootfs) = &root.rootfs {
        use std::os::unix::fs::MetadataExt;
        for e in &mut diff.entries {
            if owners_from_root.contains(&e.path) {
                if let Ok(m) = std::fs::symlink_metadata(rootfs.join(&e.path)) {
                    (e.uid, e.gid) = (u64::from(m.uid()), u64::from(m.gid()));
                }
            }
        }
    }
    // Rootless, the upper directory holds host ids: the layer gets the ids the step saw.
    for e in &mut diff.entries {
        e.uid = outcome.host_ids.inside_uid(e.uid);
        e.gid = outcome.host_ids.inside_gid(e.gid);
    }
    let stripped = if c.keep_setuid {
        Vec::new()
    } else {
        crate::builder::copy::strip_setuid(&mut diff.entries)
    };
    Ok((diff, stripped))
}

/// The step's layer: it joins the store first (named by a pass over its tar, no
/// compression) and is compressed on a thread of its own while the next steps run — what
/// they need is its lower directory; the blob is wanted at the stage's end. An opened-up
/// upper directory cannot join the store (nor one the store refused), so it is packed here,
/// before the scratch goes, and a later step unpacks the layer. Returns the layer, its
/// digest for `--json` (empty while packing) and how it is packed.
fn pack_step_layer(
    ctx: &RunContext<'_, '_>,
    planned: &Planned,
    diff: regbuild_rootfs::upper::UpperDiff,
    root: &StepRoot<'_>,
    outcome: &regbuild_sandbox::Outcome,
) -> Result<(NewLayer, String, &'static str), StepError> {
    let c = ctx.copy;
    let opts = layer_options(c);
    let packing = if outcome.opened_up.is_empty() {
        tokio::task::block_in_place(|| {
            start_packing(&planned.key, diff, &root.upper, root.store, &opts, c.tmp)
        })?
    } else {
        Err(diff)
    };
    let diff = match packing {
        Ok(p) => return Ok((NewLayer::Packing(p), String::new(), "background")),
        Err(diff) => diff,
    };
    let (step_text, progress) = (c.step_text.to_string(), c.progress);
    let mut built = tokio::task::block_in_place(|| {
        diff.build_layer(&opts, c.tmp, &mut |bytes| {
            progress.event(regbuild_registry::progress::Event::LayerPacking {
                id: &step_text,
                bytes,
            })
        })
    })?;
    built.key = Some(planned.key.clone());
    let built = Arc::new(built);
    record_packed(
        &built,
        &planned.key,
        c.step_text,
        c.cache,
        progress,
        ctx.early,
    );
    let digest = built.digest.to_string();
    Ok((NewLayer::Built(built), digest, "in place"))
}

/// Names the layer of `diff` (a pass over its tar), moves `upper` into `store` as that
/// layer's lower directory and starts packing the blob from there on a thread. Gives `diff`
/// back when the directory cannot join the store (the caller packs it in place).
fn start_packing(
    key: &str,
    mut diff: regbuild_rootfs::upper::UpperDiff,
    upper: &Path,
    store: &LowerStore,
    opts: &regbuild_fs::layer::LayerOptions,
    tmp: &Path,
) -> Result<Result<crate::builder::stage::Packing, regbuild_rootfs::upper::UpperDiff>, StepError> {
    let (diff_id, _) = regbuild_fs::layer::diff_id_of(diff.entries.clone(), opts)?;
    let lower = match store.adopt(&diff_id, upper) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::debug!(error = %e, "RUN: upper directory not adopted into the store");
            return Ok(Err(diff));
        }
    };
    // The files moved with the directory (or an equal copy was there already).
    for e in &mut diff.entries {
        if let regbuild_fs::layer::EntryKind::File { source, .. } = &mut e.kind {
            if let Ok(rest) = source.strip_prefix(upper) {
                *source = lower.join(rest);
            }
        }
    }
    let entries = diff.entries.clone();
    let (opts, tmp, owned_key) = (*opts, tmp.to_path_buf(), key.to_string());
    let handle = std::thread::spawn(move || {
        let mut built = diff.build_layer(&opts, &tmp, &mut |_| {})?;
        built.key = Some(owned_key);
        Ok(Arc::new(built))
    });
    Ok(Ok(crate::builder::stage::Packing {
        diff_id,
        key: key.to_string(),
        lower,
        entries,
        handle,
    }))
}

/// Waits for a layer packed in the background and records it as a packed RUN layer is
/// (the local cache, its stored blob, the early uploader, progress).
pub fn finish_packing(
    packing: crate::builder::stage::Packing,
    label: &str,
    cache: Option<&crate::builder::cache::LayerCache>,
    progress: &dyn regbuild_registry::progress::Progress,
    early: Option<&regbuild_registry::publish::EarlyUploads>,
) -> Result<Arc<regbuild_fs::layer::BuiltLayer>, StepError> {
    let (key, diff_id) = (packing.key.clone(), packing.diff_id.clone());
    let waited = Instant::now();
    let built = tokio::task::block_in_place(|| packing.join())?;
    // What the build waited for beyond the steps (the timings' sums stay what it added).
    let waited = waited.elapsed().as_secs_f64();
    tracing::info!(
        step = %label,
        prepare_s = 0.0,
        command_s = 0.0,
        diff_pack_s = waited,
        total_s = waited,
        packing = "joined",
        "RUN step timings"
    );
    if built.diff_id != diff_id {
        return Err(StepError::CachedLayerChanged {
            built: built.diff_id.clone(),
            expected: diff_id,
        });
    }
    record_packed(&built, &key, label, cache, progress, early);
    Ok(built)
}

/// What a packed RUN layer becomes known to: progress, the local cache (its record and its
/// stored blob, which sources cannot rebuild) and the early uploader.
fn record_packed(
    built: &Arc<regbuild_fs::layer::BuiltLayer>,
    key: &str,
    label: &str,
    cache: Option<&crate::builder::cache::LayerCache>,
    progress: &dyn regbuild_registry::progress::Progress,
    early: Option<&regbuild_registry::publish::EarlyUploads>,
) {
    progress.event(regbuild_registry::progress::Event::LayerPacked {
        id: label,
        digest: built.digest.as_str(),
        size: built.size,
    });
    if let Some(cache) = cache {
        store_blob(cache.root(), built);
        cache.put(
            key,
            &crate::builder::cache::CachedLayer {
                digest: built.digest.clone(),
                diff_id: built.diff_id.clone(),
                size: built.size,
                uncompressed_size: built.uncompressed_size,
                media_type: built.media_type.to_string(),
            },
        );
    }
    if let Some(early) = early {
        early.offer(
            built.digest.clone(),
            built.size,
            built.file.to_path_buf(),
            built.clone(),
        );
    }
}

/// Gives the entries the sandbox opened up (rootless) the permission bits they had, and
/// their opaque markers the directory's, as the upper directory's walk would have read them.
fn restore_opened_modes(entries: &mut [regbuild_fs::layer::LayerEntry], opened: &[(PathBuf, u32)]) {
    if opened.is_empty() {
        return;
    }
    let had: std::collections::HashMap<&Path, u32> =
        opened.iter().map(|(p, m)| (p.as_path(), *m)).collect();
    for e in entries {
        if let Some(m) = had.get(e.path.as_path()) {
            e.mode = *m;
        } else if e.path.file_name() == Some(std::ffi::OsStr::new(".wh..wh..opq")) {
            if let Some(m) = e.path.parent().and_then(|d| had.get(d)) {
                e.mode = m & 0o777;
            }
        }
    }
}

/// Makes the upper directory what the layer holds, for it may join the store as this
/// layer's lower and later steps on this machine must see what the registry holds: the
/// setuid bits the layer lost are dropped, and what it left out (paths regbuild provides,
/// sockets) is removed.
fn upper_as_layer(
    upper: &Path,
    diff: &regbuild_rootfs::upper::UpperDiff,
    stripped: &[String],
) -> Result<(), RunError> {
    use std::os::unix::fs::PermissionsExt;
    for p in stripped {
        let path = upper.join(p.trim_start_matches('/'));
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            let mode = m.permissions().mode() & !0o6000;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        }
    }
    for left_out in diff.excluded.iter().chain(&diff.sockets) {
        let path = upper.join(left_out);
        if let Err(e) = crate::builder::cache_dir::remove_tree(&path) {
            return Err(RunError::io(&path, std::io::Error::other(e.to_string())));
        }
    }
    Ok(())
}

/// Makes the directory `path` (absolute, in the image) below the plain root `root`, one
/// component at a time, never through a symlink: one that is met is left to the sandbox,
/// which resolves the working directory inside the root (or says it is not a directory).
fn make_dirs_in(root: &Path, path: &str) -> Result<(), RunError> {
    let mut cur = root.to_path_buf();
    for c in Path::new(path).components() {
        let std::path::Component::Normal(name) = c else {
            continue;
        };
        cur.push(name);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).map_err(|e| RunError::io(&cur, e))?
            }
            Err(e) => return Err(RunError::io(&cur, e)),
        }
    }
    Ok(())
}

/// The in-image targets of the step's mounts (left out of its layer).
fn command_text(spec: &RunSpec) -> String {
    let text = match &spec.command {
        Command::Shell(s) => s.clone(),
        Command::Exec(v) => format!("{v:?}"),
    };
    let first = text.lines().next().unwrap_or_default();
    if text.lines().nth(1).is_some() {
        format!("{first} …")
    } else {
        first.to_string()
    }
}

/// Keeps a RUN layer's blob in the local cache: it cannot be rebuilt from sources.
fn store_blob(cache_root: &Path, built: &regbuild_fs::layer::BuiltLayer) {
    let dest = stored_blob(cache_root, &built.digest);
    if dest.is_file() {
        return;
    }
    let Some(dir) = dest.parent() else { return };
    if regbuild_rootfs::scratch::create_dir_all_with_mode(dir, 0o700).is_err() {
        return;
    }
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let linked =
        std::fs::hard_link(&built.file, &tmp).is_ok() || std::fs::copy(&built.file, &tmp).is_ok();
    if linked && std::fs::rename(&tmp, &dest).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The files of a bind `from=` (only the `source` path), extracted into the build's tmp.
async fn materialize_from(
    ctx: &RunContext<'_, '_>,
    from: &CopyFrom,
    source: &str,
) -> Result<PathBuf, StepError> {
    let c = ctx.copy;
    let layers: Vec<StageLayer> = match from {
        CopyFrom::Stage(i) => c
            .stages
            .get(i)
            .ok_or(RunError::BindStageNotBuilt { from: *i })?
            .layers
            .clone(),
        CopyFrom::Image(r) => crate::builder::stage::base_layers(
            crate::image::base::named(c.bases, r)
                .ok_or_else(|| StepError::ImageNotResolved(r.clone()))?,
        ),
    };
    let dir = tempfile::Builder::new()
        .prefix("bind-from-")
        .tempdir_in(c.tmp)
        .map_err(|e| RunError::io(c.tmp, e))?
        .keep();
    let rel = crate::builder::stage::join_in_image("/", source);
    let wanted = if rel == "/" {
        Vec::new()
    } else {
        vec![PathBuf::from(rel.trim_start_matches('/'))]
    };
    crate::builder::rootfs::extract_paths(c.registry, &layers, wanted, &dir, c.tmp).await?;
    Ok(dir)
}

/// A foreign platform runs only through a registered binfmt_misc handler.
fn check_platform(platform: &Platform) -> Result<(), RunError> {
    let host = Platform::host();
    if platform.os != "linux" {
        return Err(RunError::ForeignPlatform {
            platform: platform.to_string(),
            host: host.to_string(),
            arch: platform.architecture.clone(),
        });
    }
    if platform.architecture == host.architecture {
        return Ok(());
    }
    let arch = qemu_arch(&platform.architecture);
    let registered = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.filter_map(Result::ok).any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.contains(arch)
                    && std::fs::read_to_string(e.path()).is_ok_and(|t| t.starts_with("enabled"))
            })
        })
        .unwrap_or(false);
    if registered {
        Ok(())
    } else {
        Err(RunError::ForeignPlatform {
            platform: platform.to_string(),
            host: host.to_string(),
            arch: arch.to_string(),
        })
    }
}

/// The name binfmt handlers (qemu-user-static) use for an OCI architecture.
fn qemu_arch(oci: &str) -> &str {
    match oci {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "arm",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans `spec` on a scratch stage whose config `edit` changed, with `options`: no
    /// root, no registry, no store is touched.
    fn planned(
        spec: &RunSpec,
        edit: impl FnOnce(&mut regbuild_oci::config::ImageConfig),
        options: &RunOptions,
        remote: &crate::builder::remote_cache::RemoteCache,
    ) -> Planned {
        let dir = tempfile::tempdir().unwrap();
        let registry = regbuild_registry::Registry::new(
            regbuild_registry::RegistryOptions::default(),
            regbuild_registry::CredentialSource::Fixed(Default::default()),
        );
        let (stages, bases) = (Default::default(), Default::default());
        let view = crate::builder::pathindex::View::default();
        let ctx = StepContext {
            registry: &registry,
            context: dir.path(),
            ignore: &Default::default(),
            tmp: dir.path(),
            epoch: 0,
            keep_setuid: false,
            compression: Default::default(),
            layering: Default::default(),
            cache: None,
            remote,
            workdir: "/".into(),
            stages: &stages,
            bases: &bases,
            progress: &regbuild_registry::progress::Quiet,
            step_text: "RUN make",
            defer_entries: true,
            view: &view,
            architecture: "amd64",
        };
        let store = LowerStore::open(&dir.path().join("lowers"), OverlayXattrs::User).unwrap();
        let platform = Platform::linux_amd64();
        let rctx = RunContext {
            copy: &ctx,
            options,
            store: &store,
            flat_store: &store,
            scratch: dir.path(),
            cache_root: dir.path(),
            platform: &platform,
            label: "[stage-0 1/1]".into(),
            stage: "stage-0".into(),
            step_no: 0,
            early: None,
        };
        let mut config = regbuild_oci::config::ImageConfig::scratch("linux", "amd64", None);
        edit(&mut config);
        let image = StageImage {
            config,
            layers: Vec::new(),
            base: None,
            base_listed: false,
        };
        plan(&rctx, spec, &image, vec!["sha256:parent".into()]).unwrap()
    }

    fn run_spec(command: &str) -> RunSpec {
        RunSpec {
            command: Command::Shell(command.into()),
            script: None,
            mounts: Vec::new(),
            network: None,
            args: Vec::new(),
        }
    }

    #[test]
    fn a_plan_wraps_the_shell_lets_env_win_over_args_and_keys_every_input() {
        let none = Default::default();
        let options = RunOptions::default();
        let mut spec = run_spec("make");
        spec.args = vec![("V".into(), "arg".into()), ("A".into(), "1".into())];
        let p = planned(&spec, |c| c.set_env("V", "env"), &options, &none);
        assert_eq!(p.argv, ["/bin/sh", "-c", "make"]);
        assert!(
            p.env.contains(&("V".into(), "env".into())),
            "ENV wins: {:?}",
            p.env
        );
        assert!(p.env.contains(&("A".into(), "1".into())));
        assert!(p.env.iter().any(|(k, _)| k == "PATH"), "a default PATH");
        assert!(!p.is_hit());
        let again = planned(&spec, |c| c.set_env("V", "env"), &options, &none);
        assert_eq!(p.key, again.key, "one key for one input");
        // Each input that changes the result changes the key.
        let mut other_arg = spec.clone();
        other_arg.args[1].1 = "2".into();
        let keys = [
            planned(
                &run_spec("make all"),
                |c| c.set_env("V", "env"),
                &options,
                &none,
            )
            .key,
            planned(&other_arg, |c| c.set_env("V", "env"), &options, &none).key,
            planned(&spec, |c| c.set_env("V", "other"), &options, &none).key,
            planned(&spec, |c| c.set_user("1000"), &options, &none).key,
            planned(&spec, |c| c.set_workdir("/src"), &options, &none).key,
        ];
        for k in &keys {
            assert_ne!(*k, p.key);
        }
    }

    #[test]
    fn a_secrets_value_never_reaches_the_key_and_a_registry_hit_is_a_hit() {
        let none = Default::default();
        let mut spec = run_spec("cat /run/secrets/token");
        spec.mounts = vec![RunMount::Secret {
            id: "token".into(),
            target: None,
            env: None,
            required: true,
            mode: 0o400,
            uid: 0,
            gid: 0,
        }];
        let with = |value: &str| {
            let mut options = RunOptions::default();
            options
                .secrets
                .insert("token".into(), SecretSource::Env(value.into()));
            planned(&spec, |_| {}, &options, &none).key
        };
        assert_eq!(with("TOKEN_A"), with("TOKEN_B"));
        let options = RunOptions::default();
        let key = planned(&spec, |_| {}, &options, &none).key;
        let record = crate::builder::cache::CachedLayer {
            digest: regbuild_oci::digest::Digest::of(b"layer"),
            diff_id: regbuild_oci::digest::Digest::of(b"diff"),
            size: 5,
            uncompressed_size: 4,
            media_type: regbuild_oci::manifest::OCI_LAYER_GZIP.into(),
        };
        let remote = crate::builder::remote_cache::RemoteCache {
            layers: std::collections::HashMap::from([(
                key.clone(),
                crate::builder::remote_cache::RemoteLayer {
                    record,
                    registry: "r.example".into(),
                    repository: "app".into(),
                },
            )]),
            ..Default::default()
        };
        assert!(planned(&spec, |_| {}, &options, &remote).is_hit());
    }

    #[test]
    fn foreign_architectures_map_to_binfmt_names() {
        assert_eq!(qemu_arch("arm64"), "aarch64");
        assert_eq!(qemu_arch("amd64"), "x86_64");
        assert!(check_platform(&Platform::host()).is_ok());
        let windows = Platform::new("windows", "amd64", None);
        assert!(check_platform(&windows).is_err());
    }
}
