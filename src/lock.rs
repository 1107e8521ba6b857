//! The lock file (`regbuild.lock`): every base image a Dockerfile names, pinned by digest,
//! with Cargo's semantics (a build uses the pins even when tags have moved; `--locked`
//! refuses to build when the file would have to change).
//!
//! Format (TOML, entries sorted by reference, so diffs are one entry per moved base):
//!
//! ```toml
//! version = 1
//!
//! [[image]]
//! reference = "registry.example/library/debian:12"
//! digest = "sha256:…"                       # what the tag resolved to (index or manifest)
//! media_type = "application/vnd.oci.image.index.v1+json"
//!
//! [image.platforms]                          # per-platform manifests of an index
//! "linux/amd64" = "sha256:…"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use regbuild_oci::digest::Digest;

pub const DEFAULT_NAME: &str = "regbuild.lock";
const HEADER: &str = "# regbuild.lock: base images pinned by digest.\n\
# Written by `regbuild lock` (and `regbuild push` for new bases); `regbuild lock --update` re-resolves.\n";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LockFile {
    pub version: u32,
    #[serde(default, rename = "image")]
    pub images: Vec<LockedImage>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockedImage {
    /// The reference as normalised by regbuild (`host/repo:tag`).
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub platforms: BTreeMap<String, Digest>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: ReadError },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: WriteError },
}

/// Why a lock file cannot be read as one.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("not a valid lock file: {}", .0.message())]
    Toml(toml::de::Error),
    #[error("unsupported lock file version {0}")]
    Version(u32),
}

/// Why a lock file cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Toml(toml::ser::Error),
    #[error("{0}")]
    Io(std::io::Error),
}

/// Why a base could not be resolved for the lock file.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{reference}: {source}")]
    Registry {
        reference: String,
        source: Box<regbuild_registry::RegistryError>,
    },
    #[error("{reference}: {source}")]
    Index {
        reference: String,
        source: serde_json::Error,
    },
    #[error("{reference} has no manifest for platform {platform} (it has: {have})")]
    NoPlatform {
        reference: String,
        platform: String,
        have: String,
    },
}

impl LockFile {
    /// Reads `path`; `None` when there is no lock file.
    pub fn load(path: &Path) -> Result<Option<LockFile>, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(LockError::Read {
                    path: path.to_path_buf(),
                    source: ReadError::Io(e),
                })
            }
        };
        let lock: LockFile = toml::from_str(&text).map_err(|e| LockError::Read {
            path: path.to_path_buf(),
            source: ReadError::Toml(e),
        })?;
        if lock.version != 1 {
            return Err(LockError::Read {
                path: path.to_path_buf(),
                source: ReadError::Version(lock.version),
            });
        }
        Ok(Some(lock))
    }

    /// Writes the file with entries sorted, so the same pins give the same bytes.
    pub fn save(&self, path: &Path) -> Result<(), LockError> {
        let mut sorted = self.clone();
        sorted.version = 1;
        sorted.images.sort_by(|a, b| a.reference.cmp(&b.reference));
        let body = toml::to_string(&sorted).map_err(|e| LockError::Write {
            path: path.to_path_buf(),
            source: WriteError::Toml(e),
        })?;
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, format!("{HEADER}\n{body}"))
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| LockError::Write {
                path: path.to_path_buf(),
                source: WriteError::Io(e),
            })
    }

    pub fn get(&self, reference: &str) -> Option<&LockedImage> {
        self.images.iter().find(|i| i.reference == reference)
    }

    /// Adds or replaces the entry for `entry.reference`, merging platform pins when the
    /// digest is unchanged.
    pub fn upsert(&mut self, entry: LockedImage) {
        match self
            .images
            .iter_mut()
            .find(|i| i.reference == entry.reference)
        {
            Some(have) if have.digest == entry.digest => {
                have.platforms.extend(entry.platforms);
            }
            Some(have) => *have = entry,
            None => self.images.push(entry),
        }
    }
}

