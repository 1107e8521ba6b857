//! `ADD` of URLs and Git repositories, as BuildKit's Dockerfile frontend adds them: a URL
//! downloaded as one file (mode 0600; unpacked only with `--unpack=true`), a Git repository
//! cloned at its ref (`http`, `git`). Sources are told apart by
//! `regbuild_frontend::remote`, which also checked `--checksum` before anything ran.
//!
//! The layer key: when every source is pinned before it is fetched — a URL with
//! `--checksum`, a Git ref (resolved to its commit by `git ls-remote`, which costs no
//! clone) without a kept `.git` — the key is computed from those pins ([`PinnedAdd::key`])
//! and a cache that has it costs no download at all: the entries are produced only if the
//! layer's bytes are needed (`copy::cached_by_key`). Otherwise everything is fetched and the
//! layer is keyed by content as a context COPY is (a URL without checksum is fetched on
//! every build; a kept `.git` can differ with the server's packing, so it is not trusted to
//! rebuild the same bytes from a commit).
//!
//! Not for local archives (`builder::add`) or the layer itself (`builder::copy`).

pub mod git;
pub mod http;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::builder::error::StepError;
use crate::builder::stage::StepContext;
use crate::builder::stage::StepOutput;
use regbuild_context::context::CopyRequest;
use regbuild_context::dockerignore::DockerIgnore;
use regbuild_frontend::remote::{self, GitRef, Source};
use regbuild_frontend::stages::CopySpec;
use regbuild_fs::disk::DiskLimit;
use regbuild_fs::layer::{LayerEntry, LayerOptions};

/// Bumped whenever what a pinned key covers changes.
const FORMAT: &str = "regbuild-add-remote-v1";

pub use crate::builder::error::remote::RemoteError;

/// `text` with the user information of every URL in it masked, as BuildKit's
/// `urlutil.RedactCredentials` masks a source's URL in its errors and logs: `user:secret@`
/// (any scheme) and a lone user of an `http(s)` URL (`https://<token>@github.com/…`, how
/// tokens are usually given) become `xxxxx@`; `ssh://git@host` keeps its user, which is no
/// secret. For messages, logs and a kept `.git/config`, never for what is fetched.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let scheme = rest[scheme_start..at].to_ascii_lowercase();
        let authority = &rest[at + 3..];
        let end = authority
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '>'))
            .unwrap_or(authority.len());
        out.push_str(&rest[..at + 3]);
        match authority[..end].rfind('@') {
            Some(userinfo_end)
                if authority[..userinfo_end].contains(':')
                    || scheme == "http"
                    || scheme == "https" =>
            {
                out.push_str("xxxxx");
                rest = &authority[userinfo_end..];
            }
            _ => rest = authority,
        }
    }
    out.push_str(rest);
    out
}

/// Whether an ADD has a source that is a URL or a Git repository.
pub fn any_remote(sources: &[String]) -> bool {
    sources
        .iter()
        .any(|s| !matches!(remote::classify(s), Ok(Source::Local)))
}

/// Whether `spec` is an ADD this module runs: one with a URL or Git source (and no
/// `--from`, heredoc or `--closure`, which `copy::run` handles or the front end refuses).
pub fn wanted(spec: &CopySpec) -> bool {
    spec.add
        && spec.from.is_none()
        && spec.heredocs.is_empty()
        && !spec.closure
        && any_remote(&spec.sources)
}

/// Runs one ADD of URLs or Git repositories: fetched (or found in a cache by a pinned key),
/// then made layers as COPY makes them. The caller prefixes its errors with `file:line`.
pub async fn run(ctx: &StepContext<'_>, spec: &CopySpec) -> Result<StepOutput, StepError> {
    let crate::builder::copy::Target { dest, chown, chmod } =
        crate::builder::copy::Target::of(ctx, spec)?;
    match add(ctx, spec, &dest, chown, chmod).await? {
        Added::Cached(out) => Ok(out),
        Added::Fetched { entries, key } => crate::builder::copy::finish(ctx, &dest, entries, key),
    }
}

/// What [`add`] gives back to [`run`].
pub enum Added {
    /// A cache had the layer by its pinned key: nothing was fetched.
    Cached(StepOutput),
    /// The step's entries, with the layer's key when it is pinned.
    Fetched {
        entries: Vec<LayerEntry>,
        key: Option<String>,
    },
}

