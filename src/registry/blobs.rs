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
use crate::digest::{Digest, Hasher};

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
    hasher: Option<Hasher>,
    expected: Digest,
    expected_len: Option<u64>,
    failure: Arc<Mutex<Option<RegistryError>>>,
    registry: String,
    repository: String,
}

impl VerifyingStream {
    fn fail(&mut self, err: RegistryError) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let text = err.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(err);
        }
        self.hasher = None;
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            text,
        ))))
    }
}

impl Stream for VerifyingStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.hasher.is_none() {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let expected_len = self.expected_len;
                let too_long = {
                    let Some(h) = self.hasher.as_mut() else {
                        return Poll::Ready(None);
                    };
                    h.update(&chunk);
                    expected_len.is_some_and(|l| h.len() > l)
                };
                if too_long {
                    let err = self.mismatch_with("more bytes than its size".to_string());
                    return self.fail(err);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let err = self.mismatch_with(format!(
                    "download broke: {}",
                    super::error::describe_transport(&e)
                ));
                self.fail(err)
            }
            Poll::Ready(None) => {
                let Some(h) = self.hasher.take() else {
                    return Poll::Ready(None);
                };
                let len = h.len();
                let actual = h.finish();
                if actual != self.expected || self.expected_len.is_some_and(|l| l != len) {
                    let err = self.mismatch_with(actual.to_string());
                    self.hasher = Some(Hasher::new());
                    return self.fail(err);
                }
                Poll::Ready(None)
            }
        }
    }
}

impl VerifyingStream {
    fn mismatch_with(&self, actual: String) -> RegistryError {
        RegistryError::DigestMismatch {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            what: format!("blob {}", self.expected),
            expected: self.expected.to_string(),
            actual,
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
            hasher: Some(Hasher::new()),
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
