//! The image model: typed OCI image manifests and indexes, and the transformations this tool
//! makes of them, in the spirit of go-containerregistry's `pkg/v1` (`mutate.Append`,
//! `mutate.Rebase`, `mutate.AppendManifests`). The config is `ImageConfig`.
//!
//! Everything here renders with `canonical_json` (keys sorted at every level): the bytes are
//! those this tool has always written, so digests (layer-cache keys, reproducibility checks)
//! never change. Fields of a read manifest or index that the model does not know are kept as
//! they were (`other`), so rewriting another tool's index changes only what it must.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::manifest::{canonical_json, Descriptor, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};

/// The base an image was built on (image-spec pre-defined annotations): its reference as
/// written, and the digest it resolved to.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// The other images a build read (`COPY --from=<image>`, bases of the stages it copied
/// from), as `reference@digest` separated by commas, sorted: what `outdated` checks besides
/// the base. Absent when there are none, so such manifests stay as they were.
pub const SOURCES: &str = "dev.regbuild.sources";

/// Parses a `SOURCES` value back into `reference@digest` entries.
pub fn parse_sources(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

pub type Annotations = BTreeMap<String, String>;

/// Why bytes are not a manifest or an index (a config's: `crate::config::ConfigError`).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not an image manifest: {0}")]
    Manifest(serde_json::Error),
    #[error("not an image index: {0}")]
    Index(serde_json::Error),
}

/// Why an image cannot be put on a new base: it is not on the old one.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BaseMismatch {
    #[error("the old base's layers are not a prefix of the image's layers (layer {index}: image has {image}, old base has {base})")]
    NotAPrefix {
        index: usize,
        image: Digest,
        base: Digest,
    },
    #[error("the old base has {base} layers but the image only {image}")]
    TooFewLayers { base: usize, image: usize },
    #[error("the image's diff_ids do not start with the old base's diff_ids (layer {0})")]
    DiffIdMismatch(usize),
}

/// An image manifest (image-spec `manifest.json`; Docker's v2 schema 2 reads the same).
/// Fields are declared in the order they are written (`canonical_json`: sorted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub schema_version: u32,
    /// What else the manifest said (`subject`, `artifactType`, …), kept as read.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An image index (image-spec `index.json`; Docker's manifest list reads the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    pub manifests: Vec<IndexEntry>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub schema_version: u32,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One manifest of an index, with whatever else the index said of it, kept as read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    #[serde(flatten)]
    pub descriptor: Descriptor,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn annotate(annotations: &mut Option<Annotations>, key: &str, value: &str) {
    annotations
        .get_or_insert_with(Annotations::new)
        .insert(key.to_string(), value.to_string());
}

impl ImageManifest {
    /// An OCI manifest of `config` and `layers`, without annotations.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest {
            annotations: None,
            config,
            layers,
            media_type: OCI_MANIFEST.to_string(),
            schema_version: 2,
            other: Map::new(),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<ImageManifest, ModelError> {
        serde_json::from_slice(bytes).map_err(ModelError::Manifest)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        canonical_json(self)
    }

    pub fn annotate(&mut self, key: &str, value: &str) {
        annotate(&mut self.annotations, key, value);
    }

    /// Names the base the image is built on (`BASE_NAME`, `BASE_DIGEST`).
    pub fn set_base(&mut self, name: &str, digest: &Digest) {
        self.annotate(BASE_NAME, name);
        self.annotate(BASE_DIGEST, digest.as_str());
    }

    /// Lists the other images the build read (`SOURCES`); none leaves the manifest as it was.
    pub fn set_sources(&mut self, sources: &[String]) {
        if !sources.is_empty() {
            self.annotate(SOURCES, &sources.join(","));
        }
    }
}

