//! Carrying out a `Plan`: blob steps concurrently under the run's one limit, then manifests in
//! order. Nothing is put before every blob it needs is confirmed (201 from a mount or upload,
//! or present by HEAD), so a failed write never moves a tag. A reference that already
//! resolves to the manifest's digest is not put again (a no-op push writes nothing).

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::try_join_all;

use super::model::{BlobSpec, ManifestSpec, PutAs};
use super::plan::{BlobStep, Plan};
use crate::manifests::ManifestInfo;
use crate::progress::{Event, Progress};
use crate::report::{BlobAction, BlobReport, ManifestAction, ManifestReport, Report};
use crate::{Mounted, Registry, RegistryError, Repo, Scopes};
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::Descriptor;

/// HEADs every blob at the destination (concurrently) and returns the digests it holds.
pub async fn probe(
    registry: &Registry,
    dst: &Repo,
    blobs: &[BlobSpec],
) -> Result<HashSet<Digest>, RegistryError> {
    let checks = blobs.iter().map(|b| async move {
        let _job = registry.job().await;
        Ok::<_, RegistryError>(dst.blob_size(&b.digest).await?.map(|_| b.digest.clone()))
    });
    Ok(try_join_all(checks).await?.into_iter().flatten().collect())
}

/// A plan whose blobs and untagged child manifests are in the registry: only its tags (and
/// then its referrers) remain to be put.
pub struct Staged {
    dst: Repo,
    blobs: Vec<BlobReport>,
    manifests: Vec<ManifestReport>,
}

/// Executes `plan`; returns what happened, for `--json` and the summary line.
pub async fn execute(
    registry: &Registry,
    plan: &Plan,
    progress: Arc<dyn Progress>,
) -> Result<Report, RegistryError> {
    let staged = stage(registry, plan, progress.clone()).await?;
    commit(plan, staged, progress.as_ref()).await
}

/// Everything but the tags: blobs (concurrently), then the child manifests the tagged root
/// needs, put by digest. A failure here leaves every tag as it was.
pub async fn stage(
    registry: &Registry,
    plan: &Plan,
    progress: Arc<dyn Progress>,
) -> Result<Staged, RegistryError> {
    let sources = plan.mount_sources();
    let dst = registry.repo(
        &plan.registry,
        &plan.repository,
        Scopes::push(&plan.repository, sources.iter().map(String::as_str)),
    );
    let steps = plan.blobs.iter().map(|(blob, step)| {
        let dst = dst.clone();
        let progress = progress.clone();
        async move {
            let _job = registry.job().await;
            let action = run_step(registry, &dst, blob, step, &progress).await?;
            progress.event(Event::BlobDone {
                digest: &blob.digest,
                size: blob.size,
                action,
            });
            Ok::<_, RegistryError>(BlobReport {
                digest: blob.digest.clone(),
                size: blob.size,
                action,
            })
        }
    });
    let blobs = try_join_all(steps).await?;
    let mut manifests = Vec::new();
    for m in plan.manifests.iter().filter(|m| is_child(m)) {
        manifests.extend(put_manifest(&dst, plan, m, progress.as_ref()).await?);
    }
    Ok(Staged {
        dst,
        blobs,
        manifests,
    })
}

/// Children: put by digest, not referrers (which point at what the tags name).
fn is_child(m: &ManifestSpec) -> bool {
    m.put_as == PutAs::Digest && m.subject.is_none()
}

/// The tags, then the referrers.
pub async fn commit(
    plan: &Plan,
    staged: Staged,
    progress: &dyn Progress,
) -> Result<Report, RegistryError> {
    let Staged {
        dst,
        blobs,
        mut manifests,
    } = staged;
    let mut root_digest = None;
    for m in plan.manifests.iter().filter(|m| m.put_as == PutAs::Tags) {
        manifests.extend(put_manifest(&dst, plan, m, progress).await?);
        root_digest = Some(m.digest.clone());
    }
    for m in plan
        .manifests
        .iter()
        .filter(|m| m.put_as == PutAs::Digest && m.subject.is_some())
    {
        match put_manifest(&dst, plan, m, progress).await {
            Ok(put) => manifests.extend(put),
            Err(e) if m.optional => tracing::warn!(
                manifest = %m.digest,
                error = %e,
                "{}/{} refused a referrer the image does not need (the image is written)",
                plan.registry,
                plan.repository
            ),
            Err(e) => return Err(e),
        }
    }
    let digest = root_digest
        .or_else(|| plan.manifests.last().map(|m| m.digest.clone()))
        .ok_or_else(|| RegistryError::Protocol {
            registry: plan.registry.clone(),
            repository: plan.repository.clone(),
            op: "write".into(),
            message: "nothing to write: no manifest".into(),
        })?;
    let bytes_uploaded = blobs
        .iter()
        .filter(|b| b.action == BlobAction::Uploaded)
        .map(|b| b.size)
        .sum();
    Ok(Report {
        digest,
        references: plan
            .tags
            .iter()
            .map(|t| format!("{}/{}:{t}", plan.registry, plan.repository))
            .collect(),
        blobs,
        bytes_uploaded,
        manifests,
    })
}

