//! Which ids a rootless run maps into its user namespace, and writing the maps.
//!
//! For the caller's side of a rootless run: reading `/etc/subuid` and `/etc/subgid`,
//! running `newuidmap`/`newgidmap` when ranges exist, else writing a single-id map
//! (`0 <uid> 1`) directly; and for naming why a user namespace could not be made. Not for
//! running anything inside the namespace (`helper`).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::error::{SandboxError, UsernsCause};

/// How ids inside the sandbox relate to the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingKind {
    /// Run as root: no user namespace, ids are the host's.
    Host,
    /// Rootless with subordinate ranges: 0 is the caller, 1..=count come from
    /// `/etc/subuid` / `/etc/subgid`.
    Ranges { uids: u32, gids: u32 },
    /// Rootless without subordinate ranges (or without newuidmap): only 0, the caller.
    /// Packages that create users (apt's `_apt`) fall back or fail.
    SingleId,
}

impl MappingKind {
    pub(crate) fn maps(&self, uid: u32, gid: u32) -> Result<(), SandboxError> {
        let (uids, gids) = match self {
            MappingKind::Host => return Ok(()),
            MappingKind::Ranges { uids, gids } => (*uids, *gids),
            MappingKind::SingleId => (0, 0),
        };
        let desc = format!("{self:?}");
        if uid > uids {
            return Err(SandboxError::UnmappedId {
                what: "uid",
                id: uid,
                mapping: desc,
            });
        }
        if gid > gids {
            return Err(SandboxError::UnmappedId {
                what: "gid",
                id: gid,
                mapping: desc,
            });
        }
        Ok(())
    }
}

/// How to read the owners of files a step wrote (they are on disk with host ids): host id
/// → the id the step saw. Identity when no user namespace was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostIds {
    /// (the caller's id = 0 inside, subordinate range start, its length), uids then gids.
    uid: Option<(u32, u32, u32)>,
    gid: Option<(u32, u32, u32)>,
}

impl HostIds {
    fn inside(map: Option<(u32, u32, u32)>, host: u64) -> u64 {
        match map {
            None => host,
            Some((own, _, _)) if host == u64::from(own) => 0,
            Some((_, start, count))
                if host >= u64::from(start) && host < u64::from(start) + u64::from(count) =>
            {
                host - u64::from(start) + 1
            }
            // Not mapped into the namespace: the kernel showed it as the overflow id.
            Some(_) => 65534,
        }
    }

    /// The uid inside the sandbox of a file owned by host uid `host`.
    pub fn inside_uid(&self, host: u64) -> u64 {
        HostIds::inside(self.uid, host)
    }

    pub fn inside_gid(&self, host: u64) -> u64 {
        HostIds::inside(self.gid, host)
    }
}

/// A planned rootless mapping.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub kind: MappingKind,
    uid: u32,
    gid: u32,
    sub_uid: Option<(u32, u32)>,
    sub_gid: Option<(u32, u32)>,
    /// Why ranges are not used, when they are not.
    pub warning: Option<String>,
    /// Root's user-namespace rung: every id this process's namespace has, mapped to itself.
    identity: bool,
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next();
        (f.next()? == uid.to_string()).then(|| name.to_string())
    })
}

/// The first range of `file` for the user (`name:start:count` or `uid:start:count`).
fn sub_range(file: &str, name: Option<&str>, id: u32) -> Option<(u32, u32)> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let who = f.next()?;
        let start = f.next()?.parse().ok()?;
        let count = f.next()?.parse().ok()?;
        (Some(who) == name || who == id.to_string()).then_some((start, count))
    })
}

