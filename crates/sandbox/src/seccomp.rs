//! The system-call filter every step runs under: the equivalent of Docker's default seccomp
//! profile (moby/profiles `seccomp/default.json`) for a container with Docker's default
//! capabilities, which is what a step gets ([`crate::confine`]).
//!
//! For the allow-list as data ([`profile`]) and its compilation to a BPF program
//! ([`program`]). Not for installing it (`confine`, which does it in the command's process
//! between fork and exec).
//!
//! What it allows: the ordinary system calls of programs (files, processes, signals, memory,
//! sockets of the usual families, timers, System V and POSIX IPC, `chroot`, `ptrace` of the
//! step's own processes, `personality` for the values `setarch`/`linux32` use). What it
//! refuses with `EPERM`: every call that needs a capability a step does not have or reaches
//! past the step — `mount`, `umount2`, `pivot_root`, the new mount API, `unshare`, `setns`,
//! `clone` with any namespace flag, kernel modules, `kexec`, the keyring (`add_key`,
//! `keyctl`, `request_key`), `bpf`, `perf_event_open`, `userfaultfd`, `io_uring`,
//! `open_by_handle_at`, `process_madvise`, `pidfd_getfd`, `kcmp`, `reboot`, `swapon`, clock
//! and time setting, `acct`, `quotactl`, `syslog`, `iopl`/`ioperm`, `sethostname`, and
//! sockets of the families Docker blocks (`AF_VSOCK`, `AF_ALG`) or the kernel removed.
//! `clone3` answers `ENOSYS` (its flags are behind a pointer, so it cannot be filtered), which
//! makes the C library fall back to `clone`, whose flags are checked.
//!
//! The numbers come from `libc` (per architecture) and, for system calls added since Linux
//! 5.1, from the one table every architecture shares ([`GENERIC`]). Calls of another ABI
//! (32-bit x86 through `int 0x80`, x32) do not match the filter's architecture: the kernel
//! then kills the process, as the `seccompiler` crate builds every filter. 32-bit x86
//! programs therefore do not run in steps (Docker allows them).
//!
//! Written with `seccompiler` (rust-vmm's, the filter compiler of Firecracker): pure Rust,
//! no C library to link. Its `apply_filter` also sets `no_new_privs`, which would break
//! setuid programs in steps, so installing is done by `confine` with the `seccomp(2)` call.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::SandboxError;

/// Every namespace flag of `clone(2)`: a step may not make namespaces.
const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// `personality(2)` values a step may set (Linux, `ADDR_NO_RANDOMIZE`-free PER_LINUX32,
/// their `UNAME26` variants) or query (`0xffffffff`), as Docker allows.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Socket families a step may open (Docker's list: the kernel's, minus `AF_VSOCK`, which
/// reaches the host's virtual machines, `AF_ALG`, the kernel's crypto API, and the families
/// the kernel removed). The families 1..=11 are one range below.
const SOCKET_FAMILIES_BELOW: u64 = 12;
const SOCKET_FAMILIES: [u64; 25] = [
    13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41, 42, 43, 44,
    45,
];

/// System calls numbered alike on every architecture (Linux 5.1 and later).
const GENERIC: &[(&str, i64)] = &[
    ("pidfd_send_signal", 424),
    ("pidfd_open", 434),
    ("close_range", 436),
    ("openat2", 437),
    ("faccessat2", 439),
    ("epoll_pwait2", 441),
    ("landlock_create_ruleset", 444),
    ("landlock_add_rule", 445),
    ("landlock_restrict_self", 446),
    ("memfd_secret", 447),
    ("process_mrelease", 448),
    ("futex_waitv", 449),
    ("cachestat", 451),
    ("fchmodat2", 452),
    ("map_shadow_stack", 453),
    ("futex_wake", 454),
    ("futex_wait", 455),
    ("futex_requeue", 456),
    ("statmount", 457),
    ("listmount", 458),
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
];

/// `clone3`: answered with `ENOSYS` by a second filter.
const CLONE3: i64 = 435;

macro_rules! numbers {
    ($($name:ident),* $(,)?) => {
        &[$(libc::$name as i64),*]
    };
}

