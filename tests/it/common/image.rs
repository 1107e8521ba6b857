//! What a registry holds for a reference, read with skopeo: the raw manifest and its layers.

use std::process::Command;

use serde_json::Value;

use super::run;

/// `sha256:` and the hex SHA-256 of `bytes`: a blob's digest.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The manifest (or index) of `reference` as the registry has it (`skopeo inspect --raw`).
pub fn raw_manifest(reference: &str) -> Value {
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The layer digests of `reference`'s manifest, lowest first.
pub fn layer_digests(reference: &str) -> Vec<String> {
    raw_manifest(reference)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}
