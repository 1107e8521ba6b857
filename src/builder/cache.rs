//! The local layer cache (`$REGBUILD_CACHE`, else `$XDG_CACHE_HOME/regbuild`, else
//! `~/.cache/regbuild`): an unchanged COPY costs a file walk and a HEAD — no tar, no
//! compression.
//!
//! A layer is keyed by the sha256 of everything that decides its bytes: every entry's
//! in-layer path, kind, mode, owner, link target or device numbers, extended attributes and
//! content hash, the mtime it gets, the
//! compression and its level, the instruction text, and this cache's format version. The
//! record holds the layer's digest, diff_id, size and media type; the blob itself is built
//! only if the registry turns out not to have it (and must then hash to the recorded digest).
//!
//! Content hashes: a file's sha256 is reused from the stat index only when its device,
//! inode, size, mtime and ctime (which no user can set) all match the record and the file
//! was last changed more than 2 seconds before the record was written; otherwise (in doubt)
//! the file is hashed again. The stat index is one file per (context directory, instruction),
//! so a build writes one record file, not one per source file; files that need hashing are
//! hashed on all cores. Records are written to a temporary file and renamed into place, so
//! concurrent regbuild processes never see half a record; a deleted or corrupt cache is
//! simply a miss.

use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use regbuild_fs::layer::{EntryKind, LayerEntry, LayerOptions};
use regbuild_oci::digest::Digest;

/// The layer descriptor annotation that carries a layer's key in pushed manifests, so a
/// later build on any machine can find the layer in the registry (`--cache-from`).
pub const KEY_ANNOTATION: &str = "dev.regbuild.layer.key";
/// Bumped whenever what a key covers or how layers are written changes.
const FORMAT: &str = "regbuild-layer-cache-v3";
/// A file changed this recently may change again within the same timestamp tick.
const RACY_NS: i128 = 2_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub uncompressed_size: u64,
    pub media_type: String,
}

pub struct LayerCache {
    root: PathBuf,
}

/// What says a file is unchanged: device, inode, size, mtime and ctime (which every write
/// moves and no user can set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    pub fn of(path: &Path) -> io::Result<FileStamp> {
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        })
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct StatRecord {
    stamp: FileStamp,
    written_ns: i128,
    sha256: String,
}

/// Content-hash records of one (context, instruction), by source path. A path that is not
/// UTF-8 is stored lossily: the record's device and inode still decide whether it matches.
#[derive(Default, Serialize, Deserialize)]
struct StatIndex {
    files: std::collections::HashMap<String, StatRecord>,
}

fn index_name(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The cache directory: `$REGBUILD_CACHE`, else `$XDG_CACHE_HOME/regbuild`, else
/// `~/.cache/regbuild` (`None` without a home).
pub fn root() -> Option<PathBuf> {
    Some(match std::env::var_os("REGBUILD_CACHE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => match std::env::var_os("XDG_CACHE_HOME") {
            Some(p) if !p.is_empty() => PathBuf::from(p).join("regbuild"),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/regbuild"),
        },
    })
}

impl LayerCache {
    /// The cache directory, created if needed; `None` (no cache) when it cannot be.
    pub fn open() -> Option<LayerCache> {
        Self::at(root()?)
    }

    pub fn at(root: PathBuf) -> Option<LayerCache> {
        for sub in ["layers", "files"] {
            if let Err(e) =
                regbuild_rootfs::scratch::create_dir_all_with_mode(&root.join(sub), 0o700)
            {
                tracing::debug!(dir = %root.display(), error = %e, "layer cache disabled");
                return None;
            }
        }
        Some(LayerCache { root })
    }

    /// The key of the layer `entries` make with `opts` for `instruction`. `scope` (the
    /// build context) names the stat index that remembers the content hashes.
    pub fn layer_key(
        &self,
        entries: &[LayerEntry],
        opts: &LayerOptions,
        instruction: &str,
        scope: &Path,
    ) -> io::Result<String> {
        let mut keys = self.layer_keys(&[entries], opts, instruction, scope)?;
        keys.pop().ok_or_else(|| io::Error::other("no key"))
    }

    /// The keys of several layers one instruction makes (`--layering=auto`), with one pass
    /// over the stat index for all their files.
    pub fn layer_keys(
        &self,
        parts: &[&[LayerEntry]],
        opts: &LayerOptions,
        instruction: &str,
        scope: &Path,
    ) -> io::Result<Vec<String>> {
        let sources = file_sources(parts);
        let hashes = self.content_hashes(&sources, instruction, scope)?;
        keys_from(parts, opts, instruction, &sources, hashes)
    }

