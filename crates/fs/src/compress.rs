//! Compression both ways, and nothing else: how layers are compressed when written
//! ([`Compression`], [`Compressor`]) and how a stream someone else compressed is recognised and
//! decoded ([`detect_compression`], [`decompress`]).
//!
//! Writing: output that does not depend on the number of threads. gzip is compressed
//! block-parallel (pigz's layout: fixed 1 MiB blocks, each an independent raw-deflate run
//! ending byte-aligned, one gzip member with the CRC of the whole stream), zstd with a fixed
//! multi-threaded mode. The same input and settings give the same bytes on 1 core or 64.
//!
//! Reading: gzip, zstd and xz, told apart by their magic numbers ([`Codec`]); concatenated
//! members, frames and streams are all decoded.
//!
//! Not here: what is inside the streams (tar: `crate::tar_read`, `crate::layer`).

use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress, Status};

use regbuild_oci::manifest::{OCI_LAYER_GZIP, OCI_LAYER_ZSTD};

/// Uncompressed bytes per gzip block: the unit of parallelism, fixed so output is stable.
const BLOCK: usize = 1 << 20;

/// Threads for compression: the machine's cores.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Memory the xz decoder may use. `xz -9` needs about 65 MiB, so this only
/// refuses streams that ask for absurd dictionaries.
const XZ_MEMLIMIT: u64 = 256 << 20;

/// How layers are compressed when written: the algorithm and its level. (What an existing
/// stream is compressed with is a [`Codec`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip { level: u32 },
    Zstd { level: i32 },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

impl Compression {
    /// `gzip`, `gzip:9`, `zstd`, `zstd:19`.
    pub fn parse(s: &str) -> Result<Compression, BadCompression> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let bad = || BadCompression(s.to_string());
        match name {
            "gzip" => {
                let level = level.map_or(Ok(6), |l| l.parse().map_err(|_| bad()))?;
                (level <= 9)
                    .then_some(Compression::Gzip { level })
                    .ok_or_else(bad)
            }
            "zstd" => {
                let level = level.map_or(Ok(3), |l| l.parse().map_err(|_| bad()))?;
                (1..=19)
                    .contains(&level)
                    .then_some(Compression::Zstd { level })
                    .ok_or_else(bad)
            }
            _ => Err(bad()),
        }
    }

    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => OCI_LAYER_GZIP,
            Compression::Zstd { .. } => OCI_LAYER_ZSTD,
        }
    }
}

/// A `--compression` value that is not `gzip[:0-9]` or `zstd[:1-19]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid compression `{0}`: expected gzip[:0-9] or zstd[:1-19]")]
pub struct BadCompression(pub String);

/// What a stream is compressed with, told from its first bytes by [`detect_compression`]:
/// what [`decompress`] decodes it with. Unlike [`Compression`] it has no level (a decoder
/// needs none) and knows xz, which layers are never written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Not compressed (or not in a format known here).
    None,
    Gzip,
    Zstd,
    Xz,
}

impl Codec {
    /// The name used in messages.
    fn name(self) -> &'static str {
        match self {
            Codec::None => "no",
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Xz => "xz",
        }
    }
}

/// A decoder that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("starting {format} decompression: {source}")]
pub struct DecompressError {
    /// `gzip`, `zstd`, `xz`.
    pub format: &'static str,
    #[source]
    pub source: io::Error,
}

/// Detects the compression from a stream's first bytes: gzip, zstd or xz by
/// magic number, and no compression (a tar) for anything else.
pub fn detect_compression(magic: &[u8]) -> Codec {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Codec::Zstd
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Codec::Xz
    } else {
        Codec::None
    }
}

/// Wraps `reader` in a decoder for `codec`. Concatenated gzip members,
/// zstd frames and xz streams are all decoded, as other tools do. Corrupt or
/// truncated data shows up later, as a read error.
pub fn decompress<'a>(
    reader: impl Read + 'a,
    codec: Codec,
) -> Result<Box<dyn Read + 'a>, DecompressError> {
    let failed = |source| DecompressError {
        format: codec.name(),
        source,
    };
    Ok(match codec {
        Codec::None => Box::new(reader),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        // zstd's default window limit (128 MiB) already refuses frames that
        // ask for more memory than that.
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(reader).map_err(failed)?),
        Codec::Xz => {
            let stream =
                xz2::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, xz2::stream::CONCATENATED)
                    .map_err(|e| failed(e.into()))?;
            Box::new(xz2::read::XzDecoder::new_stream(reader, stream))
        }
    })
}

