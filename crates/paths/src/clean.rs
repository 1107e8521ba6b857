//! Lexical path cleaning, as Go's `path.Clean` (and `filepath.Clean` on Unix) does it:
//! the one rule `.dockerignore` patterns, `COPY --parents` patterns, `WORKDIR` and `RUN
//! --mount` targets are cleaned by.
//!
//! Not here: anything that looks at the file system (symbolic links are not followed:
//! `a/link/..` is `a`).

/// Go's `path.Clean`: `.` and `..` resolved lexically, `//` and a trailing `/` removed,
/// `..` stopping at the root of a rooted path; `.` for an empty result.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::clean_path;

    #[test]
    fn clean_path_like_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("a/b/", "a/b"),
            ("a/..", "."),
            ("/../a", "/a"),
            ("/../x", "/x"),
            ("a/../..", ".."),
            ("../x/../..", "../.."),
            ("../../x", "../../x"),
            ("//a//b/./c/..", "/a/b"),
            ("/a//b/./c/..", "/a/b"),
        ] {
            assert_eq!(clean_path(input), want, "{input}");
        }
    }
}
