//! Owners as Docker resolves them: `--chown=user[:group]` and `USER` with names looked up in
//! the image's `/etc/passwd` and `/etc/group` (BuildKit's rules: a user name gives its uid
//! and primary gid, a numeric uid alone is also the gid, a group overrides the gid). Pure:
//! the caller finds the files (`crate::builder::pathindex`).

/// Why an owner could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("unable to find user {name}: no matching entries in the image's /etc/passwd{missing}")]
    UnknownUser { name: String, missing: &'static str },
    #[error("unable to find group {name}: no matching entries in the image's /etc/group{missing}")]
    UnknownGroup { name: String, missing: &'static str },
    #[error("invalid owner {spec:?}")]
    Invalid { spec: String },
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
        .any(|part| !part.is_empty() && part.parse::<u64>().is_err())
}

/// `user[:group]` → (uid, gid).
pub fn resolve(spec: &str, accounts: &Accounts) -> Result<(u64, u64), OwnerError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(OwnerError::Invalid {
            spec: spec.to_string(),
        });
    }
    let (uid, mut gid) = match user.parse::<u64>() {
        Ok(id) => (id, id),
        Err(_) => lookup_user(user, accounts.passwd.as_deref())?,
    };
    if let Some(g) = group {
        gid = match g.parse::<u64>() {
            Ok(id) => id,
            Err(_) => lookup_group(g, accounts.group.as_deref())?,
        };
    }
    Ok((uid, gid))
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
}
