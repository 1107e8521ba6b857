//! One COPY or ADD: gather its sources (the context, another stage, another image, or for
//! ADD a local archive), apply ownership and modes, strip setuid/setgid bits, and write the
//! layer. An ADD of URLs or Git repositories is `add_remote`'s, which ends as COPY does
//! ([`finish`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::builder::error::{ChmodError, ChownError, StepError};
use crate::builder::rootfs;
use crate::builder::stage::{join_in_image, NewLayer, StepContext, StepLayer, StepOutput};
use regbuild_closure::ClosureKind;
use regbuild_context::context::{self, ContextError, CopyRequest, SourceOptions};
use regbuild_context::dockerignore::DockerIgnore;
use regbuild_frontend::stages::{CopyFrom, CopySpec};
use regbuild_fs::extract;
use regbuild_fs::layer::{EntryKind, LayerEntry, LayerOptions};
use regbuild_registry::progress::Event;

/// Where a COPY/ADD writes and the owner and mode it gives, known before any source is read.
pub struct Target {
    pub dest: String,
    pub chown: Option<(u64, u64)>,
    pub chmod: Option<u32>,
}

impl Target {
    pub fn of(ctx: &StepContext<'_>, spec: &CopySpec) -> Result<Target, StepError> {
        Ok(Target {
            dest: into_existing_dir(destination(&ctx.workdir, &spec.dest), ctx.view),
            chown: spec
                .chown
                .as_deref()
                .map(|s| parse_chown(s, ctx.view))
                .transpose()?,
            chmod: spec.chmod.as_deref().map(parse_chmod).transpose()?,
        })
    }
}

/// Runs one COPY/ADD (but an ADD of URLs or Git repositories: `add_remote::run`); the
/// caller prefixes its errors with `file:line`.
pub async fn run(ctx: &StepContext<'_>, spec: &CopySpec) -> Result<StepOutput, StepError> {
    let Target { dest, chown, chmod } = Target::of(ctx, spec)?;
    let plain = |entries| Gathered::Entries(entries, None);
    let gathered = match &spec.from {
        // The front end allows heredocs only alone (no other sources, --from or --closure).
        _ if !spec.heredocs.is_empty() => {
            plain(heredoc_entries(ctx, &spec.heredocs, &dest, chown, chmod)?)
        }
        _ if spec.closure => plain(closure_entries(ctx, spec, &dest, chown)?),
        None if spec.add => plain(add_entries(ctx, spec, &dest, chown, chmod)?),
        None => plain(context_entries(ctx, spec, &dest, chown, chmod)?),
        Some(from) => from_entries(ctx, spec, from, &dest, chown, chmod).await?,
    };
    match gathered {
        Gathered::Cached(out) => Ok(out),
        Gathered::Entries(entries, key) => finish(ctx, &dest, entries, key),
    }
}

/// A COPY's gathered entries as its output: placed into the destination's existing
/// directories and symlinks, setuid bits stripped, made layers (found in a cache by `key`
/// or their bytes' key, or to be packed).
pub fn finish(
    ctx: &StepContext<'_>,
    dest: &str,
    entries: Vec<LayerEntry>,
    key: Option<String>,
) -> Result<StepOutput, StepError> {
    // Into the destination's existing directory symlinks, as BuildKit copies.
    let (entries, moved) = ctx.view.place(entries);
    let mut entries = keep_existing_dest_dirs(entries, dest, ctx.view);
    for (from, to) in &moved {
        tracing::debug!(from = %from.display(), to = %to.display(), "through a directory symlink");
    }
    let stripped = if ctx.keep_setuid {
        Vec::new()
    } else {
        strip_setuid(&mut entries)
    };
    let warnings = foreign_binaries(&entries, ctx.architecture);
    let mut out = layers_of(ctx, entries, stripped, key)?;
    out.warnings = warnings;
    Ok(out)
}

