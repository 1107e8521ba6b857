//! `.dockerignore` matching with Docker's semantics (`moby/patternmatcher`
//! and its `ignorefile` reader, plus the directory-skipping rule of
//! `tonistiigi/fsutil`).
//!
//! What it does:
//! - reads the file: UTF-8 BOM stripped, lines starting with `#` are comments
//!   (only at the very start of the line, as in Docker), blank lines skipped,
//!   patterns trimmed, cleaned like Go's `filepath.Clean`, one leading `/`
//!   removed (`/build` = `build`), `!` marks an exception;
//! - matches slash-separated paths relative to the context root: `*` and `?`
//!   never match `/`, `[...]` (with `^` negation and ranges) as in Go's
//!   `filepath.Match`, `\` escapes, `**` matches any number of directories
//!   (`**/*.tmp`, `dir/**`); a pattern matching a parent directory matches
//!   everything below it; the last matching pattern wins, so `!README.md`
//!   after `*.md` re-includes the file;
//! - tells a walker whether an excluded directory can be skipped whole
//!   ([`DockerIgnore::may_include_below`]).
//!
//! The patterns themselves are matched by [`regbuild_paths::glob`] ([`Dialect::Dockerignore`]);
//! this module reads the file, keeps patternmatcher's match types (exact, prefix,
//! suffix shortcuts) and its precedence rules.
//!
//! What it does not do: touch the file system, or special-case the
//! Dockerfile and `.dockerignore` themselves (Docker always sends those; the
//! caller decides). Bracket expressions follow `filepath.Match` rather than
//! the regular-expression quirks Docker inherits inside brackets, except that
//! a reversed range (`[z-a]`), which makes every Docker build fail when it is
//! matched, is refused when the file is read.

use std::path::{Path, PathBuf};

use regbuild_paths::clean::clean_path;
use regbuild_paths::glob::{Dialect, Glob, GlobError};

/// A bad `.dockerignore` pattern, at its file and line.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: invalid pattern {pattern:?}: {problem}", path.display())]
pub struct IgnoreError {
    /// The ignore file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong.
    pub problem: PatternError,
}

/// What is wrong with a pattern, in the words of Go's `filepath` and patternmatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    #[error("syntax error in pattern: trailing \\")]
    TrailingBackslash,
    #[error("syntax error in pattern: bad bracket expression")]
    BadBracket,
    #[error("syntax error in pattern: bad bracket expression (range {lo}-{hi} is reversed)")]
    ReversedRange { lo: char, hi: char },
}

impl From<GlobError> for PatternError {
    fn from(e: GlobError) -> PatternError {
        match e {
            GlobError::TrailingBackslash => PatternError::TrailingBackslash,
            GlobError::UnclosedClass | GlobError::UnescapedInClass => PatternError::BadBracket,
            GlobError::ReversedRange { lo, hi } => PatternError::ReversedRange { lo, hi },
        }
    }
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// One pattern line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    text: String,
    /// `!pattern`: re-includes what earlier patterns excluded.
    exception: bool,
    matcher: Matcher,
}

/// How a pattern matches (patternmatcher's match types).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    /// No wildcards: the path must equal the pattern.
    Exact,
    /// `prefix**`: the path must start with the prefix.
    Prefix(String),
    /// `**suffix` with a literal suffix.
    Suffix(String),
    /// Anything else.
    Tokens(Glob),
}

