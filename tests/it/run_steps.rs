//! `RUN` end to end on a small base made here from Debian's `busybox-static`: the step runs
//! in the sandbox, its changes become one layer (whiteouts, opaque directories, hard links,
//! owners and modes), the image is pushed to the real distribution registry, pulled back
//! with skopeo, unpacked with umoci and checked; and the registry is the RUN cache.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// A base image with busybox (and its applets as symlinks), `/etc/passwd` with a user,
/// a file and a directory for the steps to delete, pushed to `host/repo:1`.
pub fn busybox_base(host: &str, repo: &str) {
    busybox_base_with(host, repo, |_| {});
}

/// [`busybox_base`] with `extra` run on its root filesystem before it is made a layer.
pub fn busybox_base_with(host: &str, repo: &str, extra: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    for d in ["bin", "etc", "tmp", "olddir/sub", "replaced", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = run(Command::new("/bin/busybox").arg("--list"));
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    std::fs::write(root.join("etc/motd"), "base motd\n").unwrap();
    std::fs::write(root.join("olddir/sub/f"), "old\n").unwrap();
    std::fs::write(root.join("replaced/keep-not"), "base\n").unwrap();
    extra(&root);
    push_rootfs(&root, host, repo, &[]);
}

/// Makes `root` the one layer of an image (umoci), with `config` (umoci config flags)
/// applied to its configuration, and pushes it to `host/repo:1` (skopeo).
pub fn push_rootfs(root: &Path, host: &str, repo: &str, config: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    let image = format!("{}:1", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(root)
        .arg("/"));
    if !config.is_empty() {
        run(Command::new("umoci")
            .args(["config", "--image", &image])
            .args(config));
    }
    skopeo_copy(
        &format!("oci:{image}"),
        &format!("docker://{host}/{repo}:1"),
        &[],
    );
}

/// Writes `dockerfile` (and `files`) into a new context and pushes it to `tag`.
pub fn push_dockerfile(
    tag: &str,
    dockerfile: &str,
    files: &[(&str, &str)],
    extra: &[&str],
    cache: Option<&Path>,
) -> std::process::Output {
    let mut all = files.to_vec();
    all.push(("Dockerfile", dockerfile));
    let ctx = context_with(&all);
    let mut args = vec!["push", "-t", tag];
    args.extend_from_slice(extra);
    let dir = ctx.path().display().to_string();
    args.push(&dir);
    let mut cmd = regbuild(&args);
    if let Some(c) = cache {
        cmd.env("REGBUILD_CACHE", c);
    }
    cmd.output().unwrap()
}

/// Pushes `dockerfile` to `tag` (it must succeed), pulls the image back and unpacks it;
/// returns the directory to keep alive and the image's root filesystem.
pub fn pushed_rootfs(tag: &str, dockerfile: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    ok(push_dockerfile(tag, dockerfile, &[], &[], None));
    let (keep, bundle) = pull_and_unpack(tag, &[]);
    (keep, bundle.join("rootfs"))
}

fn ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "regbuild failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

#[test]
fn run_changes_become_one_layer_with_whiteouts_and_opaque_dirs() {
    if !needs_root("chroot of the result") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN echo hello > /greeting && mkdir -p /data/sub && echo x > /data/sub/f \\\n \
           && rm /etc/motd && rm -r /olddir && rm -r /replaced && mkdir /replaced && echo new > /replaced/only \\\n \
           && ln /greeting /data/hard && ln -s ../greeting /data/soft && chmod 0750 /data/sub && chown 1000:1000 /data/sub/f\n\
         USER app\n\
         RUN id -u > /tmp/uid && echo $HOME > /tmp/home\n"
    );
    let cache = tempfile::tempdir().unwrap();
    let tag = format!("{host}/apps/run:1");
    ok(push_dockerfile(&tag, &df, &[], &[], Some(cache.path())));
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("greeting")).unwrap(),
        "hello\n"
    );
    assert!(!rootfs.join("etc/motd").exists(), "deleted file whited out");
    assert!(
        !rootfs.join("olddir").exists(),
        "deleted directory whited out"
    );
    assert!(rootfs.join("replaced/only").exists());
    assert!(
        !rootfs.join("replaced/keep-not").exists(),
        "opaque directory"
    );
    use std::os::unix::fs::MetadataExt;
    let g = std::fs::metadata(rootfs.join("greeting")).unwrap();
    let h = std::fs::metadata(rootfs.join("data/hard")).unwrap();
    assert_eq!(g.ino(), h.ino(), "hard link kept");
    assert_eq!(
        std::fs::read_link(rootfs.join("data/soft")).unwrap(),
        Path::new("../greeting")
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("data/sub")).unwrap().mode() & 0o7777,
        0o750
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("data/sub/f")).unwrap().uid(),
        1000
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("tmp/uid")).unwrap(),
        "1000\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("tmp/home")).unwrap(),
        "/home/app\n"
    );
    // What the provided mounts were never reaches the layer.
    for p in ["proc/self", "etc/resolv.conf", "etc/hostname"] {
        assert!(!rootfs.join(p).exists(), "{p} leaked into the image");
    }
    // The image runs: busybox from the base, files from the steps.
    let out = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/cat", "/greeting"]));
    assert_eq!(stdout(&out), "hello\n");
}

