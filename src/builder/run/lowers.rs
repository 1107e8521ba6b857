//! The stage's root filesystem as overlay lower directories: one per layer, from the
//! store of unpacked layers (`regbuild_rootfs::lower`), keyed by diff_id. A layer the store
//! lacks is fetched once (a base layer from its registry, unpacked as it arrives and verified
//! against its digest as it streams; a layer this build made from its file) and unpacked once; every later step,
//! stage and build reuses it. Also: reading a file of that filesystem (the account files
//! USER needs) without mounting it.

use std::path::{Path, PathBuf};

use crate::builder::error::StepError;
use crate::builder::layer::StageLayer;
use futures::StreamExt;
use regbuild_oci::digest::Digest;
use regbuild_registry::{Registry, Scopes};
use regbuild_rootfs::lower::LowerStore;

/// The diff_id of the `index`th layer: the config's, else the layer's own record.
fn diff_id_of(layer: &StageLayer, config_diff_id: Option<&str>) -> Result<Digest, StepError> {
    let from_config = || -> Result<Digest, StepError> {
        Ok(config_diff_id
            .ok_or_else(|| StepError::Entries(std::io::Error::other("a layer has no diff_id")))?
            .parse()?)
    };
    Ok(match layer {
        StageLayer::Local(b) => b.diff_id.clone(),
        StageLayer::Cached(c) => c.record.diff_id.clone(),
        StageLayer::Remote { .. } => from_config()?,
    })
}

/// One layer below a step: a stage layer, or one already in the store (a RUN layer whose
/// blob is still being packed) by its directory.
#[derive(Clone)]
pub enum Lower {
    Layer(StageLayer),
    Stored(PathBuf),
}

/// A lower directory for every layer of `layers` (bottom first). Layers the store lacks are
/// fetched and unpacked concurrently (downloads under the registry's job limit, unpacks on
/// blocking threads), so a many-layer base costs about its largest layer, not their sum.
pub async fn ensure(
    registry: &Registry,
    store: &LowerStore,
    layers: &[Lower],
    diff_ids: &[String],
    tmp: &Path,
    keep_owners: bool,
) -> Result<Vec<PathBuf>, StepError> {
    // Rootless, owners are kept only by unpacking in a user namespace (from a file).
    let in_userns = keep_owners && super::userns_unpack::needed();
    let jobs = layers.iter().enumerate().map(|(i, layer)| async move {
        let layer = match layer {
            Lower::Stored(dir) => return Ok(dir.clone()),
            Lower::Layer(l) => l,
        };
        let diff_id = diff_id_of(layer, diff_ids.get(i).map(String::as_str))?;
        if let Some(dir) = store.get(&diff_id) {
            return Ok(dir);
        }
        let (host, repository, descriptor) = match layer {
            StageLayer::Local(b) => {
                return unpack_file(store, diff_id, b.file.to_path_buf(), in_userns).await
            }
            StageLayer::Cached(c) if c.buildable() => {
                let b = tokio::task::block_in_place(|| c.built())?;
                return unpack_file(store, diff_id, b.file.to_path_buf(), in_userns).await;
            }
            StageLayer::Cached(c) => match c.registry_source() {
                Some((host, repo, d)) => (host.to_string(), repo.to_string(), d),
                None => {
                    return Err(StepError::Entries(std::io::Error::other(format!(
                        "layer {} is neither in the local cache nor in a registry",
                        c.record.digest
                    ))))
                }
            },
            StageLayer::Remote {
                descriptor,
                registry: host,
                repository,
            } => (host.clone(), repository.clone(), (**descriptor).clone()),
        };
        // A blob a dry run computed is a local file (a copy of it); rootless unpacks that
        // keep owners read a file in another process.
        if registry.stand_in(&descriptor.digest).is_some() || in_userns {
            let blob =
                crate::builder::rootfs::download(registry, &host, &repository, &descriptor, tmp)
                    .await?;
            let unpacked = unpack_file(store, diff_id, blob.clone(), in_userns).await;
            let _ = std::fs::remove_file(&blob);
            return unpacked;
        }
        unpack_download(registry, store, diff_id, &host, &repository, &descriptor).await
    });
    futures::future::try_join_all(jobs).await
}

