//! `push --provenance[=mode=min|max]`: SLSA v1 build provenance as an in-toto Statement v1,
//! stored as an OCI 1.1 referrer of each image manifest (artifact type
//! `application/vnd.in-toto+json`), as `push --sbom` stores its documents.
//!
//! What it records: the subject (the image manifest's digest), the build definition (the
//! Dockerfile's path and digest, the target, the platform, `SOURCE_DATE_EPOCH`, and with
//! `mode=max` the build args, as buildx leaves them out in `mode=min`; a secret never), the
//! resolved dependencies (every image the Dockerfile names that a tag resolved, by digest;
//! the build context by a digest over its files' paths, modes and contents, `.dockerignore`
//! applied) and the run (regbuild's version; on GitHub Actions or GitLab CI, the run's URL
//! from their environment). `context` computes the context's digest; `statement` (pure)
//! writes the document.

pub mod context;
pub mod statement;

use std::collections::BTreeMap;

/// How much of the build the provenance shows (buildx's modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Without the build args.
    Min,
    /// With the build args.
    Max,
}

impl Mode {
    /// buildx's spellings: `mode=min`, `mode=max` (or `min`, `max`, `true` for min).
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s.trim_start_matches("mode=") {
            "min" | "true" | "1" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            other => Err(format!("{other:?}: use mode=min or mode=max")),
        }
    }
}

/// The CI run a build happens in, from the CI's environment: its URL.
pub fn ci_run(env: &BTreeMap<String, String>) -> Option<String> {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty());
    if let (Some(server), Some(repo), Some(run)) = (
        get("GITHUB_SERVER_URL"),
        get("GITHUB_REPOSITORY"),
        get("GITHUB_RUN_ID"),
    ) {
        let attempt = get("GITHUB_RUN_ATTEMPT").map_or(String::new(), |a| format!("/attempts/{a}"));
        return Some(format!("{server}/{repo}/actions/runs/{run}{attempt}"));
    }
    get("CI_JOB_URL").cloned()
}

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("reading {path} for the provenance: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("writing the provenance under {dir}: {source}")]
    Write { dir: String, source: std::io::Error },
}

/// Adds the provenance of `image`, built from `req` and pushed as `name`
/// (`registry/repository`), to its set as a referrer of its manifest.
pub fn attach(
    image: &mut crate::builder::BuiltImage,
    req: &crate::builder::BuildRequest,
    name: &str,
    mode: Mode,
    created: &str,
) -> Result<(), ProvenanceError> {
    let Some(root) = image.set.root().cloned() else {
        return Ok(());
    };
    let read = |path: &std::path::Path| {
        let failed = |source| ProvenanceError::Read {
            path: path.display().to_string(),
            source,
        };
        std::fs::read(path).map_err(failed)
    };
    let dockerfile = read(&req.dockerfile)?;
    let ignore_path = req.context.join(".dockerignore");
    let ignore = match std::fs::read_to_string(&ignore_path) {
        Ok(text) => regbuild_context::dockerignore::DockerIgnore::parse(&text, &ignore_path)
            .unwrap_or_default(),
        Err(_) => Default::default(),
    };
    let context_digest =
        context::digest(&req.context, &ignore).map_err(|source| ProvenanceError::Read {
            path: req.context.display().to_string(),
            source,
        })?;
    let images: Vec<(String, String)> = image
        .images_read
        .iter()
        .map(|(r, d)| (r.clone(), d.to_string()))
        .collect();
    let shown = req
        .dockerfile
        .strip_prefix(&req.context)
        .unwrap_or(&req.dockerfile);
    let build = statement::Build {
        name: name.to_string(),
        digest: root.digest.to_string(),
        dockerfile: shown.display().to_string(),
        dockerfile_digest: regbuild_oci::digest::Digest::of(&dockerfile).to_string(),
        target: req.target.clone(),
        platform: req.platform.to_string(),
        epoch: req.epoch,
        args: req.build_args.clone(),
        mode,
        images,
        context_digest,
        run: ci_run(&std::env::vars().collect()),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let subject = regbuild_oci::manifest::Descriptor::new(
        &root.media_type,
        root.digest.clone(),
        root.bytes.len() as u64,
    );
    let tmp = image.scratch().to_path_buf();
    let doc = statement::write(&build);
    crate::image::referrer::add(
        &mut image.set,
        &subject,
        statement::MEDIA_TYPE,
        doc,
        created,
        &tmp,
    )
    .map_err(|source| ProvenanceError::Write {
        dir: tmp.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_buildx_spells_them() {
        assert_eq!(Mode::parse("mode=max"), Ok(Mode::Max));
        assert_eq!(Mode::parse("mode=min"), Ok(Mode::Min));
        assert_eq!(Mode::parse("true"), Ok(Mode::Min));
        assert!(Mode::parse("mode=all").is_err());
    }

    #[test]
    fn the_run_url_comes_from_github_or_gitlab() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let gh = env(&[
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "o/r"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
        ]);
        assert_eq!(
            ci_run(&gh).as_deref(),
            Some("https://github.com/o/r/actions/runs/42/attempts/2")
        );
        let gl = env(&[("CI_JOB_URL", "https://gitlab.example/g/p/-/jobs/7")]);
        assert_eq!(
            ci_run(&gl).as_deref(),
            Some("https://gitlab.example/g/p/-/jobs/7")
        );
        assert_eq!(ci_run(&env(&[])), None);
    }
}
