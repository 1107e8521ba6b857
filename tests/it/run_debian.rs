//! `RUN` end to end on a real distribution: a Debian base made by `debootstrap
//! --variant=minbase` from this machine's apt mirror (`scripts/debian-base.sh`, made once and
//! cached under the target directory), pushed by skopeo to the real distribution registry;
//! regbuild builds Dockerfiles whose `RUN` steps `apt-get install` from that mirror and
//! compile with gcc, and pushes them; each image is pulled back with skopeo, unpacked with
//! umoci and run under chroot.
//!
//! Needs root (debootstrap, chroot; CI runs as root) and the machine's apt mirror; not run,
//! with the reason printed, when not root (a failure when `CI` is set).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;

/// What `scripts/debian-base.sh` made: an OCI layout (tag `base`) and its `base.env`.
pub struct DebianBase {
    pub dir: PathBuf,
    pub suite: String,
    pub manifest_digest: String,
    layer_digest: String,
}

/// The base, made (or found in its cache) once per test process.
pub fn debian_base() -> &'static DebianBase {
    static BASE: OnceLock<DebianBase> = OnceLock::new();
    BASE.get_or_init(|| {
        let out = run(&mut Command::new(
            repo_root().join("scripts/debian-base.sh"),
        ));
        // The script's own lines (cache reuse, or the debootstrap time): shown with the test.
        eprint!("{}", stderr(&out));
        let text = stdout(&out);
        let dir = PathBuf::from(text.lines().last().unwrap_or_default().trim());
        let env = std::fs::read_to_string(dir.join("base.env"))
            .unwrap_or_else(|e| panic!("{}/base.env: {e} (script output: {text})", dir.display()));
        let get = |key: &str| -> String {
            env.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {key} in base.env:\n{env}"))
                .to_string()
        };
        DebianBase {
            suite: get("SUITE"),
            manifest_digest: get("MANIFEST_DIGEST"),
            layer_digest: get("LAYER_DIGEST"),
            dir,
        }
    })
}

/// Pushes the Debian base to `host/library/debian:SUITE` (skopeo, from the OCI layout) and
/// returns that reference.
pub fn push_base(host: &str, base: &DebianBase) -> String {
    let reference = format!("{host}/library/debian:{}", base.suite);
    skopeo_copy(
        &format!("oci:{}:base", base.dir.join("oci").display()),
        &format!("docker://{reference}"),
        &[],
    );
    // The layout's manifest, byte for byte.
    assert_eq!(skopeo_digest(&reference, &[]), base.manifest_digest);
    reference
}

const HELLO_C: &str = r#"#include <stdio.h>

int main(void) {
    printf("hello from a static program that RUN gcc built: %d\n", 6 * 7);
    return 0;
}
"#;

/// Stage `build` on the Debian base installs gcc and compiles `hello.c` statically; the
/// image is that program alone on scratch.
fn static_dockerfile(from: &str) -> String {
    format!(
        "FROM {from} AS build\n\
         ARG DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev\n\
         COPY hello.c /src/\n\
         RUN gcc -static -O2 -o /hello /src/hello.c\n\
         \n\
         FROM scratch\n\
         COPY --from=build /hello /hello\n\
         ENTRYPOINT [\"/hello\"]\n"
    )
}

/// The Debian base with GNU hello installed by apt-get (and apt's lists deleted again).
pub fn hello_dockerfile(from: &str) -> String {
    format!(
        "FROM {from}\n\
         ARG DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello \
         && rm -rf /var/lib/apt/lists/*\n\
         CMD [\"hello\"]\n"
    )
}

#[test]
fn run_apt_get_install_gcc_builds_a_static_program_that_runs_from_scratch() {
    if !needs_root("debootstrap makes the Debian base, chroot runs the images") {
        return;
    }
    let base = debian_base();
    let reg = Distribution::start();
    let host = reg.host.clone();
    let from = push_base(&host, base);
    let dockerfile = static_dockerfile(&from);
    let ctx = context_with(&[("Dockerfile", &dockerfile), ("hello.c", HELLO_C)]);
    let tag = format!("{host}/apps/hello-static:1");
    let report = push_json(ctx.path(), &tag, &[]).0;
    assert_eq!(skopeo_digest(&tag, &[]), report["digest"].as_str().unwrap());
    check_static_image(&tag);
}

