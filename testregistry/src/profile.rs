//! Hosted-registry profiles: which real registry's deviations from the OCI
//! distribution upload protocol the test registry reproduces.
//!
//! The profile only names the behaviour; the handlers (`uploads`, `mounts`,
//! `manifests`, `router`) check it where the deviation happens, and the size
//! and rate knobs it implies live in [`crate::Config`].

use std::fmt;
use std::str::FromStr;

/// A hosted registry to imitate. Each variant documents what it changes and
/// where the real behaviour is described.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// CNCF distribution 2.8 / OCI distribution-spec v1.1, as without a
    /// profile: nothing changes.
    #[default]
    Distribution,
    /// Google Artifact Registry: "Artifact Registry does not support Docker
    /// chunked uploads … You must use monolithic uploads"
    /// (cloud.google.com/artifact-registry/docs/reference/docker-api). Every
    /// `PATCH` to a session answers 405 `UNSUPPORTED`; the session stays
    /// usable, so POST then a PUT with the whole blob works.
    Gar,
    /// GitHub Container Registry: a chunk (`PATCH` with `Content-Range`) over
    /// 4 MiB answers 416 `REQUESTED_RANGE_NOT_SATISFIABLE` "… exceeds the
    /// maximum permissible limit of 4.00MiB" (oras-project/rust-oci-client#35,
    /// wasmCloud/wash#268). Nothing is stored and the session stays usable.
    /// Streamed `PATCH`es (no `Content-Range`) of any size are accepted.
    Ghcr,
    /// Amazon ECR (aws/containers-roadmap#2831): a `PATCH` answers 201 instead
    /// of 202, and its `Range` stays at the end of the session's first `PATCH`
    /// on every later answer (PATCH, 416, GET status) although every chunk is
    /// stored. `Content-Range` is still checked against the true size. Mounts
    /// only succeed for blobs a manifest in the source repository references
    /// (config or layer); otherwise 202 with a new session.
    Ecr,
    /// JFrog Artifactory (containerd/containerd#3533, moby/buildkit#1130,
    /// RTFACT-19344): blobs must arrive by `PATCH`; a closing `PUT` with a
    /// body answers 400 `BLOB_UPLOAD_INVALID` and ends the session.
    Jfrog,
    /// Docker Hub (docs.docker.com/docker-hub/usage/pulls): with
    /// `Config::rate_limit_every`, every n-th pull (manifest or blob GET)
    /// answers 429 `TOOMANYREQUESTS` with `ratelimit-limit`,
    /// `ratelimit-remaining: 0` and `Retry-After`. With token auth, a
    /// mount's 401 challenge names both the target's `pull,push` and the
    /// source's `pull` scope (the mount needs both, as for every profile).
    Dockerhub,
    /// Quay: anonymous cross-repository mounts answer 401 `UNAUTHORIZED`
    /// without a challenge, so a client must fall back to a plain upload; an
    /// index or manifest list mixing Docker and OCI media types is refused
    /// with 400 `MANIFEST_INVALID` (rabbitmq/rabbitmq-server#9132; newer Quay
    /// accepts such indexes since quay/quay#6070).
    Quay,
    /// Harbor (goharbor/harbor#17908): an upload request (`PATCH` or `PUT` to
    /// a session) with a body over `Config::max_request_body` (64 MiB by
    /// default here) answers 404 `BLOB_UPLOAD_UNKNOWN` and the session is
    /// lost; smaller chunks work. The referrers API is on.
    Harbor,
}

impl Profile {
    /// Every profile, `Distribution` first.
    pub const ALL: [Profile; 8] = [
        Profile::Distribution,
        Profile::Gar,
        Profile::Ghcr,
        Profile::Ecr,
        Profile::Jfrog,
        Profile::Dockerhub,
        Profile::Quay,
        Profile::Harbor,
    ];

    /// The lower-case name `FromStr` accepts (`"distribution"`, `"gar"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Profile::Distribution => "distribution",
            Profile::Gar => "gar",
            Profile::Ghcr => "ghcr",
            Profile::Ecr => "ecr",
            Profile::Jfrog => "jfrog",
            Profile::Dockerhub => "dockerhub",
            Profile::Quay => "quay",
            Profile::Harbor => "harbor",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Profile::ALL`]'s; the message lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseProfileError {
    pub name: String,
}

impl fmt::Display for ParseProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
        write!(
            f,
            "unknown registry profile {:?}; expected one of: {}",
            self.name,
            names.join(", ")
        )
    }
}

impl std::error::Error for ParseProfileError {}

impl FromStr for Profile {
    type Err = ParseProfileError;

    /// Exact, lower-case names only.
    fn from_str(s: &str) -> Result<Profile, ParseProfileError> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| ParseProfileError {
                name: s.to_string(),
            })
    }
}
