//! Cross-repository blob mounts (`POST ..uploads/?mount=D&from=R`) in the
//! configured [`MountMode`], with the profiles' extra rules: ECR only mounts
//! blobs a source manifest references, Quay refuses anonymous mounts.

use serde_json::{json, Value};

use crate::auth::challenge;
use crate::config::MountMode;
use crate::names::valid_digest;
use crate::profile::Profile;
use crate::reply::{code_for_status, error, Reply};
use crate::request::Req;
use crate::state::Shared;
use crate::storage::Storage;
use crate::uploads::{created, new_session};
use crate::util::lock;

/// Quay's answer to a mount without `Authorization`: 401 and no challenge, so
/// the client falls back to a plain upload instead of logging in. Checked
/// before access control, for `POST /v2/<name>/blobs/uploads/` only.
pub(crate) fn refuse_anonymous(shared: &Shared, req: &Req) -> Option<Reply> {
    let digest = req.query("mount")?;
    let anonymous = req.header("authorization").is_none();
    (shared.config.profile == Profile::Quay && anonymous).then(|| {
        error(
            401,
            "UNAUTHORIZED",
            "anonymous blob mounts are not allowed",
            json!({"mount": digest, "from": req.query("from")}),
        )
    })
}

pub(crate) fn mount(shared: &Shared, req: &Req, name: &str, digest: &str) -> Reply {
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
            let mountable = valid_digest(digest)
                && storage.has_blob(from, digest)
                && (shared.config.profile != Profile::Ecr
                    || referenced_by_manifest(&storage, from, digest));
            if mountable {
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

/// Whether a manifest stored in `repo` names `digest` as config or layer.
fn referenced_by_manifest(storage: &Storage, repo: &str, digest: &str) -> bool {
    let Some(r) = storage.repo(repo) else {
        return false;
    };
    r.manifests().iter().any(|m| {
        let Ok(doc) = serde_json::from_slice::<Value>(&m.data) else {
            return false;
        };
        let names = |d: &Value| d.get("digest").and_then(Value::as_str) == Some(digest);
        doc.get("config").is_some_and(names)
            || doc
                .get("layers")
                .and_then(Value::as_array)
                .is_some_and(|layers| layers.iter().any(names))
    })
}
