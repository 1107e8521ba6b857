//! Where this machine pushed its local blobs before: one record file per registry in the
//! cache directory (`pushed/`), blob digest → the repositories that received it, most recent
//! first. A later push of the same blob to another repository of that registry mounts it
//! from there instead of sending its bytes again (`plan::Known::pushed_before`).
//!
//! The record is only a hint: a repository that no longer has the blob makes the mount fail
//! and the blob is uploaded (`BlobStep::MountPushedBefore`). It is written through a
//! temporary file and a rename, merged with what is on disk just before, so concurrent
//! regbuild processes lose at most each other's newest entries (a missed mount, no error).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use regbuild_oci::digest::Digest;

/// Digests kept per registry (the least recently pushed are dropped beyond this).
const MAX_BLOBS: usize = 20_000;
/// Repositories kept per digest.
const MAX_REPOSITORIES: usize = 4;

/// One registry's record, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Bumped on every push recorded: orders entries for eviction.
    next: u64,
    blobs: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// Most recent first.
    repositories: Vec<String>,
    seq: u64,
}

impl Record {
    /// Records that `repository` now holds `digests`.
    pub fn remember(&mut self, repository: &str, digests: &[Digest]) {
        self.next += 1;
        for d in digests {
            let entry = self.blobs.entry(d.to_string()).or_insert(Entry {
                repositories: Vec::new(),
                seq: 0,
            });
            entry.repositories.retain(|r| r != repository);
            entry.repositories.insert(0, repository.to_string());
            entry.repositories.truncate(MAX_REPOSITORIES);
            entry.seq = self.next;
        }
        if self.blobs.len() > MAX_BLOBS {
            let mut seqs: Vec<u64> = self.blobs.values().map(|e| e.seq).collect();
            seqs.sort_unstable();
            let cut = seqs[self.blobs.len() - MAX_BLOBS];
            self.blobs.retain(|_, e| e.seq >= cut);
        }
    }

    /// The repository, other than `destination`, that most recently received `digest`.
    pub fn source(&self, digest: &Digest, destination: &str) -> Option<&str> {
        self.blobs
            .get(digest.as_str())?
            .repositories
            .iter()
            .map(String::as_str)
            .find(|r| *r != destination)
    }
}

/// A registry's record on disk, with the pushes of this run still to be saved.
pub struct PushedBefore {
    registry: String,
    path: PathBuf,
    record: Record,
    added: Vec<(String, Vec<Digest>)>,
}

impl PushedBefore {
    /// The record of `registry` under the cache directory `root` (empty when missing or
    /// unreadable).
    pub fn load(root: &Path, registry: &str) -> PushedBefore {
        let path = root.join("pushed").join(file_name(registry));
        PushedBefore {
            registry: registry.to_string(),
            record: read(&path),
            path,
            added: Vec::new(),
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// For each of `digests` that was pushed before to another repository than
    /// `destination`: that repository.
    pub fn sources<'a>(
        &self,
        digests: impl IntoIterator<Item = &'a Digest>,
        destination: &str,
    ) -> HashMap<Digest, String> {
        digests
            .into_iter()
            .filter_map(|d| {
                self.record
                    .source(d, destination)
                    .map(|r| (d.clone(), r.to_string()))
            })
            .collect()
    }

    /// Notes that `repository` holds `digests` now (saved by `save`).
    pub fn remember(&mut self, repository: &str, digests: Vec<Digest>) {
        if !digests.is_empty() {
            self.added.push((repository.to_string(), digests));
        }
    }

    /// Merges this run's pushes into the record on disk; a failure only costs a future
    /// mount.
    pub fn save(&self) {
        if self.added.is_empty() {
            return;
        }
        let mut record = read(&self.path);
        for (repository, digests) in &self.added {
            record.remember(repository, digests);
        }
        if let Err(e) = write_atomic(&self.path, &record) {
            tracing::debug!(path = %self.path.display(), error = %e, "push record not written");
        }
    }
}

/// `host_port-<hash>.json`: readable, and distinct for names that sanitise alike.
fn file_name(registry: &str) -> String {
    let readable: String = registry
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = hex::encode(Sha256::digest(registry.as_bytes()));
    format!("{readable}-{}.json", &hash[..12])
}

fn read(path: &Path) -> Record {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_atomic(path: &Path, record: &Record) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let mut f = tempfile::NamedTempFile::new_in(dir)?;
    f.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
    f.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: &str) -> Digest {
        Digest::of(n.as_bytes())
    }

    #[test]
    fn the_most_recent_other_repository_is_the_source() {
        let mut r = Record::default();
        r.remember("a", &[d("x")]);
        r.remember("b", &[d("x")]);
        assert_eq!(r.source(&d("x"), "c"), Some("b"));
        assert_eq!(r.source(&d("x"), "b"), Some("a"), "never the destination");
        assert_eq!(r.source(&d("y"), "c"), None);
        r.remember("a", &[d("x")]);
        assert_eq!(r.source(&d("x"), "c"), Some("a"));
    }

    #[test]
    fn the_least_recently_pushed_blobs_are_dropped_beyond_the_limit() {
        let mut r = Record::default();
        r.remember("old", &[d("first")]);
        let many: Vec<Digest> = (0..MAX_BLOBS).map(|i| d(&i.to_string())).collect();
        r.remember("new", &many);
        assert_eq!(r.blobs.len(), MAX_BLOBS);
        assert_eq!(r.source(&d("first"), "x"), None);
        assert_eq!(r.source(&d("0"), "x"), Some("new"));
    }

    #[test]
    fn saving_merges_with_what_another_process_wrote_meanwhile() {
        let root = tempfile::tempdir().unwrap();
        let mut one = PushedBefore::load(root.path(), "127.0.0.1:5000");
        let mut two = PushedBefore::load(root.path(), "127.0.0.1:5000");
        one.remember("a", vec![d("x")]);
        two.remember("b", vec![d("y")]);
        one.save();
        two.save();
        let after = PushedBefore::load(root.path(), "127.0.0.1:5000");
        assert_eq!(after.record.source(&d("x"), "z"), Some("a"));
        assert_eq!(after.record.source(&d("y"), "z"), Some("b"));
        let other = PushedBefore::load(root.path(), "127.0.0.1:5001");
        assert_eq!(other.record, Record::default(), "one record per registry");
    }

    #[test]
    fn a_corrupt_record_is_empty() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("pushed").join(file_name("r"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(
            PushedBefore::load(root.path(), "r").record,
            Record::default()
        );
    }
}
