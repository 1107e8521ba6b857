//! Scratch directories that tell whether the process that made them is still alive, so
//! that what a killed process left (SIGKILL, a crash, a lost machine) is found and removed
//! by the next one, and never what a running process still uses.
//!
//! A [`LiveDir`] holds an exclusive `flock(2)` on its own directory for as long as it
//! lives; the kernel drops the lock when its process dies, however it dies. [`sweep`] takes
//! each candidate's lock without waiting: taken means its maker is gone, so the directory
//! is removed. To leave no moment in which a new directory exists unlocked, it is made
//! under a `.new-` name, locked, then renamed to its real name (the lock follows the
//! inode); a `.new-` directory older than [`INTERRUPTED_CREATE`] was left by a process
//! killed in between.
//!
//! Not for: deciding where scratch lives, nor removing trees a process cannot (files of
//! subordinate ids a rootless step left): the caller passes its own remover to [`sweep`].

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{flock, FlockOperation, Mode, OFlags};

/// How old an unfinished `.new-` directory must be to count as abandoned.
pub const INTERRUPTED_CREATE: Duration = Duration::from_secs(3600);
const NEW: &str = ".new-";

/// A directory locked by this process for its whole life. Dropping it releases the lock
/// and leaves the directory: removing it, or publishing it elsewhere by rename, is the
/// owner's.
#[derive(Debug)]
pub struct LiveDir {
    path: PathBuf,
    _lock: std::os::fd::OwnedFd,
}

impl LiveDir {
    /// Makes `<parent>/<prefix><unique>` with `mode` and locks it. In a directory other
    /// users can write (`/tmp`), one of them may take the final name first (it shows in
    /// the `.new-` name): the rename never replaces anything, and a taken name means
    /// another try with a new one.
    pub fn create(parent: &Path, prefix: &str, mode: u32) -> io::Result<LiveDir> {
        const TRIES: usize = 16;
        let mut last = None;
        for _ in 0..TRIES {
            match Self::try_create(parent, prefix, mode) {
                Ok(dir) => return Ok(dir),
                Err(e) if name_taken(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free scratch name")))
    }

    fn try_create(parent: &Path, prefix: &str, mode: u32) -> io::Result<LiveDir> {
        let staging = tempfile::Builder::new()
            .prefix(&format!("{NEW}{prefix}"))
            .tempdir_in(parent)?
            .keep();
        let locked = (|| {
            fs::set_permissions(&staging, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            let fd = rustix::fs::open(
                &staging,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            flock(&fd, FlockOperation::NonBlockingLockExclusive)?;
            let name = staging
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(NEW))
                .ok_or_else(|| io::Error::other("a scratch name without its prefix"))?;
            let path = parent.join(name);
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &staging,
                rustix::fs::CWD,
                &path,
                rustix::fs::RenameFlags::NOREPLACE,
            )?;
            Ok::<_, io::Error>(LiveDir { path, _lock: fd })
        })();
        if locked.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        locked
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether a rename failed because something (not ours) holds the name already.
fn name_taken(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let taken = [Errno::EXIST, Errno::NOTDIR, Errno::NOTEMPTY].map(|e| e.raw_os_error());
    e.raw_os_error().is_some_and(|code| taken.contains(&code))
}

/// Makes `dir` (and missing parents) with `mode` for every directory it creates.
pub fn create_dir_all_with_mode(dir: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir)
}

/// What [`sweep`] did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Removed: their process was gone.
    pub removed: Vec<PathBuf>,
    /// Abandoned but not removed, and why.
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// Whether the scratch directory `path` (named `<prefix>…`, or a `.new-` one) was
/// abandoned by its process. Directories of other users are never ours to judge.
pub fn abandoned(path: &Path) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
        return false;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with(NEW) {
        return meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > INTERRUPTED_CREATE);
    }
    let Ok(fd) = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    // Taken: no live process holds it (the fd, and with it the lock, closes at once).
    // Any error (held, or a filesystem without locks) keeps the directory.
    flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok()
}

/// The scratch directories in `parent` named `<prefix>…` (and their `.new-` forms) that
/// their processes abandoned.
pub fn find_abandoned(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let staged = format!("{NEW}{prefix}");
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(prefix) || name.starts_with(&staged)
        })
        .map(|e| e.path())
        .filter(|p| abandoned(p))
        .collect()
}

