//! The instructions that only set a field of the image config: WORKDIR, USER, EXPOSE,
//! VOLUME, STOPSIGNAL (expanded), and CMD, ENTRYPOINT, SHELL, MAINTAINER (taken as written).
//! None of them takes flags.
//!
//! Writing the values into the config is `regbuild::builder`'s job; here they are only
//! validated and normalized (WORKDIR joined and cleaned, ports as `port/proto`).

use std::collections::BTreeSet;

use super::cmd::{CmdContext, CmdKind, Expand};
use crate::dockerfile::{Args, Instruction};
use crate::error::{DockerfileError, Loc};
use crate::stages::args::{
    at_least_one, exactly_one, no_flags, parse_port_spec, shell_text, validate_signal, word_list,
};
use crate::stages::model::{Command, StepKind};
use crate::stages::scope::{BuildScope, StageState};
use regbuild_paths::clean::clean_path;

/// Most `port/proto` entries all EXPOSE steps of one build may produce.
const MAX_EXPOSED_PORTS: usize = 1 << 20;

/// The shell-form argument, which must not be empty.
fn one_argument(ins: &Instruction, loc: Loc<'_>) -> Result<String, DockerfileError> {
    no_flags(ins, loc)?;
    exactly_one(shell_text(ins), &ins.keyword, loc)
}

/// The words of the arguments (JSON or shell form), at least one.
fn some_words(ins: &Instruction, loc: Loc<'_>) -> Result<Vec<String>, DockerfileError> {
    no_flags(ins, loc)?;
    at_least_one(word_list(&ins.args), &ins.keyword, loc)
}

pub(super) fn parse_workdir(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    Ok(CmdKind::expand(Workdir(one_argument(ins, ctx.loc)?)))
}

pub(super) fn parse_user(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    Ok(CmdKind::expand(User(one_argument(ins, ctx.loc)?)))
}

pub(super) fn parse_stopsignal(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    Ok(CmdKind::expand(StopSignal(one_argument(ins, ctx.loc)?)))
}

pub(super) fn parse_maintainer(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    Ok(CmdKind::ready(StepKind::Maintainer(one_argument(
        ins, ctx.loc,
    )?)))
}

pub(super) fn parse_expose(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    Ok(CmdKind::expand(Expose(some_words(ins, ctx.loc)?)))
}

pub(super) fn parse_volume(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    Ok(CmdKind::expand(Volume(some_words(ins, ctx.loc)?)))
}

pub(super) fn parse_cmd(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    no_flags(ins, ctx.loc)?;
    Ok(CmdKind::ready(StepKind::Cmd(command_of(&ins.args))))
}

pub(super) fn parse_entrypoint(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    no_flags(ins, ctx.loc)?;
    Ok(CmdKind::ready(StepKind::Entrypoint(command_of(&ins.args))))
}

pub(super) fn parse_shell(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<CmdKind, DockerfileError> {
    no_flags(ins, ctx.loc)?;
    match &ins.args {
        Args::Json(items) if !items.is_empty() => {
            Ok(CmdKind::ready(StepKind::Shell(items.clone())))
        }
        _ => Err(ctx
            .loc
            .syntax("SHELL requires a non-empty JSON array, e.g. SHELL [\"/bin/sh\", \"-c\"]")),
    }
}

fn command_of(args: &Args) -> Command {
    match args {
        Args::Json(items) => Command::Exec(items.clone()),
        Args::Shell(text) => Command::Shell(text.clone()),
    }
}

/// The longest path Linux accepts (PATH_MAX, 4096 with its NUL).
const MAX_PATH_BYTES: usize = 4095;

/// WORKDIR, unexpanded.
struct Workdir(String);

impl Expand for Workdir {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        let dir = scope.exp.word(&self.0, &*state.vars, line)?;
        state.workdir = join_workdir(&state.workdir, &dir);
        // The kernel takes no longer path (PATH_MAX): no step could chdir there.
        if state.workdir.len() > MAX_PATH_BYTES {
            return Err(scope.loc(line).syntax(format!(
                "WORKDIR is {} bytes long, over the {MAX_PATH_BYTES} Linux accepts for a path",
                state.workdir.len()
            )));
        }
        Ok(StepKind::Workdir(state.workdir.clone()))
    }
}

