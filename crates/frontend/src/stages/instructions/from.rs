//! FROM: `FROM [--platform=P] base [AS name]` parsed into a [`StageHead`], and the base and
//! platform expanded with the global ARGs (the only variables a FROM line sees).
//!
//! Splitting the file at its FROM lines and resolving the target is `graph`'s job; FROM
//! inside a stage's body (as an ONBUILD trigger, say) is an error.

use super::cmd::{CmdContext, CmdKind, StageNames};
use crate::dockerfile::{split_arg_words, Instruction};
use crate::error::{DockerfileError, Loc};
use crate::stages::args::{shell_text, FlagKind, FlagValues};
use crate::stages::model::Base;
use crate::stages::scope::BuildScope;

/// A FROM line, parsed but not expanded.
pub(in crate::stages) struct StageHead {
    pub(in crate::stages) line: usize,
    /// The lower-cased `AS` name.
    pub(in crate::stages) name: Option<String>,
    pub(in crate::stages) base: String,
    pub(in crate::stages) platform: Option<String>,
}

/// `FROM [--platform=P] base [AS name]`.
pub(in crate::stages) fn parse_from(
    ins: &Instruction,
    loc: Loc<'_>,
) -> Result<StageHead, DockerfileError> {
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

/// FROM inside a stage: every FROM starts a stage, so only a re-parsed line gets here.
pub(super) fn parse_in_stage(
    _ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    Err(ctx.loc.syntax("unexpected FROM"))
}

/// `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// The stage's base, expanded with the global ARGs: scratch, an earlier stage or an image.
pub(in crate::stages) fn expand_base(
    scope: &mut BuildScope<'_>,
    head: &StageHead,
    names: &StageNames,
    index: usize,
) -> Result<Base, DockerfileError> {
    let base = scope.exp.word(&head.base, &scope.globals, head.line)?;
    if base.is_empty() {
        return Err(scope
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

/// The `--platform` value, expanded with the global ARGs (not validated further).
pub(in crate::stages) fn expand_platform(
    scope: &mut BuildScope<'_>,
    head: &StageHead,
) -> Result<Option<String>, DockerfileError> {
    let Some(raw) = &head.platform else {
        return Ok(None);
    };
    let value = scope.exp.word(raw, &scope.globals, head.line)?;
    if value.is_empty() {
        return Err(scope
            .loc(head.line)
            .syntax(format!("empty platform value from expression {raw}")));
    }
    Ok(Some(value))
}