#[test]
fn a_fresh_runner_downloads_no_base_runs_nothing_uploads_nothing_and_gets_the_same_digest() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let df = format!(
        "FROM {host}/base/busybox:1\nCOPY a.txt /in/\nRUN cat /in/a.txt > /b.txt && echo ran >> /b.txt\nRUN echo second > /c.txt\n"
    );
    let files = [("a.txt", "input\n")];
    let tag = format!("{host}/apps/fresh:1");
    let first_cache = tempfile::tempdir().unwrap();
    let first = json(&ok(push_dockerfile(
        &tag,
        &df,
        &files,
        &["--json"],
        Some(first_cache.path()),
    )));
    let steps = first["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{first}");
    assert!(steps.iter().all(|s| s["status"] == "executed"), "{first}");
    assert!(steps[0]["layer"].as_str().unwrap().starts_with("sha256:"));

    // The local cache: nothing runs.
    let warm = json(&ok(push_dockerfile(
        &tag,
        &df,
        &files,
        &["--json"],
        Some(first_cache.path()),
    )));
    assert!(
        warm["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "cached"),
        "{warm}"
    );
    assert_eq!(warm["digest"], first["digest"]);

    // A fresh runner: an empty disk; the registry is the cache.
    let mark = reg.access_log().len();
    let fresh_cache = tempfile::tempdir().unwrap();
    let fresh = json(&ok(push_dockerfile(
        &tag,
        &df,
        &files,
        &["--json"],
        Some(fresh_cache.path()),
    )));
    let log = reg.access_log_since(mark);
    assert_eq!(fresh["digest"], first["digest"], "same image");
    assert!(
        fresh["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "cached"),
        "{fresh}"
    );
    let mut layers = layer_digests(&format!("{host}/base/busybox:1"));
    layers.extend(layer_digests(&tag));
    assert_eq!(layer_gets(&log, &layers), 0, "no layer downloaded: {log:?}");
    assert_eq!(blob_uploads(&log), 0, "nothing uploaded: {log:?}");
    for ns in ["trusted", "user"] {
        let unpacked = fresh_cache.path().join("lowers").join(ns).join("sha256");
        let any = unpacked.read_dir().is_ok_and(|mut d| d.next().is_some());
        assert!(!any, "no base layer unpacked");
    }

    // A changed input re-executes only what depends on it.
    let changed = [("a.txt", "other\n")];
    let again = json(&ok(push_dockerfile(
        &tag,
        &df,
        &changed,
        &["--json"],
        Some(first_cache.path()),
    )));
    let s = again["steps"].as_array().unwrap();
    assert_eq!(s[0]["status"], "executed", "{again}");
    assert_eq!(s[1]["status"], "executed", "its parent changed: {again}");
    assert_ne!(again["digest"], first["digest"]);
    // --no-cache re-executes.
    let nc = json(&ok(push_dockerfile(
        &tag,
        &df,
        &files,
        &["--json", "--no-cache"],
        Some(first_cache.path()),
    )));
    assert!(
        nc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "executed"),
        "{nc}"
    );
}

