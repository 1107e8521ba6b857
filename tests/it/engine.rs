//! The layer engine on the real registry: the layer cache (hit, exact invalidation, survives
//! deletion, builds the blob when the registry lacks it), output independent of the number
//! of cores, and zstd layers read back by skopeo and umoci.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use serde_json::Value;
use testregistry::{FaultAction, FaultRule};

fn push_lines(ctx: &Path, tag: &str, cache: &Path) -> String {
    let out =
        run(regbuild(&["push", "-t", tag, ctx.to_str().unwrap()]).env("REGBUILD_CACHE", cache));
    stderr(&out)
}

fn count(text: &str, word: &str) -> usize {
    text.lines().filter(|l| l.starts_with(word)).count()
}

fn app() -> tempfile::TempDir {
    context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY src/ /src/\nCOPY conf.txt /etc/conf.txt\nUSER 1\n",
        ),
        ("src/a.txt", "alpha\n"),
        ("src/b.txt", "bravo\n"),
        ("conf.txt", "x=1\n"),
    ])
}

#[test]
fn the_cache_skips_unchanged_layers_and_invalidates_exactly() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let cache = tempfile::tempdir().unwrap();
    let ctx = app();
    let tag = format!("{host}/eng/app:1");
    let first = push_lines(ctx.path(), &tag, cache.path());
    assert_eq!(
        (count(&first, "packed"), count(&first, "cached")),
        (2, 0),
        "{first}"
    );

    // touch changes no content: both layers come from the cache.
    run(Command::new("touch")
        .arg(ctx.path().join("src/a.txt"))
        .arg(ctx.path().join("conf.txt")));
    let again = push_lines(ctx.path(), &tag, cache.path());
    assert_eq!(
        (count(&again, "packed"), count(&again, "cached")),
        (0, 2),
        "{again}"
    );

    // A changed byte (same size), a changed mode, a new file: only that layer is packed.
    std::fs::write(ctx.path().join("src/a.txt"), "alphA\n").unwrap();
    let byte = push_lines(ctx.path(), &tag, cache.path());
    assert_eq!(
        (count(&byte, "packed"), count(&byte, "cached")),
        (1, 1),
        "{byte}"
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        ctx.path().join("conf.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mode = push_lines(ctx.path(), &tag, cache.path());
    assert_eq!(
        (count(&mode, "packed"), count(&mode, "cached")),
        (1, 1),
        "{mode}"
    );
    std::fs::write(ctx.path().join("src/c.txt"), "charlie\n").unwrap();
    let added = push_lines(ctx.path(), &tag, cache.path());
    assert_eq!(
        (count(&added, "packed"), count(&added, "cached")),
        (1, 1),
        "{added}"
    );

    // The cache survives being deleted: everything is packed again, nothing breaks (a new
    // repository: the tag pushed above would serve the layers by key, see below).
    std::fs::remove_dir_all(cache.path()).unwrap();
    let rebuilt = push_lines(ctx.path(), &format!("{host}/eng/other:1"), cache.path());
    assert_eq!(
        (count(&rebuilt, "packed"), count(&rebuilt, "cached")),
        (2, 0),
        "{rebuilt}"
    );
}

#[test]
fn an_empty_cache_reuses_layers_of_the_pushed_tag_and_of_cache_from_by_key() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let ctx = app();
    let tag = format!("{host}/eng/ci:1");
    let first_cache = tempfile::tempdir().unwrap();
    let (first, _) = push_json_to(ctx.path(), &[&tag], &[], Some(first_cache.path()));

    // A fresh runner: empty cache, same sources. The layers are found by key in the tag's
    // image: nothing is packed, nothing uploaded, the same digest.
    let digest_of = |out: &std::process::Output| {
        let text = stdout(out);
        let last = text.lines().last().unwrap_or_default().to_string();
        last.split_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or(last)
    };
    let fresh = tempfile::tempdir().unwrap();
    let mark = reg.access_log().len();
    let out = run(
        regbuild(&["push", "-t", &tag, ctx.path().to_str().unwrap()])
            .env("REGBUILD_CACHE", fresh.path()),
    );
    let err = stderr(&out);
    assert_eq!(
        (count(&err, "packed"), count(&err, "cached")),
        (0, 2),
        "{err}"
    );
    assert_eq!(digest_of(&out), first["digest"].as_str().unwrap());
    let log = reg.access_log_since(mark);
    assert!(
        !log.iter().any(|a| a.uri.contains("/blobs/uploads/")),
        "no blob written: {log:#?}"
    );

    // Another repository with --cache-from: the layers are mounted from there, not packed.
    let other = tempfile::tempdir().unwrap();
    let out = run(regbuild(&[
        "push",
        "--cache-from",
        &tag,
        "-t",
        &format!("{host}/eng/ci-copy:1"),
        ctx.path().to_str().unwrap(),
    ])
    .env("REGBUILD_CACHE", other.path()));
    let err = stderr(&out);
    assert_eq!(
        (count(&err, "packed"), count(&err, "cached")),
        (0, 2),
        "{err}"
    );
    assert_eq!(count(&err, "mounted"), 2, "{err}");
    assert_eq!(digest_of(&out), first["digest"].as_str().unwrap());

    // A changed file misses its key: that layer is packed, the other one reused.
    std::fs::write(ctx.path().join("conf.txt"), "x=2\n").unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let changed = push_lines(ctx.path(), &tag, fresh.path());
    assert_eq!(
        (count(&changed, "packed"), count(&changed, "cached")),
        (1, 1),
        "{changed}"
    );
    // --no-cache reads no registry for layers: both packed, and the same digest.
    let (nocache, _) = push_json_to(ctx.path(), &[&tag], &["--no-cache"], Some(fresh.path()));
    let (cached, _) = push_json_to(ctx.path(), &[&tag], &[], Some(fresh.path()));
    assert_eq!(nocache["digest"], cached["digest"]);
}