/// A COPY's sources as entries (with the key of a layer keyed by its source, not its
/// bytes), or the whole step when a cache knows its layer without reading the sources.
enum Gathered {
    Entries(Vec<LayerEntry>, Option<String>),
    Cached(StepOutput),
}

/// `COPY --from=<stage or image>`: the wanted paths of its layers, extracted; the layer is
/// keyed by the source's layer digests, so a cache (local, or the registry's for a fresh
/// runner) may know it before any source layer is downloaded or any builder step run.
async fn from_entries(
    ctx: &StepContext<'_>,
    spec: &CopySpec,
    from: &CopyFrom,
    dest: &str,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
) -> Result<Gathered, StepError> {
    let mut from_image_key = None;
    let dest = dest.to_string();
    let layers = match from {
        CopyFrom::Stage(i) => ctx
            .stages
            .get(i)
            .map(|s| s.layers.clone())
            .ok_or(StepError::CopyFromStageNotBuilt(*i))?,
        CopyFrom::Image(r) if r == "scratch" => Vec::new(),
        CopyFrom::Image(r) => crate::builder::stage::base_layers(
            crate::image::base::named(ctx.bases, r)
                .ok_or_else(|| StepError::ImageNotResolved(r.clone()))?,
        ),
    };
    let root = tempfile::tempdir_in(ctx.tmp).map_err(|source| StepError::TempDir {
        dir: ctx.tmp.to_path_buf(),
        source,
    })?;
    let sources: Vec<String> = spec
        .sources
        .iter()
        .map(|s| s.trim_start_matches('/').to_string())
        .map(|s| if s.is_empty() { ".".to_string() } else { s })
        .collect();
    let wanted: Vec<PathBuf> = sources.iter().map(|s| literal_prefix(s)).collect();
    let select = source_options(spec);
    if let Some(FromImage { key, opts }) =
        from_image(ctx, &layers, &sources, &dest, chown, chmod, &select)
    {
        if let Some(found) = find(ctx, &key).filter(|_| ctx.defer_entries) {
            let keep_setuid = ctx.keep_setuid;
            let (sources, dest) = (sources.clone(), dest.clone());
            let lower = ctx.view.clone();
            let select = select.clone();
            let collect_at = Arc::new(move |root: &Path, found: &SourceOptions| {
                let options = with_xattrs(&select, found.recorded_xattrs.clone());
                let entries = collect(
                    root,
                    &sources,
                    &dest,
                    chown,
                    chmod,
                    &DockerIgnore::default(),
                    &options,
                )?;
                let (entries, _) = lower.place(entries);
                let mut entries = keep_existing_dest_dirs(entries, &dest, &lower);
                if !keep_setuid {
                    strip_setuid(&mut entries);
                }
                Ok::<_, StepError>(entries)
            });
            let entries = crate::builder::from_image::deferred(
                ctx.registry,
                layers,
                wanted,
                ctx.tmp.to_path_buf(),
                collect_at,
            );
            return Ok(Gathered::Cached(cached_output(
                ctx,
                found,
                key,
                Deferred(entries),
                opts,
            )));
        }
        from_image_key = Some(key);
    }
    let found = rootfs::extract_paths(ctx.registry, &layers, wanted, root.path(), ctx.tmp).await?;
    // The layers' `security.capability`, which the disk may not hold (rootless).
    let options = with_xattrs(&select, Some(found.xattrs));
    let nothing = DockerIgnore::default();
    let entries = collect(
        root.path(),
        &sources,
        &dest,
        chown,
        chmod,
        &nothing,
        &options,
    )
    .map_err(|source| StepError::ContextIn {
        source,
        label: from_label(ctx.step_text, from),
    })?;
    // The layer reads these files later: keep the directory until then.
    let kept = root.keep();
    tracing::debug!(dir = %kept.display(), "COPY --from materialised");
    Ok(Gathered::Entries(entries, from_image_key))
}

