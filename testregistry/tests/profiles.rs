//! Hosted-registry profiles, one test per deviation, through the raw HTTP
//! client; each also checks the request log the client tests count from.

mod support;

use serde_json::{json, Value};
use support::{open_session, req, resolve, send, sha256, start, with_param, Resp};
use testregistry::{
    Auth, Config, Profile, TestRegistry, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};

const MIB: usize = 1024 * 1024;

fn message(r: &Resp) -> String {
    r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn put_url(loc: &str, digest: &str) -> String {
    with_param(loc, &format!("digest={digest}"))
}

/// `Content-Range` for `len` bytes from `start`.
fn chunk_range(start: usize, len: usize) -> String {
    format!("{start}-{}", start + len - 1)
}

/// Bytes that differ along the blob, so a lost or repeated chunk changes it.
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Statuses of the logged requests with `method`, in order.
fn statuses(reg: &TestRegistry, method: &str) -> Vec<u16> {
    reg.requests()
        .iter()
        .filter(|l| l.method == method)
        .map(|l| l.status)
        .collect()
}

#[test]
fn profile_names_round_trip_and_unknown_names_fail() {
    assert_eq!(Profile::default(), Profile::Distribution);
    let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "distribution",
            "gar",
            "ghcr",
            "ecr",
            "jfrog",
            "dockerhub",
            "quay",
            "harbor"
        ]
    );
    for p in Profile::ALL {
        assert_eq!(p.name().parse::<Profile>(), Ok(p));
        assert_eq!(p.to_string(), p.name());
    }
    let err = "artifactory".parse::<Profile>().unwrap_err();
    assert_eq!(err.name, "artifactory");
    let text = err.to_string();
    assert!(text.contains("\"artifactory\""), "{text}");
    for name in names {
        assert!(text.contains(name), "{text} lacks {name}");
    }
    assert!("GAR".parse::<Profile>().is_err());

    assert_eq!(
        Config::with_profile(Profile::Distribution),
        Config::default()
    );
    let harbor = Config::with_profile(Profile::Harbor);
    assert_eq!(
        (
            harbor.profile,
            harbor.max_request_body,
            harbor.referrers_api
        ),
        (Profile::Harbor, Some(64 << 20), true)
    );
    let hub = Config::with_profile(Profile::Dockerhub);
    assert_eq!(hub.rate_limit_every, Some(4));
    let ghcr = Config::with_profile(Profile::Ghcr);
    assert_eq!((ghcr.max_request_body, ghcr.rate_limit_every), (None, None));
    assert_eq!(Config::default().profile, Profile::Distribution);
}

#[tokio::test]
async fn gar_refuses_every_patch_but_takes_a_monolithic_put() {
    let reg = start(Config::with_profile(Profile::Gar)).await;
    let blob = data(100);
    let digest = sha256(&blob);
    let loc = open_session(&reg, "proj/app").await;
    for headers in [vec![("Content-Range", "0-99")], vec![]] {
        let r = req(&reg, "PATCH", &loc, &headers, &blob).await;
        assert_eq!((r.status, r.error_code().as_str()), (405, "UNSUPPORTED"));
        assert_eq!(
            message(&r),
            "chunked uploads are not supported: use a monolithic upload (POST, then PUT with the whole blob)"
        );
    }
    // The session is still there, still empty, at the same location.
    let r = req(&reg, "GET", &loc, &[], b"").await;
    assert_eq!((r.status, r.header("range")), (204, Some("0-0")));
    let r = req(&reg, "PUT", &put_url(&loc, &digest), &[], &blob).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(reg.blob("proj/app", &digest), Some(blob));
    assert_eq!(statuses(&reg, "PATCH"), [405, 405]);
    let patch = reg.requests().into_iter().find(|l| l.method == "PATCH");
    let patch = patch.expect("logged PATCH");
    assert_eq!(
        (patch.bytes_received, patch.content_range.as_deref()),
        (100, Some("0-99"))
    );
}

