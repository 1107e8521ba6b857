//! The new layers of the stage being built, from the step that makes each to the stage's
//! end: one owner for every state a new layer passes through — known (found in a cache, or
//! packed), to pack (packed together at the stage's end, or before a RUN needs its files),
//! packing on a thread of its own (a RUN's layer, already in the lower store) — and for what
//! the build asks of them: the identities later RUN keys are made of, the paths a COPY sees,
//! the lower directories a RUN runs on, and the finished list of layers.
//!
//! Not here: what a step does (`copy`, `run`, `orchestrate`), how a layer is packed (`pack`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::builder::error::BuildError;
use crate::builder::error::StepError;
use crate::builder::layer::StageLayer;
use crate::builder::pack::{pack_all, PackJob, PackSinks};
use crate::builder::pathindex::Source;
use crate::builder::run::lowers::Lower;
use crate::builder::stage::{NewLayer, Packing, StageImage, StepOutput};
use regbuild_fs::layer::{BuiltLayer, LayerEntry};
use regbuild_oci::digest::Digest;

/// The stage's new layers, in instruction order.
#[derive(Default)]
pub struct StageLayers {
    slots: Vec<Slot>,
}

/// One new layer: which step made it and where it stands.
struct Slot {
    about: About,
    state: State,
}

/// What stays true of a slot whatever its state.
struct About {
    line: usize,
    text: String,
    /// Its position in the config's diff_ids.
    diff_index: usize,
    entries: Vec<LayerEntry>,
}

enum State {
    /// Found in a cache, or packed.
    Known(StageLayer),
    /// Packed at the stage's end, or before a RUN step needs its files.
    ToPack(PackJob),
    /// Being packed on its own thread, already in the layer store: joined at the stage's end.
    Packing(Packing),
}

/// Where a stage's finished layers are recorded for the whole build.
pub struct Finished<'a> {
    pub all_layers: &'a mut Vec<Arc<BuiltLayer>>,
    pub new_layers: &'a mut Vec<(Digest, u64, String)>,
    pub layer_entries: &'a mut HashMap<String, Vec<LayerEntry>>,
}

impl StageLayers {
    /// Adds a step's layers (its history entries with them); a layer built on the spot is
    /// recorded in `all_layers` to be kept alive until the push is done.
    pub fn push(
        &mut self,
        image: &mut StageImage,
        line: usize,
        output: StepOutput,
        created: &str,
        all_layers: &mut Vec<Arc<BuiltLayer>>,
    ) {
        for part in output.layers {
            let diff_index = image.config.diff_id_count();
            // A layer still to pack gets its diff_id at the stage's end.
            let (diff_id, state) = match part.layer {
                NewLayer::Pack(job) => (String::new(), State::ToPack(job)),
                NewLayer::Packing(p) => (p.diff_id.to_string(), State::Packing(p)),
                NewLayer::Cached(c) => (
                    c.record.diff_id.to_string(),
                    State::Known(StageLayer::Cached(Arc::new(c))),
                ),
                NewLayer::Built(b) => {
                    all_layers.push(b.clone());
                    (b.diff_id.to_string(), State::Known(StageLayer::Local(b)))
                }
            };
            image.config.push_layer(&diff_id, created, &part.label);
            self.slots.push(Slot {
                about: About {
                    line,
                    text: part.label,
                    diff_index,
                    entries: part.entries,
                },
                state,
            });
        }
    }

    /// The identity of every layer below the next step (RUN keys): the stage's layers, then
    /// its new ones (a layer not packed yet by its cache key).
    pub fn identities(&self, image: &StageImage) -> Vec<String> {
        let new = self.slots.iter().map(|s| match &s.state {
            State::Known(l) => crate::builder::run::layer_identity(l),
            State::ToPack(job) => job.key.clone(),
            State::Packing(p) => p.key.clone(),
        });
        image
            .layers
            .iter()
            .map(crate::builder::run::layer_identity)
            .chain(new)
            .collect()
    }

