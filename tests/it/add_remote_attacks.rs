//! `ADD <URL>` and `ADD <git URL>` as an attacker who writes the Dockerfile and runs the
//! server uses them (SECURITY.md's row for them): credentials written in a URL never reach
//! a message, a log or a kept `.git` (submodules resolved against the URL included), `git` over ssh never uses the runner's keys or ssh configuration, a
//! submodule cannot read a repository of the host through `file://` or a local path, and a
//! repository's symlinks reach the layer as symlinks (never what they point to on the host)
//! while a symlinked subdirectory is refused, a `.gitmodules` update command never runs, a
//! redirect never reaches `file://` nor takes the URL's credentials to another host, and a
//! git that waits on a server dies with regbuild even when regbuild is killed with SIGKILL.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::add_remote::{git, succeeded, Served};
use crate::common::*;
use crate::run_steps::push_dockerfile;

const SECRET: &str = "s3cr3t-t0ken";

fn have_git() -> bool {
    if Command::new("git").arg("--version").output().is_err() {
        not_here("git (Debian package git) is not installed");
        return false;
    }
    true
}

/// A work tree `name` under `w` with one commit of `files`, cloned bare to `bare` and made
/// servable the "dumb" way.
fn bare_repo(w: &Path, name: &str, files: &[(&str, &str)], bare: &Path) {
    let src = w.join(name);
    git(w, &["init", "-q", name]);
    for (path, text) in files {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(&src, &["add", "."]);
    git(&src, &["commit", "-q", "-m", name]);
    git(w, &["clone", "-q", "--bare", name, bare.to_str().unwrap()]);
    git(bare, &["update-server-info"]);
}

#[test]
fn credentials_in_a_url_never_show_in_errors_or_logs() {
    let reg = Distribution::start();
    let served = Served::start();
    std::fs::write(served.path("f.txt"), "f\n").unwrap();
    let with_user = |rel: &str, userinfo: &str| format!("http://{userinfo}@{}/{rel}", served.host);
    // Downloaded: the log names the URL, without what is before its `@`.
    let df = format!(
        "FROM scratch\nADD {} /f\n",
        with_user("f.txt", &format!("user:{SECRET}"))
    );
    let ctx = context_with(&[("Dockerfile", &df)]);
    let dir = ctx.path().display().to_string();
    let tag = format!("{}/attack/creds:1", reg.host);
    let out = regbuild(&["--no-progress", "push", "-t", &tag, &dir])
        .env("REGBUILD_LOG", "info")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let logged: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ADD: downloaded"))
        .collect();
    assert_eq!(logged.len(), 1, "{err}");
    assert!(
        logged[0].contains("xxxxx@") && !logged[0].contains(SECRET),
        "{}",
        logged[0]
    );
    // Failed: a 404, a refused connection, a Git repository that is not there.
    for source in [
        with_user("missing", SECRET),
        format!("http://user:{SECRET}@127.0.0.1:1/x"),
        with_user("none.git", &format!("user:{SECRET}")),
        with_user("none.git", SECRET),
    ] {
        let df = format!("FROM scratch\nADD {source} /f\n");
        let out = push_dockerfile(&format!("{}/attack/creds:2", reg.host), &df, &[], &[], None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("Dockerfile:2"), "{err}");
        assert!(!err.contains(SECRET), "{source}: the secret shows:\n{err}");
    }
}

#[test]
fn git_over_ssh_never_uses_the_runners_keys_agent_or_ssh_configuration() {
    if !have_git() {
        return;
    }
    let Ok(real_ssh) = which("ssh") else {
        not_here("ssh (Debian package openssh-client) is not installed");
        return;
    };
    // An `ssh` first in PATH that records the configuration the real one would use for the
    // same options and host (`ssh -G`), then fails as an unreachable server would.
    let bin = tempfile::tempdir().unwrap();
    let record = bin.path().join("effective");
    let script = format!(
        "#!/bin/sh\nn=$#\ni=0\nfor a in \"$@\"; do i=$((i+1)); [ $i -lt $n ] && set -- \"$@\" \"$a\"; done\n\
         shift $n\nexec {real} -G \"$@\" > {record} 2>&1\n",
        real = real_ssh.display(),
        record = record.display()
    );
    let fake = bin.path().join("ssh");
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let df = "FROM scratch\nADD ssh://git@127.0.0.1:2222/r.git#main /r\n";
    let ctx = context_with(&[("Dockerfile", df)]);
    let dir = ctx.path().display().to_string();
    let out = regbuild(&["--no-progress", "push", "-t", "127.0.0.1:1/x:1", &dir])
        .env("PATH", path)
        .env("SSH_AUTH_SOCK", "/tmp/regbuild-test-agent.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let effective = std::fs::read_to_string(&record)
        .unwrap_or_else(|e| panic!("ssh was not run ({e}): {}", stderr(&out)));
    let lower = effective.to_lowercase();
    assert!(lower.contains("hostname 127.0.0.1"), "{effective}");
    assert!(
        !lower.contains("identityfile ~/.ssh") && !lower.contains("/.ssh/id_"),
        "ssh would offer the runner's keys:\n{effective}"
    );
    assert!(lower.contains("identityagent none"), "{effective}");
    assert!(lower.contains("batchmode yes"), "{effective}");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn a_submodule_cannot_read_a_repository_of_the_host() {
    if !have_git() {
        return;
    }
    let reg = Distribution::start();
    let served = Served::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // A repository of the runner, not served: what the attacker wants in the layer.
    let private = w.join("private.git");
    bare_repo(w, "private", &[("secret.txt", SECRET)], &private);
    for (i, url) in [
        format!("file://{}", private.display()),
        private.display().to_string(),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("evil{i}");
        let src = w.join(&name);
        git(w, &["init", "-q", &name]);
        git(
            &src,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                url,
                "lib",
            ],
        );
        std::fs::write(src.join("a.txt"), "a\n").unwrap();
        git(&src, &["add", "."]);
        git(&src, &["commit", "-q", "-m", "evil"]);
        let bare = served.path(&format!("{name}.git"));
        git(w, &["clone", "-q", "--bare", &name, bare.to_str().unwrap()]);
        git(&bare, &["update-server-info"]);
        let df = format!(
            "FROM scratch\nADD {} /src\n",
            served.url(&format!("{name}.git"))
        );
        let tag = format!("{}/attack/submodule:{i}", reg.host);
        let out = push_dockerfile(&tag, &df, &[], &[], None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{url}: {err}");
        assert!(
            err.contains("Dockerfile:2") && err.contains("'file' not allowed"),
            "{url}: {err}"
        );
        assert!(!err.contains(SECRET), "{err}");
    }
}

#[test]
fn symlinks_of_a_repository_stay_symlinks_and_a_symlinked_subdir_is_refused() {
    if !have_git() {
        return;
    }
    let reg = Distribution::start();
    let served = Served::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("links");
    git(w, &["init", "-q", "links"]);
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/in.txt"), "in\n").unwrap();
    for (link, target) in [
        ("passwd", "/etc/passwd"),
        ("etc", "/etc"),
        ("up", "../../../../../../../../etc"),
        ("d/rel", "in.txt"),
    ] {
        std::os::unix::fs::symlink(target, src.join(link)).unwrap();
    }
    git(&src, &["add", "."]);
    git(&src, &["commit", "-q", "-m", "links"]);
    let bare = served.path("links.git");
    git(
        w,
        &["clone", "-q", "--bare", "links", bare.to_str().unwrap()],
    );
    git(&bare, &["update-server-info"]);
    let repo = served.url("links.git");
    let tag = format!("{}/attack/links:1", reg.host);
    succeeded(push_dockerfile(
        &tag,
        &format!("FROM scratch\nADD {repo} /src\n"),
        &[],
        &[],
        None,
    ));
    let (_keep, bundle) = pull_and_unpack(&tag, &[]);
    let root = bundle.join("rootfs/src");
    for (link, target) in [
        ("passwd", "/etc/passwd"),
        ("etc", "/etc"),
        ("up", "../../../../../../../../etc"),
        ("d/rel", "in.txt"),
    ] {
        let meta = std::fs::symlink_metadata(root.join(link)).unwrap();
        assert!(meta.file_type().is_symlink(), "{link} is not a symlink");
        assert_eq!(
            std::fs::read_link(root.join(link)).unwrap(),
            Path::new(target)
        );
    }
    for subdir in ["etc", "up", "passwd", "up/shadow", "../..", "d/../../.."] {
        let df = format!("FROM scratch\nADD {repo}?subdir={subdir} /x\n");
        let out = push_dockerfile(&format!("{}/attack/links:2", reg.host), &df, &[], &[], None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{subdir}: {err}");
        assert!(err.contains("invalid subdir"), "{subdir}: {err}");
    }
}

/// The processes whose parent is `pid`, with their command names.
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces, so split after its `)`.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            found.push((child, stat[open + 1..close].to_string()));
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .is_some_and(|i| !s[i + 1..].trim_start().starts_with('Z'))
    })
}

#[test]
fn git_dies_with_regbuild_even_when_regbuild_is_killed() {
    if !have_git() {
        return;
    }
    // A git server that accepts connections and never answers: `git ls-remote` waits on
    // it forever (git has no timeout of its own; regbuild's 10 minutes is regbuild's).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().flatten().collect();
        drop(held);
    });
    let df = format!("FROM scratch\nADD git://{host}/r.git#main /r\n");
    let ctx = context_with(&[("Dockerfile", &df)]);
    let dir = ctx.path().display().to_string();
    let mut build = regbuild(&["--no-progress", "push", "-t", "127.0.0.1:1/x:1", &dir])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let git_pid = loop {
        if let Some((pid, _)) = children_of(build.id())
            .into_iter()
            .find(|(_, comm)| comm == "git")
        {
            break pid;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "regbuild started no git"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    build.kill().unwrap(); // SIGKILL
    build.wait().unwrap();
    let killed = std::time::Instant::now();
    while alive(git_pid) && killed.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let survived = alive(git_pid);
    if survived {
        // SAFETY: kill(2) of the git this test made regbuild start.
        unsafe { libc::kill(git_pid as libc::pid_t, libc::SIGKILL) };
    }
    assert!(
        !survived,
        "git {git_pid} outlived regbuild killed with SIGKILL"
    );
}

/// Every file under `root` whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(entry.path());
                }
            }
        }
    }
    found
}

