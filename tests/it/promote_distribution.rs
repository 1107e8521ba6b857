//! `regbuild promote` against the real CNCF distribution registry, with images made by umoci
//! and pushed by skopeo, checked by skopeo and the registry's own access log.

use std::process::Command;

use crate::common::*;
use serde_json::Value;

#[test]
fn promote_on_one_registry_mounts_every_blob_and_uploads_nothing() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    third_party_image(&host, "staging/app", "v1");
    let mark = reg.access_log().len();

    let out = run(&mut regbuild(&[
        "promote",
        "--json",
        &format!("{host}/staging/app:v1"),
        &format!("{host}/prod/app:v1"),
    ]));
    let report = json(&out);
    let blobs = report["blobs"].as_array().unwrap();
    assert_eq!(blobs.len(), 4, "config + 3 layers: {report}");
    assert!(blobs.iter().all(|b| b["action"] == "mounted"), "{report}");
    assert_eq!(report["bytes_uploaded"], 0);
    assert_eq!(report["references"][0], format!("{host}/prod/app:v1"));

    let log = reg.access_log_since(mark);
    let mounts: Vec<_> = log
        .iter()
        .filter(|a| a.method == "POST" && a.uri.contains("mount=") && a.status == 201)
        .collect();
    assert_eq!(mounts.len(), 4, "one mount (201) per blob: {log:#?}");
    let uploads: Vec<_> = log
        .iter()
        .filter(|a| a.uri.contains("/blobs/uploads/") && !a.uri.contains("mount="))
        .collect();
    assert!(uploads.is_empty(), "no upload session: {uploads:#?}");
    let downloads: Vec<_> = log
        .iter()
        .filter(|a| a.method == "GET" && a.uri.contains("/blobs/"))
        .collect();
    assert!(downloads.is_empty(), "no blob downloaded: {downloads:#?}");

    assert_eq!(
        skopeo_digest(&format!("{host}/prod/app:v1"), &[]),
        skopeo_digest(&format!("{host}/staging/app:v1"), &[]),
        "the manifest bytes are kept"
    );
    assert_eq!(
        report["digest"],
        skopeo_digest(&format!("{host}/prod/app:v1"), &[])
    );
}

#[test]
fn promoting_again_finds_every_blob_and_prints_the_digest_last() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    third_party_image(&host, "src", "v1");
    run(&mut regbuild(&[
        "promote",
        &format!("{host}/src:v1"),
        &format!("{host}/dst:v1"),
    ]));
    let mark = reg.access_log().len();
    let out = run(&mut regbuild(&[
        "promote",
        &format!("{host}/src:v1"),
        &format!("{host}/dst:v2"),
    ]));
    let last = stdout(&out).lines().last().unwrap_or_default().to_string();
    let digest = skopeo_digest(&format!("{host}/src:v1"), &[]);
    assert_eq!(last, format!("{host}/dst@{digest}"));
    let log = reg.access_log_since(mark);
    assert!(
        log.iter()
            .all(|a| !(a.method == "POST" || a.method == "PATCH")),
        "nothing to mount or upload: {log:#?}"
    );
    assert!(stderr(&out).contains("4 exist"), "{}", stderr(&out));
}

#[test]
fn promoting_a_two_platform_index_keeps_its_digest() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    third_party_index(&host, "multi/src");
    let src_digest = skopeo_digest(&format!("{host}/multi/src:multi"), &[]);
    let mark = reg.access_log().len();
    let out = run(&mut regbuild(&[
        "promote",
        "--json",
        &format!("{host}/multi/src:multi"),
        &format!("{host}/multi/dst:release"),
    ]));
    let report = json(&out);
    let log = reg.access_log_since(mark);
    assert!(
        !log.iter()
            .any(|a| a.method == "GET" && a.uri.contains("/blobs/")),
        "no blob downloaded on one registry: {log:#?}"
    );
    assert!(report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["action"] == "mounted"));
    assert_eq!(report["digest"], src_digest.as_str());
    assert_eq!(
        skopeo_digest(&format!("{host}/multi/dst:release"), &[]),
        src_digest
    );
    // Both children are there under their digests, and each platform resolves.
    for arch in ["amd64", "arm64"] {
        let out = run(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--override-os=linux",
            &format!("--override-arch={arch}"),
            &format!("docker://{host}/multi/dst:release"),
        ]));
        let inspect: Value = json(&out);
        assert_eq!(inspect["Architecture"], arch);
    }
}