/// Unpacks the blob file `blob` into the store (on a blocking thread).
async fn unpack_file(
    store: &LowerStore,
    diff_id: Digest,
    blob: PathBuf,
    in_userns: bool,
) -> Result<PathBuf, StepError> {
    let store = store.clone();
    let unpack_blob = blob.clone();
    let unpacked = tokio::task::spawn_blocking(move || {
        if in_userns {
            store.ensure_with(&diff_id, |dest, opts| {
                super::userns_unpack::unpack(&unpack_blob, dest, opts)
            })
        } else {
            store.ensure(&diff_id, &unpack_blob)
        }
    })
    .await;
    match unpacked {
        Ok(r) => r.map_err(|e| super::error::RunError::from(e).into()),
        Err(join) => Err(super::error::RunError::io(&blob, std::io::Error::other(join)).into()),
    }
}

/// Downloads a layer and unpacks it as it arrives: a task forwards the verified stream to
/// the blocking thread that unpacks it, so the transfer and the unpack overlap. The stream
/// verifies the blob's digest at its end, and the store publishes the directory only after
/// the stream ended (and the unpack checked the diff_id).
async fn unpack_download(
    registry: &Registry,
    store: &LowerStore,
    diff_id: Digest,
    host: &str,
    repository: &str,
    descriptor: &regbuild_oci::manifest::Descriptor,
) -> Result<PathBuf, StepError> {
    tracing::info!(digest = %descriptor.digest, "RUN: downloading a layer to unpack it");
    let repo = registry.repo(host, repository, Scopes::pull(repository));
    let _job = registry.job().await;
    let blob = repo
        .get_blob(&descriptor.digest, Some(descriptor.size))
        .await?;
    let failure = blob.failure_slot();
    // A few chunks in flight: the download may run ahead of the unpack, not without bound.
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let forward = async move {
        let mut stream = blob.into_stream();
        while let Some(item) = stream.next().await {
            // A closed channel: the unpack stopped (and says why).
            if tx.send(item).await.is_err() {
                break;
            }
        }
    };
    let store = store.clone();
    let name = descriptor.digest.to_string();
    let unpack = tokio::task::spawn_blocking(move || {
        let stream = Downloaded {
            rx,
            chunk: bytes::Bytes::new(),
        };
        store.ensure_from(&diff_id, &name, stream)
    });
    let (unpacked, ()) = tokio::join!(unpack, forward);
    match unpacked {
        Ok(Ok(dir)) => Ok(dir),
        Ok(Err(e)) => {
            // The registry's own words (a digest mismatch, a broken body) when it failed.
            let recorded = failure.lock().ok().and_then(|mut f| f.take());
            Err(recorded.map_or_else(|| super::error::RunError::from(e).into(), StepError::from))
        }
        Err(join) => Err(StepError::Download(std::io::Error::other(join))),
    }
}

/// The receiving end of a download, as a blocking reader (for the unpacking thread).
struct Downloaded {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl std::io::Read for Downloaded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = self.chunk.len().min(buf.len());
        let taken = self.chunk.split_to(n);
        buf.get_mut(..n)
            .ok_or_else(|| std::io::Error::other("short buffer"))?
            .copy_from_slice(&taken);
        Ok(n)
    }
}

/// Opens `rel` inside the lower directory `dir` as if `dir` were `/`: the image's symlinks
/// (`/etc -> /etc`, `-> ../../..`) resolve within it, never to a host path
/// (`openat2(RESOLVE_IN_ROOT)`, Linux 5.6; older kernels: not found).
fn open_in(
    dir: &Path,
    rel: &str,
    flags: rustix::fs::OFlags,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let root = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    Ok(rustix::fs::openat2(
        &root,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )?)
}

