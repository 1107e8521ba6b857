//! What commands print on stdout: the `REPOSITORY@sha256:…` line, `--json`, and plans.

use std::io::Write;
use std::sync::Arc;

use std::io::IsTerminal;

use regbuild_registry::progress::{human_bytes, Bars, Lines, Progress, Quiet};
use regbuild_registry::publish::{BlobStep, Plan, PutAs};
use regbuild_registry::report::Report;

/// The progress reporter for a command: quiet for `--json`/`--no-progress`, bars on a
/// terminal, one line per event otherwise (CI logs).
pub fn progress(json: bool, no_progress: bool) -> Arc<dyn Progress> {
    if json || no_progress {
        Arc::new(Quiet)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::default())
    } else {
        Arc::new(Lines)
    }
}

/// Prints the result: the JSON object, or a summary on stderr and `REPO@digest` last on stdout.
pub fn print_report(report: &Report, repository: &str, json: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
        return Ok(());
    }
    use regbuild_registry::report::BlobAction::*;
    eprintln!(
        "{} blobs: {} exist, {} mounted, {} uploaded ({} bytes)",
        report.blobs.len(),
        report.count(Exists),
        report.count(Mounted),
        report.count(Uploaded),
        report.bytes_uploaded
    );
    for m in &report.manifests {
        if m.action == regbuild_registry::report::ManifestAction::Unchanged {
            eprintln!("unchanged {} (already {})", m.reference, m.digest);
        }
    }
    writeln!(out, "{repository}@{}", report.digest)
}

/// Prints a plan for `--dry-run`: one line per blob and per manifest.
/// A dry run that reached RUN steps no cache holds: each RUN step with what a build would
/// do (`cached`, `would run`), and the stages it could not plan. `--json`:
/// `{"dry_run": true, "complete": false, "steps": [...], "not_planned": [...]}`.
pub fn print_dry_run_stop(stop: &crate::builder::DryRunStop, json: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "dry_run": true,
                "complete": false,
                "steps": stop.steps,
                "not_planned": stop.not_planned,
            }),
        )?;
        return writeln!(out);
    }
    for s in &stop.steps {
        writeln!(
            out,
            "{:<10} {}:{} [{}] {}",
            s.status, stop.file, s.line, s.stage, s.instruction
        )?;
    }
    for stage in &stop.not_planned {
        writeln!(
            out,
            "not planned: stage {stage} is built from a stage with a step that would run"
        )?;
    }
    writeln!(
        out,
        "a dry run executes nothing: the layers after a step that would run, and the image, are not known"
    )
}

pub fn print_plan(plan: &Plan, json: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let blobs: Vec<_> = plan
            .blobs
            .iter()
            .map(|(b, step)| {
                let (action, from) = step_words(step);
                serde_json::json!({"digest": b.digest, "size": b.size, "action": action, "from": from})
            })
            .collect();
        let manifests: Vec<_> = plan
            .manifests
            .iter()
            .map(|m| serde_json::json!({"digest": m.digest, "media_type": m.media_type, "references": references(plan, m.put_as.clone(), &m.digest.to_string())}))
            .collect();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({"repository": format!("{}/{}", plan.registry, plan.repository), "blobs": blobs, "manifests": manifests}),
        )?;
        return writeln!(out);
    }
    for (b, step) in &plan.blobs {
        let (action, from) = step_words(step);
        match from {
            Some(f) => writeln!(
                out,
                "blob     {} {:>10}  {action} {f}",
                b.digest,
                human_bytes(b.size)
            )?,
            None => writeln!(
                out,
                "blob     {} {:>10}  {action}",
                b.digest,
                human_bytes(b.size)
            )?,
        }
    }
    for m in &plan.manifests {
        for r in references(plan, m.put_as.clone(), &m.digest.to_string()) {
            writeln!(out, "manifest {} {}  put {r}", m.digest, m.media_type)?;
        }
    }
    Ok(())
}

fn references(plan: &Plan, put_as: PutAs, digest: &str) -> Vec<String> {
    match put_as {
        PutAs::Tags if !plan.tags.is_empty() => plan.tags.clone(),
        _ => vec![digest.to_string()],
    }
}

fn step_words(step: &BlobStep) -> (&'static str, Option<String>) {
    match step {
        BlobStep::Exists => ("exists", None),
        BlobStep::Mount { from } | BlobStep::MountPushedBefore { from, .. } => {
            ("mount-from", Some(from.clone()))
        }
        BlobStep::Copy {
            registry,
            repository,
        } => ("copy-from", Some(format!("{registry}/{repository}"))),
        BlobStep::Upload { path } => ("upload", Some(path.display().to_string())),
        BlobStep::BuildAndUpload { .. } => {
            ("upload", Some("(cached layer, built on upload)".into()))
        }
        BlobStep::UploadedEarly => ("upload", Some("(uploaded while the build ran)".into())),
    }
}