#[test]
fn a_cached_layer_the_registry_lacks_is_built_and_uploaded_intact() {
    let first_reg = Distribution::start();
    let cache = tempfile::tempdir().unwrap();
    let ctx = app();
    let (a, _) = push_json_to(
        ctx.path(),
        &[&format!("{}/eng/app:1", first_reg.host)],
        &[],
        Some(cache.path()),
    );
    // Another registry: the cache knows the layers, the registry does not have them.
    let reg = Distribution::start();
    let tag = format!("{}/eng/app:1", reg.host);
    let (b, err) = push_json_to(ctx.path(), &[&tag], &[], Some(cache.path()));
    assert_eq!(a["digest"], b["digest"], "same image from the cache");
    assert!(
        b["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["action"] == "uploaded"),
        "{b}"
    );
    let _ = err;
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/src/b.txt")).unwrap(),
        "bravo\n"
    );
}

#[test]
fn instruction_case_and_blanks_change_no_layer_and_upload_nothing() {
    let reg = Distribution::start();
    let cache = tempfile::tempdir().unwrap();
    let ctx = app();
    let tag = format!("{}/eng/case:1", reg.host);
    let (first, _) = push_json_to(ctx.path(), &[&tag], &[], Some(cache.path()));
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "from scratch\ncopy   src/  /src/\nCopy conf.txt\t/etc/conf.txt\nuser 1\n",
    )
    .unwrap();
    let mark = reg.access_log().len();
    let (second, err) = push_json_to(ctx.path(), &[&tag], &[], Some(cache.path()));
    let layers = |v: &Value| -> Vec<String> {
        layer_digests(&format!(
            "{}@{}",
            tag.trim_end_matches(":1"),
            v["digest"].as_str().unwrap()
        ))
    };
    assert_eq!(second["bytes_uploaded"], 0, "{second}\n{err}");
    assert_eq!(layers(&first), layers(&second));
    assert_eq!(
        first["digest"], second["digest"],
        "the history reads the same"
    );
    let log = reg.access_log_since(mark);
    assert_eq!(uploads_by(&log, "POST"), 0, "{log:#?}");
}

/// sha256 of a gzip blob's decompressed bytes, by gzip(1): the diff_id a reader expects.
fn diff_id_of(blob: &Path) -> String {
    let out = run(Command::new("sh")
        .arg("-c")
        .arg("gzip -dc \"$0\" | sha256sum")
        .arg(blob));
    format!("sha256:{}", stdout(&out).split_whitespace().next().unwrap())
}

