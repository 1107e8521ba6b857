//! The build cache artifact: what a fresh runner needs beside the image to re-execute
//! nothing that has not changed, stored as an OCI 1.1 artifact whose `subject` is the pushed
//! image manifest (found through the referrers API, or the referrers tag schema where the
//! registry has none), its blobs in the image's repository. It lists:
//!
//! - every layer of the build's other stages (builder stages, and the target's own layers
//!   a squash replaced) with its layer cache key and diff_id: no pushed manifest holds them;
//! - the path lists (`pathindex::LayerIndex`) of the layers whose paths a COPY or WORKDIR
//!   needed, keyed by layer digest: kilobytes instead of a base layer's download;
//! - with `--cache-mounts registry`, each `RUN --mount=type=cache` directory as a tarball,
//!   keyed by cache id and platform;
//! - in its config, each RUN step's key inputs (hashed), so that a miss says what changed.
//!
//! Pure: bytes in, bytes out. The same build gives the same artifact, so a re-push of an
//! unchanged build writes nothing new.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::builder::report::RecordedStep;
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{canonical_json, Descriptor, ManifestView, OCI_MANIFEST};

/// The artifact's type (its `artifactType`, what the referrers are filtered by).
pub const ARTIFACT_TYPE: &str = "application/vnd.regbuild.build-cache.v1+json";
/// Its config: the recorded RUN steps.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.regbuild.build-cache.config.v1+json";
/// A layer's path list: gzip-compressed JSON.
pub const PATHS_MEDIA_TYPE: &str = "application/vnd.regbuild.layer-paths.v1+json+gzip";
/// A cache mount's contents: a gzip-compressed tar.
pub const MOUNT_MEDIA_TYPE: &str = "application/vnd.regbuild.cache-mount.v1.tar+gzip";

/// A builder layer's key (the same annotation image layers carry).
pub const KEY: &str = crate::builder::cache::KEY_ANNOTATION;
pub const DIFF_ID: &str = "dev.regbuild.layer.diff-id";
/// The layer a path list lists.
pub const PATHS_OF: &str = "dev.regbuild.paths.of";
pub const MOUNT_ID: &str = "dev.regbuild.cache-mount.id";
pub const MOUNT_PLATFORM: &str = "dev.regbuild.cache-mount.platform";

/// A layer found by key.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyedLayer {
    pub descriptor: Descriptor,
    pub key: String,
    pub diff_id: Digest,
}

/// A cache mount's tarball.
#[derive(Clone, Debug, PartialEq)]
pub struct MountBlob {
    pub id: String,
    pub platform: String,
    pub descriptor: Descriptor,
}

#[derive(Serialize, Deserialize)]
struct Config {
    steps: Vec<RecordedStep>,
}

/// Everything the artifact lists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Artifact {
    pub layers: Vec<KeyedLayer>,
    /// Layer digest → its path list's blob.
    pub paths: BTreeMap<Digest, Descriptor>,
    pub mounts: Vec<MountBlob>,
    pub steps: Vec<RecordedStep>,
}

/// The serialised artifact: its config, its manifest and the manifest's digest.
pub struct Written {
    pub config: Vec<u8>,
    pub config_descriptor: Descriptor,
    pub manifest: Vec<u8>,
    pub digest: Digest,
}

