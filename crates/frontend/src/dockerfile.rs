//! Dockerfile lexer/parser: turns Dockerfile text into a list of
//! [`Instruction`]s, following BuildKit's parser
//! (`moby/buildkit/frontend/dockerfile/parser`).
//!
//! What it does:
//! - parser directives at the very top (`# escape=` with `` ` `` or `\`;
//!   `# syntax=` and `# check=` are accepted and ignored); directives are only
//!   recognised before the first instruction, comment or empty line;
//! - a UTF-8 BOM, CRLF line endings, `#` comment lines (also between
//!   continuation lines), empty continuation lines, and line continuation with
//!   the escape character at the end of a line (trailing blanks allowed);
//! - case-insensitive keywords, `--name[=value]` flags before the arguments
//!   (quotes and escapes in flags are processed; `--` ends the flags);
//! - the JSON ("exec") form for ADD, COPY, VOLUME, CMD, ENTRYPOINT, RUN, SHELL
//!   and `HEALTHCHECK CMD`: used only when the arguments are a valid JSON array.
//!   Like Docker, an argument that merely starts with `[` but is not valid JSON
//!   (`CMD [oops`) is the shell form, while a valid array holding a
//!   non-string (`CMD [1]`) is an error. `SHELL` must be JSON;
//! - heredocs (`<<EOF` ... `EOF`) after ADD, COPY and RUN (also behind
//!   ONBUILD): their bodies are read so they are not mistaken for
//!   instructions and attached to the instruction (`stages` turns them into
//!   files for ADD/COPY and into the script for RUN).
//!
//! What it does not do: validate instruction names, arguments or flags beyond
//! the JSON checks above, or expand variables. That is `stages`' job, so an
//! unknown instruction is reported by `stages::evaluate`.
//!
//! [`DockerfileError`], the error type of the whole front end, lives in `error` and is
//! re-exported here (its message always starts with `file:line:`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use crate::error::DockerfileError;
use crate::error::Loc;

/// The default escape character.
pub const DEFAULT_ESCAPE: char = '\\';

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The file's path, as shown in error messages.
    pub path: PathBuf,
    /// The escape character (`\` unless changed by `# escape=`).
    pub escape: char,
    /// The instructions, in file order.
    pub instructions: Vec<Instruction>,
    /// The `# syntax=` directive's value: accepted and not followed (regbuild is its own
    /// frontend; the caller says so).
    pub syntax: Option<String>,
}

/// One instruction, continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The keyword, upper-cased (`COPY`); not validated here.
    pub keyword: String,
    /// The `--flags` between the keyword and the arguments.
    pub flags: Vec<Flag>,
    /// The arguments after the flags.
    pub args: Args,
    /// The instruction text, continuations joined, comments removed, trimmed
    /// (for the history's `created_by`).
    pub text: String,
    /// Heredoc bodies introduced on this line (ADD/COPY/RUN, or behind ONBUILD).
    pub heredocs: Vec<Heredoc>,
}

/// A `--name[=value]` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name without the leading `--` (`from`).
    pub name: String,
    /// `Some` when written `--name=value` (possibly empty), `None` for `--name`.
    pub value: Option<String>,
}

/// Instruction arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// Shell form: the rest of the line after the flags, trimmed, unexpanded.
    Shell(String),
    /// JSON (exec) form. For HEALTHCHECK the first element is the type word
    /// (`["CMD", "curl", "-f", "http://x"]` for `HEALTHCHECK CMD ["curl", ...]`).
    Json(Vec<String>),
}

/// A heredoc body (`<<EOF`, `<<-EOF`, `<<"EOF"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word, quotes removed.
    pub name: String,
    /// The body, with its original line endings, without the terminator line.
    pub content: String,
    /// False when the terminator was quoted (no variable expansion in the body).
    pub expand: bool,
    /// True for `<<-`: leading tabs are stripped from the body lines.
    pub chomp: bool,
}

