//! Dockerfile features end to end on the real registry: multi-stage builds, `COPY --from` a
//! stage and an image, ADD of archives, `.dockerignore`, build args and `--target`; results
//! pulled back with skopeo and unpacked with umoci.

use std::path::Path;
use std::process::Command;

use crate::common::*;

#[test]
fn multi_stage_copy_from_a_stage_with_build_args_and_dockerignore() {
    let reg = Distribution::start();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "ARG FLAVOR=plain\n\
             FROM scratch AS assets\n\
             ARG FLAVOR\n\
             COPY assets/ /assets/\n\
             COPY notes-${FLAVOR}.txt /assets/notes.txt\n\
             \n\
             FROM scratch AS unused\n\
             RUN echo never built\n\
             \n\
             FROM scratch\n\
             WORKDIR /srv\n\
             COPY --from=assets /assets/ ./\n\
             COPY --chown=1000:1000 app.conf .\n\
             ENV FLAVOR=${FLAVOR:-none}\n",
        ),
        ("assets/logo.svg", "<svg/>"),
        ("assets/secret.key", "do not ship"),
        ("assets/tmp/cache.tmp", "junk"),
        ("notes-plain.txt", "plain notes"),
        ("notes-fancy.txt", "fancy notes"),
        ("app.conf", "port=1"),
        (".dockerignore", "**/*.key\nassets/tmp\n"),
    ]);
    let tag = format!("{}/feat/multistage:1", reg.host);
    push(ctx.path(), &tag, &["--build-arg", "FLAVOR=fancy"]);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(read(&bundle.join("rootfs"), "/srv/logo.svg"), "<svg/>");
    assert_eq!(
        read(&bundle.join("rootfs"), "/srv/notes.txt"),
        "fancy notes"
    );
    assert_eq!(read(&bundle.join("rootfs"), "/srv/app.conf"), "port=1");
    assert!(
        !bundle.join("rootfs/srv/secret.key").exists(),
        ".dockerignore excluded it"
    );
    assert!(
        !bundle.join("rootfs/srv/tmp").exists(),
        ".dockerignore excluded the dir"
    );
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(bundle.join("rootfs/srv/app.conf")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    let config = skopeo_config(&tag);
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"FLAVOR=none"),
        "a global ARG is not visible without re-declaring: {env:?}"
    );
    assert_eq!(config["config"]["WorkingDir"], "/srv");
}

#[test]
fn target_selects_a_stage() {
    let reg = Distribution::start();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch AS one\nCOPY a.txt /a.txt\nFROM scratch AS two\nCOPY b.txt /b.txt\n",
        ),
        ("a.txt", "A"),
        ("b.txt", "B"),
    ]);
    let tag = format!("{}/feat/target:1", reg.host);
    push(ctx.path(), &tag, &["--target", "one"]);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(read(&bundle.join("rootfs"), "/a.txt"), "A");
    assert!(!bundle.join("rootfs/b.txt").exists());
}

#[test]
fn copy_from_an_image_fetches_only_the_layer_it_needs() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci_image(
        &layout,
        "tools",
        &[
            ("/opt/big.bin", vec![9u8; 500_000]),
            ("/opt/tool/README", b"tool readme\n".to_vec()),
        ],
        None,
    );
    skopeo_copy(
        &format!("oci:{}:tools", layout.display()),
        &format!("docker://{host}/vendor/tools:1"),
        &[],
    );
    let ctx = context_with(&[(
        "Dockerfile",
        &format!("FROM scratch\nCOPY --from={host}/vendor/tools:1 /opt/tool/README /doc/README\n"),
    )]);
    let mark = reg.access_log().len();
    let tag = format!("{host}/feat/copyfrom:1");
    push(ctx.path(), &tag, &[]);
    let gets: Vec<_> = reg
        .access_log_since(mark)
        .into_iter()
        .filter(|a| a.method == "GET" && a.uri.starts_with("/v2/vendor/tools/blobs/"))
        .collect();
    // The config, and the top layer that holds the file: not the 500 kB layer below it.
    assert_eq!(gets.len(), 2, "{gets:#?}");
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(read(&bundle.join("rootfs"), "/doc/README"), "tool readme\n");
}

