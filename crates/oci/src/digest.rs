//! Content digests (`sha256:<hex>`): parsing, validating, and hashing while bytes stream by.
//!
//! Only sha256 is produced; sha512 digests are accepted when parsing so that references from
//! other tools can be named in errors, but content is verified only for algorithms we implement.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A validated content digest such as `sha256:9f86d0…`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest `{input}`: {reason}")]
pub struct DigestError {
    pub input: String,
    pub reason: &'static str,
}

impl Digest {
    /// The sha256 digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(data))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map_or("", |(a, _)| a)
    }

    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, h)| h)
    }

    /// The tag under which the referrers tag schema stores this digest's referrers
    /// (`sha256-<hex>`, distribution-spec "Referrers Tag Schema").
    pub fn referrers_tag(&self) -> String {
        format!("{}-{}", self.algorithm(), self.hex())
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| DigestError {
            input: s.chars().take(200).collect(),
            reason,
        };
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| err("missing `algorithm:`"))?;
        let want_len = match alg {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(err("unsupported algorithm (sha256 or sha512)")),
        };
        if hex.len() != want_len {
            return Err(err("wrong length"));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(err("not lowercase hex"));
        }
        Ok(Digest(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes bytes as they pass and counts them, so content is verified without being held.
#[derive(Clone, Default)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.len += data.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest(format!("sha256:{}", hex::encode(self.sha.finalize())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_is_well_known() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_rejects_malformed_digests() {
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!("md5:d41d8cd98f00b204e9800998ecf8427e"
            .parse::<Digest>()
            .is_err());
        assert!(format!("sha256:{}", "A".repeat(64))
            .parse::<Digest>()
            .is_err());
        assert!("nocolon".parse::<Digest>().is_err());
        let ok = format!("sha256:{}", "a".repeat(64));
        assert_eq!(ok.parse::<Digest>().unwrap().hex(), "a".repeat(64));
    }

    #[test]
    fn hasher_matches_one_shot_digest() {
        let mut h = Hasher::new();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.len(), 11);
        assert_eq!(h.finish(), Digest::of(b"hello world"));
    }

    #[test]
    fn referrers_tag_replaces_colon() {
        let d = Digest::of(b"x");
        assert_eq!(d.referrers_tag(), format!("sha256-{}", d.hex()));
    }
}
