//! What an `ADD` source names when it is not a path of the build context: an HTTP(S) URL or
//! a Git repository, told apart and read as BuildKit's Dockerfile frontend does
//! (`dockerfile2llb`'s `isGitSource`/`isHTTPSource`, `dfgitutil.ParseGitRef` over
//! `gitutil.ParseURL`), with the `--checksum` syntaxes each accepts.
//!
//! - A Git source is `http(s)://…` whose path ends in `.git`, `git://…`, `ssh://…`, or the
//!   SCP form `user@host:path`; `#ref[:subdir]` and the query parameters `ref`, `tag`,
//!   `branch`, `subdir`, `checksum`/`commit`, `keep-git-dir`, `submodules`, `mtime` and
//!   `fetch-by-commit` are read from it (another parameter is an error, as in BuildKit).
//! - Any other `http://`/`https://` source is a URL whose bytes are downloaded.
//! - Everything else (including `github.com/x/y`, which BuildKit reads as a local path in
//!   ADD) is a context path.
//!
//! Pure: nothing is fetched here (that is `regbuild::builder::add_remote`).

use std::collections::BTreeMap;

/// What one ADD source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path of the build context.
    Local,
    /// An HTTP(S) URL, downloaded.
    Http,
    /// A Git repository.
    Git(GitRef),
}

/// A Git source, as BuildKit's `dfgitutil.GitRef` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitRef {
    /// The URL handed to `git` (no fragment, no query).
    pub remote: String,
    /// A branch, tag, full ref or commit; empty: the remote's default branch.
    pub git_ref: String,
    /// A directory of the repository to add instead of its root (may start with `/`).
    pub subdir: String,
    /// The expected commit (or a prefix of it), from `?checksum=`/`?commit=`.
    pub checksum: Option<String>,
    /// `?keep-git-dir=`.
    pub keep_git_dir: Option<bool>,
    /// `?submodules=` (unset: submodules are fetched).
    pub submodules: Option<bool>,
    /// `?fetch-by-commit`: the checksum is trusted as the commit, no ref is resolved.
    pub fetch_by_commit: bool,
}

/// A source that is a Git URL but cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitRefError {
    #[error("query {0:?} has no value")]
    NoValue(String),
    #[error("query {0:?} has multiple values")]
    MultipleValues(String),
    #[error("unexpected query {0:?}")]
    UnexpectedQuery(String),
    #[error("invalid {name} value: {value:?}")]
    Invalid { name: String, value: String },
    #[error("{what} conflicts: {a:?} vs {b:?}")]
    Conflict {
        what: &'static str,
        a: String,
        b: String,
    },
    #[error("branch conflicts with tag")]
    BranchAndTag,
}

/// Classifies one ADD source (after variable expansion).
pub fn classify(src: &str) -> Result<Source, GitRefError> {
    if let Some(git) = parse_git_ref(src)? {
        return Ok(Source::Git(git));
    }
    if src.starts_with("http://") || src.starts_with("https://") {
        return Ok(Source::Http);
    }
    Ok(Source::Local)
}

/// `Ok(None)`: not a Git source. `Err`: a Git source whose fragment or query is wrong.
pub fn parse_git_ref(src: &str) -> Result<Option<GitRef>, GitRefError> {
    if src.starts_with("./") || src.starts_with("../") || src.starts_with("github.com/") {
        return Ok(None);
    }
    let Some(parts) = split_git_url(src) else {
        return Ok(None);
    };
    let mut git = GitRef {
        remote: parts.remote,
        ..GitRef::default()
    };
    if let Some(fragment) = parts.fragment.filter(|f| !f.is_empty()) {
        let fragment = percent_decode(&fragment);
        let (r, subdir) = fragment.split_once(':').unwrap_or((&fragment, ""));
        git.git_ref = r.to_string();
        git.subdir = clean_subdir(subdir);
    }
    if let Some(query) = parts.query {
        load_query(&mut git, &query)?;
    }
    Ok(Some(git))
}

/// A Git URL cut into what `git` is given and BuildKit's options.
struct GitUrlParts {
    remote: String,
    query: Option<String>,
    fragment: Option<String>,
}

/// Recognises `gitutil.ParseURL`'s forms: `scheme://` with a Git scheme (an HTTP(S) one only
/// when its path ends in `.git`), or the SCP-like `user@host:path`.
fn split_git_url(src: &str) -> Option<GitUrlParts> {
    let (head, fragment) = match src.split_once('#') {
        Some((h, f)) => (h, Some(f.to_string())),
        None => (src, None),
    };
    let (remote, query) = match head.split_once('?') {
        Some((r, q)) => (r, Some(q.to_string())),
        None => (head, None),
    };
    if let Some((scheme, rest)) = remote.split_once("://") {
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return scp_like(src);
        }
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "http" | "https" => {
                let path = rest.find('/').map_or("", |i| &rest[i..]);
                if !path.ends_with(".git") {
                    return None;
                }
            }
            "ssh" | "git" => {}
            _ => return None,
        }
        return Some(GitUrlParts {
            remote: remote.to_string(),
            query,
            fragment,
        });
    }
    scp_like(src)
}

