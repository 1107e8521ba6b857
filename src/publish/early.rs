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
use crate::digest::Digest;
use crate::progress::Progress;
use crate::reference::ImageRef;
use crate::registry::{Registry, RegistryError, Repo, Scopes};
use crate::report::BlobAction;

type Task = JoinHandle<Result<BlobAction, RegistryError>>;

/// Blobs sent to one repository ahead of its plan.
pub struct EarlyUploads {
    registry: Registry,
    dst: Repo,
    target: (String, String),
    progress: Arc<dyn Progress>,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<Vec<(Digest, Task)>>,
}

impl EarlyUploads {
    /// Early uploads into `target`'s repository; must be created inside the runtime.
    pub fn new(registry: &Registry, target: &ImageRef, progress: Arc<dyn Progress>) -> Self {
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
        }
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
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        if tasks.iter().any(|(d, _)| *d == digest) {
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
        let task = self.runtime.spawn(async move {
            let _keep = keep;
            let _job = registry.job().await;
            if dst.blob_size(&blob.digest).await?.is_some() {
                return Ok(BlobAction::Exists);
            }
            run_step(
                &registry,
                &dst,
                &blob,
                &BlobStep::Upload { path },
                &progress,
            )
            .await
        });
        tasks.push((digest, task));
    }

    /// Waits for every offered blob; returns what was achieved in (registry, repository).
    /// Failures are logged and left out: the plan will take care of those blobs.
    pub async fn finish(&self) -> EarlyOutcome {
        let tasks = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        let mut done = HashMap::new();
        for (digest, task) in tasks {
            match task.await {
                Ok(Ok(action)) => {
                    done.insert(digest, action);
                }
                Ok(Err(e)) => {
                    tracing::debug!(%digest, error = %e, "early upload failed; left to the plan")
                }
                Err(e) => {
                    tracing::debug!(%digest, error = %e, "early upload stopped; left to the plan")
                }
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
            for (_, t) in tasks.iter() {
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
