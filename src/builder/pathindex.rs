//! What a stage's filesystem holds, without unpacking it: per layer an index of its paths
//! (kind and link target, whiteouts, opaque directories) and the text of `/etc/passwd` and
//! `/etc/group` when the layer holds them. A COPY needs it to follow the destination's
//! directory symlinks (`/bin -> usr/bin` on merged-usr bases), WORKDIR to know whether its
//! directory exists, `--chown`/USER names to find their ids.
//!
//! A base layer's index costs one download of the layer the first time; it is then cached by
//! layer digest under the layer cache directory (`layer-index/`), so a later build reads
//! a small JSON file instead, and stored in the registry's build cache artifact
//! (`remote_cache::artifact`), so a fresh runner reads it there (kilobytes) instead of the
//! layer. Layers this build makes are indexed from their entries.
//!
//! Not here: extracting files (`regbuild_fs::extract`, `crate::builder::rootfs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::builder::error::StepError;
use crate::builder::layer::StageLayer;
use regbuild_fs::layer::{EntryKind, LayerEntry};
use regbuild_registry::Registry;

/// Bumped whenever the index format changes.
const FORMAT: &str = "v1";
/// Account files kept in the index, and the most of each that is kept.
const KEPT_FILES: [&str; 2] = ["etc/passwd", "etc/group"];
const KEPT_MAX: u64 = 4 << 20;
/// The most a path list read from a registry may weigh, compressed and not.
const BLOB_MAX: u64 = 8 << 20;
const LIST_MAX: u64 = 32 << 20;
/// Symlinks followed while resolving one path, as Linux's MAXSYMLINKS.
const MAX_HOPS: usize = 40;

pub use crate::builder::error::IndexError;

/// What a path is in one layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    File,
    Dir,
    Symlink(String),
    HardLink(String),
    Other,
}

/// The paths one layer holds (relative, no trailing `/`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerIndex {
    format: String,
    nodes: BTreeMap<String, Node>,
    /// `.wh.<name>`: removed from lower layers.
    whiteouts: BTreeSet<String>,
    /// `.wh..wh..opq`: the lower content of these directories is hidden.
    opaque: BTreeSet<String>,
    /// The account files this layer holds.
    files: BTreeMap<String, String>,
}

/// A path as a layer settles it.
enum Settled<'a> {
    Is(&'a Node),
    Absent,
    /// The layer says nothing: look lower.
    Unknown,
}

