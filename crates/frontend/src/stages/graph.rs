//! The shape of a multi-stage build: splitting the file into global ARGs and stages, which
//! earlier stages a stage depends on (FROM, `COPY --from`, `RUN --mount=from=`), the `--target` stage, and
//! which stages the target needs. Stages it does not need are unused: validated
//! but never evaluated.
//!
//! Nothing here expands variables or evaluates steps (that is `eval`); FROM lines themselves,
//! and the stage names they declare, are `instructions::from`'s.

use std::collections::BTreeMap;

use super::instructions::from::{parse_from, StageHead};
use super::instructions::{check_known, Cmd};
use super::model::{Base, BuildArgs};
use crate::dockerfile::{Dockerfile, Instruction};
use crate::error::{DockerfileError, Loc};

/// The instructions of one stage: its FROM and what follows.
pub(super) struct Group<'d> {
    pub(super) from: &'d Instruction,
    pub(super) body: &'d [Instruction],
}

pub(super) fn loc(df: &Dockerfile, line: usize) -> Loc<'_> {
    Loc {
        path: &df.path,
        line,
    }
}

/// Split into global ARGs and stage groups.
pub(super) fn split_stages(
    df: &Dockerfile,
) -> Result<(Vec<&Instruction>, Vec<Group<'_>>), DockerfileError> {
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

/// Every stage's FROM line, parsed; stage names must be unique.
pub(super) fn stage_heads(
    df: &Dockerfile,
    groups: &[Group<'_>],
) -> Result<Vec<StageHead>, DockerfileError> {
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

/// A stage with its FROM resolved and its commands validated.
pub(super) struct PlannedStage {
    pub(super) index: usize,
    pub(super) name: Option<String>,
    pub(super) line: usize,
    pub(super) base: Base,
    pub(super) platform: Option<String>,
    pub(super) commands: Vec<Cmd>,
}

impl PlannedStage {
    /// The earlier stages this one needs: its FROM stage, `COPY --from` and
    /// `RUN --mount=from=` stages.
    fn dependencies(&self) -> Vec<usize> {
        let mut deps = Vec::new();
        if let Base::Stage(p) = self.base {
            deps.push(p);
        }
        deps.extend(self.commands.iter().flat_map(Cmd::stage_dependencies));
        deps
    }
}

/// The name BuildKit's `TARGETSTAGE` gets.
pub(super) fn target_stage_name(args: &BuildArgs, heads: &[StageHead]) -> String {
    args.target
        .clone()
        .or_else(|| heads.last().and_then(|h| h.name.clone()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// The index of the `--target` stage, or of the last stage.
pub(super) fn resolve_target(
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

/// Which stages the target needs (itself included), via FROM, COPY --from and
/// RUN --mount=from=.
pub(super) fn reachable_stages(stages: &[PlannedStage], target: usize) -> Vec<bool> {
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

#[cfg(test)]
mod tests {
    use crate::stages::test_support::*;

    #[test]
    fn target_selects_stage_and_its_dependencies() {
        let text = "FROM scratch AS a\nCOPY x /x\nFROM a AS b\nRUN make\nFROM scratch AS c\nCOPY --from=a /x /y\n";
        let b = eval_with(text, &args_target(Some("C"))).unwrap();
        assert_eq!(b.target, 2);
        let reach: Vec<bool> = b.stages.iter().map(|s| s.reachable).collect();
        assert_eq!(reach, vec![true, false, true]);
        let b = eval_with(text, &args_target(Some("b"))).unwrap();
        let reach: Vec<bool> = b.stages.iter().map(|s| s.reachable).collect();
        assert_eq!(reach, vec![true, true, false]);
        let err = eval_with(text, &args_target(Some("nope")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Dockerfile.test:5: target stage \"nope\" could not be found; the named stages are: a, b, c"
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
    fn features_regbuild_lacks_only_fail_in_stages_the_target_needs() {
        // Parsed (a syntax error there still fails), not evaluated.
        let b = eval(
            "FROM scratch AS docs\nRUN --device=/dev/fuse x\nRUN --security=insecure make\n\
             FROM scratch\nCOPY f /f\n",
        );
        assert!(!b.stages[0].reachable);
        assert_eq!(b.target, 1);
        assert!(
            eval_err("FROM scratch AS docs\nRUN --device=/dev/fuse x\nFROM docs\n")
                .contains("RUN --device is not supported")
        );
        assert!(
            eval_err("FROM scratch AS docs\nADD --unpack a\nFROM scratch\n")
                .contains("requires at least two arguments"),
            "a syntax error in an unused stage is still one"
        );
    }
}