impl Heredoc {
    /// The body as the instruction uses it: for `<<-`, leading tabs removed from every line
    /// (BuildKit's `ChompHeredocContent`).
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// The heredoc a whole word introduces (`<<EOF`, `<<-"EOF"`), body not read: how BuildKit
/// tells a heredoc source of COPY, or a RUN that is only a heredoc, from other words.
pub(crate) fn heredoc_word(word: &str) -> Option<Heredoc> {
    heredoc_from_word(word)
}

/// Parse Dockerfile text. `path` is only used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<Dockerfile, DockerfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser {
        path,
        escape: DEFAULT_ESCAPE,
        directives: Directives::default(),
        lines: text.split_inclusive('\n').enumerate(),
        instructions: Vec::new(),
        last_line: 0,
    };
    parser.run()?;
    if parser.instructions.is_empty() {
        let loc = Loc {
            path,
            line: parser.last_line.max(1),
        };
        return Err(loc.syntax("file with no instructions"));
    }
    Ok(Dockerfile {
        path: path.to_path_buf(),
        escape: parser.escape,
        instructions: parser.instructions,
        syntax: parser.directives.syntax,
    })
}

/// Parse one instruction written on a single line (an ONBUILD trigger).
pub(super) fn parse_single_line(
    text: &str,
    loc: Loc<'_>,
    escape: char,
) -> Result<Instruction, DockerfileError> {
    parse_line(text, loc, escape, false).map(|(instruction, _)| instruction)
}

type Lines<'t> = std::iter::Enumerate<std::str::SplitInclusive<'t, char>>;

struct Parser<'a, 't> {
    path: &'a Path,
    escape: char,
    directives: Directives,
    lines: Lines<'t>,
    instructions: Vec<Instruction>,
    last_line: usize,
}

impl<'a, 't> Parser<'a, 't> {
    fn next_line(&mut self) -> Option<(usize, &'t str)> {
        let (index, raw) = self.lines.next()?;
        self.last_line = index + 1;
        Some((index + 1, raw))
    }

    fn run(&mut self) -> Result<(), DockerfileError> {
        while let Some((line_no, raw)) = self.next_line() {
            let loc = Loc {
                path: self.path,
                line: line_no,
            };
            let line = trim_newline(raw).trim_start();
            if self.directives.check(line, loc, &mut self.escape)? || is_comment(line) {
                continue;
            }
            let (first, mut end) = trim_continuation(line, self.escape);
            if end && first.is_empty() {
                continue;
            }
            let mut joined = first.to_string();
            while !end {
                let Some((_, raw)) = self.next_line() else {
                    break;
                };
                let part = trim_newline(raw);
                if is_comment(part) || part.trim_start().is_empty() {
                    continue;
                }
                let (part, part_end) = trim_continuation(part, self.escape);
                joined.push_str(part);
                end = part_end;
            }
            self.finish_instruction(&joined, loc)?;
        }
        Ok(())
    }

    fn finish_instruction(&mut self, joined: &str, loc: Loc<'a>) -> Result<(), DockerfileError> {
        if joined.trim().is_empty() {
            return Ok(());
        }
        let (mut instruction, heredoc_capable) = parse_line(joined, loc, self.escape, false)?;
        if heredoc_capable && joined.contains("<<") {
            for spec in heredocs_in_line(joined) {
                instruction.heredocs.push(self.read_heredoc(spec, loc)?);
            }
        }
        self.instructions.push(instruction);
        Ok(())
    }

    fn read_heredoc(&mut self, spec: Heredoc, loc: Loc<'_>) -> Result<Heredoc, DockerfileError> {
        let mut content = String::new();
        while let Some((_, raw)) = self.next_line() {
            let mut candidate = trim_newline(raw);
            if spec.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == spec.name {
                return Ok(Heredoc { content, ..spec });
            }
            content.push_str(raw);
        }
        Err(loc.syntax(format!("unterminated heredoc {:?}", spec.name)))
    }
}

/// Parser-directive state: directives are only valid before anything else.
#[derive(Default)]
struct Directives {
    done: bool,
    seen: BTreeSet<String>,
    syntax: Option<String>,
}

