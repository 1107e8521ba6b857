//! The tar sanitiser: `extract_archive` (ADD semantics) and an `Overlay`
//! (layer semantics) over hostile archives. Errors are fine; a panic, or
//! anything written outside the destination directory, is a bug.
//!
//! Each run gets a fresh directory `ROOT/run/` holding the two destinations.
//! `ROOT/sentinel/` is a sibling that must stay empty, `ROOT` must hold
//! nothing but those two, and the top level of `/` must not change (the
//! fuzzer runs as whatever user runs it, often root).
//!
//! ROOT is made under `$TMPDIR` and outlives the process (libFuzzer ends with
//! `exit()`); `scripts/fuzz.sh` points `TMPDIR` at a directory it removes.
//!
//! Header checksums are repaired before extraction (see `fix_checksums`), or
//! almost every mutation would die at the checksum check.
#![no_main]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use regbuild_fs::extract::{extract_archive, Limits, Overlay};

const LIMITS: Limits = Limits {
    max_entry_size: 1 << 20,
    max_total_size: 8 << 20,
    max_entries: 10_000,
};

struct Scratch {
    /// Keeps ROOT alive.
    _root: tempfile::TempDir,
    root: PathBuf,
    sentinel: PathBuf,
    run: PathBuf,
    slash: BTreeSet<PathBuf>,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let root_dir = tempfile::Builder::new()
            .prefix("regbuild-fuzz-tar-")
            .tempdir()
            .expect("creating the scratch directory");
        let root = root_dir.path().to_path_buf();
        let sentinel = root.join("sentinel");
        fs::create_dir(&sentinel).expect("creating the sentinel directory");
        Scratch {
            _root: root_dir,
            run: root.join("run"),
            sentinel,
            root,
            slash: listing(Path::new("/")),
        }
    })
}

fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {dir:?}: {e}"))
        .map(|entry| entry.expect("reading a directory entry").path())
        .collect()
}

/// Rewrites the checksum of every header block the way a tar reader walks
/// them (header, data rounded up to 512 bytes, next header), where the stored
/// sum is wrong. A valid archive is left unchanged.
fn fix_checksums(data: &mut [u8]) {
    let mut at = 0usize;
    while at + 512 <= data.len() {
        let mut header = tar::Header::new_old();
        header.as_mut_bytes().copy_from_slice(&data[at..at + 512]);
        if header.as_bytes().iter().all(|b| *b == 0) {
            at += 512;
            continue;
        }
        let stored = header.cksum().ok();
        let (mut unsigned, mut signed) = (0i64, 0i64);
        for (i, byte) in header.as_bytes().iter().enumerate() {
            let byte = if (148..156).contains(&i) { b' ' } else { *byte };
            unsigned += i64::from(byte);
            signed += i64::from(byte as i8);
        }
        if !stored.is_some_and(|s| i64::from(s) == unsigned || i64::from(s) == signed) {
            header.set_cksum();
            data[at..at + 512].copy_from_slice(header.as_bytes());
        }
        let size = header.entry_size().unwrap_or(0);
        let data_blocks = size.div_ceil(512).min((data.len() / 512) as u64) as usize;
        at += 512 + data_blocks * 512;
    }
}

/// Every recorded path must be relative and stay below the destination.
fn assert_contained(what: &str, path: &Path) {
    assert!(
        path.components().all(|c| matches!(c, Component::Normal(_))),
        "{what} {path:?} is not a plain relative path"
    );
}

fn check_nothing_escaped(s: &Scratch, stage: &str) {
    let sentinel = listing(&s.sentinel);
    assert!(
        sentinel.is_empty(),
        "{stage}: written next to the destination: {sentinel:?}"
    );
    let expected: BTreeSet<PathBuf> = [s.sentinel.clone(), s.run.clone()].into();
    let root = listing(&s.root);
    assert!(
        root.is_subset(&expected),
        "{stage}: written next to the destination: {:?}",
        root.difference(&expected).collect::<Vec<_>>()
    );
    let run: BTreeSet<PathBuf> = listing(&s.run)
        .into_iter()
        .filter(|p| !p.ends_with("add") && !p.ends_with("overlay") && !p.ends_with("layers"))
        .collect();
    assert!(
        run.is_empty(),
        "{stage}: written next to the destination: {run:?}"
    );
    let slash = listing(Path::new("/"));
    assert!(
        slash == s.slash,
        "{stage}: the top level of / changed: {:?}",
        slash.symmetric_difference(&s.slash).collect::<Vec<_>>()
    );
}

fn fresh_dir(path: &Path) {
    fs::create_dir(path).unwrap_or_else(|e| panic!("creating {path:?}: {e}"));
}

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    let mut tar = data.to_vec();
    fix_checksums(&mut tar);

    if s.run.exists() {
        fs::remove_dir_all(&s.run).expect("removing the previous run");
    }
    fresh_dir(&s.run);

    // ADD: plain tar semantics.
    let add = s.run.join("add");
    fresh_dir(&add);
    let _ = extract_archive("fuzz", tar.as_slice(), &add, &LIMITS);
    check_nothing_escaped(s, "extract_archive");

    // One image layer, everything wanted.
    let overlay_dir = s.run.join("overlay");
    fresh_dir(&overlay_dir);
    let mut overlay = Overlay::new(&overlay_dir, vec![], LIMITS);
    if overlay.apply_layer("fuzz", tar.as_slice()).is_ok() {
        for path in overlay.metadata().keys() {
            assert_contained("metadata path", path);
        }
        for (link, target) in overlay.hard_links() {
            assert_contained("hard link", link);
            assert_contained("hard link target", target);
        }
        let _ = overlay.settled();
        let _ = overlay.finish();
    }
    check_nothing_escaped(s, "Overlay (one layer)");

    // The same archive as two layers, so its whiteouts and opaque markers
    // meet its own entries below, with only some paths wanted.
    let layers_dir = s.run.join("layers");
    fresh_dir(&layers_dir);
    let wanted = vec![PathBuf::from("/etc"), PathBuf::from("a/../usr/bin")];
    let mut overlay = Overlay::new(&layers_dir, wanted, LIMITS);
    if overlay.apply_layer("upper", tar.as_slice()).is_ok()
        && overlay.apply_layer("lower", tar.as_slice()).is_ok()
    {
        let _ = overlay.settled();
        let _ = overlay.finish();
    }
    check_nothing_escaped(s, "Overlay (two layers)");

    fs::remove_dir_all(&s.run).expect("cleaning up the run directory");
});
