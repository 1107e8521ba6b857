//! Helpers for the unit tests of `stages` and its instruction files: evaluate a Dockerfile
//! text (as `Dockerfile.test`, for `linux/amd64`) and pick the result apart.

use std::path::Path;

use super::{evaluate, BaseEnvError, Build, BuildArgs, CopySpec, Platform, StepKind};
use crate::dockerfile::parse;
use crate::error::DockerfileError;

pub(crate) fn linux_amd64() -> BuildArgs {
    BuildArgs::new(Platform::new("linux", "amd64", None))
}

pub(crate) fn args_target(target: Option<&str>) -> BuildArgs {
    let mut args = linux_amd64();
    args.target = target.map(str::to_string);
    args
}

pub(crate) fn no_env(_: &str) -> Result<Vec<(String, String)>, BaseEnvError> {
    Ok(Vec::new())
}

pub(crate) fn eval_with(text: &str, args: &BuildArgs) -> Result<Build, DockerfileError> {
    let df = parse(text, Path::new("Dockerfile.test"))?;
    evaluate(&df, args, &mut no_env)
}

pub(crate) fn eval(text: &str) -> Build {
    eval_with(text, &linux_amd64()).unwrap()
}

pub(crate) fn eval_err(text: &str) -> String {
    eval_with(text, &linux_amd64()).unwrap_err().to_string()
}

/// The step kinds of the target stage.
pub(crate) fn kinds(build: &Build) -> Vec<StepKind> {
    build.stages[build.target]
        .steps
        .iter()
        .map(|s| s.kind.clone())
        .collect()
}

pub(crate) fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn copy_of(kind: &StepKind) -> &CopySpec {
    match kind {
        StepKind::Copy(c) => c,
        other => panic!("not a copy: {other:?}"),
    }
}
