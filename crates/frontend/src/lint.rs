//! Warnings about a Dockerfile that builds but probably not as meant, said before anything
//! is built (BuildKit's linter sets the bar): today, an argument that looks like the JSON
//! (exec) form but is not valid JSON, which Docker silently runs as a shell command — in an
//! image without a shell that command can never start.

use std::path::Path;

use crate::dockerfile::{self, Args, Dockerfile};

/// Instructions whose arguments may be in JSON form.
const JSON_CAPABLE: &[&str] = &[
    "ADD",
    "COPY",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "VOLUME",
    "HEALTHCHECK",
];

/// The warnings for the Dockerfile at `path`; none when it cannot be read or parsed (the
/// build reports that as the error it is).
pub fn check_file(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    match dockerfile::parse(&text, path) {
        Ok(df) => check(&df),
        Err(_) => Vec::new(),
    }
}

/// The warnings for a parsed Dockerfile, each naming `file:line`.
pub fn check(df: &Dockerfile) -> Vec<String> {
    let mut out = Vec::new();
    for ins in &df.instructions {
        if !JSON_CAPABLE.contains(&ins.keyword.as_str()) {
            continue;
        }
        let Args::Shell(rest) = &ins.args else {
            continue;
        };
        // HEALTHCHECK CMD [...]: the JSON follows the type word.
        let candidate = match ins.keyword.as_str() {
            "HEALTHCHECK" => rest.split_once(char::is_whitespace).map_or("", |(_, r)| r),
            _ => rest.as_str(),
        };
        if candidate.trim_start().starts_with('[') && !is_shell_test(candidate) {
            out.push(format!(
                "{}:{}: {} {} is not valid JSON, so it runs as a shell command (`/bin/sh -c …`, \
                 which an image without a shell cannot start); write a JSON array of strings \
                 to run it directly",
                df.path.display(),
                ins.line,
                ins.keyword,
                candidate.trim()
            ));
        }
    }
    out
}

/// Whether `text` is a shell command starting with a test (`[ -e /etc/x ] && …`,
/// `[[ "$A" = b ]]`), not an attempt at the JSON form: `[` or `[[` as a word, then an operator
/// or a variable. BuildKit does not warn there either.
fn is_shell_test(text: &str) -> bool {
    let mut words = text.split_whitespace();
    matches!(words.next(), Some("[" | "[["))
        && words
            .next()
            .is_some_and(|w| w.starts_with(['-', '!', '$']) || w.starts_with("\"$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(text: &str) -> Vec<String> {
        check(&dockerfile::parse(text, Path::new("Dockerfile")).unwrap())
    }

    #[test]
    fn a_shell_test_is_not_mistaken_for_broken_json() {
        for run in [
            "RUN [ -e /etc/nsswitch.conf ] && echo yes",
            "RUN [ ! -f /x ] || exit 1",
            "RUN [ \"$DEBUG\" = 1 ] && set -x; true",
            "RUN [[ $A == b ]] && true",
        ] {
            assert_eq!(
                warnings(&format!("FROM scratch\n{run}\n")),
                Vec::<String>::new(),
                "{run}"
            );
        }
        // What looks like an exec form with a mistake is still warned of.
        for run in [
            "RUN ['/bin/app', '-x']",
            "RUN [\"/bin/app\" \"-x\"]",
            "RUN [ '/bin/app' ]",
        ] {
            assert_eq!(
                warnings(&format!("FROM scratch\n{run}\n")).len(),
                1,
                "{run}"
            );
        }
    }

    #[test]
    fn broken_json_is_named_with_its_line() {
        let w = warnings("FROM scratch\nCMD [\"/x\"\nENTRYPOINT [\"/ok\"]\n");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("Dockerfile:2: CMD [\"/x\""), "{w:?}");
        let w = warnings("FROM scratch\nHEALTHCHECK CMD [curl\n");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("Dockerfile:2: HEALTHCHECK"), "{w:?}");
    }

    #[test]
    fn valid_json_and_plain_shell_forms_are_quiet() {
        assert!(
            warnings("FROM scratch\nCMD [\"/x\", \"-y\"]\nCMD echo [x]\nLABEL a=[b\n").is_empty()
        );
    }
}
