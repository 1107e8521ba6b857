//! `GET /v2/<name>/tags/list`, with the spec's `n` / `last` pagination.

use serde_json::json;

use crate::reply::{name_unknown, Reply};
use crate::request::Req;
use crate::state::Shared;
use crate::util::lock;

pub(crate) fn list(shared: &Shared, req: &Req, name: &str) -> Reply {
    let storage = lock(&shared.storage);
    if !storage.repo_exists(name) {
        return name_unknown(name);
    }
    // Sorted already (BTreeMap keys).
    let mut tags = storage.tags(name);
    drop(storage);
    if let Some(last) = req.query("last") {
        tags.retain(|t| t.as_str() > last);
    }
    let limit = req.query("n").and_then(|n| n.parse::<usize>().ok());
    let mut reply_link = None;
    if let Some(n) = limit {
        if tags.len() > n {
            tags.truncate(n);
            if let Some(last) = tags.last() {
                reply_link = Some(format!(
                    "</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\""
                ));
            }
        }
    }
    let reply = Reply::json(200, &json!({"name": name, "tags": tags}));
    match reply_link {
        Some(link) => reply.header("Link", link),
        None => reply,
    }
}
