//! Times `regbuild_fs::lower::unpack_lower` on a generated layer.
//!
//! ```text
//! cargo run --release -p regbuild-fs --example unpack_lower -- files 10000 [runs]
//! cargo run --release -p regbuild-fs --example unpack_lower -- big 1024 [runs]
//! ```
//!
//! `files N`: N files of 100 bytes in 100 directories; `big M`: one file of M MiB. The layer
//! is written as a plain tar in a scratch directory (under `$TMPDIR`), unpacked `runs`
//! times (3 by default) into fresh directories, and the median is printed.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use regbuild_fs::lower::{remove_tree, unpack_lower, LowerOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: unpack_lower (files N | big MIB) [runs]";
    let (Some(kind), Some(count)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let runs: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(3);
    let scratch = tempfile::tempdir().expect("scratch dir");
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
    let mut times = Vec::new();
    for run in 0..runs {
        let dest = scratch.path().join(format!("run{run}"));
        std::fs::create_dir(&dest).expect("dest");
        let started = Instant::now();
        let stats = unpack_lower(&blob, &dest, &LowerOptions::default()).expect("unpack");
        let took = started.elapsed();
        println!(
            "run {run}: {:.3}s ({} entries, {} bytes, {})",
            took.as_secs_f64(),
            stats.entries,
            stats.bytes,
            stats.diff_id
        );
        times.push(took);
        remove_tree(Path::new(&dest)).expect("cleanup");
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
