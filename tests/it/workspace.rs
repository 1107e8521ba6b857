//! Image hierarchies on the real registry: a three-level workspace (base → mid → top) plus
//! an independent image; `push --all` rebuilds exactly the dependents of a change,
//! `--rebase` moves them without rebuilding, `outdated --all` reports the tree.

use std::path::Path;

use crate::common::*;
use serde_json::Value;

fn workspace(host: &str) -> tempfile::TempDir {
    let dir = context_with(&[
        (
            "base/Dockerfile",
            "FROM scratch\nCOPY base.txt /etc/base.txt\n",
        ),
        ("base/base.txt", "base v1\n"),
        (
            "mid/Dockerfile",
            &format!("FROM {host}/ws/base:1\nCOPY mid.txt /etc/mid.txt\n"),
        ),
        ("mid/mid.txt", "mid\n"),
        // `FROM mid` names the workspace image by its name.
        (
            "top/Dockerfile",
            "FROM mid\nCOPY top.txt /etc/top.txt\nCMD [\"/top\"]\n",
        ),
        ("top/top.txt", "top\n"),
        (
            "other/Dockerfile",
            "FROM scratch\nCOPY other.txt /other.txt\n",
        ),
        ("other/other.txt", "other\n"),
    ]);
    let toml = format!(
        r#"
[[image]]
name = "top"
context = "top"
tags = ["{host}/ws/top:1"]

[[image]]
name = "mid"
context = "mid"
tags = ["{host}/ws/mid:1"]

[[image]]
name = "base"
context = "base"
tags = ["{host}/ws/base:1"]

[[image]]
name = "other"
context = "other"
tags = ["{host}/ws/other:1"]
"#
    );
    std::fs::write(dir.path().join("regbuild.toml"), toml).unwrap();
    dir
}

fn push_all(ws: &Path, extra: &[&str]) -> Value {
    let file = ws.join("regbuild.toml");
    let mut args = vec![
        "push",
        "--all",
        "--json",
        "--workspace",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&mut regbuild(&args));
    json(&out)
}

