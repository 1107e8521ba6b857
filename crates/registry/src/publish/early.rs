//! Uploads that start while the build is still running: a layer is offered as soon as it is
//! packed (its digest known), HEADed at the first destination repository and uploaded if
//! missing, while later layers pack. Only blobs move here, never a manifest or a tag, so a
//! build that fails later leaves no tag changed (at most unreferenced blobs, as any
//! interrupted push does). A failed early upload is not an error: the blob is simply left to
//! the normal plan, which uploads it from the same file with the full retry logic.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use super::execute::run_step;
use super::model::{BlobOrigin, BlobSpec};
use super::plan::BlobStep;
use crate::progress::Progress;
use crate::report::BlobAction;
use crate::{Registry, RegistryError, Repo, Scopes};
use regbuild_fs::growing::Growing;
use regbuild_oci::digest::Digest;
use regbuild_oci::reference::ImageRef;

type Task = JoinHandle<Result<(Digest, BlobAction), RegistryError>>;

/// Blobs sent to one repository ahead of its plan.
pub struct EarlyUploads {
    registry: Registry,
    dst: Repo,
    target: (String, String),
    progress: Arc<dyn Progress>,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<Vec<Task>>,
    offered: Mutex<std::collections::HashSet<Digest>>,
    /// Whether the user allows streaming blobs while they are written (`offer_growing`).
    stream: bool,
}

impl EarlyUploads {
    /// Early uploads into `target`'s repository; must be created inside the runtime.
    pub fn new(
        registry: &Registry,
        target: &ImageRef,
        progress: Arc<dyn Progress>,
        stream: bool,
    ) -> Self {
        let dst = registry.repo(
            &target.registry,
            &target.repository,
            Scopes::push(&target.repository, std::iter::empty()),
        );
        EarlyUploads {
            registry: registry.clone(),
            dst,
            target: (target.registry.clone(), target.repository.clone()),
            progress,
            runtime: tokio::runtime::Handle::current(),
            tasks: Mutex::new(Vec::new()),
            offered: Mutex::new(Default::default()),
            stream,
        }
    }

    /// Whether a blob still being written may be streamed now: the user allows it and the
    /// destination has not refused (and is not known to refuse) a `PATCH` of unknown length.
    pub fn streams(&self) -> bool {
        self.stream && self.dst.streams_unknown_length()
    }

    /// Starts sending the packed blob at `path` (from any thread). `keep` is held until the
    /// upload ends: whatever owns the file.
    pub fn offer<K: Send + Sync + 'static>(
        &self,
        digest: Digest,
        size: u64,
        path: PathBuf,
        keep: K,
    ) {
        let fresh = self
            .offered
            .lock()
            .map(|mut o| o.insert(digest.clone()))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let registry = self.registry.clone();
        let dst = self.dst.clone();
        let progress = self.progress.clone();
        let blob = BlobSpec {
            digest: digest.clone(),
            size,
            origin: BlobOrigin::File(path.clone()),
        };
        self.spawn(async move {
            let _keep = keep;
            let _job = registry.job().await;
            if dst.blob_size(&blob.digest).await?.is_some() {
                return Ok((digest, BlobAction::Exists));
            }
            let step = BlobStep::Upload { path };
            let action = run_step(&registry, &dst, &blob, &step, &progress).await?;
            Ok((digest, action))
        });
    }

    /// Starts sending a blob that is still being written (its digest is not known yet): one
    /// streamed `PATCH` that follows the file, then `PUT ?digest=` once the writer ended.
    /// Only for blobs that are new to the destination as far as the caches know, since an
    /// existing blob is sent anyway.
    pub fn offer_growing(&self, growing: Arc<Growing>) {
        let registry = self.registry.clone();
        let dst = self.dst.clone();
        self.spawn(async move {
            let _job = registry.job().await;
            let session = dst.start_upload().await?;
            let body = reqwest::Body::wrap_stream(growing.clone().stream());
            let written = growing.clone();
            let session = dst
                .patch_stream(session, body, move || written.written())
                .await?;
            let done = growing.ended().await.map_err(|message| RegistryError::Io {
                path: "layer".into(),
                source: std::io::Error::other(message),
            })?;
            dst.finish_upload(session, &done.digest).await?;
            Ok((done.digest, BlobAction::Uploaded))
        });
    }

    fn spawn(
        &self,
        task: impl std::future::Future<Output = Result<(Digest, BlobAction), RegistryError>>
            + Send
            + 'static,
    ) {
        let handle = self.runtime.spawn(task);
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(handle);
        }
    }

    /// Waits for every offered blob; returns what was achieved in (registry, repository).
    /// Failures are logged and left out: the plan will take care of those blobs.
    pub async fn finish(&self) -> EarlyOutcome {
        let tasks = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        let mut done = HashMap::new();
        for task in tasks {
            match task.await {
                Ok(Ok((digest, action))) => {
                    done.insert(digest, action);
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "early upload failed; left to the plan"),
                Err(e) => tracing::debug!(error = %e, "early upload stopped; left to the plan"),
            }
        }
        EarlyOutcome {
            registry: self.target.0.clone(),
            repository: self.target.1.clone(),
            done,
        }
    }
}

impl Drop for EarlyUploads {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.get_mut() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

/// What early uploads achieved in one repository.
#[derive(Clone, Debug, Default)]
pub struct EarlyOutcome {
    pub registry: String,
    pub repository: String,
    pub done: HashMap<Digest, BlobAction>,
}

impl EarlyOutcome {
    /// What was achieved for `registry`/`repository` (nothing for any other destination).
    pub fn for_repo(&self, registry: &str, repository: &str) -> HashMap<Digest, BlobAction> {
        if self.registry == registry && self.repository == repository {
            self.done.clone()
        } else {
            HashMap::new()
        }
    }
}
