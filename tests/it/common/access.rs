//! Questions to a registry's access log ([`super::Distribution::access_log`]): which
//! manifests were written, which layers downloaded, which blobs uploaded.

use super::Access;

/// The manifest PUTs in `log`.
pub fn manifest_puts(log: &[Access]) -> Vec<&Access> {
    log.iter()
        .filter(|a| a.method == "PUT" && a.uri.contains("/manifests/"))
        .collect()
}

/// The manifest PUTs in `log` to the repository `repo`.
pub fn manifest_puts_to<'a>(log: &'a [Access], repo: &str) -> Vec<&'a Access> {
    let prefix = format!("/v2/{repo}/manifests/");
    log.iter()
        .filter(|a| a.method == "PUT" && a.uri.starts_with(&prefix))
        .collect()
}

/// GETs of layer blobs (`layers`) in `log`: downloads.
pub fn layer_gets(log: &[Access], layers: &[String]) -> usize {
    log.iter()
        .filter(|a| {
            a.method == "GET"
                && layers
                    .iter()
                    .any(|l| a.uri.ends_with(&format!("/blobs/{l}")))
        })
        .count()
}

/// Requests in `log` that upload blob bytes: an upload's POST (not a cross-repository
/// mount), PATCH or PUT.
pub fn blob_uploads(log: &[Access]) -> usize {
    log.iter()
        .filter(|a| {
            (a.method == "PATCH" || a.method == "PUT") && a.uri.contains("/blobs/uploads/")
                || a.method == "POST"
                    && a.uri.contains("/blobs/uploads/")
                    && !a.uri.contains("mount=")
        })
        .count()
}
