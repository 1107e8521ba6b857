//! RUN in the lower rungs of isolation (`--isolation chroot` and `userns`, what `auto`
//! falls to where namespaces are refused): a build with a secret, a cache mount, a user
//! added after RUN and a second stage comes out right in each; the secret reaches no layer
//! and no output; the cache persists across builds; a root without CAP_SYS_ADMIN (as in a
//! container with the runtime's default capabilities) falls to the user-namespace rung by
//! itself and says so.

use std::path::Path;

use crate::common::*;
use crate::run_steps::busybox_base;

const SECRET: &str = "chroot-rung-secret-never-stored";

fn dockerfile(host: &str, round: u32) -> String {
    format!(
        "FROM {host}/base/busybox:1 AS build\n\
         RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-64 > /secret-sum \\\n \
           && if [ -e /proc/self ]; then echo proc > /proc-seen; else echo none > /proc-seen; fi\n\
         RUN --mount=type=cache,id=count,target=/var/cache/count \\\n \
           n=$(cat /var/cache/count/n 2>/dev/null || echo 0); echo $((n+1)) > /var/cache/count/n; \\\n \
           echo $n > /seen # round {round}\n\
         RUN echo 'svc:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && mkdir -p /home/app/data \\\n \
           && chown svc /home/app/data\n\
         USER svc\n\
         RUN id -u > /home/app/data/uid\n\
         FROM {host}/base/busybox:1\n\
         COPY --from=build /secret-sum /seen /proc-seen /out/\n\
         COPY --from=build /home/app/data/uid /out/uid\n\
         COPY --from=build /etc/passwd /out/passwd\n"
    )
}

fn push(
    host: &str,
    round: u32,
    cache: &Path,
    wrap: &[&str],
    extra: &[&str],
) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("tok");
    std::fs::write(&secret, SECRET).unwrap();
    let ctx = context_with(&[("Dockerfile", &dockerfile(host, round))]);
    let tag = format!("{host}/apps/chroot:{round}");
    let secret_arg = format!("id=tok,src={}", secret.display());
    let ctx_dir = ctx.path().display().to_string();
    let mut args = vec!["push", "-v", "--secret", &secret_arg, "-t", &tag];
    args.extend_from_slice(extra);
    args.push(&ctx_dir);
    let built = regbuild(&args);
    let mut cmd = if wrap.is_empty() {
        built
    } else {
        wrapped(wrap, &built)
    };
    cmd.env("REGBUILD_CACHE", cache);
    cmd.output().unwrap()
}

fn check_image(host: &str, round: u32, seen: &str) {
    let (_d, bundle) = pull_and_unpack(&format!("{host}/apps/chroot:{round}"), &[]);
    let root = bundle.join("rootfs");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    use sha2::Digest as _;
    assert_eq!(
        read("out/secret-sum"),
        format!("{}\n", hex::encode(sha2::Sha256::digest(SECRET)))
    );
    assert_eq!(
        read("out/proc-seen"),
        "none\n",
        "no /proc in the chroot rung"
    );
    assert_eq!(read("out/seen").trim(), seen, "the cache mount's count");
    assert_eq!(read("out/uid").trim(), "1234", "USER after RUN");
    assert!(read("out/passwd").contains("svc:x:1234:"));
    for f in walk(&root) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET),
            "the secret is in {}",
            f.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            out.extend(walk(&e.path()));
        } else if ty.is_file() {
            out.push(e.path());
        }
    }
    out
}

fn builds_right_with_secrets_and_caches(isolation: &str, said: &str) {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let cache = tempfile::tempdir().unwrap();
    for (round, seen) in [(1, "0"), (2, "1")] {
        let out = push(&host, round, cache.path(), &[], &["--isolation", isolation]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "{text}");
        assert!(!text.contains(SECRET), "the secret is in the output");
        assert!(text.contains(said), "the rung is said at -v: {text}");
        check_image(&host, round, seen);
    }
}

#[test]
fn the_chroot_rung_builds_right_with_secrets_and_caches() {
    if needs_root("the chroot rung runs as root only") {
        builds_right_with_secrets_and_caches("chroot", "chroot, native");
    }
}

#[test]
fn the_userns_rung_builds_right_with_secrets_and_caches() {
    if needs_root("the user-namespace rung is root's") {
        builds_right_with_secrets_and_caches("userns", "userns, native");
    }
}

#[test]
fn without_cap_sys_admin_auto_falls_to_the_userns_rung_and_says_so() {
    if !needs_root("dropping CAP_SYS_ADMIN as root") || !needs_tool("setpriv", "util-linux") {
        return;
    }
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let cache = tempfile::tempdir().unwrap();
    // Root without CAP_SYS_ADMIN: what a container with the runtime's default
    // capabilities gives; unshare is refused.
    let wrap = [
        "setpriv",
        "--bounding-set=-sys_admin",
        "--inh-caps=-sys_admin",
        "--",
    ];
    let out = push(&host, 1, cache.path(), &wrap, &[]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("namespaces refused here") && text.contains("user-namespace rung"),
        "{text}"
    );
    assert!(text.contains("userns, native"), "{text}");
    check_image(&host, 1, "0");
    // Asked for the sandbox only, the refusal is the error, naming the way out.
    let out = push(&host, 2, cache.path(), &wrap, &["--isolation", "sandbox"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("CAP_SYS_ADMIN") && err.contains("--isolation"),
        "{err}"
    );
}
