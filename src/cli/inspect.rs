//! `regbuild inspect IMAGE` (being written).

use std::process::ExitCode;

use clap::Args;

use super::{CliError, GlobalArgs};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image to inspect.
    pub image: String,
}

pub async fn run(_global: &GlobalArgs, args: InspectArgs) -> Result<ExitCode, CliError> {
    Err(format!("inspect {}: not available yet", args.image).into())
}
