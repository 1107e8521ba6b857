//! Removing an entry, with `cache_dir::remove_tree` (which also takes what rootless steps
//! left to the user's subordinate ids).

use super::{Entry, PruneError};

/// Removes `entry` and its companions; a companion that is already gone is fine.
pub fn remove(entry: &Entry) -> Result<(), PruneError> {
    crate::builder::cache_dir::remove_tree(&entry.path).map_err(|e| PruneError::NotRemoved {
        path: e.path,
        reason: e.reason,
    })?;
    for c in &entry.companions {
        match std::fs::remove_file(c) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PruneError::Io {
                    path: c.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_entry_with_locked_directories_goes_with_its_companions() {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("aa");
        std::fs::create_dir_all(lower.join("a/b")).unwrap();
        std::fs::write(lower.join("a/b/f"), "f").unwrap();
        std::fs::set_permissions(lower.join("a"), std::fs::Permissions::from_mode(0o500)).unwrap();
        let stamp = dir.path().join("aa.used");
        std::fs::write(&stamp, "").unwrap();
        let entry = Entry {
            kind: super::super::Kind::Lower,
            path: lower.clone(),
            bytes: 0,
            last_used: std::time::SystemTime::now(),
            companions: vec![stamp.clone(), dir.path().join("never-made")],
        };
        remove(&entry).unwrap();
        assert!(!lower.exists() && !stamp.exists());
    }
}
