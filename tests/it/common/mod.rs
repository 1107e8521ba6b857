//! Test harness: the real CNCF distribution registry (Debian `docker-registry`) started on
//! loopback, fixtures made by third-party tools (umoci, skopeo), and the regbuild binary.

pub mod access;
pub mod files;
pub mod image;
pub mod layers;
pub mod proxy;
pub mod push;

pub use access::*;
pub use files::*;
pub use image::*;
pub use push::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `docker-registry serve` on 127.0.0.1, killed on drop.
pub struct Distribution {
    child: Child,
    pub dir: tempfile::TempDir,
    pub host: String,
    log: PathBuf,
    sentinels: std::sync::atomic::AtomicUsize,
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub method: String,
    pub uri: String,
    pub status: u16,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Distribution {
    /// An open registry.
    pub fn start() -> Distribution {
        Self::start_inner(None)
    }

    /// A registry that wants Basic credentials (htpasswd, bcrypt by `htpasswd -B`).
    pub fn start_with_user(user: &str, password: &str) -> Distribution {
        Self::start_inner(Some((user, password)))
    }

    fn start_inner(user: Option<(&str, &str)>) -> Distribution {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        if let Some((u, p)) = user {
            let htpasswd = dir.path().join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd (apache2-utils) is installed");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(&htpasswd, out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: regbuild-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("registry.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("docker-registry (Debian package docker-registry) is installed");
        let d = Distribution {
            child,
            dir,
            host,
            log,
            sentinels: Default::default(),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_status("GET", &self.host, "/v2/").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not start on {}:\n{}",
            self.host,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Every access-log line so far. A sentinel request is made first and waited for, so
    /// every request that completed before this call is in the result.
    pub fn access_log(&self) -> Vec<Access> {
        let n = self
            .sentinels
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let sentinel = format!("/v2/sentinel-{n}/tags/list");
        http_status("GET", &self.host, &sentinel);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let entries = self.parse_log();
            if let Some(pos) = entries.iter().position(|e| e.uri == sentinel) {
                return entries[..pos]
                    .iter()
                    .filter(|e| !e.uri.contains("/sentinel-"))
                    .cloned()
                    .collect();
            }
            assert!(Instant::now() < deadline, "sentinel never logged");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Access-log lines after the first `skip` (take `access_log().len()` as a mark).
    pub fn access_log_since(&self, mark: usize) -> Vec<Access> {
        self.access_log().into_iter().skip(mark).collect()
    }

    fn parse_log(&self) -> Vec<Access> {
        let file = std::fs::File::open(&self.log).unwrap();
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| parse_access_line(&l))
            .collect()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `127.0.0.1 - - [date] "POST /v2/x/blobs/uploads/?mount=… HTTP/1.1" 201 0 "" "ua"`.
fn parse_access_line(line: &str) -> Option<Access> {
    let start = line.find("] \"")? + 3;
    let rest = &line[start..];
    let end = rest.find('"')?;
    let mut req = rest[..end].split(' ');
    let method = req.next()?.to_string();
    let uri = req.next()?.to_string();
    let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    Some(Access {
        method,
        uri,
        status,
    })
}

/// A bare HTTP/1.1 request; the status, or None when nothing answered.
pub fn http_status(method: &str, host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An OCI image layout built by umoci, one layer per `(path in image, content)`.
pub fn umoci_image(layout: &Path, tag: &str, files: &[(&str, Vec<u8>)], arch: Option<&str>) {
    if !layout.join("index.json").exists() {
        run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    }
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    if let Some(arch) = arch {
        run(Command::new("umoci").args(["config", "--image", &image, "--architecture", arch]));
    }
    for (i, (path, content)) in files.iter().enumerate() {
        let src = tempfile::tempdir().unwrap();
        let file = src.path().join(format!("f{i}"));
        std::fs::write(&file, content).unwrap();
        run(Command::new("umoci")
            .args(["insert", "--image", &image])
            .arg(&file)
            .arg(path));
    }
}

/// `skopeo copy` with TLS verification off for loopback registries.
pub fn skopeo_copy(src: &str, dst: &str, extra: &[&str]) {
    run(Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .args(extra)
        .arg(src)
        .arg(dst));
}

/// The digest `skopeo inspect` reports for a reference.
pub fn skopeo_digest(reference: &str, extra: &[&str]) -> String {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{reference}")));
    let raw = out.stdout;
    sha256(&raw)
}

/// The regbuild binary with arguments; `DOCKER_CONFIG` points at an empty dir unless given,
/// `REGBUILD_CACHE` at the calling module's layer cache ([`module_cache`]) unless given.
#[track_caller]
pub fn regbuild(args: &[&str]) -> Command {
    let cache = module_cache(std::panic::Location::caller().file());
    let mut c = Command::new(env!("CARGO_BIN_EXE_regbuild"));
    c.args(args)
        .env("DOCKER_CONFIG", empty_docker_config())
        .env("REGBUILD_CACHE", cache)
        .env_remove("REGBUILD_LOG")
        .stdin(Stdio::null());
    c
}

/// The layer cache of the test module whose source is `file` (`file!()`, or the caller's
/// location): one per module and test process, not the user's. The modules were test binaries
/// of their own, each with its own cache; they now share one process, and one cache for all
/// would let one module's layers turn another's cache misses into hits.
pub fn module_cache(file: &str) -> PathBuf {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(sweep_dead_caches);
    let module = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("common");
    std::env::temp_dir().join(format!(
        "regbuild-test-cache-{}-{module}",
        std::process::id()
    ))
}

/// Removes the module caches of test processes that are gone (a test binary has no hook at
/// exit, so each run clears what earlier runs left).
fn sweep_dead_caches() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("regbuild-test-cache-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn empty_docker_config() -> PathBuf {
    let dir = std::env::temp_dir().join("regbuild-test-empty-docker-config");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A docker config dir whose config.json holds Basic credentials for `host`.
pub fn docker_config_with(host: &str, user: &str, password: &str) -> tempfile::TempDir {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        dir.path().join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    dir
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn access_lines_parse() {
    let a = parse_access_line(
        r#"127.0.0.1 - - [22/Nov/2026:14:42:44 +0000] "POST /v2/x/blobs/uploads/?mount=sha256:aa&from=y HTTP/1.1" 202 0 "" "curl/7.88.1""#,
    )
    .unwrap();
    assert_eq!(a.method, "POST");
    assert_eq!(a.uri, "/v2/x/blobs/uploads/?mount=sha256:aa&from=y");
    assert_eq!(a.status, 202);
}

/// The repository root (where Dockerfile.test lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A build context for Dockerfile.test: the hello program compiled statically, its config.
pub fn hello_context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = repo_root().join("tests/fixtures/hello");
    run(Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.path().join("hello"))
        .arg(fixtures.join("hello.c")));
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    // The RUN stage's only program (scripts/setup.sh installs busybox-static).
    std::fs::copy("/bin/busybox", dir.path().join("busybox")).unwrap();
    std::fs::copy(
        fixtures.join("config/hello.conf"),
        dir.path().join("config/hello.conf"),
    )
    .unwrap();
    dir
}

/// Pulls `reference` with skopeo into an OCI layout and unpacks it with umoci; returns the
/// bundle directory (its `rootfs/` is the image's filesystem).
pub fn pull_and_unpack(reference: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    skopeo_copy(
        &format!("docker://{reference}"),
        &format!("oci:{}:pulled", layout.display()),
        extra,
    );
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:pulled", layout.display()))
        .arg(&bundle));
    (dir, bundle)
}

/// `skopeo inspect --config` as JSON.
pub fn skopeo_config(reference: &str) -> serde_json::Value {
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A context directory with the given files (path, content).
pub fn context_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

/// Three layers (plus a config) made by umoci and pushed by skopeo to `host/repo:tag`.
pub fn third_party_image(host: &str, repo: &str, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci_image(
        &layout,
        "v1",
        &[
            ("/etc/motd", b"hello from layer one\n".to_vec()),
            ("/app/data.bin", vec![7u8; 200_000]),
            ("/app/VERSION", b"1.2.3\n".to_vec()),
        ],
        None,
    );
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{host}/{repo}:{tag}"),
        &[],
    );
}

/// Two single-platform images by umoci, joined in an OCI index written into the layout, then
/// pushed with `skopeo copy --all`.
pub fn third_party_index(host: &str, repo: &str) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci_image(
        &layout,
        "amd",
        &[("/arch", b"amd64\n".to_vec())],
        Some("amd64"),
    );
    umoci_image(
        &layout,
        "arm",
        &[("/arch", b"arm64\n".to_vec())],
        Some("arm64"),
    );
    let index_path = layout.join("index.json");
    let mut top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let find = |top: &serde_json::Value, name: &str| -> serde_json::Value {
        top["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
            .cloned()
            .unwrap()
    };
    let mut children = Vec::new();
    for (name, arch) in [("amd", "amd64"), ("arm", "arm64")] {
        let mut d = find(&top, name);
        d.as_object_mut().unwrap().remove("annotations");
        d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
        children.push(d);
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children,
    }))
    .unwrap();
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(&index));
    std::fs::write(layout.join("blobs/sha256").join(&hex), &index).unwrap();
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&top).unwrap()).unwrap();
    skopeo_copy(
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{host}/{repo}:multi"),
        &["--all"],
    );
}

/// Bytes gzip cannot shrink much (xorshift from `seed`), so a layer of them keeps its size.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Runs regbuild with `args` and `DOCKER_CONFIG=config` off the async runtime's threads (so
/// an in-process registry keeps serving), with the calling module's layer cache.
#[track_caller]
pub fn regbuild_async(
    config: &Path,
    args: Vec<String>,
) -> impl std::future::Future<Output = Output> {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = regbuild(&argv);
    cmd.env("DOCKER_CONFIG", config);
    async move {
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

/// Whether the tests run as root (chroot and the privileged sandbox path need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether a test that needs root can run: true as root; otherwise false (the test returns)
/// on a developer's machine, and a failure when `CI` is set, where a missing prerequisite
/// must never pass as a skipped test.
pub fn needs_root(why: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "this test needs root ({why}), and CI is set"
    );
    eprintln!("not run: needs root ({why})");
    false
}

/// Says that a prerequisite this machine lacks keeps a test from running: a failure when
/// `CI` is set (a missing prerequisite never passes as a skipped test there), a note on a
/// developer's machine (the test then returns).
pub fn not_here(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "a prerequisite is missing and CI is set: {what}"
    );
    eprintln!("not run here: {what}");
}

/// Whether `tool` is on PATH; when it is not, [`not_here`] names the Debian package to
/// install (a failure when `CI` is set) and the test returns.
pub fn needs_tool(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        not_here(&format!(
            "{tool} is not on PATH (install the Debian package {package})"
        ));
    }
    found
}

/// Whether a rootless run of `user` failed because this machine cannot make it a user
/// namespace; then [`not_here`] says so (a failure when `CI` is set) and the test returns.
pub fn no_user_namespace(out: &Output, user: &str) -> bool {
    let err = stderr(out);
    if out.status.success() || !err.contains("user namespace") {
        return false;
    }
    not_here(&format!(
        "this machine cannot make a user namespace for {user}: {err}"
    ));
    true
}

/// Taken by the tests that load the machine for minutes (whole Debian builds) and by those
/// whose steps must meet in time (`run_stages::independent_stages_…`): on a 2-core runner
/// the one would starve the other's processes past their bounds.
pub fn heavy_or_timed() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// `cmd` run through `wrapper` (`timeout …`, `setpriv …`): the wrapper's arguments, then
/// `cmd`'s program and arguments, with `cmd`'s environment and working directory.
pub fn wrapped(wrapper: &[&str], cmd: &Command) -> Command {
    let (first, rest) = wrapper.split_first().expect("a wrapper program");
    let mut c = Command::new(first);
    c.args(rest).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        c.current_dir(dir);
    }
    c
}
