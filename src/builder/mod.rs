//! Building an image from a Dockerfile: the orchestration over the front end
//! (`regbuild-frontend`), the filesystem and layers (`regbuild-fs`) and the registry
//! (`regbuild-registry`).
//!
//! `stage` is the stage model every step reads and extends (a stage's image, its layers and
//! where their bytes are), `stage_layers` the one owner of a stage's new layers from the step
//! that makes each to the stage's end; `orchestrate` walks the evaluated stages and applies each instruction to the stage's
//! image, `schedule` says which stages may be built at the same time, `preflight` refuses missing context sources before any stage is built; `copy` carries out COPY/ADD (`add` gives an ADD'ed archive's entries their archive
//! metadata, `add_remote` fetches ADD's URLs and Git repositories, `owner` resolves `--chown` names, `pathindex` lists a base's paths when a step
//! depends on them); `rootfs` and `from_image` materialise paths of another stage or image;
//! `cache` and `remote_cache` find layers built before (locally, or in a registry by key and in its build cache artifact), `cache_artifact` adds that artifact to what a push writes, `cache_dir` is the cache directory's lock, privacy and use stamps, `scratch` the build's and steps' scratch and the sweep of what killed builds left;
//! `layering` splits a COPY into layers, `pack` packs them, `squash` squashes; `assemble`
//! turns the result into the blobs and manifest a registry must hold. `error` is why a step
//! failed (`StepError`), which `BuildError::At` carries with the Dockerfile's `file:line`.

pub mod add;
pub mod add_remote;
pub mod assemble;
pub mod cache;
pub mod cache_artifact;
pub mod cache_dir;
pub mod copy;
pub mod error;
pub mod from_image;
pub mod layer;
pub mod layering;
pub mod orchestrate;
pub mod owner;
pub mod pack;
pub mod pathindex;
pub mod preflight;
pub mod remote_cache;
pub mod report;
pub mod rootfs;
pub mod run;
pub mod schedule;
pub mod scratch;
pub mod squash;
pub mod stage;
pub mod stage_layers;

pub use error::BuildError;
pub use error::StepError;
pub use orchestrate::{build, BuildRequest, BuiltImage};
pub use report::DryRunStop;
