//! Reading a pushed image's layers back, header by header: what a registry holds, not what
//! an unpacker made of it (umoci drops device nodes when unprivileged, and ignores most
//! xattrs).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::skopeo_copy;

/// One tar entry of a layer, as its headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// `(major, minor)` of a device node.
    pub device: Option<(u32, u32)>,
    /// PAX `SCHILY.xattr.*` records, by attribute name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub data: Vec<u8>,
}

/// Every layer of `reference` (pulled with skopeo into an OCI layout), lowest first:
/// in-layer path (as written, directories with their `/`) → header.
pub fn pushed_layers(reference: &str) -> Vec<BTreeMap<String, Header>> {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    skopeo_copy(
        &format!("docker://{reference}"),
        &format!("oci:{}:pulled", layout.display()),
        &[],
    );
    let json = |digest: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(blob(&layout, digest)).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = json(index["manifests"][0]["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| read_layer(&blob(&layout, l["digest"].as_str().unwrap())))
        .collect()
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn read_layer(path: &Path) -> BTreeMap<String, Header> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap());
    let mut archive = tar::Archive::new(gz);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut xattrs = BTreeMap::new();
        if let Some(pax) = entry.pax_extensions().unwrap() {
            for record in pax {
                let record = record.unwrap();
                if let Some(name) = record.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(name.to_string(), record.value_bytes().to_vec());
                }
            }
        }
        let h = entry.header().clone();
        let kind = h.entry_type();
        let device = matches!(kind, tar::EntryType::Char | tar::EntryType::Block).then(|| {
            let major = h.device_major().unwrap().unwrap();
            let minor = h.device_minor().unwrap().unwrap();
            (major, minor)
        });
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        out.insert(
            path,
            Header {
                kind,
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                device,
                xattrs,
                data,
            },
        );
    }
    out
}
