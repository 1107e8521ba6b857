//! What `$NAME` can see while a build is evaluated: the build-wide [`BuildScope`] (the
//! `--build-arg` values, the global ARG scope with the predefined platform ARGs, the ARG
//! names declared so far, the expansion budgets) and a stage's [`StageState`] (image Env,
//! ARG values, working directory).
//!
//! The rules for which ARG value wins live with ARG (`instructions::env_arg`); this module
//! holds the state those rules read and write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;

use super::expand::Expander;
use super::model::BuildArgs;
use crate::error::Loc;

/// The build-wide state instructions read and update while they are evaluated.
pub(super) struct BuildScope<'a> {
    /// The Dockerfile's path, for errors.
    pub(super) path: &'a Path,
    /// `--build-arg NAME=VALUE` values.
    pub(super) build_args: &'a BTreeMap<String, String>,
    /// The global scope: predefined platform ARGs and the ARGs before the first FROM.
    pub(super) globals: BTreeMap<String, String>,
    /// Every ARG name evaluated so far (the others among `build_args` are unused).
    pub(super) declared: BTreeSet<String>,
    /// Expansion, with the build's byte budget.
    pub(super) exp: Expander<'a>,
    /// `port/proto` entries all EXPOSE steps produced so far (bounded too).
    pub(super) exposed_ports: usize,
}

impl<'a> BuildScope<'a> {
    /// An empty scope (no globals yet) for the file at `path`.
    pub(super) fn new(path: &'a Path, escape: char, args: &'a BuildArgs) -> Self {
        BuildScope {
            path,
            build_args: &args.values,
            globals: BTreeMap::new(),
            declared: BTreeSet::new(),
            exp: Expander::new(path, escape),
            exposed_ports: 0,
        }
    }

    pub(super) fn loc(&self, line: usize) -> Loc<'a> {
        Loc {
            path: self.path,
            line,
        }
    }

    /// `--build-arg` names no evaluated ARG declares (sorted; predefined ones left out).
    pub(super) fn unused_build_args(&self) -> Vec<String> {
        self.build_args
            .keys()
            .filter(|k| !self.declared.contains(*k) && !is_predefined_arg(k))
            .cloned()
            .collect()
    }
}

/// The predefined platform ARGs of the global scope (`--build-arg` may override them).
pub(super) fn platform_args(args: &BuildArgs, target: &str) -> BTreeMap<String, String> {
    let (b, t) = (&args.build_platform, &args.platform);
    let pairs = [
        ("BUILDPLATFORM", b.to_string()),
        ("BUILDOS", b.os.clone()),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", b.architecture.clone()),
        ("BUILDVARIANT", b.variant.clone().unwrap_or_default()),
        ("TARGETPLATFORM", t.to_string()),
        ("TARGETOS", t.os.clone()),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", t.architecture.clone()),
        ("TARGETVARIANT", t.variant.clone().unwrap_or_default()),
        ("TARGETSTAGE", target.to_string()),
    ];
    pairs
        .into_iter()
        .map(|(k, v)| {
            let v = args.values.get(k).cloned().unwrap_or(v);
            (k.to_string(), v)
        })
        .collect()
}

/// Build args Docker knows without an ARG (never reported as unused).
fn is_predefined_arg(name: &str) -> bool {
    const NAMES: [&str; 22] = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "FTP_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "SOURCE_DATE_EPOCH",
        "BUILDPLATFORM",
        "BUILDOS",
        "BUILDOSVERSION",
        "BUILDARCH",
        "BUILDVARIANT",
        "TARGETPLATFORM",
        "TARGETOS",
        "TARGETOSVERSION",
        "TARGETARCH",
        "TARGETVARIANT",
        "TARGETSTAGE",
        "http_proxy",
        "https_proxy",
        "ftp_proxy",
        "no_proxy",
        "all_proxy",
    ];
    NAMES.contains(&name) || name.starts_with("BUILDKIT_")
}

/// The evaluation state of one stage. Cloning is cheap (shared maps are
/// copied on write), so many stages can start from one base stage.
#[derive(Clone, Default)]
pub(super) struct StageState {
    /// The image Env.
    pub(super) env: Rc<BTreeMap<String, String>>,
    /// What `$NAME` sees: image Env plus ARG values.
    pub(super) vars: Rc<BTreeMap<String, String>>,
    /// Names ARGs of this stage (or of the stage it is built FROM) gave a value: what a RUN
    /// sees as build args.
    arg_names: Rc<BTreeSet<String>>,
    /// Env names whose `vars` value an ARG changed (a stage built FROM this
    /// one sees the Env value again, as in BuildKit).
    shadowed: BTreeSet<String>,
    /// The working directory; "" means the base image's.
    pub(super) workdir: String,
    /// Whether the stage builds a Windows image (no default PATH).
    pub(super) windows: bool,
}

