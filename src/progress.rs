//! Telling the user what a write is doing: plain one-line events (CI logs) or nothing
//! (`--json`, `--no-progress` with no TTY). Output goes to stderr; stdout is for results.

use std::io::Write;

use crate::digest::Digest;
use crate::report::BlobAction;

/// Something worth reporting while writing.
#[derive(Debug)]
pub enum Event<'a> {
    /// A blob's step is about to run (`exists`, `mount from x`, `upload`, `copy from r/x`).
    BlobStarted {
        digest: &'a Digest,
        size: u64,
        step: &'a str,
    },
    BlobDone {
        digest: &'a Digest,
        size: u64,
        action: BlobAction,
    },
    ManifestPut {
        reference: &'a str,
        digest: &'a Digest,
        media_type: &'a str,
    },
    Note(&'a str),
}

/// Receives events; implementations must be cheap, they run on the I/O path.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn event(&self, _: Event<'_>) {}
}

/// One line per finished step on stderr.
pub struct Lines;

impl Progress for Lines {
    fn event(&self, event: Event<'_>) {
        let line = match event {
            Event::BlobStarted { .. } => return,
            Event::BlobDone {
                digest,
                size,
                action,
            } => format!(
                "{:<8} {digest} ({})",
                action_word(action),
                human_bytes(size)
            ),
            Event::ManifestPut {
                reference,
                digest,
                media_type,
            } => format!("manifest {reference} -> {digest} ({media_type})"),
            Event::Note(text) => text.to_string(),
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

fn action_word(a: BlobAction) -> &'static str {
    match a {
        BlobAction::Exists => "exists",
        BlobAction::Mounted => "mounted",
        BlobAction::Uploaded => "uploaded",
    }
}

/// `1.5 MiB`-style sizes for humans.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
