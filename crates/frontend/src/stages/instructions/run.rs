//! RUN: the shell and exec forms, heredocs (passed on as BuildKit's `dockerfile2llb` does),
//! and the `--mount` and `--network` flags, into a [`RunSpec`]. The command itself is never
//! substituted (the shell does that); flag values are, except `type=` and `from=`, which
//! must be literal (`from=` decides the stage graph before anything is expanded).
//!
//! `--security`, `--device` and `--mount=type=ssh` are BuildKit features regbuild lacks:
//! refused only in stages the target needs. Running the command is `regbuild::builder`'s job.

use regbuild_paths::clean::clean_path;

use super::cmd::{CmdContext, CmdKind, Expand};
use super::copy::resolve_from;
use crate::dockerfile::{heredoc_word, Args, Heredoc, Instruction};
use crate::error::{DockerfileError, Loc};
use crate::stages::args::{FlagKind, FlagValues};
use crate::stages::model::{
    CacheSharing, Command, CopyFrom, RunMount, RunNetwork, RunSpec, StepKind,
};
use crate::stages::scope::{BuildScope, StageState};
use crate::stages::suggest;

const RUN_FLAGS: [(&str, FlagKind); 4] = [
    ("mount", FlagKind::Strings),
    ("network", FlagKind::Str),
    ("security", FlagKind::Str),
    ("device", FlagKind::Strings),
];

/// Where the executor places a `RUN <<EOF` script that starts with `#!` (BuildKit uses
/// `/dev/pipes/`; a directory of regbuild's own cannot clash with the image's files).
const SCRIPT_DIR: &str = "/run/regbuild/heredoc";

/// Every `--mount` key BuildKit knows, as the error lists them.
const MOUNT_KEYS: [&str; 19] = [
    "type",
    "target",
    "dst",
    "destination",
    "source",
    "src",
    "from",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "required",
    "env",
    "size",
];

const MOUNT_TYPES: &str = "bind, cache, secret, tmpfs";

/// The mount types regbuild supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MountType {
    Bind,
    Cache,
    Secret,
    Tmpfs,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Secret => "secret",
            MountType::Tmpfs => "tmpfs",
        }
    }

    /// The keys (canonical names) a mount of this type takes besides `type`.
    fn keys(self) -> &'static [&'static str] {
        match self {
            MountType::Bind => &["target", "source", "from", "readonly", "readwrite"],
            MountType::Cache => &[
                "target",
                "source",
                "from",
                "readonly",
                "readwrite",
                "id",
                "sharing",
                "mode",
                "uid",
                "gid",
            ],
            MountType::Secret => &[
                "target", "source", "id", "required", "env", "mode", "uid", "gid",
            ],
            MountType::Tmpfs => &["target", "size"],
        }
    }
}

/// A key's canonical name (`dst` → `target`), `None` if BuildKit does not know it.
fn canonical_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "type" => "type",
        "target" | "dst" | "destination" => "target",
        "source" | "src" => "source",
        "from" => "from",
        "readonly" | "ro" => "readonly",
        "readwrite" | "rw" => "readwrite",
        "id" => "id",
        "sharing" => "sharing",
        "mode" => "mode",
        "uid" => "uid",
        "gid" => "gid",
        "required" => "required",
        "env" => "env",
        "size" => "size",
        _ => return None,
    })
}

