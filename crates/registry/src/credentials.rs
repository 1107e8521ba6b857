//! Registry credentials from docker's config.json (`$DOCKER_CONFIG` or `~/.docker`):
//! `auths`, `credsStore` and `credHelpers`, read through the `docker_credential` crate.
//!
//! Secrets are wrapped so that `Debug` and `Display` never show them.

use std::fmt;

/// A secret string that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the user gave us to log in to one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: Secret,
    },
    /// An identity token (docker config `identitytoken`): an OAuth2 refresh token.
    IdentityToken(Secret),
}

/// The key docker stores a registry's credentials under.
fn config_key(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    }
}

/// Whether the Docker config docker_credential reads exists: `$DOCKER_CONFIG/config.json`,
/// else `$HOME/.docker/config.json` (the crate's own lookup, which it does not expose).
fn docker_config_exists() -> bool {
    std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))
        .is_some_and(|dir| dir.join("config.json").exists())
}

/// Credentials for `registry`, or `None` to go anonymous. A broken helper is reported as a
/// warning (without its output, which may hold secrets) and treated as no credentials.
pub fn lookup(registry: &str) -> Option<Credential> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    match docker_credential::get_credential(config_key(registry)) {
        Ok(DockerCredential::UsernamePassword(username, password)) => Some(Credential::Basic {
            username,
            password: Secret::new(password),
        }),
        Ok(DockerCredential::IdentityToken(t)) => Some(Credential::IdentityToken(Secret::new(t))),
        Err(E::NoCredentialConfigured | E::ConfigNotFound) => None,
        // A config that exists but cannot be read (bad JSON, no permission) is a mistake
        // the user needs to see: silently anonymous, a push fails later with a bare 401.
        // The crate reports a missing file the same way, which is no mistake.
        Err(E::ConfigReadError) if !docker_config_exists() => None,
        Err(E::ConfigReadError) => {
            tracing::warn!(
                registry,
                "cannot read the Docker config ($DOCKER_CONFIG/config.json, else \
                 ~/.docker/config.json: not valid JSON, or unreadable); continuing anonymously"
            );
            None
        }
        Err(E::HelperFailure { helper, .. }) => {
            tracing::warn!(
                registry,
                helper,
                "credential helper failed; continuing anonymously"
            );
            None
        }
        Err(other) => {
            tracing::warn!(registry, error = %other, "cannot read credentials; continuing anonymously");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credential::Basic {
            username: "ci".into(),
            password: Secret::new("hunter2"),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ci"));
        let t = Credential::IdentityToken(Secret::new("refresh-me"));
        assert!(!format!("{t:?}").contains("refresh-me"));
    }

    #[test]
    fn docker_hub_uses_the_legacy_key() {
        assert_eq!(config_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(config_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