/// HEADs of a blob, and uploads that completed with its digest, in an access log.
fn heads_and_puts(log: &[crate::common::Access], digest: &str) -> (usize, usize) {
    let heads = log
        .iter()
        .filter(|a| a.method == "HEAD" && a.uri.ends_with(&format!("/blobs/{digest}")))
        .count();
    let puts = log
        .iter()
        .filter(|a| a.method == "PUT" && a.status == 201 && a.uri.contains(&digest[7..]))
        .count();
    (heads, puts)
}

/// Requests with `method` on upload sessions.
fn uploads_by(log: &[crate::common::Access], method: &str) -> usize {
    log.iter()
        .filter(|a| a.method == method && a.uri.contains("/blobs/uploads/"))
        .count()
}

#[test]
fn new_layers_pack_together_and_upload_while_the_build_runs() {
    let reg = Distribution::start();
    let cache = tempfile::tempdir().unwrap();
    // Three new layers in the final stage (one copied from a stage that packs its own), with
    // a config-only step between them: packed together, their diff_ids filled in after.
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch AS parts\nCOPY part.txt /part.txt\n\nFROM scratch\nCOPY a.txt /a.txt\nENV X=1\nCOPY b.txt /b.txt\nCOPY --from=parts /part.txt /c.txt\nUSER 1\n",
        ),
        ("a.txt", "alpha\n"),
        ("b.txt", "bravo\n"),
        ("part.txt", "charlie\n"),
    ]);
    let tag = format!("{}/eng/early:1", reg.host);
    let mark = reg.access_log().len();
    let (v, _) = push_json_to(ctx.path(), &[&tag], &[], Some(cache.path()));
    let log = reg.access_log_since(mark);

    let config = skopeo_config(&tag);
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(diff_ids.len(), 3, "{config}");
    let created_by: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        created_by,
        [
            "COPY a.txt /a.txt",
            "ENV X=1",
            "COPY b.txt /b.txt",
            "COPY --from=parts /part.txt /c.txt",
            "USER 1"
        ]
    );

    // No cache knew the layers: each was streamed to the registry while it was packed (one
    // PATCH, then a PUT with its digest), never HEADed; the plan neither HEADs nor sends it
    // again, and the report still counts it as uploaded. The stage-only layer (`parts`) is
    // not in the image and was not sent.
    let (dir, bundle) = pull_and_unpack(&tag, &[]);
    let layout = dir.path().join("layout");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers.len(), 3);
    for (i, digest) in layers.iter().enumerate() {
        assert_eq!(
            diff_id_of(&blob(digest)),
            diff_ids[i],
            "diff_id of layer {i}"
        );
        assert_eq!(
            heads_and_puts(&log, digest),
            (0, 1),
            "layer {digest}: {log:#?}"
        );
        let reported = v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["digest"] == digest.as_str())
            .unwrap();
        assert_eq!(reported["action"], "uploaded", "{v}");
    }
    assert_eq!(uploads_by(&log, "PATCH"), 3, "{log:#?}");
    assert_eq!(
        uploads_by(&log, "PUT"),
        4,
        "3 layers and the config: {log:#?}"
    );
    for (path, content) in [
        ("a.txt", "alpha\n"),
        ("b.txt", "bravo\n"),
        ("c.txt", "charlie\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(bundle.join("rootfs").join(path)).unwrap(),
            content
        );
    }

    // The same build with the cache off and on one core gives the same image. Without a
    // cache nothing says the layers are new: each is offered once packed, HEADed, then sent.
    let mark = reg.access_log().len();
    let cold = tempfile::tempdir().unwrap();
    let out = run(Command::new("taskset")
        .args(["-c", "0"])
        .arg(env!("CARGO_BIN_EXE_regbuild"))
        .args(["push", "--json", "--no-cache", "-t"])
        .arg(format!("{}/eng/early-one-core:1", reg.host))
        .arg(ctx.path())
        .env("REGBUILD_CACHE", cold.path())
        .env("DOCKER_CONFIG", cold.path()));
    let again: Value = json(&out);
    assert_eq!(again["digest"], v["digest"]);
    let log = reg.access_log_since(mark);
    for digest in &layers {
        assert_eq!(
            heads_and_puts(&log, digest),
            (1, 1),
            "layer {digest}: {log:#?}"
        );
    }
    assert_eq!(uploads_by(&log, "PATCH"), 0, "{log:#?}");

    // --no-stream-upload: an empty cache, but no layer is sent before its HEAD.
    let mark = reg.access_log().len();
    let empty = tempfile::tempdir().unwrap();
    let tag = format!("{}/eng/early-no-stream:1", reg.host);
    let (quiet, _) = push_json_to(
        ctx.path(),
        &[&tag],
        &["--no-stream-upload"],
        Some(empty.path()),
    );
    assert_eq!(quiet["digest"], v["digest"]);
    let log = reg.access_log_since(mark);
    assert_eq!(uploads_by(&log, "PATCH"), 0, "{log:#?}");
    for digest in &layers {
        assert_eq!(
            heads_and_puts(&log, digest).0,
            1,
            "layer {digest}: {log:#?}"
        );
    }
}

