//! Minimal and hardened images on the real registry: `COPY --closure` (a host program with
//! its libraries on scratch, run under chroot), setuid stripping, squash, the root warning,
//! and the debug variant.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::common::*;

fn count_files(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.path().symlink_metadata().unwrap();
        if meta.is_dir() {
            let (f, b) = count_files(&entry.path());
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}

#[test]
fn curl_with_its_library_closure_runs_on_scratch() {
    let reg = Distribution::start();
    let ctx = context_with(&[(
        "Dockerfile",
        "FROM scratch\nCOPY --closure /usr/bin/curl /\nUSER 65534\nENTRYPOINT [\"/usr/bin/curl\"]\n",
    )]);
    let tag = format!("{}/min/curl:1", reg.host);
    let (report, _) = push_json(ctx.path(), &tag, &[]);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    let text = chroot(&rootfs, &["/usr/bin/curl", "--version"]);
    assert!(text.starts_with("curl "), "{text}");
    let (files, bytes) = count_files(&rootfs);
    let compressed: u64 = report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["size"].as_u64().unwrap())
        .sum();
    eprintln!(
        "curl-from-scratch: {files} files, {bytes} bytes unpacked, {compressed} bytes compressed"
    );
    assert!(files > 10 && files < 200, "{files}");
    // No shell, no package manager.
    assert!(!rootfs.join("bin/sh").exists() && !rootfs.join("usr/bin/sh").exists());
}

#[test]
fn a_dynamic_program_and_a_static_one_run_from_their_closures() {
    let reg = Distribution::start();
    let build = tempfile::tempdir().unwrap();
    let src = repo_root().join("tests/fixtures/hello/hello.c");
    let dynamic = build.path().join("hello-dyn");
    let stat = build.path().join("hello-static");
    run(Command::new("cc")
        .arg("-O2")
        .arg("-o")
        .arg(&dynamic)
        .arg(&src));
    run(Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&stat)
        .arg(&src));
    let ctx = context_with(&[(
        "Dockerfile",
        &format!(
            "FROM scratch\nCOPY --closure {} {} /\n",
            dynamic.display(),
            stat.display()
        ),
    )]);
    let tag = format!("{}/min/hello:1", reg.host);
    push_json(ctx.path(), &tag, &["--allow-root"]);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    for bin in [&dynamic, &stat] {
        let out = run(Command::new("/usr/sbin/chroot")
            .arg(&rootfs)
            .arg(bin)
            .env_clear()
            .env("GREETING", "from the closure"));
        assert!(
            stdout(&out).contains("from the closure"),
            "{}",
            bin.display()
        );
    }
    assert!(
        rootfs.join("lib64/ld-linux-x86-64.so.2").exists()
            || rootfs.join("lib/ld-linux-x86-64.so.2").exists()
    );
}

