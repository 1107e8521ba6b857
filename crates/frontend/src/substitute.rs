//! Dockerfile word expansion: `$VAR`, `${VAR}` and the `${VAR<modifier>word}`
//! forms, with quote and escape processing, following BuildKit's shell lexer
//! (`moby/buildkit/frontend/dockerfile/shell/lex.go`).
//!
//! What it does:
//! - `$NAME`, `${NAME}`; unset variables expand to the empty string.
//! - `${NAME:-word}` / `${NAME-word}`: `word` if NAME is unset (`:`: or empty).
//! - `${NAME:+word}` / `${NAME+word}`: `word` if NAME is set (`:`: and not empty).
//! - `${NAME:?msg}` / `${NAME?msg}`: error if NAME is unset (`:`: or empty).
//! - `${NAME#pat}`, `${NAME##pat}`, `${NAME%pat}`, `${NAME%%pat}`: remove the
//!   shortest/longest prefix/suffix matching a shell pattern (`*`, `?`).
//! - `${NAME/pat/rep}`, `${NAME//pat/rep}`: replace the first/every match.
//! - Single quotes keep everything literal; double quotes still expand `$`
//!   and let the escape character escape `"`, `$` and itself; outside quotes
//!   the escape character (`\` or the `# escape=` token) escapes any character
//!   and is removed.
//!
//! What it does not do: command substitution, arithmetic, globbing, tilde
//! expansion; nothing is ever executed. Nesting of `${...}` is limited to
//! [`MAX_NESTING`] levels and a result to [`MAX_EXPANSION_LEN`] bytes, so
//! hostile input cannot exhaust the stack or memory.
//!
//! Errors are [`SubstitutionError`]s, which carry no location; callers wrap
//! them into a `DockerfileError` (see [`SubstitutionError::at`], defined in `error` so that
//! this module depends on no other module of the crate) so every message shown to a user
//! names the file and line.

use std::collections::{BTreeMap, HashMap};

/// Deepest `${...}` nesting accepted (`${a:-${b:-${c}}}` is 3 levels).
pub const MAX_NESTING: usize = 32;

/// Longest result (in bytes) a single expansion may produce.
pub const MAX_EXPANSION_LEN: usize = 1 << 20;

/// Most pattern-matching steps one `${NAME/pat/rep}` may take.
const MAX_PATTERN_WORK: usize = 50_000_000;

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstitutionError {
    /// A quote was opened but never closed.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(&'static str),
    /// `${` without its closing `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${}`, `${:x}`, `${{x}` ...
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${NAME/pat` without the `/` that ends the pattern.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// A modifier regbuild (and Docker) does not know, e.g. `${A:=x}`.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${NAME?message}` with NAME unset (or `${NAME:?message}` with it empty).
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The user's message, or Docker's default one.
        message: String,
    },
    /// A bad `#`/`%`/`/` pattern, e.g. an invalid escape.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: PatternError,
    },
    /// `${...}` nested deeper than [`MAX_NESTING`].
    #[error("substitution nested more than {MAX_NESTING} levels deep")]
    TooDeep,
    /// The result would exceed [`MAX_EXPANSION_LEN`] bytes.
    #[error("variable expansion produces more than {MAX_EXPANSION_LEN} bytes")]
    TooLong,
    /// A `${NAME/pat/rep}` needs more work than regbuild allows.
    #[error("pattern substitution is too expensive to evaluate")]
    TooExpensive,
}

/// What is wrong with a `#`/`%`/`/` pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `\` before a character other than `*`, `?`, `\`, `}` and `/` (`None`: at the end).
    #[error("invalid escape '\\{}'", .0.map(String::from).unwrap_or_default())]
    InvalidEscape(Option<char>),
}

/// A source of variable values for expansion.
pub trait Variables {
    /// The value of `name`, or `None` when it is unset.
    fn var(&self, name: &str) -> Option<&str>;
}

impl Variables for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Variables for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// No variables at all: every name is unset.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVariables;

