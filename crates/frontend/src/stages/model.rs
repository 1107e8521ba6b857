//! The result of evaluation, as the rest of the build consumes it: [`Build`], its [`Stage`]s
//! and their [`Step`]s (with variables substituted), plus the inputs a Dockerfile does not
//! contain ([`BuildArgs`], [`Platform`]) and the [`BaseEnv`] callback.
//!
//! Plain data only: how a Dockerfile becomes these values is `eval` (and the instruction
//! files); what a step does to an image is `regbuild::builder`'s job.

use std::collections::BTreeMap;
use std::time::Duration;

/// The PATH BuildKit puts in a (non-Windows) image whose config has none.
/// [`evaluate`](super::evaluate) expands `$PATH` with it in such stages (scratch, or a base
/// image without PATH); BuildKit also writes it into the image config, so an
/// image assembler matching BuildKit should add `PATH=DEFAULT_PATH` there.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `base_env` callback of [`evaluate`](super::evaluate): image reference → its config
/// `Env` as `(name, value)` pairs, or why it could not be read.
pub type BaseEnv<'f> = dyn FnMut(&str) -> Result<Vec<(String, String)>, BaseEnvError> + 'f;

/// Why a [`BaseEnv`] callback could not give an image's environment: the caller's message,
/// reported as `file:line: cannot read the configuration of base image <image>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BaseEnvError(pub String);

impl From<String> for BaseEnvError {
    fn from(message: String) -> Self {
        BaseEnvError(message)
    }
}

impl From<&str> for BaseEnvError {
    fn from(message: &str) -> Self {
        BaseEnvError(message.to_string())
    }
}

/// Inputs of a build that the Dockerfile does not contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildArgs {
    /// `--build-arg NAME=VALUE` values.
    pub values: BTreeMap<String, String>,
    /// `--target`: the name of the stage to build (default: the last stage).
    pub target: Option<String>,
    /// The platform the image is built for (`TARGETPLATFORM`).
    pub platform: Platform,
    /// The platform of the builder (`BUILDPLATFORM`).
    pub build_platform: Platform,
}

impl BuildArgs {
    /// No build args, no target, building for `platform` on `platform`.
    pub fn new(platform: Platform) -> Self {
        BuildArgs {
            values: BTreeMap::new(),
            target: None,
            build_platform: platform.clone(),
            platform,
        }
    }
}

/// The platform a stage is built for and on: the model's one type.
pub use regbuild_oci::platform::{Platform, PlatformError};

/// The evaluated Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// Every stage, in file order (`stages[i].index == i`).
    pub stages: Vec<Stage>,
    /// Index of the stage to build: `--target`, or the last stage.
    pub target: usize,
    /// `--build-arg` names no evaluated ARG declares (sorted; predefined
    /// names such as `HTTP_PROXY` or `TARGETARCH` are never listed).
    pub unused_build_args: Vec<String>,
}

/// One build stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position in [`Build::stages`].
    pub index: usize,
    /// The lower-cased `AS` name.
    pub name: Option<String>,
    /// Line of the FROM.
    pub line: usize,
    /// What the stage starts from.
    pub base: Base,
    /// The `FROM --platform` value, expanded (not validated further).
    pub platform: Option<String>,
    /// The evaluated steps (empty when `reachable` is false).
    pub steps: Vec<Step>,
    /// Whether the target depends on this stage (the target itself included).
    /// Unreachable stages are validated but not evaluated.
    pub reachable: bool,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An earlier stage (by index).
    Stage(usize),
    /// An image reference, expanded (`alpine:3.20`, `x@sha256:...`).
    Image(String),
}

/// One evaluated instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Line of the instruction (for ONBUILD triggers: of the ONBUILD).
    pub line: usize,
    /// The instruction text, for the history's `created_by`.
    pub text: String,
    /// What it does.
    pub kind: StepKind,
}

/// What a step does, with variables substituted where Docker does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// COPY or ADD.
    Copy(CopySpec),
    /// ENV pairs, in order.
    Env(Vec<(String, String)>),
    /// LABEL pairs, in order.
    Label(Vec<(String, String)>),
    /// ARG names with their resolved values (`None`: declared but unset).
    Arg(Vec<(String, Option<String>)>),
    /// The new working directory, cleaned. Absolute, except in a stage based
    /// on an image before any absolute WORKDIR: then it is relative to the
    /// image's WorkingDir (or `/` if that is empty), which the caller joins.
    Workdir(String),
    /// USER.
    User(String),
    /// Exposed ports, normalized to `port/proto` (`80/tcp`), ranges expanded.
    Expose(Vec<String>),
    /// VOLUME paths.
    Volume(Vec<String>),
    /// ENTRYPOINT.
    Entrypoint(Command),
    /// CMD.
    Cmd(Command),
    /// STOPSIGNAL, as written (validated).
    StopSignal(String),
    /// HEALTHCHECK.
    Healthcheck(Healthcheck),
    /// SHELL.
    Shell(Vec<String>),
    /// ONBUILD: the trigger instruction text, unexpanded (with heredoc
    /// bodies appended as BuildKit does).
    OnBuild(String),
    /// MAINTAINER (deprecated), unexpanded.
    Maintainer(String),
    /// RUN.
    Run(RunSpec),
}

