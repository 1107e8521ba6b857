//! The Dockerfile front end: `dockerfile` parses (directives, escapes, heredoc-free syntax,
//! line numbers), `substitute` expands variables as BuildKit does, `stages` evaluates
//! instructions into stages (ARG scopes, platforms, the stage graph and target selection),
//! and `lint` reports what Docker would warn about.
//!
//! Pure: no registry, no filesystem beyond reading the Dockerfile text it is given. What an
//! instruction does to an image is `regbuild::builder`'s job.

pub mod dockerfile;
pub mod lint;
pub mod stages;
pub mod substitute;
