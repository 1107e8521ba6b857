//! Writing blobs: cross-repository mounts with their fallbacks, monolithic uploads that
//! stream from a file or another registry, and resumable chunked uploads for large files.
//!
//! Requests bound to a session's state (its PATCH and PUT) are not retried as such: after a
//! transient failure a monolithic upload restarts in a fresh session, and a chunked upload
//! asks the session how much it holds (`GET`, `Range`) and resumes from there.
//!
//! Upload Locations are opaque: a relative one is resolved against the URL that answered,
//! its query (distribution keeps a signed `_state` there) is kept, and only the newest
//! Location of a session is used.

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use url::Url;

use super::error::RegistryError;
use super::transport::{header_str, Body, Call, Repo};
use crate::digest::Digest;

/// An open upload session: where to send its bytes next.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub location: Url,
    /// `OCI-Chunk-Min-Length`: every chunk but the last must be at least this long.
    pub min_chunk: Option<u64>,
}

/// What a mount request achieved.
#[derive(Debug)]
pub enum Mounted {
    /// 201: the blob is in the repository now.
    Done,
    /// The registry did not mount; upload into this session (202's own, or a fresh one when
    /// the mount was refused with another status).
    Upload(UploadSession),
}

/// What to upload.
pub enum BlobSource {
    /// A file on disk (replayable); `on_sent` follows the bytes sent.
    File {
        path: std::path::PathBuf,
        len: u64,
        on_sent: Option<super::transport::SentHook>,
    },
    /// A stream of known length that can be consumed once (a cross-registry copy).
    Stream { body: reqwest::Body, len: u64 },
    /// Nothing: the bytes were sent by PATCH already.
    Empty,
}