/// `sshutil`'s `^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*?)(?:\?(.*?))?(?:#(.*))?$`.
fn scp_like(src: &str) -> Option<GitUrlParts> {
    let (user, rest) = src.split_once('@')?;
    let (host, rest) = rest.split_once(':')?;
    let user_ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let host_ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    if user.is_empty()
        || host.is_empty()
        || !user.bytes().all(user_ok)
        || !host.bytes().all(host_ok)
    {
        return None;
    }
    let cut = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(cut);
    let (query, fragment) = match tail.strip_prefix('?') {
        Some(q) => match q.split_once('#') {
            Some((q, f)) => (Some(q.to_string()), Some(f.to_string())),
            None => (Some(q.to_string()), None),
        },
        None => (None, tail.strip_prefix('#').map(str::to_string)),
    };
    Some(GitUrlParts {
        remote: format!("{user}@{host}:{path}"),
        query,
        fragment,
    })
}

/// `path.Join("/", subdir)` without its leading `/` (a fragment's subdir).
fn clean_subdir(subdir: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in subdir.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// BuildKit's `GitRef.loadQuery`.
fn load_query(git: &mut GitRef, query: &str) -> Result<(), GitRefError> {
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(&k.replace('+', " "));
        values
            .entry(k)
            .or_default()
            .push(percent_decode(&v.replace('+', " ")));
    }
    let (mut tag, mut branch) = (None, None);
    for (k, v) in values {
        if v.len() > 1 {
            return Err(GitRefError::MultipleValues(k));
        }
        let v = v.into_iter().next().filter(|v| !v.is_empty());
        let flag = |name: &str, v: &Option<String>| -> Result<bool, GitRefError> {
            match v.as_deref() {
                None => Ok(true),
                Some(s) => parse_bool(s).ok_or_else(|| GitRefError::Invalid {
                    name: name.to_string(),
                    value: s.to_string(),
                }),
            }
        };
        match k.as_str() {
            "submodules" => git.submodules = Some(flag("submodules", &v)?),
            "keep-git-dir" => git.keep_git_dir = Some(flag("keep-git-dir", &v)?),
            "fetch-by-commit" => git.fetch_by_commit = flag("fetch-by-commit", &v)?,
            _ => {
                let v = v.ok_or_else(|| GitRefError::NoValue(k.clone()))?;
                match k.as_str() {
                    "ref" => set_once(&mut git.git_ref, v, "ref")?,
                    "subdir" => set_once(&mut git.subdir, v, "subdir")?,
                    "tag" => tag = Some(v),
                    "branch" => branch = Some(v),
                    "checksum" | "commit" => git.checksum = Some(v),
                    "mtime" if v == "checkout" || v == "commit" => {}
                    "mtime" => {
                        return Err(GitRefError::Invalid {
                            name: "mtime".into(),
                            value: v,
                        })
                    }
                    _ => return Err(GitRefError::UnexpectedQuery(k)),
                }
            }
        }
    }
    if tag.is_some() && branch.is_some() {
        return Err(GitRefError::BranchAndTag);
    }
    if let Some(t) = tag {
        set_once(&mut git.git_ref, prefixed("refs/tags/", t), "ref")?;
    }
    if let Some(b) = branch {
        set_once(&mut git.git_ref, prefixed("refs/heads/", b), "ref")?;
    }
    Ok(())
}

fn prefixed(prefix: &str, name: String) -> String {
    if name.starts_with(prefix) {
        name
    } else {
        format!("{prefix}{name}")
    }
}

fn set_once(slot: &mut String, value: String, what: &'static str) -> Result<(), GitRefError> {
    if !slot.is_empty() && *slot != value {
        return Err(GitRefError::Conflict {
            what,
            a: slot.clone(),
            b: value,
        });
    }
    *slot = value;
    Ok(())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `%XX` escapes decoded (an invalid escape is kept as written).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name a downloaded file gets in the image when the destination is a directory, as
/// the Dockerfile frontend names it: the last component of the URL's path (`__unnamed__`
/// when there is none), made safe as BuildKit's `pathutil.SafeFileName` makes it
/// (`download` for `..` or a name with control characters). The server's
/// `Content-Disposition` is not used: the frontend always sets the name.
pub fn url_file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let path = percent_decode(path);
    let trimmed = path.trim_end_matches('/');
    // Go's `path.Base`.
    let base = if path.is_empty() {
        "."
    } else if trimmed.is_empty() {
        "/"
    } else {
        trimmed.rsplit('/').next().unwrap_or(".")
    };
    let name = if base == "." || base == "/" {
        "__unnamed__"
    } else {
        base
    };
    let name = name.trim();
    if name.is_empty() || name == "." || name == ".." || name.chars().any(char::is_control) {
        "download".to_string()
    } else {
        name.to_string()
    }
}

