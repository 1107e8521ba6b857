//! The Dockerfile front end: `dockerfile` parses (directives, escapes, heredocs,
//! line numbers), `substitute` expands variables as BuildKit does, `stages` evaluates
//! instructions into stages (ARG scopes, platforms, the stage graph and target selection),
//! and `lint` reports what Docker would warn about. `ids` reads user and group ids (`USER`,
//! `--chown`, `--mount=…,uid=`) and refuses those past 32 bits. `remote` tells ADD's URL and
//! Git sources from context paths. `error` holds
//! [`DockerfileError`](error::DockerfileError), the one error the crate returns (it names
//! `file:line`).
//!
//! Module dependencies run one way: `substitute` and `ids` depend on nothing else here, `error` on
//! `substitute` (for the reason it wraps), `dockerfile` on `error`, `stages` and `lint` on
//! the rest.
//!
//! Pure: no registry, no filesystem beyond reading the Dockerfile text it is given. What an
//! instruction does to an image is `regbuild::builder`'s job.

pub mod dockerfile;
pub mod error;
pub mod ids;
pub mod lint;
pub mod remote;
pub mod stages;
pub mod substitute;