#[test]
fn a_cached_copy_from_an_image_downloads_no_source_layer() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci_image(
        &layout,
        "tools",
        &[
            ("/opt/big.bin", vec![9u8; 500_000]),
            ("/opt/tool/README", b"tool readme\n".to_vec()),
        ],
        None,
    );
    let source = format!("{host}/vendor/tools:1");
    skopeo_copy(
        &format!("oci:{}:tools", layout.display()),
        &format!("docker://{source}"),
        &[],
    );
    let source_layers = layer_digests(&source);
    let ctx = context_with(&[(
        "Dockerfile",
        &format!("FROM scratch\nCOPY --from={source} /opt/tool/README /doc/README\n"),
    )]);
    let cache = tempfile::tempdir().unwrap();
    let push_with = |tag: &str, cache: &Path| {
        let out = run(regbuild(&["push", "-t", tag, ctx.path().to_str().unwrap()])
            .env("REGBUILD_CACHE", cache));
        (
            stdout(&out).lines().last().unwrap().to_string(),
            stderr(&out),
        )
    };
    let source_gets = |mark: usize| -> Vec<crate::common::Access> {
        reg.access_log_since(mark)
            .into_iter()
            .filter(|a| a.method == "GET" && source_layers.iter().any(|d| a.uri.ends_with(d)))
            .collect()
    };
    let tag = format!("{host}/feat/cachedfrom:1");
    let mark = reg.access_log().len();
    let (first, _) = push_with(&tag, cache.path());
    assert_eq!(
        source_gets(mark).len(),
        1,
        "the first build reads the top layer"
    );

    // The local cache knows the layer: no source layer is fetched.
    let mark = reg.access_log().len();
    let (again, err) = push_with(&tag, cache.path());
    assert_eq!(again, first);
    assert!(err.contains("cached"), "{err}");
    assert_eq!(source_gets(mark), Vec::new());

    // An empty cache: the pushed tag's annotation knows it.
    let fresh = tempfile::tempdir().unwrap();
    let mark = reg.access_log().len();
    let (fresh_push, _) = push_with(&tag, fresh.path());
    assert_eq!(fresh_push, first);
    assert_eq!(source_gets(mark), Vec::new());

    // Another registry lacks the layer: the source is read then and the layer built intact.
    let other = Distribution::start();
    let other_tag = format!("{}/feat/cachedfrom:1", other.host);
    let mark = reg.access_log().len();
    let (elsewhere, _) = push_with(&other_tag, cache.path());
    assert_eq!(
        elsewhere.split_once('@').map(|x| x.1),
        first.split_once('@').map(|x| x.1)
    );
    assert_eq!(source_gets(mark).len(), 1);
    let (_k, bundle) = pull_and_unpack(&other_tag, &[]);
    assert_eq!(read(&bundle.join("rootfs"), "/doc/README"), "tool readme\n");
}

#[test]
fn add_extracts_local_archives_and_copies_other_files() {
    let reg = Distribution::start();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nADD bundle.tar.gz /opt/\nADD plain.txt /opt/plain.txt\n",
        ),
        ("plain.txt", "not an archive"),
        ("src/one.txt", "one"),
        ("src/sub/two.txt", "two"),
    ]);
    run(Command::new("tar")
        .arg("-C")
        .arg(ctx.path().join("src"))
        .args(["-czf"])
        .arg(ctx.path().join("bundle.tar.gz"))
        .args(["one.txt", "sub"]));
    let tag = format!("{}/feat/add:1", reg.host);
    push(ctx.path(), &tag, &[]);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(read(&bundle.join("rootfs"), "/opt/one.txt"), "one");
    assert_eq!(read(&bundle.join("rootfs"), "/opt/sub/two.txt"), "two");
    assert_eq!(
        read(&bundle.join("rootfs"), "/opt/plain.txt"),
        "not an archive"
    );
}

#[test]
fn symlinks_in_the_context_stay_symlinks() {
    let reg = Distribution::start();
    let ctx = context_with(&[
        ("Dockerfile", "FROM scratch\nCOPY tree/ /tree/\n"),
        ("tree/real.txt", "real"),
    ]);
    std::os::unix::fs::symlink("real.txt", ctx.path().join("tree/link.txt")).unwrap();
    let tag = format!("{}/feat/links:1", reg.host);
    push(ctx.path(), &tag, &[]);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    let link = bundle.join("rootfs/tree/link.txt");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real.txt"));
    assert_eq!(std::fs::read_to_string(&link).unwrap(), "real");
}

/// A merged-usr base (`/bin -> usr/bin`, `/lib -> usr/lib`, `/sbin -> usr/sbin`) with
/// accounts, made by umoci from a directory tree and pushed by skopeo to `host/base/merged:1`.
fn merged_usr_base(host: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for d in ["usr/bin", "usr/lib", "usr/sbin", "etc", "home"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("usr/bin/sh"), "#!/bin/true\n").unwrap();
    for (link, target) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("sbin", "usr/sbin")] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nstaff:x:50:app\napp:x:1001:\n",
    )
    .unwrap();
    let layout = dir.path().join("layout");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    let image = format!("{}:base", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(&root)
        .arg("/"));
    let reference = format!("{host}/base/merged:1");
    skopeo_copy(
        &format!("oci:{image}"),
        &format!("docker://{reference}"),
        &[],
    );
    reference
}

fn owner_of(bundle: &Path, path: &str) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(bundle.join("rootfs").join(path.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.uid(), m.gid())
}

