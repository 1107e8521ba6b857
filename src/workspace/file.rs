//! `regbuild.toml`:
//!
//! ```toml
//! [[image]]
//! name = "base"                       # unique; FROM may name it, or any of its tags
//! context = "base"                    # relative to this file's directory
//! dockerfile = "base/Dockerfile"      # default: <context>/Dockerfile
//! tags = ["registry.example/ws/base:1"]
//! platforms = ["linux/amd64"]         # default: linux/amd64
//! build_args = { VERSION = "1" }      # optional
//! depends_on = ["tools"]              # optional: dependencies not visible in FROM
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_NAME: &str = "regbuild.toml";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceImage {
    pub name: String,
    pub context: PathBuf,
    #[serde(default)]
    pub dockerfile: Option<PathBuf>,
    pub tags: Vec<String>,
    #[serde(default)]
    pub platforms: Vec<String>,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    #[serde(rename = "image", default)]
    pub images: Vec<WorkspaceImage>,
    /// The directory paths are relative to.
    #[serde(skip)]
    pub root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{path}: {source}")]
    File { path: PathBuf, source: FileError },
    #[error(
        "workspace image `{image}` depends on `{missing}`, which the workspace does not define"
    )]
    Missing { image: String, missing: String },
    #[error("workspace images depend on each other in a cycle: {0}")]
    Cycle(String),
}

/// Why a workspace file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("{}", .0.message())]
    Toml(toml::de::Error),
    #[error("image `{0}` is defined twice")]
    Twice(String),
    #[error("image `{0}` has no tags")]
    NoTags(String),
    #[error("defines no [[image]]")]
    NoImages,
}

impl Workspace {
    pub fn load(path: &Path) -> Result<Workspace, WorkspaceError> {
        let err = |source: FileError| WorkspaceError::File {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(FileError::Io(e)))?;
        let mut ws: Workspace = toml::from_str(&text).map_err(|e| err(FileError::Toml(e)))?;
        ws.root = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut seen = std::collections::HashSet::new();
        for i in &ws.images {
            if !seen.insert(i.name.as_str()) {
                return Err(err(FileError::Twice(i.name.clone())));
            }
            if i.tags.is_empty() {
                return Err(err(FileError::NoTags(i.name.clone())));
            }
        }
        if ws.images.is_empty() {
            return Err(err(FileError::NoImages));
        }
        Ok(ws)
    }

    pub fn context(&self, image: &WorkspaceImage) -> PathBuf {
        self.root.join(&image.context)
    }

    pub fn dockerfile(&self, image: &WorkspaceImage) -> PathBuf {
        match &image.dockerfile {
            Some(d) => self.root.join(d),
            None => self.context(image).join("Dockerfile"),
        }
    }
}