/// `COPY <<EOF /dest`: each body becomes a file named after its heredoc (mode 0644, as
/// BuildKit writes it), placed at `dest` as a context file would be. The layer key hashes
/// the files, so it covers the bodies.
fn heredoc_entries(
    ctx: &StepContext<'_>,
    heredocs: &[(String, String)],
    dest: &str,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
) -> Result<Vec<LayerEntry>, StepError> {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir_in(ctx.tmp).map_err(|source| StepError::TempDir {
        dir: ctx.tmp.to_path_buf(),
        source,
    })?;
    for (name, body) in heredocs {
        let path = root.path().join(name);
        std::fs::write(&path, body)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)))
            .map_err(|source| StepError::File {
                path: path.clone(),
                source,
            })?;
    }
    let names: Vec<String> = heredocs.iter().map(|(name, _)| name.clone()).collect();
    let entries = collect(
        root.path(),
        &names,
        dest,
        chown,
        chmod,
        &DockerIgnore::default(),
        &SourceOptions::default(),
    )?;
    // The layer reads these files when it is packed: keep the directory until then.
    let kept = root.keep();
    tracing::debug!(dir = %kept.display(), "COPY heredocs written");
    Ok(entries)
}

/// ELF files built for another architecture than the image's (an x86-64 binary copied into
/// a `linux/arm64` image cannot run there). Only files that can be programs or libraries
/// are opened: executable ones and `*.so*`, 20 bytes each.
fn foreign_binaries(entries: &[LayerEntry], architecture: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in entries {
        let EntryKind::File { source, .. } = &e.kind else {
            continue;
        };
        let name = e.path.to_string_lossy();
        let maybe_program = e.mode & 0o111 != 0 || name.contains(".so");
        if !maybe_program {
            continue;
        }
        if let Some(found) = regbuild_closure::elf_machine::file_architecture(source) {
            if found != architecture {
                out.push(format!(
                    "/{name} is an ELF file for {found}, but the image is built for {architecture}: it will not run there"
                ));
            }
        }
    }
    out
}

/// The destination's own directories are created only when missing (as `mkdir -p`): one
/// that exists (a WORKDIR, a base's `/usr`) keeps its owner and mode, and so does one
/// reached through a symlink (`place` moved the entry to the link's target). Runs on placed
/// entries, so the destination is compared as `place` resolved it.
fn keep_existing_dest_dirs(
    entries: Vec<LayerEntry>,
    dest: &str,
    lower: &crate::builder::pathindex::View,
) -> Vec<LayerEntry> {
    let written = dest.trim_start_matches('/').trim_end_matches('/');
    let resolved = lower.resolve(written);
    // A link's target is taken to exist: it is the base's when the view does not list it.
    let targets = lower.link_targets_on(written);
    let (written, resolved) = (Path::new(written), Path::new(&resolved));
    entries
        .into_iter()
        .filter(|e| {
            let on_dest = written.starts_with(&e.path) || resolved.starts_with(&e.path);
            let path = e.path.to_string_lossy();
            let exists = lower.is_dir(&path) || targets.iter().any(|t| *t == path);
            !(e.kind == EntryKind::Dir && on_dest && exists)
        })
        .collect()
}

/// A destination written without a trailing `/` that names an existing directory (through
/// symlinks) means "into it", as Docker copies (`COPY entrypoint.sh /usr/local/bin`).
fn into_existing_dir(dest: String, lower: &crate::builder::pathindex::View) -> String {
    let path = dest.trim_start_matches('/');
    if dest.ends_with('/') || path.is_empty() || !lower.is_dir(path) {
        return dest;
    }
    format!("{dest}/")
}

