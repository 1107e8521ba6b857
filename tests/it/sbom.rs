//! `push --sbom`: SPDX 2.3 and CycloneDX 1.6 documents as referrers of the image, checked by
//! the reference tools from PyPI (spdx-tools' validator, cyclonedx-python-lib's strict JSON
//! validator for 1.6): an image with `RUN apt-get install hello` on the Debian base lists
//! `hello` and `libc6` with versions and purls, `hello` attributed to the RUN step, the base
//! by digest; the same build gives the same documents. `push --metadata-file` writes what
//! buildx writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::run_debian::{debian_base, hello_dockerfile, push_base};
use serde_json::Value;

/// The Python of the validators' virtual environment (scripts/setup.sh makes it).
fn validators() -> Option<PathBuf> {
    let py = repo_root().join("target/sbom-venv/bin/python");
    py.exists().then_some(py)
}

const SPDX_CHECK: &str = "
import sys
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
messages = validate_full_spdx_document(parse_file(sys.argv[1]))
for m in messages:
    print(m.validation_message)
sys.exit(1 if messages else 0)
";

const CYCLONEDX_CHECK: &str = "
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
print(error or '')
sys.exit(1 if error else 0)
";

/// The referrers of `digest` in `repo` (distribution 2.8: the tag schema), by artifact type.
fn referrers(host: &str, repo: &str, digest: &str) -> Vec<(String, String)> {
    let index = raw_manifest(&format!("{host}/{repo}:{}", digest.replace(':', "-")));
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["artifactType"].as_str().unwrap_or_default().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The document an SBOM artifact holds, written to `dir`.
fn document(host: &str, repo: &str, artifact: &str, dir: &Path, ext: &str) -> (PathBuf, Value) {
    let manifest = raw_manifest(&format!("{host}/{repo}@{artifact}"));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let out =
        run(Command::new("curl").args(["-sf", &format!("http://{host}/v2/{repo}/blobs/{layer}")]));
    // The SPDX parser picks its format by the file name's extension.
    let path = dir.join(format!("{}.{ext}", layer.replace(':', "-")));
    std::fs::write(&path, &out.stdout).unwrap();
    (path, serde_json::from_slice(&out.stdout).unwrap())
}

fn check(python: &Path, script: &str, file: &Path) {
    let out = Command::new(python)
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} refused {}: {}{}",
        python.display(),
        file.display(),
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn an_apt_installed_package_is_in_both_sboms_which_the_reference_tools_accept() {
    if !needs_root("debootstrap makes the Debian base") {
        return;
    }
    let Some(python) = validators() else {
        not_here("the SBOM validators in target/sbom-venv (scripts/setup.sh makes them)");
        return;
    };
    let base = debian_base();
    let reg = Distribution::start();
    let host = reg.host.clone();
    let from = push_base(&host, base);
    let ctx = context_with(&[("Dockerfile", &hello_dockerfile(&from))]);
    let tag = format!("{host}/apps/sbom:1");
    let (report, _) = push_json(ctx.path(), &tag, &["--sbom"]);
    let digest = report["digest"].as_str().unwrap().to_string();
    let found = referrers(&host, "apps/sbom", &digest);
    let of = |t: &str| {
        found
            .iter()
            .find(|(kind, _)| kind == t)
            .unwrap_or_else(|| panic!("no {t} referrer: {found:?}"))
            .1
            .clone()
    };
    let dir = tempfile::tempdir().unwrap();

    let (spdx_file, spdx) = document(
        &host,
        "apps/sbom",
        &of("application/spdx+json"),
        dir.path(),
        "spdx.json",
    );
    check(&python, SPDX_CHECK, &spdx_file);
    let packages = spdx["packages"].as_array().unwrap();
    let package = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in the SPDX document"))
    };
    for name in ["hello", "libc6"] {
        let p = package(name);
        let version = p["versionInfo"].as_str().unwrap();
        assert!(!version.is_empty(), "{p}");
        let purl = p["externalRefs"][0]["referenceLocator"].as_str().unwrap();
        assert!(
            purl.starts_with(&format!("pkg:deb/debian/{name}@{version}?arch=")),
            "{purl}"
        );
    }
    assert!(
        package("hello")["comment"]
            .as_str()
            .unwrap()
            .contains("apt-get install"),
        "hello is attributed to the RUN step"
    );
    assert!(
        !package("libc6")["comment"]
            .as_str()
            .unwrap()
            .contains("apt-get install"),
        "libc6 came with the base"
    );
    assert!(
        packages
            .iter()
            .any(|p| p["versionInfo"] == base.manifest_digest.as_str()),
        "the base by digest"
    );

    let (cdx_file, cdx) = document(
        &host,
        "apps/sbom",
        &of("application/vnd.cyclonedx+json"),
        dir.path(),
        "cdx.json",
    );
    check(&python, CYCLONEDX_CHECK, &cdx_file);
    let components = cdx["components"].as_array().unwrap();
    for name in ["hello", "libc6"] {
        let c = components
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in the CycloneDX document"));
        assert!(c["purl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("pkg:deb/debian/{name}@")));
    }
    assert_eq!(cdx["metadata"]["component"]["version"], digest.as_str());
    let shown = run(&mut regbuild(&["inspect", "--sbom=cyclonedx", &tag]));
    assert_eq!(serde_json::from_slice::<Value>(&shown.stdout).unwrap(), cdx);

    // The same build: the same documents, nothing new referring to the image.
    let (again, _) = push_json(ctx.path(), &tag, &["--sbom"]);
    assert_eq!(again["digest"], digest.as_str());
    assert_eq!(referrers(&host, "apps/sbom", &digest), found);
}

#[test]
fn the_metadata_file_is_what_buildx_writes_for_the_pushed_image() {
    let reg = Distribution::start();
    let ctx = context_with(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\nUSER 1\n"),
        ("a.txt", "a\n"),
    ]);
    let tags = [
        format!("{}/apps/meta:1", reg.host),
        format!("{}/apps/meta:latest", reg.host),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metadata.json");
    let (report, _) = push_json_to(
        ctx.path(),
        &tags,
        &["--metadata-file", file.to_str().unwrap()],
        None,
    );
    let m: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let digest = skopeo_digest(&tags[0], &[]);
    assert_eq!(report["digest"], digest.as_str());
    assert_eq!(m["containerimage.digest"], digest.as_str());
    assert_eq!(m["containerimage.descriptor"]["digest"], digest.as_str());
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", tags[0]),
    ]))
    .stdout;
    assert_eq!(m["containerimage.descriptor"]["size"], raw.len());
    assert_eq!(
        m["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        m["containerimage.config.digest"],
        manifest["config"]["digest"]
    );
    assert_eq!(m["image.name"], tags.join(",").as_str());
}

