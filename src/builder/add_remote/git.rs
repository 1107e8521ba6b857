//! `ADD <git URL>`: the ref resolved to a commit (`git ls-remote`, matched as BuildKit's Git
//! source matches it: a full ref, else a branch, else a tag), then that commit fetched
//! (shallow when the server can) and checked out into a directory of the build's tmp, with
//! submodules unless `submodules=false`. The `.git` directory stays only with
//! `--keep-git-dir=true` and no subdirectory (as in BuildKit), made as reproducible as git
//! allows: no reflog, no `FETCH_HEAD`, an index without stat data.
//!
//! `git` runs with a clean environment: no user or system configuration (so no credential
//! helper), no prompt, `ssh` in batch mode without the user's keys, agent or ssh
//! configuration (`SSH`), only the http, https, git and ssh transports
//! (no `file://` or `ext::` submodules), and a time limit per command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regbuild_frontend::remote::GitRef;
use regbuild_fs::disk::DiskLimit;

use super::RemoteError;

/// The longest one git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// What a Git source resolved to before anything is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The commit checked out (an annotated tag peeled).
    pub commit: String,
    /// What is fetched: a full ref (`refs/tags/v1`), `HEAD`, or the commit itself.
    pub fetch: String,
}

/// Resolves `git`'s ref (the remote's default branch when none) to a commit, and checks it
/// against `checksum` (the commit or a prefix of it; an annotated tag's own id matches too).
pub async fn resolve(
    git: &GitRef,
    checksum: Option<&str>,
    tmp: &Path,
) -> Result<Resolved, RemoteError> {
    let remote = &git.remote;
    let mismatch = |actual: &str| RemoteError::GitChecksum {
        remote: redact(remote),
        expected: checksum.unwrap_or_default().to_string(),
        actual: actual.to_string(),
    };
    if is_commit_sha(&git.git_ref) {
        if checksum.is_some_and(|c| !git.git_ref.starts_with(c)) {
            return Err(mismatch(&git.git_ref));
        }
        return Ok(Resolved {
            commit: git.git_ref.clone(),
            fetch: git.git_ref.clone(),
        });
    }
    if git.fetch_by_commit {
        let commit = checksum
            .filter(|c| is_commit_sha(c))
            .ok_or_else(|| RemoteError::FetchByCommit(redact(remote)))?;
        return Ok(Resolved {
            commit: commit.to_string(),
            fetch: commit.to_string(),
        });
    }
    let home = tempfile::tempdir_in(tmp).map_err(|source| RemoteError::Io {
        path: tmp.to_path_buf(),
        source,
    })?;
    let runner = Git {
        home: home.path(),
        remote,
        disk: DiskLimit::Free,
    };
    let wanted = if git.git_ref.is_empty() {
        match default_branch(&runner).await? {
            Some(r) => r,
            None => "HEAD".to_string(),
        }
    } else {
        git.git_ref.clone()
    };
    let peeled = format!("{wanted}^{{}}");
    let listed = runner
        .run(None, &["ls-remote", "--", remote, &wanted, &peeled])
        .await?;
    let (sha, annotated, used) = match_ref(&listed, &wanted).ok_or_else(|| RemoteError::NoRef {
        remote: redact(remote),
        git_ref: wanted.clone(),
    })?;
    if let Some(c) = checksum {
        if !sha.starts_with(c) && !annotated.as_deref().is_some_and(|a| a.starts_with(c)) {
            return Err(mismatch(&sha));
        }
    }
    Ok(Resolved {
        commit: annotated.unwrap_or(sha),
        fetch: used,
    })
}

/// `ls-remote --symref <remote> HEAD`: the branch HEAD names (None: the server does not say).
async fn default_branch(git: &Git<'_>) -> Result<Option<String>, RemoteError> {
    let out = git
        .run(None, &["ls-remote", "--symref", "--", git.remote, "HEAD"])
        .await?;
    Ok(out.lines().find_map(|l| {
        let (target, name) = l.strip_prefix("ref: ")?.split_once('\t')?;
        (name == "HEAD").then(|| target.to_string())
    }))
}

