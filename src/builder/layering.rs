//! `--layering=auto`: one big COPY becomes several layers, so that when one file changes only
//! the layer holding it is packed and uploaded again.
//!
//! The split is content-defined over the sorted list of in-layer paths (like rsync's or
//! restic's chunking, with paths instead of bytes): entries are taken in path order and a
//! part ends after an entry whose path hashes to a boundary value once the part holds at least
//! [`MIN_PART`] bytes, or unconditionally at [`MAX_PART`]; a part that holds [`MIN_PART`]
//! also ends where the copied tree's top-level entry changes. A boundary depends only on the paths
//! and sizes around it, so a changed, added or removed file changes its own part (and at most
//! the next one, until the cut points line up again), never the others; and the same inputs
//! always give the same parts. Files of one directory are neighbours in path order, so edits
//! to related files tend to land in one part. Each part carries the directories above its
//! entries (same metadata in every part), so any part unpacks correctly on its own; empty
//! directories go in the first part. A COPY under [`SPLIT_FROM`] bytes stays one layer, and so
//! does one with hard links (a link must share its target's layer).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use regbuild_fs::layer::{EntryKind, LayerEntry};

/// A COPY smaller than this is never split.
pub const SPLIT_FROM: u64 = 32 << 20;
/// A part is at least this big before a path boundary may end it.
pub const MIN_PART: u64 = 8 << 20;
/// A part this big ends whatever its last path.
pub const MAX_PART: u64 = 64 << 20;
/// One path in this many is a boundary.
const BOUNDARY_EVERY: u64 = 32;

/// How COPY instructions are cut into layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layering {
    /// One layer per COPY, as `docker build` does.
    #[default]
    Single,
    /// Big COPYs split into parts by path (see the module documentation).
    Auto,
}

/// A `--layering` value that names no way of layering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid layering `{0}`: expected single or auto")]
pub struct InvalidLayering(pub String);

impl Layering {
    pub fn parse(s: &str) -> Result<Layering, InvalidLayering> {
        match s {
            "single" => Ok(Layering::Single),
            "auto" => Ok(Layering::Auto),
            _ => Err(InvalidLayering(s.to_string())),
        }
    }
}

fn bytes(e: &LayerEntry) -> u64 {
    match &e.kind {
        EntryKind::File { size, .. } => *size,
        _ => 0,
    }
}

fn is_boundary(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let h = Sha256::digest(path.as_os_str().as_bytes());
    u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) % BOUNDARY_EVERY == 0
}

/// The parts of one COPY's entries (one part when it is not split).
pub fn split(entries: Vec<LayerEntry>, layering: Layering) -> Vec<Vec<LayerEntry>> {
    let total: u64 = entries.iter().map(bytes).sum();
    let has_hard_links = entries
        .iter()
        .any(|e| matches!(e.kind, EntryKind::HardLink { .. }));
    if layering == Layering::Single || total < SPLIT_FROM || has_hard_links {
        return vec![entries];
    }
    // Last entry wins for a path, as in the layer writer.
    let mut by_path: BTreeMap<PathBuf, LayerEntry> = BTreeMap::new();
    for e in entries {
        by_path.insert(normalized(&e.path), e);
    }
    let mut dirs: BTreeMap<PathBuf, LayerEntry> = BTreeMap::new();
    let mut others: Vec<(PathBuf, LayerEntry)> = Vec::new();
    for (p, e) in by_path {
        if matches!(e.kind, EntryKind::Dir) {
            dirs.insert(p, e);
        } else {
            others.push((p, e));
        }
    }

    // Where the copied tree starts: the directories every entry shares.
    let shared = others
        .iter()
        .map(|(p, _)| p.parent().unwrap_or(Path::new("")).to_path_buf())
        .reduce(|a, b| {
            a.components()
                .zip(b.components())
                .take_while(|(x, y)| x == y)
                .map(|(x, _)| x)
                .collect()
        })
        .map_or(0, |p| p.components().count());
    let top = |p: &Path| p.components().nth(shared).map(|c| c.as_os_str().to_owned());

    let mut parts: Vec<Vec<(PathBuf, LayerEntry)>> = vec![Vec::new()];
    let mut size = 0;
    let mut previous_top = None;
    for (p, e) in others {
        // A part big enough also ends where the copied tree's top-level entry changes, so
        // that (say) `assets/` and `src/` do not share a part.
        let this_top = top(&p);
        if size >= MIN_PART && previous_top.is_some() && previous_top != this_top {
            parts.push(Vec::new());
            size = 0;
        }
        previous_top = this_top;
        size += bytes(&e);
        let cut = (size >= MIN_PART && is_boundary(&p)) || size >= MAX_PART;
        if let Some(last) = parts.last_mut() {
            last.push((p, e));
        }
        if cut {
            parts.push(Vec::new());
            size = 0;
        }
    }
    if parts.len() > 1 && parts.last().is_some_and(Vec::is_empty) {
        parts.pop();
    }

    let mut used_dirs: std::collections::BTreeSet<PathBuf> = Default::default();
    let mut out: Vec<Vec<LayerEntry>> = Vec::with_capacity(parts.len());
    for part in parts {
        let mut ancestors: std::collections::BTreeSet<PathBuf> = Default::default();
        for (p, _) in &part {
            let mut a = p.parent();
            while let Some(d) = a {
                if d.as_os_str().is_empty() {
                    break;
                }
                ancestors.insert(d.to_path_buf());
                a = d.parent();
            }
        }
        let mut layer: Vec<LayerEntry> = ancestors
            .iter()
            .filter_map(|d| dirs.get(d).cloned())
            .collect();
        used_dirs.extend(ancestors);
        layer.extend(part.into_iter().map(|(_, e)| e));
        out.push(layer);
    }
    // Directories above no file or link (empty ones, or the COPY's destination itself).
    let rest: Vec<LayerEntry> = dirs
        .into_iter()
        .filter(|(p, _)| !used_dirs.contains(p))
        .map(|(_, e)| e)
        .collect();
    if let Some(first) = out.first_mut() {
        first.extend(rest);
    }
    out
}

