//! The front end's error and where it points: [`DockerfileError`], returned by every
//! fallible public function of the crate (its message always starts with `file:line:`), and
//! `Loc`, the file and line such errors are built from.
//!
//! It sits below `dockerfile`, `substitute` and `stages`, which all build these errors; it
//! knows nothing of parsing or expansion. The reasons an expansion fails are
//! [`SubstitutionError`]s, defined by `substitute` (which knows no files or lines) and wrapped
//! here with [`SubstitutionError::at`].

use std::path::{Path, PathBuf};

use crate::substitute::SubstitutionError;

/// An error in a Dockerfile or `.dockerignore`. Every variant names the file
/// and the 1-based line, and its message starts with `file:line:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    /// Malformed syntax or arguments.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An instruction name Docker does not know.
    #[error("{}:{line}: unknown instruction: {keyword}{}", path.display(), suggestion_text(suggestion))]
    UnknownInstruction {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The keyword as written (upper-cased).
        keyword: String,
        /// A known instruction with a similar name.
        suggestion: Option<String>,
    },
    /// Valid Docker syntax that regbuild does not implement.
    #[error("{}:{line}: {message}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is not supported, and what to do instead.
        message: String,
    },
    /// Inconsistent stages: missing FROM, duplicate names, bad `--from`,
    /// unknown `--target`.
    #[error("{}:{line}: {message}", path.display())]
    Stage {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A variable reference that cannot be expanded.
    #[error("{}:{line}: cannot expand {word:?}: {reason}", path.display())]
    Substitution {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The word being expanded.
        word: String,
        /// Why it failed.
        reason: SubstitutionError,
    },
    /// The base image's environment could not be obtained.
    #[error("{}:{line}: cannot read the configuration of base image {image}: {message}", path.display())]
    BaseImage {
        /// The file.
        path: PathBuf,
        /// 1-based line of the FROM.
        line: usize,
        /// The image reference.
        image: String,
        /// The caller's error message.
        message: String,
    },
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

impl DockerfileError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Syntax { path, .. }
            | Self::UnknownInstruction { path, .. }
            | Self::Unsupported { path, .. }
            | Self::Stage { path, .. }
            | Self::Substitution { path, .. }
            | Self::BaseImage { path, .. } => path,
        }
    }

    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            Self::Syntax { line, .. }
            | Self::UnknownInstruction { line, .. }
            | Self::Unsupported { line, .. }
            | Self::Stage { line, .. }
            | Self::Substitution { line, .. }
            | Self::BaseImage { line, .. } => *line,
        }
    }
}

/// A file and line, to build errors from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loc<'a> {
    pub(crate) path: &'a Path,
    pub(crate) line: usize,
}

impl Loc<'_> {
    pub(crate) fn syntax(self, message: impl Into<String>) -> DockerfileError {
        DockerfileError::Syntax {
            path: self.path.to_path_buf(),
            line: self.line,
            message: message.into(),
        }
    }

    pub(crate) fn stage(self, message: impl Into<String>) -> DockerfileError {
        DockerfileError::Stage {
            path: self.path.to_path_buf(),
            line: self.line,
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(self, message: impl Into<String>) -> DockerfileError {
        DockerfileError::Unsupported {
            path: self.path.to_path_buf(),
            line: self.line,
            message: message.into(),
        }
    }
}

impl SubstitutionError {
    /// Wrap into a [`DockerfileError`] naming the file, line and word.
    pub fn at(self, path: &Path, line: usize, word: &str) -> DockerfileError {
        DockerfileError::Substitution {
            path: path.to_path_buf(),
            line,
            word: word.to_string(),
            reason: self,
        }
    }
}