/// Why an `ADD --checksum` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("checksum can't be specified for multiple sources")]
    MultipleSources,
    #[error("checksum requires HTTP(S) or Git sources")]
    NotRemote,
    #[error("--checksum={0}: expected sha256:<64 hex digits> for an HTTP source (SHA-256 is the only algorithm supported)")]
    NotSha256(String),
    #[error("invalid checksum {0} for Git URL, expected hex commit hash")]
    NotCommit(String),
    #[error("checksum mismatch {0:?} != {1:?}")]
    Mismatch(String, String),
    #[error("inconsistent keep-git-dir configuration")]
    KeepGitDir,
}

/// The 64 hex digits of an HTTP `--checksum=sha256:<hex>`.
pub fn http_checksum(checksum: &str) -> Result<String, ChecksumError> {
    checksum
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .map(str::to_string)
        .ok_or_else(|| ChecksumError::NotSha256(checksum.to_string()))
}

/// Checks `ADD`'s sources against `--checksum` and `--keep-git-dir` as `dispatchCopy` does.
pub fn check_add(
    sources: &[String],
    checksum: Option<&str>,
    keep_git_dir: Option<bool>,
) -> Result<(), ChecksumError> {
    for s in sources {
        if let Ok(Source::Git(g)) = classify(s) {
            if let (Some(a), Some(b)) = (keep_git_dir, g.keep_git_dir) {
                if a != b {
                    return Err(ChecksumError::KeepGitDir);
                }
            }
            if let Some(c) = g.checksum.as_deref() {
                git_checksum(c)?;
            }
        }
    }
    let Some(checksum) = checksum else {
        return Ok(());
    };
    if sources.len() != 1 {
        return Err(ChecksumError::MultipleSources);
    }
    match classify(&sources[0]) {
        Ok(Source::Http) => http_checksum(checksum).map(drop),
        Ok(Source::Git(g)) => {
            git_checksum(checksum)?;
            match g.checksum {
                Some(c) if c != checksum => Err(ChecksumError::Mismatch(checksum.into(), c)),
                _ => Ok(()),
            }
        }
        _ => Err(ChecksumError::NotRemote),
    }
}