/// Removes, with `remove`, every directory [`find_abandoned`] finds.
pub fn sweep(parent: &Path, prefix: &str, remove: impl Fn(&Path) -> io::Result<()>) -> Swept {
    let mut swept = Swept::default();
    for path in find_abandoned(parent, prefix) {
        match remove(&path) {
            Ok(()) => swept.removed.push(path),
            Err(e) => swept.failed.push((path, e)),
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_live_directory_is_never_swept_and_a_dead_one_is() {
        let parent = tempfile::tempdir().unwrap();
        let live = LiveDir::create(parent.path(), "scratch-", 0o700).unwrap();
        assert!(live.path().is_dir());
        assert!(live
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("scratch-"));
        let remove = crate::tree::remove_tree;
        let swept = sweep(parent.path(), "scratch-", remove);
        assert!(swept.removed.is_empty(), "{swept:?}");
        assert!(live.path().is_dir());

        // Another process made this one and died holding its lock.
        let dead = parent.path().join("scratch-dead");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("f"), "x").unwrap();
        let status =
            crate::test_spawn::spawn(Command::new("flock").arg("-x").arg(&dead).arg("true"))
                .and_then(|mut child| child.wait())
                .unwrap();
        assert!(status.success());
        // Not ours to judge: another prefix.
        fs::create_dir(parent.path().join("other-dead")).unwrap();
        let swept = sweep(parent.path(), "scratch-", remove);
        assert_eq!(swept.removed, vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.path().is_dir());
        assert!(parent.path().join("other-dead").is_dir());

        // Released (dropped) without removal: swept by the next one.
        let path = live.path().to_path_buf();
        // No test's child may hold a copy of the lock's descriptor meanwhile.
        let _alone = crate::test_spawn::SPAWNING
            .write()
            .unwrap_or_else(|e| e.into_inner());
        drop(live);
        let swept = sweep(parent.path(), "scratch-", remove);
        assert_eq!(swept.removed, vec![path]);
    }

    #[test]
    fn a_taken_final_name_is_never_replaced_and_another_is_chosen() {
        let parent = tempfile::tempdir().unwrap();
        // Another user saw `.new-scratch-taken` and put a symlink to a victim under the final
        // name first: the rename refuses to replace it (and `create` tries another name).
        let victim = tempfile::tempdir().unwrap();
        let taken = parent.path().join("scratch-taken");
        std::os::unix::fs::symlink(victim.path(), &taken).unwrap();
        let staging = parent.path().join(".new-scratch-taken");
        fs::create_dir(&staging).unwrap();
        let err = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staging,
            rustix::fs::CWD,
            &taken,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(io::Error::from)
        .unwrap_err();
        assert!(name_taken(&err), "{err}");
        assert!(fs::symlink_metadata(&taken)
            .unwrap()
            .file_type()
            .is_symlink());
        let live = LiveDir::create(parent.path(), "scratch-", 0o700).unwrap();
        assert_ne!(live.path(), taken.as_path());
    }

    #[test]
    fn a_lock_held_by_another_live_process_keeps_its_directory() {
        let parent = tempfile::tempdir().unwrap();
        let held = parent.path().join("scratch-held");
        fs::create_dir(&held).unwrap();
        // flock(1) holds the lock until its command ends: it says so, then waits for stdin.
        let mut child = crate::test_spawn::spawn(
            Command::new("flock")
                .arg("-x")
                .arg(&held)
                .args(["sh", "-c", "echo locked; cat"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped()),
        )
        .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "locked\n");
        let swept = sweep(parent.path(), "scratch-", crate::tree::remove_tree);
        assert!(swept.removed.is_empty());
        assert!(held.is_dir());
        drop(child.stdin.take());
        child.wait().unwrap();
        let swept = sweep(parent.path(), "scratch-", crate::tree::remove_tree);
        assert_eq!(swept.removed, vec![held]);
    }
}