#[test]
fn a_kept_git_dir_holds_no_credential_of_the_url_submodules_included() {
    if !have_git() {
        return;
    }
    let reg = Distribution::start();
    let served = Served::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    bare_repo(w, "lib", &[("l.txt", "l\n")], &served.path("lib.git"));
    // A submodule given relative to the repository: git resolves it against the URL the
    // repository was cloned from, user information included.
    let src = w.join("rel");
    git(w, &["init", "-q", "rel"]);
    git(
        &src,
        &["submodule", "add", "-q", &served.url("lib.git"), "lib"],
    );
    git(
        &src,
        &[
            "config",
            "-f",
            ".gitmodules",
            "submodule.lib.url",
            "../lib.git",
        ],
    );
    std::fs::write(src.join("a.txt"), "a\n").unwrap();
    git(&src, &["add", "."]);
    git(&src, &["commit", "-q", "-m", "rel"]);
    let bare = served.path("rel.git");
    git(w, &["clone", "-q", "--bare", "rel", bare.to_str().unwrap()]);
    git(&bare, &["update-server-info"]);
    let url = format!("http://user:{SECRET}@{}/rel.git", served.host);
    let tag = format!("{}/attack/kept:1", reg.host);
    succeeded(push_dockerfile(
        &tag,
        &format!("FROM scratch\nADD --keep-git-dir=true {url} /kept\n"),
        &[],
        &[],
        None,
    ));
    let (_keep, bundle) = pull_and_unpack(&tag, &[]);
    let root = bundle.join("rootfs/kept");
    assert_eq!(
        std::fs::read_to_string(root.join("lib/l.txt")).unwrap(),
        "l\n"
    );
    let leaked = files_containing(&root, SECRET.as_bytes());
    assert!(leaked.is_empty(), "the URL's password is in {leaked:?}");
}

