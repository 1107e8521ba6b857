//! The one glob engine: shell-style patterns (`*`, `?`, `[...]`, `\` escapes, and for
//! `.dockerignore` `**`) parsed into tokens and matched by one NFA, in linear time per
//! character whatever the pattern. `.dockerignore` (`regbuild_context::dockerignore`), `COPY` sources
//! (`regbuild_context::context`) and `ld.so.conf` includes (`regbuild-closure`) all match with it.
//!
//! Its users need three sets of rules, each a [`Dialect`]. They agree on the tokens and on
//! matching, and differ only where the tools they mimic differ:
//!
//! | | [`Dialect::Dockerignore`] | [`Dialect::CopySource`] | [`Dialect::Fnmatch`] |
//! |---|---|---|---|
//! | mimics | `moby/patternmatcher` | Go `filepath.Match`, one path segment | fnmatch(3), no flags |
//! | units | characters | characters; a name's invalid UTF-8 bytes are U+FFFD each, as Go reads them | bytes |
//! | `**` | any number of directories (`**/`), or anything at the end | two `*` | two `*` |
//! | `[^...]` / `[!...]` | `^` only | both | both |
//! | `*`, `?` and `/` | never match `/` | never match `/` | match anything |
//! | malformed `[`, trailing `\` | refused | refused | taken literally (`[`, `\`) |
//! | `[]...]`, `[-...]`, `[a-]` | refused | refused | `]` and `-` are members |
//! | reversed range `[z-a]` | refused | refused | matches nothing |
//!
//! In the first two, a class that the pattern ends inside is refused ([`GlobError::UnclosedClass`])
//! before a reversed range in it is noticed for `.dockerignore` (Go's order), after for `COPY`.
//!
//! Hand-written rather than taken from a crate because none implements these rules:
//! `globset` (gitignore-style) accepts `{a,b}` alternation and the bracket forms Go refuses
//! (`[]a]`, `[a-]`), and has no "this pattern or a parent directory" match; `glob` has no
//! `\` escapes, no `[^...]` negation and allows `**` only as a whole path component;
//! `wildmatch` follows git, refuses nothing and has neither of Docker's `**` forms.
//!
//! Not here: reading `.dockerignore` files and patternmatcher's shortcuts and precedence
//! (`regbuild_context::dockerignore`), walking directories to expand a glob (`regbuild_context::context`,
//! `regbuild-closure`).

/// Whose rules a pattern follows: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `.dockerignore` patterns, as `moby/patternmatcher` reads them.
    Dockerignore,
    /// One `/`-separated segment of a `COPY` source.
    CopySource,
    /// fnmatch(3) without flags (the leading-dot rule is the caller's).
    Fnmatch,
}

impl Dialect {
    /// The characters that negate a class right after its `[`.
    fn negators(self) -> &'static [char] {
        match self {
            Dialect::Dockerignore => &['^'],
            Dialect::CopySource | Dialect::Fnmatch => &['^', '!'],
        }
    }

    /// Whether malformed patterns are refused (rather than read literally).
    fn strict(self) -> bool {
        self != Dialect::Fnmatch
    }

    fn double_star(self) -> bool {
        self == Dialect::Dockerignore
    }

    /// Go's `getEsc`: a class member that ends the pattern makes the class unclosed at
    /// once, before its range is checked.
    fn eager_end(self) -> bool {
        self == Dialect::Dockerignore
    }

    /// What `*` and `?` never match.
    fn separator(self) -> Option<char> {
        match self {
            Dialect::Dockerignore | Dialect::CopySource => Some('/'),
            Dialect::Fnmatch => None,
        }
    }

    /// The units a pattern or name is matched as.
    fn units(self, bytes: &[u8]) -> Vec<char> {
        match self {
            Dialect::Fnmatch => bytes.iter().map(|&b| char::from(b)).collect(),
            Dialect::Dockerignore | Dialect::CopySource => decode_lossy(bytes),
        }
    }
}

