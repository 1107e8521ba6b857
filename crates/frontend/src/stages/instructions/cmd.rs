//! What parsing an instruction yields: a [`Cmd`] whose [`CmdKind`] is the finished step, a
//! deferred refusal, or an [`Expand`] implementation that substitutes variables once the stage
//! is evaluated; and the [`CmdContext`] (with the [`StageNames`]) a parser is given.
//!
//! Only types: the parsers are in the instruction files, the dispatch table in `mod.rs`.

use std::collections::BTreeMap;

use crate::error::{DockerfileError, Loc};
use crate::stages::model::StepKind;
use crate::stages::scope::{BuildScope, StageState};

/// The second phase of an instruction: substituting variables once its stage is evaluated.
pub(in crate::stages) trait Expand {
    /// The step, with variables expanded against `state` (which it may update, as ENV,
    /// ARG and WORKDIR do).
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError>;

    /// The earlier stages this instruction reads from (`COPY --from=<stage>`,
    /// `RUN --mount=from=<stage>`), which the target then needs too.
    fn stage_dependencies(&self) -> Vec<usize> {
        Vec::new()
    }
}

/// A validated instruction, not yet expanded.
pub(in crate::stages) struct Cmd {
    pub(in crate::stages) line: usize,
    pub(in crate::stages) text: String,
    pub(in crate::stages) kind: CmdKind,
    /// An ONBUILD whose trigger has heredocs (cannot be re-run by a child).
    pub(in crate::stages) heredoc_trigger: bool,
}

impl Cmd {
    /// See [`Expand::stage_dependencies`].
    pub(in crate::stages) fn stage_dependencies(&self) -> Vec<usize> {
        match &self.kind {
            CmdKind::Expand(pending) => pending.stage_dependencies(),
            CmdKind::Ready(_) | CmdKind::Unsupported(_) => Vec::new(),
        }
    }
}

/// What a parsed instruction becomes once its stage is evaluated.
pub(in crate::stages) enum CmdKind {
    /// The step itself: nothing to substitute (boxed: a step is large, most commands expand).
    Ready(Box<StepKind>),
    /// A feature regbuild lacks: an error only if the stage is built (unused stages are
    /// parsed, not evaluated, as BuildKit does).
    Unsupported(Box<DockerfileError>),
    /// Arguments to substitute first.
    Expand(Box<dyn Expand>),
}

impl CmdKind {
    /// [`CmdKind::Ready`] of `step`.
    pub(in crate::stages) fn ready(step: StepKind) -> Self {
        CmdKind::Ready(Box::new(step))
    }

    /// [`CmdKind::Expand`] of `pending`.
    pub(in crate::stages) fn expand(pending: impl Expand + 'static) -> Self {
        CmdKind::Expand(Box::new(pending))
    }
}

/// What an instruction's parser needs besides the instruction.
pub(in crate::stages) struct CmdContext<'c> {
    pub(in crate::stages) escape: char,
    /// Index of the stage the instruction is in.
    pub(in crate::stages) stage: usize,
    /// All stage names.
    pub(in crate::stages) names: &'c StageNames,
    pub(in crate::stages) loc: Loc<'c>,
}

/// Stage names (lower-cased) → index.
pub(in crate::stages) struct StageNames {
    by_name: BTreeMap<String, usize>,
    /// How many stages the file has.
    pub(in crate::stages) count: usize,
}

impl StageNames {
    /// From every stage's `AS` name (lower-cased), in file order.
    pub(in crate::stages) fn new(names: impl IntoIterator<Item = Option<String>>) -> Self {
        let mut by_name = BTreeMap::new();
        let mut count = 0;
        for (index, name) in names.into_iter().enumerate() {
            if let Some(name) = name {
                by_name.insert(name, index);
            }
            count = index + 1;
        }
        StageNames { by_name, count }
    }

    /// The stage named exactly `name` (names are stored lower-cased).
    pub(in crate::stages) fn get(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
}
