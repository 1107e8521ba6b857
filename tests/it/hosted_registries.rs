//! Pushing and promoting through registries that bend the upload protocol the way hosted
//! ones do (testregistry's profiles: GAR, GHCR, ECR, JFrog, Docker Hub, Quay, Harbor): every
//! push and promote of a multi-chunk image succeeds, with and without streaming, and the
//! stored bytes match their digests; with `--no-upload-fallback` each profile's push fails,
//! which shows the fallback it needs is what makes it work; the bound on bytes and attempts
//! holds when a registry keeps answering success without progress.

use std::process::Output;

use crate::common::*;
use testregistry::{Auth, Config, LoggedRequest, Profile, TestRegistry, OCI_MANIFEST};

const MIB: u64 = 1 << 20;
/// The big layer: over `--chunk-threshold 4MiB`, two chunks of `--chunk-size 6MiB`.
const DATA_LEN: usize = 10 * MIB as usize;
/// Harbor's request cap in these tests: below the chunk size, above a halved chunk.
const HARBOR_CAP: u64 = 5 * MIB;

fn config_for(profile: Profile) -> Config {
    let mut config = Config::with_profile(profile);
    if profile == Profile::Harbor {
        config.max_request_body = Some(HARBOR_CAP);
    }
    if profile == Profile::Dockerhub {
        config.auth = Auth::Token {
            users: vec![("ci".into(), "pw".into())],
            anonymous_pull: true,
            token_ttl_secs: 300,
        };
    }
    config
}

/// A profile's registry with a base image (`base:1`, one small layer) to build on.
async fn registry(profile: Profile) -> TestRegistry {
    let reg = TestRegistry::start(config_for(profile)).await.unwrap();
    let config = reg.put_blob(
        "base",
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"]}}"#,
    );
    // An empty tar's gzip is not needed: the base layer is never unpacked by a push.
    let layer = reg.put_blob("base", &noise(300_000, 7));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":300000}}]}}"#,
        reg.blob("base", &config).unwrap().len()
    );
    reg.put_manifest("base", "1", OCI_MANIFEST, manifest.as_bytes());
    reg
}

fn context(host: &str) -> tempfile::TempDir {
    let ctx = context_with(&[
        (
            "Dockerfile",
            &format!(
                "FROM {host}/base:1\nCOPY data.bin /data.bin\nCOPY small.txt /small.txt\nUSER 1\n"
            ),
        ),
        ("small.txt", "small\n"),
    ]);
    std::fs::write(ctx.path().join("data.bin"), noise(DATA_LEN, 0x2545_f491)).unwrap();
    ctx
}

fn docker_config(reg: &TestRegistry) -> tempfile::TempDir {
    docker_config_with(&reg.host(), "ci", "pw")
}

async fn regbuild_with(config: &tempfile::TempDir, args: Vec<String>) -> Output {
    regbuild_async(config.path(), args).await
}

fn push_args(
    reg: &TestRegistry,
    ctx: &tempfile::TempDir,
    tag: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "push",
        "--no-progress",
        "--no-cache",
        "--chunk-threshold",
        "4MiB",
        "--chunk-size",
        "6MiB",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["-t".into(), format!("{}/app:{tag}", reg.host())]);
    args.push(ctx.path().display().to_string());
    args
}