fn git_checksum(c: &str) -> Result<(), ChecksumError> {
    if c.is_empty() || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ChecksumError::NotCommit(c.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(src: &str) -> GitRef {
        match classify(src) {
            Ok(Source::Git(g)) => g,
            other => panic!("{src}: {other:?}"),
        }
    }

    #[test]
    fn sources_are_told_apart_as_buildkit_does() {
        assert_eq!(classify("https://example.com/").unwrap(), Source::Http);
        assert_eq!(classify("https://example.com/foo").unwrap(), Source::Http);
        assert_eq!(
            classify("https://example.com/foo.git/").unwrap(),
            Source::Http
        );
        assert_eq!(
            classify("https://example.com/foo.git.bar").unwrap(),
            Source::Http
        );
        assert_eq!(
            classify("https://github.com/moby/buildkit").unwrap(),
            Source::Http
        );
        assert_eq!(classify("http://h/x.tar.gz?a=b#c").unwrap(), Source::Http);
        assert_eq!(classify("github.com/moby/buildkit").unwrap(), Source::Local);
        assert_eq!(
            classify("custom.xyz/moby/buildkit.git").unwrap(),
            Source::Local
        );
        assert_eq!(classify("./.git").unwrap(), Source::Local);
        assert_eq!(classify("file:///x.git").unwrap(), Source::Local);
        assert_eq!(classify("src/a.txt").unwrap(), Source::Local);
        assert_eq!(git("git://example.com/foo").remote, "git://example.com/foo");
        assert_eq!(
            git("https://foo:bar@github.com/moby/buildkit.git").remote,
            "https://foo:bar@github.com/moby/buildkit.git"
        );
        assert_eq!(
            git("git@github.com:moby/buildkit").remote,
            "git@github.com:moby/buildkit"
        );
        assert_eq!(
            git("ssh://git@github.com:22/moby/buildkit.git").remote,
            "ssh://git@github.com:22/moby/buildkit.git"
        );
    }

    #[test]
    fn fragments_give_the_ref_and_subdir() {
        let g = git("https://github.com/foo/bar.git#baz/qux:quux/quuz");
        assert_eq!(g.remote, "https://github.com/foo/bar.git");
        assert_eq!(
            (g.git_ref.as_str(), g.subdir.as_str()),
            ("baz/qux", "quux/quuz")
        );
        let g = git("https://github.com/docker/docker.git#:myfolder");
        assert_eq!((g.git_ref.as_str(), g.subdir.as_str()), ("", "myfolder"));
        let g = git("git@github.com:moby/buildkit.git#v1.0.0:/hack/../docs/");
        assert_eq!(g.remote, "git@github.com:moby/buildkit.git");
        assert_eq!((g.git_ref.as_str(), g.subdir.as_str()), ("v1.0.0", "docs"));
    }

    #[test]
    fn query_parameters_as_buildkit_reads_them() {
        let g = git("https://github.com/docker/docker.git?ref=v1.0.0&subdir=/subdir");
        assert_eq!(g.remote, "https://github.com/docker/docker.git");
        assert_eq!(
            (g.git_ref.as_str(), g.subdir.as_str()),
            ("v1.0.0", "/subdir")
        );
        let g = git("https://github.com/moby/buildkit.git?subdir=/subdir#v1.0.0");
        assert_eq!(
            (g.git_ref.as_str(), g.subdir.as_str()),
            ("v1.0.0", "/subdir")
        );
        assert_eq!(git("https://h/r.git?tag=v1").git_ref, "refs/tags/v1");
        assert_eq!(
            git("https://h/r.git?branch=main").git_ref,
            "refs/heads/main"
        );
        let g = git("git@h:r.git?keep-git-dir&submodules=false&checksum=abc1#v1");
        assert_eq!(g.remote, "git@h:r.git");
        assert_eq!(g.keep_git_dir, Some(true));
        assert_eq!(g.submodules, Some(false));
        assert_eq!(g.checksum.as_deref(), Some("abc1"));
        assert_eq!(g.git_ref, "v1");
        let err = |s: &str| classify(s).unwrap_err().to_string();
        assert!(err("https://h/r.git?ref=v1.0.0#v1.2.3").contains("ref conflicts"));
        assert!(err("https://h/r.git?ref=v1&tag=v2").contains("ref conflicts"));
        assert_eq!(
            err("https://h/r.git?tag=a&branch=b"),
            "branch conflicts with tag"
        );
        assert_eq!(
            err("https://h/r.git?invalid=123"),
            "unexpected query \"invalid\""
        );
        assert_eq!(err("https://h/r.git?ref="), "query \"ref\" has no value");
        assert!(err("https://h/r.git?ref=a&ref=b").contains("multiple values"));
        assert!(err("https://h/r.git?keep-git-dir=maybe").contains("invalid keep-git-dir"));
        assert!(err("https://h/r.git?mtime=x").contains("invalid mtime"));
    }

    #[test]
    fn downloaded_files_are_named_after_the_url_path() {
        assert_eq!(url_file_name("http://h/dir/f.txt"), "f.txt");
        assert_eq!(url_file_name("http://h/dir/f.txt?x=1#y"), "f.txt");
        assert_eq!(url_file_name("http://h/dir/"), "dir");
        assert_eq!(url_file_name("http://h/a%20b"), "a b");
        assert_eq!(url_file_name("http://h"), "__unnamed__");
        assert_eq!(url_file_name("http://h/"), "__unnamed__");
        assert_eq!(url_file_name("http://h/x/.."), "download");
    }

    #[test]
    fn checksums_are_checked_before_anything_runs() {
        let one = |s: &str| vec![s.to_string()];
        let hex = "a".repeat(64);
        let good = format!("sha256:{hex}");
        assert_eq!(check_add(&one("http://h/f"), Some(&good), None), Ok(()));
        assert_eq!(http_checksum(&good), Ok(hex.clone()));
        // go-digest's syntax: lowercase hex only.
        assert!(http_checksum(&format!("sha256:{}", hex.to_uppercase())).is_err());
        assert!(matches!(
            check_add(&one("http://h/f"), Some("sha512:abc"), None),
            Err(ChecksumError::NotSha256(_))
        ));
        assert_eq!(
            check_add(&one("a.txt"), Some(&good), None),
            Err(ChecksumError::NotRemote)
        );
        let two = vec!["http://h/a".to_string(), "http://h/b".to_string()];
        assert_eq!(
            check_add(&two, Some(&good), None),
            Err(ChecksumError::MultipleSources)
        );
        assert_eq!(
            check_add(&one("https://h/r.git#v1"), Some("be1f38e"), None),
            Ok(())
        );
        assert!(matches!(
            check_add(&one("https://h/r.git#v1"), Some("xyz"), None),
            Err(ChecksumError::NotCommit(_))
        ));
        assert!(matches!(
            check_add(&one("https://h/r.git?checksum=abc"), Some("abd"), None),
            Err(ChecksumError::Mismatch(..))
        ));
        assert_eq!(
            check_add(&one("https://h/r.git?keep-git-dir=false"), None, Some(true)),
            Err(ChecksumError::KeepGitDir)
        );
    }
}
