//! Writes `Location` header values in the configured [`LocationStyle`].
//!
//! Registries in the wild send absolute URLs, root-relative paths and
//! path-relative references; clients must resolve all of them against the
//! request URL (RFC 3986 §5), which is what the relative styles check.

use crate::config::LocationStyle;
use crate::request::Req;

/// `target` is an absolute path (`/v2/...`), `query` an already encoded query.
pub(crate) fn location(
    style: LocationStyle,
    req: &Req,
    target: &str,
    query: Option<&str>,
) -> String {
    let path = match style {
        LocationStyle::Absolute => format!("http://{}{}", req.host, target),
        LocationStyle::RootRelative => target.to_string(),
        LocationStyle::PathRelative => relative_reference(&req.raw_path, target),
    };
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// A relative-path reference to `target` from `base` (both absolute paths)
/// that always climbs at least one directory, so that naively appending it to
/// the request path or to the host gives a wrong URL.
pub(crate) fn relative_reference(base: &str, target: &str) -> String {
    let dirs = |p: &str| -> Vec<String> {
        let dir = &p[..p.rfind('/').map_or(0, |i| i + 1)];
        dir.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let base_dirs = dirs(base);
    let target_dirs = dirs(target);
    let file = &target[target.rfind('/').map_or(0, |i| i + 1)..];
    let mut common = base_dirs
        .iter()
        .zip(&target_dirs)
        .take_while(|(a, b)| a == b)
        .count();
    if !base_dirs.is_empty() {
        common = common.min(base_dirs.len() - 1);
    }
    let mut parts: Vec<String> = vec!["..".to_string(); base_dirs.len() - common];
    parts.extend(target_dirs[common..].iter().cloned());
    parts.push(file.to_string());
    let rel = parts.join("/");
    // A first segment with a colon would parse as a URI scheme (RFC 3986 §4.2).
    let first = rel.split('/').next().unwrap_or("");
    if first.contains(':') || rel.is_empty() {
        format!("./{rel}")
    } else {
        rel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3986 §5.2 merge + remove_dot_segments for path-only references.
    fn resolve(base: &str, rel: &str) -> String {
        let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
        let mut out: Vec<&str> = Vec::new();
        let merged = format!("{dir}{rel}");
        let segs: Vec<&str> = merged.split('/').collect();
        for (i, s) in segs.iter().enumerate() {
            match *s {
                "." => {
                    if i == segs.len() - 1 {
                        out.push("");
                    }
                }
                ".." => {
                    if out.len() > 1 {
                        out.pop();
                    }
                    if i == segs.len() - 1 {
                        out.push("");
                    }
                }
                s => out.push(s),
            }
        }
        out.join("/")
    }

    #[test]
    fn relative_references_resolve_back() {
        let cases = [
            ("/v2/a/b/blobs/uploads/", "/v2/a/b/blobs/uploads/123"),
            ("/v2/a/b/blobs/uploads", "/v2/a/b/blobs/uploads/123"),
            ("/v2/a/blobs/uploads/123", "/v2/a/blobs/uploads/123"),
            ("/v2/a/blobs/uploads/123", "/v2/a/blobs/sha256:abc"),
            ("/v2/a/manifests/latest", "/v2/a/manifests/sha256:abc"),
            ("/v2/x/blobs/uploads/", "/v2/x/blobs/sha256:abc"),
        ];
        for (base, target) in cases {
            let rel = relative_reference(base, target);
            assert!(!rel.starts_with('/'), "{rel}");
            assert!(rel.starts_with("../") || rel.starts_with("./"), "{rel}");
            assert_eq!(resolve(base, &rel), target, "{base} + {rel}");
        }
        assert_eq!(
            relative_reference("/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/1"),
            "../uploads/1"
        );
    }
}
