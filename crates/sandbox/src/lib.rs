//! Run one command in an isolated root filesystem and tell how it ended: the groundwork for
//! Dockerfile `RUN`, rootless and daemonless (`regbuild::builder::run` drives it).
//!
//! For: one step = an overlayfs of read-only lower directories and an upper directory (which
//! becomes the step's layer), or a plain directory changed in place ([`Spec::plain_root`],
//! where overlayfs is unavailable: the caller snapshots and diffs it), in new mount, pid, ipc, uts (and, for [`Network::None`], net)
//! namespaces, with `/proc`, a minimal `/dev`, a read-only `/sys` and generated
//! `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname` mounted in — none of which reach the
//! upper directory. As root, directly; as another user, inside a user namespace (ranges from
//! `/etc/subuid`/`/etc/subgid` through `newuidmap`/`newgidmap`, else a single-id map, said in
//! [`Outcome::mapping`] and [`Outcome::warnings`]), the overlay mounted with `userxattr`.
//!
//! Not for: unpacking layers, diffing the upper directory into a tar (that is
//! `regbuild-rootfs`), caching, or prefixing output lines (the caller's).
//!
//! Modules: [`spec`] (what to run), [`run`] (the caller's side: [`Sandbox`], [`Running`],
//! [`KillHandle`]), [`helper`] (what runs in the namespaces, and why it is a separate
//! process), `idmap` (rootless id maps, diagnosing a missing user namespace), `open_up`
//! (rootless: access to what a step left), [`userns`] (a task of this program as root of a
//! user namespace, outside any step), `protocol` (the wire between them), `chroot` (stage 1
//! of the chroot rung, where no namespace can be made), `supervise` (what every stage 1
//! shares: events, descriptors, watching the step), [`error`].
//!
//! System calls go through `rustix`: already in the workspace's lock file, safe wrappers
//! over raw syscalls for everything here (unshare, mount, pivot_root, pidfd, poll, prctl,
//! setresuid…), no global state. Two things it does not offer are done with `libc`: `fork`
//! (in the single-threaded helper only) and the `SIOCSIFFLAGS` ioctl that brings `lo` up.
//!
//! Cleanup: every mount is made inside the step's private mount namespace, so it vanishes
//! with the step's last process; the step's init is pid 1 of its pid namespace, so killing it
//! kills them all; the helper kills init when told to or when the caller's end of its control
//! pipe closes (the caller dropped the step, or died: SIGINT, SIGKILL); init also has
//! `PR_SET_PDEATHSIG`. No temporary directory is made: the scratch lives in
//! [`Spec::work_dir`], the caller's, emptied when the step ends.

mod chroot;
pub mod confine;
pub mod error;
pub mod helper;
mod idmap;
mod open_up;
mod protocol;
mod rootfs;
pub mod run;
mod seccomp;
pub mod spec;
mod supervise;
pub mod userns;

pub use error::{SandboxError, UsernsCause};
pub use idmap::{diagnose_userns, HostIds, MappingKind};
pub use rootfs::prepare_plain_root;
pub use run::{KillHandle, Outcome, Running, Sandbox, Status, Stream};
pub use spec::{Isolation, Mount, Network, SecretValue, Spec};
