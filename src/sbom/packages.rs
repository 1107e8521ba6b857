//! Operating-system packages as their package managers record them: Debian's
//! `/var/lib/dpkg/status` (and distroless's `status.d/` files, one paragraph each) and
//! Alpine's `/lib/apk/db/installed`. Pure: text in, packages out.

use std::collections::BTreeMap;

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// `deb` or `apk`: the purl type.
    pub kind: Kind,
    /// The source package, when it differs from the name.
    pub source: Option<String>,
    pub license: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Deb,
    Apk,
}

impl Package {
    /// Its package URL (purl-spec): `pkg:deb/debian/NAME@VERSION?arch=ARCH`,
    /// `pkg:apk/alpine/NAME@VERSION?arch=ARCH`.
    pub fn purl(&self, distro: &str) -> String {
        let kind = match self.kind {
            Kind::Deb => "deb",
            Kind::Apk => "apk",
        };
        format!(
            "pkg:{kind}/{}/{}@{}?arch={}",
            encode(distro),
            encode(&self.name),
            encode(&self.version),
            encode(&self.architecture)
        )
    }
}

/// Percent-encodes what a purl segment may not hold (purl-spec: `:` is kept in versions).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' | b':' | b'+' => {
                out.push(b as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The packages of a dpkg status file (or a `status.d/` file): each paragraph whose
/// `Status` says installed (a `status.d/` paragraph has none: it is installed).
pub fn dpkg(text: &str) -> Vec<Package> {
    paragraphs(text)
        .into_iter()
        .filter(|p| p.get("Status").is_none_or(|s| s.ends_with(" installed")))
        .filter_map(|p| {
            let source = p
                .get("Source")
                .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
                .filter(|s| !s.is_empty() && Some(s) != p.get("Package"));
            Some(Package {
                name: p.get("Package")?.clone(),
                version: p.get("Version")?.clone(),
                architecture: p.get("Architecture").cloned().unwrap_or_default(),
                kind: Kind::Deb,
                source,
                license: None,
            })
        })
        .collect()
}

/// The packages of Alpine's `lib/apk/db/installed`: paragraphs of one-letter fields
/// (`P` name, `V` version, `A` architecture, `L` license, `o` origin).
pub fn apk(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut f: BTreeMap<&str, &str> = BTreeMap::new();
        for line in block.lines() {
            if let Some((k, v)) = line.split_once(':') {
                f.entry(k).or_insert(v);
            }
        }
        if let (Some(name), Some(version)) = (f.get("P"), f.get("V")) {
            out.push(Package {
                name: name.to_string(),
                version: version.to_string(),
                architecture: f.get("A").unwrap_or(&"").to_string(),
                kind: Kind::Apk,
                source: f.get("o").map(|s| s.to_string()).filter(|o| o != name),
                license: f.get("L").map(|s| s.to_string()),
            });
        }
    }
    out
}

/// RFC 822-style paragraphs: `Field: value`, continuation lines start with a space.
fn paragraphs(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue; // a continuation: no field this module reads spans lines
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.entry(k.trim().to_string())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: hello\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.10-3\nDescription: hi\n long text\n\nPackage: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc (2.36-9)\nVersion: 2.36-9+deb12u4\n";

    #[test]
    fn installed_debian_packages_with_versions_and_purls() {
        let p = dpkg(STATUS);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["hello", "libc6"]);
        assert_eq!(p[1].source.as_deref(), Some("glibc"));
        assert_eq!(
            p[1].purl("debian"),
            "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64"
        );
    }

    #[test]
    fn alpine_packages() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\n";
        let p = apk(db);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].purl("alpine"),
            "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64"
        );
        assert_eq!(p[0].license.as_deref(), Some("MIT"));
        assert_eq!(p[0].source, None);
    }
}
