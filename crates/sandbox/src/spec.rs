//! What to run: [`Spec`] and its parts.
//!
//! For describing one step (layers, command, environment, identity, network, extra mounts).
//! Not for deciding them: the build decides what a `RUN` step's spec is; this module only
//! checks that a spec can be carried out ([`Spec::validate`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::SandboxError;

/// One command to run in an isolated root filesystem.
///
/// Paths must be absolute and valid UTF-8 (they travel to the helper as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Read-only directories, bottom to top (e.g. the unpacked base layers). May be empty.
    pub lower_dirs: Vec<PathBuf>,
    /// overlayfs `upperdir`: every change the command makes lands here (the step's layer).
    pub upper_dir: PathBuf,
    /// A scratch directory on the same filesystem as `upper_dir`, empty or absent. The
    /// sandbox owns it while running (overlay's work dir, the mount point, the generated
    /// `/etc` files, mount-point stubs) and empties it when the step has ended.
    pub work_dir: PathBuf,
    /// The command; `argv[0]` is looked up in `PATH` from `env` when it has no `/`.
    pub argv: Vec<String>,
    /// Exactly the environment the command sees: nothing of the caller's leaks.
    pub env: Vec<(String, String)>,
    /// Working directory inside the root filesystem; must exist there.
    pub cwd: PathBuf,
    /// User and group ids inside the sandbox.
    pub uid: u32,
    pub gid: u32,
    /// The hostname the command sees (also written to `/etc/hostname` and `/etc/hosts`).
    pub hostname: String,
    pub network: Network,
    /// Extra mounts, applied in order after `/proc`, `/dev`, `/sys` and the `/etc` files.
    pub mounts: Vec<Mount>,
    /// No overlay: `upper_dir` is the whole root filesystem, bind-mounted and changed in
    /// place (the snapshot-diff fallback where overlayfs is unavailable); `lower_dirs` must
    /// be empty. Mount points are made in it: call [`crate::prepare_plain_root`] before taking
    /// the snapshot, so they are not changes of the step.
    #[serde(default)]
    pub plain_root: bool,
    /// How the step is isolated: namespaces (the default), or only `chroot` where the
    /// container regbuild runs in refuses namespaces ([`Isolation::Chroot`]).
    #[serde(default)]
    pub isolation: Isolation,
}

/// The rung of isolation a step runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Isolation {
    /// New mount, pid, ipc, uts (and for [`Network::None`], net) namespaces, rootless
    /// through a user namespace: the sandbox.
    #[default]
    Namespaces,
    /// As root of a container that allows user namespaces but not a new `/proc` (podman's
    /// default seccomp profile, a Kubernetes pod without CAP_SYS_ADMIN): the namespaces of
    /// [`Isolation::Namespaces`] inside a user namespace mapping the container's own ids one
    /// to one, and no `/proc` (none can be mounted there, and the container's is not shown:
    /// its processes stay out of sight).
    Userns,
    /// No namespace at all (a container whose seccomp profile refuses them, as Docker's
    /// default does): the plain root `chroot`ed, what the namespaces would mount made in it
    /// (`crate::chroot`). Root only; the container is the sandbox, as with kaniko.
    Chroot,
}

/// The network the command sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Network {
    /// Shares the host's network namespace (Docker's `RUN` default).
    #[default]
    Default,
    /// A new network namespace with only `lo`, brought up.
    None,
}

/// An extra mount inside the root filesystem (for `RUN --mount`, later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    /// Bind-mount a host path (file or directory) at `target`.
    Bind {
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    /// A fresh tmpfs at `target`; `size_bytes` limits it.
    Tmpfs {
        target: PathBuf,
        size_bytes: Option<u64>,
    },
    /// A read-only file at `target` holding `value` (`RUN --mount=type=secret`). The value
    /// goes to the sandbox through a pipe and is written only to a tmpfs inside the step's
    /// own mount namespace (in [`Isolation::Chroot`], which has none, a file of the plain
    /// root, removed when the step ends): it never has a path on the host, and it is gone with the step
    /// however the step ends.
    Secret {
        target: PathBuf,
        value: SecretValue,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl Mount {
    pub fn target(&self) -> &Path {
        match self {
            Mount::Bind { target, .. }
            | Mount::Tmpfs { target, .. }
            | Mount::Secret { target, .. } => target,
        }
    }
}

/// A secret's bytes: never shown by `Debug`, so no log line or error can print them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretValue(pub Vec<u8>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<{} bytes>)", self.0.len())
    }
}