impl Directives {
    /// Returns true when `line` (left-trimmed) is a parser directive.
    fn check(
        &mut self,
        line: &str,
        loc: Loc<'_>,
        escape: &mut char,
    ) -> Result<bool, DockerfileError> {
        if self.done {
            return Ok(false);
        }
        let Some((key, value)) = line
            .strip_prefix('#')
            .and_then(|rest| parse_directive(rest.trim_start()))
        else {
            self.done = true;
            return Ok(false);
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        if !self.seen.insert(key.clone()) {
            return Err(loc.syntax(format!("only one {key} parser directive can be used")));
        }
        if key == "syntax" {
            self.syntax = Some(value.to_string());
        }
        if key == "escape" {
            *escape = match value {
                "`" => '`',
                "\\" => '\\',
                _ => {
                    return Err(loc.syntax(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    )))
                }
            };
        }
        Ok(true)
    }
}

/// Go's regexp `\s`.
fn is_go_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// Matches `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` on the text after `#`.
fn parse_directive(text: &str) -> Option<(&str, &str)> {
    if !text.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let end = text
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(text.len());
    let (key, rest) = text.split_at(end);
    let value = rest
        .trim_start_matches(is_go_space)
        .strip_prefix('=')?
        .trim_matches(is_go_space);
    (!value.is_empty()).then_some((key, value))
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strip a line-continuation escape (and the blanks after it). Returns the
/// text and whether the logical line ends here. An escaped escape
/// character at the end (`\\`) is not a continuation.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some("") => ("", false),
        Some(before) if !before.ends_with(escape) => (before, false),
        _ => (line, true),
    }
}

/// Docker's whitespace for splitting instruction arguments (`[\t\v\f\r ]`).
pub(super) fn is_arg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// Split on runs of [`is_arg_space`], dropping empty pieces.
pub(super) fn split_arg_words(text: &str) -> Vec<&str> {
    text.split(is_arg_space).filter(|w| !w.is_empty()).collect()
}

/// An instruction's text as Docker writes it into the history: the keyword upper-cased and
/// every run of blanks outside quotes (and not escaped) one space. Spelling that changes no
/// byte of a layer (`copy` for `COPY`, extra blanks) then changes neither its cache key nor
/// the config.
pub fn canonical_text(text: &str, escape: char) -> String {
    let text = text.trim_matches(is_arg_space);
    let (keyword, rest) = match text.find(is_arg_space) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let mut out = keyword.to_uppercase();
    let mut quote: Option<char> = None;
    let mut blank = false;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if quote.is_none() && is_arg_space(c) {
            blank = true;
            continue;
        }
        if blank {
            out.push(' ');
            blank = false;
        }
        out.push(c);
        if c == escape && quote != Some('\'') {
            if let Some(next) = chars.next() {
                out.push(next);
            }
            continue;
        }
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if q == c => quote = None,
            _ => {}
        }
    }
    out
}

/// Parse one logical line; also returns whether it may carry heredocs.
fn parse_line(
    line: &str,
    loc: Loc<'_>,
    escape: char,
    nested: bool,
) -> Result<(Instruction, bool), DockerfileError> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(is_arg_space) {
        Some(i) => trimmed.split_at(i),
        None => (trimmed, ""),
    };
    let (rest, flag_words) = extract_builder_flags(rest.trim_start_matches(is_arg_space), escape);
    let rest = rest.trim();
    let keyword = keyword.to_uppercase();
    let (args, heredoc_capable) = shape_args(&keyword, rest, loc, escape, nested)?;
    let instruction = Instruction {
        line: loc.line,
        keyword,
        flags: flag_words.iter().map(|w| flag_from_word(w)).collect(),
        args,
        text: trimmed.to_string(),
        heredocs: Vec::new(),
    };
    Ok((instruction, heredoc_capable))
}