#[test]
fn a_failing_step_names_its_line_status_and_output_and_moves_no_tag() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let df = format!(
        "FROM {host}/base/busybox:1\nRUN echo first-line-out\n\nRUN echo about to fail >&2 && exit 3\n"
    );
    let tag = format!("{host}/apps/failing:1");
    let out = push_dockerfile(&tag, &df, &[], &[], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Dockerfile:4: RUN echo about to fail >&2 && exit 3: exit status 3"),
        "{err}"
    );
    assert!(err.contains("| about to fail"), "{err}");
    assert!(
        err.contains("[stage-0 1/2] first-line-out"),
        "output is streamed prefixed: {err}"
    );
    assert_eq!(
        http_status("GET", &host, "/v2/apps/failing/manifests/1"),
        Some(404),
        "no tag"
    );
}

#[test]
fn the_cache_key_follows_every_input_and_not_touch() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let tag = format!("{host}/apps/keys:1");
    let cache = tempfile::tempdir().unwrap();
    let status = |df: &str, extra: &[&str]| -> String {
        let v = json(&ok(push_dockerfile(
            &tag,
            df,
            &[("ctx/f", "1")],
            &[&["--json"], extra].concat(),
            Some(cache.path()),
        )));
        v["steps"][0]["status"].as_str().unwrap().to_string()
    };
    // Each push writes the context afresh (new mtimes and inodes): a `touch` of every file.
    let base = format!("FROM {host}/base/busybox:1\nCOPY ctx/f /f\n");
    let df = format!("{base}RUN echo a > /a\n");
    assert_eq!(status(&df, &[]), "executed");
    assert_eq!(status(&df, &[]), "cached");
    for (what, variant, extra) in [
        ("command", format!("{base}RUN echo b > /a\n"), vec![]),
        ("env", format!("{base}ENV X=1\nRUN echo a > /a\n"), vec![]),
        (
            "build arg",
            format!("{base}ARG V\nRUN echo a > /a\n"),
            vec!["--build-arg", "V=2"],
        ),
        (
            "user",
            format!("{base}USER app\nRUN echo a > /tmp/a\n"),
            vec![],
        ),
        (
            "workdir",
            format!("{base}WORKDIR /w\nRUN echo a > /a\n"),
            vec![],
        ),
        (
            "network",
            format!("{base}RUN echo a > /a\n"),
            vec!["--network", "none"],
        ),
        (
            "shell",
            format!("{base}SHELL [\"/bin/sh\", \"-ec\"]\nRUN echo a > /a\n"),
            vec![],
        ),
    ] {
        let extra: Vec<&str> = extra;
        assert_eq!(
            status(&variant, &extra),
            "executed",
            "{what} must change the key"
        );
        assert_eq!(
            status(&variant, &extra),
            "cached",
            "{what}: same inputs, same key"
        );
    }
}

/// Reads a build's output until the line a step printed with `marker` (`[stage …] marker`,
/// or a longer word starting with it); returns the lines read, that one last.
pub fn read_until_step_says(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    marker: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let found = line.contains(&format!("] {marker}"));
        seen.push(line);
        if found {
            break;
        }
    }
    seen
}

