//! The pure half of `inspect`: what a layer's tar entries mean (paths, whiteouts, opaque
//! directories), the wasted-space and efficiency math over a stack of layers, the config
//! history, and the `--ci` rules and their thresholds. Nothing here does I/O.
//!
//! See the module doc of [`crate::inspect`] for the exact definitions.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Setuid and setgid bits of a tar mode.
const SETID_BITS: u32 = 0o6000;
const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What a tar entry is, as far as the analysis cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: its size counts.
    File,
    Dir,
    Symlink,
    /// A hard link: shares the data of another entry, so 0 bytes of its own.
    HardLink,
    /// Devices and FIFOs.
    Special,
    /// `.wh.<name>`: deletes `path` (and everything under it) in the layers below.
    Whiteout,
    /// `.wh..wh..opq`: deletes everything under the directory `path` in the layers below.
    Opaque,
}

/// One meaningful entry of a layer: `path` is relative to the image root, cleaned (no
/// leading `/`, no `.`/`..`/empty components); for whiteouts it is the deleted path, for
/// opaque markers the directory (empty for the root), and it is never empty otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    /// Content bytes (regular files only; 0 for anything else).
    pub size: u64,
    pub mode: u32,
}

impl Entry {
    /// Interprets a tar header: `name` as stored (after GNU long name / PAX path), `typeflag`
    /// the header's type byte, `size` its data size. `None` for entries that mean nothing to
    /// the filesystem: the root directory, AUFS bookkeeping (`.wh..wh.plnk` and the like).
    pub fn from_tar(name: &[u8], typeflag: u8, size: u64, mode: u32) -> Option<Entry> {
        let path = clean_path(name)?;
        let trailing_slash = name.ends_with(b"/");
        let kind = match typeflag {
            b'5' => Kind::Dir,
            // Pre-POSIX tars mark directories with a trailing slash on a regular entry.
            b'0' | 0 | b'7' if trailing_slash => Kind::Dir,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' | b'4' | b'6' => Kind::Special,
            // Regular, contiguous, GNU sparse, and unknown types (read as regular files, as
            // Go's archive/tar and GNU tar do).
            _ => Kind::File,
        };
        let (parent, base) = match path.rsplit_once('/') {
            Some((p, b)) => (p, b),
            None => ("", path.as_str()),
        };
        if base == OPAQUE_MARKER {
            return Some(Entry {
                path: parent.to_string(),
                kind: Kind::Opaque,
                size: 0,
                mode,
            });
        }
        if base.starts_with(WHITEOUT_META_PREFIX) {
            return None;
        }
        if let Some(target) = base.strip_prefix(WHITEOUT_PREFIX) {
            if target.is_empty() {
                return None;
            }
            let path = if parent.is_empty() {
                target.to_string()
            } else {
                format!("{parent}/{target}")
            };
            return Some(Entry {
                path,
                kind: Kind::Whiteout,
                size: 0,
                mode,
            });
        }
        let size = if kind == Kind::File { size } else { 0 };
        Some(Entry {
            path,
            kind,
            size,
            mode,
        })
    }

    fn is_setid(&self) -> bool {
        matches!(self.kind, Kind::File | Kind::HardLink) && self.mode & SETID_BITS != 0
    }
}

/// A tar name as an image path: a leading `/` and `./` dropped, empty and `.` components
/// dropped, `..` resolved lexically and stopped at the root. Non-UTF-8 bytes are replaced
/// (U+FFFD). `None` for the root itself.
pub fn clean_path(name: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(name);
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

/// A setuid/setgid file: `path` with a leading `/`, its permission bits, the layer (0 is the
/// bottom) that holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetidFile {
    pub path: String,
    pub mode: u32,
    pub layer: usize,
}

/// What one layer holds and wastes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries that are not directories or whiteouts (files, symlinks, hard links, devices).
    pub files: u64,
    /// Bytes of regular-file content in this layer.
    pub file_bytes: u64,
    /// Bytes of this layer's files that an upper layer (or a later entry of this same layer)
    /// overwrote or deleted.
    pub wasted_bytes: u64,
    /// Setuid/setgid files this layer holds, in tar order.
    pub setid_files: Vec<SetidFile>,
}

