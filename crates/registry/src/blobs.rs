//! Reading blobs: existence checks and downloads that are verified against their digest as
//! they stream, never held whole in memory.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode};

use super::error::RegistryError;
use super::transport::{Call, Repo};
use regbuild_oci::digest::{Digest, Hasher};

/// A blob download in progress. Its stream fails at the end (instead of finishing) when the
/// bytes do not hash to the digest, so whatever consumes it — a file, an upload — sees an
/// error, and `failure()` then names the mismatch.
pub struct BlobStream {
    pub len: Option<u64>,
    inner: VerifyingStream,
    failure: Arc<Mutex<Option<RegistryError>>>,
}

impl BlobStream {
    /// The verified byte stream.
    pub fn into_stream(self) -> VerifyingStream {
        self.inner
    }

    /// A handle that, after the stream failed, holds why.
    pub fn failure_slot(&self) -> Arc<Mutex<Option<RegistryError>>> {
        self.failure.clone()
    }
}

/// Bytes of a blob, hashed as they pass.
pub struct VerifyingStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    state: Check,
    expected: Digest,
    expected_len: Option<u64>,
    failure: Arc<Mutex<Option<RegistryError>>>,
    registry: String,
    repository: String,
}

enum Check {
    Hashing(Hasher),
    /// All expected bytes arrived and matched; only the end of the stream may follow.
    Verified,
    Done,
}

impl VerifyingStream {
    fn fail(&mut self, err: RegistryError) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let text = err.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(err);
        }
        self.state = Check::Done;
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            text,
        ))))
    }

    fn mismatch(&self, actual: String) -> RegistryError {
        RegistryError::DigestMismatch {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            what: format!("blob {}", self.expected),
            expected: self.expected.to_string(),
            actual,
        }
    }

    /// Compares the finished hash; `None` when digest and length agree.
    fn check(&self, hasher: Hasher) -> Option<RegistryError> {
        let len = hasher.len();
        let actual = hasher.finish();
        if self.expected_len.is_some_and(|l| l != len) {
            return Some(self.mismatch(format!(
                "{len} bytes instead of {}",
                self.expected_len.unwrap_or(0)
            )));
        }
        (actual != self.expected).then(|| self.mismatch(actual.to_string()))
    }
}

impl Stream for VerifyingStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if matches!(self.state, Check::Done) {
            return Poll::Ready(None);
        }
        let next = match self.inner.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(n) => n,
        };
        let state = std::mem::replace(&mut self.state, Check::Done);
        match (next, state) {
            (Some(Err(e)), _) => {
                let err = RegistryError::BodyBroken {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    op: format!("GET blob {}", self.expected),
                    message: super::error::describe_transport(&e),
                };
                self.fail(err)
            }
            (Some(Ok(_)), Check::Verified) => {
                let err = self.mismatch("more bytes than its size".into());
                self.fail(err)
            }
            (Some(Ok(chunk)), Check::Hashing(mut h)) => {
                h.update(&chunk);
                match self.expected_len {
                    Some(l) if h.len() > l => {
                        let err = self.mismatch("more bytes than its size".into());
                        self.fail(err)
                    }
                    // Verify before the last bytes leave: a fixed-length HTTP body is not
                    // polled to its end, so the end of this stream may never be seen.
                    Some(l) if h.len() == l => match self.check(h) {
                        Some(err) => self.fail(err),
                        None => {
                            self.state = Check::Verified;
                            Poll::Ready(Some(Ok(chunk)))
                        }
                    },
                    _ => {
                        self.state = Check::Hashing(h);
                        Poll::Ready(Some(Ok(chunk)))
                    }
                }
            }
            (None, Check::Hashing(h)) => match self.check(h) {
                Some(err) => self.fail(err),
                None => Poll::Ready(None),
            },
            (None, _) | (Some(Ok(_)), Check::Done) => Poll::Ready(None),
        }
    }
}

impl Repo {
    /// `HEAD` a blob: its size when present, `None` when the repository lacks it.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let op = format!("HEAD blob {digest}");
        let (resp, _) = self
            .send(Call::new(
                Method::HEAD,
                self.url(&format!("blobs/{digest}")),
                &op,
            ))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp.content_length().unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.fail(&op, resp).await),
        }
    }

    /// Starts downloading a blob; the stream verifies digest and size.
    pub async fn get_blob(
        &self,
        digest: &Digest,
        expected_len: Option<u64>,
    ) -> Result<BlobStream, RegistryError> {
        let op = format!("GET blob {digest}");
        let (resp, _) = self
            .send(Call::new(
                Method::GET,
                self.url(&format!("blobs/{digest}")),
                &op,
            ))
            .await?;
        if !resp.status().is_success() {
            return Err(self.fail(&op, resp).await);
        }
        let len = expected_len.or(resp.content_length());
        let failure = Arc::new(Mutex::new(None));
        let inner = VerifyingStream {
            inner: Box::pin(resp.bytes_stream()),
            state: Check::Hashing(Hasher::new()),
            expected: digest.clone(),
            expected_len: len,
            failure: failure.clone(),
            registry: self.registry_name().to_string(),
            repository: self.name().to_string(),
        };
        Ok(BlobStream {
            len,
            inner,
            failure,
        })
    }

    /// Downloads a small blob (a config) into memory, verified, refusing more than `cap` bytes.
    pub async fn get_blob_bytes(
        &self,
        digest: &Digest,
        cap: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let blob = self.get_blob(digest, None).await?;
        if blob.len.is_some_and(|l| l > cap) {
            return Err(self.protocol_error(
                &format!("GET blob {digest}"),
                format!("blob is larger than {cap} bytes"),
            ));
        }
        let failure = blob.failure_slot();
        let mut stream = blob.into_stream();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    if out.len() as u64 + c.len() as u64 > cap {
                        return Err(self.protocol_error(
                            &format!("GET blob {digest}"),
                            format!("blob is larger than {cap} bytes"),
                        ));
                    }
                    out.extend_from_slice(&c);
                }
                Err(e) => {
                    let recorded = failure.lock().ok().and_then(|mut s| s.take());
                    return Err(recorded.unwrap_or_else(|| {
                        self.protocol_error(&format!("GET blob {digest}"), e.to_string())
                    }));
                }
            }
        }
        Ok(out)
    }
}
