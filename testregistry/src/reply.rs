//! The response value handlers build, and the OCI JSON error bodies.
//!
//! Handlers return a plain [`Reply`] (status, headers, whole body) instead of a
//! hyper response so the server can corrupt or truncate the body afterwards,
//! and so no handler has to deal with header-construction errors.

use bytes::Bytes;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Reply {
    pub(crate) fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    pub(crate) fn json(status: u16, value: &Value) -> Reply {
        Reply::new(status)
            .header("Content-Type", "application/json")
            .body(value.to_string())
    }

    pub(crate) fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `{"errors":[{"code","message","detail"}]}` with `status`.
pub(crate) fn error(status: u16, code: &str, message: &str, detail: Value) -> Reply {
    Reply::json(
        status,
        &json!({"errors": [{"code": code, "message": message, "detail": detail}]}),
    )
}

/// The error code a bare status most likely stands for, for injected errors.
pub(crate) fn code_for_status(status: u16) -> &'static str {
    match status {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        404 => "NOT_FOUND",
        405 => "UNSUPPORTED",
        413 => "SIZE_INVALID",
        429 => "TOOMANYREQUESTS",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

pub(crate) fn blob_unknown(digest: &str) -> Reply {
    error(
        404,
        "BLOB_UNKNOWN",
        "blob unknown to registry",
        json!(digest),
    )
}

pub(crate) fn manifest_unknown(reference: &str) -> Reply {
    error(
        404,
        "MANIFEST_UNKNOWN",
        "manifest unknown",
        json!({ "Tag": reference }),
    )
}

pub(crate) fn name_unknown(name: &str) -> Reply {
    error(
        404,
        "NAME_UNKNOWN",
        "repository name not known to registry",
        json!({ "name": name }),
    )
}

pub(crate) fn digest_invalid(message: &str) -> Reply {
    error(
        400,
        "DIGEST_INVALID",
        "provided digest did not match uploaded content",
        json!(message),
    )
}

pub(crate) fn upload_unknown() -> Reply {
    error(
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "blob upload unknown to registry",
        Value::Null,
    )
}

pub(crate) fn unsupported() -> Reply {
    error(
        405,
        "UNSUPPORTED",
        "The operation is unsupported.",
        Value::Null,
    )
}

/// What distribution's router answers for routes it does not have.
pub(crate) fn plain_not_found() -> Reply {
    Reply::new(404)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body("404 page not found\n")
}
