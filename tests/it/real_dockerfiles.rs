//! The checked-in real-world-shaped Dockerfiles of `tests/dockerfiles/` (multi-stage Go,
//! Rust and Python builds, apt, `COPY file dir`, cargo's hard links, `USER` after the `RUN`
//! that made the user), each pushed onto the Debian base with `--build-arg BASE=…`, pulled
//! back and run under chroot as the image's user: a wrong image with exit 0 fails here.
//!
//! Needs root (debootstrap, chroot) and the machine's apt mirror, as `run_debian`.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::run_debian::{debian_base, push_base};

#[derive(serde::Deserialize)]
struct Expect {
    /// The config's `User`, as written.
    user: String,
    argv: Vec<String>,
    stdout: String,
}

#[test]
fn go_multi_stage_static_on_scratch() {
    builds_and_runs("go-static");
}

#[test]
fn rust_cargo_binary_copied_into_an_existing_directory() {
    builds_and_runs("rust-cargo");
}

#[test]
fn node_app_with_entrypoint_and_user_made_by_run() {
    builds_and_runs("node-app");
}

#[test]
fn python_venv_built_in_one_stage_run_in_another() {
    builds_and_runs("python-venv");
}

fn builds_and_runs(name: &str) {
    if !needs_root("debootstrap makes the Debian base, chroot runs the images") {
        return;
    }
    let _turn = heavy_or_timed();
    let dir = repo_root().join("tests/dockerfiles").join(name);
    let expect: Expect =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expect.json")).unwrap()).unwrap();
    let reg = Distribution::start();
    let base = push_base(&reg.host, debian_base());
    let tag = format!("{}/real/{name}:1", reg.host);
    let out = regbuild(&[
        "push",
        "--build-arg",
        &format!("BASE={base}"),
        "-t",
        &tag,
        dir.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{name}: push failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let config = skopeo_config(&tag);
    assert_eq!(config["config"]["User"], expect.user, "{name}: {config}");
    let (_keep, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    let (uid, gid) = ids_of(&rootfs, &expect.user);
    let out = run(Command::new("/usr/sbin/chroot")
        .arg(format!("--userspec={uid}:{gid}"))
        .arg(&rootfs)
        .args(&expect.argv)
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/"));
    assert_eq!(stdout(&out), expect.stdout, "{name}: {}", stderr(&out));
}

/// `user[:group]` as numbers, names looked up in the image's own account files.
fn ids_of(rootfs: &Path, user: &str) -> (u32, u32) {
    let (u, g) = user
        .split_once(':')
        .map_or((user, None), |(u, g)| (u, Some(g)));
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let field = |text: &str, name: &str, at: usize| -> Option<u32> {
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f[0] == name)
            .and_then(|f| f.get(at)?.parse().ok())
    };
    let uid = u
        .parse()
        .ok()
        .or_else(|| field(&passwd, u, 2))
        .unwrap_or_else(|| panic!("user {u} is not in the image"));
    let gid = match g {
        Some(g) => g
            .parse()
            .ok()
            .or_else(|| field(&group, g, 2))
            .unwrap_or_else(|| panic!("group {g} is not in the image")),
        None => field(&passwd, u, 3).unwrap_or(uid),
    };
    (uid, gid)
}
