//! Protocol tests against a running registry, through a raw HTTP client.

mod support;

use serde_json::{json, Value};
use support::{basic, open_session, req, resolve, send, sha256, start, with_param, Resp};
use testregistry::{
    Auth, Config, FaultAction, FaultRule, LocationStyle, MountMode, TestRegistry, OCI_INDEX,
    OCI_MANIFEST,
};

/// Seeds a config + layer and returns an image manifest over them.
fn image_manifest(reg: &TestRegistry, repo: &str, layer: &[u8], extra: Value) -> Vec<u8> {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = reg.put_blob(repo, config);
    let ld = reg.put_blob(repo, layer);
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
    });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    serde_json::to_vec(&m).expect("json")
}

#[tokio::test]
async fn base_endpoint_and_unknown_routes() {
    let reg = start(Config::default()).await;
    let r = req(&reg, "GET", "/v2/", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(r.json(), json!({}));
    assert_eq!(req(&reg, "GET", "/v2/_catalog", &[], b"").await.status, 404);
    let r = req(&reg, "GET", "/v2/Bad/manifests/x", &[], b"").await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "NAME_INVALID"));
    let r = req(&reg, "GET", "/v2/a/b/tags/list", &[], b"").await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "NAME_UNKNOWN"));
}

#[tokio::test]
async fn push_blob_with_post_then_put() {
    let reg = start(Config::default()).await;
    let data = b"hello blob";
    let digest = sha256(data);
    let loc = open_session(&reg, "a/b").await;
    assert!(loc.starts_with(&format!("http://{}/v2/a/b/blobs/uploads/", reg.host())));
    assert!(loc.contains("_state="));
    let r = req(
        &reg,
        "PUT",
        &with_param(&loc, &format!("digest={digest}")),
        &[],
        data,
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        r.location(),
        format!("http://{}/v2/a/b/blobs/{digest}", reg.host())
    );
    assert_eq!(reg.blob("a/b", &digest).as_deref(), Some(&data[..]));

    let r = req(&reg, "HEAD", &format!("/v2/a/b/blobs/{digest}"), &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let r = req(&reg, "GET", &format!("/v2/a/b/blobs/{digest}"), &[], b"").await;
    assert_eq!(r.body, data);
    let r = req(
        &reg,
        "GET",
        &format!("/v2/a/b/blobs/{digest}"),
        &[("Range", "bytes=6-")],
        b"",
    )
    .await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"blob"[..]));

    // Another repository does not see it; a wrong digest is refused.
    let r = req(&reg, "HEAD", &format!("/v2/other/blobs/{digest}"), &[], b"").await;
    assert_eq!(r.status, 404);
    let r = req(&reg, "GET", &format!("/v2/other/blobs/{digest}"), &[], b"").await;
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
    let loc = open_session(&reg, "a/b").await;
    let r = req(
        &reg,
        "PUT",
        &with_param(&loc, &format!("digest={digest}")),
        &[],
        b"other",
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
}

