//! The overlay model of image layers, and nothing else: which entries of a lower layer an
//! upper one hides (by providing the path, by a whiteout `.wh.<name>`, by an opaque marker
//! `.wh..wh..opq`, or by putting a non-directory above it), which paths are wanted, and when
//! the wanted ones are settled so lower layers need not be read at all.
//!
//! Whatever survives is written by `super::sink`; reading the layers' tar streams is
//! `crate::tar_read`'s job.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::sink::{Outcome, Sink, Specials};
use super::{clean, for_each_member, EntryMeta, ExtractError, ExtractStats, Kind, Limits, Member};
use crate::tar_read::Budget;

/// `D/.wh.NAME` deletes `D/NAME` from the layers below.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Names with this prefix are AUFS bookkeeping, except the opaque marker.
pub const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// `D/.wh..wh..opq` hides what the layers below hold in `D`.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Applies image layers top-down (the top layer first) into `dest`, the way
/// an overlay stack resolves them. Only entries under the wanted paths are
/// extracted.
///
/// An entry of a lower layer is skipped when an upper layer already provided
/// its path or made an ancestor something other than a directory. It is also
/// skipped when an upper whiteout (`.wh.<name>`) or opaque marker
/// (`.wh..wh..opq`) hides it. Whiteouts only affect lower layers and are never
/// written. Within one layer, a later entry replaces an earlier one, as in
/// tar.
///
/// The header of everything written is recorded: see [`Overlay::metadata`].
///
/// After an error, discard both the `Overlay` and `dest`.
pub struct Overlay {
    sink: Sink,
    limits: Limits,
    budget: Budget,
    /// Cleaned wanted paths. Empty means everything.
    wanted: Vec<PathBuf>,
    /// What the layers applied so far put at each path, as lower layers see it.
    upper: HashMap<PathBuf, Mark>,
}

impl Overlay {
    /// `wanted` holds paths relative to the image root. A leading `/` is
    /// allowed and `..` stops at the root. Empty, or containing the root,
    /// means everything.
    pub fn new(dest: &Path, wanted: Vec<PathBuf>, limits: Limits) -> Overlay {
        let wanted: Vec<PathBuf> = wanted
            .iter()
            .filter_map(|path| clean(path.as_os_str().as_bytes(), true).ok())
            .collect();
        let wanted = if wanted.iter().any(|w| w.as_os_str().is_empty()) {
            Vec::new()
        } else {
            wanted
        };
        Overlay {
            sink: Sink::new(dest, Specials::Skip, crate::disk::DiskLimit::Free),
            limits,
            budget: Budget::default(),
            wanted,
            upper: HashMap::new(),
        }
    }

    /// Applies one layer, given as an uncompressed tar stream, below the
    /// layers applied so far. `name` (e.g. the layer digest) is used in errors.
    pub fn apply_layer(&mut self, name: &str, tar: impl Read) -> Result<(), ExtractError> {
        let mut pass = LayerPass {
            sink: &mut self.sink,
            wanted: &mut self.wanted,
            upper: &self.upper,
            current: HashMap::new(),
        };
        for_each_member(name, tar, &self.limits, &mut self.budget, |member, data| {
            pass.visit(name, member, data)
        })?;
        let current = pass.current;
        for (path, mark) in current {
            merge_mark(&mut self.upper, path, mark);
        }
        self.sink.unavailable.clear();
        // Links waiting for a target this layer provided. Lower layers cannot
        // change the target or the link's path any more, so linking now gives
        // what `finish` would, and `metadata` is complete after the last layer.
        self.sink.resolve_pending(false)
    }

