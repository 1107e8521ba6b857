//! HEALTHCHECK: `NONE`, or `CMD` (exec or shell form) with the `--interval`, `--timeout`,
//! `--start-period`, `--start-interval` (Go durations) and `--retries` flags, into a
//! [`Healthcheck`]. Nothing is expanded.

use std::time::Duration;

use super::cmd::{CmdContext, CmdKind};
use crate::dockerfile::{Args, Instruction};
use crate::error::{DockerfileError, Loc};
use crate::stages::args::{parse_go_duration, FlagKind, FlagValues, InvalidDuration};
use crate::stages::model::{Healthcheck, StepKind};

/// A HEALTHCHECK flag value Docker refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum HealthcheckFlagError {
    /// A duration flag that is not a Go duration.
    #[error("--{flag}: {source}")]
    Duration {
        /// The flag.
        flag: String,
        /// Why the value is no duration.
        source: InvalidDuration,
    },
    /// A duration flag between 0 and 1ms (or negative).
    #[error("Interval \"{0}\" cannot be less than 1ms")]
    TooShort(String),
    /// `--retries` that is not a number.
    #[error("--retries: invalid number {0:?}")]
    RetriesNotNumber(String),
    /// `--retries` below 0.
    #[error("--retries cannot be negative ({0})")]
    RetriesNegative(i32),
}

pub(super) fn parse(ins: &Instruction, ctx: &CmdContext<'_>) -> Result<CmdKind, DockerfileError> {
    Ok(CmdKind::ready(StepKind::Healthcheck(parse_healthcheck(
        ins, ctx.loc,
    )?)))
}

fn parse_healthcheck(ins: &Instruction, loc: Loc<'_>) -> Result<Healthcheck, DockerfileError> {
    let (kind, json, rest) = match &ins.args {
        Args::Json(items) => match items.split_first() {
            Some((kind, rest)) => (kind.clone(), Some(rest.to_vec()), String::new()),
            None => (String::new(), None, String::new()),
        },
        Args::Shell(text) => {
            let (kind, rest) = text
                .split_once(|c: char| c.is_ascii_whitespace())
                .unwrap_or((text, ""));
            (kind.to_string(), None, rest.trim_start().to_string())
        }
    };
    match kind.to_ascii_uppercase().as_str() {
        "" => Err(loc.syntax("HEALTHCHECK requires at least one argument")),
        "NONE" if json.as_ref().is_some_and(|j| !j.is_empty()) || !rest.is_empty() => {
            Err(loc.syntax("HEALTHCHECK NONE takes no arguments"))
        }
        "NONE" => Ok(Healthcheck {
            test: vec!["NONE".to_string()],
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        }),
        "CMD" => healthcheck_cmd(ins, json, rest, loc),
        _ => Err(loc.syntax(format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)"))),
    }
}

fn healthcheck_cmd(
    ins: &Instruction,
    json: Option<Vec<String>>,
    rest: String,
    loc: Loc<'_>,
) -> Result<Healthcheck, DockerfileError> {
    let flags = FlagValues::parse(
        ins,
        &[
            ("interval", FlagKind::Str),
            ("timeout", FlagKind::Str),
            ("start-period", FlagKind::Str),
            ("start-interval", FlagKind::Str),
            ("retries", FlagKind::Str),
        ],
        loc,
    )?;
    let test = match json {
        Some(items) if items.is_empty() => {
            return Err(loc.syntax("Missing command after HEALTHCHECK CMD"))
        }
        Some(items) => std::iter::once("CMD".to_string()).chain(items).collect(),
        None if rest.is_empty() => return Err(loc.syntax("Missing command after HEALTHCHECK CMD")),
        None => vec!["CMD-SHELL".to_string(), rest],
    };
    let syntax = |e: HealthcheckFlagError| loc.syntax(e.to_string());
    let interval = |name: &str| -> Result<Option<Duration>, DockerfileError> {
        parse_interval(name, flags.string(name).as_deref()).map_err(syntax)
    };
    Ok(Healthcheck {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries: parse_retries(flags.string("retries").as_deref()).map_err(syntax)?,
    })
}

/// A HEALTHCHECK duration flag: Go duration syntax, 0 or at least 1ms.
fn parse_interval(
    name: &str,
    value: Option<&str>,
) -> Result<Option<Duration>, HealthcheckFlagError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let (negative, nanos) =
        parse_go_duration(value).map_err(|source| HealthcheckFlagError::Duration {
            flag: name.to_string(),
            source,
        })?;
    if nanos != 0 && (negative || nanos < 1_000_000) {
        return Err(HealthcheckFlagError::TooShort(name.to_string()));
    }
    Ok(Some(Duration::from_nanos(nanos)))
}

fn parse_retries(value: Option<&str>) -> Result<Option<u32>, HealthcheckFlagError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let n: i32 = value
        .parse()
        .map_err(|_| HealthcheckFlagError::RetriesNotNumber(value.to_string()))?;
    u32::try_from(n)
        .map(Some)
        .map_err(|_| HealthcheckFlagError::RetriesNegative(n))
}

#[cfg(test)]
mod tests {
    use crate::stages::model::StepKind;
    use crate::stages::test_support::*;

    #[test]
    fn healthcheck_shell_and_none() {
        let b =
            eval("FROM scratch\nHEALTHCHECK CMD curl -f http://x || exit 1\nHEALTHCHECK none\n");
        let k = kinds(&b);
        let StepKind::Healthcheck(h) = &k[0] else {
            panic!()
        };
        assert_eq!(
            h.test,
            strings(&["CMD-SHELL", "curl -f http://x || exit 1"])
        );
        let StepKind::Healthcheck(h) = &k[1] else {
            panic!()
        };
        assert_eq!(h.test, strings(&["NONE"]));
        assert!(eval_err("FROM scratch\nHEALTHCHECK NONE x\n")
            .ends_with("HEALTHCHECK NONE takes no arguments"));
        assert!(eval_err("FROM scratch\nHEALTHCHECK CMD\n")
            .ends_with("Missing command after HEALTHCHECK CMD"));
        assert!(eval_err("FROM scratch\nHEALTHCHECK --interval=1us CMD x\n")
            .ends_with("cannot be less than 1ms"));
        assert!(eval_err("FROM scratch\nHEALTHCHECK --retries=-1 CMD x\n")
            .ends_with("--retries cannot be negative (-1)"));
        assert!(eval_err("FROM scratch\nHEALTHCHECK WAT x\n").contains("Unknown type \"WAT\""));
    }
}
