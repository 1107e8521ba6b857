//! `regbuild promote SRC DST`.

use std::process::ExitCode;

use clap::Args;

use super::{output, CliError, GlobalArgs};
use crate::promote::{self, PromoteRequest};
use regbuild_oci::reference::ImageRef;

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// The image or index to copy: `registry/repo:tag` or `registry/repo@sha256:…`.
    pub src: String,
    /// Where to: `registry/repo[:tag]` (no tag: SRC's tag).
    pub dst: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print what would be done (exists / mount-from / copy-from per blob) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not copy referrers (signatures, SBOMs, attestations).
    #[arg(long)]
    pub no_referrers: bool,
    /// Also copy regbuild's build cache artifacts (builder stages' layers, path lists,
    /// cache mounts), which are left behind by default.
    #[arg(long, conflicts_with = "no_referrers")]
    pub with_build_cache: bool,
}

pub async fn run(global: &GlobalArgs, args: PromoteArgs) -> Result<ExitCode, CliError> {
    let source: ImageRef = args.src.parse()?;
    let destination: ImageRef = args.dst.parse()?;
    let req = PromoteRequest {
        source,
        destination,
        referrers: !args.no_referrers,
        build_cache: args.with_build_cache,
    };
    let registry = global.registry();
    if args.dry_run {
        let plan = promote::plan(&registry, &req).await?;
        output::print_plan(&plan, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let progress = output::progress(args.json, global.no_progress);
    let report = promote::promote(&registry, &req, progress).await?;
    output::print_report(&report, &req.destination.repository_name(), args.json)?;
    Ok(ExitCode::SUCCESS)
}
