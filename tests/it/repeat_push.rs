//! Pushing what a registry already holds, on the real registry: an unchanged re-push writes
//! no manifest, and a build pushed before to one repository is mounted, not re-uploaded,
//! when pushed to another repository of the same registry.

use crate::common::*;
use serde_json::Value;

fn actions(report: &Value) -> Vec<(String, String)> {
    report["manifests"]
        .as_array()
        .expect("a manifests list")
        .iter()
        .map(|m| {
            (
                m["reference"].as_str().unwrap().to_string(),
                m["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_unchanged_re_push_puts_no_manifest_and_says_unchanged() {
    let reg = Distribution::start();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY app.txt /app.txt\nUSER 1\n",
        ),
        ("app.txt", "version 1\n"),
    ]);
    let tags = vec![
        format!("{}/apps/same:1", reg.host),
        format!("{}/apps/same:latest", reg.host),
    ];
    let (first, _) = push_json_to(ctx.path(), &tags, &[], None);

    let mark = reg.access_log().len();
    let (second, _) = push_json_to(ctx.path(), &tags, &[], None);
    let log = reg.access_log_since(mark);
    assert_eq!(second["digest"], first["digest"]);
    assert!(
        manifest_puts(&log).is_empty(),
        "no manifest written: {log:#?}"
    );
    assert!(actions(&first).iter().all(|(_, a)| a == "put"), "{first:#}");
    assert_eq!(
        actions(&second),
        vec![
            (tags[0].clone(), "unchanged".to_string()),
            (tags[1].clone(), "unchanged".to_string())
        ]
    );
    // The JSON keeps its shape: the old fields are all there.
    for field in ["digest", "references", "blobs", "bytes_uploaded"] {
        assert!(second.get(field).is_some(), "{field} in {second:#}");
    }
    let out = run(&mut regbuild(&[
        "push",
        "--no-progress",
        "-t",
        &tags[0],
        ctx.path().to_str().unwrap(),
    ]));
    assert!(
        stderr(&out).contains(&format!("unchanged {}", tags[0])),
        "{}",
        stderr(&out)
    );

    // A changed image moves the tag: its manifest is put.
    std::fs::write(ctx.path().join("app.txt"), "version 2\n").unwrap();
    let mark = reg.access_log().len();
    let (third, _) = push_json_to(ctx.path(), &tags[..1], &[], None);
    assert_ne!(third["digest"], first["digest"]);
    assert_eq!(manifest_puts(&reg.access_log_since(mark)).len(), 1);
    assert_eq!(
        skopeo_digest(&tags[0], &[]),
        third["digest"].as_str().unwrap()
    );
}

#[test]
fn an_unchanged_index_re_push_puts_neither_children_nor_index() {
    let reg = Distribution::start();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY app.txt /app.txt\nUSER 1\n",
        ),
        ("app.txt", "multi\n"),
    ]);
    let tags = vec![format!("{}/apps/multi:1", reg.host)];
    let platforms = ["--platform", "linux/amd64,linux/arm64"];
    let (first, _) = push_json_to(ctx.path(), &tags, &platforms, None);
    let mark = reg.access_log().len();
    let (second, _) = push_json_to(ctx.path(), &tags, &platforms, None);
    assert_eq!(second["digest"], first["digest"]);
    let log = reg.access_log_since(mark);
    assert!(manifest_puts(&log).is_empty(), "{log:#?}");
    assert_eq!(actions(&first).len(), 3, "two children and the index");
    assert!(actions(&second).iter().all(|(_, a)| a == "unchanged"));
}

/// Mount POSTs from repository `from`, their query decoded (`blob digest`, status).
fn mounts_from(log: &[Access], from: &str) -> Vec<(String, u16)> {
    log.iter()
        .filter(|a| a.method == "POST")
        .map(|a| (a.uri.replace("%3A", ":").replace("%2F", "/"), a.status))
        .filter(|(uri, _)| uri.contains(&format!("from={from}")))
        .collect()
}

