//! `regbuild prune`: frees the local cache directory (see `crate::prune`).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;

use super::exit::BadInput;
use super::{CliError, GlobalArgs};
use crate::builder::cache_dir::CacheLock;
use crate::prune::{self, select::Policy, PruneError};

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove everything, the per-layer records included.
    #[arg(long, conflicts_with_all = ["older_than", "keep_storage"])]
    pub all: bool,
    /// Remove what was not used for longer than this (`7d`, `36h`, `90m`). Default `7d`
    /// unless --keep-storage is given.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// Keep at most this much (`10GB`, `512MiB`), the most recently used first.
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size_arg)]
    pub keep_storage: Option<u64>,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

pub async fn run(_global: &GlobalArgs, args: PruneArgs) -> Result<ExitCode, CliError> {
    let root = crate::builder::cache::root().ok_or(PruneError::NoCacheDir)?;
    if !root.exists() {
        report(&args, &[], &[], &root, 0)?;
        return Ok(ExitCode::SUCCESS);
    }
    let policy = Policy {
        all: args.all,
        older_than: match (args.older_than, args.keep_storage) {
            (None, None) => Some(Duration::from_secs(7 * 86_400)),
            (o, _) => o,
        },
        keep_bytes: args.keep_storage,
    };
    if args.keep_storage == Some(0) && !args.all {
        return Err(BadInput::boxed(
            "--keep-storage 0: use --all to remove everything",
        ));
    }
    // No push may run meanwhile: one could be reading what is removed.
    let _lock = CacheLock::exclusive(&root).map_err(PruneError::from)?;
    let mut entries = tokio::task::block_in_place(|| prune::scan::scan(&root))?;
    entries.extend(prune::scan::scan_build_tmp(&std::env::temp_dir())?);
    let chosen: Vec<&prune::Entry> = prune::select::select(&entries, &policy, SystemTime::now())
        .into_iter()
        .map(|i| &entries[i])
        .collect();
    // One entry that cannot go does not keep the others: each failure is said, and the exit
    // status is 1.
    let mut failed = Vec::new();
    let mut removed = Vec::new();
    for e in chosen {
        if args.dry_run {
            removed.push(e);
            continue;
        }
        match tokio::task::block_in_place(|| prune::remove::remove(e)) {
            Ok(()) => removed.push(e),
            Err(err) => {
                eprintln!("warning: not removed: {err}");
                failed.push((e.path.display().to_string(), err.to_string()));
            }
        }
    }
    let kept: u64 =
        entries.iter().map(|e| e.bytes).sum::<u64>() - removed.iter().map(|e| e.bytes).sum::<u64>();
    report(&args, &removed, &failed, &root, kept)?;
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::FAILED)
    })
}

fn report(
    args: &PruneArgs,
    chosen: &[&prune::Entry],
    failed: &[(String, String)],
    root: &std::path::Path,
    kept: u64,
) -> Result<(), CliError> {
    let freed: u64 = chosen.iter().map(|e| e.bytes).sum();
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<serde_json::Value> = chosen
            .iter()
            .map(|e| {
                serde_json::json!({
                    "kind": e.kind,
                    "path": e.path.display().to_string(),
                    "bytes": e.bytes,
                    "last_used": humantime::format_rfc3339_seconds(e.last_used).to_string(),
                })
            })
            .collect();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "cache": root.display().to_string(),
                "dry_run": args.dry_run,
                "removed": list,
                "freed_bytes": freed,
                "kept_bytes": kept,
                "not_removed": failed
                    .iter()
                    .map(|(path, error)| serde_json::json!({ "path": path, "error": error }))
                    .collect::<Vec<_>>(),
            }),
        )?;
        writeln!(out)?;
    } else {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for e in chosen {
            writeln!(
                out,
                "{verb} {:<11} {:>10}  {}",
                serde_json::to_value(e.kind)?.as_str().unwrap_or_default(),
                mb(e.bytes),
                e.path.display()
            )?;
        }
        writeln!(
            out,
            "{}: {} entries, {} freed, {} kept",
            root.display(),
            chosen.len(),
            mb(freed),
            mb(kept)
        )?;
    }
    Ok(())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
