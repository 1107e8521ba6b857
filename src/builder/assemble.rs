//! Turning a built stage into what a registry must hold: the config blob, the image manifest
//! (OCI, annotated with its base), and the list of blobs with where each one's bytes are.
//!
//! A Docker-media-type base is converted to OCI media types (the layer bytes are the same),
//! so the result never mixes the two and can carry annotations.

use std::path::Path;

use bytes::Bytes;

use crate::builder::cache::KEY_ANNOTATION;
use crate::builder::error::StepError;
use crate::builder::layer::StageLayer;
use crate::builder::stage::StageImage;
use crate::image::base::ResolvedBase;
use regbuild_oci::config::ImageConfig;
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{Descriptor, OCI_MANIFEST};
use regbuild_oci::model::Image;
use regbuild_registry::publish::{BlobOrigin, BlobSpec, ImageSet, LazyFile, ManifestSpec, PutAs};

/// The `SOURCES` entries (`regbuild_oci::model::SOURCES`) for a build that resolved `read`
/// and is built on `base`: each tagged image other than the base, by the digest it resolved
/// to. Images named by digest alone cannot move and are left out.
pub fn sources<'a>(
    read: impl IntoIterator<Item = &'a ResolvedBase>,
    base: Option<&ResolvedBase>,
) -> Vec<String> {
    let mut out: Vec<String> = read
        .into_iter()
        .filter(|r| base.is_none_or(|b| b.reference != r.reference || b.digest != r.digest))
        .filter_map(|r| {
            let tag = r.reference.tag.as_ref()?;
            Some(format!("{}@{}", r.reference.with_tag(tag), r.digest))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

pub struct Assembled {
    pub set: ImageSet,
    pub digest: Digest,
    pub config: ImageConfig,
}

/// Builds config and manifest for `image`; the config is written under `tmp` for upload.
/// `sources`: the other images the build read (see `sources`).
pub fn assemble(
    image: &StageImage,
    sources: &[String],
    created: &str,
    tmp: &Path,
) -> Result<Assembled, StepError> {
    let mut set = ImageSet::default();
    let layers: Vec<Descriptor> = image
        .layers
        .iter()
        .map(|l| add_layer(&mut set, l))
        .collect();
    let mut config = image.config.clone();
    config.set_created(created);
    let mut out = Image::new(config, layers);
    if let Some(base) = &image.base {
        out.manifest
            .set_base(&base.reference.to_string(), &base.digest);
    }
    out.manifest.set_sources(sources);
    let written = out.to_bytes();
    let config_path = tmp.join(format!("config-{}.json", written.config_digest.hex()));
    std::fs::write(&config_path, &written.config).map_err(|source| StepError::File {
        path: config_path.clone(),
        source,
    })?;
    set.add_blob(BlobSpec {
        digest: written.config_digest,
        size: written.config.len() as u64,
        origin: BlobOrigin::File(config_path),
    });
    set.add_manifest(ManifestSpec {
        media_type: OCI_MANIFEST.to_string(),
        bytes: Bytes::from(written.manifest),
        digest: written.digest.clone(),
        put_as: PutAs::Tags,
        subject: None,
        artifact_type: None,
        optional: false,
    });
    Ok(Assembled {
        set,
        digest: written.digest,
        config: out.config,
    })
}

/// Adds `layer`'s blob to `set` (with where its bytes are) and returns its descriptor, its
/// key annotated when this tool made it.
pub fn add_layer(set: &mut ImageSet, layer: &StageLayer) -> Descriptor {
    match layer {
        StageLayer::Remote {
            descriptor,
            registry,
            repository,
        } => set.add_remote_layer(descriptor, registry, repository),
        StageLayer::Cached(c) => {
            let digest = c.record.digest.clone();
            let origin = match &c.found_in {
                // Found in a registry by key: mounted or copied from there if needed.
                Some((registry, repository)) => BlobOrigin::Registry {
                    registry: registry.clone(),
                    repository: repository.clone(),
                },
                // Known from the local cache: packed only if the destination lacks it.
                None => {
                    let c = c.clone();
                    BlobOrigin::Lazy(LazyFile(std::sync::Arc::new(move || {
                        c.built().map(|b| b.file.to_path_buf()).map_err(Into::into)
                    })))
                }
            };
            set.add_blob(BlobSpec {
                digest: digest.clone(),
                size: c.record.size,
                origin,
            });
            Descriptor::new(&c.record.media_type, digest, c.record.size)
                .with_annotation(KEY_ANNOTATION, &c.key)
        }
        StageLayer::Local(built) => {
            let digest = built.digest.clone();
            set.add_blob(BlobSpec {
                digest: digest.clone(),
                size: built.size,
                origin: BlobOrigin::File(built.file.to_path_buf()),
            });
            let d = Descriptor::new(built.media_type, digest, built.size);
            match &built.key {
                Some(key) => d.with_annotation(KEY_ANNOTATION, key),
                None => d,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Golden bytes: the manifests and configs `assemble` wrote before the image model
    //! (`regbuild_oci::model`) replaced hand-built JSON. Digests are layer-cache keys and
    //! reproducibility checks: these bytes must never change.

    use std::sync::Arc;

    use super::*;
    use crate::builder::cache::CachedLayer;
    use crate::builder::layer::CachedStageLayer;
    use regbuild_fs::layer::{BuiltLayer, LayerOptions};
    use regbuild_oci::manifest::{Descriptor, DOCKER_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    fn base() -> ResolvedBase {
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000001"]},"history":[{"created_by":"base"}],"container":"x"}"#.to_vec();
        ResolvedBase {
            reference: "r.example/os/base:1".parse().unwrap(),
            digest: d("base index"),
            media_type: regbuild_oci::manifest::OCI_INDEX.into(),
            platforms: Vec::new(),
            manifest_digest: d("base manifest"),
            manifest_media_type: regbuild_oci::manifest::DOCKER_MANIFEST.into(),
            config_descriptor: Descriptor {
                media_type: regbuild_oci::manifest::DOCKER_CONFIG.into(),
                digest: Digest::of(&config),
                size: config.len() as u64,
                platform: None,
                artifact_type: None,
                annotations: None,
                urls: Vec::new(),
            },
            config,
            layers: Vec::new(),
        }
    }

    /// A stage with every kind of layer: a base layer (Docker type), a cached layer found in
    /// a registry, one from the local cache, a local layer with a key and one without.
    fn stage(tmp: &Path, with_base: bool) -> StageImage {
        let mut config = if with_base {
            ImageConfig::from_base(&base().config).unwrap()
        } else {
            ImageConfig::scratch("linux", "arm64", Some("v8"))
        };
        let remote = Descriptor {
            media_type: DOCKER_LAYER_GZIP.into(),
            digest: d("base layer"),
            size: 1234,
            platform: None,
            artifact_type: None,
            annotations: None,
            urls: Vec::new(),
        };
        let cached = |name: &str, found_in: Option<(String, String)>| {
            let mut c = CachedStageLayer::new(
                CachedLayer {
                    digest: d(name),
                    diff_id: d(&format!("{name} diff")),
                    size: 77,
                    uncompressed_size: 1000,
                    media_type: OCI_LAYER_GZIP.into(),
                },
                format!("key-{name}"),
                Vec::new(),
                LayerOptions::default(),
                tmp,
            );
            c.found_in = found_in;
            StageLayer::Cached(Arc::new(c))
        };
        let local = |name: &str, key: Option<&str>| {
            let file = tempfile::NamedTempFile::new_in(tmp)
                .unwrap()
                .into_temp_path();
            StageLayer::Local(Arc::new(BuiltLayer {
                file,
                digest: d(name),
                diff_id: d(&format!("{name} diff")),
                size: 5,
                uncompressed_size: 2048,
                entries: 1,
                media_type: OCI_LAYER_ZSTD,
                key: key.map(str::to_string),
            }))
        };
        for (i, name) in ["r", "c1", "c2", "l1", "l2"].iter().enumerate() {
            let created_by = format!("STEP {i}");
            config.push_layer(
                &d(&format!("{name} diff")).to_string(),
                "2023-01-01T00:00:00Z",
                &created_by,
            );
        }
        config.push_history("2023-01-01T00:00:00Z", "ENV A=1", true);
        config.set_env("A", "1");
        let mut layers = Vec::new();
        if with_base {
            layers.push(StageLayer::Remote {
                descriptor: Box::new(remote),
                registry: "r.example".into(),
                repository: "os/base".into(),
            });
        }
        layers.extend([
            cached("c1", Some(("cache.example".into(), "team/cache".into()))),
            cached("c2", None),
            local("l1", Some("key-l1")),
            local("l2", None),
        ]);
        StageImage {
            config,
            layers,
            base: with_base.then(base),
            base_listed: false,
        }
    }

    fn golden(with_base: bool, sources: &[String]) -> (String, String, Vec<String>) {
        let tmp = tempfile::tempdir().unwrap();
        let a = assemble(
            &stage(tmp.path(), with_base),
            sources,
            "2023-11-14T22:13:20Z",
            tmp.path(),
        )
        .unwrap();
        let root = a.set.root().unwrap();
        assert_eq!(a.digest, Digest::of(&root.bytes));
        assert_eq!(root.media_type, OCI_MANIFEST);
        let config = String::from_utf8(a.config.to_bytes()).unwrap();
        let blobs = a
            .set
            .blobs
            .iter()
            .map(|b| {
                let origin = match &b.origin {
                    BlobOrigin::Registry {
                        registry,
                        repository,
                    } => format!("{registry}/{repository}"),
                    BlobOrigin::File(p) if p.starts_with(tmp.path()) => "file".into(),
                    BlobOrigin::File(p) => format!("file {}", p.display()),
                    BlobOrigin::Lazy(_) => "lazy".into(),
                };
                format!("{} {} {origin}", b.digest, b.size)
            })
            .collect();
        (
            String::from_utf8(root.bytes.to_vec()).unwrap(),
            config,
            blobs,
        )
    }

    const SOURCE_LIB: &str =
        "r.example/lib:2@sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const SOURCE_TOOLS: &str =
        "r.example/tools:3@sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn manifest_with_base_and_sources_is_byte_identical() {
        let sources = [SOURCE_LIB.to_string(), SOURCE_TOOLS.to_string()];
        let (manifest, config, blobs) = golden(true, &sources);
        assert_eq!(manifest, BOTH_MANIFEST);
        assert_eq!(config, BASE_CONFIG);
        assert_eq!(blobs, BASE_BLOBS);
    }

    #[test]
    fn manifest_with_base_only_is_byte_identical() {
        let (manifest, config, blobs) = golden(true, &[]);
        assert_eq!(manifest, BASE_MANIFEST);
        assert_eq!(config, BASE_CONFIG);
        assert_eq!(blobs, BASE_BLOBS);
    }

    #[test]
    fn manifest_with_sources_only_is_byte_identical() {
        let (manifest, config, blobs) = golden(false, &[SOURCE_LIB.to_string()]);
        assert_eq!(manifest, SOURCES_MANIFEST);
        assert_eq!(config, SCRATCH_CONFIG);
        assert_eq!(blobs, SCRATCH_BLOBS);
    }

    #[test]
    fn manifest_without_annotations_is_byte_identical() {
        let (manifest, config, blobs) = golden(false, &[]);
        assert_eq!(manifest, NONE_MANIFEST);
        assert_eq!(config, SCRATCH_CONFIG);
        assert_eq!(blobs, SCRATCH_BLOBS);
    }

    const BOTH_MANIFEST: &str = r#"{"annotations":{"dev.regbuild.sources":"r.example/lib:2@sha256:1111111111111111111111111111111111111111111111111111111111111111,r.example/tools:3@sha256:2222222222222222222222222222222222222222222222222222222222222222","org.opencontainers.image.base.digest":"sha256:8d2d4f717d9b5840fca330b9ce480dfd4f99693e54c53a88f8265bb8e4b07d74","org.opencontainers.image.base.name":"r.example/os/base:1"},"config":{"digest":"sha256:4db54ca1cc342c2f2ad0cce9c8e81c018ba92be012d0f784c5af28983219247c","mediaType":"application/vnd.oci.image.config.v1+json","size":987},"layers":[{"digest":"sha256:31b1bea262a65f3b89522e134cef5e65962a5c1727666859ef2448fd439ccccf","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":1234},{"annotations":{"dev.regbuild.layer.key":"key-c1"},"digest":"sha256:d0f631ca1ddba8db3bcfcb9e057cdc98d0379f1bee00e75a545147a27dadd982","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":77},{"annotations":{"dev.regbuild.layer.key":"key-c2"},"digest":"sha256:9c0abe51c6e6655d81de2d044d4fb194931f058c0426c67c7285d8f5657ed64a","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":77},{"annotations":{"dev.regbuild.layer.key":"key-l1"},"digest":"sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":5},{"digest":"sha256:8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":5}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#;
    const BASE_MANIFEST: &str = r#"{"annotations":{"org.opencontainers.image.base.digest":"sha256:8d2d4f717d9b5840fca330b9ce480dfd4f99693e54c53a88f8265bb8e4b07d74","org.opencontainers.image.base.name":"r.example/os/base:1"},"config":{"digest":"sha256:4db54ca1cc342c2f2ad0cce9c8e81c018ba92be012d0f784c5af28983219247c","mediaType":"application/vnd.oci.image.config.v1+json","size":987},"layers":[{"digest":"sha256:31b1bea262a65f3b89522e134cef5e65962a5c1727666859ef2448fd439ccccf","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":1234},{"annotations":{"dev.regbuild.layer.key":"key-c1"},"digest":"sha256:d0f631ca1ddba8db3bcfcb9e057cdc98d0379f1bee00e75a545147a27dadd982","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":77},{"annotations":{"dev.regbuild.layer.key":"key-c2"},"digest":"sha256:9c0abe51c6e6655d81de2d044d4fb194931f058c0426c67c7285d8f5657ed64a","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":77},{"annotations":{"dev.regbuild.layer.key":"key-l1"},"digest":"sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":5},{"digest":"sha256:8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":5}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#;
    const SOURCES_MANIFEST: &str = r#"{"annotations":{"dev.regbuild.sources":"r.example/lib:2@sha256:1111111111111111111111111111111111111111111111111111111111111111"},"config":{"digest":"sha256:fa6c7308218e148e5840a06718c02279ba08f9e3c3f5684bc78a917ade5d6fd3","mediaType":"application/vnd.oci.image.config.v1+json","size":894},"layers":[{"annotations":{"dev.regbuild.layer.key":"key-c1"},"digest":"sha256:d0f631ca1ddba8db3bcfcb9e057cdc98d0379f1bee00e75a545147a27dadd982","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":77},{"annotations":{"dev.regbuild.layer.key":"key-c2"},"digest":"sha256:9c0abe51c6e6655d81de2d044d4fb194931f058c0426c67c7285d8f5657ed64a","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":77},{"annotations":{"dev.regbuild.layer.key":"key-l1"},"digest":"sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":5},{"digest":"sha256:8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":5}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#;
    const NONE_MANIFEST: &str = r#"{"config":{"digest":"sha256:fa6c7308218e148e5840a06718c02279ba08f9e3c3f5684bc78a917ade5d6fd3","mediaType":"application/vnd.oci.image.config.v1+json","size":894},"layers":[{"annotations":{"dev.regbuild.layer.key":"key-c1"},"digest":"sha256:d0f631ca1ddba8db3bcfcb9e057cdc98d0379f1bee00e75a545147a27dadd982","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":77},{"annotations":{"dev.regbuild.layer.key":"key-c2"},"digest":"sha256:9c0abe51c6e6655d81de2d044d4fb194931f058c0426c67c7285d8f5657ed64a","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":77},{"annotations":{"dev.regbuild.layer.key":"key-l1"},"digest":"sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":5},{"digest":"sha256:8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":5}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#;
    const BASE_CONFIG: &str = r#"{"architecture":"amd64","config":{"Env":["PATH=/bin","A=1"]},"created":"2023-11-14T22:13:20Z","history":[{"created_by":"base"},{"created":"2023-01-01T00:00:00Z","created_by":"STEP 0"},{"created":"2023-01-01T00:00:00Z","created_by":"STEP 1"},{"created":"2023-01-01T00:00:00Z","created_by":"STEP 2"},{"created":"2023-01-01T00:00:00Z","created_by":"STEP 3"},{"created":"2023-01-01T00:00:00Z","created_by":"STEP 4"},{"created":"2023-01-01T00:00:00Z","created_by":"ENV A=1","empty_layer":true}],"os":"linux","rootfs":{"diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000001","sha256:d09f15866c8d3b95c732c7b0d3c9c2979f9b46e7f761d358ecf6b14fe8748a66","sha256:2211991a2d5f34baee0e4f7addd9ffeb9b89bc3f309964cac16e599f876d680e","sha256:59e8f22f2be47c3e1d2f2e1b69c1d6b1a1e1d4c6135265856feba5bd228dce87","sha256:0dca34bba7eb349f57ec01a6012fef62dfdc9003412c8f8ad9173c8981118d1d","sha256:7130e547de9e6b32513b3031c41392ccdd8cdc7b5591df18d068f3366a18252c"],"type":"layers"}}"#;
    const SCRATCH_CONFIG: &str = r#"{"architecture":"arm64","config":{"Env":["A=1"]},"created":"2023-11-14T22:13:20Z","history":[{"created":"2023-01-01T00:00:00Z","created_by":"STEP 0"},{"created":"2023-01-01T00:00:00Z","created_by":"STEP 1"},{"created":"2023-01-01T00:00:00Z","created_by":"STEP 2"},{"created":"2023-01-01T00:00:00Z","created_by":"STEP 3"},{"created":"2023-01-01T00:00:00Z","created_by":"STEP 4"},{"created":"2023-01-01T00:00:00Z","created_by":"ENV A=1","empty_layer":true}],"os":"linux","rootfs":{"diff_ids":["sha256:d09f15866c8d3b95c732c7b0d3c9c2979f9b46e7f761d358ecf6b14fe8748a66","sha256:2211991a2d5f34baee0e4f7addd9ffeb9b89bc3f309964cac16e599f876d680e","sha256:59e8f22f2be47c3e1d2f2e1b69c1d6b1a1e1d4c6135265856feba5bd228dce87","sha256:0dca34bba7eb349f57ec01a6012fef62dfdc9003412c8f8ad9173c8981118d1d","sha256:7130e547de9e6b32513b3031c41392ccdd8cdc7b5591df18d068f3366a18252c"],"type":"layers"},"variant":"v8"}"#;
    /// digest, size, where its bytes are.
    const BASE_BLOBS: &[&str] = &[
        "sha256:31b1bea262a65f3b89522e134cef5e65962a5c1727666859ef2448fd439ccccf 1234 r.example/os/base",
        "sha256:d0f631ca1ddba8db3bcfcb9e057cdc98d0379f1bee00e75a545147a27dadd982 77 cache.example/team/cache",
        "sha256:9c0abe51c6e6655d81de2d044d4fb194931f058c0426c67c7285d8f5657ed64a 77 lazy",
        "sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740 5 file",
        "sha256:8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041 5 file",
        "sha256:4db54ca1cc342c2f2ad0cce9c8e81c018ba92be012d0f784c5af28983219247c 987 file",
    ];
    const SCRATCH_BLOBS: &[&str] = &[
        "sha256:d0f631ca1ddba8db3bcfcb9e057cdc98d0379f1bee00e75a545147a27dadd982 77 cache.example/team/cache",
        "sha256:9c0abe51c6e6655d81de2d044d4fb194931f058c0426c67c7285d8f5657ed64a 77 lazy",
        "sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740 5 file",
        "sha256:8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041 5 file",
        "sha256:fa6c7308218e148e5840a06718c02279ba08f9e3c3f5684bc78a917ade5d6fd3 894 file",
    ];
}
