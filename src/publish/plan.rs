//! Deciding, without I/O, what each blob needs: nothing (the destination has it), a mount
//! (it is in another repository of the same registry), a copy (it is on another registry), or
//! an upload (it is a local file).

use std::collections::HashSet;

use super::model::{BlobOrigin, BlobSpec, ImageSet, ManifestSpec};
use crate::digest::Digest;

/// What to do for one blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobStep {
    Exists,
    /// Mount from this repository of the destination registry.
    Mount {
        from: String,
    },
    /// Stream from another registry.
    Copy {
        registry: String,
        repository: String,
    },
    /// Upload a local file.
    Upload {
        path: std::path::PathBuf,
    },
    /// Build a cached layer's file (the registry lacks it), then upload it.
    BuildAndUpload {
        file: super::model::LazyFile,
    },
    /// Already uploaded to the destination while the build ran (`super::early`).
    UploadedEarly,
}

/// A write, decided: each blob with its step, then the manifests in put order.
#[derive(Clone, Debug)]
pub struct Plan {
    pub registry: String,
    pub repository: String,
    pub tags: Vec<String>,
    pub blobs: Vec<(BlobSpec, BlobStep)>,
    pub manifests: Vec<ManifestSpec>,
}

impl Plan {
    /// Repositories of the destination registry that mounts read from (they need pull scope).
    pub fn mount_sources(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, step) in &self.blobs {
            if let BlobStep::Mount { from } = step {
                if !out.contains(from) {
                    out.push(from.clone());
                }
            }
        }
        out
    }
}

/// Decides each blob's step from what the destination already `present`ly holds and what
/// was `uploaded` to it while the build ran.
pub fn plan(
    set: &ImageSet,
    registry: &str,
    repository: &str,
    tags: &[String],
    present: &HashSet<Digest>,
    uploaded: &HashSet<Digest>,
) -> Plan {
    let blobs = set
        .blobs
        .iter()
        .map(|b| {
            let step = if uploaded.contains(&b.digest) {
                BlobStep::UploadedEarly
            } else {
                step_for(b, registry, repository, present)
            };
            (b.clone(), step)
        })
        .collect();
    Plan {
        registry: registry.to_string(),
        repository: repository.to_string(),
        tags: tags.to_vec(),
        blobs,
        manifests: set.manifests.clone(),
    }
}

fn step_for(
    blob: &BlobSpec,
    registry: &str,
    repository: &str,
    present: &HashSet<Digest>,
) -> BlobStep {
    if present.contains(&blob.digest) {
        return BlobStep::Exists;
    }
    match &blob.origin {
        BlobOrigin::File(path) => BlobStep::Upload { path: path.clone() },
        BlobOrigin::Lazy(file) => BlobStep::BuildAndUpload { file: file.clone() },
        BlobOrigin::Registry {
            registry: r,
            repository: from,
        } if r == registry && from != repository => BlobStep::Mount { from: from.clone() },
        BlobOrigin::Registry {
            registry: r,
            repository: from,
        } => BlobStep::Copy {
            registry: r.clone(),
            repository: from.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: &str, origin: BlobOrigin) -> BlobSpec {
        BlobSpec {
            digest: Digest::of(n.as_bytes()),
            size: n.len() as u64,
            origin,
        }
    }

    fn in_repo(registry: &str, repository: &str) -> BlobOrigin {
        BlobOrigin::Registry {
            registry: registry.into(),
            repository: repository.into(),
        }
    }

    #[test]
    fn same_registry_blobs_are_mounted_and_present_ones_skipped() {
        let mut set = ImageSet::default();
        set.add_blob(blob("a", in_repo("r", "src")));
        set.add_blob(blob("b", in_repo("r", "src")));
        set.add_blob(blob("c", in_repo("other", "src")));
        set.add_blob(blob("d", BlobOrigin::File("/tmp/d".into())));
        let present: HashSet<Digest> = [Digest::of(b"b")].into_iter().collect();
        let early: HashSet<Digest> = [Digest::of(b"e")].into_iter().collect();
        set.add_blob(blob("e", BlobOrigin::File("/tmp/e".into())));
        let p = plan(&set, "r", "dst", &["v1".into()], &present, &early);
        let steps: Vec<&BlobStep> = p.blobs.iter().map(|(_, s)| s).collect();
        assert_eq!(
            steps,
            vec![
                &BlobStep::Mount { from: "src".into() },
                &BlobStep::Exists,
                &BlobStep::Copy {
                    registry: "other".into(),
                    repository: "src".into()
                },
                &BlobStep::Upload {
                    path: "/tmp/d".into()
                },
                &BlobStep::UploadedEarly,
            ]
        );
        assert_eq!(p.mount_sources(), vec!["src".to_string()]);
    }

    #[test]
    fn duplicate_blobs_are_listed_once() {
        let mut set = ImageSet::default();
        set.add_blob(blob("a", in_repo("r", "x")));
        set.add_blob(blob("a", in_repo("r", "y")));
        assert_eq!(set.blobs.len(), 1);
    }
}
