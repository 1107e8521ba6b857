//! `--squash`: the layers this build adds (`new`), or the whole image (`all`), become one
//! layer. New layers are merged from their entries (a later layer's path replaces an
//! earlier one, and a non-directory hides what an earlier layer had below it); the whole
//! image is materialised with whiteouts applied, then packed again.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::builder::error::StepError;
use crate::builder::layer::StageLayer;
use crate::builder::rootfs;
use crate::builder::stage::StageImage;
use regbuild_context::context::{self, CopyRequest};
use regbuild_fs::layer::{self, EntryKind, LayerEntry, LayerOptions};
use regbuild_registry::Registry;

/// What `--squash` squashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Squash {
    #[default]
    None,
    /// Only the layers this build made.
    New,
    /// Every layer, the base's included.
    All,
}

/// Merges layer entry lists, lowest first.
pub fn merge(layers: &[&Vec<LayerEntry>]) -> Vec<LayerEntry> {
    let mut out: BTreeMap<PathBuf, LayerEntry> = BTreeMap::new();
    for entries in layers {
        for e in entries.iter() {
            if !matches!(e.kind, EntryKind::Dir) {
                // A file or link replaces whatever a lower layer had at or below its path.
                let below: Vec<PathBuf> = out
                    .range(e.path.clone()..)
                    .take_while(|(p, _)| p.starts_with(&e.path))
                    .map(|(p, _)| p.clone())
                    .collect();
                for p in below {
                    out.remove(&p);
                }
            }
            out.insert(e.path.clone(), e.clone());
        }
    }
    out.into_values().collect()
}

/// Squashes `image` in place; `entries` holds the entries of every local layer by digest.
#[allow(clippy::too_many_arguments)]
pub async fn squash(
    registry: &Registry,
    image: &mut StageImage,
    mode: Squash,
    entries: &HashMap<String, Vec<LayerEntry>>,
    tmp: &std::path::Path,
    epoch: u64,
    compression: regbuild_fs::compress::Compression,
    created: &str,
) -> Result<(), StepError> {
    let (keep, merged) = match mode {
        Squash::None => return Ok(()),
        Squash::New => {
            let keep = image
                .layers
                .iter()
                .rposition(|l| matches!(l, StageLayer::Remote { .. }))
                .map_or(0, |i| i + 1);
            if image.layers.len() - keep < 2 {
                return Ok(()); // nothing to merge
            }
            let lists: Vec<&Vec<LayerEntry>> = image.layers[keep..]
                .iter()
                .filter_map(|l| match l {
                    StageLayer::Local(b) => entries.get(b.digest.as_str()),
                    StageLayer::Cached(c) => entries.get(c.record.digest.as_str()),
                    StageLayer::Remote { .. } => None,
                })
                .collect();
            (keep, merge(&lists))
        }
        Squash::All => {
            if image.layers.len() < 2 {
                return Ok(());
            }
            let root = tempfile::tempdir_in(tmp).map_err(|source| StepError::TempDir {
                dir: tmp.to_path_buf(),
                source,
            })?;
            let found =
                rootfs::extract_paths(registry, &image.layers, Vec::new(), root.path(), tmp)
                    .await?;
            // File capabilities too, from the headers (the disk may not hold them).
            let options = regbuild_context::context::SourceOptions {
                recorded_xattrs: Some(found.xattrs),
                ..Default::default()
            };
            let mut all = tokio::task::block_in_place(|| {
                context::collect(&CopyRequest {
                    context: root.path(),
                    sources: &[".".to_string()],
                    dest: "/",
                    chown: None,
                    chmod: None,
                    ignore: &regbuild_context::dockerignore::DockerIgnore::default(),
                    options: &options,
                })
            })?;
            // Ownership and exact modes come from the layers' headers, not the disk copy.
            for e in &mut all {
                if let Some(m) = found.meta.get(&e.path) {
                    e.uid = m.uid;
                    e.gid = m.gid;
                    if !matches!(e.kind, EntryKind::Symlink { .. }) {
                        e.mode = m.mode;
                    }
                }
            }
            let _kept = root.keep();
            (0, all)
        }
    };
    let count = image.layers.len() - keep;
    let opts = LayerOptions {
        mtime: epoch,
        compression,
        threads: regbuild_fs::compress::threads(),
    };
    let tmp = tmp.to_path_buf();
    let built =
        tokio::task::block_in_place(|| layer::build_layer(merged, &opts, &tmp, &mut |_| {}))?;
    image.config.squash_layers(
        keep,
        built.diff_id.as_str(),
        created,
        &format!(
            "regbuild --squash: {count} layer{} in one",
            if count == 1 { "" } else { "s" }
        ),
    );
    image.layers.truncate(keep);
    image.layers.push(StageLayer::Local(Arc::new(built)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str, src: &str) -> LayerEntry {
        LayerEntry {
            path: p.into(),
            kind: EntryKind::File {
                source: src.into(),
                size: 1,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    fn dir(p: &str) -> LayerEntry {
        LayerEntry {
            path: p.into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    #[test]
    fn upper_layers_replace_lower_paths_and_what_was_below_them() {
        let lower = vec![
            dir("app"),
            file("app/a", "/l/a"),
            dir("app/lib"),
            file("app/lib/x", "/l/x"),
        ];
        let upper = vec![file("app/a", "/u/a"), file("app/lib", "/u/lib")];
        let merged = merge(&[&lower, &upper]);
        let paths: Vec<String> = merged
            .iter()
            .map(|e| e.path.display().to_string())
            .collect();
        assert_eq!(paths, vec!["app", "app/a", "app/lib"]);
        assert!(
            matches!(&merged[1].kind, EntryKind::File { source, .. } if source == std::path::Path::new("/u/a"))
        );
        assert!(matches!(merged[2].kind, EntryKind::File { .. }));
    }
}
