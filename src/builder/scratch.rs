//! Where a build's scratch lives, and how what a killed build left is found and removed.
//!
//! Two kinds of scratch: the build's temporary directory (`$TMPDIR/regbuild-build-*`:
//! packed layers, downloads, materialised stages) and each RUN step's scratch
//! (`<cache>/run-tmp/run-*`: upper, work and plain-root directories). Each is a
//! [`regbuild_rootfs::scratch::LiveDir`], locked by its process for its life and removed when
//! its owner is done ([`ScratchDir`]'s drop); a process killed with SIGKILL removes nothing,
//! so each build first sweeps what dead processes left ([`build_tmp`], [`sweep_steps`]), as
//! `regbuild prune` does. A running build's scratch is never touched: its lock is held.
//! Unpacks in progress in the layer store are the store's (`LowerStore`); they are swept
//! the same way, by `orchestrate` through [`sweep_paths`].

use std::io;
use std::path::{Path, PathBuf};

use regbuild_rootfs::scratch::LiveDir;

/// The prefix of a build's temporary directory in `$TMPDIR`.
pub const BUILD_TMP_PREFIX: &str = "regbuild-build-";
/// The prefix of a RUN step's scratch in `<cache>/run-tmp`.
pub const STEP_PREFIX: &str = "run-";

/// A private (0700) scratch directory, removed with everything in it when dropped — with
/// `cache_dir::remove_tree`, which also removes what a rootless step left unwritable.
#[derive(Debug)]
pub struct ScratchDir(LiveDir);

impl ScratchDir {
    pub fn create(parent: &Path, prefix: &str) -> io::Result<ScratchDir> {
        LiveDir::create(parent, prefix, 0o700).map(ScratchDir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = crate::builder::cache_dir::remove_tree(self.0.path()) {
            tracing::warn!(error = %e, "scratch directory not removed");
        }
    }
}

/// The build's temporary directory, in `$TMPDIR`, after removing those of builds that
/// were killed.
pub fn build_tmp() -> io::Result<ScratchDir> {
    let parent = std::env::temp_dir();
    sweep_paths(regbuild_rootfs::scratch::find_abandoned(
        &parent,
        BUILD_TMP_PREFIX,
    ));
    ScratchDir::create(&parent, BUILD_TMP_PREFIX)
}

/// Removes the step scratch that killed builds left in `run_tmp`.
pub fn sweep_steps(run_tmp: &Path) {
    sweep_paths(regbuild_rootfs::scratch::find_abandoned(
        run_tmp,
        STEP_PREFIX,
    ));
}

/// Removes `paths` (abandoned scratch), logging what goes and what cannot.
pub fn sweep_paths(paths: Vec<PathBuf>) {
    for path in paths {
        match crate::builder::cache_dir::remove_tree(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed what a killed build left"),
            Err(e) => tracing::warn!(error = %e, "left by a killed build, not removed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_build_s_step_scratch_is_swept_and_a_running_one_s_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let running = ScratchDir::create(d.path(), STEP_PREFIX).unwrap();
        std::fs::create_dir_all(running.path().join("upper/x")).unwrap();
        // What a killed build left: its lock died with it.
        let killed = d.path().join(format!("{STEP_PREFIX}killed"));
        std::fs::create_dir_all(killed.join("upper/x")).unwrap();
        sweep_steps(d.path());
        assert!(!killed.exists(), "a dead build's scratch is removed");
        assert!(
            running.path().join("upper/x").exists(),
            "a running build's is kept"
        );
        let path = running.path().to_path_buf();
        drop(running);
        assert!(!path.exists(), "scratch goes with its owner");
    }
}