#[test]
fn cross_registry_promote_to_an_authenticated_registry_uses_docker_config() {
    let open = Distribution::start();
    let locked = Distribution::start_with_user("ci-bot", "s3cret-pass");
    third_party_index(&open.host, "team/app");
    let src = format!("{}/team/app:multi", open.host);
    let dst = format!("{}/mirror/app:multi", locked.host);

    // Without credentials: a clear failure naming the registry, nothing tagged. No Docker
    // config at all is no mistake: nothing is warned of.
    let none = tempfile::tempdir().unwrap();
    let out = regbuild(&["promote", &src, &dst])
        .env("DOCKER_CONFIG", none.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&locked.host) && err.contains("401"), "{err}");
    assert!(!err.contains("cannot read the Docker config"), "{err}");

    // A Docker config that is not JSON is said, not silently taken as no credentials.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("config.json"), "{\"auths\": {").unwrap();
    let out = regbuild(&["promote", &src, &dst])
        .env("DOCKER_CONFIG", broken.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot read the Docker config"), "{err}");

    let config = docker_config_with(&locked.host, "ci-bot", "s3cret-pass");
    let out = run(
        regbuild(&["promote", "--json", "-vv", &src, &dst]).env("DOCKER_CONFIG", config.path())
    );
    assert!(
        !stderr(&out).contains("s3cret-pass"),
        "credentials never logged"
    );
    assert!(!stdout(&out).contains("s3cret-pass"));
    let report = json(&out);
    let blobs = report["blobs"].as_array().unwrap();
    assert!(blobs.iter().all(|b| b["action"] == "uploaded"), "{report}");
    let total: u64 = blobs.iter().map(|b| b["size"].as_u64().unwrap()).sum();
    assert_eq!(report["bytes_uploaded"], total);

    let creds = "--src-creds=ci-bot:s3cret-pass";
    let back = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("docker://{dst}"),
        &format!("oci:{}:pulled", back.path().join("out").display()),
        &["--all", creds],
    );
    assert_eq!(
        skopeo_digest(&dst, &["--creds=ci-bot:s3cret-pass"]),
        skopeo_digest(&src, &[])
    );
    // Nothing was downloaded from the destination, every blob of the source exactly once.
    let gets = open
        .access_log()
        .into_iter()
        .filter(|a| a.method == "GET" && a.uri.contains("/blobs/sha256:"))
        .count();
    assert_eq!(gets, blobs.len(), "each blob streamed once");
}

/// Distribution 2.8 has no referrers API: a signature stored under the `sha256-<hex>` tag
/// schema (as cosign/oras do there) is found that way and promoted, and the destination gets
/// its own tag-schema index.
#[test]
fn referrers_found_by_the_tag_schema_are_promoted() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    third_party_image(&host, "signed/src", "v1");
    let subject = skopeo_digest(&format!("{host}/signed/src:v1"), &[]);
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/signed/src:v1"),
    ]))
    .stdout;
    // The signature artifact: an empty config, one layer, subject = the image.
    let curl = |args: &[&str]| run(Command::new("curl").arg("-sf").args(args));
    let put_blob = |data: &[u8]| -> String {
        let digest = sha256(data);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), data).unwrap();
        curl(&[
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", file.path().display()),
            "-H",
            "Content-Type: application/octet-stream",
            "-o",
            "/dev/null",
            "-D",
            "-",
            &format!("http://{host}/v2/signed/src/blobs/uploads/?digest={digest}"),
        ]);
        // distribution answers 202 to a single POST: finish with a PUT to its Location.
        if !reg_has_blob(&host, "signed/src", &digest) {
            let out = curl(&[
                "-X",
                "POST",
                "-D",
                "-",
                "-o",
                "/dev/null",
                &format!("http://{host}/v2/signed/src/blobs/uploads/"),
            ]);
            let headers = String::from_utf8_lossy(&out.stdout).to_string();
            let loc = headers
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Location: ")
                        .or_else(|| l.strip_prefix("location: "))
                })
                .unwrap()
                .trim()
                .to_string();
            let sep = if loc.contains('?') { '&' } else { '?' };
            curl(&[
                "-X",
                "PUT",
                "--data-binary",
                &format!("@{}", file.path().display()),
                "-H",
                "Content-Type: application/octet-stream",
                &format!("{loc}{sep}digest={digest}"),
            ]);
        }
        digest
    };
    let empty = put_blob(b"{}");
    let sig = put_blob(b"a signature");
    let referrer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 11}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": raw.len()},
    }))
    .unwrap();
    let referrer_digest = sha256(&referrer);
    let put_manifest = |reference: &str, body: &[u8], media: &str| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), body).unwrap();
        curl(&[
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {media}"),
            "--data-binary",
            &format!("@{}", file.path().display()),
            &format!("http://{host}/v2/signed/src/manifests/{reference}"),
        ]);
    };
    put_manifest(
        &referrer_digest,
        &referrer,
        "application/vnd.oci.image.manifest.v1+json",
    );
    let tag_index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": referrer_digest, "size": referrer.len(),
                       "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json"}],
    }))
    .unwrap();
    put_manifest(
        &subject.replace(':', "-"),
        &tag_index,
        "application/vnd.oci.image.index.v1+json",
    );

    let out = run(&mut regbuild(&[
        "promote",
        "--json",
        &format!("{host}/signed/src:v1"),
        &format!("{host}/signed/prod:v1"),
    ]));
    let report: serde_json::Value = json(&out);
    assert_eq!(report["digest"], subject.as_str());
    assert!(
        reg_has_blob(&host, "signed/prod", &sig),
        "the signature's layer came along"
    );
    assert_eq!(
        skopeo_digest(&format!("{host}/signed/prod@{referrer_digest}"), &[]),
        referrer_digest
    );
    let index = raw_manifest(&format!("{host}/signed/prod:{}", subject.replace(':', "-")));
    assert_eq!(index["manifests"][0]["digest"], referrer_digest.as_str());
}

fn reg_has_blob(host: &str, repo: &str, digest: &str) -> bool {
    http_status("HEAD", host, &format!("/v2/{repo}/blobs/{digest}")) == Some(200)
}
