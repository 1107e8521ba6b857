//! Bases pinned by digest on the real registry: the lock file, `outdated`, `rebase`, and
//! multi-platform pushes. Bases are made by umoci and pushed by skopeo.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use serde_json::Value;

/// A one-layer base at `host/lib/base:1` whose single file says `version`.
fn push_base(host: &str, version: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci_image(
        &layout,
        "b",
        &[("/etc/base-version", format!("{version}\n").into_bytes())],
        None,
    );
    umoci_config_env(&layout, "b", &format!("BASE_VERSION={version}"));
    skopeo_copy(
        &format!("oci:{}:b", layout.display()),
        &format!("docker://{host}/lib/base:1"),
        &[],
    );
    skopeo_digest(&format!("{host}/lib/base:1"), &[])
}

fn umoci_config_env(layout: &Path, tag: &str, env: &str) {
    run(Command::new("umoci").args([
        "config",
        "--image",
        &format!("{}:{tag}", layout.display()),
        "--config.env",
        env,
    ]));
}

fn app_context(host: &str) -> tempfile::TempDir {
    context_with(&[
        (
            "Dockerfile",
            &format!("FROM {host}/lib/base:1\nCOPY app.txt /srv/app.txt\nENV APP=1\n"),
        ),
        ("app.txt", "the app\n"),
    ])
}

fn push_app(ctx: &Path, tag: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["push", "--json", "-t", tag];
    args.extend_from_slice(extra);
    let c = ctx.to_str().unwrap().to_string();
    args.push(&c);
    regbuild(&args).output().unwrap()
}

