//! Building a workspace: every image in dependency order, each level's images concurrently.
//! An image whose locally computed digest is what its tags already point at is not written
//! again; an image on a changed base is rebuilt on the new digest — or, with `--rebase`,
//! rebased when a build on its old base reproduces what is pushed (its own inputs did not
//! change).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::try_join_all;
use serde::Serialize;

use super::file::{Workspace, WorkspaceImage};
use super::graph;
use crate::builder::orchestrate::referenced_images;
use crate::builder::BuildRequest;
use crate::image::planned::PlannedImages;
use crate::lock;
use crate::outdated::{self, BaseStatus};
use crate::push::{self, LockMode, PushRequest};
use crate::rebase::{self, RebaseRequest};
use regbuild_oci::digest::Digest;
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_oci::reference::ReferenceError;
use regbuild_registry::progress::{Event, Progress};
use regbuild_registry::{Registry, RegistryError, Scopes};

use super::file::WorkspaceError;
use crate::builder::BuildError;
use crate::outdated::OutdatedError;
use crate::push::PushError;

/// Why a workspace could not be built or checked.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("image `{image}`: invalid platform `{platform}`")]
    Platform { image: String, platform: String },
    #[error("image `{image}` has no tags")]
    NoTags { image: String },
    #[error("image `{image}`: {source}")]
    Tag {
        image: String,
        source: Box<ReferenceError>,
    },
    /// Reading an image's Dockerfile for the images it names.
    #[error(transparent)]
    Dockerfile(#[from] BuildError),
    #[error(transparent)]
    Outdated(#[from] OutdatedError),
    #[error("workspace image `{image}`: {source}")]
    Image {
        image: String,
        source: Box<ImageError>,
    },
}

/// Why one image of a workspace failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(transparent)]
    Outdated(#[from] OutdatedError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Rebase(Box<crate::rebase::RebaseError>),
    #[error(transparent)]
    Planned(#[from] crate::image::planned::PlannedError),
    #[error("workspace image `{0}` vanished")]
    Vanished(String),
    #[error("`{image}` needs `{needs}`, which was not built")]
    NotBuilt { image: String, needs: String },
    #[error("the new base digest is unknown")]
    NewBaseUnknown,
}

/// What happened to one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Built and written.
    Pushed,
    /// Its tags already held this digest: nothing written.
    Unchanged,
    /// Moved onto its base's new digest without rebuilding.
    Rebased,
    /// Dry run: would be written.
    Planned,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageOutcome {
    pub name: String,
    pub digest: Digest,
    pub outcome: Outcome,
    pub references: Vec<String>,
    pub bytes_uploaded: u64,
}

pub struct PushAllOptions {
    pub rebase: bool,
    pub dry_run: bool,
    pub epoch: u64,
    pub keep_setuid: bool,
    /// `--network`, `--secret`: the same for every image's RUN steps.
    pub run: crate::builder::run::RunOptions,
}

struct Planned<'a> {
    image: &'a WorkspaceImage,
    platforms: Vec<Platform>,
    tags: Vec<ImageRef>,
    /// References its Dockerfile writes that name workspace images: written → image name.
    workspace_refs: BTreeMap<String, String>,
}

impl From<crate::rebase::RebaseError> for ImageError {
    fn from(e: crate::rebase::RebaseError) -> Self {
        ImageError::Rebase(Box::new(e))
    }
}

impl From<RegistryError> for ImageError {
    fn from(e: RegistryError) -> Self {
        ImageError::Registry(Box::new(e))
    }
}

/// Builds and pushes every image of the workspace.
pub async fn push_all(
    registry: &Registry,
    ws: &Workspace,
    opts: &PushAllOptions,
    progress: Arc<dyn Progress>,
) -> Result<Vec<ImageOutcome>, RunError> {
    let (planned, levels) = plan(ws)?;
    let mut digests: HashMap<String, Digest> = HashMap::new();
    // What each image built so far is, so a dependent reads its base from here: in a dry
    // run no registry holds a changed base's new digest.
    let mut computed = PlannedImages::default();
    let mut outcomes = Vec::new();
    for level in levels {
        let bases = Arc::new(computed.clone());
        let jobs = level.iter().map(|name| {
            let p = &planned[name];
            let digests = &digests;
            let progress = progress.clone();
            let bases = bases.clone();
            async move { build_one(registry, ws, p, digests, bases, opts, progress).await }
        });
        for (outcome, image) in try_join_all(jobs).await? {
            computed.extend(image);
            progress.event(Event::Note(&format!(
                "{:<9} {} {}",
                format!("{:?}", outcome.outcome).to_lowercase(),
                outcome.name,
                outcome.digest
            )));
            digests.insert(outcome.name.clone(), outcome.digest.clone());
            outcomes.push(outcome);
        }
    }
    Ok(outcomes)
}

/// Every image's base and the other images it read, checked against what their tags point
/// at now (an image FROM scratch that read no image has nothing to move).
pub async fn outdated_all(
    registry: &Registry,
    ws: &Workspace,
) -> Result<Vec<BaseStatus>, RunError> {
    let mut out = Vec::new();
    for image in &ws.images {
        let tag: ImageRef = first_tag(image)?;
        out.extend(outdated::check_image(registry, &image.name, &tag).await?);
    }
    Ok(out)
}

fn first_tag(image: &WorkspaceImage) -> Result<ImageRef, RunError> {
    image
        .tags
        .first()
        .ok_or_else(|| RunError::NoTags {
            image: image.name.clone(),
        })?
        .parse()
        .map_err(|source| RunError::Tag {
            image: image.name.clone(),
            source: Box::new(source),
        })
}

#[allow(clippy::type_complexity)]
fn plan(ws: &Workspace) -> Result<(HashMap<String, Planned<'_>>, Vec<Vec<String>>), RunError> {
    let mut referenced: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut planned = HashMap::new();
    for image in &ws.images {
        let platforms = if image.platforms.is_empty() {
            vec![Platform::linux_amd64()]
        } else {
            image
                .platforms
                .iter()
                .map(|p| {
                    Platform::parse(p).map_err(|_| RunError::Platform {
                        image: image.name.clone(),
                        platform: p.clone(),
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let tags = image
            .tags
            .iter()
            .map(|t| {
                t.parse::<ImageRef>().map_err(|source| RunError::Tag {
                    image: image.name.clone(),
                    source: Box::new(source),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let req = build_request(ws, image, &platforms[0], 0, false);
        let refs: Vec<String> = referenced_images(&req)?
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        let workspace_refs = refs
            .iter()
            .filter_map(|r| {
                graph::workspace_target(&ws.images, r).map(|t| (r.clone(), t.name.clone()))
            })
            .collect();
        referenced.insert(image.name.clone(), refs);
        planned.insert(
            image.name.clone(),
            Planned {
                image,
                platforms,
                tags,
                workspace_refs,
            },
        );
    }
    let deps = graph::dependencies(&ws.images, &referenced)?;
    let levels = graph::levels(&deps)?;
    Ok((planned, levels))
}

fn build_request(
    ws: &Workspace,
    image: &WorkspaceImage,
    platform: &Platform,
    epoch: u64,
    keep_setuid: bool,
) -> BuildRequest {
    BuildRequest {
        context: ws.context(image),
        dockerfile: ws.dockerfile(image),
        build_args: image.build_args.clone(),
        target: None,
        platform: platform.clone(),
        epoch,
        keep_setuid,
        pins: None,
        overrides: HashMap::new(),
        planned: Default::default(),
        squash: Default::default(),
        layering: Default::default(),
        cache_from: Vec::new(),
        compression: Default::default(),
        use_cache: true,
        run: Default::default(),
        registry_cache: Default::default(),
        dry_run: false,
    }
}

/// The overrides pointing workspace references at the given digests of their images.
fn overrides(
    ws: &Workspace,
    p: &Planned<'_>,
    digest_of: &dyn Fn(&str) -> Option<Digest>,
) -> Result<HashMap<String, ImageRef>, ImageError> {
    let mut out = HashMap::new();
    for (written, name) in &p.workspace_refs {
        let target = ws
            .images
            .iter()
            .find(|i| &i.name == name)
            .ok_or_else(|| ImageError::Vanished(name.clone()))?;
        let tag = first_tag(target)?;
        let digest = digest_of(name).ok_or_else(|| ImageError::NotBuilt {
            image: p.image.name.clone(),
            needs: name.clone(),
        })?;
        let mut pinned = tag.clone();
        pinned.digest = Some(digest);
        out.insert(written.clone(), pinned);
    }
    Ok(out)
}

async fn build_one(
    registry: &Registry,
    ws: &Workspace,
    p: &Planned<'_>,
    digests: &HashMap<String, Digest>,
    bases: Arc<PlannedImages>,
    opts: &PushAllOptions,
    progress: Arc<dyn Progress>,
) -> Result<(ImageOutcome, PlannedImages), RunError> {
    let name = &p.image.name;
    let fail = |e: ImageError| RunError::Image {
        image: name.clone(),
        source: Box::new(e),
    };
    let mut build = build_request(ws, p.image, &p.platforms[0], opts.epoch, opts.keep_setuid);
    build.run = opts.run.clone();
    build.dry_run = opts.dry_run;
    build.overrides = overrides(ws, p, &|n| digests.get(n).cloned()).map_err(fail)?;
    build.planned = bases;
    let req = PushRequest {
        lock: LockMode {
            path: lock::default_path(&build.dockerfile),
            locked: false,
        },
        build,
        platforms: p.platforms.clone(),
        tags: p.tags.clone(),
        dry_run: opts.dry_run,
        stream_upload: false,
        sbom: false,
        provenance: None,
    };
    let prepared = push::prepare(registry, &req, progress.as_ref(), None)
        .await
        .map_err(|e| fail(e.into()))?;
    // Read back now: the image's files live only as long as `prepared`.
    let mut computed = PlannedImages::default();
    computed.add(&prepared.set).map_err(|e| fail(e.into()))?;
    if opts.dry_run {
        // Dependents read this image's new blobs from their files: no registry holds them.
        registry.stand_in_blobs(prepared.set.blobs.iter().filter_map(|b| match &b.origin {
            regbuild_registry::publish::BlobOrigin::File(path) => {
                Some((b.digest.clone(), path.clone()))
            }
            _ => None,
        }));
    }
    let current = current_digests(registry, &p.tags)
        .await
        .map_err(|e| fail(e.into()))?;
    let references = p.tags.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    if current.iter().all(|c| c.as_ref() == Some(&prepared.digest)) {
        let outcome = ImageOutcome {
            name: name.clone(),
            digest: prepared.digest,
            outcome: Outcome::Unchanged,
            references,
            bytes_uploaded: 0,
        };
        return Ok((outcome, computed));
    }
    if opts.rebase && !opts.dry_run {
        if let Some(Some(pushed)) = current.first() {
            if let Some(done) = try_rebase(registry, ws, p, &req, pushed, progress.clone())
                .await
                .map_err(fail)?
            {
                // The rebased image is in the registry: dependents read it there.
                return Ok((done, PlannedImages::default()));
            }
        }
    }
    let (report, _) = push::write_to_tags(
        registry,
        prepared.set.clone(),
        &p.tags,
        push::WriteOptions {
            dry_run: opts.dry_run,
            remember: req.build.use_cache,
        },
        progress,
        None,
    )
    .await
    .map_err(|e| fail(e.into()))?;
    if let (Some(lock), false) = (&prepared.lock_update, opts.dry_run) {
        lock.save(&req.lock.path).map_err(|e| fail(e.into()))?;
    }
    let outcome = ImageOutcome {
        name: name.clone(),
        digest: prepared.digest,
        outcome: if opts.dry_run {
            Outcome::Planned
        } else {
            Outcome::Pushed
        },
        references,
        bytes_uploaded: report.map(|r| r.bytes_uploaded).unwrap_or(0),
    };
    if opts.dry_run {
        // The stand-in blob files live as long as the images that own them.
        computed.keep(Arc::new(prepared.images));
    }
    Ok((outcome, computed))
}

/// Rebases the pushed image when only its workspace base moved: a build against the base
/// digest it was made from must reproduce the pushed digest exactly.
async fn try_rebase(
    registry: &Registry,
    ws: &Workspace,
    p: &Planned<'_>,
    req: &PushRequest,
    pushed: &Digest,
    progress: Arc<dyn Progress>,
) -> Result<Option<ImageOutcome>, ImageError> {
    let image_ref = p.tags[0].with_digest(pushed);
    let Some((base_name, old_digest)) = outdated::base_of_image(registry, &image_ref).await? else {
        return Ok(None);
    };
    let Some(base_image) = graph::workspace_target(&ws.images, &base_name.to_string()) else {
        return Ok(None);
    };
    // The digests the pushed image was built from: its base's old one, nothing else moved.
    let old_overrides = overrides(ws, p, &|n| {
        (n == base_image.name).then(|| old_digest.clone())
    })
    .ok();
    let Some(old_overrides) = old_overrides else {
        return Ok(None);
    };
    let mut old_req = PushRequest {
        build: req.build.clone(),
        platforms: req.platforms.clone(),
        tags: req.tags.clone(),
        dry_run: true,
        lock: req.lock.clone(),
        stream_upload: false,
        sbom: false,
        provenance: None,
    };
    old_req.build.overrides = old_overrides;
    let reproduced = push::prepare(registry, &old_req, progress.as_ref(), None).await?;
    if reproduced.digest != *pushed {
        return Ok(None); // its own inputs changed too: rebuild
    }
    let new_base = req
        .build
        .overrides
        .values()
        .find(|r| r.registry == base_name.registry && r.repository == base_name.repository)
        .cloned()
        .ok_or(ImageError::NewBaseUnknown)?;
    let done = rebase::rebase(
        registry,
        &RebaseRequest {
            image: image_ref,
            new_base,
            old_base: None,
            tags: p.tags.clone(),
            dry_run: false,
        },
        progress,
    )
    .await?;
    Ok(Some(ImageOutcome {
        name: p.image.name.clone(),
        digest: done.digest,
        outcome: Outcome::Rebased,
        references: p.tags.iter().map(|t| t.to_string()).collect(),
        bytes_uploaded: done.report.map(|r| r.bytes_uploaded).unwrap_or(0),
    }))
}

/// What each tag points at now (`None`: no such tag yet).
async fn current_digests(
    registry: &Registry,
    tags: &[ImageRef],
) -> Result<Vec<Option<Digest>>, RegistryError> {
    let mut out = Vec::new();
    for t in tags {
        let repo = registry.repo(&t.registry, &t.repository, Scopes::pull(&t.repository));
        let info = match repo.head_manifest(&t.manifest_reference()).await {
            Ok(info) => info,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        out.push(info.map(|i| i.digest));
    }
    Ok(out)
}