#[test]
fn an_interrupted_step_leaves_no_process_mount_or_temporary_directory() {
    use std::io::BufRead;
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    // A number no other process has on its command line.
    let seconds = format!("86{}", free_port());
    // The marker is printed once `sleep` has been exec'd (its comm says so), not before.
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN sleep {seconds} & while [ \"$(cat /proc/$!/comm)\" != sleep ]; do :; done; echo step-started; wait\n"
    );
    let ctx = context_with(&[("Dockerfile", &df)]);
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tag = format!("{host}/apps/interrupted:1");
    let mut child = regbuild(&["push", "-t", &tag, &ctx.path().display().to_string()])
        .env("REGBUILD_CACHE", cache.path())
        .env("TMPDIR", tmp.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let seen = read_until_step_says(&mut lines, "step-started");
    assert!(
        seen.last().is_some_and(|l| l.ends_with("step-started")),
        "{seen:?}"
    );
    assert!(
        !processes_with(&format!("sleep {seconds}")).is_empty(),
        "the step runs"
    );
    run(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        processes_with(&format!("sleep {seconds}")).is_empty(),
        "the step's processes are gone"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&cache.path().display().to_string()),
        "no mount left: {mounts}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let scratch: Vec<_> = std::fs::read_dir(cache.path().join("run-tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(scratch.is_empty(), "step scratch left: {scratch:?}");
    assert_eq!(
        http_status("GET", &host, "/v2/apps/interrupted/manifests/1"),
        Some(404)
    );
}

pub const ROOTLESS_USER: &str = "regbuild-rootless";

/// Makes the unprivileged test user (with subordinate id ranges, as useradd gives them).
pub fn rootless_user() {
    let exists = Command::new("id")
        .arg(ROOTLESS_USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        run(Command::new("useradd").args(["-m", ROOTLESS_USER]));
    }
}

/// Makes `dir` an unprivileged run's home: `cache`, `tmp` and `docker` in it, all of it the
/// test user's.
pub fn rootless_home(dir: &Path) {
    for d in ["cache", "tmp", "docker"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    run(Command::new("chown")
        .args(["-R", &format!("{ROOTLESS_USER}:")])
        .arg(dir));
}

/// Runs regbuild with `args` as the test user, with only PATH and its home under `dir`
/// (`HOME`, `REGBUILD_CACHE`, `TMPDIR`, `DOCKER_CONFIG`: see [`rootless_home`]).
pub fn as_rootless(dir: &Path, args: &[&str]) -> std::process::Output {
    rootless_command(dir, args).output().unwrap()
}

/// The command [`as_rootless`] runs.
pub fn rootless_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid",
        ROOTLESS_USER,
        "--regid",
        ROOTLESS_USER,
        "--init-groups",
        "--",
    ])
    .arg(env!("CARGO_BIN_EXE_regbuild"))
    .args(args)
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .env("HOME", dir)
    .env("REGBUILD_CACHE", dir.join("cache"))
    .env("TMPDIR", dir.join("tmp"))
    .env("DOCKER_CONFIG", dir.join("docker"))
    .stdin(std::process::Stdio::null());
    cmd
}

#[test]
fn rootless_the_same_build_runs_as_an_unprivileged_user() {
    if !needs_root("to create the unprivileged user") {
        return;
    }
    rootless_user();
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let dir = tempfile::tempdir().unwrap();
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         COPY in.txt /in.txt\n\
         RUN cat /in.txt > /out.txt && rm /etc/motd && rm -r /replaced && mkdir /replaced && echo n > /replaced/only && id -u > /uid\n\
         RUN echo second >> /out.txt\n"
    );
    for (p, c) in [
        ("ctx/Dockerfile", df.as_str()),
        ("ctx/in.txt", "from the context\n"),
    ] {
        std::fs::create_dir_all(dir.path().join(p).parent().unwrap()).unwrap();
        std::fs::write(dir.path().join(p), c).unwrap();
    }
    rootless_home(dir.path());
    let tag = format!("{host}/apps/rootless:1");
    let out = as_rootless(
        dir.path(),
        &[
            "push",
            "--json",
            "-t",
            &tag,
            &dir.path().join("ctx").display().to_string(),
        ],
    );
    let err = stderr(&out);
    if no_user_namespace(&out, ROOTLESS_USER) {
        assert!(
            err.contains("kernel.")
                || err.contains("user.max_user_namespaces")
                || err.contains("container"),
            "the error names no cause: {err}"
        );
        return;
    }
    assert!(out.status.success(), "rootless push failed: {err}");
    let v = json(&out);
    assert!(
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "executed"),
        "{v}"
    );
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("out.txt")).unwrap(),
        "from the context\nsecond\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("uid")).unwrap(),
        "0\n",
        "root inside its user namespace"
    );
    assert!(!rootfs.join("etc/motd").exists(), "whiteout");
    assert!(
        !rootfs.join("replaced/keep-not").exists(),
        "opaque directory"
    );
    assert!(rootfs.join("replaced/only").exists());
    // Owners in the layer are the image's (0), not the unprivileged user's id.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(rootfs.join("out.txt")).unwrap().uid(), 0);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let scratch: Vec<_> = std::fs::read_dir(dir.path().join("cache/run-tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(scratch.is_empty(), "step scratch left: {scratch:?}");
}