/// Picks the commit `wanted` names in `ls-remote` output as BuildKit does: the exact ref
/// (`refs/…`), else the branch, else the tag (with the commit an annotated tag points to).
/// Returns (the ref's object, the peeled commit of an annotated tag, the full ref).
fn match_ref(listed: &str, wanted: &str) -> Option<(String, Option<String>, String)> {
    let bare = wanted.strip_prefix("refs/").unwrap_or(wanted);
    let partial = format!("refs/{bare}");
    let head = format!(
        "refs/heads/{}",
        wanted.strip_prefix("refs/heads/").unwrap_or(wanted)
    );
    let tag = format!(
        "refs/tags/{}",
        wanted.strip_prefix("refs/tags/").unwrap_or(wanted)
    );
    let annotated_tag = format!("{tag}^{{}}");
    let (mut exact, mut branch, mut tagged, mut peeled) = (None, None, None, None);
    for line in listed.lines() {
        let Some((sha, name)) = line.split_once('\t') else {
            continue;
        };
        let sha = Some(sha.to_string());
        match name {
            n if n == head => branch = sha,
            n if n == tag => tagged = sha,
            // Only an object name goes on to `cat-file` and `checkout` as an argument.
            n if n == annotated_tag => peeled = sha.filter(|s| is_commit_sha(s)),
            n if n == partial || (wanted == "HEAD" && n == "HEAD") => exact = sha,
            _ => {}
        }
    }
    let picked = exact
        .map(|s| {
            (
                s,
                None,
                if wanted == "HEAD" {
                    wanted.to_string()
                } else {
                    partial.clone()
                },
            )
        })
        .or_else(|| branch.map(|s| (s, None, head.clone())))
        .or_else(|| tagged.map(|s| (s, peeled, tag.clone())))?;
    is_commit_sha(&picked.0).then_some(picked)
}

/// A full SHA-1 or SHA-256 object name.
pub fn is_commit_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// How a checkout is made.
pub struct Checkout<'a> {
    pub git: &'a GitRef,
    pub resolved: &'a Resolved,
    /// Keep `.git` (only honoured without a subdirectory).
    pub keep_git_dir: bool,
    /// What each git command may write (`DiskLimit::Free`: the free space less the reserve).
    pub disk: DiskLimit,
}

/// Fetches and checks out the commit into a new directory under `tmp`; returns the directory
/// to add (the checkout, or its subdirectory), with modes as BuildKit gives them (files 0644,
/// or 0755 when executable; directories 0755).
pub async fn checkout(c: &Checkout<'_>, tmp: &Path) -> Result<PathBuf, RemoteError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RemoteError::Io { path, source }
    };
    let home = tempfile::tempdir_in(tmp).map_err(io(tmp))?;
    let dir = tempfile::tempdir_in(tmp).map_err(io(tmp))?.keep();
    let remote = c.git.remote.as_str();
    let git = Git {
        home: home.path(),
        remote,
        disk: c.disk,
    };
    let keep = c.keep_git_dir && c.git.subdir.trim_matches('/').is_empty();
    git.run(
        Some(&dir),
        &["-c", "init.defaultBranch=master", "init", "-q"],
    )
    .await?;
    // `--`: a remote in the SCP form may start with `-` (`-t…@host:path`).
    git.run(Some(&dir), &["remote", "add", "origin", "--", remote])
        .await?;
    fetch(&git, &dir, &c.resolved.fetch).await?;
    let commit = format!("{}^{{commit}}", c.resolved.commit);
    git.run(Some(&dir), &["cat-file", "-e", &commit])
        .await
        .map_err(|_| RemoteError::RefMoved {
            remote: redact(remote),
            commit: c.resolved.commit.clone(),
        })?;
    let detached = [
        "-c",
        "advice.detachedHead=false",
        "checkout",
        "-q",
        "--detach",
    ];
    git.run(
        Some(&dir),
        &[&detached[..], &[c.resolved.commit.as_str()]].concat(),
    )
    .await?;
    let submodules = c.git.submodules != Some(false) && dir.join(".gitmodules").exists();
    if submodules {
        let update = ["submodule", "update", "--init", "--recursive"];
        shallow_if_possible(&git, &dir, &update).await?;
    }
    if keep {
        tidy_git_dir(&git, &dir, submodules).await?;
    }
    let root = subdir(&dir, &c.git.subdir, remote)?;
    tokio::task::block_in_place(|| normalize(&root, keep)).map_err(io(&root))?;
    Ok(root)
}

