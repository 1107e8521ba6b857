//! The registry client against testregistry: mount answers and their fallbacks, Location
//! forms, one token for several scopes, refresh after 401, credentials never following a
//! redirect, and registries that answer garbage.

use std::collections::HashMap;
use std::sync::Arc;

use regbuild::promote::{self, PromoteRequest};
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use regbuild_registry::credentials::{Credential, Secret};
use regbuild_registry::progress::Quiet;
use regbuild_registry::report::BlobAction;
use regbuild_registry::{CredentialSource, Registry, RegistryOptions};
use testregistry::{
    Auth, Config, FaultAction, FaultRule, LocationStyle, LoggedRequest, MountMode, TestRegistry,
};

/// A config and two layers in `repo:v1`; returns the blob digests.
fn seed_image(reg: &TestRegistry, repo: &str) -> Vec<String> {
    let config = reg.put_blob(
        repo,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let l1 = reg.put_blob(repo, &vec![1u8; 10_000]);
    let l2 = reg.put_blob(repo, &vec![2u8; 20_000]);
    let size = |d: &str| reg.blob(repo, d).unwrap().len();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{config}","size":{}}},"layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{l1}","size":{}}},{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{l2}","size":{}}}]}}"#,
        size(&config),
        size(&l1),
        size(&l2)
    );
    reg.put_manifest(repo, "v1", OCI_MANIFEST, manifest.as_bytes());
    vec![config, l1, l2]
}

fn client(creds: &[(&TestRegistry, &str, &str)]) -> Registry {
    let map: HashMap<String, Credential> = creds
        .iter()
        .map(|(r, u, p)| {
            (
                r.host(),
                Credential::Basic {
                    username: u.to_string(),
                    password: Secret::new(*p),
                },
            )
        })
        .collect();
    Registry::new(RegistryOptions::default(), CredentialSource::Fixed(map))
}

fn request(src: &str, dst: &str) -> PromoteRequest {
    PromoteRequest {
        source: src.parse().unwrap(),
        destination: dst.parse().unwrap(),
        referrers: true,
        build_cache: false,
    }
}

