//! The instructions, one file per family, and the table that dispatches to them
//! ([`INSTRUCTIONS`]); `cmd` holds the types a parser returns.
//!
//! Each instruction is handled in two phases. *Parsing* ([`parse_command`], in every stage,
//! used or not) validates flags and arguments and captures them as a [`Cmd`]; it runs before
//! the target is known, so it sees no variable values. *Expansion* (only in the stages the
//! target needs) substitutes variables against the stage's state and yields the
//! [`StepKind`](crate::stages::StepKind): an instruction whose arguments need substituting
//! returns a [`CmdKind::Expand`] holding an [`Expand`](cmd::Expand) implementation, one that
//! needs none returns [`CmdKind::Ready`].

use super::suggest;
use crate::dockerfile::Instruction;
use crate::error::{DockerfileError, Loc};
pub(in crate::stages) use cmd::{Cmd, CmdContext, CmdKind, StageNames};

mod cmd;
mod config;
mod copy;
pub(super) mod env_arg;
pub(super) mod from;
mod healthcheck;
mod onbuild;
mod run;

/// An instruction's parser: validates its flags and arguments (in every stage).
type Parse = fn(&Instruction, &CmdContext<'_>) -> Result<CmdKind, DockerfileError>;

/// Every instruction Docker knows, with its parser.
const INSTRUCTIONS: [(&str, Parse); 18] = [
    ("ADD", copy::parse),
    ("ARG", env_arg::parse_arg_instruction),
    ("CMD", config::parse_cmd),
    ("COPY", copy::parse),
    ("ENTRYPOINT", config::parse_entrypoint),
    ("ENV", env_arg::parse_env),
    ("EXPOSE", config::parse_expose),
    ("FROM", from::parse_in_stage),
    ("HEALTHCHECK", healthcheck::parse),
    ("LABEL", env_arg::parse_label),
    ("MAINTAINER", config::parse_maintainer),
    ("ONBUILD", onbuild::parse),
    ("RUN", run::parse),
    ("SHELL", config::parse_shell),
    ("STOPSIGNAL", config::parse_stopsignal),
    ("USER", config::parse_user),
    ("VOLUME", config::parse_volume),
    ("WORKDIR", config::parse_workdir),
];

/// Validate one instruction (inside a stage) and capture its arguments.
pub(in crate::stages) fn parse_command(
    ins: &Instruction,
    ctx: &CmdContext<'_>,
) -> Result<Cmd, DockerfileError> {
    let parse = parser(ins, ctx.loc)?;
    let kind = match parse(ins, ctx) {
        Ok(kind) => kind,
        // After the syntax checks: what regbuild lacks is an error only where the stage is built.
        Err(e @ DockerfileError::Unsupported { .. }) => CmdKind::Unsupported(Box::new(e)),
        Err(e) => return Err(e),
    };
    let heredoc_trigger = ins.keyword == "ONBUILD" && !ins.heredocs.is_empty();
    Ok(Cmd {
        line: ins.line,
        text: ins.text.clone(),
        kind,
        heredoc_trigger,
    })
}

/// Error for keywords Docker does not know.
pub(in crate::stages) fn check_known(
    ins: &Instruction,
    loc: Loc<'_>,
) -> Result<(), DockerfileError> {
    parser(ins, loc).map(drop)
}

fn parser(ins: &Instruction, loc: Loc<'_>) -> Result<Parse, DockerfileError> {
    if let Some((_, parse)) = INSTRUCTIONS.iter().find(|(k, _)| *k == ins.keyword) {
        return Ok(*parse);
    }
    Err(DockerfileError::UnknownInstruction {
        path: loc.path.to_path_buf(),
        line: loc.line,
        keyword: ins.keyword.clone(),
        suggestion: suggest::closest(&ins.keyword, INSTRUCTIONS.iter().map(|(k, _)| *k)),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::stages::test_support::*;
    use crate::stages::{Command, Healthcheck, StepKind};

    #[test]
    fn every_instruction() {
        let b = eval(concat!(
            "FROM scratch\n",
            "ADD --chown=1:1 --chmod=644 --link --checksum=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef https://x/y.tgz /y\n",
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
        assert_eq!(
            add.checksum.as_deref(),
            Some("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
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
}
