//! The messages between the caller's process and the helper processes.
//!
//! For the wire format only: a JSON [`Request`] on the helper's stdin, JSON-lines
//! [`Event`]s on fd 3 (helper → caller), single bytes on fd 4 (caller → helper:
//! [`GO`] after the id maps are written, [`KILL`]; end of file also means kill).
//! Not for deciding anything.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::spec::Spec;

/// argv[1] that makes a binary act as the helper.
pub const HELPER_MARKER: &str = "__regbuild-sandbox-helper";
pub const CTL_FD: i32 = 3;
pub const GO_FD: i32 = 4;
pub const GO: u8 = b'g';
pub const KILL: u8 = b'k';
/// Rootless: in the request's `files` directory, what init opened up in the upper
/// directory after the command (`open_up::write_list`'s format). A file, not an event: it
/// can be long, and nothing reads the event pipe while the step runs.
pub const OPENED_UP_FILE: &str = "opened-up";

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub spec: Spec,
    /// Make a user namespace first and wait for the caller to write its maps.
    pub user_ns: bool,
    /// Whether `setgroups` is allowed in the user namespace (false with a single-id map).
    pub setgroups: bool,
    /// Rootless: give the caller access to what the step left unreadable (`open_up`).
    #[serde(default)]
    pub open_up: bool,
    /// overlay `workdir`, the new root's mount point, stub layer, generated files.
    pub ovl_work: PathBuf,
    pub root: PathBuf,
    pub stubs: PathBuf,
    pub files: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The helper is in its new user namespace and waits for the maps.
    UserNs,
    Warning {
        message: String,
    },
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    Killed,
    Error {
        kind: ErrorKind,
        step: String,
        errno: Option<i32>,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    UserNs,
    Namespaces,
    Setup,
    /// Mounting the overlay failed (before anything ran).
    Overlay,
    Exec,
}

/// An [`Event::Error`] of `kind` at `step`, from an I/O error.
pub(crate) fn fail(kind: ErrorKind, step: impl Into<String>, e: impl Into<io::Error>) -> Event {
    let e: io::Error = e.into();
    Event::Error {
        kind,
        step: step.into(),
        errno: e.raw_os_error(),
        message: e.to_string(),
    }
}

/// A `map_err` adapter: a setup failure at `step`.
pub(crate) fn setup_err<E: Into<io::Error>>(step: impl Into<String>) -> impl FnOnce(E) -> Event {
    let step = step.into();
    move |e| fail(ErrorKind::Setup, step, e)
}

/// A setup failure at `step` with a message of ours.
pub(crate) fn setup_failed(step: impl Into<String>, message: impl Into<String>) -> Event {
    Event::Error {
        kind: ErrorKind::Setup,
        step: step.into(),
        errno: None,
        message: message.into(),
    }
}
