//! `regbuild lock`: pin every base of a Dockerfile by digest in the lock file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::exit::BadInput;
use super::{CliError, GlobalArgs};
use crate::builder::orchestrate::referenced_images;
use crate::builder::BuildRequest;
use crate::lock::{self, LockFile};
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;

#[derive(Args, Debug)]
pub struct LockArgs {
    /// The build context (the Dockerfile defaults to CONTEXT/Dockerfile).
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The lock file (default: regbuild.lock beside the Dockerfile).
    #[arg(long)]
    pub lockfile: Option<PathBuf>,
    /// Only pin these platforms of multi-platform bases (comma-separated; default: all).
    #[arg(long)]
    pub platform: Option<String>,
    /// Re-resolve every base, not only those the lock file lacks.
    #[arg(long)]
    pub update: bool,
    /// Build argument `KEY=VALUE` (repeatable; `KEY` alone takes it from the environment): bases named through ARG resolve as `push` resolves them.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Pin the images this stage and the stages it needs name, as `push --target` builds it (default: the last stage).
    #[arg(long)]
    pub target: Option<String>,
}

pub async fn run(global: &GlobalArgs, args: LockArgs) -> Result<ExitCode, CliError> {
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let path = args
        .lockfile
        .clone()
        .unwrap_or_else(|| lock::default_path(&dockerfile));
    let platforms: Option<Vec<Platform>> = match &args.platform {
        None => None,
        Some(list) => Some(
            list.split(',')
                .map(|p| {
                    Platform::parse(p.trim())
                        .map_err(|e| BadInput::boxed(format!("--platform: {e}")))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let req = BuildRequest {
        context: args.context.clone(),
        dockerfile: dockerfile.clone(),
        build_args: super::push::parse_build_args(&args.build_args)?,
        target: args.target.clone(),
        platform: platforms
            .as_ref()
            .and_then(|p| p.first().cloned())
            .unwrap_or_else(Platform::linux_amd64),
        epoch: 0,
        keep_setuid: false,
        pins: None,
        overrides: Default::default(),
        planned: Default::default(),
        squash: Default::default(),
        layering: Default::default(),
        cache_from: Vec::new(),
        compression: Default::default(),
        use_cache: false,
        run: Default::default(),
        registry_cache: crate::builder::remote_cache::Mode::Off,
        dry_run: false,
    };
    let existing = LockFile::load(&path)?.unwrap_or_default();
    let registry = global.registry();
    let mut next = LockFile {
        version: 1,
        images: Vec::new(),
    };
    for (written, line) in referenced_images(&req)? {
        let reference: ImageRef = written
            .parse()
            .map_err(|e| BadInput::boxed(format!("{}:{line}: {e}", dockerfile.display())))?;
        if reference.digest.is_some() {
            continue; // pinned in the Dockerfile itself
        }
        let key = reference.to_string();
        match existing.get(&key) {
            Some(have) if !args.update => next.upsert(have.clone()),
            _ => {
                let entry = lock::resolve_entry(&registry, &reference, platforms.as_deref())
                    .await
                    .map_err(|e| format!("{}:{line}: {e}", dockerfile.display()))?;
                let note = match existing.get(&key) {
                    Some(old) if old.digest != entry.digest => format!("(was {})", old.digest),
                    Some(_) => "(unchanged)".to_string(),
                    None => "(new)".to_string(),
                };
                eprintln!("pinned {key} -> {} {note}", entry.digest);
                next.upsert(entry);
            }
        }
    }
    next.save(&path)?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}