#[tokio::test]
async fn ghcr_caps_chunks_at_4_mib_but_not_streams() {
    let reg = start(Config::with_profile(Profile::Ghcr)).await;
    let big = data(5 * MIB);
    let loc = open_session(&reg, "org/app").await;
    let r = req(
        &reg,
        "PATCH",
        &loc,
        &[("Content-Range", &chunk_range(0, big.len()))],
        &big,
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (416, "REQUESTED_RANGE_NOT_SATISFIABLE")
    );
    assert_eq!(
        message(&r),
        "exceeds the maximum permissible limit of 4.00MiB"
    );
    assert_eq!(r.header("range"), Some("0-0"));
    assert!(r.header("docker-upload-uuid").is_some());
    // Nothing was stored; the session takes a 4 MiB chunk then the rest.
    let loc = resolve(&loc, r.location());
    let r = req(
        &reg,
        "PATCH",
        &loc,
        &[("Content-Range", &chunk_range(0, 4 * MIB))],
        &big[..4 * MIB],
    )
    .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.header("range"), Some(chunk_range(0, 4 * MIB).as_str()));
    let loc = resolve(&loc, r.location());
    let digest = sha256(&big);
    let r = req(&reg, "PUT", &put_url(&loc, &digest), &[], &big[4 * MIB..]).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(reg.blob("org/app", &digest).as_deref(), Some(&big[..]));

    // A streamed PATCH (no Content-Range) of 5 MiB is fine.
    let loc = open_session(&reg, "org/other").await;
    let r = req(&reg, "PATCH", &loc, &[], &big).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.header("range"), Some(chunk_range(0, big.len()).as_str()));
    let loc = resolve(&loc, r.location());
    let r = req(&reg, "PUT", &put_url(&loc, &digest), &[], b"").await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(statuses(&reg, "PATCH"), [416, 202, 202]);
}

#[tokio::test]
async fn ecr_patch_answers_201_with_a_stale_range() {
    let reg = start(Config::with_profile(Profile::Ecr)).await;
    let blob = data(30);
    let mut loc = open_session(&reg, "app").await;
    for start in [0, 10, 20] {
        let range = chunk_range(start, 10);
        let chunk = &blob[start..start + 10];
        let r = req(&reg, "PATCH", &loc, &[("Content-Range", &range)], chunk).await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.header("range"), Some("0-9"), "after chunk {range}");
        assert!(r.header("docker-upload-uuid").is_some());
        loc = resolve(&loc, r.location());
    }
    let r = req(&reg, "GET", &loc, &[], b"").await;
    assert_eq!((r.status, r.header("range")), (204, Some("0-9")));
    // Believing the stale Range and resending from byte 10 fails.
    let r = req(
        &reg,
        "PATCH",
        &loc,
        &[("Content-Range", "10-19")],
        &blob[10..20],
    )
    .await;
    assert_eq!((r.status, r.header("range")), (416, Some("0-9")));
    let digest = sha256(&blob);
    let r = req(&reg, "PUT", &put_url(&loc, &digest), &[], b"").await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(reg.blob("app", &digest), Some(blob));
    assert_eq!(statuses(&reg, "PATCH"), [201, 201, 201, 416]);
}

#[tokio::test]
async fn ecr_mounts_only_blobs_a_manifest_references() {
    let mount = |digest: &str| format!("/v2/dst/blobs/uploads/?mount={digest}&from=src");
    for profile in [Profile::Ecr, Profile::Distribution] {
        let reg = start(Config::with_profile(profile)).await;
        let config = reg.put_blob("src", b"{}");
        let layer = reg.put_blob("src", b"layer");
        let loose = reg.put_blob("src", b"not in any manifest");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 5}],
        });
        let manifest = serde_json::to_vec(&manifest).expect("json");
        reg.put_manifest("src", "v1", OCI_MANIFEST, &manifest);

        let r = req(&reg, "POST", &mount(&loose), &[], b"").await;
        if profile == Profile::Ecr {
            assert_eq!(r.status, 202, "{r:?}");
            assert!(r.location().contains("/v2/dst/blobs/uploads/"));
            assert!(!reg.has_blob("dst", &loose));
        } else {
            assert_eq!(r.status, 201, "{r:?}");
        }
        for digest in [&layer, &config] {
            let r = req(&reg, "POST", &mount(digest), &[], b"").await;
            assert_eq!(r.status, 201, "{profile:?} {r:?}");
            assert!(reg.has_blob("dst", digest));
        }
    }
}