fn flag_from_word(word: &str) -> Flag {
    let body = word.strip_prefix("--").unwrap_or(word);
    match body.split_once('=') {
        Some((name, value)) => Flag {
            name: name.to_string(),
            value: Some(value.to_string()),
        },
        None => Flag {
            name: body.to_string(),
            value: None,
        },
    }
}

/// Shape the arguments per instruction (JSON or shell form).
fn shape_args(
    keyword: &str,
    rest: &str,
    loc: Loc<'_>,
    escape: char,
    nested: bool,
) -> Result<(Args, bool), DockerfileError> {
    match keyword {
        "ADD" | "COPY" | "RUN" => {
            let args = maybe_json(rest, loc)?;
            let shell = matches!(args, Args::Shell(_));
            Ok((args, shell))
        }
        "VOLUME" | "CMD" | "ENTRYPOINT" => Ok((maybe_json(rest, loc)?, false)),
        "SHELL" => shell_args(rest, loc).map(|a| (a, false)),
        "HEALTHCHECK" => healthcheck_args(rest, loc).map(|a| (a, false)),
        "ONBUILD" if !nested && !rest.is_empty() => {
            let (_, capable) = parse_line(rest, loc, escape, true)?;
            Ok((Args::Shell(rest.to_string()), capable))
        }
        _ => Ok((Args::Shell(rest.to_string()), false)),
    }
}

fn maybe_json(rest: &str, loc: Loc<'_>) -> Result<Args, DockerfileError> {
    Ok(match parse_json_array(rest, loc)? {
        Some(items) => Args::Json(items),
        None => Args::Shell(rest.to_string()),
    })
}

fn shell_args(rest: &str, loc: Loc<'_>) -> Result<Args, DockerfileError> {
    match parse_json_array(rest, loc)? {
        Some(items) if items.is_empty() => Err(loc.syntax("SHELL requires at least one argument")),
        Some(items) => Ok(Args::Json(items)),
        None if rest.is_empty() => Err(loc.syntax("SHELL requires at least one argument")),
        None => Err(loc.syntax(
            "SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]",
        )),
    }
}

/// `HEALTHCHECK TYPE rest`: JSON form becomes `Json([TYPE, items...])`.
fn healthcheck_args(rest: &str, loc: Loc<'_>) -> Result<Args, DockerfileError> {
    let sep = rest
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let (kind, command) = rest.split_at(sep);
    let command = command.trim_start();
    if kind.is_empty() || command.is_empty() {
        return Ok(Args::Shell(rest.to_string()));
    }
    Ok(match parse_json_array(command, loc)? {
        Some(items) => Args::Json(std::iter::once(kind.to_string()).chain(items).collect()),
        None => Args::Shell(rest.to_string()),
    })
}

/// `Some(items)` when `text` is a JSON array of strings, `None` when it is
/// not JSON at all, an error for a JSON array holding other values.
fn parse_json_array(text: &str, loc: Loc<'_>) -> Result<Option<Vec<String>>, DockerfileError> {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(text) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(loc
                .syntax("when using JSON array syntax, arrays must be comprised of strings only")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// Accumulates flag words (BuildKit's `extractBuilderFlags`).
struct FlagLexer {
    words: Vec<String>,
    word: String,
    blank_ok: bool,
}

impl FlagLexer {
    fn end_word(&mut self) {
        if self.blank_ok || !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.word.clear();
        self.blank_ok = false;
    }
}

/// Split leading `--flag` words off `line`; returns the remaining text and
/// the flag words (quotes and escapes processed).
fn extract_builder_flags(line: &str, escape: char) -> (&str, Vec<String>) {
    let mut lx = FlagLexer {
        words: Vec::new(),
        word: String::new(),
        blank_ok: false,
    };
    let mut phase = Phase::Spaces;
    let mut chars = line.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        if phase == Phase::Spaces {
            if c.is_whitespace() {
                continue;
            }
            if c != '-' || chars.peek().map(|&(_, n)| n) != Some('-') {
                return (line.get(pos..).unwrap_or_default(), lx.words);
            }
            phase = Phase::Word;
        }
        if let Phase::Quote(q) = phase {
            if c == q {
                phase = Phase::Word;
                continue;
            }
            let mut c = c;
            if c == escape {
                match chars.next() {
                    Some((_, n)) => c = n,
                    None => {
                        phase = Phase::Word;
                        continue;
                    }
                }
            }
            lx.word.push(c);
            continue;
        }
        // Phase::Word
        if c.is_whitespace() {
            phase = Phase::Spaces;
            if lx.word == "--" {
                return (line.get(pos..).unwrap_or_default(), lx.words);
            }
            lx.end_word();
            continue;
        }
        if c == '\'' || c == '"' {
            phase = Phase::Quote(c);
            lx.blank_ok = true;
            continue;
        }
        let mut c = c;
        if c == escape {
            match chars.next() {
                Some((_, n)) => c = n,
                None => continue,
            }
        }
        lx.word.push(c);
    }
    if phase != Phase::Spaces && lx.word != "--" {
        lx.end_word();
    }
    ("", lx.words)
}