    /// The cache directory (other per-machine records live beside the layer records).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn get(&self, key: &str) -> Option<CachedLayer> {
        let text = std::fs::read(self.root.join("layers").join(key)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn put(&self, key: &str, layer: &CachedLayer) {
        if let Ok(bytes) = serde_json::to_vec(layer) {
            self.write_atomic(&self.root.join("layers").join(key), &bytes);
        }
    }

    /// The sha256 of each file's content, in order: from the stat index when certainly
    /// current, else read and hashed (on all cores). Rewrites the index when anything was
    /// hashed.
    pub fn content_hashes(
        &self,
        paths: &[&Path],
        instruction: &str,
        scope: &Path,
    ) -> io::Result<Vec<String>> {
        let index_path = self.stat_index_path(instruction, scope);
        let old: StatIndex = std::fs::read(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut records = Vec::with_capacity(paths.len());
        let mut stale = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let fresh = StatRecord {
                stamp: FileStamp::of(path)?,
                written_ns: 0,
                sha256: String::new(),
            };
            let known = old.files.get(&index_name(path)).filter(|rec| {
                let changed = fresh.stamp.mtime_ns.max(fresh.stamp.ctime_ns);
                rec.stamp == fresh.stamp && rec.written_ns - changed > RACY_NS
            });
            match known {
                Some(rec) => records.push(rec.clone()),
                None => {
                    stale.push(i);
                    records.push(fresh);
                }
            }
        }
        if stale.is_empty() {
            return Ok(records.into_iter().map(|r| r.sha256).collect());
        }
        let hashed = hash_files(&stale.iter().map(|&i| paths[i]).collect::<Vec<_>>())?;
        let written_ns = now_ns();
        for (i, sha256) in stale.into_iter().zip(hashed) {
            records[i].sha256 = sha256;
            records[i].written_ns = written_ns;
        }
        let index = StatIndex {
            files: paths
                .iter()
                .map(|p| index_name(p))
                .zip(records.iter().cloned())
                .collect(),
        };
        if let Ok(bytes) = serde_json::to_vec(&index) {
            self.write_atomic(&index_path, &bytes);
        }
        Ok(records.into_iter().map(|r| r.sha256).collect())
    }

    fn stat_index_path(&self, instruction: &str, scope: &Path) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let abs = std::fs::canonicalize(scope).unwrap_or_else(|_| scope.to_path_buf());
        let mut h = Sha256::new();
        for part in [
            FORMAT.as_bytes(),
            abs.as_os_str().as_bytes(),
            instruction.as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        self.root.join("files").join(hex::encode(h.finalize()))
    }

    /// Writes `bytes` to `path` through a temporary file and a rename; failures only cost a
    /// future cache miss.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) {
        let Some(dir) = path.parent() else { return };
        let _ = regbuild_rootfs::scratch::create_dir_all_with_mode(dir, 0o700);
        let result = tempfile::NamedTempFile::new_in(dir).and_then(|mut f| {
            f.write_all(bytes)?;
            f.persist(path).map_err(|e| e.error)?;
            Ok(())
        });
        if let Err(e) = result {
            tracing::debug!(path = %path.display(), error = %e, "layer cache write failed");
        }
    }
}

/// The keys of `parts` without a cache (`--no-cache`): every file is read and hashed. Keys
/// go into the image (`KEY_ANNOTATION`), so they are the same with or without a cache.
pub fn layer_keys_uncached(
    parts: &[&[LayerEntry]],
    opts: &LayerOptions,
    instruction: &str,
) -> io::Result<Vec<String>> {
    let sources = file_sources(parts);
    let hashes = hash_files(&sources)?;
    keys_from(parts, opts, instruction, &sources, hashes)
}

fn file_sources<'a>(parts: &[&'a [LayerEntry]]) -> Vec<&'a Path> {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .filter_map(|e| match &e.kind {
            EntryKind::File { source, .. } => Some(source.as_path()),
            _ => None,
        })
        .collect()
}

fn keys_from(
    parts: &[&[LayerEntry]],
    opts: &LayerOptions,
    instruction: &str,
    sources: &[&Path],
    hashes: Vec<String>,
) -> io::Result<Vec<String>> {
    let by_source: std::collections::HashMap<&Path, String> =
        sources.iter().copied().zip(hashes).collect();
    parts
        .iter()
        .map(|p| key_of(p, opts, instruction, &by_source))
        .collect()
}

