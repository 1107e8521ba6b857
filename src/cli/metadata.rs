//! `push --metadata-file PATH`: what was pushed, in the JSON buildx writes with its
//! `--metadata-file` (`containerimage.digest`, `containerimage.descriptor`,
//! `containerimage.config.digest`, `image.name`), so the CI steps that sign and attest after a
//! push (cosign, `actions/attest-build-provenance`) read regbuild's output as they read
//! buildx's.

use std::path::Path;

use regbuild_oci::manifest::ManifestView;
use regbuild_registry::publish::{Plan, PutAs};

/// The metadata of the root manifest `plan` puts under `tags` (`host/repo:tag` each).
pub fn of(plan: &Plan, tags: &[String]) -> Option<serde_json::Value> {
    let root = plan.manifests.iter().find(|m| m.put_as == PutAs::Tags)?;
    let mut v = serde_json::json!({
        "containerimage.digest": root.digest.to_string(),
        "containerimage.descriptor": {
            "mediaType": root.media_type,
            "digest": root.digest.to_string(),
            "size": root.bytes.len(),
        },
        "image.name": tags.join(","),
    });
    // An image (not an index) names its config.
    if let Some(config) = ManifestView::parse(&root.bytes).ok().and_then(|m| m.config) {
        v["containerimage.config.digest"] = serde_json::json!(config.digest.to_string());
    }
    Some(v)
}

/// Writes `metadata` to `path` (through a temporary file: a reader never sees half of it).
pub fn write(path: &Path, metadata: &serde_json::Value) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let mut tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))?;
    serde_json::to_writer_pretty(&mut tmp, metadata)?;
    std::io::Write::write_all(&mut tmp, b"\n")?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
