//! The build context's digest for the provenance: sha256 over every path the build may
//! read (`.dockerignore` applied, sorted), each with its kind, mode bits and content hash
//! (a symlink by its target). Timestamps are not in it: the same files give the same
//! digest on any machine.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use regbuild_context::dockerignore::DockerIgnore;

/// The digest (`sha256:<hex>`) of the context at `dir`.
pub fn digest(dir: &Path, ignore: &DockerIgnore) -> std::io::Result<String> {
    let mut entries = Vec::new();
    walk(dir, "", ignore, &mut entries)?;
    entries.sort();
    let mut h = Sha256::new();
    for line in entries {
        h.update((line.len() as u64).to_be_bytes());
        h.update(line.as_bytes());
    }
    Ok(format!("sha256:{:x}", h.finalize()))
}

fn walk(
    dir: &Path,
    rel: &str,
    ignore: &DockerIgnore,
    out: &mut Vec<String>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir.join(rel))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::symlink_metadata(dir.join(&path))?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            if !ignore.is_excluded(&path) || ignore.may_include_below(&path) {
                walk(dir, &path, ignore, out)?;
            }
            continue;
        }
        if ignore.is_excluded(&path) {
            continue;
        }
        let what = if meta.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(dir.join(&path))?.display())
        } else if meta.is_file() {
            format!("file {}", file_sha256(&dir.join(&path))?)
        } else {
            "other".to_string()
        };
        out.push(format!("{path}\0{mode:o}\0{what}"));
    }
    Ok(())
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(format!("{:x}", h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_contents_and_ignores_excluded_files_and_mtimes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "a").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/b"), "b").unwrap();
        let none = DockerIgnore::default();
        let d1 = digest(dir.path(), &none).unwrap();
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("a"))
            .unwrap()
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(
            digest(dir.path(), &none).unwrap(),
            d1,
            "mtimes are not in it"
        );
        std::fs::write(dir.path().join("d/b"), "c").unwrap();
        let d2 = digest(dir.path(), &none).unwrap();
        assert_ne!(d1, d2);
        let ignore = DockerIgnore::parse("d\n", &dir.path().join(".dockerignore")).unwrap();
        std::fs::write(dir.path().join("d/b"), "b").unwrap();
        let i1 = digest(dir.path(), &ignore).unwrap();
        std::fs::write(dir.path().join("d/b"), "z").unwrap();
        assert_eq!(
            digest(dir.path(), &ignore).unwrap(),
            i1,
            "ignored files are not in it"
        );
    }
}
