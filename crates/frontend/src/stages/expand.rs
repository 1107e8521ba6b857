//! Variable substitution as the evaluator uses it: `substitute`'s expansion with the error
//! wrapped to name the file, line and word, and one byte budget for the whole build so
//! hostile input (an ARG doubled forty times) cannot exhaust memory.

use std::path::Path;

use crate::error::{DockerfileError, Loc};
use crate::substitute::{expand_heredoc, expand_word, expand_words, Variables};

/// Most bytes all substitutions of one build may produce together.
const MAX_TOTAL_EXPANSION: usize = 64 << 20;

/// Expands words and keeps the total output of a build bounded.
pub(super) struct Expander<'a> {
    path: &'a Path,
    escape: char,
    bytes: usize,
}

impl<'a> Expander<'a> {
    /// A fresh budget for one build of the file at `path`.
    pub(super) fn new(path: &'a Path, escape: char) -> Self {
        Expander {
            path,
            escape,
            bytes: 0,
        }
    }

    /// Expand one word with `vars`, counting the bytes produced.
    pub(super) fn word(
        &mut self,
        word: &str,
        vars: &dyn Variables,
        line: usize,
    ) -> Result<String, DockerfileError> {
        let out = expand_word(word, self.escape, vars).map_err(|e| e.at(self.path, line, word))?;
        self.count(out.len(), line)?;
        Ok(out)
    }

    /// Like [`Expander::word`], then split into words.
    pub(super) fn words(
        &mut self,
        word: &str,
        vars: &dyn Variables,
        line: usize,
    ) -> Result<Vec<String>, DockerfileError> {
        let out = expand_words(word, self.escape, vars).map_err(|e| e.at(self.path, line, word))?;
        self.count(out.iter().map(String::len).sum(), line)?;
        Ok(out)
    }

    /// Expand a heredoc body (quotes kept), counting the bytes produced.
    pub(super) fn heredoc(
        &mut self,
        body: &str,
        vars: &dyn Variables,
        line: usize,
    ) -> Result<String, DockerfileError> {
        let out = expand_heredoc(body, vars).map_err(|e| e.at(self.path, line, body))?;
        self.count(out.len(), line)?;
        Ok(out)
    }

    /// `None` stays `None`; an empty result becomes `None`.
    pub(super) fn optional(
        &mut self,
        word: &Option<String>,
        vars: &dyn Variables,
        line: usize,
    ) -> Result<Option<String>, DockerfileError> {
        match word {
            Some(w) => Ok(Some(self.word(w, vars, line)?).filter(|v| !v.is_empty())),
            None => Ok(None),
        }
    }

    fn count(&mut self, bytes: usize, line: usize) -> Result<(), DockerfileError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > MAX_TOTAL_EXPANSION {
            let loc = Loc {
                path: self.path,
                line,
            };
            return Err(loc.syntax(format!(
                "variable expansion produces more than {MAX_TOTAL_EXPANSION} bytes in total"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::stages::test_support::*;
    use crate::stages::StepKind;

    #[test]
    fn substitution_forms() {
        let b = eval(concat!(
            "FROM scratch\n",
            "ENV A=a EMPTY=\n",
            "ENV R1=$A R2=${A} R3=${NOPE:-d} R4=${A:+x} R5=${NOPE:+x} R6=\\$A R7=${EMPTY-d} R8=${EMPTY:-d}\n",
            "LABEL \"quoted key\"='$A' dq=\"$A\"\n",
        ));
        assert_eq!(
            kinds(&b)[1],
            StepKind::Env(pairs(&[
                ("R1", "a"),
                ("R2", "a"),
                ("R3", "d"),
                ("R4", "x"),
                ("R5", ""),
                ("R6", "$A"),
                ("R7", ""),
                ("R8", "d"),
            ]))
        );
        assert_eq!(
            kinds(&b)[2],
            StepKind::Label(pairs(&[("quoted key", "$A"), ("dq", "a")]))
        );
    }

    #[test]
    fn substitution_errors_have_lines() {
        assert_eq!(
            eval_err("FROM scratch\n\nENV A=${B\n"),
            "Dockerfile.test:3: cannot expand \"${B\": syntax error: missing '}'"
        );
        assert_eq!(
            eval_err("ARG V\nFROM alpine:${V:?required}\n"),
            "Dockerfile.test:2: cannot expand \"alpine:${V:?required}\": V: required"
        );
    }

    #[test]
    fn backtick_escape_in_substitution() {
        let b = eval("# escape=`\nFROM scratch\nENV A=x B=`$A C=c:\\$A\n");
        assert_eq!(
            kinds(&b)[0],
            StepKind::Env(pairs(&[("A", "x"), ("B", "$A"), ("C", "c:\\")]))
        );
    }
}
