//! `ADD` of URLs and Git repositories end to end, against a small HTTP server on loopback
//! (files, and a Git repository served the "dumb" way: static files after
//! `git update-server-info`) and the real registry: files land with BuildKit's names and
//! modes, `--checksum` is checked (and pins the cache: no download on a hit), `--unpack`
//! unpacks a downloaded archive, a Git ref (tag, subdirectory, kept `.git`) is checked out,
//! and the same Dockerfile pushed twice gives the same image.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::common::*;
use crate::run_steps::push_dockerfile;

/// A static HTTP/1.0 server for the files of a directory, counting the requests per path
/// (query left out). Stops with the test process.
pub(crate) struct Served {
    root: tempfile::TempDir,
    pub(crate) host: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Served {
    pub(crate) fn start() -> Served {
        let root = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let (dir, counts) = (root.path().to_path_buf(), hits.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (dir, counts) = (dir.clone(), counts.clone());
                std::thread::spawn(move || serve_one(conn, &dir, &counts));
            }
        });
        Served { root, host, hits }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub(crate) fn url(&self, rel: &str) -> String {
        format!("http://{}/{rel}", self.host)
    }

    /// Requests for paths starting with `prefix`.
    pub(crate) fn hits(&self, prefix: &str) -> usize {
        let hits = self.hits.lock().unwrap();
        hits.iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }
}

