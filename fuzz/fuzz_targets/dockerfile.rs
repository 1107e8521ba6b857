//! The Dockerfile front end: `dockerfile::parse`, then `stages::evaluate` on
//! whatever parses, and the same text as a `.dockerignore` (parse, then
//! matching every line of the input as a path against it).
//!
//! Any error is fine; a panic, a hang or runaway memory is a bug.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use regbuild_frontend::dockerfile;
use regbuild_context::dockerignore::DockerIgnore;
use regbuild_paths::clean::clean_path;
use regbuild_frontend::stages::{self, BuildArgs, Platform};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok(df) = dockerfile::parse(&text, Path::new("Dockerfile")) {
        let args = BuildArgs::new(Platform::new("linux", "amd64", None));
        let _ = stages::evaluate(&df, &args, &mut |_image: &str| Ok(vec![]));
        // A base image with an environment of its own takes other paths
        // (PATH defaulting, ENV overrides).
        let _ = stages::evaluate(&df, &args, &mut |image: &str| {
            Ok(vec![
                ("PATH".to_string(), "/bin".to_string()),
                ("IMAGE".to_string(), image.to_string()),
            ])
        });
    }

    if let Ok(ignore) = DockerIgnore::parse(&text, Path::new(".dockerignore")) {
        let _ = ignore.is_empty();
        let _ = ignore.patterns();
        for line in text.lines().take(64) {
            let path = clean_path(line);
            let _ = ignore.is_excluded(&path);
            let _ = ignore.may_include_below(&path);
        }
        for path in [
            "",
            ".",
            "Dockerfile",
            "src/main.rs",
            "a/b/c/d",
            ".git/config",
        ] {
            let _ = ignore.is_excluded(path);
            let _ = ignore.may_include_below(path);
        }
    }
});