/// The requests a server saw: (path, `Authorization` header).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A server that redirects `/to-file` to `file:///etc/passwd` and `/auth` to `/landing` on
/// another host name (`localhost` for `127.0.0.1`), recording the `Authorization` header
/// each request came with.
fn redirecting() -> (String, Seen) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut first, mut line, mut auth) = (String::new(), String::new(), None);
            let _ = reader.read_line(&mut first);
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        auth = Some(v.trim().to_string());
                    }
                }
                line.clear();
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock().unwrap().push((path.clone(), auth));
            let answer = match path.as_str() {
                "/to-file" => "HTTP/1.0 302 Found\r\nLocation: file:///etc/passwd\r\n\r\n".into(),
                "/auth" => format!(
                    "HTTP/1.0 302 Found\r\nLocation: http://localhost:{port}/landing\r\n\r\n"
                ),
                "/landing" => "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n".into(),
                _ => "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(),
            };
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (format!("127.0.0.1:{port}"), seen)
}

#[test]
fn redirects_never_reach_a_file_nor_carry_the_urls_credentials_to_another_host() {
    let reg = Distribution::start();
    let (host, seen) = redirecting();
    let df = format!("FROM scratch\nADD http://{host}/to-file /f\n");
    let out = push_dockerfile(
        &format!("{}/attack/redirect:1", reg.host),
        &df,
        &[],
        &[],
        None,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("302"), "{err}");

    let tag = format!("{}/attack/redirect:2", reg.host);
    let df = format!("FROM scratch\nADD http://user:{SECRET}@{host}/auth /f\n");
    succeeded(push_dockerfile(&tag, &df, &[], &[], None));
    let seen = seen.lock().unwrap().clone();
    let auth_of = |path: &str| {
        seen.iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("no request for {path}: {seen:?}"))
            .1
            .clone()
    };
    assert!(auth_of("/auth").is_some_and(|a| a.starts_with("Basic ")));
    assert_eq!(
        auth_of("/landing"),
        None,
        "credentials sent to another host"
    );
    let (_keep, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/f")).unwrap(),
        "ok\n"
    );
}

