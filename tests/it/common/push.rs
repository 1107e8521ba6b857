//! `regbuild push` as the tests run it, and its `--json` report read back. Each function is
//! `#[track_caller]`, so the layer cache [`super::regbuild`] gives is the calling module's.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use super::{regbuild, run, stderr, stdout};

/// `regbuild push --no-progress -t TAG EXTRA… CTX`; it must succeed.
#[track_caller]
pub fn push(ctx: &Path, tag: &str, extra: &[&str]) -> Output {
    let mut args = vec!["push", "--no-progress", "-t", tag];
    args.extend_from_slice(extra);
    let ctx = ctx.to_str().unwrap().to_string();
    args.push(&ctx);
    run(&mut regbuild(&args))
}

/// `regbuild push --json -t TAG EXTRA… CTX`; it must succeed: the report and stderr.
#[track_caller]
pub fn push_json(ctx: &Path, tag: &str, extra: &[&str]) -> (Value, String) {
    push_json_to(ctx, &[tag], extra, None)
}

/// `regbuild push --json -t TAG… EXTRA… CTX` (it must succeed); with `cache`, that layer
/// cache directory instead of the calling module's. The report and stderr.
#[track_caller]
pub fn push_json_to<T: AsRef<str>>(
    ctx: &Path,
    tags: &[T],
    extra: &[&str],
    cache: Option<&Path>,
) -> (Value, String) {
    let mut args = vec!["push".to_string(), "--json".into()];
    for t in tags {
        args.push("-t".into());
        args.push(t.as_ref().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(ctx.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = regbuild(&argv);
    if let Some(dir) = cache {
        cmd.env("REGBUILD_CACHE", dir);
    }
    let out = run(&mut cmd);
    (json(&out), stderr(&out))
}

/// A command's stdout as JSON; a failure shows what it printed instead.
pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}