impl Repo {
    /// `POST ?mount=<digest>&from=<repo>`. Any answer but 201/202 falls back to a plain
    /// upload session, because registries refuse mounts in many ways (401/403/404/5xx).
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<Mounted, RegistryError> {
        let op = format!("mount blob {digest} from {from}");
        let mut url = self.url("blobs/uploads/");
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let (resp, answered) = self.send(Call::new(Method::POST, url, &op)).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mounted::Done),
            StatusCode::ACCEPTED => Ok(Mounted::Upload(self.session_from(&op, &resp, &answered)?)),
            status => {
                tracing::debug!(%digest, from, status = status.as_u16(), "mount refused; uploading");
                Ok(Mounted::Upload(self.start_upload().await?))
            }
        }
    }

    /// `POST /blobs/uploads/`: opens a session.
    pub async fn start_upload(&self) -> Result<UploadSession, RegistryError> {
        let op = "start upload";
        let (resp, answered) = self
            .send(Call::new(Method::POST, self.url("blobs/uploads/"), op))
            .await?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::CREATED {
            return Err(self.fail(op, resp).await);
        }
        self.session_from(op, &resp, &answered)
    }

    /// Sends the whole blob in one `PUT <location>&digest=…` and closes the session.
    pub async fn finish_upload(
        &self,
        session: UploadSession,
        digest: &Digest,
        source: BlobSource,
    ) -> Result<(), RegistryError> {
        let op = format!("upload blob {digest}");
        let mut url = session.location;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let body = match source {
            BlobSource::File { path, len, on_sent } => Body::File {
                path,
                offset: 0,
                len,
                on_sent,
            },
            BlobSource::Stream { body, len } => Body::Stream {
                body: Some(body),
                len: Some(len),
            },
            BlobSource::Empty => Body::Empty,
        };
        let call = Call::new(Method::PUT, url, &op)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .no_retry();
        let (resp, _) = self.send(call).await?;
        if !resp.status().is_success() {
            return Err(self.fail(&op, resp).await);
        }
        Ok(())
    }

    /// `PATCH <location>` with a body whose length is not known yet (a blob still being
    /// produced): the spec's streamed upload. Not retried (the body is consumed once); returns
    /// the session to close with `finish_upload(…, BlobSource::Empty)`.
    pub async fn patch_stream(
        &self,
        session: UploadSession,
        body: reqwest::Body,
    ) -> Result<UploadSession, RegistryError> {
        let op = "upload blob while it is packed";
        let call = Call::new(Method::PATCH, session.location.clone(), op)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Body::Stream {
                body: Some(body),
                len: None,
            })
            .no_retry();
        let (resp, answered) = self.send(call).await?;
        if !resp.status().is_success() {
            return Err(self.fail(op, resp).await);
        }
        let location = self
            .next_location(op, &resp, &answered)?
            .unwrap_or(session.location);
        Ok(UploadSession {
            location,
            min_chunk: session.min_chunk,
        })
    }

    fn session_from(
        &self,
        op: &str,
        resp: &reqwest::Response,
        answered: &Url,
    ) -> Result<UploadSession, RegistryError> {
        let raw = header_str(resp, LOCATION)
            .ok_or_else(|| self.protocol_error(op, "upload answer has no Location"))?;
        let location = resolve_location(answered, &raw)
            .ok_or_else(|| self.protocol_error(op, "upload Location is not a valid URL"))?;
        let min_chunk = header_str(resp, "oci-chunk-min-length".parse().expect("static"))
            .and_then(|v| v.trim().parse().ok());
        Ok(UploadSession {
            location,
            min_chunk,
        })
    }

    /// Uploads a file into `first` (or a new session), restarting in a fresh session after a
    /// transient failure; files over the chunk threshold go in resumable chunks.
    pub async fn upload_file(
        &self,
        first: Option<UploadSession>,
        digest: &Digest,
        path: &std::path::Path,
        len: u64,
        on_sent: Option<super::transport::SentHook>,
    ) -> Result<(), RegistryError> {
        let opts = self.registry.options().clone();
        let mut session = first;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let s = match session.take() {
                Some(s) => s,
                None => self.start_upload().await?,
            };
            let result = if len > opts.chunk_threshold {
                self.upload_chunks(s, digest, path, len, opts.chunk_size, on_sent.clone())
                    .await
            } else {
                let source = BlobSource::File {
                    path: path.to_path_buf(),
                    len,
                    on_sent: on_sent.clone(),
                };
                self.finish_upload(s, digest, source).await
            };
            match result {
                Err(e) if e.is_transient() => match opts.retry.next(attempt, None) {
                    super::retry::Next::Wait(d) => {
                        tracing::debug!(%digest, attempt, "upload failed ({e}); restarting it");
                        tokio::time::sleep(d).await;
                    }
                    _ => return Err(e),
                },
                other => return other,
            }
        }
    }

    /// PATCHes `path` in chunks with `Content-Range`, resuming from what the session holds
    /// after a failure or a 416, then closes the session with `PUT ?digest=`.
    pub async fn upload_chunks(
        &self,
        mut session: UploadSession,
        digest: &Digest,
        path: &std::path::Path,
        len: u64,
        chunk_size: u64,
        on_sent: Option<super::transport::SentHook>,
    ) -> Result<(), RegistryError> {
        let op = format!("upload blob {digest} (chunked)");
        let policy = self.registry.options().retry.clone();
        let chunk = chunk_size.max(session.min_chunk.unwrap_or(0)).max(1);
        let mut offset = 0u64;
        let mut failures = 0u32;
        while offset < len {
            let end = (offset + chunk).min(len);
            let base = offset;
            let hook = on_sent.clone().map(|h| {
                let h: super::transport::SentHook = std::sync::Arc::new(move |n| h(base + n));
                h
            });
            let call = Call::new(Method::PATCH, session.location.clone(), &op)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(
                    reqwest::header::CONTENT_RANGE,
                    &format!("{offset}-{}", end - 1),
                )
                .body(Body::File {
                    path: path.to_path_buf(),
                    offset,
                    len: end - offset,
                    on_sent: hook,
                })
                .no_retry();
            let outcome = self.send(call).await;
            let status = outcome.as_ref().ok().map(|(r, _)| r.status());
            match outcome {
                Ok((resp, answered)) if resp.status().is_success() => {
                    if let Some(next) = self.next_location(&op, &resp, &answered)? {
                        session.location = next;
                    }
                    // The registry says how much it holds; trust it over our count.
                    offset = header_str(&resp, reqwest::header::RANGE)
                        .and_then(|r| parse_range_end(&r))
                        .map_or(end, |held| held.min(len));
                    continue;
                }
                Ok((resp, _)) if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE => {}
                Ok((resp, _)) if super::retry::is_transient(resp.status()) => {}
                Ok((resp, _)) => return Err(self.fail(&op, resp).await),
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e),
            }
            failures += 1;
            let wait = match policy.next(failures, None) {
                super::retry::Next::Wait(d) => d,
                _ => {
                    return Err(self.protocol_error(
                        &op,
                        format!(
                            "gave up resuming after {failures} failed chunks (last answer: {})",
                            status.map_or("no answer".to_string(), |s| s.as_u16().to_string())
                        ),
                    ))
                }
            };
            tokio::time::sleep(wait).await;
            offset = self.upload_status(&mut session, &op).await?.min(len);
            tracing::debug!(%digest, offset, "resuming chunked upload");
        }
        let mut url = session.location;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let close = Call::new(Method::PUT, url, &op)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Body::Empty);
        let (resp, _) = self.send(close).await?;
        if !resp.status().is_success() {
            return Err(self.fail(&op, resp).await);
        }
        Ok(())
    }

    /// `GET <location>`: how many bytes the session holds (its `Range` end + 1).
    async fn upload_status(
        &self,
        session: &mut UploadSession,
        op: &str,
    ) -> Result<u64, RegistryError> {
        let (resp, answered) = self
            .send(Call::new(Method::GET, session.location.clone(), op))
            .await?;
        if !resp.status().is_success() {
            return Err(self.fail(op, resp).await);
        }
        if let Some(next) = self.next_location(op, &resp, &answered)? {
            session.location = next;
        }
        Ok(header_str(&resp, reqwest::header::RANGE)
            .and_then(|r| parse_range_end(&r))
            .unwrap_or(0))
    }

    fn next_location(
        &self,
        op: &str,
        resp: &reqwest::Response,
        answered: &Url,
    ) -> Result<Option<Url>, RegistryError> {
        match header_str(resp, LOCATION) {
            None => Ok(None),
            Some(raw) => resolve_location(answered, &raw)
                .map(Some)
                .ok_or_else(|| self.protocol_error(op, "upload Location is not a valid URL")),
        }
    }
}

