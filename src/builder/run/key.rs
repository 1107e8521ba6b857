//! The cache key of a `RUN` layer: a pure function of everything that can change what the
//! step writes. Recorded in the local cache and on the layer's descriptor (the same
//! annotation COPY layers carry), so a fresh runner finds the layer in the registry and
//! neither downloads the base nor runs the command.
//!
//! Covered: the parent (the base manifest digest and the identity of every layer below —
//! its own cache key when regbuild made it, else its digest), the command after the SHELL
//! was applied, a heredoc script's body, the environment and build args the step sees,
//! USER, WORKDIR, the network mode, every mount (bind sources by content, cache ids, secret
//! ids but never their values, tmpfs sizes), the platform, how the layer is written
//! (compression, mtime, setuid stripping) and the format version below. Not covered, on
//! purpose: timestamps of the context files (a `touch` changes nothing), secret values.

use sha2::{Digest as _, Sha256};

/// Bumped whenever what the key covers or how RUN layers are written changes.
pub const FORMAT: &str = "regbuild-run-cache-v1";

/// Everything a RUN layer's bytes depend on, as already-resolved strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyInputs<'a> {
    pub base_digest: Option<&'a str>,
    /// Identity of each layer below the step, bottom first.
    pub parent_layers: Vec<String>,
    pub argv: &'a [String],
    pub script: Option<&'a str>,
    /// The step's environment, in the order it is passed.
    pub env: &'a [(String, String)],
    pub user: &'a str,
    pub workdir: &'a str,
    pub network: &'a str,
    /// One line per mount (see `mounts::Prepared::key_parts`).
    pub mounts: Vec<String>,
    pub platform: &'a str,
    /// Compression, mtime, setuid policy: how the layer is written.
    pub layer_format: String,
}

/// The key: `sha256:` and the hex of a length-prefixed encoding of every input (so no two
/// different input lists can encode alike).
pub fn run_key(inputs: &KeyInputs<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |tag: &str, value: &str| {
        h.update(tag.as_bytes());
        h.update((value.len() as u64).to_be_bytes());
        h.update(value.as_bytes());
    };
    field("format", FORMAT);
    field("base", inputs.base_digest.unwrap_or(""));
    for l in &inputs.parent_layers {
        field("layer", l);
    }
    for a in inputs.argv {
        field("argv", a);
    }
    if let Some(s) = inputs.script {
        field("script", s);
    }
    for (k, v) in inputs.env {
        field("env-name", k);
        field("env-value", v);
    }
    field("user", inputs.user);
    field("workdir", inputs.workdir);
    field("network", inputs.network);
    for m in &inputs.mounts {
        field("mount", m);
    }
    field("platform", inputs.platform);
    field("layer-format", &inputs.layer_format);
    format!("sha256:{}", hex(&h.finalize()))
}