/// Every blob of an image (config and layers, decompressed) as bytes.
fn image_blobs(reference: &str) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    skopeo_copy(
        &format!("docker://{reference}"),
        &format!("oci:{}:x", layout.display()),
        &[],
    );
    let mut out = Vec::new();
    for e in std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let raw = std::fs::read(e.path()).unwrap();
        let mut plain = Vec::new();
        use std::io::Read;
        if flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut plain)
            .is_ok()
        {
            out.push(plain);
        }
        out.push(raw);
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_reach_the_step_on_a_tmpfs_and_nothing_else() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let secret = "s3cr3t-value-never-stored";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, secret).unwrap();
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-64 > /secret-sum \\\n \
           && stat -c %a /run/secrets/tok > /secret-mode && stat -f -c %T /run/secrets/tok > /secret-fs\n\
         RUN --mount=type=secret,id=api,env=API,required=true --mount=type=secret,id=tok,target=/etc/app/key \\\n \
           wc -c < /etc/app/key > /key-len && echo ${{#API}} > /api-len\n"
    );
    let tag = format!("{host}/apps/secret:1");
    let src = format!("id=tok,src={}", file.display());
    let api = "api-token-also-never-stored";
    let ctx = context_with(&[("Dockerfile", &df)]);
    let out = ok(regbuild(&[
        "push",
        "--json",
        "-v",
        "--secret",
        &src,
        "--secret",
        "id=api,env=REGBUILD_TEST_API",
        "-t",
        &tag,
        &ctx.path().display().to_string(),
    ])
    .env("REGBUILD_TEST_API", api)
    .output()
    .unwrap());
    for text in [stdout(&out), stderr(&out)] {
        assert!(
            !text.contains(secret) && !text.contains(api),
            "a secret leaked into the output: {text}"
        );
    }
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    use sha2::Digest as _;
    assert_eq!(
        std::fs::read_to_string(rootfs.join("secret-sum")).unwrap(),
        format!("{}\n", hex::encode(sha2::Sha256::digest(secret)))
    );
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap();
    assert_eq!(read("key-len").trim(), secret.len().to_string());
    assert_eq!(read("api-len").trim(), api.len().to_string());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("secret-mode")).unwrap(),
        "400\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("secret-fs")).unwrap(),
        "tmpfs\n"
    );
    assert!(
        !rootfs.join("run/secrets/tok").exists(),
        "the secret file is not in a layer"
    );
    assert!(!rootfs.join("etc/app/key").exists());
    for blob in image_blobs(&tag) {
        assert!(
            !contains(&blob, secret.as_bytes()),
            "the secret is in a blob"
        );
        assert!(
            !contains(&blob, api.as_bytes()),
            "the env secret is in a blob"
        );
    }
    // A required secret that is missing: a clear error with the line.
    let missing =
        format!("FROM {host}/base/busybox:1\nRUN --mount=type=secret,id=gone,required=true true\n");
    let out = push_dockerfile(&tag, &missing, &[], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Dockerfile:2: RUN --mount=type=secret,id=gone: no such secret"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cache_mounts_persist_between_builds_and_stay_out_of_the_image() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN --mount=type=cache,target=/var/cache/thing echo run >> /var/cache/thing/log && wc -l < /var/cache/thing/log > /runs\n"
    );
    let tag = format!("{host}/apps/cachemount:1");
    let cache = tempfile::tempdir().unwrap();
    ok(push_dockerfile(&tag, &df, &[], &[], Some(cache.path())));
    ok(push_dockerfile(
        &tag,
        &df,
        &[],
        &["--no-cache"],
        Some(cache.path()),
    ));
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("runs")).unwrap().trim(),
        "2",
        "the cache persisted"
    );
    assert!(
        !rootfs.join("var/cache/thing/log").exists(),
        "the cache is not in the layer"
    );
}