/// The whole image.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    pub layers: Vec<LayerStats>,
    /// Regular-file bytes of all layers (every version of every file).
    pub total_size: u64,
    pub wasted_bytes: u64,
    /// `1 - wasted_bytes / total_size`; 1.0 for an image without file bytes.
    pub efficiency: f64,
    /// `wasted_bytes / total_size`; 0.0 for an image without file bytes.
    pub user_wasted_percent: f64,
    /// Setuid/setgid files of the final filesystem (what a container sees), by path.
    pub setid_files: Vec<SetidFile>,
}

/// What is visible at a path after the layers applied so far.
#[derive(Clone, Copy, Debug)]
struct Node {
    layer: usize,
    size: u64,
    dir: bool,
    mode: u32,
    setid: bool,
}

/// Applies layers bottom-up, keeping only the visible path → (layer, size) map.
#[derive(Default)]
pub struct Analyzer {
    visible: BTreeMap<String, Node>,
    layers: Vec<LayerStats>,
}

impl Analyzer {
    pub fn new() -> Analyzer {
        Analyzer::default()
    }

    /// Applies the next layer up (the first call is the bottom layer), its entries in tar
    /// order. Whiteouts and opaque markers act on the layers below only, wherever they stand
    /// in the tar; the layer's other entries are applied after them, in order.
    pub fn add_layer(&mut self, entries: &[Entry]) {
        let index = self.layers.len();
        let mut stats = LayerStats::default();
        for e in entries {
            match e.kind {
                Kind::Dir | Kind::Whiteout | Kind::Opaque => {}
                _ => stats.files += 1,
            }
            stats.file_bytes += e.size;
            if e.is_setid() {
                stats.setid_files.push(SetidFile {
                    path: format!("/{}", e.path),
                    mode: e.mode & 0o7777,
                    layer: index,
                });
            }
        }
        self.layers.push(stats);
        for e in entries {
            match e.kind {
                Kind::Whiteout => {
                    self.remove(&e.path);
                    self.remove_below(&e.path);
                }
                Kind::Opaque => self.remove_below(&e.path),
                _ => {}
            }
        }
        for e in entries {
            if matches!(e.kind, Kind::Whiteout | Kind::Opaque) {
                continue;
            }
            // A file where an upper entry needs a directory is replaced by one.
            let mut at = 0;
            while let Some(slash) = e.path[at..].find('/') {
                let ancestor = &e.path[..at + slash];
                if self.visible.get(ancestor).is_some_and(|n| !n.dir) {
                    self.remove(ancestor);
                }
                at += slash + 1;
            }
            let dir = e.kind == Kind::Dir;
            match self.visible.get(&e.path) {
                Some(old) if old.dir && dir => {}
                _ => {
                    self.remove(&e.path);
                }
            }
            if !dir {
                self.remove_below(&e.path);
            }
            self.visible.insert(
                e.path.clone(),
                Node {
                    layer: index,
                    size: e.size,
                    dir,
                    mode: e.mode & 0o7777,
                    setid: e.is_setid(),
                },
            );
        }
    }

    /// Removes what is visible at `path` itself, charging its bytes to its layer.
    fn remove(&mut self, path: &str) {
        if let Some(old) = self.visible.remove(path) {
            self.waste(old);
        }
    }

    /// Removes everything visible under the directory `path` ("" is the root).
    fn remove_below(&mut self, path: &str) {
        let below: Vec<String> = if path.is_empty() {
            self.visible.keys().cloned().collect()
        } else {
            // Every key starting with "path/" sorts in ["path/", "path0"): '0' follows '/'.
            let start = format!("{path}/");
            let end = format!("{path}0");
            self.visible
                .range(start..end)
                .map(|(k, _)| k.clone())
                .collect()
        };
        for key in below {
            self.remove(&key);
        }
    }

    fn waste(&mut self, node: Node) {
        if let Some(stats) = self.layers.get_mut(node.layer) {
            stats.wasted_bytes += node.size;
        }
    }

    /// The totals, and the setuid/setgid files left in the final filesystem.
    pub fn finish(self) -> Analysis {
        let total_size: u64 = self.layers.iter().map(|l| l.file_bytes).sum();
        let wasted_bytes: u64 = self.layers.iter().map(|l| l.wasted_bytes).sum();
        let (efficiency, user_wasted_percent) = if total_size == 0 {
            (1.0, 0.0)
        } else {
            let share = wasted_bytes as f64 / total_size as f64;
            (1.0 - share, share)
        };
        let setid_files = self
            .visible
            .iter()
            .filter(|(_, n)| n.setid)
            .map(|(path, n)| SetidFile {
                path: format!("/{path}"),
                mode: n.mode,
                layer: n.layer,
            })
            .collect();
        Analysis {
            layers: self.layers,
            total_size,
            wasted_bytes,
            efficiency,
            user_wasted_percent,
            setid_files,
        }
    }
}