/// A step's new entries as layers: found in a cache by key, or to be packed.
pub fn layers_of(
    ctx: &StepContext<'_>,
    entries: Vec<LayerEntry>,
    stripped: Vec<String>,
    from_image_key: Option<String>,
) -> Result<StepOutput, StepError> {
    let opts = LayerOptions {
        mtime: ctx.epoch,
        compression: ctx.compression,
        threads: regbuild_fs::compress::threads(),
    };
    let parts = crate::builder::layering::split(entries, ctx.layering);
    let count = parts.len();
    // Keys are computed with or without a cache: they go into the manifest. The sources are
    // stamped first: packing happens later (at the stage's end) and checks that none changed
    // since, so a key is never recorded against other bytes.
    let refs: Vec<&[LayerEntry]> = parts.iter().map(Vec::as_slice).collect();
    let (stamps, keys) = tokio::task::block_in_place(|| {
        let stamps = parts
            .iter()
            .map(|p| crate::builder::pack::SourceStamps::take(p))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = match (from_image_key, ctx.cache) {
            // One layer from an image: keyed by its source, findable without extracting.
            (Some(key), _) if count == 1 => vec![key],
            (_, Some(cache)) => cache.layer_keys(&refs, &opts, ctx.step_text, ctx.context)?,
            (_, None) => crate::builder::cache::layer_keys_uncached(&refs, &opts, ctx.step_text)?,
        };
        Ok::<_, std::io::Error>((stamps, keys))
    })
    .map_err(StepError::Sources)?;
    let mut layers = Vec::with_capacity(count);
    for (i, ((entries, key), stamps)) in parts.into_iter().zip(keys).zip(stamps).enumerate() {
        let label = if count == 1 {
            ctx.step_text.to_string()
        } else {
            format!("{} [part {}/{count}]", ctx.step_text, i + 1)
        };
        let layer = match find(ctx, &key) {
            Some(found) => NewLayer::Cached(cached_layer(
                ctx,
                found,
                key,
                Known(entries.clone()),
                opts,
                &label,
            )),
            None => NewLayer::Pack(crate::builder::pack::PackJob {
                entries: entries.clone(),
                opts,
                key,
                id: label.clone(),
                // Neither the local cache nor the registry (by key) knows it.
                surely_new: ctx.cache.is_some(),
                stamps,
            }),
        };
        layers.push(StepLayer {
            layer,
            entries,
            label,
        });
    }
    Ok(StepOutput {
        layers,
        stripped_setuid: stripped,
        warnings: Vec::new(),
    })
}

/// A layer whose key is known before its sources are read (an ADD of a URL with
/// `--checksum` or of a Git commit): when a cache has it, the step's output, its entries
/// produced by `produce` (and placed as `run` places them) only if something needs them.
pub(crate) fn cached_by_key(
    ctx: &StepContext<'_>,
    key: &str,
    dest: &str,
    produce: crate::builder::layer::DeferredEntries,
) -> Option<StepOutput> {
    let found = find(ctx, key).filter(|_| ctx.defer_entries)?;
    let (keep_setuid, dest, lower) = (ctx.keep_setuid, dest.to_string(), ctx.view.clone());
    let entries: crate::builder::layer::DeferredEntries = Arc::new(move || {
        let entries = keep_existing_dest_dirs(produce()?, &dest, &lower);
        let (mut entries, _) = lower.place(entries);
        if !keep_setuid {
            strip_setuid(&mut entries);
        }
        Ok(entries)
    });
    let opts = LayerOptions {
        mtime: ctx.epoch,
        compression: ctx.compression,
        threads: regbuild_fs::compress::threads(),
    };
    Some(cached_output(
        ctx,
        found,
        key.to_string(),
        Deferred(entries),
        opts,
    ))
}

/// A layer known by key: its record, and where it was found (None: the local cache).
type Found = (crate::builder::cache::CachedLayer, Option<(String, String)>);

