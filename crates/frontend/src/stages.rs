//! Dockerfile evaluation: turns parsed [`Instruction`]s plus build arguments
//! into build [`Stage`]s whose steps have their variables substituted,
//! following BuildKit's `instructions` package and `dockerfile2llb`.
//!
//! What it does:
//! - splits the file into global `ARG`s and stages (`FROM image`,
//!   `FROM image AS name`, `FROM --platform=... image`, `FROM scratch`,
//!   `FROM <earlier stage>`), validates every instruction's arguments and
//!   flags (unknown instructions and flags are errors in every stage);
//! - global ARGs (and the predefined `TARGET*`/`BUILD*` platform ARGs) are
//!   visible in FROM lines only, and inside a stage after a bare `ARG NAME`;
//!   `--build-arg` values override ARG defaults;
//! - resolves `--target` (or the last stage) and the stages it depends on
//!   through FROM and `COPY --from`. Like BuildKit, only those stages are
//!   evaluated: `base_env` is called for them only, RUN is refused only in
//!   them, and substitution errors are only reported for them. The other
//!   stages are returned with `reachable: false` and no steps;
//! - substitutes variables in ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL,
//!   USER, VOLUME and WORKDIR, using the base image's environment (from
//!   `base_env`, with PATH defaulted to [`DEFAULT_PATH`] like BuildKit), ENV
//!   values and ARG values (a later ARG or ENV wins, as in BuildKit; a stage
//!   built FROM another starts with that stage's ENV and ARG values);
//! - runs the ONBUILD triggers of a stage at the start of every stage built
//!   `FROM` it (BuildKit does the same); ONBUILD itself is recorded raw.
//!
//! What it does not do: resolve images, read the build context, apply steps
//! to an image config, or run the ONBUILD triggers of a base *image* (those
//! are in the image config, which the caller sees and this module does not).
//! `RUN` is refused because regbuild never executes code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;

use crate::dockerfile::{
    parse_single_line, parse_words, split_arg_words, Args, Dockerfile, Flag, Heredoc, Instruction,
};
use crate::error::{DockerfileError, Loc};
use crate::substitute::{expand_word, expand_words, NoVariables, Variables};
use regbuild_fs::dockerignore::clean_path;

/// The PATH BuildKit puts in a (non-Windows) image whose config has none.
/// [`evaluate`] expands `$PATH` with it in such stages (scratch, or a base
/// image without PATH); BuildKit also writes it into the image config, so an
/// image assembler matching BuildKit should add `PATH=DEFAULT_PATH` there.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `base_env` callback of [`evaluate`]: image reference → its config
/// `Env` as `(name, value)` pairs, or an error message.
pub type BaseEnv<'f> = dyn FnMut(&str) -> Result<Vec<(String, String)>, String> + 'f;

/// Most bytes all substitutions of one build may produce together.
const MAX_TOTAL_EXPANSION: usize = 64 << 20;

/// Most ONBUILD trigger instructions re-parsed in child stages.
const MAX_TRIGGER_COMMANDS: usize = 100_000;

/// Most `port/proto` entries all EXPOSE steps of one build may produce.
const MAX_EXPOSED_PORTS: usize = 1 << 20;

/// Every instruction Docker knows.
const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

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

/// An OS/architecture/variant triple such as `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub arch: String,
    /// `v8`, `v7`, ...
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts.
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Self {
        Platform {
            os: os.to_string(),
            arch: arch.to_string(),
            variant: variant.map(str::to_string),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A string that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
pub struct ParsePlatformError(pub String);

impl FromStr for Platform {
    type Err = ParsePlatformError;

    /// Parses `os/arch` or `os/arch/variant` (lower-cased).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(ParsePlatformError(s.to_string())),
        }
    }
}

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
    /// `--exclude` patterns, as written.
    pub exclude: Vec<String>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
    /// `ADD --checksum`, expanded.
    pub checksum: Option<String>,
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

/// Evaluate a parsed Dockerfile. `base_env(image_ref)` is called once per
/// evaluated stage whose base is an image and returns that image's config
/// `Env` (its error message is reported with the FROM line).
pub fn evaluate(
    df: &Dockerfile,
    args: &BuildArgs,
    base_env: &mut BaseEnv<'_>,
) -> Result<Build, DockerfileError> {
    let (meta, groups) = split_stages(df)?;
    let heads = stage_heads(df, &groups)?;
    let names = StageNames::new(&heads);
    let mut ev = Evaluator::new(df, args);
    let target_name = target_stage_name(args, &heads);
    ev.globals = ev.global_args(&meta, &target_name)?;
    let mut planned: Vec<PlannedStage> = Vec::with_capacity(groups.len());
    for (index, (head, group)) in heads.into_iter().zip(&groups).enumerate() {
        let stage = ev.plan_stage(index, head, group, &names, &planned)?;
        planned.push(stage);
    }
    let target = resolve_target(df, args, &planned)?;
    let reachable = reachable_stages(&planned, target);
    ev.count_base_users(&planned, &reachable);
    let mut stages: Vec<Stage> = Vec::with_capacity(planned.len());
    for (stage, is_reachable) in planned.into_iter().zip(reachable) {
        stages.push(ev.finish_stage(stage, is_reachable, base_env)?);
    }
    Ok(Build {
        stages,
        target,
        unused_build_args: ev.unused_build_args(),
    })
}

/// The instructions of one stage: its FROM and what follows.
struct Group<'d> {
    from: &'d Instruction,
    body: &'d [Instruction],
}

/// Split into global ARGs and stage groups.
fn split_stages(df: &Dockerfile) -> Result<(Vec<&Instruction>, Vec<Group<'_>>), DockerfileError> {
    let first_from = df.instructions.iter().position(|i| i.keyword == "FROM");
    let (meta, rest) = df
        .instructions
        .split_at(first_from.unwrap_or(df.instructions.len()));
    for ins in meta {
        if ins.keyword != "ARG" {
            let loc = loc(df, ins.line);
            check_known(ins, loc)?;
            return Err(loc.stage(format!(
                "{} must come after a FROM instruction (only ARG may come before the first FROM)",
                ins.keyword
            )));
        }
    }
    let mut groups = Vec::new();
    let mut rest = rest;
    while let Some((from, tail)) = rest.split_first() {
        let end = tail
            .iter()
            .position(|i| i.keyword == "FROM")
            .unwrap_or(tail.len());
        let (body, next) = tail.split_at(end);
        groups.push(Group { from, body });
        rest = next;
    }
    if groups.is_empty() {
        let line = df.instructions.last().map_or(1, |i| i.line);
        return Err(loc(df, line)
            .stage("the Dockerfile has no FROM instruction, so there is no stage to build"));
    }
    Ok((meta.iter().collect(), groups))
}

fn loc(df: &Dockerfile, line: usize) -> Loc<'_> {
    Loc {
        path: &df.path,
        line,
    }
}

/// A FROM line, parsed but not expanded.
struct StageHead {
    line: usize,
    name: Option<String>,
    base: String,
    platform: Option<String>,
}

