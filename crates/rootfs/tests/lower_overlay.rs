//! Two layers unpacked into a `LowerStore` and mounted by the kernel as overlayfs lower
//! directories show what `extract::Overlay` makes of the same two layers: the same paths,
//! kinds, contents, symlink targets, modes and owners. Needs root (to mount); skipped with
//! a note otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use regbuild_fs::extract::{Limits, Overlay};
use regbuild_oci::digest::Digest;
use regbuild_rootfs::lower::{LowerStore, OverlayXattrs};
use tar::{EntryType, Header};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Builds a layer entry by entry.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn entry(
        mut self,
        kind: EntryType,
        path: &str,
        data: &[u8],
        mode: u32,
        ids: (u64, u64),
    ) -> Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(ids.0);
        h.set_gid(ids.1);
        h.set_mtime(1_700_000_000);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    fn dir(self, path: &str, mode: u32, ids: (u64, u64)) -> Self {
        self.entry(EntryType::Directory, path, b"", mode, ids)
    }

    fn file(self, path: &str, data: &[u8], mode: u32, ids: (u64, u64)) -> Self {
        self.entry(EntryType::Regular, path, data, mode, ids)
    }

    /// A hard link's header gets its target's mode, as tar writes it.
    fn link(mut self, kind: EntryType, path: &str, target: &str) -> Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(if kind == EntryType::Link {
            0o755
        } else {
            0o777
        });
        h.set_mtime(1_700_000_000);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

const ROOT: (u64, u64) = (0, 0);

/// The base: a little system.
fn lower_layer() -> Vec<u8> {
    Layer::new()
        .dir("etc", 0o755, ROOT)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644, ROOT)
        .file("etc/gone", b"deleted above", 0o644, ROOT)
        .dir("var", 0o755, ROOT)
        .dir("var/cache", 0o755, ROOT)
        .file("var/cache/old", b"old", 0o644, ROOT)
        .dir("var/cache/sub", 0o755, ROOT)
        .file("var/cache/sub/older", b"older", 0o644, ROOT)
        .dir("var/log", 0o755, ROOT)
        .file("var/log/messages", b"log", 0o640, (0, 4))
        .dir("opt", 0o755, ROOT)
        .file("opt/tool", b"v1", 0o755, ROOT)
        .dir("usr", 0o755, ROOT)
        .dir("usr/bin", 0o755, ROOT)
        .file("usr/bin/sh", b"#!sh", 0o755, ROOT)
        .link(EntryType::Link, "usr/bin/ash", "usr/bin/sh")
        .link(EntryType::Symlink, "bin", "usr/bin")
        .dir("srv", 0o755, ROOT)
        .file("srv/data", b"data", 0o644, ROOT)
        .bytes()
}

/// What a step did to it: deletes a file and a directory, replaces a directory's contents
/// (opaque), a directory by a symlink, and changes modes and owners.
fn upper_layer() -> Vec<u8> {
    Layer::new()
        .dir("etc", 0o755, ROOT)
        .file("etc/.wh.gone", b"", 0o644, ROOT)
        .file(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n",
            0o600,
            ROOT,
        )
        .dir("var", 0o755, ROOT)
        .file("var/.wh.log", b"", 0o644, ROOT)
        .dir("var/cache", 0o700, (1000, 1000))
        .file("var/cache/.wh..wh..opq", b"", 0o644, ROOT)
        .file("var/cache/new", b"new", 0o600, (1000, 1000))
        .dir("opt", 0o750, (1000, 1000))
        .file("opt/tool", b"v2", 0o4750, (1000, 50))
        .link(EntryType::Symlink, "srv", "/var/cache")
        .bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
}

/// Path → (what it is, mode, uid, gid).
type Tree = BTreeMap<PathBuf, (Node, u32, u64, u64)>;