impl LayerIndex {
    /// Reads a layer's (uncompressed) tar stream.
    pub fn from_tar(reader: impl Read) -> std::io::Result<LayerIndex> {
        let mut index = LayerIndex::new();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = match entry {
                Ok(e) => e,
                // A layer that ends without its last padding or end blocks (umoci writes
                // such): what was read is the layer, as other readers accept it.
                Err(e) if is_eof(&e) => break,
                Err(e) => return Err(e),
            };
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(path) = clean(&raw) else { continue };
            let (parent, name) = split(&path);
            if name == ".wh..wh..opq" {
                index.opaque.insert(parent.to_string());
                continue;
            }
            if name.starts_with(".wh..wh.") {
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                index.whiteouts.insert(join(parent, hidden));
                continue;
            }
            let link = || {
                entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default()
            };
            let node = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Node::File,
                tar::EntryType::Directory => Node::Dir,
                tar::EntryType::Symlink => Node::Symlink(link()),
                tar::EntryType::Link => Node::HardLink(clean(&link()).unwrap_or_default()),
                _ => Node::Other,
            };
            if node == Node::File && KEPT_FILES.contains(&path.as_str()) {
                let mut text = String::new();
                (&mut entry).take(KEPT_MAX).read_to_string(&mut text)?;
                index.files.insert(path.clone(), text);
            }
            index.nodes.insert(path, node);
        }
        Ok(index)
    }

    /// The index of a layer this build makes.
    pub fn from_entries(entries: &[LayerEntry]) -> std::io::Result<LayerIndex> {
        let mut index = LayerIndex::new();
        for e in entries {
            let path = e.path.to_string_lossy().into_owned();
            let Some(path) = clean(&path) else { continue };
            let lossy = |p: &Path| p.to_string_lossy().into_owned();
            let node = match &e.kind {
                EntryKind::File { source, .. } => {
                    if KEPT_FILES.contains(&path.as_str()) {
                        let mut text = String::new();
                        std::fs::File::open(source)?
                            .take(KEPT_MAX)
                            .read_to_string(&mut text)?;
                        index.files.insert(path.clone(), text);
                    }
                    Node::File
                }
                EntryKind::Dir => Node::Dir,
                EntryKind::Symlink { target } => Node::Symlink(lossy(target)),
                EntryKind::HardLink { target } => Node::HardLink(lossy(target)),
                EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } | EntryKind::Fifo => {
                    Node::Other
                }
            };
            index.nodes.insert(path, node);
        }
        Ok(index)
    }

    /// The index as a registry blob: gzip-compressed JSON, the same bytes for the same index.
    pub fn to_blob(&self) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        let json = serde_json::to_vec(self)?;
        let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&json)?;
        gz.finish()
    }

    /// An index read from a registry blob (None: not one this version reads).
    pub fn from_blob(blob: &[u8]) -> Option<LayerIndex> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(blob)
            .take(LIST_MAX)
            .read_to_end(&mut json)
            .ok()?;
        let index: LayerIndex = serde_json::from_slice(&json).ok()?;
        // What a layer's tar could have given, nothing else: clean relative names, account
        // files within their bound.
        let clean_name = |n: &String| clean(n).as_deref() == Some(n.as_str());
        let names_clean = index.nodes.keys().all(clean_name)
            && index.whiteouts.iter().all(clean_name)
            && index.opaque.iter().all(clean_name);
        // A target no longer than Linux's PATH_MAX: resolving one costs what its length costs.
        let targets_bounded = index.nodes.values().all(|n| match n {
            Node::Symlink(t) | Node::HardLink(t) => t.len() <= 4096,
            _ => true,
        });
        let files_bounded = index
            .files
            .iter()
            .all(|(k, v)| KEPT_FILES.contains(&k.as_str()) && v.len() as u64 <= KEPT_MAX);
        (index.format == FORMAT && names_clean && targets_bounded && files_bounded).then_some(index)
    }

    fn new() -> LayerIndex {
        LayerIndex {
            format: FORMAT.to_string(),
            ..LayerIndex::default()
        }
    }

    fn settles(&self, path: &str) -> Settled<'_> {
        if let Some(node) = self.nodes.get(path) {
            return Settled::Is(node);
        }
        for a in ancestors(path) {
            if self.whiteouts.contains(a) || self.opaque.contains(a) {
                return Settled::Absent;
            }
            // A file (or link) that replaced a directory above.
            if matches!(self.nodes.get(a), Some(n) if *n != Node::Dir) {
                return Settled::Absent;
            }
        }
        if self.whiteouts.contains(path) {
            return Settled::Absent;
        }
        Settled::Unknown
    }
}

fn is_eof(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof || e.to_string().contains("unexpected EOF")
}

/// Strict ancestors of `path`, nearest first (`a/b/c` → `a/b`, `a`); the root is not one.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = path;
    std::iter::from_fn(move || {
        let (parent, _) = rest.rsplit_once('/')?;
        rest = parent;
        Some(parent)
    })
}

