//! Reading and deleting blobs (`/v2/<name>/blobs/<digest>`), including
//! byte ranges and the optional redirect to the second listener.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::names::valid_digest;
use crate::reply::{blob_unknown, digest_invalid, error, unsupported, Reply};
use crate::request::Req;
use crate::state::Shared;
use crate::util::lock;

pub(crate) fn handle(shared: &Shared, req: &Req, name: &str, digest: &str) -> Reply {
    if !valid_digest(digest) {
        return digest_invalid(&format!("invalid digest {digest:?}"));
    }
    match req.method.as_str() {
        "GET" | "HEAD" => {
            let Some(data) = lock(&shared.storage).blob(name, digest) else {
                return blob_unknown(digest);
            };
            match (req.method.as_str(), shared.redirect_addr) {
                ("GET", Some(addr)) => Reply::new(307).header(
                    "Location",
                    format!(
                        "http://{}/blobdata/{digest}?sig=x",
                        redirect_host(req, addr)
                    ),
                ),
                _ => serve_bytes(req, data, Some(digest)),
            }
        }
        "DELETE" => {
            if lock(&shared.storage).unlink_blob(name, digest) {
                Reply::new(202).header("Docker-Content-Digest", digest)
            } else {
                blob_unknown(digest)
            }
        }
        _ => unsupported(),
    }
}

/// The redirect listener's address as the client can reach it: when bound to
/// an unspecified address (demo on 0.0.0.0), reuse the host the client used.
fn redirect_host(req: &Req, addr: SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return addr.to_string();
    }
    let host = req
        .host
        .rsplit_once(':')
        .map_or(req.host.as_str(), |(h, _)| h);
    format!("{host}:{}", addr.port())
}

/// 200 with the bytes, or 206 for a satisfiable `Range: bytes=a-b` / `a-`.
pub(crate) fn serve_bytes(req: &Req, data: Bytes, digest: Option<&str>) -> Reply {
    let total = data.len() as u64;
    let mut reply = Reply::new(200)
        .header("Content-Type", "application/octet-stream")
        .header("Accept-Ranges", "bytes");
    if let Some(d) = digest {
        reply = reply
            .header("Docker-Content-Digest", d)
            .header("ETag", format!("\"{d}\""));
    }
    let Some(range) = req.header("range") else {
        return reply.body(data);
    };
    match parse_range(range, total) {
        Some((start, end)) => {
            reply.status = 206;
            reply
                .header("Content-Range", format!("bytes {start}-{end}/{total}"))
                .body(data.slice(start as usize..=end as usize))
        }
        None => error(416, "RANGE_INVALID", "range not satisfiable", range.into())
            .header("Content-Range", format!("bytes */{total}")),
    }
}

/// Inclusive byte range within `total`, or `None` when unsatisfiable.
fn parse_range(raw: &str, total: u64) -> Option<(u64, u64)> {
    let spec = raw.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.trim().is_empty() {
        // Suffix range: the last N bytes.
        let n: u64 = b.trim().parse().ok()?;
        (total.checked_sub(n.min(total))?, total.checked_sub(1)?)
    } else {
        let start: u64 = a.trim().parse().ok()?;
        let end = if b.trim().is_empty() {
            total.checked_sub(1)?
        } else {
            b.trim().parse::<u64>().ok()?.min(total.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && end < total).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-", 0), None);
    }
}
