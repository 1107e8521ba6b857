//! `GET /v2/<name>/referrers/<digest>`: the OCI 1.1 referrers API, an index
//! of every manifest in the repository whose `subject` is `<digest>`.
//!
//! With `referrers_api: false` it answers distribution 2.8's plain 404, so
//! clients must fall back to the `<alg>-<hex>` tag schema.

use serde_json::{json, Map, Value};

use crate::manifests::OCI_INDEX;
use crate::names::valid_digest;
use crate::reply::{digest_invalid, plain_not_found, Reply};
use crate::request::Req;
use crate::state::Shared;
use crate::util::lock;

pub(crate) fn list(shared: &Shared, req: &Req, name: &str, subject: &str) -> Reply {
    if !shared.config.referrers_api {
        return plain_not_found();
    }
    if !valid_digest(subject) {
        return digest_invalid(&format!("invalid digest {subject:?}"));
    }
    let filter = req.query("artifactType");
    let mut found = Vec::new();
    let storage = lock(&shared.storage);
    // An unknown repository or subject is an empty list, not an error.
    for m in storage
        .repo(name)
        .map(|r| r.manifests())
        .unwrap_or_default()
    {
        let Ok(doc) = serde_json::from_slice::<Value>(&m.data) else {
            continue;
        };
        if doc.pointer("/subject/digest").and_then(Value::as_str) != Some(subject) {
            continue;
        }
        let artifact_type = doc
            .get("artifactType")
            .or_else(|| doc.pointer("/config/mediaType"))
            .and_then(Value::as_str);
        if filter.is_some() && artifact_type != filter {
            continue;
        }
        let mut d = Map::new();
        d.insert("mediaType".into(), json!(m.media_type));
        d.insert("digest".into(), json!(m.digest));
        d.insert("size".into(), json!(m.data.len()));
        if let Some(at) = artifact_type {
            d.insert("artifactType".into(), json!(at));
        }
        if let Some(a) = doc.get("annotations").filter(|a| a.is_object()) {
            d.insert("annotations".into(), a.clone());
        }
        found.push(Value::Object(d));
    }
    drop(storage);
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found});
    let reply = Reply::new(200)
        .header("Content-Type", OCI_INDEX)
        .body(index.to_string());
    if filter.is_some() {
        reply.header("OCI-Filters-Applied", "artifactType")
    } else {
        reply
    }
}
