//! Reading what an SBOM lists from the image's layers, bottom first: each layer's copy of
//! the package databases (`var/lib/dpkg/status`, `var/lib/dpkg/status.d/*`,
//! `lib/apk/db/installed`) and `etc/os-release`. A package is attributed to the first layer
//! whose database lists it (and to the instruction that made that layer). Layers this
//! machine built are read from their files; the others are downloaded (an SBOM is asked for:
//! this is the one case where a push reads a base it does not otherwise need).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::sbom::model::Found;
use crate::sbom::packages::{self, Package};
use regbuild_oci::manifest::Descriptor;
use regbuild_registry::publish::{BlobOrigin, ImageSet};
use regbuild_registry::Registry;

/// The most one package database may weigh.
const DB_MAX: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading layer {layer} for the SBOM: {reason}")]
    Layer { layer: String, reason: String },
}

/// What one layer holds of the package databases (None: not in this layer).
#[derive(Default)]
struct LayerDbs {
    status: Option<String>,
    status_d: BTreeMap<String, String>,
    apk: Option<String>,
    os_release: Option<String>,
}

/// The image's packages, each with the layer that brought it, and its distribution's id.
pub async fn packages_of(
    registry: &Registry,
    set: &ImageSet,
    layers: &[Descriptor],
    created_by: &[String],
    tmp: &Path,
) -> Result<(Vec<Found>, String), ScanError> {
    let mut status: Option<String> = None;
    let mut status_d: BTreeMap<String, String> = BTreeMap::new();
    let mut apk: Option<String> = None;
    let mut distro = String::from("debian");
    let mut first_seen: BTreeMap<Package, (String, String)> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        let dbs = read_layer(registry, set, layer, tmp).await?;
        status = dbs.status.or(status);
        status_d.extend(dbs.status_d);
        apk = dbs.apk.or(apk);
        if let Some(id) = dbs.os_release.as_deref().and_then(os_id) {
            distro = id;
        }
        let made_by = created_by.get(i).cloned().unwrap_or_default();
        for p in installed(&status, &status_d, &apk) {
            first_seen
                .entry(p)
                .or_insert_with(|| (layer.digest.to_string(), made_by.clone()));
        }
    }
    let now = installed(&status, &status_d, &apk);
    let found = now
        .into_iter()
        .filter_map(|p| {
            let (layer, created_by) = first_seen.get(&p)?.clone();
            Some(Found {
                package: p,
                layer,
                created_by,
            })
        })
        .collect();
    Ok((found, distro))
}

fn installed(
    status: &Option<String>,
    status_d: &BTreeMap<String, String>,
    apk: &Option<String>,
) -> Vec<Package> {
    let mut out: Vec<Package> = status.as_deref().map(packages::dpkg).unwrap_or_default();
    for text in status_d.values() {
        out.extend(packages::dpkg(text));
    }
    out.extend(apk.as_deref().map(packages::apk).unwrap_or_default());
    out.sort();
    out.dedup();
    out
}

/// `ID=` of an os-release file.
fn os_id(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The package databases one layer holds.
async fn read_layer(
    registry: &Registry,
    set: &ImageSet,
    layer: &Descriptor,
    tmp: &Path,
) -> Result<LayerDbs, ScanError> {
    let failed = |reason: String| ScanError::Layer {
        layer: layer.digest.to_string(),
        reason,
    };
    let origin = set
        .blobs
        .iter()
        .find(|b| b.digest == layer.digest)
        .map(|b| b.origin.clone())
        .ok_or_else(|| failed("not in the image's blobs".into()))?;
    let (path, downloaded): (PathBuf, bool) = match origin {
        BlobOrigin::File(p) => (p, false),
        BlobOrigin::Lazy(l) => (l.path().map_err(|e| failed(e.to_string()))?, false),
        BlobOrigin::Registry {
            registry: host,
            repository,
        } => {
            let p = crate::builder::rootfs::download(registry, &host, &repository, layer, tmp)
                .await
                .map_err(|e| failed(e.to_string()))?;
            (p, true)
        }
    };
    let read = tokio::task::block_in_place(|| dbs_in(&path));
    if downloaded {
        let _ = std::fs::remove_file(&path);
    }
    read.map_err(|e| failed(e.to_string()))
}

/// Scans a (compressed) layer tar for the package databases, through regbuild's bounded tar
/// reader (a layer from a registry may declare any header size).
fn dbs_in(path: &Path) -> std::io::Result<LayerDbs> {
    let other = |e: regbuild_fs::extract::ExtractError| std::io::Error::other(e.to_string());
    let (_, reader) = regbuild_fs::extract::open_archive(path).map_err(other)?;
    let mut out = LayerDbs::default();
    let limits = regbuild_fs::extract::Limits::default();
    let mut budget = regbuild_fs::tar_read::Budget::default();
    let name = path.display().to_string();
    regbuild_fs::extract::engine::for_each_member(
        &name,
        reader,
        &limits,
        &mut budget,
        |m, data| {
            if !m.is_file() {
                return Ok(());
            }
            let at = m.path.to_string_lossy();
            let fail = |e| regbuild_fs::extract::engine::read_error(&name, &m.name, e);
            let slot = match at.as_ref() {
                "var/lib/dpkg/status" => Some(&mut out.status),
                "lib/apk/db/installed" => Some(&mut out.apk),
                "etc/os-release" | "usr/lib/os-release" => Some(&mut out.os_release),
                _ => None,
            };
            if let Some(slot) = slot {
                *slot = Some(read_text(data).map_err(fail)?);
            } else if let Some(file) = at.strip_prefix("var/lib/dpkg/status.d/") {
                if !file.contains('/') && !file.ends_with(".md5sums") {
                    let file = file.to_string();
                    out.status_d.insert(file, read_text(data).map_err(fail)?);
                }
            }
            Ok(())
        },
    )
    .map_err(other)?;
    Ok(out)
}

fn read_text(r: &mut dyn Read) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    r.take(DB_MAX).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distribution_id_is_read_from_os_release() {
        assert_eq!(
            os_id("NAME=\"Debian\"\nID=debian\n").as_deref(),
            Some("debian")
        );
        assert_eq!(os_id("ID=\"alpine\"\n").as_deref(), Some("alpine"));
        assert_eq!(os_id("NAME=x\n"), None);
    }
}
