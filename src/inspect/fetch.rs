//! The I/O half of `inspect`: resolve the reference for a platform (manifest and config, see
//! [`crate::image::base`]), then stream every layer GET → digest check → gunzip/zstd/xz →
//! tar headers ([`regbuild_fs::tar_read`]), never holding a layer whole: the decompressed
//! stream is read block by block and only each entry's path, type, size and mode are kept.
//!
//! Not here: what the entries add up to ([`super::analysis`]).
//!
//! Each layer is downloaded by the async side and handed in bounded chunks to a blocking
//! task that decompresses and walks the tar. The download is always read to its end, so the
//! blob's digest (and size) are always checked; a mismatch fails the command even when the
//! tar itself looked fine. The decompressed stream is also read to its end and checked
//! against the config's `rootfs.diff_ids`.

use std::io::{self, BufRead, BufReader, Read};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::analysis::{layer_history, Analysis, Analyzer, Entry};
use crate::image::base::{self, BaseError};
use regbuild_fs::tar_read::{
    Item, Limits, Rules, Stage, TarError, TarErrorKind, TarReader, MAX_EXTENSION_LEN,
};
use regbuild_oci::digest::{Digest, Hasher};
use regbuild_oci::manifest::Descriptor;
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::{Registry, RegistryError, Repo, Scopes};

/// Most tar headers in one image: bounds the memory the per-path bookkeeping can take.
const MAX_ENTRIES: u64 = 10_000_000;
/// Chunks in flight between the download and the tar walker, per layer.
const CHANNEL_CHUNKS: usize = 8;

/// Why an image could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Base(#[from] BaseError),
    #[error("{image}: {source}")]
    Registry {
        image: String,
        source: RegistryError,
    },
    #[error("{image}: layer {digest}: {source}")]
    Layer {
        image: String,
        digest: String,
        source: LayerError,
    },
    #[error("{image}: config is not valid JSON: {source}")]
    Config {
        image: String,
        source: serde_json::Error,
    },
}

/// Why one layer of an inspected image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("a foreign (non-distributable) layer: the registry does not hold it")]
    Foreign,
    #[error("the image has more than {MAX_ENTRIES} tar entries")]
    ImageTooManyEntries,
    #[error("more than {MAX_ENTRIES} tar entries")]
    TooManyEntries,
    /// Reading the layer's first bytes (to detect its compression).
    #[error("{0}")]
    Read(io::Error),
    #[error("{0}")]
    Decompress(#[from] regbuild_fs::compress::DecompressError),
    /// Reading the rest of the decompressed stream.
    #[error("decompressing: {0}")]
    Decompressing(io::Error),
    #[error("uncompressed content is {actual}, but the config's diff_id is {expected}")]
    DiffId { actual: Digest, expected: Digest },
    #[error("{}", tar_message(.0))]
    Tar(TarError),
    #[error("bad tar mode field in {near:?}: {source}")]
    Mode { near: String, source: io::Error },
    /// The blob stream stopped without the registry's reason.
    #[error("{0}")]
    Stream(io::Error),
    #[error("the layer reader stopped: {0}")]
    Reader(tokio::task::JoinError),
}

/// What was read from the registry about one layer.
#[derive(Clone, Debug)]
pub struct LayerInfo {
    pub descriptor: Descriptor,
    /// Bytes of the decompressed tar stream.
    pub uncompressed_size: u64,
    /// The history entry that made the layer.
    pub created_by: Option<String>,
}

/// An inspected image.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub reference: ImageRef,
    /// What the reference resolved to (an index's digest for multi-platform images).
    pub digest: Digest,
    /// The platform manifest's digest.
    pub manifest_digest: Digest,
    pub platform: Platform,
    pub layers: Vec<LayerInfo>,
    pub analysis: Analysis,
}