impl Variables for NoVariables {
    fn var(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Expand one word (BuildKit's `ProcessWord`): quotes are removed, escapes
/// processed, variables substituted; whitespace is kept.
pub fn expand_word(
    word: &str,
    escape: char,
    vars: &dyn Variables,
) -> Result<String, SubstitutionError> {
    let mut lexer = Lexer::new(word, escape, vars);
    lexer.process_stop_on(None, false).map(|(s, _)| s)
}

/// Expand and split into words (BuildKit's `ProcessWords`): like
/// [`expand_word`], then split on unquoted whitespace, including whitespace
/// that came from a variable's value.
pub fn expand_words(
    word: &str,
    escape: char,
    vars: &dyn Variables,
) -> Result<Vec<String>, SubstitutionError> {
    let mut lexer = Lexer::new(word, escape, vars);
    lexer.process_stop_on(None, false).map(|(_, w)| w)
}

/// Expand a heredoc body (BuildKit's `ExpandRaw`: `\` escapes, quotes kept as written, as
/// a shell reads an unquoted heredoc).
pub fn expand_heredoc(text: &str, vars: &dyn Variables) -> Result<String, SubstitutionError> {
    let mut lexer = Lexer::new(text, '\\', vars);
    lexer.skip_quotes = true;
    lexer.process_stop_on(None, false).map(|(s, _)| s)
}

/// Character cursor over the word being expanded.
struct Scanner {
    chars: Vec<char>,
    pos: usize,
}

impl Scanner {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }
}

/// Accumulates the whitespace-split words of a `ProcessWords` call.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

/// The expansion state machine (BuildKit's `shellWord`).
struct Lexer<'a> {
    scan: Scanner,
    escape: char,
    vars: &'a dyn Variables,
    raw_escapes: bool,
    /// Quotes are ordinary characters (heredoc bodies).
    skip_quotes: bool,
    depth: usize,
}

impl<'a> Lexer<'a> {
    fn new(word: &str, escape: char, vars: &'a dyn Variables) -> Self {
        Lexer {
            scan: Scanner {
                chars: word.chars().collect(),
                pos: 0,
            },
            escape,
            vars,
            raw_escapes: false,
            skip_quotes: false,
            depth: 0,
        }
    }

    /// Process until `stop` (consumed) or the end of input; returns the
    /// expanded text and its word split.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), SubstitutionError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.process_loop(stop);
        self.raw_escapes = saved;
        result
    }