#[test]
fn provenance_is_an_in_toto_slsa_v1_statement_of_the_image_and_its_inputs() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    crate::run_steps::busybox_base(&host, "base/busybox");
    let base_digest = skopeo_digest(&format!("{host}/base/busybox:1"), &[]);
    let dockerfile = format!(
        "FROM {host}/base/busybox:1\nARG V\nRUN --mount=type=secret,id=tok cat /run/secrets/tok | wc -c > /n && echo $V > /v\nCOPY --from={host}/base/busybox@{base_digest} /etc/passwd /etc/passwd.base\nUSER 1\n"
    );
    let ctx = context_with(&[("Dockerfile", &dockerfile), ("a.txt", "a\n")]);
    let secret = "s3cr3t-value-never-recorded";
    let statement = |tag: &str, flags: &[&str]| {
        let mut args = vec![
            "push",
            "--json",
            "--build-arg",
            "V=1",
            "--secret",
            "id=tok,env=TOK",
        ];
        args.extend_from_slice(flags);
        args.extend(["-t", tag]);
        let ctx_arg = ctx.path().display().to_string();
        args.push(&ctx_arg);
        let out = run(regbuild(&args)
            .env("TOK", secret)
            .env("GITHUB_SERVER_URL", "https://github.com")
            .env("GITHUB_REPOSITORY", "o/r")
            .env("GITHUB_RUN_ID", "42"));
        let digest = json(&out)["digest"].as_str().unwrap().to_string();
        let repo = tag
            .split_once('/')
            .unwrap()
            .1
            .split_once(':')
            .unwrap()
            .0
            .to_string();
        let found = referrers(&host, &repo, &digest);
        let (_, artifact) = found
            .iter()
            .find(|(kind, _)| kind == "application/vnd.in-toto+json")
            .unwrap_or_else(|| panic!("no provenance: {found:?}"))
            .clone();
        let dir = tempfile::tempdir().unwrap();
        let (file, doc) = document(&host, &repo, &artifact, dir.path(), "json");
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains(secret),
            "a secret never reaches the provenance"
        );
        (digest, doc)
    };
    let (digest, max) = statement(&format!("{host}/apps/prov:max"), &["--provenance=mode=max"]);
    // The SLSA v1 provenance fields (slsa.dev/spec/v1.0/provenance).
    assert_eq!(max["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(max["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        max["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    let def = &max["predicate"]["buildDefinition"];
    assert!(def["buildType"].as_str().unwrap().starts_with("https://"));
    let dockerfile_sha = sha256(dockerfile.as_bytes());
    assert_eq!(
        def["externalParameters"]["dockerfile"]["digest"]["sha256"],
        dockerfile_sha.trim_start_matches("sha256:")
    );
    assert_eq!(def["externalParameters"]["args"]["V"], "1");
    assert_eq!(def["externalParameters"]["platform"], "linux/amd64");
    let deps = def["resolvedDependencies"].as_array().unwrap();
    assert!(
        deps.iter().any(
            |d| d["digest"]["sha256"] == base_digest.trim_start_matches("sha256:")
                && d["uri"].as_str().unwrap().contains("base/busybox")
        ),
        "the base by digest: {deps:?}"
    );
    assert!(deps.iter().any(|d| d["uri"] == "context"));
    assert!(
        deps.iter()
            .any(|d| d["uri"].as_str().unwrap().contains("@sha256:")),
        "a digest-pinned image too: {deps:?}"
    );
    // The same build again: the same statement, nothing new refers to the image.
    let (again, same) = statement(&format!("{host}/apps/prov:max"), &["--provenance=mode=max"]);
    assert_eq!((again.as_str(), &same), (digest.as_str(), &max));
    let in_toto = referrers(&host, "apps/prov", &digest)
        .into_iter()
        .filter(|(k, _)| k == "application/vnd.in-toto+json")
        .count();
    assert_eq!(in_toto, 1);
    let run_details = &max["predicate"]["runDetails"];
    assert!(run_details["builder"]["id"].is_string());
    assert_eq!(
        run_details["metadata"]["invocationId"],
        "https://github.com/o/r/actions/runs/42"
    );
    // `inspect --provenance` prints it; promote carries it (as every referrer).
    let inspect = |image: &str, flag: &str| regbuild(&["inspect", flag, image]).output().unwrap();
    let shown = inspect(&format!("{host}/apps/prov:max"), "--provenance");
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(serde_json::from_slice::<Value>(&shown.stdout).unwrap(), max);
    let none = inspect(&format!("{host}/apps/prov:max"), "--sbom");
    assert_eq!(
        none.status.code(),
        Some(1),
        "no SBOM was pushed: {}",
        stderr(&none)
    );
    run(&mut regbuild(&[
        "promote",
        &format!("{host}/apps/prov:max"),
        &format!("{host}/prod/prov:1"),
    ]));
    let promoted = inspect(&format!("{host}/prod/prov:1"), "--provenance");
    assert!(promoted.status.success(), "{}", stderr(&promoted));
    assert_eq!(
        serde_json::from_slice::<Value>(&promoted.stdout).unwrap(),
        max
    );

    // mode=min (and buildx's --attest spelling): no build args.
    let (_, min) = statement(
        &format!("{host}/apps/prov-min:1"),
        &["--attest", "type=provenance"],
    );
    assert!(
        min["predicate"]["buildDefinition"]["externalParameters"]
            .get("args")
            .is_none(),
        "{min:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_platform_gets_its_sboms_and_promote_moves_them_from_the_tag_schema_to_the_api() {
    use testregistry::{Config, TestRegistry};
    let reg = Distribution::start();
    let dst = TestRegistry::start(Config::default()).await.unwrap();
    let ctx = context_with(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\nUSER 1\n"),
        ("a.txt", "a\n"),
    ]);
    let tag = format!("{}/apps/multi-sbom:1", reg.host);
    let ctx_arg = ctx.path().display().to_string();
    let args = [
        "push",
        "--json",
        "--sbom",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        tag.as_str(),
        ctx_arg.as_str(),
    ];
    let cmd = regbuild(&args);
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let index = tokio::task::block_in_place(|| raw_manifest(&tag));
    let children: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(children.len(), 2, "{index}");
    for child in &children {
        let found = tokio::task::block_in_place(|| referrers(&reg.host, "apps/multi-sbom", child));
        let kinds: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            kinds.contains(&"application/spdx+json"),
            "{child}: {kinds:?}"
        );
        assert!(
            kinds.contains(&"application/vnd.cyclonedx+json"),
            "{child}: {kinds:?}"
        );
    }
    // Promoted to a registry with the referrers API: found there through it.
    let to = format!("{}/prod/multi-sbom:1", dst.host());
    let promote = regbuild(&["promote", &tag, &to]);
    let out = tokio::task::spawn_blocking(move || {
        let mut promote = promote;
        promote.output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for child in &children {
        let url = format!("http://{}/v2/prod/multi-sbom/referrers/{child}", dst.host());
        let listed =
            tokio::task::block_in_place(|| run(Command::new("curl").args(["-sf", &url])).stdout);
        let listed: Value = serde_json::from_slice(&listed).unwrap();
        let kinds: Vec<&str> = listed["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["artifactType"].as_str())
            .collect();
        assert!(
            kinds.contains(&"application/spdx+json"),
            "{child}: {listed}"
        );
        assert!(
            kinds.contains(&"application/vnd.cyclonedx+json"),
            "{child}: {listed}"
        );
    }
    assert!(
        dst.tags("prod/multi-sbom")
            .iter()
            .all(|t| !t.starts_with("sha256-")),
        "no tag schema where the API is: {:?}",
        dst.tags("prod/multi-sbom")
    );
}

#[test]
fn a_rebase_carries_the_attestations_to_the_rebased_image() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    crate::run_steps::busybox_base(&host, "lib/base");
    let ctx = context_with(&[
        (
            "Dockerfile",
            &format!("FROM {host}/lib/base:1\nCOPY a.txt /a.txt\nUSER 1\n"),
        ),
        ("a.txt", "a\n"),
    ]);
    let app = format!("{host}/team/app:1");
    let ctx_arg = ctx.path().display().to_string();
    let pushed = run(&mut regbuild(&[
        "push",
        "--json",
        "--sbom",
        "--provenance",
        "-t",
        &app,
        &ctx_arg,
    ]));
    let before = json(&pushed)["digest"].as_str().unwrap().to_string();
    // The base moves.
    crate::run_steps::busybox_base_with(&host, "lib/base", |root| {
        std::fs::write(root.join("etc/moved"), "yes\n").unwrap();
    });
    let new_base = skopeo_digest(&format!("{host}/lib/base:1"), &[]);
    let rebased_tag = format!("{host}/team/app:rebased");
    let out = run(&mut regbuild(&[
        "rebase",
        "--json",
        &app,
        "--base",
        &format!("{host}/lib/base:1"),
        "-t",
        &rebased_tag,
    ]));
    let after = json(&out)["digest"].as_str().unwrap().to_string();
    assert_ne!(after, before);
    let inspect = |flag: &str| -> Value {
        let out = run(&mut regbuild(&["inspect", flag, &rebased_tag]));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let provenance = inspect("--provenance");
    assert_eq!(
        provenance["subject"][0]["digest"]["sha256"],
        after.trim_start_matches("sha256:")
    );
    let def = &provenance["predicate"]["buildDefinition"];
    assert!(
        def["buildType"].as_str().unwrap().ends_with("/rebase/v1"),
        "{def}"
    );
    let deps = def["resolvedDependencies"].as_array().unwrap();
    let has = |d: &str| {
        deps.iter()
            .any(|x| x["digest"]["sha256"] == d.trim_start_matches("sha256:"))
    };
    assert!(has(&new_base) && has(&before), "{deps:?}");
    assert!(
        deps.iter().any(|x| x["uri"] == "attestation:provenance"),
        "{deps:?}"
    );
    let spdx = inspect("--sbom");
    let versions: Vec<&str> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["versionInfo"].as_str())
        .collect();
    assert!(versions.contains(&after.as_str()), "{versions:?}");
    assert!(
        versions.contains(&new_base.as_str()),
        "the new base: {versions:?}"
    );
}