fn stage_heads(df: &Dockerfile, groups: &[Group<'_>]) -> Result<Vec<StageHead>, DockerfileError> {
    let mut heads: Vec<StageHead> = Vec::with_capacity(groups.len());
    let mut lines_by_name: BTreeMap<String, usize> = BTreeMap::new();
    for group in groups {
        let head = parse_from(group.from, loc(df, group.from.line))?;
        if let Some(name) = &head.name {
            if let Some(previous) = lines_by_name.insert(name.clone(), head.line) {
                return Err(loc(df, head.line).stage(format!(
                    "duplicate stage name {name:?} (already used on line {previous})"
                )));
            }
        }
        heads.push(head);
    }
    Ok(heads)
}

/// `FROM [--platform=P] base [AS name]`.
fn parse_from(ins: &Instruction, loc: Loc<'_>) -> Result<StageHead, DockerfileError> {
    let flags = FlagValues::parse(ins, &[("platform", FlagKind::Str)], loc)?;
    let text = shell_text(ins);
    let words = split_arg_words(text);
    let (base, name) = match words.as_slice() {
        [base] => (*base, None),
        [base, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => (*base, Some(name.to_lowercase())),
        _ => {
            return Err(loc.syntax(
                "FROM requires either one or three arguments: FROM [--platform=<platform>] <image> [AS <name>]",
            ))
        }
    };
    if let Some(name) = &name {
        if !valid_stage_name(name) {
            return Err(loc.syntax(format!(
                "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
            )));
        }
    }
    Ok(StageHead {
        line: ins.line,
        name,
        base: base.to_string(),
        platform: flags.string("platform"),
    })
}

/// `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn shell_text(ins: &Instruction) -> &str {
    match &ins.args {
        Args::Shell(s) => s,
        Args::Json(_) => "",
    }
}

/// The name BuildKit's `TARGETSTAGE` gets.
fn target_stage_name(args: &BuildArgs, heads: &[StageHead]) -> String {
    args.target
        .clone()
        .or_else(|| heads.last().and_then(|h| h.name.clone()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn resolve_target(
    df: &Dockerfile,
    args: &BuildArgs,
    stages: &[PlannedStage],
) -> Result<usize, DockerfileError> {
    let last = stages.len().saturating_sub(1);
    let Some(target) = &args.target else {
        return Ok(last);
    };
    let wanted = target.to_lowercase();
    if let Some(i) = stages
        .iter()
        .position(|s| s.name.as_deref() == Some(wanted.as_str()))
    {
        return Ok(i);
    }
    let known: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
    let line = stages.get(last).map_or(1, |s| s.line);
    let hint = if known.is_empty() {
        "the Dockerfile has no named stages (name one with FROM ... AS <name>)".to_string()
    } else {
        format!("the named stages are: {}", known.join(", "))
    };
    Err(loc(df, line).stage(format!(
        "target stage {target:?} could not be found; {hint}"
    )))
}

/// Which stages the target needs (itself included), via FROM and COPY --from.
fn reachable_stages(stages: &[PlannedStage], target: usize) -> Vec<bool> {
    let mut reachable = vec![false; stages.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        let Some(seen) = reachable.get_mut(i) else {
            continue;
        };
        if std::mem::replace(seen, true) {
            continue;
        }
        if let Some(stage) = stages.get(i) {
            todo.extend(stage.dependencies());
        }
    }
    reachable
}

/// A stage with its FROM resolved and its commands validated.
struct PlannedStage {
    index: usize,
    name: Option<String>,
    line: usize,
    base: Base,
    platform: Option<String>,
    commands: Vec<Cmd>,
}

impl PlannedStage {
    fn dependencies(&self) -> Vec<usize> {
        let mut deps = Vec::new();
        if let Base::Stage(p) = self.base {
            deps.push(p);
        }
        for cmd in &self.commands {
            if let CmdKind::Copy(RawCopy {
                from: Some(CopyFrom::Stage(s)),
                ..
            }) = cmd.kind
            {
                deps.push(s);
            }
        }
        deps
    }
}

/// A validated instruction, not yet expanded.
struct Cmd {
    line: usize,
    text: String,
    kind: CmdKind,
    /// An ONBUILD whose trigger has heredocs (cannot be re-run by a child).
    heredoc_trigger: bool,
}

enum CmdKind {
    /// Needs no substitution.
    Ready(StepKind),
    Run,
    /// A feature regbuild lacks: an error only if the stage is built (unused stages are
    /// parsed, not evaluated, as BuildKit does).
    Unsupported(Box<DockerfileError>),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Copy(RawCopy),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
}

/// COPY/ADD before substitution.
struct RawCopy {
    add: bool,
    sources: Vec<String>,
    dest: String,
    from: Option<CopyFrom>,
    chown: Option<String>,
    chmod: Option<String>,
    link: bool,
    closure: bool,
    sysroot: Option<String>,
    exclude: Vec<String>,
    keep_git_dir: bool,
    checksum: Option<String>,
}

/// The evaluation state of one stage. Cloning is cheap (shared maps are
/// copied on write), so many stages can start from one base stage.
#[derive(Clone, Default)]
struct StageState {
    /// The image Env.
    env: Rc<BTreeMap<String, String>>,
    /// What `$NAME` sees: image Env plus ARG values.
    vars: Rc<BTreeMap<String, String>>,
    /// Env names whose `vars` value an ARG changed (a stage built FROM this
    /// one sees the Env value again, as in BuildKit).
    shadowed: BTreeSet<String>,
    /// The working directory; "" means the base image's.
    workdir: String,
    /// Whether the stage builds a Windows image (no default PATH).
    windows: bool,
}

impl StageState {
    fn set_env(&mut self, key: &str, value: &str) {
        Rc::make_mut(&mut self.env).insert(key.to_string(), value.to_string());
        Rc::make_mut(&mut self.vars).insert(key.to_string(), value.to_string());
        self.shadowed.remove(key);
    }

    fn set_arg(&mut self, key: &str, value: &str) {
        Rc::make_mut(&mut self.vars).insert(key.to_string(), value.to_string());
        if self.env.contains_key(key) {
            self.shadowed.insert(key.to_string());
        }
    }

    /// Undo ARG overrides of Env values (start of a child stage).
    fn restore_shadowed(&mut self) {
        for key in std::mem::take(&mut self.shadowed) {
            if let Some(value) = self.env.get(&key).cloned() {
                Rc::make_mut(&mut self.vars).insert(key, value);
            }
        }
    }
}

/// Stage names (lower-cased) → index.
struct StageNames {
    by_name: BTreeMap<String, usize>,
    count: usize,
}

impl StageNames {
    fn new(heads: &[StageHead]) -> Self {
        let by_name = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.name.clone().map(|n| (n, i)))
            .collect();
        StageNames {
            by_name,
            count: heads.len(),
        }
    }

    /// The stage named exactly `name` (names are stored lower-cased).
    fn get(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
}

/// Expands words and keeps the total output of a build bounded.
struct Expander<'a> {
    path: &'a Path,
    escape: char,
    bytes: usize,
}

impl Expander<'_> {
    /// Expand one word with `vars`, counting the bytes produced.
    fn word(
        &mut self,
        word: &str,
        vars: &dyn Variables,
        line: usize,
    ) -> Result<String, DockerfileError> {
        let out = expand_word(word, self.escape, vars).map_err(|e| e.at(self.path, line, word))?;
        self.count(out.len(), line)?;
        Ok(out)
    }

    /// Like [`Expander::word`], then split into words.
    fn words(
        &mut self,
        word: &str,
        vars: &dyn Variables,
        line: usize,
    ) -> Result<Vec<String>, DockerfileError> {
        let out = expand_words(word, self.escape, vars).map_err(|e| e.at(self.path, line, word))?;
        self.count(out.iter().map(String::len).sum(), line)?;
        Ok(out)
    }

    /// `None` stays `None`; an empty result becomes `None`.
    fn optional(
        &mut self,
        word: &Option<String>,
        vars: &dyn Variables,
        line: usize,
    ) -> Result<Option<String>, DockerfileError> {
        match word {
            Some(w) => Ok(Some(self.word(w, vars, line)?).filter(|v| !v.is_empty())),
            None => Ok(None),
        }
    }

    fn count(&mut self, bytes: usize, line: usize) -> Result<(), DockerfileError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > MAX_TOTAL_EXPANSION {
            let loc = Loc {
                path: self.path,
                line,
            };
            return Err(loc.syntax(format!(
                "variable expansion produces more than {MAX_TOTAL_EXPANSION} bytes in total"
            )));
        }
        Ok(())
    }
}

struct Evaluator<'a> {
    df: &'a Dockerfile,
    args: &'a BuildArgs,
    globals: BTreeMap<String, String>,
    declared: BTreeSet<String>,
    exp: Expander<'a>,
    exposed_ports: usize,
    trigger_commands: usize,
    /// Final states of evaluated stages that later stages are built FROM.
    finished: BTreeMap<usize, StageState>,
    /// How many evaluated stages are still to be built FROM each stage.
    base_users: BTreeMap<usize, usize>,
}

impl<'a> Evaluator<'a> {
    fn new(df: &'a Dockerfile, args: &'a BuildArgs) -> Self {
        Evaluator {
            df,
            args,
            globals: BTreeMap::new(),
            declared: BTreeSet::new(),
            exp: Expander {
                path: &df.path,
                escape: df.escape,
                bytes: 0,
            },
            exposed_ports: 0,
            trigger_commands: 0,
            finished: BTreeMap::new(),
            base_users: BTreeMap::new(),
        }
    }

