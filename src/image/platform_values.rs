//! The values the OCI image spec allows in a platform (`os`, `architecture`, `variant`: the
//! GOOS/GOARCH lists it refers to, and the variants it names), so `--platform linux/bogus`
//! is refused before anything is built instead of pushing an image no runtime can pick.

use super::base::TargetPlatform;

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
pub fn parse(s: &str) -> Result<TargetPlatform, PlatformError> {
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
    Ok(TargetPlatform {
        os: os.to_string(),
        architecture: arch.to_string(),
        variant: variant.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_values_are_accepted() {
        for p in [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "windows/amd64",
            "linux/s390x",
        ] {
            assert_eq!(parse(p).unwrap().to_string(), p);
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_part() {
        assert!(matches!(
            parse("linux/bogus"),
            Err(PlatformError::Arch { .. })
        ));
        assert!(matches!(parse("lnux/amd64"), Err(PlatformError::Os { .. })));
        assert!(matches!(
            parse("linux/arm/v9"),
            Err(PlatformError::Variant { .. })
        ));
        assert!(matches!(parse("linux"), Err(PlatformError::Shape(_))));
        assert!(matches!(
            parse("linux/amd64/"),
            Err(PlatformError::Shape(_))
        ));
        assert!(matches!(parse("a/b/c/d"), Err(PlatformError::Shape(_))));
        let msg = parse("linux/bogus").unwrap_err().to_string();
        assert!(msg.contains("bogus") && msg.contains("arm64"), "{msg}");
    }
}