/// A compressing writer; `finish` returns the inner writer after the trailer.
pub enum Compressor<W: Write + Send + 'static> {
    Gzip(ParGz<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write + Send + 'static> Compressor<W> {
    /// `threads` only changes speed, never the bytes.
    pub fn new(c: Compression, threads: usize, out: W) -> io::Result<Compressor<W>> {
        match c {
            Compression::Gzip { level } => Ok(Compressor::Gzip(ParGz::new(out, level, threads)?)),
            Compression::Zstd { level } => {
                let mut e = zstd::stream::write::Encoder::new(out, level)?;
                // Always the multi-threaded mode (at least one worker): its output is the
                // same for any worker count, unlike the single-threaded mode's.
                e.multithread(threads.max(1) as u32)?;
                e.include_checksum(false)?;
                e.include_contentsize(false)?;
                Ok(Compressor::Zstd(e))
            }
        }
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write + Send + 'static> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.flush(),
            Compressor::Zstd(z) => z.flush(),
        }
    }
}

struct Job {
    data: Vec<u8>,
    last: bool,
    done: SyncSender<io::Result<Vec<u8>>>,
}

type BlockResult = Receiver<io::Result<Vec<u8>>>;

/// Block-parallel gzip writer: the calling thread fills blocks (and keeps the CRC), worker
/// threads deflate them, and a collector thread writes them out in order — so reading,
/// compressing and writing/hashing the output overlap.
pub struct ParGz<W: Write + Send + 'static> {
    level: u32,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
    total: u64,
    mode: Mode<W>,
}

enum Mode<W: Write + Send + 'static> {
    /// One thread: blocks are deflated and written inline.
    Inline(W),
    Parallel {
        jobs: SyncSender<Job>,
        order: SyncSender<BlockResult>,
        collector: JoinHandle<(W, io::Result<()>)>,
        workers: Vec<JoinHandle<()>>,
    },
}

impl<W: Write + Send + 'static> ParGz<W> {
    fn new(mut out: W, level: u32, threads: usize) -> io::Result<ParGz<W>> {
        // gzip header: no mtime, no name, deflate, OS "unknown" (255) — machine independent.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        let threads = threads.max(1);
        let mode = if threads == 1 {
            Mode::Inline(out)
        } else {
            let (jobs, rx) = mpsc::sync_channel::<Job>(threads * 2);
            let rx = Arc::new(Mutex::new(rx));
            let workers = (0..threads)
                .map(|_| {
                    let rx = rx.clone();
                    std::thread::spawn(move || loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let _ = job.done.send(deflate_block(&job.data, level, job.last));
                    })
                })
                .collect();
            let (order, order_rx) = mpsc::sync_channel::<BlockResult>(threads * 4);
            let collector = std::thread::spawn(move || {
                let mut out = out;
                let result = (|| {
                    for rx in order_rx {
                        let block = rx
                            .recv()
                            .map_err(|_| io::Error::other("compression worker stopped"))??;
                        out.write_all(&block)?;
                    }
                    Ok(())
                })();
                (out, result)
            });
            Mode::Parallel {
                jobs,
                order,
                collector,
                workers,
            }
        };
        Ok(ParGz {
            level,
            buf: Vec::with_capacity(BLOCK),
            crc: crc32fast::Hasher::new(),
            total: 0,
            mode,
        })
    }

    /// Hands a full (or the last) block to the workers, or compresses it here.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        match &mut self.mode {
            Mode::Inline(out) => out.write_all(&deflate_block(&data, self.level, last)?),
            Mode::Parallel { jobs, order, .. } => {
                let stopped = || io::Error::other("compression stopped");
                let (done, result) = mpsc::sync_channel(1);
                jobs.send(Job { data, last, done }).map_err(|_| stopped())?;
                // Blocks when the collector is behind: memory stays bounded.
                order.send(result).map_err(|_| stopped())
            }
        }
    }

    fn finish(mut self) -> io::Result<W> {
        let submitted = self.submit(true);
        let crc = std::mem::take(&mut self.crc).finalize();
        // ISIZE is the length modulo 2^32 (RFC 1952).
        let isize = (self.total & 0xffff_ffff) as u32;
        let mut out = match self.mode {
            Mode::Inline(out) => {
                submitted?;
                out
            }
            Mode::Parallel {
                jobs,
                order,
                collector,
                workers,
            } => {
                drop(order); // the collector drains what is queued, then stops
                let (out, written) = collector
                    .join()
                    .map_err(|_| io::Error::other("compression collector panicked"))?;
                drop(jobs); // workers see the channel close and exit
                for w in workers {
                    let _ = w.join();
                }
                submitted?;
                written?;
                out
            }
        };
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&isize.to_le_bytes())?;
        out.flush()?;
        Ok(out)
    }
}