/// One remote source, as far as it is known before fetching.
#[derive(Debug, Clone)]
enum Item {
    Http {
        url: String,
        checksum: Option<String>,
    },
    Git {
        git: GitRef,
        resolved: git::Resolved,
        keep_git_dir: bool,
    },
}

impl Item {
    /// What decides its bytes, when that is known before fetching.
    fn pin(&self) -> Option<String> {
        match self {
            Item::Http {
                url,
                checksum: Some(c),
            } => Some(format!("http {c} {}", remote::url_file_name(url))),
            Item::Git {
                git,
                resolved,
                keep_git_dir: false,
            } => Some(format!(
                "git {} {} subdir={} submodules={:?}",
                git.remote, resolved.commit, git.subdir, git.submodules
            )),
            _ => None,
        }
    }
}

/// How the remote sources land: everything but the sources themselves.
#[derive(Debug, Clone)]
struct Placement {
    dest: String,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
    /// `--unpack=true`: a downloaded archive is unpacked.
    unpack: bool,
    /// `--exclude` patterns (a repository's paths are matched as a context's; the pinned key
    /// covers them through the instruction's text).
    exclude: Vec<String>,
    tmp: PathBuf,
}

/// ADD with at least one URL or Git source (`any_remote`); context sources among them are
/// added as `copy::add_entries` adds them.
pub async fn add(
    ctx: &StepContext<'_>,
    spec: &CopySpec,
    dest: &str,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
) -> Result<Added, StepError> {
    // Several sources: each goes into `dest` as a directory, as for the context.
    let dest = if spec.sources.len() > 1 && !dest.ends_with('/') {
        format!("{dest}/")
    } else {
        dest.to_string()
    };
    let mut items = Vec::new();
    let mut local = Vec::new();
    for s in &spec.sources {
        let kind = remote::classify(s).map_err(|reason| RemoteError::Source {
            source_text: redact_urls(s),
            reason,
        })?;
        match kind {
            Source::Local => local.push(s.clone()),
            Source::Http => items.push(Item::Http {
                url: s.clone(),
                checksum: spec.checksum.clone(),
            }),
            Source::Git(g) => {
                let checksum = spec.checksum.clone().or_else(|| g.checksum.clone());
                let resolved = git::resolve(&g, checksum.as_deref(), ctx.tmp).await?;
                let keep_git_dir = spec.keep_git_dir || g.keep_git_dir == Some(true);
                items.push(Item::Git {
                    git: g,
                    resolved,
                    keep_git_dir,
                });
            }
        }
    }
    let place = Placement {
        dest: dest.clone(),
        chown,
        chmod,
        unpack: spec.unpack == Some(true),
        exclude: spec.exclude.clone(),
        tmp: ctx.tmp.to_path_buf(),
    };
    let key = pinned_key(ctx, &items, &local, &place);
    if let Some(key) = &key {
        let (items, place) = (items.clone(), place.clone());
        let produce = Arc::new(move || {
            let handle = tokio::runtime::Handle::try_current().map_err(StepError::NoRuntime)?;
            handle.block_on(fetch_all(&items, &place))
        });
        if let Some(out) = crate::builder::copy::cached_by_key(ctx, key, &dest, produce) {
            return Ok(Added::Cached(out));
        }
    }
    let mut entries = Vec::new();
    if !local.is_empty() {
        let local_spec = CopySpec {
            sources: local,
            ..spec.clone()
        };
        entries.extend(crate::builder::copy::add_entries(
            ctx,
            &local_spec,
            &dest,
            chown,
            chmod,
        )?);
    }
    entries.extend(fetch_all(&items, &place).await?);
    Ok(Added::Fetched { entries, key })
}