/// Reads `reference` (for `platform` when it is an index) and analyses its layers, streaming
/// up to `jobs` layers at once. `on_layer(index, count, layer)` is called as each layer is
/// done, bottom first.
pub async fn inspect(
    registry: &Registry,
    reference: &ImageRef,
    platform: &Platform,
    jobs: usize,
    on_layer: impl Fn(usize, usize, &LayerInfo),
) -> Result<Inspection, InspectError> {
    let image = reference.to_string();
    let resolved = base::resolve(registry, reference, platform).await?;
    let config: serde_json::Value =
        serde_json::from_slice(&resolved.config).map_err(|source| InspectError::Config {
            image: image.clone(),
            source,
        })?;
    let count = resolved.layers.len();
    let history = layer_history(&config, count);
    let diff_ids: Vec<Option<Digest>> = config
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .map(|ids| {
            ids.iter()
                .map(|v| v.as_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    // Only a diff_id list that matches the layers one to one is checked.
    let check_diff_ids = diff_ids.len() == count;
    let repo = registry.repo(
        &reference.registry,
        &reference.repository,
        Scopes::pull(&reference.repository),
    );

    let scans = futures::stream::iter(resolved.layers.iter().enumerate().map(|(i, d)| {
        let repo = &repo;
        let image = &image;
        let diff_id = if check_diff_ids {
            diff_ids[i].clone()
        } else {
            None
        };
        async move {
            if !d.urls.is_empty() {
                return Err(InspectError::Layer {
                    image: image.clone(),
                    digest: d.digest.to_string(),
                    source: LayerError::Foreign,
                });
            }
            let _job = registry.job().await;
            scan_layer(repo, d, diff_id).await.map_err(|e| match e {
                ScanError::Registry(source) => InspectError::Registry {
                    image: image.clone(),
                    source,
                },
                ScanError::Layer(source) => InspectError::Layer {
                    image: image.clone(),
                    digest: d.digest.to_string(),
                    source,
                },
            })
        }
    }))
    .buffered(jobs.max(1));
    futures::pin_mut!(scans);

    let mut analyzer = Analyzer::new();
    let mut layers = Vec::with_capacity(count);
    let mut entries_seen = 0u64;
    while let Some(scan) = scans.try_next().await? {
        let index = layers.len();
        let descriptor = resolved.layers[index].clone();
        entries_seen += scan.headers;
        if entries_seen > MAX_ENTRIES {
            return Err(InspectError::Layer {
                image: image.clone(),
                digest: descriptor.digest.to_string(),
                source: LayerError::ImageTooManyEntries,
            });
        }
        analyzer.add_layer(&scan.entries);
        let info = LayerInfo {
            descriptor,
            uncompressed_size: scan.uncompressed_size,
            created_by: history[index].clone(),
        };
        on_layer(index, count, &info);
        layers.push(info);
    }
    Ok(Inspection {
        reference: reference.clone(),
        digest: resolved.digest,
        manifest_digest: resolved.manifest_digest,
        platform: platform.clone(),
        layers,
        analysis: analyzer.finish(),
    })
}

/// One layer's entries.
#[derive(Debug, Default)]
struct Scan {
    entries: Vec<Entry>,
    /// Tar headers read (extension headers included).
    headers: u64,
    uncompressed_size: u64,
}

enum ScanError {
    Registry(RegistryError),
    Layer(LayerError),
}

/// Streams one layer into the tar walker; the blob is read to its end so its digest is
/// always checked, and a digest failure wins over whatever the walker made of the bytes.
async fn scan_layer(
    repo: &Repo,
    descriptor: &Descriptor,
    diff_id: Option<Digest>,
) -> Result<Scan, ScanError> {
    let blob = repo
        .get_blob(&descriptor.digest, Some(descriptor.size))
        .await
        .map_err(ScanError::Registry)?;
    let failure = blob.failure_slot();
    let mut stream = blob.into_stream();
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let walker = tokio::task::spawn_blocking(move || scan_stream(ChannelReader::new(rx), diff_id));
    let mut tx = Some(tx);
    let mut stream_error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                if let Some(sender) = &tx {
                    if sender.send(Ok(bytes)).await.is_err() {
                        // The walker stopped (an error): keep reading to check the digest.
                        tx = None;
                    }
                }
            }
            Err(e) => {
                let recorded = failure.lock().ok().and_then(|mut f| f.take());
                if let Some(sender) = &tx {
                    let _ = sender
                        .send(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            e.to_string(),
                        )))
                        .await;
                }
                stream_error = Some(match recorded {
                    Some(r) => ScanError::Registry(r),
                    None => ScanError::Layer(LayerError::Stream(e)),
                });
                break;
            }
        }
    }
    drop(tx);
    let walked = walker
        .await
        .map_err(|e| ScanError::Layer(LayerError::Reader(e)))?;
    if let Some(e) = stream_error {
        return Err(e);
    }
    walked.map_err(ScanError::Layer)
}