/// The local cache first; else a layer of a --cache-from image (or of the tags pushed).
fn find(ctx: &StepContext<'_>, key: &str) -> Option<Found> {
    use crate::builder::remote_cache::{lookup, Hit};
    let found = lookup(ctx.cache, ctx.remote, key, |_| true).map(|hit| match hit {
        Hit::Local(record) => (record, None),
        Hit::Remote(r) => (r.record, Some((r.registry, r.repository))),
    });
    let step = ctx.step_text;
    match &found {
        Some((record, None)) => {
            tracing::info!(%step, digest = %record.digest, "layer cache hit (local)")
        }
        Some((record, Some((registry, repository)))) => tracing::info!(
            %step,
            digest = %record.digest,
            "layer cache hit (in {registry}/{repository})"
        ),
        None => tracing::info!(%step, "layer cache miss: packing"),
    }
    found
}

/// What a cached layer holds: known, or produced when its bytes are needed.
enum CachedEntries {
    Known(Vec<LayerEntry>),
    Deferred(crate::builder::layer::DeferredEntries),
}
use CachedEntries::{Deferred, Known};

fn cached_layer(
    ctx: &StepContext<'_>,
    (record, found_in): Found,
    key: String,
    entries: CachedEntries,
    opts: LayerOptions,
    label: &str,
) -> crate::builder::layer::CachedStageLayer {
    if let (Some(cache), Some(_)) = (ctx.cache, &found_in) {
        cache.put(&key, &record);
    }
    ctx.progress.event(Event::LayerCached {
        id: label,
        digest: record.digest.as_str(),
        size: record.size,
    });
    let mut cached = match entries {
        Known(entries) => {
            crate::builder::layer::CachedStageLayer::new(record, key, entries, opts, ctx.tmp)
        }
        Deferred(entries) => {
            crate::builder::layer::CachedStageLayer::deferred(record, key, entries, opts, ctx.tmp)
        }
    };
    cached.found_in = found_in;
    cached
}

/// A cached one-layer COPY whose entries are not known yet.
fn cached_output(
    ctx: &StepContext<'_>,
    found: Found,
    key: String,
    entries: CachedEntries,
    opts: LayerOptions,
) -> StepOutput {
    let layer = cached_layer(ctx, found, key, entries, opts, ctx.step_text);
    StepOutput {
        layers: vec![StepLayer {
            layer: NewLayer::Cached(layer),
            entries: Vec::new(),
            label: ctx.step_text.to_string(),
        }],
        // Reported when the layer was first made.
        stripped_setuid: Vec::new(),
        warnings: Vec::new(),
    }
}

/// The key of a `COPY --from=<image or stage>` layer, from the source's layer digests.
struct FromImage {
    key: String,
    opts: LayerOptions,
}

#[allow(clippy::too_many_arguments)]
fn from_image(
    ctx: &StepContext<'_>,
    layers: &[crate::builder::layer::StageLayer],
    sources: &[String],
    dest: &str,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
    select: &SourceOptions,
) -> Option<FromImage> {
    if ctx.layering != crate::builder::layering::Layering::Single {
        return None;
    }
    // A built stage's layers are all known by digest (content addresses), as an image's:
    // a COPY from a stage whose steps all hit is itself a hit, with nothing read.
    let digests = layers
        .iter()
        .map(|l| match l {
            crate::builder::layer::StageLayer::Remote { descriptor, .. } => {
                descriptor.digest.to_string()
            }
            crate::builder::layer::StageLayer::Local(b) => b.digest.to_string(),
            crate::builder::layer::StageLayer::Cached(c) => c.record.digest.to_string(),
        })
        .collect::<Vec<String>>();
    let opts = LayerOptions {
        mtime: ctx.epoch,
        compression: ctx.compression,
        threads: regbuild_fs::compress::threads(),
    };
    let copy = crate::builder::from_image::FromImageCopy {
        instruction: ctx.step_text.to_string(),
        layers: digests,
        sources: sources.to_vec(),
        dest: dest.to_string(),
        chown,
        chmod,
        exclude: select.exclude.clone(),
        parents: select.parents,
        keep_setuid: ctx.keep_setuid,
        lower: ctx.view.symlinks_fingerprint(),
    };
    Some(FromImage {
        key: copy.key(&opts),
        opts,
    })
}

