//! How a blob's bytes go to a registry, decided without I/O: one monolithic `PUT`, one
//! `PATCH` of the whole body then an empty `PUT`, or resumable chunks; what each registry
//! host is known (or was seen in this run) to refuse; and how a refusal is read.
//! `upload` carries these decisions out and feeds refusals back.
//!
//! Every field of [`HostQuirks`] only ever moves one way (a refusal is remembered, a size
//! limit only shrinks), so a sequence of fallbacks cannot cycle: each refusal either teaches
//! something new or is final.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

/// `--upload-strategy`: how blobs are sent before any refusal is seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UploadStrategy {
    /// Monolithic up to `--chunk-threshold`, resumable chunks above, layers streamed while
    /// they pack; known hosts start from what they are documented to accept.
    #[default]
    Auto,
    /// One `PATCH` of the whole body (no `Content-Range`), then an empty `PUT`.
    Stream,
    /// `POST`, then one `PUT` carrying the whole body.
    Monolithic,
    /// `PATCH` chunks with `Content-Range`, then an empty `PUT` (for blobs of any size).
    Chunked,
}

impl UploadStrategy {
    pub const NAMES: [&'static str; 4] = ["auto", "stream", "monolithic", "chunked"];

    pub fn name(self) -> &'static str {
        match self {
            UploadStrategy::Auto => "auto",
            UploadStrategy::Stream => "stream",
            UploadStrategy::Monolithic => "monolithic",
            UploadStrategy::Chunked => "chunked",
        }
    }
}

/// An `--upload-strategy` value that names no strategy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown upload strategy {0:?} (expected auto, stream, monolithic or chunked)")]
pub struct UnknownStrategy(pub String);

impl FromStr for UploadStrategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(UploadStrategy::Auto),
            "stream" => Ok(UploadStrategy::Stream),
            "monolithic" => Ok(UploadStrategy::Monolithic),
            "chunked" => Ok(UploadStrategy::Chunked),
            other => Err(UnknownStrategy(other.to_string())),
        }
    }
}

/// What a registry host refuses: from its documented behaviour (known hosts) and from the
/// refusals seen during this run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostQuirks {
    /// Every `PATCH` to an upload session is refused (Google Artifact Registry).
    pub no_patch: bool,
    /// A closing `PUT` that carries the body is refused (JFrog Artifactory).
    pub no_put_body: bool,
    /// The largest `PATCH` body with `Content-Range` it takes (GHCR: 4 MiB).
    pub max_chunk: Option<u64>,
    /// The largest body of any upload request it takes (Harbor loses larger ones).
    pub max_body: Option<u64>,
    /// Its `Range` answers lag behind what it stored (ECR): count the bytes sent instead.
    pub stale_range: bool,
}

const MIB: u64 = 1024 * 1024;
/// Limits learned from refusals never go below this: smaller requests are not the problem.
const MIN_LEARNED_LIMIT: u64 = MIB;

/// A registry whose upload behaviour is documented, and what regbuild does for it up front.
pub struct KnownHost {
    pub registry: &'static str,
    pub quirks: HostQuirks,
}

/// The documented behaviour of well-known hosted registries (README: "Hosted registries").
pub fn known_host(host: &str) -> Option<KnownHost> {
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    let ends = |suffix: &str| host == suffix || host.ends_with(&format!(".{suffix}"));
    if ends("pkg.dev") || ends("gcr.io") {
        return Some(KnownHost {
            registry: "Google Artifact Registry",
            quirks: HostQuirks {
                no_patch: true,
                ..HostQuirks::default()
            },
        });
    }
    if host == "ghcr.io" {
        return Some(KnownHost {
            registry: "GitHub Container Registry",
            quirks: HostQuirks {
                max_chunk: Some(4 * MIB),
                ..HostQuirks::default()
            },
        });
    }
    let ecr = host.contains(".dkr.ecr.")
        && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"));
    if ecr || host == "public.ecr.aws" {
        return Some(KnownHost {
            registry: "Amazon ECR",
            quirks: HostQuirks {
                stale_range: true,
                ..HostQuirks::default()
            },
        });
    }
    if ends("jfrog.io") {
        return Some(KnownHost {
            registry: "JFrog Artifactory",
            quirks: HostQuirks {
                no_put_body: true,
                ..HostQuirks::default()
            },
        });
    }
    None
}

/// How one blob is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `PUT ?digest=` with the whole body.
    Monolithic,
    /// One `PATCH` with the whole body and no `Content-Range`, then an empty `PUT ?digest=`.
    Patch,
    /// `PATCH` chunks of `size` bytes with `Content-Range`, then an empty `PUT ?digest=`.
    /// Never 0: a loop of empty chunks would never reach the end of the blob.
    Chunked { size: NonZeroU64 },
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Monolithic => f.write_str("monolithic PUT"),
            Method::Patch => f.write_str("one PATCH then an empty PUT"),
            Method::Chunked { size } => write!(f, "PATCH chunks of {size} bytes"),
        }
    }
}