impl<W: Write + Send + 'static> Write for ParGz<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.crc.update(&data[..n]);
        self.total += n as u64;
        if self.buf.len() == BLOCK {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One block as raw deflate: non-final blocks end with a sync flush (byte-aligned, no
/// BFINAL) so blocks concatenate into one valid stream; the last one finishes it.
fn deflate_block(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(256 * 1024);
        }
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once all input is in and there was room left over.
            _ if all_in && !last && out.capacity() > out.len() => return Ok(out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Half text-like, half noise: both paths of the compressor.
                if (i / 4096) % 2 == 0 {
                    b"layer text "[i % 11]
                } else {
                    (x >> 32) as u8
                }
            })
            .collect()
    }

    fn compress(c: Compression, threads: usize, data: &[u8]) -> Vec<u8> {
        let mut w = Compressor::new(c, threads, Vec::new()).unwrap();
        // Odd write sizes: block boundaries must not depend on how bytes arrive.
        for chunk in data.chunks(77_777) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn gzip_output_is_the_same_for_any_thread_count_and_decodes() {
        let data = sample(3 * BLOCK + 12_345);
        let one = compress(Compression::Gzip { level: 6 }, 1, &data);
        for threads in [2, 3, 8] {
            assert_eq!(
                compress(Compression::Gzip { level: 6 }, threads, &data),
                one,
                "{threads}"
            );
        }
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn empty_and_exact_block_inputs_decode() {
        for len in [0, 1, BLOCK, 2 * BLOCK] {
            let data = sample(len);
            let gz = compress(Compression::Gzip { level: 1 }, 2, &data);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{len}");
        }
    }

    #[test]
    fn zstd_output_is_the_same_for_any_thread_count_and_decodes() {
        let data = sample(2 * BLOCK + 999);
        let one = compress(Compression::Zstd { level: 3 }, 1, &data);
        for threads in [2, 4] {
            assert_eq!(
                compress(Compression::Zstd { level: 3 }, threads, &data),
                one,
                "{threads}"
            );
        }
        assert_eq!(zstd::stream::decode_all(&one[..]).unwrap(), data);
    }

    #[test]
    fn detects_compression_from_magic() {
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8]), Codec::Gzip);
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Codec::Zstd
        );
        assert_eq!(
            detect_compression(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Codec::Xz
        );
        assert_eq!(detect_compression(b"hello"), Codec::None);
        assert_eq!(detect_compression(&[0x1f]), Codec::None);
        assert_eq!(detect_compression(&[]), Codec::None);
    }

    #[test]
    fn compression_names_parse() {
        assert_eq!(
            Compression::parse("gzip"),
            Ok(Compression::Gzip { level: 6 })
        );
        assert_eq!(
            Compression::parse("zstd:19"),
            Ok(Compression::Zstd { level: 19 })
        );
        assert!(Compression::parse("gzip:10").is_err());
        assert!(Compression::parse("lz4").is_err());
        assert_eq!(
            Compression::parse("zstd").unwrap().media_type(),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
}
