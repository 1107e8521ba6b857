//! Referrers (artifacts whose `subject` is a manifest: signatures, SBOMs): the referrers API,
//! and the `<alg>-<hex>` tag schema for registries without it (distribution-spec v1.1).

use bytes::Bytes;
use reqwest::header::{ACCEPT, LINK};
use reqwest::{Method, StatusCode};

use super::error::RegistryError;
use super::transport::{header_str, read_capped, Call, Repo};
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{Descriptor, ManifestView, MAX_MANIFEST_BYTES, OCI_INDEX};
use regbuild_oci::model::ImageIndex;

/// Pages of the referrers API we follow at most; a registry looping its Link header stops here.
const MAX_PAGES: usize = 100;

impl Repo {
    /// Every manifest in this repository whose subject is `subject`.
    pub async fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, RegistryError> {
        self.retrying(|| self.referrers_once(subject)).await
    }

    async fn referrers_once(&self, subject: &Digest) -> Result<Vec<Descriptor>, RegistryError> {
        let op = format!("GET referrers of {subject}");
        let mut url = self.url(&format!("referrers/{subject}"));
        let mut out: Vec<Descriptor> = Vec::new();
        for page in 0..MAX_PAGES {
            let call = Call::new(Method::GET, url.clone(), &op).header(ACCEPT, OCI_INDEX);
            let (resp, answered) = self.send(call).await?;
            if page == 0 && resp.status() == StatusCode::NOT_FOUND {
                // No referrers API here: the tag schema is the fallback.
                return self.referrers_from_tag(subject).await;
            }
            if !resp.status().is_success() {
                return Err(self.fail(&op, resp).await);
            }
            let next = header_str(&resp, LINK).and_then(|l| next_link(&l));
            let body = read_capped(resp, MAX_MANIFEST_BYTES)
                .await
                .map_err(|e| self.read_error(&op, e))?;
            let index = ManifestView::parse(&body)
                .map_err(|e| self.protocol_error(&op, format!("answer is not an index: {e}")))?;
            merge(&mut out, index.manifests);
            match next.and_then(|n| answered.join(&n).ok()) {
                Some(n) => url = n,
                None => break,
            }
        }
        Ok(out)
    }

    async fn referrers_from_tag(&self, subject: &Digest) -> Result<Vec<Descriptor>, RegistryError> {
        match self.get_manifest_opt(&subject.referrers_tag()).await {
            Ok(Some(m)) => Ok(ManifestView::parse(&m.bytes)
                .map(|v| v.manifests)
                .unwrap_or_default()),
            Ok(None) => Ok(Vec::new()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Adds `referrer` to the `<alg>-<hex>` tag index of `subject` (for registries that do
    /// not maintain referrers themselves): starts from empty, never adds a duplicate.
    pub async fn add_referrer_to_tag(
        &self,
        subject: &Digest,
        referrer: Descriptor,
    ) -> Result<(), RegistryError> {
        let mut manifests = self.referrers_from_tag(subject).await?;
        if manifests.iter().any(|d| d.digest == referrer.digest) {
            return Ok(());
        }
        manifests.push(referrer);
        let bytes = Bytes::from(ImageIndex::new(manifests).to_bytes());
        self.put_manifest(&subject.referrers_tag(), OCI_INDEX, &bytes)
            .await?;
        Ok(())
    }
}

fn merge(out: &mut Vec<Descriptor>, more: Vec<Descriptor>) {
    let mut seen: std::collections::HashSet<Digest> =
        out.iter().map(|d| d.digest.clone()).collect();
    for d in more {
        if seen.insert(d.digest.clone()) {
            out.push(d);
        }
    }
}

/// The target of `Link: <url>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:x?n=2&last=y>; rel="next""#).as_deref(),
            Some("/v2/a/referrers/sha256:x?n=2&last=y")
        );
        assert_eq!(next_link("garbage"), None);
    }
}
