//! ONBUILD: the trigger is checked (no `ONBUILD ONBUILD`, no FROM or MAINTAINER) and
//! recorded as written, with heredoc bodies appended as BuildKit does.
//!
//! Running the triggers of a stage at the start of every stage built FROM it is the
//! evaluator's walk (`eval`); the triggers of a base *image* are in its config, which this
//! crate never sees.

use super::cmd::{CmdContext, CmdKind};
use crate::dockerfile::{split_arg_words, Heredoc, Instruction};
use crate::error::DockerfileError;
use crate::stages::args::{no_flags, shell_text};
use crate::stages::model::StepKind;

pub(super) fn parse(ins: &Instruction, ctx: &CmdContext<'_>) -> Result<CmdKind, DockerfileError> {
    no_flags(ins, ctx.loc)?;
    Ok(CmdKind::ready(StepKind::OnBuild(parse_onbuild(ins, ctx)?)))
}

/// The trigger text (with heredoc bodies appended).
fn parse_onbuild(ins: &Instruction, ctx: &CmdContext<'_>) -> Result<String, DockerfileError> {
    let loc = ctx.loc;
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

#[cfg(test)]
mod tests {
    use crate::stages::model::{CopyFrom, RunNetwork, StepKind};
    use crate::stages::test_support::*;

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
        let b = eval("FROM scratch AS a\nONBUILD RUN --network=none x\nFROM a\n");
        assert!(matches!(&kinds(&b)[0], StepKind::Run(r) if r.network == Some(RunNetwork::None)));
        assert_eq!(b.stages[1].steps[0].line, 2);
    }
}
