//! Hostile input end to end: archives that try to escape (ADD), image layers that try path
//! traversal (COPY --from an image pushed by skopeo), symlink loops in the context, and
//! pathological Dockerfiles. Every regbuild run is bounded by `timeout -s KILL`, every entry
//! that could escape carries a random token in its name, and after each run the host is
//! searched for that token outside regbuild's own temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// No regbuild run may take longer than this.
const LIMIT: Duration = Duration::from_secs(60);

/// A random name part, so a search for it on the host is exact.
fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    format!("rbtok{:016x}", h.finish())
}

/// At most 4 KiB of a (possibly huge) output, for assertion messages.
fn clip(s: &str) -> String {
    if s.len() <= 1600 {
        return s.to_string();
    }
    let mut end = 800;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut start = s.len() - 800;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!(
        "{} …[{} bytes]… {}",
        &s[..end],
        s.len() - end - (s.len() - start),
        &s[start..]
    )
}

/// Runs `cmd` under `timeout -s KILL`: a hang fails the test instead of blocking it. Fails
/// on a timeout, a death by signal and a panic message.
fn bounded(cmd: Command, what: &str) -> Output {
    let secs = LIMIT.as_secs().to_string();
    let mut t = wrapped(&["timeout", "--signal=KILL", &secs], &cmd);
    t.stdin(Stdio::null());
    let start = Instant::now();
    let out = t.output().expect("timeout (coreutils) is installed");
    let took = start.elapsed();
    let err = stderr(&out);
    assert!(
        took < LIMIT && !matches!(out.status.code(), Some(124 | 137)),
        "{what}: not finished within {LIMIT:?} (took {took:?}, status {:?})\nstderr: {}",
        out.status,
        clip(&err)
    );
    assert!(
        !err.contains("panicked"),
        "{what}: regbuild panicked (status {:?}):\n{}",
        out.status,
        clip(&err)
    );
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "{what}: exit status {:?} (only 0, 1 and 2 are expected here)\nstderr: {}",
        out.status,
        clip(&err)
    );
    out
}

fn python(script: &str, args: &[&str]) -> String {
    let out = run(Command::new("python3").arg("-c").arg(script).args(args));
    stdout(&out).trim().to_string()
}

/// A directory of its own per test: `ctx/` is the build context, `tmp/` regbuild's TMPDIR.
struct Sandbox {
    root: tempfile::TempDir,
    ctx: PathBuf,
    tmp: PathBuf,
}

impl Sandbox {
    fn new(files: &[(&str, &[u8])]) -> Sandbox {
        let root = tempfile::tempdir().unwrap();
        let ctx = root.path().join("ctx");
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let sb = Sandbox { root, ctx, tmp };
        for (path, content) in files {
            sb.write(path, content);
        }
        sb
    }

    fn write(&self, path: &str, content: &[u8]) {
        let p = self.ctx.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// `regbuild push --no-progress -t TAG CTX`, bounded, with TMPDIR in the sandbox.
    fn push(&self, tag: &str, what: &str) -> Output {
        let ctx = self.ctx.to_str().unwrap();
        let mut cmd = regbuild(&["push", "--no-progress", "-t", tag, ctx]);
        cmd.env("TMPDIR", &self.tmp);
        let out = bounded(cmd, what);
        // Whatever happened, regbuild's temporary directories are gone once it exited.
        let left: Vec<_> = std::fs::read_dir(&self.tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            left.is_empty(),
            "{what}: left in TMPDIR after exit: {left:?}"
        );
        out
    }

    /// Paths on the host whose name contains one of `tokens`: the top level of `/`, `/etc`,
    /// `/tmp`, the system temp dir and the sandbox's parent, and the whole sandbox (context
    /// and TMPDIR) except regbuild's own `regbuild-*` directories in TMPDIR.
    fn leaks(&self, tokens: &[&str]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let named = |p: &Path| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| tokens.iter().any(|t| n.contains(t)))
        };
        let mut tops: Vec<PathBuf> = ["/", "/etc", "/tmp", "/abs", "/root"]
            .iter()
            .map(PathBuf::from)
            .collect();
        tops.push(std::env::temp_dir());
        tops.extend(self.root.path().parent().map(Path::to_path_buf));
        for dir in tops {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if named(&entry.path()) {
                    found.push(entry.path());
                }
            }
        }
        let mut stack = vec![self.root.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let own_tmp =
                    dir == self.tmp && entry.file_name().to_string_lossy().starts_with("regbuild-");
                if own_tmp {
                    continue;
                }
                if named(&path) {
                    found.push(path.clone());
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                }
            }
        }
        found
    }
}