    /// Metadata of every path written into `dest`, by path relative to
    /// `dest`: what the header of the entry that won (top layer first; the
    /// last one within a layer) said. For a directory an upper layer only
    /// implied, that is the lower layer's entry, as for its mode on disk.
    ///
    /// Covers files, directories, symlinks and hard links. Parent directories
    /// no layer lists are [`EntryMeta::IMPLICIT_DIR`]. Not covered: `dest`
    /// itself (a `./` entry changes nothing), whiteouts, skipped entries and
    /// hard links still waiting for their target. Those get linked or
    /// skipped by the time a layer is applied, so after the last
    /// [`apply_layer`](Overlay::apply_layer) this is complete: [`finish`](Overlay::finish)
    /// writes nothing more.
    ///
    /// A hard link's metadata is its own header's; on disk it shares the
    /// target's inode. PAX `uid`/`gid` records are honoured (see [`EntryMeta`]).
    pub fn metadata(&self) -> &HashMap<PathBuf, EntryMeta> {
        &self.sink.meta
    }

    /// The PAX `SCHILY.xattr.*` records of the entries written into `dest` that had any,
    /// by path relative to `dest` (the entry that won, as for [`metadata`](Overlay::metadata)):
    /// what the layers say, whether or not the disk could take them (`security.capability`
    /// needs privileges a rootless build lacks).
    pub fn xattrs(&self) -> &HashMap<PathBuf, crate::layer::Xattrs> {
        &self.sink.xattrs
    }

    /// The hard links written into `dest`: link path → target path, both
    /// relative to `dest`, each with an entry in [`metadata`](Overlay::metadata).
    ///
    /// A link is left out when its target was replaced after it was made
    /// (a later entry of the same layer at the target's path): it then holds
    /// the old content on its own and is better treated as a plain file.
    /// A target may itself be a hard link (chains end at a file or symlink),
    /// and where the filesystem refused links the "link" is a copy in `dest`.
    pub fn hard_links(&self) -> &HashMap<PathBuf, PathBuf> {
        &self.sink.links
    }

    /// Targets of wanted hard links that were not extracted because they were not wanted
    /// themselves (a link `out/b` to `out/a`, with only `out/b` wanted): extracting again
    /// with these wanted too makes the links.
    pub fn unreached_link_targets(&self) -> &[PathBuf] {
        &self.sink.unreached_targets
    }

    /// True when every wanted path is settled, so lower layers need not be
    /// fetched at all. A path is settled when it, or an ancestor, was found
    /// as a non-directory, deleted by a whiteout, or found as a directory
    /// marked opaque. Never true when everything is wanted.
    pub fn settled(&self) -> bool {
        !self.wanted.is_empty()
            && self.wanted.iter().all(|wanted| {
                wanted
                    .ancestors()
                    .any(|path| self.upper.get(path).is_some_and(|m| m.hides_lower()))
            })
    }

    /// Resolves hard links whose target had not been extracted when they were
    /// met, and returns what was written.
    pub fn finish(mut self) -> Result<ExtractStats, ExtractError> {
        self.sink.resolve_pending(true)?;
        Ok(self.sink.stats)
    }
}

/// What a layer put at a path, as seen from the layers below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// A directory. Lower content merges into it unless `opaque`. `explicit`
    /// when the layer had an entry for the directory itself, not only for
    /// something inside it. A lower entry for an implicit directory still
    /// sets its mode.
    Dir { opaque: bool, explicit: bool },
    /// A file, symlink, hard link or special file.
    NonDir,
    /// Deleted by a whiteout.
    Whiteout,
}

impl Mark {
    /// Whether lower layers' entries below this path are hidden.
    fn hides_lower(self) -> bool {
        !matches!(self, Mark::Dir { opaque: false, .. })
    }

    /// The mark after `later` is recorded at a path that already has `self`:
    /// later in the same layer, or from the layer below.
    fn then(self, later: Mark) -> Mark {
        match (self, later) {
            // A deleted-then-recreated directory hides what lies below it.
            (Mark::Whiteout, Mark::Dir { explicit, .. })
            | (Mark::Dir { explicit, .. }, Mark::Whiteout) => Mark::Dir {
                opaque: true,
                explicit,
            },
            (
                Mark::Dir {
                    opaque: o1,
                    explicit: e1,
                },
                Mark::Dir {
                    opaque: o2,
                    explicit: e2,
                },
            ) => Mark::Dir {
                opaque: o1 || o2,
                explicit: e1 || e2,
            },
            // An implicit parent does not turn a file back into a directory.
            (
                Mark::NonDir,
                Mark::Dir {
                    explicit: false, ..
                },
            ) => Mark::NonDir,
            (_, later) => later,
        }
    }
}

