//! Packing a stage's new layers: independent COPY layers are packed two at a time (each one
//! also compresses on all cores), and each is handed to the early uploader as soon as it is
//! done (or streamed to it while it packs), so uploads overlap packing. A layer's sources
//! must be unchanged since its key was computed, or packing fails naming the file.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::builder::cache::{CachedLayer, FileStamp, LayerCache};
use regbuild_fs::growing::{Done, EndGuard, Growing};
use regbuild_fs::layer::{self, BuiltLayer, LayerEntry, LayerOptions};
use regbuild_registry::progress::{Event, Progress};
use regbuild_registry::publish::EarlyUploads;

/// A COPY layer the cache did not know: what to pack, and the cache key to record it under.
pub struct PackJob {
    pub entries: Vec<LayerEntry>,
    pub opts: LayerOptions,
    pub key: String,
    /// The instruction, as progress shows it.
    pub id: String,
    /// The caches were asked and do not know it: almost surely new to the registry, so it
    /// may be uploaded while it is packed.
    pub surely_new: bool,
    /// The sources as they were when the key was computed.
    pub stamps: SourceStamps,
}

/// Why a layer could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0}")]
    Layer(#[from] layer::LayerError),
    #[error("{0}")]
    Changed(#[from] SourceChanged),
    /// Skipped because another layer failed first (never the error reported).
    #[error("not packed")]
    NotPacked,
}

/// A layer's source that changed between its key and its packing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: changed while the image was being built (its layer key would not match its bytes); build again", .0.display())]
pub struct SourceChanged(pub std::path::PathBuf);

/// The stamps of a layer's source files, taken before its key is computed.
#[derive(Default)]
pub struct SourceStamps(Vec<(std::path::PathBuf, FileStamp)>);

impl SourceStamps {
    pub fn take(entries: &[LayerEntry]) -> std::io::Result<SourceStamps> {
        let mut out = Vec::new();
        for e in entries {
            if let layer::EntryKind::File { source, .. } = &e.kind {
                let stamp = FileStamp::of(source).map_err(|err| {
                    std::io::Error::new(err.kind(), format!("{}: {err}", source.display()))
                })?;
                out.push((source.clone(), stamp));
            }
        }
        Ok(SourceStamps(out))
    }

    /// An error naming the first source that changed since the stamps were taken.
    fn check(&self) -> Result<(), SourceChanged> {
        for (path, before) in &self.0 {
            if FileStamp::of(path).ok().as_ref() != Some(before) {
                return Err(SourceChanged(path.clone()));
            }
        }
        Ok(())
    }
}

type Packed = Result<Arc<BuiltLayer>, PackError>;

/// Layers packed at the same time.
const MAX_PACKERS: usize = 2;

/// Where packed layers go besides their result.
pub struct PackSinks<'a> {
    pub tmp: &'a Path,
    pub cache: Option<&'a LayerCache>,
    pub progress: &'a dyn Progress,
    pub early: Option<&'a EarlyUploads>,
}

/// Packs `jobs` (at most [`MAX_PACKERS`] at once) and returns the layers in the
/// order of `jobs`; on failure, the index of the first job that failed and why.
pub fn pack_all(
    jobs: Vec<PackJob>,
    sinks: &PackSinks<'_>,
) -> Result<Vec<Arc<BuiltLayer>>, (usize, PackError)> {
    let count = jobs.len();
    // Two at a time at most: each already compresses on every core, so more would only
    // multiply threads and buffers (cores²) without more throughput.
    let packers = MAX_PACKERS.min(count).max(1);
    let jobs: Vec<Mutex<Option<PackJob>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    let results: Vec<Mutex<Option<Packed>>> = (0..count).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..packers {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let Some(job) = jobs[i].lock().ok().and_then(|mut j| j.take()) else {
                    return;
                };
                let result = pack_one(job, sinks);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(result);
                }
            });
        }
    });
    let mut results: Vec<Option<Packed>> = results
        .into_iter()
        .map(|r| r.into_inner().ok().flatten())
        .collect();
    // The first real failure, before any job that was skipped because of one.
    if let Some(i) = results.iter().position(|r| matches!(r, Some(Err(_)))) {
        if let Some(Err(e)) = results.swap_remove(i) {
            return Err((i, e));
        }
    }
    let mut out = Vec::with_capacity(count);
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(Ok(layer)) => out.push(layer),
            _ => return Err((i, PackError::NotPacked)),
        }
    }
    Ok(out)
}

fn pack_one(job: PackJob, sinks: &PackSinks<'_>) -> Packed {
    let id = job.id.as_str();
    // A layer surely new streams to the registry while it packs; others are offered once
    // their digest is known (and HEADed first).
    let streaming = match sinks.early {
        Some(early) if job.surely_new && early.streams() => {
            let g = Growing::new();
            early.offer_growing(g.clone());
            Some(g)
        }
        _ => None,
    };
    let guard = streaming.clone().map(EndGuard);
    let built = layer::build_layer_announced(
        job.entries,
        &job.opts,
        sinks.tmp,
        &mut |bytes| sinks.progress.event(Event::LayerPacking { id, bytes }),
        streaming.clone(),
    )?;
    // Same stamps after packing: the bytes are those the key was computed from.
    job.stamps.check()?;
    if let Some(g) = &streaming {
        g.finish(Ok(Done {
            digest: built.digest.clone(),
            size: built.size,
        }));
    }
    drop(guard);
    sinks.progress.event(Event::LayerPacked {
        id,
        digest: built.digest.as_str(),
        size: built.size,
    });
    let mut built = built;
    built.key = Some(job.key.clone());
    if let Some(cache) = sinks.cache {
        cache.put(
            &job.key,
            &CachedLayer {
                digest: built.digest.clone(),
                diff_id: built.diff_id.clone(),
                size: built.size,
                uncompressed_size: built.uncompressed_size,
                media_type: built.media_type.to_string(),
            },
        );
    }
    let built = Arc::new(built);
    match sinks.early {
        Some(early) if streaming.is_none() => {
            early.offer(
                built.digest.clone(),
                built.size,
                built.file.to_path_buf(),
                built.clone(),
            );
        }
        _ => {}
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_entry(path: &Path) -> LayerEntry {
        LayerEntry {
            path: "f".into(),
            kind: layer::EntryKind::File {
                source: path.to_path_buf(),
                size: std::fs::metadata(path).unwrap().len(),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    #[test]
    fn a_source_replaced_or_resized_after_its_stamp_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "aaaa").unwrap();
        let stamps = SourceStamps::take(&[file_entry(&f)]).unwrap();
        assert_eq!(stamps.check(), Ok(()));
        // Same size, new file (as editors save): another inode.
        let tmp = dir.path().join("f.new");
        std::fs::write(&tmp, "bbbb").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        let err = stamps.check().unwrap_err().to_string();
        assert!(err.contains(&f.display().to_string()), "{err}");
        let stamps = SourceStamps::take(&[file_entry(&f)]).unwrap();
        std::fs::write(&f, "longer").unwrap();
        assert!(stamps.check().is_err());
    }
}
