//! `ADD <http(s) URL>`: the body downloaded into a file of the build's tmp while it is
//! hashed, bounded as every layer entry is (`regbuild_fs::tar_read::MAX_ENTRY_SIZE`), with
//! timeouts and at most 10 redirects (Go's default, which BuildKit keeps). The file gets mode
//! 0600, as BuildKit gives it. Its `Last-Modified` is not used: regbuild gives every entry
//! of a layer the build's fixed mtime (`LayerOptions::mtime`), and BuildKit leaves mtime
//! out of the cache key too. Plain `http://` is allowed, as BuildKit allows it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::RemoteError;

/// The longest a whole download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// One downloaded file.
#[derive(Debug)]
pub struct Downloaded {
    /// The file, named `name` in a directory of its own (kept: the layer reads it later).
    pub dir: PathBuf,
    pub name: String,
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
}

/// The HTTP client of ADD: the registry client's TLS set-up (reqwest with rustls), redirects
/// followed up to 10.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        regbuild_registry::tls::client(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::limited(10))
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
                .timeout(DOWNLOAD_TIMEOUT)
                .user_agent(concat!("regbuild/", env!("CARGO_PKG_VERSION")))
        })
    })
}

/// Downloads `url` into a new directory under `tmp` as the file `name`; with `expected`
/// (`sha256:<hex>`), bytes that hash otherwise fail the step, naming both digests.
pub async fn download(
    url: &str,
    name: &str,
    expected: Option<&str>,
    tmp: &Path,
) -> Result<Downloaded, RemoteError> {
    let failed = |source: reqwest::Error| RemoteError::Http {
        url: url.to_string(),
        reason: chain(&source),
    };
    let mut resp = client().get(url).send().await.map_err(failed)?;
    if !resp.status().is_success() {
        return Err(RemoteError::Status {
            url: url.to_string(),
            status: resp.status().to_string(),
        });
    }
    let limit = regbuild_fs::tar_read::MAX_ENTRY_SIZE;
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(RemoteError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RemoteError::Io { path, source }
    };
    let dir = tempfile::tempdir_in(tmp).map_err(io(tmp))?.keep();
    let path = dir.join(name);
    let mut file = create_private(&path).map_err(io(&path))?;
    let mut hash = Sha256::new();
    let mut written = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        written += chunk.len() as u64;
        if written > limit {
            return Err(RemoteError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        hash.update(&chunk);
        tokio::task::block_in_place(|| file.write_all(&chunk)).map_err(io(&path))?;
    }
    file.sync_all().map_err(io(&path))?;
    let digest = format!("sha256:{}", hex::encode(hash.finalize()));
    if let Some(expected) = expected.filter(|e| *e != digest) {
        return Err(RemoteError::ChecksumMismatch {
            url: url.to_string(),
            expected: expected.to_string(),
            actual: digest,
        });
    }
    Ok(Downloaded {
        dir,
        name: name.to_string(),
        digest,
    })
}

/// A new file with mode 0600 (whatever the umask).
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// An error with its causes (reqwest's own message names little more than the URL).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
