//! The HTTP layer every registry request goes through: scheme choice (plain HTTP only for
//! loopback and `--insecure-registry` hosts), authorization, redirects that never carry
//! credentials to another host or downgrade to HTTP, and one 401 refresh.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::{Semaphore, SemaphorePermit};
use url::Url;

use super::auth::{HostAuth, Scopes};
use super::credentials::{self, Credential};
use super::error::{describe_transport, parse_error_body, RegistryError};
use super::plain_http::is_plain_http_allowed;
use super::retry::{self, Next, RetryPolicy};
use super::strategy::{known_host, HostQuirks, UploadStrategy};

/// Settings for a whole run.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Hosts (`host` or `host:port`) to reach over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// The run's one concurrency limit (`--jobs`).
    pub jobs: usize,
    pub retry: RetryPolicy,
    /// Blobs larger than this are uploaded in resumable chunks.
    pub chunk_threshold: u64,
    /// The size of those chunks (raised to the registry's `OCI-Chunk-Min-Length`; 0 is taken
    /// as 1: an upload never sends an empty chunk).
    pub chunk_size: u64,
    /// How blobs are sent before a registry refuses a method (`--upload-strategy`).
    pub upload_strategy: UploadStrategy,
    /// Fall back to another method when a registry refuses one (off: `--no-upload-fallback`).
    pub upload_fallback: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            jobs: 8,
            retry: RetryPolicy::default(),
            chunk_threshold: 64 * 1024 * 1024,
            chunk_size: 32 * 1024 * 1024,
            upload_strategy: UploadStrategy::Auto,
            upload_fallback: true,
        }
    }
}

/// Where credentials come from: docker config (the default) or given explicitly (tests,
/// library users).
#[derive(Clone, Debug, Default)]
pub enum CredentialSource {
    #[default]
    DockerConfig,
    Fixed(HashMap<String, Credential>),
}

/// A client for every registry a run talks to.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    options: RegistryOptions,
    credentials: CredentialSource,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    jobs: Semaphore,
    /// Blobs a dry run computed but did not write, by digest: reads of them are served from
    /// these files (a workspace's dependents are planned on bases no registry holds yet).
    stand_ins: Mutex<HashMap<regbuild_oci::digest::Digest, PathBuf>>,
}

/// One registry host: its base URL and authorization state.
pub(crate) struct Host {
    pub name: String,
    pub base: Url,
    pub auth: HostAuth,
    ping: tokio::sync::Mutex<()>,
    /// What its uploads must avoid: a known host's documented behaviour (in `auto`), then
    /// every refusal seen in this run.
    pub quirks: Mutex<HostQuirks>,
    /// The refusals it was learned from, in words, for the error when nothing is left.
    pub refusals: Mutex<Vec<String>>,
}

/// A repository on a host, with the scopes its operations need.
#[derive(Clone)]
pub struct Repo {
    pub(crate) registry: Registry,
    pub(crate) host: Arc<Host>,
    pub(crate) name: String,
    pub(crate) scopes: Scopes,
}

/// A request body that can be sent again (after a 401) unless it is a one-shot stream.
/// Told how many bytes of a body have been handed to the connection (per attempt).
pub type SentHook = Arc<dyn Fn(u64) + Send + Sync>;

pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of a file from `offset` (a whole blob, or one chunk of it).
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        on_sent: Option<SentHook>,
    },
    /// A one-shot stream (a blob being copied from another registry) of a known length.
    Stream {
        body: Option<reqwest::Body>,
        len: Option<u64>,
    },
}

impl Body {
    async fn make(&mut self) -> Result<Option<reqwest::Body>, RegistryError> {
        Ok(match self {
            Body::Empty => None,
            Body::Bytes(b) => Some(reqwest::Body::from(b.clone())),
            Body::File {
                path,
                offset,
                len,
                on_sent,
            } => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let io_err = |source| RegistryError::Io {
                    path: path.display().to_string(),
                    source,
                };
                let mut file = tokio::fs::File::open(&*path).await.map_err(io_err)?;
                if *offset > 0 {
                    file.seek(std::io::SeekFrom::Start(*offset))
                        .await
                        .map_err(io_err)?;
                }
                let stream =
                    tokio_util::io::ReaderStream::with_capacity(file.take(*len), 256 * 1024);
                match on_sent.clone() {
                    None => Some(reqwest::Body::wrap_stream(stream)),
                    Some(hook) => {
                        let mut sent = 0u64;
                        Some(reqwest::Body::wrap_stream(futures::StreamExt::inspect(
                            stream,
                            move |chunk| {
                                if let Ok(c) = chunk {
                                    sent += c.len() as u64;
                                    hook(sent);
                                }
                            },
                        )))
                    }
                }
            }
            Body::Stream { body, .. } => body.take(),
        })
    }

    fn replayable(&self) -> bool {
        !matches!(self, Body::Stream { .. })
    }

    fn len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::File { len, .. } => Some(*len),
            Body::Stream { len, .. } => *len,
        }
    }
}

