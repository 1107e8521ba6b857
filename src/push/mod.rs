//! `push` as a library operation: build for one or several platforms (pins from the lock
//! file), then write the image or index to every tag. The CLI and the workspace driver both
//! call `push`.

pub mod debug;
pub mod index;

use std::path::PathBuf;
use std::sync::Arc;

use crate::builder::{self, BuildError, BuildRequest, BuiltImage};
use crate::lock::{LockError, LockFile};
use regbuild_oci::digest::Digest;
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::progress::Progress;
use regbuild_registry::publish::remembered::PushedBefore;
use regbuild_registry::publish::{self, BlobOrigin, ImageSet, Plan};
use regbuild_registry::report::Report;
use regbuild_registry::{Registry, RegistryError, Scopes};

/// How the lock file is used.
#[derive(Clone, Debug)]
pub struct LockMode {
    pub path: PathBuf,
    /// `--locked`: fail if the file is missing or would have to change.
    pub locked: bool,
}

pub struct PushRequest {
    /// The build (its `platform` is replaced by each of `platforms`).
    pub build: BuildRequest,
    pub platforms: Vec<Platform>,
    pub tags: Vec<ImageRef>,
    pub dry_run: bool,
    pub lock: LockMode,
    /// Upload a layer no cache knows while it is packed (`--no-stream-upload` turns it off).
    pub stream_upload: bool,
    /// Push SPDX and CycloneDX SBOMs as referrers of each image (`--sbom`).
    pub sbom: bool,
    /// Push SLSA provenance as a referrer of each image (`--provenance`).
    pub provenance: Option<crate::provenance::Mode>,
}

pub struct PushResult {
    /// What was written (None for a dry run).
    pub report: Option<Report>,
    pub plans: Vec<Plan>,
    /// The digest of the image (one platform) or index (several), known before writing.
    pub digest: Digest,
    pub stripped_setuid: Vec<String>,
    /// The lock file was written (new bases were added).
    pub lock_written: bool,
    /// The built images, one per platform (their temporary files live as long as this).
    pub images: Vec<BuiltImage>,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Build(Box<BuildError>),
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}")]
    Locked(String),
    /// `--locked` without a lock file: refused before any registry is asked.
    #[error("--locked: there is no lock file at {} (run `regbuild lock` first)", .path.display())]
    NoLockFile { path: std::path::PathBuf },
    #[error(transparent)]
    Sbom(Box<crate::sbom::SbomError>),
    #[error(transparent)]
    Provenance(Box<crate::provenance::ProvenanceError>),
}

/// A built image (or index), not yet written.
pub struct Prepared {
    pub set: ImageSet,
    pub digest: Digest,
    pub stripped_setuid: Vec<String>,
    /// The lock file to write once the push succeeded (new bases), if any.
    pub lock_update: Option<LockFile>,
    pub images: Vec<BuiltImage>,
}

impl From<BuildError> for PushError {
    fn from(e: BuildError) -> Self {
        PushError::Build(Box::new(e))
    }
}

impl From<RegistryError> for PushError {
    fn from(e: RegistryError) -> Self {
        PushError::Registry(Box::new(e))
    }
}

/// Where layers go as soon as they are packed: the first tag's repository (later ones mount
/// from it). None for a dry run, which writes nothing.
pub fn early_uploads(
    registry: &Registry,
    req: &PushRequest,
    progress: Arc<dyn Progress>,
) -> Option<publish::EarlyUploads> {
    match (req.dry_run, req.tags.first()) {
        (false, Some(first)) => Some(publish::EarlyUploads::new(
            registry,
            first,
            progress,
            req.stream_upload,
        )),
        _ => None,
    }
}

