//! Manifest media types and a tolerant read-only view of manifests and indexes.
//!
//! Manifests are kept as the registry's bytes (so digests never change when copying); this
//! view only finds what a manifest points at: its config and layers, its children, its subject.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
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