    /// The new layers as a path index reads them (a layer not packed yet by its entries).
    pub fn view_sources(&self) -> impl Iterator<Item = Source<'_>> {
        self.slots.iter().map(|s| match &s.state {
            State::Known(layer) => Source::Layer(layer),
            State::ToPack(job) => Source::Pending {
                key: &job.key,
                entries: &job.entries,
            },
            State::Packing(p) => Source::Pending {
                key: &p.key,
                entries: &p.entries,
            },
        })
    }

    /// Packs the layers still to pack now, in parallel (a RUN step needs them as files), and
    /// fills in their diff_ids.
    pub fn pack_pending(
        &mut self,
        image: &mut StageImage,
        sinks: &PackSinks<'_>,
        file: &str,
        all_layers: &mut Vec<Arc<BuiltLayer>>,
    ) -> Result<(), BuildError> {
        if !self
            .slots
            .iter()
            .any(|s| matches!(s.state, State::ToPack(_)))
        {
            return Ok(());
        }
        let (mut waiting, jobs) = split_to_pack(std::mem::take(&mut self.slots));
        let lines: Vec<usize> = waiting
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(a, _)| a.line)
            .collect();
        let packed = pack(jobs, sinks, file, &lines)?;
        let mut packed = packed.into_iter();
        for (about, state) in waiting.drain(..) {
            let state = match state {
                Some(s) => s,
                None => {
                    let b = packed
                        .next()
                        .ok_or_else(|| packed_fewer(file, about.line))?;
                    image
                        .config
                        .set_diff_id(about.diff_index, b.diff_id.as_str());
                    all_layers.push(b.clone());
                    State::Known(StageLayer::Local(b))
                }
            };
            self.slots.push(Slot { about, state });
        }
        Ok(())
    }

    /// The stage's layers as the lower directories of a RUN step, bottom first: its own,
    /// then the new ones (those packing in the background are in the store already).
    /// [`StageLayers::pack_pending`] must have run.
    pub fn lowers(&self, image: &StageImage) -> Result<Vec<Lower>, StepError> {
        let mut out: Vec<Lower> = image.layers.iter().cloned().map(Lower::Layer).collect();
        for s in &self.slots {
            out.push(match &s.state {
                State::Known(l) => Lower::Layer(l.clone()),
                State::Packing(p) => Lower::Stored(p.lower.clone()),
                State::ToPack(_) => {
                    return Err(StepError::LayerNotPackedBelowRun {
                        layer: s.about.text.clone(),
                    })
                }
            });
        }
        Ok(out)
    }

    /// Packs what is still to pack (in parallel), waits for the layers packing in the
    /// background, and appends every new layer to `image` in order. Returns the (line,
    /// digest) of the background ones, which their RUN reports lack until now.
    pub fn finish(
        self,
        image: &mut StageImage,
        sinks: &PackSinks<'_>,
        file: &str,
        out: &mut Finished<'_>,
    ) -> Result<Vec<(usize, Digest)>, BuildError> {
        let mut joined = Vec::new();
        let mut slots = Vec::with_capacity(self.slots.len());
        for Slot { about, state } in self.slots {
            let state = match state {
                // Packed meanwhile, most likely: waited for here.
                State::Packing(p) => {
                    let b = crate::builder::run::finish_packing(
                        p,
                        &about.text,
                        sinks.cache,
                        sinks.progress,
                        sinks.early,
                    )
                    .map_err(|e| at(file, about.line, e))?;
                    out.all_layers.push(b.clone());
                    joined.push((about.line, b.digest.clone()));
                    State::Known(StageLayer::Local(b))
                }
                other => other,
            };
            slots.push(Slot { about, state });
        }
        let mut rest = StageLayers { slots };
        rest.pack_pending(image, sinks, file, out.all_layers)?;
        for Slot { about, state } in rest.slots {
            let State::Known(layer) = state else {
                return Err(at(file, about.line, StepError::PackedFewer));
            };
            let (digest, size) = match &layer {
                StageLayer::Local(b) => (b.digest.clone(), b.size),
                StageLayer::Cached(c) => (c.record.digest.clone(), c.record.size),
                StageLayer::Remote { descriptor, .. } => {
                    (descriptor.digest.clone(), descriptor.size)
                }
            };
            out.layer_entries.insert(digest.to_string(), about.entries);
            out.new_layers.push((digest, size, about.text));
            image.layers.push(layer);
        }
        Ok(joined)
    }
}

/// The slots in order, those to pack without their state (`None`), and their jobs.
fn split_to_pack(slots: Vec<Slot>) -> (Vec<(About, Option<State>)>, Vec<PackJob>) {
    let mut jobs = Vec::new();
    let waiting = slots
        .into_iter()
        .map(|Slot { about, state }| match state {
            State::ToPack(job) => {
                jobs.push(job);
                (about, None)
            }
            other => (about, Some(other)),
        })
        .collect();
    (waiting, jobs)
}

/// Packs `jobs` (made by the steps at `lines`), naming the step of a failure.
fn pack(
    jobs: Vec<PackJob>,
    sinks: &PackSinks<'_>,
    file: &str,
    lines: &[usize],
) -> Result<Vec<Arc<BuiltLayer>>, BuildError> {
    tokio::task::block_in_place(|| pack_all(jobs, sinks)).map_err(|(i, e)| BuildError::At {
        file: file.to_string(),
        line: lines.get(i).copied().unwrap_or(0),
        source: Box::new(e.into()),
    })
}

