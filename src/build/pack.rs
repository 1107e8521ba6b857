//! Packing a stage's new layers: independent COPY layers are packed at the same time (each
//! one also compresses on all cores), and each is handed to the early uploader as soon as it
//! is done, so the upload of one layer overlaps the packing of the next.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::cache::{CachedLayer, LayerCache};
use super::layer::{self, BuiltLayer, LayerEntry, LayerOptions};
use crate::growing::{Done, EndGuard, Growing};
use crate::progress::{Event, Progress};
use crate::publish::EarlyUploads;

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
}

type Packed = Result<Arc<BuiltLayer>, String>;

/// Where packed layers go besides their result.
pub struct PackSinks<'a> {
    pub tmp: &'a Path,
    pub cache: Option<&'a LayerCache>,
    pub progress: &'a dyn Progress,
    pub early: Option<&'a EarlyUploads>,
}

/// Packs `jobs` (at most as many at once as there are cores) and returns the layers in the
/// order of `jobs`; on failure, the index of the first job that failed and why.
pub fn pack_all(
    jobs: Vec<PackJob>,
    sinks: &PackSinks<'_>,
) -> Result<Vec<Arc<BuiltLayer>>, (usize, String)> {
    let count = jobs.len();
    let packers = super::compress::threads().min(count).max(1);
    let jobs: Vec<Mutex<Option<PackJob>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    let results: Vec<Mutex<Option<Packed>>> = (0..count).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..packers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || failed.load(Ordering::Relaxed) {
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
    let mut out = Vec::with_capacity(count);
    for (i, r) in results.into_iter().enumerate() {
        match r.into_inner().ok().flatten() {
            Some(Ok(layer)) => out.push(layer),
            Some(Err(e)) => return Err((i, e)),
            // Not started because an earlier job failed; that failure is reported first.
            None => return Err((i, "not packed: another layer failed".into())),
        }
    }
    Ok(out)
}

fn pack_one(job: PackJob, sinks: &PackSinks<'_>) -> Packed {
    let id = job.id.as_str();
    // A layer surely new streams to the registry while it packs; others are offered once
    // their digest is known (and HEADed first).
    let streaming = match sinks.early {
        Some(early) if job.surely_new && early.stream => {
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
    )
    .map_err(|e| e.to_string())?;
    if let (Some(g), Ok(digest)) = (&streaming, built.digest.parse()) {
        g.finish(Ok(Done {
            digest,
            size: built.size,
        }));
    }
    drop(guard);
    sinks.progress.event(Event::LayerPacked {
        id,
        digest: &built.digest,
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
    match (sinks.early, built.digest.parse()) {
        (Some(early), Ok(digest)) if streaming.is_none() => {
            early.offer(digest, built.size, built.file.to_path_buf(), built.clone());
        }
        _ => {}
    }
    Ok(built)
}