/// The key of a layer all of whose sources are pinned (see the module doc); None otherwise,
/// or when the step may make several layers (`--layering`), which are keyed by content.
fn pinned_key(
    ctx: &StepContext<'_>,
    items: &[Item],
    local: &[String],
    place: &Placement,
) -> Option<String> {
    if !local.is_empty() || ctx.layering != crate::builder::layering::Layering::Single {
        return None;
    }
    let pins = items.iter().map(Item::pin).collect::<Option<Vec<_>>>()?;
    let opts = LayerOptions {
        mtime: ctx.epoch,
        compression: ctx.compression,
        threads: regbuild_fs::compress::threads(),
    };
    Some(
        PinnedAdd {
            instruction: ctx.step_text.to_string(),
            pins,
            dest: place.dest.clone(),
            chown: place.chown,
            chmod: place.chmod,
            unpack: place.unpack,
            keep_setuid: ctx.keep_setuid,
            lower: ctx.view.symlinks_fingerprint(),
        }
        .key(&opts),
    )
}

/// Everything that decides the layer of an ADD whose sources are pinned.
struct PinnedAdd {
    /// The instruction as the history writes it.
    instruction: String,
    /// Each source's pin ([`Item::pin`]): a checksum, a commit.
    pins: Vec<String>,
    dest: String,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
    unpack: bool,
    keep_setuid: bool,
    /// The destination's directory symlinks: where the entries land depends on them.
    lower: String,
}

impl PinnedAdd {
    /// The layer's key (the same with or without a local cache: it goes into the image).
    fn key(&self, opts: &LayerOptions) -> String {
        let mut h = crate::builder::cache::KeyFields::new();
        let mut field = |bytes: &[u8]| h.field(bytes);
        field(FORMAT.as_bytes());
        field(format!("{:?} mtime={}", opts.compression, opts.mtime).as_bytes());
        field(self.instruction.as_bytes());
        field(self.pins.len().to_string().as_bytes());
        for p in &self.pins {
            field(p.as_bytes());
        }
        field(self.dest.as_bytes());
        let settings = format!(
            "{:?} {:?} unpack={} keep_setuid={}",
            self.chown, self.chmod, self.unpack, self.keep_setuid
        );
        field(settings.as_bytes());
        field(self.lower.as_bytes());
        h.hex()
    }
}

/// Fetches every remote source and turns it into entries under the destination.
async fn fetch_all(items: &[Item], place: &Placement) -> Result<Vec<LayerEntry>, StepError> {
    let mut entries = Vec::new();
    for item in items {
        match item {
            Item::Http { url, checksum } => {
                let name = remote::url_file_name(url);
                let got =
                    http::download(url, &name, checksum.as_deref(), &place.tmp, DiskLimit::Free)
                        .await?;
                let shown = redact_urls(url);
                tracing::info!(url = %shown, digest = %got.digest, "ADD: downloaded");
                entries.extend(downloaded_entries(&shown, &got, place)?);
            }
            Item::Git {
                git,
                resolved,
                keep_git_dir,
            } => {
                let c = git::Checkout {
                    git,
                    resolved,
                    keep_git_dir: *keep_git_dir,
                    disk: DiskLimit::Free,
                };
                let root = git::checkout(&c, &place.tmp).await?;
                let shown = git::redact(&git.remote);
                tracing::info!(remote = %shown, commit = %resolved.commit, "ADD: checked out");
                entries.extend(collect(&root, ".", place)?);
            }
        }
    }
    Ok(entries)
}

/// A downloaded file as entries: unpacked with `--unpack=true` when it is an archive, else
/// one file placed as a context file would be (`dest/` takes the URL's file name).
fn downloaded_entries(
    shown_url: &str,
    got: &http::Downloaded,
    place: &Placement,
) -> Result<Vec<LayerEntry>, StepError> {
    let file = got.dir.join(&got.name);
    if place.unpack && regbuild_fs::extract::is_archive(&file) {
        let dir_dest = if place.dest.ends_with('/') {
            place.dest.clone()
        } else {
            format!("{}/", place.dest)
        };
        let unpacked = tokio::task::block_in_place(|| {
            crate::builder::add::unpack(
                &got.dir,
                &got.name,
                &dir_dest,
                place.chown,
                place.chmod,
                &place.tmp,
            )
        })?;
        crate::builder::copy::report_left_out(shown_url, &unpacked);
        return Ok(unpacked.entries);
    }
    collect(&got.dir, &got.name, place)
}

