//! `regbuild inspect` against the real CNCF distribution registry, with images made by umoci
//! (overwrites, whiteouts, opaque directories, setuid files) and pushed by skopeo.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use serde_json::Value;

/// One `umoci insert`, i.e. one layer.
enum Step<'a> {
    /// A file at `path` with `content` and `mode`.
    File(&'a str, Vec<u8>, u32),
    /// A whiteout of `path`.
    Whiteout(&'a str),
    /// The directory `path` with `files` (name, content), masking lower content (`--opaque`).
    OpaqueDir(&'a str, Vec<(&'a str, Vec<u8>)>),
}

/// Builds `steps` into an OCI layout with umoci and pushes it to `reference` with skopeo.
fn push_image(reference: &str, steps: &[Step]) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    let image = format!("{}:t", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    for (i, step) in steps.iter().enumerate() {
        let mut insert = Command::new("umoci");
        insert.args(["insert", "--image", &image]);
        match step {
            Step::File(path, content, mode) => {
                let src = dir.path().join(format!("f{i}"));
                std::fs::write(&src, content).unwrap();
                std::fs::set_permissions(&src, std::fs::Permissions::from_mode(*mode)).unwrap();
                insert.arg(&src).arg(path);
            }
            Step::Whiteout(path) => {
                insert.arg("--whiteout").arg(path);
            }
            Step::OpaqueDir(path, files) => {
                let src = dir.path().join(format!("d{i}"));
                std::fs::create_dir(&src).unwrap();
                for (name, content) in files {
                    std::fs::write(src.join(name), content).unwrap();
                }
                insert.arg("--opaque").arg(&src).arg(path);
            }
        }
        run(&mut insert);
    }
    skopeo_copy(
        &format!("oci:{}:t", layout.display()),
        &format!("docker://{reference}"),
        &[],
    );
}

fn inspect(args: &[&str]) -> Output {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    regbuild(&all).output().expect("regbuild runs")
}