fn on_path(tool: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

pub(crate) fn plan(single_id: bool) -> Plan {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    if single_id {
        return Plan {
            kind: MappingKind::SingleId,
            uid,
            gid,
            sub_uid: None,
            sub_gid: None,
            warning: Some(
                "single-id user namespace (only uid/gid 0 exist inside), as asked".into(),
            ),
            identity: false,
        };
    }
    let name = user_name(uid);
    let sub_uid = sub_range("/etc/subuid", name.as_deref(), uid);
    let sub_gid = sub_range("/etc/subgid", name.as_deref(), gid).or_else(|| {
        // subgid is keyed by user, not group.
        sub_range("/etc/subgid", name.as_deref(), uid)
    });
    let tools = on_path("newuidmap") && on_path("newgidmap");
    match (sub_uid, sub_gid, tools) {
        (Some(u), Some(g), true) => Plan {
            kind: MappingKind::Ranges {
                uids: u.1,
                gids: g.1,
            },
            uid,
            gid,
            sub_uid: Some(u),
            sub_gid: Some(g),
            warning: None,
            identity: false,
        },
        _ => Plan {
            kind: MappingKind::SingleId,
            uid,
            gid,
            sub_uid: None,
            sub_gid: None,
            warning: Some(format!(
                "single-id user namespace (only uid/gid 0 exist inside): {}",
                if tools {
                    "no range for this user in /etc/subuid or /etc/subgid"
                } else {
                    "newuidmap/newgidmap not installed (Debian/Ubuntu: uidmap)"
                }
            )),
            identity: false,
        },
    }
}

impl Plan {
    /// Root's user-namespace rung: the ids inside are the ids outside (files keep their
    /// owners, no id changes meaning), written from this process's own maps.
    pub(crate) fn identity() -> Plan {
        Plan {
            kind: MappingKind::Host,
            uid: 0,
            gid: 0,
            sub_uid: None,
            sub_gid: None,
            warning: None,
            identity: true,
        }
    }

    /// How host ids read back as the ids inside.
    pub(crate) fn host_ids(&self) -> HostIds {
        if self.identity {
            return HostIds::default();
        }
        let with = |own: u32, sub: Option<(u32, u32)>| {
            Some(match sub {
                Some((s, c)) => (own, s, c),
                None => (own, 0, 0),
            })
        };
        HostIds {
            uid: with(self.uid, self.sub_uid),
            gid: with(self.gid, self.sub_gid),
        }
    }

    /// Writes the maps of `pid`'s user namespace.
    pub(crate) fn apply(&self, pid: u32) -> Result<(), SandboxError> {
        if self.identity {
            return write_identity(pid);
        }
        if let (Some((us, uc)), Some((gs, gc))) = (self.sub_uid, self.sub_gid) {
            run_map("newgidmap", pid, self.gid, gs, gc)?;
            run_map("newuidmap", pid, self.uid, us, uc)?;
            return Ok(());
        }
        let proc = format!("/proc/{pid}");
        let write = |file: &str, text: String| {
            fs::write(format!("{proc}/{file}"), text).map_err(|e| SandboxError::IdMap {
                tool: format!("/proc/{pid}/{file}"),
                message: e.to_string(),
            })
        };
        write("setgroups", "deny".into())?;
        write("gid_map", format!("0 {} 1\n", self.gid))?;
        write("uid_map", format!("0 {} 1\n", self.uid))
    }
}

/// Maps every id of this process's user namespace to itself in `pid`'s (the container's
/// ids, as many extents as it has: root holds CAP_SETUID/CAP_SETGID over them).
fn write_identity(pid: u32) -> Result<(), SandboxError> {
    for file in ["gid_map", "uid_map"] {
        let err = |message: String| SandboxError::IdMap {
            tool: format!("/proc/{pid}/{file}"),
            message,
        };
        let own =
            fs::read_to_string(format!("/proc/self/{file}")).map_err(|e| err(e.to_string()))?;
        let map: String = own
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3).then(|| format!("{} {} {}\n", f[0], f[0], f[2]))
            })
            .collect();
        fs::write(format!("/proc/{pid}/{file}"), map).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

