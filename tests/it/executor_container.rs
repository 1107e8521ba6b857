//! regbuild where kaniko ran: inside an unprivileged container (podman with runc, root in
//! the container, no privileged mode), in two settings: podman's defaults (its seccomp
//! profile and capabilities: user namespaces allowed, no CAP_SYS_ADMIN, /proc masked), and
//! a seccomp profile derived from podman's installed one as Docker's default profile is
//! made (`unshare`, `mount`, `umount2`, `pivot_root`, `setns` only with CAP_SYS_ADMIN, no
//! namespace flag on `clone`, `clone3` answered ENOSYS) with Docker's default capabilities.
//! A Dockerfile with `apt-get install` from this machine's mirror, `useradd`, USER after
//! RUN, a secret, a cache mount and a second stage is built and pushed from inside the
//! container (the regbuild binary bound in read-only, the Debian base imported with
//! `podman import`); the image is pulled back and run under chroot; a step that searches
//! every file it can reach for regbuild's registry password finds nothing.
//!
//! Needs root, podman and runc (scripts/setup.sh installs them), and the Debian base
//! (`run_debian`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::run_debian::{debian_base, DebianBase};

const USER: &str = "builder-bot";
/// regbuild's registry password, in two pieces so that no file of the build holds it whole.
const PW_A: &str = "pw-kaniko-successor-";
const PW_B: &str = "7f3a9c2e51";

/// The calls Docker's default profile allows only with CAP_SYS_ADMIN (as they are here).
const ADMIN_ONLY: [&str; 5] = ["mount", "umount2", "pivot_root", "setns", "unshare"];
/// `clone`'s namespace flags (Docker's mask, 0x7E020000).
const CLONE_NAMESPACE_FLAGS: u64 = 2_114_060_288;

