//! COPY and ADD: flags (with regbuild's `--closure` and `--sysroot`), `--from` resolved to
//! an earlier stage or an image, and sources, destination and flag values expanded into a
//! [`CopySpec`]. Heredoc sources (`COPY <<EOF /dest`) become files named after the heredoc,
//! their bodies expanded unless the name was quoted, as BuildKit does. ADD's URL and Git
//! sources are checked here with `--checksum` and `--keep-git-dir` (`crate::remote`), and a
//! COPY of one is refused, as BuildKit refuses them. `--exclude` patterns are kept as written
//! and `--parents` is a switch: `regbuild_context::context` applies both. What regbuild lacks
//! (heredocs mixed with other sources or `--from`, `--exclude` or `--parents` with
//! `--closure`) is refused only in stages the target needs.
//!
//! Reading the build context and building the layer is `regbuild::builder`'s job.

use super::cmd::{CmdContext, CmdKind, Expand};
use crate::dockerfile::{heredoc_word, Heredoc, Instruction};
use crate::error::{DockerfileError, Loc};
use crate::stages::args::{validate_chmod, word_list, FlagKind, FlagValues};
use crate::stages::model::{CopyFrom, CopySpec, StepKind};
use crate::stages::scope::{BuildScope, StageState};
use crate::substitute::{expand_word, NoVariables};

const COPY_FLAGS: [(&str, FlagKind); 8] = [
    ("chown", FlagKind::Str),
    ("from", FlagKind::Str),
    ("chmod", FlagKind::Str),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
    ("parents", FlagKind::Bool),
    ("closure", FlagKind::Bool),
    ("sysroot", FlagKind::Str),
];