/// The sizes a choice depends on.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Blobs larger than this are chunked in `auto`.
    pub threshold: u64,
    /// The wanted chunk size.
    pub chunk_size: u64,
    /// The session's `OCI-Chunk-Min-Length`.
    pub min_chunk: Option<u64>,
}

/// How to send a blob of `len` bytes given what the host refuses; `None` when every method
/// is refused.
pub fn choose(
    strategy: UploadStrategy,
    quirks: &HostQuirks,
    len: u64,
    sizes: Sizes,
) -> Option<Method> {
    let chunked = Method::Chunked {
        size: chunk_size(quirks, sizes),
    };
    let wanted = match strategy {
        UploadStrategy::Auto if len > sizes.threshold => chunked,
        UploadStrategy::Auto | UploadStrategy::Monolithic => Method::Monolithic,
        UploadStrategy::Stream => Method::Patch,
        UploadStrategy::Chunked => chunked,
    };
    let too_big = quirks.max_body.is_some_and(|max| len > max);
    let method = match wanted {
        Method::Chunked { .. } if quirks.no_patch => Method::Monolithic,
        Method::Chunked { .. } => chunked,
        Method::Patch if quirks.no_patch => Method::Monolithic,
        Method::Patch if too_big => chunked,
        Method::Patch => Method::Patch,
        Method::Monolithic if too_big && !quirks.no_patch => chunked,
        Method::Monolithic if quirks.no_put_body => Method::Patch,
        Method::Monolithic => Method::Monolithic,
    };
    let refused = match method {
        Method::Monolithic => quirks.no_put_body || too_big,
        Method::Patch => quirks.no_patch || too_big,
        Method::Chunked { .. } => quirks.no_patch,
    };
    (!refused).then_some(method)
}

/// The chunk size: the wanted one, raised to the session's minimum, lowered to the host's
/// limits (a limit wins over the minimum: a chunk the registry refuses is worth nothing),
/// and never below one byte whatever the caller or the registry said.
fn chunk_size(quirks: &HostQuirks, sizes: Sizes) -> NonZeroU64 {
    let mut size = sizes.chunk_size.max(sizes.min_chunk.unwrap_or(0));
    for limit in [quirks.max_chunk, quirks.max_body].into_iter().flatten() {
        size = size.min(limit);
    }
    NonZeroU64::new(size).unwrap_or(NonZeroU64::MIN)
}

/// Whether a layer may be streamed while it is packed (one `PATCH` of unknown length): not
/// where a `PATCH` is refused or request bodies are capped, and only in `auto` and `stream`.
pub fn streams_unknown_length(strategy: UploadStrategy, quirks: &HostQuirks) -> bool {
    matches!(strategy, UploadStrategy::Auto | UploadStrategy::Stream)
        && !quirks.no_patch
        && quirks.max_body.is_none()
}

/// The request an upload was refused on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// A `PUT` carrying `bytes` of body (0: the closing `PUT` after PATCHes).
    Put { bytes: u64 },
    /// A `PATCH` of `bytes` (`None`: unknown length, streamed while packed).
    Patch { bytes: Option<u64>, ranged: bool },
}

/// What a refusal teaches about a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lesson {
    NoPatch,
    NoPutBody,
    MaxChunk(u64),
    MaxBody(u64),
    StaleRange,
}

impl fmt::Display for Lesson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lesson::NoPatch => f.write_str("it refuses PATCH: monolithic PUTs from now on"),
            Lesson::NoPutBody => {
                f.write_str("it refuses a PUT with a body: PATCH then an empty PUT from now on")
            }
            Lesson::MaxChunk(n) => write!(f, "it caps chunks at {n} bytes: smaller chunks"),
            Lesson::MaxBody(n) => {
                write!(
                    f,
                    "it loses requests over {n} bytes: chunks of at most that"
                )
            }
            Lesson::StaleRange => {
                f.write_str("its Range answers lag behind: offsets counted from the bytes sent")
            }
        }
    }
}

