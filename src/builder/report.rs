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
