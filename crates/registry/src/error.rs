//! Errors from talking to a registry, each naming the registry, repository and operation.

use std::error::Error as _;

use serde::Deserialize;

/// What went wrong while talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status.
    #[error(
        "{op} on {registry}/{repository}: HTTP {status}{}",
        api_detail(code, message)
    )]
    Api {
        registry: String,
        repository: String,
        op: String,
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// The request did not get an answer (connection refused, reset, TLS, timeout).
    #[error("{op} on {registry}/{repository}: {message}")]
    Transport {
        registry: String,
        repository: String,
        op: String,
        message: String,
    },
    /// An answer's body broke off mid-way (the connection dropped).
    #[error("{op} on {registry}/{repository}: {message}")]
    BodyBroken {
        registry: String,
        repository: String,
        op: String,
        message: String,
    },
    /// Content did not hash to the digest it was asked for.
    #[error("{what} from {registry}/{repository}: content does not match its digest (expected {expected}, got {actual})")]
    DigestMismatch {
        registry: String,
        repository: String,
        what: String,
        expected: String,
        actual: String,
    },
    /// The registry answered something a registry must not answer.
    #[error("{op} on {registry}/{repository}: {message}")]
    Protocol {
        registry: String,
        repository: String,
        op: String,
        message: String,
    },
    /// Every way of uploading a blob that was tried was refused.
    #[error("{op} on {registry}/{repository}: the registry refused every way tried: {tried}")]
    Refused {
        registry: String,
        repository: String,
        op: String,
        /// Each method tried and the registry's answer to it.
        tried: String,
        status: Option<u16>,
        code: Option<String>,
    },
    /// Getting a token or credentials failed.
    #[error("authentication with {registry}: {message}")]
    Auth { registry: String, message: String },
    /// A local file (blob source or destination) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn api_detail(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) if !m.is_empty() => format!(" {c}: {m}"),
        (Some(c), _) => format!(" {c}"),
        (None, Some(m)) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

impl RegistryError {
    /// The HTTP status, for errors the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Api { status, .. } => Some(*status),
            RegistryError::Refused { status, .. } => *status,
            _ => None,
        }
    }

    /// The distribution error code (`MANIFEST_UNKNOWN`, `DENIED`…), when the body had one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::Api { code, .. } | RegistryError::Refused { code, .. } => {
                code.as_deref()
            }
            _ => None,
        }
    }

    /// True for failures worth trying again: no answer, or a "try later" status.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { .. } | RegistryError::BodyBroken { .. } => true,
            RegistryError::Api { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            _ => false,
        }
    }

    /// True when the thing asked for does not exist (404, or a *_UNKNOWN code).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
            || matches!(
                self.code(),
                Some("MANIFEST_UNKNOWN" | "BLOB_UNKNOWN" | "NAME_UNKNOWN")
            )
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The first `{code, message}` of a distribution error body; `None` for bodies that are not
/// that JSON (proxies and load balancers answer HTML or plain text).
pub fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => b
            .errors
            .into_iter()
            .next()
            .map(|e| (e.code, e.message.map(|m| clip(&m))))
            .unwrap_or((None, None)),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let looks_textual = !text.is_empty() && !text.starts_with('<');
            (None, looks_textual.then(|| clip(text)))
        }
    }
}

/// Keeps registry-provided text short and on one line in our messages.
fn clip(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    one_line.trim().to_string()
}

/// A transport error as text: the cause chain without URLs (a Location may carry signed
/// query strings that act as credentials).
pub fn describe_transport(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    parts.push(kind.to_string());
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distribution_error_bodies() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            parse_error_body(body),
            (
                Some("MANIFEST_UNKNOWN".into()),
                Some("manifest unknown".into())
            )
        );
    }

    #[test]
    fn tolerates_non_json_and_html_bodies() {
        assert_eq!(
            parse_error_body(b"upstream exploded\n"),
            (None, Some("upstream exploded".into()))
        );
        assert_eq!(parse_error_body(b"<html>502</html>"), (None, None));
        assert_eq!(parse_error_body(b""), (None, None));
    }

    #[test]
    fn api_error_names_registry_repository_and_code() {
        let e = RegistryError::Api {
            registry: "r.example".into(),
            repository: "team/app".into(),
            op: "PUT manifest v1".into(),
            status: 400,
            code: Some("MANIFEST_BLOB_UNKNOWN".into()),
            message: Some("blob unknown to registry".into()),
        };
        assert_eq!(
            e.to_string(),
            "PUT manifest v1 on r.example/team/app: HTTP 400 MANIFEST_BLOB_UNKNOWN: blob unknown to registry"
        );
    }
}
