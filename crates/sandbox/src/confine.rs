//! What the command's own process does between fork and exec, so that what it executes is
//! confined at least as Docker confines a container (runc's default spec):
//!
//! 1. every descriptor but 0–2 is marked close-on-exec (`close_range`), so nothing the
//!    sandbox or regbuild's caller held reaches the command;
//! 2. the capability bounding set is cut to Docker's default set ([`DEFAULT_CAPS`]; a root
//!    step on the host's network also loses [`HOST_NETWORK_DROPS`]) and the ambient set
//!    emptied, so no execve (a setuid-root file included) gains more;
//! 3. the system-call filter is installed ([`crate::seccomp`]) while the process still has
//!    `CAP_SYS_ADMIN` in its user namespace, which is what lets it do so without
//!    `no_new_privs`;
//! 4. the effective and permitted sets become the default set, the inheritable set empty;
//! 5. the step's user: supplementary groups cleared, then gid, then uid (a uid other than 0
//!    loses every capability here, as the kernel does on setuid).
//!
//! `no_new_privs` is left off, as Docker and BuildKit leave it: steps use `su`, `sudo`,
//! `ping` and other setuid or file-capability programs, and a Dockerfile that could exploit
//! a setuid program of its base is already root in its step; the bounding set and the
//! filter bound what any execve may gain.
//!
//! Not for what happens before (mounts: `rootfs`) nor for deciding the user (the caller).

use std::io;

use rustix::thread::{CapabilitySet, CapabilitySets};
use seccompiler::BpfProgram;

use crate::error::SandboxError;

/// Docker's default capabilities (CapEff `00000000a80425fb` for a root step).
pub const DEFAULT_CAPS: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETPCAP)
    .union(CapabilitySet::NET_BIND_SERVICE)
    .union(CapabilitySet::NET_RAW)
    .union(CapabilitySet::SYS_CHROOT)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::AUDIT_WRITE)
    .union(CapabilitySet::SETFCAP);

/// What a root step sharing the host's network namespace loses of the default set: raw
/// sockets (sniffing the runner's traffic, regbuild's own registry credentials included)
/// and binding the host's privileged ports. Docker's steps have a network namespace of
/// their own, where these reach nothing of the host. Rootless steps never have them on the
/// host's network (their user namespace does not own it).
pub const HOST_NETWORK_DROPS: CapabilitySet =
    CapabilitySet::NET_RAW.union(CapabilitySet::NET_BIND_SERVICE);

/// The confinement of one command, prepared before fork (the filter is compiled here, so
/// the child only makes system calls).
pub(crate) struct Confinement {
    filters: Vec<BpfProgram>,
    caps: CapabilitySet,
    uid: u32,
    gid: u32,
    /// Whether `setgroups` is allowed (a single-id user namespace denies it).
    setgroups: bool,
    /// Set `no_new_privs` before the filters: without `CAP_SYS_ADMIN` (the chroot rung)
    /// the kernel installs a filter only under it.
    no_new_privs: bool,
    /// Landlock (the chroot rung, where the kernel has it): no file access outside the root,
    /// whatever directory a process of the step gets hold of, and no signal or abstract
    /// socket outside the step ([`restrict_to_root`]).
    landlock: bool,
}

impl Confinement {
    /// `host_network_as_root`: the step is real root on the host's network namespace.
    pub(crate) fn new(
        uid: u32,
        gid: u32,
        setgroups: bool,
        host_network_as_root: bool,
    ) -> Result<Confinement, SandboxError> {
        let caps = if host_network_as_root {
            DEFAULT_CAPS.difference(HOST_NETWORK_DROPS)
        } else {
            DEFAULT_CAPS
        };
        Ok(Confinement {
            filters: crate::seccomp::program()?,
            caps,
            uid,
            gid,
            setgroups,
            no_new_privs: false,
            landlock: false,
        })
    }

    /// The chroot rung's: the step is the container's root on the container's network, in
    /// no namespace of its own, so beside the host-network drops it loses `CAP_SYS_CHROOT`
    /// (a chroot inside its root and a `chdir("..")` walk out of it), may not trace or read
    /// the memory of another process (the container's own are reachable by pid) nor act on
    /// the `protected` ones (its helper and regbuild: `seccomp::hands_off`), and runs under
    /// `no_new_privs`, which the filter needs without `CAP_SYS_ADMIN`.
    pub(crate) fn chroot(
        uid: u32,
        gid: u32,
        protected: [i32; 2],
    ) -> Result<Confinement, SandboxError> {
        let mut filters = crate::seccomp::program()?;
        filters.push(crate::seccomp::hands_off(protected)?);
        Ok(Confinement {
            filters,
            caps: DEFAULT_CAPS
                .difference(HOST_NETWORK_DROPS)
                .difference(CapabilitySet::SYS_CHROOT),
            uid,
            gid,
            setgroups: true,
            no_new_privs: true,
            landlock: true,
        })
    }