/// Podman's installed profile, made Docker-like (see the module doc).
fn docker_like_profile(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string("/usr/share/containers/seccomp.json")
        .expect("podman's seccomp profile (/usr/share/containers/seccomp.json)");
    let mut profile: serde_json::Value = serde_json::from_str(&text).unwrap();
    let syscalls = profile["syscalls"].as_array_mut().unwrap();
    let guarded: Vec<&str> = ADMIN_ONLY
        .iter()
        .copied()
        .chain(["clone", "clone3"])
        .collect();
    for rule in syscalls.iter_mut() {
        let unconditional = rule["action"] == "SCMP_ACT_ALLOW"
            && rule["includes"].as_object().is_none_or(|o| o.is_empty())
            && rule["args"].as_array().is_none_or(|a| a.is_empty());
        if unconditional {
            let names = rule["names"].as_array_mut().unwrap();
            names.retain(|n| !guarded.contains(&n.as_str().unwrap_or_default()));
        }
    }
    let admin = serde_json::json!({"caps": ["CAP_SYS_ADMIN"]});
    syscalls.extend([
        serde_json::json!({"names": ADMIN_ONLY, "action": "SCMP_ACT_ALLOW", "includes": admin}),
        serde_json::json!({"names": ADMIN_ONLY, "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                           "excludes": admin}),
        serde_json::json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                           "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS,
                                     "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                           "excludes": admin}),
        serde_json::json!({"names": ["clone", "clone3"], "action": "SCMP_ACT_ALLOW",
                           "includes": admin}),
        serde_json::json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                           "excludes": admin}),
    ]);
    let path = dir.join("docker-like-seccomp.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&profile).unwrap()).unwrap();
    path
}

/// The Debian base's root filesystem as a podman image (imported once per base).
fn podman_base(base: &DebianBase) -> String {
    let name = format!(
        "localhost/regbuild-test-debian:{}",
        &base.manifest_digest.trim_start_matches("sha256:")[..12]
    );
    let exists = Command::new("podman")
        .args(["image", "exists", &name])
        .status()
        .unwrap();
    if !exists.success() {
        run(Command::new("podman")
            .arg("import")
            .arg(base.dir.join("rootfs.tar.gz"))
            .arg(&name));
    }
    name
}

/// regbuild's executor image, made by `scripts/executor-image.sh` from the binary under
/// test and pushed to `host` (credentials in `docker_config`); twice, to the same digest.
fn executor_image(host: &str, docker_config: &Path) -> String {
    let reference = format!("{host}/regbuild/executor:test");
    let make = || {
        let out = run(Command::new(repo_root().join("scripts/executor-image.sh"))
            .arg(&reference)
            .args(["--binary", env!("CARGO_BIN_EXE_regbuild")])
            .env("DOCKER_CONFIG", docker_config)
            .env("SOURCE_DATE_EPOCH", "1700000000"));
        stdout(&out).lines().last().unwrap_or_default().to_string()
    };
    let first = make();
    assert!(first.contains("@sha256:"), "{first}");
    assert_eq!(make(), first, "the executor image is reproducible");
    reference
}

fn dockerfile(from: &str) -> String {
    format!(
        "FROM {from} AS build\n\
         ARG DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello \\\n \
           && rm -rf /var/lib/apt/lists/*\n\
         RUN useradd -m -u 1500 worker\n\
         RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-64 > /secret-sum\n\
         RUN --mount=type=cache,target=/var/cache/tool echo warm > /var/cache/tool/x \\\n \
           && ls /var/cache/tool > /cache-list\n\
         RUN a={PW_A}; b={PW_B}; \\\n \
           if grep -rqsF -D skip \"$a$b\" / ; then echo found > /search; else echo clean > /search; fi\n\
         USER worker\n\
         RUN id -un > /home/worker/whoami\n\
         FROM {from}\n\
         COPY --from=build /usr/bin/hello /usr/bin/hello\n\
         COPY --from=build /secret-sum /search /cache-list /home/worker/whoami /out/\n"
    )
}

#[test]
fn the_executor_builds_in_a_container_with_podman_s_defaults() {
    // User namespaces allowed, no CAP_SYS_ADMIN, /proc masked: the user-namespace rung.
    if prerequisites() {
        build_in_a_container(false, "user-namespace rung");
    }
}

#[test]
fn the_executor_builds_in_a_container_with_docker_s_default_profile() {
    // No namespace at all: the chroot rung.
    if prerequisites() {
        build_in_a_container(true, "chroot rung");
    }
}

fn prerequisites() -> bool {
    needs_root("podman runs the container, chroot runs the image")
        && needs_tool("podman", "podman")
        && needs_tool("runc", "runc")
}

/// Builds and pushes the Dockerfile from inside a container (`docker_like`: the derived
/// profile and Docker's capabilities, else podman's defaults), checks that the rung `said`
/// was said, and checks the image.
fn build_in_a_container(docker_like: bool, said: &str) {
    let _turn = heavy_or_timed();
    let base = debian_base();
    let password = format!("{PW_A}{PW_B}");
    let reg = Distribution::start_with_user(USER, &password);
    let host = reg.host.clone();
    let creds = format!("{USER}:{password}");
    let from = format!("{host}/library/debian:{}", base.suite);
    skopeo_copy(
        &format!("oci:{}:base", base.dir.join("oci").display()),
        &format!("docker://{from}"),
        &["--dest-creds", &creds],
    );
    let work = tempfile::tempdir().unwrap();
    let mut security = Vec::new();
    if docker_like {
        let profile = docker_like_profile(work.path());
        security.push(format!("--security-opt=seccomp={}", profile.display()));
        // Docker's default capabilities: podman's, and MKNOD, NET_RAW, AUDIT_WRITE.
        security.extend(["--cap-add".into(), "MKNOD,NET_RAW,AUDIT_WRITE".into()]);
    }
    let ctx = context_with(&[("Dockerfile", &dockerfile(&from))]);
    let config = docker_config_with(&host, USER, &password);
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("tok"), "build-secret\n").unwrap();
    let tag = format!("{host}/apps/executor:1");
    let cache = tempfile::tempdir().unwrap();
    let bind = |from: &Path, to: &str| format!("{}:{to}:ro", from.display());
    let mut podman = Command::new("podman");
    podman
        .args([
            "--runtime",
            "runc",
            "--cgroup-manager=cgroupfs",
            "run",
            "--rm",
        ])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .args(["--network", "host"])
        .args(&security)
        .args(["-v", &bind(ctx.path(), "/ctx")])
        .args(["-v", &bind(config.path(), "/creds")])
        .args(["-v", &bind(secrets.path(), "/secrets")])
        // The cache on a volume, as the README's recipes have it: a container's root
        // filesystem (overlayfs) cannot hold the whiteouts of a step's deletions. The volume
        // is writable by everyone, as Kubernetes makes an emptyDir.
        .args(["-v", &format!("{}:/cache", cache.path().display())])
        .args(["-e", "DOCKER_CONFIG=/creds"]);
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    if docker_like {
        // The Debian base imported, the binary bound in; the cache where the recipes put it
        // (the executor image's own default is the same).
        let binary = Path::new(env!("CARGO_BIN_EXE_regbuild"));
        podman
            .args(["-e", "REGBUILD_CACHE=/cache/regbuild"])
            .args(["-v", &bind(binary, "/usr/local/bin/regbuild")])
            .args([podman_base(base).as_str(), "regbuild"]);
    } else {
        // The executor image scripts/executor-image.sh makes, pulled from the registry.
        let image = executor_image(&host, config.path());
        run(Command::new("podman")
            .args(["pull", "-q", "--tls-verify=false", "--creds", &creds])
            .arg(&image));
        podman.args(["--pull=never", image.as_str()]);
    }
    let out = podman
        .args(["push", "-v", "--secret", "id=tok,src=/secrets/tok"])
        .args(["-t", &tag, "/ctx"])
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        out.status.success(),
        "regbuild in the container failed:\n{text}"
    );
    assert!(text.contains(said), "the rung is said: {text}");
    assert!(!text.contains(&password), "the password is in the output");

    let (_keep, bundle) = pull_and_unpack(&tag, &["--src-creds", &creds]);
    let root = bundle.join("rootfs");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(
        read("out/search"),
        "clean\n",
        "a step found the registry password"
    );
    assert_eq!(read("out/whoami"), "worker\n");
    assert_eq!(read("out/cache-list"), "x\n");
    use sha2::Digest as _;
    assert_eq!(
        read("out/secret-sum"),
        format!("{}\n", hex::encode(sha2::Sha256::digest("build-secret\n")))
    );
    let hello = run(Command::new("chroot").arg(&root).arg("/usr/bin/hello"));
    assert_eq!(stdout(&hello), "Hello, world!\n");
}