/// The image of the gcc test: `/hello` alone, static, and it runs.
fn check_static_image(tag: &str) {
    // Only the final stage is the image: one layer (the COPY --from), no Debian in it.
    let config = skopeo_config(tag);
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/hello"])
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        1,
        "{config}"
    );
    assert_eq!(
        raw_manifest(tag)["layers"].as_array().unwrap().len(),
        1,
        "no layer of the build stage is in the image"
    );

    let (_keep, bundle) = pull_and_unpack(tag, &[]);
    let rootfs = bundle.join("rootfs");
    let names: Vec<String> = std::fs::read_dir(&rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["hello"], "the image holds the program alone");
    let elf = std::fs::read(rootfs.join("hello")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "gcc's output");
    // Nothing else is in the image (no dynamic loader, no libc): it runs because it is static.
    let text = chroot(&rootfs, &["/hello"]);
    assert_eq!(text, "hello from a static program that RUN gcc built: 42\n");
}

#[test]
fn run_apt_get_install_adds_a_package_whose_program_runs() {
    if !needs_root("debootstrap makes the Debian base, chroot runs the images") {
        return;
    }
    let base = debian_base();
    let reg = Distribution::start();
    let host = reg.host.clone();
    let from = push_base(&host, base);
    let dockerfile = hello_dockerfile(&from);
    let ctx = context_with(&[("Dockerfile", &dockerfile)]);
    let tag = format!("{host}/apps/debian-hello:1");
    let report = push_json(ctx.path(), &tag, &[]).0;
    assert_eq!(skopeo_digest(&tag, &[]), report["digest"].as_str().unwrap());
    check_hello_image(&tag, base);
}

/// The image of the apt-get test: the base's layer, the RUN's, and GNU hello runs.
fn check_hello_image(tag: &str, base: &DebianBase) {
    // The base's layer as it is (never re-packed), then the RUN's layer.
    let m = raw_manifest(tag);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{m}");
    assert_eq!(layers[0]["digest"], base.layer_digest.as_str());
    let config = skopeo_config(tag);
    let c = &config["config"];
    assert_eq!(c["Cmd"], serde_json::json!(["hello"]));
    // A build ARG is in the RUN's environment, never in the image's.
    let env = c["Env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|v| v.as_str().unwrap_or_default().starts_with("PATH=")),
        "{c}"
    );
    assert!(
        !env.iter().any(|v| v
            .as_str()
            .unwrap_or_default()
            .starts_with("DEBIAN_FRONTEND")),
        "{c}"
    );

    let (_keep, bundle) = pull_and_unpack(tag, &[]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(chroot(&rootfs, &["hello"]), "Hello, world!\n");
    assert_eq!(
        chroot(&rootfs, &["hello", "-g", "built by regbuild RUN"]),
        "built by regbuild RUN\n"
    );
    assert_eq!(
        chroot(&rootfs, &["dpkg-query", "-W", "-f", "${Status}", "hello"]),
        "install ok installed"
    );
    // What the RUN deleted is gone from the image (whiteouts), what it wrote stayed.
    let lists: Vec<_> = std::fs::read_dir(rootfs.join("var/lib/apt/lists"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(lists.is_empty(), "apt lists left in the image: {lists:?}");
}

/// apt as an unprivileged user: the step runs as root of a user namespace with the user's
/// subordinate ids, so apt's `_apt` sandbox works, and what it leaves to `_apt` (its
/// `partial/` directories, mode 0700) is in the layer with that owner and mode.
#[test]
fn run_apt_get_install_works_rootless() {
    if !needs_root("debootstrap makes the Debian base, chroot runs the images") {
        return;
    }
    crate::run_steps::rootless_user();
    let user = crate::run_steps::ROOTLESS_USER;
    let base = debian_base();
    let reg = Distribution::start();
    let host = reg.host.clone();
    let from = push_base(&host, base);
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), hello_dockerfile(&from)).unwrap();
    crate::run_steps::rootless_home(dir.path());
    let tag = format!("{host}/apps/debian-hello-rootless:1");
    let out = crate::run_steps::as_rootless(
        dir.path(),
        &["push", "--json", "-t", &tag, &ctx.display().to_string()],
    );
    let err = stderr(&out);
    if no_user_namespace(&out, user) {
        return;
    }
    assert!(out.status.success(), "rootless apt-get push failed:\n{err}");
    check_hello_image(&tag, base);
    let (_keep, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    let apt_uid: u32 = passwd
        .lines()
        .find_map(|l| l.strip_prefix("_apt:x:"))
        .and_then(|rest| rest.split(':').next()?.parse().ok())
        .expect("_apt in /etc/passwd");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let partial = std::fs::metadata(rootfs.join("var/cache/apt/archives/partial")).unwrap();
    assert_eq!(
        (partial.uid(), partial.permissions().mode() & 0o7777),
        (apt_uid, 0o700),
        "apt's partial/ keeps _apt's owner and mode"
    );
    for left in ["tmp", "cache/run-tmp"] {
        let entries: Vec<_> = std::fs::read_dir(dir.path().join(left))
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(entries.is_empty(), "{left}: {entries:?}");
    }
}
