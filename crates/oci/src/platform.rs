//! The platform an image is for (`os/architecture[/variant]`): the one type the build
//! targets, descriptors carry and indexes list, and its one parser, which accepts only the
//! values the OCI image spec allows (the GOOS/GOARCH lists it refers to, and the variants it
//! names), so `--platform linux/bogus` is refused before anything is built instead of
//! pushing an image no runtime can pick.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `os/architecture[/variant]`, as a descriptor's `platform` serialises it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Fields this tool does not read (`os.version`, `os.features`, …), kept as they were when
    /// an index is rewritten.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
            other: Map::new(),
        }
    }

    /// The platform this program runs on (Linux, its architecture in OCI's spelling).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            "arm" => "arm",
            other => other,
        };
        Platform::new("linux", arch, None)
    }

    pub fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64", None)
    }

    /// Parses and checks `os/arch[/variant]` (case-insensitive, as containerd's
    /// `platforms.Parse`).
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let lower = s.trim().to_ascii_lowercase();
        parse(&lower).map_err(|e| e.with_input(s))
    }

    /// True when an index entry for `other` serves this platform: a wanted variant must
    /// match, except that `arm64` without one is `arm64/v8`; no wanted variant takes any.
    pub fn is_served_by(&self, other: &Platform) -> bool {
        other.os == self.os
            && other.architecture == self.architecture
            && match (&self.variant, &other.variant) {
                (Some(want), Some(have)) => want == have,
                (Some(want), None) => self.architecture == "arm64" && want == "v8",
                (None, _) => true,
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        Platform::parse(s)
    }
}

/// `os` values (the image-index spec's list).
pub const OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

/// `architecture` values.
pub const ARCH: &[&str] = &[
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64",
    "ppc64le", "riscv64", "s390x", "wasm",
];

/// A platform string that is not `os/arch[/variant]` with OCI values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "invalid platform `{0}`: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
    )]
    Shape(String),
    #[error("invalid platform `{platform}`: unknown os `{os}` (OCI values: {})", OS.join(", "))]
    Os { platform: String, os: String },
    #[error(
        "invalid platform `{platform}`: unknown architecture `{arch}` (OCI values: {})",
        ARCH.join(", ")
    )]
    Arch { platform: String, arch: String },
    #[error("invalid platform `{platform}`: unknown variant `{variant}` for {arch} (expected {expected})")]
    Variant {
        platform: String,
        arch: String,
        variant: String,
        expected: &'static str,
    },
}

/// The variants an architecture may carry (`None`: any, the spec names none for it).
fn variants(arch: &str) -> Option<(&'static [&'static str], &'static str)> {
    match arch {
        "arm" => Some((&["v5", "v6", "v7", "v8"], "v5, v6, v7 or v8")),
        "arm64" => Some((
            &[
                "v8", "v8.0", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v8.6", "v8.7", "v8.8",
                "v8.9", "v9", "v9.0", "v9.1", "v9.2", "v9.3", "v9.4", "v9.5",
            ],
            "v8, v8.N, v9 or v9.N",
        )),
        "amd64" => Some((&["v1", "v2", "v3", "v4"], "v1, v2, v3 or v4")),
        _ => None,
    }
}

/// Parses and checks `os/arch[/variant]`.
fn parse(s: &str) -> Result<Platform, PlatformError> {
    let mut parts = s.split('/');
    let (Some(os), Some(arch)) = (parts.next(), parts.next()) else {
        return Err(PlatformError::Shape(s.to_string()));
    };
    let variant = parts.next();
    if os.is_empty() || arch.is_empty() || variant == Some("") || parts.next().is_some() {
        return Err(PlatformError::Shape(s.to_string()));
    }
    if !OS.contains(&os) {
        return Err(PlatformError::Os {
            platform: s.to_string(),
            os: os.to_string(),
        });
    }
    if !ARCH.contains(&arch) {
        return Err(PlatformError::Arch {
            platform: s.to_string(),
            arch: arch.to_string(),
        });
    }
    if let (Some(v), Some((allowed, expected))) = (variant, variants(arch)) {
        if !allowed.contains(&v) {
            return Err(PlatformError::Variant {
                platform: s.to_string(),
                arch: arch.to_string(),
                variant: v.to_string(),
                expected,
            });
        }
    }
    Ok(Platform::new(os, arch, variant))
}

impl PlatformError {
    /// The same error, naming the text as the user wrote it.
    fn with_input(self, input: &str) -> PlatformError {
        let input = input.to_string();
        match self {
            PlatformError::Shape(_) => PlatformError::Shape(input),
            PlatformError::Os { os, .. } => PlatformError::Os {
                platform: input,
                os,
            },
            PlatformError::Arch { arch, .. } => PlatformError::Arch {
                platform: input,
                arch,
            },
            PlatformError::Variant {
                arch,
                variant,
                expected,
                ..
            } => PlatformError::Variant {
                platform: input,
                arch,
                variant,
                expected,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse() {
        assert_eq!(
            Platform::parse("linux/arm64/v8").ok(),
            Some(Platform::new("linux", "arm64", Some("v8")))
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }

    #[test]
    fn oci_values_are_accepted() {
        for p in [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "windows/amd64",
            "linux/s390x",
        ] {
            assert_eq!(Platform::parse(p).unwrap().to_string(), p);
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_part() {
        assert!(matches!(
            Platform::parse("linux/bogus"),
            Err(PlatformError::Arch { .. })
        ));
        assert!(matches!(
            Platform::parse("lnux/amd64"),
            Err(PlatformError::Os { .. })
        ));
        assert!(matches!(
            Platform::parse("linux/arm/v9"),
            Err(PlatformError::Variant { .. })
        ));
        assert!(matches!(
            Platform::parse("linux"),
            Err(PlatformError::Shape(_))
        ));
        assert!(matches!(
            Platform::parse("linux/amd64/"),
            Err(PlatformError::Shape(_))
        ));
        assert!(matches!(
            Platform::parse("a/b/c/d"),
            Err(PlatformError::Shape(_))
        ));
        let msg = Platform::parse("linux/bogus").unwrap_err().to_string();
        assert!(msg.contains("bogus") && msg.contains("arm64"), "{msg}");
    }
}