/// A cache key's hash: each field length-prefixed (little-endian u64), so no two different
/// field lists encode alike. The layer keys of COPY, `COPY --from=<image>` and pinned ADDs
/// are made of it.
pub struct KeyFields(Sha256);

impl KeyFields {
    pub fn new() -> KeyFields {
        KeyFields(Sha256::new())
    }

    pub fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// The hash, in hex.
    pub fn hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

impl Default for KeyFields {
    fn default() -> Self {
        KeyFields::new()
    }
}

/// The key of one layer, from its entries and their files' content hashes.
fn key_of(
    entries: &[LayerEntry],
    opts: &LayerOptions,
    instruction: &str,
    hashes: &std::collections::HashMap<&Path, String>,
) -> io::Result<String> {
    use std::os::unix::ffi::OsStrExt;
    let mut sorted: Vec<&LayerEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.as_os_str().cmp(b.path.as_os_str()));
    let mut h = KeyFields::new();
    let mut field = |bytes: &[u8]| h.field(bytes);
    field(FORMAT.as_bytes());
    field(format!("{:?} mtime={}", opts.compression, opts.mtime).as_bytes());
    field(instruction.as_bytes());
    for e in sorted {
        field(e.path.as_os_str().as_bytes());
        field(format!("{:o} {} {}", e.mode, e.uid, e.gid).as_bytes());
        match &e.kind {
            EntryKind::File { source, size } => {
                field(b"file");
                field(&size.to_le_bytes());
                let hash = hashes
                    .get(source.as_path())
                    .ok_or_else(|| io::Error::other("content hash missing"))?;
                field(hash.as_bytes());
            }
            EntryKind::Dir => field(b"dir"),
            EntryKind::Symlink { target } => {
                field(b"symlink");
                field(target.as_os_str().as_bytes());
            }
            EntryKind::HardLink { target } => {
                field(b"hardlink");
                field(target.as_os_str().as_bytes());
            }
            EntryKind::CharDevice { major, minor } => {
                field(b"chardev");
                field(format!("{major},{minor}").as_bytes());
            }
            EntryKind::BlockDevice { major, minor } => {
                field(b"blockdev");
                field(format!("{major},{minor}").as_bytes());
            }
            EntryKind::Fifo => field(b"fifo"),
        }
        // Counted, so the pairs cannot be read as the next entry's fields.
        field(&(e.xattrs.len() as u64).to_le_bytes());
        for (name, value) in &e.xattrs {
            field(name);
            field(value);
        }
    }
    Ok(h.hex())
}

/// Hashes `paths` on all cores; the result is in the order of `paths`.
fn hash_files(paths: &[&Path]) -> io::Result<Vec<String>> {
    let threads = regbuild_fs::compress::threads().min(paths.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<io::Result<String>>> = (0..paths.len()).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut out);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(path) = paths.get(i) else { return };
                let hash = hash_file(path);
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(hash);
                }
            });
        }
    });
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(io::Error::other("hashing thread stopped"))))
        .collect()
}

