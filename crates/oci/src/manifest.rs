//! Manifest media types, descriptors, a tolerant read-only view of manifests and indexes, and
//! the JSON rendering of everything this tool writes (`canonical_json`).
//!
//! Manifests are kept as the registry's bytes (so digests never change when copying); this
//! view only finds what a manifest points at: its config and layers, its children, its subject.
//! Manifests this tool writes are built with the image model (`crate::model`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
pub use crate::platform::Platform;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Every manifest type we can read, for `Accept` on manifest HEAD/GET.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Registries cap manifests at 4 MiB (distribution-spec); larger ones are refused unread.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// A content descriptor (distribution-spec / image-spec "descriptor").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            artifact_type: None,
            annotations: None,
            urls: Vec::new(),
        }
    }

    /// The descriptor of `bytes`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64)
    }

    pub fn with_platform(mut self, platform: Platform) -> Descriptor {
        self.platform = Some(platform);
        self
    }

    pub fn with_annotation(mut self, key: &str, value: &str) -> Descriptor {
        self.annotations
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.to_string());
        self
    }

    /// The layer as it goes into an OCI manifest: Docker's gzip layer type becomes OCI's (the
    /// bytes are the same); anything else is kept.
    pub fn to_oci_layer(&self) -> Descriptor {
        let mut d = self.clone();
        if d.media_type == DOCKER_LAYER_GZIP {
            d.media_type = OCI_LAYER_GZIP.to_string();
        }
        d
    }
}

/// `value` as JSON with the keys of every object sorted: the bytes this tool has always
/// written for manifests and configs (serde_json's `Value` sorts its keys; this does not rely
/// on that, so a dependency turning on serde_json's `preserve_order` cannot change a digest).
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    fn sorted(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(String, Value)> = m.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
            v => v,
        }
    }
    // Serialising these types cannot fail (string keys, numbers read from JSON).
    serde_json::to_value(value)
        .and_then(|v| serde_json::to_vec(&sorted(v)))
        .unwrap_or_default()
}

/// The parts of any manifest or index that say what it references.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestView {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// OCI artifact manifests (image-spec 1.1-rc) list their content here.
    #[serde(default)]
    pub blobs: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default)]
    pub subject: Option<Descriptor>,
}

impl ManifestView {
    pub fn parse(bytes: &[u8]) -> Result<ManifestView, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Blobs the registry must hold before this manifest can be put. Foreign layers (with
    /// `urls`, non-distributable) are not in the registry and are skipped, as Docker does.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .chain(self.blobs.iter())
            .filter(|d| d.urls.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_lists_config_and_layers_but_not_foreign_layers() {
        let d = |c: &str| Digest::of(c.as_bytes()).to_string();
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":2}},
            "layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{}","size":3}},
                      {{"mediaType":"x.foreign","digest":"{}","size":4,"urls":["https://x"]}}]}}"#,
            d("c"),
            d("l"),
            d("f")
        );
        let v = ManifestView::parse(json.as_bytes()).unwrap();
        let sizes: Vec<u64> = v.blobs().map(|b| b.size).collect();
        assert_eq!(sizes, vec![2, 3]);
    }

    #[test]
    fn view_rejects_bad_digest() {
        let json = r#"{"layers":[{"mediaType":"x","digest":"sha256:nothex","size":1}]}"#;
        assert!(ManifestView::parse(json.as_bytes()).is_err());
    }
}