#[test]
fn a_missing_library_names_the_binary_and_the_library() {
    // A sysroot in the context holding curl but none of its libraries.
    let ctx = context_with(&[(
        "Dockerfile",
        "FROM scratch\nCOPY --closure --sysroot=tree /usr/bin/curl /\n",
    )]);
    std::fs::create_dir_all(ctx.path().join("tree/usr/bin")).unwrap();
    std::fs::copy("/usr/bin/curl", ctx.path().join("tree/usr/bin/curl")).unwrap();
    let out = regbuild(&[
        "push",
        "-t",
        "127.0.0.1:1/x:1",
        ctx.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(
        err.contains("/usr/bin/curl") && (err.contains("libcurl") || err.contains("ld-linux")),
        "{err}"
    );
}

#[test]
fn setuid_bits_are_stripped_and_reported_unless_kept() {
    let reg = Distribution::start();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY tool /usr/bin/tool\nUSER 1000\n",
        ),
        ("tool", "#!/bin/true\n"),
    ]);
    std::fs::set_permissions(
        ctx.path().join("tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let tag = format!("{}/min/suid:1", reg.host);
    let (report, err) = push_json(ctx.path(), &tag, &[]);
    assert_eq!(
        report["setuid_stripped"],
        serde_json::json!(["/usr/bin/tool"])
    );
    assert!(
        err.contains("stripped setuid/setgid bits from /usr/bin/tool"),
        "{err}"
    );
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    let mode = std::fs::metadata(bundle.join("rootfs/usr/bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);

    let kept = format!("{}/min/suid:kept", reg.host);
    let (report, _) = push_json(ctx.path(), &kept, &["--keep-setuid"]);
    assert_eq!(report["setuid_stripped"], serde_json::json!([]));
    let (_k, bundle) = pull_and_unpack(&kept, &[]);
    let mode = std::fs::metadata(bundle.join("rootfs/usr/bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4755);
}

#[test]
fn running_as_root_is_warned_about_unless_allowed() {
    let reg = Distribution::start();
    let ctx = context_with(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "a")]);
    let (_, err) = push_json(ctx.path(), &format!("{}/min/root:1", reg.host), &[]);
    assert!(err.contains("runs as root"), "{err}");
    let (_, err) = push_json(
        ctx.path(),
        &format!("{}/min/root:2", reg.host),
        &["--allow-root"],
    );
    assert!(!err.contains("runs as root"), "{err}");
}

/// A base of three layers where the third deletes a file of the first and the second holds
/// a file owned by 1000.
fn base_with_history(host: &str) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = format!("{}:base", layout.display());
    umoci_image(&layout, "base", &[("/etc/old.conf", b"old".to_vec())], None);
    let owned = dir.path().join("owned");
    std::fs::write(&owned, "mine").unwrap();
    std::os::unix::fs::chown(&owned, Some(1000), Some(1000)).unwrap();
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(&owned)
        .arg("/home/user/owned"));
    run(Command::new("umoci").args(["insert", "--image", &image, "--whiteout", "/etc/old.conf"]));
    skopeo_copy(
        &format!("oci:{image}"),
        &format!("docker://{host}/min/base:1"),
        &[],
    );
}

#[test]
fn squash_makes_one_layer_of_the_whole_image_or_of_the_new_layers() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    base_with_history(&host);
    let ctx = context_with(&[
        (
            "Dockerfile",
            &format!("FROM {host}/min/base:1\nCOPY a /app/a\nCOPY b /app/b\nUSER 1000\n"),
        ),
        ("a", "a"),
        ("b", "b"),
    ]);
    let manifest = |tag: &str| raw_manifest(&format!("{host}/min/app:{tag}"));
    push_json(ctx.path(), &format!("{host}/min/app:plain"), &[]);
    assert_eq!(manifest("plain")["layers"].as_array().unwrap().len(), 5);

    push_json(
        ctx.path(),
        &format!("{host}/min/app:new"),
        &["--squash=new"],
    );
    let new = manifest("new");
    assert_eq!(
        new["layers"].as_array().unwrap().len(),
        4,
        "3 base layers + 1"
    );
    assert_eq!(
        new["layers"][0],
        manifest("plain")["layers"][0],
        "base layers still shared"
    );

    push_json(ctx.path(), &format!("{host}/min/app:all"), &["--squash"]);
    assert_eq!(manifest("all")["layers"].as_array().unwrap().len(), 1);
    let config = skopeo_config(&format!("{host}/min/app:all"));
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    assert_eq!(config["config"]["User"], "1000");
    for tag in ["new", "all"] {
        let (_k, bundle) = pull_and_unpack(&format!("{host}/min/app:{tag}"), &[]);
        let rootfs = bundle.join("rootfs");
        assert_eq!(std::fs::read_to_string(rootfs.join("app/a")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(rootfs.join("app/b")).unwrap(), "b");
        assert!(
            !rootfs.join("etc/old.conf").exists(),
            "{tag}: whiteout applied"
        );
        let meta = std::fs::metadata(rootfs.join("home/user/owned")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (1000, 1000),
            "{tag}: ownership kept"
        );
    }
}

#[test]
fn the_debug_variant_adds_a_shell_without_uploading_layers_twice() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    // The "busybox": an image providing /bin/sh.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci_image(
        &layout,
        "sh",
        &[("/bin/sh", b"#!fake shell".to_vec())],
        None,
    );
    skopeo_copy(
        &format!("oci:{}:sh", layout.display()),
        &format!("docker://{host}/tools/busybox:1"),
        &[],
    );
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY app /app\nUSER 1000\nENTRYPOINT [\"/app\"]\n",
        ),
        ("app", "app"),
    ]);
    let mark = reg.access_log().len();
    let (report, _) = push_json(
        ctx.path(),
        &format!("{host}/min/svc:1"),
        &[
            "--debug-tag",
            &format!("{host}/min/svc:1-debug"),
            "--debug-from",
            &format!("{host}/tools/busybox:1"),
        ],
    );
    let debug = &report["debug"];
    let actions: Vec<(&str, &str)> = debug["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["digest"].as_str().unwrap(), b["action"].as_str().unwrap()))
        .collect();
    assert!(
        actions.iter().filter(|(_, a)| *a == "mounted").count() >= 1,
        "{debug}"
    );
    assert_eq!(
        actions.iter().filter(|(_, a)| *a == "uploaded").count(),
        1,
        "only the debug config: {debug}"
    );
    let log = reg.access_log_since(mark);
    let upload_puts = log
        .iter()
        .filter(|a| a.method == "PUT" && a.uri.contains("/blobs/uploads/"))
        .count();
    let normal_uploaded = report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["action"] == "uploaded")
        .count();
    assert_eq!(upload_puts, normal_uploaded + 1, "{log:#?}");

    let (_k, normal) = pull_and_unpack(&format!("{host}/min/svc:1"), &[]);
    assert!(
        !normal.join("rootfs/bin/sh").exists(),
        "the normal image stays shell-free"
    );
    let (_k2, dbg) = pull_and_unpack(&format!("{host}/min/svc:1-debug"), &[]);
    assert!(dbg.join("rootfs/bin/sh").exists());
    assert_eq!(
        std::fs::read_to_string(dbg.join("rootfs/app")).unwrap(),
        "app"
    );
    let a = skopeo_config(&format!("{host}/min/svc:1"));
    let b = skopeo_config(&format!("{host}/min/svc:1-debug"));
    assert_eq!(a["config"], b["config"], "same config");
}
