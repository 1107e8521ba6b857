//! `regbuild inspect IMAGE`: per-layer sizes, file counts, wasted bytes and setuid/setgid
//! files, the image's efficiency, and `--ci` gates on them (see [`crate::inspect`] for the
//! definitions).

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{CliError, GlobalArgs};
use crate::inspect::{self, parse_fraction, parse_size, Inspection, RuleResult, Rules};
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::progress::human_bytes;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image to inspect.
    pub image: String,
    /// The platform to pick from an index (`os/arch[/variant]`).
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Check the thresholds below: exit 1 when one fails (without --ci they are ignored).
    #[arg(long)]
    pub ci: bool,
    /// --ci: fail when the efficiency (0..1, share of bytes not wasted) is below this.
    #[arg(long, value_name = "F", value_parser = parse_fraction)]
    pub lowest_efficiency: Option<f64>,
    /// --ci: fail when more bytes than this are wasted (`1000`, `20kB`, `20MB`, `1.5MiB`).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub highest_wasted_bytes: Option<u64>,
    /// --ci: fail when the wasted share of the image's bytes (0..1) is above this.
    #[arg(long, value_name = "F", value_parser = parse_fraction)]
    pub highest_user_wasted_percent: Option<f64>,
    /// Print the image's SBOM (`push --sbom`) instead: `spdx` (the default) or `cyclonedx`.
    #[arg(long, value_name = "spdx|cyclonedx", num_args = 0..=1, require_equals = true, default_missing_value = "spdx", conflicts_with_all = ["ci", "provenance"])]
    pub sbom: Option<String>,
    /// Print the image's SLSA provenance (`push --provenance`) instead.
    #[arg(long, conflicts_with = "ci")]
    pub provenance: bool,
}

/// The artifact type `--sbom` or `--provenance` asks for.
fn attestation_type(args: &InspectArgs) -> Result<Option<&'static str>, CliError> {
    Ok(match (args.sbom.as_deref(), args.provenance) {
        (Some("spdx"), _) => Some(crate::sbom::spdx::MEDIA_TYPE),
        (Some("cyclonedx"), _) => Some(crate::sbom::cyclonedx::MEDIA_TYPE),
        (Some(other), _) => {
            return Err(super::exit::BadInput::boxed(format!(
                "--sbom={other}: use spdx or cyclonedx"
            )))
        }
        (None, true) => Some(crate::provenance::statement::MEDIA_TYPE),
        (None, false) => None,
    })
}

/// Prints the newest attestation of `kind` the image has; exit 1 when it has none.
async fn print_attestation(
    registry: &regbuild_registry::Registry,
    image: &ImageRef,
    platform: &Platform,
    kind: &str,
) -> Result<ExitCode, CliError> {
    match inspect::attestation::document(registry, image, platform, kind).await? {
        Some(doc) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&doc)?;
            writeln!(out)?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "error: {image} has no {kind} attestation (push it with --sbom or --provenance)"
            );
            Ok(ExitCode::from(1))
        }
    }
}

pub async fn run(global: &GlobalArgs, args: InspectArgs) -> Result<ExitCode, CliError> {
    let reference: ImageRef = match args.image.parse() {
        Ok(r) => r,
        Err(e) => return usage(&e.to_string()),
    };
    let platform = match Platform::parse(&args.platform) {
        Ok(p) => p,
        Err(e) => return usage(&format!("--platform: {e}")),
    };
    let rules = Rules {
        lowest_efficiency: args.lowest_efficiency,
        highest_wasted_bytes: args.highest_wasted_bytes,
        highest_user_wasted_percent: args.highest_user_wasted_percent,
    };
    if !args.ci && !rules.is_empty() {
        eprintln!("note: thresholds are only checked with --ci; ignoring them");
    }
    if args.ci && rules.is_empty() {
        eprintln!(
            "warning: --ci without --lowest-efficiency, --highest-wasted-bytes or \
             --highest-user-wasted-percent checks nothing"
        );
    }
    let registry = global.registry();
    if let Some(kind) = attestation_type(&args)? {
        return print_attestation(&registry, &reference, &platform, kind).await;
    }
    let quiet = args.json || global.no_progress;
    let inspection = inspect::inspect(
        &registry,
        &reference,
        &platform,
        usize::from(global.jobs),
        |index, count, layer| {
            if !quiet {
                eprintln!(
                    "read     layer {}/{count} {} ({})",
                    index + 1,
                    layer.descriptor.digest,
                    human_bytes(layer.descriptor.size)
                );
            }
        },
    )
    .await?;
    let results = if args.ci {
        rules.evaluate(&inspection.analysis)
    } else {
        Vec::new()
    };
    let failed: Vec<&RuleResult> = results.iter().filter(|r| !r.passed).collect();

    let mut out = std::io::stdout().lock();
    if args.json {
        let mut value = to_json(&inspection);
        if args.ci {
            value["ci"] = json!({"passed": failed.is_empty(), "rules": results});
        }
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    } else {
        print_text(&mut out, &inspection)?;
        if args.ci {
            writeln!(out)?;
            writeln!(out, "CI rules:")?;
            for r in &results {
                writeln!(out, "  {r}")?;
            }
            writeln!(
                out,
                "CI: {} ({} of {} rules failed)",
                if failed.is_empty() { "PASS" } else { "FAIL" },
                failed.len(),
                results.len()
            )?;
        }
    }
    out.flush()?;
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for r in &failed {
        eprintln!("{r}");
    }
    eprintln!(
        "error: {}: {} of {} CI rules failed: {}",
        inspection.reference,
        failed.len(),
        results.len(),
        failed.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
    );
    Ok(ExitCode::from(1))
}

