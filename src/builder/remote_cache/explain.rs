//! Why a RUN step runs: its key inputs (`run::key::parts`) against the step the registry's
//! build cache recorded at the same place, so `-v` (and `--json`'s `miss`) say which input
//! changed instead of a silent miss. Pure.

use std::collections::BTreeSet;

use crate::builder::report::RecordedStep;

/// Reasons one line gives at most.
const MAX_REASONS: usize = 12;

/// The recorded step `step` is compared with: the same instruction in the same stage, else
/// the step at the same place of the stage.
fn counterpart<'a>(known: &'a [RecordedStep], step: &RecordedStep) -> Option<&'a RecordedStep> {
    let same_stage = || known.iter().filter(|k| k.stage == step.stage);
    same_stage()
        .find(|k| k.instruction == step.instruction)
        .or_else(|| same_stage().find(|k| k.run == step.run))
}

/// What changed, in words, for a step no cache held.
pub fn why_missed(known: &[RecordedStep], step: &RecordedStep) -> String {
    let Some(before) = counterpart(known, step) else {
        return if known.is_empty() {
            "the registry holds no build cache for this image yet".to_string()
        } else {
            format!(
                "the registry's build cache has no step like it in stage {} (a new step)",
                printable(&step.stage)
            )
        };
    };
    if before.key == step.key {
        return "the registry's build cache lists its key, but not its layer".to_string();
    }
    let (was, now) = (&before.inputs, &step.inputs);
    let names: BTreeSet<&String> = was.keys().chain(now.keys()).collect();
    let changed: Vec<&str> = names
        .into_iter()
        .filter(|n| was.get(*n) != now.get(*n))
        .map(String::as_str)
        .collect();
    let mut reasons: Vec<String> = Vec::new();
    let mut said_layers = false;
    let mut said_mounts = false;
    for name in changed {
        let reason = match name {
            "format" => "regbuild's key format changed".to_string(),
            "base" => "the base image changed".to_string(),
            "command" => format!(
                "the command changed (was `{}`)",
                printable(&before.instruction)
            ),
            "layers" | "mounts" => continue,
            n if n.starts_with("layer.") => {
                if said_layers {
                    continue;
                }
                said_layers = true;
                let at: usize = n["layer.".len()..].parse().unwrap_or(0);
                format!(
                    "the layers below it changed (from layer {} of {}: an earlier step made another layer)",
                    at.saturating_add(1),
                    now.get("layers").map_or("?", String::as_str)
                )
            }
            n if n.starts_with("mount.") => {
                if said_mounts {
                    continue;
                }
                said_mounts = true;
                "its --mount options or bind sources changed".to_string()
            }
            n if n.starts_with("env.") || n.starts_with("arg.") => {
                let (var, what) = match n.split_once('.') {
                    Some(("arg", var)) => (printable(var), "build arg"),
                    _ => (printable(&n["env.".len()..]), "ENV"),
                };
                match (was.contains_key(n), now.contains_key(n)) {
                    (true, true) => format!("the value of {var} ({what}) changed"),
                    (false, _) => format!("{var} ({what}) is new"),
                    (_, false) => format!("{var} ({what}) is gone"),
                }
            }
            "user" => "USER changed".to_string(),
            "workdir" => "WORKDIR changed".to_string(),
            "network" => "its network mode changed".to_string(),
            "platform" => "the platform changed".to_string(),
            "layer-format" => {
                "how layers are written changed (compression, SOURCE_DATE_EPOCH or --keep-setuid)"
                    .to_string()
            }
            other => format!("{} changed", printable(other)),
        };
        reasons.push(reason);
    }
    if reasons.is_empty() && now.keys().any(|k| k.starts_with("arg.")) {
        return "a build arg's value changed (build arg values are not recorded)".to_string();
    }
    if reasons.is_empty() {
        return "its key changed".to_string();
    }
    if reasons.len() > MAX_REASONS {
        let more = reasons.len() - MAX_REASONS;
        reasons.truncate(MAX_REASONS);
        reasons.push(format!("{more} more"));
    }
    reasons.join("; ")
}

/// Text from a registry, fit for one log line: escaped, at most 200 characters.
fn printable(text: &str) -> String {
    let escaped: String = text.escape_debug().collect();
    match escaped.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &escaped[..at]),
        None => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(instruction: &str, inputs: &[(&str, &str)]) -> RecordedStep {
        RecordedStep {
            stage: "build".into(),
            run: 1,
            instruction: instruction.into(),
            key: format!("sha256:{}", inputs.len() + instruction.len()),
            inputs: inputs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn names_the_inputs_that_changed() {
        let before = step(
            "RUN go build",
            &[
                ("command", "a"),
                ("layers", "3"),
                ("layer.0002", "x"),
                ("env.V", "1"),
            ],
        );
        let mut now = step(
            "RUN go build",
            &[
                ("command", "a"),
                ("layers", "3"),
                ("layer.0002", "y"),
                ("env.V", "2"),
                ("env.W", "1"),
            ],
        );
        now.key = "sha256:other".into();
        let why = why_missed(std::slice::from_ref(&before), &now);
        assert!(why.contains("from layer 3 of 3"), "{why}");
        assert!(why.contains("value of V (ENV)"), "{why}");
        assert!(why.contains("W (ENV) is new"), "{why}");
        assert!(!why.contains("command"), "{why}");
    }

    #[test]
    fn a_changed_command_is_matched_by_its_place() {
        let before = step("RUN make", &[("command", "a")]);
        let now = step("RUN make all", &[("command", "b")]);
        let why = why_missed(&[before], &now);
        assert!(why.contains("command changed (was `RUN make`)"), "{why}");
    }

    #[test]
    fn a_build_args_value_is_never_compared_only_said() {
        let before = step("RUN make", &[("arg.TOKEN", "set"), ("command", "a")]);
        let mut now = before.clone();
        now.key = "sha256:other".into();
        let why = why_missed(&[before], &now);
        assert!(why.contains("a build arg's value changed"), "{why}");
    }

    #[test]
    fn registry_text_is_escaped_and_bounded() {
        let long = format!("RUN x\n\u{1b}[31m{}", "y".repeat(500));
        let p = printable(&long);
        assert!(
            !p.contains('\n') && !p.contains('\u{1b}') && p.chars().count() <= 201,
            "{p}"
        );
    }

    #[test]
    fn nothing_recorded_is_said() {
        let now = step("RUN make", &[]);
        assert!(why_missed(&[], &now).contains("no build cache"));
        let other = RecordedStep {
            stage: "other".into(),
            ..step("RUN x", &[])
        };
        assert!(why_missed(&[other], &now).contains("a new step"));
    }
}