/// `fetch --depth=1` of one ref (or commit).
async fn fetch(git: &Git<'_>, dir: &Path, what: &str) -> Result<(), RemoteError> {
    let refspec = if what.starts_with("refs/") {
        format!("{what}:{what}")
    } else {
        what.to_string()
    };
    let fetch = ["fetch", "-q", "-u", "--no-tags", "origin", &refspec];
    shallow_if_possible(git, dir, &fetch).await
}

/// `args` with `--depth=1`, or without it from a server that cannot serve a shallow fetch
/// (the "dumb" HTTP protocol).
async fn shallow_if_possible(git: &Git<'_>, dir: &Path, args: &[&str]) -> Result<(), RemoteError> {
    let shallow = [args, &["--depth=1"]].concat();
    match git.run(Some(dir), &shallow).await {
        Err(RemoteError::Git { detail, .. }) if detail.contains("shallow") => {
            git.run(Some(dir), args).await.map(drop)
        }
        other => other.map(drop),
    }
}

/// The kept `.git` without what differs from one clone to the next: reflogs, `FETCH_HEAD`,
/// the stat data of the index (rewritten from the commit's tree; `git status` refreshes
/// it), the same in submodules' repositories, and the remote's credentials (in every
/// repository's config).
async fn tidy_git_dir(git: &Git<'_>, dir: &Path, submodules: bool) -> Result<(), RemoteError> {
    const TIDY: &str = "git reflog expire --all --expire=now && d=$(git rev-parse --git-dir) \
        && rm -f \"$d/FETCH_HEAD\" \"$d/index\" && git read-tree HEAD";
    git.run(Some(dir), &["reflog", "expire", "--all", "--expire=now"])
        .await?;
    for f in ["FETCH_HEAD", "index"] {
        let path = dir.join(".git").join(f);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RemoteError::Io { path, source: e })
            }
            _ => {}
        }
    }
    git.run(Some(dir), &["read-tree", "HEAD"]).await?;
    if submodules {
        git.run(
            Some(dir),
            &["submodule", "foreach", "-q", "--recursive", TIDY],
        )
        .await?;
    }
    let shown = redact(git.remote);
    git.run(Some(dir), &["remote", "set-url", "origin", &shown])
        .await?;
    // A submodule given relative to the repository (`../lib.git`) was resolved against the
    // URL as written, user information included, into `submodule.*.url` and the submodule's
    // own `remote.origin.url`.
    let git_dir = dir.join(".git");
    tokio::task::block_in_place(|| redact_configs(&git_dir)).map_err(|source| RemoteError::Io {
        path: git_dir,
        source,
    })
}

/// Every `config` file under `git_dir` (the repository's, `modules/*/config` of its
/// submodules) with the user information of its URLs masked ([`super::redact_urls`]).
fn redact_configs(git_dir: &Path) -> std::io::Result<()> {
    let mut stack = vec![git_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && entry.file_name() == "config" {
                let path = entry.path();
                let text = std::fs::read_to_string(&path)?;
                let shown = super::redact_urls(&text);
                if shown != text {
                    std::fs::write(&path, shown)?;
                }
            }
        }
    }
    Ok(())
}

/// The directory `subdir` of the checkout: every component a real directory (no symlink
/// out of the repository), as BuildKit checks it.
fn subdir(dir: &Path, subdir: &str, remote: &str) -> Result<PathBuf, RemoteError> {
    let mut root = dir.to_path_buf();
    for c in subdir.split('/').filter(|c| !c.is_empty() && *c != ".") {
        root.push(c);
        let is_dir = c != ".." && std::fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir());
        if !is_dir {
            return Err(RemoteError::Subdir {
                remote: redact(remote),
                subdir: subdir.to_string(),
            });
        }
    }
    Ok(root)
}

/// Files 0644 (0755 when any execute bit is set), directories 0755, as a Git checkout has
/// them in BuildKit whatever the umask; `.git` (and a submodule's `.git` link file) is
/// removed unless kept, and left as git wrote it when kept.
fn normalize(root: &Path, keep_git_dir: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set =
        |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    set(root, 0o755)?;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if entry.file_name() == ".git" {
                if keep_git_dir {
                    continue;
                }
                if kind.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            } else if kind.is_dir() {
                set(&path, 0o755)?;
                stack.push(path);
            } else if kind.is_file() {
                let exec = entry.metadata()?.permissions().mode() & 0o111 != 0;
                set(&path, if exec { 0o755 } else { 0o644 })?;
            }
        }
    }
    Ok(())
}

