//! `regbuild rebase IMAGE --base NEWREF -t TAG`.

use std::process::ExitCode;

use clap::Args;

use super::{output, CliError, GlobalArgs};
use crate::rebase::{self, RebaseRequest};
use regbuild_oci::reference::ImageRef;

#[derive(Args, Debug)]
pub struct RebaseArgs {
    /// The image (or index) to rebase.
    pub image: String,
    /// The new base.
    #[arg(long)]
    pub base: String,
    /// The base IMAGE was built on (default: its org.opencontainers.image.base.* annotations).
    #[arg(long)]
    pub old_base: Option<String>,
    /// Where to push the result (repeatable).
    #[arg(short = 't', long = "tag", required = true)]
    pub tags: Vec<String>,
    /// Print one JSON object (the shape of `push --json`) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(global: &GlobalArgs, args: RebaseArgs) -> Result<ExitCode, CliError> {
    let image: ImageRef = args.image.parse()?;
    let new_base: ImageRef = args.base.parse()?;
    let old_base = args
        .old_base
        .as_deref()
        .map(str::parse::<ImageRef>)
        .transpose()?;
    let tags = args
        .tags
        .iter()
        .map(|t| t.parse::<ImageRef>())
        .collect::<Result<Vec<_>, _>>()?;
    let registry = global.registry();
    let progress = output::progress(args.json, global.no_progress);
    let req = RebaseRequest {
        image,
        new_base,
        old_base,
        tags: tags.clone(),
        dry_run: args.dry_run,
    };
    let done = rebase::rebase(&registry, &req, progress).await?;
    if args.dry_run {
        for plan in &done.plans {
            output::print_plan(plan, args.json)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = done.report.ok_or("no tag to push")?;
    output::print_report(&report, &tags[0].repository_name(), args.json)?;
    Ok(ExitCode::SUCCESS)
}