fn uploads_of(log: &[LoggedRequest], repo: &str) -> Vec<LoggedRequest> {
    log.iter()
        .filter(|r| r.path.starts_with(&format!("/v2/{repo}/blobs/uploads/")))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_201_moves_no_bytes() {
    let reg = TestRegistry::start(Config::default()).await.unwrap();
    let blobs = seed_image(&reg, "src");
    reg.clear_log();
    let host = reg.host();
    let report = promote::promote(
        &client(&[]),
        &request(&format!("{host}/src:v1"), &format!("{host}/dst:v1")),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    assert_eq!(report.count(BlobAction::Mounted), 3);
    assert_eq!(report.bytes_uploaded, 0);
    let log = reg.requests();
    let ups = uploads_of(&log, "dst");
    assert_eq!(ups.len(), 3, "one mount per blob: {ups:#?}");
    assert!(ups
        .iter()
        .all(|r| r.method == "POST" && r.path.contains("mount=") && r.status == 201));
    assert!(log
        .iter()
        .all(|r| !(r.method == "GET" && r.path.contains("/blobs/sha256"))));
    for b in &blobs {
        assert!(reg.has_blob("dst", b));
    }
    assert_eq!(reg.manifest("dst", "v1"), reg.manifest("src", "v1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_202_uploads_into_the_session_it_opened() {
    let reg = TestRegistry::start(Config {
        mount: MountMode::Refuse202,
        ..Config::default()
    })
    .await
    .unwrap();
    let blobs = seed_image(&reg, "src");
    reg.clear_log();
    let host = reg.host();
    let report = promote::promote(
        &client(&[]),
        &request(&format!("{host}/src:v1"), &format!("{host}/dst:v1")),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    assert_eq!(report.count(BlobAction::Uploaded), 3);
    let ups = uploads_of(&reg.requests(), "dst");
    let posts: Vec<_> = ups.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 3, "no second POST after a 202: {ups:#?}");
    assert!(posts
        .iter()
        .all(|r| r.path.contains("mount=") && r.status == 202));
    let puts: Vec<_> = ups.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 3);
    assert!(puts
        .iter()
        .all(|r| r.status == 201 && r.path.contains("digest=")));
    for b in &blobs {
        assert!(reg.has_blob("dst", b));
    }
}

async fn mount_refused_with(status: u16) {
    let reg = TestRegistry::start(Config {
        mount: MountMode::Status(status),
        ..Config::default()
    })
    .await
    .unwrap();
    seed_image(&reg, "src");
    reg.clear_log();
    let host = reg.host();
    let report = promote::promote(
        &client(&[]),
        &request(&format!("{host}/src:v1"), &format!("{host}/dst:v1")),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    assert_eq!(report.count(BlobAction::Uploaded), 3, "status {status}");
    let ups = uploads_of(&reg.requests(), "dst");
    let refused = ups
        .iter()
        .filter(|r| r.path.contains("mount=") && r.status == status)
        .count();
    assert!(refused >= 3, "each mount answered {status}: {ups:#?}");
    let plain_posts = ups
        .iter()
        .filter(|r| r.method == "POST" && !r.path.contains("mount=") && r.status == 202)
        .count();
    assert_eq!(plain_posts, 3, "fell back to a plain upload: {ups:#?}");
    assert_eq!(reg.manifest("dst", "v1"), reg.manifest("src", "v1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_401_falls_back_to_upload() {
    mount_refused_with(401).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_403_falls_back_to_upload() {
    mount_refused_with(403).await;
}

async fn cross_registry_with_locations(style: LocationStyle) {
    let src = TestRegistry::start(Config::default()).await.unwrap();
    let dst = TestRegistry::start(Config {
        location: style,
        ..Config::default()
    })
    .await
    .unwrap();
    let blobs = seed_image(&src, "app");
    let report = promote::promote(
        &client(&[]),
        &request(
            &format!("{}/app:v1", src.host()),
            &format!("{}/app:v1", dst.host()),
        ),
        Arc::new(Quiet),
    )
    .await
    .unwrap_or_else(|e| panic!("{style:?}: {e}"));
    assert_eq!(report.count(BlobAction::Uploaded), 3);
    let total: u64 = report.blobs.iter().map(|b| b.size).sum();
    assert_eq!(report.bytes_uploaded, total);
    for b in &blobs {
        assert_eq!(dst.blob("app", b), src.blob("app", b));
    }
    assert_eq!(dst.manifest("app", "v1"), src.manifest("app", "v1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_locations_are_followed() {
    cross_registry_with_locations(LocationStyle::Absolute).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn root_relative_locations_are_resolved() {
    cross_registry_with_locations(LocationStyle::RootRelative).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn path_relative_locations_are_resolved_against_the_answering_url() {
    cross_registry_with_locations(LocationStyle::PathRelative).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_token_carries_push_and_mount_source_scopes() {
    let reg = TestRegistry::start(Config {
        auth: Auth::token("ci", "pw"),
        ..Config::default()
    })
    .await
    .unwrap();
    seed_image(&reg, "team/src");
    reg.clear_log();
    let host = reg.host();
    let report = promote::promote(
        &client(&[(&reg, "ci", "pw")]),
        &request(
            &format!("{host}/team/src:v1"),
            &format!("{host}/team/dst:v1"),
        ),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    assert_eq!(report.count(BlobAction::Mounted), 3, "{report:?}");
    let log = reg.requests();
    let token_with_both = log.iter().any(|r| {
        r.path.starts_with("/token")
            && r.path
                .contains("scope=repository%3Ateam%2Fdst%3Apull%2Cpush")
            && r.path.contains("scope=repository%3Ateam%2Fsrc%3Apull")
    });
    assert!(token_with_both, "a token for both scopes: {log:#?}");
    assert!(
        log.iter()
            .filter(|r| r.path.contains("mount="))
            .all(|r| r.status == 201),
        "mounts succeed with that token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_refreshed_once_and_the_run_goes_on() {
    let reg = TestRegistry::start(Config {
        auth: Auth::token("ci", "pw"),
        ..Config::default()
    })
    .await
    .unwrap();
    seed_image(&reg, "src");
    let host = reg.host();
    let registry = client(&[(&reg, "ci", "pw")]);
    promote::promote(
        &registry,
        &request(&format!("{host}/src:v1"), &format!("{host}/a:v1")),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    // The registry forgets every token; the client still holds one it thinks is valid.
    reg.expire_tokens();
    reg.clear_log();
    promote::promote(
        &registry,
        &request(&format!("{host}/src:v1"), &format!("{host}/b:v1")),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    let log = reg.requests();
    let first_401 = log
        .iter()
        .position(|r| r.status == 401)
        .expect("a 401 happened");
    let token_after = log[first_401..]
        .iter()
        .position(|r| r.path.starts_with("/token"))
        .expect("a new token was fetched after the 401");
    assert!(token_after > 0);
    assert_eq!(reg.manifest("b", "v1"), reg.manifest("src", "v1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn redirected_blob_gets_carry_no_authorization() {
    let src = TestRegistry::start(Config {
        auth: Auth::basic("ci", "pw"),
        redirect_blob_gets: true,
        ..Config::default()
    })
    .await
    .unwrap();
    let dst = TestRegistry::start(Config::default()).await.unwrap();
    let blobs = seed_image(&src, "app");
    promote::promote(
        &client(&[(&src, "ci", "pw")]),
        &request(
            &format!("{}/app:v1", src.host()),
            &format!("{}/app:v1", dst.host()),
        ),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    let redirected = src.redirect_requests();
    assert_eq!(
        redirected.len(),
        blobs.len(),
        "every blob GET was redirected"
    );
    assert!(
        redirected.iter().all(|r| r.authorization.is_none()),
        "no Authorization at the redirect target: {redirected:#?}"
    );
    assert!(
        src.requests()
            .iter()
            .filter(|r| r.path.contains("/blobs/sha256"))
            .all(|r| r.authorization.is_some()),
        "the registry itself got credentials"
    );
    for b in &blobs {
        assert!(dst.has_blob("app", b));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_are_promoted_and_indexed_where_the_api_is_missing() {
    let src = TestRegistry::start(Config::default()).await.unwrap();
    let dst = TestRegistry::start(Config {
        referrers_api: false,
        ..Config::default()
    })
    .await
    .unwrap();
    seed_image(&src, "app");
    let (_, image) = src.manifest("app", "v1").unwrap();
    let subject = Digest::of(&image);
    let empty = src.put_blob("app", b"{}");
    let sig = src.put_blob("app", b"signature-bytes");
    let referrer = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{sig}","size":15}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{}}}}}"#,
        image.len()
    );
    let referrer_digest = src.put_manifest(
        "app",
        &Digest::of(referrer.as_bytes()).to_string(),
        OCI_MANIFEST,
        referrer.as_bytes(),
    );
    let report = promote::promote(
        &client(&[]),
        &request(
            &format!("{}/app:v1", src.host()),
            &format!("{}/app:v1", dst.host()),
        ),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    assert_eq!(report.digest, subject);
    assert!(dst.has_blob("app", &sig), "the signature's blob came along");
    assert!(dst.manifest("app", &referrer_digest).is_some());
    let (_, tag_index) = dst
        .manifest("app", &subject.referrers_tag())
        .expect("referrers tag schema index");
    let index: serde_json::Value = serde_json::from_slice(&tag_index).unwrap();
    assert_eq!(index["manifests"][0]["digest"], referrer_digest.as_str());
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_with_the_wrong_digest_aborts_before_anything_is_tagged() {
    let src = TestRegistry::start(Config::default()).await.unwrap();
    let dst = TestRegistry::start(Config::default()).await.unwrap();
    seed_image(&src, "app");
    src.add_fault(FaultRule::new(
        "GET",
        "/blobs/sha256",
        FaultAction::CorruptBody,
    ));
    let err = promote::promote(
        &client(&[]),
        &request(
            &format!("{}/app:v1", src.host()),
            &format!("{}/app:v1", dst.host()),
        ),
        Arc::new(Quiet),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("does not match its digest"), "{text}");
    assert!(text.contains(&src.host()), "{text}");
    assert!(dst.tags("app").is_empty(), "nothing tagged");
}

#[tokio::test(flavor = "multi_thread")]
async fn non_json_errors_are_reported_clearly() {
    let reg = TestRegistry::start(Config::default()).await.unwrap();
    seed_image(&reg, "src");
    reg.add_fault(
        FaultRule::new(
            "GET",
            "/manifests/v1",
            FaultAction::Status {
                status: 500,
                retry_after: None,
                body: Some((
                    "text/html".into(),
                    b"<html><body>Internal oops</body></html>".to_vec(),
                )),
            },
        )
        .times(usize::MAX),
    );
    let host = reg.host();
    let err = promote::promote(
        &client(&[]),
        &request(&format!("{host}/src:v1"), &format!("{host}/dst:v1")),
        Arc::new(Quiet),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("GET manifest v1 on {host}/src: HTTP 500")
    );
    assert!(reg.tags("dst").is_empty());
}

/// An identity token (docker config `identitytoken`) is an OAuth2 refresh token: the client
/// trades it at the realm with `grant_type=refresh_token` and never sends a password.
#[tokio::test(flavor = "multi_thread")]
async fn identity_tokens_are_traded_for_access_tokens() {
    let reg = TestRegistry::start(Config {
        auth: Auth::token("ci", "pw"),
        ..Config::default()
    })
    .await
    .unwrap();
    seed_image(&reg, "src");
    // What `docker login` would have stored: a refresh token for this user.
    let refresh = {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("ci:pw");
        let url = format!(
            "http://{}/token?service=testregistry&offline_token=true&client_id=docker",
            reg.host()
        );
        let body = tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("curl")
                .args(["-sf", "-H", &format!("Authorization: Basic {basic}"), &url])
                .output()
                .unwrap();
            assert!(out.status.success(), "token endpoint");
            out.stdout
        })
        .await
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_string()
    };
    reg.clear_log();
    let map = HashMap::from([(
        reg.host(),
        Credential::IdentityToken(Secret::new(refresh.clone())),
    )]);
    let registry = Registry::new(RegistryOptions::default(), CredentialSource::Fixed(map));
    let host = reg.host();
    let report = promote::promote(
        &registry,
        &request(&format!("{host}/src:v1"), &format!("{host}/dst:v1")),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    assert_eq!(report.count(BlobAction::Mounted), 3);
    let log = reg.requests();
    let token_requests: Vec<_> = log
        .iter()
        .filter(|r| r.path.starts_with("/token"))
        .collect();
    assert!(!token_requests.is_empty());
    assert!(
        token_requests
            .iter()
            .all(|r| r.method == "POST" && r.authorization.is_none()),
        "refresh-token grants, no Basic credentials: {token_requests:#?}"
    );
}