/// `https://user:secret@host/…` (or `https://token@host/…`) → `https://xxxxx@host/…`: what
/// messages and a kept `.git/config` show of a remote ([`super::redact_urls`]).
pub fn redact(remote: &str) -> String {
    super::redact_urls(remote)
}

/// The ssh git runs: no configuration file (`-F /dev/null`: neither the user's nor the
/// system's, so no `IdentityFile`, `ControlPath` or `ProxyCommand` of theirs), no identity
/// (ssh reads `~/.ssh/id_*` from the passwd entry's home, not `$HOME`, so without
/// `IdentityFile=/dev/null` a Dockerfile would clone with the runner's keys), no agent, no
/// prompt. Host keys are still checked against the user's `known_hosts`.
const SSH: &str = "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes \
    -o IdentityFile=/dev/null -o IdentityAgent=none -o ControlMaster=no -o ControlPath=none";

/// Starts `cmd` so that it dies with regbuild, SIGKILL of regbuild included (else a git
/// waiting on a server that never answers would outlive the build, and its 10-minute
/// bound, which regbuild keeps): `PR_SET_PDEATHSIG`. That signal follows the *thread* that
/// forked, and a tokio worker thread may end before the process does (one that ran
/// `block_in_place` can become a blocking thread and retire when idle), so every child is
/// forked by one thread that lives as long as the process ([`spawner`]).
async fn spawn_tied(mut cmd: tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    use rustix::process::{getpid, getppid, set_parent_process_death_signal, Signal};
    let parent = getpid();
    // SAFETY: only two system calls between fork and exec (async-signal-safe, no allocation).
    unsafe {
        cmd.pre_exec(move || {
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // regbuild died before the signal was armed: do not start.
            if getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: SpawnJob = Box::new(move || {
        let _runtime = handle.enter();
        let _ = tx.send(cmd.spawn());
    });
    let gone = || std::io::Error::other("the thread that starts git is gone");
    spawner().send(job).map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}

type SpawnJob = Box<dyn FnOnce() + Send>;

/// The thread [`spawn_tied`] forks from: started once, never ends.
fn spawner() -> std::sync::mpsc::Sender<SpawnJob> {
    static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<SpawnJob>>> =
        std::sync::OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
        let started = std::thread::Builder::new()
            .name("regbuild-spawn".into())
            .spawn(move || rx.into_iter().for_each(|job| job()));
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the thread that starts git");
        }
        std::sync::Mutex::new(tx)
    });
    sender.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// How much one git command may write, watched while it runs: a server can send a pack, and
/// a commit can check out to, more than the disk holds, and git has no bound of its own. The
/// free space of the build's tmp is read when the command starts and every 100 ms; past
/// `allowed` (the free space less the unpack reserve, as `regbuild_fs::disk` gives an
/// unpack) git is killed, and a command that finished past it fails too.
struct DiskWatch {
    path: PathBuf,
    start_free: u64,
    allowed: u64,
}

impl DiskWatch {
    fn start(path: &Path, limit: DiskLimit) -> std::io::Result<DiskWatch> {
        let (free, size) = free_space(path)?;
        let allowed = match limit {
            DiskLimit::Bytes(n) => n,
            DiskLimit::Free => free.saturating_sub(regbuild_fs::disk::reserve(size, free)),
        };
        Ok(DiskWatch {
            path: path.to_path_buf(),
            start_free: free,
            allowed,
        })
    }

    /// How much less is free than when the command started.
    fn used(&self) -> u64 {
        free_space(&self.path).map_or(0, |(free, _)| self.start_free.saturating_sub(free))
    }

    /// The child's output; `Err(used)` when it wrote past the budget (it is killed: dropped
    /// with `kill_on_drop`).
    async fn wait(
        &self,
        child: tokio::process::Child,
    ) -> Result<std::io::Result<std::process::Output>, u64> {
        let out = child.wait_with_output();
        tokio::pin!(out);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                done = &mut out => {
                    let used = self.used();
                    return if used > self.allowed { Err(used) } else { Ok(done) };
                }
                _ = tick.tick() => {
                    let used = self.used();
                    if used > self.allowed {
                        return Err(used);
                    }
                }
            }
        }
    }
}

