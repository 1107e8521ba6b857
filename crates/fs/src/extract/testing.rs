//! Archive builders and a scratch destination for the tests of extraction and of the tar
//! reader, and of `regbuild-rootfs`'s lower directories (feature `testing`): well-formed
//! archives from the `tar` crate's builder, hostile ones block by block.

// Test scaffolding: `new` makes a fresh archive or scratch directory, never a default value.
#![allow(clippy::new_without_default)]

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use super::{extract_archive, EntryMeta, ExtractError, ExtractStats, Extracted, Limits};
use crate::compress::Codec;
use crate::tar_read::{padding, BLOCK};

pub fn header(kind: EntryType, size: u64, mode: u32) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header
}

/// Builds well-formed archives with the `tar` crate.
pub struct Tar(pub Builder<Vec<u8>>);

impl Tar {
    pub fn new() -> Tar {
        Tar(Builder::new(Vec::new()))
    }

    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Tar {
        let mut h = header(EntryType::Regular, data.len() as u64, mode);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Tar {
        let mut h = header(EntryType::Directory, 0, mode);
        self.0.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    /// A file or directory with an owner.
    pub fn owned(
        mut self,
        kind: EntryType,
        path: &str,
        data: &[u8],
        mode: u32,
        ids: (u64, u64),
    ) -> Tar {
        let mut h = header(kind, data.len() as u64, mode);
        h.set_uid(ids.0);
        h.set_gid(ids.1);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn link(mut self, kind: EntryType, path: &str, target: &str) -> Tar {
        let mut h = header(kind, 0, 0o777);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn symlink(self, path: &str, target: &str) -> Tar {
        self.link(EntryType::Symlink, path, target)
    }

    pub fn hardlink(self, path: &str, target: &str) -> Tar {
        self.link(EntryType::Link, path, target)
    }

    /// Appends hand-made blocks, bypassing the builder's name checks.
    pub fn raw(mut self, blocks: Vec<u8>) -> Tar {
        self.0.get_mut().extend_from_slice(&blocks);
        self
    }

    pub fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A header (plus padded data) with any name, link and type.
pub fn raw_entry(name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    raw_sized(name, kind, link, data, data.len() as u64)
}

/// Like `raw_entry`, with a declared size that need not match the data.
pub fn raw_sized(name: &[u8], kind: EntryType, link: &[u8], data: &[u8], size: u64) -> Vec<u8> {
    let mut h = header(kind, size, 0o644);
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name);
    old.linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len() + padding(data.len() as u64) as usize, 0);
    out
}

pub fn pax_kv(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body_len + 1;
    while len != body_len + len.to_string().len() {
        len = body_len + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

pub fn end_marker() -> Vec<u8> {
    vec![0; 2 * BLOCK]
}

pub fn hostile(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend(end_marker());
    out
}

/// A scratch root with `dest` and a sibling `outside` that must stay empty.
pub struct Scene {
    pub root: tempfile::TempDir,
}

impl Scene {
    pub fn new() -> Scene {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("dest")).unwrap();
        fs::create_dir(root.path().join("outside")).unwrap();
        Scene { root }
    }

    pub fn dest(&self) -> PathBuf {
        self.root.path().join("dest")
    }

    pub fn outside(&self) -> PathBuf {
        self.root.path().join("outside")
    }

    pub fn extract(&self, archive: &[u8]) -> Result<ExtractStats, ExtractError> {
        self.unpack(archive).map(|e| e.stats)
    }

    pub fn unpack(&self, archive: &[u8]) -> Result<Extracted, ExtractError> {
        extract_archive("test.tar", archive, &self.dest(), &Limits::default())
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.dest().join(rel)).unwrap()
    }

    pub fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.dest().join(rel)).is_ok()
    }

    pub fn mode(&self, rel: &str) -> u32 {
        fs::symlink_metadata(self.dest().join(rel)).unwrap().mode() & 0o7777
    }

    pub fn assert_outside_untouched(&self) {
        let leaked: Vec<_> = fs::read_dir(self.outside()).unwrap().collect();
        assert!(leaked.is_empty(), "wrote outside dest: {leaked:?}");
        let siblings: Vec<_> = fs::read_dir(self.root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(siblings.len(), 2, "wrote next to dest: {siblings:?}");
    }
}

pub fn skipped_reason(stats: &ExtractStats, path: &str) -> &'static str {
    stats
        .skipped
        .iter()
        .find(|(p, _)| p == Path::new(path))
        .unwrap_or_else(|| panic!("{path} not skipped: {stats:?}"))
        .1
}

pub fn sample_tar() -> Vec<u8> {
    Tar::new()
        .dir("d", 0o755)
        .file("d/f", b"hello", 0o644)
        .bytes()
}

pub fn compressed(kind: Codec, data: &[u8]) -> Vec<u8> {
    match kind {
        Codec::None => data.to_vec(),
        Codec::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        }
        Codec::Zstd => zstd::encode_all(data, 1).unwrap(),
        Codec::Xz => {
            let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        }
    }
}

/// A device or FIFO header (`raw_entry` leaves the device fields empty).
pub fn device_entry(name: &[u8], kind: EntryType, major: u32, minor: u32, mode: u32) -> Vec<u8> {
    let mut h = header(kind, 0, mode);
    h.set_path(OsStr::from_bytes(name)).unwrap();
    h.set_device_major(major).unwrap();
    h.set_device_minor(minor).unwrap();
    h.set_uid(0);
    h.set_gid(6);
    h.set_cksum();
    h.as_bytes().to_vec()
}

pub fn meta(uid: u64, gid: u64, mode: u32) -> EntryMeta {
    EntryMeta { uid, gid, mode }
}