/// Allowed without conditions, on every architecture regbuild builds for.
const COMMON: &[i64] = numbers![
    SYS_accept,
    SYS_accept4,
    SYS_bind,
    SYS_brk,
    SYS_capget,
    SYS_capset,
    SYS_chdir,
    SYS_chroot,
    SYS_clock_adjtime,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_close,
    SYS_connect,
    SYS_copy_file_range,
    SYS_dup,
    SYS_dup3,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fanotify_mark,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_flistxattr,
    SYS_flock,
    SYS_fremovexattr,
    SYS_fsetxattr,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_get_robust_list,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrlimit,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_inotify_add_watch,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_io_cancel,
    SYS_io_destroy,
    SYS_io_getevents,
    SYS_io_setup,
    SYS_io_submit,
    SYS_ioctl,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_kill,
    SYS_lgetxattr,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lremovexattr,
    SYS_lseek,
    SYS_lsetxattr,
    SYS_madvise,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_mincore,
    SYS_mkdirat,
    SYS_mknodat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_name_to_handle_at,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_openat,
    SYS_pipe2,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_pselect6,
    SYS_ptrace,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_read,
    SYS_readahead,
    SYS_readlinkat,
    SYS_readv,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_remap_file_pages,
    SYS_removexattr,
    SYS_renameat,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_sched_setscheduler,
    SYS_sched_yield,
    SYS_seccomp,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_set_robust_list,
    SYS_set_tid_address,
    SYS_setfsgid,
    SYS_setfsuid,
    SYS_setgid,
    SYS_setgroups,
    SYS_setitimer,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setrlimit,
    SYS_setsid,
    SYS_setsockopt,
    SYS_setuid,
    SYS_setxattr,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd4,
    SYS_socketpair,
    SYS_splice,
    SYS_statfs,
    SYS_statx,
    SYS_symlinkat,
    SYS_sync,
    SYS_sync_file_range,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_tee,
    SYS_tgkill,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_uname,
    SYS_unlinkat,
    SYS_utimensat,
    SYS_vmsplice,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
];

/// The x86-64 system calls that newer architectures left out (they have the `*at` forms).
#[cfg(target_arch = "x86_64")]
const ARCH: &[i64] = numbers![
    SYS_access,
    SYS_alarm,
    SYS_arch_prctl,
    SYS_chmod,
    SYS_chown,
    SYS_creat,
    SYS_dup2,
    SYS_epoll_create,
    SYS_epoll_ctl_old,
    SYS_epoll_wait,
    SYS_epoll_wait_old,
    SYS_eventfd,
    SYS_fork,
    SYS_futimesat,
    SYS_getdents,
    SYS_getpgrp,
    SYS_inotify_init,
    SYS_lchown,
    SYS_link,
    SYS_lstat,
    SYS_mkdir,
    SYS_mknod,
    SYS_modify_ldt,
    SYS_open,
    SYS_pause,
    SYS_pipe,
    SYS_poll,
    SYS_readlink,
    SYS_rename,
    SYS_rmdir,
    SYS_select,
    SYS_signalfd,
    SYS_stat,
    SYS_symlink,
    SYS_time,
    SYS_unlink,
    SYS_utime,
    SYS_utimes,
    SYS_vfork,
];
#[cfg(not(target_arch = "x86_64"))]
const ARCH: &[i64] = &[];

/// The allow-list: each allowed system call with the rules of which one must hold (none:
/// always allowed).
pub(crate) fn profile() -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = COMMON
        .iter()
        .chain(ARCH)
        .chain(GENERIC.iter().map(|(_, n)| n))
        .map(|&n| (n, Vec::new()))
        .collect();
    let arg0 = |len, op, value| {
        SeccompRule::new(vec![
            SeccompCondition::new(0, len, op, value).expect("argument 0 exists")
        ])
        .expect("one condition")
    };
    rules.insert(
        libc::SYS_clone,
        vec![arg0(
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(CLONE_NAMESPACES),
            0,
        )],
    );
    rules.insert(
        libc::SYS_personality,
        PERSONALITIES
            .iter()
            .map(|&p| arg0(SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, p))
            .collect(),
    );
    let mut socket = vec![arg0(
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Lt,
        SOCKET_FAMILIES_BELOW,
    )];
    socket.extend(
        SOCKET_FAMILIES
            .iter()
            .map(|&f| arg0(SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, f)),
    );
    rules.insert(libc::SYS_socket, socket);
    rules
}

