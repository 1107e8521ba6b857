//! Pushing what a registry already holds, on the real registry: an unchanged re-push writes
//! no manifest, and a build pushed before to one repository is mounted, not re-uploaded,
//! when pushed to another repository of the same registry.

mod common;

use common::*;
use serde_json::Value;

fn push_json(ctx: &std::path::Path, tags: &[String], extra: &[&str]) -> (Value, String) {
    let mut args = vec!["push".to_string(), "--json".into()];
    for t in tags {
        args.push("-t".into());
        args.push(t.clone());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(ctx.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&mut regbuild(&argv));
    (
        serde_json::from_slice(&out.stdout).expect("push --json prints JSON"),
        stderr(&out),
    )
}

fn manifest_puts(log: &[Access]) -> Vec<&Access> {
    log.iter()
        .filter(|a| a.method == "PUT" && a.uri.contains("/manifests/"))
        .collect()
}

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
    let (first, _) = push_json(ctx.path(), &tags, &[]);
    assert!(actions(&first).iter().all(|(_, a)| a == "put"), "{first:#}");

    let mark = reg.access_log().len();
    let (second, _) = push_json(ctx.path(), &tags, &[]);
    let log = reg.access_log_since(mark);
    assert_eq!(second["digest"], first["digest"]);
    assert!(
        manifest_puts(&log).is_empty(),
        "no manifest written: {log:#?}"
    );
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
    let (third, _) = push_json(ctx.path(), &tags[..1], &[]);
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
    let (first, _) = push_json(ctx.path(), &tags, &platforms);
    assert_eq!(actions(&first).len(), 3, "two children and the index");
    let mark = reg.access_log().len();
    let (second, _) = push_json(ctx.path(), &tags, &platforms);
    assert_eq!(second["digest"], first["digest"]);
    let log = reg.access_log_since(mark);
    assert!(manifest_puts(&log).is_empty(), "{log:#?}");
    assert!(actions(&second).iter().all(|(_, a)| a == "unchanged"));
}