    fn loc(&self, line: usize) -> Loc<'a> {
        loc(self.df, line)
    }

    /// The global scope: platform ARGs, then the ARGs before the first FROM.
    fn global_args(
        &mut self,
        meta: &[&Instruction],
        target: &str,
    ) -> Result<BTreeMap<String, String>, DockerfileError> {
        let mut globals = platform_args(self.args, target);
        for ins in meta {
            let loc = self.loc(ins.line);
            for (key, default) in parse_arg(ins, self.df.escape, loc)? {
                self.declared.insert(key.clone());
                let value = match (self.args.values.get(&key), default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(self.exp.word(&d, &globals, ins.line)?),
                    (None, None) => None,
                };
                if let Some(v) = value {
                    globals.insert(key, v);
                }
            }
        }
        Ok(globals)
    }

    /// Resolve a stage's FROM and validate its commands.
    fn plan_stage(
        &mut self,
        index: usize,
        head: StageHead,
        group: &Group<'_>,
        names: &StageNames,
        earlier: &[PlannedStage],
    ) -> Result<PlannedStage, DockerfileError> {
        let base = self.resolve_base(&head, names, index)?;
        let platform = self.expand_platform(&head)?;
        let mut commands = Vec::new();
        if let Base::Stage(parent) = base {
            let triggers = earlier
                .get(parent)
                .map(|p| p.commands.as_slice())
                .unwrap_or_default();
            commands.extend(self.inherited_triggers(triggers, index, names)?);
        }
        for ins in group.body {
            let ctx = CmdContext {
                escape: self.df.escape,
                stage: index,
                names,
                loc: self.loc(ins.line),
            };
            commands.push(parse_command(ins, &ctx)?);
        }
        Ok(PlannedStage {
            index,
            name: head.name,
            line: head.line,
            base,
            platform,
            commands,
        })
    }

    fn resolve_base(
        &mut self,
        head: &StageHead,
        names: &StageNames,
        index: usize,
    ) -> Result<Base, DockerfileError> {
        let base = self.exp.word(&head.base, &self.globals, head.line)?;
        if base.is_empty() {
            return Err(self
                .loc(head.line)
                .syntax(format!("base name ({}) should not be blank", head.base)));
        }
        if base == "scratch" {
            return Ok(Base::Scratch);
        }
        Ok(match names.get(&base).filter(|i| *i < index) {
            Some(i) => Base::Stage(i),
            None => Base::Image(base),
        })
    }

    fn expand_platform(&mut self, head: &StageHead) -> Result<Option<String>, DockerfileError> {
        let Some(raw) = &head.platform else {
            return Ok(None);
        };
        let value = self.exp.word(raw, &self.globals, head.line)?;
        if value.is_empty() {
            return Err(self
                .loc(head.line)
                .syntax(format!("empty platform value from expression {raw}")));
        }
        Ok(Some(value))
    }

    /// The parent stage's ONBUILD triggers, parsed as commands of this stage.
    fn inherited_triggers(
        &mut self,
        parent: &[Cmd],
        index: usize,
        names: &StageNames,
    ) -> Result<Vec<Cmd>, DockerfileError> {
        let mut out = Vec::new();
        for cmd in parent {
            let CmdKind::Ready(StepKind::OnBuild(expr)) = &cmd.kind else {
                continue;
            };
            let loc = self.loc(cmd.line);
            if cmd.heredoc_trigger {
                return Err(
                    loc.unsupported("ONBUILD triggers with heredocs are not supported by regbuild")
                );
            }
            self.trigger_commands += 1;
            if self.trigger_commands > MAX_TRIGGER_COMMANDS {
                return Err(loc.syntax("too many ONBUILD trigger instances"));
            }
            let ins = parse_single_line(expr, loc, self.df.escape)?;
            let ctx = CmdContext {
                escape: self.df.escape,
                stage: index,
                names,
                loc,
            };
            out.push(parse_command(&ins, &ctx)?);
        }
        Ok(out)
    }

    /// Count, for each stage, the reachable stages built FROM it.
    fn count_base_users(&mut self, planned: &[PlannedStage], reachable: &[bool]) {
        for (stage, is_reachable) in planned.iter().zip(reachable) {
            if let (Base::Stage(p), true) = (&stage.base, is_reachable) {
                *self.base_users.entry(*p).or_default() += 1;
            }
        }
    }

    /// Evaluate a stage's steps if it is reachable.
    fn finish_stage(
        &mut self,
        planned: PlannedStage,
        reachable: bool,
        base_env: &mut BaseEnv<'_>,
    ) -> Result<Stage, DockerfileError> {
        let mut stage = Stage {
            index: planned.index,
            name: planned.name,
            line: planned.line,
            base: planned.base,
            platform: planned.platform,
            steps: Vec::new(),
            reachable,
        };
        if !reachable {
            return Ok(stage);
        }
        let mut state = self.initial_state(&stage, base_env)?;
        for cmd in &planned.commands {
            let kind = self.eval_command(cmd, &mut state)?;
            stage.steps.push(Step {
                line: cmd.line,
                text: crate::dockerfile::canonical_text(&cmd.text, self.df.escape),
                kind,
            });
        }
        if self.base_users.contains_key(&stage.index) {
            self.finished.insert(stage.index, state);
        }
        Ok(stage)
    }

    fn initial_state(
        &mut self,
        stage: &Stage,
        base_env: &mut BaseEnv<'_>,
    ) -> Result<StageState, DockerfileError> {
        let mut state = match &stage.base {
            Base::Scratch => StageState {
                workdir: "/".to_string(),
                ..StageState::default()
            },
            Base::Stage(p) => self.take_base_state(*p),
            Base::Image(image) => {
                let env = base_env(image).map_err(|message| DockerfileError::BaseImage {
                    path: self.df.path.clone(),
                    line: stage.line,
                    image: image.clone(),
                    message,
                })?;
                let mut state = StageState::default();
                for (k, v) in &env {
                    state.set_env(k, v);
                }
                state
            }
        };
        state.restore_shadowed();
        if let Some(platform) = &stage.platform {
            state.windows = platform_os(platform) == "windows";
        } else if !matches!(stage.base, Base::Stage(_)) {
            state.windows = self.args.platform.os.eq_ignore_ascii_case("windows");
        }
        if !state.windows && !state.env.contains_key("PATH") {
            state.set_env("PATH", DEFAULT_PATH);
        }
        Ok(state)
    }

    /// The final state of stage `p`, moved out for its last user.
    fn take_base_state(&mut self, p: usize) -> StageState {
        let users = self.base_users.entry(p).or_default();
        *users = users.saturating_sub(1);
        if *users == 0 {
            self.finished.remove(&p).unwrap_or_default()
        } else {
            self.finished.get(&p).cloned().unwrap_or_default()
        }
    }

    fn eval_command(
        &mut self,
        cmd: &Cmd,
        state: &mut StageState,
    ) -> Result<StepKind, DockerfileError> {
        let line = cmd.line;
        Ok(match &cmd.kind {
            CmdKind::Ready(kind) => kind.clone(),
            CmdKind::Run => {
                return Err(DockerfileError::RunNotSupported {
                    path: self.df.path.clone(),
                    line,
                })
            }
            CmdKind::Unsupported(e) => return Err((**e).clone()),
            CmdKind::Env(pairs) => {
                let pairs = self.expand_pairs(pairs, &state.vars, line)?;
                for (k, v) in &pairs {
                    state.set_env(k, v);
                }
                StepKind::Env(pairs)
            }
            CmdKind::Label(pairs) => {
                StepKind::Label(self.expand_pairs(pairs, &state.vars, line)?)
            }
            CmdKind::Arg(pairs) => StepKind::Arg(self.eval_arg(pairs, state, line)?),
            CmdKind::Copy(raw) => StepKind::Copy(self.eval_copy(raw, &state.vars, line)?),
            CmdKind::Workdir(raw) => {
                let dir = self.exp.word(raw, &*state.vars, line)?;
                state.workdir = join_workdir(&state.workdir, &dir);
                StepKind::Workdir(state.workdir.clone())
            }
            CmdKind::User(raw) => StepKind::User(self.exp.word(raw, &*state.vars, line)?),
            CmdKind::Expose(words) => {
                StepKind::Expose(self.eval_expose(words, &state.vars, line)?)
            }
            CmdKind::Volume(words) => {
                StepKind::Volume(self.eval_volume(words, &state.vars, line)?)
            }
            CmdKind::StopSignal(raw) => {
                let signal = self.exp.word(raw, &*state.vars, line)?;
                validate_signal(&signal).map_err(|m| self.loc(line).syntax(m))?;
                StepKind::StopSignal(signal)
            }
        })
    }

    /// ENV/LABEL: every key and value is expanded before any is applied.
    fn expand_pairs(
        &mut self,
        pairs: &[(String, String)],
        vars: &BTreeMap<String, String>,
        line: usize,
    ) -> Result<Vec<(String, String)>, DockerfileError> {
        pairs
            .iter()
            .map(|(k, v)| Ok((self.exp.word(k, vars, line)?, self.exp.word(v, vars, line)?)))
            .collect()
    }

    fn eval_arg(
        &mut self,
        pairs: &[(String, Option<String>)],
        state: &mut StageState,
        line: usize,
    ) -> Result<Vec<(String, Option<String>)>, DockerfileError> {
        let mut out = Vec::with_capacity(pairs.len());
        for (key, default) in pairs {
            self.declared.insert(key.clone());
            let value = match (self.args.values.get(key), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(self.exp.word(d, &*state.vars, line)?),
                (None, None) => self.globals.get(key).cloned(),
            };
            if let Some(v) = &value {
                state.set_arg(key, v);
            }
            out.push((key.clone(), value));
        }
        Ok(out)
    }

    fn eval_copy(
        &mut self,
        raw: &RawCopy,
        vars: &BTreeMap<String, String>,
        line: usize,
    ) -> Result<CopySpec, DockerfileError> {
        let sources = raw
            .sources
            .iter()
            .map(|s| self.exp.word(s, vars, line))
            .collect::<Result<Vec<_>, _>>()?;
        let dest = self.exp.word(&raw.dest, vars, line)?;
        let chmod = self.exp.optional(&raw.chmod, vars, line)?;
        if let Some(mode) = &chmod {
            validate_chmod(mode).map_err(|m| self.loc(line).syntax(m))?;
        }
        Ok(CopySpec {
            add: raw.add,
            sources,
            dest,
            from: raw.from.clone(),
            chown: self.exp.optional(&raw.chown, vars, line)?,
            chmod,
            link: raw.link,
            closure: raw.closure,
            sysroot: self.exp.optional(&raw.sysroot, vars, line)?,
            exclude: raw.exclude.clone(),
            keep_git_dir: raw.keep_git_dir,
            checksum: self.exp.optional(&raw.checksum, vars, line)?,
        })
    }

    fn eval_expose(
        &mut self,
        words: &[String],
        vars: &BTreeMap<String, String>,
        line: usize,
    ) -> Result<Vec<String>, DockerfileError> {
        let mut seen = BTreeSet::new();
        let mut ports = Vec::new();
        for word in words {
            for spec in self.exp.words(word, vars, line)? {
                let (start, end, proto) =
                    parse_port_spec(&spec).map_err(|m| self.loc(line).syntax(m))?;
                self.exposed_ports = self
                    .exposed_ports
                    .saturating_add(usize::from(end - start) + 1);
                if self.exposed_ports > MAX_EXPOSED_PORTS {
                    return Err(self.loc(line).syntax("too many exposed ports"));
                }
                for port in start..=end {
                    if seen.insert((port, proto.clone())) {
                        ports.push(format!("{port}/{proto}"));
                    }
                }
            }
        }
        Ok(ports)
    }

    fn eval_volume(
        &mut self,
        words: &[String],
        vars: &BTreeMap<String, String>,
        line: usize,
    ) -> Result<Vec<String>, DockerfileError> {
        let mut out = Vec::with_capacity(words.len());
        for word in words {
            let v = self.exp.word(word, vars, line)?;
            let v = v.trim();
            if v.is_empty() {
                return Err(self
                    .loc(line)
                    .syntax("VOLUME specified can not be an empty string"));
            }
            out.push(v.to_string());
        }
        Ok(out)
    }

    fn unused_build_args(&self) -> Vec<String> {
        self.args
            .values
            .keys()
            .filter(|k| !self.declared.contains(*k) && !is_predefined_arg(k))
            .cloned()
            .collect()
    }
}