/// `stage builder` / `image registry.example/lib:1`: what a `COPY --from` reads, as written.
fn from_label(step_text: &str, from: &CopyFrom) -> String {
    let written = step_text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--from="));
    match from {
        CopyFrom::Stage(i) => format!("stage {}", written.map_or(i.to_string(), str::to_string)),
        CopyFrom::Image(r) => format!("image {r}"),
    }
}

/// What `--exclude` and `--parents` change in how the sources are read (BuildKit applies
/// both to the context, stages and images alike; ADD's archives are unpacked whole).
fn source_options(spec: &CopySpec) -> SourceOptions {
    SourceOptions {
        exclude: spec.exclude.clone(),
        parents: spec.parents,
        recorded_xattrs: None,
    }
}

/// `select` reading the extended attributes a materialisation recorded.
fn with_xattrs(
    select: &SourceOptions,
    recorded_xattrs: Option<Arc<HashMap<PathBuf, regbuild_fs::layer::Xattrs>>>,
) -> SourceOptions {
    SourceOptions {
        recorded_xattrs,
        ..select.clone()
    }
}

/// COPY from the build context.
fn context_entries(
    ctx: &StepContext<'_>,
    spec: &CopySpec,
    dest: &str,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
) -> Result<Vec<LayerEntry>, ContextError> {
    let select = source_options(spec);
    collect(
        ctx.context,
        &spec.sources,
        dest,
        chown,
        chmod,
        ctx.ignore,
        &select,
    )
}

fn collect(
    root: &Path,
    sources: &[String],
    dest: &str,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
    ignore: &DockerIgnore,
    options: &SourceOptions,
) -> Result<Vec<LayerEntry>, ContextError> {
    tokio::task::block_in_place(|| {
        context::collect(&CopyRequest {
            context: root,
            sources,
            dest,
            chown,
            chmod,
            ignore,
            options,
        })
    })
}

/// ADD from the context: local tar archives (plain, gzip, zstd, xz) are extracted into
/// `dest` with their owners, modes, devices and capabilities (`crate::builder::add`) unless
/// `--unpack=false`; other sources are copied as COPY would. URLs and Git repositories are
/// `crate::builder::add_remote`'s.
pub(crate) fn add_entries(
    ctx: &StepContext<'_>,
    spec: &CopySpec,
    dest: &str,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
) -> Result<Vec<LayerEntry>, StepError> {
    let (archives, plain): (Vec<&String>, Vec<&String>) = spec.sources.iter().partition(|s| {
        // `/a.tar` is the context's `a.tar`, as for COPY.
        let s = s.trim_start_matches('/');
        spec.unpack != Some(false)
            && !s.contains(['*', '?', '['])
            && !s.split('/').any(|c| c == "..")
            // An excluded archive is not in the context: COPY's rules report it missing.
            && !ctx.ignore.is_excluded(s)
            && extract::is_archive(&ctx.context.join(s))
    });
    if archives.is_empty() {
        return Ok(collect(
            ctx.context,
            &spec.sources,
            dest,
            chown,
            chmod,
            ctx.ignore,
            &source_options(spec),
        )?);
    }
    let dir_dest = if dest.ends_with('/') {
        dest.to_string()
    } else {
        format!("{dest}/")
    };
    let mut entries = Vec::new();
    if !plain.is_empty() {
        let plain: Vec<String> = plain.into_iter().cloned().collect();
        entries.extend(collect(
            ctx.context,
            &plain,
            &dir_dest,
            chown,
            chmod,
            ctx.ignore,
            &source_options(spec),
        )?);
    }
    for a in archives {
        let unpacked = tokio::task::block_in_place(|| {
            let a = a.trim_start_matches('/');
            crate::builder::add::unpack(ctx.context, a, &dir_dest, chown, chmod, ctx.tmp)
        })?;
        report_left_out(a, &unpacked);
        entries.extend(unpacked.entries);
    }
    Ok(entries)
}