#[test]
fn a_failed_early_upload_is_left_to_the_plan() {
    let reg = Distribution::start();
    let cache = tempfile::tempdir().unwrap();
    let ctx = app();
    // Every upload session of the first attempt fails: the early uploads give up, the plan
    // uploads the same files and the push succeeds.
    let proxy = crate::common::proxy::FaultProxy::start(&reg.host);
    proxy.add_rule(FaultRule::new("POST", "/blobs/uploads/", FaultAction::status(503)).times(2));
    let tag = format!("{}/eng/fallback:1", proxy.host);
    let (v, _) = push_json_to(ctx.path(), &[&tag], &["--retries", "1"], Some(cache.path()));
    assert!(
        v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["action"] == "uploaded"),
        "{v}"
    );
    let refused = proxy
        .log()
        .iter()
        .filter(|(method, _, status, faulted)| method == "POST" && *status == 503 && *faulted)
        .count();
    assert_eq!(refused, 2, "both early uploads were refused");
    let (_k, bundle) = pull_and_unpack(&format!("{}/eng/fallback:1", reg.host), &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/conf.txt")).unwrap(),
        "x=1\n"
    );
}

#[test]
fn layering_auto_splits_a_big_copy_and_a_change_reuploads_one_part() {
    let reg = Distribution::start();
    let cache = tempfile::tempdir().unwrap();
    // 36 MiB of text in 6 directories of 12 files (above the 32 MiB split threshold).
    let ctx = context_with(&[("Dockerfile", "FROM scratch\nCOPY . /app\nUSER 1\n")]);
    let mut x: u64 = 7;
    for d in 0..6 {
        std::fs::create_dir_all(ctx.path().join(format!("d{d}"))).unwrap();
        for f in 0..12 {
            let text: String = (0..512 * 1024 / 16)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    format!("{:015x}\n", x >> 4)
                })
                .collect();
            std::fs::write(ctx.path().join(format!("d{d}/f{f:02}.txt")), text).unwrap();
        }
    }
    let tag = format!("{}/eng/split:1", reg.host);
    let (first, _) = push_json_to(
        ctx.path(),
        &[&tag],
        &["--layering=auto"],
        Some(cache.path()),
    );
    let layers = |v: &Value| -> Vec<(String, u64, String)> {
        v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["digest"].as_str().unwrap().to_string(),
                    b["size"].as_u64().unwrap(),
                    b["action"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let blobs = layers(&first);
    // config + the parts
    assert!(blobs.len() >= 4, "{first}");
    let config = skopeo_config(&tag);
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        blobs.len() - 1
    );
    let history = config["history"][0]["created_by"].as_str().unwrap();
    assert!(history.starts_with("COPY . /app [part 1/"), "{history}");
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    for d in 0..6 {
        for f in 0..12 {
            let p = format!("d{d}/f{f:02}.txt");
            assert_eq!(
                std::fs::read(bundle.join("rootfs/app").join(&p)).unwrap(),
                std::fs::read(ctx.path().join(&p)).unwrap(),
                "{p}"
            );
        }
    }

    // One changed file: one part and the config are new, every other part exists.
    let changed = ctx.path().join("d3/f05.txt");
    let mut text = std::fs::read_to_string(&changed).unwrap();
    text.push_str("changed\n");
    std::fs::write(&changed, text).unwrap();
    let (second, _) = push_json_to(
        ctx.path(),
        &[&tag],
        &["--layering=auto"],
        Some(cache.path()),
    );
    let after = layers(&second);
    assert_eq!(after.len(), blobs.len(), "{second}");
    let uploaded = after.iter().filter(|b| b.2 == "uploaded").count();
    assert_eq!(uploaded, 2, "one part and the config: {second}");
    let total: u64 = blobs.iter().map(|b| b.1).sum();
    assert!(
        second["bytes_uploaded"].as_u64().unwrap() * 3 < total,
        "{second}"
    );
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert!(
        std::fs::read_to_string(bundle.join("rootfs/app/d3/f05.txt"))
            .unwrap()
            .ends_with("changed\n")
    );

    // Same inputs, empty cache: the same image.
    let cold = tempfile::tempdir().unwrap();
    let (again, _) = push_json_to(
        ctx.path(),
        &[&format!("{}/eng/split-again:1", reg.host)],
        &["--layering=auto"],
        Some(cold.path()),
    );
    assert_eq!(again["digest"], second["digest"]);
}