/// Join a WORKDIR onto the current one; "" stands for the base image's.
fn join_workdir(current: &str, dir: &str) -> String {
    if dir.starts_with('/') || current.is_empty() {
        clean_path(dir)
    } else {
        clean_path(&format!("{current}/{dir}"))
    }
}

/// USER, unexpanded.
struct User(String);

impl Expand for User {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        let user = scope.exp.word(&self.0, &*state.vars, line)?;
        crate::ids::check_owner(&user)
            .map_err(|e| scope.loc(line).syntax(format!("USER {user}: {e}")))?;
        Ok(StepKind::User(user))
    }
}

/// STOPSIGNAL, unexpanded.
struct StopSignal(String);

impl Expand for StopSignal {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        let signal = scope.exp.word(&self.0, &*state.vars, line)?;
        validate_signal(&signal).map_err(|e| scope.loc(line).syntax(e.to_string()))?;
        Ok(StepKind::StopSignal(signal))
    }
}

/// EXPOSE words, unexpanded.
struct Expose(Vec<String>);

impl Expand for Expose {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        let mut seen = BTreeSet::new();
        let mut ports = Vec::new();
        for word in &self.0 {
            for spec in scope.exp.words(word, &*state.vars, line)? {
                let (start, end, proto) =
                    parse_port_spec(&spec).map_err(|e| scope.loc(line).syntax(e.to_string()))?;
                scope.exposed_ports = scope
                    .exposed_ports
                    .saturating_add(usize::from(end - start) + 1);
                if scope.exposed_ports > MAX_EXPOSED_PORTS {
                    return Err(scope.loc(line).syntax("too many exposed ports"));
                }
                for port in start..=end {
                    if seen.insert((port, proto.clone())) {
                        ports.push(format!("{port}/{proto}"));
                    }
                }
            }
        }
        Ok(StepKind::Expose(ports))
    }
}

/// VOLUME paths, unexpanded.
struct Volume(Vec<String>);

impl Expand for Volume {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        let mut out = Vec::with_capacity(self.0.len());
        for word in &self.0 {
            let v = scope.exp.word(word, &*state.vars, line)?;
            let v = v.trim();
            if v.is_empty() {
                return Err(scope
                    .loc(line)
                    .syntax("VOLUME specified can not be an empty string"));
            }
            out.push(v.to_string());
        }
        Ok(StepKind::Volume(out))
    }
}

#[cfg(test)]
mod tests {
    use crate::stages::model::StepKind;
    use crate::stages::test_support::*;

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
    fn a_workdir_longer_than_linux_takes_is_refused_at_its_line() {
        let deep = vec!["a"; 2047].join("/");
        let b = eval(&format!("FROM scratch\nWORKDIR /{deep}\n"));
        assert_eq!(kinds(&b), vec![StepKind::Workdir(format!("/{deep}"))]);
        let err = eval_err(&format!("FROM scratch\nWORKDIR /{deep}\nWORKDIR b/c\n"));
        assert!(
            err.starts_with("Dockerfile.test:3: WORKDIR is 4098 bytes long, over the 4095"),
            "{err}"
        );
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
    fn user_ids_past_32_bits_are_refused_with_file_and_line() {
        let b = eval("FROM scratch\nUSER 4294967294:0\nUSER app:staff\n");
        assert_eq!(
            kinds(&b),
            vec![
                StepKind::User("4294967294:0".into()),
                StepKind::User("app:staff".into())
            ]
        );
        assert_eq!(
            eval_err("FROM scratch\nUSER 99999999999\n"),
            "Dockerfile.test:2: USER 99999999999: uid 99999999999 is out of range: ids go from 0 to 4294967294"
        );
        assert!(eval_err("FROM scratch\nARG G=4294967295\nUSER app:$G\n")
            .starts_with("Dockerfile.test:3: USER app:4294967295: gid 4294967295 is out of range"));
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
    fn flags_before_cmd_arguments_are_flags_like_in_docker() {
        assert_eq!(
            eval_err("FROM scratch\nCMD --help\n"),
            "Dockerfile.test:2: unknown flag: --help (CMD takes no flags)"
        );
    }
}