impl ImageIndex {
    /// An OCI index of `manifests` (`mutate.AppendManifests` onto an empty index).
    pub fn new(manifests: impl IntoIterator<Item = Descriptor>) -> ImageIndex {
        ImageIndex {
            annotations: None,
            manifests: manifests
                .into_iter()
                .map(|descriptor| IndexEntry {
                    descriptor,
                    other: Map::new(),
                })
                .collect(),
            media_type: OCI_INDEX.to_string(),
            schema_version: 2,
            other: Map::new(),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<ImageIndex, ModelError> {
        serde_json::from_slice(bytes).map_err(ModelError::Index)
    }

    /// The index as an OCI index (a Docker manifest list read here is written as one).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut oci = self.clone();
        oci.media_type = OCI_INDEX.to_string();
        canonical_json(&oci)
    }

    pub fn annotate(&mut self, key: &str, value: &str) {
        annotate(&mut self.annotations, key, value);
    }

    /// Names the base every platform is built on (`BASE_NAME`, `BASE_DIGEST`).
    pub fn set_base(&mut self, name: &str, digest: &Digest) {
        self.annotate(BASE_NAME, name);
        self.annotate(BASE_DIGEST, digest.as_str());
    }
}

impl IndexEntry {
    /// Points the entry at another OCI image manifest (its platform and the rest unchanged).
    pub fn set_manifest(&mut self, digest: Digest, size: u64) {
        self.descriptor.media_type = OCI_MANIFEST.to_string();
        self.descriptor.digest = digest;
        self.descriptor.size = size;
    }
}

/// An image: its manifest and its config. It is written as an OCI image (`to_bytes`): the
/// manifest's config descriptor follows the config, Docker layer types become OCI's.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

/// An image as written: the config blob and the manifest pointing at it.
pub struct ImageBytes {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub digest: Digest,
}

impl Image {
    /// The image of `config` over `layers`.
    pub fn new(config: ImageConfig, layers: Vec<Descriptor>) -> Image {
        let descriptor = Descriptor::of(OCI_CONFIG, &config.to_bytes());
        Image {
            manifest: ImageManifest::new(descriptor, layers),
            config,
        }
    }

    /// `mutate.Append`: `layers` on top, their `diff_ids` after the config's, and one history
    /// entry `created_by` per layer (at the config's own `created`).
    pub fn append(&mut self, layers: &[Descriptor], diff_ids: &[String], created_by: &str) {
        self.manifest.layers.extend_from_slice(layers);
        self.config
            .append_layers(diff_ids, layers.len(), created_by);
    }

    /// `mutate.Rebase`: the image with `old`'s layers (which must start it) swapped for
    /// `new`'s, and its config rebased likewise (`ImageConfig::rebase`). Annotations are
    /// kept; naming the new base is the caller's (`ImageManifest::set_base`).
    pub fn rebase(&self, old: &Image, new: &Image) -> Result<Image, BaseMismatch> {
        let (layers, old_layers) = (&self.manifest.layers, &old.manifest.layers);
        if old_layers.len() > layers.len() {
            return Err(BaseMismatch::TooFewLayers {
                base: old_layers.len(),
                image: layers.len(),
            });
        }
        if let Some((index, (image, base))) = layers
            .iter()
            .zip(old_layers)
            .enumerate()
            .find(|(_, (i, b))| i.digest != b.digest)
        {
            return Err(BaseMismatch::NotAPrefix {
                index,
                image: image.digest.clone(),
                base: base.digest.clone(),
            });
        }
        let (ids, old_ids) = (self.config.diff_ids(), old.config.diff_ids());
        if let Some(i) = (0..old_ids.len()).find(|&i| ids.get(i) != old_ids.get(i)) {
            return Err(BaseMismatch::DiffIdMismatch(i));
        }
        let mut manifest = self.manifest.clone();
        manifest.layers = new
            .manifest
            .layers
            .iter()
            .chain(&layers[old_layers.len()..])
            .cloned()
            .collect();
        Ok(Image {
            manifest,
            config: self.config.rebase(&old.config, &new.config),
        })
    }