/// The OS part of a platform string (`windows/amd64` → `windows`).
fn platform_os(platform: &str) -> String {
    platform
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The predefined platform ARGs of the global scope.
fn platform_args(args: &BuildArgs, target: &str) -> BTreeMap<String, String> {
    let (b, t) = (&args.build_platform, &args.platform);
    let pairs = [
        ("BUILDPLATFORM", b.to_string()),
        ("BUILDOS", b.os.clone()),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", b.arch.clone()),
        ("BUILDVARIANT", b.variant.clone().unwrap_or_default()),
        ("TARGETPLATFORM", t.to_string()),
        ("TARGETOS", t.os.clone()),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", t.arch.clone()),
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

/// Join a WORKDIR onto the current one; "" stands for the base image's.
fn join_workdir(current: &str, dir: &str) -> String {
    if dir.starts_with('/') || current.is_empty() {
        clean_path(dir)
    } else {
        clean_path(&format!("{current}/{dir}"))
    }
}

/// What [`parse_command`] needs besides the instruction.
struct CmdContext<'c> {
    escape: char,
    /// Index of the stage the instruction is in.
    stage: usize,
    /// All stage names.
    names: &'c StageNames,
    loc: Loc<'c>,
}

/// Validate one instruction (inside a stage) and capture its arguments.
fn parse_command(ins: &Instruction, ctx: &CmdContext<'_>) -> Result<Cmd, DockerfileError> {
    check_known(ins, ctx.loc)?;
    let loc = ctx.loc;
    let kind = match ins.keyword.as_str() {
        "RUN" => CmdKind::Run,
        "FROM" => return Err(loc.syntax("unexpected FROM")),
        "ADD" | "COPY" => match parse_copy(ins, ctx) {
            Ok(copy) => CmdKind::Copy(copy),
            Err(e @ DockerfileError::Unsupported { .. }) => CmdKind::Unsupported(Box::new(e)),
            Err(e) => return Err(e),
        },
        "HEALTHCHECK" => CmdKind::Ready(StepKind::Healthcheck(parse_healthcheck(ins, loc)?)),
        keyword => {
            FlagValues::parse(ins, &[], loc)?;
            parse_flagless(keyword, ins, ctx)?
        }
    };
    let heredoc_trigger = ins.keyword == "ONBUILD" && !ins.heredocs.is_empty();
    Ok(Cmd {
        line: ins.line,
        text: ins.text.clone(),
        kind,
        heredoc_trigger,
    })
}

/// Instructions that take no flags.
fn parse_flagless(
    keyword: &str,
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    let loc = ctx.loc;
    let text = shell_text(ins);
    Ok(match keyword {
        "ARG" => CmdKind::Arg(parse_arg(ins, ctx.escape, loc)?),
        "ENV" => CmdKind::Env(parse_name_values(text, "ENV", ctx.escape, loc)?),
        "LABEL" => CmdKind::Label(parse_name_values(text, "LABEL", ctx.escape, loc)?),
        "WORKDIR" => CmdKind::Workdir(exactly_one(text, keyword, loc)?),
        "USER" => CmdKind::User(exactly_one(text, keyword, loc)?),
        "STOPSIGNAL" => CmdKind::StopSignal(exactly_one(text, keyword, loc)?),
        "MAINTAINER" => CmdKind::Ready(StepKind::Maintainer(exactly_one(text, keyword, loc)?)),
        "EXPOSE" => CmdKind::Expose(at_least_one(word_list(&ins.args), keyword, loc)?),
        "VOLUME" => CmdKind::Volume(at_least_one(word_list(&ins.args), keyword, loc)?),
        "CMD" => CmdKind::Ready(StepKind::Cmd(command_of(&ins.args))),
        "ENTRYPOINT" => CmdKind::Ready(StepKind::Entrypoint(command_of(&ins.args))),
        "SHELL" => CmdKind::Ready(StepKind::Shell(parse_shell(&ins.args, loc)?)),
        _ => CmdKind::Ready(StepKind::OnBuild(parse_onbuild(ins, loc)?)),
    })
}

/// Error for keywords Docker does not know.
fn check_known(ins: &Instruction, loc: Loc<'_>) -> Result<(), DockerfileError> {
    if INSTRUCTIONS.contains(&ins.keyword.as_str()) {
        return Ok(());
    }
    Err(DockerfileError::UnknownInstruction {
        path: loc.path.to_path_buf(),
        line: loc.line,
        keyword: ins.keyword.clone(),
        suggestion: suggest_instruction(&ins.keyword),
    })
}

/// The known instruction closest to `keyword`, if close enough.
fn suggest_instruction(keyword: &str) -> Option<String> {
    if keyword.chars().count() > 24 {
        return None;
    }
    INSTRUCTIONS
        .iter()
        .map(|known| (edit_distance(keyword, known), *known))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, known)| known.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let above = row.get(j + 1).copied().unwrap_or(0);
            let left = row.get(j).copied().unwrap_or(0);
            let best = (prev + cost).min(above + 1).min(left + 1);
            prev = above;
            if let Some(slot) = row.get_mut(j + 1) {
                *slot = best;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

fn exactly_one(text: &str, keyword: &str, loc: Loc<'_>) -> Result<String, DockerfileError> {
    if text.is_empty() {
        return Err(loc.syntax(format!("{keyword} requires exactly one argument")));
    }
    Ok(text.to_string())
}

fn at_least_one(
    words: Vec<String>,
    keyword: &str,
    loc: Loc<'_>,
) -> Result<Vec<String>, DockerfileError> {
    if words.is_empty() {
        return Err(loc.syntax(format!("{keyword} requires at least one argument")));
    }
    Ok(words)
}

/// JSON items, or the shell text split on blanks.
fn word_list(args: &Args) -> Vec<String> {
    match args {
        Args::Json(items) => items.clone(),
        Args::Shell(text) => split_arg_words(text)
            .into_iter()
            .map(str::to_string)
            .collect(),
    }
}

fn command_of(args: &Args) -> Command {
    match args {
        Args::Json(items) => Command::Exec(items.clone()),
        Args::Shell(text) => Command::Shell(text.clone()),
    }
}

fn parse_shell(args: &Args, loc: Loc<'_>) -> Result<Vec<String>, DockerfileError> {
    match args {
        Args::Json(items) if !items.is_empty() => Ok(items.clone()),
        _ => {
            Err(loc
                .syntax("SHELL requires a non-empty JSON array, e.g. SHELL [\"/bin/sh\", \"-c\"]"))
        }
    }
}

/// `ARG a b=c`: names with optional defaults (values unexpanded).
fn parse_arg(
    ins: &Instruction,
    escape: char,
    loc: Loc<'_>,
) -> Result<Vec<(String, Option<String>)>, DockerfileError> {
    FlagValues::parse(ins, &[], loc)?;
    let words = parse_words(shell_text(ins), escape);
    if words.is_empty() {
        return Err(loc.syntax("ARG requires at least one argument"));
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(loc.syntax("ARG names can not be blank")),
            Some((k, v)) => Ok((k.to_string(), Some(v.to_string()))),
            None => Ok((word, None)),
        })
        .collect()
}

/// ENV/LABEL: `k=v k2="v 2"` or the legacy `k v` form (values unexpanded).
fn parse_name_values(
    text: &str,
    keyword: &str,
    escape: char,
    loc: Loc<'_>,
) -> Result<Vec<(String, String)>, DockerfileError> {
    let words = parse_words(text, escape);
    let Some(first) = words.first() else {
        return Err(loc.syntax(format!("{keyword} requires at least one argument")));
    };
    if !first.contains('=') {
        let Some((key, value)) = text.split_once(crate::dockerfile::is_arg_space) else {
            return Err(loc.syntax(format!("{keyword} must have two arguments")));
        };
        let value = value.trim_start_matches(crate::dockerfile::is_arg_space);
        return Ok(vec![(key.to_string(), value.to_string())]);
    }
    words
        .iter()
        .map(|word| match word.split_once('=') {
            None => Err(loc.syntax(format!(
                "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
            ))),
            Some(("", _)) => Err(loc.syntax(format!("{keyword} names can not be blank"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
        })
        .collect()
}

/// ONBUILD: the trigger text (with heredoc bodies appended).
fn parse_onbuild(ins: &Instruction, loc: Loc<'_>) -> Result<String, DockerfileError> {
    let text = shell_text(ins);
    let Some(trigger) = split_arg_words(text)
        .first()
        .map(|t| t.to_ascii_uppercase())
    else {
        return Err(loc.syntax("ONBUILD requires at least one argument"));
    };
    match trigger.as_str() {
        "ONBUILD" => return Err(loc.syntax("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")),
        "MAINTAINER" | "FROM" => {
            return Err(loc.syntax(format!("{trigger} isn't allowed as an ONBUILD trigger")))
        }
        _ => {}
    }
    let mut expression = ins
        .text
        .get("ONBUILD".len()..)
        .unwrap_or_default()
        .trim_start()
        .to_string();
    for Heredoc { name, content, .. } in &ins.heredocs {
        expression.push('\n');
        expression.push_str(content);
        expression.push_str(name);
    }
    Ok(expression)
}

fn parse_healthcheck(ins: &Instruction, loc: Loc<'_>) -> Result<Healthcheck, DockerfileError> {
    let (kind, json, rest) = match &ins.args {
        Args::Json(items) => match items.split_first() {
            Some((kind, rest)) => (kind.clone(), Some(rest.to_vec()), String::new()),
            None => (String::new(), None, String::new()),
        },
        Args::Shell(text) => {
            let (kind, rest) = text
                .split_once(|c: char| c.is_ascii_whitespace())
                .unwrap_or((text, ""));
            (kind.to_string(), None, rest.trim_start().to_string())
        }
    };
    match kind.to_ascii_uppercase().as_str() {
        "" => Err(loc.syntax("HEALTHCHECK requires at least one argument")),
        "NONE" if json.as_ref().is_some_and(|j| !j.is_empty()) || !rest.is_empty() => {
            Err(loc.syntax("HEALTHCHECK NONE takes no arguments"))
        }
        "NONE" => Ok(Healthcheck {
            test: vec!["NONE".to_string()],
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        }),
        "CMD" => healthcheck_cmd(ins, json, rest, loc),
        _ => Err(loc.syntax(format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)"))),
    }
}

fn healthcheck_cmd(
    ins: &Instruction,
    json: Option<Vec<String>>,
    rest: String,
    loc: Loc<'_>,
) -> Result<Healthcheck, DockerfileError> {
    let flags = FlagValues::parse(
        ins,
        &[
            ("interval", FlagKind::Str),
            ("timeout", FlagKind::Str),
            ("start-period", FlagKind::Str),
            ("start-interval", FlagKind::Str),
            ("retries", FlagKind::Str),
        ],
        loc,
    )?;
    let test = match json {
        Some(items) if items.is_empty() => {
            return Err(loc.syntax("Missing command after HEALTHCHECK CMD"))
        }
        Some(items) => std::iter::once("CMD".to_string()).chain(items).collect(),
        None if rest.is_empty() => return Err(loc.syntax("Missing command after HEALTHCHECK CMD")),
        None => vec!["CMD-SHELL".to_string(), rest],
    };
    let interval = |name: &str| -> Result<Option<Duration>, DockerfileError> {
        parse_interval(name, flags.string(name).as_deref()).map_err(|m| loc.syntax(m))
    };
    Ok(Healthcheck {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries: parse_retries(flags.string("retries").as_deref()).map_err(|m| loc.syntax(m))?,
    })
}

/// A HEALTHCHECK duration flag: Go duration syntax, 0 or at least 1ms.
fn parse_interval(name: &str, value: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let (negative, nanos) = parse_go_duration(value).map_err(|e| format!("--{name}: {e}"))?;
    if nanos != 0 && (negative || nanos < 1_000_000) {
        return Err(format!("Interval \"{name}\" cannot be less than 1ms"));
    }
    Ok(Some(Duration::from_nanos(nanos)))
}

fn parse_retries(value: Option<&str>) -> Result<Option<u32>, String> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let n: i32 = value
        .parse()
        .map_err(|_| format!("--retries: invalid number {value:?}"))?;
    u32::try_from(n)
        .map(Some)
        .map_err(|_| format!("--retries cannot be negative ({n})"))
}

/// Go's `time.ParseDuration`: returns (negative, nanoseconds).
fn parse_go_duration(text: &str) -> Result<(bool, u64), String> {
    let invalid = || format!("invalid duration {text:?}");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok((negative, 0));
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (nanos, after) = duration_component(rest).ok_or_else(invalid)?;
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= 1 << 63)
            .ok_or_else(invalid)?;
        rest = after;
    }
    Ok((negative, total))
}

/// One `<number>[.<fraction>]<unit>` of a Go duration.
fn duration_component(text: &str) -> Option<(u64, &str)> {
    let int_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (int_part, rest) = text.split_at(int_len);
    let (frac_part, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let len = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            r.split_at(len)
        }
        None => ("", rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let unit_len = rest
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (unit, rest) = rest.split_at(unit_len);
    let scale: u128 = match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    };
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let mut nanos = int.checked_mul(scale)?;
    let digits = frac_part.get(..frac_part.len().min(18)).unwrap_or_default();
    if !digits.is_empty() {
        let frac: u128 = digits.parse().ok()?;
        let divisor = 10u128.checked_pow(u32::try_from(digits.len()).ok()?)?;
        nanos = nanos.checked_add(frac.checked_mul(scale)? / divisor)?;
    }
    u64::try_from(nanos).ok().map(|n| (n, rest))
}

/// `[ip:][hostport:]port[-end][/proto]` → (start, end, proto).
fn parse_port_spec(spec: &str) -> Result<(u16, u16, String), String> {
    let container = spec.rsplit(':').next().unwrap_or(spec);
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("invalid port {spec:?}: no port specified"));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        _ => return Err(format!("invalid port {spec:?}: invalid proto: {proto}")),
    };
    let invalid = || format!("invalid port {spec:?}: invalid containerPort: {port}");
    let number = |s: &str| s.parse::<u16>().map_err(|_| invalid());
    let (start, end) = match port.split_once('-') {
        Some((a, b)) if a != b => (number(a)?, number(b)?),
        Some((a, _)) => (number(a)?, number(a)?),
        None => (number(port)?, number(port)?),
    };
    if end < start {
        return Err(invalid());
    }
    Ok((start, end, proto))
}

/// An octal mode such as `755` or `0644`.
fn validate_chmod(mode: &str) -> Result<(), String> {
    let octal =
        !mode.is_empty() && mode.len() <= 12 && mode.chars().all(|c| ('0'..='7').contains(&c));
    if !octal {
        return Err(format!(
            "--chmod={mode}: only octal modes such as 0755 are supported (symbolic modes like u+x are not)"
        ));
    }
    match u32::from_str_radix(mode, 8) {
        Ok(m) if m <= 0o7777 => Ok(()),
        _ => Err(format!(
            "--chmod={mode}: mode is out of range (at most 7777)"
        )),
    }
}

/// A signal number or a Linux signal name, with or without `SIG`.
fn validate_signal(signal: &str) -> Result<(), String> {
    const NAMES: [&str; 34] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
    ];
    if let Ok(n) = signal.parse::<u32>() {
        return if n == 0 {
            Err("invalid signal: 0".to_string())
        } else {
            Ok(())
        };
    }
    let upper = signal.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |base: &str, sign: char| {
        name.strip_prefix(base).is_some_and(|r| {
            r.is_empty()
                || r.strip_prefix(sign)
                    .and_then(|n| n.parse::<u8>().ok())
                    .is_some_and(|n| (1..=15).contains(&n))
        })
    };
    if NAMES.contains(&name) || name == "XFSZ" || realtime("RTMIN", '+') || realtime("RTMAX", '-') {
        return Ok(());
    }
    Err(format!("invalid signal: {signal}"))
}

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    Str,
    /// May be repeated.
    Strings,
}