#[test]
fn a_submodule_update_command_of_the_repository_never_runs() {
    if !have_git() {
        return;
    }
    let reg = Distribution::start();
    let served = Served::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    bare_repo(w, "lib", &[("l.txt", "l\n")], &served.path("lib.git"));
    let marker = w.join("ran");
    let src = w.join("upd");
    git(w, &["init", "-q", "upd"]);
    git(
        &src,
        &["submodule", "add", "-q", &served.url("lib.git"), "lib"],
    );
    let command = format!("!touch {}", marker.display());
    git(
        &src,
        &[
            "config",
            "-f",
            ".gitmodules",
            "submodule.lib.update",
            &command,
        ],
    );
    git(&src, &["add", "."]);
    git(&src, &["commit", "-q", "-m", "upd"]);
    let bare = served.path("upd.git");
    git(w, &["clone", "-q", "--bare", "upd", bare.to_str().unwrap()]);
    git(&bare, &["update-server-info"]);
    let df = format!("FROM scratch\nADD {} /src\n", served.url("upd.git"));
    let out = push_dockerfile(
        &format!("{}/attack/update:1", reg.host),
        &df,
        &[],
        &[],
        None,
    );
    assert!(
        !marker.exists(),
        "the repository's command ran on the host: {}",
        stderr(&out)
    );
}