/// The instruction that made each of `layers` layers: the config's `history` entries that are
/// not `empty_layer`, in order (`created_by`, else `comment`). `None` where the history is
/// missing or shorter than the layer list.
pub fn layer_history(config: &serde_json::Value, layers: usize) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = config
        .get("history")
        .and_then(|h| h.as_array())
        .map(|h| {
            h.iter()
                .filter(|e| {
                    !e.get("empty_layer")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false)
                })
                .map(|e| {
                    ["created_by", "comment"]
                        .iter()
                        .filter_map(|k| e.get(*k).and_then(|v| v.as_str()))
                        .map(str::trim)
                        .find(|s| !s.is_empty())
                        .map(str::to_string)
                })
                .take(layers)
                .collect()
        })
        .unwrap_or_default();
    out.resize(layers, None);
    out
}

/// A byte count (`--max-layer-size`, `--chunk-size`, …) that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size `{text}`: {why}")]
pub struct InvalidSize {
    pub text: String,
    pub why: &'static str,
}

/// A share that is not a number between 0 and 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFraction {
    #[error("invalid value `{0}`: expected a number between 0 and 1")]
    NotANumber(String),
    #[error("invalid value `{0}`: expected a number between 0 and 1 (0.9 means 90%)")]
    OutOfRange(String),
}

/// Parses a byte count: a number (fractions allowed) and an optional unit, case-insensitive,
/// optionally separated by a space. Decimal SI units `B`, `k`/`kB`, `M`/`MB`, `G`/`GB`,
/// `T`/`TB`, `P`/`PB` (powers of 1000) and binary IEC units `KiB`, `MiB`, `GiB`, `TiB`, `PiB`
/// (powers of 1024; `Ki`, `Mi`… too). A fractional result is rounded down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, InvalidSize> {
    let bad = |why: &'static str| InvalidSize {
        text: text.to_string(),
        why,
    };
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier: u128 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u128.pow(2),
        "g" | "gb" => 1000u128.pow(3),
        "t" | "tb" => 1000u128.pow(4),
        "p" | "pb" => 1000u128.pow(5),
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        "pi" | "pib" => 1 << 50,
        _ => {
            return Err(bad(
                "expected a number and a unit such as 1000, 20kB, 20MB, 1.5MiB or 2GiB",
            ))
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(bad("no number"));
    }
    if fraction.contains('.') || fraction.len() > 18 || whole.len() > 20 {
        return Err(bad("not a number"));
    }
    let digits = |d: &str| -> Result<u128, InvalidSize> {
        if d.is_empty() {
            Ok(0)
        } else {
            d.parse::<u128>().map_err(|_| bad("not a number"))
        }
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let value = digits(whole)?
        .checked_mul(scale)
        .and_then(|w| w.checked_add(digits(fraction).ok()?))
        .and_then(|v| v.checked_mul(multiplier))
        .ok_or_else(|| bad("too large"))?
        / scale;
    u64::try_from(value).map_err(|_| bad("too large"))
}

/// Parses a share between 0 and 1 (`0.9`, `1`, `0`).
pub fn parse_fraction(text: &str) -> Result<f64, InvalidFraction> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| InvalidFraction::NotANumber(text.to_string()))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(InvalidFraction::OutOfRange(text.to_string()));
    }
    Ok(v)
}

/// The `--ci` thresholds; a rule without a threshold is not checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    /// Fails when efficiency < this.
    pub lowest_efficiency: Option<f64>,
    /// Fails when wasted bytes > this.
    pub highest_wasted_bytes: Option<u64>,
    /// Fails when the user-wasted percent (0..1) > this.
    pub highest_user_wasted_percent: Option<f64>,
}

/// A rule's measured value or threshold: bytes, or a share in 0..1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Measure {
    Bytes(u64),
    Ratio(f64),
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Measure::Bytes(n) => write!(
                f,
                "{n} bytes ({})",
                regbuild_registry::progress::human_bytes(*n)
            ),
            Measure::Ratio(r) => write!(f, "{r:.4}"),
        }
    }
}