impl StepKind {
    /// What the step reads from outside its stage (`COPY --from`, `RUN --mount=from=`), in
    /// order: a stage here must be built first, an image resolved.
    pub fn reads_from(&self) -> Vec<&CopyFrom> {
        match self {
            StepKind::Copy(c) => c.from.iter().collect(),
            StepKind::Run(r) => r
                .mounts
                .iter()
                .filter_map(|m| match m {
                    RunMount::Bind { from, .. } | RunMount::Cache { from, .. } => from.as_ref(),
                    RunMount::Secret { .. } | RunMount::Tmpfs { .. } => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A RUN, as the executor needs it. Docker does not substitute variables in the command
/// itself (the shell does); flag values are substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// Exec form as written; shell form (the builder wraps it in the stage's SHELL) with
    /// heredoc bodies appended as BuildKit passes them to the shell
    /// (`cmd <<EOF\nbody\nEOF`), so the shell handles them.
    pub command: Command,
    /// `RUN <<EOF` whose body starts with `#!`: BuildKit writes the body to a file and runs
    /// it; `command` is then that file's in-sandbox path and this is (path, body).
    pub script: Option<(String, String)>,
    /// `--mount` values, in order.
    pub mounts: Vec<RunMount>,
    /// `--network`; `None`: the build's default (`--network` on the command line).
    pub network: Option<RunNetwork>,
    /// The build args in scope (declared by ARG in this stage, with their values), visible in
    /// the step's environment as Docker makes them, never persisted in the config. Sorted by
    /// name; unset ARGs are left out.
    pub args: Vec<(String, String)>,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNetwork {
    Default,
    None,
    Host,
}

/// `RUN --mount=type=cache,sharing=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// One `RUN --mount=...` (BuildKit's keys; paths expanded; a relative target is joined
/// with the WORKDIR by the builder, and an empty one, `target=` left out, is the WORKDIR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// `type=bind`: read-only unless `rw`; `from` a stage or image, else the context.
    Bind {
        from: Option<CopyFrom>,
        /// `source=` (default `/`: the root of `from`/the context).
        source: String,
        target: String,
        rw: bool,
    },
    /// `type=cache`: persisted in regbuild's cache directory under `id` (default: the
    /// target as written, cleaned as Go's `path.Clean` does), never in a layer; first filled from `source` (default the root)
    /// of `from` when given (BuildKit's `from=`).
    Cache {
        id: String,
        target: String,
        from: Option<CopyFrom>,
        source: String,
        sharing: CacheSharing,
        readonly: bool,
        /// `mode=` (default 0755), `uid=`/`gid=` (default 0) of the cache directory.
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// `type=secret`: the secret `id` as a file at `target` (default `/run/secrets/<id>`),
    /// or in the variable `env` (BuildKit's `env=`), mode 0400 unless `mode=` says otherwise.
    Secret {
        id: String,
        target: Option<String>,
        env: Option<String>,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// `type=tmpfs`, with `size=` in bytes.
    Tmpfs { target: String, size: Option<u64> },
}

/// A COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// ADD (URLs, archives) rather than COPY.
    pub add: bool,
    /// Source paths (or URLs for ADD), expanded.
    pub sources: Vec<String>,
    /// Destination, expanded (relative to the WORKDIR if not absolute).
    pub dest: String,
    /// `--from`.
    pub from: Option<CopyFrom>,
    /// `--chown`, expanded.
    pub chown: Option<String>,
    /// `--chmod`, expanded; validated to be an octal mode.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--closure` (regbuild extension: also copy the shared libraries the
    /// sources need).
    pub closure: bool,
    /// `--sysroot` (regbuild extension, with `--closure`), expanded.
    pub sysroot: Option<String>,
    /// `--exclude` patterns, as written (BuildKit does not expand them either).
    pub exclude: Vec<String>,
    /// `COPY --parents`: each source keeps its parent directories under `dest` (from the
    /// context's root, or from a `/./` in the source).
    pub parents: bool,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
    /// `ADD --checksum`, expanded: `sha256:<hex>` for a URL, a commit (or its prefix) for a
    /// Git source (checked by the front end: `crate::remote::check_add`).
    pub checksum: Option<String>,
    /// `ADD --unpack` as written (None: the default, which unpacks local archives only).
    pub unpack: Option<bool>,
    /// Heredoc sources (`COPY <<EOF /dest`) as (name, body): each becomes a regular file
    /// named after the heredoc (mode 0644 unless `--chmod`), placed at `dest` as a context
    /// file would be. The body is expanded unless the name was quoted, `<<-` tabs removed.
    /// Not combined with `sources`, `from` or `closure` (refused by the front end).
    pub heredocs: Vec<(String, String)>,
}

/// Where `COPY --from` copies from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFrom {
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// CMD/ENTRYPOINT arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// JSON form.
    Exec(Vec<String>),
    /// Shell form, unexpanded: to be wrapped with the stage's SHELL (default
    /// `["/bin/sh", "-c"]`).
    Shell(String),
}

/// A HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// `--interval`.
    pub interval: Option<Duration>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--start-period`.
    pub start_period: Option<Duration>,
    /// `--start-interval`.
    pub start_interval: Option<Duration>,
    /// `--retries`.
    pub retries: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_display_and_parse() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p, Platform::new("linux", "arm64", Some("v8")));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            "Linux/AMD64".parse::<Platform>().unwrap().to_string(),
            "linux/amd64"
        );
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }
}
