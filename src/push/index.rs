//! A multi-platform image: one manifest per platform, put by digest, under an OCI index put
//! at the tags. Layers shared between platforms (platform-independent COPYs) are listed once,
//! so they are uploaded once. Also how the other writers of computed images (the debug
//! variant, rebase) put theirs in a set (`add_image`, `put_tagged`).

use std::path::Path;

use bytes::Bytes;

use crate::builder::BuiltImage;
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{Descriptor, OCI_INDEX, OCI_MANIFEST};
use regbuild_oci::model::{ImageBytes, ImageIndex};
use regbuild_oci::platform::Platform;
use regbuild_registry::publish::{BlobOrigin, BlobSpec, ImageSet, ManifestSpec, PutAs};

/// The index over `images` and everything it needs.
pub fn assemble(images: &[(&Platform, &BuiltImage)]) -> (ImageSet, Digest) {
    let mut set = ImageSet::default();
    for (_, image) in images {
        for b in &image.set.blobs {
            set.add_blob(b.clone());
        }
        for m in &image.set.manifests {
            let mut child = m.clone();
            child.put_as = PutAs::Digest;
            set.add_manifest(child);
        }
    }
    let index = index_of(images.iter().map(|(platform, image)| {
        let size = image.set.root().map_or(0, |m| m.bytes.len() as u64);
        let base = image.base.as_ref();
        (
            platform_manifest(platform, &image.digest, size),
            base.map(|b| (b.reference.to_string(), b.digest.clone())),
        )
    }));
    let digest = put_tagged(&mut set, OCI_INDEX, index.to_bytes());
    (set, digest)
}

/// The index of platform manifests, each with the base it is built on (name, digest): all
/// platforms built on one base (the usual case), the index names it too.
fn index_of(
    children: impl IntoIterator<Item = (Descriptor, Option<(String, Digest)>)>,
) -> ImageIndex {
    let (entries, bases): (Vec<_>, Vec<_>) = children.into_iter().unzip();
    let mut index = ImageIndex::new(entries);
    if let Some(Some((name, digest))) = bases.first() {
        if bases.iter().all(|b| b == &bases[0]) {
            index.set_base(name, digest);
        }
    }
    index
}

/// The index entry of `platform`'s image manifest.
pub(super) fn platform_manifest(platform: &Platform, digest: &Digest, size: u64) -> Descriptor {
    let p = Platform::new(
        &platform.os,
        &platform.architecture,
        platform.variant.as_deref(),
    );
    Descriptor::new(OCI_MANIFEST, digest.clone(), size).with_platform(p)
}

/// Adds a computed image to `set`: its config (written under `tmp` as `{file}-<hex>.json`,
/// for upload) and its manifest, put `put_as`. Returns the manifest's digest and size.
pub(crate) fn add_image(
    set: &mut ImageSet,
    image: ImageBytes,
    tmp: &Path,
    file: &str,
    put_as: PutAs,
) -> std::io::Result<(Digest, u64)> {
    let path = tmp.join(format!("{file}-{}.json", image.config_digest.hex()));
    std::fs::write(&path, &image.config)?;
    set.add_blob(BlobSpec {
        digest: image.config_digest,
        size: image.config.len() as u64,
        origin: BlobOrigin::File(path),
    });
    let size = image.manifest.len() as u64;
    set.add_manifest(ManifestSpec {
        media_type: OCI_MANIFEST.into(),
        bytes: Bytes::from(image.manifest),
        digest: image.digest.clone(),
        put_as,
        subject: None,
        artifact_type: None,
        optional: false,
    });
    Ok((image.digest, size))
}

/// Adds the manifest or index `bytes` to `set`, put at the tags; returns its digest.
pub(crate) fn put_tagged(set: &mut ImageSet, media_type: &str, bytes: Vec<u8>) -> Digest {
    let digest = Digest::of(&bytes);
    set.add_manifest(ManifestSpec {
        media_type: media_type.to_string(),
        bytes: Bytes::from(bytes),
        digest: digest.clone(),
        put_as: PutAs::Tags,
        subject: None,
        artifact_type: None,
        optional: false,
    });
    digest
}

#[cfg(test)]
mod tests {
    //! Golden bytes: the indexes written before the image model replaced hand-built JSON.

    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    fn platform(arch: &str, variant: Option<&str>) -> Platform {
        Platform::new("linux", arch, variant)
    }

    fn index(bases: [Option<(&str, &str)>; 2]) -> String {
        let base = |b: Option<(&str, &str)>| b.map(|(n, digest)| (n.to_string(), d(digest)));
        let children = [
            (
                platform_manifest(&platform("amd64", None), &d("m1"), 500),
                base(bases[0]),
            ),
            (
                platform_manifest(&platform("arm64", Some("v8")), &d("m2"), 600),
                base(bases[1]),
            ),
        ];
        String::from_utf8(index_of(children).to_bytes()).unwrap()
    }

    #[test]
    fn an_index_names_the_base_all_platforms_share() {
        let base = Some(("r.example/os/base:1", "base"));
        assert_eq!(index([base, base]), INDEX_COMMON_BASE);
    }

    #[test]
    fn an_index_over_several_bases_or_none_names_none() {
        let base = Some(("r.example/os/base:1", "base"));
        let other = Some(("r.example/os/base:1", "other"));
        assert_eq!(index([base, other]), INDEX_WITHOUT_BASE);
        assert_eq!(index([base, None]), INDEX_WITHOUT_BASE);
        assert_eq!(index([None, None]), INDEX_WITHOUT_BASE);
    }

    const INDEX_COMMON_BASE: &str = r#"{"annotations":{"org.opencontainers.image.base.digest":"sha256:cae662172fd450bb0cd710a769079c05bfc5d8e35efa6576edc7d0377afdd4a2","org.opencontainers.image.base.name":"r.example/os/base:1"},"manifests":[{"digest":"sha256:ca0df2c95aa144c1d0ff2ff3c8f967fdc1de9ef0c4120b3726416701b519d619","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"amd64","os":"linux"},"size":500},{"digest":"sha256:29c1b289e7522195b362e44f54e05470b69ad20540ab60a18a05e5bf6951f13d","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"arm64","os":"linux","variant":"v8"},"size":600}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;
    const INDEX_WITHOUT_BASE: &str = r#"{"manifests":[{"digest":"sha256:ca0df2c95aa144c1d0ff2ff3c8f967fdc1de9ef0c4120b3726416701b519d619","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"amd64","os":"linux"},"size":500},{"digest":"sha256:29c1b289e7522195b362e44f54e05470b69ad20540ab60a18a05e5bf6951f13d","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"arm64","os":"linux","variant":"v8"},"size":600}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;
}