fn serve_one(mut conn: std::net::TcpStream, dir: &Path, counts: &Mutex<HashMap<String, usize>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).map_or(true, |n| n == 0) || header.trim().is_empty() {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_string();
    *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
    let file = dir.join(path.trim_start_matches('/'));
    let (status, body) = match std::fs::read(&file) {
        Ok(b) if file.is_file() && !path.contains("..") => ("200 OK", b),
        _ => ("404 Not Found", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    if !line.starts_with("HEAD ") {
        let _ = conn.write_all(&body);
    }
    let _ = conn.flush();
    let mut rest = Vec::new();
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = reader.read_to_end(&mut rest);
}

/// A tar holding `dir/x.txt` (mode 0640): ASCII only, so it can be a context file's text.
fn local_tar() -> String {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("dir/x.txt").unwrap();
    h.set_size(4);
    h.set_mode(0o640);
    h.set_cksum();
    tar.append(&h, &b"tar\n"[..]).unwrap();
    String::from_utf8(tar.into_inner().unwrap()).unwrap()
}

/// [`local_tar`], gzipped.
fn tar_gz() -> Vec<u8> {
    let tar = local_tar().into_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with `a.txt`, an executable `sub/s.sh`, `sub/deep/n.txt` and the submodule
/// `lib` (`lib.git`, with `l.txt`), tagged `v1` (then a second commit on `main`), served at
/// `repo.git`; returns v1's commit.
fn served_repo(served: &Served) -> String {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q", "lib"]);
    std::fs::write(w.join("lib/l.txt"), "l\n").unwrap();
    git(&w.join("lib"), &["add", "."]);
    git(&w.join("lib"), &["commit", "-q", "-m", "lib"]);
    let lib = served.path("lib.git");
    git(w, &["clone", "-q", "--bare", "lib", lib.to_str().unwrap()]);
    git(&lib, &["update-server-info"]);
    git(w, &["init", "-q", "src"]);
    let src = w.join("src");
    git(
        &src,
        &["submodule", "add", "-q", &served.url("lib.git"), "lib"],
    );
    std::fs::write(src.join("a.txt"), "a\n").unwrap();
    std::fs::create_dir_all(src.join("sub/deep")).unwrap();
    std::fs::write(src.join("sub/s.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join("sub/s.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(src.join("sub/deep/n.txt"), "n\n").unwrap();
    git(&src, &["add", "."]);
    git(&src, &["commit", "-q", "-m", "one"]);
    git(&src, &["tag", "v1"]);
    let v1 = git(&src, &["rev-parse", "HEAD"]);
    std::fs::write(src.join("a.txt"), "changed\n").unwrap();
    git(&src, &["commit", "-q", "-am", "two"]);
    let bare = served.path("repo.git");
    git(w, &["clone", "-q", "--bare", "src", bare.to_str().unwrap()]);
    git(&bare, &["update-server-info"]);
    v1
}

fn mode(root: &Path, path: &str) -> u32 {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::symlink_metadata(&p)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

pub(crate) fn succeeded(out: std::process::Output) {
    assert!(
        out.status.success(),
        "regbuild failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn urls_are_downloaded_with_buildkits_names_and_modes_and_unpacked_only_when_asked() {
    let reg = Distribution::start();
    let served = Served::start();
    std::fs::create_dir_all(served.path("files")).unwrap();
    std::fs::write(served.path("files/f.txt"), "hello\n").unwrap();
    std::fs::write(served.path("files/a.tgz"), tar_gz()).unwrap();
    let df = format!(
        "FROM scratch\n\
         ADD {f} /f.txt\n\
         ADD {f} /dir/\n\
         ADD --chmod=0644 --chown=7:8 {f} /owned\n\
         ADD {a} /archive/\n\
         ADD --unpack=true {a} /unpacked/\n\
         ADD --unpack=false local.tar /local/\n\
         ADD local.tar /local-unpacked/\n\
         ADD local.txt {f} /mixed\n",
        f = served.url("files/f.txt"),
        a = served.url("files/a.tgz"),
    );
    let tag = format!("{}/add/url:1", reg.host);
    let files = [
        ("local.tar", local_tar()),
        ("local.txt", "local\n".to_string()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    succeeded(push_dockerfile(&tag, &df, &files, &[], None));
    let (_keep, bundle) = pull_and_unpack(&tag, &[]);
    let root = bundle.join("rootfs");
    assert_eq!(read(&root, "/f.txt"), "hello\n");
    assert_eq!(mode(&root, "/f.txt"), 0o600);
    assert_eq!(read(&root, "/dir/f.txt"), "hello\n");
    assert_eq!(mode(&root, "/dir/f.txt"), 0o600);
    assert_eq!(mode(&root, "/owned"), 0o644);
    // The owners as the layer records them (umoci keeps them on disk only as root).
    let owned = crate::common::layers::pushed_layers(&tag)
        .into_iter()
        .rev()
        .find_map(|layer| layer.get("owned").cloned())
        .expect("a layer holds /owned");
    assert_eq!((owned.uid, owned.gid), (7, 8));
    if is_root() {
        let meta = std::fs::metadata(root.join("owned")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (7, 8));
    }
    // Not unpacked by default: the archive is a file, named after the URL.
    assert_eq!(
        std::fs::read(root.join("archive/a.tgz")).unwrap(),
        tar_gz(),
        "a URL's archive is added as a file"
    );
    assert_eq!(read(&root, "/unpacked/dir/x.txt"), "tar\n");
    assert_eq!(mode(&root, "/unpacked/dir/x.txt"), 0o640);
    assert!(!root.join("unpacked/a.tgz").exists());
    // A local archive is unpacked unless --unpack=false.
    assert_eq!(read(&root, "/local/local.tar"), local_tar());
    assert_eq!(read(&root, "/local-unpacked/dir/x.txt"), "tar\n");
    // Several sources, local and remote: into the destination as a directory.
    assert_eq!(read(&root, "/mixed/local.txt"), "local\n");
    assert_eq!(read(&root, "/mixed/f.txt"), "hello\n");
}

#[test]
fn a_checksum_pins_the_layer_and_a_cache_hit_downloads_nothing() {
    let reg = Distribution::start();
    let served = Served::start();
    let body = b"pinned bytes\n";
    std::fs::write(served.path("pinned.bin"), body).unwrap();
    std::fs::write(served.path("free.txt"), "free\n").unwrap();
    let df = format!(
        "FROM scratch\n\
         ADD {free} /free.txt\n\
         ADD --checksum={sum} {pinned} /opt/\n",
        free = served.url("free.txt"),
        pinned = served.url("pinned.bin"),
        sum = sha256(body),
    );
    let cache = tempfile::tempdir().unwrap();
    let first = format!("{}/add/pinned:1", reg.host);
    let second = format!("{}/add/pinned:2", reg.host);
    succeeded(push_dockerfile(&first, &df, &[], &[], Some(cache.path())));
    assert_eq!(served.hits("/pinned.bin"), 1);
    assert_eq!(served.hits("/free.txt"), 1);
    succeeded(push_dockerfile(&second, &df, &[], &[], Some(cache.path())));
    assert_eq!(
        served.hits("/pinned.bin"),
        1,
        "with --checksum, a cached layer is not downloaded again"
    );
    assert_eq!(
        served.hits("/free.txt"),
        2,
        "without a checksum, the URL is fetched on every build"
    );
    assert_eq!(skopeo_digest(&first, &[]), skopeo_digest(&second, &[]));
    let (_keep, bundle) = pull_and_unpack(&second, &[]);
    assert_eq!(
        read(&bundle.join("rootfs"), "/opt/pinned.bin"),
        "pinned bytes\n"
    );
}

#[test]
fn a_wrong_checksum_fails_the_step_naming_both_digests() {
    let reg = Distribution::start();
    let served = Served::start();
    std::fs::write(served.path("f.txt"), "actual\n").unwrap();
    let wrong = sha256(b"expected\n");
    let df = format!(
        "FROM scratch\n\nADD --checksum={wrong} {} /f\n",
        served.url("f.txt")
    );
    let out = push_dockerfile(&format!("{}/add/bad:1", reg.host), &df, &[], &[], None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains(&served.url("f.txt")), "{err}");
    assert!(err.contains(&wrong), "{err}");
    assert!(err.contains(&sha256(b"actual\n")), "{err}");
}

#[test]
fn remote_sources_are_refused_before_anything_runs_when_they_cannot_work() {
    let served = Served::start();
    for (df, says) in [
        (
            format!(
                "FROM scratch\nADD --checksum=sha256:abc {} /f\n",
                served.url("f")
            ),
            "Dockerfile:2: --checksum=sha256:abc: expected sha256:<64 hex digits>",
        ),
        (
            format!("FROM scratch\nCOPY {} /f\n", served.url("f")),
            "Dockerfile:2: source can't be a URL for COPY",
        ),
        (
            format!("FROM scratch\nADD {}?nope=1 /r\n", served.url("r.git")),
            "unexpected query \"nope\"",
        ),
    ] {
        let out = push_dockerfile("127.0.0.1:1/x:1", &df, &[], &[], None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    assert_eq!(served.hits("/"), 0);
}

#[test]
fn an_unreachable_url_fails_naming_the_line_and_the_url() {
    let reg = Distribution::start();
    let df = "FROM scratch\nADD http://127.0.0.1:1/x.tgz /x\n";
    let out = push_dockerfile(
        &format!("{}/add/unreachable:1", reg.host),
        df,
        &[],
        &[],
        None,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dockerfile:2") && err.contains("http://127.0.0.1:1/x.tgz"),
        "{err}"
    );
}

#[test]
fn git_refs_are_checked_out_with_subdirectories_and_the_git_dir_only_when_kept() {
    if !needs_tool("git", "git") {
        return;
    }
    let reg = Distribution::start();
    let served = Served::start();
    let v1 = served_repo(&served);
    let repo = served.url("repo.git");
    let df = format!(
        "FROM scratch\n\
         ADD {repo}#v1 /src\n\
         ADD {repo}#v1:sub /sub\n\
         ADD {repo}?ref=v1&subdir=sub/deep /q/\n\
         ADD --checksum={short} {repo}#v1 /pinned\n\
         ADD {repo} /main\n\
         ADD {repo}?submodules=false#v1 /nosub\n\
         ADD --keep-git-dir=true {repo}#v1 /kept\n",
        short = &v1[..10],
    );
    let cache = tempfile::tempdir().unwrap();
    let first = format!("{}/add/git:1", reg.host);
    succeeded(push_dockerfile(&first, &df, &[], &[], Some(cache.path())));
    let (_keep, bundle) = pull_and_unpack(&first, &[]);
    let root = bundle.join("rootfs");
    assert_eq!(read(&root, "/src/a.txt"), "a\n");
    assert_eq!(mode(&root, "/src/a.txt"), 0o644);
    assert_eq!(mode(&root, "/src/sub/s.sh"), 0o755);
    assert_eq!(mode(&root, "/src/sub/deep"), 0o755);
    assert!(!root.join("src/.git").exists(), "no .git unless kept");
    assert_eq!(read(&root, "/sub/s.sh"), "#!/bin/sh\n");
    assert!(!root.join("sub/a.txt").exists());
    assert_eq!(read(&root, "/q/n.txt"), "n\n");
    assert_eq!(read(&root, "/pinned/a.txt"), "a\n");
    assert_eq!(
        read(&root, "/main/a.txt"),
        "changed\n",
        "the default branch"
    );
    assert_eq!(
        read(&root, "/src/lib/l.txt"),
        "l\n",
        "submodules are checked out"
    );
    assert!(!root.join("src/lib/.git").exists());
    assert!(root.join("nosub/lib").is_dir() && !root.join("nosub/lib/l.txt").exists());
    assert_eq!(read(&root, "/kept/a.txt"), "a\n");
    assert_eq!(read(&root, "/kept/lib/l.txt"), "l\n");
    assert!(root.join("kept/.git/HEAD").is_file(), ".git kept");
    let kept_head = git(&root.join("kept"), &["rev-parse", "HEAD"]);
    assert_eq!(kept_head, v1);
    assert_eq!(git(&root.join("kept"), &["status", "--porcelain"]), "");

    // Again with the same cache: the same image; Git sources are only resolved (ls-remote),
    // except the one with a kept .git, which is cloned again (keyed by its content).
    let objects_before = served.hits("/repo.git/objects/");
    let second = format!("{}/add/git:2", reg.host);
    succeeded(push_dockerfile(&second, &df, &[], &[], Some(cache.path())));
    assert_eq!(skopeo_digest(&first, &[]), skopeo_digest(&second, &[]));
    let objects_after = served.hits("/repo.git/objects/");
    assert!(
        objects_after > objects_before,
        "the kept .git is cloned again"
    );
    let pinned_only = format!("FROM scratch\nADD {repo}#v1 /src\nADD {repo}#v1:sub /sub\n");
    let third = format!("{}/add/git:3", reg.host);
    succeeded(push_dockerfile(
        &third,
        &pinned_only,
        &[],
        &[],
        Some(cache.path()),
    ));
    assert_eq!(
        served.hits("/repo.git/objects/"),
        objects_after,
        "a cached commit is not fetched again"
    );

    let wrong = format!("FROM scratch\nADD --checksum=0000000 {repo}#v1 /src\n");
    let out = push_dockerfile(&format!("{}/add/git:bad", reg.host), &wrong, &[], &[], None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dockerfile:2") && err.contains("expected checksum to match 0000000"),
        "{err}"
    );
    assert!(err.contains(&v1), "{err}");
}
