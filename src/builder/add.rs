//! `ADD` of a local archive: unpacks it into a private directory and gives each of its
//! entries what the archive says about it — owner and group, permission bits, device
//! numbers, FIFOs and the `security.capability` attribute — as Docker does (BuildKit
//! unpacks ADD archives with their ownership unless `--chown` is given). mtimes still follow
//! the deterministic-layer rules of `regbuild_fs::layer`.
//!
//! Not for the plain files an ADD names (copied as COPY copies them, `regbuild_context::context`), nor
//! for URLs and Git repositories (`builder::add_remote`, which calls `unpack` for a
//! downloaded archive with `--unpack=true`). The unpacking itself, and its safety rules, are
//! `regbuild_fs::extract`'s.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use regbuild_context::context::{self, ContextError, CopyRequest};
use regbuild_fs::extract::{self, ExtractError, Extracted, Special};
use regbuild_fs::layer::{EntryKind, LayerEntry};

/// The one extended attribute Docker's layers carry: containerd's and Docker's layer writers
/// read only this one back from the unpacked tree, so any other is left out here too.
pub const KEPT_XATTR: &[u8] = b"security.capability";

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("ADD {archive}: creating a directory to unpack it in {dir:?}: {source}")]
    TempDir {
        archive: String,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Collect(#[from] ContextError),
}

/// One archive, unpacked and modelled as layer entries.
#[derive(Debug)]
pub struct Unpacked {
    /// Under `dest`, with the ancestors of `dest` the layer must create.
    pub entries: Vec<LayerEntry>,
    /// Archive entries not extracted (unsafe or unsupported), by archive path, with why.
    pub skipped: Vec<(PathBuf, &'static str)>,
    /// Extended attributes left out (all but [`KEPT_XATTR`]): name → entries that had it.
    pub dropped_xattrs: BTreeMap<String, usize>,
}

/// Unpacks the archive `archive` (a path relative to `context`) under the in-image
/// directory `dest_dir` (absolute, cleaned). `chown` replaces every owner, `chmod` every
/// mode of files and directories, as for COPY. The unpacked files stay in a directory under
/// `tmp` for the layer to read later.
pub fn unpack(
    context: &Path,
    archive: &str,
    dest_dir: &str,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
    tmp: &Path,
) -> Result<Unpacked, AddError> {
    let out = tempfile::tempdir_in(tmp).map_err(|source| AddError::TempDir {
        archive: archive.to_string(),
        dir: tmp.to_path_buf(),
        source,
    })?;
    let (_, reader) = extract::open_archive(&context.join(archive))?;
    let extracted = extract::extract_archive(archive, reader, out.path(), &Default::default())?;
    let root = out.keep();
    let mut entries = context::collect(&CopyRequest {
        context: &root,
        sources: &[".".to_string()],
        dest: dest_dir,
        chown,
        chmod,
        ignore: &regbuild_context::dockerignore::DockerIgnore::default(),
        options: &Default::default(),
    })?;
    let under = Path::new(dest_dir.trim_start_matches('/'));
    let dropped_xattrs = apply_archive_metadata(&mut entries, under, &extracted, chown, chmod);
    Ok(Unpacked {
        entries,
        skipped: extracted.stats.skipped,
        dropped_xattrs,
    })
}

/// Gives the entries collected from the unpacked tree (found under `under` in the layer)
/// what the archive's headers said, in place of what the disk copy shows: owner unless
/// `chown`, mode unless `chmod` (symlinks keep 0777), device nodes and FIFOs in place of
/// their placeholder files, and [`KEPT_XATTR`]. Returns the attributes left out.
pub fn apply_archive_metadata(
    entries: &mut [LayerEntry],
    under: &Path,
    archive: &Extracted,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
) -> BTreeMap<String, usize> {
    let mut dropped = BTreeMap::new();
    for entry in entries.iter_mut() {
        let Ok(rel) = entry.path.strip_prefix(under) else {
            continue; // a directory above the destination, made by the layer
        };
        let Some(meta) = archive.meta.get(rel) else {
            continue; // the destination itself
        };
        if chown.is_none() {
            entry.uid = meta.uid;
            entry.gid = meta.gid;
        }
        if chmod.is_none() && !matches!(entry.kind, EntryKind::Symlink { .. }) {
            entry.mode = meta.mode;
        }
        if let Some(special) = archive.specials.get(rel) {
            entry.kind = match *special {
                Special::Char { major, minor } => EntryKind::CharDevice { major, minor },
                Special::Block { major, minor } => EntryKind::BlockDevice { major, minor },
                Special::Fifo => EntryKind::Fifo,
            };
        }
        for (name, value) in archive.xattrs.get(rel).into_iter().flatten() {
            if name == KEPT_XATTR {
                entry.xattrs.insert(name.clone(), value.clone());
            } else {
                *dropped
                    .entry(String::from_utf8_lossy(name).into_owned())
                    .or_insert(0) += 1;
            }
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use regbuild_fs::extract::EntryMeta;

    fn entry(path: &str, kind: EntryKind, mode: u32) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    fn placeholder(path: &str) -> LayerEntry {
        let kind = EntryKind::File {
            source: "/unpacked/placeholder".into(),
            size: 0,
        };
        entry(path, kind, 0o600)
    }

    fn archive() -> Extracted {
        let meta = |uid, gid, mode| EntryMeta { uid, gid, mode };
        let rel = |p: &str| PathBuf::from(p);
        let mut xattrs = HashMap::new();
        xattrs.insert(
            rel("bin/ping"),
            [
                (KEPT_XATTR.to_vec(), vec![1, 0, 0, 2]),
                (b"user.note".to_vec(), b"x".to_vec()),
            ]
            .into_iter()
            .collect(),
        );
        Extracted {
            meta: [
                (rel("etc"), meta(0, 0, 0o755)),
                (rel("etc/shadow"), meta(0, 42, 0o640)),
                (rel("bin"), EntryMeta::IMPLICIT_DIR),
                (rel("bin/ping"), meta(0, 0, 0o755)),
                (rel("bin/chage"), meta(0, 42, 0o2755)),
                (rel("dev/null"), meta(0, 0, 0o666)),
                (rel("run/fifo"), meta(5, 6, 0o600)),
                (rel("sh"), meta(3, 4, 0o777)),
            ]
            .into_iter()
            .collect(),
            specials: [
                (rel("dev/null"), Special::Char { major: 1, minor: 3 }),
                (rel("run/fifo"), Special::Fifo),
            ]
            .into_iter()
            .collect(),
            xattrs,
            ..Default::default()
        }
    }

    fn collected() -> Vec<LayerEntry> {
        let file = |p: &str, mode| {
            let kind = EntryKind::File {
                source: format!("/unpacked/{p}").into(),
                size: 1,
            };
            entry(p, kind, mode)
        };
        vec![
            entry("opt", EntryKind::Dir, 0o755),
            entry("opt/etc", EntryKind::Dir, 0o755),
            file("opt/etc/shadow", 0o640),
            file("opt/bin/ping", 0o755),
            // The kernel may have dropped setgid on disk: the header says 2755.
            file("opt/bin/chage", 0o755),
            placeholder("opt/dev/null"),
            placeholder("opt/run/fifo"),
            entry(
                "opt/sh",
                EntryKind::Symlink {
                    target: "bin/ping".into(),
                },
                0o777,
            ),
        ]
    }

    fn find<'a>(entries: &'a [LayerEntry], path: &str) -> &'a LayerEntry {
        entries
            .iter()
            .find(|e| e.path == Path::new(path))
            .unwrap_or_else(|| panic!("{path}"))
    }

    #[test]
    fn archive_owners_modes_devices_and_capabilities_replace_the_disk_copy() {
        let mut entries = collected();
        let dropped =
            apply_archive_metadata(&mut entries, Path::new("opt"), &archive(), None, None);
        let shadow = find(&entries, "opt/etc/shadow");
        assert_eq!((shadow.uid, shadow.gid, shadow.mode), (0, 42, 0o640));
        assert_eq!(find(&entries, "opt/bin/chage").mode, 0o2755);
        assert_eq!(
            find(&entries, "opt/dev/null").kind,
            EntryKind::CharDevice { major: 1, minor: 3 }
        );
        assert_eq!(find(&entries, "opt/dev/null").mode, 0o666);
        let fifo = find(&entries, "opt/run/fifo");
        assert_eq!((&fifo.kind, fifo.uid, fifo.gid), (&EntryKind::Fifo, 5, 6));
        let ping = find(&entries, "opt/bin/ping");
        assert_eq!(
            ping.xattrs.iter().collect::<Vec<_>>(),
            vec![(&KEPT_XATTR.to_vec(), &vec![1, 0, 0, 2])]
        );
        assert_eq!(
            dropped,
            [("user.note".to_string(), 1)].into_iter().collect()
        );
        let sh = find(&entries, "opt/sh");
        assert_eq!((sh.uid, sh.gid, sh.mode), (3, 4, 0o777));
        // Above the destination: made by the layer, untouched.
        assert_eq!(find(&entries, "opt"), &entry("opt", EntryKind::Dir, 0o755));
    }

    #[test]
    fn chown_and_chmod_still_win() {
        let mut entries = collected();
        for e in &mut entries {
            (e.uid, e.gid) = (7, 8);
            if !matches!(e.kind, EntryKind::Symlink { .. }) {
                e.mode = 0o700;
            }
        }
        apply_archive_metadata(
            &mut entries,
            Path::new("opt"),
            &archive(),
            Some((7, 8)),
            Some(0o700),
        );
        for e in &entries {
            assert_eq!((e.uid, e.gid), (7, 8), "{e:?}");
        }
        assert_eq!(find(&entries, "opt/bin/chage").mode, 0o700);
        // Devices stay devices, capabilities stay: only owner and mode are overridden.
        assert_eq!(find(&entries, "opt/run/fifo").kind, EntryKind::Fifo);
        assert!(!find(&entries, "opt/bin/ping").xattrs.is_empty());
    }
}
