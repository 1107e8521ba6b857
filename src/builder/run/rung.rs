//! Which rung of isolation a RUN step runs in (`--isolation`), and how a step's root is
//! made for it, from the most isolated down:
//! 1. the sandbox's namespaces over overlayfs, or over a plain copy of the root (the native
//!    snapshotter, where overlayfs is unavailable);
//! 2. as root of a container that refuses CAP_SYS_ADMIN but allows user namespaces
//!    (podman's default seccomp profile), the same namespaces inside a user namespace that
//!    maps the container's ids to themselves, without `/proc`, over the plain copy
//!    (`regbuild_sandbox::Isolation::Userns`);
//! 3. where the container refuses namespaces altogether (Docker's and containerd's default
//!    seccomp profile), no namespace: the plain copy `chroot`ed
//!    (`regbuild_sandbox::Isolation::Chroot`; root only; the container is the sandbox, as
//!    with kaniko).
//!
//! Not for carrying a step out (`run::execute_as`), nor for the sandbox's own checks.

/// What `--isolation` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// The sandbox; as root where namespaces are refused, the user-namespace rung, else the
    /// chroot rung (each fall said once).
    #[default]
    Auto,
    /// Namespaces only: a refusal fails the step.
    Sandbox,
    /// The user-namespace rung only (root).
    Userns,
    /// The chroot rung only (root; no `RUN --network=none`).
    Chroot,
}

impl Isolation {
    pub fn parse(s: &str) -> Result<Isolation, String> {
        match s {
            "auto" => Ok(Isolation::Auto),
            "sandbox" => Ok(Isolation::Sandbox),
            "userns" => Ok(Isolation::Userns),
            "chroot" => Ok(Isolation::Chroot),
            other => Err(format!("{other}: use auto, sandbox, userns or chroot")),
        }
    }
}

/// How one attempt at a step is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rung {
    /// Namespaces, the step's root an overlay of the lowers.
    Overlay,
    /// Namespaces, the step's root a plain copy diffed by snapshot.
    Native,
    /// Namespaces in a user namespace of the container's ids, no `/proc`, the plain copy.
    Userns,
    /// No namespace: the plain copy `chroot`ed.
    Chroot,
}

impl Rung {
    /// Whether the step's root is a plain copy (snapshot diff).
    pub fn plain(self) -> bool {
        self != Rung::Overlay
    }

    /// Its name in logs (`RUN step timings`).
    pub fn name(self) -> &'static str {
        match self {
            Rung::Overlay => "sandbox, overlayfs",
            Rung::Native => "sandbox, native",
            Rung::Userns => "userns, native",
            Rung::Chroot => "chroot, native",
        }
    }

    pub fn isolation(self) -> regbuild_sandbox::Isolation {
        match self {
            Rung::Chroot => regbuild_sandbox::Isolation::Chroot,
            Rung::Userns => regbuild_sandbox::Isolation::Userns,
            _ => regbuild_sandbox::Isolation::Namespaces,
        }
    }
}

/// The message said once when `auto` falls to the user-namespace rung.
pub fn userns_message(reason: &str) -> String {
    format!(
        "namespaces refused here ({reason}: a container without CAP_SYS_ADMIN): RUN steps run \
         in the user-namespace rung (the sandbox's namespaces inside a user namespace of the \
         container's ids, no /proc; see docs/run.md)"
    )
}

/// The message said once when `auto` falls to the chroot rung.
pub fn chroot_message(reason: &str) -> String {
    format!(
        "namespaces refused here ({reason}: a container whose seccomp profile refuses \
         unshare, as Docker's default does): RUN steps run in the chroot rung (no namespace; \
         the container is the sandbox, as with kaniko; see docs/run.md)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_names_parse_and_others_are_refused_with_the_choices() {
        assert_eq!(Isolation::parse("auto"), Ok(Isolation::Auto));
        assert_eq!(Isolation::parse("sandbox"), Ok(Isolation::Sandbox));
        assert_eq!(Isolation::parse("chroot"), Ok(Isolation::Chroot));
        let e = Isolation::parse("privileged").unwrap_err();
        assert!(e.contains("auto, sandbox, userns or chroot"), "{e}");
        assert_eq!(Isolation::parse("userns"), Ok(Isolation::Userns));
    }

    #[test]
    fn only_the_chroot_rung_leaves_the_namespaces() {
        assert!(!Rung::Overlay.plain() && Rung::Native.plain() && Rung::Chroot.plain());
        assert!(Rung::Userns.plain());
        assert_eq!(
            Rung::Chroot.isolation(),
            regbuild_sandbox::Isolation::Chroot
        );
        assert_eq!(
            Rung::Native.isolation(),
            regbuild_sandbox::Isolation::Namespaces
        );
    }
}
