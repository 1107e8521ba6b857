//! Behaviour knobs a test picks before starting the registry.
//!
//! Each knob reproduces one way real registries differ from each other, so a
//! client can be tested against all of them. [`Config::with_profile`] picks
//! a hosted registry's deviations at once (see [`Profile`]).

use crate::profile::Profile;

/// How requests are authenticated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Everything is open.
    #[default]
    None,
    /// Every `/v2/` request needs `Authorization: Basic` with one of `users`.
    Basic { users: Vec<(String, String)> },
    /// Bearer tokens from `GET/POST /token` on the same listener, like
    /// distribution's token auth (docs/spec/auth/token.md).
    Token {
        users: Vec<(String, String)>,
        /// Anonymous token requests get `pull` on every repository asked for.
        anonymous_pull: bool,
        token_ttl_secs: u64,
    },
}

impl Auth {
    /// Basic auth with a single user.
    pub fn basic(user: &str, password: &str) -> Auth {
        Auth::Basic {
            users: vec![(user.to_string(), password.to_string())],
        }
    }

    /// Token auth with a single user, no anonymous pull, 300 s tokens.
    pub fn token(user: &str, password: &str) -> Auth {
        Auth::Token {
            users: vec![(user.to_string(), password.to_string())],
            anonymous_pull: false,
            token_ttl_secs: 300,
        }
    }
}

/// How `POST /v2/<n>/blobs/uploads/?mount=D&from=R` is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MountMode {
    /// 201 when `R` has the blob, else 202 with a new upload session.
    #[default]
    Normal,
    /// Always 202 with a new upload session (registries that ignore mounts).
    Refuse202,
    /// Answer this status with a JSON error body (e.g. 401, 403, 404, 500).
    Status(u16),
}

/// How `Location` headers are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LocationStyle {
    /// `http://<Host header>/v2/...`
    #[default]
    Absolute,
    /// `/v2/...`
    RootRelative,
    /// A relative reference without leading slash (RFC 3986 §4.2), always
    /// climbing at least one level, e.g. `../uploads/<id>?_state=..`, so that
    /// a client must resolve it against the request URL.
    PathRelative,
}

/// Registry configuration; `Config::default()` is a plain open registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub auth: Auth,
    pub mount: MountMode,
    pub location: LocationStyle,
    /// Blob GETs answer 307 to a second listener that serves the bytes.
    pub redirect_blob_gets: bool,
    /// `false`: `GET /v2/<n>/referrers/<d>` answers 404 like distribution 2.8.
    pub referrers_api: bool,
    /// `false`: `POST ..uploads/?digest=D` ignores the body and opens a
    /// session (202) like distribution 2.8.
    pub single_post_upload: bool,
    /// Advertised as `OCI-Chunk-Min-Length` on upload session creation.
    pub chunk_min_length: Option<u64>,
    /// Manifest bodies larger than this are refused with 413.
    pub max_manifest_bytes: usize,
    /// Which hosted registry's upload-protocol deviations to reproduce.
    pub profile: Profile,
    /// A `PATCH` or `PUT` to an upload session with a body over this many
    /// bytes answers 404 `BLOB_UPLOAD_UNKNOWN` and loses the session (Harbor;
    /// applies whatever the profile). `None`: no cap.
    pub max_request_body: Option<u64>,
    /// Every n-th pull (manifest or blob `GET`, counted together, 1-based)
    /// answers 429 `TOOMANYREQUESTS` like Docker Hub's pull rate limit
    /// (applies whatever the profile). `None` or `Some(0)`: no limit.
    pub rate_limit_every: Option<usize>,
}

impl Config {
    /// Harbor's default cap in [`Config::with_profile`]: 64 MiB.
    pub const HARBOR_MAX_REQUEST_BODY: u64 = 64 << 20;
    /// Docker Hub's default in [`Config::with_profile`]: every 4th pull.
    pub const DOCKERHUB_RATE_LIMIT_EVERY: usize = 4;

    /// `Config::default()` with `profile` and the knobs it implies:
    /// Harbor caps request bodies at 64 MiB, Docker Hub limits every 4th pull.
    pub fn with_profile(profile: Profile) -> Config {
        let mut config = Config {
            profile,
            ..Config::default()
        };
        match profile {
            Profile::Harbor => {
                config.max_request_body = Some(Self::HARBOR_MAX_REQUEST_BODY);
                config.referrers_api = true;
            }
            Profile::Dockerhub => {
                config.rate_limit_every = Some(Self::DOCKERHUB_RATE_LIMIT_EVERY);
            }
            _ => {}
        }
        config
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            auth: Auth::None,
            mount: MountMode::Normal,
            location: LocationStyle::Absolute,
            redirect_blob_gets: false,
            referrers_api: true,
            single_post_upload: true,
            chunk_min_length: None,
            max_manifest_bytes: 4 << 20,
            profile: Profile::Distribution,
            max_request_body: None,
            rate_limit_every: None,
        }
    }
}
