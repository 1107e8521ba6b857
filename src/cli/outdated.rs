//! `regbuild outdated`: which bases have moved since they were pinned. Exit 0 when none
//! moved, 1 when one did (CI triggers rebuilds on it), 2 on errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::exit::BadInput;
use super::{CliError, GlobalArgs};
use crate::lock::{self, LockFile};
use crate::outdated::{self, BaseStatus};
use regbuild_oci::reference::ImageRef;
use regbuild_registry::Registry;

#[derive(Args, Debug)]
pub struct OutdatedArgs {
    /// Pushed images to check (their base annotations); without any, the Dockerfile's lock file.
    pub images: Vec<String>,
    /// The Dockerfile whose lock file is checked (default ./Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The lock file to check (default: regbuild.lock beside the Dockerfile).
    #[arg(long)]
    pub lockfile: Option<PathBuf>,
    /// One JSON object: {"bases": [{"image","reference","pinned","current","moved"}], "moved": N}.
    #[arg(long)]
    pub json: bool,
    /// Check every image of the workspace (regbuild.toml).
    #[arg(long, conflicts_with_all = ["images", "file", "lockfile"])]
    pub all: bool,
    /// The workspace file for --all.
    #[arg(long, default_value = "regbuild.toml")]
    pub workspace: PathBuf,
}

pub async fn run(global: &GlobalArgs, args: OutdatedArgs) -> Result<ExitCode, CliError> {
    let registry = global.registry();
    // `outdated` keeps 1 for "a base moved" (CI rebuilds on it): `cli::main` makes every
    // error of this command 2, so one that could not tell never looks like one.
    let list = statuses(&registry, &args).await?;
    print(&list, args.json)?;
    Ok(if list.iter().any(|s| s.moved) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn statuses(registry: &Registry, args: &OutdatedArgs) -> Result<Vec<BaseStatus>, CliError> {
    let mut out = Vec::new();
    if args.all {
        let ws = crate::workspace::Workspace::load(&args.workspace)?;
        return Ok(crate::workspace::outdated_all(registry, &ws).await?);
    }
    if !args.images.is_empty() {
        for i in &args.images {
            let image: ImageRef = i.parse()?;
            let checked = outdated::check_image(registry, &image.to_string(), &image).await?;
            if checked.is_empty() {
                return Err(format!(
                    "{image}: no org.opencontainers.image.base.* or dev.regbuild.sources annotations"
                )
                .into());
            }
            out.extend(checked);
        }
        return Ok(out);
    }
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from("Dockerfile"));
    let path = args
        .lockfile
        .clone()
        .unwrap_or_else(|| lock::default_path(&dockerfile));
    let lock = LockFile::load(&path)?.ok_or_else(|| {
        BadInput::boxed(format!(
            "{}: no lock file (run `regbuild lock`)",
            path.display()
        ))
    })?;
    for entry in &lock.images {
        let reference: ImageRef = entry
            .reference
            .parse()
            .map_err(|e| BadInput::boxed(format!("{}: {e}", path.display())))?;
        out.push(
            outdated::check(
                registry,
                &path.display().to_string(),
                &reference,
                &entry.digest,
            )
            .await?,
        );
    }
    Ok(out)
}

fn print(list: &[BaseStatus], json: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        let moved = list.iter().filter(|s| s.moved).count();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({"bases": list, "moved": moved}),
        )?;
        return writeln!(out);
    }
    for s in list {
        writeln!(
            out,
            "{}  {}  pinned {}  current {}  {}",
            s.image,
            s.reference,
            s.pinned,
            s.current,
            if s.moved { "MOVED" } else { "up to date" }
        )?;
    }
    Ok(())
}