/// Each input of the key by name, as a short hash of its value, so a miss can say which
/// input changed: `base`, `layer.N` (bottom first, with `layers` their count), `command`,
/// `env.NAME` (ENV, whose values the image's config shows anyway), `arg.NAME` (a build arg:
/// only that it is set; a hash of a short secret could be guessed), `user`, `workdir`,
/// `network`, `mount.N`, `platform`, `layer-format`. `args`: the names of `inputs.env` that
/// are build args.
pub fn parts(
    inputs: &KeyInputs<'_>,
    args: &[String],
) -> std::collections::BTreeMap<String, String> {
    let short = |v: &str| hex(&Sha256::digest(v.as_bytes()))[..16].to_string();
    let mut out = std::collections::BTreeMap::new();
    out.insert("format".to_string(), FORMAT.to_string());
    out.insert("base".into(), short(inputs.base_digest.unwrap_or("")));
    out.insert("layers".into(), inputs.parent_layers.len().to_string());
    for (i, l) in inputs.parent_layers.iter().enumerate() {
        out.insert(format!("layer.{i:04}"), short(l));
    }
    let mut command = inputs.argv.join("\0");
    if let Some(s) = inputs.script {
        command.push_str("\0script\0");
        command.push_str(s);
    }
    out.insert("command".into(), short(&command));
    for (k, v) in inputs.env {
        match args.contains(k) {
            true => out.insert(format!("arg.{k}"), "set".to_string()),
            false => out.insert(format!("env.{k}"), short(v)),
        };
    }
    out.insert("user".into(), short(inputs.user));
    out.insert("workdir".into(), short(inputs.workdir));
    out.insert("network".into(), short(inputs.network));
    out.insert("mounts".into(), inputs.mounts.len().to_string());
    for (i, m) in inputs.mounts.iter().enumerate() {
        out.insert(format!("mount.{i}"), short(m));
    }
    out.insert("platform".into(), short(inputs.platform));
    out.insert("layer-format".into(), short(&inputs.layer_format));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base<'a>(argv: &'a [String], env: &'a [(String, String)]) -> KeyInputs<'a> {
        KeyInputs {
            base_digest: Some("sha256:aa"),
            parent_layers: vec!["sha256:l1".into()],
            argv,
            script: None,
            env,
            user: "",
            workdir: "/",
            network: "default",
            mounts: vec![],
            platform: "linux/amd64",
            layer_format: "gzip:6 mtime=0 strip-setuid".into(),
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let argv = vec!["/bin/sh".to_string(), "-c".into(), "make".into()];
        let env = vec![("PATH".to_string(), "/bin".to_string())];
        let k = run_key(&base(&argv, &env));
        assert_eq!(k, run_key(&base(&argv, &env)), "deterministic");
        assert!(k.starts_with("sha256:") && k.len() == 71);
        let argv2 = vec!["/bin/sh".to_string(), "-c".into(), "make all".into()];
        let env2 = vec![("PATH".to_string(), "/usr/bin".to_string())];
        let changed: Vec<KeyInputs<'_>> = vec![
            KeyInputs {
                base_digest: Some("sha256:bb"),
                ..base(&argv, &env)
            },
            KeyInputs {
                parent_layers: vec!["sha256:l2".into()],
                ..base(&argv, &env)
            },
            base(&argv2, &env),
            base(&argv, &env2),
            KeyInputs {
                script: Some("#!/bin/sh"),
                ..base(&argv, &env)
            },
            KeyInputs {
                user: "nobody",
                ..base(&argv, &env)
            },
            KeyInputs {
                workdir: "/src",
                ..base(&argv, &env)
            },
            KeyInputs {
                network: "none",
                ..base(&argv, &env)
            },
            KeyInputs {
                mounts: vec!["cache id=x target=/c".into()],
                ..base(&argv, &env)
            },
            KeyInputs {
                platform: "linux/arm64",
                ..base(&argv, &env)
            },
            KeyInputs {
                layer_format: "zstd:3 mtime=0 strip-setuid".into(),
                ..base(&argv, &env)
            },
        ];
        let mut seen = std::collections::HashSet::new();
        seen.insert(k);
        for c in &changed {
            assert!(seen.insert(run_key(c)), "{c:?} did not change the key");
        }
    }

    #[test]
    fn parts_name_each_input_and_never_hold_a_value() {
        let argv = vec!["/bin/sh".to_string(), "-c".into(), "make".into()];
        let env = vec![("TOKEN".to_string(), "hunter2".to_string())];
        let p = parts(&base(&argv, &env), &[]);
        assert!(p.contains_key("env.TOKEN") && p.contains_key("layer.0000"));
        assert!(p.values().all(|v| !v.contains("hunter2")));
        let env2 = vec![("TOKEN".to_string(), "other".to_string())];
        let q = parts(&base(&argv, &env2), &[]);
        let changed: Vec<&String> = p.keys().filter(|k| p.get(*k) != q.get(*k)).collect();
        assert_eq!(changed, vec!["env.TOKEN"]);
        // A build arg: its name only, the same whatever its value.
        let arg = vec!["TOKEN".to_string()];
        let (a, b) = (
            parts(&base(&argv, &env), &arg),
            parts(&base(&argv, &env2), &arg),
        );
        assert_eq!(a, b);
        assert_eq!(a.get("arg.TOKEN").map(String::as_str), Some("set"));
    }

    #[test]
    fn field_boundaries_are_not_ambiguous() {
        let a = vec!["ab".to_string(), "c".into()];
        let b = vec!["a".to_string(), "bc".into()];
        assert_ne!(run_key(&base(&a, &[])), run_key(&base(&b, &[])));
    }
}