fn inspect_json(reference: &str) -> Value {
    let out = inspect(&["--json", reference]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    json(&out)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn an_overwritten_file_is_wasted_and_fails_the_ci_gate() {
    let reg = Distribution::start();
    let reference = format!("{}/waste/app:v1", reg.host);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci_image(
        &layout,
        "v1",
        &[
            ("/data/blob.bin", noise(400_000, 1)),
            ("/data/blob.bin", noise(400_000, 2)),
        ],
        None,
    );
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{reference}"),
        &[],
    );

    let report = inspect_json(&reference);
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{report}");
    assert!(u(&report["wasted_bytes"]) >= 400_000, "{report}");
    assert!(u(&layers[0]["wasted_bytes"]) >= 400_000, "{report}");
    assert_eq!(u(&layers[1]["wasted_bytes"]), 0, "{report}");
    assert!(report["efficiency"].as_f64().unwrap() < 1.0, "{report}");
    assert_eq!(u(&report["total_size"]), 800_000, "{report}");
    assert!((report["efficiency"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    assert!((report["user_wasted_percent"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    for l in layers {
        assert_eq!(u(&l["files"]), 1, "{report}");
        assert!(l["digest"].as_str().unwrap().starts_with("sha256:"));
        assert!(u(&l["size"]) > 400_000, "noise does not compress: {report}");
        assert!(u(&l["uncompressed_size"]) > 400_000, "{report}");
        assert!(
            l["created_by"].is_string(),
            "umoci writes history: {report}"
        );
        assert_eq!(l["setuid_files"], serde_json::json!([]));
    }
    assert_eq!(report["digest"], skopeo_digest(&reference, &[]));

    // The gate: exit 1, the failing rule named with actual and threshold.
    let out = inspect(&["--ci", "--highest-wasted-bytes", "1000", &reference]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("FAIL: highestWastedBytes"), "{text}");
    assert!(
        text.contains("wasted 400000 bytes (390.6 KiB) > threshold 1000 bytes"),
        "{text}"
    );

    // In JSON too, with the rule results in the object.
    let out = inspect(&["--json", "--ci", "--lowest-efficiency", "0.9", &reference]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = json(&out);
    assert_eq!(v["ci"]["passed"], false);
    assert_eq!(v["ci"]["rules"][0]["name"], "lowestEfficiency");
    assert!(
        stderr(&out).contains("lowestEfficiency"),
        "{}",
        stderr(&out)
    );

    // Thresholds that hold pass; without --ci thresholds are ignored.
    let out = inspect(&["--ci", "--highest-wasted-bytes", "1MB", &reference]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("PASS: highestWastedBytes"),
        "{}",
        stdout(&out)
    );
    let out = inspect(&["--highest-wasted-bytes", "1000", &reference]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Efficiency:          50.00 %"),
        "{}",
        stdout(&out)
    );

    // Bad thresholds are usage errors.
    let out = inspect(&["--ci", "--highest-wasted-bytes", "abc", &reference]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = inspect(&["--ci", "--lowest-efficiency", "1.5", &reference]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_clean_image_passes_the_ci_gate() {
    let reg = Distribution::start();
    let reference = format!("{}/clean/app:v1", reg.host);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci_image(
        &layout,
        "v1",
        &[
            ("/etc/motd", b"hello\n".to_vec()),
            ("/app/data.bin", noise(300_000, 3)),
            ("/app/other.bin", noise(1000, 4)),
        ],
        None,
    );
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{reference}"),
        &[],
    );
    let out = inspect(&[
        "--ci",
        "--highest-wasted-bytes",
        "1000",
        "--lowest-efficiency",
        "0.99",
        "--highest-user-wasted-percent",
        "0.01",
        &reference,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("PASS: highestWastedBytes"), "{text}");
    assert!(text.contains("PASS: lowestEfficiency"), "{text}");
    assert!(text.contains("CI: PASS"), "{text}");

    let report = inspect_json(&reference);
    assert_eq!(u(&report["wasted_bytes"]), 0);
    assert_eq!(report["efficiency"].as_f64(), Some(1.0));
    assert_eq!(u(&report["total_size"]), 6 + 300_000 + 1000);
}

#[test]
fn whiteouts_and_opaque_directories_waste_the_hidden_files() {
    let reg = Distribution::start();
    let reference = format!("{}/wh/app:v1", reg.host);
    push_image(
        &reference,
        &[
            Step::File("/app/a.bin", noise(100_000, 5), 0o644),
            Step::File("/app/sub/b.bin", noise(50_000, 6), 0o644),
            Step::Whiteout("/app/sub"),
            Step::OpaqueDir("/app", vec![("new.txt", b"0123456789".to_vec())]),
        ],
    );
    let report = inspect_json(&reference);
    let wasted: Vec<u64> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| u(&l["wasted_bytes"]))
        .collect();
    assert_eq!(wasted, vec![100_000, 50_000, 0, 0], "{report}");
    assert_eq!(u(&report["wasted_bytes"]), 150_000, "{report}");
    assert_eq!(u(&report["total_size"]), 150_010, "{report}");
    let efficiency = report["efficiency"].as_f64().unwrap();
    assert!((efficiency - 10.0 / 150_010.0).abs() < 1e-9, "{report}");
}

#[test]
fn setuid_files_are_listed() {
    let reg = Distribution::start();
    let reference = format!("{}/suid/app:v1", reg.host);
    push_image(
        &reference,
        &[
            Step::File("/usr/bin/plain", b"#!/bin/sh\n".to_vec(), 0o755),
            Step::File("/usr/bin/escalate", b"#!/bin/sh\nid\n".to_vec(), 0o4755),
        ],
    );
    let report = inspect_json(&reference);
    assert_eq!(
        report["setuid_files"],
        serde_json::json!(["/usr/bin/escalate"]),
        "{report}"
    );
    assert_eq!(report["layers"][0]["setuid_files"], serde_json::json!([]));
    assert_eq!(
        report["layers"][1]["setuid_files"],
        serde_json::json!(["/usr/bin/escalate"])
    );
    let out = inspect(&[&reference]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("4755  /usr/bin/escalate  (layer 1)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_corrupted_layer_fails_on_its_digest() {
    let reg = Distribution::start();
    let reference = format!("{}/bad/app:v1", reg.host);
    push_image(&reference, &[Step::File("/x.bin", noise(20_000, 7), 0o644)]);
    let report = inspect_json(&reference);
    let digest = report["layers"][0]["digest"].as_str().unwrap().to_string();
    let hex = digest.trim_start_matches("sha256:");
    let data = reg
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    assert!(Path::new(&data).exists(), "{}", data.display());
    // Same length, one byte flipped near the end: the gzip stream may still decode.
    let mut bytes = std::fs::read(&data).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let out = inspect(&["--json", &reference]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains(&digest), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not match its digest"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn platform_picks_the_manifest_from_an_index() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    // amd64: one clean layer; arm64: the same path twice (waste).
    umoci_image(&layout, "amd64", &[("/f", noise(1000, 8))], None);
    umoci_image(
        &layout,
        "arm64",
        &[("/f", noise(3000, 9)), ("/f", noise(2000, 10))],
        Some("arm64"),
    );
    let mut children = Vec::new();
    for (tag, arch) in [("amd64", "amd64"), ("arm64", "arm64")] {
        let reference = format!("{host}/multi/app:{tag}");
        skopeo_copy(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{reference}"),
            &[],
        );
        let raw = run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]))
        .stdout;
        children.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": skopeo_digest(&reference, &[]),
            "size": raw.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children,
    }))
    .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &index).unwrap();
    run(Command::new("curl").args([
        "-sf",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.index.v1+json",
        "--data-binary",
        &format!("@{}", file.path().display()),
        &format!("http://{host}/v2/multi/app/manifests/multi"),
    ]));
    let reference = format!("{host}/multi/app:multi");

    // Default: linux/amd64.
    let report = inspect_json(&reference);
    assert_eq!(report["platform"], "linux/amd64");
    assert_eq!(report["manifest_digest"], children[0]["digest"], "{report}");
    assert_eq!(report["digest"], skopeo_digest(&reference, &[]), "{report}");
    assert_eq!(u(&report["wasted_bytes"]), 0, "{report}");

    let out = inspect(&["--json", "--platform", "linux/arm64", &reference]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = json(&out);
    assert_eq!(report["manifest_digest"], children[1]["digest"], "{report}");
    assert_eq!(u(&report["wasted_bytes"]), 3000, "{report}");
    assert_eq!(u(&report["total_size"]), 5000, "{report}");

    let out = inspect(&["--platform", "linux/s390x", &reference]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("linux/amd64, linux/arm64"),
        "{}",
        stderr(&out)
    );
    let out = inspect(&["--platform", "linux", &reference]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
