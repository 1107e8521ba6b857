//! What a build reports of its RUN steps (`--json`), and where a dry run stopped when it
//! reached RUN steps no cache holds (it executes nothing): every RUN step it planned, and
//! the stages it could not plan. Plain data, so the error types can carry it.

/// What one RUN step did, for `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub stage: String,
    pub line: usize,
    pub instruction: String,
    /// `executed` or `cached` (`would run` in a dry run).
    pub status: &'static str,
    pub seconds: f64,
    pub layer: String,
    /// For a step that runs: which input of its key changed against what the registry's
    /// build cache recorded (`remote_cache::explain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miss: Option<String>,
    /// The step's key and key inputs, for the build cache artifact (never in `--json`).
    #[serde(skip)]
    pub recorded: Option<RecordedStep>,
    /// The cache mounts (id, platform) the step used when it ran, for
    /// `--cache-mounts registry`.
    #[serde(skip)]
    pub cache_mounts: Vec<(String, String)>,
}

/// One RUN step as its key was made: where it is, and each input's hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedStep {
    pub stage: String,
    /// Its place in the stage (0 for the first step).
    pub run: usize,
    pub instruction: String,
    pub key: String,
    /// Input name → a short hash of its value (`run::key::parts`).
    pub inputs: std::collections::BTreeMap<String, String>,
}

/// The status of a RUN step a dry run found in no cache.
pub const WOULD_RUN: &str = "would run";

/// Where a dry run stopped: every RUN step it planned (`cached` or `would run`), and the
/// stages it could not plan because they are built from one that would run.
#[derive(Debug)]
pub struct DryRunStop {
    pub file: String,
    pub steps: Vec<RunReport>,
    pub not_planned: Vec<String>,
}

impl DryRunStop {
    /// The steps a build would execute.
    pub fn would_run(&self) -> impl Iterator<Item = &RunReport> {
        self.steps.iter().filter(|s| s.status == WOULD_RUN)
    }
}

impl std::fmt::Display for DryRunStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self
            .would_run()
            .map(|s| format!("{}:{} `{}`", self.file, s.line, s.instruction))
            .collect();
        write!(
            f,
            "dry run: {} would run (no cache holds it); a dry run executes nothing, so the layers after it and the image are not known",
            lines.join(", ")
        )
    }
}
