//! Decompressing an archive on a thread of its own, so that a layer's decoding (inflate and
//! its CRC) runs on one core while the caller parses the tar, hashes it and writes files on
//! another. The two hand chunks to each other over bounded channels: memory stays at a few
//! chunks whatever the archive's size, and chunk buffers are reused, not reallocated.
//!
//! Not here: what the bytes are (the caller reads a plain stream, as from [`open_archive`]).

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::{fill, open_archive, ExtractError};

/// Bytes decoded per hand-over: large enough that the channel costs nothing per byte.
const CHUNK: usize = 256 << 10;
/// Chunks decoded ahead of the reader at most.
const AHEAD: usize = 4;

/// The decompressed content of an archive file, decoded by a background thread. Dropping it
/// stops the thread (after the chunk it is decoding) and waits for it.
pub struct ReadAhead {
    full: Option<Receiver<io::Result<Vec<u8>>>>,
    empty: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Opens `path` as [`open_archive`] does (the same errors, returned here) and starts
    /// decoding it.
    pub fn open(path: &Path) -> Result<ReadAhead, ExtractError> {
        let owned = path.to_path_buf();
        ReadAhead::start(path, move || open_archive(&owned).map(|(_, reader)| reader))
    }

    /// Decodes what `open` gives (called on the thread); `path` names it in errors.
    pub fn start<F>(path: &Path, open: F) -> Result<ReadAhead, ExtractError>
    where
        F: FnOnce() -> Result<Box<dyn Read>, ExtractError> + Send + 'static,
    {
        let (ready_tx, ready) = mpsc::sync_channel::<Result<(), ExtractError>>(1);
        let (full_tx, full) = mpsc::sync_channel::<io::Result<Vec<u8>>>(AHEAD);
        // One buffer more than can be queued: one at the reader, one being filled.
        let (empty, empty_rx) = mpsc::sync_channel::<Vec<u8>>(AHEAD + 2);
        let failed = |source| ExtractError::Open {
            path: path.to_path_buf(),
            source,
        };
        let thread = std::thread::Builder::new()
            .name("layer-decode".into())
            .spawn(move || {
                let mut reader = match open() {
                    Ok(reader) => reader,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if ready_tx.send(Ok(())).is_err() {
                    return;
                }
                loop {
                    let mut buf = empty_rx.try_recv().unwrap_or_default();
                    buf.resize(CHUNK, 0);
                    let chunk = fill(&mut reader, &mut buf).map(|n| {
                        buf.truncate(n);
                        buf
                    });
                    let end = matches!(&chunk, Ok(b) if b.is_empty()) || chunk.is_err();
                    // A closed channel: the reader is gone, stop.
                    if full_tx.send(chunk).is_err() || end {
                        return;
                    }
                }
            })
            .map_err(failed)?;
        let mut ahead = ReadAhead {
            full: Some(full),
            empty,
            chunk: Vec::new(),
            pos: 0,
            thread: Some(thread),
        };
        match ready.recv() {
            Ok(Ok(())) => Ok(ahead),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                ahead.stop();
                Err(failed(io::Error::other("the decoding thread stopped")))
            }
        }
    }

    fn stop(&mut self) {
        self.full = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            let Some(full) = &self.full else {
                return Ok(0);
            };
            match full.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => {
                    self.full = None;
                    return Ok(0);
                }
                Ok(Ok(chunk)) => {
                    let done = std::mem::replace(&mut self.chunk, chunk);
                    let _ = self.empty.try_send(done);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.full = None;
                    return Err(e);
                }
                Err(_) => return Err(io::Error::other("the decoding thread stopped")),
            }
        }
        let rest = self.chunk.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::compress::Codec;

    fn write_blob(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
        let blob = dir.join("blob");
        std::fs::write(&blob, bytes).unwrap();
        blob
    }

    #[test]
    fn reads_what_open_archive_reads() {
        let dir = tempfile::tempdir().unwrap();
        // Several chunks, and an odd tail.
        let data: Vec<u8> = (0..(CHUNK * 5 + 123)).map(|i| (i % 251) as u8).collect();
        for codec in [Codec::None, Codec::Gzip, Codec::Zstd] {
            let blob = write_blob(dir.path(), &compressed(codec, &data));
            let mut got = Vec::new();
            ReadAhead::open(&blob)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            assert!(got == data, "{codec:?}: {} bytes back", got.len());
        }
    }

    #[test]
    fn errors_come_through_and_dropping_early_stops_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let err = ReadAhead::open(&dir.path().join("missing")).err().unwrap();
        assert!(matches!(err, ExtractError::Open { .. }), "{err}");

        // A gzip stream cut short: a read error, not a short stream.
        let data = vec![7u8; CHUNK * 3];
        let gz = compressed(Codec::Gzip, &data);
        let blob = write_blob(dir.path(), &gz[..gz.len() / 2]);
        let mut got = Vec::new();
        assert!(ReadAhead::open(&blob)
            .unwrap()
            .read_to_end(&mut got)
            .is_err());

        // Read one byte of many chunks and drop: returns (the thread was joined).
        let blob = write_blob(dir.path(), &vec![1u8; CHUNK * (AHEAD + 4)]);
        let mut ahead = ReadAhead::open(&blob).unwrap();
        let mut one = [0u8; 1];
        assert_eq!(ahead.read(&mut one).unwrap(), 1);
        drop(ahead);
    }
}
