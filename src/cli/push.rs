//! `regbuild push`: build a Dockerfile and write the image straight to the registry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::exit::BadInput;
use super::{output, CliError, GlobalArgs};
use crate::builder::BuildRequest;
use crate::lock;
use crate::push::{self, LockMode, PushRequest};
use crate::workspace::{self, run::PushAllOptions, Workspace};
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use std::io::Write;

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", help_heading = "Build")]
    pub file: Option<PathBuf>,
    /// Required (unless --all): where to push, `host/repository:tag` (repeatable; every tag
    /// gets the same digest).
    #[arg(
        short = 't',
        long = "tag",
        value_name = "REF",
        required_unless_present = "all"
    )]
    pub tags: Vec<String>,
    /// An image whose layers may be reused by layer key instead of packed (repeatable; the
    /// tags being pushed are always looked at). `--no-cache` turns this off too.
    #[arg(
        long = "cache-from",
        value_name = "REF",
        help_heading = "Cache and upload"
    )]
    pub cache_from: Vec<String>,
    /// Do not upload new layers while they are packed (one streamed PATCH of unknown
    /// length); upload each after packing instead, once a HEAD says it is missing.
    #[arg(long, help_heading = "Cache and upload")]
    pub no_stream_upload: bool,
    /// Build every image of the workspace (regbuild.toml) in dependency order. Each image's
    /// tags, platforms and build args come from the workspace file; options that would apply
    /// to one image (`-t`, `--sbom`, `--squash`, `--cache-from`, …) are refused with it.
    #[arg(
        long,
        conflicts_with_all = [
            "context", "tags", "file", "target", "build_args", "platform", "cache_from",
            "no_cache", "registry_cache", "cache_mounts", "cache_mounts_max", "lockfile",
            "locked", "digest_file", "metadata_file", "squash", "compression", "layering",
            "sbom", "provenance", "attest", "debug_tag", "debug_from",
        ],
        help_heading = "Workspace (--all)"
    )]
    pub all: bool,
    /// The workspace file for --all.
    #[arg(
        long,
        default_value = "regbuild.toml",
        help_heading = "Workspace (--all)"
    )]
    pub workspace: PathBuf,
    /// With --all: images whose base changed but whose own inputs did not are rebased
    /// onto the new base instead of rebuilt.
    #[arg(long, requires = "all", help_heading = "Workspace (--all)")]
    pub rebase: bool,
    /// Build argument `KEY=VALUE` (repeatable; `KEY` alone takes it from the environment).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", help_heading = "Build")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last).
    #[arg(long, help_heading = "Build")]
    pub target: Option<String>,
    /// Platforms to build for, comma-separated (`os/arch[/variant]`); several push an index.
    #[arg(long, default_value = "linux/amd64", help_heading = "Build")]
    pub platform: String,
    /// The lock file (default: regbuild.lock beside the Dockerfile). When it exists, bases
    /// are built from its pinned digests and new bases are added to it.
    #[arg(long, help_heading = "Base pinning")]
    pub lockfile: Option<PathBuf>,
    /// Fail if the lock file is missing or would have to change.
    #[arg(long, help_heading = "Base pinning")]
    pub locked: bool,
    /// Print one JSON object instead of text.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Write the pushed digest to this file.
    #[arg(long, help_heading = "Output")]
    pub digest_file: Option<PathBuf>,
    /// Write what was pushed as buildx's `--metadata-file` JSON (`containerimage.digest`,
    /// `containerimage.descriptor`, `containerimage.config.digest`, `image.name`): for the CI
    /// steps that sign or attest after the push.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub metadata_file: Option<PathBuf>,
    /// Print the plan (exists / mount-from / upload per blob, each manifest) and write nothing.
    #[arg(long, help_heading = "Output")]
    pub dry_run: bool,
    /// Keep setuid/setgid bits on files this build writes (they are stripped by default).
    #[arg(long, help_heading = "Minimal and hardened images")]
    pub keep_setuid: bool,
    /// One layer for the whole image (`--squash`, base included) or only for the layers
    /// this build adds (`--squash=new`).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "all", default_value = "none", help_heading = "Minimal and hardened images")]
    pub squash: SquashArg,
    /// Layer compression: `gzip[:level]` (default level 6) or `zstd[:level]` (default 3;
    /// media type `application/vnd.oci.image.layer.v1.tar+zstd`).
    #[arg(long, default_value = "gzip", value_parser = regbuild_fs::compress::Compression::parse, help_heading = "Layers")]
    pub compression: regbuild_fs::compress::Compression,
    /// `single`: one layer per COPY/ADD. `auto`: a COPY of 32 MiB or more is split into
    /// several layers by path (content-defined), so that a changed file re-packs and
    /// re-uploads only its part.
    #[arg(long, default_value = "single", value_parser = crate::builder::layering::Layering::parse, help_heading = "Layers")]
    pub layering: crate::builder::layering::Layering,
    /// A secret for `RUN --mount=type=secret,id=ID`: `id=ID,src=PATH` or `id=ID,env=VAR`
    /// (repeatable). Never written to a layer, the config, a log or --json.
    #[arg(
        long = "secret",
        value_name = "id=ID,src=PATH|env=VAR",
        help_heading = "RUN"
    )]
    pub secrets: Vec<String>,
    /// The network RUN steps get unless they say (`RUN --network`): `default` (what this
    /// machine reaches), `none` (loopback only) or `host`.
    #[arg(long, value_name = "MODE", help_heading = "RUN")]
    pub network: Option<String>,
    /// How RUN steps get their filesystem and layer: `overlayfs`, `native` (a copy of the
    /// root filesystem per step and a snapshot diff: slower, works anywhere) or `auto`
    /// (overlayfs, else native, said at -v).
    #[arg(
        long,
        value_name = "auto|overlayfs|native",
        default_value = "auto",
        env = "REGBUILD_SNAPSHOTTER",
        help_heading = "RUN"
    )]
    pub snapshotter: String,
    /// How RUN steps are isolated: `sandbox` (new mount, pid, ipc and uts namespaces;
    /// rootless through a user namespace), `userns` (root in a container without
    /// CAP_SYS_ADMIN that allows user namespaces, as podman's default: the same namespaces
    /// in a user namespace of the container's ids, no /proc), `chroot` (root in a container
    /// that refuses namespaces, as Docker's default: no namespace, the container is the
    /// sandbox, as with kaniko) or `auto` (the first of these that works, said at -v and
    /// in a warning).
    #[arg(
        long,
        value_name = "auto|sandbox|userns|chroot",
        default_value = "auto",
        env = "REGBUILD_ISOLATION",
        help_heading = "RUN"
    )]
    pub isolation: String,
    /// Lowers the largest file a RUN step may leave below the 64 GiB regbuild's layer
    /// reader accepts (never raises it). Hidden: for tests, which cannot write 64 GiB.
    #[arg(long, hide = true, value_name = "SIZE", value_parser = super::parse_size_arg)]
    pub max_layer_file_size: Option<u64>,
    /// Push a software bill of materials of each image as referrers of its manifest: SPDX
    /// 2.3 JSON and CycloneDX 1.6 JSON (its operating-system packages from dpkg's and apk's
    /// databases, each with the layer and instruction that brought it, the base image by
    /// digest, the layers this build added).
    #[arg(long, help_heading = "Supply chain")]
    pub sbom: bool,
    /// Push SLSA v1 build provenance (an in-toto statement) of each image as a referrer of
    /// its manifest: `mode=min` (the default: without build args) or `mode=max`.
    #[arg(long, value_name = "mode=min|max", num_args = 0..=1, require_equals = true, default_missing_value = "mode=min", value_parser = crate::provenance::Mode::parse, help_heading = "Supply chain")]
    pub provenance: Option<crate::provenance::Mode>,
    /// buildx's spelling: `type=sbom`, `type=provenance[,mode=min|max]` (repeatable).
    #[arg(
        long,
        value_name = "type=sbom|provenance[,mode=…]",
        help_heading = "Supply chain"
    )]
    pub attest: Vec<String>,
    /// Do not use the local layer cache ($REGBUILD_CACHE, default ~/.cache/regbuild).
    #[arg(long, help_heading = "Cache and upload")]
    pub no_cache: bool,
    /// What the build cache artifact pushed beside the image holds, which a fresh runner
    /// reads: `min` (default: the path lists of the image's base and RUN layers, its RUN
    /// steps' key inputs, cache mounts with --cache-mounts registry), `max` (also every
    /// builder stage's layers, so a fresh runner re-runs none of them: they become as
    /// readable as the image) or `off`.
    #[arg(
        long,
        value_name = "off|min|max",
        default_value = "min",
        value_parser = crate::builder::remote_cache::Mode::parse,
        help_heading = "Cache and upload"
    )]
    pub registry_cache: crate::builder::remote_cache::Mode,
    /// Where `RUN --mount=type=cache` directories live: `local` (this machine's cache
    /// directory only) or `registry` (also stored in the build cache artifact after the
    /// build when changed, and restored on a runner that lacks them).
    #[arg(
        long,
        value_enum,
        default_value = "local",
        value_name = "local|registry",
        help_heading = "Cache and upload"
    )]
    pub cache_mounts: CacheMountsArg,
    /// With `--cache-mounts registry`: a cache mount holding more than this is kept local
    /// (warned).
    #[arg(long, default_value = "1GiB", value_name = "SIZE", value_parser = super::parse_size_arg, help_heading = "Cache and upload")]
    pub cache_mounts_max: u64,
    /// Do not warn when the image runs as root.
    #[arg(long, help_heading = "Minimal and hardened images")]
    pub allow_root: bool,
    /// Also push a debug variant here: the image plus the layers of --debug-from on top.
    #[arg(
        long,
        requires = "debug_from",
        help_heading = "Minimal and hardened images"
    )]
    pub debug_tag: Option<String>,
    /// The image whose layers the debug variant adds (e.g. a busybox providing /bin/sh).
    #[arg(
        long,
        requires = "debug_tag",
        help_heading = "Minimal and hardened images"
    )]
    pub debug_from: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheMountsArg {
    Local,
    Registry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SquashArg {
    None,
    New,
    All,
}

impl From<SquashArg> for crate::builder::squash::Squash {
    fn from(a: SquashArg) -> Self {
        match a {
            SquashArg::None => Self::None,
            SquashArg::New => Self::New,
            SquashArg::All => Self::All,
        }
    }
}

/// What the `--attest` arguments ask for.
#[derive(Default)]
struct Attests {
    sbom: bool,
    provenance: Option<crate::provenance::Mode>,
}

/// `--attest type=sbom`, `--attest type=provenance[,mode=min|max]` (buildx's spelling).
fn attest_args(args: &[String]) -> Result<Attests, CliError> {
    let mut out = Attests::default();
    for a in args {
        let bad = |why: &str| BadInput::boxed(format!("--attest {a}: {why}"));
        let mut kind = None;
        let mut mode = crate::provenance::Mode::Min;
        for part in a.split(',') {
            match part.split_once('=') {
                Some(("type", t)) => kind = Some(t.to_string()),
                Some(("mode", m)) => {
                    mode = crate::provenance::Mode::parse(m).map_err(|e| bad(&e))?
                }
                _ => return Err(bad("use type=sbom or type=provenance[,mode=min|max]")),
            }
        }
        match kind.as_deref() {
            Some("sbom") => out.sbom = true,
            Some("provenance") => out.provenance = Some(mode),
            _ => return Err(bad("use type=sbom or type=provenance[,mode=min|max]")),
        }
    }
    Ok(out)
}

/// `--network`, `--secret`, `--snapshotter` and `--isolation`, checked before any work.
fn run_options(args: &PushArgs) -> Result<crate::builder::run::RunOptions, CliError> {
    use regbuild_frontend::stages::RunNetwork;
    let network = match args.network.as_deref() {
        None => None,
        Some("default") => Some(RunNetwork::Default),
        Some("none") => Some(RunNetwork::None),
        Some("host") => Some(RunNetwork::Host),
        Some(other) => {
            return Err(BadInput::boxed(format!(
                "--network {other}: use default, none or host"
            )))
        }
    };
    let mut secrets = BTreeMap::new();
    for s in &args.secrets {
        let (id, source) = crate::builder::run::parse_secret(s)
            .map_err(|e| BadInput::boxed(format!("--secret: {e}")))?;
        secrets.insert(id, source);
    }
    let snapshotter = crate::builder::run::Snapshotter::parse(&args.snapshotter)
        .map_err(|e| BadInput::boxed(format!("--snapshotter {e}")))?;
    let isolation = crate::builder::run::Isolation::parse(&args.isolation)
        .map_err(|e| BadInput::boxed(format!("--isolation {e}")))?;
    Ok(crate::builder::run::RunOptions {
        network,
        secrets,
        snapshotter,
        isolation,
        max_file_size: args.max_layer_file_size,
        cache_mounts: crate::builder::remote_cache::mounts::CacheMounts {
            registry: args.cache_mounts == CacheMountsArg::Registry,
            max: args.cache_mounts_max,
        },
        ..Default::default()
    })
}

/// The push `args` ask for, every value checked (a refusal exits 2, before any request).
fn push_request(args: &PushArgs) -> Result<PushRequest, CliError> {
    let tags = parse_tags(&args.tags)?;
    let build_args = parse_build_args(&args.build_args)?;
    let platforms = parse_platforms(&args.platform)?;
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    if !args.context.is_dir() {
        return Err(BadInput::boxed(format!(
            "build context {} is not a directory",
            args.context.display()
        )));
    }
    let lock = LockMode {
        path: args
            .lockfile
            .clone()
            .unwrap_or_else(|| lock::default_path(&dockerfile)),
        locked: args.locked,
    };
    let mut cache_from = tags.clone();
    for r in &args.cache_from {
        let r: ImageRef = r
            .parse()
            .map_err(|e| BadInput::boxed(format!("--cache-from {r}: {e}")))?;
        if !cache_from.contains(&r) {
            cache_from.push(r);
        }
    }
    let run = run_options(args)?;
    let attests = attest_args(&args.attest)?;
    let req = PushRequest {
        build: BuildRequest {
            run,
            context: args.context.clone(),
            dockerfile,
            build_args,
            target: args.target.clone(),
            platform: platforms[0].clone(),
            epoch: source_date_epoch()?,
            keep_setuid: args.keep_setuid,
            pins: None,
            overrides: Default::default(),
            planned: Default::default(),
            squash: args.squash.into(),
            layering: args.layering,
            cache_from,
            compression: args.compression,
            use_cache: !args.no_cache,
            registry_cache: args.registry_cache,
            dry_run: args.dry_run,
        },
        platforms,
        tags,
        dry_run: args.dry_run,
        lock,
        stream_upload: !args.no_stream_upload,
        sbom: args.sbom || attests.sbom,
        provenance: args.provenance.or(attests.provenance),
    };
    Ok(req)
}

/// The warnings of a built image, each once: the build's, each stripped setuid bit (and
/// the flag that keeps them), an image that runs as root.
fn say_built_warnings(prepared: &push::Prepared, allow_root: bool) {
    let mut said = std::collections::BTreeSet::new();
    for w in prepared.images.iter().flat_map(|i| i.warnings.iter()) {
        if said.insert(w) {
            eprintln!("warning: {w}");
        }
    }
    for path in &prepared.stripped_setuid {
        eprintln!("warning: stripped setuid/setgid bits from {path}");
    }
    if !prepared.stripped_setuid.is_empty() {
        eprintln!(
            "warning: regbuild strips setuid/setgid bits by default, where docker build (BuildKit) keeps them: pass --keep-setuid to keep them ({} file(s) above)",
            prepared.stripped_setuid.len()
        );
    }
    if !allow_root {
        if let Some(image) = prepared.images.first() {
            if runs_as_root(image.config.user().as_deref()) {
                eprintln!("warning: the image runs as root (no USER, or USER 0): add a USER instruction, or pass --allow-root");
            }
        }
    }
}

pub async fn run(global: &GlobalArgs, args: PushArgs) -> Result<ExitCode, CliError> {
    // Held to the end: `regbuild prune` removes nothing while a push may be reading it.
    let _cache = hold_cache()?;
    if args.all {
        return run_all(global, &args).await;
    }
    // Everything the user typed is checked before any work.
    let req = push_request(&args)?;
    let tags = req.tags.clone();
    let debug_from = args
        .debug_from
        .as_deref()
        .map(str::parse::<ImageRef>)
        .transpose()?;
    let debug_tag = args
        .debug_tag
        .as_deref()
        .map(str::parse::<ImageRef>)
        .transpose()?;
    let platforms = req.platforms.clone();
    let registry = global.registry();
    let progress = output::progress(args.json, global.no_progress);
    for warning in regbuild_frontend::lint::check_file(&req.build.dockerfile) {
        eprintln!("warning: {warning}");
    }
    let allow_root = args.allow_root;
    // Said once the image is built, before the plan or any manifest.
    let warn = move |prepared: &push::Prepared| say_built_warnings(prepared, allow_root);
    let result = match push::push_with(&registry, req, progress.clone(), &warn).await {
        Err(push::PushError::Build(e)) if args.dry_run => match *e {
            crate::builder::BuildError::WouldRun(stop) => {
                output::print_dry_run_stop(&stop, args.json)?;
                return Ok(ExitCode::SUCCESS);
            }
            other => return Err(push::PushError::Build(Box::new(other)).into()),
        },
        other => other?,
    };
    if result.lock_written {
        eprintln!("updated the lock file with new bases");
    }
    if args.dry_run {
        for plan in &result.plans {
            output::print_plan(plan, args.json)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = result.report.clone().ok_or("no tag to push")?;
    let debug = match (&debug_tag, &debug_from) {
        (Some(tag), Some(from)) => {
            let tmp = tempfile::tempdir()?;
            let parts: Vec<_> = platforms.iter().zip(result.images.iter()).collect();
            let (set, _) =
                push::debug::variant(&registry, &parts, from, &tags[0], tmp.path()).await?;
            let (r, _) = push::write_to_tags(
                &registry,
                set,
                std::slice::from_ref(tag),
                push::WriteOptions {
                    dry_run: false,
                    remember: !args.no_cache,
                },
                progress,
                None,
            )
            .await?;
            let r = r.ok_or("the debug variant was not written")?;
            eprintln!("debug variant: {}@{}", tag.repository_name(), r.digest);
            Some(r)
        }
        _ => None,
    };
    if let Some(path) = &args.digest_file {
        std::fs::write(path, format!("{}\n", report.digest))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let (Some(path), Some(plan)) = (&args.metadata_file, result.plans.first()) {
        let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let metadata = super::metadata::of(plan, &names).ok_or("no manifest was pushed")?;
        super::metadata::write(path, &metadata).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["setuid_stripped"] = serde_json::json!(result.stripped_setuid);
        // Per RUN step: executed or cached, seconds, layer digest.
        let steps: Vec<_> = result
            .images
            .iter()
            .flat_map(|i| i.run_steps.iter())
            .collect();
        v["steps"] = serde_json::to_value(&steps)?;
        if let Some(d) = &debug {
            v["debug"] = serde_json::to_value(d)?;
        }
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::print_report(&report, &tags[0].repository_name(), false)?;
    Ok(ExitCode::SUCCESS)
}

/// USER unset, empty, `0`, `root`, or `0:…`/`root:…`.
fn runs_as_root(user: Option<&str>) -> bool {
    let user = user.unwrap_or("").trim();
    let name = user.split(':').next().unwrap_or("");
    name.is_empty() || name == "0" || name == "root"
}

/// The cache directory's shared lock, when there is a cache directory.
/// A cache directory that cannot be made is no cache (the build works without one), as
/// the layer cache treats it.
fn hold_cache() -> Result<Option<crate::builder::cache_dir::CacheLock>, CliError> {
    use crate::builder::cache_dir::{CacheLock, CacheLockError};
    let Some(root) = crate::builder::cache::root() else {
        return Ok(None);
    };
    match tokio::task::block_in_place(|| CacheLock::shared(&root)) {
        Ok(lock) => Ok(Some(lock)),
        Err(CacheLockError::Io { path, source }) => {
            tracing::debug!(path = %path.display(), error = %source, "cache directory not locked");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// `push --all`: the whole workspace.
async fn run_all(global: &GlobalArgs, args: &PushArgs) -> Result<ExitCode, CliError> {
    let ws = Workspace::load(&args.workspace)?;
    let registry = global.registry();
    let progress = output::progress(args.json, global.no_progress);
    let opts = PushAllOptions {
        rebase: args.rebase,
        dry_run: args.dry_run,
        epoch: source_date_epoch()?,
        keep_setuid: args.keep_setuid,
        run: run_options(args)?,
    };
    let outcomes = workspace::push_all(&registry, &ws, &opts, progress).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "images": outcomes }))?;
        writeln!(out)?;
    } else {
        for o in &outcomes {
            let repo = o
                .references
                .first()
                .map(|r| r.rsplit_once(':').map_or(r.as_str(), |(a, _)| a))
                .unwrap_or("");
            writeln!(
                out,
                "{:<9} {:<16} {repo}@{}",
                format!("{:?}", o.outcome).to_lowercase(),
                o.name,
                o.digest
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `linux/amd64,linux/arm64`.
fn parse_platforms(s: &str) -> Result<Vec<Platform>, CliError> {
    let mut out: Vec<Platform> = Vec::new();
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = Platform::parse(p).map_err(|e| BadInput::boxed(format!("--platform: {e}")))?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    if out.is_empty() {
        return Err(BadInput::boxed("--platform names no platform"));
    }
    Ok(out)
}

fn parse_tags(tags: &[String]) -> Result<Vec<ImageRef>, CliError> {
    tags.iter()
        .map(|t| {
            let r: ImageRef = t.parse()?;
            if r.digest.is_some() {
                return Err(BadInput::boxed(format!(
                    "--tag {t}: a tag cannot name a digest"
                )));
            }
            Ok(r)
        })
        .collect()
}

/// `--build-arg` values as `push` and `lock` read them: `KEY=VALUE`, or `KEY` from the
/// environment as Docker takes it.
pub(super) fn parse_build_args(args: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for a in args {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            // Docker takes `--build-arg NAME` from the environment.
            _ if !a.is_empty() && !a.contains('=') => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
            _ => {
                return Err(BadInput::boxed(format!(
                    "--build-arg `{a}`: expected KEY=VALUE"
                )))
            }
        }
    }
    Ok(out)
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), else 0.
fn source_date_epoch() -> Result<u64, CliError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().map_err(|_| {
            BadInput::boxed(format!(
                "SOURCE_DATE_EPOCH=`{v}` is not a number of seconds"
            ))
        }),
        _ => Ok(0),
    }
}