/// Builds the image for every platform (pins from the lock file). Nothing is written, except
/// new layers sent to `early` as they are packed (blobs only: no manifest, no tag).
pub async fn prepare(
    registry: &Registry,
    req: &PushRequest,
    progress: &dyn Progress,
    early: Option<&publish::EarlyUploads>,
) -> Result<Prepared, PushError> {
    let existing = LockFile::load(&req.lock.path)?;
    if req.lock.locked && existing.is_none() {
        return Err(PushError::NoLockFile {
            path: req.lock.path.clone(),
        });
    }
    let mut images = Vec::new();
    for platform in &req.platforms {
        let mut b = req.build.clone();
        b.platform = platform.clone();
        b.pins = existing.clone();
        let mut image = builder::build(registry, &b, progress, early).await?;
        attest(registry, req, &b, &mut image).await?;
        images.push(image);
    }
    let lock_update = lock_changes(existing.as_ref(), &images, &req.lock)?;
    let (set, digest) = if images.len() == 1 {
        (images[0].set.clone(), images[0].digest.clone())
    } else {
        let parts: Vec<(&Platform, &BuiltImage)> =
            req.platforms.iter().zip(images.iter()).collect();
        index::assemble(&parts)
    };
    let stripped_setuid = images
        .iter()
        .flat_map(|i| i.stripped_setuid.iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(Prepared {
        set,
        digest,
        stripped_setuid,
        lock_update,
        images,
    })
}

/// Adds what `--sbom` and `--provenance` ask for to `image`'s set, as referrers.
async fn attest(
    registry: &Registry,
    req: &PushRequest,
    build: &BuildRequest,
    image: &mut BuiltImage,
) -> Result<(), PushError> {
    let Some(first) = req.tags.first() else {
        return Ok(());
    };
    let name = format!("{}/{}", first.registry, first.repository);
    let created = regbuild_oci::config::rfc3339(req.build.epoch);
    if req.sbom {
        crate::sbom::attach(registry, image, &name, &created)
            .await
            .map_err(|e| PushError::Sbom(Box::new(e)))?;
    }
    if let Some(mode) = req.provenance {
        crate::provenance::attach(image, build, &name, mode, &created)
            .map_err(|e| PushError::Provenance(Box::new(e)))?;
    }
    Ok(())
}

/// Builds and writes the image.
pub async fn push(
    registry: &Registry,
    req: PushRequest,
    progress: Arc<dyn Progress>,
) -> Result<PushResult, PushError> {
    push_with(registry, req, progress, &|_| {}).await
}

/// `push`, calling `built` once the image is built and before any manifest is written (or
/// the plan is made): where the CLI says its warnings, so they come before the result.
pub async fn push_with(
    registry: &Registry,
    req: PushRequest,
    progress: Arc<dyn Progress>,
    built: &(dyn Fn(&Prepared) + Sync),
) -> Result<PushResult, PushError> {
    let early = early_uploads(registry, &req, progress.clone());
    let prepared = prepare(registry, &req, progress.as_ref(), early.as_ref()).await?;
    built(&prepared);
    let (report, plans) = write_to_tags(
        registry,
        prepared.set.clone(),
        &req.tags,
        WriteOptions {
            dry_run: req.dry_run,
            remember: req.build.use_cache,
        },
        progress,
        early.as_ref(),
    )
    .await?;
    let mut lock_written = false;
    if let (Some(lock), false) = (&prepared.lock_update, req.dry_run) {
        lock.save(&req.lock.path)?;
        lock_written = true;
    }
    Ok(PushResult {
        report,
        plans,
        digest: prepared.digest,
        stripped_setuid: prepared.stripped_setuid,
        lock_written,
        images: prepared.images,
    })
}

/// The lock file to write when the build used bases it does not pin yet (`None`: no change,
/// or no lock file in use). With `--locked` a needed change is an error.
fn lock_changes(
    existing: Option<&LockFile>,
    images: &[BuiltImage],
    mode: &LockMode,
) -> Result<Option<LockFile>, PushError> {
    let Some(existing) = existing else {
        return Ok(None);
    };
    let mut updated = existing.clone();
    for image in images {
        for entry in &image.locked {
            updated.upsert(entry.clone());
        }
    }
    if updated == *existing {
        return Ok(None);
    }
    if mode.locked {
        let missing: Vec<String> = updated
            .images
            .iter()
            .filter(|e| existing.get(&e.reference) != Some(e))
            .map(|e| e.reference.clone())
            .collect();
        return Err(PushError::Locked(format!(
            "--locked: {} does not pin {} (run `regbuild lock`)",
            mode.path.display(),
            missing.join(", ")
        )));
    }
    Ok(Some(updated))
}

/// How `write_to_tags` writes.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    /// Only plan: HEADs are made, nothing is written.
    pub dry_run: bool,
    /// Mount local blobs from the repository this machine pushed them to before, and
    /// remember where they go now (`publish::remembered`; off with `--no-cache`).
    pub remember: bool,
}

