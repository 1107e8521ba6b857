//! Parsing `WWW-Authenticate` challenges (RFC 7235) as registries send them.

use std::collections::BTreeMap;

/// One authentication challenge: its scheme (lower-cased) and parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// All challenges in a header value. Unparseable parts are skipped, never a panic: the caller
/// decides what a missing challenge means.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        // A scheme token, then `k=v` pairs separated by commas, until the next bare token.
        let token_end = rest
            .find(|c: char| c.is_whitespace() || c == ',')
            .unwrap_or(rest.len());
        let token = &rest[..token_end];
        rest = rest[token_end..].trim_start_matches([' ', '\t', ',']);
        if token.is_empty() || token.contains('=') {
            // Stray parameter without a scheme: skip it.
            rest = skip_param(rest);
            continue;
        }
        let mut challenge = Challenge {
            scheme: token.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        while let Some((name, value, after)) = parse_param(rest) {
            challenge.params.insert(name.to_ascii_lowercase(), value);
            rest = after.trim_start_matches([' ', '\t', ',']);
        }
        out.push(challenge);
    }
    out
}

/// `name=value` or `name="quoted \" value"` at the start of `s`.
fn parse_param(s: &str) -> Option<(String, String, &str)> {
    let eq = s.find('=')?;
    let name = &s[..eq];
    if name.is_empty() || name.contains([' ', ',', '\t', '"']) {
        return None;
    }
    let after_eq = s[eq + 1..].trim_start();
    if let Some(quoted) = after_eq.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return Some((name.to_string(), value, &quoted[i + 1..])),
                _ => value.push(c),
            }
        }
        // Unterminated quote: take the rest.
        Some((name.to_string(), value, ""))
    } else {
        let end = after_eq.find([',', ' ', '\t']).unwrap_or(after_eq.len());
        Some((
            name.to_string(),
            after_eq[..end].to_string(),
            &after_eq[end..],
        ))
    }
}

fn skip_param(s: &str) -> &str {
    match parse_param(s) {
        Some((_, _, after)) => after.trim_start_matches([' ', '\t', ',']),
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_scope_list() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("service"), Some("registry.example"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn error_param_and_escapes() {
        let c = parse_challenges(
            r#"Bearer realm="http://h/token",error="insufficient_scope",x="a\"b""#,
        );
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        assert_eq!(c[0].param("x"), Some("a\"b"));
    }

    #[test]
    fn basic_and_several_challenges() {
        let c = parse_challenges(r#"Basic realm="reg", Bearer realm="http://t/""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("http://t/"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in [
            "",
            "=",
            "Bearer realm=\"unterminated",
            ",,,",
            "Bearer ===",
            "\"\"",
        ] {
            let _ = parse_challenges(s);
        }
        assert!(parse_challenges("").is_empty());
    }
}