/// Split `k=v k2="v 2"` style arguments into words, keeping quotes and
/// escapes (they are processed later, during expansion). This is
/// BuildKit's `parseWords`, used for ENV, LABEL and ARG.
pub(super) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if phase == Phase::Spaces {
            if c.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Word if c.is_whitespace() => {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                continue;
            }
            Phase::Word => {
                if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    blank_ok = true;
                }
                if c == escape {
                    let Some(n) = chars.next() else { continue };
                    word.push(c);
                    word.push(n);
                    continue;
                }
            }
            Phase::Quote(q) => {
                if c == q {
                    phase = Phase::Word;
                }
                if c == escape && q != '\'' {
                    let Some(n) = chars.next() else {
                        phase = Phase::Word;
                        continue;
                    };
                    word.push(c);
                    word.push(n);
                    continue;
                }
            }
            Phase::Spaces => {}
        }
        word.push(c);
    }
    if blank_ok || !word.is_empty() {
        words.push(word);
    }
    words
}

/// The heredocs introduced on `line`, in order (bodies not yet read).
fn heredocs_in_line(line: &str) -> Vec<Heredoc> {
    raw_words(line)
        .iter()
        .filter_map(|w| heredoc_from_word(w))
        .collect()
}

/// Split a line into words keeping quotes and escapes, with `<<` and the
/// blanks after it glued to the following word (BuildKit's lexer with raw
/// quotes and escapes). An unterminated quote yields no words.
fn raw_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                word.push(c);
                let Some(quoted) = raw_quoted(&mut chars, c) else {
                    return Vec::new();
                };
                word.push_str(&quoted);
            }
            '<' if chars.peek() == Some(&'<') => {
                chars.next();
                word.push_str("<<");
                while let Some(b) = chars.next_if(|b| matches!(b, ' ' | '\t' | '\r')) {
                    word.push(b);
                }
            }
            '\\' => {
                word.push(c);
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The rest of a quoted string including the closing quote, or `None`.
fn raw_quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, quote: char) -> Option<String> {
    let mut out = String::new();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == quote {
            return Some(out);
        }
        if c == '\\' && quote == '"' {
            out.extend(chars.next());
        }
    }
    None
}

/// Matches `^(\d*)<<(-?)\s*([^<]*)$` and unquotes the terminator word.
fn heredoc_from_word(word: &str) -> Option<Heredoc> {
    let rest = word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_go_space);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (name, quoted) = unquote_single_word(rest)?;
    Some(Heredoc {
        name,
        content: String::new(),
        expand: !quoted,
        chomp,
    })
}

/// Remove quotes and `\` escapes; `None` unless exactly one word results.
/// Also reports whether any quotes were removed.
fn unquote_single_word(text: &str) -> Option<(String, bool)> {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = true;
                out.push_str(&take_until(&mut chars, '\'')?);
            }
            '"' => {
                quoted = true;
                out.push_str(&take_double_quoted(&mut chars)?);
            }
            '\\' => out.extend(chars.next()),
            c if c.is_whitespace() => return None,
            c => out.push(c),
        }
    }
    (!out.is_empty()).then_some((out, quoted))
}

