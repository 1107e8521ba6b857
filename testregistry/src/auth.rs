//! Access control for `/v2/` requests: Basic credentials, or bearer tokens
//! checked against the scopes they were granted, and the `WWW-Authenticate`
//! challenges that tell a client what to ask for.
//!
//! Tokens are opaque random strings mapped server-side to their grant, so a
//! test can invalidate them all at once ([`TokenStore::expire_all`]).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::config::Auth;
use crate::reply::{error, Reply};
use crate::request::Req;
use crate::state::Shared;
use crate::util::{lock, random_hex};

/// Name of the service in challenges and token requests.
pub(crate) const SERVICE: &str = "testregistry";

/// What a request needs: `actions` on each repository; an empty list means
/// "any valid credentials" (`GET /v2/`).
pub(crate) struct Needs {
    pub access: Vec<(String, Vec<&'static str>)>,
    /// Scope named in the challenge (the main repository's only, see
    /// `router::needs`).
    pub challenge_scope: Option<String>,
}

#[derive(Default)]
pub(crate) struct TokenStore {
    tokens: HashMap<String, Grant>,
    /// Refresh token -> user name.
    refresh: HashMap<String, String>,
}

struct Grant {
    access: HashMap<String, HashSet<String>>,
    expires: Instant,
}

impl TokenStore {
    /// Issues an access token for `access` (repository -> actions).
    pub(crate) fn issue(
        &mut self,
        access: HashMap<String, HashSet<String>>,
        ttl_secs: u64,
    ) -> String {
        let token = format!("trtok.{}", random_hex(24));
        let expires = Instant::now() + Duration::from_secs(ttl_secs);
        self.tokens.insert(token.clone(), Grant { access, expires });
        token
    }

    pub(crate) fn issue_refresh(&mut self, user: &str) -> String {
        let token = format!("trrefresh.{}", random_hex(24));
        self.refresh.insert(token.clone(), user.to_string());
        token
    }

    pub(crate) fn refresh_user(&self, refresh_token: &str) -> Option<String> {
        self.refresh.get(refresh_token).cloned()
    }

    /// Invalidates every access token; refresh tokens stay valid so clients
    /// can recover the way they would after a real expiry.
    pub(crate) fn expire_all(&mut self) {
        self.tokens.clear();
    }

    fn check(&self, token: &str, needs: &Needs) -> Result<(), &'static str> {
        let grant = match self.tokens.get(token) {
            Some(g) if g.expires > Instant::now() => g,
            _ => return Err("invalid_token"),
        };
        let ok = needs.access.iter().all(|(repo, actions)| {
            grant.access.get(repo).is_some_and(|granted| {
                granted.contains("*") || actions.iter().all(|a| granted.contains(*a))
            })
        });
        if ok {
            Ok(())
        } else {
            Err("insufficient_scope")
        }
    }
}

/// `user:password` from a `Basic` Authorization header.
pub(crate) fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    let (scheme, value) = header?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

pub(crate) fn valid_user(users: &[(String, String)], user: &str, password: &str) -> bool {
    users.iter().any(|(u, p)| u == user && p == password)
}

fn bearer_token(header: Option<&str>) -> Option<&str> {
    let (scheme, value) = header?.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(value.trim())
}

/// The `WWW-Authenticate` value for this registry's auth mode, if any.
pub(crate) fn challenge(
    shared: &Shared,
    req: &Req,
    scope: Option<&str>,
    err: Option<&str>,
) -> Option<String> {
    match &shared.config.auth {
        Auth::None => None,
        Auth::Basic { .. } => Some(format!("Basic realm=\"{SERVICE}\"")),
        Auth::Token { .. } => {
            let mut c = format!(
                "Bearer realm=\"http://{}/token\",service=\"{SERVICE}\"",
                req.host
            );
            if let Some(scope) = scope {
                c.push_str(&format!(",scope=\"{scope}\""));
            }
            if let Some(err) = err {
                c.push_str(&format!(",error=\"{err}\""));
            }
            Some(c)
        }
    }
}

/// A 401 with the challenge and distribution's error body.
pub(crate) fn unauthorized(shared: &Shared, req: &Req, needs: &Needs, err: Option<&str>) -> Reply {
    let detail: Vec<Value> = needs
        .access
        .iter()
        .flat_map(|(repo, actions)| {
            actions
                .iter()
                .map(move |a| json!({"Type": "repository", "Name": repo, "Action": a}))
        })
        .collect();
    let reply = error(
        401,
        "UNAUTHORIZED",
        "authentication required",
        json!(detail),
    );
    match challenge(shared, req, needs.challenge_scope.as_deref(), err) {
        Some(c) => reply.header("WWW-Authenticate", c),
        None => reply,
    }
}

/// `Ok` when the request may proceed, else the 401 to answer.
pub(crate) fn authorize(shared: &Shared, req: &Req, needs: &Needs) -> Result<(), Reply> {
    let header = req.header("authorization");
    match &shared.config.auth {
        Auth::None => Ok(()),
        Auth::Basic { users } => match basic_credentials(header) {
            Some((u, p)) if valid_user(users, &u, &p) => Ok(()),
            _ => Err(unauthorized(shared, req, needs, None)),
        },
        Auth::Token { .. } => {
            let Some(token) = bearer_token(header) else {
                return Err(unauthorized(shared, req, needs, None));
            };
            let checked = lock(&shared.tokens).check(token, needs);
            checked.map_err(|e| unauthorized(shared, req, needs, Some(e)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_and_bearer() {
        let h = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p:x")
        );
        assert_eq!(
            basic_credentials(Some(&h)),
            Some(("u".to_string(), "p:x".to_string()))
        );
        assert_eq!(basic_credentials(Some("Basic !!")), None);
        assert_eq!(bearer_token(Some("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some(&h)), None);
    }

    #[test]
    fn token_scopes() {
        let mut store = TokenStore::default();
        let mut access = HashMap::new();
        access.insert("a".to_string(), HashSet::from(["pull".to_string()]));
        let t = store.issue(access, 60);
        let pull_a = Needs {
            access: vec![("a".to_string(), vec!["pull"])],
            challenge_scope: None,
        };
        let push_a = Needs {
            access: vec![("a".to_string(), vec!["pull", "push"])],
            challenge_scope: None,
        };
        assert_eq!(store.check(&t, &pull_a), Ok(()));
        assert_eq!(store.check(&t, &push_a), Err("insufficient_scope"));
        store.expire_all();
        assert_eq!(store.check(&t, &pull_a), Err("invalid_token"));
    }
}