/// One `--mount`, keys checked, values not yet expanded.
struct RawMount {
    kind: MountType,
    from: Option<CopyFrom>,
    /// (canonical key, value as written; `None` for a bare boolean key), `type` and `from`
    /// left out.
    fields: Vec<(&'static str, Option<String>)>,
}

/// The command before the stage is known.
enum RawCommand {
    Exec(Vec<String>),
    Shell(String),
    /// `RUN <<EOF` and nothing else: a script, or the shell's input.
    Heredoc(Heredoc),
}

/// A RUN, flags checked.
struct RawRun {
    command: RawCommand,
    mounts: Vec<RawMount>,
    network: Option<String>,
}

pub(super) fn parse(ins: &Instruction, ctx: &CmdContext<'_>) -> Result<CmdKind, DockerfileError> {
    let loc = ctx.loc;
    let flags = FlagValues::parse(ins, &RUN_FLAGS, loc)?;
    let command = parse_command(ins, loc)?;
    let mounts = flags
        .all("mount")
        .iter()
        .map(|m| parse_mount(m, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    // After the syntax checks: what regbuild lacks is an error only where the stage is built.
    for name in ["security", "device"] {
        if flags.used(name) {
            return Err(loc.unsupported(format!(
                "RUN --{name} is not supported by regbuild (RUN takes --mount and --network)"
            )));
        }
    }
    Ok(CmdKind::expand(RawRun {
        command,
        mounts,
        network: flags.string("network"),
    }))
}

fn parse_command(ins: &Instruction, loc: Loc<'_>) -> Result<RawCommand, DockerfileError> {
    let empty = || loc.syntax("RUN requires at least one argument");
    let text = match &ins.args {
        Args::Json(argv) if argv.is_empty() => return Err(empty()),
        Args::Json(argv) => return Ok(RawCommand::Exec(argv.clone())),
        Args::Shell(text) if text.is_empty() => return Err(empty()),
        Args::Shell(text) => text,
    };
    if ins.heredocs.is_empty() {
        return Ok(RawCommand::Shell(text.clone()));
    }
    if let ([doc], Some(_)) = (ins.heredocs.as_slice(), heredoc_word(text)) {
        return Ok(RawCommand::Heredoc(doc.clone()));
    }
    // `cmd <<EOF`: the shell reads the bodies, so give it the text as it would read a file.
    let mut full = text.clone();
    for doc in &ins.heredocs {
        full.push('\n');
        full.push_str(&doc.content);
        full.push_str(&doc.name);
    }
    Ok(RawCommand::Shell(full))
}

/// `--mount=<csv>`: the fields split, keys checked against the mount's type, `from=`
/// resolved (it must be literal).
fn parse_mount(value: &str, ctx: &CmdContext<'_>) -> Result<RawMount, DockerfileError> {
    let loc = ctx.loc;
    let fields = split_csv(value)
        .ok_or_else(|| loc.syntax(format!("--mount={value}: unterminated quote")))?;
    let mut kind = None;
    let mut keyed = Vec::with_capacity(fields.len());
    for field in &fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(canonical) = canonical_key(&key) else {
            let hint = suggest::closest(&key, MOUNT_KEYS)
                .map(|s| format!("did you mean {s}? "))
                .unwrap_or_default();
            return Err(loc.syntax(format!(
                "--mount: unknown key '{key}' in '{field}' ({hint}supported keys: {})",
                MOUNT_KEYS.join(", ")
            )));
        };
        if val.is_none() && !matches!(canonical, "readonly" | "readwrite" | "required") {
            return Err(loc.syntax(format!(
                "--mount: invalid field '{field}': it must be a key=value pair"
            )));
        }
        if canonical == "type" {
            kind = Some(mount_type(val.as_deref().unwrap_or_default(), loc)?);
        } else {
            keyed.push((canonical, val));
        }
    }
    let kind = kind.unwrap_or(MountType::Bind);
    let mut from = None;
    let mut rest = Vec::with_capacity(keyed.len());
    for (key, val) in keyed {
        if !kind.keys().contains(&key) {
            return Err(loc.syntax(format!(
                "--mount: type={} takes no '{key}' (it takes: type, {})",
                kind.name(),
                kind.keys().join(", ")
            )));
        }
        match (key, val) {
            ("from", Some(v)) => from = Some(resolve_from("--mount from", &v, ctx)?),
            (key, val) => rest.push((key, val)),
        }
    }
    Ok(RawMount {
        kind,
        from,
        fields: rest,
    })
}

fn mount_type(value: &str, loc: Loc<'_>) -> Result<MountType, DockerfileError> {
    match value.to_ascii_lowercase().as_str() {
        "bind" => Ok(MountType::Bind),
        "cache" => Ok(MountType::Cache),
        "secret" => Ok(MountType::Secret),
        "tmpfs" => Ok(MountType::Tmpfs),
        "ssh" => Err(loc.unsupported(format!(
            "--mount type=ssh is not supported by regbuild (supported types: {MOUNT_TYPES})"
        ))),
        _ => Err(loc.syntax(format!(
            "--mount: unsupported mount type '{value}' (supported types: {MOUNT_TYPES})"
        ))),
    }
}

/// One CSV record as Go's `encoding/csv` reads it (what BuildKit uses): fields split on
/// `,`, a field may be double-quoted with `""` for a quote. `None`: an unterminated quote.
fn split_csv(text: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start => {
                loop {
                    match chars.next()? {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        '"' => break,
                        c => field.push(c),
                    }
                }
                at_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    fields.push(field);
    Some(fields)
}

impl Expand for RawRun {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        let loc = scope.loc(line);
        let (command, script) = match &self.command {
            RawCommand::Exec(argv) => (Command::Exec(argv.clone()), None),
            RawCommand::Shell(text) => (Command::Shell(text.clone()), None),
            RawCommand::Heredoc(doc) => {
                let body = doc.body();
                // BuildKit runs a shebang script as a file (not on Windows), else feeds the
                // body to the shell; the body is never expanded (the script does that).
                if body.starts_with("#!") && !state.windows {
                    if doc.name.contains('/') || doc.name == "." || doc.name == ".." {
                        return Err(loc.syntax(format!(
                            "heredoc name {:?} cannot be used as a file name",
                            doc.name
                        )));
                    }
                    let path = format!("{SCRIPT_DIR}/{}", doc.name);
                    (Command::Exec(vec![path.clone()]), Some((path, body)))
                } else {
                    (Command::Shell(body), None)
                }
            }
        };
        let mounts = self
            .mounts
            .iter()
            .map(|m| expand_mount(m, scope, state, line))
            .collect::<Result<Vec<_>, _>>()?;
        let network = match scope.exp.optional(&self.network, &*state.vars, line)? {
            None => None,
            Some(n) => Some(match n.as_str() {
                "default" => RunNetwork::Default,
                "none" => RunNetwork::None,
                "host" => RunNetwork::Host,
                _ => {
                    return Err(loc.syntax(format!(
                        "--network={n}: unsupported network mode (supported: default, none, host)"
                    )))
                }
            }),
        };
        Ok(StepKind::Run(RunSpec {
            command,
            script,
            mounts,
            network,
            args: state.build_args(),
        }))
    }

    fn stage_dependencies(&self) -> Vec<usize> {
        self.mounts
            .iter()
            .filter_map(|m| match m.from {
                Some(CopyFrom::Stage(s)) => Some(s),
                _ => None,
            })
            .collect()
    }
}

/// A mount's values, expanded and checked.
#[derive(Default)]
struct MountValues {
    target: Option<String>,
    source: Option<String>,
    readonly: Option<bool>,
    id: Option<String>,
    sharing: Option<CacheSharing>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    required: bool,
    env: Option<String>,
    size: Option<u64>,
}

/// A mount's `uid=`/`gid=`: a number, at most [`crate::ids::MAX_ID`].
fn mount_id(text: &str, what: &'static str) -> Result<u32, String> {
    match crate::ids::numeric_id(text, what) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err("expected a number".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn expand_mount(
    raw: &RawMount,
    scope: &mut BuildScope<'_>,
    state: &StageState,
    line: usize,
) -> Result<RunMount, DockerfileError> {
    let loc = scope.loc(line);
    let mut v = MountValues::default();
    for (key, value) in &raw.fields {
        let value = match value {
            Some(w) => Some(scope.exp.word(w, &*state.vars, line)?),
            None => None,
        };
        let bad = |what: &str| {
            loc.syntax(format!(
                "--mount: invalid value for {key}: {:?} ({what})",
                value.as_deref().unwrap_or_default()
            ))
        };
        let flag = |value: &Option<String>| match value.as_deref() {
            None => Ok(true),
            Some(b) => parse_go_bool(b).ok_or_else(|| bad("expected true or false")),
        };
        let text = value.clone().unwrap_or_default();
        match *key {
            "target" => v.target = Some(text),
            "source" => v.source = Some(text),
            "readonly" => v.readonly = Some(flag(&value)?),
            "readwrite" => v.readonly = Some(!flag(&value)?),
            "required" => v.required = flag(&value)?,
            "id" => v.id = Some(text),
            "env" => v.env = Some(text),
            "sharing" => {
                v.sharing = Some(match text.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(bad("expected shared, private or locked")),
                })
            }
            "mode" => {
                let mode = u32::from_str_radix(&text, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| bad("expected an octal mode such as 0755"))?;
                v.mode = Some(mode);
            }
            "uid" => v.uid = Some(mount_id(&text, "uid").map_err(|why| bad(&why))?),
            "gid" => v.gid = Some(mount_id(&text, "gid").map_err(|why| bad(&why))?),
            "size" => {
                v.size =
                    Some(parse_size(&text).ok_or_else(|| bad("expected bytes, or 64k, 64m, 1g"))?)
            }
            _ => {}
        }
    }
    // Without `target=`, BuildKit mounts a bind, cache or tmpfs at the WORKDIR (the builder
    // refuses it there if that is `/`, as BuildKit does).
    let target = v.target.unwrap_or_default();
    Ok(match raw.kind {
        MountType::Bind => RunMount::Bind {
            from: raw.from.clone(),
            source: root_if_empty(v.source),
            target,
            rw: v.readonly == Some(false),
        },
        MountType::Cache => {
            RunMount::Cache {
                // BuildKit's default id: the target as written, cleaned (`.` when none).
                id: v
                    .id
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| clean_path(&target)),
                target,
                from: raw.from.clone(),
                source: root_if_empty(v.source),
                sharing: v.sharing.unwrap_or_default(),
                readonly: v.readonly.unwrap_or(false),
                mode: v.mode.unwrap_or(0o755),
                uid: v.uid.unwrap_or(0),
                gid: v.gid.unwrap_or(0),
            }
        }
        MountType::Secret => {
            let target = Some(target).filter(|t| !t.is_empty());
            let id = match (
                v.id.filter(|i| !i.is_empty()),
                v.source.filter(|s| !s.is_empty()),
            ) {
                (Some(_), Some(_)) => {
                    return Err(loc.syntax("--mount type=secret: both source and id can't be set"))
                }
                (Some(id), None) | (None, Some(id)) => id,
                // BuildKit names the secret after the target's file name.
                (None, None) => target
                    .as_deref()
                    .and_then(|t| t.trim_end_matches('/').rsplit('/').next())
                    .filter(|b| !b.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        loc.syntax("--mount type=secret requires an id, a source or a target")
                    })?,
            };
            RunMount::Secret {
                id,
                target,
                env: v.env.filter(|e| !e.is_empty()),
                required: v.required,
                mode: v.mode.unwrap_or(0o400),
                uid: v.uid.unwrap_or(0),
                gid: v.gid.unwrap_or(0),
            }
        }
        MountType::Tmpfs => RunMount::Tmpfs {
            target,
            size: v.size,
        },
    })
}

fn root_if_empty(source: Option<String>) -> String {
    source
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `size=` as docker's `RAMInBytes` reads it (whole numbers): bytes, or a `k`, `m`, `g`,
/// `t`, `p` suffix (powers of 1024), optionally followed by `i` and/or `b`.
fn parse_size(text: &str) -> Option<u64> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::{parse_size, split_csv};
    use crate::stages::model::{
        CacheSharing, Command, CopyFrom, RunMount, RunNetwork, RunSpec, StepKind,
    };
    use crate::stages::test_support::*;

    fn run_of(kind: &StepKind) -> &RunSpec {
        match kind {
            StepKind::Run(r) => r,
            other => panic!("not a run: {other:?}"),
        }
    }

    fn only_run(text: &str) -> RunSpec {
        let b = eval(text);
        let k = kinds(&b);
        run_of(k.last().unwrap()).clone()
    }

    #[test]
    fn shell_and_exec_forms_are_not_substituted() {
        let b =
            eval("FROM alpine\nENV X=1\nRUN echo $X \\\n  && make\nRUN [\"/bin/echo\", \"$X\"]\n");
        let k = kinds(&b);
        let run = run_of(&k[1]);
        assert_eq!(run.command, Command::Shell("echo $X   && make".into()));
        assert_eq!((run.script.clone(), run.network), (None, None));
        assert!(run.mounts.is_empty());
        assert_eq!(
            run_of(&k[2]).command,
            Command::Exec(strings(&["/bin/echo", "$X"]))
        );
        assert_eq!(b.stages[0].steps[1].text, "RUN echo $X && make");
        assert_eq!(
            eval_err("FROM alpine\n\nRUN\n"),
            "Dockerfile.test:3: RUN requires at least one argument"
        );
        assert_eq!(
            eval_err("FROM alpine\nRUN []\n"),
            "Dockerfile.test:2: RUN requires at least one argument"
        );
    }

    #[test]
    fn a_lone_heredoc_is_the_script() {
        let run = only_run("FROM alpine\nRUN <<EOF\necho hi\necho $HOME\nEOF\n");
        assert_eq!(run.command, Command::Shell("echo hi\necho $HOME\n".into()));
        assert_eq!(run.script, None);
        let run = only_run("FROM alpine\nRUN <<-EOF\n\techo hi\n\tEOF\n");
        assert_eq!(run.command, Command::Shell("echo hi\n".into()));
        let run = only_run("FROM alpine\nRUN <<\"PY\"\n#!/usr/bin/env python3\nprint(1)\nPY\n");
        let path = "/run/regbuild/heredoc/PY".to_string();
        assert_eq!(run.command, Command::Exec(vec![path.clone()]));
        assert_eq!(
            run.script,
            Some((path, "#!/usr/bin/env python3\nprint(1)\n".into()))
        );
        let b = eval("FROM --platform=windows/amd64 scratch\nRUN <<EOF\n#!x\nEOF\n");
        assert_eq!(
            run_of(&kinds(&b)[0]).command,
            Command::Shell("#!x\n".into())
        );
    }

    #[test]
    fn heredocs_after_a_command_go_to_the_shell() {
        let run = only_run("FROM alpine\nRUN python3 <<EOF\nprint(1)\nEOF\n");
        assert_eq!(
            run.command,
            Command::Shell("python3 <<EOF\nprint(1)\nEOF".into())
        );
        let run = only_run(concat!(
            "FROM alpine\n",
            "RUN cat <<A >/a && cat <<-\"B\" >/b\n",
            "one $X\n",
            "A\n",
            "\ttwo\n",
            "\tB\n",
        ));
        assert_eq!(
            run.command,
            Command::Shell("cat <<A >/a && cat <<-\"B\" >/b\none $X\nA\n\ttwo\nB".into())
        );
        // Several heredocs, even the first alone on the line, are the shell's to read.
        let run = only_run("FROM alpine\nRUN <<A <<B\na\nA\nb\nB\n");
        assert_eq!(run.command, Command::Shell("<<A <<B\na\nA\nb\nB".into()));
    }

    #[test]
    fn mounts_of_every_type() {
        let b = eval(concat!(
            "FROM scratch AS build\n",
            "FROM alpine\n",
            "ARG CACHE=/root/.cache\n",
            "RUN --mount=type=cache,target=$CACHE,sharing=locked,mode=0700,uid=1000,gid=1000 \\\n",
            "    --mount=target=/src,rw \\\n",
            "    --mount=type=bind,from=build,src=/out,dst=/out,readonly \\\n",
            "    --mount=type=bind,from=golang:1.22,source=/usr/local/go,target=/go,rw=false \\\n",
            "    --mount=type=secret,id=token,env=TOKEN,required \\\n",
            "    --mount=type=secret,target=/etc/npmrc,mode=0440 \\\n",
            "    --mount=type=tmpfs,target=/tmp,size=64m \\\n",
            "    --mount=type=cache,id=apt,target=/var/cache/apt,from=build,ro \\\n",
            "    --network=none \\\n",
            "    make\n",
        ));
        let k = kinds(&b);
        let run = run_of(&k[1]);
        assert_eq!(run.network, Some(RunNetwork::None));
        assert_eq!(
            run.mounts,
            vec![
                RunMount::Cache {
                    id: "/root/.cache".into(),
                    target: "/root/.cache".into(),
                    from: None,
                    source: "/".into(),
                    sharing: CacheSharing::Locked,
                    readonly: false,
                    mode: 0o700,
                    uid: 1000,
                    gid: 1000,
                },
                RunMount::Bind {
                    from: None,
                    source: "/".into(),
                    target: "/src".into(),
                    rw: true,
                },
                RunMount::Bind {
                    from: Some(CopyFrom::Stage(0)),
                    source: "/out".into(),
                    target: "/out".into(),
                    rw: false,
                },
                RunMount::Bind {
                    from: Some(CopyFrom::Image("golang:1.22".into())),
                    source: "/usr/local/go".into(),
                    target: "/go".into(),
                    rw: false,
                },
                RunMount::Secret {
                    id: "token".into(),
                    target: None,
                    env: Some("TOKEN".into()),
                    required: true,
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                },
                RunMount::Secret {
                    id: "npmrc".into(),
                    target: Some("/etc/npmrc".into()),
                    env: None,
                    required: false,
                    mode: 0o440,
                    uid: 0,
                    gid: 0,
                },
                RunMount::Tmpfs {
                    target: "/tmp".into(),
                    size: Some(64 << 20),
                },
                RunMount::Cache {
                    id: "apt".into(),
                    target: "/var/cache/apt".into(),
                    from: Some(CopyFrom::Stage(0)),
                    source: "/".into(),
                    sharing: CacheSharing::Shared,
                    readonly: true,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                },
            ]
        );
    }

    #[test]
    fn mounts_without_a_target_are_at_the_workdir_as_in_buildkit() {
        let b = eval(concat!(
            "FROM scratch AS binary\n",
            "FROM alpine\n",
            "WORKDIR /src\n",
            "RUN --mount=from=binary --mount=type=cache --mount=type=tmpfs,size=1m ls\n",
        ));
        let k = kinds(&b);
        let mounts = &run_of(&k[1]).mounts;
        assert_eq!(
            mounts[0],
            RunMount::Bind {
                from: Some(CopyFrom::Stage(0)),
                source: "/".into(),
                target: String::new(),
                rw: false,
            }
        );
        // BuildKit's default cache id is the cleaned target: `.` when there is none.
        assert!(
            matches!(&mounts[1], RunMount::Cache { id, target, .. } if id == "." && target.is_empty()),
            "{:?}",
            mounts[1]
        );
        assert_eq!(
            mounts[2],
            RunMount::Tmpfs {
                target: String::new(),
                size: Some(1 << 20)
            }
        );
        let b = eval("FROM alpine\nRUN --mount=type=cache,target=/root/.cache/ x\n");
        assert!(matches!(
            &run_of(&kinds(&b)[0]).mounts[0],
            RunMount::Cache { id, .. } if id == "/root/.cache"
        ));
    }

    #[test]
    fn a_stage_a_mount_reads_from_is_needed() {
        let b = eval(concat!(
            "FROM scratch AS tools\n",
            "FROM scratch AS unused\n",
            "FROM alpine\n",
            "RUN --mount=from=tools,target=/t /t/run\n",
        ));
        let reach: Vec<bool> = b.stages.iter().map(|s| s.reachable).collect();
        assert_eq!(reach, vec![true, false, true]);
        assert_eq!(kinds(&b)[0].reads_from(), vec![&CopyFrom::Stage(0)]);
        assert!(
            eval_err("FROM alpine AS a\nRUN --mount=from=b,target=/b x\nFROM scratch AS b\n")
                .starts_with("Dockerfile.test:2: --mount from=b: stage 1 is not defined before")
        );
        assert!(
            eval_err("FROM alpine\nARG S=x\nRUN --mount=from=$S,target=/b x\n")
                .contains("variable expansion is not supported for --mount from")
        );
    }

    #[test]
    fn build_args_in_scope() {
        let mut args = linux_amd64();
        args.values.insert("VERSION".into(), "2".into());
        let b = eval_with(
            concat!(
                "ARG GLOBAL=g\n",
                "FROM alpine AS base\n",
                "ARG INHERITED=i\n",
                "FROM base\n",
                "ENV E=e\n",
                "ARG VERSION=1 UNSET TARGETARCH GLOBAL\n",
                "ARG E=from-arg\n",
                "RUN make\n",
            ),
            &args,
        )
        .unwrap();
        assert_eq!(
            run_of(&kinds(&b)[3]).args,
            pairs(&[
                ("E", "from-arg"),
                ("GLOBAL", "g"),
                ("INHERITED", "i"),
                ("TARGETARCH", "amd64"),
                ("VERSION", "2"),
            ])
        );
        let run = only_run("FROM alpine\nRUN make\n");
        assert!(run.args.is_empty());
    }

    #[test]
    fn flag_errors_name_the_line() {
        let e = |text: &str| eval_err(&format!("FROM alpine\n\n{text}\n"));
        assert!(e("RUN --mount=type=ssh x")
            .starts_with("Dockerfile.test:3: --mount type=ssh is not supported by regbuild (supported types: bind, cache, secret, tmpfs)"));
        assert_eq!(
            e("RUN --mount=type=nfs,target=/x x"),
            "Dockerfile.test:3: --mount: unsupported mount type 'nfs' (supported types: bind, cache, secret, tmpfs)"
        );
        assert!(e("RUN --mount=taget=/x x").starts_with(
            "Dockerfile.test:3: --mount: unknown key 'taget' in 'taget=/x' (did you mean target? supported keys: type, target,"
        ));
        assert_eq!(
            e("RUN --mount=type=tmpfs,target=/x,mode=0700 x"),
            "Dockerfile.test:3: --mount: type=tmpfs takes no 'mode' (it takes: type, target, size)"
        );
        assert_eq!(
            e("RUN --mount=type=bind,target x"),
            "Dockerfile.test:3: --mount: invalid field 'target': it must be a key=value pair"
        );
        assert_eq!(
            e("RUN --mount=type=secret x"),
            "Dockerfile.test:3: --mount type=secret requires an id, a source or a target"
        );
        assert_eq!(
            e("RUN --mount=type=cache,target=/c,sharing=all x"),
            "Dockerfile.test:3: --mount: invalid value for sharing: \"all\" (expected shared, private or locked)"
        );
        assert!(e("RUN --mount=type=cache,target=/c,mode=u+x x")
            .contains("invalid value for mode: \"u+x\" (expected an octal mode"));
        assert!(e("RUN --mount=type=tmpfs,target=/t,size=lots x")
            .contains("invalid value for size: \"lots\""));
        assert!(e("RUN --mount=target=/t,rw=maybe x")
            .contains("invalid value for readwrite: \"maybe\" (expected true or false)"));
        assert!(e("RUN --mount='\"target=/t' x").contains("unterminated quote"));
        assert_eq!(
            e("RUN --mount=type=cache,target=/c,uid=99999999999 x"),
            "Dockerfile.test:3: --mount: invalid value for uid: \"99999999999\" (uid 99999999999 is out of range: ids go from 0 to 4294967294)"
        );
        assert!(e("RUN --mount=type=secret,id=s,gid=4294967295 x")
            .contains("gid 4294967295 is out of range"));
        assert!(e("RUN --mount=type=cache,target=/c,uid=app x")
            .contains("invalid value for uid: \"app\" (expected a number)"));
        assert_eq!(
            e("RUN --network=bridge x"),
            "Dockerfile.test:3: --network=bridge: unsupported network mode (supported: default, none, host)"
        );
        assert_eq!(
            e("RUN --security=insecure x"),
            "Dockerfile.test:3: RUN --security is not supported by regbuild (RUN takes --mount and --network)"
        );
        assert!(e("RUN --device=/dev/fuse x")
            .starts_with("Dockerfile.test:3: RUN --device is not supported"));
        assert!(e("RUN --privileged x")
            .starts_with("Dockerfile.test:3: unknown flag: --privileged (valid flags for RUN are --mount, --network"));
    }

    #[test]
    fn unsupported_flags_only_fail_where_the_stage_is_built() {
        let b =
            eval("FROM alpine AS dev\nRUN --security=insecure --mount=type=ssh x\nFROM scratch\n");
        assert!(!b.stages[0].reachable);
        assert!(
            eval_err("FROM alpine AS dev\nRUN --mount=type=nfs x\nFROM scratch\n")
                .contains("unsupported mount type")
        );
    }

    #[test]
    fn csv_and_sizes() {
        assert_eq!(
            split_csv("a=1,\"b=x,y\",c=\"\"q\"\"").unwrap(),
            strings(&["a=1", "b=x,y", "c=\"\"q\"\""])
        );
        assert_eq!(split_csv("\"a\"\"b\"").unwrap(), strings(&["a\"b"]));
        assert_eq!(split_csv("\"open"), None);
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("2k"), Some(2048));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("64 mb"), Some(64 << 20));
        assert_eq!(parse_size("1x"), None);
        assert_eq!(parse_size("99999999999p"), None);
    }
}