fn merge_mark(marks: &mut HashMap<PathBuf, Mark>, path: PathBuf, mark: Mark) {
    marks
        .entry(path)
        .and_modify(|old| *old = old.then(mark))
        .or_insert(mark);
}

/// State while one layer is applied.
struct LayerPass<'a> {
    sink: &'a mut Sink,
    wanted: &'a mut Vec<PathBuf>,
    upper: &'a HashMap<PathBuf, Mark>,
    /// Marks of this layer. They hide content of lower layers only, so they
    /// join `upper` once the layer is done.
    current: HashMap<PathBuf, Mark>,
}

impl LayerPass<'_> {
    fn visit(
        &mut self,
        archive: &str,
        member: &Member,
        data: &mut dyn Read,
    ) -> Result<(), ExtractError> {
        if member.path.as_os_str().is_empty() {
            return self.sink.write(archive, member, data).map(drop);
        }
        if let Some(whiteout) = whiteout_of(&member.path) {
            match whiteout {
                Whiteout::Remove(target) => self.whiteout(target, Mark::Whiteout),
                Whiteout::Opaque(dir) => self.whiteout(
                    dir,
                    Mark::Dir {
                        opaque: true,
                        explicit: false,
                    },
                ),
                Whiteout::Meta => {}
                Whiteout::Malformed => self.sink.note(&member.path, "malformed whiteout name"),
            }
            return Ok(());
        }
        let is_dir = member.kind == Kind::Dir;
        if !self.wants(&member.path) || self.hidden(&member.path, is_dir) {
            if !is_dir {
                // A hard link later in this layer cannot get this content.
                self.sink.unavailable.insert(member.path.clone());
            }
            return Ok(());
        }
        self.record(&member.path, is_dir);
        let outcome = self.sink.write(archive, member, data)?;
        // The target may come from a lower layer: make sure it is extracted.
        if outcome == Outcome::Pending && !self.wanted.is_empty() {
            if let Ok(target) = clean(&member.link, false) {
                self.wanted.push(target);
            }
        }
        Ok(())
    }

    fn wants(&self, path: &Path) -> bool {
        self.wanted.is_empty()
            || self
                .wanted
                .iter()
                .any(|wanted| path.starts_with(wanted) || wanted.starts_with(path))
    }

    fn ancestor_hides(&self, path: &Path) -> bool {
        path.ancestors()
            .skip(1)
            .any(|ancestor| self.upper.get(ancestor).is_some_and(|m| m.hides_lower()))
    }

    /// Whether an upper layer hides this layer's entry at `path`.
    fn hidden(&self, path: &Path, is_dir: bool) -> bool {
        self.ancestor_hides(path)
            || match self.upper.get(path) {
                None => false,
                // The upper layer only implied the directory: take our mode.
                Some(Mark::Dir {
                    explicit: false, ..
                }) => !is_dir,
                Some(_) => true,
            }
    }

    /// Records an entry of this layer, and the directories it implies.
    fn record(&mut self, path: &Path, is_dir: bool) {
        let implicit = Mark::Dir {
            opaque: false,
            explicit: false,
        };
        for ancestor in path.ancestors().skip(1) {
            if ancestor.as_os_str().is_empty() {
                break;
            }
            merge_mark(&mut self.current, ancestor.to_path_buf(), implicit);
        }
        let mark = if is_dir {
            Mark::Dir {
                opaque: false,
                explicit: true,
            }
        } else {
            Mark::NonDir
        };
        merge_mark(&mut self.current, path.to_path_buf(), mark);
    }

    fn whiteout(&mut self, target: PathBuf, mark: Mark) {
        let already_gone = matches!(self.upper.get(&target), Some(Mark::NonDir | Mark::Whiteout));
        if self.wants(&target) && !already_gone && !self.ancestor_hides(&target) {
            merge_mark(&mut self.current, target, mark);
        }
    }
}