fn upload_bodies(log: &[Access]) -> usize {
    log.iter()
        .filter(|a| (a.method == "PATCH" || a.method == "PUT") && a.uri.contains("/blobs/uploads/"))
        .count()
}

fn actions_of_blobs(report: &Value) -> Vec<String> {
    report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_build_pushed_to_a_second_repository_is_mounted_from_the_first() {
    let reg = Distribution::start();
    let cache = tempfile::tempdir().unwrap();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY lib/ /lib/\nCOPY app.txt /app.txt\nUSER 1\n",
        ),
        ("lib/big.bin", &"0123456789abcdef".repeat(64 * 1024)),
        ("app.txt", "app\n"),
    ]);
    let first_tag = vec![format!("{}/team/first:1", reg.host)];
    let (first, _) = push_json_to(ctx.path(), &first_tag, &[], Some(cache.path()));
    assert!(first["bytes_uploaded"].as_u64().unwrap() > 0);

    // A second repository, another command: every blob is mounted from the first.
    let mark = reg.access_log().len();
    let second_tag = vec![format!("{}/team/second:1", reg.host)];
    let (second, _) = push_json_to(ctx.path(), &second_tag, &[], Some(cache.path()));
    let log = reg.access_log_since(mark);
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(second["bytes_uploaded"], 0, "{second:#}");
    assert!(
        actions_of_blobs(&second).iter().all(|a| a == "mounted"),
        "{second:#}"
    );
    assert_eq!(
        mounts_from(&log, "team/first")
            .iter()
            .filter(|(_, status)| *status == 201)
            .count(),
        second["blobs"].as_array().unwrap().len()
    );
    assert_eq!(upload_bodies(&log), 0, "no bytes sent: {log:#?}");
    let (_k, bundle) = pull_and_unpack(&second_tag[0], &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/app.txt")).unwrap(),
        "app\n"
    );

    // The remembered repository lost a layer: its mount fails and the layer is uploaded.
    let manifest = raw_manifest(&second_tag[0]);
    let big = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    for repo in ["team/first", "team/second"] {
        assert_eq!(
            http_status("DELETE", &reg.host, &format!("/v2/{repo}/blobs/{big}")),
            Some(202),
            "{repo}"
        );
    }
    let mark = reg.access_log().len();
    let third_tag = vec![format!("{}/team/third:1", reg.host)];
    let (third, _) = push_json_to(ctx.path(), &third_tag, &[], Some(cache.path()));
    let log = reg.access_log_since(mark);
    let big_action = third["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == big.as_str())
        .map(|b| b["action"].as_str().unwrap().to_string());
    assert_eq!(big_action.as_deref(), Some("uploaded"), "{third:#}");
    assert!(
        mounts_from(&log, "team/second")
            .iter()
            .any(|(uri, status)| uri.contains(&big) && *status == 202),
        "the mount was tried and refused: {log:#?}"
    );
    let (_k, bundle) = pull_and_unpack(&third_tag[0], &[]);
    assert_eq!(
        std::fs::read(bundle.join("rootfs/lib/big.bin")).unwrap(),
        "0123456789abcdef".repeat(64 * 1024).as_bytes()
    );

    // --no-cache does not read the record: no mount from a repository pushed before.
    let mark = reg.access_log().len();
    let fourth_tag = vec![format!("{}/team/fourth:1", reg.host)];
    let (fourth, _) = push_json_to(ctx.path(), &fourth_tag, &["--no-cache"], Some(cache.path()));
    let log = reg.access_log_since(mark);
    assert_eq!(fourth["digest"], first["digest"]);
    assert!(
        log.iter().all(|a| !a.uri.contains("mount=")),
        "no mounts: {log:#?}"
    );
    assert!(fourth["bytes_uploaded"].as_u64().unwrap() > 0);
}