fn writes(reg: &Distribution, mark: usize) -> Vec<Access> {
    reg.access_log_since(mark)
        .into_iter()
        .filter(|a| matches!(a.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE"))
        .collect()
}

/// The leak search itself: it finds a planted name in TMPDIR and the sandbox's parent, and
/// ignores regbuild's own temporary directory.
#[test]
fn leak_search_finds_planted_names() {
    let tok = token();
    let sb = Sandbox::new(&[]);
    std::fs::create_dir_all(sb.tmp.join("regbuild-x/.tmpy")).unwrap();
    std::fs::write(sb.tmp.join(format!("regbuild-x/.tmpy/{tok}")), "").unwrap();
    assert_eq!(sb.leaks(&[&tok]), Vec::<PathBuf>::new());
    let planted = [
        sb.tmp.join(format!("escape-{tok}.txt")),
        sb.ctx.join(format!("deep/{tok}")),
        sb.root.path().parent().unwrap().join(format!("up-{tok}")),
    ];
    for p in &planted {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }
    let mut found = sb.leaks(&[&tok]);
    std::fs::remove_file(&planted[2]).unwrap();
    found.sort();
    found.dedup();
    let mut want = planted.to_vec();
    want.sort();
    assert_eq!(found, want);
}

// ------------------------------------------------------------------------------- ADD

/// Writes a gzipped tar with hostile entries to argv[1]; argv[2] is the token; argv[3] "1"
/// adds a `../../` entry, last, so every other entry is processed before it.
const HOSTILE_TAR: &str = r#"
import gzip, io, sys, tarfile
out, tok, escape = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
buf = io.BytesIO()
tf = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
def add(name, kind=tarfile.REGTYPE, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o644
    ti.size = len(data)
    for k, v in kw.items():
        setattr(ti, k, v)
    tf.addfile(ti, io.BytesIO(data) if data else None)
add("ok.txt", data=b"fine\n")
add("/etc/evil-%s.txt" % tok, data=b"evil\n")
add("link", tarfile.SYMTYPE, linkname="/etc")
add("link/passwd-evil-%s" % tok, data=b"evil\n")
add("hl-%s" % tok, tarfile.LNKTYPE, linkname="/etc/hostname")
add("hlesc-%s" % tok, tarfile.LNKTYPE, linkname="../../../../../../etc/hostname")
add("rel-%s" % tok, tarfile.SYMTYPE, linkname="../../../../../../tmp")
add("rel-%s/through-%s" % (tok, tok), data=b"evil\n")
add("sym-%s" % tok, tarfile.SYMTYPE, linkname="/etc/hostname")
add("hard-%s" % tok, tarfile.LNKTYPE, linkname="sym-%s" % tok)
add("chr-%s" % tok, tarfile.CHRTYPE, devmajor=1, devminor=3)
add("blk-%s" % tok, tarfile.BLKTYPE, devmajor=7, devminor=0)
add("fifo-%s" % tok, tarfile.FIFOTYPE)
if escape:
    add("../../escape-%s.txt" % tok, data=b"evil\n")
tf.close()
with open(out, "wb") as f:
    f.write(gzip.compress(buf.getvalue()))
"#;

fn host_hostname() -> Option<Vec<u8>> {
    std::fs::read("/etc/hostname").ok()
}

/// extract.rs: "A name that would leave the root ... makes the whole extraction fail", so an
/// archive holding `../../x` is refused, with an error naming the archive and the entry;
/// the entries before it (absolute names, a symlink to /etc and a file through it, links
/// to host files, devices, a FIFO) must not have touched the host either.
#[test]
fn add_of_an_archive_with_an_escaping_entry_is_refused_and_writes_nothing_outside() {
    let reg = Distribution::start();
    let tok = token();
    let sb = Sandbox::new(&[(
        "Dockerfile",
        b"FROM scratch\nADD hostile.tar.gz /opt/x/\n".as_slice(),
    )]);
    let archive = sb.ctx.join("hostile.tar.gz");
    python(HOSTILE_TAR, &[archive.to_str().unwrap(), &tok, "1"]);
    let hostname = host_hostname();
    let mark = reg.access_log().len();
    let tag = format!("{}/hostile/add:1", reg.host);
    let out = sb.push(&tag, "ADD hostile.tar.gz");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", clip(&err));
    assert!(
        err.contains("Dockerfile:2")
            && err.contains("hostile.tar.gz")
            && err.contains(&format!("../../escape-{tok}.txt")),
        "the error names the line, the archive and the entry: {}",
        clip(&err)
    );
    assert_eq!(writes(&reg, mark), vec![], "nothing may be pushed");
    assert_eq!(sb.leaks(&[&tok]), Vec::<PathBuf>::new(), "written outside");
    assert_eq!(host_hostname(), hostname, "/etc/hostname changed");
}

/// The same archive without the `..` entry extracts, sanitised: the absolute name is
/// re-rooted under the ADD destination, symlinks (to `/etc`, to `../../…`) are kept verbatim
/// but nothing is written through them, hard links to files the archive does not hold or
/// leading out of it are dropped, a hard link to a symlink is a symlink (never the host
/// file), and the devices and the FIFO are kept in the layer, as Docker keeps them, without
/// ever being created on the build host.
#[test]
fn add_of_a_hostile_archive_is_sanitised_under_the_destination() {
    let reg = Distribution::start();
    let tok = token();
    let sb = Sandbox::new(&[(
        "Dockerfile",
        b"FROM scratch\nADD hostile.tar.gz /opt/x/\n".as_slice(),
    )]);
    let archive = sb.ctx.join("hostile.tar.gz");
    python(HOSTILE_TAR, &[archive.to_str().unwrap(), &tok, "0"]);
    let hostname = host_hostname();
    let tag = format!("{}/hostile/add-tame:1", reg.host);
    let out = sb.push(&tag, "ADD sanitised archive");
    assert_eq!(out.status.code(), Some(0), "{}", clip(&stderr(&out)));
    assert_eq!(sb.leaks(&[&tok]), Vec::<PathBuf>::new(), "written outside");
    assert_eq!(host_hostname(), hostname, "/etc/hostname changed");

    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    let x = rootfs.join("opt/x");
    assert_eq!(std::fs::read_to_string(x.join("ok.txt")).unwrap(), "fine\n");
    assert_eq!(
        std::fs::read_to_string(x.join(format!("etc/evil-{tok}.txt"))).unwrap(),
        "evil\n",
        "an absolute name lands under the destination"
    );
    assert_eq!(
        std::fs::read_link(x.join("link")).unwrap(),
        Path::new("/etc")
    );
    assert_eq!(
        std::fs::read_link(x.join(format!("rel-{tok}"))).unwrap(),
        Path::new("../../../../../../tmp"),
        "symlink targets are kept verbatim (resolved in the container)"
    );
    for name in [format!("sym-{tok}"), format!("hard-{tok}")] {
        let meta = std::fs::symlink_metadata(x.join(&name)).unwrap();
        assert!(meta.file_type().is_symlink(), "{name} is {meta:?}");
        assert_eq!(
            std::fs::read_link(x.join(&name)).unwrap(),
            Path::new("/etc/hostname")
        );
    }
    let expected: Vec<String> = [
        "opt/".to_string(),
        "opt/x/".to_string(),
        format!("opt/x/blk-{tok}"),
        format!("opt/x/chr-{tok}"),
        "opt/x/etc/".to_string(),
        format!("opt/x/etc/evil-{tok}.txt"),
        format!("opt/x/fifo-{tok}"),
        format!("opt/x/hard-{tok}"),
        "opt/x/link".to_string(),
        "opt/x/ok.txt".to_string(),
        format!("opt/x/rel-{tok}"),
        format!("opt/x/sym-{tok}"),
    ]
    .to_vec();
    assert_eq!(
        tree(&rootfs),
        expected,
        "nothing outside the destination, nothing through the symlink, no links to \
         missing targets"
    );
    let layer = crate::common::layers::pushed_layers(&tag).remove(0);
    let kind = |name: String| layer[&format!("opt/x/{name}")].kind;
    assert_eq!(kind(format!("chr-{tok}")), tar::EntryType::Char);
    assert_eq!(kind(format!("blk-{tok}")), tar::EntryType::Block);
    assert_eq!(kind(format!("fifo-{tok}")), tar::EntryType::Fifo);
    assert_eq!(layer[&format!("opt/x/chr-{tok}")].device, Some((1, 3)));
}

/// Writes a tar whose only header claims `size` bytes, with 10 000 bytes of body and no
/// end: argv = out, entry name, format (gnu: base-256 size field; pax: a size record),
/// size, compression (none, gz, xz).
const HUGE_TAR: &str = r#"
import gzip, lzma, sys, tarfile
out, name, fmt, size, comp = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
ti = tarfile.TarInfo(name)
ti.size = size
ti.mode = 0o644
formats = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
data = ti.tobuf(formats[fmt], "utf-8", "surrogateescape") + b"x" * 10000
if comp == "gz":
    data = gzip.compress(data)
elif comp == "xz":
    data = lzma.compress(data, format=lzma.FORMAT_XZ)
with open(out, "wb") as f:
    f.write(data)
"#;

#[test]
fn add_of_an_archive_declaring_an_absurd_size_fails_before_pushing() {
    let reg = Distribution::start();
    let tib = (1u64 << 40).to_string();
    let ten_gib = (10u64 << 30).to_string();
    // (archive, header format, declared size, compression, what the error says)
    let cases = [
        ("huge-gnu.tar", "gnu", tib.as_str(), "none", tib.as_str()),
        ("huge-pax.tar.gz", "pax", tib.as_str(), "gz", tib.as_str()),
        // Under the per-entry limit: the body is read until it runs out.
        (
            "short-gnu.tar.xz",
            "gnu",
            ten_gib.as_str(),
            "xz",
            "truncated",
        ),
    ];
    for (i, (archive, format, size, comp, says)) in cases.into_iter().enumerate() {
        let tok = token();
        let sb = Sandbox::new(&[(
            "Dockerfile",
            format!("FROM scratch\nADD {archive} /big/\n").as_bytes(),
        )]);
        let entry = format!("big-{tok}.bin");
        let path = sb.ctx.join(archive);
        python(
            HUGE_TAR,
            &[path.to_str().unwrap(), &entry, format, size, comp],
        );
        let mark = reg.access_log().len();
        let tag = format!("{}/hostile/huge:{i}", reg.host);
        let out = sb.push(&tag, archive);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{archive}: {}", clip(&err));
        assert!(
            err.contains("Dockerfile:2") && err.contains(archive) && err.contains(says),
            "{archive}: the error names the line, the archive and says {says:?}: {}",
            clip(&err)
        );
        assert_eq!(
            writes(&reg, mark),
            vec![],
            "{archive}: nothing may be pushed"
        );
        assert_eq!(
            http_status("GET", &reg.host, &format!("/v2/hostile/huge/manifests/{i}")),
            Some(404),
            "{archive}: no manifest"
        );
        assert_eq!(sb.leaks(&[&tok]), Vec::<PathBuf>::new(), "{archive}");
    }
}

// ------------------------------------------------------------------------- symlinks

#[test]
fn symlink_loops_in_the_context_terminate() {
    let reg = Distribution::start();
    let sb = Sandbox::new(&[("dir/file.txt", b"in dir\n".as_slice())]);
    for (link, target) in [("a", "b"), ("b", "a"), ("self", "self"), ("dir/up", "..")] {
        std::os::unix::fs::symlink(target, sb.ctx.join(link)).unwrap();
    }
    let set_dockerfile =
        |line: &str| sb.write("Dockerfile", format!("FROM scratch\n{line}\n").as_bytes());

    // A directory walk copies symlinks as symlinks and never follows them.
    set_dockerfile("COPY . /app/");
    let tag = format!("{}/hostile/loops:all", reg.host);
    let out = sb.push(&tag, "COPY . /app/");
    assert_eq!(out.status.code(), Some(0), "{}", clip(&stderr(&out)));
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    let app = bundle.join("rootfs/app");
    for (link, target) in [("a", "b"), ("b", "a"), ("self", "self"), ("dir/up", "..")] {
        assert_eq!(
            std::fs::read_link(app.join(link)).unwrap(),
            Path::new(target),
            "{link}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(app.join("dir/file.txt")).unwrap(),
        "in dir\n"
    );

    // A loop named as a source cannot be resolved: a clear error naming it.
    for (line, src) in [("COPY a /loop", "\"a\""), ("COPY self /loop", "\"self\"")] {
        set_dockerfile(line);
        let out = sb.push(&format!("{}/hostile/loops:named", reg.host), line);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{line}: {}", clip(&err));
        assert!(
            err.contains("Dockerfile:2") && err.contains(src),
            "{line}: {}",
            clip(&err)
        );
    }

    // Going round `dir/up` stays inside the context, so it is followed.
    set_dockerfile("COPY dir/up/dir/up/dir/up/dir/file.txt /deep.txt");
    let tag = format!("{}/hostile/loops:deep", reg.host);
    let out = sb.push(&tag, "COPY through dir/up three times");
    assert_eq!(out.status.code(), Some(0), "{}", clip(&stderr(&out)));
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/deep.txt")).unwrap(),
        "in dir\n"
    );

    // `dir/up/` is the context root: its walk meets `dir/up` again and copies it as a link.
    set_dockerfile("COPY dir/up/ /up/");
    let tag = format!("{}/hostile/loops:up", reg.host);
    let out = sb.push(&tag, "COPY dir/up/ /up/");
    assert_eq!(out.status.code(), Some(0), "{}", clip(&stderr(&out)));
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(
        std::fs::read_link(bundle.join("rootfs/up/dir/up")).unwrap(),
        Path::new("..")
    );

    // Globs below a wildcard do not enter symlinked directories; the loops among the matches
    // either fail clearly or are copied: bounded either way.
    for line in ["COPY */ /g/", "COPY dir/*/* /g/", "COPY ?/ /g/"] {
        set_dockerfile(line);
        let out = sb.push(&format!("{}/hostile/loops:glob", reg.host), line);
        if out.status.code() == Some(1) {
            let err = stderr(&out);
            assert!(err.contains("Dockerfile:2"), "{line}: {}", clip(&err));
        }
    }
}

// ---------------------------------------------------------------- COPY --from an image

/// Adds an image to the OCI layout argv[1] under tag argv[2], one layer holding `ok.txt`,
/// `/abs/<argv[3]>`, a symlink `evil -> /`, `evil/tmp/<argv[4]>` and, when argv[5] is "1",
/// last, `../../../tmp/<argv[3]>`. Prints the layer digest.
const HOSTILE_LAYOUT: &str = r#"
import gzip, hashlib, io, json, os, sys, tarfile
layout, tag, tok, tok2, escape = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
buf = io.BytesIO()
tf = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
def add(name, kind=tarfile.REGTYPE, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o644
    ti.size = len(data)
    for k, v in kw.items():
        setattr(ti, k, v)
    tf.addfile(ti, io.BytesIO(data) if data else None)
add("ok.txt", data=b"fine\n")
add("/abs/%s" % tok, data=b"abs\n")
add("evil", tarfile.SYMTYPE, linkname="/")
add("evil/tmp/%s" % tok2, data=b"evil\n")
if escape:
    add("../../../tmp/%s" % tok, data=b"evil\n")
tf.close()
tar = buf.getvalue()
os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
def blob(data, media_type):
    hexd = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", hexd), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + hexd, "size": len(data)}
layer = blob(gzip.compress(tar, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
config = blob(json.dumps({
    "architecture": "amd64", "os": "linux", "config": {},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
}).encode(), "application/vnd.oci.image.config.v1+json")
manifest = blob(json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": config, "layers": [layer],
}).encode(), "application/vnd.oci.image.manifest.v1+json")
manifest["annotations"] = {"org.opencontainers.image.ref.name": tag}
index_path = os.path.join(layout, "index.json")
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
if os.path.exists(index_path):
    with open(index_path) as f:
        index = json.load(f)
index["manifests"].append(manifest)
with open(index_path, "w") as f:
    json.dump(index, f)
with open(os.path.join(layout, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion": "1.0.0"}')
print(layer["digest"])
"#;

#[test]
fn copy_from_an_image_whose_layer_tries_path_traversal() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    let (tok, tok2) = (token(), token());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let layout_s = layout.to_str().unwrap();
    let escape_layer = python(HOSTILE_LAYOUT, &[layout_s, "escape", &tok, &tok2, "1"]);
    python(HOSTILE_LAYOUT, &[layout_s, "tame", &tok, &tok2, "0"]);
    // skopeo copies blobs as they are: it does not look inside the layer.
    for tag in ["escape", "tame"] {
        skopeo_copy(
            &format!("oci:{layout_s}:{tag}"),
            &format!("docker://{host}/evil/image:{tag}"),
            &[],
        );
    }
    let escape = format!("{host}/evil/image:escape");
    let tame = format!("{host}/evil/image:tame");
    let hostname = host_hostname();
    let sb = Sandbox::new(&[]);
    let set_dockerfile =
        |line: &str| sb.write("Dockerfile", format!("FROM scratch\n{line}\n").as_bytes());
    let check_host = |what: &str| {
        assert_eq!(
            sb.leaks(&[&tok, &tok2]),
            Vec::<PathBuf>::new(),
            "{what}: written outside"
        );
        assert_eq!(host_hostname(), hostname, "{what}: /etc/hostname changed");
    };

    // A layer with a `..` name is refused whole (extract.rs), whatever path is wanted.
    for line in [
        format!("COPY --from={escape} / /stolen/"),
        format!("COPY --from={escape} /abs/{tok} /one"),
    ] {
        set_dockerfile(&line);
        let mark = reg.access_log().len();
        let out = sb.push(&format!("{host}/out/escape:1"), &line);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{line}: {}", clip(&err));
        assert!(
            err.contains("Dockerfile:2")
                && err.contains(&escape_layer)
                && err.contains(&format!("../../../tmp/{tok}")),
            "{line}: the error names the line, the layer and the entry: {}",
            clip(&err)
        );
        assert!(
            !writes(&reg, mark)
                .iter()
                .any(|a| a.uri.starts_with("/v2/out/")),
            "{line}: nothing may be pushed"
        );
        check_host(&line);
    }

    // Without it the layer is usable; the traversal entries are neutralised.
    let line = format!("COPY --from={tame} / /stolen/");
    set_dockerfile(&line);
    let tag = format!("{host}/out/tame:all");
    let out = sb.push(&tag, &line);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{line}: {}",
        clip(&stderr(&out))
    );
    check_host(&line);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join(format!("stolen/abs/{tok}"))).unwrap(),
        "abs\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("stolen/evil")).unwrap(),
        Path::new("/")
    );
    let expected: Vec<String> = [
        "stolen/".to_string(),
        "stolen/abs/".to_string(),
        format!("stolen/abs/{tok}"),
        "stolen/evil".to_string(),
        "stolen/ok.txt".to_string(),
    ]
    .to_vec();
    assert_eq!(tree(&rootfs), expected, "nothing written through `evil`");

    let line = format!("COPY --from={tame} /abs/{tok} /one");
    set_dockerfile(&line);
    let tag = format!("{host}/out/tame:one");
    let out = sb.push(&tag, &line);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{line}: {}",
        clip(&stderr(&out))
    );
    check_host(&line);
    let (_k, bundle) = pull_and_unpack(&tag, &[]);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/one")).unwrap(),
        "abs\n"
    );

    // Sources through `evil -> /` must not reach the host's files.
    for src in [
        "/evil/etc/hostname".to_string(),
        format!("/evil/tmp/{tok2}"),
        "/evil/tmp/".to_string(),
        "/evil".to_string(),
    ] {
        let line = format!("COPY --from={tame} {src} /leak");
        set_dockerfile(&line);
        let mark = reg.access_log().len();
        let out = sb.push(&format!("{host}/out/leak:1"), &line);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{line}: {}", clip(&err));
        assert!(
            err.contains("Dockerfile:2") && err.contains(src.trim_start_matches('/')),
            "{line}: the error names the line and the source: {}",
            clip(&err)
        );
        assert!(
            !writes(&reg, mark)
                .iter()
                .any(|a| a.uri.starts_with("/v2/out/")),
            "{line}: nothing may be pushed"
        );
        check_host(&line);
    }
}

