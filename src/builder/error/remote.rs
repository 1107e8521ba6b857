//! Why an ADD of a URL or a Git repository failed.

use std::path::PathBuf;

use regbuild_frontend::remote::GitRefError;

/// Why an ADD of a URL or Git repository failed (the caller adds `file:line`).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("ADD {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("ADD {url}: the server answered {status}")]
    Status { url: String, status: String },
    #[error("ADD {url}: larger than {limit} bytes, the most one file of a layer may hold")]
    TooLarge { url: String, limit: u64 },
    #[error("ADD {url}: {source}")]
    Disk {
        url: String,
        source: regbuild_fs::disk::DiskError,
    },
    #[error("ADD {url}: checksum mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("ADD {source_text}: {reason}")]
    Source {
        source_text: String,
        reason: GitRefError,
    },
    #[error("ADD {remote}: git {what} failed: {detail}")]
    Git {
        remote: String,
        what: String,
        detail: String,
    },
    #[error("ADD {remote}: git {what} did not finish within {secs} s")]
    GitTimeout {
        remote: String,
        what: String,
        secs: u64,
    },
    #[error("ADD {remote}: git {what} stopped: it wrote {used} bytes, more than the {allowed} the disk has to spare (the free space less what is kept free for the rest of the build)")]
    GitDisk {
        remote: String,
        what: String,
        used: u64,
        allowed: u64,
    },
    #[error("ADD of a Git repository runs git, which could not be started: {0}")]
    GitMissing(std::io::Error),
    #[error("ADD {remote}: repository does not contain ref {git_ref}")]
    NoRef { remote: String, git_ref: String },
    #[error("ADD {remote}: expected checksum to match {expected}, got {actual}")]
    GitChecksum {
        remote: String,
        expected: String,
        actual: String,
    },
    #[error("ADD {0}: fetch-by-commit requires a full commit SHA checksum")]
    FetchByCommit(String),
    #[error("ADD {remote}: commit {commit} was not fetched (the ref moved meanwhile?)")]
    RefMoved { remote: String, commit: String },
    #[error("ADD {remote}: invalid subdir {subdir}: not a directory of the repository")]
    Subdir { remote: String, subdir: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