/// Why a pattern is refused ([`Dialect::Fnmatch`] never refuses one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("trailing `\\`")]
    TrailingBackslash,
    /// The pattern ends inside a `[...]`.
    #[error("unclosed `[`")]
    UnclosedClass,
    /// A `]` or `-` where a class member is expected.
    #[error("unescaped `]` or `-` in a character class")]
    UnescapedInClass,
    #[error("character range is out of order")]
    ReversedRange { lo: char, hi: char },
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    dialect: Dialect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: one unit other than the separator.
    AnyOne,
    /// `*`: any run of units other than the separator.
    Star,
    /// `**` followed by more pattern: nothing, or anything ending in `/`.
    DirStar,
    /// `**` at the end: anything.
    Rest,
    /// `[...]`: inclusive ranges, possibly negated.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    pub fn new(pattern: &str, dialect: Dialect) -> Result<Glob, GlobError> {
        Glob::from_bytes(pattern.as_bytes(), dialect)
    }

    /// A pattern given as bytes (decoded as the dialect's units).
    pub fn from_bytes(pattern: &[u8], dialect: Dialect) -> Result<Glob, GlobError> {
        let tokens = parse(&dialect.units(pattern), dialect)?;
        Ok(Glob { tokens, dialect })
    }

    /// The unescaped text if the pattern has no wildcard.
    pub fn literal(&self) -> Option<String> {
        self.tokens
            .iter()
            .map(|t| match t {
                Token::Char(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Whether the pattern matches the whole of `text`.
    pub fn matches(&self, text: &str) -> bool {
        match self.dialect {
            Dialect::Fnmatch => self.matches_bytes(text.as_bytes()),
            Dialect::Dockerignore | Dialect::CopySource => self.run(text.chars(), false),
        }
    }

    /// Whether the pattern matches the whole of `name`, decoded as the dialect's units.
    pub fn matches_bytes(&self, name: &[u8]) -> bool {
        self.run(self.dialect.units(name).into_iter(), false)
    }

    /// Whether the pattern matches `path` or one of its parent directories (a prefix that
    /// ends right before a `/`), in one pass over `path`.
    pub fn matches_path_or_parent(&self, path: &str) -> bool {
        self.run(path.chars(), true)
    }

    /// Runs the pattern as an NFA over `text`.
    fn run(&self, text: impl Iterator<Item = char>, or_parent: bool) -> bool {
        let tokens = &self.tokens;
        let separator = self.dialect.separator();
        let mut states = States::new(tokens.len());
        let mut next = States::new(tokens.len());
        add_state(tokens, &mut states, 0);
        for (pos, c) in text.enumerate() {
            if or_parent && c == '/' && pos > 0 && states.accepts() {
                return true;
            }
            next.clear();
            for (i, token) in tokens.iter().enumerate() {
                if states.at.get(i).copied().unwrap_or(false) {
                    advance(tokens, token, i, c, separator, &mut next);
                }
                if states.inside.get(i).copied().unwrap_or(false) {
                    dir_star(tokens, i, c, &mut next);
                }
            }
            if !next.any() {
                return false;
            }
            std::mem::swap(&mut states, &mut next);
        }
        states.accepts()
    }
}

/// Tokenizes a pattern.
fn parse(units: &[char], dialect: Dialect) -> Result<Vec<Token>, GlobError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = units.get(i) {
        let (token, next) = match c {
            '*' if dialect.double_star() && units.get(i + 1) == Some(&'*') => {
                let mut next = i + 2;
                if units.get(next) == Some(&'/') {
                    next += 1;
                }
                let token = if next >= units.len() {
                    Token::Rest
                } else {
                    Token::DirStar
                };
                (token, next)
            }
            '*' => (Token::Star, i + 1),
            '?' => (Token::AnyOne, i + 1),
            '\\' => match units.get(i + 1) {
                Some(&n) => (Token::Char(n), i + 2),
                None if dialect.strict() => return Err(GlobError::TrailingBackslash),
                None => (Token::Char('\\'), i + 1),
            },
            '[' => match class(units, i + 1, dialect)? {
                Some(found) => found,
                // fnmatch: an unclosed `[` is an ordinary character.
                None => (Token::Char('['), i + 1),
            },
            c => (Token::Char(c), i + 1),
        };
        tokens.push(token);
        i = next;
    }
    Ok(tokens)
}

/// The bracket expression whose members start at `start` (after the `[`): its token and
/// the index after its `]`, or `None` when the pattern ends inside it and the dialect
/// takes the `[` literally.
fn class(
    units: &[char],
    start: usize,
    dialect: Dialect,
) -> Result<Option<(Token, usize)>, GlobError> {
    let unclosed = || {
        if dialect.strict() {
            Err(GlobError::UnclosedClass)
        } else {
            Ok(None)
        }
    };
    let mut i = start;
    let negated = units.get(i).is_some_and(|c| dialect.negators().contains(c));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let Some(&c) = units.get(i) else {
            return unclosed();
        };
        // A `]` first is a member (fnmatch) or refused (below), never the end.
        if c == ']' && !ranges.is_empty() {
            return Ok(Some((Token::Class { negated, ranges }, i + 1)));
        }
        let Some((lo, next)) = member(units, i, dialect)? else {
            return unclosed();
        };
        i = next;
        let mut hi = lo;
        // fnmatch: a `-` before the closing `]` is a member.
        let range = units.get(i) == Some(&'-')
            && (dialect.strict() || units.get(i + 1).is_some_and(|&c| c != ']'));
        if range {
            let Some((end, next)) = member(units, i + 1, dialect)? else {
                return unclosed();
            };
            hi = end;
            i = next;
        }
        // Docker compiles patterns to Go regular expressions, which refuse a reversed range
        // (`[Local-Only]`): every build with such a pattern fails there, so fail here, early.
        if dialect.strict() && hi < lo {
            return Err(GlobError::ReversedRange { lo, hi });
        }
        ranges.push((lo, hi));
    }
}

/// The (possibly escaped) class member at `i` and the index after it; `None` when the
/// pattern ends first.
fn member(units: &[char], i: usize, dialect: Dialect) -> Result<Option<(char, usize)>, GlobError> {
    let (c, next) = match units.get(i) {
        None => return Ok(None),
        Some('\\') => match units.get(i + 1) {
            Some(&c) => (c, i + 2),
            None => return Ok(None),
        },
        Some(']' | '-') if dialect.strict() => return Err(GlobError::UnescapedInClass),
        Some(&c) => (c, i + 1),
    };
    if dialect.eager_end() && next >= units.len() {
        return Ok(None);
    }
    Ok(Some((c, next)))
}

/// NFA state set: `at[i]` = about to match token `i` (`at[len]` = done);
/// `inside[i]` = inside the `.*` part of the `**/` token `i`, which may only
/// be left through a `/`.
#[derive(Clone)]
struct States {
    at: Vec<bool>,
    inside: Vec<bool>,
}

impl States {
    fn new(len: usize) -> Self {
        States {
            at: vec![false; len + 1],
            inside: vec![false; len],
        }
    }

    fn any(&self) -> bool {
        self.at.iter().chain(&self.inside).any(|&s| s)
    }

    fn accepts(&self) -> bool {
        self.at.last().copied().unwrap_or(false)
    }

    fn clear(&mut self) {
        self.at.fill(false);
        self.inside.fill(false);
    }
}

/// The transitions of state `i` (at `token`) on `c`.
fn advance(
    tokens: &[Token],
    token: &Token,
    i: usize,
    c: char,
    separator: Option<char>,
    next: &mut States,
) {
    let not_separator = separator != Some(c);
    match token {
        Token::Char(p) if *p == c => add_state(tokens, next, i + 1),
        Token::AnyOne if not_separator => add_state(tokens, next, i + 1),
        Token::Star if not_separator => add_state(tokens, next, i),
        Token::DirStar => dir_star(tokens, i, c, next),
        // As the regular expression `.*` Docker compiles it to: no newline.
        Token::Rest if c != '\n' => add_state(tokens, next, i),
        Token::Class { negated, ranges }
            if ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated =>
        {
            add_state(tokens, next, i + 1)
        }
        _ => {}
    }
}

/// `**/` consuming `c`: stay inside, and leave after a `/`.
fn dir_star(tokens: &[Token], i: usize, c: char, next: &mut States) {
    if c == '\n' {
        return;
    }
    if let Some(slot) = next.inside.get_mut(i) {
        *slot = true;
    }
    if c == '/' {
        add_state(tokens, next, i + 1);
    }
}

/// Mark `start` and the states reachable from it without input. A state
/// already marked had its followers marked with it, so the walk stops there:
/// a run of `**`s then costs linear, not quadratic, time per character.
fn add_state(tokens: &[Token], states: &mut States, start: usize) {
    let mut i = start;
    while let Some(slot) = states.at.get_mut(i) {
        if *slot {
            break;
        }
        *slot = true;
        match tokens.get(i) {
            Some(Token::Star | Token::DirStar | Token::Rest) => i += 1,
            _ => break,
        }
    }
}

/// UTF-8 with each invalid byte read as one U+FFFD, as Go's `utf8.DecodeRune` does.
fn decode_lossy(bytes: &[u8]) -> Vec<char> {
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().chars());
        out.extend(chunk.invalid().iter().map(|_| char::REPLACEMENT_CHARACTER));
    }
    out
}
