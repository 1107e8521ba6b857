//! Removing and emptying trees whatever their modes: a layer unpacked as a lower directory
//! may hold directories such as 0500 or 0000, exactly as the layer says, which a plain
//! `remove_dir_all` cannot remove for anyone but root.
//!
//! Not here: trees of subordinate ids a rootless step left (the caller removes those as
//! root of a user namespace, `regbuild::builder::cache_dir::remove_tree`).

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Removes `path` and everything below it, making directories owner-accessible first, so
/// trees with modes such as 0500 or 0000 go too without root. Symlinks are removed, never
/// followed. A missing `path` is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => {
            open_up(path)?;
            fs::remove_dir_all(path)
        }
        Ok(_) => fs::remove_file(path),
    }
}

/// Removes everything inside the directory `dir`, keeping `dir`.
pub fn empty_dir(dir: &Path) -> io::Result<()> {
    open_up(dir)?;
    for entry in fs::read_dir(dir)? {
        remove_tree(&entry?.path())?;
    }
    Ok(())
}

/// Gives the owner rwx on `dir` and every directory below it.
fn open_up(dir: &Path) -> io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mode = fs::symlink_metadata(&dir)?.permissions().mode();
        if mode & 0o700 != 0o700 {
            fs::set_permissions(&dir, Permissions::from_mode((mode | 0o700) & 0o7777))?;
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_takes_unreadable_directories_and_leaves_symlink_targets() {
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("tree");
        let outside = root.path().join("outside");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "keep").unwrap();
        fs::write(tree.join("a/b/f"), "f").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/out")).unwrap();
        fs::set_permissions(tree.join("a/b"), Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(tree.join("a"), Permissions::from_mode(0o500)).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "keep");
        remove_tree(&tree).unwrap();
    }
}
