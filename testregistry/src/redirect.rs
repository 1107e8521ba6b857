//! The redirect target listener: `GET/HEAD /blobdata/<digest>?sig=..` serves
//! blob bytes without any auth, like a pre-signed storage URL.

use crate::blobs::serve_bytes;
use crate::names::valid_digest;
use crate::reply::{plain_not_found, unsupported, Reply};
use crate::request::Req;
use crate::state::Shared;
use crate::util::lock;

pub(crate) fn handle(shared: &Shared, req: &Req) -> Reply {
    let Some(digest) = req
        .path
        .strip_prefix("/blobdata/")
        .filter(|d| valid_digest(d))
    else {
        return plain_not_found();
    };
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return unsupported();
    }
    match lock(&shared.storage).content(digest) {
        // No Docker-Content-Digest: object stores do not send one.
        Some(data) => serve_bytes(req, data, None),
        None => plain_not_found(),
    }
}