enum Whiteout {
    /// `.wh.<name>`: `<name>` is deleted from lower layers.
    Remove(PathBuf),
    /// `.wh..wh..opq`: lower content of this directory is hidden.
    Opaque(PathBuf),
    /// Other `.wh..wh.` names: AUFS bookkeeping, ignored as Docker does.
    Meta,
    Malformed,
}

fn whiteout_of(path: &Path) -> Option<Whiteout> {
    let base = path.file_name()?.as_bytes();
    let name = base.strip_prefix(WHITEOUT_PREFIX)?;
    let parent = path.parent().unwrap_or(Path::new(""));
    Some(if base == OPAQUE_MARKER {
        Whiteout::Opaque(parent.to_path_buf())
    } else if base.starts_with(WHITEOUT_META_PREFIX) {
        Whiteout::Meta
    } else if name.is_empty() || name == b"." || name == b".." {
        Whiteout::Malformed
    } else {
        Whiteout::Remove(parent.join(OsStr::from_bytes(name)))
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::EntryMeta;
    use super::*;
    use crate::tar_read::BLOCK;
    use std::fs;
    use std::io::Cursor;
    use tar::{EntryType, Header};

    #[test]
    fn an_overlay_skips_devices_and_fifos() {
        let scene = Scene::new();
        let layer = hostile(&[
            device_entry(b"dev/null", EntryType::Char, 1, 3, 0o666),
            device_entry(b"dev/sda", EntryType::Block, 8, 0, 0o660),
            raw_entry(b"run/fifo", EntryType::Fifo, b"", b""),
            raw_entry(b"ok", EntryType::Regular, b"", b"ok"),
        ]);
        let mut overlay = Overlay::new(&scene.dest(), Vec::new(), Limits::default());
        overlay.apply_layer("layer", layer.as_slice()).unwrap();
        let stats = overlay.finish().unwrap();
        assert_eq!(
            skipped_reason(&stats, "dev/null"),
            "character device: needs privileges"
        );
        assert_eq!(
            skipped_reason(&stats, "dev/sda"),
            "block device: needs privileges"
        );
        assert_eq!(skipped_reason(&stats, "run/fifo"), "FIFO: not extracted");
        assert!(!scene.exists("dev/null") && !scene.exists("run/fifo"));
        assert_eq!(scene.read("ok"), "ok");
    }

    fn run_overlay(scene: &Scene, wanted: &[&str], layers: &[Vec<u8>]) -> (Overlay, Vec<bool>) {
        let wanted = wanted.iter().map(PathBuf::from).collect();
        let mut overlay = Overlay::new(&scene.dest(), wanted, Limits::default());
        let mut settled = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            overlay
                .apply_layer(&format!("layer{i}"), Cursor::new(layer))
                .unwrap();
            settled.push(overlay.settled());
        }
        (overlay, settled)
    }

    #[test]
    fn overlay_whiteout_in_upper_layer_hides_lower_file() {
        let scene = Scene::new();
        let upper = Tar::new()
            .dir("etc", 0o755)
            .file("etc/.wh.old", b"", 0o644)
            .file("etc/new", b"new", 0o644)
            .file(".wh.gone", b"", 0o644)
            .bytes();
        let lower = Tar::new()
            .dir("etc", 0o700)
            .file("etc/old", b"old", 0o644)
            .file("etc/keep", b"keep", 0o644)
            .dir("gone", 0o755)
            .file("gone/deep", b"deep", 0o644)
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[upper, lower]);
        let stats = overlay.finish().unwrap();
        assert!(!scene.exists("etc/old"));
        assert!(!scene.exists("gone"));
        assert!(!scene.exists("etc/.wh.old") && !scene.exists(".wh.gone"));
        assert_eq!(scene.read("etc/new"), "new");
        assert_eq!(scene.read("etc/keep"), "keep");
        assert_eq!(scene.mode("etc"), 0o755, "upper directory's mode wins");
        assert!(stats.skipped.is_empty(), "{stats:?}");
    }

    #[test]
    fn overlay_opaque_directory_hides_lower_content() {
        let scene = Scene::new();
        let upper = Tar::new()
            .dir("d", 0o755)
            .file("d/.wh..wh..opq", b"", 0o644)
            .file("d/a", b"upper a", 0o644)
            .file("d/.wh..wh.plnk", b"", 0o644)
            .bytes();
        let lower = Tar::new()
            .dir("d", 0o755)
            .file("d/a", b"lower a", 0o644)
            .file("d/b", b"lower b", 0o644)
            .file("e", b"e", 0o644)
            .bytes();
        let (_, settled) = run_overlay(&scene, &["d/b"], &[upper.clone(), lower.clone()]);
        assert_eq!(settled, [true, true], "opaque dir settles what is below it");

        let scene = Scene::new();
        run_overlay(&scene, &[], &[upper, lower]);
        assert_eq!(scene.read("d/a"), "upper a");
        assert!(!scene.exists("d/b"));
        assert!(!scene.exists("d/.wh..wh.plnk"));
        assert_eq!(scene.read("e"), "e");
    }

    #[test]
    fn overlay_upper_entries_shadow_lower_ones() {
        let scene = Scene::new();
        let upper = Tar::new()
            .file("f", b"new", 0o600)
            .symlink("lib", "usr/lib")
            .file("implied/x", b"x", 0o644)
            .bytes();
        let lower = Tar::new()
            .file("f", b"old", 0o644)
            .dir("lib", 0o755)
            .file("lib/libc.so", b"elf", 0o755)
            .dir("implied", 0o711)
            .symlink("implied/x", "elsewhere")
            .file("implied/y", b"y", 0o644)
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[upper, lower]);
        let stats = overlay.finish().unwrap();
        assert_eq!(scene.read("f"), "new");
        assert_eq!(scene.mode("f"), 0o600);
        assert_eq!(
            fs::read_link(scene.dest().join("lib")).unwrap(),
            Path::new("usr/lib")
        );
        assert_eq!(scene.read("implied/x"), "x");
        assert_eq!(scene.read("implied/y"), "y");
        assert_eq!(
            scene.mode("implied"),
            0o711,
            "lower layer sets an implied dir's mode"
        );
        assert!(stats.skipped.is_empty(), "shadowing is silent: {stats:?}");
        scene.assert_outside_untouched();
    }

    #[test]
    fn overlay_settles_when_wanted_paths_are_found() {
        let upper = Tar::new()
            .dir("usr", 0o755)
            .dir("usr/bin", 0o755)
            .file("usr/bin/tool", b"tool", 0o755)
            .file("usr/bin/.wh.removed", b"", 0o644)
            .bytes();
        let lower = Tar::new().file("usr/bin/other", b"", 0o755).bytes();

        let scene = Scene::new();
        let (_, settled) = run_overlay(&scene, &["/usr/bin/tool"], std::slice::from_ref(&upper));
        assert_eq!(settled, [true]);
        assert_eq!(scene.read("usr/bin/tool"), "tool");

        let scene = Scene::new();
        let (_, settled) = run_overlay(
            &scene,
            &["usr/bin/tool", "usr/bin/removed/x"],
            std::slice::from_ref(&upper),
        );
        assert_eq!(settled, [true], "a whiteout settles too");

        let scene = Scene::new();
        let (_, settled) = run_overlay(&scene, &["usr/bin"], &[upper.clone(), lower.clone()]);
        assert_eq!(
            settled,
            [false, false],
            "a plain directory merges with lower ones"
        );
        assert!(scene.exists("usr/bin/other"));

        let scene = Scene::new();
        let (_, settled) = run_overlay(&scene, &[], &[upper]);
        assert_eq!(settled, [false], "everything wanted: never settled");
    }

    #[test]
    fn overlay_extracts_only_wanted_paths() {
        let scene = Scene::new();
        let layer = Tar::new()
            .dir("etc", 0o750)
            .dir("etc/app", 0o755)
            .file("etc/app/conf", b"conf", 0o644)
            .file("etc/other", b"other", 0o644)
            .file("etc/app.bak", b"bak", 0o644)
            .file("var/log", b"log", 0o644)
            .bytes();
        let (overlay, settled) = run_overlay(&scene, &["etc/app"], &[layer]);
        assert_eq!(settled, [false]);
        let stats = overlay.finish().unwrap();
        assert_eq!(scene.read("etc/app/conf"), "conf");
        assert_eq!(
            scene.mode("etc"),
            0o750,
            "wanted path's parents keep their modes"
        );
        assert!(!scene.exists("etc/other") && !scene.exists("etc/app.bak") && !scene.exists("var"));
        assert_eq!(stats.entries, 3);
    }

    #[test]
    fn overlay_hard_links_reach_into_lower_layers_but_not_shadowed_content() {
        // The target comes from a lower layer: the link waits for it.
        let scene = Scene::new();
        let upper = Tar::new().hardlink("bin/b", "bin/a").bytes();
        let lower = Tar::new()
            .file("bin/a", b"lower a", 0o755)
            .file("bin/unrelated", b"", 0o755)
            .bytes();
        let (overlay, settled) = run_overlay(&scene, &["bin/b"], &[upper, lower]);
        assert_eq!(settled, [false, true], "waits for the link target");
        overlay.finish().unwrap();
        assert_eq!(scene.read("bin/b"), "lower a");
        assert!(!scene.exists("bin/unrelated"));

        // The target was replaced upstairs: linking would give the wrong content.
        let scene = Scene::new();
        let upper = Tar::new().file("a", b"upper a", 0o644).bytes();
        let lower = Tar::new()
            .file("a", b"lower a", 0o644)
            .hardlink("b", "a")
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[upper, lower]);
        let stats = overlay.finish().unwrap();
        assert!(!scene.exists("b"));
        assert!(skipped_reason(&stats, "b").starts_with("hard link target was not extracted"));
    }

    #[test]
    fn overlay_records_the_winning_headers_metadata() {
        let scene = Scene::new();
        let upper = Tar::new()
            .owned(EntryType::Regular, "f", b"upper", 0o640, (1000, 1000))
            .file("d/new", b"new", 0o644)
            .file("plain/x", b"x", 0o644)
            .bytes();
        let lower = Tar::new()
            .dir("./", 0o700)
            .owned(EntryType::Regular, "f", b"lower", 0o4755, (0, 0))
            .owned(EntryType::Directory, "d", b"", 0o750, (5, 6))
            .owned(EntryType::Directory, "ro", b"", 0o555, (7, 8))
            .symlink("s", "/etc/passwd")
            .file("d/old", b"old", 0o600)
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[upper, lower]);
        let got = overlay.metadata().clone();
        assert_eq!(
            got[Path::new("f")],
            meta(1000, 1000, 0o640),
            "upper file wins"
        );
        assert_eq!(scene.read("f"), "upper");
        assert_eq!(
            got[Path::new("d")],
            meta(5, 6, 0o750),
            "lower layer's header for the dir the upper layer implied"
        );
        assert_eq!(got[Path::new("ro")], meta(7, 8, 0o555));
        assert_eq!(scene.mode("ro"), 0o755, "on disk: owner bits added");
        assert_eq!(got[Path::new("d/new")], meta(0, 0, 0o644));
        assert_eq!(got[Path::new("d/old")], meta(0, 0, 0o600));
        assert_eq!(got[Path::new("s")], meta(0, 0, 0o777));
        assert_eq!(
            got[Path::new("plain")],
            EntryMeta::IMPLICIT_DIR,
            "no layer lists it"
        );
        assert!(
            !got.contains_key(Path::new("")),
            "dest itself is not written"
        );
        assert_eq!(got.len(), 8, "{got:?}");
        assert!(overlay.hard_links().is_empty());
        let stats = overlay.finish().unwrap();
        assert_eq!(stats.entries, 7, "implicit dirs are not entries");
    }

    #[test]
    fn overlay_records_hard_links_once_their_target_is_there() {
        let scene = Scene::new();
        let upper = Tar::new().hardlink("bin/b", "bin/a").bytes();
        let lower = Tar::new()
            .owned(EntryType::Regular, "bin/a", b"a", 0o755, (2, 3))
            .hardlink("bin/c", "/bin/a")
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[upper, lower]);
        // Complete after the last layer, before `finish`.
        let links = overlay.hard_links();
        assert_eq!(links.len(), 2, "{links:?}");
        assert_eq!(links[Path::new("bin/b")], Path::new("bin/a"));
        assert_eq!(links[Path::new("bin/c")], Path::new("bin/a"));
        assert_eq!(overlay.metadata()[Path::new("bin/b")], meta(0, 0, 0o777));
        assert_eq!(overlay.metadata()[Path::new("bin/a")], meta(2, 3, 0o755));
        assert_eq!(scene.read("bin/b"), "a");
        let before = overlay.metadata().clone();
        let stats = overlay.finish().unwrap();
        assert_eq!(stats.entries, 3);
        assert_eq!(before.len(), 4, "bin, bin/a, bin/b, bin/c: {before:?}");

        // A link whose target is replaced afterwards keeps the old content:
        // no longer a link to that path. A link replaced by a file neither.
        let scene = Scene::new();
        let layer = Tar::new()
            .file("a", b"old", 0o644)
            .hardlink("b", "a")
            .hardlink("c", "b")
            .hardlink("d", "a")
            .file("a", b"new", 0o600)
            .file("d", b"own", 0o644)
            .bytes();
        let (overlay, _) = run_overlay(&scene, &[], &[layer]);
        assert_eq!(scene.read("b"), "old");
        let links = overlay.hard_links();
        assert_eq!(links.len(), 1, "{links:?}");
        assert_eq!(links[Path::new("c")], Path::new("b"));
        assert_eq!(overlay.metadata()[Path::new("a")], meta(0, 0, 0o600));
        assert_eq!(overlay.metadata()[Path::new("b")], meta(0, 0, 0o777));
        assert_eq!(overlay.metadata()[Path::new("d")], meta(0, 0, 0o644));
    }

    #[test]
    fn overlay_metadata_takes_pax_ids_and_survives_bad_id_fields() {
        let scene = Scene::new();
        let mut no_ids = raw_entry(b"blank", EntryType::Regular, b"", b"x");
        // raw_entry leaves uid/gid empty; make gid garbage too.
        no_ids[116..124].copy_from_slice(b"zzzzzzz\0");
        let mut fixed = Header::from_byte_slice(&no_ids[..BLOCK]).clone();
        fixed.set_cksum();
        no_ids[..BLOCK].copy_from_slice(fixed.as_bytes());
        let layer = hostile(&[
            raw_entry(
                b"PaxHeaders/big",
                EntryType::XHeader,
                b"",
                &[pax_kv("uid", b"70000000"), pax_kv("gid", b"not a number")].concat(),
            ),
            raw_entry(b"big", EntryType::Regular, b"", b"x"),
            no_ids,
            raw_entry(
                b"PaxHeaders/end",
                EntryType::XHeader,
                b"",
                &pax_kv("uid", b"1"),
            ),
        ]);
        let (overlay, _) = run_overlay(&scene, &[], &[layer]);
        assert_eq!(
            overlay.metadata()[Path::new("big")],
            meta(70_000_000, 0, 0o644)
        );
        assert_eq!(overlay.metadata()[Path::new("blank")], meta(0, 0, 0o644));
        assert_eq!(scene.read("blank"), "x");
    }

    #[test]
    fn overlay_errors_name_the_layer() {
        let scene = Scene::new();
        let mut overlay = Overlay::new(&scene.dest(), Vec::new(), Limits::default());
        let bad = hostile(&[raw_entry(b"../../x", EntryType::Regular, b"", b"x")]);
        let err = overlay
            .apply_layer("sha256:abc", bad.as_slice())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "archive sha256:abc: entry \"../../x\" has an unsafe name: `..` leads out of the destination"
        );
    }
}