/// Everything below `root` as lstat sees it; `meta` overrides mode and owner when given.
fn snapshot(
    root: &Path,
    meta: Option<&std::collections::HashMap<PathBuf, regbuild_fs::extract::EntryMeta>>,
) -> Tree {
    let mut tree = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for dirent in fs::read_dir(&dir).unwrap() {
            let disk = dirent.unwrap().path();
            let rel = disk.strip_prefix(root).unwrap().to_path_buf();
            let st = fs::symlink_metadata(&disk).unwrap();
            let ft = st.file_type();
            let node = if ft.is_dir() {
                stack.push(disk.clone());
                Node::Dir
            } else if ft.is_symlink() {
                Node::Symlink(fs::read_link(&disk).unwrap())
            } else if ft.is_file() {
                Node::File(fs::read(&disk).unwrap())
            } else {
                panic!("{rel:?}: unexpected {ft:?} in the merged view");
            };
            let (mode, uid, gid) = match meta {
                Some(meta) => {
                    let m = &meta[&rel];
                    (m.mode, m.uid, m.gid)
                }
                None => (st.mode() & 0o7777, u64::from(st.uid()), u64::from(st.gid())),
            };
            // A symlink's mode means nothing.
            let mode = if ft.is_symlink() { 0 } else { mode };
            tree.insert(rel, (node, mode, uid, gid));
        }
    }
    tree
}

/// A process holding the overlay mounted in a mount namespace of its own, so nothing leaks
/// into the host's; the merged view is reached through its `/proc/<pid>/root`.
struct Mounted {
    holder: Child,
    merged: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn mount_lowers(lowers: &[&Path], merged: &Path, xattrs: OverlayXattrs) -> Mounted {
    let lowerdir = lowers
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let extra = match xattrs {
        OverlayXattrs::Trusted => "",
        OverlayXattrs::User => "userxattr,",
    };
    let script =
        "mount -t overlay overlay -o \"${3}lowerdir=$1\" \"$2\" && echo mounted && exec sleep 600";
    let mut holder = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&lowerdir)
        .arg(merged)
        .arg(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.trim() != "mounted" {
        let status = holder.wait().unwrap();
        let mut stderr = String::new();
        holder
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        panic!("mounting the overlay failed ({status}): {stderr}");
    }
    let merged = Path::new("/proc")
        .join(holder.id().to_string())
        .join("root")
        .join(merged.strip_prefix("/").unwrap());
    Mounted { holder, merged }
}

fn merged_view_matches_extract_overlay(xattrs: OverlayXattrs) {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "mounting an overlay needs root, and CI is set"
        );
        println!("not run here: mounting an overlay needs root");
        return;
    }
    if !fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("overlay")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "this kernel has no overlayfs, and CI is set"
        );
        println!("not run here: this kernel has no overlayfs");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let (lower, upper) = (lower_layer(), upper_layer());
    let store = LowerStore::open(&scratch.path().join("lowers"), xattrs).unwrap();
    let mut dirs = Vec::new();
    for (name, tar) in [("lower", &lower), ("upper", &upper)] {
        let blob = scratch.path().join(format!("{name}.tar.gz"));
        fs::write(&blob, gzip(tar)).unwrap();
        dirs.push(store.ensure(&Digest::of(tar), &blob).unwrap());
    }
    let merged = scratch.path().join("merged");
    fs::create_dir(&merged).unwrap();
    // Leftmost is the top of the stack.
    let mounted = mount_lowers(&[&dirs[1], &dirs[0]], &merged, xattrs);
    let kernel = snapshot(&mounted.merged, None);

    let extracted = scratch.path().join("extracted");
    fs::create_dir(&extracted).unwrap();
    let mut overlay = Overlay::new(&extracted, Vec::new(), Limits::default());
    overlay.apply_layer("upper", upper.as_slice()).unwrap();
    overlay.apply_layer("lower", lower.as_slice()).unwrap();
    let ours = snapshot(&extracted, Some(overlay.metadata()));
    overlay.finish().unwrap();

    assert_eq!(kernel, ours);
    // The scenario did happen (so an empty view cannot pass).
    assert!(!kernel.contains_key(Path::new("etc/gone")));
    assert!(!kernel.contains_key(Path::new("var/log")));
    assert!(!kernel.contains_key(Path::new("var/cache/old")));
    assert_eq!(kernel[Path::new("opt/tool")].1, 0o4750);
    assert_eq!(
        kernel[Path::new("var/cache")],
        (Node::Dir, 0o700, 1000, 1000)
    );
    assert_eq!(
        kernel[Path::new("srv")].0,
        Node::Symlink(PathBuf::from("/var/cache"))
    );
    drop(mounted);
    regbuild_rootfs::tree::remove_tree(scratch.path()).unwrap();
}

#[test]
fn kernel_overlay_of_trusted_lowers_matches_extract_overlay() {
    merged_view_matches_extract_overlay(OverlayXattrs::Trusted);
}

#[test]
fn kernel_overlay_of_user_lowers_matches_extract_overlay() {
    merged_view_matches_extract_overlay(OverlayXattrs::User);
}
