//! The evaluator's walk: [`evaluate`] plans every stage (FROM expanded, ONBUILD triggers of a
//! parent stage prepended, every instruction parsed), picks the target and the stages it
//! needs, then evaluates those in order, each starting from its base (scratch, the final
//! state of an earlier stage, or an image's Env from `base_env`).
//!
//! What one instruction means is in `instructions`; which stages exist and are needed is in
//! `graph`. This file only sequences them.

use std::collections::BTreeMap;

use super::graph::{
    reachable_stages, resolve_target, split_stages, stage_heads, target_stage_name, Group,
    PlannedStage,
};
use super::instructions::from::{expand_base, expand_platform, StageHead};
use super::instructions::{env_arg, parse_command, Cmd, CmdContext, CmdKind, StageNames};
use super::model::{Base, BaseEnv, Build, BuildArgs, Stage, Step, StepKind, DEFAULT_PATH};
use super::scope::{platform_args, BuildScope, StageState};
use crate::dockerfile::{canonical_text, parse_single_line, Dockerfile};
use crate::error::{DockerfileError, Loc};

/// Most ONBUILD trigger instructions re-parsed in child stages.
const MAX_TRIGGER_COMMANDS: usize = 100_000;

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
    let names = StageNames::new(heads.iter().map(|h| h.name.clone()));
    let mut ev = Evaluator::new(df, args);
    let target_name = target_stage_name(args, &heads);
    env_arg::declare_globals(
        &mut ev.scope,
        &meta,
        platform_args(args, &target_name),
        df.escape,
    )?;
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
        unused_build_args: ev.scope.unused_build_args(),
    })
}

struct Evaluator<'a> {
    df: &'a Dockerfile,
    args: &'a BuildArgs,
    /// What instructions see and update across stages.
    scope: BuildScope<'a>,
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
            scope: BuildScope::new(&df.path, df.escape, args),
            trigger_commands: 0,
            finished: BTreeMap::new(),
            base_users: BTreeMap::new(),
        }
    }

    fn loc(&self, line: usize) -> Loc<'a> {
        self.scope.loc(line)
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
        let base = expand_base(&mut self.scope, &head, names, index)?;
        let platform = expand_platform(&mut self.scope, &head)?;
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

    /// The parent stage's ONBUILD triggers, parsed as commands of this stage.
    fn inherited_triggers(
        &mut self,
        parent: &[Cmd],
        index: usize,
        names: &StageNames,
    ) -> Result<Vec<Cmd>, DockerfileError> {
        let mut out = Vec::new();
        for cmd in parent {
            let CmdKind::Ready(ready) = &cmd.kind else {
                continue;
            };
            let StepKind::OnBuild(expr) = &**ready else {
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
                text: canonical_text(&cmd.text, self.df.escape),
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
            Base::Scratch => StageState::scratch(),
            Base::Stage(p) => self.take_base_state(*p),
            Base::Image(image) => {
                let env = base_env(image).map_err(|e| DockerfileError::BaseImage {
                    path: self.df.path.clone(),
                    line: stage.line,
                    image: image.clone(),
                    message: e.0,
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
        match &cmd.kind {
            CmdKind::Ready(kind) => Ok((**kind).clone()),
            CmdKind::Unsupported(e) => Err((**e).clone()),
            CmdKind::Expand(pending) => pending.expand(&mut self.scope, state, cmd.line),
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::dockerfile::parse;
    use crate::stages::test_support::*;
    use crate::stages::{evaluate, StepKind, DEFAULT_PATH};

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

    #[test]
    fn base_env_errors_name_the_from_line() {
        let df = parse("\nFROM private/img\n", Path::new("Dockerfile.test")).unwrap();
        let err = evaluate(&df, &linux_amd64(), &mut |_| {
            Err("401 unauthorized".to_string().into())
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Dockerfile.test:2: cannot read the configuration of base image private/img: 401 unauthorized"
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
