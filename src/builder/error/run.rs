//! Why a `RUN` step could not be carried out.

use std::path::PathBuf;

/// A RUN step's failure; the builder adds `file:line`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command ran and failed: its status and the last lines it printed.
    #[error("RUN {command}: {status}{}", tail_text(.tail))]
    Failed {
        command: String,
        status: String,
        tail: Vec<String>,
    },
    #[error("RUN: {0}")]
    Sandbox(#[from] regbuild_sandbox::SandboxError),
    #[error("RUN: preparing the root filesystem: {0}")]
    Lower(#[from] regbuild_rootfs::lower::LowerError),
    #[error("RUN: copying the root filesystem (no overlayfs): {0}")]
    Materialize(#[from] regbuild_rootfs::materialize::MaterializeError),
    #[error("RUN: diffing the root filesystem (no overlayfs): {0}")]
    Snapshot(#[from] regbuild_rootfs::snapshot::SnapshotError),
    #[error("RUN: reading what the step changed: {0}")]
    Upper(regbuild_rootfs::upper::UpperError),
    /// The step left a file its layer cannot hold: regbuild could not read the layer back.
    #[error("RUN: the step left /{} of {size} bytes ({allocated} bytes on disk; a sparse file goes into a layer written out), over the limit of {limit} bytes per file in a layer that regbuild can unpack again: delete or shrink it in the same step", .path.display())]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        allocated: u64,
        limit: u64,
    },
    #[error("RUN as USER {user}: {source}")]
    User {
        user: String,
        source: crate::builder::owner::OwnerError,
    },
    #[error("RUN --mount=type=secret,id={id}: no such secret (pass --secret id={id},src=PATH or --secret id={id},env=VAR)")]
    MissingSecret { id: String },
    #[error("--secret id={id}: {reason}")]
    SecretSource { id: String, reason: String },
    #[error("RUN --mount=type=bind,source={path}: {reason}")]
    BindSource { path: String, reason: String },
    #[error("RUN --mount=type=bind,from={from}: that stage is not built before this step")]
    BindStageNotBuilt { from: usize },
    #[error("RUN --mount target {target}: {reason}")]
    Target {
        target: String,
        reason: &'static str,
    },
    #[error("RUN for {platform}: this machine ({host}) cannot execute it and no binfmt_misc handler for {arch} is registered (install qemu-user-static, or build on a {platform} runner)")]
    ForeignPlatform {
        platform: String,
        host: String,
        arch: String,
    },
    #[error("RUN: {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("RUN: the step was interrupted")]
    Interrupted,
}

impl From<regbuild_rootfs::upper::UpperError> for RunError {
    fn from(e: regbuild_rootfs::upper::UpperError) -> Self {
        match e {
            regbuild_rootfs::upper::UpperError::FileTooLarge {
                path,
                size,
                allocated,
                limit,
            } => RunError::FileTooLarge {
                path,
                size,
                allocated,
                limit,
            },
            other => RunError::Upper(other),
        }
    }
}

impl RunError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> RunError {
        RunError::Io {
            path: path.into(),
            source,
        }
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = String::from("; its last output lines:");
    for l in tail {
        s.push_str("\n  | ");
        s.push_str(l);
    }
    s
}