/// A blocking reader over chunks sent by the async side; the channel closing is the end.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Counts and hashes what passes (the decompressed tar, for its size and diff_id).
struct Tally<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Decompresses a layer (detected from its first bytes), walks its tar, then reads the rest
/// of the decompressed stream (trailing padding, the compressor's checksum) and compares its
/// digest with `diff_id`.
fn scan_stream(input: impl Read, diff_id: Option<Digest>) -> Result<Scan, LayerError> {
    use regbuild_fs::compress::{decompress, detect_compression};
    let mut input = BufReader::with_capacity(64 << 10, input);
    let magic = input.fill_buf().map_err(LayerError::Read)?;
    let compression = detect_compression(magic);
    let reader = decompress(input, compression)?;
    let mut tally = Tally {
        inner: reader,
        hasher: Hasher::new(),
    };
    let mut scan = Scan::default();
    walk_tar(&mut tally, |header| {
        scan.headers += 1;
        if scan.headers > MAX_ENTRIES {
            return Err(LayerError::TooManyEntries);
        }
        if let Some(e) = header {
            scan.entries.push(e);
        }
        Ok(())
    })?;
    io::copy(&mut tally, &mut io::sink()).map_err(LayerError::Decompressing)?;
    scan.uncompressed_size = tally.hasher.len();
    let actual = tally.hasher.finish();
    if let Some(expected) = diff_id.filter(|d| d.algorithm() == "sha256") {
        if actual != expected {
            return Err(LayerError::DiffId { actual, expected });
        }
    }
    Ok(scan)
}

/// Walks a tar stream header by header with [`regbuild_fs::tar_read`], skipping file data,
/// and calls `visit` for every header: `Some(entry)` for members that mean something to the
/// filesystem, `None` for extension headers and entries the analysis ignores.
///
/// Read as Go's `archive/tar` (which writes and applies most layers) reads: header-only
/// types carry no data whatever their size field says, extension headers that no entry
/// follows are ignored, and reading stops at the first all-zero block or at a clean end
/// between headers. A PAX `path` wins over a GNU long name. Old GNU sparse chains are
/// capped at [`MAX_ENTRIES`] blocks; the headers themselves are counted by the caller.
pub(crate) fn walk_tar(
    input: &mut impl Read,
    mut visit: impl FnMut(Option<Entry>) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let rules = Rules {
        limits: Limits::NONE,
        header_only_types_have_no_data: true,
        pax_names_win: true,
        refuse_dangling_extensions: false,
        max_sparse_blocks: Some(MAX_ENTRIES),
    };
    let mut tar = TarReader::new(input, rules);
    while let Some(item) = tar.next_item().map_err(LayerError::Tar)? {
        let Item::Entry(member) = item else {
            visit(None)?;
            continue;
        };
        let block = member.header().as_bytes();
        // An empty field is 0, as Go's archive/tar reads it; garbage is an error.
        let mode = if block[100..108].iter().all(|b| matches!(b, 0 | b' ')) {
            0
        } else {
            member.header().mode().map_err(|source| LayerError::Mode {
                near: String::from_utf8_lossy(member.path_bytes()).into_owned(),
                source,
            })?
        };
        let entry = Entry::from_tar(member.path_bytes(), block[156], member.size(), mode);
        // The rest of the header (a sparse map) before the entry counts.
        member.data().map_err(LayerError::Tar)?;
        visit(entry)?;
    }
    Ok(())
}