/// Every blob the tagged manifest names is stored in `repo` and hashes to its digest.
fn assert_stored(reg: &TestRegistry, repo: &str, tag: &str) -> serde_json::Value {
    let (_, bytes) = reg
        .manifest(repo, tag)
        .unwrap_or_else(|| panic!("{repo}:{tag} is not tagged"));
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut descriptors = vec![manifest["config"].clone()];
    descriptors.extend(manifest["layers"].as_array().unwrap().iter().cloned());
    assert_eq!(
        descriptors.len(),
        4,
        "config, the base layer and two COPY layers"
    );
    for d in &descriptors {
        let digest = d["digest"].as_str().unwrap();
        let blob = reg
            .blob(repo, digest)
            .unwrap_or_else(|| panic!("{repo} lacks {digest}"));
        assert_eq!(sha256(&blob), digest, "stored bytes of {digest}");
        assert_eq!(blob.len() as u64, d["size"].as_u64().unwrap());
    }
    let big = descriptors
        .iter()
        .map(|d| d["size"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        big > 6 * MIB,
        "the image has a multi-chunk layer ({big} bytes)"
    );
    manifest
}

fn is_upload(r: &LoggedRequest) -> bool {
    r.path.contains("/blobs/uploads/")
}

/// Upload requests the registry refused (an answer no fallback-free client gets past).
fn refusals(log: &[LoggedRequest]) -> Vec<LoggedRequest> {
    log.iter()
        .filter(|r| is_upload(r) && matches!(r.status, 400 | 401 | 404 | 405 | 413 | 416))
        .cloned()
        .collect()
}

/// What a profile's log must show: the behaviour it models happened and was got around.
fn assert_profile_behaviour(profile: Profile, log: &[LoggedRequest], streamed: bool) {
    let refused = refusals(log);
    let patches: Vec<_> = log
        .iter()
        .filter(|r| r.method == "PATCH" && is_upload(r))
        .collect();
    match profile {
        Profile::Gar => {
            assert!(
                !refused.is_empty() && refused.iter().all(|r| r.status == 405),
                "GAR refuses PATCH: {refused:?}"
            );
            // Remembered: at most the layers that started at once try a PATCH.
            assert!(patches.len() <= 2, "PATCHes after the refusal: {patches:?}");
            assert!(log
                .iter()
                .any(|r| r.method == "PUT" && is_upload(r) && r.bytes_received > 6 * MIB));
        }
        Profile::Ghcr if !streamed => {
            assert_eq!(
                refused.iter().filter(|r| r.status == 416).count(),
                1,
                "one 416 teaches the 4 MiB limit: {refused:?}"
            );
            assert!(patches
                .iter()
                .filter(|r| r.status == 202)
                .all(|r| r.bytes_received <= 4 * MIB));
        }
        Profile::Ecr if !streamed => {
            assert!(patches.iter().filter(|r| r.status == 201).count() >= 2);
            assert!(
                refused.is_empty(),
                "nothing resent at a stale offset: {refused:?}"
            );
        }
        Profile::Jfrog => {
            assert!(
                refused.len() <= 2 && refused.iter().all(|r| r.status == 400),
                "a PUT with a body is refused once or twice, not per blob: {refused:?}"
            );
            assert!(log
                .iter()
                .filter(|r| r.method == "PUT" && is_upload(r) && r.status == 201)
                .all(|r| r.bytes_received == 0));
        }
        Profile::Harbor => {
            assert!(log
                .iter()
                .filter(|r| is_upload(r) && r.status / 100 == 2)
                .all(|r| r.bytes_received <= HARBOR_CAP));
            assert!(refused.len() <= 2, "{refused:?}");
        }
        Profile::Quay => {
            assert!(refused
                .iter()
                .all(|r| r.status == 401 && r.path.contains("mount=")));
            assert!(
                !refused.is_empty(),
                "the base layer's anonymous mount is refused"
            );
        }
        _ => {}
    }
}

async fn push_and_promote(profile: Profile, streamed: bool) {
    let reg = registry(profile).await;
    let ctx = context(&reg.host());
    let creds = docker_config(&reg);
    let extra: &[&str] = if streamed {
        &[]
    } else {
        &["--no-stream-upload"]
    };
    let out = regbuild_with(&creds, push_args(&reg, &ctx, "1", extra)).await;
    assert!(
        out.status.success(),
        "{} push (streamed: {streamed}): {}",
        profile.name(),
        stderr(&out)
    );
    let manifest = assert_stored(&reg, "app", "1");
    assert_profile_behaviour(profile, &reg.requests(), streamed);
    let digest = stdout(&out)
        .lines()
        .last()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_string();

    // Across registries: every blob streams GET → upload by the destination's rules.
    let dst = registry(profile).await;
    let both = tempfile::tempdir().unwrap();
    std::fs::write(
        both.path().join("config.json"),
        std::fs::read_to_string(creds.path().join("config.json"))
            .unwrap()
            .replace(
                "}}}",
                &format!(r#"}},"{}":{{"auth":"Y2k6cHc="}}}}}}"#, dst.host()),
            ),
    )
    .unwrap();
    let out = regbuild_with(
        &both,
        vec![
            "promote".into(),
            "--no-progress".into(),
            format!("{}/app:1", reg.host()),
            format!("{}/copied:1", dst.host()),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{} promote: {}",
        profile.name(),
        stderr(&out)
    );
    let copied = assert_stored(&dst, "copied", "1");
    assert_eq!(copied, manifest);
    assert!(stdout(&out).trim_end().ends_with(&digest));
}

macro_rules! profile_tests {
    ($($name:ident, $streamed:ident, $profile:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            push_and_promote($profile, $streamed).await;
        }
    )*};
}

const STREAMED: bool = true;
const FROM_FILES: bool = false;

profile_tests! {
    distribution_streamed, STREAMED, Profile::Distribution;
    distribution_from_files, FROM_FILES, Profile::Distribution;
    gar_streamed, STREAMED, Profile::Gar;
    gar_from_files, FROM_FILES, Profile::Gar;
    ghcr_streamed, STREAMED, Profile::Ghcr;
    ghcr_from_files, FROM_FILES, Profile::Ghcr;
    ecr_streamed, STREAMED, Profile::Ecr;
    ecr_from_files, FROM_FILES, Profile::Ecr;
    jfrog_streamed, STREAMED, Profile::Jfrog;
    jfrog_from_files, FROM_FILES, Profile::Jfrog;
    dockerhub_streamed, STREAMED, Profile::Dockerhub;
    dockerhub_from_files, FROM_FILES, Profile::Dockerhub;
    quay_streamed, STREAMED, Profile::Quay;
    quay_from_files, FROM_FILES, Profile::Quay;
    harbor_streamed, STREAMED, Profile::Harbor;
    harbor_from_files, FROM_FILES, Profile::Harbor;
}

/// With the fallback it needs turned off, a profile's push fails with the registry's own
/// refusal, and the tag does not move.
async fn fails_without_fallback(profile: Profile, extra: &[&str], expect: &[&str]) -> Output {
    let reg = registry(profile).await;
    let ctx = context(&reg.host());
    let mut args = vec!["--no-stream-upload", "--retries", "3"];
    args.extend_from_slice(extra);
    let out = regbuild_with(&docker_config(&reg), push_args(&reg, &ctx, "1", &args)).await;
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{} must fail: {err}",
        profile.name()
    );
    for e in expect {
        assert!(
            err.contains(e),
            "{}: {err:?} should contain {e:?}",
            profile.name()
        );
    }
    assert!(err.contains(&reg.host()), "the registry is named: {err}");
    assert!(reg.manifest("app", "1").is_none(), "no tag moved");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn gar_needs_the_monolithic_fallback() {
    fails_without_fallback(
        Profile::Gar,
        &["--no-upload-fallback"],
        &[
            "HTTP 405",
            "UNSUPPORTED",
            "chunked uploads are not supported",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ghcr_needs_chunks_within_its_limit() {
    fails_without_fallback(
        Profile::Ghcr,
        &["--no-upload-fallback"],
        &["gave up resuming", "416"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ecr_needs_offsets_counted_by_what_was_sent_and_stays_bounded() {
    let reg = registry(Profile::Ecr).await;
    let ctx = context(&reg.host());
    let args = [
        "--no-stream-upload",
        "--retries",
        "3",
        "--no-upload-fallback",
    ];
    let out = regbuild_with(&docker_config(&reg), push_args(&reg, &ctx, "1", &args)).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("gave up"), "{err}");
    assert!(reg.manifest("app", "1").is_none());
    // Bounded: however the registry answers, no more than (retries + 1) × the blob is sent.
    let sent: u64 = reg
        .requests()
        .iter()
        .filter(|r| is_upload(r))
        .map(|r| r.bytes_received)
        .sum();
    assert!(
        sent <= 4 * (DATA_LEN as u64 + MIB),
        "{sent} bytes sent for a {DATA_LEN}-byte layer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jfrog_needs_patch_then_an_empty_put() {
    fails_without_fallback(
        Profile::Jfrog,
        &["--no-upload-fallback"],
        &["HTTP 400", "BLOB_UPLOAD_INVALID"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn harbor_needs_smaller_requests() {
    fails_without_fallback(
        Profile::Harbor,
        &["--no-upload-fallback"],
        &["BLOB_UPLOAD_UNKNOWN"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quay_needs_the_upload_after_a_refused_anonymous_mount() {
    fails_without_fallback(
        Profile::Quay,
        &["--no-upload-fallback"],
        &["mount blob", "anonymous blob mounts are not allowed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dockerhub_needs_retries_after_its_rate_limit() {
    // The push's pulls (base manifest, config) hit the every-4th-pull limit; with one
    // attempt per request there is no retry after Retry-After.
    let reg = registry(Profile::Dockerhub).await;
    let ctx = context(&reg.host());
    let creds = docker_config(&reg);
    let mut failed = None;
    for tag in ["1", "2", "3", "4"] {
        let out = regbuild_with(&creds, push_args(&reg, &ctx, tag, &["--retries", "1"])).await;
        if !out.status.success() {
            failed = Some(stderr(&out));
            break;
        }
    }
    let err = failed.expect("some push must meet the rate limit with --retries 1");
    assert!(err.contains("429"), "{err}");
    assert!(
        err.contains("rate limit"),
        "the limit is said in words: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quay_takes_the_multi_platform_index_regbuild_writes() {
    let reg = registry(Profile::Quay).await;
    let ctx = context_with(&[
        ("Dockerfile", "FROM scratch\nCOPY f /f\nUSER 1\n"),
        ("f", "x"),
    ]);
    let out = regbuild_with(
        &docker_config(&reg),
        vec![
            "push".into(),
            "--no-progress".into(),
            "--platform".into(),
            "linux/amd64,linux/arm64".into(),
            "-t".into(),
            format!("{}/multi:1", reg.host()),
            ctx.path().display().to_string(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (media_type, _) = reg.manifest("multi", "1").unwrap();
    assert_eq!(media_type, testregistry::OCI_INDEX);
}

/// `--upload-strategy` picks the method up front, on a registry that takes them all.
#[tokio::test(flavor = "multi_thread")]
async fn each_upload_strategy_sends_the_way_it_says() {
    for strategy in ["monolithic", "stream", "chunked", "auto"] {
        let reg = registry(Profile::Distribution).await;
        let ctx = context(&reg.host());
        let out = regbuild_with(
            &docker_config(&reg),
            push_args(
                &reg,
                &ctx,
                "1",
                &["--no-stream-upload", "--upload-strategy", strategy],
            ),
        )
        .await;
        assert!(out.status.success(), "{strategy}: {}", stderr(&out));
        assert_stored(&reg, "app", "1");
        let log = reg.requests();
        let uploads: Vec<_> = log.iter().filter(|r| is_upload(r)).collect();
        let patches: Vec<_> = uploads.iter().filter(|r| r.method == "PATCH").collect();
        let puts_with_body = uploads
            .iter()
            .filter(|r| r.method == "PUT" && r.bytes_received > 0)
            .count();
        match strategy {
            "monolithic" => assert!(patches.is_empty(), "{patches:?}"),
            "stream" => {
                assert_eq!(puts_with_body, 0);
                assert!(patches.iter().all(|r| r.content_range.is_none()));
            }
            "chunked" => {
                assert_eq!(puts_with_body, 0);
                assert!(!patches.is_empty());
                assert!(patches.iter().all(|r| r.content_range.is_some()));
            }
            _ => {
                // Monolithic below the threshold, chunks of 6 MiB above.
                assert_eq!(patches.len(), 2, "{patches:?}");
                assert!(puts_with_body >= 1);
            }
        }
    }
}

#[test]
fn an_unknown_upload_strategy_is_bad_usage() {
    let out = regbuild(&["push", "--upload-strategy", "fast", "-t", "x/y:1", "."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown upload strategy"),
        "{}",
        stderr(&out)
    );
}

/// A registry that refuses every way of uploading: the error names the registry, the
/// operation, each method tried and the registry's own answers, and nothing is tagged.
#[tokio::test(flavor = "multi_thread")]
async fn when_every_method_is_refused_the_error_says_what_was_tried() {
    let reg = registry(Profile::Gar).await;
    // GAR refuses PATCH; this one refuses a PUT with a body too.
    let body = br#"{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"no bodies here"}]}"#;
    reg.add_fault(
        testregistry::FaultRule::new(
            "PUT",
            "/blobs/uploads/",
            testregistry::FaultAction::Status {
                status: 400,
                retry_after: None,
                body: Some(("application/json".into(), body.to_vec())),
            },
        )
        .times(usize::MAX),
    );
    let ctx = context(&reg.host());
    let out = regbuild_with(
        &docker_config(&reg),
        push_args(&reg, &ctx, "1", &["--no-stream-upload", "--retries", "2"]),
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in [
        &reg.host(),
        "upload blob sha256:",
        "HTTP 405 UNSUPPORTED",
        "HTTP 400 BLOB_UPLOAD_INVALID: no bodies here",
    ] {
        assert!(err.contains(needle), "{needle:?} in: {err}");
    }
    // The blob that met the refusals itself lists its tries; one that started after them
    // says nothing is left, quoting them.
    assert!(
        err.contains("the registry refused every way tried")
            || err.contains("no upload method is left that this registry accepts"),
        "{err}"
    );
    assert!(reg.manifest("app", "1").is_none(), "no tag moved");
}