fn outcome(report: &Value, name: &str) -> String {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .map(|i| i["outcome"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{name} missing: {report}"))
}

#[test]
fn a_changed_base_rebuilds_exactly_its_dependents() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let ws = workspace(&host);

    let first = push_all(ws.path(), &[]);
    for n in ["base", "mid", "top", "other"] {
        assert_eq!(outcome(&first, n), "pushed", "{first}");
    }
    // Built in dependency order.
    let order: Vec<&str> = first["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
    assert!(
        pos("base") < pos("mid") && pos("mid") < pos("top"),
        "{order:?}"
    );
    let (_k, bundle) = pull_and_unpack(&format!("{host}/ws/top:1"), &[]);
    for f in ["etc/base.txt", "etc/mid.txt", "etc/top.txt"] {
        assert!(bundle.join("rootfs").join(f).exists(), "{f}");
    }

    // Nothing changed: nothing is put again.
    let mark = reg.access_log().len();
    let again = push_all(ws.path(), &[]);
    for n in ["base", "mid", "top", "other"] {
        assert_eq!(outcome(&again, n), "unchanged", "{again}");
    }
    let log = reg.access_log_since(mark);
    assert!(
        log.iter().all(|a| a.method == "GET" || a.method == "HEAD"),
        "{log:#?}"
    );

    // The bottom image changes: it and its dependents are rebuilt, `other` is not touched.
    std::fs::write(ws.path().join("base/base.txt"), "base v2\n").unwrap();
    let mark = reg.access_log().len();
    let cascade = push_all(ws.path(), &[]);
    for n in ["base", "mid", "top"] {
        assert_eq!(outcome(&cascade, n), "pushed", "{cascade}");
    }
    assert_eq!(outcome(&cascade, "other"), "unchanged");
    let log = reg.access_log_since(mark);
    assert_eq!(manifest_puts_to(&log, "ws/other").len(), 0);
    for repo in ["ws/base", "ws/mid", "ws/top"] {
        // The image under its tag; by digest, its build cache artifact (and the referrers
        // tag that indexes it on this registry).
        let tagged = manifest_puts_to(&log, repo)
            .into_iter()
            .filter(|a| !a.uri.contains("/manifests/sha256"))
            .count();
        assert_eq!(tagged, 1, "{repo}");
    }
    let (_k, bundle) = pull_and_unpack(&format!("{host}/ws/top:1"), &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/base.txt")).unwrap(),
        "base v2\n"
    );
}

#[test]
fn rebase_mode_moves_dependents_without_uploading_their_layers() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let ws = workspace(&host);
    push_all(ws.path(), &[]);
    let file = ws.path().join("regbuild.toml");

    // Only the base is pushed anew: the tree is now outdated below it.
    std::fs::write(ws.path().join("base/base.txt"), "base v3\n").unwrap();
    run(&mut regbuild(&[
        "push",
        "-t",
        &format!("{host}/ws/base:1"),
        ws.path().join("base").to_str().unwrap(),
    ]));
    let out = regbuild(&["outdated", "--all", "--workspace", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("mid ") && l.contains("MOVED")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("top ") && l.contains("up to date")),
        "{text}"
    );

    let mark = reg.access_log().len();
    let report = push_all(ws.path(), &["--rebase"]);
    assert_eq!(outcome(&report, "base"), "unchanged", "{report}");
    assert_eq!(outcome(&report, "mid"), "rebased", "{report}");
    assert_eq!(outcome(&report, "top"), "rebased", "{report}");
    assert_eq!(outcome(&report, "other"), "unchanged", "{report}");
    let log = reg.access_log_since(mark);
    let uploads = log
        .iter()
        .filter(|a| a.method == "PUT" && a.uri.contains("/blobs/uploads/"))
        .count();
    assert_eq!(
        uploads, 2,
        "one new config per rebased image, no layer: {log:#?}"
    );
    let (_k, bundle) = pull_and_unpack(&format!("{host}/ws/top:1"), &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/base.txt")).unwrap(),
        "base v3\n"
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/top.txt")).unwrap(),
        "top\n"
    );

    let out = regbuild(&["outdated", "--all", "--workspace", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn cycles_and_missing_images_are_clear_errors() {
    let dir = context_with(&[
        ("a/Dockerfile", "FROM b\nCOPY x /x\n"),
        ("a/x", "x"),
        ("b/Dockerfile", "FROM a\nCOPY x /x\n"),
        ("b/x", "x"),
    ]);
    let file = dir.path().join("regbuild.toml");
    std::fs::write(
        &file,
        "[[image]]\nname = \"a\"\ncontext = \"a\"\ntags = [\"127.0.0.1:1/a:1\"]\n\n[[image]]\nname = \"b\"\ncontext = \"b\"\ntags = [\"127.0.0.1:1/b:1\"]\n",
    )
    .unwrap();
    let out = regbuild(&["push", "--all", "--workspace", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad workspace is bad input");
    let err = stderr(&out);
    assert!(
        err.contains("cycle") && (err.contains("a -> b -> a") || err.contains("b -> a -> b")),
        "{err}"
    );

    std::fs::write(
        &file,
        "[[image]]\nname = \"a\"\ncontext = \"a\"\ntags = [\"127.0.0.1:1/a:1\"]\ndepends_on = [\"ghost\"]\n",
    )
    .unwrap();
    let out = regbuild(&["push", "--all", "--workspace", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad workspace is bad input");
    let err = stderr(&out);
    assert!(err.contains("`ghost`") && err.contains("`a`"), "{err}");
}

fn digests(report: &Value) -> Vec<(String, String)> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_dry_run_plans_dependents_on_the_digests_their_bases_would_get() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let ws = workspace(&host);

    // A fresh workspace: no base exists in the registry yet.
    let mark = reg.access_log().len();
    let planned = push_all(ws.path(), &["--dry-run"]);
    for n in ["base", "mid", "top", "other"] {
        assert_eq!(outcome(&planned, n), "planned", "{planned}");
    }
    let log = reg.access_log_since(mark);
    assert!(
        log.iter().all(|a| a.method == "GET" || a.method == "HEAD"),
        "a dry run writes nothing: {log:#?}"
    );
    let mut pushed = digests(&push_all(ws.path(), &[]));
    let mut would = digests(&planned);
    pushed.sort();
    would.sort();
    assert_eq!(would, pushed, "the plan's digests are what the push made");

    // A patched base: its dependents are planned on its new digest.
    std::fs::write(ws.path().join("base/base.txt"), "base v2\n").unwrap();
    let planned = push_all(ws.path(), &["--dry-run"]);
    for n in ["base", "mid", "top"] {
        assert_eq!(outcome(&planned, n), "planned", "{planned}");
    }
    assert_eq!(outcome(&planned, "other"), "unchanged");
    let mut pushed = digests(&push_all(ws.path(), &[]));
    let mut would = digests(&planned);
    pushed.sort();
    would.sort();
    assert_eq!(would, pushed);
}

#[test]
fn a_dry_run_plans_a_copy_from_a_workspace_image_no_registry_holds_yet() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let dir = context_with(&[
        (
            "lib/Dockerfile",
            "FROM scratch\nCOPY lib.txt /usr/lib/lib.txt\n",
        ),
        ("lib/lib.txt", "lib v1\n"),
        (
            "app/Dockerfile",
            &format!("FROM scratch\nCOPY --from={host}/ws2/lib:1 /usr/lib/lib.txt /lib.txt\n"),
        ),
    ]);
    std::fs::write(
        dir.path().join("regbuild.toml"),
        format!(
            r#"
[[image]]
name = "app"
context = "app"
tags = ["{host}/ws2/app:1"]
depends_on = ["lib"]

[[image]]
name = "lib"
context = "lib"
tags = ["{host}/ws2/lib:1"]
"#
        ),
    )
    .unwrap();
    let mark = reg.access_log().len();
    let planned = push_all(dir.path(), &["--dry-run"]);
    assert_eq!(outcome(&planned, "lib"), "planned", "{planned}");
    assert_eq!(outcome(&planned, "app"), "planned", "{planned}");
    assert!(reg
        .access_log_since(mark)
        .iter()
        .all(|a| a.method == "GET" || a.method == "HEAD"));
    let mut pushed = digests(&push_all(dir.path(), &[]));
    let mut would = digests(&planned);
    pushed.sort();
    would.sort();
    assert_eq!(would, pushed, "the plan's digests are what the push made");
}

#[test]
fn push_all_gives_every_image_the_secrets_and_network_of_the_command_line() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    crate::run_steps::busybox_base(&host, "base/busybox");
    let dir = context_with(&[(
        "app/Dockerfile",
        &format!(
            "FROM {host}/base/busybox:1\n\
             RUN --mount=type=secret,id=tok,required=true \\\n \
               test \"$(cat /run/secrets/tok)\" = ws-secret \\\n \
               && cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /links\n"
        ),
    )]);
    std::fs::write(
        dir.path().join("regbuild.toml"),
        format!("[[image]]\nname = \"app\"\ncontext = \"app\"\ntags = [\"{host}/ws/app:1\"]\n"),
    )
    .unwrap();
    let secret = dir.path().join("tok");
    std::fs::write(&secret, "ws-secret").unwrap();
    let file = dir.path().join("regbuild.toml");
    let file = file.to_str().unwrap();

    // Without the secret the required mount fails the step: the flag is what carries it.
    let out = regbuild(&["push", "--all", "--workspace", file])
        .output()
        .unwrap();
    assert!(!out.status.success(), "built without the secret");
    assert!(stderr(&out).contains("tok"), "{}", stderr(&out));

    let src = format!("id=tok,src={}", secret.display());
    let report = push_all(dir.path(), &["--secret", &src, "--network", "none"]);
    assert_eq!(outcome(&report, "app"), "pushed", "{report}");
    // --network none reached the step: it saw loopback only.
    let (_dir, bundle) = pull_and_unpack(&format!("{host}/ws/app:1"), &[]);
    let links = std::fs::read_to_string(bundle.join("rootfs/links")).unwrap();
    assert_eq!(links, "lo\n", "only loopback");
}

/// Options that would apply to one image are refused with `--all` (each image's tags,
/// platforms and build args come from the workspace file), never silently ignored.
#[test]
fn push_all_refuses_the_options_of_a_single_image() {
    for extra in [
        &["--sbom"][..],
        &["--squash"],
        &["--cache-from", "127.0.0.1:1/x:1"],
        &["--platform", "linux/arm64"],
        &["--registry-cache", "max"],
    ] {
        let mut args = vec!["push", "--all"];
        args.extend_from_slice(extra);
        let out = regbuild(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("'--all' cannot be used with") && stderr(&out).contains(extra[0]),
            "{extra:?}: {}",
            stderr(&out)
        );
    }
}
