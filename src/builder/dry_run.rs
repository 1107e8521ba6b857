//! What a dry run reports when it reaches RUN steps no cache holds (it executes nothing):
//! every RUN step it planned, and the stages it could not plan.

/// Where a dry run stopped: every RUN step it planned (`cached` or `would run`), and the
/// stages it could not plan because they are built from one that would run.
#[derive(Debug)]
pub struct DryRunStop {
    pub file: String,
    pub steps: Vec<crate::builder::run::RunReport>,
    pub not_planned: Vec<String>,
}

impl DryRunStop {
    /// The steps a build would execute.
    pub fn would_run(&self) -> impl Iterator<Item = &crate::builder::run::RunReport> {
        self.steps
            .iter()
            .filter(|s| s.status == crate::builder::run::WOULD_RUN)
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
