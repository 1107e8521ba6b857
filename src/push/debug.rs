//! The debug variant of an image: the same image with another image's layers on top (a
//! busybox giving `/bin/sh`, say), pushed beside it. Nothing is uploaded twice: the debug
//! image's layers are mounted from its repository, the image's own layers are already in
//! the target repository; only the new config (its diff_ids grow) is uploaded.

use super::index::{add_image, platform_manifest, put_tagged};
use crate::builder::BuiltImage;
use crate::image::base::{self, BaseError};
use regbuild_oci::config::ImageConfig;
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{Descriptor, OCI_INDEX};
use regbuild_oci::model::{Image, ImageIndex, ImageManifest, ModelError};
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::publish::{ImageSet, PutAs};
use regbuild_registry::Registry;

/// Why the debug variant could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error("--debug-from: {0}")]
    Resolve(#[from] BaseError),
    #[error("the image has no manifest")]
    NoManifest,
    #[error("--debug-from: {0}")]
    Config(#[from] regbuild_oci::config::ConfigError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The debug variant of each platform image (an index over them for several platforms).
/// `pushed` is where the normal image now lives: its blobs are mounted from there.
pub async fn variant(
    registry: &Registry,
    images: &[(&Platform, &BuiltImage)],
    debug_from: &ImageRef,
    pushed: &ImageRef,
    tmp: &std::path::Path,
) -> Result<(ImageSet, Digest), DebugError> {
    let mut set = ImageSet::default();
    let mut children = Vec::new();
    for (platform, image) in images {
        let from = base::resolve(registry, debug_from, platform).await?;
        let root = image.set.root().ok_or(DebugError::NoManifest)?;
        let manifest = ImageManifest::parse(&root.bytes)?;
        for d in &manifest.layers {
            set.add_remote_layer(d, &pushed.registry, &pushed.repository);
        }
        let from_repo = &from.reference;
        for d in &from.layers {
            set.add_remote_layer(d, &from_repo.registry, &from_repo.repository);
        }
        let from_config = ImageConfig::parse(&from.config)?;
        let debug = with_layers_of(
            manifest,
            &image.config,
            &from.layers,
            &from_config,
            debug_from,
        );
        let put_as = if images.len() == 1 {
            PutAs::Tags
        } else {
            PutAs::Digest
        };
        let (digest, size) = add_image(&mut set, debug.to_bytes(), tmp, "debug-config", put_as)?;
        children.push(platform_manifest(platform, &digest, size));
    }
    if let [only] = &children[..] {
        return Ok((set, only.digest.clone()));
    }
    let digest = put_tagged(&mut set, OCI_INDEX, ImageIndex::new(children).to_bytes());
    Ok((set, digest))
}

/// The image of `manifest` and `config` with the `layers` of `debug_from` (and the diff_ids
/// of its config, `from_config`) on top.
fn with_layers_of(
    manifest: ImageManifest,
    config: &ImageConfig,
    layers: &[Descriptor],
    from_config: &ImageConfig,
    debug_from: &ImageRef,
) -> Image {
    let mut image = Image {
        manifest,
        config: config.clone(),
    };
    let created_by = format!("regbuild --debug-from {debug_from}");
    image.append(layers, &from_config.diff_ids(), &created_by);
    image
}

#[cfg(test)]
mod tests {
    //! Golden bytes: the debug variant as written before the image model replaced hand-built
    //! JSON.

    use super::*;
    use regbuild_oci::manifest::{DOCKER_LAYER_GZIP, OCI_LAYER_GZIP};

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn the_debug_image_is_byte_identical() {
        let config = ImageConfig::from_base(IMAGE_CONFIG.as_bytes()).unwrap();
        assert_eq!(config.to_bytes(), IMAGE_CONFIG.as_bytes());
        let layers = [
            Descriptor::new(DOCKER_LAYER_GZIP, d("f1"), 21),
            Descriptor::new(OCI_LAYER_GZIP, d("f2"), 22),
        ];
        let debug = with_layers_of(
            ImageManifest::parse(ROOT.as_bytes()).unwrap(),
            &config,
            &layers,
            &ImageConfig::parse(FROM_CONFIG.as_bytes()).unwrap(),
            &"r.example/tools/busybox:1".parse().unwrap(),
        )
        .to_bytes();
        assert_eq!(String::from_utf8(debug.config).unwrap(), CONFIG);
        assert_eq!(String::from_utf8(debug.manifest).unwrap(), MANIFEST);
    }

    #[test]
    fn the_debug_index_is_byte_identical() {
        let platform = |arch: &str, variant: Option<&str>| Platform::new("linux", arch, variant);
        let index = ImageIndex::new([
            platform_manifest(&platform("amd64", None), &d("dm1"), 700),
            platform_manifest(&platform("arm", Some("v7")), &d("dm2"), 800),
        ]);
        assert_eq!(String::from_utf8(index.to_bytes()).unwrap(), INDEX);
    }

    const ROOT: &str = r#"{"annotations":{"org.opencontainers.image.base.digest":"sha256:cae662172fd450bb0cd710a769079c05bfc5d8e35efa6576edc7d0377afdd4a2","org.opencontainers.image.base.name":"r.example/os/base:1"},"config":{"digest":"sha256:e67d23e7820c49a8051dac2831f38290f5e72f66c8db5079eeb60d82f14894c0","mediaType":"application/vnd.oci.image.config.v1+json","size":3},"layers":[{"digest":"sha256:7dc96f776c8423e57a2785489a3f9c43fb6e756876d6ad9a9cac4aa4e72ec193","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":11},{"annotations":{"dev.regbuild.layer.key":"k1"},"digest":"sha256:f55ff16f66f43360266b95db6f8fec01d76031054306ae4a4b380598f6cfd114","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":12}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#;
    const IMAGE_CONFIG: &str = r#"{"architecture":"amd64","config":{"Env":["PATH=/bin"],"User":"app"},"created":"2023-11-14T22:13:20Z","history":[{"created_by":"base"},{"created":"2023-01-01T00:00:00Z","created_by":"COPY a /a"}],"os":"linux","rootfs":{"diff_ids":["sha256:08049db9df8d5c060320fb1d16342efcf2bd6c91480b9dd1ace0edf5eef61ebf","sha256:4fd92ac51923a9bca6dfbdab4b2096e265402a3bbeaa4d5b844ec85e5f3cf38a"],"type":"layers"}}"#;
    const FROM_CONFIG: &str = r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:c02a5eb6ca35ee6a26beb48787940734da9004c8399d9e7b0d9ad3a5e8c04bc1","sha256:b8e948488a8edf127c05a8ec106e69feb75a7fcefe2658684c5c1a1c63ecb839"]},"history":[{"created_by":"busybox"}]}"#;
    const CONFIG: &str = r#"{"architecture":"amd64","config":{"Env":["PATH=/bin"],"User":"app"},"created":"2023-11-14T22:13:20Z","history":[{"created_by":"base"},{"created":"2023-01-01T00:00:00Z","created_by":"COPY a /a"},{"created":"2023-11-14T22:13:20Z","created_by":"regbuild --debug-from r.example/tools/busybox:1"},{"created":"2023-11-14T22:13:20Z","created_by":"regbuild --debug-from r.example/tools/busybox:1"}],"os":"linux","rootfs":{"diff_ids":["sha256:08049db9df8d5c060320fb1d16342efcf2bd6c91480b9dd1ace0edf5eef61ebf","sha256:4fd92ac51923a9bca6dfbdab4b2096e265402a3bbeaa4d5b844ec85e5f3cf38a","sha256:c02a5eb6ca35ee6a26beb48787940734da9004c8399d9e7b0d9ad3a5e8c04bc1","sha256:b8e948488a8edf127c05a8ec106e69feb75a7fcefe2658684c5c1a1c63ecb839"],"type":"layers"}}"#;
    const MANIFEST: &str = r#"{"annotations":{"org.opencontainers.image.base.digest":"sha256:cae662172fd450bb0cd710a769079c05bfc5d8e35efa6576edc7d0377afdd4a2","org.opencontainers.image.base.name":"r.example/os/base:1"},"config":{"digest":"sha256:79e163303bb5b094a77ca2cf5546939e48705069ebf6c4ed44cfa0824b8823f3","mediaType":"application/vnd.oci.image.config.v1+json","size":740},"layers":[{"digest":"sha256:7dc96f776c8423e57a2785489a3f9c43fb6e756876d6ad9a9cac4aa4e72ec193","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":11},{"annotations":{"dev.regbuild.layer.key":"k1"},"digest":"sha256:f55ff16f66f43360266b95db6f8fec01d76031054306ae4a4b380598f6cfd114","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":12},{"digest":"sha256:3f524cdc07a11d7c6220bdb049fe8dd41b27483c96cc59b581e022d547290d69","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":21},{"digest":"sha256:e4ab4e3b1493d5a997b4e51cdefbaa10570ef3ea9432bd72e7b6a89654ceb7f6","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":22}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#;
    const INDEX: &str = r#"{"manifests":[{"digest":"sha256:23c0df49324695419e8e1c85c98e3f9804c22dfae212a8a7fd75def5049dd036","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"amd64","os":"linux"},"size":700},{"digest":"sha256:36493c27847dae409c1a319f1745d3d8406754aeb409f162e5dbf6230c2d1703","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"arm","os":"linux","variant":"v7"},"size":800}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;
}