pub(super) async fn run_step(
    registry: &Registry,
    dst: &Repo,
    blob: &BlobSpec,
    step: &BlobStep,
    progress: &Arc<dyn Progress>,
) -> Result<BlobAction, RegistryError> {
    let describe = match step {
        BlobStep::Exists => "exists".to_string(),
        BlobStep::Mount { from } | BlobStep::MountPushedBefore { from, .. } => {
            format!("mount from {from}")
        }
        BlobStep::Copy {
            registry,
            repository,
        } => format!("copy from {registry}/{repository}"),
        BlobStep::Upload { .. } | BlobStep::BuildAndUpload { .. } => "upload".to_string(),
        BlobStep::UploadedEarly => return Ok(BlobAction::Uploaded),
    };
    tracing::info!(blob = %blob.digest, size = blob.size, "{}/{}: {describe}", dst.registry_name(), dst.name());
    progress.event(Event::BlobStarted {
        digest: &blob.digest,
        size: blob.size,
        step: &describe,
    });
    match step {
        BlobStep::Exists => Ok(BlobAction::Exists),
        BlobStep::UploadedEarly => Ok(BlobAction::Uploaded),
        BlobStep::Mount { from } => match dst.mount_blob(&blob.digest, from).await? {
            Mounted::Done => Ok(BlobAction::Mounted),
            // Refused: the bytes come from the source repository on the same registry.
            Mounted::Upload(session) => {
                let src = registry.repo(dst.registry_name(), from, Scopes::pull(from));
                dst.copy_blob_from(Some(session), &src, &blob.digest, blob.size)
                    .await?;
                Ok(BlobAction::Uploaded)
            }
        },
        BlobStep::MountPushedBefore { from, upload } => {
            // Only a hint: a repository that lost the blob (or refuses) means an upload.
            let session = match dst.mount_blob(&blob.digest, from).await {
                Ok(Mounted::Done) => return Ok(BlobAction::Mounted),
                Ok(Mounted::Upload(session)) => Some(session),
                Err(e) => {
                    tracing::info!(digest = %blob.digest, from, error = %e, "mount of a blob pushed before failed; uploading");
                    None
                }
            };
            upload_local(dst, blob, upload, session, progress).await?;
            Ok(BlobAction::Uploaded)
        }
        BlobStep::Copy {
            registry: r,
            repository,
        } => {
            let src = registry.repo(r, repository, Scopes::pull(repository));
            dst.copy_blob_from(None, &src, &blob.digest, blob.size)
                .await?;
            Ok(BlobAction::Uploaded)
        }
        BlobStep::Upload { .. } | BlobStep::BuildAndUpload { .. } => {
            upload_local(dst, blob, step, None, progress).await?;
            Ok(BlobAction::Uploaded)
        }
    }
}

/// Uploads a local blob (`Upload`, or `BuildAndUpload` whose file is built first) into
/// `session`, or a new one.
async fn upload_local(
    dst: &Repo,
    blob: &BlobSpec,
    step: &BlobStep,
    session: Option<crate::UploadSession>,
    progress: &Arc<dyn Progress>,
) -> Result<(), RegistryError> {
    let path = match step {
        BlobStep::Upload { path } => path.clone(),
        // A cached layer the registry lacks: build its file now (its digest is checked).
        BlobStep::BuildAndUpload { file } => {
            tokio::task::block_in_place(|| file.path()).map_err(|message| RegistryError::Io {
                path: blob.digest.to_string(),
                source: std::io::Error::other(message),
            })?
        }
        other => {
            return Err(RegistryError::Protocol {
                registry: dst.registry_name().to_string(),
                repository: dst.name().to_string(),
                op: format!("upload blob {}", blob.digest),
                message: format!("{other:?} is not a local upload"),
            })
        }
    };
    let digest = blob.digest.clone();
    let reporter = progress.clone();
    let on_sent: crate::transport::SentHook = Arc::new(move |sent| {
        reporter.event(Event::BlobSent {
            digest: &digest,
            sent,
        })
    });
    dst.upload_file(session, &blob.digest, &path, blob.size, Some(on_sent))
        .await
}