/// `./a/b/` → `a/b`; `None` for the root, names with `..` or NUL.
fn clean(raw: &str) -> Option<String> {
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() || parts.iter().any(|p| *p == ".." || p.contains('\0')) {
        return None;
    }
    Some(parts.join("/"))
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// A stack of layer indexes, bottom first: the stage's filesystem as far as paths go.
#[derive(Clone, Default)]
pub struct View {
    layers: Vec<Arc<LayerIndex>>,
}

impl View {
    pub fn new(layers: Vec<Arc<LayerIndex>>) -> View {
        View { layers }
    }

    /// What `path` (relative, clean) is, without following a final symlink.
    pub fn lookup(&self, path: &str) -> Option<&Node> {
        for layer in self.layers.iter().rev() {
            match layer.settles(path) {
                Settled::Is(node) => return Some(node),
                Settled::Absent => return None,
                Settled::Unknown => {}
            }
        }
        None
    }

    /// Where `path` really is: every symlink on the way (the last component included)
    /// followed inside the image's root, as the kernel would in a chroot.
    pub fn resolve(&self, path: &str) -> String {
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            done.push(part);
            let here = done.join("/");
            if let Some(Node::Symlink(target)) = self.lookup(&here) {
                hops += 1;
                if hops > MAX_HOPS {
                    break; // a loop: leave the rest as written
                }
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(target.split('/').rev().map(str::to_string));
            }
        }
        done.join("/")
    }

    /// Whether `path` is a directory once symlinks are followed (the root always is).
    pub fn is_dir(&self, path: &str) -> bool {
        let real = self.resolve(path);
        real.is_empty() || self.lookup(&real) == Some(&Node::Dir)
    }

    /// The targets of the symlinks on `path`'s way (each as `resolve` gives it).
    pub fn link_targets_on(&self, path: &str) -> Vec<String> {
        let mut at = String::new();
        let mut out = Vec::new();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let next = join(&at, part);
            if matches!(self.lookup(&next), Some(Node::Symlink(_))) {
                out.push(self.resolve(&next));
            }
            at = self.resolve(&next);
        }
        out
    }

    /// The directories `mkdir -p path` would create (relative, outermost first), each
    /// through the symlinks already there; empty when `path` is a directory already.
    pub fn missing_dirs(&self, path: &str) -> Vec<String> {
        let mut at = String::new();
        let mut missing = Vec::new();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let next = join(&at, part);
            if missing.is_empty() && self.is_dir(&next) {
                at = self.resolve(&next);
            } else {
                missing.push(next.clone());
                at = next;
            }
        }
        missing
    }

    /// The text of an account file (`etc/passwd`), when the image has one.
    pub fn file(&self, path: &str) -> Option<String> {
        let real = self.resolve(path);
        for layer in self.layers.iter().rev() {
            match layer.settles(&real) {
                Settled::Is(Node::File) => return layer.files.get(&real).cloned(),
                Settled::Is(_) | Settled::Absent => return None,
                Settled::Unknown => {}
            }
        }
        None
    }

    /// Every visible symlink (path and target), hashed: what `place` depends on.
    pub fn symlinks_fingerprint(&self) -> String {
        use sha2::{Digest as _, Sha256};
        let mut seen = BTreeSet::new();
        let mut h = Sha256::new();
        for layer in self.layers.iter().rev() {
            for (path, node) in &layer.nodes {
                if let (Node::Symlink(target), true) = (node, seen.insert(path.as_str())) {
                    if self.lookup(path) == Some(node) {
                        h.update(format!("{path}\0{target}\0").as_bytes());
                    }
                }
            }
        }
        hex::encode(h.finalize())
    }

    pub fn accounts(&self) -> crate::builder::owner::Accounts {
        crate::builder::owner::Accounts {
            passwd: self.file("etc/passwd"),
            group: self.file("etc/group"),
        }
    }

    /// The entries of a new layer placed onto this filesystem as BuildKit copies: a
    /// directory whose path is an existing symlink to a directory goes through it (the
    /// link stays), and so does everything under it; files replace what is there. Hard
    /// link targets move with their files. Returns the entries (sorted, one per path) and
    /// the paths that moved.
    pub fn place(&self, entries: Vec<LayerEntry>) -> (Vec<LayerEntry>, Vec<(PathBuf, PathBuf)>) {
        if self.layers.is_empty() {
            return (entries, Vec::new());
        }
        let mut moved: HashMap<PathBuf, PathBuf> = HashMap::new();
        let mut out: BTreeMap<Vec<std::ffi::OsString>, LayerEntry> = BTreeMap::new();
        for mut e in entries {
            let path = e.path.to_string_lossy().into_owned();
            let (parent, name) = split(&path);
            let parent = if parent.is_empty() {
                String::new()
            } else {
                self.resolve(parent)
            };
            let mut placed = join(&parent, name);
            if parent.is_empty() && name.is_empty() {
                placed = path.clone();
            }
            // Through a link to a directory, or to a path this view does not know (the
            // base's, unlisted; or missing: BuildKit's `mkdir -p` makes it through the link).
            if e.kind == EntryKind::Dir
                && matches!(self.lookup(&placed), Some(Node::Symlink(_)))
                && !matches!(self.lookup(&self.resolve(&placed)), Some(n) if *n != Node::Dir)
            {
                placed = self.resolve(&placed);
            }
            if placed != path && !placed.is_empty() {
                moved.insert(e.path.clone(), PathBuf::from(&placed));
                e.path = PathBuf::from(placed);
            }
            let key = e
                .path
                .components()
                .map(|c| c.as_os_str().to_owned())
                .collect();
            out.insert(key, e);
        }
        let mut entries: Vec<LayerEntry> = out.into_values().collect();
        for e in &mut entries {
            if let EntryKind::HardLink { target } = &mut e.kind {
                if let Some(to) = moved.get(target.as_path()) {
                    *target = to.clone();
                }
            }
        }
        let mut moved: Vec<(PathBuf, PathBuf)> = moved.into_iter().collect();
        moved.sort();
        (entries, moved)
    }
}

