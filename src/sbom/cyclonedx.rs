//! The SBOM as a CycloneDX 1.6 JSON document: the image as the metadata component, the
//! base image and every operating-system package as components (purl, and as properties
//! the layer and instruction that brought it), each layer this build added as a file
//! component with its digest. Pure.

use serde_json::json;

use crate::sbom::model::{oci_purl, uuid_from, Sbom};

pub const MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

/// The document's bytes (keys sorted, so the same image gives the same bytes).
pub fn write(sbom: &Sbom) -> Vec<u8> {
    let (tool_name, tool_version) = sbom.tool.split_once('-').unwrap_or((&sbom.tool, ""));
    let mut components = Vec::new();
    let mut depends = Vec::new();
    if let Some((reference, digest)) = &sbom.base {
        let purl = oci_purl(reference, digest);
        components.push(json!({
            "type": "container",
            "bom-ref": purl,
            "name": reference,
            "version": digest,
            "purl": purl,
            "properties": [{"name": "regbuild:role", "value": "base image"}],
        }));
        depends.push(purl);
    }
    for f in &sbom.packages {
        let purl = f.package.purl(&sbom.distro);
        if components.iter().any(|c| c["bom-ref"] == purl.as_str()) {
            continue;
        }
        let mut c = json!({
            "type": "library",
            "bom-ref": purl,
            "name": f.package.name,
            "version": f.package.version,
            "purl": purl,
            "properties": [
                {"name": "regbuild:layer", "value": f.layer},
                {"name": "regbuild:created_by", "value": f.created_by},
            ],
        });
        if let Some(l) = &f.package.license {
            c["licenses"] = json!([{"expression": l}]);
        }
        components.push(c);
        depends.push(purl);
    }
    for (i, (digest, created_by)) in sbom.layers.iter().enumerate() {
        let bom_ref = format!("layer:{digest}");
        components.push(json!({
            "type": "file",
            "bom-ref": bom_ref,
            "name": format!("layer {}", i + 1),
            "hashes": [{"alg": "SHA-256", "content": digest.trim_start_matches("sha256:")}],
            "description": created_by,
        }));
        depends.push(bom_ref);
    }
    let image_ref = oci_purl(&sbom.name, &sbom.digest);
    let doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid_from(&sbom.digest)),
        "version": 1,
        "metadata": {
            "timestamp": sbom.created,
            "tools": {"components": [{"type": "application", "name": tool_name, "version": tool_version}]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": sbom.name,
                "version": sbom.digest,
                "purl": image_ref,
            },
        },
        "components": components,
        "dependencies": [{"ref": image_ref, "dependsOn": depends}],
    });
    regbuild_oci::manifest::canonical_json(&doc)
}
