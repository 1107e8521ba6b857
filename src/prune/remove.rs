//! Removing an entry. Unpacked layers may hold directories with modes like 0500 (as their
//! layer says), and after a rootless RUN step files owned by the user's subordinate ids,
//! which the user cannot unlink outside a user namespace; those are removed through
//! util-linux's `unshare --map-root-user --map-auto` (the same `/etc/subuid` ranges the
//! step ran with).

use std::path::Path;
use std::process::{Command, Stdio};

use super::{Entry, PruneError};

/// Removes `entry` and its companions; a companion that is already gone is fine.
pub fn remove(entry: &Entry) -> Result<(), PruneError> {
    remove_path(&entry.path)?;
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

fn remove_path(path: &Path) -> Result<(), PruneError> {
    let err = match regbuild_fs::lower::remove_tree(path) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    // EACCES and EPERM both.
    let denied = err.kind() == std::io::ErrorKind::PermissionDenied;
    if !denied || rustix::process::geteuid().is_root() {
        return Err(PruneError::Io {
            path: path.to_path_buf(),
            source: err,
        });
    }
    // Files of the user's subordinate ids: removed as root of a user namespace that maps them.
    let status = Command::new("unshare")
        .args([
            "--map-root-user",
            "--map-auto",
            "rm",
            "-rf",
            "--one-file-system",
            "--",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match status {
        Ok(out) if out.status.success() && std::fs::symlink_metadata(path).is_err() => Ok(()),
        Ok(out) => Err(PruneError::NotRemoved {
            path: path.to_path_buf(),
            reason: format!(
                "{err}; in a user namespace too ({}): remove it as root",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
        Err(e) => Err(PruneError::NotRemoved {
            path: path.to_path_buf(),
            reason: format!(
                "{err}; and `unshare` (util-linux) could not run: {e}; remove it as root"
            ),
        }),
    }
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