impl DockerIgnore {
    /// Parse `.dockerignore` text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        Self::build(lines, path)
    }

    /// Build from pattern strings (as if each were a line of the file).
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S], path: &Path) -> Result<Self, IgnoreError> {
        let lines = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (i + 1, p.as_ref()));
        Self::build(lines, path)
    }

    fn build<'t>(
        lines: impl Iterator<Item = (usize, &'t str)>,
        path: &Path,
    ) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for (line, raw) in lines {
            let Some(normalized) = normalize_line(raw) else {
                continue;
            };
            let pattern = compile(&normalized).map_err(|problem| IgnoreError {
                path: path.to_path_buf(),
                line,
                pattern: raw.trim().to_string(),
                problem,
            })?;
            patterns.push(pattern);
        }
        Ok(DockerIgnore { patterns })
    }

    /// True when there are no patterns (nothing is excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The normalized patterns, exceptions prefixed with `!`.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exception {
                    format!("!{}", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect()
    }

    /// Whether `rel_path` (slash-separated, relative to the context root) is
    /// excluded from the build context. The root itself never is.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        relative_clean(rel_path).is_some_and(|file| self.matches_or_parent_matches(&file))
    }

    /// patternmatcher's `MatchesOrParentMatches`: `file` taken as given (not cleaned),
    /// the last pattern that matches it or one of its parent directories decides.
    fn matches_or_parent_matches(&self, file: &str) -> bool {
        let mut excluded = false;
        for pattern in &self.patterns {
            if pattern.exception != excluded {
                continue;
            }
            if pattern.matches_path_or_parent(file) {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether anything below the directory `rel_dir` might be included. A
    /// walker may skip an excluded directory whole when this is false.
    /// Conservative: true when unsure (an exception with wildcards).
    pub fn may_include_below(&self, rel_dir: &str) -> bool {
        let Some(dir) = relative_clean(rel_dir) else {
            return true;
        };
        if !self.is_excluded(&dir) {
            return true;
        }
        let exceptions: Vec<&str> = self
            .patterns
            .iter()
            .filter(|p| p.exception)
            .map(|p| without_trailing_glob(&p.text))
            .collect();
        if exceptions
            .iter()
            .any(|e| e.contains(['*', '[', ']', '?', '^', '\\']))
        {
            return true;
        }
        let dir_slash = format!("{dir}/");
        exceptions
            .iter()
            .any(|e| format!("{e}/").starts_with(&dir_slash))
    }
}

impl Pattern {
    /// Whether the pattern matches `file` or one of its parent directories
    /// (`a` and `a/b` for `a/b/c`), in one pass over `file`.
    fn matches_path_or_parent(&self, file: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => file
                .strip_prefix(self.text.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            Matcher::Prefix(prefix) => file.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => suffix_matches(suffix, file),
            Matcher::Tokens(glob) => glob.matches_path_or_parent(file),
        }
    }
}

/// `**suffix` against `file` and its parents: a candidate matches when it
/// ends with the suffix, or equals it without its leading `/`.
fn suffix_matches(suffix: &str, file: &str) -> bool {
    let ends = file
        .match_indices('/')
        .map(|(i, _)| i)
        .chain(std::iter::once(file.len()));
    for end in ends {
        if file.get(..end).is_some_and(|c| c.ends_with(suffix)) {
            return true;
        }
    }
    suffix
        .strip_prefix('/')
        .and_then(|bare| file.strip_prefix(bare))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Clean a context-relative path; `None` for the root.
fn relative_clean(path: &str) -> Option<String> {
    let cleaned = clean_path(path);
    let relative = cleaned.trim_start_matches('/');
    (!relative.is_empty() && relative != ".").then(|| relative.to_string())
}

fn without_trailing_glob(pattern: &str) -> &str {
    let p = pattern.strip_suffix("/**").unwrap_or(pattern);
    p.strip_suffix("/*").unwrap_or(p)
}

/// The `ignorefile.ReadAll` normalization of one line; `None` to skip it.
fn normalize_line(raw: &str) -> Option<String> {
    if raw.starts_with('#') {
        return None;
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    let (exception, body) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    let mut body = if body.is_empty() {
        String::new()
    } else {
        clean_path(body)
    };
    if body.len() > 1 && body.starts_with('/') {
        body.remove(0);
    }
    Some(if exception { format!("!{body}") } else { body })
}

/// `patternmatcher.New` for one normalized pattern.
fn compile(normalized: &str) -> Result<Pattern, PatternError> {
    let cleaned = clean_path(normalized.trim());
    let (exception, text) = match cleaned.strip_prefix('!') {
        Some("") => return Err(PatternError::LoneExclamation),
        Some(rest) => (true, rest.to_string()),
        None => (false, cleaned.clone()),
    };
    let matcher = compile_matcher(&text)?;
    Ok(Pattern {
        text,
        exception,
        matcher,
    })
}

/// patternmatcher's `compile`: the match type of a pattern. Only text without wildcards,
/// escapes or brackets takes a shortcut: all of it (exact), all of it after a leading `**`
/// (suffix), or all of it before a trailing `**` (prefix). Anything else is matched as a
/// glob.
fn compile_matcher(pattern: &str) -> Result<Matcher, PatternError> {
    let plain = |text: &str| !text.contains(['*', '?', '\\', '[', ']']);
    if plain(pattern) {
        return Ok(Matcher::Exact);
    }
    if let Some(suffix) = pattern.strip_prefix("**").filter(|rest| plain(rest)) {
        return Ok(Matcher::Suffix(suffix.to_string()));
    }
    if let Some(prefix) = pattern.strip_suffix("**").filter(|rest| plain(rest)) {
        return Ok(Matcher::Prefix(prefix.to_string()));
    }
    Ok(Matcher::Tokens(Glob::new(pattern, Dialect::Dockerignore)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn star_matches_one_level() {
        let di = ignore("*.md\n");
        assert!(di.is_excluded("README.md"));
        assert!(!di.is_excluded("docs/README.md"));
        assert!(!di.is_excluded("main.rs"));
    }

    #[test]
    fn exception_after_exclusion() {
        let di = ignore("*.md\n!README.md\n");
        assert!(!di.is_excluded("README.md"));
        assert!(di.is_excluded("CHANGES.md"));
    }

    #[test]
    fn last_matching_pattern_wins() {
        let di = ignore("!README.md\n*.md\n");
        assert!(di.is_excluded("README.md"));
        let di = ignore("*.md\n!*.md\nSECRET.md\n");
        assert!(di.is_excluded("SECRET.md"));
        assert!(!di.is_excluded("OTHER.md"));
    }

    #[test]
    fn double_star() {
        let di = ignore("**/*.tmp\n");
        assert!(di.is_excluded("a.tmp"));
        assert!(di.is_excluded("x/y/z.tmp"));
        assert!(!di.is_excluded("x/y/z.tmpl"));
        let di = ignore("dir/**\n");
        assert!(di.is_excluded("dir/a"));
        assert!(di.is_excluded("dir/a/b"));
        assert!(!di.is_excluded("dir"));
        let di = ignore("a/**/b\n");
        assert!(di.is_excluded("a/b"));
        assert!(di.is_excluded("a/x/y/b"));
        assert!(!di.is_excluded("a/xb"));
        let di = ignore("**/node_modules\n");
        assert!(di.is_excluded("node_modules"));
        assert!(di.is_excluded("web/node_modules/x.js"));
        assert!(!di.is_excluded("not_node_modules"));
        let di = ignore("**\n");
        assert!(di.is_excluded("anything/at/all"));
    }

    #[test]
    fn leading_slash_and_trailing_slash_are_cleaned() {
        let di = ignore("/build\ndir/\n./x/../y\n");
        assert_eq!(di.patterns(), vec!["build", "dir", "y"]);
        assert!(di.is_excluded("build"));
        assert!(di.is_excluded("build/out/app"));
        assert!(!di.is_excluded("src/build"));
        assert!(di.is_excluded("dir/file"));
        assert!(di.is_excluded("y"));
        assert!(di.is_excluded("/build/x"));
        assert!(di.is_excluded("./dir/z"));
    }

    #[test]
    fn dir_with_exception_below() {
        let di = ignore("dir\n!dir/keep\n");
        assert!(di.is_excluded("dir"));
        assert!(di.is_excluded("dir/other"));
        assert!(!di.is_excluded("dir/keep"));
        assert!(!di.is_excluded("dir/keep/inner"));
        assert!(di.may_include_below("dir"));
        assert!(!di.may_include_below("dir/other"));
    }

    #[test]
    fn may_include_below_rules() {
        let di = ignore("vendor\n");
        assert!(!di.may_include_below("vendor"));
        assert!(di.may_include_below("src"));
        assert!(di.may_include_below("."));
        let di = ignore("vendor\n!**/*.go\n");
        assert!(di.may_include_below("vendor"));
        assert!(!di.is_excluded("vendor/x/y.go"));
        let di = ignore("a\n!a/b/*\n");
        assert!(di.may_include_below("a"));
        assert!(di.may_include_below("a/b"));
        assert!(!di.may_include_below("a/c"));
        assert!(!di.is_excluded("a/b/f"));
    }

    #[test]
    fn comments_blank_lines_and_bom() {
        let di = ignore("\u{feff}# comment\n\n   \n*.log\r\n #notacomment\n");
        assert_eq!(di.patterns(), vec!["*.log", "#notacomment"]);
        assert!(di.is_excluded("x.log"));
        assert!(di.is_excluded("#notacomment"));
    }

    #[test]
    fn dot_never_excludes_the_root() {
        let di = ignore(".\n");
        assert!(!di.is_excluded("."));
        assert!(!di.is_excluded(""));
        assert!(!di.is_excluded("file"));
        let di = ignore("*\n");
        assert!(!di.is_excluded("."));
        assert!(di.is_excluded("file"));
        assert!(di.is_excluded("dir/file"));
    }

    #[test]
    fn wildcards_and_classes() {
        let di = ignore("file?.txt\n[a-c]*.log\n[^x]y\nesc\\*aped\n");
        assert!(di.is_excluded("file1.txt"));
        assert!(!di.is_excluded("file10.txt"));
        assert!(di.is_excluded("b-1.log"));
        assert!(!di.is_excluded("d.log"));
        assert!(di.is_excluded("zy"));
        assert!(!di.is_excluded("xy"));
        assert!(di.is_excluded("esc*aped"));
        assert!(!di.is_excluded("escXaped"));
    }

    #[test]
    fn prefix_and_suffix_shortcuts() {
        let di = ignore("foo**\n");
        assert!(di.is_excluded("foobar"));
        assert!(di.is_excluded("foo/x"));
        let di = ignore("**.tmp\n");
        assert!(di.is_excluded("a/b.tmp"));
        assert!(di.is_excluded("x.tmp"));
    }

    #[test]
    fn exception_with_space_and_slash() {
        let di = ignore("*\n! /keep\n");
        assert_eq!(di.patterns(), vec!["*", "!keep"]);
        assert!(!di.is_excluded("keep"));
        assert!(di.is_excluded("other"));
    }

    #[test]
    fn parents_match_in_every_form() {
        let di = ignore("a/*/c\n");
        assert!(di.is_excluded("a/b/c/d"));
        assert!(!di.is_excluded("a/b/cd"));
        let di = ignore("a/b\n");
        assert!(di.is_excluded("a/b/x"));
        assert!(!di.is_excluded("a/bc"));
        let di = ignore("**/x\n");
        assert!(di.is_excluded("y/x/z"));
        assert!(di.is_excluded("x/z"));
        assert!(!di.is_excluded("y/xz"));
    }

    #[test]
    fn invalid_patterns_name_the_line() {
        let err = DockerIgnore::parse("ok\n\n[abc\n", Path::new(".dockerignore")).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err
            .to_string()
            .starts_with(".dockerignore:3: invalid pattern \"[abc\""));
        let err = DockerIgnore::parse("!\n", Path::new(".dockerignore")).unwrap_err();
        assert!(err.to_string().contains("illegal exclusion pattern"));
        for bad in ["[]a]", "[a-]", "a\\", "[^]"] {
            assert!(
                DockerIgnore::from_patterns(&[bad], Path::new("x")).is_err(),
                "{bad}"
            );
        }
    }

    /// Every pattern of up to three pieces of the `.dockerignore` grammar (stars, classes,
    /// escapes, negation, `..`, separators) parses or fails with an error, never a panic,
    /// and a parsed one matches every path of the same pieces without a panic: exhaustive,
    /// so a failure names its pattern and reproduces as is.
    #[test]
    fn every_short_pattern_parses_or_fails_without_panic() {
        const PIECES: [&str; 19] = [
            "*", "**", "?", "[", "]", "[!", "^", "-", "\\", "!", "/", "..", ".", "a", "\n", " ",
            "#", "\u{e9}", "\0",
        ];
        let mut texts = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = texts
                .iter()
                .filter(|t| t.len() < 12)
                .flat_map(|t| PIECES.iter().map(move |p| format!("{t}{p}")))
                .collect();
            texts.extend(longer);
        }
        let paths = ["a", "a/b", "./a", "a/../b", ".", "*"];
        for text in &texts {
            if let Ok(di) = DockerIgnore::parse(text, Path::new("i")) {
                for path in paths.iter().copied().chain([text.as_str()]) {
                    di.is_excluded(path);
                    di.may_include_below(path);
                }
            }
        }
        assert!(texts.len() > 6000, "{} patterns", texts.len());
    }

    /// Found while fuzzing (reproduced with the fuzz/ `dockerfile` target):
    /// each `/` re-walked the rest of a run of `**` tokens from every state
    /// inside it (quadratic per character), so a 12 KB .dockerignore took
    /// minutes to match one path. This test took 33 s before the fix.
    #[test]
    fn long_runs_of_double_stars_match_in_linear_time() {
        let pattern = format!("a/{}x", "**/".repeat(4000));
        let di = ignore(&pattern);
        let deep = format!("a/{}", "b/".repeat(200));
        assert!(!di.is_excluded(&format!("{deep}y")));
        assert!(di.is_excluded(&format!("{deep}x")));
        assert!(di.is_excluded("a/x"));
        assert!(!di.is_excluded("b/x"));
    }

    // ---------------------------------------------------------------------------------
    // The test vectors of moby/patternmatcher's patternmatcher_test.go (commit 5a6d842,
    // github.com/moby/patternmatcher), ported as data: `TestMatches` (single patterns and
    // `multiPatternTests`, run as `MatchesOrParentMatches`), `TestMatch` (Go's
    // filepath.Match vectors, run through the package-level `Matches`), `TestCompile`'s
    // match types, and the small named tests. `Matches` cleans the path and never excludes
    // `.`, as `is_excluded` does; `MatchesOrParentMatches` takes the text as given.

    /// `TestMatches.tests`: (pattern, text, excluded).
    const PATTERNMATCHER_MATCHES: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true), // weird one
        ("**/", "file/", true),
        ("**", "/", true),
        ("**/", "/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**", "dir/file/", true),
        ("**/", "dir/file/", true),
        ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir/dir2/file/", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        (r"a\\", r"a\", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        // Appended on non-Windows systems.
        (r"a\*b", "a*b", true),
    ];

    /// `TestMatches.multiPatternTests`: (patterns, text, excluded).
    const PATTERNMATCHER_MULTI: &[(&[&str], &str, bool)] = &[
        (&["**", "!util/docker/web"], "util/docker/web/foo", false),
        (
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo",
            true,
        ),
        (
            &[
                "**",
                "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            ],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
        (
            &["**", "!dist/*.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
    ];

    /// `matchTests` (Go's filepath.Match vectors), via `Matches`: (pattern, path,
    /// excluded, the pattern is refused).
    const PATTERNMATCHER_FILEPATH_MATCH: &[(&str, &str, bool, bool)] = &[
        ("abc", "abc", true, false),
        ("*", "abc", true, false),
        ("*c", "abc", true, false),
        ("a*", "a", true, false),
        ("a*", "abc", true, false),
        ("a*", "ab/c", true, false),
        ("a*/b", "abc/b", true, false),
        ("a*/b", "a/c/b", false, false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true, false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true, false),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false, false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false, false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true, false),
        ("a*b?c*x", "abxbbxdbxebxczzy", false, false),
        ("ab[c]", "abc", true, false),
        ("ab[b-d]", "abc", true, false),
        ("ab[e-g]", "abc", false, false),
        ("ab[^c]", "abc", false, false),
        ("ab[^b-d]", "abc", false, false),
        ("ab[^e-g]", "abc", true, false),
        (r"a\*b", "a*b", true, false),
        (r"a\*b", "ab", false, false),
        ("a?b", "a☺b", true, false),
        ("a[^a]b", "a☺b", true, false),
        ("a???b", "a☺b", false, false),
        ("a[^a][^a][^a]b", "a☺b", false, false),
        ("[a-ζ]*", "α", true, false),
        ("*[a-ζ]", "A", false, false),
        ("a?b", "a/b", false, false),
        ("a*b", "a/b", false, false),
        (r"[\]a]", "]", true, false),
        (r"[\-]", "-", true, false),
        (r"[x\-]", "x", true, false),
        (r"[x\-]", "-", true, false),
        (r"[x\-]", "z", false, false),
        (r"[\-x]", "x", true, false),
        (r"[\-x]", "-", true, false),
        (r"[\-x]", "a", false, false),
        ("[]a]", "]", false, true),
        ("[-]", "-", false, true),
        ("[x-]", "x", false, true),
        ("[x-]", "-", false, true),
        ("[x-]", "z", false, true),
        ("[-x]", "x", false, true),
        ("[-x]", "-", false, true),
        ("[-x]", "a", false, true),
        (r"\", "a", false, true),
        ("[a-b-c]", "a", false, true),
        ("[", "a", false, true),
        ("[^", "a", false, true),
        ("[^bc", "a", false, true),
        ("a[", "a", false, true),
        ("a[", "ab", false, true),
        ("*x", "xxx", true, false),
    ];

    /// The small named tests: (patterns, path, excluded; `None`: the patterns are refused).
    const PATTERNMATCHER_NAMED: &[(&[&str], &str, Option<bool>)] = &[
        (&["*"], "fileutils.go", Some(true)),    // TestWildcardMatches
        (&["*.go"], "fileutils.go", Some(true)), // TestPatternMatches
        (&["!fileutils.go", "*.go"], "fileutils.go", Some(true)),
        (&["docs", "!docs/README.md"], "docs/README.md", Some(false)),
        (&["docs/", "!docs/README.md"], "docs/README.md", Some(false)),
        (
            &["docs/*", "!docs/README.md"],
            "docs/README.md",
            Some(false),
        ),
        (&["*.go", "!fileutils.go"], "fileutils.go", Some(false)),
        (&["*.go"], ".", Some(false)), // TestExclusionPatternMatchesWholeDirectory
        (&["!"], "fileutils.go", None), // TestSingleExclamationError
        (&[], "/any/path/there", Some(false)), // TestMatchesWithNoPatterns
        (&["["], "/any/path/there", None), // TestMatchesWithMalformedPatterns
        // TestMatchesOrParentMatchesMalformedPatternDoesNotPanicOnRepeatedCall: Go accepts
        // the pattern and fails every match; refusing it up front is the same build error.
        (&["[Local-Only]/"], "x", None),
        // TestCleanPatternsLeadingSpaceTrimmed / TrailingSpaceTrimmed.
        (
            &["docs", "  !docs/README.md"],
            "docs/README.md",
            Some(false),
        ),
        (
            &["docs", "!docs/README.md  "],
            "docs/README.md",
            Some(false),
        ),
    ];

    /// `compileTests`: the match type each pattern compiles to.
    const PATTERNMATCHER_COMPILE: &[(&str, &str)] = &[
        ("*", "regexp"),
        ("file*", "regexp"),
        ("*file", "regexp"),
        ("a*/b", "regexp"),
        ("**", "suffix"),
        ("**/**", "regexp"),
        ("dir/**", "prefix"),
        ("**/dir", "suffix"),
        ("**/dir2/*", "regexp"),
        ("**/dir2/**", "regexp"),
        ("**file", "suffix"),
        ("**/file*txt", "regexp"),
        ("**/**/*.txt", "regexp"),
        ("a[b-d]e", "regexp"),
        (".*", "regexp"),
        ("abc.def", "exact"),
        ("abc?def", "regexp"),
        ("**/foo/bar", "suffix"),
        ("a(b)c/def", "exact"),
        ("a.|)$(}+{bc", "exact"),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "exact",
        ),
    ];

    fn compiled(patterns: &[&str]) -> Result<DockerIgnore, IgnoreError> {
        DockerIgnore::from_patterns(patterns, Path::new(".dockerignore"))
    }

    #[test]
    fn patternmatcher_matches_or_parent_matches_vectors() {
        let mut wrong = Vec::new();
        for &(pattern, text, want) in PATTERNMATCHER_MATCHES {
            let di = compiled(&[pattern]).unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
            if di.matches_or_parent_matches(text) != want {
                wrong.push(format!("{pattern:?} {text:?} want {want}"));
            }
        }
        for &(patterns, text, want) in PATTERNMATCHER_MULTI {
            let di = compiled(patterns).unwrap();
            if di.matches_or_parent_matches(text) != want {
                wrong.push(format!("{patterns:?} {text:?} want {want}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn patternmatcher_filepath_match_vectors() {
        let mut wrong = Vec::new();
        for &(pattern, path, want, refused) in PATTERNMATCHER_FILEPATH_MATCH {
            match compiled(&[pattern]) {
                Err(_) if refused => {}
                Err(e) => wrong.push(format!("{pattern:?} refused: {e}")),
                Ok(_) if refused => wrong.push(format!("{pattern:?} accepted")),
                Ok(di) if di.is_excluded(path) != want => {
                    wrong.push(format!("{pattern:?} {path:?} want {want}"))
                }
                Ok(_) => {}
            }
        }
        for &(patterns, path, want) in PATTERNMATCHER_NAMED {
            match (compiled(patterns), want) {
                (Err(_), None) => {}
                (Ok(di), Some(want)) if di.is_excluded(path) == want => {}
                (got, _) => wrong.push(format!("{patterns:?} {path:?}: {got:?}, want {want:?}")),
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn patternmatcher_compile_vectors() {
        for &(pattern, want) in PATTERNMATCHER_COMPILE {
            let di = compiled(&[pattern]).unwrap();
            let kind = match di.patterns[0].matcher {
                Matcher::Exact => "exact",
                Matcher::Prefix(_) => "prefix",
                Matcher::Suffix(_) => "suffix",
                Matcher::Tokens(_) => "regexp",
            };
            assert_eq!(kind, want, "{pattern:?}");
        }
    }

    #[test]
    fn no_panics_on_odd_input() {
        for text in [
            "[",
            "\\",
            "**/",
            "*/**/",
            "!!",
            "[\\",
            "[a-\\",
            "a[]",
            "é[é-ê]",
            "**/**/**",
        ] {
            if let Ok(di) = DockerIgnore::from_patterns(&[text], Path::new("x")) {
                di.is_excluded("é/a/b");
                di.may_include_below("a");
            }
        }
    }
}