/// A layer to index: one of the stage's, or one still to be packed.
pub enum Source<'a> {
    Layer(&'a StageLayer),
    Pending {
        key: &'a str,
        entries: &'a [LayerEntry],
    },
}

/// Indexes layers once per build (memory) and once per machine (the cache directory).
pub struct Indexer<'a> {
    registry: &'a Registry,
    /// Path lists the registry's build cache holds, by layer digest.
    stored: &'a HashMap<regbuild_oci::digest::Digest, crate::builder::remote_cache::RemoteBlob>,
    dir: Option<PathBuf>,
    tmp: &'a Path,
    memo: Mutex<HashMap<String, Arc<LayerIndex>>>,
    /// Path lists read from the registry instead of their layers.
    pub from_registry: std::sync::atomic::AtomicU64,
    /// Downloads made for indexes, and their bytes: what knowing the base costs.
    pub fetched: std::sync::atomic::AtomicU64,
    pub fetched_bytes: std::sync::atomic::AtomicU64,
}

impl<'a> Indexer<'a> {
    /// `cache`: the layer cache directory (None: indexes live for this build only).
    /// `stored`: the path lists the registry's build cache holds.
    pub fn new(
        registry: &'a Registry,
        stored: &'a HashMap<regbuild_oci::digest::Digest, crate::builder::remote_cache::RemoteBlob>,
        cache: Option<&Path>,
        tmp: &'a Path,
    ) -> Indexer<'a> {
        let dir = cache.map(|c| c.join("layer-index"));
        if let Some(d) = &dir {
            let _ = regbuild_rootfs::scratch::create_dir_all_with_mode(d, 0o700);
        }
        Indexer {
            registry,
            stored,
            dir,
            from_registry: Default::default(),
            tmp,
            memo: Mutex::new(HashMap::new()),
            fetched: Default::default(),
            fetched_bytes: Default::default(),
        }
    }

    /// The filesystem `sources` (bottom first) make.
    pub async fn view(&self, sources: &[Source<'_>]) -> Result<View, IndexError> {
        // Layers not indexed yet are fetched and listed concurrently (under the run's job
        // limit): listing is one core's gunzip per layer.
        let layers = futures::future::try_join_all(sources.iter().map(|s| self.index(s))).await?;
        Ok(View::new(layers))
    }

    async fn index(&self, source: &Source<'_>) -> Result<Arc<LayerIndex>, IndexError> {
        let name = match source {
            Source::Layer(StageLayer::Remote { descriptor, .. }) => descriptor.digest.to_string(),
            Source::Layer(StageLayer::Local(b)) => b.digest.to_string(),
            // Named by digest only when its index comes from the layer's own bytes (a
            // download, checked against the digest, or the blob this machine kept): a
            // layer listed from the entries its key was made of is named by that key, so
            // a registry that pairs the key with another layer's digest names nothing.
            Source::Layer(StageLayer::Cached(c))
                if c.stored_blob().is_some()
                    || (c.registry_source().is_some() && c.known_entries().is_none()) =>
            {
                c.record.digest.to_string()
            }
            Source::Layer(StageLayer::Cached(c)) => format!("key-{}", c.key),
            Source::Pending { key, .. } => format!("key-{key}"),
        };
        if let Some(found) = self.remembered(&name) {
            return Ok(found);
        }
        let failed = |e: StepError| IndexError::Layer {
            layer: name.clone(),
            source: Box::new(e),
        };
        let index = match source {
            Source::Pending { entries, .. } => {
                tokio::task::block_in_place(|| LayerIndex::from_entries(entries))
                    .map_err(|e| failed(StepError::Entries(e)))?
            }
            Source::Layer(StageLayer::Local(b)) => self.read_file(&b.file).map_err(failed)?,
            Source::Layer(StageLayer::Cached(c)) => {
                match c.registry_source() {
                    // Found by key, entries known (a COPY layer): listed without a download.
                    Some(_) if c.known_entries().is_some() => tokio::task::block_in_place(|| {
                        LayerIndex::from_entries(c.known_entries().unwrap_or_default())
                            .map_err(StepError::Entries)
                    })
                    .map_err(failed)?,
                    // In a registry: its stored path list, else the layer itself, never its
                    // sources.
                    Some((registry, repository, descriptor)) => {
                        match self.stored_list(&name, &descriptor.digest).await {
                            Some(index) => return Ok(index),
                            None => self
                                .download(registry, repository, &descriptor)
                                .await
                                .map_err(failed)?,
                        }
                    }
                    // A RUN layer the local cache kept: its blob is read.
                    None if c.stored_blob().is_some() => {
                        let b = tokio::task::block_in_place(|| c.built()).map_err(failed)?;
                        self.read_file(&b.file).map_err(failed)?
                    }
                    None => tokio::task::block_in_place(|| {
                        LayerIndex::from_entries(&c.entries()?).map_err(StepError::Entries)
                    })
                    .map_err(failed)?,
                }
            }
            Source::Layer(StageLayer::Remote {
                descriptor,
                registry,
                repository,
            }) => match self.stored_list(&name, &descriptor.digest).await {
                Some(index) => return Ok(index),
                None => self
                    .download(registry, repository, descriptor)
                    .await
                    .map_err(failed)?,
            },
        };
        Ok(self.remember(&name, index))
    }

    async fn download(
        &self,
        registry: &str,
        repository: &str,
        descriptor: &regbuild_oci::manifest::Descriptor,
    ) -> Result<LayerIndex, StepError> {
        let started = std::time::Instant::now();
        let path = crate::builder::rootfs::download(
            self.registry,
            registry,
            repository,
            descriptor,
            self.tmp,
        )
        .await?;
        let index = self.read_file(&path).or_else(|e| {
            // Not a tar this can read: nothing is known about its paths, which only costs
            // fidelity (its symlinks are not followed); the push goes on as before.
            // The tar library quotes the bytes it choked on: keep the message printable.
            let e: String = e.to_string().escape_debug().take(200).collect();
            tracing::warn!(layer = %descriptor.digest, error = %e, "cannot index the layer's paths");
            Ok::<_, StepError>(LayerIndex::new())
        });
        let _ = std::fs::remove_file(&path);
        use std::sync::atomic::Ordering::Relaxed;
        self.fetched.fetch_add(1, Relaxed);
        self.fetched_bytes.fetch_add(descriptor.size, Relaxed);
        tracing::info!(
            layer = %descriptor.digest,
            bytes = descriptor.size,
            ms = started.elapsed().as_millis() as u64,
            "indexed a base layer's paths (cached by digest from now on)"
        );
        index
    }

    /// The path list of `layer` the registry's build cache holds, if it can be read: kept in
    /// memory under `name` for this build only, never in the machine's `layer-index/`, where
    /// a list one repository's pusher wrote would decide later builds of other repositories.
    async fn stored_list(
        &self,
        name: &str,
        layer: &regbuild_oci::digest::Digest,
    ) -> Option<Arc<LayerIndex>> {
        let blob = self.stored.get(layer)?;
        let bytes = blob
            .repo(self.registry)
            .get_blob_bytes(&blob.descriptor.digest, BLOB_MAX)
            .await;
        let index = bytes
            .ok()
            .and_then(|b| tokio::task::block_in_place(|| LayerIndex::from_blob(&b)));
        let Some(index) = index else {
            tracing::debug!(%layer, "the registry's path list is unreadable: listing the layer");
            return None;
        };
        self.from_registry
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(%layer, "read a layer's path list from the registry's build cache");
        let index = Arc::new(index);
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(name.to_string(), index.clone());
        }
        Some(index)
    }

    /// The indexes of `layers` (digest, and key when this tool made the layer) this build
    /// looked at: what the build cache artifact stores for the next runner.
    pub fn looked_at(
        &self,
        layers: &[(regbuild_oci::digest::Digest, Option<String>)],
    ) -> BTreeMap<regbuild_oci::digest::Digest, Arc<LayerIndex>> {
        let Ok(memo) = self.memo.lock() else {
            return BTreeMap::new();
        };
        layers
            .iter()
            .filter_map(|(digest, key)| {
                let by_key = key.as_ref().and_then(|k| memo.get(&format!("key-{k}")));
                let found = memo.get(digest.as_str()).or(by_key)?;
                Some((digest.clone(), found.clone()))
            })
            .collect()
    }

    fn read_file(&self, path: &Path) -> Result<LayerIndex, StepError> {
        tokio::task::block_in_place(|| {
            let (_, reader) = regbuild_fs::extract::open_archive(path)?;
            LayerIndex::from_tar(reader).map_err(|source| StepError::ReadLayer {
                file: path.to_path_buf(),
                source,
            })
        })
    }

    fn remembered(&self, name: &str) -> Option<Arc<LayerIndex>> {
        if let Some(found) = self.memo.lock().ok()?.get(name) {
            return Some(found.clone());
        }
        let file = self.dir.as_ref()?.join(file_name(name));
        let index: LayerIndex = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
        if index.format != FORMAT {
            return None;
        }
        let index = Arc::new(index);
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(name.to_string(), index.clone());
        }
        Some(index)
    }

    fn remember(&self, name: &str, index: LayerIndex) -> Arc<LayerIndex> {
        if let Some(dir) = &self.dir {
            // Through a temporary file and a rename: concurrent builds never see half of it.
            let written = serde_json::to_vec(&index).ok().and_then(|bytes| {
                use std::io::Write;
                let mut f = tempfile::NamedTempFile::new_in(dir).ok()?;
                f.write_all(&bytes).ok()?;
                f.persist(dir.join(file_name(name))).ok()
            });
            if written.is_none() {
                tracing::debug!(layer = name, "layer index not cached");
            }
        }
        let index = Arc::new(index);
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(name.to_string(), index.clone());
        }
        index
    }
}