/// `source` (a path under `root`) as a COPY from `root` places it.
fn collect(root: &Path, source: &str, place: &Placement) -> Result<Vec<LayerEntry>, StepError> {
    let sources = [source.to_string()];
    let ignore = DockerIgnore::default();
    let options = regbuild_context::context::SourceOptions {
        exclude: place.exclude.clone(),
        ..Default::default()
    };
    let request = CopyRequest {
        context: root,
        sources: &sources,
        dest: &place.dest,
        chown: place.chown,
        chmod: place.chmod,
        ignore: &ignore,
        options: &options,
    };
    Ok(tokio::task::block_in_place(|| {
        regbuild_context::context::collect(&request)
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned() -> PinnedAdd {
        PinnedAdd {
            instruction: "ADD --checksum=sha256:00 http://h/f /f".into(),
            pins: vec!["http sha256:00 f".into()],
            dest: "/f".into(),
            chown: None,
            chmod: None,
            unpack: false,
            keep_setuid: false,
            lower: String::new(),
        }
    }

    #[test]
    fn the_pinned_key_covers_every_pin_and_setting() {
        let opts = LayerOptions::default();
        let base = pinned().key(&opts);
        assert_eq!(base, pinned().key(&opts));
        let changed = [
            PinnedAdd {
                pins: vec!["http sha256:01 f".into()],
                ..pinned()
            },
            PinnedAdd {
                dest: "/g".into(),
                ..pinned()
            },
            PinnedAdd {
                chown: Some((1, 1)),
                ..pinned()
            },
            PinnedAdd {
                chmod: Some(0o644),
                ..pinned()
            },
            PinnedAdd {
                unpack: true,
                ..pinned()
            },
            PinnedAdd {
                lower: "usr -> x".into(),
                ..pinned()
            },
        ];
        for c in changed {
            assert_ne!(base, c.key(&opts));
        }
        assert_ne!(base, pinned().key(&LayerOptions { mtime: 9, ..opts }));
    }

    #[test]
    fn only_checksums_and_commits_without_a_kept_git_dir_pin_a_source() {
        let http = |checksum: Option<&str>| Item::Http {
            url: "http://h/d/f.tgz".into(),
            checksum: checksum.map(str::to_string),
        };
        assert_eq!(http(None).pin(), None);
        assert_eq!(
            http(Some("sha256:ab")).pin().as_deref(),
            Some("http sha256:ab f.tgz")
        );
        let git = |keep_git_dir| Item::Git {
            git: GitRef {
                remote: "https://h/r.git".into(),
                subdir: "docs".into(),
                ..GitRef::default()
            },
            resolved: git::Resolved {
                commit: "c0ffee".into(),
                fetch: "refs/tags/v1".into(),
            },
            keep_git_dir,
        };
        assert_eq!(git(true).pin(), None);
        assert_eq!(
            git(false).pin().as_deref(),
            Some("git https://h/r.git c0ffee subdir=docs submodules=None")
        );
    }

    #[test]
    fn user_information_in_urls_is_masked_wherever_it_appears() {
        for (text, shown) in [
            ("https://u:s3cr3t@h/r.git", "https://xxxxx@h/r.git"),
            ("http://tok3n@h:8080/f?x=@y", "http://xxxxx@h:8080/f?x=@y"),
            ("HTTPS://tok3n@h", "HTTPS://xxxxx@h"),
            ("git://u:pw@h/r", "git://xxxxx@h/r"),
            ("ssh://git@h/r.git", "ssh://git@h/r.git"),
            ("git@h:r.git", "git@h:r.git"),
            ("http://h/a@b", "http://h/a@b"),
            (
                "fatal: unable to access 'https://a:b@h/r.git/': 401 (url http://c@i/x)",
                "fatal: unable to access 'https://xxxxx@h/r.git/': 401 (url http://xxxxx@i/x)",
            ),
            ("no url here", "no url here"),
            ("trailing ://", "trailing ://"),
        ] {
            assert_eq!(redact_urls(text), shown, "{text}");
        }
    }

    #[test]
    fn remote_sources_are_recognised() {
        assert!(any_remote(&["a".into(), "http://h/f".into()]));
        assert!(any_remote(&["git@h:r.git".into()]));
        assert!(!any_remote(&["a".into(), "github.com/x/y".into()]));
    }
}