/// What an archive held that its layer does not: never silent.
pub(crate) fn report_left_out(archive: &str, unpacked: &crate::builder::add::Unpacked) {
    for (path, why) in &unpacked.skipped {
        tracing::warn!("ADD {archive}: {} left out: {why}", path.display());
    }
    if !unpacked.dropped_xattrs.is_empty() {
        let names: Vec<String> = unpacked
            .dropped_xattrs
            .iter()
            .map(|(name, count)| format!("{name} ({count})"))
            .collect();
        tracing::warn!(
            "ADD {archive}: extended attributes left out, as Docker does (it keeps only security.capability): {}",
            names.join(", ")
        );
    }
}

/// `COPY --closure [--sysroot=DIR] BIN... DEST-ROOT`: each binary and everything the
/// dynamic linker loads for it, at their sysroot paths under DEST-ROOT. The sysroot is the
/// build host (`/`) unless `--sysroot` names a directory inside the context.
fn closure_entries(
    ctx: &StepContext<'_>,
    spec: &CopySpec,
    dest: &str,
    chown: Option<(u64, u64)>,
) -> Result<Vec<LayerEntry>, StepError> {
    let sysroot = match &spec.sysroot {
        None => PathBuf::from("/"),
        Some(dir) => {
            let inside = ctx.context.join(dir.trim_start_matches('/'));
            let real = inside.canonicalize().map_err(|source| StepError::Sysroot {
                dir: dir.clone(),
                source,
            })?;
            let context = ctx.context.canonicalize().map_err(|source| StepError::Io {
                path: ctx.context.to_path_buf(),
                source,
            })?;
            if !real.starts_with(&context) {
                return Err(StepError::SysrootOutside { dir: dir.clone() });
            }
            real
        }
    };
    let binaries: Vec<PathBuf> = spec.sources.iter().map(PathBuf::from).collect();
    let files = tokio::task::block_in_place(|| regbuild_closure::closure(&sysroot, &binaries))?;
    let root = PathBuf::from(dest.trim_start_matches('/'));
    let (uid, gid) = chown.unwrap_or((0, 0));
    let mut entries: Vec<LayerEntry> = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    let links: std::collections::BTreeSet<PathBuf> = files
        .iter()
        .filter(|f| matches!(f.kind, ClosureKind::Symlink { .. }))
        .map(|f| root.join(f.path.strip_prefix("/").unwrap_or(&f.path)))
        .collect();
    for f in &files {
        let path = root.join(f.path.strip_prefix("/").unwrap_or(&f.path));
        // Parent directories, unless one is itself a symlink the closure reproduces.
        let mut parent = path.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            if links.contains(p) {
                break;
            }
            dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
        let (kind, mode) = match &f.kind {
            ClosureKind::File { source } => {
                let meta = std::fs::metadata(source).map_err(|e| StepError::File {
                    path: source.clone(),
                    source: e,
                })?;
                use std::os::unix::fs::PermissionsExt;
                (
                    EntryKind::File {
                        source: source.clone(),
                        size: meta.len(),
                    },
                    meta.permissions().mode() & 0o7777,
                )
            }
            ClosureKind::Symlink { target } => (
                EntryKind::Symlink {
                    target: target.clone(),
                },
                0o777,
            ),
        };
        entries.push(LayerEntry {
            path,
            kind,
            mode,
            uid,
            gid,
            xattrs: Default::default(),
        });
    }
    for d in dirs {
        entries.push(LayerEntry {
            path: d,
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        });
    }
    Ok(entries)
}