const ADD_FLAGS: [(&str, FlagKind); 7] = [
    ("chown", FlagKind::Str),
    ("chmod", FlagKind::Str),
    ("link", FlagKind::Bool),
    ("keep-git-dir", FlagKind::Bool),
    ("checksum", FlagKind::Str),
    ("unpack", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
];

/// COPY/ADD before substitution.
struct RawCopy {
    add: bool,
    sources: Vec<String>,
    dest: String,
    from: Option<CopyFrom>,
    chown: Option<String>,
    chmod: Option<String>,
    link: bool,
    closure: bool,
    sysroot: Option<String>,
    exclude: Vec<String>,
    parents: bool,
    /// `--keep-git-dir` as written (None: absent).
    keep_git_dir: Option<bool>,
    checksum: Option<String>,
    unpack: Option<bool>,
    /// Heredoc sources, in order.
    heredocs: Vec<Heredoc>,
}

/// COPY and ADD.
pub(super) fn parse(ins: &Instruction, ctx: &CmdContext<'_>) -> Result<CmdKind, DockerfileError> {
    let loc = ctx.loc;
    let add = ins.keyword == "ADD";
    let flags = FlagValues::parse(ins, if add { &ADD_FLAGS } else { &COPY_FLAGS }, loc)?;
    let mut words = word_list(&ins.args);
    if words.len() < 2 {
        return Err(loc.syntax(format!(
            "{} requires at least two arguments, but only one was provided. Destination could not be determined",
            ins.keyword
        )));
    }
    // After the syntax checks: what regbuild lacks is an error only where the stage is built.
    let dest = words.pop().unwrap_or_default();
    let (heredocs, words) = heredoc_sources(ins, &dest, words, loc)?;
    if !heredocs.is_empty() && (!words.is_empty() || flags.used("from") || flags.boolean("closure"))
    {
        return Err(loc.unsupported(format!(
            "{} of a heredoc together with other sources, --from or --closure is not supported by regbuild: use one {} for the heredocs and another for the rest",
            ins.keyword, ins.keyword
        )));
    }
    let closure = flags.boolean("closure");
    if flags.used("sysroot") && !closure {
        return Err(loc.syntax("--sysroot can only be used together with --closure"));
    }
    if closure && (flags.boolean("parents") || flags.used("exclude")) {
        return Err(loc.unsupported(
            "COPY --closure cannot be combined with --exclude or --parents in regbuild",
        ));
    }
    let from = match flags.string("from") {
        Some(from) => Some(resolve_from("--from", &from, ctx)?),
        None => None,
    };
    Ok(CmdKind::expand(RawCopy {
        add,
        sources: words,
        dest,
        from,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.boolean("link"),
        closure,
        sysroot: flags.string("sysroot"),
        exclude: flags.all("exclude"),
        parents: flags.boolean("parents"),
        keep_git_dir: flags
            .used("keep-git-dir")
            .then(|| flags.boolean("keep-git-dir")),
        checksum: flags.string("checksum"),
        unpack: flags.used("unpack").then(|| flags.boolean("unpack")),
        heredocs,
    }))
}

/// Split the heredoc sources (`<<EOF`) from the other source words, with their bodies.
fn heredoc_sources(
    ins: &Instruction,
    dest: &str,
    words: Vec<String>,
    loc: Loc<'_>,
) -> Result<(Vec<Heredoc>, Vec<String>), DockerfileError> {
    if ins.heredocs.is_empty() {
        return Ok((Vec::new(), words));
    }
    if heredoc_word(dest).is_some() {
        return Err(loc.syntax(format!(
            "{} cannot accept a heredoc as a destination",
            ins.keyword
        )));
    }
    let mut heredocs = Vec::new();
    let mut sources = Vec::new();
    for word in words {
        let Some(spec) = heredoc_word(&word) else {
            sources.push(word);
            continue;
        };
        let Some(doc) = ins.heredocs.iter().find(|h| h.name == spec.name) else {
            return Err(loc.syntax(format!("heredoc {:?} has no body", spec.name)));
        };
        // The name becomes a file name in the destination.
        if spec.name.contains('/') || spec.name == "." || spec.name == ".." {
            return Err(loc.syntax(format!(
                "heredoc name {:?} cannot be used as a file name",
                spec.name
            )));
        }
        heredocs.push(Heredoc {
            chomp: spec.chomp,
            expand: spec.expand,
            ..doc.clone()
        });
    }
    Ok((heredocs, sources))
}

/// `--from=<stage name | stage index | image>` (`label` is how errors name the flag:
/// `--from`, or `--mount from` for RUN).
pub(super) fn resolve_from(
    label: &str,
    from: &str,
    ctx: &CmdContext<'_>,
) -> Result<CopyFrom, DockerfileError> {
    let loc = ctx.loc;
    if expand_word(from, ctx.escape, &NoVariables).as_deref() != Ok(from) {
        return Err(loc.stage(format!(
            "{label}={from}: variable expansion is not supported for {label}, define a new stage with FROM using ARG from global scope as a workaround"
        )));
    }
    let index = match from.parse::<i64>() {
        Ok(i) => usize::try_from(i)
            .ok()
            .filter(|i| *i < ctx.names.count)
            .ok_or_else(|| loc.stage(format!("{label}={from}: invalid stage index {i}")))?,
        Err(_) => match ctx.names.get(&from.to_lowercase()) {
            Some(i) => i,
            None => return Ok(CopyFrom::Image(from.to_string())),
        },
    };
    if index >= ctx.stage {
        return Err(loc.stage(format!(
            "{label}={from}: stage {index} is not defined before the current stage; a stage can only use earlier stages"
        )));
    }
    Ok(CopyFrom::Stage(index))
}

impl RawCopy {
    /// URL and Git sources as BuildKit's `dispatchCopy` checks them, before anything runs:
    /// none in COPY; in ADD, a Git URL that can be read and a `--checksum` that fits its
    /// one source.
    fn check_remote_sources(
        &self,
        sources: &[String],
        checksum: Option<&str>,
    ) -> Result<(), String> {
        use crate::remote::{check_add, classify, Source};
        for s in sources {
            let kind = classify(s).map_err(|e| format!("{s}: {e}"))?;
            match kind {
                Source::Local => {}
                Source::Http if !self.add => return Err("source can't be a URL for COPY".into()),
                Source::Git(_) if !self.add => {
                    return Err("source can't be a git ref for COPY".into())
                }
                _ => {}
            }
        }
        if self.add {
            check_add(sources, checksum, self.keep_git_dir).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Expand for RawCopy {
    fn expand(
        &self,
        scope: &mut BuildScope<'_>,
        state: &mut StageState,
        line: usize,
    ) -> Result<StepKind, DockerfileError> {
        let vars = &*state.vars;
        let sources = self
            .sources
            .iter()
            .map(|s| scope.exp.word(s, vars, line))
            .collect::<Result<Vec<_>, _>>()?;
        let dest = scope.exp.word(&self.dest, vars, line)?;
        let chmod = scope.exp.optional(&self.chmod, vars, line)?;
        if let Some(mode) = &chmod {
            validate_chmod(mode).map_err(|e| scope.loc(line).syntax(e.to_string()))?;
        }
        let chown = scope.exp.optional(&self.chown, vars, line)?;
        if let Some(owner) = &chown {
            crate::ids::check_owner(owner)
                .map_err(|e| scope.loc(line).syntax(format!("--chown={owner}: {e}")))?;
        }
        let checksum = scope.exp.optional(&self.checksum, vars, line)?;
        self.check_remote_sources(&sources, checksum.as_deref())
            .map_err(|e| scope.loc(line).syntax(e))?;
        Ok(StepKind::Copy(CopySpec {
            add: self.add,
            sources,
            dest,
            from: self.from.clone(),
            chown,
            chmod,
            link: self.link,
            closure: self.closure,
            sysroot: scope.exp.optional(&self.sysroot, vars, line)?,
            exclude: self.exclude.clone(),
            parents: self.parents,
            keep_git_dir: self.keep_git_dir.unwrap_or(false),
            checksum,
            unpack: self.unpack,
            heredocs: self
                .heredocs
                .iter()
                .map(|h| {
                    let body = h.body();
                    let body = if h.expand {
                        scope.exp.heredoc(&body, vars, line)?
                    } else {
                        body
                    };
                    Ok((h.name.clone(), body))
                })
                .collect::<Result<_, DockerfileError>>()?,
        }))
    }

    fn stage_dependencies(&self) -> Vec<usize> {
        match self.from {
            Some(CopyFrom::Stage(s)) => vec![s],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::stages::model::{Base, CopyFrom};
    use crate::stages::test_support::*;

    #[test]
    fn copy_flags_and_chmod() {
        let b = eval("FROM scratch\nARG MODE=0755\nCOPY --chmod=$MODE --closure --sysroot=/sys --link=false bin /usr/bin/\n");
        let c = copy_of(&kinds(&b)[1]).clone();
        assert_eq!(c.chmod.as_deref(), Some("0755"));
        assert!(c.closure && !c.link);
        assert_eq!(c.sysroot.as_deref(), Some("/sys"));
        assert!(eval_err("FROM scratch\nCOPY --chmod=u+x a b\n").contains("only octal modes"));
        assert!(eval_err("FROM scratch\nCOPY --chmod=77777 a b\n").contains("out of range"));
        assert!(eval_err("FROM scratch\nCOPY --sysroot=/x a b\n")
            .contains("--sysroot can only be used together with --closure"));
        let b = eval("FROM scratch\nCOPY --parents --exclude=*.md --exclude=**/*.tmp x/./y b/\n");
        let c = copy_of(&kinds(&b)[0]).clone();
        assert!(c.parents);
        assert_eq!(c.exclude, ["*.md", "**/*.tmp"]);
        assert_eq!(c.sources, ["x/./y"]);
        let b = eval("FROM scratch\nCOPY --parents=false a b\nADD --exclude=a.txt . /d/\n");
        assert!(!copy_of(&kinds(&b)[0]).parents);
        assert_eq!(copy_of(&kinds(&b)[1]).exclude, ["a.txt"]);
        assert!(eval_err("FROM scratch\nCOPY --closure --parents a b\n")
            .contains("cannot be combined with --exclude or --parents"));
    }

    #[test]
    fn add_remote_sources_and_their_flags() {
        let sum = format!("sha256:{}", "0".repeat(64));
        let b = eval(&format!(
            "FROM scratch\nARG V=v1\nADD --checksum={sum} --unpack http://h/a.tgz /a/\nADD --keep-git-dir=true https://h/r.git#$V:sub /src\nADD --unpack=false x.tar /x\n"
        ));
        let k = kinds(&b);
        let url = copy_of(&k[1]);
        assert_eq!(url.checksum.as_deref(), Some(sum.as_str()));
        assert_eq!(url.unpack, Some(true));
        let git = copy_of(&k[2]);
        assert_eq!(git.sources, vec!["https://h/r.git#v1:sub".to_string()]);
        assert!(git.keep_git_dir);
        assert_eq!(copy_of(&k[3]).unpack, Some(false));
        assert_eq!(
            eval_err("FROM scratch\nCOPY http://h/f /f\n"),
            "Dockerfile.test:2: source can't be a URL for COPY"
        );
        assert_eq!(
            eval_err("FROM scratch\nCOPY https://h/r.git /f\n"),
            "Dockerfile.test:2: source can't be a git ref for COPY"
        );
        assert_eq!(
            eval_err("FROM scratch\nADD --checksum=sha256:abc http://h/f /f\n"),
            "Dockerfile.test:2: --checksum=sha256:abc: expected sha256:<64 hex digits> for an HTTP source (SHA-256 is the only algorithm supported)"
        );
        assert_eq!(
            eval_err("FROM scratch\nADD --checksum=abc f /f\n"),
            "Dockerfile.test:2: checksum requires HTTP(S) or Git sources"
        );
        assert_eq!(
            eval_err("FROM scratch\nADD https://h/r.git?x=1 /f\n"),
            "Dockerfile.test:2: https://h/r.git?x=1: unexpected query \"x\""
        );
        assert_eq!(
            eval_err("FROM scratch\nADD --keep-git-dir=false https://h/r.git?keep-git-dir /f\n"),
            "Dockerfile.test:2: inconsistent keep-git-dir configuration"
        );
    }

    #[test]
    fn chown_ids_past_32_bits_are_refused_with_file_and_line() {
        let b = eval("FROM scratch\nCOPY --chown=4294967294:app a /a\n");
        assert_eq!(
            copy_of(&kinds(&b)[0]).chown.as_deref(),
            Some("4294967294:app")
        );
        assert_eq!(
            eval_err("FROM scratch\nCOPY --chown=99999999999 a /a\n"),
            "Dockerfile.test:2: --chown=99999999999: uid 99999999999 is out of range: ids go from 0 to 4294967294"
        );
        assert!(
            eval_err("FROM scratch\n\nADD --chown=0:4294967295 a /a\n").starts_with(
                "Dockerfile.test:3: --chown=0:4294967295: gid 4294967295 is out of range"
            )
        );
    }

    #[test]
    fn heredoc_sources_become_files() {
        let b = eval(concat!(
            "FROM scratch\n",
            "ARG NAME=world\n",
            "COPY --chmod=0755 <<EOF /hello.sh\n",
            "echo \"hello $NAME\" '$NAME' \\$NAME\n",
            "EOF\n",
            "ADD <<-\"A\" <<B /etc/\n",
            "\tliteral $NAME\n",
            "\tA\n",
            "b $NAME\n",
            "B\n",
        ));
        let k = kinds(&b);
        let c = copy_of(&k[1]);
        assert!(c.sources.is_empty());
        assert_eq!(c.dest, "/hello.sh");
        assert_eq!(c.chmod.as_deref(), Some("0755"));
        assert_eq!(
            c.heredocs,
            pairs(&[("EOF", "echo \"hello world\" 'world' $NAME\n")])
        );
        let add = copy_of(&k[2]);
        assert!(add.add);
        assert_eq!(
            add.heredocs,
            pairs(&[("A", "literal $NAME\n"), ("B", "b world\n")])
        );
        assert_eq!(
            b.stages[0].steps[1].text,
            "COPY --chmod=0755 <<EOF /hello.sh"
        );
    }

    #[test]
    fn heredoc_source_errors() {
        assert_eq!(
            eval_err("FROM scratch\nCOPY a <<EOF\nx\nEOF\n"),
            "Dockerfile.test:2: COPY cannot accept a heredoc as a destination"
        );
        assert!(eval_err("FROM scratch\nCOPY <<EOF f /d/\nx\nEOF\n")
            .starts_with("Dockerfile.test:2: COPY of a heredoc together with other sources"));
        assert!(
            eval_err("FROM scratch AS s\nFROM scratch\nCOPY --from=s <<EOF /d\nx\nEOF\n")
                .contains("together with other sources, --from or --closure is not supported")
        );
        assert_eq!(
            eval_err("FROM scratch\nCOPY <<a/b /d/\nx\na/b\n"),
            "Dockerfile.test:2: heredoc name \"a/b\" cannot be used as a file name"
        );
        // Refused only where built.
        let b = eval("FROM scratch AS s\nCOPY <<EOF f /d/\nx\nEOF\nFROM scratch\n");
        assert!(!b.stages[0].reachable);
    }

    #[test]
    fn copy_json_form_and_expansion() {
        let b = eval("FROM scratch\nENV D=/dst\nCOPY [\"a b\", \"$D/\"]\nCOPY src\\ dir $D\n");
        let k = kinds(&b);
        assert_eq!(copy_of(&k[1]).sources, strings(&["a b"]));
        assert_eq!(copy_of(&k[1]).dest, "/dst/");
        assert_eq!(copy_of(&k[2]).sources, strings(&["src", "dir"]));
    }

    #[test]
    fn multi_stage_copy_from_name_and_index() {
        let b = eval(concat!(
            "FROM golang:1.22 AS Build\n",
            "WORKDIR /src\n",
            "FROM scratch AS assets\n",
            "FROM build AS test\n",
            "FROM scratch\n",
            "COPY --from=build /out/app /app\n",
            "COPY --from=1 /a /a\n",
            "COPY --from=nginx:latest /etc/nginx /etc/nginx\n",
        ));
        assert_eq!(b.target, 3);
        assert_eq!(b.stages[0].name.as_deref(), Some("build"));
        assert_eq!(b.stages[2].base, Base::Stage(0));
        let k = kinds(&b);
        assert_eq!(copy_of(&k[0]).from, Some(CopyFrom::Stage(0)));
        assert_eq!(copy_of(&k[1]).from, Some(CopyFrom::Stage(1)));
        assert_eq!(
            copy_of(&k[2]).from,
            Some(CopyFrom::Image("nginx:latest".into()))
        );
        let reach: Vec<bool> = b.stages.iter().map(|s| s.reachable).collect();
        assert_eq!(reach, vec![true, true, false, true]);
    }
}
