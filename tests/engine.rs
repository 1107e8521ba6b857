//! The layer engine on the real registry: the layer cache (hit, exact invalidation, survives
//! deletion, builds the blob when the registry lacks it), output independent of the number
//! of cores, and zstd layers read back by skopeo and umoci.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn push(ctx: &Path, tag: &str, cache: &Path, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["push", "--json", "-t", tag];
    args.extend_from_slice(extra);
    let c = ctx.to_str().unwrap().to_string();
    args.push(&c);
    let mut cmd = regbuild(&args);
    cmd.env("REGBUILD_CACHE", cache);
    let out = run(&mut cmd);
    (serde_json::from_slice(&out.stdout).unwrap(), stderr(&out))
}

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

    // The cache survives being deleted: everything is packed again, nothing breaks.
    std::fs::remove_dir_all(cache.path()).unwrap();
    let rebuilt = push_lines(ctx.path(), &tag, cache.path());
    assert_eq!(
        (count(&rebuilt, "packed"), count(&rebuilt, "cached")),
        (2, 0),
        "{rebuilt}"
    );
}

#[test]
fn a_cached_layer_the_registry_lacks_is_built_and_uploaded_intact() {
    let first_reg = Distribution::start();
    let cache = tempfile::tempdir().unwrap();
    let ctx = app();
    let (a, _) = push(
        ctx.path(),
        &format!("{}/eng/app:1", first_reg.host),
        cache.path(),
        &[],
    );
    // Another registry: the cache knows the layers, the registry does not have them.
    let reg = Distribution::start();
    let tag = format!("{}/eng/app:1", reg.host);
    let (b, err) = push(ctx.path(), &tag, cache.path(), &[]);
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
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let (report, _) = push(ctx.path(), &tag, cache.path(), &["--compression", "zstd:9"]);
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{tag}"),
    ]));
    let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
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
    let (again, _) = push(
        ctx.path(),
        &format!("{}/eng/zstd:2", reg.host),
        cold.path(),
        &["--compression", "zstd:9"],
    );
    assert_eq!(report["digest"], again["digest"]);
}
