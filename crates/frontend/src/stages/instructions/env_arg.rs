//! ENV, LABEL and ARG: the `name=value` instructions, and ARG's scoping rules.
//!
//! ARGs before the first FROM form the global scope, which FROM lines see; inside a stage a
//! global is visible only after a bare `ARG NAME`. A `--build-arg` value beats an ARG's
//! default. ENV and LABEL expand every key and value before any is applied, so
//! `ENV a=1 b=$a` sees the previous `a`.

use std::collections::BTreeMap;

use super::cmd::{CmdContext, CmdKind, Expand};
use crate::dockerfile::{is_arg_space, parse_words, Instruction};
use crate::error::{DockerfileError, Loc};
use crate::stages::args::{no_flags, shell_text};
use crate::stages::model::StepKind;
use crate::stages::scope::{BuildScope, StageState};

pub(super) fn parse_env(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    no_flags(ins, ctx.loc)?;
    let pairs = parse_name_values(shell_text(ins), "ENV", ctx.escape, ctx.loc)?;
    Ok(CmdKind::expand(Env(pairs)))
}

pub(super) fn parse_label(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    no_flags(ins, ctx.loc)?;
    let pairs = parse_name_values(shell_text(ins), "LABEL", ctx.escape, ctx.loc)?;
    Ok(CmdKind::expand(Label(pairs)))
}

pub(super) fn parse_arg_instruction(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    Ok(CmdKind::expand(Arg(parse_arg(ins, ctx.escape, ctx.loc)?)))
}

/// ENV pairs, unexpanded.
struct Env(Vec<(String, String)>);

impl Expand for Env {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        let pairs = expand_pairs(scope, &self.0, &state.vars, line)?;
        for (k, v) in &pairs {
            state.set_env(k, v);
        }
        Ok(StepKind::Env(pairs))
    }
}

/// LABEL pairs, unexpanded.
struct Label(Vec<(String, String)>);

impl Expand for Label {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        Ok(StepKind::Label(expand_pairs(
            scope,
            &self.0,
            &state.vars,
            line,
        )?))
    }
}

/// ARG names with their unexpanded defaults.
struct Arg(Vec<(String, Option<String>)>);

impl Expand for Arg {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        let mut out = Vec::with_capacity(self.0.len());
        for (key, default) in &self.0 {
            scope.declared.insert(key.clone());
            let value = match (scope.build_args.get(key), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(scope.exp.word(d, &*state.vars, line)?),
                (None, None) => scope.globals.get(key).cloned(),
            };
            if let Some(v) = &value {
                state.set_arg(key, v);
            }
            out.push((key.clone(), value));
        }
        Ok(StepKind::Arg(out))
    }
}

/// The global scope: `predefined` (the platform ARGs), then the ARGs before the first FROM,
/// each default expanded with the globals before it.
pub(in crate::stages) fn declare_globals(
    scope: &mut BuildScope<'_>,
    meta: &[&Instruction],
    predefined: BTreeMap<String, String>,
    escape: char,
) -> Result<(), DockerfileError> {
    let mut globals = predefined;
    for ins in meta {
        let loc = scope.loc(ins.line);
        for (key, default) in parse_arg(ins, escape, loc)? {
            scope.declared.insert(key.clone());
            let value = match (scope.build_args.get(&key), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(scope.exp.word(&d, &globals, ins.line)?),
                (None, None) => None,
            };
            if let Some(v) = value {
                globals.insert(key, v);
            }
        }
    }
    scope.globals = globals;
    Ok(())
}

/// ENV/LABEL: every key and value is expanded before any is applied.
fn expand_pairs(
    scope: &mut BuildScope<'_>,
    pairs: &[(String, String)],
    vars: &BTreeMap<String, String>,
    line: usize,
) -> Result<Vec<(String, String)>, DockerfileError> {
    pairs
        .iter()
        .map(|(k, v)| {
            Ok((
                scope.exp.word(k, vars, line)?,
                scope.exp.word(v, vars, line)?,
            ))
        })
        .collect()
}

/// `ARG a b=c`: names with optional defaults (values unexpanded).
fn parse_arg(
    ins: &Instruction,
    escape: char,
    loc: Loc<'_>,
) -> Result<Vec<(String, Option<String>)>, DockerfileError> {
    no_flags(ins, loc)?;
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
        let Some((key, value)) = text.split_once(is_arg_space) else {
            return Err(loc.syntax(format!("{keyword} must have two arguments")));
        };
        let value = value.trim_start_matches(is_arg_space);
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

#[cfg(test)]
mod tests {
    use crate::stages::model::StepKind;
    use crate::stages::test_support::*;

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
}
