//! `regbuild promote SRC DST`: copy an image or index, with every child manifest, blob and
//! referrer, keeping the manifest bytes (so DST's digest is SRC's). On one registry every
//! blob is mounted; across registries blobs stream GET → PUT.

pub mod collect;

use std::sync::Arc;

use regbuild_oci::reference::ImageRef;
use regbuild_registry::progress::Progress;
use regbuild_registry::publish::{self, Plan};
use regbuild_registry::report::Report;
use regbuild_registry::{Registry, RegistryError, Scopes};

/// What `promote` was asked to do.
#[derive(Clone, Debug)]
pub struct PromoteRequest {
    pub source: ImageRef,
    pub destination: ImageRef,
    /// Copy referrers (signatures, SBOMs) too.
    pub referrers: bool,
    /// Copy regbuild's build cache artifacts too (left behind by default: what a
    /// production repository needs is the image and its attestations, not builder layers).
    pub build_cache: bool,
}

/// The tags DST gets: the one written in DST, else SRC's tag, else none (digest only).
pub fn destination_tags(req: &PromoteRequest) -> Vec<String> {
    if req.destination.digest.is_some() && !req.destination.explicit_tag {
        return Vec::new();
    }
    if req.destination.explicit_tag {
        return req.destination.tag.iter().cloned().collect();
    }
    match (&req.source.tag, req.source.explicit_tag) {
        (Some(t), true) => vec![t.clone()],
        _ => req.destination.tag.iter().cloned().collect(),
    }
}

/// Reads SRC and decides what DST needs, without writing anything.
pub async fn plan(registry: &Registry, req: &PromoteRequest) -> Result<Plan, RegistryError> {
    let src = registry.repo(
        &req.source.registry,
        &req.source.repository,
        Scopes::pull(&req.source.repository),
    );
    let set = collect::collect(
        registry,
        &src,
        &req.source.manifest_reference(),
        collect::Referrers {
            wanted: req.referrers,
            build_cache: req.build_cache,
        },
    )
    .await?;
    if let Some(pinned) = &req.destination.digest {
        let root = set.root().map(|m| &m.digest);
        if root != Some(pinned) {
            return Err(RegistryError::Protocol {
                registry: req.destination.registry.clone(),
                repository: req.destination.repository.clone(),
                op: "promote".into(),
                message: format!(
                    "destination names digest {pinned}, but the source is {}",
                    root.map(|d| d.to_string()).unwrap_or_default()
                ),
            });
        }
    }
    let dst_read = registry.repo(
        &req.destination.registry,
        &req.destination.repository,
        Scopes::push(
            &req.destination.repository,
            [req.source.repository.as_str()],
        ),
    );
    let present = publish::probe(registry, &dst_read, &set.blobs).await?;
    Ok(publish::plan(
        &set,
        &req.destination.registry,
        &req.destination.repository,
        &destination_tags(req),
        &publish::Known {
            present,
            ..Default::default()
        },
    ))
}

/// Promotes SRC to DST.
pub async fn promote(
    registry: &Registry,
    req: &PromoteRequest,
    progress: Arc<dyn Progress>,
) -> Result<Report, RegistryError> {
    let plan = plan(registry, req).await?;
    publish::execute(registry, &plan, progress).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(src: &str, dst: &str) -> PromoteRequest {
        PromoteRequest {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
            referrers: true,
            build_cache: false,
        }
    }

    #[test]
    fn destination_tag_defaults_to_the_source_tag() {
        assert_eq!(destination_tags(&req("r/a:v1", "r/b")), vec!["v1"]);
        assert_eq!(destination_tags(&req("r/a:v1", "r/b:prod")), vec!["prod"]);
        assert_eq!(destination_tags(&req("r/a", "r/b")), vec!["latest"]);
        let pinned = format!("r/a@sha256:{}", "a".repeat(64));
        assert_eq!(destination_tags(&req(&pinned, "r/b")), vec!["latest"]);
        let dst_pinned = format!("r/b@sha256:{}", "a".repeat(64));
        assert!(destination_tags(&req("r/a:v1", &dst_pinned)).is_empty());
    }
}