/// One request, described so it can be sent again.
pub(crate) struct Call {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    /// Names the operation in errors: "HEAD blob sha256:…".
    pub op: String,
    /// Retry transient failures here. Off for requests bound to an upload session's state
    /// (its PATCH and PUT): those are retried by restarting or resuming the session.
    pub retry: bool,
}

impl Call {
    pub fn new(method: Method, url: Url, op: impl Into<String>) -> Call {
        Call {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            op: op.into(),
            retry: true,
        }
    }

    pub fn no_retry(mut self) -> Call {
        self.retry = false;
        self
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Call {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: Body) -> Call {
        self.body = body;
        self
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl Registry {
    pub fn new(options: RegistryOptions, credentials: CredentialSource) -> Registry {
        let http = crate::tls::client(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
                .pool_idle_timeout(Duration::from_secs(60))
                .user_agent(concat!("regbuild/", env!("CARGO_PKG_VERSION")))
        });
        let jobs = options.jobs.max(1);
        Registry {
            inner: Arc::new(Inner {
                http,
                options,
                credentials,
                hosts: Mutex::new(HashMap::new()),
                jobs: Semaphore::new(jobs),
                stand_ins: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A permit of the run's one concurrency limit; hold it for one unit of work (a blob
    /// transfer, a manifest fetch).
    pub async fn job(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed, so acquiring cannot fail.
        match self.inner.jobs.acquire().await {
            Ok(p) => p,
            Err(_) => unreachable!("the jobs semaphore is never closed"),
        }
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.inner.options
    }

    /// Serves reads of these blobs (digest, local file) from their files for the rest of the
    /// run; the caller keeps the files alive.
    pub fn stand_in_blobs(
        &self,
        blobs: impl IntoIterator<Item = (regbuild_oci::digest::Digest, PathBuf)>,
    ) {
        if let Ok(mut s) = self.inner.stand_ins.lock() {
            s.extend(blobs);
        }
    }

    /// The local file standing in for `digest`, if a dry run made one.
    pub fn stand_in(&self, digest: &regbuild_oci::digest::Digest) -> Option<PathBuf> {
        self.inner.stand_ins.lock().ok()?.get(digest).cloned()
    }

    /// `repository` on `registry` for operations needing `scopes`.
    pub fn repo(&self, registry: &str, repository: &str, scopes: Scopes) -> Repo {
        Repo {
            registry: self.clone(),
            host: self.host(registry),
            name: repository.to_string(),
            scopes,
        }
    }

    /// A known host's documented upload behaviour, in `auto` (an explicit strategy starts
    /// from nothing, so a preset that went stale can be overridden).
    fn preset_quirks(&self, name: &str) -> HostQuirks {
        match (self.inner.options.upload_strategy, known_host(name)) {
            (UploadStrategy::Auto, Some(known)) => {
                tracing::info!(
                    registry = name,
                    "{}: uploads start from its documented behaviour ({:?})",
                    known.registry,
                    known.quirks
                );
                known.quirks
            }
            _ => HostQuirks::default(),
        }
    }

    fn host(&self, name: &str) -> Arc<Host> {
        let mut hosts = match self.inner.hosts.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        hosts
            .entry(name.to_string())
            .or_insert_with(|| {
                let insecure = &self.inner.options.insecure;
                let scheme = if is_plain_http_allowed(name, insecure) {
                    "http"
                } else {
                    "https"
                };
                // Docker Hub's API lives on registry-1.docker.io.
                let api_host = if name == "docker.io" {
                    "registry-1.docker.io"
                } else {
                    name
                };
                let base = Url::parse(&format!("{scheme}://{api_host}/")).unwrap_or_else(|_| {
                    Url::parse("https://invalid.invalid/").expect("static url")
                });
                let credential = match &self.inner.credentials {
                    CredentialSource::DockerConfig => credentials::lookup(name),
                    CredentialSource::Fixed(map) => map.get(name).cloned(),
                };
                Arc::new(Host {
                    name: name.to_string(),
                    base,
                    auth: HostAuth::new(
                        name,
                        credential,
                        insecure.clone(),
                        self.inner.options.retry.clone(),
                    ),
                    ping: tokio::sync::Mutex::new(()),
                    quirks: Mutex::new(self.preset_quirks(name)),
                    refusals: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }
}

impl Repo {
    pub fn registry_name(&self) -> &str {
        &self.host.name
    }

    pub fn registry_options(&self) -> &RegistryOptions {
        self.registry.options()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same repository with other scopes (e.g. pull-only for reads).
    pub fn with_scopes(&self, scopes: Scopes) -> Repo {
        Repo {
            scopes,
            ..self.clone()
        }
    }

    /// `<base>/v2/<name>/<suffix>`.
    pub(crate) fn url(&self, suffix: &str) -> Url {
        let raw = format!("{}v2/{}/{}", self.host.base, self.name, suffix);
        Url::parse(&raw).unwrap_or_else(|_| self.host.base.clone())
    }

    pub(crate) fn api_error(&self, op: &str, status: StatusCode, body: &[u8]) -> RegistryError {
        let (code, message) = parse_error_body(body);
        RegistryError::Api {
            registry: self.host.name.clone(),
            repository: self.name.clone(),
            op: op.to_string(),
            status: status.as_u16(),
            code,
            message,
        }
    }

    pub fn protocol_error(&self, op: &str, message: impl Into<String>) -> RegistryError {
        RegistryError::Protocol {
            registry: self.host.name.clone(),
            repository: self.name.clone(),
            op: op.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn transport_error(&self, op: &str, e: &reqwest::Error) -> RegistryError {
        RegistryError::Transport {
            registry: self.host.name.clone(),
            repository: self.name.clone(),
            op: op.to_string(),
            message: describe_transport(e),
        }
    }

    /// Turns a non-success answer into an error, reading at most 64 KiB of its body.
    pub(crate) async fn fail(&self, op: &str, resp: Response) -> RegistryError {
        let status = resp.status();
        let limit = rate_limit(&resp);
        let body = read_capped(resp, 64 * 1024).await.unwrap_or_default();
        let mut error = self.api_error(op, status, &body);
        if let (Some(limit), RegistryError::Api { message, .. }) = (limit, &mut error) {
            let text = message.take().unwrap_or_default();
            *message = Some(format!("{text} ({limit})").trim_start().to_string());
        }
        error
    }

    /// Asks `GET /v2/` once per host to learn how it wants to be authorized.
    async fn ensure_auth_mode(&self) -> Result<(), RegistryError> {
        if self.host.auth.mode_known().await {
            return Ok(());
        }
        let _one_at_a_time = self.host.ping.lock().await;
        if self.host.auth.mode_known().await {
            return Ok(());
        }
        let url = self
            .host
            .base
            .join("v2/")
            .unwrap_or_else(|_| self.host.base.clone());
        // One request: `send`, which called this, retries it with the rest.
        let resp = self
            .registry
            .http()
            .get(url)
            .send()
            .await
            .map_err(|e| self.transport_error("GET /v2/", &e))?;
        let challenge = header_str(&resp, WWW_AUTHENTICATE);
        self.host
            .auth
            .learn(resp.status().as_u16(), challenge.as_deref())
            .await;
        Ok(())
    }

    /// Sends `call`: transient failures (408/429/5xx, connection errors) are retried per the
    /// run's policy with the body replayed, and a 401 refreshes authorization once. Returns
    /// the final answer and the URL that gave it (after redirects), against which a relative
    /// Location is resolved. An exhausted retry returns the last answer (or error).
    pub(crate) async fn send(&self, mut call: Call) -> Result<(Response, Url), RegistryError> {
        let policy = &self.registry.inner.options.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.send_authorized(&mut call).await;
            let (retry_after, why) = match &result {
                Ok((resp, _)) if retry::is_transient(resp.status()) => (
                    header_str(resp, reqwest::header::RETRY_AFTER),
                    format!("HTTP {}", resp.status().as_u16()),
                ),
                Err(e @ RegistryError::Transport { .. }) => (None, e.to_string()),
                _ => return result,
            };
            if !(call.retry && call.body.replayable()) {
                return result;
            }
            match policy.next(attempt, retry_after.as_deref()) {
                Next::Wait(d) => {
                    tracing::info!(
                        registry = %self.host.name,
                        attempt,
                        wait_ms = d.as_millis() as u64,
                        "{}: {why}; retrying",
                        call.op
                    );
                    tokio::time::sleep(d).await;
                }
                Next::GiveUp => return result,
                Next::TooLong(d) => {
                    return Err(self.protocol_error(
                        &call.op,
                        format!(
                            "the registry asks to retry in {} s (Retry-After), longer than the {} s this tool waits",
                            d.as_secs(),
                            policy.max_retry_after.as_secs()
                        ),
                    ))
                }
            }
        }
    }

    /// One attempt at `call`, refreshing authorization once on 401.
    async fn send_authorized(&self, call: &mut Call) -> Result<(Response, Url), RegistryError> {
        self.ensure_auth_mode().await?;
        let mut refreshed = false;
        loop {
            let auth = self
                .host
                .auth
                .header(self.registry.http(), &self.scopes)
                .await?;
            let (resp, url) = self
                .execute(call, auth.as_ref().map(|s| s.expose()))
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED && !refreshed && call.body.replayable() {
                let challenge = header_str(&resp, WWW_AUTHENTICATE);
                self.host
                    .auth
                    .unauthorized(&self.scopes, challenge.as_deref())
                    .await;
                refreshed = true;
                continue;
            }
            return Ok((resp, url));
        }
    }

    /// One attempt, following redirects for GET/HEAD by hand so that Authorization goes only
    /// to the registry's own origin and HTTPS is never downgraded.
    async fn execute(
        &self,
        call: &mut Call,
        auth: Option<&str>,
    ) -> Result<(Response, Url), RegistryError> {
        let mut url = call.url.clone();
        for _hop in 0..10 {
            let mut rb = self
                .registry
                .http()
                .request(call.method.clone(), url.clone())
                .headers(call.headers.clone());
            if let (Some(a), true) = (auth, same_origin(&url, &self.host.base)) {
                rb = rb.header(AUTHORIZATION, a);
            }
            if let Some(len) = call.body.len() {
                if call.method != Method::GET && call.method != Method::HEAD {
                    rb = rb.header(reqwest::header::CONTENT_LENGTH, len);
                }
            }
            if let Some(body) = call.body.make().await? {
                rb = rb.body(body);
            }
            let resp = rb
                .send()
                .await
                .map_err(|e| self.transport_error(&call.op, &e))?;
            let follow = resp.status().is_redirection()
                && resp.status() != StatusCode::NOT_MODIFIED
                && (call.method == Method::GET || call.method == Method::HEAD);
            if !follow {
                return Ok((resp, url));
            }
            let location = header_str(&resp, LOCATION)
                .ok_or_else(|| self.protocol_error(&call.op, "redirect without a Location"))?;
            let next = url
                .join(&location)
                .map_err(|_| self.protocol_error(&call.op, "redirect to an invalid Location"))?;
            if url.scheme() == "https" && next.scheme() != "https" {
                return Err(
                    self.protocol_error(&call.op, "refusing a redirect from HTTPS to plain HTTP")
                );
            }
            url = next;
        }
        Err(self.protocol_error(&call.op, "too many redirects"))
    }
}

/// Docker Hub's rate-limit headers on a 429, said in words: what the limit is and that none
/// is left (so the user knows to authenticate or wait rather than retry).
fn rate_limit(resp: &Response) -> Option<String> {
    if resp.status() != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let get = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let limit = get("ratelimit-limit")?;
    let remaining = get("ratelimit-remaining").unwrap_or_else(|| "?".into());
    Some(format!(
        "rate limit {limit}, {remaining} remaining: authenticate or wait"
    ))
}

pub(crate) fn header_str(resp: &Response, name: reqwest::header::HeaderName) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// Larger than the cap: garbage or hostile, not worth another try.
    TooLarge(u64),
    /// The connection broke mid-body: transient.
    Broken(String),
}

/// Reads a body, failing once it grows past `cap` bytes (garbage answers are not buffered).
pub(crate) async fn read_capped(mut resp: Response, cap: u64) -> Result<Vec<u8>, ReadFailure> {
    if resp.content_length().is_some_and(|l| l > cap) {
        return Err(ReadFailure::TooLarge(cap));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadFailure::Broken(describe_transport(&e)))?
    {
        if out.len() as u64 + chunk.len() as u64 > cap {
            return Err(ReadFailure::TooLarge(cap));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

impl Repo {
    /// A read failure as an error: a broken body is a transport error (retried), an
    /// oversized one a protocol error.
    pub(crate) fn read_error(&self, op: &str, f: ReadFailure) -> RegistryError {
        match f {
            ReadFailure::TooLarge(cap) => {
                self.protocol_error(op, format!("answer larger than {cap} bytes"))
            }
            ReadFailure::Broken(message) => RegistryError::BodyBroken {
                registry: self.host.name.clone(),
                repository: self.name.clone(),
                op: op.to_string(),
                message,
            },
        }
    }

    /// Runs `attempt` again while its answer's body breaks off, for operations that read a
    /// body after `send` returned. Only `BodyBroken` is retried here: everything else was
    /// already retried by `send`, and retrying it again would multiply the attempts.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let policy = self.registry.options().retry.clone();
        let mut n = 0;
        loop {
            n += 1;
            match attempt().await {
                Err(e @ RegistryError::BodyBroken { .. }) => match policy.next(n, None) {
                    Next::Wait(d) => tokio::time::sleep(d).await,
                    _ => return Err(e),
                },
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let a = Url::parse("https://r.example/v2/").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("https://r.example:443/x").unwrap()
        ));
        assert!(!same_origin(&a, &Url::parse("http://r.example/x").unwrap()));
        assert!(!same_origin(
            &a,
            &Url::parse("https://s3.example/x").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://r.example:8443/x").unwrap()
        ));
    }
}