    /// The config's bytes, and the manifest's as an OCI manifest pointing at them.
    pub fn to_bytes(&self) -> ImageBytes {
        let config = self.config.to_bytes();
        let mut manifest = self.manifest.clone();
        manifest.media_type = OCI_MANIFEST.to_string();
        manifest.config = Descriptor::of(OCI_CONFIG, &config);
        manifest.layers = manifest
            .layers
            .iter()
            .map(Descriptor::to_oci_layer)
            .collect();
        let manifest = manifest.to_bytes();
        ImageBytes {
            config_digest: Digest::of(&config),
            config,
            digest: Digest::of(&manifest),
            manifest,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Golden bytes: what rebase and the referrers fallback wrote before this model replaced
    //! hand-built JSON (the same inputs must give the same bytes, so the same digests).

    use super::*;
    use crate::manifest::DOCKER_LAYER_GZIP;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    fn config(json: &str) -> ImageConfig {
        ImageConfig::parse(json.as_bytes()).unwrap()
    }

    fn image() -> Image {
        Image {
            manifest: ImageManifest::parse(IMAGE_MANIFEST.as_bytes()).unwrap(),
            config: config(IMAGE_CONFIG),
        }
    }

    /// A base of `layers` (Docker gzip, as `d(name)`, sizes from 11) and `config`.
    fn base(layers: &[&str], config_json: &str) -> Image {
        let layers = (11..)
            .zip(layers)
            .map(|(size, name)| Descriptor::new(DOCKER_LAYER_GZIP, d(name), size))
            .collect();
        Image::new(config(config_json), layers)
    }

    /// A Docker manifest with annotations, a subject and a field unknown to the model, its
    /// config (unknown fields too), an old base of two layers and a new one of one.
    #[test]
    fn a_rebased_manifest_is_byte_identical() {
        let mut new = base(&["n1"], NEW_CONFIG);
        new.manifest.layers[0].size = 31;
        let old = base(&["o1", "o2"], OLD_CONFIG);
        let mut rebased = image().rebase(&old, &new).unwrap();
        rebased
            .manifest
            .set_base("r.example/os/base:2", &d("new base"));
        let written = rebased.to_bytes();
        assert_eq!(text(written.config), REBASED_CONFIG);
        assert_eq!(text(written.manifest), REBASED_MANIFEST);
    }

    #[test]
    fn an_image_not_on_the_old_base_is_refused() {
        let new = base(&[], NEW_CONFIG);
        let err = image().rebase(&base(&["x1"], OLD_CONFIG), &new);
        assert_eq!(err.unwrap_err().to_string(), NOT_A_PREFIX);
        let err = image().rebase(&base(&["o1", "o2", "a1", "b1"], OLD_CONFIG), &new);
        assert_eq!(
            err.unwrap_err(),
            BaseMismatch::TooFewLayers { base: 4, image: 3 }
        );
        let other_ids = r#"{"rootfs":{"diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let err = image().rebase(&base(&["o1", "o2"], other_ids), &new);
        assert_eq!(err.unwrap_err(), BaseMismatch::DiffIdMismatch(0));
    }

    /// A Docker manifest list with annotations, unknown fields at the top, in an entry and
    /// in a platform (`os.version`): all kept, the entries pointed at the rebased manifests.
    #[test]
    fn a_rebased_index_is_byte_identical() {
        let mut index = ImageIndex::parse(INDEX.as_bytes()).unwrap();
        index.manifests[0].set_manifest(d("r1"), 300);
        index.manifests[1].set_manifest(d("r2"), 400);
        index.set_base("r.example/os/base:2", &d("new base"));
        assert_eq!(text(index.to_bytes()), REBASED_INDEX);
    }

    #[test]
    fn a_referrers_index_is_byte_identical() {
        let mut sig = Descriptor::new(OCI_MANIFEST, d("sig"), 40).with_annotation("created", "now");
        sig.artifact_type = Some("application/vnd.dev.cosign.artifact.sig.v1+json".into());
        let sbom = Descriptor::new(OCI_MANIFEST, d("sbom"), 41);
        assert_eq!(text(ImageIndex::new([sig, sbom]).to_bytes()), REFERRERS);
    }

    #[test]
    fn what_the_model_writes_reads_back_to_the_same_bytes() {
        let m = ImageManifest::parse(REBASED_MANIFEST.as_bytes()).unwrap();
        assert_eq!(text(m.to_bytes()), REBASED_MANIFEST);
        let i = ImageIndex::parse(REBASED_INDEX.as_bytes()).unwrap();
        assert_eq!(text(i.to_bytes()), REBASED_INDEX);
    }

    #[test]
    fn sources_are_annotated_only_when_there_are_some() {
        let mut m = ImageManifest::new(Descriptor::of(OCI_CONFIG, b"{}"), Vec::new());
        m.set_sources(&[]);
        assert_eq!(m.annotations, None);
        m.set_sources(&["a@sha256:1".into(), "b@sha256:2".into()]);
        let value = m.annotations.as_ref().and_then(|a| a.get(SOURCES)).unwrap();
        assert_eq!(
            parse_sources(value).collect::<Vec<_>>(),
            ["a@sha256:1", "b@sha256:2"]
        );
    }

    const IMAGE_MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:e67d23e7820c49a8051dac2831f38290f5e72f66c8db5079eeb60d82f14894c0","size":10,"annotations":{"dropped":"yes"}},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:2352da7280f1decc3acf1ba84eb945c9fc2b7b541094e1d0992dbffd1b6664cc","size":11},{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:9250b9912ee91d6b46e23299459ecd6eb8154451d62558a3a0a708a77926ad04","size":12},{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:f55ff16f66f43360266b95db6f8fec01d76031054306ae4a4b380598f6cfd114","size":13,"annotations":{"dev.regbuild.layer.key":"k"}}],"annotations":{"dev.regbuild.sources":"r.example/lib:2@sha256:76b5a357391276b282a516f54f48ef3c207f46d8192dc58c208d5183d38415f8","org.opencontainers.image.base.name":"r.example/os/base:1","org.opencontainers.image.base.digest":"sha256:dc5aba8ba581d1abf3616ca2b833f7cfde439ef6f12fed09c7b3e0dec5a33045"},"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a9491f4c1bf7b0cffbadcba2db8f028e4b3f2867cb59e1f3a0bc1968f3c51242","size":5},"zzTop":{"b":1,"a":[2]}}"#;
    const IMAGE_CONFIG: &str = r#"{"architecture":"arm64","os":"linux","variant":"v8","config":{"Env":["PATH=/old","BASE=1","APP=yes"],"Cmd":["sh"],"User":"app","Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":["sha256:e6a31d6be1ad0cd5543c36ff799b6ea35504c233a1d1909a5e8d9f3e4f7fbaa3","sha256:68364b027e383eb50571bc135d9c7c205ce938d2fc7d40f9e9830b11e9270748","sha256:4fd92ac51923a9bca6dfbdab4b2096e265402a3bbeaa4d5b844ec85e5f3cf38a"],"extra":1},"history":[{"created_by":"o1"},{"created_by":"ENV","empty_layer":true},{"created_by":"o2"},{"created_by":"a1"}],"created":"2023-11-14T22:13:20Z","container":"kept","zz":null}"#;
    const OLD_CONFIG: &str = r#"{"architecture":"arm64","os":"linux","config":{"Env":["PATH=/old","BASE=1"],"Cmd":["sh"],"User":"root","Volumes":{"/v":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:e6a31d6be1ad0cd5543c36ff799b6ea35504c233a1d1909a5e8d9f3e4f7fbaa3","sha256:68364b027e383eb50571bc135d9c7c205ce938d2fc7d40f9e9830b11e9270748"]},"history":[{"created_by":"o1"},{"created_by":"ENV","empty_layer":true},{"created_by":"o2"}]}"#;
    const NEW_CONFIG: &str = r#"{"architecture":"arm64","os":"linux","config":{"Env":["PATH=/new","BASE=2","EXTRA=x"],"Cmd":["bash"],"User":"root","WorkingDir":"/w"},"rootfs":{"type":"layers","diff_ids":["sha256:17c1d1672513baa4c95c88d05942125a21adf1734c938f20359896570e76279f"]},"history":[{"created_by":"n1","comment":"new"}]}"#;
    const REBASED_CONFIG: &str = r#"{"architecture":"arm64","config":{"Cmd":["bash"],"Env":["PATH=/new","BASE=2","APP=yes","EXTRA=x"],"Labels":{"a":"b"},"User":"app","WorkingDir":"/w"},"container":"kept","created":"2023-11-14T22:13:20Z","history":[{"comment":"new","created_by":"n1"},{"created_by":"a1"}],"os":"linux","rootfs":{"diff_ids":["sha256:17c1d1672513baa4c95c88d05942125a21adf1734c938f20359896570e76279f","sha256:4fd92ac51923a9bca6dfbdab4b2096e265402a3bbeaa4d5b844ec85e5f3cf38a"],"type":"layers"},"variant":"v8","zz":null}"#;
    const REBASED_MANIFEST: &str = r#"{"annotations":{"dev.regbuild.sources":"r.example/lib:2@sha256:76b5a357391276b282a516f54f48ef3c207f46d8192dc58c208d5183d38415f8","org.opencontainers.image.base.digest":"sha256:956686003adbda9a4a714b5a120020f2096e87d0c2280f98e1376182b3696405","org.opencontainers.image.base.name":"r.example/os/base:2"},"config":{"digest":"sha256:83a48697c3f46e952cd193c14165aef5d9182e7b1cc492d80e040599fa746999","mediaType":"application/vnd.oci.image.config.v1+json","size":495},"layers":[{"digest":"sha256:676b8bb84ce7267dd520deca4811c8f10a53e636352f06987f42fe425acedd80","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":31},{"annotations":{"dev.regbuild.layer.key":"k"},"digest":"sha256:f55ff16f66f43360266b95db6f8fec01d76031054306ae4a4b380598f6cfd114","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":13}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2,"subject":{"digest":"sha256:a9491f4c1bf7b0cffbadcba2db8f028e4b3f2867cb59e1f3a0bc1968f3c51242","mediaType":"application/vnd.oci.image.manifest.v1+json","size":5},"zzTop":{"a":[2],"b":1}}"#;
    const NOT_A_PREFIX: &str = "the old base's layers are not a prefix of the image's layers (layer 0: image has sha256:2352da7280f1decc3acf1ba84eb945c9fc2b7b541094e1d0992dbffd1b6664cc, old base has sha256:ec31682fde561917952ff78a7a8adeffd0febc372dd26871916c46c630381b45)";
    const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:d0f631ca1ddba8db3bcfcb9e057cdc98d0379f1bee00e75a545147a27dadd982","size":100,"platform":{"architecture":"amd64","os":"linux","os.version":"10.0"},"annotations":{"e":"1"}},{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:9c0abe51c6e6655d81de2d044d4fb194931f058c0426c67c7285d8f5657ed64a","size":200,"platform":{"architecture":"arm64","os":"linux","variant":"v8"},"zzEntry":[1]}],"annotations":{"x.other":"kept","org.opencontainers.image.base.name":"r.example/os/base:1"},"zzTop":{"b":1,"a":2}}"#;
    const REBASED_INDEX: &str = r#"{"annotations":{"org.opencontainers.image.base.digest":"sha256:956686003adbda9a4a714b5a120020f2096e87d0c2280f98e1376182b3696405","org.opencontainers.image.base.name":"r.example/os/base:2","x.other":"kept"},"manifests":[{"annotations":{"e":"1"},"digest":"sha256:82f3e9c695dc6b8d1b11818d5701919e286de8d47f7c3eb3100c485f79e57828","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"amd64","os":"linux","os.version":"10.0"},"size":300},{"digest":"sha256:db77fd01af957221a4989b64b3770a83a3c56068405b9f0e9408feae57fd17e4","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"arm64","os":"linux","variant":"v8"},"size":400,"zzEntry":[1]}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2,"zzTop":{"a":2,"b":1}}"#;
    const REFERRERS: &str = r#"{"manifests":[{"annotations":{"created":"now"},"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json","digest":"sha256:a543997d84f12798350c09bdef2cdb171bf41ed3e4a5f808af2feb0c56263009","mediaType":"application/vnd.oci.image.manifest.v1+json","size":40},{"digest":"sha256:98f3ae1ef67113d8140d4f6cb8d2830070e21ea48f091be519659846c771a374","mediaType":"application/vnd.oci.image.manifest.v1+json","size":41}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;
}
