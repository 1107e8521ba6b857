//! The SBOM as an SPDX 2.3 JSON document: the image as the described package, the base
//! image it descends from, every operating-system package (its purl, and in its comment
//! the layer and instruction that brought it), and each layer this build added. Pure.

use serde_json::{json, Value};

use crate::sbom::model::{oci_purl, uuid_from, Sbom};

pub const MEDIA_TYPE: &str = "application/spdx+json";

/// The document's bytes (keys sorted, so the same image gives the same bytes).
pub fn write(sbom: &Sbom) -> Vec<u8> {
    let image_id = "SPDXRef-image";
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": sbom.name,
        "versionInfo": sbom.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "externalRefs": [purl_ref(&oci_purl(&sbom.name, &sbom.digest))],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    if let Some((reference, digest)) = &sbom.base {
        packages.push(json!({
            "SPDXID": "SPDXRef-base",
            "name": reference,
            "versionInfo": digest,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "CONTAINER",
            "externalRefs": [purl_ref(&oci_purl(reference, digest))],
        }));
        relationships.push(relation(image_id, "DESCENDANT_OF", "SPDXRef-base"));
    }
    for (i, f) in sbom.packages.iter().enumerate() {
        let id = format!("SPDXRef-package-{i}-{}", id_safe(&f.package.name));
        let mut p = json!({
            "SPDXID": id,
            "name": f.package.name,
            "versionInfo": f.package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "licenseDeclared": "NOASSERTION",
            "externalRefs": [purl_ref(&f.package.purl(&sbom.distro))],
            "comment": format!("layer {} ({})", f.layer, f.created_by),
        });
        if let Some(src) = &f.package.source {
            p["sourceInfo"] = json!(format!("built from the {src} source package"));
        }
        packages.push(p);
        relationships.push(relation(image_id, "CONTAINS", &id));
    }
    for (i, (digest, created_by)) in sbom.layers.iter().enumerate() {
        let id = format!("SPDXRef-layer-{i}");
        packages.push(json!({
            "SPDXID": id,
            "name": format!("layer {}", i + 1),
            "versionInfo": digest,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "FILE",
            "checksums": [{"algorithm": "SHA256", "checksumValue": digest.trim_start_matches("sha256:")}],
            "comment": created_by,
        }));
        relationships.push(relation(image_id, "CONTAINS", &id));
    }
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", sbom.name, sbom.digest),
        "documentNamespace": format!("https://regbuild.invalid/spdx/{}", uuid_from(&sbom.digest)),
        "creationInfo": {
            "created": sbom.created,
            "creators": [format!("Tool: {}", sbom.tool)],
        },
        "packages": packages,
        "relationships": relationships,
    });
    regbuild_oci::manifest::canonical_json(&doc)
}

fn purl_ref(purl: &str) -> Value {
    json!({
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    })
}

fn relation(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

/// What an SPDX identifier may hold: letters, digits, `.` and `-`.
fn id_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
