//! An attestation (an SBOM, a provenance statement) as an OCI 1.1 artifact whose `subject`
//! is the image manifest: an empty config and the document as its one layer, put by digest
//! as a referrer (the referrers API, else the tag schema: `regbuild_registry::publish`).

use std::path::Path;

use bytes::Bytes;

use regbuild_oci::manifest::{canonical_json, Descriptor, OCI_EMPTY, OCI_MANIFEST};
use regbuild_registry::publish::{BlobOrigin, BlobSpec, ImageSet, ManifestSpec, PutAs};

/// One document as an artifact whose subject is the image: an empty config, the document
/// as its one layer.
pub fn add(
    set: &mut ImageSet,
    subject: &Descriptor,
    media_type: &str,
    doc: Vec<u8>,
    created: &str,
    tmp: &Path,
) -> std::io::Result<()> {
    let empty = b"{}";
    let config = Descriptor::of(OCI_EMPTY, empty);
    let layer = Descriptor::of(media_type, &doc);
    for (d, bytes) in [(&config, empty.as_slice()), (&layer, doc.as_slice())] {
        let path = tmp.join(format!("sbom-{}", d.digest.hex()));
        std::fs::write(&path, bytes)?;
        set.add_blob(BlobSpec {
            digest: d.digest.clone(),
            size: d.size,
            origin: BlobOrigin::File(path),
        });
    }
    let manifest = canonical_json(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": media_type,
        "config": config,
        "layers": [layer],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": created},
    }));
    set.add_manifest(ManifestSpec {
        media_type: OCI_MANIFEST.to_string(),
        digest: regbuild_oci::digest::Digest::of(&manifest),
        bytes: Bytes::from(manifest),
        put_as: PutAs::Digest,
        subject: Some(subject.digest.clone()),
        artifact_type: Some(media_type.to_string()),
        optional: false,
    });
    Ok(())
}