/// Writes `set` to every tag: one plan per repository; later repositories mount what the
/// first one received. Every repository is staged (blobs, child manifests) before the first
/// tag is put, so a failure anywhere before that leaves every tag as it was. With
/// `dry_run`, only plans (HEADs are made, nothing is written). `early`: blobs already sent
/// while the build ran (neither HEADed nor sent again).
pub async fn write_to_tags(
    registry: &Registry,
    mut set: ImageSet,
    tags: &[ImageRef],
    opts: WriteOptions,
    progress: Arc<dyn Progress>,
    early: Option<&publish::EarlyUploads>,
) -> Result<(Option<Report>, Vec<Plan>), RegistryError> {
    let early = match early {
        Some(e) => e.finish().await,
        None => publish::EarlyOutcome::default(),
    };
    // The blobs only this machine has: the ones worth remembering and mounting.
    let local: Vec<Digest> = set
        .blobs
        .iter()
        .filter(|b| matches!(b.origin, BlobOrigin::File(_) | BlobOrigin::Lazy(_)))
        .map(|b| b.digest.clone())
        .collect();
    let cache_root = opts.remember.then(crate::builder::cache::root).flatten();
    let mut records: Vec<PushedBefore> = Vec::new();
    let mut plans = Vec::new();
    let mut staged = Vec::new();
    for (repo, repo_tags) in group_by_repository(tags) {
        let sources: Vec<String> = set
            .blobs
            .iter()
            .filter_map(|b| match &b.origin {
                BlobOrigin::Registry {
                    registry: r,
                    repository,
                } if *r == repo.registry => Some(repository.clone()),
                _ => None,
            })
            .collect();
        let dst = registry.repo(
            &repo.registry,
            &repo.repository,
            Scopes::push(&repo.repository, sources.iter().map(String::as_str)),
        );
        let done = early.for_repo(&repo.registry, &repo.repository);
        let unknown: Vec<_> = set
            .blobs
            .iter()
            .filter(|b| !done.contains_key(&b.digest))
            .cloned()
            .collect();
        let mut known = publish::Known {
            present: publish::probe(registry, &dst, &unknown).await?,
            ..Default::default()
        };
        for (digest, action) in done {
            match action {
                regbuild_registry::report::BlobAction::Uploaded => known.uploaded.insert(digest),
                _ => known.present.insert(digest),
            };
        }
        let record = match &cache_root {
            Some(root) => match records.iter().position(|r| r.registry() == repo.registry) {
                Some(i) => Some(i),
                None => {
                    records.push(PushedBefore::load(root, &repo.registry));
                    Some(records.len() - 1)
                }
            },
            None => None,
        };
        if let Some(i) = record {
            known.pushed_before = records[i].sources(&local, &repo.repository);
        }
        let plan = publish::plan(&set, &repo.registry, &repo.repository, &repo_tags, &known);
        if !opts.dry_run {
            staged.push(publish::execute::stage(registry, &plan, progress.clone()).await?);
            if let Some(i) = record {
                records[i].remember(&repo.repository, local.clone());
            }
            // Later repositories mount what this one now holds instead of uploading it again.
            for b in &mut set.blobs {
                if matches!(b.origin, BlobOrigin::File(_) | BlobOrigin::Lazy(_)) {
                    b.origin = BlobOrigin::Registry {
                        registry: repo.registry.clone(),
                        repository: repo.repository.clone(),
                    };
                }
            }
        }
        plans.push(plan);
    }
    if opts.dry_run {
        return Ok((None, plans));
    }
    // Every repository holds its blobs now, whatever becomes of the tags.
    for r in &records {
        r.save();
    }
    let mut first: Option<Report> = None;
    let mut references = Vec::new();
    let mut manifests = Vec::new();
    for (plan, s) in plans.iter().zip(staged) {
        let report = publish::execute::commit(plan, s, progress.as_ref()).await?;
        references.extend(report.references.clone());
        manifests.extend(report.manifests.clone());
        if first.is_none() {
            first = Some(report);
        }
    }
    Ok((
        first.map(|mut r| {
            r.references = references;
            r.manifests = manifests;
            r
        }),
        plans,
    ))
}

/// Tags grouped by repository, in the order first named.
fn group_by_repository(tags: &[ImageRef]) -> Vec<(ImageRef, Vec<String>)> {
    let mut groups: Vec<(ImageRef, Vec<String>)> = Vec::new();
    for t in tags {
        let tag = t.tag.clone().unwrap_or_else(|| "latest".into());
        match groups
            .iter_mut()
            .find(|(r, _)| r.registry == t.registry && r.repository == t.repository)
        {
            Some((_, list)) => {
                if !list.contains(&tag) {
                    list.push(tag);
                }
            }
            None => groups.push((t.clone(), vec![tag])),
        }
    }
    groups
}