#[test]
fn bind_mounts_are_read_only_and_network_none_is_isolated() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let df = format!(
        "FROM {host}/base/busybox:1 AS files\n\
         RUN mkdir /made && echo from-stage > /made/x\n\
         FROM {host}/base/busybox:1\n\
         RUN --mount=type=bind,source=src,target=/ctx cat /ctx/f > /copied && (touch /ctx/new 2>/dev/null && echo writable || echo read-only) > /bind-mode\n\
         RUN --mount=type=bind,from=files,source=/made,target=/m cat /m/x > /from-stage\n\
         RUN --mount=type=bind,source=src,target=/ctx,rw echo changed > /ctx/f && cat /ctx/f > /rw-seen\n\
         RUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /net-none\n\
         RUN cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort > /net-default\n"
    );
    let ctx_files = [("src/f", "context file\n")];
    let tag = format!("{host}/apps/binds:1");
    let mut all = ctx_files.to_vec();
    all.push(("Dockerfile", df.as_str()));
    let ctx = context_with(&all);
    let out = ok(
        regbuild(&["push", "-t", &tag, &ctx.path().display().to_string()])
            .output()
            .unwrap(),
    );
    drop(out);
    assert_eq!(
        std::fs::read_to_string(ctx.path().join("src/f")).unwrap(),
        "context file\n",
        "rw bind writes are discarded"
    );
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let r = bundle.join("rootfs");
    let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap();
    assert_eq!(read("copied"), "context file\n");
    assert_eq!(read("bind-mode"), "read-only\n");
    assert_eq!(read("from-stage"), "from-stage\n");
    assert_eq!(read("rw-seen"), "changed\n");
    assert_eq!(read("net-none"), "lo\n", "only loopback");
    assert!(
        read("net-default").lines().count() >= 2,
        "the host's interfaces: {}",
        read("net-default")
    );
    assert!(
        !r.join("ctx").exists() && !r.join("m").exists(),
        "mount targets are not in layers"
    );
}

/// A static program that gives a file `security.capability` (cap_net_raw, effective), as
/// `setcap cap_net_raw+ep FILE` would: busybox has no setcap.
const SETCAP_C: &str = r#"
#include <sys/xattr.h>
int main(int argc, char **argv) {
    /* struct vfs_cap_data, revision 2: magic|effective, then permitted/inheritable x2 */
    unsigned char cap[20] = {0x01, 0, 0, 0x02, 0x00, 0x20, 0, 0};
    return argc == 2 && setxattr(argv[1], "security.capability", cap, sizeof cap, 0) == 0 ? 0 : 1;
}
"#;

#[test]
fn run_layers_keep_devices_and_capabilities_strip_setuid_and_never_see_credentials() {
    if !needs_root("device nodes, security.capability") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let ctx = context_with(&[("setcap.c", SETCAP_C)]);
    run(Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(ctx.path().join("setcap"))
        .arg(ctx.path().join("setcap.c")));
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         COPY setcap /usr/local/bin/setcap\n\
         RUN cp /bin/busybox /ping && setcap /ping && mkdir /devs && mknod /devs/null c 1 3 \\\n \
           && cp /bin/busybox /su && chmod 4755 /su && env > /env.txt\n"
    );
    std::fs::write(ctx.path().join("Dockerfile"), &df).unwrap();
    let docker = tempfile::tempdir().unwrap();
    std::fs::write(
        docker.path().join("config.json"),
        r#"{"auths":{"registry.example":{"auth":"dXNlcjpzZWNyZXQtY3JlZGVudGlhbA=="}}}"#,
    )
    .unwrap();
    let tag = format!("{host}/apps/devices:1");
    let out = ok(
        regbuild(&["push", "-t", &tag, &ctx.path().display().to_string()])
            .env("DOCKER_CONFIG", docker.path())
            .env("REGBUILD_TEST_TOKEN", "tok-never-visible")
            .output()
            .unwrap(),
    );
    assert!(
        stderr(&out).contains("stripped setuid/setgid bits from /su"),
        "{}",
        stderr(&out)
    );
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert_eq!(
        std::fs::metadata(rootfs.join("su")).unwrap().mode() & 0o7777,
        0o755
    );
    let dev = std::fs::symlink_metadata(rootfs.join("devs/null")).unwrap();
    assert!(dev.file_type().is_char_device(), "device node kept");
    assert_eq!(dev.rdev(), libc_makedev(1, 3));
    let layers = image_blobs(&tag);
    assert!(
        layers
            .iter()
            .any(|b| contains(b, b"SCHILY.xattr.security.capability")),
        "security.capability kept in the layer"
    );
    let env = std::fs::read_to_string(rootfs.join("env.txt")).unwrap();
    assert!(env.contains("PATH="), "{env}");
    for leaked in [
        "DOCKER_CONFIG",
        "tok-never-visible",
        "REGBUILD_TEST_TOKEN",
        "REGBUILD_CACHE",
    ] {
        assert!(!env.contains(leaked), "the step saw {leaked}: {env}");
    }
}

