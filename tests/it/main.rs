//! The integration tests, in one test binary (`cargo test --test it`): each module below
//! was a test binary of its own (`tests/NAME.rs`), and `common` is the harness they share
//! (the real distribution registry, the fault-injecting proxy in front of it, third-party
//! fixture tools, the regbuild binary). One binary compiles the harness and links the
//! tests once. Modules share the process, so nothing in them may rely on per-process state:
//! the layer cache `common::regbuild` gives is one per module (`common::module_cache`), and
//! no test sets environment variables or changes the current directory of the process.

mod common;

mod add_archive_metadata;
mod add_remote;
mod add_remote_attacks;
mod cli_errors;
mod cli_ux;
mod copy_flags;
mod doc_examples;
mod dockerfile_fidelity;
mod dockerignore_exceptions;
mod engine;
mod executor_container;
mod faults_distribution;
mod faults_testregistry;
mod heredoc_copy;
mod hosted_registries;
mod hostile_input;
mod inspect;
mod load;
mod minimal;
mod pinning;
mod promote_distribution;
mod promote_testregistry;
mod prune;
mod push_distribution;
mod push_errors;
mod push_features;
mod real_dockerfiles;
mod registry_cache;
mod repeat_push;
mod run_chroot;
mod run_debian;
mod run_limits;
mod run_native;
mod run_sandbox;
mod run_stages;
mod run_steps;
mod sbom;
mod workspace;
