//! Authorization for one registry host: anonymous, Basic, or Bearer tokens (distribution
//! token.md / oauth.md), with one token per scope set cached until it expires.
//!
//! A push that mounts needs `repository:<dst>:pull,push` and `repository:<src>:pull` in ONE
//! token (distribution answers 401 insufficient_scope to a mount otherwise), so tokens are
//! requested for the whole scope set of an operation, never per request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use super::challenge::{parse_challenges, Challenge};
use super::credentials::{Credential, Secret};
use super::error::{describe_transport, RegistryError};
use super::plain_http::is_plain_http_allowed;

/// The scopes one operation needs, push scope first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// `repository:<repo>:pull`.
    pub fn pull(repo: &str) -> Scopes {
        Scopes(vec![format!("repository:{repo}:pull")])
    }

    /// `repository:<repo>:pull,push`, plus `repository:<src>:pull` for every mount source.
    pub fn push<'a>(repo: &str, mount_sources: impl IntoIterator<Item = &'a str>) -> Scopes {
        let mut s = vec![format!("repository:{repo}:pull,push")];
        for src in mount_sources {
            let scope = format!("repository:{src}:pull");
            if src != repo && !s.contains(&scope) {
                s.push(scope);
            }
        }
        Scopes(s)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    fn with(&self, extra: Option<&str>) -> Scopes {
        let mut s = self.0.clone();
        if let Some(extra) = extra {
            for scope in extra.split(' ').filter(|x| !x.is_empty()) {
                if !s.iter().any(|have| have == scope) {
                    s.push(scope.to_string());
                }
            }
        }
        Scopes(s)
    }

    fn key(&self) -> String {
        self.0.join(" ")
    }
}

/// How a host wants to be authorized, learnt from its challenges.
#[derive(Clone, Debug)]
enum Mode {
    Unknown,
    Anonymous,
    Basic,
    Bearer { realm: Url, service: Option<String> },
}

struct Token {
    value: Secret,
    expires: Instant,
}

struct State {
    mode: Mode,
    tokens: HashMap<String, Token>,
    /// Scopes a challenge asked for beyond what we requested, per scope-set key.
    extra_scopes: HashMap<String, String>,
    refresh_token: Option<Secret>,
}

/// Authorization state for one registry host.
pub struct HostAuth {
    registry: String,
    retry: super::retry::RetryPolicy,
    credential: Option<Credential>,
    insecure: Vec<String>,
    state: Mutex<State>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Tokens are refreshed this long before they expire, so a request never leaves with a token
/// that dies in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// token.md: "if not specified, 60 seconds".
const DEFAULT_TOKEN_TTL: u64 = 60;

impl HostAuth {
    pub fn new(
        registry: &str,
        credential: Option<Credential>,
        insecure: Vec<String>,
        retry: super::retry::RetryPolicy,
    ) -> Self {
        HostAuth {
            registry: registry.to_string(),
            retry,
            credential,
            insecure,
            state: Mutex::new(State {
                mode: Mode::Unknown,
                tokens: HashMap::new(),
                extra_scopes: HashMap::new(),
                refresh_token: None,
            }),
        }
    }

    /// Whether the host's scheme is known yet (else the caller pings `/v2/` first).
    pub async fn mode_known(&self) -> bool {
        !matches!(self.state.lock().await.mode, Mode::Unknown)
    }

    /// Learns the host's scheme from the answer to `GET /v2/`.
    pub async fn learn(&self, status: u16, www_authenticate: Option<&str>) {
        let mut st = self.state.lock().await;
        st.mode = if status == 401 {
            mode_from_challenges(www_authenticate).unwrap_or(Mode::Anonymous)
        } else {
            Mode::Anonymous
        };
    }