/// Reads a refusal of `sent` (its status, distribution error code and message); `None` when
/// it is not a refusal that another method can get around.
pub fn read_refusal(
    sent: Sent,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
) -> Option<Lesson> {
    let code = code.unwrap_or("");
    let message = message.unwrap_or("");
    let bytes = match sent {
        Sent::Put { bytes } => Some(bytes),
        Sent::Patch { bytes, .. } => bytes,
    };
    // A request too large: the stated limit, else half of what was sent.
    let too_large = status == 413 || code == "BLOB_UPLOAD_UNKNOWN" || code == "SIZE_INVALID";
    if too_large {
        let limit = stated_limit(message).or_else(|| bytes.map(|b| b / 2));
        if let Some(limit) = limit.filter(|&l| l >= MIN_LEARNED_LIMIT) {
            if bytes.is_none_or(|b| b > limit) {
                return Some(Lesson::MaxBody(limit));
            }
        }
    }
    match sent {
        Sent::Patch { .. } if matches!(status, 405 | 501) || code == "UNSUPPORTED" => {
            Some(Lesson::NoPatch)
        }
        Sent::Patch { ranged: true, .. } if status == 416 => stated_limit(message)
            .filter(|&l| l >= 1)
            .filter(|&l| bytes.is_none_or(|b| b > l))
            .map(Lesson::MaxChunk),
        Sent::Put { bytes } if bytes > 0 => {
            let refused = matches!(status, 405 | 415 | 501)
                || (status == 400 && code == "BLOB_UPLOAD_INVALID");
            refused.then_some(Lesson::NoPutBody)
        }
        _ => None,
    }
}