#[tokio::test]
async fn jfrog_wants_the_blob_by_patch_and_an_empty_put() {
    let reg = start(Config::with_profile(Profile::Jfrog)).await;
    let blob = data(64);
    let digest = sha256(&blob);
    let loc = open_session(&reg, "libs/app").await;
    let r = req(&reg, "PUT", &put_url(&loc, &digest), &[], &blob).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "BLOB_UPLOAD_INVALID")
    );
    assert_eq!(
        message(&r),
        "the blob must be sent by PATCH; the closing PUT must be empty"
    );
    assert!(!reg.has_blob("libs/app", &digest));
    let r = req(&reg, "GET", &loc, &[], b"").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "BLOB_UPLOAD_UNKNOWN")
    );

    // Streamed, then chunked: both close with an empty PUT.
    let loc = open_session(&reg, "libs/app").await;
    let r = req(&reg, "PATCH", &loc, &[], &blob).await;
    assert_eq!(r.status, 202, "{r:?}");
    let loc = resolve(&loc, r.location());
    let r = req(&reg, "PUT", &put_url(&loc, &digest), &[], b"").await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(reg.blob("libs/app", &digest).as_deref(), Some(&blob[..]));

    let mut loc = open_session(&reg, "libs/other").await;
    for start in [0, 32] {
        let range = chunk_range(start, 32);
        let r = req(
            &reg,
            "PATCH",
            &loc,
            &[("Content-Range", &range)],
            &blob[start..start + 32],
        )
        .await;
        assert_eq!(r.status, 202, "{r:?}");
        loc = resolve(&loc, r.location());
    }
    let r = req(&reg, "PUT", &put_url(&loc, &digest), &[], b"").await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(reg.blob("libs/other", &digest), Some(blob));
    assert_eq!(statuses(&reg, "PUT"), [400, 201, 201]);
}

#[tokio::test]
async fn dockerhub_limits_every_fourth_pull() {
    let reg = start(Config::with_profile(Profile::Dockerhub)).await;
    let digest = reg.put_blob("library/app", b"layer");
    reg.put_manifest("library/app", "latest", DOCKER_MANIFEST, b"{}");
    let manifest = "/v2/library/app/manifests/latest";
    let blob = format!("/v2/library/app/blobs/{digest}");
    let mut limited = Vec::new();
    for i in 1..=8 {
        // HEADs are not pulls: they never count and are never limited.
        let r = req(&reg, "HEAD", manifest, &[], b"").await;
        assert_eq!(r.status, 200);
        let target = if i % 2 == 0 { blob.as_str() } else { manifest };
        let r = req(&reg, "GET", target, &[], b"").await;
        if r.status == 429 {
            assert_eq!(r.error_code(), "TOOMANYREQUESTS");
            assert_eq!(
                message(&r),
                "You have reached your pull rate limit. You may increase the limit by authenticating and upgrading"
            );
            assert_eq!(r.header("ratelimit-limit"), Some("100;w=21600"));
            assert_eq!(r.header("ratelimit-remaining"), Some("0"));
            assert_eq!(r.header("retry-after"), Some("1"));
            limited.push(i);
        } else {
            assert_eq!(r.status, 200, "pull {i}: {r:?}");
        }
    }
    assert_eq!(limited, [4, 8]);
    assert_eq!(
        statuses(&reg, "GET"),
        [200, 200, 200, 429, 200, 200, 200, 429]
    );

    // The knob works without the profile, and `None` means no limit.
    let reg = start(Config {
        rate_limit_every: Some(2),
        ..Config::default()
    })
    .await;
    let digest = reg.put_blob("a", b"x");
    let blob = format!("/v2/a/blobs/{digest}");
    assert_eq!(req(&reg, "GET", &blob, &[], b"").await.status, 200);
    assert_eq!(req(&reg, "GET", &blob, &[], b"").await.status, 429);
    let reg = start(Config::default()).await;
    let digest = reg.put_blob("a", b"x");
    for _ in 0..8 {
        let r = req(&reg, "GET", &format!("/v2/a/blobs/{digest}"), &[], b"").await;
        assert_eq!(r.status, 200);
    }
}