    /// The Authorization header value for a request needing `scopes`, fetching a token when
    /// the cached one is missing or about to expire.
    pub async fn header(
        &self,
        http: &reqwest::Client,
        scopes: &Scopes,
    ) -> Result<Option<Secret>, RegistryError> {
        let mut st = self.state.lock().await;
        match st.mode.clone() {
            Mode::Unknown | Mode::Anonymous => Ok(None),
            Mode::Basic => Ok(self.basic_header()),
            Mode::Bearer { realm, service } => {
                let key = scopes.key();
                if let Some(t) = st.tokens.get(&key) {
                    if t.expires > Instant::now() + EXPIRY_MARGIN {
                        return Ok(Some(Secret::new(format!("Bearer {}", t.value.expose()))));
                    }
                }
                let wanted = scopes.with(st.extra_scopes.get(&key).map(String::as_str));
                let token = self
                    .fetch_token(http, &realm, service.as_deref(), &wanted, &mut st)
                    .await?;
                let header = Secret::new(format!("Bearer {}", token.value.expose()));
                st.tokens.insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// A request needing `scopes` got 401: forget its token and learn from the challenge, so
    /// the next `header` call fetches a fresh one (expired token, or a scope we did not ask).
    pub async fn unauthorized(&self, scopes: &Scopes, www_authenticate: Option<&str>) {
        let mut st = self.state.lock().await;
        let key = scopes.key();
        st.tokens.remove(&key);
        if let Some(mode) = mode_from_challenges(www_authenticate) {
            if let (Mode::Bearer { .. }, Some(h)) = (&mode, www_authenticate) {
                let scope = parse_challenges(h)
                    .into_iter()
                    .find(|c| c.scheme == "bearer")
                    .and_then(|c| c.param("scope").map(str::to_string));
                if let Some(scope) = scope {
                    st.extra_scopes.insert(key, scope);
                }
            }
            st.mode = mode;
        }
    }

    fn basic_header(&self) -> Option<Secret> {
        match &self.credential {
            Some(Credential::Basic { username, password }) => {
                let raw = format!("{username}:{}", password.expose());
                Some(Secret::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )))
            }
            _ => None,
        }
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        realm: &Url,
        service: Option<&str>,
        scopes: &Scopes,
        st: &mut State,
    ) -> Result<Token, RegistryError> {
        let auth_err = |message: String| RegistryError::Auth {
            registry: self.registry.clone(),
            message,
        };
        // Credentials go to the realm only over TLS, or to a host the user allowed plain HTTP.
        let may_send_credentials = realm.scheme() == "https"
            || realm
                .host_str()
                .is_some_and(|h| is_plain_http_allowed(&host_port(realm, h), &self.insecure));
        let refresh = st.refresh_token.clone().or(match &self.credential {
            Some(Credential::IdentityToken(t)) => Some(t.clone()),
            _ => None,
        });
        let make = || match (&refresh, may_send_credentials) {
            (Some(refresh), true) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", refresh.expose().to_string()),
                    ("client_id", "regbuild".to_string()),
                    ("scope", scopes.iter().collect::<Vec<_>>().join(" ")),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_string()));
                }
                http.post(realm.clone()).form(&form)
            }
            _ => {
                let mut url = realm.clone();
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for scope in scopes.iter() {
                        q.append_pair("scope", scope);
                    }
                }
                let mut rb = http.get(url);
                if may_send_credentials {
                    if let Some(h) = self.basic_header() {
                        rb = rb.header(reqwest::header::AUTHORIZATION, h.expose());
                    }
                }
                rb
            }
        };
        let mut attempt = 0;
        let body = loop {
            attempt += 1;
            let resp = super::retry::send_retrying(&self.retry, make)
                .await
                .map_err(|e| auth_err(format!("token request: {}", describe_transport(&e))))?;
            let status = resp.status();
            if !status.is_success() {
                let body = resp.bytes().await.unwrap_or_default();
                let (code, message) = super::error::parse_error_body(&body);
                let detail = [code, message].into_iter().flatten().collect::<Vec<_>>();
                return Err(auth_err(format!(
                    "token request answered HTTP {}{}{}",
                    status.as_u16(),
                    if detail.is_empty() { "" } else { ": " },
                    detail.join(": ")
                )));
            }
            match resp.bytes().await {
                Ok(b) => break b,
                // A token response cut mid-body: ask again.
                Err(e) => match self.retry.next(attempt, None) {
                    super::retry::Next::Wait(d) => tokio::time::sleep(d).await,
                    _ => {
                        return Err(auth_err(format!(
                            "token response: {}",
                            describe_transport(&e)
                        )))
                    }
                },
            }
        };
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| auth_err("token response is not JSON".to_string()))?;
        let value = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_err("token response has no token".to_string()))?;
        if let Some(r) = parsed.refresh_token.filter(|r| !r.is_empty()) {
            st.refresh_token = Some(Secret::new(r));
        }
        let ttl = parsed.expires_in.unwrap_or(DEFAULT_TOKEN_TTL).max(1);
        Ok(Token {
            value: Secret::new(value),
            expires: Instant::now() + Duration::from_secs(ttl),
        })
    }
}

fn host_port(url: &Url, host: &str) -> String {
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

fn mode_from_challenges(header: Option<&str>) -> Option<Mode> {
    let challenges = parse_challenges(header?);
    let pick =
        |scheme: &str| -> Option<&Challenge> { challenges.iter().find(|c| c.scheme == scheme) };
    if let Some(bearer) = pick("bearer") {
        if let Some(realm) = bearer.param("realm").and_then(|r| Url::parse(r).ok()) {
            return Some(Mode::Bearer {
                realm,
                service: bearer.param("service").map(str::to_string),
            });
        }
    }
    pick("basic").map(|_| Mode::Basic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_scopes_list_destination_first_and_sources_once() {
        let s = Scopes::push("dst", ["src", "src", "dst", "other"]);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![
                "repository:dst:pull,push",
                "repository:src:pull",
                "repository:other:pull"
            ]
        );
    }

    #[test]
    fn bearer_challenge_wins_over_basic() {
        let m = mode_from_challenges(Some(
            r#"Basic realm="x", Bearer realm="https://a/token",service="s""#,
        ));
        assert!(
            matches!(m, Some(Mode::Bearer { ref service, .. }) if service.as_deref() == Some("s"))
        );
        assert!(matches!(
            mode_from_challenges(Some(r#"Basic realm="x""#)),
            Some(Mode::Basic)
        ));
        assert!(mode_from_challenges(Some("Bearer realm=\"not a url\"")).is_none());
    }
}
