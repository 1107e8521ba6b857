//! Image references (`host[:port]/repo[:tag][@sha256:…]`) as the user wrote them.
//!
//! Parsing is oci-client's (the distribution grammar, Docker Hub normalisation), taken from
//! `oci-spec`, where oci-client has it: the image model (and the Dockerfile front end) then
//! pull in no HTTP client or async runtime. This wrapper remembers whether a tag was written
//! (the grammar fills in `latest`) and names the input in every error.

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
        match parse_common(s) {
            Some(r) => Ok(r),
            None => parse_with_oci_client(s),
        }
    }
}

/// Longest input the fast path takes (the grammar caps a name at 255 bytes).
const COMMON_MAX: usize = 200;

/// The everyday shapes of references (`[host[:port]/]path[:tag][@sha256:…]`, all lowercase
/// but the tag), parsed without oci-client: its grammar is a regular expression whose
/// compilation costs about 35 ms of CPU in every process, most of a `promote`. Anything else
/// (Docker Hub's `index.docker.io`, IPv6 hosts, sha512, uppercase, errors) returns None and
/// goes through oci-client, which also words the errors. A test checks that both agree on
/// everything this accepts.
fn parse_common(s: &str) -> Option<ImageRef> {
    if s.is_empty() || s.len() > COMMON_MAX || !s.is_ascii() {
        return None;
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => {
            let hex = d.strip_prefix("sha256:")?;
            let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            (n, Some(d.parse::<Digest>().ok().filter(|_| ok)?))
        }
        None => (s, None),
    };
    let last_slash = name_tag.rfind('/');
    let (name, tag) = match name_tag.rfind(':') {
        Some(c) if last_slash.is_none_or(|sl| c > sl) => (&name_tag[..c], Some(&name_tag[c + 1..])),
        _ => (name_tag, None),
    };
    if let Some(t) = tag {
        let mut bytes = t.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || t.len() > 128 {
            return None;
        }
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (common_host(first)?, rest)
        }
        _ => ("docker.io".to_string(), name),
    };
    if !path.split('/').all(common_path_component) {
        return None;
    }
    let repository = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    let explicit_tag = tag.is_some();
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, None) => Some("latest".to_string()),
        (None, Some(_)) => None,
    };
    Some(ImageRef {
        registry,
        repository,
        tag,
        digest,
        explicit_tag,
    })
}

/// `host[:port]` with lowercase DNS labels (or an IPv4 address); `docker.io` spellings are
/// left to oci-client, which normalises them.
fn common_host(h: &str) -> Option<String> {
    let (host, port) = match h.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (h, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.split('.').all(label_ok) || host.ends_with("docker.io") {
        return None;
    }
    Some(h.to_string())
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn common_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| matches!(x, b'a'..=b'z' | b'0'..=b'9');
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn parse_with_oci_client(s: &str) -> Result<ImageRef, ReferenceError> {
    let err = |reason: String| ReferenceError {
        input: s.chars().take(300).collect(),
        reason,
    };
    let parsed = oci_spec::distribution::Reference::from_str(s).map_err(|e| {
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

    /// Every input the fast path accepts, oci-client parses the same way.
    fn agrees(input: &str) -> bool {
        match parse_common(input) {
            None => false,
            Some(fast) => {
                let slow = parse_with_oci_client(input);
                assert_eq!(slow.as_ref(), Ok(&fast), "`{input}`");
                true
            }
        }
    }

    #[test]
    fn the_fast_path_takes_everyday_references_and_agrees_with_oci_client() {
        let hex = "0123456789abcdef".repeat(4);
        for r in [
            "alpine".to_string(),
            "alpine:3.20".into(),
            "library/alpine".into(),
            "team/app:v1".into(),
            "127.0.0.1:5000/team/app:v1".into(),
            "localhost/app".into(),
            "localhost:5000/a/b/c".into(),
            "ghcr.io/org/my_app__x.y--z:1.0-rc_2".into(),
            "registry.example.com/app@sha256:".to_string() + &hex,
            "registry.example.com:443/app:v2@sha256:".to_string() + &hex,
        ] {
            assert!(agrees(&r), "the fast path should take `{r}`");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_oci_client_on_generated_inputs() {
        // Pieces that are valid, borderline or invalid in each position, combined.
        let hosts = [
            "",
            "localhost/",
            "localhost:5000/",
            "127.0.0.1:5000/",
            "reg.io/",
            "a-b.c/",
            "-a.io/",
            "a..io/",
            "Reg.io/",
            "reg.io:/",
            "reg.io:x/",
            "docker.io/",
            "index.docker.io/",
            "[::1]:5000/",
            "UPPER/",
            "x/",
        ];
        let paths = [
            "app",
            "a/b",
            "a_b",
            "a__b",
            "a___b",
            "a-b",
            "a--b",
            "a.b",
            "a..b",
            "_a",
            "a_",
            "a-",
            "A",
            "a/B",
            "a//b",
            "",
            "a/",
            "0",
            "a.b-c_d/e",
        ];
        let tags = [
            "", ":v1", ":V1", ":_x", ":.x", ":-x", ":", ":a.b-c_D", ":a/b", ":ü",
        ];
        let hex = "0123456789abcdef".repeat(4);
        let digests = [
            String::new(),
            format!("@sha256:{hex}"),
            format!("@sha256:{}", &hex[1..]),
            format!("@sha256:{}", hex.to_uppercase()),
            format!("@sha512:{hex}{hex}"),
            "@".to_string(),
        ];
        let mut taken = 0;
        let mut total = 0;
        for h in hosts {
            for p in paths {
                for t in tags {
                    for d in &digests {
                        let input = format!("{h}{p}{t}{d}");
                        total += 1;
                        if agrees(&input) {
                            taken += 1;
                        }
                    }
                }
            }
        }
        // Most combinations hold an invalid piece; the valid ones must take the fast path.
        assert!(taken >= 600, "{taken} of {total} taken by the fast path");
    }

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
