//! Deciding, without I/O, what each blob needs: nothing (the destination has it), a mount
//! (it is in another repository of the same registry), a copy (it is on another registry), or
//! an upload (it is a local file) — or, for a local file this machine pushed before to
//! another repository of the registry, a mount from there that falls back to the upload.

use std::collections::{HashMap, HashSet};

use super::model::{BlobOrigin, BlobSpec, ImageSet, ManifestSpec};
use regbuild_oci::digest::Digest;

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
    /// A local blob pushed before to repository `from` of the destination registry
    /// (`super::remembered`): mounted from there; if that repository no longer has it,
    /// `upload` (an `Upload` or `BuildAndUpload`) runs instead.
    MountPushedBefore {
        from: String,
        upload: Box<BlobStep>,
    },
}

/// What is known about the destination repository before deciding.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// Blobs it holds (by HEAD).
    pub present: HashSet<Digest>,
    /// Blobs sent to it while the build ran.
    pub uploaded: HashSet<Digest>,
    /// Local blobs pushed before to another repository of the same registry: digest → that
    /// repository.
    pub pushed_before: HashMap<Digest, String>,
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
            if let BlobStep::Mount { from } | BlobStep::MountPushedBefore { from, .. } = step {
                if !out.contains(from) {
                    out.push(from.clone());
                }
            }
        }
        out
    }
}

/// Decides each blob's step from what is `known` about the destination.
pub fn plan(
    set: &ImageSet,
    registry: &str,
    repository: &str,
    tags: &[String],
    known: &Known,
) -> Plan {
    let blobs = set
        .blobs
        .iter()
        .map(|b| {
            let step = if known.uploaded.contains(&b.digest) {
                BlobStep::UploadedEarly
            } else {
                step_for(b, registry, repository, known)
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

fn step_for(blob: &BlobSpec, registry: &str, repository: &str, known: &Known) -> BlobStep {
    if known.present.contains(&blob.digest) {
        return BlobStep::Exists;
    }
    let upload = match &blob.origin {
        BlobOrigin::File(path) => BlobStep::Upload { path: path.clone() },
        BlobOrigin::Lazy(file) => BlobStep::BuildAndUpload { file: file.clone() },
        BlobOrigin::Registry {
            registry: r,
            repository: from,
        } if r == registry && from != repository => return BlobStep::Mount { from: from.clone() },
        BlobOrigin::Registry {
            registry: r,
            repository: from,
        } => {
            return BlobStep::Copy {
                registry: r.clone(),
                repository: from.clone(),
            }
        }
    };
    match known.pushed_before.get(&blob.digest) {
        Some(from) if from != repository => BlobStep::MountPushedBefore {
            from: from.clone(),
            upload: Box::new(upload),
        },
        _ => upload,
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
        let known = Known {
            present,
            uploaded: early,
            ..Known::default()
        };
        let p = plan(&set, "r", "dst", &["v1".into()], &known);
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
    fn local_blobs_pushed_before_elsewhere_are_mounted_from_there_else_uploaded() {
        let mut set = ImageSet::default();
        set.add_blob(blob("a", BlobOrigin::File("/tmp/a".into())));
        set.add_blob(blob("b", BlobOrigin::File("/tmp/b".into())));
        set.add_blob(blob("c", in_repo("r", "base")));
        let known = Known {
            pushed_before: [
                (Digest::of(b"a"), "first".to_string()),
                (Digest::of(b"c"), "first".to_string()),
            ]
            .into_iter()
            .collect(),
            ..Known::default()
        };
        let p = plan(&set, "r", "second", &["v1".into()], &known);
        let steps: Vec<&BlobStep> = p.blobs.iter().map(|(_, s)| s).collect();
        assert_eq!(
            steps,
            vec![
                &BlobStep::MountPushedBefore {
                    from: "first".into(),
                    upload: Box::new(BlobStep::Upload {
                        path: "/tmp/a".into()
                    }),
                },
                &BlobStep::Upload {
                    path: "/tmp/b".into()
                },
                &BlobStep::Mount {
                    from: "base".into()
                },
            ]
        );
        assert_eq!(p.mount_sources(), vec!["first".to_string(), "base".into()]);
    }

    #[test]
    fn duplicate_blobs_are_listed_once() {
        let mut set = ImageSet::default();
        set.add_blob(blob("a", in_repo("r", "x")));
        set.add_blob(blob("a", in_repo("r", "y")));
        assert_eq!(set.blobs.len(), 1);
    }
}
