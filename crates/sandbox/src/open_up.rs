//! Rootless: giving the caller access to what the step left in its upper directory.
//!
//! The step runs as root of a user namespace whose other ids are the user's subordinate ids
//! (`/etc/subuid`), so it can leave directories and files that the user, outside the
//! namespace, may neither read nor remove: apt's `partial/` directories are `_apt`'s, mode
//! 0700. The caller must read every entry to make the layer and remove the directory after,
//! so init, still root of the namespace once the command ended, adds the permission bits the
//! user needs (read, write and search on directories, read on regular files) in the class
//! that applies to the user (owner when the entry is namespace uid 0, which is the user;
//! group when its gid is 0; other otherwise), and reports each change with the bits the
//! entry had, which the layer keeps. Nothing changes for entries the user could already use.
//!
//! The walk goes through directory descriptors opened beneath one opened before
//! `pivot_root` (the upper directory is not reachable by path from the new root), never
//! follows symlinks, and counts nothing it cannot open.

use std::io::{self, BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{chmodat, openat, statat, AtFlags, Dir, FileType, Mode, OFlags};

/// The bits the user needs on an entry of `kind`, in the owner class (shifted for the
/// others).
fn needed(kind: FileType) -> u32 {
    match kind {
        FileType::Directory => 0o7,
        FileType::RegularFile => 0o4,
        _ => 0,
    }
}

/// The shift of the class that decides the user's access to an entry owned by `uid:gid`
/// (ids as the namespace sees them; the user is 0 there).
fn class_shift(uid: u32, gid: u32) -> u32 {
    match (uid, gid) {
        (0, _) => 6,
        (_, 0) => 3,
        _ => 0,
    }
}

/// The mode an entry gets, or None when the user can already use it. Directories also get
/// the owner's rwx, which removers that open up trees as their owner expect to find.
pub(crate) fn opened_mode(mode: u32, kind: FileType, uid: u32, gid: u32) -> Option<u32> {
    let mut want = needed(kind) << class_shift(uid, gid);
    if kind == FileType::Directory {
        want |= 0o700;
    }
    (mode & want != want).then_some((mode | want) & 0o7777)
}

/// Opens up everything below `upper`; returns (relative path, the bits it had) per change.
/// Without `own`, entries of namespace uid 0 (the user's own, which it can chmod itself) are
/// left alone: in a plain root every copied entry is the user's, and widening them would
/// read as the step's change to the snapshot diff.
pub(crate) fn open_up(upper: &OwnedFd, own: bool) -> io::Result<Vec<(Vec<u8>, u32)>> {
    let mut changed = Vec::new();
    let first = rustix::io::dup(upper)?;
    let mut stack: Vec<(OwnedFd, Vec<u8>)> = vec![(first, Vec::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let mut names = Vec::new();
        for entry in Dir::read_from(&dir)? {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        for name in names {
            let st = statat(dir.as_fd(), name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)?;
            let kind = FileType::from_raw_mode(st.st_mode);
            let mode = st.st_mode & 0o7777;
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            let skip = !own && st.st_uid == 0;
            if let Some(new) = opened_mode(mode, kind, st.st_uid, st.st_gid).filter(|_| !skip) {
                chmodat(
                    dir.as_fd(),
                    name.as_slice(),
                    Mode::from_raw_mode(new),
                    AtFlags::empty(),
                )?;
                changed.push((path.clone(), mode));
            }
            if kind == FileType::Directory {
                let sub = openat(
                    dir.as_fd(),
                    name.as_slice(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                stack.push((sub, path));
            }
        }
    }
    Ok(changed)
}

/// Writes `entries` as records `<octal mode> <path>\0` (paths are bytes, NUL ends them).
pub(crate) fn write_list(mut out: &std::fs::File, entries: &[(Vec<u8>, u32)]) -> io::Result<()> {
    let mut buf = Vec::new();
    for (path, mode) in entries {
        buf.extend_from_slice(format!("{mode:o} ").as_bytes());
        buf.extend_from_slice(path);
        buf.push(0);
    }
    out.write_all(&buf)
}

/// Reads what [`write_list`] wrote; a missing file is an empty list.
pub(crate) fn read_list(file: &Path) -> io::Result<Vec<(PathBuf, u32)>> {
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for record in io::BufReader::new(f).split(0) {
        let record = record?;
        let bad = || io::Error::other("a malformed opened-up record");
        let space = record.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let mode = std::str::from_utf8(&record[..space])
            .ok()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .ok_or_else(bad)?;
        let path = std::ffi::OsStr::from_bytes(&record[space + 1..]);
        out.push((PathBuf::from(path), mode));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_user_lacks_is_added_in_the_class_that_applies() {
        let dir = FileType::Directory;
        let file = FileType::RegularFile;
        // apt's partial/: _apt's (uid 42 inside), 0700 → others get rwx.
        assert_eq!(opened_mode(0o700, dir, 42, 0), Some(0o770));
        assert_eq!(opened_mode(0o700, dir, 42, 65534), Some(0o707));
        assert_eq!(opened_mode(0o500, dir, 42, 65534), Some(0o707));
        // The user's own (uid 0 inside): only owner bits matter.
        assert_eq!(opened_mode(0o500, dir, 0, 0), Some(0o700));
        assert_eq!(opened_mode(0o755, dir, 0, 0), None);
        assert_eq!(opened_mode(0o600, file, 1000, 1000), Some(0o604));
        assert_eq!(opened_mode(0o644, file, 1000, 1000), None);
        // setuid and sticky bits stay.
        assert_eq!(opened_mode(0o4700, file, 7, 7), Some(0o4704));
        assert_eq!(opened_mode(0o1770, dir, 7, 7), Some(0o1777));
        assert_eq!(opened_mode(0o1007, dir, 7, 7), Some(0o1707));
        // Nothing to read in a symlink or a device.
        assert_eq!(opened_mode(0o000, FileType::Symlink, 7, 7), None);
        assert_eq!(opened_mode(0o000, FileType::CharacterDevice, 7, 7), None);
    }

    #[test]
    fn the_walk_reports_each_change_with_its_old_bits() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), "x").unwrap();
        std::fs::write(root.join("a/ok"), "x").unwrap();
        std::fs::set_permissions(root.join("a/b/f"), std::fs::Permissions::from_mode(0o200))
            .unwrap();
        std::fs::set_permissions(root.join("a/b"), std::fs::Permissions::from_mode(0o500)).unwrap();
        let fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        // As root the owner class opens; as another user (its uid is not 0) the other class:
        // either way both entries change and keep their old bits in the report.
        let mut changed = open_up(&fd, true).unwrap();
        changed.sort();
        let paths: Vec<&[u8]> = changed.iter().map(|(p, _)| p.as_slice()).collect();
        assert!(paths.contains(&b"a/b".as_slice()), "{changed:?}");
        assert!(paths.contains(&b"a/b/f".as_slice()), "{changed:?}");
        let old: Vec<u32> = changed
            .iter()
            .filter(|(p, _)| p.starts_with(b"a/b"))
            .map(|(_, m)| *m)
            .collect();
        assert_eq!(old, [0o500, 0o200]);
        assert_eq!(std::fs::read_to_string(root.join("a/b/f")).unwrap(), "x");
    }

    #[test]
    fn the_list_keeps_any_path_bytes() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("list");
        let entries = vec![
            (b"a/b c".to_vec(), 0o700),
            (b"new\nline".to_vec(), 0o4755),
            (vec![0xff, b'x'], 0),
        ];
        write_list(&std::fs::File::create(&file).unwrap(), &entries).unwrap();
        let back = read_list(&file).unwrap();
        let want: Vec<(PathBuf, u32)> = entries
            .iter()
            .map(|(p, m)| (PathBuf::from(std::ffi::OsStr::from_bytes(p)), *m))
            .collect();
        assert_eq!(back, want);
        assert!(read_list(&t.path().join("missing")).unwrap().is_empty());
    }
}
