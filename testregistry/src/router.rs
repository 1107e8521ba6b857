//! Maps a main-listener request to its handler, after checking access.
//!
//! Repository names may contain slashes, so the route keyword (`blobs`,
//! `manifests`, `referrers`, `tags/list`) is the right-most one in the path.
//!
//! Two profile rules apply here, around access control: Quay's refusal of
//! anonymous mounts comes before it, the pull rate limit after it.

use serde_json::json;

use crate::auth::{authorize, Needs};
use crate::names::valid_repo_name;
use crate::profile::Profile;
use crate::reply::{error, plain_not_found, unsupported, Reply};
use crate::request::Req;
use crate::state::Shared;
use crate::{blobs, manifests, mounts, ratelimit, referrers, tags, token, uploads};

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    Blob(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Manifest(&'a str, &'a str),
    Tags(&'a str),
    Referrers(&'a str, &'a str),
    Unknown,
}

impl<'a> Route<'a> {
    fn name(&self) -> Option<&'a str> {
        match *self {
            Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Manifest(n, _)
            | Route::Tags(n)
            | Route::Referrers(n, _) => Some(n),
            Route::Base | Route::Unknown => None,
        }
    }
}

fn parse(path: &str) -> Route<'_> {
    if path == "/v2/" || path == "/v2" {
        return Route::Base;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::Unknown;
    };
    let keyword = ["/blobs/", "/manifests/", "/referrers/", "/tags/list"]
        .iter()
        .filter_map(|k| rest.rfind(k).map(|i| (i, *k)))
        .max_by_key(|(i, _)| *i);
    let Some((at, keyword)) = keyword else {
        return Route::Unknown;
    };
    let name = &rest[..at];
    let tail = &rest[at + keyword.len()..];
    match keyword {
        "/tags/list" if tail.is_empty() => Route::Tags(name),
        "/manifests/" if !tail.is_empty() => Route::Manifest(name, tail),
        "/referrers/" if !tail.is_empty() => Route::Referrers(name, tail),
        "/blobs/" => match tail.strip_prefix("uploads") {
            Some("" | "/") => Route::UploadStart(name),
            Some(id) => match id.strip_prefix('/') {
                Some(id) if !id.contains('/') => Route::Upload(name, id),
                _ => Route::Unknown,
            },
            None if !tail.is_empty() && !tail.contains('/') => Route::Blob(name, tail),
            None => Route::Unknown,
        },
        _ => Route::Unknown,
    }
}

/// What the request needs, in distribution's terms: reads need `pull`,
/// writes `pull` and `push`, a mount also `pull` on the source repository.
/// The challenge names only the target repository's scope, so a client has to
/// know to ask for the mount source scope itself; Docker Hub's names both.
fn needs(shared: &Shared, req: &Req, route: &Route) -> Needs {
    let Some(name) = route.name() else {
        return Needs {
            access: Vec::new(),
            challenge_scope: None,
        };
    };
    let actions: Vec<&'static str> = match req.method.as_str() {
        "GET" | "HEAD" => vec!["pull"],
        "DELETE" => vec!["push"],
        _ => vec!["pull", "push"],
    };
    let mut challenge_scope = format!("repository:{name}:{}", actions.join(","));
    let mut access = vec![(name.to_string(), actions)];
    if let (Route::UploadStart(_), Some(_), Some(from)) =
        (route, req.query("mount"), req.query("from"))
    {
        if from != name {
            access.push((from.to_string(), vec!["pull"]));
            if shared.config.profile == Profile::Dockerhub {
                challenge_scope.push_str(&format!(" repository:{from}:pull"));
            }
        }
    }
    let challenge_scope = Some(challenge_scope);
    Needs {
        access,
        challenge_scope,
    }
}

pub(crate) fn handle(shared: &Shared, req: &Req) -> Reply {
    if req.path == "/token" {
        return token::handle(shared, req);
    }
    let route = parse(&req.path);
    if route == Route::Unknown {
        return plain_not_found();
    }
    if let Some(name) = route.name() {
        if !valid_repo_name(name) {
            return error(400, "NAME_INVALID", "invalid repository name", json!(name));
        }
    }
    let method = req.method.as_str();
    if matches!(route, Route::UploadStart(_)) && method == "POST" {
        if let Some(reply) = mounts::refuse_anonymous(shared, req) {
            return reply;
        }
    }
    if let Err(reply) = authorize(shared, req, &needs(shared, req, &route)) {
        return reply;
    }
    if matches!(route, Route::Blob(..) | Route::Manifest(..)) && method == "GET" {
        if let Some(reply) = ratelimit::check_pull(shared) {
            return reply;
        }
    }
    match route {
        Route::Base => match method {
            "GET" | "HEAD" => Reply::json(200, &json!({})),
            _ => unsupported(),
        },
        Route::Blob(name, digest) => blobs::handle(shared, req, name, digest),
        Route::UploadStart(name) => match method {
            "POST" => uploads::start(shared, req, name),
            _ => unsupported(),
        },
        Route::Upload(name, id) => uploads::session(shared, req, name, id),
        Route::Manifest(name, reference) => manifests::handle(shared, req, name, reference),
        Route::Tags(name) => match method {
            "GET" | "HEAD" => tags::list(shared, req, name),
            _ => unsupported(),
        },
        Route::Referrers(name, digest) => match method {
            "GET" | "HEAD" => referrers::list(shared, req, name, digest),
            _ => unsupported(),
        },
        Route::Unknown => plain_not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_names_with_slashes_and_keywords() {
        assert_eq!(parse("/v2/"), Route::Base);
        assert_eq!(
            parse("/v2/a/b/blobs/sha256:x"),
            Route::Blob("a/b", "sha256:x")
        );
        assert_eq!(parse("/v2/a/blobs/uploads/"), Route::UploadStart("a"));
        assert_eq!(parse("/v2/a/blobs/uploads"), Route::UploadStart("a"));
        assert_eq!(parse("/v2/a/blobs/uploads/u-1"), Route::Upload("a", "u-1"));
        assert_eq!(
            parse("/v2/x/manifests/y/manifests/latest"),
            Route::Manifest("x/manifests/y", "latest")
        );
        assert_eq!(
            parse("/v2/blobs/tags/list/blobs/sha256:x"),
            Route::Blob("blobs/tags/list", "sha256:x")
        );
        assert_eq!(parse("/v2/a/b/tags/list"), Route::Tags("a/b"));
        assert_eq!(
            parse("/v2/a/referrers/sha256:x"),
            Route::Referrers("a", "sha256:x")
        );
        assert_eq!(parse("/v2/_catalog"), Route::Unknown);
        assert_eq!(parse("/v2/a/manifests/"), Route::Unknown);
        assert_eq!(parse("/other"), Route::Unknown);
    }
}
