//! Why a build step failed: the typed error every step module returns. `BuildError::At`
//! carries one, prefixed with the Dockerfile's `file:line`. Each variant's message is the
//! one the user has always seen; a wrapped source prints as it does on its own.

use std::io;
use std::path::PathBuf;

use regbuild_closure::ClosureError;
use regbuild_context::context::ContextError;
use regbuild_fs::extract::ExtractError;
use regbuild_fs::layer::LayerError;
use regbuild_oci::digest::{Digest, DigestError};
use regbuild_oci::platform::PlatformError;
use regbuild_oci::reference::ReferenceError;
use regbuild_registry::RegistryError;

use crate::builder::add::AddError;
use crate::builder::owner::OwnerError;
use crate::builder::pack::PackError;
use crate::builder::report::DryRunStop;
use crate::image::base::BaseError;
use regbuild_frontend::dockerfile::DockerfileError;

pub mod remote;
pub mod run;

/// Why one step (an instruction, or the work of `squash` and `assemble`) failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Collecting COPY sources from the build context.
    #[error("{0}")]
    Context(#[from] ContextError),
    /// Collecting `COPY --from` sources: the message names the stage or image
    /// (`label`), not the build context.
    #[error("{}", in_source(.source.to_string(), .label))]
    ContextIn { source: ContextError, label: String },
    #[error("{0}")]
    Extract(#[from] ExtractError),
    #[error("{0}")]
    Layer(#[from] LayerError),
    #[error("{0}")]
    Closure(#[from] ClosureError),
    /// Boxed, as `Base`: the largest sources, kept off every step's `Result`.
    #[error("{0}")]
    Registry(Box<RegistryError>),
    #[error("{0}")]
    Base(Box<BaseError>),
    #[error("{0}")]
    Reference(#[from] ReferenceError),
    #[error("{0}")]
    Platform(#[from] PlatformError),
    #[error("{0}")]
    Digest(#[from] DigestError),
    #[error("{0}")]
    Index(#[from] IndexError),
    #[error("{0}")]
    Add(#[from] AddError),
    #[error("{0}")]
    Pack(#[from] PackError),
    #[error("{0}")]
    Chown(#[from] ChownError),
    #[error("{0}")]
    Chmod(#[from] ChmodError),
    #[error("WORKDIR as USER {user}: {source}")]
    WorkdirOwner { user: String, source: OwnerError },
    #[error("--sysroot={dir}: {source}")]
    Sysroot { dir: String, source: io::Error },
    #[error("--sysroot={dir} leaves the build context")]
    SysrootOutside { dir: String },
    /// ADD of a URL or Git repository.
    #[error("{0}")]
    Remote(#[from] remote::RemoteError),
    #[error("stage {0} is not built before COPY --from uses it")]
    CopyFromStageNotBuilt(usize),
    #[error("stage {0} is not built before it is used")]
    BaseStageNotBuilt(usize),
    #[error("image {0} was not resolved")]
    ImageNotResolved(String),
    #[error("base image {0} was not resolved")]
    BaseNotResolved(String),
    /// A base's config that cannot be read (`ImageConfig::from_base` says why).
    #[error("base image {image}: {source}")]
    BaseConfig {
        image: String,
        source: regbuild_oci::config::ConfigError,
    },
    /// Stamping or hashing a COPY's sources.
    #[error("reading the sources: {0}")]
    Sources(io::Error),
    /// Reading the tar of a layer (to list its paths).
    #[error("{source}")]
    ReadLayer { file: PathBuf, source: io::Error },
    /// Listing a layer's paths from its entries.
    #[error("{0}")]
    Entries(io::Error),
    #[error("{source}")]
    TempDir { dir: PathBuf, source: io::Error },
    /// A file read or written, named in the message.
    #[error("{}: {source}", .path.display())]
    File { path: PathBuf, source: io::Error },
    /// A file read or written, not named in the message.
    #[error("{source}")]
    Io { path: PathBuf, source: io::Error },
    /// A blob download that stopped without the registry's reason.
    #[error("{0}")]
    Download(io::Error),
    #[error("materialising a cached COPY --from layer: {0}")]
    NoRuntime(tokio::runtime::TryCurrentError),
    #[error("layer build lock poisoned")]
    Poisoned,
    #[error("--squash=new cannot merge RUN layers yet (use --squash to merge the whole image)")]
    SquashNewWithRun,
    /// A RUN step (boxed: the largest variant).
    #[error("{0}")]
    Run(Box<run::RunError>),
    #[error("a cached layer rebuilt to {built} instead of {expected} (its inputs changed during the build, or the cache is stale: delete $REGBUILD_CACHE)")]
    CachedLayerChanged { built: Digest, expected: Digest },
    /// A layer of the stage was still to pack when a RUN step needed it as a directory
    /// (a bug in the order of the build's steps).
    #[error("internal error: the layer of `{layer}` was not packed before a RUN step ran on it")]
    LayerNotPackedBelowRun { layer: String },
    /// Packing gave fewer layers than were asked for (a bug).
    #[error("internal error: packing returned fewer layers than it was given")]
    PackedFewer,
    /// A RUN step was reached in a build that did not prepare for one (a bug).
    #[error(
        "internal error: a RUN step was reached, but the build opened no layer store for RUN steps"
    )]
    NoRunStore,
    /// A cache hit vanished between planning the step and using it (a bug).
    #[error("internal error: the RUN step was planned as cached, but no cached layer was found")]
    NotCached,
    /// The thread packing a RUN layer panicked.
    #[error("packing the step's layer failed: {0}")]
    PackingPanicked(String),
}

impl From<RegistryError> for StepError {
    fn from(e: RegistryError) -> Self {
        StepError::Registry(Box::new(e))
    }
}

impl From<BaseError> for StepError {
    fn from(e: BaseError) -> Self {
        StepError::Base(Box::new(e))
    }
}

/// `--chown=user[:group]` names no owner of the stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--chown={spec}: {source}")]
pub struct ChownError {
    pub spec: String,
    pub source: OwnerError,
}

/// `--chmod=…` that is not an octal mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--chmod={0}: expected an octal mode such as 0755")]
pub struct ChmodError(pub String);

impl From<run::RunError> for StepError {
    fn from(e: run::RunError) -> Self {
        StepError::Run(Box::new(e))
    }
}

/// A source error of a `COPY --from` names the stage or image, not the build context.
pub(crate) fn in_source(message: String, label: &str) -> String {
    if message.contains("in the build context") {
        message.replace("in the build context", &format!("in {label}"))
    } else if message.contains("matched nothing") {
        format!("{message} in {label}")
    } else {
        message
    }
}

/// Why a build failed. Errors tied to a Dockerfile line name `file:line`.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A dry run reached RUN steps that no cache holds: what it found, in stage order.
    #[error("{}", .0)]
    WouldRun(DryRunStop),
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    #[error(transparent)]
    Ignore(#[from] regbuild_context::dockerignore::IgnoreError),
    #[error("{file}:{line}: {source}")]
    At {
        file: String,
        line: usize,
        source: Box<StepError>,
    },
    /// `--squash` failed (after every stage was built).
    #[error("{path}: --squash: {source}")]
    Squash {
        path: String,
        source: Box<StepError>,
    },
    /// The image's config and manifest could not be written.
    #[error("{path}: {source}")]
    Assemble {
        path: String,
        source: Box<StepError>,
    },
    #[error("{path}: cannot read the Dockerfile: {source}")]
    ReadDockerfile {
        path: String,
        source: std::io::Error,
    },
    /// The `.dockerignore` exists but cannot be read.
    #[error("{path}: {source}")]
    ReadIgnore {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: cannot create a temporary directory: {source}")]
    TempDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: the target stage was not built")]
    TargetNotBuilt { path: String },
}

/// Why the paths of a layer could not be listed (for COPY and WORKDIR's view).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("indexing layer {layer}: {source}")]
    Layer {
        layer: String,
        source: Box<StepError>,
    },
}
