//! What the cache directory holds, as prune's entries: each with its disk usage and when it
//! was last used (the later of its own mtime and its use stamp's).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Entry, Kind, PruneError};
use crate::builder::cache_dir::stamp_of;

/// Directories of small records: removed only with `--all`.
const RECORD_DIRS: &[&str] = &["layers", "files", "layer-index", "pushed"];

/// Every entry under the cache directory `root` (a missing directory is an empty cache).
pub fn scan(root: &Path) -> Result<Vec<Entry>, PruneError> {
    let mut out = Vec::new();
    let stores = children(&root.join("lowers"))?
        .into_iter()
        .chain(children(&root.join("lowers-flat"))?);
    for ns in stores {
        for layer in children(&ns.join("sha256"))? {
            if !is_stamp(&layer) {
                out.push(entry(Kind::Lower, layer, &[])?);
            }
        }
        for tmp in children(&ns.join("tmp"))? {
            out.push(entry(Kind::Scratch, tmp, &[])?);
        }
    }
    for blob in children(&root.join("run-blobs"))? {
        if !is_stamp(&blob) {
            let kind = if file_name(&blob).starts_with('.') {
                Kind::Scratch
            } else {
                Kind::RunBlob
            };
            out.push(entry(kind, blob, &[])?);
        }
    }
    for cache in children(&root.join("run-cache"))? {
        let name = file_name(&cache);
        if name.starts_with(".new-") {
            out.push(entry(Kind::Scratch, cache, &[])?);
        } else if !is_stamp(&cache) && !name.ends_with(".lock") {
            let lock = cache.with_extension("lock");
            out.push(entry(Kind::CacheMount, cache, &[lock])?);
        }
    }
    for scratch in children(&root.join("run-tmp"))? {
        out.push(entry(Kind::Scratch, scratch, &[])?);
    }
    for dir in RECORD_DIRS {
        for record in children(&root.join(dir))? {
            out.push(entry(Kind::Record, record, &[])?);
        }
    }
    Ok(out)
}

/// The temporary directories of killed builds in `tmp` (`$TMPDIR`): never one of a build
/// still running, whatever cache directory it uses (each holds a lock on its own).
pub fn scan_build_tmp(tmp: &Path) -> Result<Vec<Entry>, PruneError> {
    regbuild_rootfs::scratch::find_abandoned(tmp, crate::builder::scratch::BUILD_TMP_PREFIX)
        .into_iter()
        .map(|dir| entry(Kind::Scratch, dir, &[]))
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_stamp(path: &Path) -> bool {
    file_name(path).ends_with(".used")
}

/// The entries of `dir`, sorted; none when it does not exist.
fn children(dir: &Path) -> Result<Vec<PathBuf>, PruneError> {
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PruneError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for e in read {
        out.push(
            e.map_err(|source| PruneError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path(),
        );
    }
    out.sort();
    Ok(out)
}

fn entry(kind: Kind, path: PathBuf, extra: &[PathBuf]) -> Result<Entry, PruneError> {
    let meta = fs::symlink_metadata(&path).map_err(|source| PruneError::Io {
        path: path.clone(),
        source,
    })?;
    let stamp = stamp_of(&path);
    let mut last_used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let mut companions = vec![stamp];
    companions.extend(extra.iter().cloned());
    for c in &companions {
        if let Ok(t) = fs::symlink_metadata(c).and_then(|m| m.modified()) {
            last_used = last_used.max(t);
        }
    }
    Ok(Entry {
        kind,
        bytes: disk_usage(&path),
        path,
        last_used,
        companions,
    })
}

/// Allocated bytes below `path`, each inode once; what cannot be read counts as nothing
/// (it is an estimate for the report, never a reason to fail).
fn disk_usage(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            if let Ok(read) = fs::read_dir(&p) {
                stack.extend(read.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_with_its_companions_and_stamps_move_its_last_use() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let lower = root.join("lowers/trusted/sha256/aa");
        fs::create_dir_all(lower.join("usr")).unwrap();
        fs::write(lower.join("usr/f"), vec![1u8; 10_000]).unwrap();
        fs::create_dir_all(root.join("lowers/trusted/tmp/unpack-1")).unwrap();
        fs::create_dir_all(root.join("run-blobs")).unwrap();
        fs::write(root.join("run-blobs/bb"), "blob").unwrap();
        fs::create_dir_all(root.join("run-cache/cc")).unwrap();
        fs::write(root.join("run-cache/cc.lock"), "").unwrap();
        fs::create_dir_all(root.join("run-cache/.new-x")).unwrap();
        fs::create_dir_all(root.join("run-tmp/step-1")).unwrap();
        fs::create_dir_all(root.join("layers")).unwrap();
        fs::write(root.join("layers/key"), "{}").unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let set_old = |p: &Path| {
            fs::File::open(p).unwrap().set_modified(old).unwrap();
        };
        set_old(&lower);
        crate::builder::cache_dir::mark_used(&lower);

        let entries = scan(root).unwrap();
        let kinds: Vec<(Kind, String)> = entries
            .iter()
            .map(|e| {
                (
                    e.kind,
                    e.path.strip_prefix(root).unwrap().display().to_string(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (Kind::Lower, "lowers/trusted/sha256/aa".to_string()),
                (Kind::Scratch, "lowers/trusted/tmp/unpack-1".into()),
                (Kind::RunBlob, "run-blobs/bb".into()),
                (Kind::Scratch, "run-cache/.new-x".into()),
                (Kind::CacheMount, "run-cache/cc".into()),
                (Kind::Scratch, "run-tmp/step-1".into()),
                (Kind::Record, "layers/key".into()),
            ]
        );
        let lower_entry = &entries[0];
        assert!(lower_entry.bytes >= 10_000, "{}", lower_entry.bytes);
        assert!(lower_entry.last_used > old, "the stamp is the last use");
        assert!(entries[4]
            .companions
            .contains(&root.join("run-cache/cc.lock")));
        assert!(scan(&root.join("missing")).unwrap().is_empty());
    }

    #[test]
    fn only_the_temporary_directories_of_dead_builds_are_offered() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = crate::builder::scratch::BUILD_TMP_PREFIX;
        let live = regbuild_rootfs::scratch::LiveDir::create(tmp.path(), prefix, 0o700).unwrap();
        let dead = tmp.path().join(format!("{prefix}dead"));
        fs::create_dir(&dead).unwrap();
        fs::create_dir(tmp.path().join("regbuild-test-cache-1-x")).unwrap();
        let entries = scan_build_tmp(tmp.path()).unwrap();
        let paths: Vec<&Path> = entries.iter().map(|e| e.path.as_path()).collect();
        assert_eq!(paths, [dead.as_path()]);
        assert_eq!(entries[0].kind, Kind::Scratch);
        assert!(live.path().is_dir());
    }
}
