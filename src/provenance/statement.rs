//! The provenance document: an in-toto Statement v1 whose predicate is SLSA provenance v1
//! (`buildDefinition`, `runDetails`). Pure: the same inputs give the same bytes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Mode;

pub const MEDIA_TYPE: &str = "application/vnd.in-toto+json";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What a regbuild build means (the `buildType` SLSA asks each builder to define).
pub const BUILD_TYPE: &str = "https://regbuild.invalid/buildtypes/dockerfile/v1";

/// Everything the provenance records.
pub struct Build {
    /// `registry/repository` and the image manifest's digest: the subject.
    pub name: String,
    pub digest: String,
    /// The Dockerfile as given (relative to the context when inside it) and its digest.
    pub dockerfile: String,
    pub dockerfile_digest: String,
    pub target: Option<String>,
    pub platform: String,
    pub epoch: u64,
    pub args: BTreeMap<String, String>,
    pub mode: Mode,
    /// Images a tag resolved: reference and digest.
    pub images: Vec<(String, String)>,
    pub context_digest: String,
    /// The CI run (`super::ci_run`).
    pub run: Option<String>,
    pub version: String,
}

/// The statement's bytes (keys sorted).
pub fn write(b: &Build) -> Vec<u8> {
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let mut external = json!({
        "dockerfile": {"path": b.dockerfile, "digest": {"sha256": hex(&b.dockerfile_digest)}},
        "platform": b.platform,
    });
    if let Some(t) = &b.target {
        external["target"] = json!(t);
    }
    if b.mode == Mode::Max {
        external["args"] = json!(b.args);
    }
    let mut dependencies: Vec<Value> = b
        .images
        .iter()
        .map(|(reference, digest)| {
            json!({
                "uri": format!("pkg:docker/{reference}?platform={}", b.platform.replace('/', "%2F")),
                "digest": {"sha256": hex(digest)},
            })
        })
        .collect();
    dependencies.push(json!({"uri": "context", "digest": {"sha256": hex(&b.context_digest)}}));
    let mut metadata = json!({});
    if let Some(run) = &b.run {
        metadata["invocationId"] = json!(run);
    }
    let doc = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": b.name, "digest": {"sha256": hex(&b.digest)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {"sourceDateEpoch": b.epoch, "mode": match b.mode {
                    Mode::Min => "min",
                    Mode::Max => "max",
                }},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": "urn:regbuild:builder",
                    "version": {"regbuild": b.version},
                },
                "metadata": metadata,
            },
        },
    });
    regbuild_oci::manifest::canonical_json(&doc)
}

/// What a rebase's provenance records: the image it rebased and the bases.
pub struct Rebase {
    /// `registry/repository` and the rebased manifest's digest: the subject.
    pub name: String,
    pub digest: String,
    /// The image rebased: reference and manifest digest.
    pub image: (String, String),
    pub old_base: String,
    /// The new base: reference and digest.
    pub new_base: (String, String),
    /// The image's own provenance (its artifact's digest), when it had one.
    pub earlier: Option<String>,
    pub run: Option<String>,
    pub version: String,
}

/// What a rebase means (its `buildType`).
pub const REBASE_TYPE: &str = "https://regbuild.invalid/buildtypes/rebase/v1";

/// The statement of a rebase: nothing was built; the image's own layers were put on
/// another base.
pub fn write_rebase(r: &Rebase) -> Vec<u8> {
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let mut dependencies = vec![
        json!({"uri": format!("pkg:docker/{}", r.image.0), "digest": {"sha256": hex(&r.image.1)}}),
        json!({"uri": format!("pkg:docker/{}", r.new_base.0), "digest": {"sha256": hex(&r.new_base.1)}}),
    ];
    if let Some(earlier) = &r.earlier {
        dependencies.push(json!({
            "uri": "attestation:provenance",
            "digest": {"sha256": hex(earlier)},
            "mediaType": MEDIA_TYPE,
        }));
    }
    let mut metadata = json!({});
    if let Some(run) = &r.run {
        metadata["invocationId"] = json!(run);
    }
    let doc = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": r.name, "digest": {"sha256": hex(&r.digest)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": REBASE_TYPE,
                "externalParameters": {
                    "image": r.image.0,
                    "oldBase": r.old_base,
                    "newBase": r.new_base.0,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": "urn:regbuild:builder", "version": {"regbuild": r.version}},
                "metadata": metadata,
            },
        },
    });
    regbuild_oci::manifest::canonical_json(&doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(mode: Mode) -> Build {
        Build {
            name: "r.example/app".into(),
            digest: "sha256:aa".into(),
            dockerfile: "Dockerfile".into(),
            dockerfile_digest: "sha256:bb".into(),
            target: None,
            platform: "linux/amd64".into(),
            epoch: 0,
            args: [("VERSION".to_string(), "1.2".to_string())].into(),
            mode,
            images: vec![("r.example/debian:12".into(), "sha256:cc".into())],
            context_digest: "sha256:dd".into(),
            run: None,
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn a_statement_with_every_slsa_field_and_args_only_in_max() {
        let min: Value = serde_json::from_slice(&write(&build(Mode::Min))).unwrap();
        assert_eq!(min["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(min["predicateType"], PREDICATE_TYPE);
        assert_eq!(min["subject"][0]["digest"]["sha256"], "aa");
        let def = &min["predicate"]["buildDefinition"];
        assert_eq!(def["buildType"], BUILD_TYPE);
        assert!(def["externalParameters"].get("args").is_none());
        assert_eq!(def["resolvedDependencies"][0]["digest"]["sha256"], "cc");
        assert_eq!(def["resolvedDependencies"][1]["uri"], "context");
        assert!(min["predicate"]["runDetails"]["builder"]["id"].is_string());
        let max: Value = serde_json::from_slice(&write(&build(Mode::Max))).unwrap();
        assert_eq!(
            max["predicate"]["buildDefinition"]["externalParameters"]["args"]["VERSION"],
            "1.2"
        );
        assert_eq!(write(&build(Mode::Min)), write(&build(Mode::Min)));
    }
}