impl Artifact {
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty() && self.paths.is_empty() && self.mounts.is_empty()
    }

    /// The config and manifest referring to `subject`, in a canonical order (layers by key,
    /// path lists by layer, mounts by id), so the bytes depend on the content only.
    pub fn write(&self, subject: &Descriptor) -> Written {
        let mut steps = self.steps.clone();
        steps.sort_by(|a, b| (&a.stage, a.run, &a.key).cmp(&(&b.stage, b.run, &b.key)));
        steps.dedup();
        let config = canonical_json(&Config { steps });
        let config_descriptor = Descriptor::of(CONFIG_MEDIA_TYPE, &config);
        let mut layers: Vec<Descriptor> = Vec::new();
        let mut keyed = self.layers.clone();
        keyed.sort_by(|a, b| {
            (&a.key, a.descriptor.digest.as_str()).cmp(&(&b.key, b.descriptor.digest.as_str()))
        });
        keyed.dedup_by(|a, b| a.key == b.key);
        for l in keyed {
            layers.push(
                plain(&l.descriptor)
                    .with_annotation(KEY, &l.key)
                    .with_annotation(DIFF_ID, l.diff_id.as_str()),
            );
        }
        for (layer, list) in &self.paths {
            layers.push(plain(list).with_annotation(PATHS_OF, layer.as_str()));
        }
        let mut mounts = self.mounts.clone();
        mounts.sort_by(|a, b| (&a.id, &a.platform).cmp(&(&b.id, &b.platform)));
        mounts.dedup_by(|a, b| a.id == b.id && a.platform == b.platform);
        for m in mounts {
            layers.push(
                plain(&m.descriptor)
                    .with_annotation(MOUNT_ID, &m.id)
                    .with_annotation(MOUNT_PLATFORM, &m.platform),
            );
        }
        let manifest = canonical_json(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": config_descriptor,
            "layers": layers,
            "subject": plain(subject),
        }));
        let digest = Digest::of(&manifest);
        Written {
            config,
            config_descriptor,
            manifest,
            digest,
        }
    }

    /// Reads an artifact's manifest and config (None: not this tool's cache artifact).
    /// Entries it cannot read are left out: a cache only ever saves work.
    pub fn parse(manifest: &[u8], config: &[u8]) -> Option<Artifact> {
        let view = ManifestView::parse(manifest).ok()?;
        if view.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
            return None;
        }
        let steps = serde_json::from_slice::<Config>(config)
            .map(|c| c.steps)
            .unwrap_or_default();
        let mut out = Artifact {
            steps,
            ..Artifact::default()
        };
        for d in view.layers {
            let note = |name: &str| d.annotations.as_ref().and_then(|a| a.get(name)).cloned();
            if let (Some(key), Some(diff_id)) = (note(KEY), note(DIFF_ID)) {
                if let Ok(diff_id) = diff_id.parse() {
                    out.layers.push(KeyedLayer {
                        descriptor: plain(&d),
                        key,
                        diff_id,
                    });
                }
            } else if let Some(layer) = note(PATHS_OF).and_then(|l| l.parse().ok()) {
                if d.media_type == PATHS_MEDIA_TYPE {
                    out.paths.insert(layer, plain(&d));
                }
            } else if let (Some(id), Some(platform)) = (note(MOUNT_ID), note(MOUNT_PLATFORM)) {
                if d.media_type == MOUNT_MEDIA_TYPE {
                    out.mounts.push(MountBlob {
                        id,
                        platform,
                        descriptor: plain(&d),
                    });
                }
            }
        }
        Some(out)
    }
}

/// A descriptor with only its media type, digest and size.
fn plain(d: &Descriptor) -> Descriptor {
    Descriptor::new(&d.media_type, d.digest.clone(), d.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(media: &str, s: &str) -> Descriptor {
        Descriptor::of(media, s.as_bytes())
    }

    fn sample() -> Artifact {
        let mut paths = BTreeMap::new();
        paths.insert(Digest::of(b"base layer"), d(PATHS_MEDIA_TYPE, "paths"));
        Artifact {
            layers: vec![KeyedLayer {
                descriptor: d(regbuild_oci::manifest::OCI_LAYER_GZIP, "builder layer"),
                key: "sha256:k1".into(),
                diff_id: Digest::of(b"diff"),
            }],
            paths,
            mounts: vec![MountBlob {
                id: "/root/.cache/go-build".into(),
                platform: "linux/amd64".into(),
                descriptor: d(MOUNT_MEDIA_TYPE, "tarball"),
            }],
            steps: vec![RecordedStep {
                stage: "build".into(),
                run: 0,
                instruction: "RUN go build".into(),
                key: "sha256:k1".into(),
                inputs: [("command".to_string(), "abc".to_string())].into(),
            }],
        }
    }

    #[test]
    fn what_is_written_reads_back() {
        let subject = d(OCI_MANIFEST, "image");
        let w = sample().write(&subject);
        let back = Artifact::parse(&w.manifest, &w.config).unwrap();
        assert_eq!(back, sample());
        let view = ManifestView::parse(&w.manifest).unwrap();
        assert_eq!(view.subject.unwrap().digest, subject.digest);
        assert_eq!(w.digest, Digest::of(&w.manifest));
    }

    #[test]
    fn the_bytes_do_not_depend_on_the_order_things_were_found_in() {
        let subject = d(OCI_MANIFEST, "image");
        let mut a = sample();
        a.layers.push(KeyedLayer {
            descriptor: d(regbuild_oci::manifest::OCI_LAYER_GZIP, "another"),
            key: "sha256:k0".into(),
            diff_id: Digest::of(b"diff0"),
        });
        let mut b = a.clone();
        b.layers.reverse();
        b.steps.push(b.steps[0].clone());
        assert_eq!(a.write(&subject).manifest, b.write(&subject).manifest);
        assert_eq!(a.write(&subject).config, b.write(&subject).config);
    }

    #[test]
    fn other_artifacts_are_not_read() {
        let cosign = br#"{"schemaVersion":2,"artifactType":"application/vnd.dev.cosign.simplesigning.v1+json","layers":[]}"#;
        assert!(Artifact::parse(cosign, b"{}").is_none());
    }
}