async fn token_for(reg: &TestRegistry, scopes: &[&str]) -> String {
    let mut path = "/token?service=testregistry".to_string();
    for s in scopes {
        path.push_str(&format!("&scope={s}"));
    }
    let creds = support::basic("alice", "secret");
    let r = req(reg, "GET", &path, &[("Authorization", &creds)], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    format!("Bearer {}", r.json()["token"].as_str().unwrap_or_default())
}

#[tokio::test]
async fn dockerhub_mount_needs_source_pull_and_its_challenge_names_both() {
    for profile in [Profile::Dockerhub, Profile::Distribution] {
        let reg = start(Config {
            auth: Auth::token("alice", "secret"),
            ..Config::with_profile(profile)
        })
        .await;
        let digest = reg.put_blob("library/base", b"shared layer");
        let mount = format!("/v2/me/app/blobs/uploads/?mount={digest}&from=library/base");
        let push_only = token_for(&reg, &["repository:me/app:pull,push"]).await;
        let r = req(&reg, "POST", &mount, &[("Authorization", &push_only)], b"").await;
        assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{challenge}"
        );
        let scope = if profile == Profile::Dockerhub {
            "scope=\"repository:me/app:pull,push repository:library/base:pull\""
        } else {
            "scope=\"repository:me/app:pull,push\""
        };
        assert!(challenge.contains(scope), "{profile:?}: {challenge}");
        assert!(!reg.has_blob("me/app", &digest));

        let both = token_for(
            &reg,
            &[
                "repository:me/app:pull,push",
                "repository:library/base:pull",
            ],
        )
        .await;
        let r = req(&reg, "POST", &mount, &[("Authorization", &both)], b"").await;
        assert_eq!(r.status, 201, "{profile:?}: {r:?}");
        assert!(reg.has_blob("me/app", &digest));
    }
}

#[tokio::test]
async fn quay_refuses_anonymous_mounts_without_a_challenge() {
    let reg = start(Config {
        auth: Auth::token("alice", "secret"),
        ..Config::with_profile(Profile::Quay)
    })
    .await;
    let digest = reg.put_blob("org/base", b"layer");
    let mount = format!("/v2/org/app/blobs/uploads/?mount={digest}&from=org/base");
    let r = req(&reg, "POST", &mount, &[], b"").await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(message(&r), "anonymous blob mounts are not allowed");
    assert_eq!(r.header("www-authenticate"), None);
    // The plain upload a client falls back to gets the usual challenge ...
    let r = req(&reg, "POST", "/v2/org/app/blobs/uploads/", &[], b"").await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|c| c.starts_with("Bearer ")));
    // ... and an authenticated mount works.
    let token = token_for(
        &reg,
        &["repository:org/app:pull,push", "repository:org/base:pull"],
    )
    .await;
    let r = req(&reg, "POST", &mount, &[("Authorization", &token)], b"").await;
    assert_eq!(r.status, 201, "{r:?}");

    // Without auth configured every mount is anonymous, plain uploads work.
    let reg = start(Config::with_profile(Profile::Quay)).await;
    let digest = reg.put_blob("org/base", b"layer");
    let mount = format!("/v2/org/app/blobs/uploads/?mount={digest}&from=org/base");
    let r = req(&reg, "POST", &mount, &[], b"").await;
    assert_eq!((r.status, r.header("www-authenticate")), (401, None));
    assert!(!reg.has_blob("org/app", &digest));
    open_session(&reg, "org/app").await;
    let posts = statuses(&reg, "POST");
    assert_eq!(posts, [401, 202]);
}

/// An index of `children` (media types) over stored stand-in manifests.
fn index(reg: &TestRegistry, media_type: &str, children: &[&str]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let body = format!("{{\"n\":{i},\"mediaType\":\"{child}\"}}");
            let digest =
                reg.put_manifest("org/app", &sha256(body.as_bytes()), child, body.as_bytes());
            json!({"mediaType": child, "digest": digest, "size": body.len()})
        })
        .collect();
    let doc = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests});
    serde_json::to_vec(&doc).expect("json")
}

#[tokio::test]
async fn quay_refuses_indexes_mixing_docker_and_oci() {
    let cases: [(&str, &[&str], u16); 5] = [
        (OCI_INDEX, &[OCI_MANIFEST, DOCKER_MANIFEST], 400),
        (OCI_INDEX, &[DOCKER_MANIFEST], 400),
        (DOCKER_LIST, &[OCI_MANIFEST], 400),
        (OCI_INDEX, &[OCI_MANIFEST, OCI_MANIFEST], 201),
        (DOCKER_LIST, &[DOCKER_MANIFEST], 201),
    ];
    for profile in [Profile::Quay, Profile::Distribution] {
        let reg = start(Config::with_profile(profile)).await;
        for (media_type, children, quay_status) in cases {
            let body = index(&reg, media_type, children);
            let r = req(
                &reg,
                "PUT",
                "/v2/org/app/manifests/multi",
                &[("Content-Type", media_type)],
                &body,
            )
            .await;
            let expected = if profile == Profile::Quay {
                quay_status
            } else {
                201
            };
            assert_eq!(
                r.status, expected,
                "{profile:?} {media_type} {children:?}: {r:?}"
            );
            if r.status == 400 {
                assert_eq!(r.error_code(), "MANIFEST_INVALID");
                assert_eq!(
                    message(&r),
                    "manifest list/index mixes Docker and OCI media types"
                );
            }
        }
    }
}

