//! Manifests and indexes: resolve a tag to a digest, fetch bytes (verified, capped at
//! 4 MiB), and put them with their own media type.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::error::RegistryError;
use super::transport::{header_str, read_capped, Body, Call, Repo};
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{ACCEPT as MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};

/// A manifest as the registry holds it: the exact bytes, their digest and media type.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bytes: Bytes,
    pub digest: Digest,
    pub media_type: String,
}

/// What `HEAD` tells about a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// What a manifest `PUT` answered.
#[derive(Clone, Debug)]
pub struct PutManifest {
    pub digest: Digest,
    /// The registry maintains the referrers of `subject` itself (`OCI-Subject` header).
    pub subject_handled: bool,
}

impl Repo {
    /// Resolves `reference` (a tag or digest): `None` when the repository or tag is unknown.
    /// Uses HEAD, and GET when the registry does not send Docker-Content-Digest.
    pub async fn head_manifest(
        &self,
        reference: &str,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let op = format!("HEAD manifest {reference}");
        let call = Call::new(
            Method::HEAD,
            self.url(&format!("manifests/{reference}")),
            &op,
        )
        .header(ACCEPT, MANIFEST_ACCEPT);
        let (resp, _) = self.send(call).await?;
        match resp.status() {
            s if s.is_success() => {
                let digest = header_str(&resp, "docker-content-digest".parse().expect("static"))
                    .and_then(|d| d.parse::<Digest>().ok());
                let media_type = header_str(&resp, CONTENT_TYPE).map(|m| strip_params(&m));
                match (digest, media_type) {
                    (Some(digest), Some(media_type)) => Ok(Some(ManifestInfo {
                        digest,
                        media_type,
                        size: resp.content_length().unwrap_or(0),
                    })),
                    _ => match self.get_manifest_opt(reference).await? {
                        Some(m) => Ok(Some(ManifestInfo {
                            size: m.bytes.len() as u64,
                            digest: m.digest,
                            media_type: m.media_type,
                        })),
                        None => Ok(None),
                    },
                }
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.fail(&op, resp).await),
        }
    }

    /// Fetches a manifest; an unknown one is an error naming it.
    pub async fn get_manifest(&self, reference: &str) -> Result<Manifest, RegistryError> {
        let op = format!("GET manifest {reference}");
        match self.get_manifest_opt(reference).await? {
            Some(m) => Ok(m),
            None => Err(RegistryError::Api {
                registry: self.registry_name().to_string(),
                repository: self.name().to_string(),
                op,
                status: 404,
                code: Some("MANIFEST_UNKNOWN".into()),
                message: Some(format!("no manifest `{reference}` in this repository")),
            }),
        }
    }

    /// Fetches a manifest, `None` when unknown. By digest, the bytes are verified.
    pub async fn get_manifest_opt(
        &self,
        reference: &str,
    ) -> Result<Option<Manifest>, RegistryError> {
        self.retrying(|| self.get_manifest_once(reference)).await
    }

    async fn get_manifest_once(&self, reference: &str) -> Result<Option<Manifest>, RegistryError> {
        let op = format!("GET manifest {reference}");
        let call = Call::new(
            Method::GET,
            self.url(&format!("manifests/{reference}")),
            &op,
        )
        .header(ACCEPT, MANIFEST_ACCEPT);
        let (resp, _) = self.send(call).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.fail(&op, resp).await);
        }
        let header_type = header_str(&resp, CONTENT_TYPE).map(|m| strip_params(&m));
        let bytes = read_capped(resp, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| self.read_error(&op, e))?;
        let digest = Digest::of(&bytes);
        if let Ok(wanted) = reference.parse::<Digest>() {
            if wanted.algorithm() == "sha256" && wanted != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry_name().to_string(),
                    repository: self.name().to_string(),
                    what: format!("manifest {reference}"),
                    expected: wanted.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let view = regbuild_oci::manifest::ManifestView::parse(&bytes)
            .map_err(|e| self.protocol_error(&op, format!("manifest is not valid JSON: {e}")))?;
        // The body's own mediaType is authoritative; some registries send a generic header.
        let media_type = view
            .media_type
            .clone()
            .or(header_type)
            .ok_or_else(|| self.protocol_error(&op, "manifest has no media type"))?;
        Ok(Some(Manifest {
            bytes: Bytes::from(bytes),
            digest,
            media_type,
        }))
    }

    /// Puts manifest `bytes` under `reference` (a tag, or its own digest).
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &Bytes,
    ) -> Result<PutManifest, RegistryError> {
        let op = format!("PUT manifest {reference}");
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(self.protocol_error(&op, "manifest is larger than 4 MiB"));
        }
        let digest = Digest::of(bytes);
        let call = Call::new(
            Method::PUT,
            self.url(&format!("manifests/{reference}")),
            &op,
        )
        .header(CONTENT_TYPE, media_type)
        .body(Body::Bytes(bytes.clone()));
        let (resp, _) = self.send(call).await?;
        if !resp.status().is_success() {
            return Err(self.fail(&op, resp).await);
        }
        if let Some(answered) = header_str(&resp, "docker-content-digest".parse().expect("static"))
        {
            if answered.starts_with("sha256:") && answered != digest.as_str() {
                return Err(self.protocol_error(
                    &op,
                    format!("registry stored digest {answered}, expected {digest}"),
                ));
            }
        }
        let subject_handled = resp.headers().contains_key("oci-subject");
        Ok(PutManifest {
            digest,
            subject_handled,
        })
    }
}

fn strip_params(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or(media_type)
        .trim()
        .to_string()
}