impl Spec {
    /// A spec with the usual defaults: uid/gid 0, cwd `/`, hostname `regbuild`, host network.
    pub fn new(
        lower_dirs: Vec<PathBuf>,
        upper_dir: impl Into<PathBuf>,
        work_dir: impl Into<PathBuf>,
        argv: Vec<String>,
    ) -> Spec {
        Spec {
            lower_dirs,
            upper_dir: upper_dir.into(),
            work_dir: work_dir.into(),
            argv,
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            uid: 0,
            gid: 0,
            hostname: "regbuild".to_string(),
            network: Network::Default,
            mounts: Vec::new(),
            plain_root: false,
            isolation: Isolation::Namespaces,
        }
    }

    /// Checks what can be checked before starting anything.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let bad = |why: String| Err(SandboxError::InvalidSpec(why));
        if self.argv.is_empty() {
            return bad("argv is empty".into());
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return bad("an argument contains a NUL byte".into());
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return bad(format!("invalid environment variable name or value: {k:?}"));
            }
        }
        let mut paths: Vec<(&str, &Path)> = vec![
            ("upper_dir", &self.upper_dir),
            ("work_dir", &self.work_dir),
            ("cwd", &self.cwd),
        ];
        paths.extend(self.lower_dirs.iter().map(|p| ("lower_dirs", p.as_path())));
        for m in &self.mounts {
            paths.push(("mount target", m.target()));
            if let Mount::Bind { source, .. } = m {
                paths.push(("mount source", source));
            }
        }
        for (what, p) in paths {
            if !p.is_absolute() {
                return bad(format!("{what} must be absolute: {}", p.display()));
            }
            if p.to_str().is_none() {
                return bad(format!("{what} is not valid UTF-8: {}", p.display()));
            }
        }
        if self.isolation == Isolation::Chroot {
            if !self.plain_root {
                return bad("the chroot rung runs on a plain root filesystem only".into());
            }
            if self.network == Network::None {
                return bad("RUN --network=none needs a network namespace, which the chroot rung does not have".into());
            }
        }
        if self.plain_root && !self.lower_dirs.is_empty() {
            return bad("a plain root filesystem takes no lower directories".into());
        }
        for m in &self.mounts {
            if m.target() == Path::new("/") {
                return bad("a mount cannot target /".into());
            }
        }
        // Paths inside the root are joined to host paths before pivot_root: a `..` would
        // name a host path.
        let inside = std::iter::once(("cwd", self.cwd.as_path()))
            .chain(self.mounts.iter().map(|m| ("mount target", m.target())));
        for (what, p) in inside {
            if p.components().any(|c| c == std::path::Component::ParentDir) {
                return bad(format!("{what} must not contain '..': {}", p.display()));
            }
        }
        if self.hostname.is_empty() || self.hostname.len() > 64 || self.hostname.contains('\0') {
            return bad(format!("invalid hostname {:?}", self.hostname));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_the_root_may_not_climb_out_of_it() {
        let spec = |cwd: &str, target: &str| {
            let mut s = Spec::new(Vec::new(), "/u", "/w", vec!["true".into()]);
            s.cwd = PathBuf::from(cwd);
            s.mounts.push(Mount::Tmpfs {
                target: PathBuf::from(target),
                size_bytes: None,
            });
            s.validate()
        };
        assert!(spec("/app", "/tmp/x").is_ok());
        for (cwd, target) in [("/../../tmp", "/t"), ("/app", "/x/../../etc")] {
            let err = spec(cwd, target).unwrap_err().to_string();
            assert!(err.contains("must not contain '..'"), "{err}");
        }
        let secret = Mount::Secret {
            target: PathBuf::from("/run/s"),
            value: SecretValue(b"hunter2".to_vec()),
            mode: 0o400,
            uid: 0,
            gid: 0,
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