#[test]
fn a_streamed_upload_cut_midway_is_left_to_the_plan() {
    let reg = Distribution::start();
    let cache = tempfile::tempdir().unwrap();
    let ctx = app();
    // The first streamed PATCH is dropped without an answer: that layer's early upload
    // fails, the plan HEADs it (missing) and uploads it from the file.
    let proxy = crate::common::proxy::FaultProxy::start(&reg.host);
    proxy.add_rule(FaultRule::new(
        "PATCH",
        "/blobs/uploads/",
        FaultAction::CloseBeforeResponse,
    ));
    let tag = format!("{}/eng/cut:1", proxy.host);
    let (v, _) = push_json_to(ctx.path(), &[&tag], &[], Some(cache.path()));
    assert!(
        v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["action"] == "uploaded"),
        "{v}"
    );
    let patches: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|(method, ..)| method == "PATCH")
        .collect();
    assert_eq!(
        patches.len(),
        2,
        "one streamed PATCH per layer: {patches:?}"
    );
    assert_eq!(proxy.faulted().len(), 1);
    let (_k, bundle) = pull_and_unpack(&format!("{}/eng/cut:1", reg.host), &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/src/a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/conf.txt")).unwrap(),
        "x=1\n"
    );
}

#[test]
fn one_core_or_all_of_them_give_the_same_digest() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    // Several MiB, so the block-parallel compressor really splits the work.
    let mut x: u64 = 42;
    let data: String = (0..400_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!("{:x}\n", x >> 40)
        })
        .collect();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY data.txt /data.txt\nUSER 1\n",
        ),
        ("data.txt", &data),
    ]);
    let mut digests = Vec::new();
    for (i, cores) in ["0", "0-1"].iter().enumerate() {
        let cache = tempfile::tempdir().unwrap();
        let out = run(Command::new("taskset")
            .args(["-c", cores])
            .arg(env!("CARGO_BIN_EXE_regbuild"))
            .args([
                "push",
                "--json",
                "-t",
                &format!("{host}/eng/cores:{i}"),
                ctx.path().to_str().unwrap(),
            ])
            .env("REGBUILD_CACHE", cache.path())
            .env("DOCKER_CONFIG", cache.path()));
        let v: Value = json(&out);
        digests.push(v["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn zstd_layers_round_trip_through_skopeo_and_umoci() {
    let reg = Distribution::start();
    let cache = tempfile::tempdir().unwrap();
    let ctx = app();
    let tag = format!("{}/eng/zstd:1", reg.host);
    let (report, _) = push_json_to(
        ctx.path(),
        &[&tag],
        &["--compression", "zstd:9"],
        Some(cache.path()),
    );
    let manifest = raw_manifest(&tag);
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    // skopeo reads the zstd layers (decompressing and checking them); umoci 0.4 cannot
    // unpack zstd itself, so skopeo hands it gzip.
    let (_k, bundle) = pull_and_unpack(&tag, &["--dest-compress-format", "gzip"]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/conf.txt")).unwrap(),
        "x=1\n"
    );
    // Deterministic: the same again with a cold cache.
    let cold = tempfile::tempdir().unwrap();
    let (again, _) = push_json_to(
        ctx.path(),
        &[&format!("{}/eng/zstd:2", reg.host)],
        &["--compression", "zstd:9"],
        Some(cold.path()),
    );
    assert_eq!(report["digest"], again["digest"]);
}