/// (free bytes for an unprivileged user, size) of the filesystem of `path`.
fn free_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::statvfs(path)?;
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// Runs `git` for one remote.
struct Git<'a> {
    /// An empty home: no user configuration, no credential helper.
    home: &'a Path,
    remote: &'a str,
    /// What one command may write to the filesystem of `home` (the build's tmp).
    disk: DiskLimit,
}

impl Git<'_> {
    /// `git <hardening> args` in `dir`; its standard output.
    async fn run(&self, dir: Option<&Path>, args: &[&str]) -> Result<String, RemoteError> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.env_clear();
        // Never the user's ssh agent: a Dockerfile from a pull request would clone with the
        // runner's keys (BuildKit forwards an agent only when the build is given `--ssh`).
        for keep in [
            "PATH",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
        ] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        cmd.env("HOME", self.home)
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("GIT_SSH_COMMAND", SSH)
            .args(["-c", "protocol.allow=never"])
            .args([
                "-c",
                "protocol.http.allow=always",
                "-c",
                "protocol.https.allow=always",
            ])
            .args([
                "-c",
                "protocol.git.allow=always",
                "-c",
                "protocol.ssh.allow=always",
            ])
            .args(["-c", "core.hooksPath=/dev/null", "-c", "credential.helper="])
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        let what = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.contains('='))
            .copied()
            .unwrap_or("git")
            .to_string();
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let watch = DiskWatch::start(self.home, self.disk).map_err(|source| RemoteError::Io {
            path: self.home.to_path_buf(),
            source,
        })?;
        let run = async {
            let child = spawn_tied(cmd).await.map_err(RemoteError::GitMissing)?;
            watch
                .wait(child)
                .await
                .map_err(|used| RemoteError::GitDisk {
                    remote: redact(self.remote),
                    what: what.clone(),
                    used,
                    allowed: watch.allowed,
                })
        };
        let out = match tokio::time::timeout(GIT_TIMEOUT, run).await {
            Err(_) => {
                return Err(RemoteError::GitTimeout {
                    remote: redact(self.remote),
                    what,
                    secs: GIT_TIMEOUT.as_secs(),
                })
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Err(source))) => return Err(RemoteError::GitMissing(source)),
            Ok(Ok(Ok(out))) => out,
        };
        if !out.status.success() {
            let detail = String::from_utf8_lossy(&out.stderr);
            let detail = super::redact_urls(detail.trim());
            return Err(RemoteError::Git {
                remote: redact(self.remote),
                what,
                detail,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const C: &str = "3333333333333333333333333333333333333333";

    #[test]
    fn refs_resolve_as_buildkit_resolves_them() {
        let listed = format!(
            "{A}\trefs/heads/v1\n{B}\trefs/tags/v1\n{C}\trefs/tags/v1^{{}}\n{A}\trefs/heads/main\n"
        );
        // A branch wins over a tag of the same name.
        assert_eq!(
            match_ref(&listed, "v1"),
            Some((A.into(), None, "refs/heads/v1".into()))
        );
        // An annotated tag: its object, and the commit it points to.
        assert_eq!(
            match_ref(&listed, "refs/tags/v1"),
            Some((B.into(), Some(C.into()), "refs/tags/v1".into()))
        );
        let tags_only = format!("{B}\trefs/tags/v2\n");
        assert_eq!(
            match_ref(&tags_only, "v2"),
            Some((B.into(), None, "refs/tags/v2".into()))
        );
        assert_eq!(match_ref(&listed, "nope"), None);
        // What a server lists is never taken for an object name unless it is one.
        let hostile = format!("{B}\trefs/tags/v3\n--output=/tmp/x\trefs/tags/v3^{{}}\n");
        assert_eq!(
            match_ref(&hostile, "v3"),
            Some((B.into(), None, "refs/tags/v3".into()))
        );
        assert_eq!(
            match_ref("--upload-pack=x\trefs/heads/main\n", "main"),
            None
        );
        assert_eq!(
            match_ref(&format!("{A}\tHEAD\n"), "HEAD"),
            Some((A.into(), None, "HEAD".into()))
        );
    }

    #[test]
    fn commits_are_full_lowercase_object_names() {
        assert!(is_commit_sha(A));
        assert!(is_commit_sha(&"a".repeat(64)));
        assert!(!is_commit_sha("abc123"));
        assert!(!is_commit_sha(&A.to_uppercase().replace('1', "A")));
    }

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redact("https://user:secret@h.example/r.git"),
            "https://xxxxx@h.example/r.git"
        );
        assert_eq!(
            redact("https://tok3n@h.example/r.git"),
            "https://xxxxx@h.example/r.git"
        );
        assert_eq!(redact("ssh://git@h/r.git"), "ssh://git@h/r.git");
        assert_eq!(redact("git@h:r.git"), "git@h:r.git");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_full_commit_or_fetch_by_commit_needs_no_remote() {
        let tmp = tempfile::tempdir().unwrap();
        let git = GitRef {
            remote: "https://127.0.0.1:1/r.git".into(),
            git_ref: A.into(),
            ..GitRef::default()
        };
        let r = resolve(&git, Some("1111"), tmp.path()).await.unwrap();
        assert_eq!((r.commit.as_str(), r.fetch.as_str()), (A, A));
        let err = resolve(&git, Some("2"), tmp.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected checksum to match 2, got 1111"),
            "{err}"
        );
        let by_commit = GitRef {
            git_ref: "main".into(),
            fetch_by_commit: true,
            ..git
        };
        assert_eq!(
            resolve(&by_commit, Some(B), tmp.path())
                .await
                .unwrap()
                .commit,
            B
        );
        assert!(resolve(&by_commit, Some("22"), tmp.path()).await.is_err());
    }

    /// A static HTTP/1.0 server for the files under `root` (Git's "dumb" protocol).
    fn serve(root: PathBuf) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let (mut first, mut line) = (String::new(), String::new());
                let _ = reader.read_line(&mut first);
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/");
                let path = path
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .trim_start_matches('/');
                let head = match std::fs::read(root.join(path)) {
                    Ok(body) => {
                        let head =
                            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        let _ = conn.write_all(head.as_bytes());
                        let _ = conn.write_all(&body);
                        continue;
                    }
                    Err(_) => "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                };
                let _ = conn.write_all(head.as_bytes());
            }
        });
        format!("http://{host}/r.git")
    }

    fn git_in(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "git {args:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn what_git_writes_is_bounded_by_the_disk() {
        if std::process::Command::new("git")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "git is not installed and CI is set"
            );
            return;
        }
        let served = tempfile::tempdir().unwrap();
        let work = served.path().join("w");
        std::fs::create_dir_all(&work).unwrap();
        // 8 MiB that do not compress: the pack and the checkout hold them whole.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..8 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(work.join("noise.bin"), noise).unwrap();
        git_in(&work, &["init", "-q"]);
        git_in(&work, &["add", "."]);
        git_in(&work, &["commit", "-q", "-m", "noise"]);
        let bare = served.path().join("r.git");
        git_in(
            &work,
            &["clone", "-q", "--bare", ".", bare.to_str().unwrap()],
        );
        git_in(&bare, &["update-server-info"]);
        let remote = serve(served.path().to_path_buf());
        let tmp = tempfile::tempdir().unwrap();
        let git = GitRef {
            remote,
            git_ref: "main".into(),
            ..GitRef::default()
        };
        let resolved = resolve(&git, None, tmp.path()).await.unwrap();
        let checkout_with = |disk| Checkout {
            git: &git,
            resolved: &resolved,
            keep_git_dir: false,
            disk,
        };
        let err = checkout(&checkout_with(DiskLimit::Bytes(1 << 20)), tmp.path())
            .await
            .unwrap_err();
        assert!(matches!(err, RemoteError::GitDisk { .. }), "{err}");
        let root = checkout(&checkout_with(DiskLimit::Bytes(512 << 20)), tmp.path())
            .await
            .unwrap();
        assert_eq!(
            std::fs::metadata(root.join("noise.bin")).unwrap().len(),
            8 << 20
        );
    }
}
