//! Rewriting an image's config for a new base, without I/O: the base's layers, diff_ids and
//! history entries are replaced; settings the image inherited unchanged from the old base
//! take the new base's value, settings the image set itself are kept.

use serde_json::{Map, Value};

use crate::image::config::env_pairs;

/// Why the image cannot be rebased.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RebaseConfigError {
    #[error("the old base's layers are not a prefix of the image's layers (layer {index}: image has {image}, old base has {base})")]
    NotAPrefix {
        index: usize,
        image: String,
        base: String,
    },
    #[error("the old base has {base} layers but the image only {image}")]
    TooFewLayers { base: usize, image: usize },
    #[error("the image's diff_ids do not start with the old base's diff_ids (layer {0})")]
    DiffIdMismatch(usize),
    #[error("config is not a JSON object")]
    NotAnObject,
}

fn diff_ids(cfg: &Value) -> Vec<String> {
    cfg.pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn history(cfg: &Value) -> Vec<Value> {
    cfg.get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Checks that `old_layers` (digests) start `image_layers` and that the diff_ids agree.
pub fn check_prefix(
    image_layers: &[String],
    old_layers: &[String],
    image_cfg: &Value,
    old_cfg: &Value,
) -> Result<(), RebaseConfigError> {
    if old_layers.len() > image_layers.len() {
        return Err(RebaseConfigError::TooFewLayers {
            base: old_layers.len(),
            image: image_layers.len(),
        });
    }
    for (i, (img, base)) in image_layers.iter().zip(old_layers).enumerate() {
        if img != base {
            return Err(RebaseConfigError::NotAPrefix {
                index: i,
                image: img.clone(),
                base: base.clone(),
            });
        }
    }
    let (img_ids, old_ids) = (diff_ids(image_cfg), diff_ids(old_cfg));
    for i in 0..old_ids.len() {
        if img_ids.get(i) != old_ids.get(i) {
            return Err(RebaseConfigError::DiffIdMismatch(i));
        }
    }
    Ok(())
}

/// The image's config on the new base.
pub fn rebase_config(
    image_cfg: &Value,
    old_cfg: &Value,
    new_cfg: &Value,
) -> Result<Value, RebaseConfigError> {
    let mut out = image_cfg.clone();
    let obj = out.as_object_mut().ok_or(RebaseConfigError::NotAnObject)?;
    let old_n = diff_ids(old_cfg).len();
    let mut ids: Vec<Value> = diff_ids(new_cfg).into_iter().map(Value::String).collect();
    ids.extend(
        diff_ids(image_cfg)
            .into_iter()
            .skip(old_n)
            .map(Value::String),
    );
    obj.insert(
        "rootfs".into(),
        serde_json::json!({"type": "layers", "diff_ids": ids}),
    );
    let old_h = history(old_cfg).len();
    let mut hist = history(new_cfg);
    hist.extend(history(image_cfg).into_iter().skip(old_h));
    obj.insert("history".into(), Value::Array(hist));
    let merged = merge_settings(
        image_cfg.get("config"),
        old_cfg.get("config"),
        new_cfg.get("config"),
    );
    obj.insert("config".into(), Value::Object(merged));
    Ok(out)
}

fn merge_settings(
    image: Option<&Value>,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Map<String, Value> {
    let empty = Map::new();
    let image = image.and_then(Value::as_object).unwrap_or(&empty);
    let old = old.and_then(Value::as_object).unwrap_or(&empty);
    let new = new.and_then(Value::as_object).unwrap_or(&empty);
    let mut out = Map::new();
    let mut keys: Vec<&String> = image.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if k == "Env" {
            let env = merge_env(image.get(k), old.get(k), new.get(k));
            if !env.is_empty() {
                out.insert(k.clone(), Value::Array(env));
            }
            continue;
        }
        let inherited = image.get(k) == old.get(k);
        let value = if inherited { new.get(k) } else { image.get(k) };
        if let Some(v) = value {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Per variable: inherited unchanged from the old base → the new base's value; set or
/// changed by the image → kept; new in the new base → added.
fn merge_env(image: Option<&Value>, old: Option<&Value>, new: Option<&Value>) -> Vec<Value> {
    let (image, old, new) = (env_pairs(image), env_pairs(old), env_pairs(new));
    let lookup = |list: &[(String, String)], k: &str| {
        list.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone())
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in &image {
        if lookup(&old, k).as_ref() == Some(v) {
            if let Some(nv) = lookup(&new, k) {
                out.push((k.clone(), nv));
            }
        } else {
            out.push((k.clone(), v.clone()));
        }
    }
    for (k, v) in &new {
        if !out.iter().any(|(x, _)| x == k) && lookup(&old, k).is_none() {
            out.push((k.clone(), v.clone()));
        }
    }
    out.into_iter()
        .map(|(k, v)| Value::String(format!("{k}={v}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(env: &[&str], ids: &[&str], hist: usize, extra: Value) -> Value {
        let mut c = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": env},
            "rootfs": {"type": "layers", "diff_ids": ids},
            "history": (0..hist).map(|i| json!({"created_by": format!("h{i}")})).collect::<Vec<_>>(),
        });
        if let (Some(c), Some(e)) = (c["config"].as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        c
    }

    #[test]
    fn layers_history_and_inherited_settings_follow_the_new_base() {
        let old = cfg(
            &["PATH=/old", "BASE=1"],
            &["o1", "o2"],
            2,
            json!({"Cmd": ["sh"], "User": "root"}),
        );
        let new = cfg(
            &["PATH=/new", "BASE=2", "EXTRA=x"],
            &["n1"],
            1,
            json!({"Cmd": ["bash"], "User": "root"}),
        );
        let image = cfg(
            &["PATH=/old", "BASE=1", "APP=yes"],
            &["o1", "o2", "a1"],
            3,
            json!({"Cmd": ["sh"], "User": "app"}),
        );
        let out = rebase_config(&image, &old, &new).unwrap();
        assert_eq!(out["rootfs"]["diff_ids"], json!(["n1", "a1"]));
        assert_eq!(out["history"].as_array().unwrap().len(), 2);
        assert_eq!(out["history"][1]["created_by"], "h2");
        assert_eq!(
            out["config"]["Cmd"],
            json!(["bash"]),
            "inherited → new base's"
        );
        assert_eq!(out["config"]["User"], "app", "set by the image → kept");
        assert_eq!(
            out["config"]["Env"],
            json!(["PATH=/new", "BASE=2", "APP=yes", "EXTRA=x"])
        );
    }

    #[test]
    fn an_unrelated_base_is_refused() {
        let image = cfg(&[], &["x1", "a1"], 2, json!({}));
        let old = cfg(&[], &["o1"], 1, json!({}));
        let err = check_prefix(&["X".into(), "A".into()], &["O".into()], &image, &old).unwrap_err();
        assert!(matches!(
            err,
            RebaseConfigError::NotAPrefix { index: 0, .. }
        ));
        let err = check_prefix(&["A".into()], &["O".into(), "P".into()], &image, &old).unwrap_err();
        assert!(matches!(err, RebaseConfigError::TooFewLayers { .. }));
        let err = check_prefix(&["O".into(), "A".into()], &["O".into()], &image, &old).unwrap_err();
        assert_eq!(err, RebaseConfigError::DiffIdMismatch(0));
    }
}