/// Puts a manifest whose blobs were all confirmed. A registry that still answers that a
/// blob is unknown or its content does not verify has lost a race between concurrent
/// uploads of the same blob (seen with distribution 2.8 and several pushes of a shared
/// layer at once): the answer is retried per the run's policy before it counts.
async fn put_confirmed(
    dst: &Repo,
    reference: &str,
    m: &ManifestSpec,
) -> Result<crate::manifests::PutManifest, RegistryError> {
    let policy = dst.registry_options().retry.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match dst.put_manifest(reference, &m.media_type, &m.bytes).await {
            Err(e) if matches!(e.code(), Some("MANIFEST_BLOB_UNKNOWN" | "DIGEST_INVALID")) => {
                match policy.next(attempt, None) {
                    crate::retry::Next::Wait(d) => tokio::time::sleep(d).await,
                    _ => return Err(e),
                }
            }
            other => return other,
        }
    }
}

/// Whether `m` must be put under a reference the registry `current`ly resolves as given:
/// not when it already names these very bytes. Referrers are always put, so that the
/// tag-schema fallback index is kept up to date.
fn needs_put(current: Option<&ManifestInfo>, m: &ManifestSpec) -> bool {
    current.is_none_or(|c| c.digest != m.digest)
}

/// What `reference` resolves to now, for `needs_put`. A registry that cannot answer the
/// HEAD gets the PUT anyway: skipping is an optimisation, never a reason to fail. A referrer
/// counts as there only once its subject lists it (a tag-schema index may lack it).
async fn current(dst: &Repo, reference: &str, m: &ManifestSpec) -> Option<ManifestInfo> {
    let info = match dst.head_manifest(reference).await {
        Ok(info) => info?,
        Err(e) => {
            tracing::debug!(reference, error = %e, "manifest HEAD failed; putting it");
            return None;
        }
    };
    if let Some(subject) = &m.subject {
        let listed = dst
            .referrers(subject)
            .await
            .is_ok_and(|r| r.iter().any(|d| d.digest == m.digest));
        if !listed {
            return None;
        }
    }
    Some(info)
}

async fn put_manifest(
    dst: &Repo,
    plan: &Plan,
    m: &ManifestSpec,
    progress: &dyn Progress,
) -> Result<Vec<ManifestReport>, RegistryError> {
    let references: Vec<String> = match m.put_as {
        PutAs::Tags if !plan.tags.is_empty() => plan.tags.clone(),
        _ => vec![m.digest.to_string()],
    };
    let mut reports = Vec::new();
    for reference in &references {
        let separator = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let full = format!(
            "{}/{}{separator}{reference}",
            plan.registry, plan.repository
        );
        if !needs_put(current(dst, reference, m).await.as_ref(), m) {
            progress.event(Event::ManifestUnchanged {
                reference,
                digest: &m.digest,
            });
            reports.push(ManifestReport {
                reference: full,
                digest: m.digest.clone(),
                action: ManifestAction::Unchanged,
            });
            continue;
        }
        let put = put_confirmed(dst, reference, m).await?;
        progress.event(Event::ManifestPut {
            reference,
            digest: &put.digest,
            media_type: &m.media_type,
        });
        reports.push(ManifestReport {
            reference: full,
            digest: put.digest.clone(),
            action: ManifestAction::Put,
        });
        if let (Some(subject), false) = (&m.subject, put.subject_handled) {
            let descriptor = Descriptor {
                media_type: m.media_type.clone(),
                digest: m.digest.clone(),
                size: m.bytes.len() as u64,
                platform: None,
                artifact_type: m.artifact_type.clone(),
                annotations: None,
                urls: Vec::new(),
            };
            dst.add_referrer_to_tag(subject, descriptor).await?;
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(body: &[u8], subject: Option<Digest>) -> ManifestSpec {
        ManifestSpec {
            media_type: regbuild_oci::manifest::OCI_MANIFEST.into(),
            bytes: bytes::Bytes::copy_from_slice(body),
            digest: Digest::of(body),
            put_as: PutAs::Tags,
            subject,
            artifact_type: None,
            optional: false,
        }
    }

    fn resolving_to(digest: Digest) -> ManifestInfo {
        ManifestInfo {
            digest,
            media_type: regbuild_oci::manifest::OCI_MANIFEST.into(),
            size: 1,
        }
    }

    #[test]
    fn a_tag_that_already_names_the_manifest_is_not_put_again() {
        let m = manifest(b"new", None);
        assert!(!needs_put(Some(&resolving_to(m.digest.clone())), &m));
        assert!(needs_put(Some(&resolving_to(Digest::of(b"old"))), &m));
        assert!(needs_put(None, &m), "an unknown tag is put");
    }

    #[test]
    fn a_referrer_already_there_is_not_put_again() {
        let m = manifest(b"sig", Some(Digest::of(b"image")));
        assert!(!needs_put(Some(&resolving_to(m.digest.clone())), &m));
        assert!(needs_put(None, &m));
    }
}
