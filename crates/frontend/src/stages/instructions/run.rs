//! RUN: accepted by the parser (flags such as `--mount` included) so that stages the target
//! does not need may hold it, and refused, with its line, in every stage the target needs:
//! regbuild never executes code.

use super::cmd::{CmdContext, CmdKind, Expand};
use crate::dockerfile::Instruction;
use crate::error::DockerfileError;
use crate::stages::model::StepKind;
use crate::stages::scope::{BuildScope, StageState};

pub(super) fn parse(_ins: &Instruction, _ctx: &CmdContext<'_>) -> Result<CmdKind, DockerfileError> {
    Ok(CmdKind::expand(Run))
}

/// A RUN in some stage.
struct Run;

impl Expand for Run {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        _state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        Err(DockerfileError::RunNotSupported {
            path: scope.path.to_path_buf(),
            line,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::stages::test_support::*;

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
}