#[tokio::test]
async fn chunked_upload_ranges_status_and_416() {
    let reg = start(Config {
        chunk_min_length: Some(5),
        ..Config::default()
    })
    .await;
    let r = req(&reg, "POST", "/v2/repo/blobs/uploads/", &[], b"").await;
    assert_eq!(r.header("oci-chunk-min-length"), Some("5"));
    let loc = resolve("/v2/repo/blobs/uploads/", r.location());

    let r = req(
        &reg,
        "PATCH",
        &loc,
        &[
            ("Content-Range", "0-4"),
            ("Content-Type", "application/octet-stream"),
        ],
        b"01234",
    )
    .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.header("range"), Some("0-4"));
    let loc2 = resolve(&loc, r.location());
    assert_ne!(loc2, loc);

    // A chunk that does not start at the current end is refused with the real range.
    let r = req(&reg, "PATCH", &loc2, &[("Content-Range", "3-5")], b"345").await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("range"), Some("0-4"));

    let r = req(&reg, "GET", &loc2, &[], b"").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some("0-4"));

    let r = req(&reg, "PATCH", &loc2, &[("Content-Range", "5-9")], b"56789").await;
    assert_eq!((r.status, r.header("range")), (202, Some("0-9")));
    let loc3 = resolve(&loc2, r.location());
    let digest = sha256(b"0123456789ab");
    let r = req(
        &reg,
        "PUT",
        &with_param(&loc3, &format!("digest={digest}")),
        &[],
        b"ab",
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        reg.blob("repo", &digest).as_deref(),
        Some(&b"0123456789ab"[..])
    );

    let log = reg.requests();
    let patches: Vec<_> = log.iter().filter(|l| l.method == "PATCH").collect();
    assert_eq!(patches.len(), 3);
    assert_eq!(patches[0].content_range.as_deref(), Some("0-4"));
    assert_eq!(patches[0].bytes_received, 5);
    assert_eq!(patches[1].status, 416);
}

#[tokio::test]
async fn only_the_newest_location_is_valid() {
    let reg = start(Config::default()).await;
    let loc1 = open_session(&reg, "r").await;
    let r = req(&reg, "PATCH", &loc1, &[], b"abc").await;
    assert_eq!(r.status, 202);
    let loc2 = resolve(&loc1, r.location());
    let r = req(&reg, "PATCH", &loc1, &[], b"def").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "BLOB_UPLOAD_UNKNOWN")
    );
    let r = req(&reg, "GET", &loc1, &[], b"").await;
    assert_eq!(r.status, 404);
    // Without any _state the session is unknown too.
    let bare = loc2.split('?').next().unwrap_or_default().to_string();
    assert_eq!(req(&reg, "GET", &bare, &[], b"").await.status, 404);
    let digest = sha256(b"abc");
    let r = req(
        &reg,
        "PUT",
        &with_param(&loc2, &format!("digest={digest}")),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 201);
    // A finished session is gone.
    assert_eq!(req(&reg, "GET", &loc2, &[], b"").await.status, 404);

    let loc = open_session(&reg, "r").await;
    assert_eq!(req(&reg, "DELETE", &loc, &[], b"").await.status, 204);
    assert_eq!(req(&reg, "GET", &loc, &[], b"").await.status, 404);
}