// ------------------------------------------------------------------- Dockerfiles

/// Builds a Dockerfile with python (argv: kind, out) so the test stays fast to set up.
const HOSTILE_DOCKERFILE: &str = r#"
import sys
kind, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    if kind in ("label", "env"):
        f.write("FROM scratch\n%s \\\n" % kind.upper())
        for i in range(100000):
            f.write("  k%d=v%d \\\n" % (i, i))
        f.write("  last=1\n")
    elif kind == "nest-env":
        f.write("FROM scratch\nARG a\nENV v=" + "${a:-" * 500 + "x" + "}" * 500 + "\n")
    elif kind == "nest-from":
        f.write("ARG a\nFROM " + "${a:-" * 500 + "scratch" + "}" * 500 + "\n")
    elif kind == "big-label":
        f.write("FROM scratch\nLABEL big=" + "a" * 10_000_000 + "\n")
    elif kind == "big-word":
        f.write("FROM scratch\n" + "X" * 10_000_000 + "\n")
    elif kind == "big-cmd":
        f.write('FROM scratch\nCMD ["' + "a" * 10_000_000 + '"]\n')
"#;

fn hostile_dockerfile(reg: &Distribution, kind: &str) -> (Sandbox, String, Output) {
    let sb = Sandbox::new(&[]);
    let path = sb.ctx.join("Dockerfile");
    python(HOSTILE_DOCKERFILE, &[kind, path.to_str().unwrap()]);
    let tag = format!("{}/hostile/dockerfile:{kind}", reg.host);
    let out = sb.push(&tag, kind);
    (sb, tag, out)
}

