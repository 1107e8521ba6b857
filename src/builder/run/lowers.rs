//! The stage's root filesystem as overlay lower directories: one per layer, from the
//! store of unpacked layers (`regbuild_fs::lower`), keyed by diff_id. A layer the store
//! lacks is fetched once (a base layer from its registry, verified against its digest as it
//! streams; a layer this build made from its file) and unpacked once; every later step,
//! stage and build reuses it. Also: reading a file of that filesystem (the account files
//! USER needs) without mounting it.

use std::path::{Path, PathBuf};

use crate::builder::error::StepError;
use crate::builder::stage::StageLayer;
use regbuild_fs::lower::LowerStore;
use regbuild_oci::digest::Digest;
use regbuild_registry::Registry;

/// The diff_id of the `index`th layer: the config's, else the layer's own record.
fn diff_id_of(layer: &StageLayer, config_diff_id: Option<&str>) -> Result<Digest, StepError> {
    let from_config = || -> Result<Digest, StepError> {
        Ok(config_diff_id
            .ok_or_else(|| StepError::Entries(std::io::Error::other("a layer has no diff_id")))?
            .parse()?)
    };
    Ok(match layer {
        StageLayer::Local(b) => b.diff_id.clone(),
        StageLayer::Cached(c) => c.record.diff_id.clone(),
        StageLayer::Remote { .. } => from_config()?,
    })
}

/// A lower directory for every layer of `layers` (bottom first). Layers the store lacks are
/// fetched and unpacked concurrently (downloads under the registry's job limit, unpacks on
/// blocking threads), so a many-layer base costs about its largest layer, not their sum.
pub async fn ensure(
    registry: &Registry,
    store: &LowerStore,
    layers: &[StageLayer],
    diff_ids: &[String],
    tmp: &Path,
) -> Result<Vec<PathBuf>, StepError> {
    let jobs = layers.iter().enumerate().map(|(i, layer)| async move {
        let diff_id = diff_id_of(layer, diff_ids.get(i).map(String::as_str))?;
        if let Some(dir) = store.get(&diff_id) {
            return Ok(dir);
        }
        // The blob, and whether it is ours to delete after unpacking.
        let (blob, downloaded) = match layer {
            StageLayer::Local(b) => (b.file.to_path_buf(), false),
            StageLayer::Cached(c) if c.buildable() => {
                let b = tokio::task::block_in_place(|| c.built())?;
                (b.file.to_path_buf(), false)
            }
            StageLayer::Cached(c) => {
                let (host, repo) = c.found_in.clone().unwrap_or_default();
                let d = regbuild_oci::manifest::Descriptor::new(
                    &c.record.media_type,
                    c.record.digest.clone(),
                    c.record.size,
                );
                (fetch(registry, &host, &repo, &d, tmp).await?, true)
            }
            StageLayer::Remote {
                descriptor,
                registry: host,
                repository,
            } => (
                fetch(registry, host, repository, descriptor, tmp).await?,
                true,
            ),
        };
        let store = store.clone();
        let unpack_blob = blob.clone();
        let unpacked =
            tokio::task::spawn_blocking(move || store.ensure(&diff_id, &unpack_blob)).await;
        if downloaded {
            let _ = std::fs::remove_file(&blob);
        }
        match unpacked {
            Ok(r) => r.map_err(|e| super::error::RunError::from(e).into()),
            Err(join) => Err(super::error::RunError::io(&blob, std::io::Error::other(join)).into()),
        }
    });
    futures::future::try_join_all(jobs).await
}

async fn fetch(
    registry: &Registry,
    host: &str,
    repository: &str,
    descriptor: &regbuild_oci::manifest::Descriptor,
    tmp: &Path,
) -> Result<PathBuf, StepError> {
    tracing::info!(digest = %descriptor.digest, "RUN: downloading a layer to unpack it");
    crate::builder::rootfs::download(registry, host, repository, descriptor, tmp).await
}

/// The bytes of `path` (absolute, in the image) as the merged view of `lowers` shows it:
/// the topmost layer that has it or deletes it decides (whiteouts are 0/0 character
/// devices in the store). Symlinks are not followed (account files are regular files).
pub fn read_file(lowers: &[PathBuf], path: &str) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let rel = path.trim_start_matches('/');
    for dir in lowers.iter().rev() {
        let p = dir.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => return std::fs::read_to_string(&p).ok(),
            Ok(m) if m.file_type().is_char_device() => return None,
            Ok(_) => return None,
            Err(_) => continue,
        }
    }
    None
}

/// Whether `path` is a directory in the merged view of `lowers` (whiteouts hide it).
pub fn is_dir(lowers: &[PathBuf], path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return true;
    }
    for dir in lowers.iter().rev() {
        match std::fs::metadata(dir.join(rel)) {
            Ok(m) => return m.is_dir(),
            Err(_) => {
                if std::fs::symlink_metadata(dir.join(rel)).is_ok() {
                    return false;
                }
            }
        }
    }
    false
}

/// The account files of the merged view, for USER.
pub fn accounts(lowers: &[PathBuf]) -> crate::builder::owner::Accounts {
    crate::builder::owner::Accounts {
        passwd: read_file(lowers, "/etc/passwd"),
        group: read_file(lowers, "/etc/group"),
    }
}

/// The home directory of `uid` in `/etc/passwd`, for `HOME` (BuildKit sets it the same way).
pub fn home_of(passwd: Option<&str>, uid: u64) -> String {
    passwd
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u64>().ok() == Some(uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topmost_layer_decides_and_whiteouts_hide() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(a.join("etc")).unwrap();
        std::fs::create_dir_all(b.join("etc")).unwrap();
        std::fs::write(a.join("etc/passwd"), "old").unwrap();
        std::fs::write(a.join("etc/group"), "g").unwrap();
        std::fs::write(b.join("etc/passwd"), "new").unwrap();
        let lowers = vec![a.clone(), b.clone()];
        assert_eq!(read_file(&lowers, "/etc/passwd").as_deref(), Some("new"));
        assert_eq!(read_file(&lowers, "/etc/group").as_deref(), Some("g"));
        assert_eq!(read_file(&lowers, "/etc/shadow"), None);
        assert!(is_dir(&lowers, "/etc"));
        assert!(!is_dir(&lowers, "/etc/passwd"));
        assert!(!is_dir(&lowers, "/nope"));
        assert_eq!(
            home_of(
                Some("root:x:0:0::/root:/bin/sh\nu:x:7:7::/home/u:/bin/sh"),
                7
            ),
            "/home/u"
        );
        assert_eq!(home_of(None, 7), "/root");
    }
}
