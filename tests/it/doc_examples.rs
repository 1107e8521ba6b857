//! The documentation cannot lie: every block marked `sh runnable` in README.md and docs/
//! runs against a loopback registry (`scripts/doc-examples.sh`) and must succeed.

use std::process::Command;

use crate::common::*;

#[test]
fn every_runnable_example_of_the_documentation_runs() {
    let out = Command::new(repo_root().join("scripts/doc-examples.sh"))
        .env("REGBUILD", env!("CARGO_BIN_EXE_regbuild"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let ran: usize = text
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or(0);
    assert!(ran >= 4, "the examples ran: {text}");
}
