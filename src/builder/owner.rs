//! Owners as Docker resolves them: `--chown=user[:group]` and `USER` with names looked up in
//! the image's `/etc/passwd` and `/etc/group` (BuildKit's rules: a user name gives its uid
//! and primary gid, a numeric uid alone is also the gid, a group overrides the gid). Pure:
//! the caller finds the files (`crate::builder::pathindex`).
//!
//! Every id resolved is a valid 32-bit id (at most [`MAX_ID`]): a number past it, typed in
//! the Dockerfile (which the front end refuses first) or read from the image's account
//! files, is an error, never wrapped.

use regbuild_frontend::ids::{is_numeric, numeric_id, IdOutOfRange, MAX_ID};

/// Why an owner could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("unable to find user {name}: no matching entries in the image's /etc/passwd{missing}")]
    UnknownUser { name: String, missing: &'static str },
    #[error("unable to find group {name}: no matching entries in the image's /etc/group{missing}")]
    UnknownGroup { name: String, missing: &'static str },
    #[error("invalid owner {spec:?}")]
    Invalid { spec: String },
    #[error(transparent)]
    OutOfRange(#[from] IdOutOfRange),
    #[error(
        "{name} has {what} {id} in the image's {file}, out of range: ids go from 0 to {MAX_ID}"
    )]
    AccountOutOfRange {
        name: String,
        what: &'static str,
        id: u64,
        file: &'static str,
    },
}

/// The image's account files, when it has them.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

const NO_PASSWD: &str = " (the image has no /etc/passwd)";
const NO_GROUP: &str = " (the image has no /etc/group)";

/// Whether `spec` names a user or group (and so needs the account files).
pub fn needs_names(spec: &str) -> bool {
    spec.split(':')
        .any(|part| !part.is_empty() && !is_numeric(part))
}

/// `user[:group]` → (uid, gid), for the layer entries (whose ids are `u64`).
pub fn resolve(spec: &str, accounts: &Accounts) -> Result<(u64, u64), OwnerError> {
    let (uid, gid) = resolve_ids(spec, accounts)?;
    Ok((u64::from(uid), u64::from(gid)))
}

/// `user[:group]` → (uid, gid), each at most [`MAX_ID`].
pub fn resolve_ids(spec: &str, accounts: &Accounts) -> Result<(u32, u32), OwnerError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(OwnerError::Invalid {
            spec: spec.to_string(),
        });
    }
    let (uid, mut gid) = match numeric_id(user, "uid")? {
        Some(id) => (id, id),
        None => {
            let (uid, gid) = lookup_user(user, accounts.passwd.as_deref())?;
            (
                in_range(uid, user, "uid", "/etc/passwd")?,
                in_range(gid, user, "gid", "/etc/passwd")?,
            )
        }
    };
    if let Some(g) = group {
        gid = match numeric_id(g, "gid")? {
            Some(id) => id,
            None => in_range(
                lookup_group(g, accounts.group.as_deref())?,
                g,
                "gid",
                "/etc/group",
            )?,
        };
    }
    Ok((uid, gid))
}

/// An id read from an account file, if it is a valid one.
fn in_range(
    id: u64,
    name: &str,
    what: &'static str,
    file: &'static str,
) -> Result<u32, OwnerError> {
    u32::try_from(id)
        .ok()
        .filter(|id| *id <= MAX_ID)
        .ok_or_else(|| OwnerError::AccountOutOfRange {
            name: name.to_string(),
            what,
            id,
            file,
        })
}