/// The in-layer path without a leading `/`, `.` components or a trailing slash: the form in
/// which parents are compared.
fn normalized(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: EntryKind::File {
                source: PathBuf::from("/src").join(path),
                size,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    fn dir(path: &str) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    /// A tree like a source checkout: 40 directories of 30 files of 100 kB (120 MB).
    fn tree() -> Vec<LayerEntry> {
        let mut v = vec![dir("app"), dir("app/empty")];
        for d in 0..40 {
            v.push(dir(&format!("app/pkg{d:02}")));
            for f in 0..30 {
                v.push(file(&format!("app/pkg{d:02}/f{f:02}.txt"), 100_000));
            }
        }
        v
    }

    fn files_of(part: &[LayerEntry]) -> Vec<PathBuf> {
        part.iter()
            .filter(|e| !matches!(e.kind, EntryKind::Dir))
            .map(|e| e.path.clone())
            .collect()
    }

    #[test]
    fn parts_partition_the_files_and_carry_their_directories() {
        let parts = split(tree(), Layering::Auto);
        assert!(parts.len() > 3 && parts.len() < 40, "{} parts", parts.len());
        let mut all: Vec<PathBuf> = parts.iter().flat_map(|p| files_of(p)).collect();
        assert_eq!(all.len(), 1200);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 1200, "each file in exactly one part");
        for part in &parts {
            let size: u64 = part.iter().map(bytes).sum();
            assert!(size <= MAX_PART, "{size}");
            for f in files_of(part) {
                for a in f.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()) {
                    assert!(
                        part.iter().any(|e| e.path == a && e.kind == EntryKind::Dir),
                        "{} lacks {}",
                        f.display(),
                        a.display()
                    );
                }
            }
        }
        assert!(parts[0].iter().any(|e| e.path == Path::new("app/empty")));
    }

    #[test]
    fn a_changed_or_added_file_changes_only_nearby_parts() {
        let before = split(tree(), Layering::Auto);
        // A bigger file in the middle, and a new file elsewhere.
        let mut changed = tree();
        for e in &mut changed {
            if e.path == Path::new("app/pkg20/f10.txt") {
                e.kind = EntryKind::File {
                    source: "/src/x".into(),
                    size: 250_000,
                };
            }
        }
        changed.push(file("app/pkg05/new.txt", 3_000));
        let after = split(changed, Layering::Auto);
        let same = before.iter().filter(|p| after.contains(p)).count();
        assert!(
            same + 4 >= before.len(),
            "{same} of {} parts unchanged",
            before.len()
        );
        // Same inputs, same parts.
        assert_eq!(split(tree(), Layering::Auto), before);
    }

    #[test]
    fn small_copies_and_hard_links_stay_one_layer() {
        let small = vec![dir("a"), file("a/x", 1000)];
        assert_eq!(split(small.clone(), Layering::Auto), vec![small]);
        let mut linked = tree();
        linked.push(LayerEntry {
            path: "app/link".into(),
            kind: EntryKind::HardLink {
                target: "app/pkg00/f00.txt".into(),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        });
        assert_eq!(split(linked, Layering::Auto).len(), 1);
        assert_eq!(split(tree(), Layering::Single).len(), 1);
    }
}