/// Linux's `makedev` for the small numbers used here.
fn libc_makedev(major: u64, minor: u64) -> u64 {
    (major << 8) | minor
}

#[test]
fn heredocs_run_as_scripts_and_as_shell_input() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let df = format!(
        "# syntax=docker/dockerfile:1\n\
         FROM {host}/base/busybox:1\n\
         RUN <<EOF\n\
         echo one > /h1\n\
         echo two >> /h1\n\
         EOF\n\
         RUN <<'SCRIPT'\n\
         #!/bin/sh\n\
         echo \"script $0\" > /h2\n\
         SCRIPT\n\
         RUN cat > /h3 <<EOF\n\
         inline\n\
         EOF\n"
    );
    let tag = format!("{host}/apps/heredoc-run:1");
    let out = ok(push_dockerfile(&tag, &df, &[], &["-v"], None));
    assert!(
        stderr(&out).contains("regbuild is its own Dockerfile frontend"),
        "# syntax= is said at -v: {}",
        stderr(&out)
    );
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let r = bundle.join("rootfs");
    let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap();
    assert_eq!(read("h1"), "one\ntwo\n");
    assert!(read("h2").starts_with("script /"), "{}", read("h2"));
    assert_eq!(read("h3"), "inline\n");
    assert!(
        !r.join("run/regbuild").exists(),
        "the script file is not in a layer"
    );
}

#[test]
fn cached_run_layers_are_read_where_later_steps_need_them() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    // The RUN layer holds the user and the file later steps read: a COPY --chown by name and
    // a COPY --from need its bytes, whether it ran, came from the local cache or from the
    // registry (fresh runner).
    let df = format!(
        "FROM {host}/base/busybox:1 AS tools\n\
         RUN echo builder:x:1234:1234::/home/builder:/bin/sh >> /etc/passwd && echo builder:x:1234: >> /etc/group \\\n \
           && mkdir /out && echo made > /out/x\n\
         FROM scratch AS copied\n\
         COPY --from=tools /out/x /x\n\
         FROM tools\n\
         COPY --chown=builder f.txt /home/f.txt\n\
         COPY --from=copied /x /x2\n"
    );
    let files = [("f.txt", "data\n")];
    let tag = format!("{host}/apps/cached-read:1");
    let local = tempfile::tempdir().unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for (what, cache) in [
        ("cold", local.path()),
        ("local cache", local.path()),
        ("fresh runner", fresh.path()),
    ] {
        let v = json(&ok(push_dockerfile(
            &tag,
            &df,
            &files,
            &["--json"],
            Some(cache),
        )));
        let status = v["steps"][0]["status"].as_str().unwrap().to_string();
        assert_eq!(status == "executed", what == "cold", "{what}: {v}");
        let (_d, bundle) = pull_and_unpack(&tag, &[]);
        let rootfs = bundle.join("rootfs");
        use std::os::unix::fs::MetadataExt;
        let f = std::fs::metadata(rootfs.join("home/f.txt")).unwrap();
        assert_eq!(
            f.uid(),
            1234,
            "{what}: --chown=builder from the RUN layer's /etc/passwd"
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("x2")).unwrap(),
            "made\n",
            "{what}"
        );
        digests.push(v["digest"].as_str().unwrap().to_string());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[test]
