//! Telling the user what a build and write are doing: progress bars on a terminal, plain
//! one-line events in CI logs, or nothing (`--json`, `--no-progress`). Output goes to stderr;
//! stdout is for results.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::BlobAction;
use regbuild_oci::digest::Digest;

/// Something worth reporting while writing.
#[derive(Debug)]
pub enum Event<'a> {
    /// A blob's step is about to run (`exists`, `mount from x`, `upload`, `copy from r/x`).
    BlobStarted {
        digest: &'a Digest,
        size: u64,
        step: &'a str,
    },
    /// Bytes of a blob sent so far (uploads and copies).
    BlobSent {
        digest: &'a Digest,
        sent: u64,
    },
    BlobDone {
        digest: &'a Digest,
        size: u64,
        action: BlobAction,
    },
    /// A layer being packed (tar + compress): uncompressed bytes so far.
    LayerPacking {
        id: &'a str,
        bytes: u64,
    },
    LayerPacked {
        id: &'a str,
        digest: &'a str,
        size: u64,
    },
    /// A layer known from the cache: not packed.
    LayerCached {
        id: &'a str,
        digest: &'a str,
        size: u64,
    },
    ManifestPut {
        reference: &'a str,
        digest: &'a Digest,
        media_type: &'a str,
    },
    /// A reference already resolved to the manifest: not put again.
    ManifestUnchanged {
        reference: &'a str,
        digest: &'a Digest,
    },
    Note(&'a str),
    /// A line a build step printed (RUN output), already prefixed with the step. Shown
    /// even when nothing else is (`--json`, `--no-progress`): it is the build's log.
    StepOutput(&'a str),
}

/// Receives events; implementations must be cheap, they run on the I/O path.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn event(&self, event: Event<'_>) {
        if let Event::StepOutput(line) = event {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}

/// One line per finished step on stderr.
pub struct Lines;

impl Progress for Lines {
    fn event(&self, event: Event<'_>) {
        let line = match event {
            Event::BlobStarted { .. } | Event::BlobSent { .. } | Event::LayerPacking { .. } => {
                return
            }
            Event::LayerPacked { id, digest, size } => {
                format!("packed   {digest} ({}) {id}", human_bytes(size))
            }
            Event::LayerCached { id, digest, size } => {
                format!("cached   {digest} ({}) {id}", human_bytes(size))
            }
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
            Event::ManifestUnchanged { reference, digest } => {
                format!("manifest {reference} unchanged ({digest})")
            }
            Event::Note(text) | Event::StepOutput(text) => text.to_string(),
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// One bar per layer and blob on a terminal: packing, then uploading (bytes and rate);
/// blobs that exist or are mounted are shown as such.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Bars {
    /// A line above the bars; on a terminal indicatif does not draw on (`TERM` unset or
    /// `dumb`), straight to stderr: indicatif drops lines it does not draw.
    fn println(&self, text: &str) {
        if self.multi.is_hidden() {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        } else {
            let _ = self.multi.println(text);
        }
    }

    fn bar(&self, key: &str, len: u64, prefix: &str) -> ProgressBar {
        let mut bars = match self.bars.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        bars.entry(key.to_string())
            .or_insert_with(|| {
                let pb = self.multi.add(ProgressBar::new(len));
                let style = ProgressStyle::with_template(
                    "{prefix:>9} {msg:40!} {bar:24} {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                pb.set_style(style);
                pb.set_prefix(prefix.to_string());
                pb
            })
            .clone()
    }
}

fn short(d: &str) -> String {
    d.trim_start_matches("sha256:").chars().take(12).collect()
}

impl Progress for Bars {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::LayerPacking { id, bytes } => {
                let pb = self.bar(id, 0, "packing");
                pb.set_message(id.to_string());
                pb.set_length(bytes.max(pb.length().unwrap_or(0)));
                pb.set_position(bytes);
            }
            Event::LayerCached { id, digest, size } => {
                let pb = self.bar(id, size, "cached");
                pb.finish_with_message(format!("{} {id}", short(digest)));
            }
            Event::LayerPacked { id, digest, size } => {
                let pb = self.bar(id, size, "packed");
                pb.finish_with_message(format!("{} {id}", short(digest)));
            }
            Event::BlobStarted { digest, size, step } => {
                let pb = self.bar(digest.as_str(), size, "");
                pb.set_prefix(step.split(' ').next().unwrap_or(step).to_string());
                pb.set_message(format!("{} {step}", short(digest.as_str())));
            }
            Event::BlobSent { digest, sent } => {
                self.bar(digest.as_str(), 0, "upload").set_position(sent);
            }
            Event::BlobDone {
                digest,
                size,
                action,
            } => {
                let pb = self.bar(digest.as_str(), size, "");
                pb.set_prefix(action_word(action));
                pb.set_position(size);
                pb.finish_with_message(short(digest.as_str()));
            }
            Event::ManifestPut {
                reference, digest, ..
            } => self.println(&format!("manifest {reference} -> {digest}")),
            Event::ManifestUnchanged { reference, digest } => {
                self.println(&format!("manifest {reference} unchanged ({digest})"))
            }
            // Printed above the bars, which keep drawing below.
            Event::Note(text) | Event::StepOutput(text) => self.println(text),
        }
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
