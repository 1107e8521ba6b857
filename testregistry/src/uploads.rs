//! Getting blobs into a repository: upload sessions (POST, PATCH, PUT, GET
//! status, DELETE) and single-request POST uploads; mounts are in `mounts`.
//!
//! Each session answer carries a new `_state` value and only the newest one is
//! accepted (404 `BLOB_UPLOAD_UNKNOWN` otherwise), which catches clients that
//! keep reusing the first `Location` instead of the last one.
//!
//! The hosted-registry profiles bend the session requests here: GAR refuses
//! `PATCH`, GHCR caps chunks at 4 MiB, ECR answers `PATCH` with 201 and a
//! stale `Range`, Artifactory refuses a closing `PUT` with a body, and
//! `max_request_body` (Harbor) loses the session on a too-large request.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::location::location;
use crate::mounts;
use crate::names::valid_digest;
use crate::profile::Profile;
use crate::reply::{digest_invalid, error, upload_unknown, Reply};
use crate::request::Req;
use crate::state::Shared;
use crate::util::{lock, random_hex, random_uuid, sha256_digest};

#[derive(Default)]
pub(crate) struct Uploads {
    sessions: HashMap<String, Session>,
}

struct Session {
    repo: String,
    data: Vec<u8>,
    state: String,
    /// Stored size after the first successful `PATCH` (ECR's stale `Range`).
    first_patch_end: Option<usize>,
}

/// GHCR's per-chunk limit.
const GHCR_CHUNK_LIMIT: usize = 4 * 1024 * 1024;

impl Uploads {
    fn create(&mut self, repo: &str) -> (String, String) {
        let id = random_uuid();
        let state = random_hex(16);
        self.sessions.insert(
            id.clone(),
            Session {
                repo: repo.to_string(),
                data: Vec::new(),
                state: state.clone(),
                first_patch_end: None,
            },
        );
        (id, state)
    }

    /// The session when it exists for `repo` and `state` is its newest one.
    fn current(&mut self, id: &str, repo: &str, state: Option<&str>) -> Option<&mut Session> {
        let s = self.sessions.get_mut(id)?;
        (s.repo == repo && Some(s.state.as_str()) == state).then_some(s)
    }

    /// Forgets session `id` if it belongs to `repo`, whatever its state.
    fn drop_session(&mut self, id: &str, repo: &str) {
        if self.sessions.get(id).is_some_and(|s| s.repo == repo) {
            self.sessions.remove(id);
        }
    }
}

/// `Range` as distribution writes it: `0-<last byte>`, and `0-0` when empty.
fn range(size: usize) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn session_location(shared: &Shared, req: &Req, name: &str, id: &str, state: &str) -> String {
    location(
        shared.config.location,
        req,
        &format!("/v2/{name}/blobs/uploads/{id}"),
        Some(&format!("_state={state}")),
    )
}

/// 201 for a blob now present in `name`.
pub(crate) fn created(shared: &Shared, req: &Req, name: &str, digest: &str) -> Reply {
    let loc = location(
        shared.config.location,
        req,
        &format!("/v2/{name}/blobs/{digest}"),
        None,
    );
    Reply::new(201)
        .header("Location", loc)
        .header("Docker-Content-Digest", digest)
}

/// Checks `data` against `digest` and stores it; the error reply otherwise.
fn commit(shared: &Shared, name: &str, digest: &str, data: Bytes) -> Result<(), Reply> {
    if !valid_digest(digest) {
        return Err(digest_invalid(&format!("invalid digest {digest:?}")));
    }
    if !digest.starts_with("sha256:") {
        return Err(digest_invalid("only sha256 is supported"));
    }
    let actual = sha256_digest(&data);
    if actual != digest {
        return Err(digest_invalid(&format!(
            "content has digest {actual}, not {digest}"
        )));
    }
    lock(&shared.storage).put_blob(name, digest, data);
    Ok(())
}

/// 202 with a new, empty upload session for `name`.
pub(crate) fn new_session(shared: &Shared, req: &Req, name: &str) -> Reply {
    let (id, state) = lock(&shared.uploads).create(name);
    let mut reply = Reply::new(202)
        .header("Location", session_location(shared, req, name, &id, &state))
        .header("Docker-Upload-UUID", id)
        .header("Range", "0-0");
    if let Some(min) = shared.config.chunk_min_length {
        reply = reply.header("OCI-Chunk-Min-Length", min.to_string());
    }
    reply
}

/// `POST /v2/<name>/blobs/uploads/`: mount, single-request upload or new session.
pub(crate) fn start(shared: &Shared, req: &Req, name: &str) -> Reply {
    if let Some(digest) = req.query("mount") {
        return mounts::mount(shared, req, name, digest);
    }
    if let (Some(digest), true) = (req.query("digest"), shared.config.single_post_upload) {
        return match commit(shared, name, digest, req.body.clone()) {
            Ok(()) => created(shared, req, name, digest),
            Err(reply) => reply,
        };
    }
    // distribution 2.8 ignores a POST body without opening a session for it.
    new_session(shared, req, name)
}

