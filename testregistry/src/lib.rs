//! An in-memory OCI Distribution (v2) registry for tests and demos.
//!
//! It behaves like CNCF distribution 2.8 / the OCI distribution-spec v1.1
//! where clients are likely to trip (newest upload `Location` only, relative
//! locations, mount refusals, token scopes, referrers fallback) and lets tests
//! count requests ([`TestRegistry::requests`]) and inject faults
//! ([`TestRegistry::add_fault`]).
//!
//! [`Config::with_profile`] makes it bend the upload protocol the way a
//! hosted registry does ([`Profile`], one variant each):
//!
//! | profile        | deviation                                                              |
//! |----------------|------------------------------------------------------------------------|
//! | `distribution` | none (the default)                                                     |
//! | `gar`          | every `PATCH` 405 `UNSUPPORTED`: monolithic uploads only               |
//! | `ghcr`         | a `PATCH` with `Content-Range` over 4 MiB: 416                         |
//! | `ecr`          | `PATCH` 201 with a stale `Range`; mounts need a referencing manifest   |
//! | `jfrog`        | closing `PUT` with a body: 400 `BLOB_UPLOAD_INVALID`, session ended    |
//! | `dockerhub`    | every 4th pull 429 `TOOMANYREQUESTS`; mount challenge names both scopes |
//! | `quay`         | anonymous mount 401 without challenge; mixed Docker/OCI index 400      |
//! | `harbor`       | a session `PATCH`/`PUT` over 64 MiB: 404, session lost                 |
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use testregistry::{Config, TestRegistry};
//! let reg = TestRegistry::start(Config::default()).await?;
//! let digest = reg.put_blob("library/alpine", b"hello");
//! assert!(reg.has_blob("library/alpine", &digest));
//! println!("registry at http://{}", reg.host());
//! # Ok(()) }
//! ```

mod auth;
mod blobs;
mod config;
mod faults;
mod location;
mod log;
mod manifests;
mod mounts;
mod names;
mod profile;
mod ratelimit;
mod redirect;
mod referrers;
mod reply;
mod request;
mod router;
mod server;
mod state;
mod storage;
mod tags;
mod token;
mod uploads;
mod util;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::{Auth, Config, LocationStyle, MountMode};
pub use faults::{FaultAction, FaultRule, Faults, MethodFilter};
pub use log::LoggedRequest;
pub use manifests::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
pub use profile::{ParseProfileError, Profile};

use server::Listener;
use state::Shared;
use util::{lock, sha256_digest};

/// A running registry. Dropping it (or [`TestRegistry::shutdown`]) stops both
/// listeners and closes every open connection.
pub struct TestRegistry {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl TestRegistry {
    /// Starts on `127.0.0.1:<free port>`.
    pub async fn start(config: Config) -> io::Result<TestRegistry> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts on `addr`; the redirect listener (if enabled) gets a free port
    /// on the same IP.
    pub async fn start_on(addr: SocketAddr, config: Config) -> io::Result<TestRegistry> {
        let main = TcpListener::bind(addr).await?;
        let redirect = if config.redirect_blob_gets {
            Some(TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?)
        } else {
            None
        };
        let redirect_addr = redirect.as_ref().map(TcpListener::local_addr).transpose()?;
        let addr = main.local_addr()?;
        let shared = Arc::new(Shared::new(config, redirect_addr));
        let mut tasks = vec![server::spawn(main, shared.clone(), Listener::Main)];
        if let Some(l) = redirect {
            tasks.push(server::spawn(l, shared.clone(), Listener::Redirect));
        }
        Ok(TestRegistry {
            shared,
            addr,
            tasks,
        })
    }

    /// Stops the registry (same as dropping it).
    pub fn shutdown(self) {}

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The redirect target listener, when `redirect_blob_gets` is on.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.shared.redirect_addr
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Requests to the main listener (including `/token`), in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.snapshot()
    }

    /// Requests to the redirect target listener, in arrival order.
    pub fn redirect_requests(&self) -> Vec<LoggedRequest> {
        self.shared.redirect_log.snapshot()
    }

    /// Empties both request logs.
    pub fn clear_log(&self) {
        self.shared.log.clear();
        self.shared.redirect_log.clear();
    }

    pub fn add_fault(&self, rule: FaultRule) {
        lock(&self.shared.faults).add(rule);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every access token issued so far stops working: the next request using
    /// one gets 401 with a fresh challenge (`error="invalid_token"`).
    /// Refresh tokens keep working.
    pub fn expire_tokens(&self) {
        lock(&self.shared.tokens).expire_all();
    }

    /// Stores a blob in `repo` and returns its `sha256:<hex>` digest.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        lock(&self.shared.storage).put_blob(repo, &digest, Bytes::copy_from_slice(data));
        digest
    }

    /// Stores a manifest without validating it and returns its digest.
    /// `reference` is a tag to point at it, or a digest (then it is stored
    /// untagged; the digest used is always the one computed from `data`).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        data: &[u8],
    ) -> String {
        let digest = sha256_digest(data);
        let tag = (!reference.contains(':')).then_some(reference);
        lock(&self.shared.storage).put_manifest(
            repo,
            &digest,
            tag,
            media_type,
            Bytes::copy_from_slice(data),
        );
        digest
    }

    pub fn has_blob(&self, repo: &str, digest: &str) -> bool {
        lock(&self.shared.storage).has_blob(repo, digest)
    }

    pub fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        lock(&self.shared.storage)
            .blob(repo, digest)
            .map(|b| b.to_vec())
    }

    /// `(media type, bytes)` of a manifest by tag or digest.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        lock(&self.shared.storage)
            .manifest(repo, reference)
            .map(|m| (m.media_type.clone(), m.data.to_vec()))
    }

    /// Sorted tags of `repo` (empty when unknown).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        lock(&self.shared.storage).tags(repo)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