    fn process_loop(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), SubstitutionError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.scan.peek() {
            if Some(c) == stop {
                self.scan.next();
                return Ok((result, words.finish()));
            }
            match c {
                '$' => {
                    let value = self.process_dollar()?;
                    words.add_string(&value);
                    push_checked(&mut result, &value)?;
                }
                '\'' | '"' if self.skip_quotes => {
                    if !self.process_plain_char(&mut result, &mut words)? {
                        break;
                    }
                }
                '\'' | '"' | '<' => {
                    let value = match c {
                        '\'' => self.process_single_quote()?,
                        '"' => self.process_double_quote()?,
                        _ => self.process_possible_heredoc(),
                    };
                    words.add_raw_string(&value);
                    push_checked(&mut result, &value)?;
                }
                _ => {
                    if !self.process_plain_char(&mut result, &mut words)? {
                        break;
                    }
                }
            }
        }
        match stop {
            Some(s) => Err(SubstitutionError::Unterminated(stop_name(s))),
            None => Ok((result, words.finish())),
        }
    }

    /// One ordinary character (or an escape sequence). Returns false when a
    /// trailing escape character ended the input.
    fn process_plain_char(
        &mut self,
        result: &mut String,
        words: &mut Words,
    ) -> Result<bool, SubstitutionError> {
        let Some(mut c) = self.scan.next() else {
            return Ok(false);
        };
        if c == self.escape {
            if self.raw_escapes {
                words.add_raw_char(c);
                result.push(c);
            }
            match self.scan.next() {
                Some(n) => c = n,
                None => return Ok(false),
            }
            words.add_raw_char(c);
        } else {
            words.add_char(c);
        }
        push_checked(result, c.encode_utf8(&mut [0; 4]))?;
        Ok(true)
    }

    fn process_single_quote(&mut self) -> Result<String, SubstitutionError> {
        self.scan.next();
        let mut out = String::new();
        loop {
            match self.scan.next() {
                None => return Err(SubstitutionError::Unterminated("single-quote")),
                Some('\'') => return Ok(out),
                Some(c) => push_checked(&mut out, c.encode_utf8(&mut [0; 4]))?,
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, SubstitutionError> {
        self.scan.next();
        let mut out = String::new();
        loop {
            match self.scan.peek() {
                None => return Err(SubstitutionError::Unterminated("double-quote")),
                Some('"') => {
                    self.scan.next();
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    push_checked(&mut out, &value)?;
                }
                Some(_) => self.double_quoted_char(&mut out)?,
            }
        }
    }

    /// One character inside double quotes: the escape character only escapes
    /// `"`, `$` and itself; before anything else it stays literal.
    fn double_quoted_char(&mut self, out: &mut String) -> Result<(), SubstitutionError> {
        let Some(mut c) = self.scan.next() else {
            return Ok(());
        };
        if c == self.escape {
            if self.raw_escapes {
                out.push(c);
            }
            match self.scan.peek() {
                None => return Ok(()),
                Some(n) if n == '"' || n == '$' || n == self.escape => {
                    self.scan.next();
                    c = n;
                }
                Some(_) => {}
            }
        }
        push_checked(out, c.encode_utf8(&mut [0; 4]))
    }

    /// `<<` followed by blanks is kept together (heredoc marker); a lone `<`
    /// is an ordinary character.
    fn process_possible_heredoc(&mut self) -> String {
        self.scan.next();
        if self.scan.peek() != Some('<') {
            return "<".to_string();
        }
        self.scan.next();
        let mut out = "<<".to_string();
        while let Some(c @ (' ' | '\t' | '\r')) = self.scan.peek() {
            out.push(c);
            self.scan.next();
        }
        out
    }

    fn process_dollar(&mut self) -> Result<String, SubstitutionError> {
        self.scan.next();
        if self.scan.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.scan.next();
        match self.scan.peek() {
            None => return Err(SubstitutionError::MissingBrace),
            Some('{' | '}' | ':') => return Err(SubstitutionError::BadSubstitution),
            Some(_) => {}
        }
        if self.depth >= MAX_NESTING {
            return Err(SubstitutionError::TooDeep);
        }
        self.depth += 1;
        let result = self.process_braced();
        self.depth -= 1;
        result
    }

    /// The part of `${...}` after the `{`.
    fn process_braced(&mut self) -> Result<String, SubstitutionError> {
        let name = self.process_name();
        match self.scan.next() {
            None => Err(SubstitutionError::MissingBrace),
            Some('}') => Ok(self.lookup(&name).unwrap_or_default()),
            Some(':') => match self.scan.next() {
                None => Err(SubstitutionError::MissingBrace),
                Some(m @ ('-' | '+' | '?')) => self.process_modifier(&name, m, true),
                Some(m) => Err(SubstitutionError::UnsupportedModifier(format!(":{m}"))),
            },
            Some(m @ ('-' | '+' | '?' | '#' | '%')) => self.process_modifier(&name, m, false),
            Some('/') => self.process_replace(&name),
            Some(m) => Err(SubstitutionError::UnsupportedModifier(m.to_string())),
        }
    }

    /// `${NAME<m>word}` for m in `- + ? # %` (with `:` when `null_is_unset`).
    fn process_modifier(
        &mut self,
        name: &str,
        modifier: char,
        null_is_unset: bool,
    ) -> Result<String, SubstitutionError> {
        let raw = modifier == '#' || modifier == '%';
        let word = self.word_until('}', raw, SubstitutionError::MissingBrace)?;
        let value = self.lookup(name);
        let unset = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match modifier {
            '-' if unset => Ok(word),
            '-' => Ok(value.unwrap_or_default()),
            '+' if unset => Ok(String::new()),
            '+' => Ok(word),
            '?' if unset => Err(required_error(name, value.is_none(), word)),
            '?' => Ok(value.unwrap_or_default()),
            _ => trim_pattern(modifier, &word, &value.unwrap_or_default()),
        }
    }

    /// `${NAME/pat/rep}` and `${NAME//pat/rep}` (after the first `/`).
    fn process_replace(&mut self, name: &str) -> Result<String, SubstitutionError> {
        let all = self.scan.peek() == Some('/');
        if all {
            self.scan.next();
        }
        let pattern = self.word_until('/', true, SubstitutionError::MissingSlash)?;
        let replacement = self.word_until('}', true, SubstitutionError::MissingBrace)?;
        let value = self.lookup(name).unwrap_or_default();
        let tokens = compile_pattern(&pattern)?;
        let out = replace_matches(&tokens, &value, &replacement, all)?;
        check_len(&out)?;
        Ok(out)
    }

    /// Process up to `stop`; an unexpected end of input becomes `at_eof`.
    fn word_until(
        &mut self,
        stop: char,
        raw_escapes: bool,
        at_eof: SubstitutionError,
    ) -> Result<String, SubstitutionError> {
        match self.process_stop_on(Some(stop), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(SubstitutionError::Unterminated(_)) if self.scan.peek().is_none() => Err(at_eof),
            Err(e) => Err(e),
        }
    }

    /// A variable name: digits (positional), one special character, or
    /// letters/digits/underscores.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.scan.peek() {
            if name.is_empty() && c.is_numeric() {
                while let Some(d) = self.scan.peek().filter(|d| d.is_numeric()) {
                    name.push(d);
                    self.scan.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(c) {
                self.scan.next();
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.scan.next();
        }
        name
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.vars.var(name).map(str::to_string)
    }
}

fn stop_name(stop: char) -> &'static str {
    match stop {
        '}' => "}",
        '/' => "/",
        _ => "delimiter",
    }
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

fn required_error(name: &str, unset: bool, word: String) -> SubstitutionError {
    let message = if !word.is_empty() {
        word
    } else if unset {
        "is not allowed to be unset".to_string()
    } else {
        "is not allowed to be empty".to_string()
    };
    SubstitutionError::Required {
        name: name.to_string(),
        message,
    }
}

fn check_len(s: &str) -> Result<(), SubstitutionError> {
    if s.len() > MAX_EXPANSION_LEN {
        return Err(SubstitutionError::TooLong);
    }
    Ok(())
}

fn push_checked(out: &mut String, s: &str) -> Result<(), SubstitutionError> {
    if out.len().saturating_add(s.len()) > MAX_EXPANSION_LEN {
        return Err(SubstitutionError::TooLong);
    }
    out.push_str(s);
    Ok(())
}

/// One element of a `#`/`%`/`/` shell pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternToken {
    /// A literal character.
    Char(char),
    /// `?`: any one character except a newline.
    Any,
    /// `*`: any run of characters without a newline.
    Star,
}

/// Compile a shell pattern the way BuildKit's `convertShellPatternToRegex`
/// reads it: `\}` and `\/` are literal `}`/`/`, `\*`, `\?`, `\\` escape the
/// wildcard, any other escape is an error.
fn compile_pattern(pattern: &str) -> Result<Vec<PatternToken>, SubstitutionError> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let token = match c {
            '*' => PatternToken::Star,
            '?' => PatternToken::Any,
            '\\' => match chars.peek().copied() {
                Some('}' | '/') => continue,
                Some(n @ ('*' | '?' | '\\')) => {
                    chars.next();
                    PatternToken::Char(n)
                }
                other => {
                    return Err(SubstitutionError::InvalidPattern {
                        pattern: pattern.to_string(),
                        reason: PatternError::InvalidEscape(other),
                    });
                }
            },
            c => PatternToken::Char(c),
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`: the word still holds the second
/// `#`/`%` when the modifier was doubled (greedy).
fn trim_pattern(modifier: char, word: &str, value: &str) -> Result<String, SubstitutionError> {
    let (greedy, pattern) = match word.strip_prefix(modifier) {
        Some(rest) => (true, rest),
        None => (false, word),
    };
    let tokens = compile_pattern(pattern)?;
    let chars: Vec<char> = value.chars().collect();
    // Matching costs up to `value × pattern` steps, both up to a megabyte.
    let mut budget = MAX_PATTERN_WORK;
    if modifier == '#' {
        let cut = prefix_match_budgeted(&tokens, &chars, greedy, &mut budget)?.unwrap_or(0);
        return Ok(chars.get(cut..).unwrap_or_default().iter().collect());
    }
    let reversed_tokens: Vec<PatternToken> = tokens.into_iter().rev().collect();
    let reversed: Vec<char> = chars.iter().rev().copied().collect();
    let cut = prefix_match_budgeted(&reversed_tokens, &reversed, greedy, &mut budget)?.unwrap_or(0);
    let keep = chars.len().saturating_sub(cut);
    Ok(chars.get(..keep).unwrap_or_default().iter().collect())
}

/// Length of the shortest (or, when `greedy`, longest) prefix of `text`
/// matched by the whole pattern, charging each step against `budget`.
fn prefix_match_budgeted(
    tokens: &[PatternToken],
    text: &[char],
    greedy: bool,
    budget: &mut usize,
) -> Result<Option<usize>, SubstitutionError> {
    let mut states = closure(tokens, vec![false; tokens.len() + 1], 0);
    let mut best = None;
    for (i, &c) in text.iter().enumerate() {
        *budget = budget
            .checked_sub(tokens.len() + 1)
            .ok_or(SubstitutionError::TooExpensive)?;
        if accepts(&states) {
            best = Some(i);
            if !greedy {
                return Ok(best);
            }
        }
        states = step(tokens, &states, c);
        if !states.iter().any(|&s| s) {
            return Ok(best);
        }
    }
    if accepts(&states) {
        best = Some(text.len());
    }
    Ok(best)
}

/// Set of NFA states (index into the token list, `len` = accepted).
type States = Vec<bool>;

fn accepts(states: &States) -> bool {
    states.last().copied().unwrap_or(false)
}

/// Mark `start` and everything reachable from it without consuming input.
/// A state already marked had its followers marked with it, so the walk stops
/// there: a run of `*`s then costs linear, not quadratic, time per character.
fn closure(tokens: &[PatternToken], mut states: States, start: usize) -> States {
    let mut i = start;
    while let Some(slot) = states.get_mut(i) {
        if *slot {
            break;
        }
        *slot = true;
        if tokens.get(i) != Some(&PatternToken::Star) {
            break;
        }
        i += 1;
    }
    states
}

fn step(tokens: &[PatternToken], states: &States, c: char) -> States {
    let mut next = vec![false; tokens.len() + 1];
    for (i, token) in tokens.iter().enumerate() {
        if !states.get(i).copied().unwrap_or(false) {
            continue;
        }
        match *token {
            PatternToken::Star if c != '\n' => next = closure(tokens, next, i),
            PatternToken::Any if c != '\n' => next = closure(tokens, next, i + 1),
            PatternToken::Char(p) if p == c => next = closure(tokens, next, i + 1),
            _ => {}
        }
    }
    next
}

/// Replace the leftmost-longest match (or every non-overlapping one).
fn replace_matches(
    tokens: &[PatternToken],
    value: &str,
    replacement: &str,
    all: bool,
) -> Result<String, SubstitutionError> {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut pos = 0;
    let mut budget = MAX_PATTERN_WORK;
    while pos <= chars.len() {
        let Some((start, end)) = find_match(tokens, &chars, pos, &mut budget)? else {
            break;
        };
        out.extend(chars.get(pos..start).unwrap_or_default());
        push_checked(&mut out, replacement)?;
        if end == start {
            out.extend(chars.get(start..start + 1).unwrap_or_default());
            pos = start + 1;
        } else {
            pos = end;
        }
        if !all {
            break;
        }
    }
    out.extend(chars.get(pos..).unwrap_or_default());
    Ok(out)
}

/// Leftmost start at or after `from` where the pattern matches, with the
/// longest end for that start.
fn find_match(
    tokens: &[PatternToken],
    text: &[char],
    from: usize,
    budget: &mut usize,
) -> Result<Option<(usize, usize)>, SubstitutionError> {
    for start in from..=text.len() {
        let rest = text.get(start..).unwrap_or_default();
        if let Some(len) = prefix_match_budgeted(tokens, rest, true, budget)? {
            return Ok(Some((start, start + len)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ex(word: &str, pairs: &[(&str, &str)]) -> String {
        expand_word(word, '\\', &vars(pairs)).unwrap()
    }

    #[test]
    fn heredoc_bodies_keep_quotes() {
        let v = vars(&[("A", "x y")]);
        assert_eq!(
            expand_heredoc("say '$A' \"${A}\" \\$A\n", &v).unwrap(),
            "say 'x y' \"x y\" $A\n"
        );
    }

    fn err(word: &str, pairs: &[(&str, &str)]) -> SubstitutionError {
        expand_word(word, '\\', &vars(pairs)).unwrap_err()
    }

    #[test]
    fn plain_and_braced_variables() {
        let v = [("A", "apple"), ("B_2", "bee")];
        assert_eq!(ex("$A", &v), "apple");
        assert_eq!(ex("${A}", &v), "apple");
        assert_eq!(ex("x${A}y", &v), "xappley");
        assert_eq!(ex("$A-$B_2", &v), "apple-bee");
        assert_eq!(ex("$UNSET.", &v), ".");
        assert_eq!(ex("${UNSET}", &v), "");
        assert_eq!(ex("cost: $", &v), "cost: $");
        assert_eq!(ex("$/x", &v), "$/x");
    }

    #[test]
    fn default_and_alternative() {
        let v = [("SET", "s"), ("EMPTY", "")];
        assert_eq!(ex("${UNSET:-d}", &v), "d");
        assert_eq!(ex("${EMPTY:-d}", &v), "d");
        assert_eq!(ex("${SET:-d}", &v), "s");
        assert_eq!(ex("${UNSET-d}", &v), "d");
        assert_eq!(ex("${EMPTY-d}", &v), "");
        assert_eq!(ex("${SET:+x}", &v), "x");
        assert_eq!(ex("${EMPTY:+x}", &v), "");
        assert_eq!(ex("${EMPTY+x}", &v), "x");
        assert_eq!(ex("${UNSET+x}", &v), "");
        assert_eq!(ex("${UNSET:-a b}", &v), "a b");
    }

    #[test]
    fn nested_defaults() {
        let v = [("C", "c")];
        assert_eq!(ex("${A:-${B:-${C}}}", &v), "c");
        assert_eq!(ex("${A:-pre-$C-post}", &v), "pre-c-post");
    }

    #[test]
    fn required_variables() {
        let v = [("EMPTY", "")];
        assert_eq!(
            err("${X?}", &v).to_string(),
            "X: is not allowed to be unset"
        );
        assert_eq!(
            err("${EMPTY:?must be set}", &v).to_string(),
            "EMPTY: must be set"
        );
        assert_eq!(ex("${EMPTY?}", &v), "");
    }

    #[test]
    fn escapes_and_quotes() {
        let v = [("A", "apple")];
        assert_eq!(ex("\\$A", &v), "$A");
        assert_eq!(ex("\\${A}", &v), "${A}");
        assert_eq!(ex("'$A'", &v), "$A");
        assert_eq!(ex("\"$A\"", &v), "apple");
        assert_eq!(ex("\"\\$A\"", &v), "$A");
        assert_eq!(ex("\"a\\\"b\"", &v), "a\"b");
        assert_eq!(ex("\"a\\nb\"", &v), "a\\nb");
        assert_eq!(ex("a\\ b", &v), "a b");
        assert_eq!(ex("trailing\\", &v), "trailing");
        assert_eq!(ex("'it''s'", &v), "its");
    }

    #[test]
    fn backtick_escape() {
        let v = vars(&[("A", "apple")]);
        assert_eq!(expand_word("`$A", '`', &v).unwrap(), "$A");
        assert_eq!(expand_word("C:\\$A", '`', &v).unwrap(), "C:\\apple");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(err("${A", &[]), SubstitutionError::MissingBrace);
        assert_eq!(err("${", &[]), SubstitutionError::MissingBrace);
        assert_eq!(err("${A:-x", &[]), SubstitutionError::MissingBrace);
        assert_eq!(err("${}", &[]), SubstitutionError::BadSubstitution);
        assert_eq!(err("${:a}", &[]), SubstitutionError::BadSubstitution);
        assert_eq!(
            err("${A:=x}", &[]),
            SubstitutionError::UnsupportedModifier(":=".into())
        );
        assert_eq!(
            err("${A^}", &[]),
            SubstitutionError::UnsupportedModifier("^".into())
        );
        assert_eq!(
            err("'open", &[]),
            SubstitutionError::Unterminated("single-quote")
        );
        assert_eq!(
            err("\"open", &[]),
            SubstitutionError::Unterminated("double-quote")
        );
    }

    #[test]
    fn prefix_and_suffix_trimming() {
        let v = [("F", "archive.tar.gz"), ("P", "/usr/local/bin")];
        assert_eq!(ex("${F%.*}", &v), "archive.tar");
        assert_eq!(ex("${F%%.*}", &v), "archive");
        assert_eq!(ex("${F#*.}", &v), "tar.gz");
        assert_eq!(ex("${F##*.}", &v), "gz");
        assert_eq!(ex("${P##*/}", &v), "bin");
        assert_eq!(ex("${F#nomatch}", &v), "archive.tar.gz");
        assert_eq!(ex("${F%a?????????????}", &v), "");
    }

    #[test]
    fn replacement() {
        let v = [("V", "a-b-c"), ("E", "")];
        assert_eq!(ex("${V/-/_}", &v), "a_b-c");
        assert_eq!(ex("${V//-/_}", &v), "a_b_c");
        assert_eq!(ex("${V//?/x}", &v), "xxxxx");
        assert_eq!(ex("${V/b*/B}", &v), "a-B");
        assert_eq!(ex("${E//x/y}", &v), "");
        assert_eq!(err("${V/x}", &v), SubstitutionError::MissingSlash);
    }

    #[test]
    fn bad_patterns() {
        assert!(matches!(
            err("${V#\\q}", &[("V", "x")]),
            SubstitutionError::InvalidPattern { .. }
        ));
        assert_eq!(
            err("${V#\\q}", &[("V", "x")]).to_string(),
            "invalid pattern (\\q) in substitution: invalid escape '\\q'"
        );
    }

    #[test]
    fn special_and_positional_names() {
        let v = [("1", "one"), ("@", "at")];
        assert_eq!(ex("$1x", &v), "onex");
        assert_eq!(ex("$@", &v), "at");
        assert_eq!(ex("$$", &v), "");
    }

    #[test]
    fn words_split_after_expansion() {
        let v = vars(&[("PORTS", "80 443/udp")]);
        assert_eq!(
            expand_words("$PORTS 8080", '\\', &v).unwrap(),
            vec!["80", "443/udp", "8080"]
        );
        assert_eq!(
            expand_words("\"a b\" c", '\\', &v).unwrap(),
            vec!["a b", "c"]
        );
    }

    #[test]
    fn hostile_input_is_bounded() {
        let deep = "${A:-".repeat(10_000);
        assert_eq!(err(&deep, &[]), SubstitutionError::TooDeep);
        let big = "x".repeat(MAX_EXPANSION_LEN / 4 + 1);
        let v = [("B", big.as_str())];
        assert_eq!(err("$B$B$B$B", &v), SubstitutionError::TooLong);
        let many = "a".repeat(5000);
        let v = [("M", many.as_str())];
        assert_eq!(ex("${M//b*c/x}", &v), many);
    }

    /// Found while fuzzing (reproduced with the fuzz/ `dockerfile` target):
    /// trimming had no work limit and a run of `*`s was re-walked from every
    /// active state, so a 456-byte Dockerfile (`A` doubled to 256 KiB, then
    /// `ENV B=${A##****…b}`) ran for over ten minutes.
    #[test]
    fn hostile_trim_patterns_are_bounded() {
        let value = "a".repeat(16 << 10);
        let v = [("A", value.as_str())];
        let stars = format!("${{A##{}b}}", "*".repeat(300));
        assert_eq!(ex(&stars, &v), value);
        let stars = format!("${{A%%b{}}}", "*".repeat(300));
        assert_eq!(ex(&stars, &v), value);
        // Work proportional to value × pattern is refused, not ground through.
        let long = format!("${{A%%{}*}}", "a".repeat(4000));
        assert_eq!(err(&long, &v), SubstitutionError::TooExpensive);
        // Cheap patterns over the same value still work.
        assert_eq!(ex("${A#a}", &v).len(), value.len() - 1);
        assert_eq!(ex("${A##*a}", &v), "");
        assert_eq!(ex("${A%%a*}", &v), "");
    }
}