impl StageState {
    /// The state of a `FROM scratch` stage: no Env, working directory `/`.
    pub(super) fn scratch() -> Self {
        StageState {
            workdir: "/".to_string(),
            ..StageState::default()
        }
    }

    pub(super) fn set_env(&mut self, key: &str, value: &str) {
        Rc::make_mut(&mut self.env).insert(key.to_string(), value.to_string());
        Rc::make_mut(&mut self.vars).insert(key.to_string(), value.to_string());
        self.shadowed.remove(key);
    }

    pub(super) fn set_arg(&mut self, key: &str, value: &str) {
        Rc::make_mut(&mut self.vars).insert(key.to_string(), value.to_string());
        if !self.arg_names.contains(key) {
            Rc::make_mut(&mut self.arg_names).insert(key.to_string());
        }
        if self.env.contains_key(key) {
            self.shadowed.insert(key.to_string());
        }
    }

    /// The ARGs with a value, each with what `$NAME` gives now (a later ENV of the same name
    /// wins, as in BuildKit's RUN environment), sorted by name.
    pub(super) fn build_args(&self) -> Vec<(String, String)> {
        self.arg_names
            .iter()
            .filter_map(|k| self.vars.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Undo ARG overrides of Env values (start of a child stage).
    pub(super) fn restore_shadowed(&mut self) {
        for key in std::mem::take(&mut self.shadowed) {
            if let Some(value) = self.env.get(&key).cloned() {
                Rc::make_mut(&mut self.vars).insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::stages::test_support::*;
    use crate::stages::{Base, BuildArgs, Platform, StepKind};

    #[test]
    fn global_args_only_in_from() {
        let b = eval(concat!(
            "ARG VERSION=3.20\n",
            "ARG IMAGE=alpine\n",
            "FROM ${IMAGE}:${VERSION} AS base\n",
            "ENV V=$VERSION\n",
            "ARG VERSION\n",
            "ENV W=$VERSION\n",
        ));
        assert_eq!(b.stages[0].base, Base::Image("alpine:3.20".into()));
        assert_eq!(
            kinds(&b),
            vec![
                StepKind::Env(pairs(&[("V", "")])),
                StepKind::Arg(vec![("VERSION".into(), Some("3.20".into()))]),
                StepKind::Env(pairs(&[("W", "3.20")])),
            ]
        );
    }

    #[test]
    fn build_arg_overrides_defaults() {
        let mut args = linux_amd64();
        args.values.insert("VERSION".into(), "edge".into());
        args.values.insert("IN_STAGE".into(), "over".into());
        args.values.insert("NOBODY_USES".into(), "x".into());
        args.values.insert("HTTP_PROXY".into(), "http://p".into());
        let b = eval_with(
            "ARG VERSION=3.20\nFROM alpine:$VERSION\nARG IN_STAGE=default\nLABEL v=$IN_STAGE\n",
            &args,
        )
        .unwrap();
        assert_eq!(b.stages[0].base, Base::Image("alpine:edge".into()));
        assert_eq!(kinds(&b)[1], StepKind::Label(pairs(&[("v", "over")])));
        assert_eq!(b.unused_build_args, strings(&["NOBODY_USES"]));
    }

    #[test]
    fn platform_args() {
        let mut args = BuildArgs::new(Platform::new("linux", "arm64", Some("v8")));
        args.build_platform = Platform::new("linux", "amd64", None);
        let b = eval_with(
            concat!(
                "FROM --platform=$BUILDPLATFORM golang AS build\n",
                "ENV BEFORE=${TARGETARCH:-unset}\n",
                "ARG TARGETARCH TARGETPLATFORM\n",
                "ENV ARCH=$TARGETARCH PLAT=$TARGETPLATFORM\n",
            ),
            &args,
        )
        .unwrap();
        assert_eq!(b.stages[0].platform.as_deref(), Some("linux/amd64"));
        assert_eq!(
            kinds(&b)[2],
            StepKind::Env(pairs(&[("ARCH", "arm64"), ("PLAT", "linux/arm64/v8")]))
        );
        assert_eq!(kinds(&b)[0], StepKind::Env(pairs(&[("BEFORE", "unset")])));
    }
}
