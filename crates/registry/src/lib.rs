//! The registry client: the OCI Distribution API as a push path needs it.
//!
//! `transport` sends requests (scheme, auth, redirects); `blobs`, `upload`, `manifests` and
//! `referrers` are the operations on a repository (`strategy` decides how an upload sends
//! its bytes); `auth`, `challenge` and `credentials`
//! decide what Authorization to send. Nothing here decides *what* to copy: that is the
//! callers' plan,
//! which lives in `publish` (what the registry must hold → HEAD / mount / upload / manifest
//! PUT) with the `progress` it reports and the `report` it returns.

pub mod auth;
pub mod blobs;
pub mod challenge;
pub mod credentials;
pub mod error;
pub mod manifests;
pub mod plain_http;
pub mod progress;
pub mod publish;
pub mod referrers;
pub mod report;
pub mod retry;
pub mod strategy;
pub mod tls;
pub mod transport;
pub mod upload;

pub use auth::Scopes;
pub use error::RegistryError;
pub use manifests::{Manifest, ManifestInfo};
pub use strategy::{HostQuirks, UploadStrategy};
pub use transport::{CredentialSource, Registry, RegistryOptions, Repo};
pub use upload::{Mounted, UploadSession};