/// Validated flag values (booleans as "true"/"false").
struct FlagValues {
    values: BTreeMap<String, Vec<String>>,
}

impl FlagValues {
    /// Check `ins.flags` against `allowed` (BuildKit's `BFlags.Parse`).
    fn parse(
        ins: &Instruction,
        allowed: &[(&str, FlagKind)],
        loc: Loc<'_>,
    ) -> Result<Self, DockerfileError> {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for flag in &ins.flags {
            let Some(&(_, kind)) = allowed.iter().find(|(n, _)| *n == flag.name) else {
                return Err(unknown_flag(ins, flag, allowed, loc));
            };
            let entry = values.entry(flag.name.clone()).or_default();
            if !entry.is_empty() && kind != FlagKind::Strings {
                return Err(loc.syntax(format!("duplicate flag specified: --{}", flag.name)));
            }
            entry.push(flag_value(flag, kind).map_err(|m| loc.syntax(m))?);
        }
        Ok(FlagValues { values })
    }

    /// A string flag's value; `None` if absent or empty.
    fn string(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .filter(|v| !v.is_empty())
            .cloned()
    }

    fn boolean(&self, name: &str) -> bool {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .is_some_and(|v| v == "true")
    }

    fn used(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
}

fn flag_value(flag: &Flag, kind: FlagKind) -> Result<String, String> {
    let name = &flag.name;
    match (kind, flag.value.as_deref()) {
        (FlagKind::Bool, None) => Ok("true".to_string()),
        (FlagKind::Bool, Some("")) => Err(format!("missing a value on flag: --{name}")),
        (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
            b @ ("true" | "false") => Ok(b.to_string()),
            _ => Err(format!(
                "expecting boolean value for flag --{name}, not: {v}"
            )),
        },
        (_, None) => Err(format!("missing a value on flag: --{name}")),
        (_, Some(v)) => Ok(v.to_string()),
    }
}

fn unknown_flag(
    ins: &Instruction,
    flag: &Flag,
    allowed: &[(&str, FlagKind)],
    loc: Loc<'_>,
) -> DockerfileError {
    let valid = if allowed.is_empty() {
        format!("{} takes no flags", ins.keyword)
    } else {
        let names: Vec<String> = allowed.iter().map(|(n, _)| format!("--{n}")).collect();
        format!("valid flags for {} are {}", ins.keyword, names.join(", "))
    };
    loc.syntax(format!("unknown flag: --{} ({valid})", flag.name))
}

/// COPY and ADD.
fn parse_copy(ins: &Instruction, ctx: &CmdContext<'_>) -> Result<RawCopy, DockerfileError> {
    let loc = ctx.loc;
    let add = ins.keyword == "ADD";
    let flags = FlagValues::parse(ins, if add { &ADD_FLAGS } else { &COPY_FLAGS }, loc)?;
    let mut words = word_list(&ins.args);
    if words.len() < 2 {
        return Err(loc.syntax(format!(
            "{} requires at least two arguments, but only one was provided. Destination could not be determined",
            ins.keyword
        )));
    }
    // After the syntax checks: what regbuild lacks is an error only where the stage is built.
    refuse_unsupported_copy_flags(&flags, &ins.keyword, loc)?;
    if !ins.heredocs.is_empty() {
        return Err(loc.unsupported(format!(
            "{} with a heredoc (<<) is not supported by regbuild: put the content in a file in the build context and copy that",
            ins.keyword
        )));
    }
    let dest = words.pop().unwrap_or_default();
    let closure = flags.boolean("closure");
    if flags.used("sysroot") && !closure {
        return Err(loc.syntax("--sysroot can only be used together with --closure"));
    }
    let from = match flags.string("from") {
        Some(from) => Some(resolve_copy_from(&from, ctx)?),
        None => None,
    };
    Ok(RawCopy {
        add,
        sources: words,
        dest,
        from,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.boolean("link"),
        closure,
        sysroot: flags.string("sysroot"),
        exclude: flags.all("exclude"),
        keep_git_dir: flags.boolean("keep-git-dir"),
        checksum: flags.string("checksum"),
    })
}

const COPY_FLAGS: [(&str, FlagKind); 8] = [
    ("chown", FlagKind::Str),
    ("from", FlagKind::Str),
    ("chmod", FlagKind::Str),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
    ("parents", FlagKind::Bool),
    ("closure", FlagKind::Bool),
    ("sysroot", FlagKind::Str),
];

const ADD_FLAGS: [(&str, FlagKind); 7] = [
    ("chown", FlagKind::Str),
    ("chmod", FlagKind::Str),
    ("link", FlagKind::Bool),
    ("keep-git-dir", FlagKind::Bool),
    ("checksum", FlagKind::Str),
    ("unpack", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
];

fn refuse_unsupported_copy_flags(
    flags: &FlagValues,
    keyword: &str,
    loc: Loc<'_>,
) -> Result<(), DockerfileError> {
    for name in ["parents", "unpack"] {
        if flags.used(name) {
            return Err(loc.unsupported(format!("{keyword} --{name} is not supported by regbuild")));
        }
    }
    Ok(())
}

/// `--from=<stage name | stage index | image>`.
fn resolve_copy_from(from: &str, ctx: &CmdContext<'_>) -> Result<CopyFrom, DockerfileError> {
    let loc = ctx.loc;
    if expand_word(from, ctx.escape, &NoVariables).as_deref() != Ok(from) {
        return Err(loc.stage(format!(
            "--from={from}: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
        )));
    }
    let index = match from.parse::<i64>() {
        Ok(i) => usize::try_from(i)
            .ok()
            .filter(|i| *i < ctx.names.count)
            .ok_or_else(|| loc.stage(format!("--from={from}: invalid stage index {i}")))?,
        Err(_) => match ctx.names.get(&from.to_lowercase()) {
            Some(i) => i,
            None => return Ok(CopyFrom::Image(from.to_string())),
        },
    };
    if index >= ctx.stage {
        return Err(loc.stage(format!(
            "--from={from}: stage {index} is not defined before the current stage; a stage can only copy from earlier stages"
        )));
    }
    Ok(CopyFrom::Stage(index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;
    use std::path::Path;

    fn linux_amd64() -> BuildArgs {
        BuildArgs::new(Platform::new("linux", "amd64", None))
    }

    fn no_env(_: &str) -> Result<Vec<(String, String)>, String> {
        Ok(Vec::new())
    }

    fn eval_with(text: &str, args: &BuildArgs) -> Result<Build, DockerfileError> {
        let df = parse(text, Path::new("Dockerfile.test"))?;
        evaluate(&df, args, &mut no_env)
    }

    fn eval(text: &str) -> Build {
        eval_with(text, &linux_amd64()).unwrap()
    }

    fn eval_err(text: &str) -> String {
        eval_with(text, &linux_amd64()).unwrap_err().to_string()
    }

    fn kinds(build: &Build) -> Vec<StepKind> {
        build.stages[build.target]
            .steps
            .iter()
            .map(|s| s.kind.clone())
            .collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn copy_of(kind: &StepKind) -> &CopySpec {
        match kind {
            StepKind::Copy(c) => c,
            other => panic!("not a copy: {other:?}"),
        }
    }

    #[test]
    fn every_instruction() {
        let b = eval(concat!(
            "FROM scratch\n",
            "ADD --chown=1:1 --chmod=644 --link --checksum=sha256:abc https://x/y.tgz /y\n",
            "COPY --exclude=*.md --exclude=tmp a b /dst/\n",
            "ENV A=1 B=\"two words\"\n",
            "ENV LEGACY some value\n",
            "LABEL org.x=\"y z\" other=v\n",
            "ARG V=3\n",
            "WORKDIR /app\n",
            "USER nobody:nogroup\n",
            "EXPOSE 80 443/udp 8000-8001\n",
            "VOLUME /data /cache\n",
            "VOLUME [\"/json\"]\n",
            "ENTRYPOINT [\"/bin/app\"]\n",
            "CMD echo --help\n",
            "STOPSIGNAL SIGTERM\n",
            "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s --start-interval=500ms --retries=3 CMD [\"/bin/app\", \"health\"]\n",
            "SHELL [\"/bin/bash\", \"-c\"]\n",
            "ONBUILD COPY . /src\n",
            "MAINTAINER someone\n",
        ));
        let k = kinds(&b);
        let add = copy_of(&k[0]);
        assert!(add.add && add.link);
        assert_eq!(add.sources, strings(&["https://x/y.tgz"]));
        assert_eq!(
            (add.chown.as_deref(), add.chmod.as_deref()),
            (Some("1:1"), Some("644"))
        );
        assert_eq!(add.checksum.as_deref(), Some("sha256:abc"));
        let copy = copy_of(&k[1]);
        assert_eq!(
            (copy.sources.clone(), copy.dest.as_str()),
            (strings(&["a", "b"]), "/dst/")
        );
        assert_eq!(copy.exclude, strings(&["*.md", "tmp"]));
        assert_eq!(
            k[2],
            StepKind::Env(pairs(&[("A", "1"), ("B", "two words")]))
        );
        assert_eq!(k[3], StepKind::Env(pairs(&[("LEGACY", "some value")])));
        assert_eq!(
            k[4],
            StepKind::Label(pairs(&[("org.x", "y z"), ("other", "v")]))
        );
        assert_eq!(
            k[5],
            StepKind::Arg(vec![("V".to_string(), Some("3".to_string()))])
        );
        assert_eq!(k[6], StepKind::Workdir("/app".into()));
        assert_eq!(k[7], StepKind::User("nobody:nogroup".into()));
        assert_eq!(
            k[8],
            StepKind::Expose(strings(&["80/tcp", "443/udp", "8000/tcp", "8001/tcp"]))
        );
        assert_eq!(k[9], StepKind::Volume(strings(&["/data", "/cache"])));
        assert_eq!(k[10], StepKind::Volume(strings(&["/json"])));
        assert_eq!(
            k[11],
            StepKind::Entrypoint(Command::Exec(strings(&["/bin/app"])))
        );
        assert_eq!(k[12], StepKind::Cmd(Command::Shell("echo --help".into())));
        assert_eq!(k[13], StepKind::StopSignal("SIGTERM".into()));
        assert_eq!(
            k[14],
            StepKind::Healthcheck(Healthcheck {
                test: strings(&["CMD", "/bin/app", "health"]),
                interval: Some(Duration::from_secs(30)),
                timeout: Some(Duration::from_secs(90)),
                start_period: Some(Duration::from_millis(1500)),
                start_interval: Some(Duration::from_millis(500)),
                retries: Some(3),
            })
        );
        assert_eq!(k[15], StepKind::Shell(strings(&["/bin/bash", "-c"])));
        assert_eq!(k[16], StepKind::OnBuild("COPY . /src".into()));
        assert_eq!(k[17], StepKind::Maintainer("someone".into()));
        assert_eq!(b.stages[0].steps[16].text, "ONBUILD COPY . /src");
        assert_eq!(b.stages[0].steps[3].line, 5);
    }

    #[test]
    fn healthcheck_shell_and_none() {
        let b =
            eval("FROM scratch\nHEALTHCHECK CMD curl -f http://x || exit 1\nHEALTHCHECK none\n");
        let k = kinds(&b);
        let StepKind::Healthcheck(h) = &k[0] else {
            panic!()
        };
        assert_eq!(
            h.test,
            strings(&["CMD-SHELL", "curl -f http://x || exit 1"])
        );
        let StepKind::Healthcheck(h) = &k[1] else {
            panic!()
        };
        assert_eq!(h.test, strings(&["NONE"]));
        assert!(eval_err("FROM scratch\nHEALTHCHECK NONE x\n")
            .ends_with("HEALTHCHECK NONE takes no arguments"));
        assert!(eval_err("FROM scratch\nHEALTHCHECK CMD\n")
            .ends_with("Missing command after HEALTHCHECK CMD"));
        assert!(eval_err("FROM scratch\nHEALTHCHECK --interval=1us CMD x\n")
            .ends_with("cannot be less than 1ms"));
        assert!(eval_err("FROM scratch\nHEALTHCHECK --retries=-1 CMD x\n")
            .ends_with("--retries cannot be negative (-1)"));
        assert!(eval_err("FROM scratch\nHEALTHCHECK WAT x\n").contains("Unknown type \"WAT\""));
    }

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

    #[test]
    fn substitution_forms() {
        let b = eval(concat!(
            "FROM scratch\n",
            "ENV A=a EMPTY=\n",
            "ENV R1=$A R2=${A} R3=${NOPE:-d} R4=${A:+x} R5=${NOPE:+x} R6=\\$A R7=${EMPTY-d} R8=${EMPTY:-d}\n",
            "LABEL \"quoted key\"='$A' dq=\"$A\"\n",
        ));
        assert_eq!(
            kinds(&b)[1],
            StepKind::Env(pairs(&[
                ("R1", "a"),
                ("R2", "a"),
                ("R3", "d"),
                ("R4", "x"),
                ("R5", ""),
                ("R6", "$A"),
                ("R7", ""),
                ("R8", "d"),
            ]))
        );
        assert_eq!(
            kinds(&b)[2],
            StepKind::Label(pairs(&[("quoted key", "$A"), ("dq", "a")]))
        );
    }

    #[test]
    fn env_in_one_instruction_uses_previous_values() {
        let b = eval("FROM scratch\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n");
        assert_eq!(
            kinds(&b)[1],
            StepKind::Env(pairs(&[("abc", "bye"), ("def", "hello")]))
        );
        assert_eq!(kinds(&b)[2], StepKind::Env(pairs(&[("ghi", "bye")])));
    }

    #[test]
    fn base_env_and_default_path() {
        let df = parse(
            "FROM alpine\nENV PATH=$PATH:/opt/bin GREETING=\"$HELLO world\"\nFROM scratch\nENV P=$PATH\n",
            Path::new("Dockerfile.test"),
        )
        .unwrap();
        let calls = std::cell::RefCell::new(Vec::new());
        let mut base_env = |image: &str| {
            calls.borrow_mut().push(image.to_string());
            Ok(pairs(&[("PATH", "/usr/bin"), ("HELLO", "hi")]))
        };
        let mut args = linux_amd64();
        args.target = None;
        let b = evaluate(&df, &args, &mut base_env).unwrap();
        assert!(!b.stages[0].reachable);
        assert!(b.stages[0].steps.is_empty());
        assert!(calls.borrow().is_empty());
        assert_eq!(kinds(&b)[0], StepKind::Env(pairs(&[("P", DEFAULT_PATH)])));
        args.target = Some("0".into());
        assert!(evaluate(&df, &args, &mut base_env).is_err());
        let df = parse(
            "FROM alpine AS a\nENV PATH=$PATH:/opt/bin GREETING=\"$HELLO world\"\n",
            Path::new("f"),
        )
        .unwrap();
        let b = evaluate(&df, &args_target(None), &mut base_env).unwrap();
        assert_eq!(*calls.borrow(), vec!["alpine".to_string()]);
        assert_eq!(
            kinds(&b)[0],
            StepKind::Env(pairs(&[
                ("PATH", "/usr/bin:/opt/bin"),
                ("GREETING", "hi world")
            ]))
        );
    }

    fn args_target(target: Option<&str>) -> BuildArgs {
        let mut args = linux_amd64();
        args.target = target.map(str::to_string);
        args
    }

    #[test]
    fn base_env_errors_name_the_from_line() {
        let df = parse("\nFROM private/img\n", Path::new("Dockerfile.test")).unwrap();
        let err = evaluate(&df, &linux_amd64(), &mut |_| {
            Err("401 unauthorized".to_string())
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Dockerfile.test:2: cannot read the configuration of base image private/img: 401 unauthorized"
        );
    }

    #[test]
    fn multi_stage_copy_from_name_and_index() {
        let b = eval(concat!(
            "FROM golang:1.22 AS Build\n",
            "WORKDIR /src\n",
            "FROM scratch AS assets\n",
            "FROM build AS test\n",
            "FROM scratch\n",
            "COPY --from=build /out/app /app\n",
            "COPY --from=1 /a /a\n",
            "COPY --from=nginx:latest /etc/nginx /etc/nginx\n",
        ));
        assert_eq!(b.target, 3);
        assert_eq!(b.stages[0].name.as_deref(), Some("build"));
        assert_eq!(b.stages[2].base, Base::Stage(0));
        let k = kinds(&b);
        assert_eq!(copy_of(&k[0]).from, Some(CopyFrom::Stage(0)));
        assert_eq!(copy_of(&k[1]).from, Some(CopyFrom::Stage(1)));
        assert_eq!(
            copy_of(&k[2]).from,
            Some(CopyFrom::Image("nginx:latest".into()))
        );
        let reach: Vec<bool> = b.stages.iter().map(|s| s.reachable).collect();
        assert_eq!(reach, vec![true, true, false, true]);
    }

    #[test]
    fn target_selects_stage_and_its_dependencies() {
        let text = "FROM scratch AS a\nCOPY x /x\nFROM a AS b\nRUN make\nFROM scratch AS c\nCOPY --from=a /x /y\n";
        let b = eval_with(text, &args_target(Some("C"))).unwrap();
        assert_eq!(b.target, 2);
        let reach: Vec<bool> = b.stages.iter().map(|s| s.reachable).collect();
        assert_eq!(reach, vec![true, false, true]);
        let err = eval_with(text, &args_target(Some("b"))).unwrap_err();
        assert!(matches!(
            err,
            DockerfileError::RunNotSupported { line: 4, .. }
        ));
        let err = eval_with(text, &args_target(Some("nope")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Dockerfile.test:5: target stage \"nope\" could not be found; the named stages are: a, b, c"
        );
    }

    #[test]
    fn run_is_refused_with_its_line() {
        let err = eval_err("FROM alpine\n\n# comment\nCOPY a /a\nENV X=1\n\nRUN echo hi\n");
        assert_eq!(
            err,
            "Dockerfile.test:7: RUN is not supported: regbuild builds images without executing code (use a multi-stage build that only copies files, or build the artifact beforehand)"
        );
        let err = eval_err("FROM alpine AS b\nRUN \\\n  make\nFROM scratch\nCOPY --from=b /x /x\n");
        assert!(err.starts_with("Dockerfile.test:2: RUN is not supported"));
    }

    #[test]
    fn structural_errors_everywhere() {
        assert_eq!(
            eval_err("FROM scratch AS unused\nCOPY onlyone\nFROM scratch\n"),
            "Dockerfile.test:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"
        );
        assert_eq!(
            eval_err("FROM scratch AS unused\nCOPPY a b\nFROM scratch\n"),
            "Dockerfile.test:2: unknown instruction: COPPY (did you mean COPY?)"
        );
        assert_eq!(
            eval_err("FROM scratch\nFROBNICATE\n"),
            "Dockerfile.test:2: unknown instruction: FROBNICATE"
        );
        assert!(eval_err("FROM scratch\nCOPY --nope a b\n")
            .starts_with("Dockerfile.test:2: unknown flag: --nope (valid flags for COPY are"));
        assert_eq!(
            eval_err("FROM scratch\nENV --x=1 A=b\n"),
            "Dockerfile.test:2: unknown flag: --x (ENV takes no flags)"
        );
        assert_eq!(
            eval_err("FROM scratch\nCOPY --link=maybe a b\n"),
            "Dockerfile.test:2: expecting boolean value for flag --link, not: maybe"
        );
        assert_eq!(
            eval_err("FROM scratch\nCOPY --from a b\n"),
            "Dockerfile.test:2: missing a value on flag: --from"
        );
    }

    #[test]
    fn stage_errors() {
        assert_eq!(
            eval_err("ARG A\nCOPY a b\nFROM scratch\n"),
            "Dockerfile.test:2: COPY must come after a FROM instruction (only ARG may come before the first FROM)"
        );
        assert_eq!(
            eval_err("FROM scratch AS x\nFROM scratch AS X\n"),
            "Dockerfile.test:2: duplicate stage name \"x\" (already used on line 1)"
        );
        assert!(
            eval_err("FROM scratch AS a\nCOPY --from=b x y\nFROM scratch AS b\n").starts_with(
                "Dockerfile.test:2: --from=b: stage 1 is not defined before the current stage"
            )
        );
        assert!(eval_err("FROM scratch AS a\nCOPY --from=a x y\n")
            .starts_with("Dockerfile.test:2: --from=a: stage 0 is not defined before"));
        assert!(eval_err("FROM scratch\nCOPY --from=5 x y\n")
            .starts_with("Dockerfile.test:2: --from=5: invalid stage index 5"));
        assert!(eval_err("FROM scratch\nCOPY --from=$X x y\n")
            .contains("variable expansion is not supported for --from"));
        assert_eq!(
            eval_err("FROM scratch AS 1abc\n"),
            "Dockerfile.test:1: invalid name for build stage: \"1abc\", name can't start with a number or contain symbols"
        );
        assert!(eval_err("FROM a b\n")
            .starts_with("Dockerfile.test:1: FROM requires either one or three arguments"));
        assert!(eval_err("ARG X\n").contains("no FROM instruction"));
        assert_eq!(
            eval_err("ARG EMPTY\nFROM $EMPTY\n"),
            "Dockerfile.test:2: base name ($EMPTY) should not be blank"
        );
    }

    #[test]
    fn substitution_errors_have_lines() {
        assert_eq!(
            eval_err("FROM scratch\n\nENV A=${B\n"),
            "Dockerfile.test:3: cannot expand \"${B\": syntax error: missing '}'"
        );
        assert_eq!(
            eval_err("ARG V\nFROM alpine:${V:?required}\n"),
            "Dockerfile.test:2: cannot expand \"alpine:${V:?required}\": V: required"
        );
    }

    #[test]
    fn copy_flags_and_chmod() {
        let b = eval("FROM scratch\nARG MODE=0755\nCOPY --chmod=$MODE --closure --sysroot=/sys --link=false bin /usr/bin/\n");
        let c = copy_of(&kinds(&b)[1]).clone();
        assert_eq!(c.chmod.as_deref(), Some("0755"));
        assert!(c.closure && !c.link);
        assert_eq!(c.sysroot.as_deref(), Some("/sys"));
        assert!(eval_err("FROM scratch\nCOPY --chmod=u+x a b\n").contains("only octal modes"));
        assert!(eval_err("FROM scratch\nCOPY --chmod=77777 a b\n").contains("out of range"));
        assert!(eval_err("FROM scratch\nCOPY --sysroot=/x a b\n")
            .contains("--sysroot can only be used together with --closure"));
        assert!(eval_err("FROM scratch\nCOPY --parents a b\n")
            .contains("COPY --parents is not supported"));
        assert!(eval_err("FROM scratch\nCOPY <<EOF /x\nhi\nEOF\n")
            .starts_with("Dockerfile.test:2: COPY with a heredoc"));
    }

    #[test]
    fn features_regbuild_lacks_only_fail_in_stages_the_target_needs() {
        // Parsed (a syntax error there still fails), not evaluated: as RUN is skipped.
        let b = eval(
            "FROM scratch AS docs\nCOPY <<EOF /x\nhi\nEOF\nCOPY --parents a/ b\nRUN make\n\
             FROM scratch\nCOPY f /f\n",
        );
        assert!(!b.stages[0].reachable);
        assert_eq!(b.target, 1);
        assert!(
            eval_err("FROM scratch AS docs\nCOPY --parents a/ b\nFROM docs\n")
                .contains("COPY --parents is not supported")
        );
        assert!(
            eval_err("FROM scratch AS docs\nCOPY --parents a\nFROM scratch\n")
                .contains("requires at least two arguments"),
            "a syntax error in an unused stage is still one"
        );
    }

    #[test]
    fn copy_json_form_and_expansion() {
        let b = eval("FROM scratch\nENV D=/dst\nCOPY [\"a b\", \"$D/\"]\nCOPY src\\ dir $D\n");
        let k = kinds(&b);
        assert_eq!(copy_of(&k[1]).sources, strings(&["a b"]));
        assert_eq!(copy_of(&k[1]).dest, "/dst/");
        assert_eq!(copy_of(&k[2]).sources, strings(&["src", "dir"]));
    }

    #[test]
    fn workdir_is_joined_and_cleaned() {
        let b = eval("FROM scratch\nWORKDIR a\nWORKDIR b/../c/\nWORKDIR /x/./y//\nWORKDIR ..\n");
        let dirs: Vec<StepKind> = kinds(&b);
        assert_eq!(
            dirs,
            vec![
                StepKind::Workdir("/a".into()),
                StepKind::Workdir("/a/c".into()),
                StepKind::Workdir("/x/y".into()),
                StepKind::Workdir("/x".into()),
            ]
        );
        let b = eval(
            "FROM alpine\nWORKDIR sub\nWORKDIR ../other\nFROM alpine\nWORKDIR /abs\nWORKDIR rel\n",
        );
        assert_eq!(
            kinds(&b),
            vec![
                StepKind::Workdir("/abs".into()),
                StepKind::Workdir("/abs/rel".into())
            ]
        );
        let b = eval_with(
            "FROM alpine AS a\nWORKDIR sub\nWORKDIR ../other\n",
            &linux_amd64(),
        )
        .unwrap();
        assert_eq!(
            kinds(&b),
            vec![
                StepKind::Workdir("sub".into()),
                StepKind::Workdir("other".into())
            ]
        );
    }

    #[test]
    fn stage_inherits_env_and_args_from_base_stage() {
        let b = eval("FROM scratch AS base\nENV A=1\nARG B=2\nWORKDIR /w\nFROM base\nENV C=$A$B\nWORKDIR x\n");
        assert_eq!(
            kinds(&b),
            vec![
                StepKind::Env(pairs(&[("C", "12")])),
                StepKind::Workdir("/w/x".into())
            ]
        );
    }

    #[test]
    fn image_env_wins_over_parent_args_in_child_stage() {
        let b = eval("FROM scratch AS base\nENV A=1\nARG A=2\nENV B=$A\nFROM base\nENV X=$A$B\n");
        assert_eq!(
            b.stages[0].steps[2].kind,
            StepKind::Env(pairs(&[("B", "2")]))
        );
        assert_eq!(kinds(&b), vec![StepKind::Env(pairs(&[("X", "12")]))]);
    }

    #[test]
    fn several_children_of_one_stage() {
        let b = eval(concat!(
            "FROM scratch AS base\n",
            "ENV A=1\n",
            "FROM base AS one\n",
            "ENV B=$A\n",
            "FROM base AS two\n",
            "ENV C=$A\n",
            "FROM scratch\n",
            "COPY --from=one /a /a\n",
            "COPY --from=two /b /b\n",
        ));
        assert_eq!(
            b.stages[1].steps[0].kind,
            StepKind::Env(pairs(&[("B", "1")]))
        );
        assert_eq!(
            b.stages[2].steps[0].kind,
            StepKind::Env(pairs(&[("C", "1")]))
        );
    }

    #[test]
    fn windows_stages_get_no_default_path() {
        let b = eval("FROM --platform=windows/amd64 scratch AS w\nENV P=${PATH:-none}\nFROM w\nENV Q=${PATH:-none}\n");
        assert_eq!(
            b.stages[0].steps[0].kind,
            StepKind::Env(pairs(&[("P", "none")]))
        );
        assert_eq!(kinds(&b), vec![StepKind::Env(pairs(&[("Q", "none")]))]);
    }

    #[test]
    fn onbuild_triggers_run_in_child_stages() {
        let b = eval(concat!(
            "FROM scratch AS tools\n",
            "FROM scratch AS base\n",
            "ENV X=1\n",
            "ONBUILD COPY --from=tools /t /t\n",
            "FROM base\n",
            "USER u\n",
        ));
        assert!(b.stages[0].reachable);
        let k = kinds(&b);
        assert_eq!(copy_of(&k[0]).from, Some(CopyFrom::Stage(0)));
        assert_eq!(b.stages[2].steps[0].line, 4);
        assert_eq!(k[1], StepKind::User("u".into()));
        assert!(eval_err("FROM scratch\nONBUILD ONBUILD COPY a b\n")
            .ends_with("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"));
        assert!(eval_err("FROM scratch\nONBUILD FROM x\n")
            .ends_with("FROM isn't allowed as an ONBUILD trigger"));
        assert!(eval_err("FROM scratch AS a\nONBUILD RUN x\nFROM a\n")
            .starts_with("Dockerfile.test:2: RUN is not supported"));
    }

    #[test]
    fn expose_forms() {
        let b =
            eval("FROM scratch\nARG P=\"9000 9001/UDP\"\nEXPOSE $P 127.0.0.1:80:8080 80 80/tcp\n");
        assert_eq!(
            kinds(&b)[1],
            StepKind::Expose(strings(&["9000/tcp", "9001/udp", "8080/tcp", "80/tcp"]))
        );
        assert!(eval_err("FROM scratch\nEXPOSE 80/xyz\n").contains("invalid proto"));
        assert!(eval_err("FROM scratch\nEXPOSE 70000\n").contains("invalid containerPort"));
        assert!(eval_err("FROM scratch\nEXPOSE 90-80\n").contains("invalid containerPort"));
    }

    #[test]
    fn stopsignal_validation() {
        for ok in ["9", "SIGKILL", "term", "SIGRTMIN+3", "RTMAX-1", "SIGRTMAX"] {
            eval(&format!("FROM scratch\nSTOPSIGNAL {ok}\n"));
        }
        assert!(eval_err("FROM scratch\nSTOPSIGNAL SIGNOPE\n").contains("invalid signal"));
        assert!(eval_err("FROM scratch\nSTOPSIGNAL 0\n").contains("invalid signal"));
    }

    #[test]
    fn arg_and_env_errors() {
        assert!(eval_err("FROM scratch\nENV A\n").ends_with("ENV must have two arguments"));
        assert!(eval_err("FROM scratch\nENV A=1 B\n").contains("can't find = in \"B\""));
        assert!(eval_err("FROM scratch\nENV =1\n").ends_with("ENV names can not be blank"));
        assert!(eval_err("FROM scratch\nARG =1\n").ends_with("ARG names can not be blank"));
        assert!(eval_err("FROM scratch\nARG\n").ends_with("ARG requires at least one argument"));
        assert!(eval_err("FROM scratch\nUSER\n").ends_with("USER requires exactly one argument"));
        assert!(eval_err("FROM scratch\nVOLUME \"\"\n")
            .ends_with("VOLUME specified can not be an empty string"));
    }

    #[test]
    fn args_in_stage_see_earlier_args_and_globals() {
        let b =
            eval("ARG G=global\nFROM scratch\nARG A=1 B=${A}2\nARG G\nARG U\nENV X=$B$G${U:-u}\n");
        assert_eq!(
            kinds(&b),
            vec![
                StepKind::Arg(vec![
                    ("A".into(), Some("1".into())),
                    ("B".into(), Some("12".into()))
                ]),
                StepKind::Arg(vec![("G".into(), Some("global".into()))]),
                StepKind::Arg(vec![("U".into(), None)]),
                StepKind::Env(pairs(&[("X", "12globalu")])),
            ]
        );
    }

    #[test]
    fn backtick_escape_in_substitution() {
        let b = eval("# escape=`\nFROM scratch\nENV A=x B=`$A C=c:\\$A\n");
        assert_eq!(
            kinds(&b)[0],
            StepKind::Env(pairs(&[("A", "x"), ("B", "$A"), ("C", "c:\\")]))
        );
    }

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

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Ok((false, 3_723_500_000_000))
        );
        assert_eq!(parse_go_duration("0"), Ok((false, 0)));
        assert_eq!(parse_go_duration(".5ms"), Ok((false, 500_000)));
        assert_eq!(parse_go_duration("10\u{b5}s"), Ok((false, 10_000)));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("s").is_err());
        assert!(parse_go_duration("99999999999h").is_err());
    }

    #[test]
    fn flags_before_cmd_arguments_are_flags_like_in_docker() {
        assert_eq!(
            eval_err("FROM scratch\nCMD --help\n"),
            "Dockerfile.test:2: unknown flag: --help (CMD takes no flags)"
        );
    }

    /// Random soups of Dockerfile fragments must never panic.
    #[test]
    fn random_fragments_never_panic() {
        const FRAGMENTS: [&str; 40] = [
            "FROM ",
            "COPY ",
            "ADD ",
            "ARG ",
            "ENV ",
            "LABEL ",
            "WORKDIR ",
            "EXPOSE ",
            "ONBUILD ",
            "HEALTHCHECK ",
            "CMD ",
            "SHELL ",
            "RUN ",
            " AS ",
            "--from=",
            "--chmod=",
            "$",
            "${",
            "}",
            ":-",
            ":+",
            "#",
            "%",
            "/",
            "\\\n",
            "\n",
            "\"",
            "'",
            "[\"",
            "\"]",
            "<<EOF\n",
            "EOF\n",
            "# escape=`\n",
            "`",
            "=",
            " ",
            "a",
            "0",
            "scratch",
            "*",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len)
                .map(|_| FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize])
                .collect();
            let _ = eval_with(&text, &linux_amd64());
            let _ = eval_with(
                &format!("FROM scratch AS s\n{text}"),
                &args_target(Some("s")),
            );
            if let Ok(di) = regbuild_fs::dockerignore::DockerIgnore::parse(&text, Path::new("i")) {
                di.is_excluded(&text);
                di.may_include_below(&text);
            }
        }
    }

    #[test]
    fn no_panics_on_odd_input() {
        let texts = [
            "FROM scratch\nCOPY --from= a b\n",
            "FROM scratch\nCOPY --from=-1 a b\n",
            "FROM scratch\nCOPY --from=99999999999999999999999 a b\n",
            "FROM scratch\nHEALTHCHECK --interval= CMD x\n",
            "FROM scratch\nONBUILD\n",
            "FROM scratch\nEXPOSE :\n",
            "FROM scratch\nEXPOSE 1-\n",
            "FROM scratch\nWORKDIR ../../..\n",
            "FROM scratch\nLABEL a\\\n",
            "FROM scratch\nENV a=\"\n",
            "FROM scratch AS a\nFROM a\nFROM 1\n",
            "FROM scratch\nARG A=$A$A$A$A$A$A$A$A$A$A$A$A\n",
            "# escape=`\nFROM scratch\n`\n",
        ];
        for text in texts {
            let _ = eval_with(text, &linux_amd64());
        }
        let mut doubling = String::from("FROM scratch\nARG A=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
        for _ in 0..40 {
            doubling.push_str("ARG A=$A$A\n");
        }
        assert!(eval_with(&doubling, &linux_amd64()).is_err());
    }
}