/// The filters to install, in order: the allow-list (anything else: `EPERM`), then the one
/// that answers `clone3` with `ENOSYS` (the most recently installed filter's answer wins
/// between two errors, so `clone3` gets `ENOSYS`).
pub(crate) fn program() -> Result<Vec<BpfProgram>, SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|_| SandboxError::Setup {
        step: "seccomp".into(),
        message: format!(
            "no system-call filter for {}: RUN steps run on x86_64 and aarch64 hosts only",
            std::env::consts::ARCH
        ),
    })?;
    let compile = |filter: Result<SeccompFilter, seccompiler::BackendError>| {
        filter
            .and_then(BpfProgram::try_from)
            .map_err(|e| SandboxError::Setup {
                step: "compiling the seccomp filter".into(),
                message: e.to_string(),
            })
    };
    let allow = compile(SeccompFilter::new(
        profile(),
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    ))?;
    let clone3 = compile(SeccompFilter::new(
        BTreeMap::from([(CLONE3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    ))?;
    Ok(vec![allow, clone3])
}

/// `fcntl`'s and `ioctl`'s ways of naming a descriptor's SIGIO owner that libc lacks
/// (the kernel's `F_SETOWN_EX`, `FIOSETOWN`, `SIOCSPGRP`).
const F_SETOWN_EX: i32 = 15;
const FIOSETOWN: i32 = 0x8901;
const SIOCSPGRP: i32 = 0x8902;

/// The chroot rung's second filter. A step in no pid namespace, as the same user as its
/// helper and regbuild (`protected`), could otherwise act on them: trace one (`ptrace`,
/// `process_vm_readv`/`writev`: refused outright), lower the helper's limits or starve it
/// (`prlimit64`, `setpriority`, `ioprio_set`, `sched_set*`: allowed on the caller itself
/// only, which is what `setrlimit`, `nice`, `taskset CMD` use), or kill it, leaving its
/// processes unwatched (`kill`, `tkill`, `tgkill`, `rt_*sigqueueinfo`, `pidfd_open` of a
/// protected pid, `kill(-1)` and a protected process group: refused). All answer `EPERM`.
pub(crate) fn hands_off(protected: [i32; 2]) -> Result<BpfProgram, SandboxError> {
    use SeccompCmpArgLen::Dword;
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|_| SandboxError::Setup {
        step: "seccomp".into(),
        message: format!("no system-call filter for {}", std::env::consts::ARCH),
    })?;
    let cond = |arg: u8, op: SeccompCmpOp, value: i32| {
        SeccompCondition::new(arg, Dword, op, u64::from(value as u32))
    };
    let rule = |conds: Vec<Result<SeccompCondition, seccompiler::BackendError>>| {
        conds
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .and_then(SeccompRule::new)
    };
    let not_self = |arg: u8| rule(vec![cond(arg, SeccompCmpOp::Ne, 0)]);
    let is = |arg: u8, pids: &[i32]| -> Vec<Result<SeccompRule, seccompiler::BackendError>> {
        pids.iter()
            .filter(|p| **p != 0)
            .map(|p| rule(vec![cond(arg, SeccompCmpOp::Eq, *p)]))
            .collect()
    };
    let [helper, regbuild] = protected;
    // regbuild's process group too (a `kill -- -PGID` reaches it otherwise).
    let regbuild_group = rustix::process::getpgid(rustix::process::Pid::from_raw(regbuild))
        .map_or(0, |g| -g.as_raw_nonzero().get());
    let signalled = [helper, regbuild, -helper, regbuild_group, -1];
    let owners: Vec<i32> = signalled.iter().copied().filter(|p| *p != -1).collect();
    let fcntl_owner = |pids: &[i32]| -> Vec<Result<SeccompRule, seccompiler::BackendError>> {
        let mut r: Vec<_> = pids
            .iter()
            .filter(|p| **p != 0)
            .map(|p| {
                rule(vec![
                    cond(1, SeccompCmpOp::Eq, libc::F_SETOWN),
                    cond(2, SeccompCmpOp::Eq, *p),
                ])
            })
            .collect();
        // F_SETOWN_EX names its owner behind a pointer: refused.
        r.push(rule(vec![cond(1, SeccompCmpOp::Eq, F_SETOWN_EX)]));
        r
    };
    let mut rules: Vec<(i64, Vec<Result<SeccompRule, seccompiler::BackendError>>)> = vec![
        (libc::SYS_ptrace, Vec::new()),
        (libc::SYS_process_vm_readv, Vec::new()),
        (libc::SYS_process_vm_writev, Vec::new()),
        (libc::SYS_prlimit64, vec![not_self(0)]),
        (libc::SYS_sched_setaffinity, vec![not_self(0)]),
        (libc::SYS_sched_setscheduler, vec![not_self(0)]),
        (libc::SYS_sched_setparam, vec![not_self(0)]),
        (libc::SYS_sched_setattr, vec![not_self(0)]),
        // PRIO_PROCESS (0) of the caller only: PRIO_PGRP and PRIO_USER (who 0: every
        // process of this user, regbuild's included) are refused.
        (libc::SYS_setpriority, vec![not_self(0), not_self(1)]),
        // IOPRIO_WHO_PROCESS (1) of the caller only.
        (
            libc::SYS_ioprio_set,
            vec![rule(vec![cond(0, SeccompCmpOp::Ne, 1)]), not_self(1)],
        ),
        // The owner of a descriptor's SIGIO is who the kernel signals for it: not a
        // protected process (the ioctls that set it pass it behind a pointer: refused).
        (libc::SYS_fcntl, fcntl_owner(&owners)),
        (
            libc::SYS_ioctl,
            vec![
                rule(vec![cond(1, SeccompCmpOp::Eq, FIOSETOWN)]),
                rule(vec![cond(1, SeccompCmpOp::Eq, SIOCSPGRP)]),
            ],
        ),
        (libc::SYS_kill, is(0, &signalled)),
        (libc::SYS_tkill, is(0, &protected)),
        (libc::SYS_tgkill, is(0, &protected)),
        (libc::SYS_rt_sigqueueinfo, is(0, &protected)),
        (libc::SYS_rt_tgsigqueueinfo, is(0, &protected)),
    ];
    rules.push((number("pidfd_open"), is(0, &protected)));
    let compile_err = |e: seccompiler::BackendError| SandboxError::Setup {
        step: "compiling the seccomp filter".into(),
        message: e.to_string(),
    };
    let map = rules
        .into_iter()
        .map(|(n, r)| Ok((n, r.into_iter().collect::<Result<Vec<_>, _>>()?)))
        .collect::<Result<BTreeMap<_, _>, seccompiler::BackendError>>()
        .map_err(compile_err)?;
    SeccompFilter::new(
        map,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(compile_err)
}

/// A system call's number from the shared table.
fn number(name: &str) -> i64 {
    GENERIC
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr)
        .expect("a call of the shared table")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(name: i64) -> bool {
        profile().contains_key(&name)
    }

    #[test]
    fn what_reaches_past_the_step_is_not_allowed() {
        for forbidden in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_kexec_load,
            libc::SYS_add_key,
            libc::SYS_keyctl,
            libc::SYS_request_key,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_io_uring_setup,
            libc::SYS_open_by_handle_at,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_settimeofday,
            libc::SYS_clock_settime,
            libc::SYS_sethostname,
            libc::SYS_syslog,
            libc::SYS_acct,
            libc::SYS_quotactl,
            libc::SYS_kcmp,
            libc::SYS_pidfd_getfd,
            libc::SYS_process_madvise,
            libc::SYS_fsopen,
            libc::SYS_open_tree,
            libc::SYS_move_mount,
            libc::SYS_mount_setattr,
            CLONE3,
        ] {
            assert!(!allowed(forbidden), "system call {forbidden} is allowed");
        }
    }

    #[test]
    fn clone_may_make_processes_and_threads_but_no_namespace() {
        let clone = &profile()[&libc::SYS_clone];
        assert_eq!(clone.len(), 1, "one masked condition");
        assert_eq!(CLONE_NAMESPACES & libc::CLONE_THREAD as u64, 0);
        assert_eq!(CLONE_NAMESPACES & libc::CLONE_VM as u64, 0);
        assert_ne!(CLONE_NAMESPACES & libc::CLONE_NEWUSER as u64, 0);
        assert_ne!(CLONE_NAMESPACES & libc::CLONE_NEWNS as u64, 0);
    }

    #[test]
    fn the_blocked_socket_families_are_in_no_rule() {
        let allowed_family =
            |f: u64| (1..SOCKET_FAMILIES_BELOW).contains(&f) || SOCKET_FAMILIES.contains(&f);
        assert!(allowed_family(libc::AF_INET as u64));
        assert!(allowed_family(libc::AF_INET6 as u64));
        assert!(allowed_family(libc::AF_UNIX as u64));
        assert!(allowed_family(libc::AF_NETLINK as u64));
        assert!(allowed_family(libc::AF_PACKET as u64));
        assert!(!allowed_family(libc::AF_VSOCK as u64));
        assert!(!allowed_family(libc::AF_ALG as u64));
    }

    #[test]
    fn the_program_compiles_for_this_machine_within_the_kernel_s_size() {
        let filters = program().unwrap();
        assert_eq!(filters.len(), 2);
        // BPF_MAXINSNS: the kernel refuses longer programs.
        assert!(
            filters.iter().all(|f| f.len() <= 4096),
            "{:?}",
            filters.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
}
