//! Unpacks a layer blob as an overlay lower directory, as a RUN step's base layer is, and
//! says what it cost: `cargo run --release -p regbuild-rootfs --example unpack_layer -- BLOB`.
//! Prints the time, the bytes of file data, and the disk the tree takes (its blocks), then
//! removes the tree. The destination is a new directory under `$TMPDIR` (or `--in DIR`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use regbuild_rootfs::lower::{unpack_lower, LowerOptions, OverlayXattrs};
use regbuild_rootfs::tree::remove_tree;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (blob, parent) = match args.as_slice() {
        [blob] => (PathBuf::from(blob), std::env::temp_dir()),
        [blob, flag, dir] if flag == "--in" => (PathBuf::from(blob), PathBuf::from(dir)),
        _ => return Err("usage: unpack_layer BLOB [--in DIR]".into()),
    };
    let dest = tempfile::tempdir_in(parent)?;
    let opts = LowerOptions {
        xattrs: OverlayXattrs::User,
        ..LowerOptions::default()
    };
    let start = Instant::now();
    let unpacked = unpack_lower(&blob, dest.path(), &opts);
    let seconds = start.elapsed().as_secs_f64();
    let disk = disk_bytes(dest.path());
    match unpacked {
        Ok(stats) => println!(
            "unpacked in {seconds:.2} s: {} entries, {} bytes of file data, {disk} bytes on disk",
            stats.entries, stats.bytes
        ),
        Err(e) => println!("failed after {seconds:.2} s ({disk} bytes left on disk): {e}"),
    }
    remove_tree(dest.path())?;
    Ok(())
}

/// Bytes the tree under `dir` takes on disk (512-byte blocks), directories included.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(meta) = e.metadata() {
                total += meta.blocks() * 512;
                if meta.is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    total
}
