//! Manifests (`/v2/<name>/manifests/<reference>`): validated PUT, content
//! negotiated GET/HEAD, DELETE.
//!
//! PUT is stricter than distribution in one way: descriptor sizes must match
//! the stored content, because a wrong size breaks every later pull. The Quay
//! profile also refuses indexes that mix Docker and OCI media types.
//!
//! GET/HEAD content negotiation, kept simple:
//! - with an `Accept` header that names neither the stored media type nor
//!   `*/*`: 404 `MANIFEST_UNKNOWN`;
//! - without any `Accept` header: OCI manifests and indexes answer 404
//!   `MANIFEST_UNKNOWN` (what distribution 2.8 does), Docker types are served.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::location::location;
use crate::names::{valid_digest, valid_tag};
use crate::profile::Profile;
use crate::reply::{digest_invalid, error, manifest_unknown, name_unknown, unsupported, Reply};
use crate::request::Req;
use crate::state::Shared;
use crate::storage::Storage;
use crate::util::{lock, sha256_digest};

/// Media types the registry accepts for manifests.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub(crate) fn handle(shared: &Shared, req: &Req, name: &str, reference: &str) -> Reply {
    match req.method.as_str() {
        "GET" | "HEAD" => get(shared, req, name, reference),
        "PUT" => put(shared, req, name, reference),
        "DELETE" => {
            if lock(&shared.storage).delete_manifest(name, reference) {
                Reply::new(202)
            } else {
                manifest_unknown(reference)
            }
        }
        _ => unsupported(),
    }
}

fn get(shared: &Shared, req: &Req, name: &str, reference: &str) -> Reply {
    let storage = lock(&shared.storage);
    if !storage.repo_exists(name) {
        return name_unknown(name);
    }
    let Some(m) = storage.manifest(name, reference).cloned() else {
        return manifest_unknown(reference);
    };
    drop(storage);
    let accept = req.header_list("accept");
    let acceptable = if accept.is_empty() {
        m.media_type != OCI_MANIFEST && m.media_type != OCI_INDEX
    } else {
        accept.iter().any(|a| a == &m.media_type || a == "*/*")
    };
    if !acceptable {
        return error(
            404,
            "MANIFEST_UNKNOWN",
            "manifest found, but the Accept header does not allow its media type",
            json!({"mediaType": m.media_type, "accept": accept}),
        );
    }
    Reply::new(200)
        .header("Content-Type", m.media_type)
        .header("Docker-Content-Digest", m.digest.clone())
        .header("ETag", format!("\"{}\"", m.digest))
        .body(m.data)
}

fn invalid(message: &str) -> Reply {
    error(400, "MANIFEST_INVALID", "manifest invalid", json!(message))
}

fn put(shared: &Shared, req: &Req, name: &str, reference: &str) -> Reply {
    if req.body.len() > shared.config.max_manifest_bytes {
        return error(
            413,
            "SIZE_INVALID",
            "manifest too big",
            json!({"limit": shared.config.max_manifest_bytes, "size": req.body.len()}),
        );
    }
    let by_digest = reference.contains(':');
    if by_digest && !valid_digest(reference) {
        return digest_invalid(&format!("invalid digest {reference:?}"));
    }
    if !by_digest && !valid_tag(reference) {
        return error(
            400,
            "TAG_INVALID",
            "manifest tag did not match URI",
            json!(reference),
        );
    }
    let Some(media_type) = req
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .filter(|ct| !ct.is_empty())
    else {
        return invalid("Content-Type must name the manifest media type");
    };
    let Ok(doc) = serde_json::from_slice::<Value>(&req.body) else {
        return invalid("body is not JSON");
    };
    if !doc.is_object() {
        return invalid("body is not a JSON object");
    }
    if let Some(body_type) = doc.get("mediaType").and_then(Value::as_str) {
        if body_type != media_type {
            return invalid(&format!(
                "mediaType {body_type:?} does not match Content-Type {media_type:?}"
            ));
        }
    }
    let digest = sha256_digest(&req.body);
    if by_digest && reference != digest {
        return digest_invalid(&format!("body has digest {digest}, not {reference}"));
    }
    if shared.config.profile == Profile::Quay {
        if let Some(reply) = mixed_media_types(media_type, &doc) {
            return reply;
        }
    }
    let mut storage = lock(&shared.storage);
    let checked = match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => check_image(&storage, name, &doc),
        OCI_INDEX | DOCKER_LIST => check_index(&storage, name, &doc),
        other => Err(invalid(&format!(
            "unsupported manifest media type {other:?}"
        ))),
    };
    if let Err(reply) = checked {
        return reply;
    }
    let tag = (!by_digest).then_some(reference);
    storage.put_manifest(name, &digest, tag, media_type, Bytes::clone(&req.body));
    drop(storage);
    let loc = location(
        shared.config.location,
        req,
        &format!("/v2/{name}/manifests/{digest}"),
        None,
    );
    let mut reply = Reply::new(201)
        .header("Location", loc)
        .header("Docker-Content-Digest", digest);
    let subject = doc
        .pointer("/subject/digest")
        .and_then(Value::as_str)
        .filter(|_| shared.config.referrers_api);
    if let Some(subject) = subject {
        reply = reply.header("OCI-Subject", subject);
    }
    reply
}