fn file_name(name: &str) -> String {
    name.replace(':', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn merged_usr() -> LayerIndex {
        use tar::EntryType::*;
        let t = tar_of(&[
            ("bin", Symlink, "usr/bin", b""),
            ("lib", Symlink, "/usr/lib", b""),
            ("usr/", Directory, "", b""),
            ("usr/bin/", Directory, "", b""),
            ("usr/bin/sh", Regular, "", b"#!"),
            ("usr/lib/", Directory, "", b""),
            ("etc/", Directory, "", b""),
            ("etc/passwd", Regular, "", b"root:x:0:0::/root:/bin/sh\n"),
            ("loop", Symlink, "loop", b""),
        ]);
        LayerIndex::from_tar(&t[..]).unwrap()
    }

    fn dir(path: &str) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    fn file(path: &str) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: EntryKind::File {
                source: "/dev/null".into(),
                size: 0,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    #[test]
    fn a_stored_list_reads_back_and_a_forged_one_is_refused() {
        use std::io::Write;
        let index = merged_usr();
        assert_eq!(
            LayerIndex::from_blob(&index.to_blob().unwrap()),
            Some(index.clone())
        );
        let gz = |v: &serde_json::Value| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&serde_json::to_vec(v).unwrap()).unwrap();
            e.finish().unwrap()
        };
        let mut escape = serde_json::to_value(&index).unwrap();
        escape["nodes"]["../etc"] = serde_json::json!("Dir");
        assert_eq!(LayerIndex::from_blob(&gz(&escape)), None);
        let mut absolute = serde_json::to_value(&index).unwrap();
        absolute["nodes"]["/etc"] = serde_json::json!("Dir");
        assert_eq!(LayerIndex::from_blob(&gz(&absolute)), None);
        let mut other_file = serde_json::to_value(&index).unwrap();
        other_file["files"]["etc/shadow"] = serde_json::json!("x");
        assert_eq!(LayerIndex::from_blob(&gz(&other_file)), None);
    }

    #[test]
    fn paths_resolve_through_symlinks_inside_the_root() {
        let v = View::new(vec![Arc::new(merged_usr())]);
        assert_eq!(v.resolve("bin/sh"), "usr/bin/sh");
        assert_eq!(v.resolve("lib/x/y"), "usr/lib/x/y");
        assert_eq!(v.resolve("usr/bin"), "usr/bin");
        assert!(v.is_dir("bin") && v.is_dir("lib") && !v.is_dir("etc/passwd"));
        assert!(!v.is_dir("app"));
        assert_eq!(v.lookup("bin"), Some(&Node::Symlink("usr/bin".into())));
        // A loop ends.
        let _ = v.resolve("loop/x");
        assert_eq!(
            v.file("etc/passwd").as_deref(),
            Some("root:x:0:0::/root:/bin/sh\n")
        );
    }

    #[test]
    fn workdir_creates_only_what_is_missing_through_links() {
        let v = View::new(vec![Arc::new(merged_usr())]);
        assert!(v.missing_dirs("/usr/bin").is_empty());
        assert!(
            v.missing_dirs("/bin").is_empty(),
            "a link to a directory is one"
        );
        assert_eq!(
            v.missing_dirs("/bin/app/x"),
            ["usr/bin/app", "usr/bin/app/x"]
        );
        assert_eq!(View::default().missing_dirs("/app"), ["app"]);
        assert!(View::default().missing_dirs("/").is_empty());
    }

    #[test]
    fn upper_layers_whiteouts_and_opaque_dirs_win() {
        use tar::EntryType::*;
        let upper = tar_of(&[
            ("etc/.wh.passwd", Regular, "", b""),
            ("usr/bin/.wh..wh..opq", Regular, "", b""),
            ("bin", Directory, "", b""),
        ]);
        let v = View::new(vec![
            Arc::new(merged_usr()),
            Arc::new(LayerIndex::from_tar(&upper[..]).unwrap()),
        ]);
        assert_eq!(v.file("etc/passwd"), None);
        assert_eq!(v.lookup("bin"), Some(&Node::Dir));
        assert_eq!(v.lookup("usr/bin/sh"), None, "hidden by the opaque marker");
        assert_eq!(
            v.lookup("usr/bin"),
            Some(&Node::Dir),
            "the directory itself stays"
        );
    }

    #[test]
    fn a_tree_with_bin_and_lib_goes_through_the_bases_links() {
        let v = View::new(vec![Arc::new(merged_usr())]);
        let mut hard = file("bin/ls");
        hard.kind = EntryKind::HardLink {
            target: "bin/sh".into(),
        };
        let (placed, moved) = v.place(vec![
            dir("bin"),
            file("bin/sh"),
            hard,
            dir("lib"),
            dir("lib/x"),
            file("lib/x/libc.so"),
            dir("opt"),
            file("opt/tool"),
        ]);
        let paths: Vec<String> = placed
            .iter()
            .map(|e| e.path.display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "opt",
                "opt/tool",
                "usr/bin",
                "usr/bin/ls",
                "usr/bin/sh",
                "usr/lib",
                "usr/lib/x",
                "usr/lib/x/libc.so"
            ]
        );
        let ls = placed
            .iter()
            .find(|e| e.path == Path::new("usr/bin/ls"))
            .unwrap();
        assert_eq!(
            ls.kind,
            EntryKind::HardLink {
                target: "usr/bin/sh".into()
            }
        );
        assert!(moved.contains(&("bin".into(), "usr/bin".into())));
        // Nothing below: nothing moves.
        let (same, moved) = View::default().place(vec![dir("bin"), file("bin/sh")]);
        assert_eq!(same.len(), 2);
        assert!(moved.is_empty());
    }

    #[test]
    fn entries_index_like_tars() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "app:x:5:6::/:/bin/sh\n").unwrap();
        let mut f = file("etc/passwd");
        f.kind = EntryKind::File {
            source: passwd,
            size: 21,
        };
        let v = View::new(vec![Arc::new(LayerIndex::from_entries(&[f]).unwrap())]);
        assert_eq!(
            v.accounts().passwd.as_deref(),
            Some("app:x:5:6::/:/bin/sh\n")
        );
        assert_eq!(v.accounts().group, None);
    }
}