fn hash_file(path: &Path) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, source: &Path, mode: u32) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: EntryKind::File {
                source: source.to_path_buf(),
                size: std::fs::metadata(source).unwrap().len(),
            },
            mode,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    #[test]
    fn keys_change_with_device_numbers_fifos_and_xattrs() {
        let opts = LayerOptions::default();
        let key = |kind: EntryKind, xattrs: &[(&[u8], &[u8])]| {
            let e = LayerEntry {
                path: "dev/x".into(),
                kind,
                mode: 0o666,
                uid: 0,
                gid: 0,
                xattrs: xattrs
                    .iter()
                    .map(|(n, v)| (n.to_vec(), v.to_vec()))
                    .collect(),
            };
            layer_keys_uncached(&[&[e]], &opts, "ADD rootfs.tar /")
                .unwrap()
                .remove(0)
        };
        let char13 = || EntryKind::CharDevice { major: 1, minor: 3 };
        let keys = [
            key(char13(), &[]),
            key(EntryKind::CharDevice { major: 1, minor: 5 }, &[]),
            key(
                EntryKind::CharDevice {
                    major: 13,
                    minor: 0,
                },
                &[],
            ),
            key(EntryKind::BlockDevice { major: 1, minor: 3 }, &[]),
            key(EntryKind::Fifo, &[]),
            key(EntryKind::Dir, &[]),
            key(char13(), &[(b"security.capability", b"\x01")]),
            key(char13(), &[(b"security.capability", b"\x02")]),
            key(char13(), &[(b"user.a", b"\x01")]),
        ];
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
        assert_eq!(key(char13(), &[]), keys[0], "stable");
    }

    #[test]
    fn keys_change_with_content_mode_names_and_settings_but_not_with_touch() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::at(dir.path().join("cache")).unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "one").unwrap();
        let opts = LayerOptions::default();
        let key = |e: &[LayerEntry], o: &LayerOptions| {
            cache.layer_key(e, o, "COPY f /f", dir.path()).unwrap()
        };
        let base = key(&[entry("f", &f, 0o644)], &opts);
        assert_eq!(base, key(&[entry("f", &f, 0o644)], &opts), "stable");
        // touch: same content, same key (the content hash is recomputed when in doubt)
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(base, key(&[entry("f", &f, 0o644)], &opts));
        assert_ne!(base, key(&[entry("f", &f, 0o755)], &opts), "mode");
        assert_ne!(base, key(&[entry("g", &f, 0o644)], &opts), "name");
        let zstd = LayerOptions {
            compression: regbuild_fs::compress::Compression::Zstd { level: 3 },
            ..opts
        };
        assert_ne!(base, key(&[entry("f", &f, 0o644)], &zstd), "compression");
        std::fs::write(&f, "two").unwrap();
        assert_ne!(
            base,
            key(&[entry("f", &f, 0o644)], &opts),
            "content, same size"
        );
        // one more file: a different file set
        let g = dir.path().join("g");
        std::fs::write(&g, "x").unwrap();
        assert_ne!(
            key(&[entry("f", &f, 0o644)], &opts),
            key(&[entry("f", &f, 0o644), entry("g", &g, 0o644)], &opts)
        );
    }

    #[test]
    fn a_same_size_rewrite_within_the_racy_window_is_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::at(dir.path().join("cache")).unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "aaaa").unwrap();
        let hash = || {
            cache
                .content_hashes(&[&f], "COPY f /f", dir.path())
                .unwrap()
        };
        let first = hash();
        // Same size, and (on coarse clocks) possibly the same mtime: must not be trusted.
        std::fs::write(&f, "bbbb").unwrap();
        let second = hash();
        assert_ne!(first, second);
    }

    #[test]
    fn many_files_are_hashed_in_order_into_one_index_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::at(dir.path().join("cache")).unwrap();
        let paths: Vec<PathBuf> = (0..50)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, "x".repeat(i * 1000)).unwrap();
                p
            })
            .collect();
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let hashes = cache.content_hashes(&refs, "COPY . /", dir.path()).unwrap();
        for (p, h) in paths.iter().zip(&hashes) {
            assert_eq!(*h, hex::encode(Sha256::digest(std::fs::read(p).unwrap())));
        }
        let index_files = std::fs::read_dir(dir.path().join("cache/files"))
            .unwrap()
            .count();
        assert_eq!(index_files, 1);
        // Another instruction over the same files keeps its own index.
        cache
            .content_hashes(&refs, "COPY . /other", dir.path())
            .unwrap();
        let index_files = std::fs::read_dir(dir.path().join("cache/files"))
            .unwrap()
            .count();
        assert_eq!(index_files, 2);
    }

    #[test]
    fn the_stat_index_reads_back_what_it_wrote() {
        // A record that does not parse is only a miss, so nothing else would notice.
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::at(dir.path().join("cache")).unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        cache
            .content_hashes(&[&f], "COPY f /f", dir.path())
            .unwrap();
        let index = cache.stat_index_path("COPY f /f", dir.path());
        let parsed: StatIndex = serde_json::from_slice(&std::fs::read(index).unwrap()).unwrap();
        let rec = &parsed.files[&index_name(&f)];
        assert_eq!(rec.stamp, FileStamp::of(&f).unwrap());
    }

    #[test]
    fn records_round_trip_and_a_deleted_cache_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let cache = LayerCache::at(root.clone()).unwrap();
        let rec = CachedLayer {
            digest: Digest::of(b"aa"),
            diff_id: Digest::of(b"bb"),
            size: 3,
            uncompressed_size: 4,
            media_type: "m".into(),
        };
        cache.put("k", &rec);
        assert_eq!(cache.get("k"), Some(rec.clone()));
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(cache.get("k"), None);
        // Writing again recreates what it needs.
        let cache = LayerCache::at(root).unwrap();
        cache.put("k", &rec);
        assert_eq!(cache.get("k"), Some(rec));
    }
}
