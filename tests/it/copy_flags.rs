//! COPY and ADD flags and sources as BuildKit reads them, end to end on the real registry:
//! absolute sources (the context's root), `--exclude`, `--parents`, `RUN --mount` without a
//! target, and file capabilities kept by `COPY --from`. Each Dockerfile is pushed, pulled
//! back with skopeo and unpacked with umoci (or its layer's tar headers read).

use crate::common::layers::pushed_layers;
use crate::common::*;
use crate::run_steps::push_dockerfile;

/// `cap_net_bind_service=+ep` as `setcap` stores it (VFS_CAP_REVISION_2).
const NET_BIND_SERVICE: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const CAPABILITY: &str = "security.capability";

/// Pushes `dockerfile` with `files` as its context (it must succeed); returns the unpacked
/// image's root filesystem, with the directory that keeps it.
fn pushed(
    tag: &str,
    dockerfile: &str,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, std::path::PathBuf) {
    let out = push_dockerfile(tag, dockerfile, files, &["--no-progress"], None);
    assert!(
        out.status.success(),
        "regbuild failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let (keep, bundle) = pull_and_unpack(tag, &[]);
    (keep, bundle.join("rootfs"))
}

#[test]
fn absolute_sources_are_read_from_the_context_root() {
    let reg = Distribution::start();
    let tag = format!("{}/flags/absolute:1", reg.host);
    let df = "FROM scratch\n\
              COPY /a.txt /dst/\n\
              COPY /../d/b.txt /up/\n\
              COPY /d /e/\n";
    let (_keep, root) = pushed(&tag, df, &[("a.txt", "a\n"), ("d/b.txt", "b\n")]);
    assert_eq!(read(&root, "/dst/a.txt"), "a\n");
    assert_eq!(
        read(&root, "/up/b.txt"),
        "b\n",
        "`..` stops at the context's root"
    );
    assert_eq!(read(&root, "/e/b.txt"), "b\n");
}

#[test]
fn a_mount_without_target_is_at_the_workdir() {
    if !needs_root("RUN steps in the sandbox") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    crate::run_steps::busybox_base(&host, "base/busybox");
    let tag = format!("{host}/flags/mount-target:1");
    // As docker/compose's Dockerfile mounts its `binary` stage.
    let df = format!(
        "FROM scratch AS binary\n\
         COPY tool.txt /tool.txt\n\
         FROM {host}/base/busybox:1\n\
         WORKDIR /mnt/bin\n\
         RUN --mount=from=binary cat /mnt/bin/tool.txt > /out.txt && pwd >> /out.txt\n"
    );
    let (_keep, root) = pushed(&tag, &df, &[("tool.txt", "from the stage\n")]);
    assert_eq!(read(&root, "/out.txt"), "from the stage\n/mnt/bin\n");
    assert!(
        !root.join("mnt/bin/tool.txt").exists(),
        "a bind mount leaves nothing in the layer"
    );

    // At the WORKDIR `/`, BuildKit refuses it ("invalid mount target"): so does regbuild.
    let df = format!(
        "FROM scratch AS binary\n\
         COPY tool.txt /tool.txt\n\
         FROM {host}/base/busybox:1\n\
         RUN --mount=from=binary true\n"
    );
    let tag = format!("{host}/flags/mount-root:1");
    let out = push_dockerfile(&tag, &df, &[("tool.txt", "x\n")], &["--no-progress"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("(none given: the WORKDIR /): cannot mount over /"),
        "{}",
        stderr(&out)
    );
}

/// A tar with `/t` and `/bin/srv` carrying `cap_net_bind_service=+ep`, and `/plain`.
fn capabilities_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, caps: bool| {
        if caps {
            b.append_pax_extensions([("SCHILY.xattr.security.capability", &NET_BIND_SERVICE[..])])
                .unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_size(2);
        b.append_data(&mut h, name, &b"x\n"[..]).unwrap();
    };
    file(&mut b, "t", true);
    file(&mut b, "bin/srv", true);
    file(&mut b, "plain", false);
    b.into_inner().unwrap()
}

/// The capability the top layer of `reference` gives each of `paths` (in-layer paths).
fn capabilities(reference: &str, paths: &[&str]) -> Vec<Option<Vec<u8>>> {
    let layers = pushed_layers(reference);
    let top = layers.last().unwrap();
    paths
        .iter()
        .map(|p| {
            let header = top
                .get(*p)
                .unwrap_or_else(|| panic!("{p} not in {:?}", top.keys()));
            header.xattrs.get(CAPABILITY).cloned()
        })
        .collect()
}

#[test]
fn copy_from_a_stage_or_an_image_keeps_file_capabilities() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("caps.tar"), capabilities_tar()).unwrap();
    let df = "FROM scratch AS build\n\
              ADD caps.tar /\n\
              FROM scratch\n\
              COPY --from=build /t /t\n\
              COPY --from=build --chown=1000:1000 /bin/ /plain /b/\n";
    std::fs::write(ctx.path().join("Dockerfile"), df).unwrap();
    let tag = format!("{host}/flags/caps:1");
    let dir = ctx.path().display().to_string();
    run(&mut regbuild(&["push", "--no-progress", "-t", &tag, &dir]));
    let cap = Some(NET_BIND_SERVICE.to_vec());
    let layers = pushed_layers(&tag);
    assert_eq!(layers[0]["t"].xattrs.get(CAPABILITY), cap.as_ref());
    assert_eq!(
        layers[1]["b/srv"].xattrs.get(CAPABILITY),
        cap.as_ref(),
        "--chown keeps it (BuildKit copies the attributes after the owner)"
    );
    assert_eq!(layers[1]["b/plain"].xattrs.get(CAPABILITY), None);

    // From that image, by reference.
    let df = format!("FROM scratch\nCOPY --from={tag} /t /b/srv /x/\n");
    std::fs::write(ctx.path().join("Dockerfile"), df).unwrap();
    let from_image = format!("{host}/flags/caps-image:1");
    run(&mut regbuild(&[
        "push",
        "--no-progress",
        "-t",
        &from_image,
        &dir,
    ]));
    assert_eq!(
        capabilities(&from_image, &["x/t", "x/srv"]),
        [cap.clone(), cap]
    );
}