    /// Confines the calling process; call it in the child between fork and exec (the child
    /// of a single-threaded process, which may allocate).
    pub(crate) fn apply(&self) -> io::Result<()> {
        if self.no_new_privs {
            rustix::thread::set_no_new_privs(true)?;
        }
        // Before descriptors are marked: what Landlock's set-up leaves open closes at exec.
        if self.landlock {
            restrict_to_root()?;
        }
        close_on_exec_from(3)?;
        cut_bounding_set(self.caps)?;
        // EINVAL: a kernel without ambient capabilities (before 4.3) has none to clear.
        match rustix::thread::clear_ambient_capability_set() {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }

        for filter in &self.filters {
            install(filter)?;
        }
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: self.caps,
                permitted: self.caps,
                inheritable: CapabilitySet::empty(),
            },
        )?;
        if self.setgroups {
            rustix::thread::set_thread_groups(&[])?;
        }
        let gid = rustix::process::Gid::from_raw(self.gid);
        let uid = rustix::process::Uid::from_raw(self.uid);
        rustix::thread::set_thread_res_gid(gid, gid, gid)?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
        Ok(())
    }
}

/// Landlock for a `chroot`ed step, called once it is in its root: the file accesses Landlock
/// knows (reading, writing, executing, listing, making and removing entries, renaming and
/// linking, truncating, device ioctls, Unix socket connect on newer kernels) beneath `/`
/// (its root) only — not `chmod`, `chown`, `utimes`, `setxattr` or `stat`, which Landlock
/// does not cover — and no signal to, nor abstract Unix socket of, a process outside the
/// step (its helper, regbuild, other steps). Best effort: a kernel enforces what it has
/// ([`landlock_gap`] says what is missing); without rename/link control (before 5.19) none
/// at all. Chroot steps take turns across the container whatever the kernel (the builder).
fn restrict_to_root() -> io::Result<()> {
    use landlock::{
        Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr, Scope, ABI,
    };
    let abi = ABI::V10;
    let err = |e: &dyn std::fmt::Display| io::Error::other(format!("landlock: {e}"));
    let root = PathFd::new("/").map_err(|e| err(&e))?;
    Ruleset::default()
        // Without Refer (Linux < 5.19), Landlock refuses every rename or link between
        // directories, even inside the root (apt moves its downloads so): then none at all.
        .set_compatibility(CompatLevel::SoftRequirement)
        .handle_access(AccessFs::Refer)
        .map_err(|e| err(&e))?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| err(&e))?
        .scope(Scope::from_all(abi))
        .map_err(|e| err(&e))?
        .create()
        .map_err(|e| err(&e))?
        .add_rule(PathBeneath::new(root, AccessFs::from_all(abi)))
        .map_err(|e| err(&e))?
        .restrict_self()
        .map_err(|e| err(&e))?;
    Ok(())
}

/// What the chroot rung's Landlock lacks on this kernel, if anything: its ABI version (1
/// and up; 2 for rename/link control, 6 for signal and abstract-socket scopes).
pub(crate) fn landlock_gap() -> Option<String> {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only
    // returns the ABI version.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    match abi {
        a if a >= 6 => None,
        a if a >= 2 => Some(format!(
            "Landlock ABI {a}: no signal or abstract-socket scopes (Linux 6.12): chroot steps rely on the filter and on taking turns"
        )),
        _ => Some("Landlock unavailable (Linux 5.19 and an `lsm=` list with landlock needed): chroot steps rely on the filter and on taking turns".into()),
    }
}

/// Marks every descriptor from `first` on close-on-exec.
pub fn close_on_exec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only changes descriptor flags; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Before Linux 5.11: one by one, from the list in /proc.
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Ok(fd) = entry?.file_name().to_string_lossy().parse::<i32>() {
            fds.push(fd);
        }
    }
    for fd in fds.into_iter().filter(|&fd| fd >= first as i32) {
        // SAFETY: F_SETFD on a descriptor number; a closed one (the listing's own) fails
        // harmlessly.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Removes from the bounding set every capability outside `keep`.
fn cut_bounding_set(keep: CapabilitySet) -> io::Result<()> {
    for cap in 0..64u32 {
        if keep.bits() & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: a plain prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            // EINVAL: past the kernel's last capability.
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Ok(());
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Installs one filter with `seccomp(2)`, without `no_new_privs` (the process has
/// `CAP_SYS_ADMIN` in its user namespace, which the kernel accepts instead).
fn install(filter: &BpfProgram) -> io::Result<()> {
    let len = u16::try_from(filter.len()).map_err(|_| io::Error::other("filter too long"))?;
    let prog = libc::sock_fprog {
        len,
        // seccompiler's sock_filter has the kernel's layout (code, jt, jf, k).
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the kernel copies the program from `prog`, which outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_docker_s() {
        assert_eq!(DEFAULT_CAPS.bits(), 0xa80425fb);
        assert!(!DEFAULT_CAPS.contains(CapabilitySet::SYS_ADMIN));
        assert!(!DEFAULT_CAPS.contains(CapabilitySet::SYS_PTRACE));
        assert!(!DEFAULT_CAPS.contains(CapabilitySet::NET_ADMIN));
        assert!(!DEFAULT_CAPS.contains(CapabilitySet::DAC_READ_SEARCH));
    }

    #[test]
    fn seccompiler_instructions_have_the_kernel_s_layout() {
        assert_eq!(
            std::mem::size_of::<seccompiler::sock_filter>(),
            std::mem::size_of::<libc::sock_filter>()
        );
        assert_eq!(
            std::mem::align_of::<seccompiler::sock_filter>(),
            std::mem::align_of::<libc::sock_filter>()
        );
    }
}