/// `name:x:uid:gid:...` lines; the first match wins, as in libc.
fn lookup_user(name: &str, passwd: Option<&str>) -> Result<(u64, u64), OwnerError> {
    let found = passwd.and_then(|text| {
        text.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            match f.as_slice() {
                [n, _, uid, gid, ..] if *n == name => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
    });
    // `root` is 0 even where no /etc/passwd says so (FROM scratch), as before.
    let found = found.or((name == "root").then_some((0, 0)));
    found.ok_or_else(|| OwnerError::UnknownUser {
        name: name.to_string(),
        missing: if passwd.is_none() { NO_PASSWD } else { "" },
    })
}

/// `name:x:gid:members` lines.
fn lookup_group(name: &str, group: Option<&str>) -> Result<u64, OwnerError> {
    let found = group.and_then(|text| {
        text.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            match f.as_slice() {
                [n, _, gid, ..] if *n == name => gid.parse().ok(),
                _ => None,
            }
        })
    });
    let found = found.or((name == "root").then_some(0));
    found.ok_or_else(|| OwnerError::UnknownGroup {
        name: name.to_string(),
        missing: if group.is_none() { NO_GROUP } else { "" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        Accounts {
            passwd: Some(
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n".into(),
            ),
            group: Some("root:x:0:\nstaff:x:50:app\napp:x:1001:\n".into()),
        }
    }

    #[test]
    fn names_resolve_as_buildkit_does() {
        let a = accounts();
        assert_eq!(resolve("app", &a), Ok((1000, 1001)), "primary gid");
        assert_eq!(resolve("app:staff", &a), Ok((1000, 50)));
        assert_eq!(resolve("app:7", &a), Ok((1000, 7)));
        assert_eq!(resolve("42", &a), Ok((42, 42)), "a uid alone is the gid");
        assert_eq!(resolve("42:staff", &a), Ok((42, 50)));
        assert_eq!(resolve("root:root", &a), Ok((0, 0)));
        assert_eq!(resolve("5", &Accounts::default()), Ok((5, 5)));
        assert_eq!(resolve("root:root", &Accounts::default()), Ok((0, 0)));
    }

    #[test]
    fn unknown_names_are_errors_that_name_them() {
        let a = accounts();
        let e = resolve("nobody", &a).unwrap_err().to_string();
        assert!(e.contains("unable to find user nobody"), "{e}");
        let e = resolve("app:wheel", &a).unwrap_err().to_string();
        assert!(e.contains("unable to find group wheel"), "{e}");
        let e = resolve("app", &Accounts::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no /etc/passwd"), "{e}");
        assert!(resolve(":1", &a).is_err());
        assert!(resolve("1:", &a).is_err());
        assert!(needs_names("app:1") && needs_names("1:staff") && !needs_names("1:2"));
    }

    #[test]
    fn ids_past_32_bits_are_errors_never_wrapped() {
        let a = Accounts {
            passwd: Some(
                "big:x:99999999999:0::/:/bin/sh\nbiggid:x:1:4294967295::/:/bin/sh\n".into(),
            ),
            group: Some("huge:x:5000000000:\n".into()),
        };
        assert_eq!(
            resolve_ids("4294967294:4294967294", &a),
            Ok((MAX_ID, MAX_ID))
        );
        let e = resolve_ids("99999999999", &a).unwrap_err();
        assert!(
            e.to_string().contains("uid 99999999999 is out of range"),
            "{e}"
        );
        // Digits past u64 too: an id out of range, not a name to look up.
        let e = resolve_ids("0:99999999999999999999999", &a).unwrap_err();
        assert!(
            e.to_string()
                .contains("gid 99999999999999999999999 is out of range"),
            "{e}"
        );
        assert!(!needs_names("99999999999999999999999"));
        let e = resolve_ids("big", &a).unwrap_err();
        assert_eq!(
            e.to_string(),
            "big has uid 99999999999 in the image's /etc/passwd, out of range: ids go from 0 to 4294967294"
        );
        let e = resolve_ids("biggid", &a).unwrap_err();
        assert!(
            e.to_string()
                .contains("gid 4294967295 in the image's /etc/passwd"),
            "{e}"
        );
        let e = resolve("0:huge", &a).unwrap_err();
        assert!(
            e.to_string()
                .contains("huge has gid 5000000000 in the image's /etc/group"),
            "{e}"
        );
    }
}
