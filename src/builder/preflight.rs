//! Checks made before any stage is built, so a Dockerfile that cannot succeed fails before
//! its RUN steps spend minutes: every literal COPY/ADD source from the build context must
//! exist and stay inside it. Wildcards, `--from` sources, URLs and `.dockerignore` rules
//! are left to the step itself (`regbuild_context::context`), which decides them with the
//! context's files in hand.

use std::path::{Component, Path, PathBuf};

use regbuild_context::context::ContextError;
use regbuild_frontend::stages::{self, CopySpec, StepKind};

/// The first literal context source of the `needed` stages that is missing or outside
/// the context, with its line.
pub fn missing_sources(
    plan: &stages::Build,
    needed: &[usize],
    context: &Path,
) -> Option<(usize, ContextError)> {
    needed
        .iter()
        .flat_map(|&i| plan.stages[i].steps.iter())
        .find_map(|step| match &step.kind {
            StepKind::Copy(spec) => check(spec, context).err().map(|e| (step.line, e)),
            _ => None,
        })
}

fn check(spec: &CopySpec, context: &Path) -> Result<(), ContextError> {
    if spec.from.is_some() || spec.closure || !spec.heredocs.is_empty() {
        return Ok(());
    }
    for src in &spec.sources {
        let local = !spec.add
            || matches!(
                regbuild_frontend::remote::classify(src),
                Ok(regbuild_frontend::remote::Source::Local)
            );
        if !local || src.contains(['*', '?', '[', '\\']) {
            continue;
        }
        let inside =
            within(src).ok_or_else(|| ContextError::OutsideContext { src: src.clone() })?;
        if context.join(inside).symlink_metadata().is_err() {
            return Err(ContextError::NotFound { src: src.clone() });
        }
    }
    Ok(())
}

/// `src` as a path below the context root; None when its `..` climb above it. A leading
/// `/` is the root, as BuildKit reads it, where `..` stops as Go's `path.Clean` stops it
/// (`/../x` is `x`).
fn within(src: &str) -> Option<PathBuf> {
    let absolute = src.starts_with('/');
    let mut out = PathBuf::new();
    for c in Path::new(src).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() && !absolute {
                    return None;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_below_the_context_root() {
        assert_eq!(within("a/../b"), Some(PathBuf::from("b")));
        assert_eq!(within("/a.txt"), Some(PathBuf::from("a.txt")));
        assert_eq!(within("./"), Some(PathBuf::new()));
        assert_eq!(within("../x"), None);
        assert_eq!(within("a/../../x"), None);
        assert_eq!(within("/../d/b.txt"), Some(PathBuf::from("d/b.txt")));
    }
}