/// A 100 000-line LABEL continuation: joined into one instruction, every label recorded.
#[test]
fn dockerfile_with_a_100k_line_label_continuation() {
    let reg = Distribution::start();
    let (_sb, tag, out) = hostile_dockerfile(&reg, "label");
    assert_eq!(out.status.code(), Some(0), "{}", clip(&stderr(&out)));
    let config = skopeo_config(&tag);
    let labels = config["config"]["Labels"].as_object().unwrap();
    assert_eq!(labels.len(), 100_001);
    assert_eq!(labels["k99999"], "v99999");
    assert_eq!(labels["last"], "1");
}

/// The same with ENV: 100 000 variables in one instruction.
#[test]
fn dockerfile_with_a_100k_line_env_continuation() {
    let reg = Distribution::start();
    let (_sb, tag, out) = hostile_dockerfile(&reg, "env");
    let err = stderr(&out);
    if out.status.code() == Some(1) {
        assert!(err.contains("Dockerfile:2"), "{}", clip(&err));
        return;
    }
    let config = skopeo_config(&tag);
    let env = config["config"]["Env"].as_array().unwrap();
    // 100 001 variables, plus the default PATH a scratch stage gets (as BuildKit does).
    assert_eq!(env.len(), 100_002, "{}", clip(&err));
    assert!(env.iter().any(|e| e == "k99999=v99999"));
}

