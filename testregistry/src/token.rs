//! The token endpoint (`/token`), served on the main listener when
//! `Auth::Token` is configured.
//!
//! `GET` follows distribution's docs/spec/auth/token.md (Basic credentials,
//! repeated `scope` params, `offline_token=true` for a refresh token); `POST`
//! follows docs/spec/auth/oauth.md (`grant_type=password|refresh_token`).
//! Unknown users get 401; anonymous requests get what anonymous may have
//! (possibly nothing) with a 200, as real token servers do.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use crate::auth::{basic_credentials, valid_user};
use crate::config::Auth;
use crate::reply::{error, plain_not_found, Reply};
use crate::request::Req;
use crate::state::Shared;
use crate::util::{lock, rfc3339_now};

struct TokenConfig<'a> {
    users: &'a [(String, String)],
    anonymous_pull: bool,
    ttl: u64,
}

pub(crate) fn handle(shared: &Shared, req: &Req) -> Reply {
    let Auth::Token {
        users,
        anonymous_pull,
        token_ttl_secs,
    } = &shared.config.auth
    else {
        return plain_not_found();
    };
    let cfg = TokenConfig {
        users,
        anonymous_pull: *anonymous_pull,
        ttl: *token_ttl_secs,
    };
    match req.method.as_str() {
        "GET" => get(shared, req, &cfg),
        "POST" => post(shared, req, &cfg),
        _ => error(405, "UNSUPPORTED", "use GET or POST", Value::Null),
    }
}

fn bad_credentials() -> Reply {
    error(401, "UNAUTHORIZED", "authentication failed", Value::Null)
        .header("WWW-Authenticate", "Basic realm=\"testregistry\"")
}

fn get(shared: &Shared, req: &Req, cfg: &TokenConfig) -> Reply {
    let user = match req.header("authorization") {
        None => None,
        Some(h) => match basic_credentials(Some(h)) {
            Some((u, p)) if valid_user(cfg.users, &u, &p) => Some(u),
            _ => return bad_credentials(),
        },
    };
    let scopes: Vec<&str> = req
        .query_all("scope")
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect();
    let offline = req.query("offline_token") == Some("true");
    let refresh = match (&user, offline) {
        (Some(u), true) => Some(lock(&shared.tokens).issue_refresh(u)),
        _ => None,
    };
    issue(shared, cfg, user.is_some(), &scopes, refresh)
}

fn post(shared: &Shared, req: &Req, cfg: &TokenConfig) -> Reply {
    let form: Vec<(String, String)> = form_urlencoded::parse(&req.body).into_owned().collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let scopes: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split_whitespace())
        .collect();
    match field("grant_type") {
        Some("refresh_token") => {
            let Some(rt) = field("refresh_token") else {
                return bad_credentials();
            };
            if lock(&shared.tokens).refresh_user(rt).is_none() {
                return bad_credentials();
            }
            issue(shared, cfg, true, &scopes, Some(rt.to_string()))
        }
        Some("password") => {
            let (Some(u), Some(p)) = (field("username"), field("password")) else {
                return bad_credentials();
            };
            if !valid_user(cfg.users, u, p) {
                return bad_credentials();
            }
            let refresh = (field("access_type") == Some("offline"))
                .then(|| lock(&shared.tokens).issue_refresh(u));
            issue(shared, cfg, true, &scopes, refresh)
        }
        other => Reply::json(
            400,
            &json!({"error": "unsupported_grant_type",
                    "error_description": format!("grant_type {other:?} is not supported")}),
        ),
    }
}

/// What the caller gets: users get every action they ask for, anonymous
/// callers `pull` when allowed, else nothing.
fn grant(
    cfg: &TokenConfig,
    authenticated: bool,
    scopes: &[&str],
) -> (HashMap<String, HashSet<String>>, Vec<String>) {
    let mut access: HashMap<String, HashSet<String>> = HashMap::new();
    for scope in scopes {
        let Some((kind, name, actions)) = parse_scope(scope) else {
            continue;
        };
        if kind != "repository" && !kind.starts_with("repository(") {
            continue;
        }
        let entry = access.entry(name.to_string()).or_default();
        for action in actions.split(',').filter(|a| !a.is_empty()) {
            let allowed = authenticated || (cfg.anonymous_pull && matches!(action, "pull" | "*"));
            if allowed {
                // Anonymous "*" only ever means pull.
                let action = if authenticated { action } else { "pull" };
                entry.insert(action.to_string());
            }
        }
    }
    access.retain(|_, actions| !actions.is_empty());
    let mut granted: Vec<String> = access
        .iter()
        .map(|(name, actions)| {
            let mut a: Vec<&str> = actions.iter().map(String::as_str).collect();
            a.sort_unstable();
            format!("repository:{name}:{}", a.join(","))
        })
        .collect();
    granted.sort();
    (access, granted)
}

/// `type:name:actions`; the name may itself contain colons (`repository:host:5000/a:pull`
/// is not valid for us, but we do not want to mis-split it either).
fn parse_scope(scope: &str) -> Option<(&str, &str, &str)> {
    let (rest, actions) = scope.rsplit_once(':')?;
    let (kind, name) = rest.split_once(':')?;
    Some((kind, name, actions))
}

fn issue(
    shared: &Shared,
    cfg: &TokenConfig,
    authenticated: bool,
    scopes: &[&str],
    refresh: Option<String>,
) -> Reply {
    let (access, granted) = grant(cfg, authenticated, scopes);
    let token = lock(&shared.tokens).issue(access, cfg.ttl);
    let mut body = Map::new();
    body.insert("token".into(), json!(token));
    body.insert("access_token".into(), json!(token));
    body.insert("expires_in".into(), json!(cfg.ttl));
    body.insert("issued_at".into(), json!(rfc3339_now()));
    body.insert("scope".into(), json!(granted.join(" ")));
    if let Some(rt) = refresh {
        body.insert("refresh_token".into(), json!(rt));
    }
    Reply::json(200, &Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_by_caller() {
        let users = vec![("u".to_string(), "p".to_string())];
        let cfg = TokenConfig {
            users: &users,
            anonymous_pull: true,
            ttl: 60,
        };
        let scopes = [
            "repository:a/b:pull,push",
            "repository:c:pull",
            "registry:catalog:*",
        ];
        let (access, granted) = grant(&cfg, true, &scopes);
        assert_eq!(access.len(), 2);
        assert_eq!(
            granted,
            vec!["repository:a/b:pull,push", "repository:c:pull"]
        );
        let (_, anon) = grant(&cfg, false, &scopes);
        assert_eq!(anon, vec!["repository:a/b:pull", "repository:c:pull"]);
        let closed = TokenConfig {
            anonymous_pull: false,
            ..cfg
        };
        assert!(grant(&closed, false, &scopes).0.is_empty());
    }
}