/// What a tar reading error says in `inspect`'s words: "after" the last entry while
/// reading headers, "in" it while skipping what belongs to it.
fn tar_message(e: &TarError) -> String {
    let near = e.last_entry.to_string_lossy().into_owned();
    match (&e.kind, e.stage) {
        (TarErrorKind::Read(err), Stage::Header | Stage::Extension | Stage::SparseMap) => {
            format!("reading the tar: {err}")
        }
        (TarErrorKind::Read(err), _) => format!("reading the tar (in {near:?}): {err}"),
        (TarErrorKind::Truncated, Stage::Header | Stage::Extension) => {
            format!("the tar is truncated (after {near:?})")
        }
        (TarErrorKind::Truncated, _) => format!("the tar is truncated (in {near:?})"),
        (TarErrorKind::BadChecksum, _) => format!("bad tar header checksum (after {near:?})"),
        (TarErrorKind::BadSize(err), _) => format!("bad tar size field (after {near:?}): {err}"),
        (TarErrorKind::ExtensionTooLong { size }, _) => format!(
            "tar extension header of {size} bytes (after {near:?}) is over the limit of {MAX_EXTENSION_LEN}"
        ),
        (TarErrorKind::MalformedPax | TarErrorKind::BadPaxSize, _) => {
            format!("malformed PAX header (after {near:?})")
        }
        (TarErrorKind::SparseChainTooLong, _) => format!("endless sparse header chain in {near:?}"),
        // Not under the rules above (no limits, dangling extension headers ignored).
        (other, _) => format!("{other} (after {near:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::analysis::Kind;
    use super::*;
    use regbuild_fs::tar_read::padding;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn add(
        b: &mut tar::Builder<Vec<u8>>,
        path: &str,
        kind: tar::EntryType,
        data: &[u8],
        mode: u32,
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn entries(tar: &[u8]) -> Result<Vec<Entry>, LayerError> {
        let mut out = Vec::new();
        walk_tar(&mut &tar[..], |e| {
            out.extend(e);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn walks_files_dirs_links_long_names_and_whiteouts() {
        let long = format!("deep/{}/file", "x".repeat(150));
        let tar = tar_of(|b| {
            add(b, "deep/", tar::EntryType::Directory, b"", 0o755);
            add(b, &long, tar::EntryType::Regular, b"hello", 0o4755);
            add(b, "deep/.wh.gone", tar::EntryType::Regular, b"", 0o644);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "ln", "deep").unwrap();
        });
        let e = entries(&tar).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!((e[0].kind, e[0].path.as_str()), (Kind::Dir, "deep"));
        assert_eq!(
            (e[1].kind, e[1].path.as_str(), e[1].size),
            (Kind::File, long.as_str(), 5)
        );
        assert_eq!(e[1].mode & 0o7777, 0o4755);
        assert_eq!(
            (e[2].kind, e[2].path.as_str()),
            (Kind::Whiteout, "deep/gone")
        );
        assert_eq!(e[3].kind, Kind::Symlink);
    }

    #[test]
    fn pax_path_and_size_are_honoured() {
        let mut tar = Vec::new();
        let record = |k: &str, v: &str| {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            if format!("{len}{body}").len() != len {
                len += 1;
            }
            format!("{len}{body}")
        };
        let pax = format!("{}{}", record("path", "pax/name.bin"), record("size", "3"));
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("PaxHeader").unwrap();
        h.set_size(pax.len() as u64);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(pax.as_bytes());
        tar.resize(tar.len() + padding(pax.len() as u64) as usize, 0);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path("short").unwrap();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(b"abc");
        tar.resize(tar.len() + 509, 0);
        tar.extend_from_slice(&[0u8; 1024]);
        let e = entries(&tar).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].path.as_str(), e[0].size), ("pax/name.bin", 3));
    }

    #[test]
    fn refuses_truncated_and_corrupt_tars() {
        let tar = tar_of(|b| add(b, "f", tar::EntryType::Regular, &[7u8; 2000], 0o644));
        assert!(entries(&tar[..1000])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut bad = tar.clone();
        bad[0] ^= 1;
        assert!(entries(&bad).unwrap_err().to_string().contains("checksum"));
        assert!(entries(&[]).unwrap().is_empty());
        // Cut inside the padding after the data: truncated.
        assert!(entries(&tar[..512 + 2000 + 10])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
    }

    #[test]
    fn accepts_a_tar_that_ends_right_after_the_last_data() {
        // What umoci writes: no padding after the last entry, no end-of-archive blocks.
        let tar = tar_of(|b| add(b, "f", tar::EntryType::Regular, &[7u8; 2000], 0o644));
        let e = entries(&tar[..512 + 2000]).unwrap();
        assert_eq!((e.len(), e[0].size), (1, 2000));
    }

    #[test]
    fn scan_counts_and_checks_the_diff_id() {
        let tar = tar_of(|b| add(b, "a/b", tar::EntryType::Regular, b"data", 0o644));
        let diff_id = Digest::of(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let scan = scan_stream(&gz[..], Some(diff_id.clone())).unwrap();
        assert_eq!(scan.uncompressed_size, tar.len() as u64);
        assert_eq!(scan.entries.len(), 1);
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        assert_eq!(
            scan_stream(&zst[..], Some(diff_id)).unwrap().entries.len(),
            1
        );
        let wrong = Digest::of(b"other");
        assert!(scan_stream(&gz[..], Some(wrong))
            .unwrap_err()
            .to_string()
            .contains("diff_id"));
        // A gzip stream cut short is an error, not a short layer.
        assert!(scan_stream(&gz[..gz.len() - 6], None).is_err());
    }
}
