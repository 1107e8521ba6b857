//! A file that one thread writes while a task streams what has been written so far: a layer
//! uploaded while it is still being packed. The writer announces each write (after it is in
//! the file) and finally the blob's digest and size, or a failure; the reader follows.
//!
//! Not for what is written (`crate::layer` packs the layer) or where it goes (the registry
//! crate uploads the stream).

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncReadExt;

use regbuild_oci::digest::Digest;

/// Read at most this much per chunk of the stream.
const CHUNK: u64 = 1 << 20;

/// How a growing file ended.
#[derive(Clone, Debug)]
pub struct Done {
    pub digest: Digest,
    pub size: u64,
}

/// Why a growing file did not end with a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrowingError {
    /// The writer stopped without saying how it ended ([`EndGuard`]).
    #[error("packing stopped")]
    Stopped,
}

#[derive(Default)]
struct State {
    path: Option<PathBuf>,
    written: u64,
    end: Option<Result<Done, GrowingError>>,
}

/// The shared state of one growing file.
#[derive(Default)]
pub struct Growing {
    state: Mutex<State>,
    wake: tokio::sync::Notify,
}

impl Growing {
    pub fn new() -> Arc<Growing> {
        Arc::new(Growing::default())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
        // Waiters register (`enable`) before they look at the state, so none is missed.
        self.wake.notify_waiters();
    }

    /// The writer is done (the first call counts). `Ok` only after every byte was announced.
    pub fn finish(&self, end: Result<Done, GrowingError>) {
        self.update(|s| {
            if s.end.is_none() {
                s.end = Some(end);
            }
        });
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.state.lock().map(|s| s.written).unwrap_or(0)
    }

    /// Waits until the writer is done.
    pub async fn ended(&self) -> Result<Done, GrowingError> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(end) = self.state.lock().ok().and_then(|s| s.end.clone()) {
                return end;
            }
            notified.await;
        }
    }

    /// Returns once more than `written` bytes are announced or the writer is done.
    async fn changed_from(&self, written: u64) {
        let notified = self.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let unchanged = self
            .state
            .lock()
            .map(|s| s.written == written && s.end.is_none())
            .unwrap_or(false);
        if unchanged {
            notified.await;
        }
    }

    /// The bytes of the file as they are written; ends when the writer finished, fails when
    /// it failed.
    pub fn stream(self: Arc<Self>) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let start = (self, None::<tokio::fs::File>, 0u64);
        futures::stream::try_unfold(start, |(g, mut file, pos)| async move {
            loop {
                let (path, written, end) = match g.state.lock() {
                    Ok(s) => (s.path.clone(), s.written, s.end.as_ref().map(|e| e.is_ok())),
                    Err(_) => return Err(io::Error::other("growing file state poisoned")),
                };
                if end == Some(false) {
                    return Err(io::Error::other("the layer was not packed"));
                }
                if pos < written {
                    let f = match file.as_mut() {
                        Some(f) => f,
                        None => {
                            let path = path.ok_or_else(|| io::Error::other("no file yet"))?;
                            file.insert(tokio::fs::File::open(path).await?)
                        }
                    };
                    let mut buf = vec![0u8; (written - pos).min(CHUNK) as usize];
                    f.read_exact(&mut buf).await?;
                    let next = pos + buf.len() as u64;
                    return Ok(Some((Bytes::from(buf), (g, file, next))));
                }
                if end == Some(true) {
                    return Ok(None);
                }
                g.changed_from(written).await;
            }
        })
    }
}

/// Ends a growing file as failed if its writer stops without saying how it ended.
pub struct EndGuard(pub Arc<Growing>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.finish(Err(GrowingError::Stopped));
    }
}

/// Writes to `inner` (unbuffered: what it accepted is in the file) and announces the total
/// to `growing`, if any.
pub struct Announce<W> {
    inner: W,
    total: u64,
    growing: Option<Arc<Growing>>,
}

impl<W> Announce<W> {
    pub fn new(inner: W, path: PathBuf, growing: Option<Arc<Growing>>) -> Announce<W> {
        if let Some(g) = &growing {
            g.update(|s| s.path = Some(path));
        }
        Announce {
            inner,
            total: 0,
            growing,
        }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Announce<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.total += n as u64;
        let total = self.total;
        if let Some(g) = &self.growing {
            g.update(|s| s.written = total);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test(flavor = "multi_thread")]
    async fn the_reader_follows_the_writer_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let g = Growing::new();
        let reader = tokio::spawn(g.clone().stream().map_ok(|b| b.to_vec()).try_concat());
        let writer_g = g.clone();
        let writer_path = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create(&writer_path).unwrap();
            let mut w = Announce::new(file, writer_path, Some(writer_g.clone()));
            let mut all = Vec::new();
            for i in 0..300u32 {
                let chunk = vec![(i % 251) as u8; 7_000 + i as usize];
                w.write_all(&chunk).unwrap();
                all.extend_from_slice(&chunk);
            }
            writer_g.finish(Ok(Done {
                digest: Digest::of(&all),
                size: all.len() as u64,
            }));
            all
        })
        .await
        .unwrap();
        let read = reader.await.unwrap().unwrap();
        assert_eq!(read.len(), written.len());
        assert!(read == written);
        assert_eq!(g.ended().await.unwrap().size, written.len() as u64);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_writer_that_stops_fails_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let g = Growing::new();
        let reader = tokio::spawn(g.clone().stream().map_ok(|b| b.to_vec()).try_concat());
        {
            let _guard = EndGuard(g.clone());
            let mut w = Announce::new(std::fs::File::create(&path).unwrap(), path, Some(g.clone()));
            w.write_all(b"partial").unwrap();
        }
        assert!(reader.await.unwrap().is_err());
        assert!(g.ended().await.is_err());
    }
}
