//! Typed errors of the sandbox.
//!
//! For telling the caller why a step could not run, and what to do about it when the cause
//! is the host's configuration (user namespaces). Not for how a step that did run ended:
//! that is an [`crate::Outcome`], whatever the exit status.

use std::io;

/// Why a user namespace could not be made (rootless runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernsCause {
    /// `kernel.apparmor_restrict_unprivileged_userns = 1` (Ubuntu 23.10 and later, the
    /// ubuntu-24.04 GitHub runners).
    AppArmorRestricted,
    /// `kernel.unprivileged_userns_clone = 0` (Debian's and some hardened kernels' switch).
    UnprivilegedCloneDisabled,
    /// `user.max_user_namespaces = 0`.
    MaxUserNamespacesZero,
    /// EPERM inside a container: its seccomp profile or missing capabilities forbid
    /// `unshare(CLONE_NEWUSER)` (Docker's default profile does).
    ContainerForbids,
    /// Something else; the errno says what.
    Other,
}

impl std::fmt::Display for UsernsCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UsernsCause::AppArmorRestricted => {
                "kernel.apparmor_restrict_unprivileged_userns is 1: run as root (sudo), give regbuild \
                 an AppArmor profile that allows userns, or set \
                 `sysctl kernel.apparmor_restrict_unprivileged_userns=0`"
            }
            UsernsCause::UnprivilegedCloneDisabled => {
                "kernel.unprivileged_userns_clone is 0: run as root or set \
                 `sysctl kernel.unprivileged_userns_clone=1`"
            }
            UsernsCause::MaxUserNamespacesZero => {
                "user.max_user_namespaces is 0: run as root or raise `sysctl user.max_user_namespaces`"
            }
            UsernsCause::ContainerForbids => {
                "running in a container whose seccomp profile or capabilities forbid \
                 unshare(CLONE_NEWUSER): run it with `--security-opt seccomp=unconfined` \
                 (and apparmor=unconfined), or with CAP_SYS_ADMIN as root"
            }
            UsernsCause::Other => "the kernel refused to create a user namespace",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot create a user namespace for a rootless run ({errno}): {cause}")]
    UserNamespace {
        cause: UsernsCause,
        errno: io::Error,
    },
    #[error("cannot create namespaces ({errno}): {hint}")]
    Namespaces { errno: io::Error, hint: String },
    #[error("cannot map ids into the user namespace with {tool}: {message}")]
    IdMap { tool: String, message: String },
    #[error("{what} {id} is not mapped into the user namespace ({mapping}); add ranges for this user to /etc/subuid and /etc/subgid and install newuidmap/newgidmap (Debian: uidmap)")]
    UnmappedId {
        what: &'static str,
        id: u32,
        mapping: String,
    },
    #[error("sandbox setup failed at {step}: {message}")]
    Setup { step: String, message: String },
    /// The overlay could not be mounted; nothing ran. `errno` is the mount's, if it got
    /// that far.
    #[error("sandbox setup failed at mounting the overlay: {message}")]
    Overlay { errno: Option<i32>, message: String },
    #[error("cannot execute {program:?}: {message}")]
    Exec { program: String, message: String },
    #[error("sandbox helper failed: {0}")]
    Helper(String),
}

impl SandboxError {
    /// Why overlayfs is unavailable here, when this error says so: the kernel lacks it
    /// (`ENODEV`), refuses it in this namespace (`EPERM`, `EACCES`), or refuses these
    /// directories or options (`EINVAL`, `EOPNOTSUPP`: an upper filesystem without the
    /// xattrs it needs, an old kernel without `userxattr`), or the options are too long for
    /// the kernel. A plain root filesystem works in all of these cases.
    pub fn overlay_unavailable(&self) -> Option<String> {
        let SandboxError::Overlay { errno, message } = self else {
            return None;
        };
        let name = match *errno {
            Some(libc::ENODEV) => "ENODEV",
            Some(libc::EPERM) => "EPERM",
            Some(libc::EACCES) => "EACCES",
            Some(libc::EINVAL) => "EINVAL",
            Some(libc::EOPNOTSUPP) => "EOPNOTSUPP",
            None if message.contains("over the kernel's") => "options too long",
            _ => return None,
        };
        let first = message.split(" (").next().unwrap_or(message);
        Some(format!("{name}: {first}"))
    }

    /// Why the sandbox's namespaces are refused here, when this error says so: `unshare`
    /// answered `EPERM`/`EACCES`/`ENOSPC`/`EINVAL` (no CAP_SYS_ADMIN, a seccomp profile that
    /// refuses it, namespaces used up or not built into the kernel). Nothing ran.
    pub fn namespaces_refused(&self) -> Option<String> {
        let SandboxError::Namespaces { errno, .. } = self else {
            return None;
        };
        let name = match errno.raw_os_error() {
            Some(libc::EPERM) => "EPERM",
            Some(libc::EACCES) => "EACCES",
            Some(libc::ENOSPC) => "ENOSPC",
            Some(libc::EINVAL) => "EINVAL",
            _ => return None,
        };
        Some(format!("unshare: {name}"))
    }

    /// Why the user-namespace rung cannot run here, when this error says so (nothing ran):
    /// no user namespace (`unshare(CLONE_NEWUSER)` refused, as Docker's default profile
    /// does), its maps refused, or a mount of the step's root refused inside it.
    pub fn userns_refused(&self) -> Option<String> {
        match self {
            SandboxError::UserNamespace { errno, .. } => Some(format!("user namespace: {errno}")),
            SandboxError::IdMap { tool, message } => Some(format!("{tool}: {message}")),
            SandboxError::Setup { step, message }
                if step.starts_with("mounting") || step.starts_with("binding") =>
            {
                Some(format!("{step}: {message}"))
            }
            other => other.namespaces_refused(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> SandboxError {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
}