fn run_map(tool: &str, pid: u32, own: u32, start: u32, count: u32) -> Result<(), SandboxError> {
    let out = Command::new(tool)
        .args([pid, 0, own, 1, 1, start, count].map(|n| n.to_string()))
        .env_clear()
        .output()
        .map_err(|e| SandboxError::IdMap {
            tool: tool.into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SandboxError::IdMap {
            tool: tool.into(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

fn sysctl(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn in_container() -> bool {
    Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || fs::read_to_string("/proc/1/cgroup")
            .map(|c| {
                ["docker", "kubepods", "containerd", "libpod"]
                    .iter()
                    .any(|k| c.contains(k))
            })
            .unwrap_or(false)
}

/// Names why `unshare(CLONE_NEWUSER)` failed with `errno`, from this host's settings.
pub fn diagnose_userns(errno: Option<i32>) -> UsernsCause {
    diagnose(sysctl, errno, in_container())
}

/// The diagnosis itself: `read` gives a `/proc/sys` file's trimmed contents.
fn diagnose(
    read: impl Fn(&str) -> Option<String>,
    errno: Option<i32>,
    container: bool,
) -> UsernsCause {
    let is = |path: &str, value: &str| read(path).as_deref() == Some(value);
    if is(
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
    ) {
        UsernsCause::AppArmorRestricted
    } else if is("/proc/sys/kernel/unprivileged_userns_clone", "0") {
        UsernsCause::UnprivilegedCloneDisabled
    } else if is("/proc/sys/user/max_user_namespaces", "0") {
        UsernsCause::MaxUserNamespacesZero
    } else if errno == Some(libc::EPERM) && container {
        UsernsCause::ContainerForbids
    } else {
        UsernsCause::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<'a>(set: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |p| {
            set.iter()
                .find(|(k, _)| *k == p)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn each_setting_is_named() {
        let aa = [(
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
        )];
        let cause = diagnose(with(&aa), Some(libc::EACCES), false);
        assert_eq!(cause, UsernsCause::AppArmorRestricted);
        assert!(cause
            .to_string()
            .contains("kernel.apparmor_restrict_unprivileged_userns"));

        let clone = [
            (
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
                "0",
            ),
            ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        ];
        let cause = diagnose(with(&clone), Some(libc::EPERM), true);
        assert_eq!(cause, UsernsCause::UnprivilegedCloneDisabled);
        assert!(cause
            .to_string()
            .contains("kernel.unprivileged_userns_clone"));

        let max = [("/proc/sys/user/max_user_namespaces", "0")];
        assert_eq!(
            diagnose(with(&max), Some(libc::ENOSPC), false),
            UsernsCause::MaxUserNamespacesZero
        );

        let cause = diagnose(with(&[]), Some(libc::EPERM), true);
        assert_eq!(cause, UsernsCause::ContainerForbids);
        assert!(cause.to_string().contains("seccomp"));
        assert_eq!(
            diagnose(with(&[]), Some(libc::EPERM), false),
            UsernsCause::Other
        );
    }

    #[test]
    fn subordinate_ranges_are_found_by_name_or_uid() {
        let dir =
            std::env::temp_dir().join(format!("regbuild-sandbox-subuid-{}", std::process::id()));
        fs::write(&dir, "alice:100000:65536\n1002:200000:1000\n").unwrap();
        let file = dir.to_str().unwrap();
        assert_eq!(sub_range(file, Some("alice"), 1001), Some((100000, 65536)));
        assert_eq!(sub_range(file, Some("bob"), 1002), Some((200000, 1000)));
        assert_eq!(sub_range(file, Some("carol"), 1003), None);
        let _ = fs::remove_file(&dir);
    }

    #[test]
    fn single_id_maps_only_zero() {
        assert!(MappingKind::SingleId.maps(0, 0).is_ok());
        assert!(matches!(
            MappingKind::SingleId.maps(0, 5),
            Err(SandboxError::UnmappedId {
                what: "gid",
                id: 5,
                ..
            })
        ));
        assert!(MappingKind::Ranges {
            uids: 65536,
            gids: 65536
        }
        .maps(65536, 100)
        .is_ok());
        assert!(MappingKind::Ranges { uids: 10, gids: 10 }
            .maps(11, 0)
            .is_err());
        assert!(MappingKind::Host.maps(123456, 7).is_ok());
    }
}
