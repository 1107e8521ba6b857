//! Image references (`host[:port]/repo[:tag][@sha256:…]`) as the user wrote them.
//!
//! Parsing is oci-client's (the distribution grammar, Docker Hub normalisation); this wrapper
//! remembers whether a tag was written (oci-client fills in `latest`) and names the input in
//! every error.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    /// The tag as written, or `latest` when neither a tag nor a digest was written.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
    /// Whether the user wrote the tag (false when it is the implied `latest`).
    pub explicit_tag: bool,
}

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference `{input}`: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ReferenceError {
            input: s.chars().take(300).collect(),
            reason,
        };
        let parsed = oci_client::Reference::from_str(s).map_err(|e| {
            // The repository path: no host, no tag (tags may be uppercase), no digest.
            let name = s.split('@').next().unwrap_or(s);
            let path = name.split_once('/').map_or(name, |(_, p)| p);
            let path = match path.rsplit_once(':') {
                Some((p, tag)) if !tag.contains('/') => p,
                _ => path,
            };
            if path.chars().any(|c| c.is_ascii_uppercase()) {
                err("repository name must be lowercase".to_string())
            } else {
                err(e.to_string())
            }
        })?;
        // The distribution grammar allows only lowercase path components; oci-spec lets an
        // uppercase first component through when it mistakes it for a host.
        if !parsed
            .repository()
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/'))
        {
            return Err(err("repository name must be lowercase".to_string()));
        }
        let digest = match parsed.digest() {
            Some(d) => Some(d.parse::<Digest>().map_err(|e| err(e.reason.to_string()))?),
            None => None,
        };
        let name_part = s.split('@').next().unwrap_or(s);
        let last_component = name_part.rsplit('/').next().unwrap_or(name_part);
        let explicit_tag = last_component.contains(':');
        let tag = if explicit_tag || digest.is_none() {
            parsed.tag().map(str::to_string)
        } else {
            None
        };
        Ok(ImageRef {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag,
            digest,
            explicit_tag,
        })
    }
}

impl ImageRef {
    /// `host/repo`, the form used in `REPOSITORY@sha256:…` output.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository pinned to `digest` (tag dropped).
    pub fn with_digest(&self, digest: &Digest) -> ImageRef {
        ImageRef {
            tag: None,
            digest: Some(digest.clone()),
            explicit_tag: false,
            ..self.clone()
        }
    }

    /// The same repository with `tag` (digest dropped).
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            explicit_tag: true,
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registry_with_port_and_tag() {
        let r: ImageRef = "127.0.0.1:5000/team/app:v1".parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert!(r.explicit_tag);
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/app:v1");
    }

    #[test]
    fn missing_tag_means_latest_but_not_explicit() {
        let r: ImageRef = "localhost:5000/app".parse().unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert!(!r.explicit_tag);
    }

    #[test]
    fn digest_only_reference_has_no_tag() {
        let s = format!("localhost:5000/app@sha256:{}", "a".repeat(64));
        let r: ImageRef = s.parse().unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), format!("sha256:{}", "a".repeat(64)));
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        let r: ImageRef = "alpine".parse().unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/alpine");
    }

    #[test]
    fn errors_name_the_input() {
        for bad in ["", "UPPER/case", "a:b:c:d", "host/repo@sha256:zz", "repo:"] {
            let e = bad.parse::<ImageRef>().unwrap_err();
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
    }
}