fn mounts_never_reach_host_files_or_what_dockerignore_excludes() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let outside = tempfile::tempdir().unwrap();
    let host_file = outside.path().join("host-secret");
    std::fs::write(&host_file, "host-only\n").unwrap();
    // A stage's symlink to a host path: a bind from= that stage must not follow it out.
    let df = format!(
        "FROM {host}/base/busybox:1 AS s\n\
         RUN ln -s {} /x\n\
         FROM {host}/base/busybox:1\n\
         RUN --mount=type=bind,from=s,source=x,target=/t cat /t > /leak\n",
        host_file.display()
    );
    let tag = format!("{host}/apps/escape:1");
    let out = push_dockerfile(&tag, &df, &[], &[], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("Dockerfile:4: RUN --mount=type=bind,source=x: is a symlink that leaves"),
        "{}",
        stderr(&out)
    );
    // The context's .dockerignore applies to context binds (the key too).
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN --mount=type=bind,source=.,target=/ctx ls /ctx | sort > /listing\n"
    );
    let tag = format!("{host}/apps/ignored:1");
    let files = [
        (".dockerignore", "secret.txt\n"),
        ("secret.txt", "no\n"),
        ("ok.txt", "yes\n"),
    ];
    ok(push_dockerfile(&tag, &df, &files, &[], None));
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let listing = std::fs::read_to_string(bundle.join("rootfs/listing")).unwrap();
    assert!(listing.contains("ok.txt"), "{listing}");
    assert!(
        !listing.contains("secret.txt"),
        "an ignored file reached the step: {listing}"
    );
}

#[test]
fn a_platform_this_machine_cannot_run_is_refused_before_its_step_runs() {
    let handler = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("s390x"))
        })
        .unwrap_or(false);
    if handler {
        not_here("this machine has a binfmt_misc handler for s390x");
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    let df = "FROM --platform=linux/s390x scratch AS build\n\
              COPY busybox /bin/busybox\n\
              RUN [\"/bin/busybox\", \"touch\", \"/ran\"]\n\
              FROM scratch\n\
              COPY --from=build /bin/busybox /busybox\n";
    let tag = format!("{host}/apps/foreign:1");
    let out = push_dockerfile(&tag, df, &[("busybox", "not run")], &[], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(
        err.contains("cannot execute it and no binfmt_misc handler for s390x"),
        "{err}"
    );
    assert!(!err.contains("[build 2/2]"), "the step started: {err}");
    assert_eq!(
        http_status("GET", &host, "/v2/apps/foreign/manifests/1"),
        Some(404),
        "no tag"
    );
}

#[test]
fn rootless_steps_see_the_owners_of_their_base() {
    if !needs_root("to create the unprivileged user") {
        return;
    }
    rootless_user();
    let reg = Distribution::start();
    let host = reg.host.clone();
    // The base gives `app` (1000) its home; a `USER app` step writes there.
    busybox_base_with(&host, "base/busybox-home", |root| {
        std::fs::create_dir_all(root.join("home/app")).unwrap();
        std::os::unix::fs::chown(root.join("home/app"), Some(1000), Some(1000)).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
    std::fs::write(
        dir.path().join("ctx/Dockerfile"),
        format!(
            "FROM {host}/base/busybox-home:1\n\
             USER app\n\
             RUN touch /home/app/made && stat -c %u:%g /home/app > /home/app/owner\n"
        ),
    )
    .unwrap();
    rootless_home(dir.path());
    let tag = format!("{host}/apps/rootless-home:1");
    let out = as_rootless(
        dir.path(),
        &[
            "push",
            "-t",
            &tag,
            &dir.path().join("ctx").display().to_string(),
        ],
    );
    let err = stderr(&out);
    if no_user_namespace(&out, ROOTLESS_USER) {
        return;
    }
    assert!(out.status.success(), "rootless push failed: {err}");
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::read_to_string(rootfs.join("home/app/owner")).unwrap(),
        "1000:1000\n",
        "the step saw the base's owner"
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("home/app/made"))
            .unwrap()
            .uid(),
        1000
    );
    let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