/// A size a message states as a limit: the last `<number><unit>` in it ("exceeds the maximum
/// permissible limit of 4.00MiB" → 4 MiB). Decimal units count as powers of 1000, so the
/// chunk stays within the limit however the registry meant it.
pub fn stated_limit(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    if !lower.contains("limit") && !lower.contains("maximum") && !lower.contains("exceed") {
        return None;
    }
    let bytes = lower.as_bytes();
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && (bytes[i - 1].is_ascii_alphanumeric())) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number: f64 = match lower[start..i].parse() {
            Ok(n) => n,
            Err(_) => continue,
        };
        let rest = lower[i..].trim_start();
        let unit: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let scale = match unit.as_str() {
            "b" | "bytes" => 1.0,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "kb" | "k" => 1e3,
            "mb" | "m" => 1e6,
            "gb" | "g" => 1e9,
            _ => continue,
        };
        let value = number * scale;
        if (1.0..1e15).contains(&value) {
            found = Some(value as u64);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: Sizes = Sizes {
        threshold: 64 * MIB,
        chunk_size: 32 * MIB,
        min_chunk: None,
    };

    fn chunks(size: u64) -> Method {
        Method::Chunked {
            size: NonZeroU64::new(size).unwrap(),
        }
    }

    fn quirks(f: impl FnOnce(&mut HostQuirks)) -> HostQuirks {
        let mut q = HostQuirks::default();
        f(&mut q);
        q
    }

    #[test]
    fn auto_is_monolithic_below_the_threshold_and_chunked_above() {
        let q = HostQuirks::default();
        assert_eq!(
            choose(UploadStrategy::Auto, &q, MIB, SIZES),
            Some(Method::Monolithic)
        );
        assert_eq!(
            choose(UploadStrategy::Auto, &q, 100 * MIB, SIZES),
            Some(chunks(32 * MIB))
        );
    }

    #[test]
    fn each_quirk_turns_the_choice_to_what_the_host_accepts() {
        let gar = quirks(|q| q.no_patch = true);
        assert_eq!(
            choose(UploadStrategy::Auto, &gar, 100 * MIB, SIZES),
            Some(Method::Monolithic)
        );
        assert_eq!(
            choose(UploadStrategy::Stream, &gar, MIB, SIZES),
            Some(Method::Monolithic)
        );
        let ghcr = quirks(|q| q.max_chunk = Some(4 * MIB));
        assert_eq!(
            choose(UploadStrategy::Auto, &ghcr, 100 * MIB, SIZES),
            Some(chunks(4 * MIB))
        );
        assert_eq!(
            choose(UploadStrategy::Auto, &ghcr, 10 * MIB, SIZES),
            Some(Method::Monolithic),
            "GHCR's limit is on ranged PATCHes only"
        );
        let jfrog = quirks(|q| q.no_put_body = true);
        assert_eq!(
            choose(UploadStrategy::Monolithic, &jfrog, MIB, SIZES),
            Some(Method::Patch)
        );
        let harbor = quirks(|q| q.max_body = Some(16 * MIB));
        assert_eq!(
            choose(UploadStrategy::Auto, &harbor, 20 * MIB, SIZES),
            Some(chunks(16 * MIB))
        );
        assert_eq!(
            choose(UploadStrategy::Auto, &harbor, 2 * MIB, SIZES),
            Some(Method::Monolithic)
        );
    }

    #[test]
    fn nothing_is_chosen_when_every_method_is_refused() {
        let both = quirks(|q| {
            q.no_patch = true;
            q.no_put_body = true;
        });
        assert_eq!(choose(UploadStrategy::Auto, &both, MIB, SIZES), None);
        let capped = quirks(|q| {
            q.no_patch = true;
            q.max_body = Some(MIB);
        });
        assert_eq!(choose(UploadStrategy::Auto, &capped, 2 * MIB, SIZES), None);
    }

    #[test]
    fn a_limit_wins_over_the_session_minimum() {
        let q = quirks(|q| q.max_chunk = Some(4 * MIB));
        let sizes = Sizes {
            min_chunk: Some(5 * MIB),
            ..SIZES
        };
        assert_eq!(
            choose(UploadStrategy::Chunked, &q, MIB, sizes),
            Some(chunks(4 * MIB))
        );
    }

    #[test]
    fn a_chunk_is_never_empty_whatever_the_sizes_say() {
        let zero = Sizes {
            chunk_size: 0,
            ..SIZES
        };
        assert_eq!(
            choose(UploadStrategy::Chunked, &HostQuirks::default(), MIB, zero),
            Some(chunks(1))
        );
        let capped_at_zero = quirks(|q| q.max_chunk = Some(0));
        assert_eq!(
            choose(UploadStrategy::Chunked, &capped_at_zero, MIB, SIZES),
            Some(chunks(1))
        );
    }

    #[test]
    fn refusals_are_read_as_documented() {
        let patch = Sent::Patch {
            bytes: Some(32 * MIB),
            ranged: true,
        };
        assert_eq!(
            read_refusal(patch, 405, Some("UNSUPPORTED"), None),
            Some(Lesson::NoPatch)
        );
        assert_eq!(
            read_refusal(
                patch,
                416,
                Some("REQUESTED_RANGE_NOT_SATISFIABLE"),
                Some("exceeds the maximum permissible limit of 4.00MiB")
            ),
            Some(Lesson::MaxChunk(4 * MIB))
        );
        assert_eq!(
            read_refusal(
                patch,
                416,
                Some("RANGE_INVALID"),
                Some("upload is at 0 bytes")
            ),
            None,
            "a plain 416 is resumed, not learned from"
        );
        assert_eq!(
            read_refusal(
                Sent::Put { bytes: 100 },
                400,
                Some("BLOB_UPLOAD_INVALID"),
                None
            ),
            Some(Lesson::NoPutBody)
        );
        assert_eq!(
            read_refusal(Sent::Put { bytes: 100 }, 400, Some("DIGEST_INVALID"), None),
            None
        );
        assert_eq!(
            read_refusal(
                Sent::Put { bytes: 100 * MIB },
                404,
                Some("BLOB_UPLOAD_UNKNOWN"),
                None
            ),
            Some(Lesson::MaxBody(50 * MIB))
        );
        assert_eq!(
            read_refusal(
                Sent::Put { bytes: 1000 },
                404,
                Some("BLOB_UPLOAD_UNKNOWN"),
                None
            ),
            None,
            "small requests are never the size problem"
        );
    }

    #[test]
    fn stated_limits_parse_with_their_units() {
        assert_eq!(
            stated_limit("exceeds the maximum permissible limit of 4.00MiB"),
            Some(4 * MIB)
        );
        assert_eq!(stated_limit("limit is 5 MB"), Some(5_000_000));
        assert_eq!(stated_limit("body exceeds 1024 bytes"), Some(1024));
        assert_eq!(stated_limit("upload is at 4 MiB"), None, "no limit word");
        assert_eq!(stated_limit("limit exceeded"), None);
    }

    #[test]
    fn known_hosts_get_their_documented_behaviour() {
        assert!(known_host("europe-docker.pkg.dev").unwrap().quirks.no_patch);
        assert_eq!(
            known_host("ghcr.io").unwrap().quirks.max_chunk,
            Some(4 * MIB)
        );
        assert!(
            known_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
                .unwrap()
                .quirks
                .stale_range
        );
        assert!(known_host("acme.jfrog.io").unwrap().quirks.no_put_body);
        assert!(known_host("registry.example:5000").is_none());
        assert!(known_host("notpkg.dev").is_none());
    }

    #[test]
    fn unknown_length_streams_only_where_a_patch_can_succeed() {
        let q = HostQuirks::default();
        assert!(streams_unknown_length(UploadStrategy::Auto, &q));
        assert!(!streams_unknown_length(UploadStrategy::Monolithic, &q));
        assert!(!streams_unknown_length(
            UploadStrategy::Auto,
            &quirks(|q| q.no_patch = true)
        ));
        assert!(!streams_unknown_length(
            UploadStrategy::Auto,
            &quirks(|q| q.max_body = Some(MIB))
        ));
    }

    #[test]
    fn strategies_parse_by_name() {
        for name in UploadStrategy::NAMES {
            assert_eq!(name.parse::<UploadStrategy>().unwrap().name(), name);
        }
        assert!("fast".parse::<UploadStrategy>().is_err());
    }
}