/// Parses `Content-Range: <start>-<end>` (inclusive; a `bytes ` prefix is
/// tolerated).
fn content_range(req: &Req) -> Option<Result<(u64, u64), ()>> {
    let raw = req.header("content-range")?;
    let raw = raw.trim().trim_start_matches("bytes").trim();
    let parsed = raw
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    Some(parsed.ok_or(()))
}

/// `/v2/<name>/blobs/uploads/<id>?_state=..` for every method.
pub(crate) fn session(shared: &Shared, req: &Req, name: &str, id: &str) -> Reply {
    let mut uploads = lock(&shared.uploads);
    if let Some(reply) = over_request_cap(shared, req) {
        uploads.drop_session(id, name);
        return reply;
    }
    let Some(s) = uploads.current(id, name, req.query("_state")) else {
        return upload_unknown();
    };
    match req.method.as_str() {
        "GET" => session_headers(Reply::new(204), shared, req, name, id, s),
        "DELETE" => {
            uploads.sessions.remove(id);
            Reply::new(204)
        }
        "PATCH" => patch(shared, req, name, id, s),
        "PUT" => {
            let Some(digest) = req.query("digest") else {
                return digest_invalid("digest query parameter is required");
            };
            if shared.config.profile == Profile::Jfrog && !req.body.is_empty() {
                uploads.sessions.remove(id);
                return error(
                    400,
                    "BLOB_UPLOAD_INVALID",
                    "the blob must be sent by PATCH; the closing PUT must be empty",
                    json!({"size": req.body.len()}),
                );
            }
            if !req.body.is_empty() {
                if let Err(reply) = check_range(shared, req, name, id, s) {
                    return reply;
                }
            }
            let Some(mut s) = uploads.sessions.remove(id) else {
                return upload_unknown();
            };
            drop(uploads);
            s.data.extend_from_slice(&req.body);
            // A failed PUT ends the session, as in distribution.
            match commit(shared, name, digest, Bytes::from(s.data)) {
                Ok(()) => created(shared, req, name, digest),
                Err(reply) => reply,
            }
        }
        _ => crate::reply::unsupported(),
    }
}

/// Harbor's 404 for a `PATCH`/`PUT` body over `max_request_body`.
fn over_request_cap(shared: &Shared, req: &Req) -> Option<Reply> {
    let cap = shared.config.max_request_body?;
    let size = req.body.len() as u64;
    (matches!(req.method.as_str(), "PATCH" | "PUT") && size > cap).then(|| {
        error(
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown",
            json!({"limit": cap, "size": size}),
        )
    })
}

fn patch(shared: &Shared, req: &Req, name: &str, id: &str, s: &mut Session) -> Reply {
    match shared.config.profile {
        Profile::Gar => {
            return error(
                405,
                "UNSUPPORTED",
                "chunked uploads are not supported: use a monolithic upload (POST, then PUT with the whole blob)",
                Value::Null,
            );
        }
        Profile::Ghcr
            if req.header("content-range").is_some() && req.body.len() > GHCR_CHUNK_LIMIT =>
        {
            let reply = error(
                416,
                "REQUESTED_RANGE_NOT_SATISFIABLE",
                "exceeds the maximum permissible limit of 4.00MiB",
                json!({"limit": GHCR_CHUNK_LIMIT, "size": req.body.len()}),
            );
            return session_headers(reply, shared, req, name, id, s);
        }
        _ => {}
    }
    if let Err(reply) = check_range(shared, req, name, id, s) {
        return reply;
    }
    s.data.extend_from_slice(&req.body);
    s.first_patch_end.get_or_insert(s.data.len());
    s.state = random_hex(16);
    let status = if shared.config.profile == Profile::Ecr {
        201
    } else {
        202
    };
    session_headers(Reply::new(status), shared, req, name, id, s)
}

/// Adds `Location` (newest state), `Range` and `Docker-Upload-UUID`.
fn session_headers(
    reply: Reply,
    shared: &Shared,
    req: &Req,
    name: &str,
    id: &str,
    s: &Session,
) -> Reply {
    // ECR's `Range` stays where the first PATCH left it.
    let reported = match (shared.config.profile, s.first_patch_end) {
        (Profile::Ecr, Some(end)) => end,
        _ => s.data.len(),
    };
    reply
        .header(
            "Location",
            session_location(shared, req, name, id, &s.state),
        )
        .header("Range", range(reported))
        .header("Docker-Upload-UUID", id)
}

/// 416 (with the current `Range`) when a chunk does not continue the upload
/// exactly where it stands.
fn check_range(shared: &Shared, req: &Req, name: &str, id: &str, s: &Session) -> Result<(), Reply> {
    let Some(parsed) = content_range(req) else {
        return Ok(());
    };
    let size = s.data.len() as u64;
    let ok = match parsed {
        Ok((start, end)) => {
            start == size && end >= start && end - start + 1 == req.body.len() as u64
        }
        Err(()) => false,
    };
    if ok {
        return Ok(());
    }
    let reply = error(
        416,
        "RANGE_INVALID",
        "invalid content range",
        Value::String(format!(
            "upload is at {size} bytes; got Content-Range {:?} with {} bytes",
            req.header("content-range").unwrap_or(""),
            req.body.len()
        )),
    );
    Err(session_headers(reply, shared, req, name, id, s))
}
