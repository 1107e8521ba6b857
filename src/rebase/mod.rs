//! `regbuild rebase IMAGE --base NEWREF -t TAG`: put an image on a new base without
//! rebuilding. The old base (from the image's annotations, or given) must be a prefix of
//! the image; its layers are swapped for the new base's and the config rewritten
//! (`Image::rebase`), and nothing but the new config is uploaded: the new base's layers are
//! mounted and the image's own layers already exist. Indexes are rebased platform by platform.

use std::path::Path;
use std::sync::Arc;

use crate::image::base::{self, BaseError};
use crate::push::index::{add_image, put_tagged};
use regbuild_oci::config::{ConfigError, ImageConfig};
use regbuild_oci::digest::Digest;
use regbuild_oci::manifest::{is_index, OCI_INDEX};
use regbuild_oci::model::{BaseMismatch, Image, ImageIndex, ImageManifest, ModelError};
use regbuild_oci::platform::Platform;
use regbuild_oci::reference::ImageRef;
use regbuild_registry::progress::Progress;
use regbuild_registry::publish::{ImageSet, Plan, PutAs};
use regbuild_registry::report::Report;
use regbuild_registry::{Registry, RegistryError, Repo, Scopes};

pub struct RebaseRequest {
    pub image: ImageRef,
    pub new_base: ImageRef,
    /// The base the image was built on, when its annotations do not say.
    pub old_base: Option<ImageRef>,
    pub tags: Vec<ImageRef>,
    pub dry_run: bool,
}

pub struct Rebased {
    pub digest: Digest,
    pub report: Option<Report>,
    pub plans: Vec<Plan>,
}

/// Why an image could not be rebased.
#[derive(Debug, thiserror::Error)]
pub enum RebaseError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// What `outdated` answered about a base.
    #[error("{0}")]
    Lookup(crate::outdated::OutdatedError),
    #[error(
        "{0}: no org.opencontainers.image.base.* annotations; name the old base with --old-base"
    )]
    NoOldBase(ImageRef),
    #[error("index entry {0} has no platform")]
    NoPlatform(usize),
    /// The old or the new base (which) could not be resolved.
    #[error("{0}: {1}")]
    Base(&'static str, BaseError),
    #[error("cannot rebase from {0}: {1}")]
    NotOnOldBase(ImageRef, BaseMismatch),
    #[error(transparent)]
    Sbom(Box<crate::sbom::SbomError>),
    /// In `0`: an image, or one platform of it.
    #[error("{0}: {1}")]
    In(String, Box<RebaseError>),
}

/// Rebases and writes the result to the tags.
pub async fn rebase(
    registry: &Registry,
    req: &RebaseRequest,
    progress: Arc<dyn Progress>,
) -> Result<Rebased, RebaseError> {
    let image = &req.image;
    let repo = registry.repo(
        &image.registry,
        &image.repository,
        Scopes::pull(&image.repository),
    );
    let top = repo.get_manifest(&image.manifest_reference()).await?;
    let old_base = match &req.old_base {
        Some(b) => b.clone(),
        None => {
            let (name, digest) = crate::outdated::base_of_image(registry, image)
                .await
                .map_err(RebaseError::Lookup)?
                .ok_or_else(|| RebaseError::NoOldBase(image.clone()))?;
            name.with_digest(&digest)
        }
    };
    // A digest given with the new base pins it; else its tag is resolved now.
    let new_digest = match &req.new_base.digest {
        Some(d) => d.clone(),
        None => crate::outdated::current_digest(registry, &req.new_base)
            .await
            .map_err(RebaseError::Lookup)?,
    };
    let tmp = tempfile::tempdir()?;
    let job = Job {
        registry,
        repo: &repo,
        old_base,
        new_base: req.new_base.with_digest(&new_digest),
        new_digest,
        new_name: match &req.new_base.tag {
            Some(t) => req.new_base.with_tag(t).to_string(),
            None => req.new_base.to_string(),
        },
        tmp: tmp.path(),
        image,
        name: req
            .tags
            .first()
            .map_or_else(String::new, |t| format!("{}/{}", t.registry, t.repository)),
    };
    let within = |what: String| move |e| RebaseError::In(what, Box::new(e));
    let mut set = ImageSet::default();
    let digest = if is_index(&top.media_type) {
        let mut index = ImageIndex::parse(&top.bytes)?;
        for (i, entry) in index.manifests.iter_mut().enumerate() {
            let Some(p) = &entry.descriptor.platform else {
                return Err(within(image.to_string())(RebaseError::NoPlatform(i)));
            };
            let m = repo.get_manifest(entry.descriptor.digest.as_str()).await?;
            let (digest, size) = job
                .rebase_one(&m.bytes, p, PutAs::Digest, &mut set)
                .await
                .map_err(within(format!("{image} ({})", p)))?;
            entry.set_manifest(digest, size);
        }
        index.set_base(&job.new_name, &job.new_digest);
        put_tagged(&mut set, OCI_INDEX, index.to_bytes())
    } else {
        let platform = Platform::new("linux", "amd64", None);
        let (digest, _) = job
            .rebase_one(&top.bytes, &platform, PutAs::Tags, &mut set)
            .await
            .map_err(within(image.to_string()))?;
        digest
    };
    let options = crate::push::WriteOptions {
        dry_run: req.dry_run,
        remember: false,
    };
    let (report, plans) =
        crate::push::write_to_tags(registry, set, &req.tags, options, progress, None).await?;
    Ok(Rebased {
        digest,
        report,
        plans,
    })
}