#[test]
fn a_locked_base_survives_a_moved_tag_outdated_reports_it_and_rebase_moves_the_image() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let d1 = push_base(&host, "1");
    let ctx = app_context(&host);

    let out = run(&mut regbuild(&["lock", ctx.path().to_str().unwrap()]));
    let lock_path = ctx.path().join("regbuild.lock");
    assert_eq!(stdout(&out).trim(), lock_path.display().to_string());
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    assert!(
        lock.contains(&format!("reference = \"{host}/lib/base:1\"")),
        "{lock}"
    );
    assert!(lock.contains(&d1), "{lock}");

    let out = push_app(ctx.path(), &format!("{host}/team/app:1"), &["--locked"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The base's tag moves.
    let d2 = push_base(&host, "2");
    assert_ne!(d1, d2);

    // --locked keeps building on the pinned digest.
    let out = push_app(ctx.path(), &format!("{host}/team/app:2"), &["--locked"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = raw_manifest(&format!("{host}/team/app:2"));
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.digest"],
        d1.as_str()
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.name"],
        format!("{host}/lib/base:1")
    );

    // outdated: from the lock file, and from the pushed image's annotations.
    let out = regbuild(&[
        "outdated",
        "-f",
        ctx.path().join("Dockerfile").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{host}/lib/base:1")) && text.contains("MOVED"),
        "{text}"
    );
    assert!(text.contains(&d1) && text.contains(&d2), "{text}");
    let out = regbuild(&["outdated", "--json", &format!("{host}/team/app:1")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = json(&out);
    assert_eq!(report["moved"], 1);
    assert_eq!(report["bases"][0]["current"], d2.as_str());

    // rebase onto the moved tag: no layer is uploaded, only the new config.
    let mark = reg.access_log().len();
    let out = run(&mut regbuild(&[
        "rebase",
        "--json",
        &format!("{host}/team/app:1"),
        "--base",
        &format!("{host}/lib/base:1"),
        "-t",
        &format!("{host}/team/app:rebased"),
    ]));
    let report: Value = json(&out);
    let log = reg.access_log_since(mark);
    let upload_puts: Vec<_> = log
        .iter()
        .filter(|a| a.method == "PUT" && a.uri.contains("/blobs/uploads/"))
        .collect();
    let uploaded: Vec<&Value> = report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["action"] == "uploaded")
        .collect();
    assert_eq!(uploaded.len(), 1, "only the config: {report}");
    assert_eq!(
        upload_puts.len(),
        1,
        "one upload session, for the config: {log:#?}"
    );
    let config_digest = raw_manifest(&format!("{host}/team/app:rebased"))["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(uploaded[0]["digest"], config_digest.as_str());
    assert!(
        upload_puts[0]
            .uri
            .contains(&config_digest.replace(':', "%3A")),
        "{upload_puts:#?}"
    );

    let rebased = raw_manifest(&format!("{host}/team/app:rebased"));
    assert_eq!(
        rebased["annotations"]["org.opencontainers.image.base.digest"],
        d2.as_str()
    );
    let new_base_layer = raw_manifest(&format!("{host}/lib/base:1"))["layers"][0]["digest"].clone();
    assert_eq!(rebased["layers"][0]["digest"], new_base_layer);
    let (_k, bundle) = pull_and_unpack(&format!("{host}/team/app:rebased"), &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/base-version")).unwrap(),
        "2\n"
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/srv/app.txt")).unwrap(),
        "the app\n"
    );
    let config = skopeo_config(&format!("{host}/team/app:rebased"));
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"BASE_VERSION=2"),
        "inherited setting follows the new base: {env:?}"
    );
    assert!(env.contains(&"APP=1"), "{env:?}");

    // The rebased image is up to date.
    let out = regbuild(&["outdated", &format!("{host}/team/app:rebased")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn locked_needs_a_lock_file_that_covers_every_base() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    push_base(&host, "1");
    let ctx = app_context(&host);
    let out = push_app(ctx.path(), &format!("{host}/team/app:1"), &["--locked"]);
    // Refused before any registry was asked: exit 2.
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no lock file"), "{}", stderr(&out));

    // A lock file that misses the base: --locked refuses, a plain push adds the entry.
    std::fs::write(ctx.path().join("regbuild.lock"), "version = 1\n").unwrap();
    let out = push_app(ctx.path(), &format!("{host}/team/app:1"), &["--locked"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{host}/lib/base:1")) && err.contains("regbuild lock"),
        "{err}"
    );
    let writes: Vec<_> = reg
        .access_log()
        .into_iter()
        .filter(|a| a.uri.starts_with("/v2/team/") && a.method != "GET" && a.method != "HEAD")
        .collect();
    assert!(
        writes.is_empty(),
        "nothing written for the app: {writes:#?}"
    );
    let out = push_app(ctx.path(), &format!("{host}/team/app:1"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lock = std::fs::read_to_string(ctx.path().join("regbuild.lock")).unwrap();
    assert!(lock.contains(&format!("{host}/lib/base:1")), "{lock}");
}

#[test]
fn rebase_onto_an_unrelated_image_is_refused() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    push_base(&host, "1");
    let ctx = app_context(&host);
    assert!(push_app(ctx.path(), &format!("{host}/team/app:1"), &[])
        .status
        .success());
    third_party_image(&host, "other/thing", "1");
    let out = regbuild(&[
        "rebase",
        &format!("{host}/team/app:1"),
        "--old-base",
        &format!("{host}/other/thing:1"),
        "--base",
        &format!("{host}/lib/base:1"),
        "-t",
        &format!("{host}/team/app:bad"),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("not a prefix") || err.contains("only"),
        "{err}"
    );
    let tags = http_status("GET", &host, "/v2/team/app/manifests/bad");
    assert_eq!(tags, Some(404), "nothing tagged");
}

#[test]
fn two_platform_push_builds_an_index_and_uploads_shared_layers_once() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    third_party_index(&host, "lib/multi");
    let ctx = context_with(&[
        (
            "Dockerfile",
            &format!("FROM {host}/lib/multi:multi\nARG TARGETARCH\nCOPY shared.txt /shared.txt\nCOPY arch-${{TARGETARCH}}.txt /arch.txt\n"),
        ),
        ("shared.txt", "same everywhere\n"),
        ("arch-amd64.txt", "x86\n"),
        ("arch-arm64.txt", "arm\n"),
    ]);
    let mark = reg.access_log().len();
    let out = run(&mut regbuild(&[
        "push",
        "--json",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        &format!("{host}/team/multi:1"),
        ctx.path().to_str().unwrap(),
    ]));
    let report: Value = json(&out);
    let index = raw_manifest(&format!("{host}/team/multi:1"));
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    assert_eq!(
        report["digest"],
        skopeo_digest(&format!("{host}/team/multi:1"), &[])
    );
    // The shared COPY layer is the same blob in both manifests, uploaded once.
    let amd = raw_manifest(&format!(
        "{host}/team/multi@{}",
        children[0]["digest"].as_str().unwrap()
    ));
    let arm = raw_manifest(&format!(
        "{host}/team/multi@{}",
        children[1]["digest"].as_str().unwrap()
    ));
    let shared = amd["layers"][1]["digest"].as_str().unwrap().to_string();
    assert_eq!(arm["layers"][1]["digest"], shared.as_str());
    assert_ne!(amd["layers"][2]["digest"], arm["layers"][2]["digest"]);
    let puts = reg
        .access_log_since(mark)
        .into_iter()
        .filter(|a| {
            a.method == "PUT"
                && a.uri.contains("/blobs/uploads/")
                && a.uri.contains(&shared.replace(':', "%3A"))
        })
        .count();
    assert_eq!(puts, 1, "shared layer uploaded once");
    for arch in ["amd64", "arm64"] {
        let out = run(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--override-os=linux",
            &format!("--override-arch={arch}"),
            &format!("docker://{host}/team/multi:1"),
        ]));
        let v: Value = json(&out);
        assert_eq!(v["Architecture"], arch);
    }
    let (_k, bundle) = pull_and_unpack(
        &format!("{host}/team/multi:1"),
        &["--override-arch=arm64", "--override-os=linux"],
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/arch.txt")).unwrap(),
        "arm\n"
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/arch")).unwrap(),
        "arm64\n"
    );
}

#[test]
fn a_base_without_the_requested_platform_is_named() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    third_party_index(&host, "lib/multi");
    let ctx = context_with(&[
        (
            "Dockerfile",
            &format!("FROM {host}/lib/multi:multi\nCOPY a /a\n"),
        ),
        ("a", "x"),
    ]);
    let out = regbuild(&[
        "push",
        "--platform",
        "linux/s390x",
        "-t",
        &format!("{host}/team/multi:1"),
        ctx.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("linux/s390x") && err.contains(&format!("{host}/lib/multi:multi")),
        "{err}"
    );
}

#[test]
fn outdated_covers_images_read_by_copy_from_in_annotations_lock_file_and_workspace() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let pinned = push_base(&host, "1");
    let ctx = context_with(&[
        (
            "Dockerfile",
            &format!(
                "FROM scratch\nCOPY --from={host}/lib/base:1 /etc/base-version /lib-version\nCOPY app.txt /app.txt\nUSER 1\n"
            ),
        ),
        ("app.txt", "app\n"),
    ]);
    let dockerfile = ctx.path().join("Dockerfile");
    std::fs::write(
        ctx.path().join("regbuild.toml"),
        format!("[[image]]\nname = \"app\"\ncontext = \".\"\ntags = [\"{host}/app/ws:1\"]\n"),
    )
    .unwrap();
    let workspace = ctx.path().join("regbuild.toml");
    let tag = format!("{host}/app/copy:1");
    push_app(ctx.path(), &tag, &[]);
    run(&mut regbuild(&[
        "push",
        "--all",
        "--workspace",
        workspace.to_str().unwrap(),
    ]));
    run(&mut regbuild(&[
        "lock",
        "-f",
        dockerfile.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]));
    let annotations = &raw_manifest(&tag)["annotations"];
    assert_eq!(
        annotations["dev.regbuild.sources"],
        format!("{host}/lib/base:1@{pinned}").as_str(),
        "{annotations}"
    );
    assert!(annotations
        .get("org.opencontainers.image.base.name")
        .is_none());

    let outdated = |args: &[&str]| {
        let mut all = vec!["outdated"];
        all.extend_from_slice(args);
        regbuild(&all).output().unwrap()
    };
    let checks: [Vec<&str>; 3] = [
        vec![&tag],
        vec!["-f", dockerfile.to_str().unwrap()],
        vec!["--all", "--workspace", workspace.to_str().unwrap()],
    ];
    for args in &checks {
        let out = outdated(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("up to date"), "{}", stdout(&out));
    }

    // The library's tag moves: every way of asking says so, with exit 1.
    let current = push_base(&host, "2");
    assert_ne!(current, pinned);
    for args in &checks {
        let out = outdated(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        let line = stdout(&out);
        assert!(
            line.contains(&format!("{host}/lib/base:1"))
                && line.contains(&pinned)
                && line.contains(&current)
                && line.contains("MOVED"),
            "{args:?}: {line}"
        );
    }
    let out = outdated(&["--json", &tag]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = json(&out);
    assert_eq!(v["moved"], 1);
    let base = &v["bases"][0];
    assert_eq!(base["image"], tag.as_str());
    assert_eq!(base["reference"], format!("{host}/lib/base:1").as_str());
    assert_eq!(base["pinned"], pinned.as_str());
    assert_eq!(base["current"], current.as_str());
    assert_eq!(base["moved"], true);
}

#[test]
fn a_build_that_reads_no_other_image_has_no_sources_annotation() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    push_base(&host, "1");
    let ctx = app_context(&host);
    let tag = format!("{host}/app/plain:1");
    push_app(ctx.path(), &tag, &[]);
    let annotations = raw_manifest(&tag)["annotations"].clone();
    let mut keys: Vec<&String> = annotations.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "org.opencontainers.image.base.digest",
            "org.opencontainers.image.base.name"
        ]
    );
}

/// `outdated`'s 1 means "a base moved", so CI rebuilds on it: a registry that never answers,
/// cut short by `--deadline`, must exit 2, never 1.
#[test]
fn outdated_cut_short_by_the_deadline_exits_2_not_1() {
    // Connections land in the backlog and are never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap().to_string();
    let out = regbuild(&["outdated", "--deadline", "1", &format!("{host}/team/app:1")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--deadline"), "{}", stderr(&out));
}

/// `lock --build-arg NAME` takes NAME's value from the environment, as `push` does: a base
/// named through an ARG is pinned.
#[test]
fn lock_takes_a_build_arg_from_the_environment_as_push_does() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let digest = push_base(&host, "1");
    let ctx = context_with(&[("Dockerfile", "ARG BASE\nFROM $BASE\nCOPY Dockerfile /d\n")]);
    let out = regbuild(&["lock", "--build-arg", "BASE", ctx.path().to_str().unwrap()])
        .env("BASE", format!("{host}/lib/base:1"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lock = std::fs::read_to_string(ctx.path().join("regbuild.lock")).unwrap();
    assert!(
        lock.contains(&format!("{host}/lib/base:1")) && lock.contains(&digest),
        "{lock}"
    );
}
