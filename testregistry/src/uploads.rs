//! Getting blobs into a repository: upload sessions (POST, PATCH, PUT, GET
//! status, DELETE), single-request POST uploads and cross-repository mounts.
//!
//! Each session answer carries a new `_state` value and only the newest one is
//! accepted (404 `BLOB_UPLOAD_UNKNOWN` otherwise), which catches clients that
//! keep reusing the first `Location` instead of the last one.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::auth::challenge;
use crate::config::MountMode;
use crate::location::location;
use crate::names::valid_digest;
use crate::reply::{code_for_status, digest_invalid, error, upload_unknown, Reply};
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
}

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
            },
        );
        (id, state)
    }

    /// The session when it exists for `repo` and `state` is its newest one.
    fn current(&mut self, id: &str, repo: &str, state: Option<&str>) -> Option<&mut Session> {
        let s = self.sessions.get_mut(id)?;
        (s.repo == repo && Some(s.state.as_str()) == state).then_some(s)
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
fn created(shared: &Shared, req: &Req, name: &str, digest: &str) -> Reply {
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

fn new_session(shared: &Shared, req: &Req, name: &str) -> Reply {
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
        return mount(shared, req, name, digest);
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

fn mount(shared: &Shared, req: &Req, name: &str, digest: &str) -> Reply {
    match shared.config.mount {
        MountMode::Refuse202 => new_session(shared, req, name),
        MountMode::Status(status) => {
            let reply = error(
                status,
                code_for_status(status),
                "blob mount refused",
                json!({"mount": digest, "from": req.query("from")}),
            );
            let scope = format!("repository:{name}:pull,push");
            match challenge(shared, req, Some(&scope), Some("insufficient_scope")) {
                Some(c) if status == 401 => reply.header("WWW-Authenticate", c),
                _ => reply,
            }
        }
        MountMode::Normal => {
            let from = req.query("from").unwrap_or("");
            let mut storage = lock(&shared.storage);
            if valid_digest(digest) && storage.has_blob(from, digest) {
                storage.link_blob(name, digest);
                drop(storage);
                created(shared, req, name, digest)
            } else {
                drop(storage);
                new_session(shared, req, name)
            }
        }
    }
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
    let Some(s) = uploads.current(id, name, req.query("_state")) else {
        return upload_unknown();
    };
    match req.method.as_str() {
        "GET" => {
            let loc = session_location(shared, req, name, id, &s.state);
            Reply::new(204)
                .header("Location", loc)
                .header("Range", range(s.data.len()))
                .header("Docker-Upload-UUID", id)
        }
        "DELETE" => {
            uploads.sessions.remove(id);
            Reply::new(204)
        }
        "PATCH" => {
            if let Err(reply) = check_range(shared, req, name, id, s) {
                return reply;
            }
            s.data.extend_from_slice(&req.body);
            s.state = random_hex(16);
            let loc = session_location(shared, req, name, id, &s.state);
            Reply::new(202)
                .header("Location", loc)
                .header("Range", range(s.data.len()))
                .header("Docker-Upload-UUID", id)
        }
        "PUT" => {
            let Some(digest) = req.query("digest") else {
                return digest_invalid("digest query parameter is required");
            };
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
    let loc = session_location(shared, req, name, id, &s.state);
    Err(error(
        416,
        "RANGE_INVALID",
        "invalid content range",
        Value::String(format!(
            "upload is at {size} bytes; got Content-Range {:?} with {} bytes",
            req.header("content-range").unwrap_or(""),
            req.body.len()
        )),
    )
    .header("Location", loc)
    .header("Range", range(s.data.len()))
    .header("Docker-Upload-UUID", id))
}