#[tokio::test]
async fn relative_location_styles() {
    for style in [LocationStyle::RootRelative, LocationStyle::PathRelative] {
        let reg = start(Config {
            location: style,
            ..Config::default()
        })
        .await;
        let post = "/v2/x/y/blobs/uploads/";
        let r = req(&reg, "POST", post, &[], b"").await;
        let raw = r.location().to_string();
        match style {
            LocationStyle::RootRelative => assert!(raw.starts_with("/v2/x/y/blobs/uploads/")),
            _ => assert!(raw.starts_with("../uploads/"), "{raw}"),
        }
        let loc = resolve(post, &raw);
        assert!(loc.starts_with("/v2/x/y/blobs/uploads/"), "{loc}");
        let r = req(&reg, "PATCH", &loc, &[], b"data").await;
        assert_eq!(r.status, 202);
        let loc = resolve(&loc, r.location());
        let digest = sha256(b"data");
        let r = req(
            &reg,
            "PUT",
            &with_param(&loc, &format!("digest={digest}")),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(
            resolve(&loc, r.location()),
            format!("/v2/x/y/blobs/{digest}")
        );
    }
}

#[tokio::test]
async fn single_post_upload_on_and_off() {
    let data = b"monolithic";
    let digest = sha256(data);
    let path = format!("/v2/m/blobs/uploads/?digest={digest}");

    let reg = start(Config::default()).await;
    let r = req(&reg, "POST", &path, &[], data).await;
    assert_eq!(r.status, 201);
    assert!(reg.has_blob("m", &digest));

    let reg = start(Config {
        single_post_upload: false,
        ..Config::default()
    })
    .await;
    let r = req(&reg, "POST", &path, &[], data).await;
    assert_eq!(r.status, 202);
    assert!(!reg.has_blob("m", &digest));
    let loc = resolve(&path, r.location());
    let r = req(
        &reg,
        "PUT",
        &with_param(&loc, &format!("digest={digest}")),
        &[],
        data,
    )
    .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn cross_repository_mount_modes() {
    let reg = start(Config::default()).await;
    let digest = reg.put_blob("src/repo", b"layer");
    let r = req(
        &reg,
        "POST",
        &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src/repo"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.location(),
        format!("http://{}/v2/dst/blobs/{digest}", reg.host())
    );
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert!(reg.has_blob("dst", &digest));
    // Source lacks the blob: a fresh session instead.
    let r = req(
        &reg,
        "POST",
        &format!("/v2/dst2/blobs/uploads/?mount={digest}&from=nowhere"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 202);
    assert!(r.location().contains("/v2/dst2/blobs/uploads/"));

    let reg = start(Config {
        mount: MountMode::Refuse202,
        ..Config::default()
    })
    .await;
    let digest = reg.put_blob("src", b"layer");
    let r = req(
        &reg,
        "POST",
        &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 202);
    assert!(!reg.has_blob("dst", &digest));

    for status in [401, 403, 404, 500] {
        let reg = start(Config {
            mount: MountMode::Status(status),
            ..Config::default()
        })
        .await;
        let digest = reg.put_blob("src", b"layer");
        let r = req(
            &reg,
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, status);
        assert!(r.json()["errors"].is_array());
    }
}

#[tokio::test]
async fn manifest_put_validates_and_get_negotiates() {
    let reg = start(Config::default()).await;
    // A manifest whose layer was never pushed.
    let cd = reg.put_blob("app", b"{}");
    let missing = sha256(b"never pushed");
    let bad = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 12}],
    })
    .to_string();
    let ct = [("Content-Type", OCI_MANIFEST)];
    let r = req(&reg, "PUT", "/v2/app/manifests/v1", &ct, bad.as_bytes()).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    let r = req(&reg, "PUT", "/v2/app/manifests/v1", &ct, b"not json").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
    let big = vec![b' '; (4 << 20) + 1];
    assert_eq!(
        req(&reg, "PUT", "/v2/app/manifests/v1", &ct, &big)
            .await
            .status,
        413
    );

    let body = image_manifest(&reg, "app", b"layer-bytes", json!({}));
    let digest = sha256(&body);
    let wrong = sha256(b"x");
    let r = req(
        &reg,
        "PUT",
        &format!("/v2/app/manifests/{wrong}"),
        &ct,
        &body,
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    let r = req(&reg, "PUT", "/v2/app/manifests/v1", &ct, &body).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        r.location(),
        format!("http://{}/v2/app/manifests/{digest}", reg.host())
    );
    assert!(r.header("oci-subject").is_none());
    req(&reg, "PUT", "/v2/app/manifests/a-tag", &ct, &body).await;

    let accept = [("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")];
    let r = req(&reg, "GET", "/v2/app/manifests/v1", &accept, b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(r.body, body);
    let r = req(
        &reg,
        "HEAD",
        &format!("/v2/app/manifests/{digest}"),
        &accept,
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    // distribution 2.8: OCI content without a matching Accept is "unknown".
    let r = req(&reg, "GET", "/v2/app/manifests/v1", &[], b"").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let r = req(
        &reg,
        "GET",
        "/v2/app/manifests/v1",
        &[("Accept", "application/json")],
        b"",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        req(
            &reg,
            "GET",
            "/v2/app/manifests/v1",
            &[("Accept", "*/*")],
            b""
        )
        .await
        .status,
        200
    );
    let r = req(&reg, "GET", "/v2/app/manifests/nope", &accept, b"").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let r = req(&reg, "GET", "/v2/nothere/manifests/v1", &accept, b"").await;
    assert_eq!(r.error_code(), "NAME_UNKNOWN");

    let r = req(&reg, "GET", "/v2/app/tags/list", &[], b"").await;
    assert_eq!(r.json(), json!({"name": "app", "tags": ["a-tag", "v1"]}));
    assert_eq!(reg.tags("app"), vec!["a-tag", "v1"]);

    // An index needs its children in the same repository.
    let index = |d: &str, size: usize| {
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
               "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": size,
                              "platform": {"architecture": "amd64", "os": "linux"}}]})
        .to_string()
    };
    let ict = [("Content-Type", OCI_INDEX)];
    let r = req(
        &reg,
        "PUT",
        "/v2/app/manifests/multi",
        &ict,
        index(&wrong, 10).as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    let r = req(
        &reg,
        "PUT",
        "/v2/other/manifests/multi",
        &ict,
        index(&digest, body.len()).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = req(
        &reg,
        "PUT",
        "/v2/app/manifests/multi",
        &ict,
        index(&digest, body.len()).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        reg.manifest("app", "multi").map(|m| m.0).as_deref(),
        Some(OCI_INDEX)
    );
}

#[tokio::test]
async fn referrers_api_and_fallback() {
    let reg = start(Config::default()).await;
    let subject = image_manifest(&reg, "app", b"image layer", json!({}));
    let subject_digest = reg.put_manifest("app", "v1", OCI_MANIFEST, &subject);
    let subject_desc =
        json!({"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject.len()});
    let sbom = image_manifest(
        &reg,
        "app",
        b"sbom",
        json!({"artifactType": "application/spdx+json", "subject": subject_desc,
               "annotations": {"org.example": "yes"}}),
    );
    let sig = image_manifest(&reg, "app", b"sig", json!({"subject": subject_desc}));
    let ct = [("Content-Type", OCI_MANIFEST)];
    for body in [&sbom, &sig] {
        let r = req(
            &reg,
            "PUT",
            &format!("/v2/app/manifests/{}", sha256(body)),
            &ct,
            body,
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.header("oci-subject"), Some(subject_digest.as_str()));
    }
    let path = format!("/v2/app/referrers/{subject_digest}");
    let r = req(&reg, "GET", &path, &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    let list = r.json();
    let refs = list["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0]["digest"], json!(sha256(&sbom)));
    assert_eq!(refs[0]["size"], json!(sbom.len()));
    assert_eq!(refs[0]["artifactType"], json!("application/spdx+json"));
    assert_eq!(refs[0]["annotations"]["org.example"], json!("yes"));
    // Without artifactType the config media type stands in.
    assert_eq!(
        refs[1]["artifactType"],
        json!("application/vnd.oci.image.config.v1+json")
    );

    let r = req(
        &reg,
        "GET",
        &format!("{path}?artifactType=application/spdx%2Bjson"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(r.json()["manifests"].as_array().map(Vec::len), Some(1));
    let unknown = sha256(b"nothing refers to me");
    let r = req(
        &reg,
        "GET",
        &format!("/v2/app/referrers/{unknown}"),
        &[],
        b"",
    )
    .await;
    assert_eq!((r.status, r.json()["manifests"].clone()), (200, json!([])));

    let reg = start(Config {
        referrers_api: false,
        ..Config::default()
    })
    .await;
    let subject = image_manifest(&reg, "app", b"image layer", json!({}));
    let subject_digest = reg.put_manifest("app", "v1", OCI_MANIFEST, &subject);
    let sig = image_manifest(
        &reg,
        "app",
        b"sig",
        json!({"subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject.len()}}),
    );
    let r = req(
        &reg,
        "PUT",
        &format!("/v2/app/manifests/{}", sha256(&sig)),
        &ct,
        &sig,
    )
    .await;
    assert_eq!(r.status, 201);
    assert!(r.header("oci-subject").is_none());
    let r = req(
        &reg,
        "GET",
        &format!("/v2/app/referrers/{subject_digest}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 404);
}

async fn token(reg: &TestRegistry, creds: Option<&str>, scopes: &[&str]) -> Resp {
    let mut path = "/token?service=testregistry".to_string();
    for s in scopes {
        path.push_str(&format!("&scope={s}"));
    }
    let headers: Vec<(&str, &str)> = creds.map(|c| ("Authorization", c)).into_iter().collect();
    req(reg, "GET", &path, &headers, b"").await
}

#[tokio::test]
async fn token_auth_scopes_mounts_and_expiry() {
    let reg = start(Config {
        auth: Auth::Token {
            users: vec![("alice".into(), "secret".into())],
            anonymous_pull: true,
            token_ttl_secs: 300,
        },
        ..Config::default()
    })
    .await;
    let digest = reg.put_blob("src", b"shared layer");
    let r = req(&reg, "GET", "/v2/", &[], b"").await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap_or_default().to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"http://{}/token\",service=\"testregistry\"",
            reg.host()
        )
    );

    let mount = format!("/v2/dst/blobs/uploads/?mount={digest}&from=src");
    let r = req(&reg, "POST", &mount, &[], b"").await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap_or_default()
        .contains("scope=\"repository:dst:pull,push\""));

    let alice = basic("alice", "secret");
    assert_eq!(
        token(&reg, Some(&basic("alice", "wrong")), &[])
            .await
            .status,
        401
    );

    // A token for the destination only is not enough to mount.
    let t = token(&reg, Some(&alice), &["repository:dst:pull,push"])
        .await
        .json();
    let bearer = format!("Bearer {}", t["token"].as_str().unwrap_or_default());
    assert_eq!(t["access_token"], t["token"]);
    assert_eq!(t["expires_in"], json!(300));
    assert!(t["issued_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    let r = req(&reg, "POST", &mount, &[("Authorization", &bearer)], b"").await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"repository:dst:pull,push\""),
        "{challenge}"
    );
    // ... but it is enough for a plain upload.
    let r = req(
        &reg,
        "POST",
        "/v2/dst/blobs/uploads/",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(r.status, 202);

    // Both scopes in one token: the mount works.
    let t = token(
        &reg,
        Some(&alice),
        &["repository:dst:pull,push", "repository:src:pull"],
    )
    .await
    .json();
    assert_eq!(
        t["scope"],
        json!("repository:dst:pull,push repository:src:pull")
    );
    let bearer = format!("Bearer {}", t["token"].as_str().unwrap_or_default());
    let r = req(&reg, "POST", &mount, &[("Authorization", &bearer)], b"").await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        req(&reg, "GET", "/v2/", &[("Authorization", &bearer)], b"")
            .await
            .status,
        200
    );

    // Space-separated scopes in one parameter work as well.
    let t = token(
        &reg,
        Some(&alice),
        &["repository:a:pull%20repository:b:push"],
    )
    .await
    .json();
    assert_eq!(t["scope"], json!("repository:a:pull repository:b:push"));

    // Anonymous: pull only.
    let t = token(&reg, None, &["repository:src:pull,push"])
        .await
        .json();
    assert_eq!(t["scope"], json!("repository:src:pull"));
    let anon = format!("Bearer {}", t["token"].as_str().unwrap_or_default());
    let r = req(
        &reg,
        "HEAD",
        &format!("/v2/src/blobs/{digest}"),
        &[("Authorization", &anon)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = req(
        &reg,
        "POST",
        "/v2/src/blobs/uploads/",
        &[("Authorization", &anon)],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);

    reg.expire_tokens();
    let r = req(&reg, "GET", "/v2/", &[("Authorization", &bearer)], b"").await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap_or_default()
        .contains("invalid_token"));
    let logged = reg.requests();
    assert!(logged.iter().any(|l| l.path.starts_with("/token?")));
    assert_eq!(
        logged.last().and_then(|l| l.authorization.clone()),
        Some(bearer)
    );
}

#[tokio::test]
async fn token_refresh_and_password_grants() {
    let reg = start(Config {
        auth: Auth::token("bob", "pw"),
        ..Config::default()
    })
    .await;
    let t = token(&reg, None, &["repository:x:pull"]).await.json();
    assert_eq!(t["scope"], json!(""), "anonymous gets an empty grant");
    let path = "/token?service=testregistry&scope=repository:x:pull&offline_token=true";
    let t = req(
        &reg,
        "GET",
        path,
        &[("Authorization", &basic("bob", "pw"))],
        b"",
    )
    .await
    .json();
    let refresh = t["refresh_token"].as_str().unwrap_or_default().to_string();
    assert!(!refresh.is_empty());

    let form = format!("grant_type=refresh_token&refresh_token={refresh}&service=testregistry&scope=repository%3Ax%3Apull%2Cpush&client_id=test");
    let ct = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = req(&reg, "POST", "/token", &ct, form.as_bytes()).await;
    assert_eq!(r.status, 200);
    let t = r.json();
    assert_eq!(t["refresh_token"], json!(refresh));
    assert_eq!(t["scope"], json!("repository:x:pull,push"));
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap_or_default());
    let r = req(
        &reg,
        "POST",
        "/v2/x/blobs/uploads/",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(r.status, 202);

    let r = req(
        &reg,
        "POST",
        "/token",
        &ct,
        b"grant_type=refresh_token&refresh_token=bogus",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = req(&reg, "POST", "/token", &ct, b"grant_type=password&username=bob&password=pw&scope=repository:x:pull&service=testregistry").await;
    assert_eq!(
        (r.status, r.json()["scope"].clone()),
        (200, json!("repository:x:pull"))
    );
    let r = req(
        &reg,
        "POST",
        "/token",
        &ct,
        b"grant_type=password&username=bob&password=no",
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn basic_auth() {
    let reg = start(Config {
        auth: Auth::basic("u", "p"),
        ..Config::default()
    })
    .await;
    let r = req(&reg, "GET", "/v2/", &[], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"testregistry\"")
    );
    assert_eq!(r.error_code(), "UNAUTHORIZED");
    let bad = basic("u", "x");
    assert_eq!(
        req(&reg, "GET", "/v2/", &[("Authorization", &bad)], b"")
            .await
            .status,
        401
    );
    let good = basic("u", "p");
    assert_eq!(
        req(&reg, "GET", "/v2/", &[("Authorization", &good)], b"")
            .await
            .status,
        200
    );
    // No token endpoint in Basic mode.
    assert_eq!(req(&reg, "GET", "/token", &[], b"").await.status, 404);
}

#[tokio::test]
async fn fault_fires_on_nth_request_only() {
    let reg = start(Config::default()).await;
    let digest = reg.put_blob("f", b"faulty");
    reg.add_fault(
        FaultRule::new(
            "GET",
            "/blobs/sha256:",
            FaultAction::status_retry_after(503, "1"),
        )
        .nth(2),
    );
    let path = format!("/v2/f/blobs/{digest}");
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            // HEADs do not match the rule and do not count.
            req(&reg, "HEAD", &path, &[], b"").await;
            let r = req(&reg, "GET", &path, &[], b"").await;
            if r.status == 503 {
                assert_eq!(r.header("retry-after"), Some("1"));
                assert_eq!(r.error_code(), "UNAVAILABLE");
            }
            v.push(r.status);
        }
        v
    };
    assert_eq!(statuses, vec![200, 503, 200]);
    let logged: Vec<u16> = reg
        .requests()
        .iter()
        .filter(|l| l.method == "GET")
        .map(|l| l.status)
        .collect();
    assert_eq!(logged, statuses);
    reg.clear_log();
    assert!(reg.requests().is_empty());

    // times = 2, custom body, PUT not executed while faulted.
    reg.add_fault(
        FaultRule::new(
            Some("PUT"),
            "/manifests/",
            FaultAction::Status {
                status: 500,
                retry_after: None,
                body: Some(("text/plain".into(), b"boom".to_vec())),
            },
        )
        .times(2),
    );
    let body = image_manifest(&reg, "f", b"l", json!({}));
    let ct = [("Content-Type", OCI_MANIFEST)];
    for _ in 0..2 {
        let r = req(&reg, "PUT", "/v2/f/manifests/t", &ct, &body).await;
        assert_eq!((r.status, r.body.as_slice()), (500, &b"boom"[..]));
        assert!(reg.manifest("f", "t").is_none());
    }
    assert_eq!(
        req(&reg, "PUT", "/v2/f/manifests/t", &ct, &body)
            .await
            .status,
        201
    );
    reg.clear_faults();
}

#[tokio::test]
async fn connection_faults_and_corruption() {
    let reg = start(Config::default()).await;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let digest = reg.put_blob("c", &data);
    let path = format!("/v2/c/blobs/{digest}");

    reg.add_fault(FaultRule::new("GET", &digest, FaultAction::CloseMidBody));
    let r = req(&reg, "GET", &path, &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(!r.complete);
    assert_eq!(r.body, &data[..5000]);
    assert_eq!(r.header("content-length"), Some("10000"));

    reg.clear_faults();
    reg.add_fault(FaultRule::new(
        "GET",
        &digest,
        FaultAction::CloseBeforeResponse,
    ));
    assert!(send(reg.addr(), "GET", &path, &[], b"").await.is_err());
    assert_eq!(reg.requests().last().map(|l| l.status), Some(0));

    reg.clear_faults();
    reg.add_fault(FaultRule::new("GET", &digest, FaultAction::CorruptBody));
    let r = req(&reg, "GET", &path, &[], b"").await;
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    assert_ne!(sha256(&r.body), digest);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));

    reg.clear_faults();
    reg.add_fault(FaultRule::new(
        None,
        "",
        FaultAction::Delay(std::time::Duration::from_millis(1)),
    ));
    assert_eq!(req(&reg, "GET", &path, &[], b"").await.body, data);
}

#[tokio::test]
async fn blob_gets_redirect_to_second_listener() {
    let reg = start(Config {
        redirect_blob_gets: true,
        auth: Auth::basic("u", "p"),
        ..Config::default()
    })
    .await;
    let digest = reg.put_blob("r", b"redirected bytes");
    let auth = basic("u", "p");
    let path = format!("/v2/r/blobs/{digest}");
    let r = req(&reg, "HEAD", &path, &[("Authorization", &auth)], b"").await;
    assert_eq!(r.status, 200, "HEAD is answered directly");
    let r = req(&reg, "GET", &path, &[("Authorization", &auth)], b"").await;
    assert_eq!(r.status, 307);
    let target = r.location().to_string();
    let port = reg.redirect_addr().map(|a| a.port()).unwrap_or_default();
    assert_eq!(
        target,
        format!("http://127.0.0.1:{port}/blobdata/{digest}?sig=x")
    );
    let r = req(&reg, "GET", &target, &[], b"").await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"redirected bytes"[..])
    );
    let logged = reg.redirect_requests();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].path, format!("/blobdata/{digest}?sig=x"));
    assert_eq!(logged[0].authorization, None);
    assert_eq!(logged[0].status, 200);
    assert_eq!(reg.requests().len(), 2);
    // Unknown blobs are not redirected.
    let r = req(
        &reg,
        "GET",
        &format!("/v2/r/blobs/{}", sha256(b"x")),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_testregistry"))
        .args(["--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn testregistry binary");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("read line");
    let url = line
        .trim()
        .strip_prefix("testregistry listening on http://")
        .expect("banner")
        .to_string();
    let addr: std::net::SocketAddr = url.parse().expect("address");
    let r = send(addr, "GET", "/v2/", &[], b"").await.expect("response");
    assert_eq!(r.status, 200);
    child.kill().await.expect("kill child");
}