/// `Range: 0-1234` (or `bytes=0-1234`) → 1235, the bytes the session holds. Distribution
/// answers `0-0` for an empty session, so `0-0` is read as nothing held.
pub fn parse_range_end(value: &str) -> Option<u64> {
    let v = value.trim().trim_start_matches("bytes=");
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if start != 0 || (end == 0) {
        return Some(0);
    }
    Some(end + 1)
}

/// RFC 3986 reference resolution of a Location against the URL that answered.
pub fn resolve_location(answered: &Url, location: &str) -> Option<Url> {
    answered.join(location.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_like_rfc3986() {
        let base = Url::parse("http://r:5000/v2/a/b/blobs/uploads/").unwrap();
        let abs = resolve_location(&base, "http://other:1/up/1?_state=x").unwrap();
        assert_eq!(abs.as_str(), "http://other:1/up/1?_state=x");
        let root = resolve_location(&base, "/v2/a/b/blobs/uploads/u1?_state=s").unwrap();
        assert_eq!(
            root.as_str(),
            "http://r:5000/v2/a/b/blobs/uploads/u1?_state=s"
        );
        let rel = resolve_location(&base, "u2?_state=t").unwrap();
        assert_eq!(
            rel.as_str(),
            "http://r:5000/v2/a/b/blobs/uploads/u2?_state=t"
        );
        let up = resolve_location(&base, "../uploads/u3").unwrap();
        assert_eq!(up.as_str(), "http://r:5000/v2/a/b/blobs/uploads/u3");
    }

    #[test]
    fn ranges_say_how_much_a_session_holds() {
        assert_eq!(parse_range_end("0-1023"), Some(1024));
        assert_eq!(parse_range_end("bytes=0-9"), Some(10));
        assert_eq!(parse_range_end("0-0"), Some(0));
        assert_eq!(parse_range_end("garbage"), None);
    }

    #[test]
    fn digest_is_appended_to_an_existing_query() {
        let mut u = Url::parse("http://r/v2/a/blobs/uploads/u?_state=abc").unwrap();
        u.query_pairs_mut().append_pair("digest", "sha256:00");
        assert_eq!(u.query(), Some("_state=abc&digest=sha256%3A00"));
    }
}