/// A file of the merged view of `lowers` (the topmost layer that has the path decides; a
/// whiteout hides it), read as text. Symlinks resolve inside the layer that has them.
pub fn read_file(lowers: &[PathBuf], path: &str) -> Option<String> {
    use rustix::fs::{FileType, OFlags};
    let rel = path.trim_start_matches('/');
    for dir in lowers.iter().rev() {
        let Ok(found) = open_in(dir, rel, OFlags::PATH) else {
            continue;
        };
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&found).ok()?.st_mode);
        if kind != FileType::RegularFile {
            // A whiteout (a character device) or anything else: no such file.
            return None;
        }
        let file = std::fs::File::from(open_in(dir, rel, OFlags::RDONLY).ok()?);
        return std::io::read_to_string(file).ok();
    }
    None
}

/// Whether `path` is a directory in the merged view of `lowers` (whiteouts hide it).
/// Symlinks resolve inside the layer that has them.
pub fn is_dir(lowers: &[PathBuf], path: &str) -> bool {
    use rustix::fs::{FileType, OFlags};
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return true;
    }
    for dir in lowers.iter().rev() {
        match open_in(dir, rel, OFlags::PATH) {
            Ok(fd) => {
                return rustix::fs::fstat(&fd)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
            }
            // The name is there but leads nowhere (a dangling symlink): not a directory.
            Err(_) if open_in(dir, rel, OFlags::PATH | OFlags::NOFOLLOW).is_ok() => return false,
            Err(_) => {}
        }
    }
    false
}

/// The account files of the merged view, for USER.
pub fn accounts(lowers: &[PathBuf]) -> crate::builder::owner::Accounts {
    crate::builder::owner::Accounts {
        passwd: read_file(lowers, "/etc/passwd"),
        group: read_file(lowers, "/etc/group"),
    }
}

/// The home directory of `uid` in `/etc/passwd`, for `HOME` (BuildKit sets it the same way).
pub fn home_of(passwd: Option<&str>, uid: u64) -> String {
    passwd
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u64>().ok() == Some(uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topmost_layer_decides_and_whiteouts_hide() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(a.join("etc")).unwrap();
        std::fs::create_dir_all(b.join("etc")).unwrap();
        std::fs::write(a.join("etc/passwd"), "old").unwrap();
        std::fs::write(a.join("etc/group"), "g").unwrap();
        std::fs::write(b.join("etc/passwd"), "new").unwrap();
        let lowers = vec![a.clone(), b.clone()];
        assert_eq!(read_file(&lowers, "/etc/passwd").as_deref(), Some("new"));
        assert_eq!(read_file(&lowers, "/etc/group").as_deref(), Some("g"));
        assert_eq!(read_file(&lowers, "/etc/shadow"), None);
        assert!(is_dir(&lowers, "/etc"));
        assert!(!is_dir(&lowers, "/etc/passwd"));
        assert!(!is_dir(&lowers, "/nope"));
        assert_eq!(
            home_of(
                Some("root:x:0:0::/root:/bin/sh\nu:x:7:7::/home/u:/bin/sh"),
                7
            ),
            "/home/u"
        );
        assert_eq!(home_of(None, 7), "/root");
    }

    #[test]
    fn the_image_s_symlinks_never_lead_to_the_host_s_files() {
        let d = tempfile::tempdir().unwrap();
        let hostile = d.path().join("layer");
        std::fs::create_dir_all(hostile.join("usr/lib")).unwrap();
        // /etc of the image points at the host's /etc, absolutely or by climbing.
        std::os::unix::fs::symlink("/etc", hostile.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../../../../etc", hostile.join("usr/lib/etc"))
            .unwrap();
        let lowers = vec![hostile.clone()];
        assert_eq!(
            read_file(&lowers, "/etc/passwd"),
            None,
            "the host's passwd was read"
        );
        assert_eq!(read_file(&lowers, "/usr/lib/etc/passwd"), None);
        assert!(!is_dir(&lowers, "/etc/ssl"), "a host directory was seen");
        // Within the image, a symlink resolves as in the image.
        std::fs::create_dir_all(hostile.join("srv/etc")).unwrap();
        std::fs::write(hostile.join("srv/etc/passwd"), "img").unwrap();
        std::fs::remove_file(hostile.join("etc")).unwrap();
        std::os::unix::fs::symlink("/srv/etc", hostile.join("etc")).unwrap();
        assert_eq!(read_file(&lowers, "/etc/passwd").as_deref(), Some("img"));
        assert!(is_dir(&lowers, "/etc"));
    }
}
