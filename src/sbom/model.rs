//! What an SBOM says about an image, independent of its format: the image, its base, the
//! operating-system packages with the layer (and the instruction) that brought each, and
//! the layers this build added. Built from the image's layers by `scan`; written as SPDX
//! by `spdx` and as CycloneDX by `cyclonedx`.

use crate::sbom::packages::Package;

/// The image an SBOM describes.
#[derive(Clone, Debug)]
pub struct Sbom {
    /// `registry/repository` the image is pushed to (its first tag's).
    pub name: String,
    /// The image manifest's digest.
    pub digest: String,
    /// The base (FROM) image: reference and digest.
    pub base: Option<(String, String)>,
    /// `debian`, `alpine`, … (the purl namespace), from the image's `/etc/os-release`.
    pub distro: String,
    pub packages: Vec<Found>,
    /// The layers this build made: digest and the instruction that made each.
    pub layers: Vec<(String, String)>,
    /// RFC 3339: `SOURCE_DATE_EPOCH`, or 1970.
    pub created: String,
    pub tool: String,
}

/// A package and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub package: Package,
    /// The digest of the first layer that holds it.
    pub layer: String,
    /// The instruction that made that layer (the base's, for a base layer).
    pub created_by: String,
}

/// A deterministic UUID (version 5 layout) from `seed`: the same image gives the same
/// document identifiers, so a re-push writes the same bytes.
pub fn uuid_from(seed: &str) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// An OCI purl for an image: `pkg:oci/NAME@DIGEST?repository_url=REGISTRY/REPO`.
pub fn oci_purl(reference: &str, digest: &str) -> String {
    let repo = reference
        .split('@')
        .next()
        .unwrap_or(reference)
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(reference.split('@').next().unwrap_or(reference), |(r, _)| r);
    let name = repo.rsplit('/').next().unwrap_or(repo);
    format!(
        "pkg:oci/{name}@{}?repository_url={}",
        digest.replace(':', "%3A"),
        repo
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_and_well_formed() {
        let u = uuid_from("sha256:abc");
        assert_eq!(u, uuid_from("sha256:abc"));
        assert_ne!(u, uuid_from("sha256:abd"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "5");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn oci_purls_name_the_repository() {
        assert_eq!(
            oci_purl("r.example:5000/lib/debian:12", "sha256:aa"),
            "pkg:oci/debian@sha256%3Aaa?repository_url=r.example:5000/lib/debian"
        );
    }
}