/// One checked rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleResult {
    /// dive's name for the rule (`lowestEfficiency`, …).
    pub name: &'static str,
    /// The flag that sets it.
    pub flag: &'static str,
    /// What is measured: `efficiency`, `wasted bytes`, `user wasted percent`.
    pub measure: &'static str,
    pub passed: bool,
    pub actual: Measure,
    pub threshold: Measure,
    /// How `actual` must compare to `threshold` to pass: `>=` or `<=`.
    pub must_be: &'static str,
}

impl fmt::Display for RuleResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verdict, relation) = match (self.passed, self.must_be) {
            (true, r) => ("PASS", r),
            (false, ">=") => ("FAIL", "<"),
            (false, _) => ("FAIL", ">"),
        };
        write!(
            f,
            "{verdict}: {} ({}): {} {} {relation} threshold {}",
            self.name, self.flag, self.measure, self.actual, self.threshold
        )
    }
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        *self == Rules::default()
    }

    /// Checks every rule that has a threshold, in a fixed order.
    pub fn evaluate(&self, a: &Analysis) -> Vec<RuleResult> {
        let mut out = Vec::new();
        if let Some(t) = self.lowest_efficiency {
            out.push(RuleResult {
                name: "lowestEfficiency",
                flag: "--lowest-efficiency",
                measure: "efficiency",
                passed: a.efficiency >= t,
                actual: Measure::Ratio(a.efficiency),
                threshold: Measure::Ratio(t),
                must_be: ">=",
            });
        }
        if let Some(t) = self.highest_wasted_bytes {
            out.push(RuleResult {
                name: "highestWastedBytes",
                flag: "--highest-wasted-bytes",
                measure: "wasted",
                passed: a.wasted_bytes <= t,
                actual: Measure::Bytes(a.wasted_bytes),
                threshold: Measure::Bytes(t),
                must_be: "<=",
            });
        }
        if let Some(t) = self.highest_user_wasted_percent {
            out.push(RuleResult {
                name: "highestUserWastedPercent",
                flag: "--highest-user-wasted-percent",
                measure: "user wasted percent",
                passed: a.user_wasted_percent <= t,
                actual: Measure::Ratio(a.user_wasted_percent),
                threshold: Measure::Ratio(t),
                must_be: "<=",
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Entry {
        Entry::from_tar(path.as_bytes(), b'0', size, 0o644).unwrap()
    }

    fn dir(path: &str) -> Entry {
        Entry::from_tar(path.as_bytes(), b'5', 0, 0o755).unwrap()
    }

    fn analyze(layers: &[Vec<Entry>]) -> Analysis {
        let mut a = Analyzer::new();
        for l in layers {
            a.add_layer(l);
        }
        a.finish()
    }

    fn wasted(a: &Analysis) -> Vec<u64> {
        a.layers.iter().map(|l| l.wasted_bytes).collect()
    }

    #[test]
    fn entries_are_cleaned_and_whiteouts_recognised() {
        assert_eq!(file("./usr/bin/x", 3).path, "usr/bin/x");
        assert_eq!(file("/a/../b//c/./d", 1).path, "b/c/d");
        assert_eq!(file("../../etc/passwd", 1).path, "etc/passwd");
        assert!(Entry::from_tar(b"./", b'5', 0, 0o755).is_none());
        let w = file("etc/.wh.hosts", 0);
        assert_eq!((w.kind, w.path.as_str()), (Kind::Whiteout, "etc/hosts"));
        let w = file(".wh.top", 0);
        assert_eq!((w.kind, w.path.as_str()), (Kind::Whiteout, "top"));
        let o = file("var/cache/.wh..wh..opq", 0);
        assert_eq!((o.kind, o.path.as_str()), (Kind::Opaque, "var/cache"));
        let o = file(".wh..wh..opq", 0);
        assert_eq!((o.kind, o.path.as_str()), (Kind::Opaque, ""));
        assert!(Entry::from_tar(b"x/.wh..wh.plnk", b'0', 0, 0).is_none());
        // Old-style directory: a regular entry whose name ends in a slash.
        assert_eq!(file("old/", 0).kind, Kind::Dir);
        // Only regular files have bytes.
        assert_eq!(Entry::from_tar(b"l", b'2', 99, 0o777).unwrap().size, 0);
    }

    #[test]
    fn distinct_files_waste_nothing() {
        let a = analyze(&[
            vec![dir("a"), file("a/x", 10)],
            vec![dir("a"), file("a/y", 30)],
        ]);
        assert_eq!(a.total_size, 40);
        assert_eq!(a.wasted_bytes, 0);
        assert_eq!(a.efficiency, 1.0);
        assert_eq!(a.user_wasted_percent, 0.0);
        assert_eq!(a.layers[0].files, 1);
    }

    #[test]
    fn empty_image_is_fully_efficient() {
        let a = analyze(&[]);
        assert_eq!((a.total_size, a.wasted_bytes, a.efficiency), (0, 0, 1.0));
        let a = analyze(&[vec![dir("a")]]);
        assert_eq!(a.efficiency, 1.0);
    }

    #[test]
    fn overwrite_charges_the_lower_layer() {
        let a = analyze(&[vec![file("data/blob", 400)], vec![file("data/blob", 100)]]);
        assert_eq!(wasted(&a), vec![400, 0]);
        assert_eq!(a.wasted_bytes, 400);
        assert_eq!(a.total_size, 500);
        assert!((a.efficiency - 0.2).abs() < 1e-12);
        assert!((a.user_wasted_percent - 0.8).abs() < 1e-12);
    }

    #[test]
    fn overwrite_chain_charges_every_hidden_version() {
        let a = analyze(&[
            vec![file("f", 100)],
            vec![file("f", 200)],
            vec![file("g", 7)],
            vec![file("f", 300)],
        ]);
        assert_eq!(wasted(&a), vec![100, 200, 0, 0]);
        assert_eq!(a.wasted_bytes, 300);
        assert_eq!(a.total_size, 607);
    }

    #[test]
    fn whiteout_deletes_a_file_and_a_whole_directory() {
        let a = analyze(&[
            vec![
                dir("d"),
                file("d/a", 5),
                file("d/sub/b", 7),
                file("keep", 1),
                file("f", 3),
            ],
            vec![file(".wh.f", 0), file("d/.wh.sub", 0)],
            vec![file(".wh.d", 0)],
        ]);
        // f (3) and d/sub/b (7) deleted by layer 1, d/a (5) by layer 2: all charged to layer 0.
        assert_eq!(wasted(&a), vec![15, 0, 0]);
        assert_eq!(a.layers[1].files, 0);
        // A whiteout of something that never existed wastes nothing.
        let a = analyze(&[vec![file("x", 1)], vec![file(".wh.nothing", 0)]]);
        assert_eq!(a.wasted_bytes, 0);
    }

    #[test]
    fn opaque_directory_hides_lower_content_but_not_its_own_layer() {
        let a = analyze(&[
            vec![
                dir("c"),
                file("c/old1", 10),
                file("c/deep/old2", 20),
                file("cx", 4),
            ],
            // The new file comes before the marker in the tar: it must survive.
            vec![dir("c"), file("c/new", 1), file("c/.wh..wh..opq", 0)],
            vec![file("c/new", 2)],
        ]);
        assert_eq!(wasted(&a), vec![30, 1, 0]);
        // `cx` is not under `c/`.
        assert_eq!(a.total_size, 10 + 20 + 4 + 1 + 2);
    }

    #[test]
    fn whiteout_in_the_same_layer_does_not_delete_that_layers_file() {
        let a = analyze(&[vec![file("p", 8)], vec![file("p", 2), file(".wh.p", 0)]]);
        assert_eq!(wasted(&a), vec![8, 0]);
    }

    #[test]
    fn a_file_replacing_a_directory_hides_what_was_inside() {
        let a = analyze(&[
            vec![dir("x"), file("x/a", 6), file("x/b/c", 4)],
            vec![file("x", 1)],
        ]);
        assert_eq!(wasted(&a), vec![10, 0]);
        // And a file where a later layer needs a directory is replaced.
        let a = analyze(&[vec![file("y", 9)], vec![file("y/z", 1)]]);
        assert_eq!(wasted(&a), vec![9, 0]);
        // Directories themselves cost nothing.
        let a = analyze(&[vec![dir("d")], vec![file(".wh.d", 0)], vec![dir("d")]]);
        assert_eq!(a.wasted_bytes, 0);
    }

    #[test]
    fn a_duplicate_within_one_layer_is_waste_of_that_layer() {
        let a = analyze(&[vec![file("f", 3), file("f", 4)]]);
        assert_eq!(wasted(&a), vec![3]);
    }

    #[test]
    fn prefix_siblings_are_not_descendants() {
        // "a-b" and "a0" sort between "a/" neighbours; only "a/…" may be removed.
        let a = analyze(&[
            vec![
                file("a/x", 1),
                file("a-b", 2),
                file("a0", 4),
                file("a.c", 8),
            ],
            vec![file(".wh.a", 0)],
        ]);
        assert_eq!(a.wasted_bytes, 1);
    }

    #[test]
    fn setid_files_per_layer_and_in_the_final_filesystem() {
        let su = |p: &str, mode| Entry::from_tar(p.as_bytes(), b'0', 1, mode).unwrap();
        let a = analyze(&[
            vec![
                su("bin/su", 0o4755),
                su("bin/wall", 0o2755),
                su("bin/ls", 0o755),
                dir("tmp"),
            ],
            vec![
                file("bin/.wh.wall", 0),
                Entry::from_tar(b"var/mail", b'5', 0, 0o2775).unwrap(),
            ],
        ]);
        let paths = |v: &[SetidFile]| v.iter().map(|s| s.path.clone()).collect::<Vec<_>>();
        assert_eq!(
            paths(&a.layers[0].setid_files),
            vec!["/bin/su", "/bin/wall"]
        );
        assert_eq!(paths(&a.setid_files), vec!["/bin/su"]);
        assert_eq!(a.setid_files[0].mode, 0o4755);
        assert_eq!(a.setid_files[0].layer, 0);
    }

    #[test]
    fn history_skips_empty_layers() {
        let config = serde_json::json!({"history": [
            {"created_by": "ADD rootfs.tar /"},
            {"created_by": "ENV A=1", "empty_layer": true},
            {"comment": "umoci insert"},
        ]});
        assert_eq!(
            layer_history(&config, 3),
            vec![
                Some("ADD rootfs.tar /".into()),
                Some("umoci insert".into()),
                None
            ]
        );
        assert_eq!(layer_history(&serde_json::json!({}), 1), vec![None]);
    }

    #[test]
    fn sizes_parse_in_si_and_iec_units() {
        assert_eq!(parse_size("20MB"), Ok(20_000_000));
        assert_eq!(parse_size("1.5MiB"), Ok(1_572_864));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("20kB"), Ok(20_000));
        assert_eq!(parse_size("20KB"), Ok(20_000));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("0.5k"), Ok(500));
        assert_eq!(parse_size(".5KiB"), Ok(512));
        assert_eq!(parse_size("1.0001kB"), Ok(1000));
        assert_eq!(parse_size("7B"), Ok(7));
        for bad in [
            "abc",
            "",
            "MB",
            "1.2.3MB",
            "-5",
            "10 XB",
            "99999999999999999999PB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fractions_must_be_between_0_and_1() {
        assert_eq!(parse_fraction("0.9"), Ok(0.9));
        assert_eq!(parse_fraction("1"), Ok(1.0));
        assert!(parse_fraction("1.5").is_err());
        assert!(parse_fraction("-0.1").is_err());
        assert!(parse_fraction("90%").is_err());
    }

    #[test]
    fn rules_compare_like_dive() {
        let a = analyze(&[vec![file("f", 600)], vec![file("f", 400)]]);
        let rules = Rules {
            lowest_efficiency: Some(0.5),
            highest_wasted_bytes: Some(600),
            highest_user_wasted_percent: Some(0.5),
        };
        let r = rules.evaluate(&a);
        assert_eq!(r.len(), 3);
        // efficiency 0.4 < 0.5; wasted 600 <= 600; user wasted 0.6 > 0.5.
        assert_eq!(
            r.iter().map(|r| r.passed).collect::<Vec<_>>(),
            vec![false, true, false]
        );
        assert_eq!(
            r[0].to_string(),
            "FAIL: lowestEfficiency (--lowest-efficiency): efficiency 0.4000 < threshold 0.5000"
        );
        assert_eq!(
            r[1].to_string(),
            "PASS: highestWastedBytes (--highest-wasted-bytes): wasted 600 bytes (600 B) <= \
             threshold 600 bytes (600 B)"
        );
        assert_eq!(
            serde_json::to_value(&r[1]).unwrap()["actual"],
            serde_json::json!(600)
        );
        assert!(Rules::default().evaluate(&a).is_empty());
    }
}
