//! `regbuild push`: build a Dockerfile and write the image straight to the registry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{output, CliError, GlobalArgs};
use crate::build::{self, BuildRequest};
use crate::publish::{self, BlobOrigin};
use crate::reference::ImageRef;
use crate::registry::Scopes;
use crate::report::Report;

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Where to push (repeatable; every tag gets the same digest).
    #[arg(short = 't', long = "tag", required = true)]
    pub tags: Vec<String>,
    /// Build argument `KEY=VALUE` (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last).
    #[arg(long)]
    pub target: Option<String>,
    /// The platform to build for (`os/arch[/variant]`).
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write the pushed digest to this file.
    #[arg(long)]
    pub digest_file: Option<PathBuf>,
    /// Print the plan (exists / mount-from / upload per blob, each manifest) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep setuid/setgid bits on files this build writes (they are stripped by default).
    #[arg(long)]
    pub keep_setuid: bool,
}

pub async fn run(global: &GlobalArgs, args: PushArgs) -> Result<ExitCode, CliError> {
    // Everything the user typed is checked before any work.
    let tags = parse_tags(&args.tags)?;
    let build_args = parse_build_args(&args.build_args)?;
    let platform = build::builder::parse_platform(&args.platform).ok_or_else(|| {
        format!(
            "invalid --platform `{}`: expected os/arch[/variant]",
            args.platform
        )
    })?;
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    if !args.context.is_dir() {
        return Err(format!(
            "build context {} is not a directory",
            args.context.display()
        )
        .into());
    }
    let req = BuildRequest {
        context: args.context.clone(),
        dockerfile,
        build_args,
        target: args.target.clone(),
        platform,
        epoch: source_date_epoch()?,
        keep_setuid: args.keep_setuid,
    };
    let registry = global.registry();
    let progress = output::progress(args.json, global.no_progress);
    let image = build::build(&registry, &req, progress.as_ref()).await?;
    for path in &image.stripped_setuid {
        eprintln!(
            "warning: stripped setuid/setgid bits from {path} (use --keep-setuid to keep them)"
        );
    }

    let mut set = image.set.clone();
    let mut first_report: Option<Report> = None;
    let mut all_references = Vec::new();
    for (repo, repo_tags) in group_by_repository(&tags) {
        let sources: Vec<String> = set
            .blobs
            .iter()
            .filter_map(|b| match &b.origin {
                BlobOrigin::Registry {
                    registry: r,
                    repository,
                } if *r == repo.registry => Some(repository.clone()),
                _ => None,
            })
            .collect();
        let dst = registry.repo(
            &repo.registry,
            &repo.repository,
            Scopes::push(&repo.repository, sources.iter().map(String::as_str)),
        );
        let present = publish::probe(&registry, &dst, &set.blobs).await?;
        let plan = publish::plan(&set, &repo.registry, &repo.repository, &repo_tags, &present);
        if args.dry_run {
            output::print_plan(&plan, args.json)?;
            continue;
        }
        let report = publish::execute(&registry, &plan, progress.clone()).await?;
        all_references.extend(report.references.clone());
        // Later repositories mount what this one now holds instead of uploading it again.
        for b in &mut set.blobs {
            if matches!(b.origin, BlobOrigin::File(_)) {
                b.origin = BlobOrigin::Registry {
                    registry: repo.registry.clone(),
                    repository: repo.repository.clone(),
                };
            }
        }
        if first_report.is_none() {
            first_report = Some(report);
        }
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let mut report = first_report.ok_or("no tag to push")?;
    report.references = all_references;
    if let Some(path) = &args.digest_file {
        std::fs::write(path, format!("{}\n", report.digest))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    output::print_report(&report, &tags[0].repository_name(), args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn parse_tags(tags: &[String]) -> Result<Vec<ImageRef>, CliError> {
    tags.iter()
        .map(|t| {
            let r: ImageRef = t.parse()?;
            if r.digest.is_some() {
                return Err(format!("--tag {t}: a tag cannot name a digest").into());
            }
            Ok(r)
        })
        .collect()
}

fn parse_build_args(args: &[String]) -> Result<BTreeMap<String, String>, CliError> {
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
            _ => return Err(format!("--build-arg `{a}`: expected KEY=VALUE").into()),
        }
    }
    Ok(out)
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), else 0.
fn source_date_epoch() -> Result<u64, CliError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds").into()),
        _ => Ok(0),
    }
}

/// Tags grouped by repository, in the order first named.
fn group_by_repository(tags: &[ImageRef]) -> Vec<(ImageRef, Vec<String>)> {
    let mut groups: Vec<(ImageRef, Vec<String>)> = Vec::new();
    for t in tags {
        let tag = t.tag.clone().unwrap_or_else(|| "latest".into());
        match groups
            .iter_mut()
            .find(|(r, _)| r.registry == t.registry && r.repository == t.repository)
        {
            Some((_, list)) => {
                if !list.contains(&tag) {
                    list.push(tag);
                }
            }
            None => groups.push((t.clone(), vec![tag])),
        }
    }
    groups
}
