//! `ADD <http(s) URL>`: the body downloaded into a file of the build's tmp while it is
//! hashed, bounded as every layer entry is (`regbuild_fs::tar_read::MAX_ENTRY_SIZE`) and by
//! the free disk as an unpack is (`regbuild_fs::disk`), with
//! timeouts and at most 10 redirects (Go's default, which BuildKit keeps). The file gets mode
//! 0600, as BuildKit gives it. Its `Last-Modified` is not used: regbuild gives every entry
//! of a layer the build's fixed mtime (`LayerOptions::mtime`), and BuildKit leaves mtime
//! out of the cache key too. Plain `http://` is allowed, as BuildKit allows it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use regbuild_fs::disk::{DiskBudget, DiskLimit};

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
/// (`sha256:<hex>`), bytes that hash otherwise fail the step, naming both digests. What is
/// written is bounded by `disk` as an unpack is (the free space less a reserve), so a
/// server that sends without end fails the step before the disk is full. Messages show
/// the URL without its user information (`super::redact_urls`).
pub async fn download(
    url: &str,
    name: &str,
    expected: Option<&str>,
    tmp: &Path,
    disk: DiskLimit,
) -> Result<Downloaded, RemoteError> {
    let shown = super::redact_urls(url);
    let failed = |source: reqwest::Error| RemoteError::Http {
        url: shown.clone(),
        reason: super::redact_urls(&chain(&source)),
    };
    let mut resp = client().get(url).send().await.map_err(failed)?;
    if !resp.status().is_success() {
        return Err(RemoteError::Status {
            url: shown.clone(),
            status: resp.status().to_string(),
        });
    }
    let limit = regbuild_fs::tar_read::MAX_ENTRY_SIZE;
    let too_large = || RemoteError::TooLarge {
        url: shown.clone(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
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
    let mut budget = DiskBudget::new(&dir, disk);
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_large());
        }
        budget
            .charge(chunk.len() as u64)
            .map_err(|source| RemoteError::Disk {
                url: shown.clone(),
                source,
            })?;
        hash.update(&chunk);
        tokio::task::block_in_place(|| file.write_all(&chunk)).map_err(io(&path))?;
    }
    file.sync_all().map_err(io(&path))?;
    let digest = format!("sha256:{}", hex::encode(hash.finalize()));
    if let Some(expected) = expected.filter(|e| *e != digest) {
        return Err(RemoteError::ChecksumMismatch {
            url: shown,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    /// A server that answers every request with `len` bytes and no `Content-Length` (the
    /// size is not known before the body ends); its URL, with user information.
    fn endless(len: usize) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut conn = conn;
                let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n");
                let chunk = vec![b'x'; 64 << 10];
                let mut sent = 0;
                while sent < len && conn.write_all(&chunk).is_ok() {
                    sent += chunk.len();
                }
            }
        });
        format!("http://user:s3cr3t@{host}/big.bin")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_download_is_bounded_by_the_disk_as_an_unpack_is() {
        let tmp = tempfile::tempdir().unwrap();
        let url = endless(8 << 20);
        let err = download(&url, "big.bin", None, tmp.path(), DiskLimit::Bytes(1 << 20))
            .await
            .unwrap_err();
        assert!(matches!(err, RemoteError::Disk { .. }), "{err}");
        let shown = err.to_string();
        assert!(
            shown.contains("would write more than 1048576 bytes"),
            "{shown}"
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let got = download(&url, "big.bin", None, tmp.path(), DiskLimit::Bytes(9 << 20))
            .await
            .unwrap();
        let size = std::fs::metadata(got.dir.join("big.bin")).unwrap().len();
        assert_eq!(size, 8 << 20);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn errors_never_show_the_user_information_of_the_url() {
        let tmp = tempfile::tempdir().unwrap();
        for url in [
            "http://user:s3cr3t@127.0.0.1:1/f",
            "http://s3cr3t@127.0.0.1:1/f",
        ] {
            let err = download(url, "f", None, tmp.path(), DiskLimit::Free)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("127.0.0.1:1/f"), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }
}
