//! `COPY --from=<image or stage>` keyed by what it reads, not by what it extracted: the
//! source's layer digests (a built stage's layers are known by digest too, whether packed
//! here or found in a cache) and the instruction's settings decide the
//! layer's bytes, so its key is known before any source layer is fetched. A cached layer
//! (local cache or a pushed image's annotation) then costs no download at all; its entries
//! are materialised later only if something needs them (the registry lacks the blob).

use std::path::PathBuf;
use std::sync::Arc;

use crate::builder::error::StepError;
use crate::builder::layer::{DeferredEntries, StageLayer};
use regbuild_context::context::SourceOptions;
use regbuild_fs::layer::{LayerEntry, LayerOptions};
use regbuild_registry::Registry;

/// Bumped whenever what the key covers changes (v2: files keep `security.capability`;
/// `--exclude` and `--parents`).
const FORMAT: &str = "regbuild-copy-from-image-v2";

/// Everything besides the source bytes that decides the layer of one `COPY --from=<image>`.
pub struct FromImageCopy {
    /// The instruction as the history writes it.
    pub instruction: String,
    /// The source image's layer digests, bottom first.
    pub layers: Vec<String>,
    /// Source paths inside the image (relative, `.` for the root).
    pub sources: Vec<String>,
    /// The in-image destination (WORKDIR applied).
    pub dest: String,
    pub chown: Option<(u64, u64)>,
    pub chmod: Option<u32>,
    /// `--exclude` patterns and `--parents`: they decide which paths are read.
    pub exclude: Vec<String>,
    pub parents: bool,
    pub keep_setuid: bool,
    /// The destination's directory symlinks (`crate::builder::pathindex::View::symlinks_fingerprint`):
    /// where the entries land depends on them.
    pub lower: String,
}

impl FromImageCopy {
    /// The layer's key (the same with or without a local cache: it goes into the image).
    pub fn key(&self, opts: &LayerOptions) -> String {
        let mut h = crate::builder::cache::KeyFields::new();
        let mut field = |bytes: &[u8]| h.field(bytes);
        field(FORMAT.as_bytes());
        field(format!("{:?} mtime={}", opts.compression, opts.mtime).as_bytes());
        field(self.instruction.as_bytes());
        field(self.layers.len().to_string().as_bytes());
        for l in &self.layers {
            field(l.as_bytes());
        }
        field(self.sources.len().to_string().as_bytes());
        for s in &self.sources {
            field(s.as_bytes());
        }
        field(self.dest.as_bytes());
        field(format!("{:?} {:?} {}", self.chown, self.chmod, self.keep_setuid).as_bytes());
        field(format!("exclude={:?} parents={}", self.exclude, self.parents).as_bytes());
        field(self.lower.as_bytes());
        h.hex()
    }
}

/// Turns a materialised directory (with the extended attributes its layers recorded) into
/// a layer's entries.
pub type CollectEntries = Arc<
    dyn Fn(&std::path::Path, &SourceOptions) -> Result<Vec<LayerEntry>, StepError> + Send + Sync,
>;

/// The entries of a cached `COPY --from=<image>` layer, materialised only when called:
/// `collect` turns the extracted directory into entries (ownership, modes, setuid
/// stripping), as the uncached path does.
pub fn deferred(
    registry: &Registry,
    layers: Vec<StageLayer>,
    wanted: Vec<PathBuf>,
    tmp: PathBuf,
    collect: CollectEntries,
) -> DeferredEntries {
    let registry = registry.clone();
    Arc::new(move || {
        let handle = tokio::runtime::Handle::try_current().map_err(StepError::NoRuntime)?;
        let root = tempfile::tempdir_in(&tmp).map_err(|source| StepError::TempDir {
            dir: tmp.clone(),
            source,
        })?;
        let found = handle.block_on(crate::builder::rootfs::extract_paths(
            &registry,
            &layers,
            wanted.clone(),
            root.path(),
            &tmp,
        ))?;
        let options = SourceOptions {
            recorded_xattrs: Some(found.xattrs),
            ..Default::default()
        };
        let entries = collect(root.path(), &options)?;
        // The layer reads these files when it is packed: keep the directory until then.
        let _kept = root.keep();
        Ok(entries)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy() -> FromImageCopy {
        FromImageCopy {
            instruction: "COPY --from=x /a /b".into(),
            layers: vec!["sha256:1".into(), "sha256:2".into()],
            sources: vec!["a".into()],
            dest: "/b".into(),
            chown: None,
            chmod: None,
            exclude: Vec::new(),
            parents: false,
            keep_setuid: false,
            lower: String::new(),
        }
    }

    #[test]
    fn the_key_covers_the_source_layers_and_every_setting() {
        let opts = LayerOptions::default();
        let base = copy().key(&opts);
        assert_eq!(base, copy().key(&opts));
        let changed: Vec<FromImageCopy> = vec![
            FromImageCopy {
                layers: vec!["sha256:1".into(), "sha256:3".into()],
                ..copy()
            },
            FromImageCopy {
                exclude: vec!["*.md".into()],
                ..copy()
            },
            FromImageCopy {
                parents: true,
                ..copy()
            },
            FromImageCopy {
                layers: vec!["sha256:1".into()],
                ..copy()
            },
            FromImageCopy {
                dest: "/c".into(),
                ..copy()
            },
            FromImageCopy {
                chown: Some((1, 1)),
                ..copy()
            },
            FromImageCopy {
                chmod: Some(0o700),
                ..copy()
            },
            FromImageCopy {
                keep_setuid: true,
                ..copy()
            },
            FromImageCopy {
                lower: "bin -> usr/bin".into(),
                ..copy()
            },
            FromImageCopy {
                sources: vec!["a".into(), "c".into()],
                ..copy()
            },
        ];
        for c in changed {
            assert_ne!(base, c.key(&opts));
        }
        let later = LayerOptions { mtime: 5, ..opts };
        assert_ne!(base, copy().key(&later));
    }
}