/// Quay's 400 for an index whose children are not all of its own family:
/// OCI manifests in an OCI index, Docker manifests in a Docker list.
fn mixed_media_types(media_type: &str, doc: &Value) -> Option<Reply> {
    let children: Vec<&str> = doc
        .get("manifests")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|d| d.get("mediaType").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let docker = children
        .iter()
        .any(|t| t.starts_with("application/vnd.docker."));
    let oci = children
        .iter()
        .any(|t| t.starts_with("application/vnd.oci."));
    let mixed = match media_type {
        OCI_INDEX => docker,
        DOCKER_LIST => oci,
        _ => false,
    };
    mixed.then(|| {
        error(
            400,
            "MANIFEST_INVALID",
            "manifest list/index mixes Docker and OCI media types",
            json!({"mediaType": media_type, "manifests": children}),
        )
    })
}

/// `(digest, size)` of a descriptor, or the 400 to answer.
fn descriptor(d: &Value, what: &str) -> Result<(String, u64), Reply> {
    let digest = d.get("digest").and_then(Value::as_str);
    let size = d.get("size").and_then(Value::as_u64);
    match (digest, size) {
        (Some(digest), Some(size)) if valid_digest(digest) => Ok((digest.to_string(), size)),
        _ => Err(invalid(&format!(
            "{what} descriptor needs a valid digest and size"
        ))),
    }
}

fn blob_unknown_in_manifest(digest: &str) -> Reply {
    error(
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "blob unknown to registry",
        json!(digest),
    )
}

fn check_image(storage: &Storage, name: &str, doc: &Value) -> Result<(), Reply> {
    if doc.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let config = doc
        .get("config")
        .ok_or_else(|| invalid("config descriptor missing"))?;
    let layers = doc
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("layers must be an array"))?;
    let mut all = vec![("config", config)];
    all.extend(layers.iter().map(|l| ("layer", l)));
    for (what, d) in all {
        let (digest, size) = descriptor(d, what)?;
        // Foreign layers live elsewhere; the registry never holds them.
        let foreign = d
            .get("urls")
            .and_then(Value::as_array)
            .is_some_and(|u| !u.is_empty());
        if foreign {
            continue;
        }
        let data = storage
            .blob(name, &digest)
            .ok_or_else(|| blob_unknown_in_manifest(&digest))?;
        if data.len() as u64 != size {
            return Err(invalid(&format!(
                "{what} {digest} has size {}, descriptor says {size}",
                data.len()
            )));
        }
    }
    Ok(())
}

fn check_index(storage: &Storage, name: &str, doc: &Value) -> Result<(), Reply> {
    if doc.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let children = doc
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("manifests must be an array"))?;
    for child in children {
        let (digest, size) = descriptor(child, "manifest")?;
        let stored = storage
            .repo(name)
            .and_then(|r| r.has_manifest(&digest))
            .ok_or_else(|| blob_unknown_in_manifest(&digest))?;
        if stored.data.len() as u64 != size {
            return Err(invalid(&format!(
                "manifest {digest} has size {}, descriptor says {size}",
                stored.data.len()
            )));
        }
    }
    Ok(())
}
