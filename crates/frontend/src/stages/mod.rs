//! Dockerfile evaluation: turns parsed [`Instruction`]s plus build arguments
//! into build [`Stage`]s whose steps have their variables substituted,
//! following BuildKit's `instructions` package and `dockerfile2llb`.
//!
//! What it does:
//! - splits the file into global `ARG`s and stages (`FROM image`,
//!   `FROM image AS name`, `FROM --platform=... image`, `FROM scratch`,
//!   `FROM <earlier stage>`), validates every instruction's arguments and
//!   flags (unknown instructions and flags are errors in every stage);
//! - global ARGs (and the predefined `TARGET*`/`BUILD*` platform ARGs) are
//!   visible in FROM lines only, and inside a stage after a bare `ARG NAME`;
//!   `--build-arg` values override ARG defaults;
//! - resolves `--target` (or the last stage) and the stages it depends on
//!   through FROM, `COPY --from` and `RUN --mount=from=`. Like BuildKit, only
//!   those stages are evaluated: `base_env` is called for them only, features
//!   regbuild lacks are refused only in them, and substitution errors are only
//!   reported for them. The other stages are returned with `reachable: false`
//!   and no steps;
//! - substitutes variables in ADD, COPY (heredoc bodies too, unless the name is
//!   quoted), ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and
//!   RUN's flag values (not its command: the shell expands that), using the base image's environment (from
//!   `base_env`, with PATH defaulted to [`DEFAULT_PATH`] like BuildKit), ENV
//!   values and ARG values (a later ARG or ENV wins, as in BuildKit; a stage
//!   built FROM another starts with that stage's ENV and ARG values);
//! - runs the ONBUILD triggers of a stage at the start of every stage built
//!   `FROM` it (BuildKit does the same); ONBUILD itself is recorded raw.
//!
//! What it does not do: resolve images, read the build context, apply steps
//! to an image config, or run the ONBUILD triggers of a base *image* (those
//! are in the image config, which the caller sees and this module does not),
//! or run anything: a RUN becomes a [`RunSpec`] (command, heredoc script,
//! mounts, network, build args) for the builder's executor.
//!
//! Layout: `model` (the types the build consumes), `graph` (stages, dependencies, target),
//! `eval` (the walk), `scope` and `expand` (variables and their budget), `instructions/`
//! (one file per instruction family, `cmd.rs` for what they return), `args` (flags and
//! value syntaxes), `suggest` (did-you-mean).
//!
//! Where to add an instruction: write `instructions/<family>.rs` with a parser that checks
//! flags and arguments and returns `CmdKind::ready(step)`, or, if variables are substituted,
//! a type implementing `instructions::cmd::Expand`; in `instructions/mod.rs` add `mod <family>;`
//! and one `("KEYWORD", parser)` line to `INSTRUCTIONS`; add a [`StepKind`] variant in `model`
//! if the step is new (and teach `regbuild::builder` to apply it).
//!
//! [`Instruction`]: crate::dockerfile::Instruction

mod args;
mod eval;
mod expand;
mod graph;
mod instructions;
mod model;
mod scope;
mod suggest;
#[cfg(test)]
mod test_support;

pub use eval::evaluate;
pub use model::{
    Base, BaseEnv, BaseEnvError, Build, BuildArgs, CacheSharing, Command, CopyFrom, CopySpec,
    Healthcheck, Platform, PlatformError, RunMount, RunNetwork, RunSpec, Stage, Step, StepKind,
    DEFAULT_PATH,
};