/// The default lock file path: `regbuild.lock` beside the Dockerfile.
pub fn default_path(dockerfile: &Path) -> PathBuf {
    dockerfile
        .parent()
        .map(|d| d.join(DEFAULT_NAME))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_NAME))
}

/// Resolves `reference` now: its digest, media type and (for an index) the platform
/// manifests, restricted to `platforms` when given (each must be there).
pub async fn resolve_entry(
    registry: &regbuild_registry::Registry,
    reference: &regbuild_oci::reference::ImageRef,
    platforms: Option<&[regbuild_oci::platform::Platform]>,
) -> Result<LockedImage, ResolveError> {
    use regbuild_oci::manifest::{is_index, ManifestView};
    let repo = registry.repo(
        &reference.registry,
        &reference.repository,
        regbuild_registry::Scopes::pull(&reference.repository),
    );
    let m = repo
        .get_manifest(&reference.manifest_reference())
        .await
        .map_err(|e| ResolveError::Registry {
            reference: reference.to_string(),
            source: Box::new(e),
        })?;
    let mut pins = BTreeMap::new();
    if is_index(&m.media_type) {
        let view = ManifestView::parse(&m.bytes).map_err(|e| ResolveError::Index {
            reference: reference.to_string(),
            source: e,
        })?;
        let all: Vec<(String, Digest)> = view
            .manifests
            .iter()
            .filter_map(|d| {
                d.platform
                    .as_ref()
                    .map(|p| (p.to_string(), d.digest.clone()))
            })
            .collect();
        match platforms {
            None => pins.extend(all),
            Some(wanted) => {
                for w in wanted {
                    let key = w.to_string();
                    let found = all.iter().find(|(k, _)| *k == key).ok_or_else(|| {
                        ResolveError::NoPlatform {
                            reference: reference.to_string(),
                            platform: key.clone(),
                            have: all
                                .iter()
                                .map(|(k, _)| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        }
                    })?;
                    pins.insert(found.0.clone(), found.1.clone());
                }
            }
        }
    }
    Ok(LockedImage {
        reference: reference.to_string(),
        digest: m.digest,
        media_type: m.media_type,
        platforms: pins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(r: &str, d: &[u8]) -> LockedImage {
        LockedImage {
            reference: r.into(),
            digest: Digest::of(d),
            media_type: regbuild_oci::manifest::OCI_MANIFEST.into(),
            platforms: BTreeMap::new(),
        }
    }

    #[test]
    fn saves_sorted_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_NAME);
        let mut lock = LockFile::default();
        lock.upsert(entry("r/b:1", b"b"));
        let mut a = entry("r/a:1", b"a");
        a.platforms.insert("linux/amd64".into(), Digest::of(b"amd"));
        lock.upsert(a);
        lock.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.find("r/a:1").unwrap() < text.find("r/b:1").unwrap(),
            "{text}"
        );
        let back = LockFile::load(&path).unwrap().unwrap();
        assert_eq!(back.images.len(), 2);
        assert_eq!(back.get("r/a:1").unwrap().platforms.len(), 1);
        // Same pins, same bytes.
        back.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn missing_file_is_none_and_garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_NAME);
        assert!(LockFile::load(&path).unwrap().is_none());
        std::fs::write(&path, "this is = not [valid").unwrap();
        let e = LockFile::load(&path).unwrap_err().to_string();
        assert!(e.contains(DEFAULT_NAME), "{e}");
    }

    #[test]
    fn upsert_replaces_a_moved_digest() {
        let mut lock = LockFile::default();
        lock.upsert(entry("r/a:1", b"old"));
        lock.upsert(entry("r/a:1", b"new"));
        assert_eq!(lock.images.len(), 1);
        assert_eq!(lock.images[0].digest, Digest::of(b"new"));
    }
}