#[tokio::test]
async fn harbor_loses_uploads_over_the_request_cap() {
    let reg = start(Config {
        max_request_body: Some(1000),
        ..Config::with_profile(Profile::Harbor)
    })
    .await;
    let blob = data(2500);
    let digest = sha256(&blob);
    for method in ["PUT", "PATCH"] {
        let loc = open_session(&reg, "proj/app").await;
        let r = req(&reg, method, &put_url(&loc, &digest), &[], &blob).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "BLOB_UPLOAD_UNKNOWN"),
            "{method}"
        );
        assert_eq!(message(&r), "blob upload unknown");
        let r = req(&reg, "GET", &loc, &[], b"").await;
        assert_eq!(r.status, 404, "{method}: session should be gone");
    }
    assert!(!reg.has_blob("proj/app", &digest));

    // Chunks within the cap, and a final PUT carrying the last one, work.
    let mut loc = open_session(&reg, "proj/app").await;
    for start in [0, 1000] {
        let range = chunk_range(start, 1000);
        let chunk = &blob[start..start + 1000];
        let r = req(&reg, "PATCH", &loc, &[("Content-Range", &range)], chunk).await;
        assert_eq!(r.status, 202, "{r:?}");
        loc = resolve(&loc, r.location());
    }
    let r = req(&reg, "PUT", &put_url(&loc, &digest), &[], &blob[2000..]).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(reg.blob("proj/app", &digest), Some(blob));
    assert_eq!(statuses(&reg, "PATCH"), [404, 202, 202]);
    assert_eq!(statuses(&reg, "PUT"), [404, 201]);

    let subject = sha256(b"subject");
    let r = req(
        &reg,
        "GET",
        &format!("/v2/proj/app/referrers/{subject}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "referrers API is on: {r:?}");
}

#[tokio::test]
async fn max_request_body_applies_without_a_profile() {
    let reg = start(Config {
        max_request_body: Some(10),
        ..Config::default()
    })
    .await;
    let loc = open_session(&reg, "a").await;
    let r = req(&reg, "PATCH", &loc, &[], b"0123456789").await;
    assert_eq!(r.status, 202, "{r:?}");
    let loc = resolve(&loc, r.location());
    let r = req(&reg, "PATCH", &loc, &[], b"0123456789A").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "BLOB_UPLOAD_UNKNOWN")
    );
    assert_eq!(req(&reg, "GET", &loc, &[], b"").await.status, 404);
}

#[tokio::test]
async fn binary_takes_a_profile_and_a_request_cap() {
    use tokio::io::AsyncBufReadExt;
    let bin = env!("CARGO_BIN_EXE_testregistry");
    let out = tokio::process::Command::new(bin)
        .args(["--profile", "artifactory"])
        .output()
        .await
        .expect("run testregistry");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("artifactory") && stderr.contains("jfrog"),
        "{stderr}"
    );

    let mut child = tokio::process::Command::new(bin)
        .args(["--addr", "127.0.0.1:0", "--profile", "gar"])
        .args(["--max-request-body", "10"])
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
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("testregistry listening on http://")
        .expect("banner")
        .parse()
        .expect("address");
    let path = "/v2/a/blobs/uploads/";
    let r = send(addr, "POST", path, &[], b"").await.expect("response");
    assert_eq!(r.status, 202);
    let loc = resolve(path, r.location());
    let r = send(addr, "PATCH", &loc, &[], b"small")
        .await
        .expect("response");
    assert_eq!(r.status, 405, "gar refuses PATCH: {r:?}");
    let r = send(addr, "PATCH", &loc, &[], b"more than ten")
        .await
        .expect("response");
    assert_eq!(r.status, 404, "over the cap: {r:?}");
    child.kill().await.expect("kill child");
}