fn packed_fewer(file: &str, line: usize) -> BuildError {
    at(file, line, StepError::PackedFewer)
}

fn at(file: &str, line: usize, e: StepError) -> BuildError {
    BuildError::At {
        file: file.to_string(),
        line,
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::pack::SourceStamps;
    use crate::builder::stage::StepLayer;
    use regbuild_fs::layer::{EntryKind, LayerOptions};

    fn scratch_image() -> StageImage {
        StageImage {
            config: regbuild_oci::config::ImageConfig::scratch("linux", "amd64", None),
            layers: Vec::new(),
            base: None,
            base_listed: false,
        }
    }

    /// A COPY of one file, still to pack, keyed `key`.
    fn to_pack(dir: &std::path::Path, key: &str, body: &str) -> StepOutput {
        let source = dir.join(key);
        std::fs::write(&source, body).unwrap();
        let entries = vec![LayerEntry {
            path: format!("{key}.txt").into(),
            kind: EntryKind::File {
                size: body.len() as u64,
                source,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }];
        let job = PackJob {
            stamps: SourceStamps::take(&entries).unwrap(),
            entries: entries.clone(),
            opts: LayerOptions::default(),
            key: key.to_string(),
            id: format!("COPY {key}"),
            surely_new: false,
        };
        StepOutput {
            layers: vec![StepLayer {
                layer: NewLayer::Pack(job),
                entries,
                label: format!("COPY {key}"),
            }],
            stripped_setuid: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn sinks(tmp: &std::path::Path) -> PackSinks<'_> {
        PackSinks {
            tmp,
            cache: None,
            progress: &regbuild_registry::progress::Quiet,
            early: None,
        }
    }

    #[test]
    fn a_layer_to_pack_is_known_by_its_key_and_refused_as_a_lower_until_packed() {
        let dir = tempfile::tempdir().unwrap();
        let mut image = scratch_image();
        let mut layers = StageLayers::default();
        let mut kept = Vec::new();
        layers.push(&mut image, 3, to_pack(dir.path(), "a", "A"), "", &mut kept);
        assert_eq!(layers.identities(&image), ["a"]);
        assert_eq!(
            image.config.diff_ids(),
            [""],
            "its diff_id comes when it is packed"
        );
        assert!(matches!(
            layers.view_sources().next(),
            Some(Source::Pending { key: "a", .. })
        ));
        let refused = match layers.lowers(&image) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a layer still to pack became a lower"),
        };
        assert!(refused.contains("COPY a"), "{refused}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn packing_keeps_identities_fills_diff_ids_and_finish_keeps_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut image = scratch_image();
        let mut layers = StageLayers::default();
        let mut kept = Vec::new();
        layers.push(&mut image, 3, to_pack(dir.path(), "a", "A"), "", &mut kept);
        layers.push(&mut image, 4, to_pack(dir.path(), "b", "B"), "", &mut kept);
        let before = layers.identities(&image);
        let sinks = sinks(dir.path());
        layers
            .pack_pending(&mut image, &sinks, "Dockerfile", &mut kept)
            .unwrap();
        // RUN keys below the next step must not change because its layers got packed.
        assert_eq!(layers.identities(&image), before);
        assert_eq!(kept.len(), 2);
        let diff_ids = image.config.diff_ids();
        assert!(
            diff_ids.iter().all(|d| d.starts_with("sha256:")),
            "{diff_ids:?}"
        );
        assert_eq!(layers.lowers(&image).unwrap().len(), 2);
        layers.push(&mut image, 5, to_pack(dir.path(), "c", "C"), "", &mut kept);
        let (mut all, mut new, mut entries) = (Vec::new(), Vec::new(), HashMap::new());
        let joined = layers
            .finish(
                &mut image,
                &sinks,
                "Dockerfile",
                &mut Finished {
                    all_layers: &mut all,
                    new_layers: &mut new,
                    layer_entries: &mut entries,
                },
            )
            .unwrap();
        assert!(joined.is_empty(), "nothing was packing in the background");
        let labels: Vec<&str> = new.iter().map(|(_, _, l)| l.as_str()).collect();
        assert_eq!(labels, ["COPY a", "COPY b", "COPY c"]);
        assert_eq!(image.layers.len(), 3);
        assert_eq!(entries.len(), 3);
        assert!(image.config.diff_ids().iter().all(|d| !d.is_empty()));
    }
}
