//! `COPY --parents`, as BuildKit's `dockerfile2llb` turns it into a copy: a source
//! `base/./pattern` copies the *contents* of `base` (the context's root when there is no
//! `/./` pivot) into `dest`, keeping only what `pattern` matches (patternmatcher's rules,
//! as `--exclude`: a matched directory brings everything below it) and the directories on
//! the way to it, which keep their own modes. So `COPY --parents x/a.txt /d/` gives
//! `/d/x/a.txt`, and `COPY --parents x/./y/*.txt /d/` gives `/d/y/…`. `dest` is always a
//! directory. A source without wildcards must exist; a pattern with wildcards may match
//! nothing (BuildKit allows an empty match here).

use std::path::{Path, PathBuf};

use super::{
    created_dirs, dir_entry, expand_source, finalize, flag_patterns, resolve, walk, Collected,
    ContextError, CopyRequest, Dest, Filters, WalkStart,
};
use crate::dockerignore::DockerIgnore;
use regbuild_fs::layer::LayerEntry;

/// Where BuildKit splits a `--parents` source: what comes after it is kept under `dest`.
const PIVOT: &str = "/./";

pub(super) fn collect(
    req: &CopyRequest,
    root: &Path,
    dest: &Dest,
    exclude: &DockerIgnore,
) -> Result<Vec<LayerEntry>, ContextError> {
    let mut out = created_dirs(&dest.components, true);
    for src in req.sources {
        let (base, pattern) = match src.split_once(PIVOT) {
            Some((base, pattern)) => (base, pattern),
            None => ("", src.as_str()),
        };
        let pattern = regbuild_paths::clean::clean_path(&format!("/{pattern}"));
        let pattern = pattern.trim_start_matches('/');
        let include = flag_patterns("--parents", &[pattern.to_string()])?;
        let bases = match base.trim_matches('/') {
            "" | "." => vec![PathBuf::new()],
            _ => expand_source(root, base, req.ignore)?,
        };
        // `x/./` names `x` itself, which must be there as any base must.
        let required = !has_wildcards(base) && !has_wildcards(pattern) && !pattern.is_empty();
        for lexical in bases {
            let base = resolve(root, &lexical, src, req.ignore)?;
            if !base.meta.is_dir() {
                // BuildKit matches nothing against the source itself: it is copied.
                super::add_source(&base, dest, true, req, exclude, &mut out)?;
                continue;
            }
            let filters = Filters {
                exclude,
                include: Some(&include),
            };
            let found = below(
                &base.disk, &base.rel, dest, pattern, &filters, req, &mut out,
            )?;
            if required && !found {
                return Err(ContextError::NotFound { src: src.clone() });
            }
        }
    }
    Ok(finalize(out))
}

/// Walks `base` (on disk, and context-relative) from the literal directories `pattern`
/// starts with, which are kept only if something below them is; returns whether the
/// pattern's path exists there (for a pattern without wildcards).
fn below(
    disk: &Path,
    rel: &Path,
    dest: &Dest,
    pattern: &str,
    filters: &Filters,
    req: &CopyRequest,
    out: &mut Vec<Collected>,
) -> Result<bool, ContextError> {
    let segments: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let literal = segments.iter().take_while(|s| !has_wildcards(s)).count();
    // The last segment is what the pattern picks: the walk starts above it.
    let prefix = &segments[..literal.min(segments.len().saturating_sub(1))];
    let mut start = WalkStart {
        disk: disk.to_path_buf(),
        rel: rel.to_path_buf(),
        layer: dest.path(),
        in_source: PathBuf::new(),
    };
    let mut parents = Vec::new();
    for segment in prefix {
        start.disk.push(segment);
        start.rel.push(segment);
        start.layer.push(segment);
        start.in_source.push(segment);
        // fsutil's walk does not follow symlinks: a symlinked directory matches nothing.
        match std::fs::symlink_metadata(&start.disk) {
            Ok(meta) if meta.is_dir() => parents.push(dir_entry(start.layer.clone(), &meta, req)),
            _ => return Ok(false),
        }
    }
    let before = out.len();
    walk(start, filters, req, parents, out)?;
    let wanted = dest.path().join(pattern);
    Ok(out[before..].iter().any(|c| c.entry.path == wanted))
}

fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}