fn usage(message: &str) -> Result<ExitCode, CliError> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(2))
}

fn paths(files: &[inspect::SetidFile]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

/// The `--json` object.
fn to_json(i: &Inspection) -> serde_json::Value {
    let a = &i.analysis;
    let layers: Vec<_> = i
        .layers
        .iter()
        .zip(&a.layers)
        .map(|(l, s)| {
            json!({
                "digest": l.descriptor.digest,
                "media_type": l.descriptor.media_type,
                "size": l.descriptor.size,
                "uncompressed_size": l.uncompressed_size,
                "file_bytes": s.file_bytes,
                "files": s.files,
                "created_by": l.created_by,
                "wasted_bytes": s.wasted_bytes,
                "setuid_files": paths(&s.setid_files),
            })
        })
        .collect();
    json!({
        "reference": i.reference.to_string(),
        "digest": i.digest,
        "manifest_digest": i.manifest_digest,
        "platform": i.platform.to_string(),
        "layers": layers,
        "total_size": a.total_size,
        "compressed_size": i.layers.iter().map(|l| l.descriptor.size).sum::<u64>(),
        "uncompressed_size": i.layers.iter().map(|l| l.uncompressed_size).sum::<u64>(),
        "wasted_bytes": a.wasted_bytes,
        "efficiency": a.efficiency,
        "user_wasted_percent": a.user_wasted_percent,
        "setuid_files": paths(&a.setid_files),
    })
}

/// One line, at most `max` characters, for the table.
fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut s: String = flat.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

fn print_text(out: &mut impl Write, i: &Inspection) -> std::io::Result<()> {
    let a = &i.analysis;
    writeln!(out, "Image:    {}", i.reference)?;
    writeln!(out, "Digest:   {}", i.digest)?;
    if i.manifest_digest != i.digest {
        writeln!(out, "Manifest: {} ({})", i.manifest_digest, i.platform)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:>3}  {:<12}  {:>10}  {:>12}  {:>7}  {:>10}  {:>6}  CREATED BY",
        "#", "LAYER", "COMPRESSED", "UNCOMPRESSED", "FILES", "WASTED", "SETUID"
    )?;
    for (n, (l, s)) in i.layers.iter().zip(&a.layers).enumerate() {
        let short: String = l.descriptor.digest.hex().chars().take(12).collect();
        writeln!(
            out,
            "{n:>3}  {short:<12}  {:>10}  {:>12}  {:>7}  {:>10}  {:>6}  {}",
            human_bytes(l.descriptor.size),
            human_bytes(l.uncompressed_size),
            s.files,
            human_bytes(s.wasted_bytes),
            s.setid_files.len(),
            one_line(l.created_by.as_deref().unwrap_or("-"), 80)
        )?;
    }
    if !a.setid_files.is_empty() {
        writeln!(out)?;
        writeln!(out, "Setuid/setgid files:")?;
        for f in &a.setid_files {
            writeln!(out, "  {:04o}  {}  (layer {})", f.mode, f.path, f.layer)?;
        }
    }
    let compressed: u64 = i.layers.iter().map(|l| l.descriptor.size).sum();
    writeln!(out)?;
    writeln!(
        out,
        "Total size:          {} ({} bytes of files in {} layer{}; {} compressed)",
        human_bytes(a.total_size),
        a.total_size,
        i.layers.len(),
        if i.layers.len() == 1 { "" } else { "s" },
        human_bytes(compressed)
    )?;
    writeln!(
        out,
        "Wasted bytes:        {} ({} bytes)",
        human_bytes(a.wasted_bytes),
        a.wasted_bytes
    )?;
    writeln!(out, "Efficiency:          {:.2} %", a.efficiency * 100.0)?;
    writeln!(
        out,
        "User wasted percent: {:.2} %",
        a.user_wasted_percent * 100.0
    )?;
    Ok(())
}
