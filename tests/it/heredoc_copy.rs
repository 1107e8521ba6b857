//! `COPY <<EOF` end to end on the real registry: heredoc bodies become files in the image
//! (expanded unless the name is quoted, `--chmod` applied, several into a directory), and a
//! changed body changes the layer. Pulled back with skopeo and unpacked with umoci.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;

fn file(bundle: &Path, path: &str) -> (String, u32) {
    let p = bundle.join("rootfs").join(path.trim_start_matches('/'));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
    (text, mode)
}

fn dockerfile(greeting: &str) -> String {
    format!(
        "FROM scratch\n\
         ARG WHO=world\n\
         COPY <<EOF /etc/greeting\n\
         {greeting} $WHO\n\
         EOF\n\
         COPY --chmod=0755 <<'SH' /usr/bin/hello\n\
         #!/bin/sh\n\
         echo \"$WHO\"\n\
         SH\n\
         COPY <<A <<B /conf/\n\
         a\n\
         A\n\
         b\n\
         B\n"
    )
}

#[test]
fn copy_heredocs_become_files_and_their_bodies_key_the_layer() {
    let reg = Distribution::start();
    let ctx = context_with(&[("Dockerfile", &dockerfile("hello"))]);
    let tag = format!("{}/feat/heredoc:1", reg.host);
    push(ctx.path(), &tag, &[]);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(
        file(&bundle, "/etc/greeting"),
        ("hello world\n".into(), 0o644)
    );
    assert_eq!(
        file(&bundle, "/usr/bin/hello"),
        ("#!/bin/sh\necho \"$WHO\"\n".into(), 0o755),
        "a quoted name is not expanded"
    );
    assert_eq!(file(&bundle, "/conf/A"), ("a\n".into(), 0o644));
    assert_eq!(file(&bundle, "/conf/B"), ("b\n".into(), 0o644));

    // Same instruction text, other body: the layer cache must not return the old file.
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile("goodbye")).unwrap();
    let tag2 = format!("{}/feat/heredoc:2", reg.host);
    push(ctx.path(), &tag2, &[]);
    let (_k2, bundle2) = pull_and_unpack(&tag2, &[]);
    assert_eq!(file(&bundle2, "/etc/greeting").0, "goodbye world\n");
}
