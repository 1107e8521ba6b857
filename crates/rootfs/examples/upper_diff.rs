//! Times turning an overlay upper directory of 10,000 small files in 100 directories into
//! a layer: `cargo run --release -p regbuild-rootfs --example upper_diff`. Prints the median of
//! five runs of `diff_upper` alone and of `diff_upper` + `build_layer`.

use std::time::{Duration, Instant};

use regbuild_fs::layer::LayerOptions;
use regbuild_rootfs::upper::{diff_upper, UpperOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let upper = tmp.path().join("upper");
    for i in 0..10_000 {
        let dir = upper.join(format!("d{:03}", i / 100));
        std::fs::create_dir_all(&dir)?;
        let body = format!("file {i} {}", "x".repeat(i % 200));
        std::fs::write(dir.join(format!("f{i:05}")), body)?;
    }
    let layers = tempfile::tempdir()?;
    let opts = LayerOptions {
        threads: regbuild_fs::compress::threads(),
        ..LayerOptions::default()
    };
    let (mut walks, mut totals): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    let mut size = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let d = diff_upper(&upper, &UpperOptions::default(), layers.path())?;
        walks.push(start.elapsed());
        size = d.build_layer(&opts, layers.path(), &mut |_| {})?.size;
        totals.push(start.elapsed());
    }
    walks.sort();
    totals.sort();
    println!(
        "10,000 files: entries {:?}, entries + layer {:?} (median of 5, {} compression threads, layer {size} bytes)",
        walks[2], totals[2], opts.threads
    );
    Ok(())
}