/// `${a:-${a:-…}}` 500 deep, in ENV and in FROM: refused (the nesting limit), no stack
/// overflow.
#[test]
fn dockerfile_with_deeply_nested_substitutions() {
    let reg = Distribution::start();
    for (kind, line) in [("nest-env", "Dockerfile:3"), ("nest-from", "Dockerfile:2")] {
        let (_sb, _tag, out) = hostile_dockerfile(&reg, kind);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{kind}: {}", clip(&err));
        assert!(
            err.contains(line) && err.contains("nested"),
            "{kind}: {}",
            clip(&err)
        );
    }
}

/// A 10 MB line: a LABEL value over the expansion limit and a 10 MB unknown instruction are
/// refused naming the line; a 10 MB CMD (no expansion) is recorded as it is.
#[test]
fn dockerfile_with_a_10_mb_line() {
    let reg = Distribution::start();
    for (kind, says) in [
        ("big-label", "variable expansion produces more than"),
        ("big-word", "unknown instruction"),
    ] {
        let (_sb, _tag, out) = hostile_dockerfile(&reg, kind);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{kind}: {}", clip(&err));
        assert!(
            err.contains("Dockerfile:2") && err.contains(says),
            "{kind}: {}",
            clip(&err)
        );
    }
    let (_sb, tag, out) = hostile_dockerfile(&reg, "big-cmd");
    assert_eq!(out.status.code(), Some(0), "{}", clip(&stderr(&out)));
    // skopeo refuses to read configs over 4 MiB: check the manifest's descriptor, then
    // the blob itself over HTTP.
    let manifest = raw_manifest(&tag);
    let digest = manifest["config"]["digest"].as_str().unwrap();
    let blob = run(Command::new("curl").args([
        "-sSf",
        "--max-time",
        "60",
        &format!("http://{}/v2/hostile/dockerfile/blobs/{digest}", reg.host),
    ]));
    let config: serde_json::Value = serde_json::from_slice(&blob.stdout).unwrap();
    assert_eq!(
        config["config"]["Cmd"][0].as_str().map(str::len),
        Some(10_000_000)
    );
}

/// An error about a 10 MB line must stay readable: the offending text is not echoed whole
/// (a terminal or CI log line of 10 MB hides the reason at its very end).
#[test]
fn errors_about_a_10_mb_line_stay_short() {
    let reg = Distribution::start();
    for kind in ["big-label", "big-word"] {
        let (_sb, _tag, out) = hostile_dockerfile(&reg, kind);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{kind}: {}", clip(&err));
        assert!(
            err.len() < 64 << 10,
            "{kind}: a {} byte error message: {}",
            err.len(),
            clip(&err)
        );
    }
}
