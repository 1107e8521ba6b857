//! In-memory content: a global content-addressed blob store, and per
//! repository blob links, manifests and tags.
//!
//! Blobs live once in the global store and repositories only hold links to
//! them, as in distribution, so a cross-repository mount is just a new link.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

#[derive(Default)]
pub(crate) struct Storage {
    content: HashMap<String, Bytes>,
    repos: BTreeMap<String, Repo>,
    next_seq: u64,
}

#[derive(Default)]
pub(crate) struct Repo {
    blobs: HashSet<String>,
    manifests: HashMap<String, StoredManifest>,
    tags: BTreeMap<String, String>,
}

#[derive(Clone)]
pub(crate) struct StoredManifest {
    pub digest: String,
    pub media_type: String,
    pub data: Bytes,
    /// Push order, so listings are stable.
    pub seq: u64,
}

impl Storage {
    pub(crate) fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos.get(name)
    }

    pub(crate) fn repo_exists(&self, name: &str) -> bool {
        self.repos.contains_key(name)
    }

    /// Stores `data` under `digest` (the caller has verified it) and links it
    /// into `repo`.
    pub(crate) fn put_blob(&mut self, repo: &str, digest: &str, data: Bytes) {
        self.content.entry(digest.to_string()).or_insert(data);
        self.link_blob(repo, digest);
    }

    /// Links an already stored blob into `repo`.
    pub(crate) fn link_blob(&mut self, repo: &str, digest: &str) {
        self.repos
            .entry(repo.to_string())
            .or_default()
            .blobs
            .insert(digest.to_string());
    }

    pub(crate) fn has_blob(&self, repo: &str, digest: &str) -> bool {
        self.repos
            .get(repo)
            .is_some_and(|r| r.blobs.contains(digest) && self.content.contains_key(digest))
    }

    /// The blob bytes when `repo` links `digest`.
    pub(crate) fn blob(&self, repo: &str, digest: &str) -> Option<Bytes> {
        if self.has_blob(repo, digest) {
            self.content.get(digest).cloned()
        } else {
            None
        }
    }

    /// Blob bytes regardless of repository (the redirect listener's view).
    pub(crate) fn content(&self, digest: &str) -> Option<Bytes> {
        self.content.get(digest).cloned()
    }

    pub(crate) fn unlink_blob(&mut self, repo: &str, digest: &str) -> bool {
        self.repos
            .get_mut(repo)
            .is_some_and(|r| r.blobs.remove(digest))
    }

    /// Stores a manifest (already validated) and points `tag` at it.
    pub(crate) fn put_manifest(
        &mut self,
        repo: &str,
        digest: &str,
        tag: Option<&str>,
        media_type: &str,
        data: Bytes,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let r = self.repos.entry(repo.to_string()).or_default();
        r.manifests
            .entry(digest.to_string())
            .or_insert_with(|| StoredManifest {
                digest: digest.to_string(),
                media_type: media_type.to_string(),
                data,
                seq,
            });
        if let Some(tag) = tag {
            r.tags.insert(tag.to_string(), digest.to_string());
        }
    }

    /// A manifest by tag or digest.
    pub(crate) fn manifest(&self, repo: &str, reference: &str) -> Option<&StoredManifest> {
        let r = self.repos.get(repo)?;
        let digest = if reference.contains(':') {
            reference
        } else {
            r.tags.get(reference)?.as_str()
        };
        r.manifests.get(digest)
    }

    /// Deletes a tag, or a manifest with every tag pointing at it.
    pub(crate) fn delete_manifest(&mut self, repo: &str, reference: &str) -> bool {
        let Some(r) = self.repos.get_mut(repo) else {
            return false;
        };
        if reference.contains(':') {
            r.tags.retain(|_, d| d != reference);
            r.manifests.remove(reference).is_some()
        } else {
            r.tags.remove(reference).is_some()
        }
    }

    pub(crate) fn tags(&self, repo: &str) -> Vec<String> {
        self.repos
            .get(repo)
            .map(|r| r.tags.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl Repo {
    pub(crate) fn has_manifest(&self, digest: &str) -> Option<&StoredManifest> {
        self.manifests.get(digest)
    }

    /// Manifests in push order.
    pub(crate) fn manifests(&self) -> Vec<&StoredManifest> {
        let mut all: Vec<&StoredManifest> = self.manifests.values().collect();
        all.sort_by_key(|m| m.seq);
        all
    }
}
