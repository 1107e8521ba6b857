//! Building an image from a Dockerfile without executing code.
//!
//! `dockerfile` parses, `stages` evaluates (variables, stages, RUN refused), `dockerignore`
//! filters the context; `context` collects what a COPY puts in a layer and `layer` writes it
//! as a deterministic tar.gz; `extract` unpacks archives and image layers safely (ADD,
//! `COPY --from`) and `add` gives an ADD'ed archive's entries their archive metadata;
//! `rootfs` materialises paths of another stage or image; `builder` walks the stages and
//! `assemble` turns the result into the blobs and manifest a registry must hold.

pub mod add;
pub mod assemble;
pub mod builder;
pub mod cache;
pub mod closure;
pub mod compress;
pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod dockerignore;
pub mod elf_machine;
pub mod extract;
pub mod from_image;
pub mod layer;
pub mod layering;
pub mod lint;
pub mod owner;
pub mod pack;
pub mod pathindex;
pub mod remote_cache;
pub mod rootfs;
pub mod squash;
pub mod stages;
pub mod substitute;

pub use builder::{build, BuildError, BuildRequest, BuiltImage};
