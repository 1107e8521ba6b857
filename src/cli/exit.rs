//! The exit-code convention of every command: 0 done, 1 failed, 2 bad usage or bad input
//! that was refused before any registry was asked (flags, references, the Dockerfile, the
//! `.dockerignore`, the workspace and lock files, a cache directory other users can write). A command's own negative answer (a CI
//! rule failed, a base moved) is 1 too. The one exception is `outdated`, whose 1 means "a
//! base moved" (CI rebuilds on it): there every error is 2, so an outage is never mistaken
//! for a moved base.

use std::error::Error;

use crate::builder::cache_dir::CacheLockError;
use crate::builder::BuildError;
use crate::lock::LockError;
use crate::push::PushError;
use crate::workspace::file::WorkspaceError;
use crate::workspace::run::RunError;
use regbuild_context::dockerignore::IgnoreError;
use regbuild_frontend::dockerfile::DockerfileError;
use regbuild_oci::reference::ReferenceError;

pub const FAILED: u8 = 1;
pub const BAD_INPUT: u8 = 2;
/// Ended by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// The command was interrupted (SIGINT/SIGTERM); running steps were killed, nothing was
/// tagged.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: running steps were killed and nothing more was written")]
pub struct Interrupted;

/// Something the user gave that regbuild refuses before doing any work (a flag's value, an
/// environment variable it reads).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

impl BadInput {
    pub fn boxed(message: impl Into<String>) -> super::CliError {
        Box::new(BadInput(message.into()))
    }
}

/// The exit code for an error a command returned.
pub fn code_for(e: &(dyn Error + Send + Sync + 'static)) -> u8 {
    if e.is::<Interrupted>() || crate::builder::run::interrupt::interrupted() {
        INTERRUPTED
    } else if is_bad_input(e) {
        BAD_INPUT
    } else {
        FAILED
    }
}

fn is_bad_input(e: &(dyn Error + Send + Sync + 'static)) -> bool {
    if e.is::<BadInput>()
        || e.is::<DockerfileError>()
        || e.is::<IgnoreError>()
        || e.is::<ReferenceError>()
        || e.is::<WorkspaceError>()
    {
        return true;
    }
    if let Some(b) = e.downcast_ref::<BuildError>() {
        return build_input(b);
    }
    if let Some(CacheLockError::NotPrivate { .. }) = e.downcast_ref::<CacheLockError>() {
        return true;
    }
    if let Some(l) = e.downcast_ref::<LockError>() {
        return lock_input(l);
    }
    if let Some(r) = e.downcast_ref::<RunError>() {
        return match r {
            RunError::Workspace(_)
            | RunError::Platform { .. }
            | RunError::NoTags { .. }
            | RunError::Tag { .. } => true,
            RunError::Dockerfile(b) => build_input(b),
            RunError::Outdated(_) | RunError::Image { .. } => false,
        };
    }
    match e.downcast_ref::<PushError>() {
        Some(PushError::Build(b)) => build_input(b),
        Some(PushError::Lock(l)) => lock_input(l),
        Some(PushError::NoLockFile { .. }) => true,
        _ => false,
    }
}

/// A Dockerfile regbuild refused before any registry was asked: its syntax, a reference
/// that is no reference (`FROM ::::bad`), a file that is missing or not UTF-8.
fn build_input(e: &BuildError) -> bool {
    match e {
        BuildError::Dockerfile(_) | BuildError::Ignore(_) => true,
        BuildError::At { source, .. } => {
            matches!(**source, crate::builder::StepError::Reference(_))
        }
        BuildError::ReadDockerfile { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::NotFound
        ),
        _ => false,
    }
}

/// A lock file that cannot be read as one is bad input; one that cannot be written is not.
fn lock_input(e: &LockError) -> bool {
    matches!(e, LockError::Read { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_are_2_and_the_rest_1() {
        let bad: super::super::CliError = BadInput::boxed("--platform names no platform");
        assert_eq!(code_for(bad.as_ref()), BAD_INPUT);
        let reference: super::super::CliError = Box::new(
            "a b"
                .parse::<regbuild_oci::reference::ImageRef>()
                .unwrap_err(),
        );
        assert_eq!(code_for(reference.as_ref()), BAD_INPUT);
        let io: super::super::CliError = Box::new(std::io::Error::other("disk full"));
        assert_eq!(code_for(io.as_ref()), FAILED);
        let plain: super::super::CliError = "gave up after 1 s (--deadline)".into();
        assert_eq!(code_for(plain.as_ref()), FAILED);
        // --locked without a lock file is refused before any registry is asked; a lock file
        // that would have to change is known only after the bases were resolved.
        let no_lock: super::super::CliError = Box::new(PushError::NoLockFile {
            path: "regbuild.lock".into(),
        });
        assert_eq!(code_for(no_lock.as_ref()), BAD_INPUT);
        let stale: super::super::CliError = Box::new(PushError::Locked(
            "--locked: regbuild.lock lacks a base".into(),
        ));
        assert_eq!(code_for(stale.as_ref()), FAILED);
    }
}