/// What every platform of one rebase shares.
struct Job<'a> {
    registry: &'a Registry,
    repo: &'a Repo,
    old_base: ImageRef,
    /// The new base, pinned to the digest it is rebased on (`new_digest`).
    new_base: ImageRef,
    new_digest: Digest,
    /// The new base as the annotations name it.
    new_name: String,
    tmp: &'a Path,
    /// The image rebased, and `registry/repository` of the first tag written (what the
    /// rebased image's attestations name).
    image: &'a ImageRef,
    name: String,
}

impl Job<'_> {
    /// Rebases one platform manifest into `set` (its blobs, and its manifest put `put_as`);
    /// returns the manifest's digest and size. The bases' platform is the config's, field by
    /// field, else `or`.
    async fn rebase_one(
        &self,
        manifest: &[u8],
        or: &Platform,
        put_as: PutAs,
        set: &mut ImageSet,
    ) -> Result<(Digest, u64), RebaseError> {
        let old_digest = Digest::of(manifest);
        let manifest = ImageManifest::parse(manifest)?;
        let config = self
            .repo
            .get_blob_bytes(&manifest.config.digest, 8 * 1024 * 1024)
            .await?;
        let config = ImageConfig::parse(&config)?;
        let field = |name, or: &str| config.str_field(name).unwrap_or(or).to_string();
        let platform = Platform::new(
            &field("os", &or.os),
            &field("architecture", &or.architecture),
            config.str_field("variant").or(or.variant.as_deref()),
        );
        let image = Image { manifest, config };
        let old = self.base(&self.old_base, &platform, "old base").await?;
        let new = self.base(&self.new_base, &platform, "new base").await?;
        let mut rebased = image
            .rebase(&old, &new)
            .map_err(|e| RebaseError::NotOnOldBase(self.old_base.clone(), e))?;
        rebased.manifest.set_base(&self.new_name, &self.new_digest);
        // The new base's layers (mounted from its repository), then the image's own.
        let (registry, repository) = (&self.new_base.registry, &self.new_base.repository);
        for d in &new.manifest.layers {
            set.add_remote_layer(d, registry, repository);
        }
        for d in &image.manifest.layers[old.manifest.layers.len()..] {
            set.add_remote_layer(d, self.repo.registry_name(), self.repo.name());
        }
        let written = rebased.to_bytes();
        let (bytes, config) = (written.manifest.clone(), written.config.clone());
        let (digest, size) = add_image(set, written, self.tmp, "config", put_as)?;
        let base_layers = new.manifest.layers.len();
        self.reattest(&old_digest, &bytes, &digest, &config, base_layers, set)
            .await?;
        Ok((digest, size))
    }

    /// The rebased image gets the attestations the image had: its SBOMs made again (the
    /// packages of the new base), and a provenance statement of the rebase that points at
    /// the image's own. Nothing when the image had none.
    async fn reattest(
        &self,
        old: &Digest,
        manifest: &[u8],
        digest: &Digest,
        config: &[u8],
        base_layers: usize,
        set: &mut ImageSet,
    ) -> Result<(), RebaseError> {
        let had = self.repo.referrers(old).await.unwrap_or_default();
        let of = |t: &str| {
            had.iter()
                .rev()
                .find(|d| d.artifact_type.as_deref() == Some(t))
        };
        let sbom = of(crate::sbom::spdx::MEDIA_TYPE).or(of(crate::sbom::cyclonedx::MEDIA_TYPE));
        let provenance = of(crate::provenance::statement::MEDIA_TYPE);
        if sbom.is_none() && provenance.is_none() {
            return Ok(());
        }
        let config: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
        let created = config["created"]
            .as_str()
            .unwrap_or("1970-01-01T00:00:00Z")
            .to_string();
        let root = regbuild_registry::publish::ManifestSpec {
            media_type: regbuild_oci::manifest::OCI_MANIFEST.to_string(),
            bytes: bytes::Bytes::copy_from_slice(manifest),
            digest: digest.clone(),
            put_as: PutAs::Digest,
            subject: None,
            artifact_type: None,
            optional: false,
        };
        let mut docs = Vec::new();
        if sbom.is_some() {
            let subject = crate::sbom::Subject {
                set,
                manifest,
                digest,
                config: &config,
                base: Some((
                    self.new_name.clone(),
                    self.new_digest.to_string(),
                    base_layers,
                )),
            };
            docs = crate::sbom::documents(self.registry, &subject, &self.name, &created, self.tmp)
                .await
                .map_err(|e| RebaseError::Sbom(Box::new(e)))?;
        }
        if let Some(p) = provenance {
            let statement = crate::provenance::statement::Rebase {
                name: self.name.clone(),
                digest: digest.to_string(),
                image: (self.image.to_string(), old.to_string()),
                old_base: self.old_base.to_string(),
                new_base: (self.new_name.clone(), self.new_digest.to_string()),
                earlier: Some(p.digest.to_string()),
                run: crate::provenance::ci_run(&std::env::vars().collect()),
                version: env!("CARGO_PKG_VERSION").to_string(),
            };
            let doc = crate::provenance::statement::write_rebase(&statement);
            docs.push((crate::provenance::statement::MEDIA_TYPE, doc));
        }
        crate::sbom::add(set, &root, docs, &created, self.tmp)
            .map_err(|e| RebaseError::Sbom(Box::new(e)))
    }

    /// The base `r` for `platform`: its layers and config (`what` names it in errors).
    async fn base(
        &self,
        r: &ImageRef,
        platform: &Platform,
        what: &'static str,
    ) -> Result<Image, RebaseError> {
        let b = base::resolve(self.registry, r, platform)
            .await
            .map_err(|e| RebaseError::Base(what, e))?;
        let config = ImageConfig::parse(&b.config)?;
        Ok(Image {
            manifest: ImageManifest::new(b.config_descriptor, b.layers),
            config,
        })
    }
}
