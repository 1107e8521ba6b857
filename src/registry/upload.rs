//! Writing blobs: cross-repository mounts with their fallbacks, and monolithic uploads that
//! stream from a file or another registry.
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
            BlobSource::File { path, len, on_sent } => Body::File { path, len, on_sent },
            BlobSource::Stream { body, len } => Body::Stream {
                body: Some(body),
                len: Some(len),
            },
        };
        let call = Call::new(Method::PUT, url, &op)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let (resp, _) = self.send(call).await?;
        if !resp.status().is_success() {
            return Err(self.fail(&op, resp).await);
        }
        Ok(())
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
        Ok(UploadSession { location })
    }
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
    fn digest_is_appended_to_an_existing_query() {
        let mut u = Url::parse("http://r/v2/a/blobs/uploads/u?_state=abc").unwrap();
        u.query_pairs_mut().append_pair("digest", "sha256:00");
        assert_eq!(u.query(), Some("_state=abc&digest=sha256%3A00"));
    }
}
