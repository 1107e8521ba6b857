//! An image config (OCI image-spec `config.json`, Docker's is the same shape) edited in
//! place as JSON, so fields this tool does not know (from the base) survive untouched. The
//! config side of the image model (`super::model`): appending layers, rebasing.

use serde_json::{json, Map, Value};

use crate::manifest::canonical_json;

/// Why bytes are not a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("config is not a JSON object")]
    NotAnObject,
}

/// A config's `Env` list (`["K=V", …]`) as (name, value) pairs, in order.
fn env_pairs(env: Option<&Value>) -> Vec<(String, String)> {
    env.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.to_string(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The config of the image being built.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    value: Value,
    /// CMD was set by this build (an ENTRYPOINT resets an inherited CMD, as Docker does).
    cmd_set_here: bool,
}

/// `1970-01-01T00:00:00Z`-style timestamp for `created` (RFC 3339, UTC).
pub fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl ImageConfig {
    /// The config of `FROM scratch` for a platform.
    pub fn scratch(os: &str, architecture: &str, variant: Option<&str>) -> ImageConfig {
        let mut value = json!({
            "architecture": architecture,
            "os": os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        });
        if let Some(v) = variant {
            value["variant"] = json!(v);
        }
        ImageConfig {
            value,
            cmd_set_here: false,
        }
    }

    /// A base image's config. Anything but a JSON object is refused.
    pub fn from_base(bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
        let mut value: Value = serde_json::from_slice(bytes).map_err(ConfigError::NotJson)?;
        let obj = value.as_object_mut().ok_or(ConfigError::NotAnObject)?;
        obj.entry("config").or_insert_with(|| json!({}));
        if !obj.get("config").is_some_and(Value::is_object) {
            obj.insert("config".into(), json!({}));
        }
        let rootfs = obj
            .entry("rootfs")
            .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
        if !rootfs.get("diff_ids").is_some_and(Value::is_array) {
            *rootfs = json!({"type": "layers", "diff_ids": []});
        }
        if !obj.get("history").is_some_and(Value::is_array) {
            obj.insert("history".into(), json!([]));
        }
        // A base's container-only fields describe the base's own build, not ours.
        for k in [
            "container",
            "container_config",
            "docker_version",
            "id",
            "parent",
        ] {
            obj.remove(k);
        }
        Ok(ImageConfig {
            value,
            cmd_set_here: false,
        })
    }

    /// A config as it was written (an image's own, to rebase it): nothing is added or
    /// removed. Anything but a JSON object is refused.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
        let value: Value = serde_json::from_slice(bytes).map_err(ConfigError::NotJson)?;
        if !value.is_object() {
            return Err(ConfigError::NotAnObject);
        }
        Ok(ImageConfig {
            value,
            cmd_set_here: false,
        })
    }

    fn config_mut(&mut self) -> &mut Map<String, Value> {
        if !self.value["config"].is_object() {
            self.value["config"] = json!({});
        }
        match self.value["config"].as_object_mut() {
            Some(m) => m,
            None => unreachable!("config was just made an object"),
        }
    }

    fn config(&self) -> Option<&Map<String, Value>> {
        self.value.get("config").and_then(Value::as_object)
    }

    pub fn os(&self) -> &str {
        self.value["os"].as_str().unwrap_or("linux")
    }

    pub fn architecture(&self) -> &str {
        self.value["architecture"].as_str().unwrap_or("amd64")
    }

    pub fn variant(&self) -> Option<&str> {
        self.value["variant"].as_str()
    }

    /// A top-level string field (`os`, `architecture`, …) when the config has it.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.value.get(name).and_then(Value::as_str)
    }

    /// `Env` as (name, value) pairs, in order.
    pub fn env(&self) -> Vec<(String, String)> {
        env_pairs(self.config().and_then(|c| c.get("Env")))
    }

    pub fn set_env(&mut self, name: &str, value: &str) {
        self.set_envs(&[(name.to_string(), value.to_string())]);
    }

    /// Sets several variables at once (one ENV instruction): linear in the size of Env,
    /// however many variables one instruction sets.
    pub fn set_envs(&mut self, pairs: &[(String, String)]) {
        let mut env = self.env();
        let mut index: std::collections::HashMap<String, usize> = env
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        for (name, value) in pairs {
            match index.get(name) {
                Some(&i) => env[i].1 = value.clone(),
                None => {
                    index.insert(name.clone(), env.len());
                    env.push((name.clone(), value.clone()));
                }
            }
        }
        let list: Vec<Value> = env
            .into_iter()
            .map(|(k, v)| json!(format!("{k}={v}")))
            .collect();
        self.config_mut().insert("Env".into(), Value::Array(list));
    }

    pub fn set_label(&mut self, name: &str, value: &str) {
        let c = self.config_mut();
        let labels = c.entry("Labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels[name] = json!(value);
    }

    pub fn set_workdir(&mut self, dir: &str) {
        self.config_mut().insert("WorkingDir".into(), json!(dir));
    }

    /// The working directory, absolute and clean: a base image's `WorkingDir` is untrusted
    /// (`/../../tmp` must not name anything above `/`), and relative is taken from `/`.
    pub fn workdir(&self) -> String {
        clean_image_path(
            self.config()
                .and_then(|c| c.get("WorkingDir"))
                .and_then(Value::as_str)
                .unwrap_or("/"),
        )
    }

    pub fn set_user(&mut self, user: &str) {
        self.config_mut().insert("User".into(), json!(user));
    }

    pub fn user(&self) -> Option<String> {
        self.config()
            .and_then(|c| c.get("User"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// `EXPOSE 80` → `80/tcp`, `EXPOSE 53/udp` kept.
    pub fn expose(&mut self, port: &str) {
        let key = if port.contains('/') {
            port.to_ascii_lowercase()
        } else {
            format!("{port}/tcp")
        };
        self.set_in_object("ExposedPorts", &key);
    }

    pub fn add_volume(&mut self, path: &str) {
        self.set_in_object("Volumes", path);
    }

    fn set_in_object(&mut self, field: &str, key: &str) {
        let c = self.config_mut();
        let obj = c.entry(field).or_insert_with(|| json!({}));
        if !obj.is_object() {
            *obj = json!({});
        }
        obj[key] = json!({});
    }

    pub fn set_entrypoint(&mut self, argv: Vec<String>) {
        let inherited_cmd = !self.cmd_set_here;
        let c = self.config_mut();
        c.insert("Entrypoint".into(), json!(argv));
        if inherited_cmd {
            c.remove("Cmd");
        }
    }

    pub fn set_cmd(&mut self, argv: Vec<String>) {
        self.cmd_set_here = true;
        self.config_mut().insert("Cmd".into(), json!(argv));
    }

    pub fn set_stop_signal(&mut self, signal: &str) {
        self.config_mut().insert("StopSignal".into(), json!(signal));
    }

    /// Docker's `Healthcheck` field (durations in nanoseconds).
    pub fn set_healthcheck(&mut self, healthcheck: Value) {
        self.config_mut().insert("Healthcheck".into(), healthcheck);
    }

    pub fn set_shell(&mut self, shell: Vec<String>) {
        self.config_mut().insert("Shell".into(), json!(shell));
    }

    pub fn shell(&self) -> Vec<String> {
        self.config()
            .and_then(|c| c.get("Shell"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .filter(|v: &Vec<String>| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// MAINTAINER (deprecated in Docker, still honoured): the config's `author`.
    pub fn set_author(&mut self, author: &str) {
        self.value["author"] = json!(author);
    }

    pub fn add_onbuild(&mut self, instruction: &str) {
        let c = self.config_mut();
        let list = c.entry("OnBuild").or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        if let Some(a) = list.as_array_mut() {
            a.push(json!(instruction));
        }
    }

    /// The base's ONBUILD triggers, which Docker runs in the child; cleared in the child.
    pub fn take_onbuild(&mut self) -> Vec<String> {
        self.config_mut()
            .remove("OnBuild")
            .and_then(|v| v.as_array().cloned())
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Appends a layer's diff_id and its history entry.
    /// How many layers `rootfs.diff_ids` lists.
    pub fn diff_id_count(&self) -> usize {
        self.value["rootfs"]["diff_ids"]
            .as_array()
            .map_or(0, |a| a.len())
    }

    /// Replaces the diff_id at `index` (a layer whose digest was known only later).
    pub fn set_diff_id(&mut self, index: usize, diff_id: &str) {
        if let Some(slot) = self.value["rootfs"]["diff_ids"]
            .as_array_mut()
            .and_then(|a| a.get_mut(index))
        {
            *slot = json!(diff_id);
        }
    }

    pub fn push_layer(&mut self, diff_id: &str, created: &str, created_by: &str) {
        if let Some(ids) = self.value["rootfs"]["diff_ids"].as_array_mut() {
            ids.push(json!(diff_id));
        }
        self.push_history(created, created_by, false);
    }

    /// A history entry for an instruction that made no layer.
    pub fn push_history(&mut self, created: &str, created_by: &str, empty_layer: bool) {
        let mut entry = json!({"created": created, "created_by": created_by});
        if empty_layer {
            entry["empty_layer"] = json!(true);
        }
        if let Some(h) = self.value["history"].as_array_mut() {
            h.push(entry);
        }
    }

    /// Replaces every layer after the first `keep` by one layer `diff_id`: the history entries
    /// of the replaced layers stay (as empty layers) and one entry names the squash.
    pub fn squash_layers(&mut self, keep: usize, diff_id: &str, created: &str, created_by: &str) {
        if let Some(ids) = self.value["rootfs"]["diff_ids"].as_array_mut() {
            ids.truncate(keep);
            ids.push(json!(diff_id));
        }
        if let Some(h) = self.value["history"].as_array_mut() {
            let mut layers_seen = 0;
            for entry in h.iter_mut() {
                let empty = entry["empty_layer"].as_bool().unwrap_or(false);
                if empty {
                    continue;
                }
                if layers_seen >= keep {
                    entry["empty_layer"] = json!(true);
                }
                layers_seen += 1;
            }
        }
        self.push_history(created, created_by, false);
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.value["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn set_created(&mut self, created: &str) {
        self.value["created"] = json!(created);
    }

    /// The config side of `mutate.Append`: `diff_ids` appended, and `layers` history entries
    /// `created_by`, at this config's own `created`.
    pub fn append_layers(&mut self, diff_ids: &[String], layers: usize, created_by: &str) {
        let created = self.value.get("created").cloned().unwrap_or(Value::Null);
        if let Some(ids) = self.value["rootfs"]["diff_ids"].as_array_mut() {
            ids.extend(diff_ids.iter().map(|id| json!(id)));
        }
        if let Some(h) = self.value["history"].as_array_mut() {
            h.extend((0..layers).map(|_| json!({"created": created, "created_by": created_by})));
        }
    }

    /// The config side of `mutate.Rebase`, for an image whose layers start with `old`'s: the
    /// old base's diff_ids and history entries are replaced by `new`'s; settings the image
    /// inherited unchanged from the old base take the new base's value, settings the image
    /// set itself are kept.
    pub fn rebase(&self, old: &ImageConfig, new: &ImageConfig) -> ImageConfig {
        let mut value = self.value.clone();
        let mut ids = new.diff_ids();
        ids.extend(self.diff_ids().into_iter().skip(old.diff_ids().len()));
        value["rootfs"] = json!({"type": "layers", "diff_ids": ids});
        let mut history = new.history();
        history.extend(self.history().into_iter().skip(old.history().len()));
        value["history"] = Value::Array(history);
        value["config"] = Value::Object(merge_settings(
            self.value.get("config"),
            old.value.get("config"),
            new.value.get("config"),
        ));
        ImageConfig {
            value,
            cmd_set_here: false,
        }
    }

    fn history(&self) -> Vec<Value> {
        self.value
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// The config as bytes (`canonical_json`: same value, same bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical_json(&self.value)
    }

    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// The image's settings (`config`) on a new base: per setting, inherited unchanged from the
/// old base → the new base's value; set by the image → kept. `Env` is merged per variable.
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

/// `path` inside an image, absolute and clean: no `.`, no `..` above `/`, no empty or
/// trailing components (`app/./x/../y/` is `/app/y`, `/../../tmp` is `/tmp`).
pub fn clean_image_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_base_s_working_directory_never_names_anything_above_the_root() {
        let with = |w: &str| {
            let bytes = serde_json::to_vec(&serde_json::json!({"config": {"WorkingDir": w}}));
            ImageConfig::from_base(&bytes.unwrap()).unwrap().workdir()
        };
        assert_eq!(with("/../../../../tmp/x"), "/tmp/x");
        assert_eq!(with("/app/./sub/../bin/"), "/app/bin");
        assert_eq!(with("app"), "/app");
        assert_eq!(with(""), "/");
        assert_eq!(with(".."), "/");
    }

    use super::*;

    #[test]
    fn rfc3339_of_known_epochs() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn env_is_replaced_in_place_and_appended() {
        let mut c = ImageConfig::from_base(br#"{"config":{"Env":["PATH=/bin","A=1"]}}"#).unwrap();
        c.set_env("PATH", "/bin:/app");
        c.set_env("B", "2");
        assert_eq!(
            c.env(),
            vec![
                ("PATH".into(), "/bin:/app".into()),
                ("A".into(), "1".into()),
                ("B".into(), "2".into())
            ]
        );
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_but_not_one_set_here() {
        let mut c = ImageConfig::from_base(br#"{"config":{"Cmd":["sh"]}}"#).unwrap();
        c.set_entrypoint(vec!["/app".into()]);
        assert!(c.value()["config"].get("Cmd").is_none());
        c.set_cmd(vec!["--help".into()]);
        c.set_entrypoint(vec!["/app2".into()]);
        assert_eq!(c.value()["config"]["Cmd"], json!(["--help"]));
    }

    #[test]
    fn base_fields_unknown_to_us_survive() {
        let c = ImageConfig::from_base(br#"{"config":{},"author":"x","moby.extra":1}"#).unwrap();
        assert_eq!(c.value()["author"], "x");
        assert_eq!(c.value()["moby.extra"], 1);
    }

    #[test]
    fn non_object_configs_are_refused() {
        assert!(ImageConfig::from_base(b"[]").is_err());
        assert!(ImageConfig::from_base(b"nope").is_err());
    }

    fn with(env: &[&str], ids: &[&str], hist: usize, extra: Value) -> ImageConfig {
        let mut c = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": env},
            "rootfs": {"type": "layers", "diff_ids": ids},
            "history": (0..hist).map(|i| json!({"created_by": format!("h{i}")})).collect::<Vec<_>>(),
        });
        if let (Some(c), Some(e)) = (c["config"].as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        ImageConfig::parse(&serde_json::to_vec(&c).unwrap()).unwrap()
    }

    #[test]
    fn rebase_gives_the_new_base_layers_history_and_inherited_settings() {
        let old = with(
            &["PATH=/old", "BASE=1"],
            &["o1", "o2"],
            2,
            json!({"Cmd": ["sh"], "User": "root"}),
        );
        let new = with(
            &["PATH=/new", "BASE=2", "EXTRA=x"],
            &["n1"],
            1,
            json!({"Cmd": ["bash"], "User": "root"}),
        );
        let image = with(
            &["PATH=/old", "BASE=1", "APP=yes"],
            &["o1", "o2", "a1"],
            3,
            json!({"Cmd": ["sh"], "User": "app"}),
        );
        let out = image.rebase(&old, &new);
        let out = out.value();
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
    fn append_layers_adds_diff_ids_and_one_history_entry_per_layer() {
        let mut c = with(&[], &["a"], 1, json!({}));
        c.set_created("2023-11-14T22:13:20Z");
        c.append_layers(&["b".into(), "c".into()], 2, "debug");
        assert_eq!(c.diff_ids(), ["a", "b", "c"]);
        assert_eq!(
            c.value()["history"][2],
            json!({"created": "2023-11-14T22:13:20Z", "created_by": "debug"})
        );
    }

    #[test]
    fn parse_keeps_everything_from_base_does_not() {
        let bytes = br#"{"container":"x","id":"y"}"#;
        assert_eq!(ImageConfig::parse(bytes).unwrap().to_bytes(), bytes);
        assert!(ImageConfig::parse(b"[]").is_err());
        assert!(ImageConfig::from_base(bytes)
            .unwrap()
            .value()
            .get("container")
            .is_none());
    }
}