/// The in-image destination: relative ones are under WORKDIR; a trailing `/` (or `.`)
/// keeps meaning "into this directory".
fn destination(workdir: &str, dest: &str) -> String {
    let joined = join_in_image(workdir, dest);
    let is_dir = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
    if is_dir && joined != "/" {
        format!("{joined}/")
    } else {
        joined
    }
}

/// The part of a source path before its first wildcard: what must be extracted for it.
fn literal_prefix(source: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in source.split('/') {
        if c.contains(['*', '?', '[']) {
            break;
        }
        if !c.is_empty() && c != "." {
            out.push(c);
        }
    }
    out
}

/// `--chown=user[:group]`: ids, or names from the stage's /etc/passwd and /etc/group.
pub fn parse_chown(
    s: &str,
    lower: &crate::builder::pathindex::View,
) -> Result<(u64, u64), ChownError> {
    crate::builder::owner::resolve(s, &lower.accounts()).map_err(|source| ChownError {
        spec: s.to_string(),
        source,
    })
}

/// `--chmod=0755` (octal).
pub fn parse_chmod(s: &str) -> Result<u32, ChmodError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| ChmodError(s.to_string()))
}

/// Removes setuid/setgid bits from files; returns the paths it changed.
pub(crate) fn strip_setuid(entries: &mut [LayerEntry]) -> Vec<String> {
    let mut stripped = Vec::new();
    for e in entries.iter_mut() {
        if matches!(e.kind, EntryKind::File { .. }) && e.mode & 0o6000 != 0 {
            e.mode &= !0o6000;
            stripped.push(format!("/{}", e.path.display()));
        }
    }
    stripped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_follow_workdir_and_keep_directory_meaning() {
        assert_eq!(destination("/app", "."), "/app/");
        assert_eq!(destination("/app", "bin/"), "/app/bin/");
        assert_eq!(destination("/app", "x"), "/app/x");
        assert_eq!(destination("/", "/"), "/");
        assert_eq!(destination("/app", "/etc/conf"), "/etc/conf");
    }

    #[test]
    fn chown_and_chmod_parse() {
        let none = crate::builder::pathindex::View::default();
        assert_eq!(parse_chown("1000:1001", &none), Ok((1000, 1001)));
        assert_eq!(parse_chown("1000", &none), Ok((1000, 1000)));
        assert!(parse_chown("app", &none)
            .unwrap_err()
            .to_string()
            .contains("--chown=app: unable to find user app"));
        assert_eq!(parse_chmod("0755"), Ok(0o755));
        assert!(parse_chmod("u+x").is_err());
        assert!(parse_chmod("99999").is_err());
    }

    #[test]
    fn literal_prefixes_stop_at_wildcards() {
        assert_eq!(literal_prefix("app/bin/*.so"), PathBuf::from("app/bin"));
        assert_eq!(literal_prefix("app/file"), PathBuf::from("app/file"));
        assert_eq!(literal_prefix("*"), PathBuf::new());
    }

    #[test]
    fn copy_from_errors_name_the_stage_or_image() {
        let stage = from_label("COPY --from=builder /out/app /app", &CopyFrom::Stage(0));
        assert_eq!(stage, "stage builder");
        let image = from_label(
            "COPY --from=r.example/lib:1 /x /x",
            &CopyFrom::Image("r.example/lib:1".into()),
        );
        assert_eq!(image, "image r.example/lib:1");
        assert_eq!(
            crate::builder::error::in_source(
                "COPY source \"/out/app\" not found in the build context".into(),
                &stage
            ),
            "COPY source \"/out/app\" not found in stage builder"
        );
    }

    #[test]
    fn setuid_bits_are_stripped_and_reported() {
        let mut e = vec![LayerEntry {
            path: "usr/bin/su".into(),
            kind: EntryKind::File {
                source: "/x".into(),
                size: 1,
            },
            mode: 0o4755,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }];
        assert_eq!(strip_setuid(&mut e), vec!["/usr/bin/su".to_string()]);
        assert_eq!(e[0].mode, 0o755);
    }
}
