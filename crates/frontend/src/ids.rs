//! User and group ids as a Dockerfile spells them: `USER 1000[:1000]`,
//! `COPY --chown=1000:1000`, `RUN --mount=…,uid=1000,gid=1000`. A part made only of ASCII
//! digits is an id (BuildKit's rule), anything else a name that the builder looks up in the
//! image's account files.
//!
//! Ids are 32-bit on Linux, and the largest, 4294967295, is `(uid_t)-1`, which `chown(2)`
//! and `setresuid(2)` take as "leave it unchanged": valid ids go from 0 to [`MAX_ID`]. A
//! larger number is refused (the caller names `file:line`) instead of being wrapped:
//! `USER 99999999999` would otherwise run as uid 1215752191.

/// The largest user or group id: 2^32 − 2.
pub const MAX_ID: u32 = u32::MAX - 1;

/// A numeric id over [`MAX_ID`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {text} is out of range: ids go from 0 to {MAX_ID}")]
pub struct IdOutOfRange {
    /// `uid` or `gid`.
    pub what: &'static str,
    pub text: String,
}

/// Whether `text` is an id rather than a name: ASCII digits only, at least one.
pub fn is_numeric(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// The id `text` spells (`what` is `uid` or `gid`, for the error); `None` for a name.
pub fn numeric_id(text: &str, what: &'static str) -> Result<Option<u32>, IdOutOfRange> {
    if !is_numeric(text) {
        return Ok(None);
    }
    // Only digits: a parse failure is an overflow.
    match text.parse::<u32>() {
        Ok(id) if id <= MAX_ID => Ok(Some(id)),
        _ => Err(IdOutOfRange {
            what,
            text: text.to_string(),
        }),
    }
}

/// Checks the numeric parts of an owner `user[:group]` (`USER`, `--chown`); names and
/// empty parts are left to whoever resolves them.
pub fn check_owner(spec: &str) -> Result<(), IdOutOfRange> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    numeric_id(user, "uid")?;
    if let Some(group) = group {
        numeric_id(group, "gid")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_go_up_to_two_to_the_32_minus_2() {
        assert_eq!(numeric_id("0", "uid"), Ok(Some(0)));
        assert_eq!(numeric_id("4294967294", "uid"), Ok(Some(MAX_ID)));
        assert_eq!(numeric_id("007", "gid"), Ok(Some(7)));
        for over in [
            "4294967295",
            "4294967296",
            "99999999999",
            "1".repeat(40).as_str(),
        ] {
            let e = numeric_id(over, "uid").unwrap_err();
            assert_eq!(e.text, over);
            assert!(e.to_string().contains("from 0 to 4294967294"), "{e}");
        }
    }

    #[test]
    fn names_are_not_ids() {
        for name in ["app", "-1", "+1", "1a", "", " 1", "１"] {
            assert_eq!(numeric_id(name, "uid"), Ok(None), "{name:?}");
        }
    }

    #[test]
    fn an_owner_is_checked_part_by_part() {
        assert_eq!(check_owner("1000:1000"), Ok(()));
        assert_eq!(check_owner("app:staff"), Ok(()));
        assert_eq!(check_owner("app:4294967294"), Ok(()));
        let e = check_owner("99999999999").unwrap_err();
        assert_eq!((e.what, e.text.as_str()), ("uid", "99999999999"));
        let e = check_owner("app:4294967295").unwrap_err();
        assert_eq!((e.what, e.text.as_str()), ("gid", "4294967295"));
    }
}