fn take_until(chars: &mut std::str::Chars<'_>, end: char) -> Option<String> {
    let mut out = String::new();
    for c in chars.by_ref() {
        if c == end {
            return Some(out);
        }
        out.push(c);
    }
    None
}

fn take_double_quoted(chars: &mut std::str::Chars<'_>) -> Option<String> {
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.clone().next() {
                Some(n @ ('"' | '$' | '\\')) => {
                    chars.next();
                    out.push(n);
                }
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Dockerfile {
        parse(text, Path::new("Dockerfile.test")).unwrap()
    }

    fn perr(text: &str) -> String {
        parse(text, Path::new("Dockerfile.test"))
            .unwrap_err()
            .to_string()
    }

    fn shell(s: &str) -> Args {
        Args::Shell(s.to_string())
    }

    fn json(items: &[&str]) -> Args {
        Args::Json(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn basic_instructions_and_lines() {
        let df = p("FROM alpine:3.20\n\n# comment\ncopy a b\nCmd [\"sh\"]\n");
        assert_eq!(df.escape, '\\');
        let kw: Vec<_> = df
            .instructions
            .iter()
            .map(|i| (i.line, i.keyword.as_str()))
            .collect();
        assert_eq!(kw, vec![(1, "FROM"), (4, "COPY"), (5, "CMD")]);
        assert_eq!(df.instructions[0].args, shell("alpine:3.20"));
        assert_eq!(df.instructions[1].args, shell("a b"));
        assert_eq!(df.instructions[1].text, "copy a b");
        assert_eq!(df.instructions[2].args, json(&["sh"]));
    }

    #[test]
    fn canonical_text_upper_cases_the_keyword_and_collapses_blanks_outside_quotes() {
        assert_eq!(canonical_text("copy  a\t b  /dst", '\\'), "COPY a b /dst");
        assert_eq!(canonical_text("COPY a /dst", '\\'), "COPY a /dst");
        assert_eq!(
            canonical_text("copy [\"a  b\",   \"/x\"]", '\\'),
            "COPY [\"a  b\", \"/x\"]"
        );
        assert_eq!(
            canonical_text("label a='x  y'  b=1", '\\'),
            "LABEL a='x  y' b=1"
        );
        // An escaped blank is part of the word; the escape in single quotes is literal.
        assert_eq!(canonical_text("copy a\\  b /d", '\\'), "COPY a\\  b /d");
        assert_eq!(canonical_text("env A='\\'  B=1", '\\'), "ENV A='\\' B=1");
        assert_eq!(canonical_text("workdir", '`'), "WORKDIR");
    }

    #[test]
    fn continuations_comments_and_empty_lines() {
        let df = p("FROM x\nCOPY a \\\n  # inner comment\n\n   b \\  \n /dst\nENV A=1\n");
        let copy = &df.instructions[1];
        assert_eq!(copy.line, 2);
        assert_eq!(copy.args, shell("a    b  /dst"));
        assert_eq!(copy.text, "COPY a    b  /dst");
        assert_eq!(df.instructions[2].line, 7);
    }

    #[test]
    fn escaped_escape_is_not_a_continuation() {
        let df = p("FROM x\nWORKDIR c:\\\\\nUSER a\n");
        assert_eq!(df.instructions[1].args, shell("c:\\\\"));
        assert_eq!(df.instructions[2].keyword, "USER");
    }

    #[test]
    fn continuation_at_end_of_file() {
        let df = p("FROM x\nLABEL a=b \\");
        assert_eq!(df.instructions[1].args, shell("a=b"));
        assert_eq!(p("FROM x\n\\\n  \n").instructions.len(), 1);
    }

    #[test]
    fn escape_directive_backtick() {
        let df = p("# escape=`\nFROM x\nCOPY a `\n  b c:\\dir\\\n");
        assert_eq!(df.escape, '`');
        assert_eq!(df.instructions[1].args, shell("a   b c:\\dir\\"));
    }

    #[test]
    fn directives_only_at_top() {
        let df = p("# syntax=docker/dockerfile:1\n# check=skip=all\n#escape = `\nFROM x\n");
        assert_eq!(df.escape, '`');
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        let df = p("# hello\n# escape=`\nFROM x\n");
        assert_eq!(df.escape, '\\');
        assert_eq!(df.syntax, None);
        let df = p("\n# escape=`\nFROM x\n");
        assert_eq!(df.escape, '\\');
        let df = p("FROM x\n# escape=`\nCOPY a \\\n b\n");
        assert_eq!(df.instructions[1].args, shell("a  b"));
    }

    #[test]
    fn directive_errors() {
        assert_eq!(
            perr("# escape=x\nFROM a\n"),
            "Dockerfile.test:1: invalid escape token 'x' does not match ` or \\"
        );
        assert_eq!(
            perr("# escape=`\n# escape=\\\nFROM a\n"),
            "Dockerfile.test:2: only one escape parser directive can be used"
        );
    }

    #[test]
    fn bom_and_crlf() {
        let df = p("\u{feff}# escape=`\r\nFROM x\r\nCOPY a `\r\n b\r\n");
        assert_eq!(df.escape, '`');
        assert_eq!(df.instructions[0].args, shell("x"));
        assert_eq!(df.instructions[1].args, shell("a  b"));
    }

    #[test]
    fn flags() {
        let df = p("FROM x\nCOPY --from=build --link --chown=\"a b\" --chmod= src dst\n");
        let copy = &df.instructions[1];
        let flags: Vec<_> = copy
            .flags
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_deref()))
            .collect();
        assert_eq!(
            flags,
            vec![
                ("from", Some("build")),
                ("link", None),
                ("chown", Some("a b")),
                ("chmod", Some(""))
            ]
        );
        assert_eq!(copy.args, shell("src dst"));
    }

    #[test]
    fn double_dash_ends_flags() {
        let df = p("FROM x\nCOPY --link -- --weird dst\n");
        let copy = &df.instructions[1];
        assert_eq!(copy.flags.len(), 1);
        assert_eq!(copy.args, shell("--weird dst"));
    }

    #[test]
    fn json_vs_shell_forms() {
        let df = p(concat!(
            "FROM x\n",
            "CMD [\"a\", \"b c\"]\n",
            "CMD [oops\n",
            "ENTRYPOINT [\"x\"] trailing\n",
            "VOLUME [\"/a\", \"/b\"]\n",
            "COPY [\"a b\", \"/c\"]\n",
            "RUN [\"echo\"]\n",
            "ENV A [\"x\"]\n",
            "CMD []\n",
        ));
        let args: Vec<_> = df.instructions.iter().map(|i| i.args.clone()).collect();
        assert_eq!(args[1], json(&["a", "b c"]));
        assert_eq!(args[2], shell("[oops"));
        assert_eq!(args[3], shell("[\"x\"] trailing"));
        assert_eq!(args[4], json(&["/a", "/b"]));
        assert_eq!(args[5], json(&["a b", "/c"]));
        assert_eq!(args[6], json(&["echo"]));
        assert_eq!(args[7], shell("A [\"x\"]"));
        assert_eq!(args[8], json(&[]));
    }

    #[test]
    fn json_with_non_strings_is_an_error() {
        assert_eq!(
            perr("FROM x\n\nCMD [\"a\", 1]\n"),
            "Dockerfile.test:3: when using JSON array syntax, arrays must be comprised of strings only"
        );
    }

    #[test]
    fn shell_requires_json() {
        let df = p("FROM x\nSHELL [\"/bin/bash\", \"-c\"]\n");
        assert_eq!(df.instructions[1].args, json(&["/bin/bash", "-c"]));
        assert!(perr("FROM x\nSHELL /bin/bash -c\n")
            .starts_with("Dockerfile.test:2: SHELL requires the arguments to be in JSON form"));
        assert!(perr("FROM x\nSHELL []\n")
            .starts_with("Dockerfile.test:2: SHELL requires at least one argument"));
    }

    #[test]
    fn healthcheck_forms() {
        let df = p(concat!(
            "FROM x\n",
            "HEALTHCHECK --interval=5s CMD [\"curl\", \"-f\", \"http://x\"]\n",
            "HEALTHCHECK CMD curl -f http://x || exit 1\n",
            "HEALTHCHECK NONE\n",
        ));
        assert_eq!(
            df.instructions[1].args,
            json(&["CMD", "curl", "-f", "http://x"])
        );
        assert_eq!(df.instructions[1].flags[0].name, "interval");
        assert_eq!(
            df.instructions[2].args,
            shell("CMD curl -f http://x || exit 1")
        );
        assert_eq!(df.instructions[3].args, shell("NONE"));
    }

    #[test]
    fn heredocs_are_consumed() {
        let df = p(concat!(
            "FROM x AS unused\n",
            "RUN <<EOF\n",
            "echo hi\n",
            "FROM not-an-instruction\n",
            "EOF\n",
            "COPY <<-\"END\" /dst\n",
            "\tcontent $X\n",
            "\tEND\n",
            "USER me\n",
        ));
        let kws: Vec<_> = df.instructions.iter().map(|i| i.keyword.as_str()).collect();
        assert_eq!(kws, vec!["FROM", "RUN", "COPY", "USER"]);
        let run = &df.instructions[1].heredocs[0];
        assert_eq!(
            (run.name.as_str(), run.content.as_str(), run.expand),
            ("EOF", "echo hi\nFROM not-an-instruction\n", true)
        );
        let copy = &df.instructions[2].heredocs[0];
        assert_eq!(
            (copy.name.as_str(), copy.expand, copy.chomp),
            ("END", false, true)
        );
        assert_eq!(df.instructions[3].line, 9);
    }

    #[test]
    fn heredoc_behind_onbuild_and_unterminated() {
        let df = p("FROM x\nONBUILD RUN <<EOF\nx\nEOF\n");
        assert_eq!(df.instructions[1].heredocs.len(), 1);
        assert_eq!(
            perr("FROM x\nRUN <<EOF\nx\n"),
            "Dockerfile.test:2: unterminated heredoc \"EOF\""
        );
        let df = p("FROM x\nRUN [\"a\", \"<<EOF\"]\nUSER u\n");
        assert!(df.instructions[1].heredocs.is_empty());
    }

    #[test]
    fn empty_file_is_an_error() {
        assert_eq!(perr(""), "Dockerfile.test:1: file with no instructions");
        assert_eq!(
            perr("# only\n\n# comments\n"),
            "Dockerfile.test:3: file with no instructions"
        );
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words("a=\"b c\" d='e f' g\\ h", '\\'),
            vec!["a=\"b c\"", "d='e f'", "g\\ h"]
        );
        assert_eq!(parse_words("a=\"\"", '\\'), vec!["a=\"\""]);
        assert_eq!(parse_words("  ", '\\'), Vec::<String>::new());
    }

    #[test]
    fn unknown_keywords_are_kept() {
        let df = p("FROM x\nFOO bar\n");
        assert_eq!(df.instructions[1].keyword, "FOO");
        assert_eq!(df.instructions[1].args, shell("bar"));
    }

    #[test]
    fn no_panics_on_odd_input() {
        for text in [
            "\\", "`", "FROM", "--", "FROM --", "FROM --\"", "COPY --a=\"\\", "\u{feff}", "#", "# escape=`\n`",
            "RUN <<", "RUN <<'", "RUN <<\"a", "RUN 0<<-\t", "HEALTHCHECK", "HEALTHCHECK CMD", "ONBUILD", "ONBUILD ONBUILD ONBUILD x",
            "FROM x\r", "\r\n\r\n", "FROM x\n\\", "FROM x\n\\\n  \n", "COPY [\"\\ud800\"] x", "CMD [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            "é\u{85}x", "FROM\u{a0}x",
        ] {
            let _ = parse(text, Path::new("f"));
        }
    }
}
