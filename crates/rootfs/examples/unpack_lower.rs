//! Times `regbuild_rootfs::lower::unpack_lower` on a generated layer.
//!
//! ```text
//! cargo run --release -p regbuild-rootfs --example unpack_lower -- files 10000 [runs]
//! cargo run --release -p regbuild-rootfs --example unpack_lower -- big 1024 [runs]
//! cargo run --release -p regbuild-rootfs --example unpack_lower -- blob LAYER.tar.gz [runs]
//! ```
//!
//! `files N`: N files of 100 bytes in 100 directories; `big M`: one file of M MiB. The layer
//! is written as a plain tar in a scratch directory (under `$TMPDIR`), unpacked `runs`
//! times (3 by default) into a layer store, as a RUN step does, and the median is printed. `blob PATH`
//! unpacks an existing layer blob (any codec) instead, e.g. a Debian base layer.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use regbuild_rootfs::lower::{LowerStore, OverlayXattrs};
use regbuild_rootfs::tree::remove_tree;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: unpack_lower (files N | big MIB) [runs]";
    let runs: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(3);
    let scratch = tempfile::tempdir().expect("scratch dir");
    if let (Some("blob"), Some(path)) = (args.first().map(String::as_str), args.get(1)) {
        time_unpacks(Path::new(path), scratch.path(), "blob", path, runs);
        return;
    }
    let (Some(kind), Some(count)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let blob = scratch.path().join("layer.tar");
    let file = std::fs::File::create(&blob).expect("create layer");
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let header = |size: u64, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h
    };
    match kind.as_str() {
        "files" => {
            for i in 0..count {
                let mut h = header(100, 0o644);
                let path = format!("d{:03}/f{i:06}", i % 100);
                tar.append_data(&mut h, path, &[b'x'; 100][..])
                    .expect("append");
            }
        }
        "big" => {
            let size = count << 20;
            let mut h = header(size, 0o644);
            let data = std::io::Read::take(Pattern(0), size);
            tar.append_data(&mut h, "big", data).expect("append");
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    tar.into_inner().expect("finish").flush().expect("flush");
    time_unpacks(&blob, scratch.path(), kind, &count.to_string(), runs);
}

/// Unpacks `blob` `runs` times into the layer store under `scratch`, as a RUN step does
/// (removing the previous copy first, as emptying a store does); prints the median.
fn time_unpacks(blob: &Path, scratch: &Path, kind: &str, count: &str, runs: usize) {
    let (_, mut reader) = regbuild_fs::extract::open_archive(blob).expect("open layer");
    let mut hasher = Hashing(regbuild_oci::digest::Hasher::new());
    std::io::copy(&mut reader, &mut hasher).expect("read layer");
    let diff_id = hasher.0.finish();
    let store = LowerStore::open(&scratch.join("store"), OverlayXattrs::User).expect("store");
    let mut times = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        let dir = store.ensure(&diff_id, blob).expect("unpack");
        let took = started.elapsed();
        println!("run {run}: {:.3}s ({diff_id})", took.as_secs_f64());
        times.push(took);
        remove_tree(&dir).expect("cleanup");
    }
    times.sort();
    let median = times
        .get(times.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO);
    println!(
        "{kind} {count}: median of {runs}: {:.3}s",
        median.as_secs_f64()
    );
}

/// A sha256 as a `Write` sink.
struct Hashing(regbuild_oci::digest::Hasher);

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Cheap non-constant bytes, so nothing downstream can shortcut zeros.
struct Pattern(u8);

impl std::io::Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for b in buf.iter_mut() {
            *b = self.0;
            self.0 = self.0.wrapping_add(1);
        }
        Ok(buf.len())
    }
}