#[test]
fn a_tree_copied_onto_a_merged_usr_base_goes_through_its_links() {
    let reg = Distribution::start();
    let base = merged_usr_base(&reg.host);
    let base_layers = layer_digests(&base);
    let ctx = context_with(&[
        ("Dockerfile", &format!("FROM {base}\nCOPY tree/ /\n")),
        ("tree/bin/tool", "tool\n"),
        ("tree/lib/x86_64-linux-gnu/libtool.so", "elf\n"),
        ("tree/sbin/daemon", "daemon\n"),
        ("tree/opt/app/run", "run\n"),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let tag = format!("{}/feat/merged:1", reg.host);
    let push_once = || {
        let mark = reg.access_log().len();
        run(regbuild(&[
            "push",
            "--no-progress",
            "-t",
            &tag,
            ctx.path().to_str().unwrap(),
        ])
        .env("REGBUILD_CACHE", cache.path()));
        reg.access_log_since(mark)
            .into_iter()
            .filter(|a| a.method == "GET" && base_layers.iter().any(|d| a.uri.ends_with(d)))
            .count()
    };
    let first = push_once();
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    for (link, target) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("sbin", "usr/sbin")] {
        assert_eq!(
            std::fs::read_link(rootfs.join(link)).unwrap_or_else(|e| panic!("/{link}: {e}")),
            Path::new(target)
        );
    }
    assert_eq!(read(&bundle.join("rootfs"), "/usr/bin/tool"), "tool\n");
    assert_eq!(
        read(&bundle.join("rootfs"), "/usr/bin/sh"),
        "#!/bin/true\n",
        "the shell is still there"
    );
    assert_eq!(
        read(
            &bundle.join("rootfs"),
            "/usr/lib/x86_64-linux-gnu/libtool.so"
        ),
        "elf\n"
    );
    assert_eq!(read(&bundle.join("rootfs"), "/usr/sbin/daemon"), "daemon\n");
    assert_eq!(read(&bundle.join("rootfs"), "/opt/app/run"), "run\n");
    // The base's paths are indexed once (one GET of its layer), then read from the cache.
    assert_eq!(first, 1);
    assert_eq!(push_once(), 0, "the index is cached by layer digest");
}

#[test]
fn chown_names_resolve_in_the_bases_accounts_and_unknown_ones_are_errors() {
    let reg = Distribution::start();
    let base = merged_usr_base(&reg.host);
    let ctx = context_with(&[
        (
            "Dockerfile",
            &format!(
                "FROM {base}\nCOPY --chown=app:staff a.txt /srv/a.txt\nCOPY --chown=app b.txt /srv/b.txt\nCOPY --chown=7:staff b.txt /srv/c.txt\n"
            ),
        ),
        ("a.txt", "a"),
        ("b.txt", "b"),
    ]);
    let tag = format!("{}/feat/chown:1", reg.host);
    push(ctx.path(), &tag, &[]);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(owner_of(&bundle, "/srv/a.txt"), (1000, 50));
    assert_eq!(
        owner_of(&bundle, "/srv/b.txt"),
        (1000, 1001),
        "the user's primary group"
    );
    assert_eq!(owner_of(&bundle, "/srv/c.txt"), (7, 50));

    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nCOPY --chown=nobody:staff a.txt /a.txt\n"),
    )
    .unwrap();
    let out = regbuild(&["push", "-t", &tag, ctx.path().to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dockerfile:2") && err.contains("nobody"),
        "{err}"
    );
}

#[test]
fn workdir_creates_its_directory_owned_by_the_user_unless_it_exists() {
    let reg = Distribution::start();
    let base = merged_usr_base(&reg.host);
    let ctx = context_with(&[
        (
            "Dockerfile",
            &format!(
                "FROM {base}\nWORKDIR /srv/data\nWORKDIR /usr/bin\nUSER app\nWORKDIR /home/app/work\nCOPY conf.txt ./\n"
            ),
        ),
        ("conf.txt", "x=1\n"),
    ]);
    let tag = format!("{}/feat/workdir:1", reg.host);
    push(ctx.path(), &tag, &[]);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert!(bundle.join("rootfs/srv/data").is_dir());
    assert_eq!(owner_of(&bundle, "/srv/data"), (0, 0));
    assert_eq!(owner_of(&bundle, "/home/app/work"), (1000, 1001));
    assert_eq!(
        read(&bundle.join("rootfs"), "/home/app/work/conf.txt"),
        "x=1\n"
    );
    // The base's layer, /srv/data, /home/app/work, the COPY: /usr/bin existed already.
    assert_eq!(layer_digests(&tag).len(), 4);
    let config = skopeo_config(&tag);
    let history: Vec<(String, bool)> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            h["created_by"]
                .as_str()
                .unwrap_or("")
                .starts_with("WORKDIR")
        })
        .map(|h| {
            (
                h["created_by"].as_str().unwrap().to_string(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("WORKDIR /srv/data".to_string(), false),
            ("WORKDIR /usr/bin".to_string(), true),
            ("WORKDIR /home/app/work".to_string(), false)
        ]
    );

    // FROM scratch: the directory is a layer of its own, and the push works as before.
    let scratch = context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nWORKDIR /app\nCOPY conf.txt .\n",
        ),
        ("conf.txt", "y=2\n"),
    ]);
    let tag = format!("{}/feat/workdir-scratch:1", reg.host);
    push(scratch.path(), &tag, &[]);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert!(bundle.join("rootfs/app").is_dir());
    assert_eq!(read(&bundle.join("rootfs"), "/app/conf.txt"), "y=2\n");
    assert_eq!(layer_digests(&tag).len(), 2);
}