#[test]
fn copy_from_the_context_keeps_file_capabilities() {
    if !needs_root("setting security.capability on a context file") {
        return;
    }
    let reg = Distribution::start();
    let ctx = context_with(&[
        ("srv", "x\n"),
        ("plain", "y\n"),
        ("Dockerfile", "FROM scratch\nCOPY srv plain /bin/\n"),
    ]);
    let srv = std::ffi::CString::new(ctx.path().join("srv").to_str().unwrap()).unwrap();
    let name = std::ffi::CString::new(CAPABILITY).unwrap();
    // SAFETY: both strings are NUL-terminated and the value outlives the call.
    let set = unsafe {
        libc::setxattr(
            srv.as_ptr(),
            name.as_ptr(),
            NET_BIND_SERVICE.as_ptr().cast(),
            NET_BIND_SERVICE.len(),
            0,
        )
    };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
    let tag = format!("{}/flags/caps-context:1", reg.host);
    let dir = ctx.path().display().to_string();
    run(&mut regbuild(&["push", "--no-progress", "-t", &tag, &dir]));
    assert_eq!(
        capabilities(&tag, &["bin/srv", "bin/plain"]),
        [Some(NET_BIND_SERVICE.to_vec()), None]
    );
}

const APP: [(&str, &str); 5] = [
    ("app/a.txt", "a\n"),
    ("app/b.md", "b\n"),
    ("app/sub/c.md", "c\n"),
    ("app/sub/d.txt", "d\n"),
    ("x/y/z.txt", "z\n"),
];

#[test]
fn exclude_and_parents_from_the_context_and_a_stage() {
    let reg = Distribution::start();
    let tag = format!("{}/flags/exclude:1", reg.host);
    let df = "FROM scratch AS stage\n\
              COPY app /app/\n\
              FROM scratch\n\
              COPY --exclude=*.md app /ctx/\n\
              COPY --exclude=**/*.md app /deep/\n\
              ADD --exclude=sub app /add/\n\
              COPY --from=stage --exclude=**/*.txt /app /stage/\n\
              COPY --parents x/y/z.txt app/sub/./d.txt /par/\n\
              COPY --from=stage --parents /app/./sub/*.md /spar/\n";
    let (_keep, root) = pushed(&tag, df, &APP);
    let under = |dir: &str| tree(&root.join(dir));
    assert_eq!(under("ctx"), ["a.txt", "sub/", "sub/c.md", "sub/d.txt"]);
    assert_eq!(under("deep"), ["a.txt", "sub/", "sub/d.txt"]);
    assert_eq!(under("add"), ["a.txt", "b.md"]);
    assert_eq!(under("stage"), ["b.md", "sub/", "sub/c.md"]);
    assert_eq!(under("par"), ["d.txt", "x/", "x/y/", "x/y/z.txt"]);
    assert_eq!(under("spar"), ["sub/", "sub/c.md"]);
}

#[test]
fn exclude_and_parents_from_an_image_are_in_its_layer_key() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let source = format!("{host}/flags/exclude-source:1");
    pushed(&source, "FROM scratch\nCOPY app /app/\n", &APP);
    let cache = tempfile::tempdir().unwrap();
    let build = |exclude: &str| {
        let tag = format!("{host}/flags/exclude-image:1");
        let df = format!(
            "FROM scratch\nCOPY --from={source} --exclude={exclude} --parents /app/./sub /img/\n"
        );
        let out = push_dockerfile(&tag, &df, &[], &["--no-progress"], Some(cache.path()));
        assert!(out.status.success(), "{}", stderr(&out));
        let (keep, bundle) = pull_and_unpack(&tag, &[]);
        let found = tree(&bundle.join("rootfs/img"));
        drop(keep);
        found
    };
    assert_eq!(build("**/*.txt"), ["sub/", "sub/c.md"]);
    // Same image, same sources, other patterns: not the cached layer.
    assert_eq!(build("**/*.md"), ["sub/", "sub/d.txt"]);
}
