//! Reading instruction arguments, shared by the instruction files: `--flag` validation
//! (BuildKit's `BFlags`), argument counts and word lists, and the value syntaxes Docker
//! checks: Go durations, `EXPOSE` port specs, `--chmod` modes and stop signals.
//!
//! Each check returns a small typed error; the instruction turns it into a
//! `DockerfileError` with the line (`loc.syntax(e.to_string())`). Nothing here expands
//! variables or knows which instruction takes which flag (that is the instruction's file).

use std::collections::BTreeMap;

use crate::dockerfile::{split_arg_words, Args, Flag, Instruction};
use crate::error::{DockerfileError, Loc};

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FlagKind {
    Bool,
    Str,
    /// May be repeated.
    Strings,
}

/// A flag written without a usable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FlagError {
    /// `--name` or `--name=` where a value is needed.
    #[error("missing a value on flag: --{0}")]
    MissingValue(String),
    /// `--name=v` on a boolean flag with `v` neither `true` nor `false`.
    #[error("expecting boolean value for flag --{name}, not: {value}")]
    NotBoolean {
        /// The flag.
        name: String,
        /// What was written.
        value: String,
    },
}

/// Validated flag values (booleans as "true"/"false").
pub(super) struct FlagValues {
    values: BTreeMap<String, Vec<String>>,
}

impl FlagValues {
    /// Check `ins.flags` against `allowed` (BuildKit's `BFlags.Parse`).
    pub(super) fn parse(
        ins: &Instruction,
        allowed: &[(&str, FlagKind)],
        loc: Loc<'_>,
    ) -> Result<Self, DockerfileError> {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for flag in &ins.flags {
            let Some(&(_, kind)) = allowed.iter().find(|(n, _)| *n == flag.name) else {
                return Err(unknown_flag(ins, flag, allowed, loc));
            };
            let entry = values.entry(flag.name.clone()).or_default();
            if !entry.is_empty() && kind != FlagKind::Strings {
                return Err(loc.syntax(format!("duplicate flag specified: --{}", flag.name)));
            }
            entry.push(flag_value(flag, kind).map_err(|e| loc.syntax(e.to_string()))?);
        }
        Ok(FlagValues { values })
    }

    /// A string flag's value; `None` if absent or empty.
    pub(super) fn string(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .filter(|v| !v.is_empty())
            .cloned()
    }

    pub(super) fn boolean(&self, name: &str) -> bool {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .is_some_and(|v| v == "true")
    }

    pub(super) fn used(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
}

/// Error unless the instruction has no flags (`ENV takes no flags`).
pub(super) fn no_flags(ins: &Instruction, loc: Loc<'_>) -> Result<(), DockerfileError> {
    FlagValues::parse(ins, &[], loc).map(drop)
}

fn flag_value(flag: &Flag, kind: FlagKind) -> Result<String, FlagError> {
    let name = &flag.name;
    match (kind, flag.value.as_deref()) {
        (FlagKind::Bool, None) => Ok("true".to_string()),
        (FlagKind::Bool, Some("")) => Err(FlagError::MissingValue(name.clone())),
        (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
            b @ ("true" | "false") => Ok(b.to_string()),
            _ => Err(FlagError::NotBoolean {
                name: name.clone(),
                value: v.to_string(),
            }),
        },
        (_, None) => Err(FlagError::MissingValue(name.clone())),
        (_, Some(v)) => Ok(v.to_string()),
    }
}

fn unknown_flag(
    ins: &Instruction,
    flag: &Flag,
    allowed: &[(&str, FlagKind)],
    loc: Loc<'_>,
) -> DockerfileError {
    let valid = if allowed.is_empty() {
        format!("{} takes no flags", ins.keyword)
    } else {
        let names: Vec<String> = allowed.iter().map(|(n, _)| format!("--{n}")).collect();
        format!("valid flags for {} are {}", ins.keyword, names.join(", "))
    };
    loc.syntax(format!("unknown flag: --{} ({valid})", flag.name))
}

/// The shell-form text of the arguments ("" for the JSON form).
pub(super) fn shell_text(ins: &Instruction) -> &str {
    match &ins.args {
        Args::Shell(s) => s,
        Args::Json(_) => "",
    }
}

/// JSON items, or the shell text split on blanks.
pub(super) fn word_list(args: &Args) -> Vec<String> {
    match args {
        Args::Json(items) => items.clone(),
        Args::Shell(text) => split_arg_words(text)
            .into_iter()
            .map(str::to_string)
            .collect(),
    }
}

pub(super) fn exactly_one(
    text: &str,
    keyword: &str,
    loc: Loc<'_>,
) -> Result<String, DockerfileError> {
    if text.is_empty() {
        return Err(loc.syntax(format!("{keyword} requires exactly one argument")));
    }
    Ok(text.to_string())
}

pub(super) fn at_least_one(
    words: Vec<String>,
    keyword: &str,
    loc: Loc<'_>,
) -> Result<Vec<String>, DockerfileError> {
    if words.is_empty() {
        return Err(loc.syntax(format!("{keyword} requires at least one argument")));
    }
    Ok(words)
}

/// Text that is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}")]
pub(super) struct InvalidDuration(String);

/// Go's `time.ParseDuration`: returns (negative, nanoseconds).
pub(super) fn parse_go_duration(text: &str) -> Result<(bool, u64), InvalidDuration> {
    let invalid = || InvalidDuration(text.to_string());
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok((negative, 0));
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (nanos, after) = duration_component(rest).ok_or_else(invalid)?;
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= 1 << 63)
            .ok_or_else(invalid)?;
        rest = after;
    }
    Ok((negative, total))
}

/// One `<number>[.<fraction>]<unit>` of a Go duration.
fn duration_component(text: &str) -> Option<(u64, &str)> {
    let int_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (int_part, rest) = text.split_at(int_len);
    let (frac_part, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let len = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            r.split_at(len)
        }
        None => ("", rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let unit_len = rest
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (unit, rest) = rest.split_at(unit_len);
    let scale: u128 = match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    };
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let mut nanos = int.checked_mul(scale)?;
    let digits = frac_part.get(..frac_part.len().min(18)).unwrap_or_default();
    if !digits.is_empty() {
        let frac: u128 = digits.parse().ok()?;
        let divisor = 10u128.checked_pow(u32::try_from(digits.len()).ok()?)?;
        nanos = nanos.checked_add(frac.checked_mul(scale)? / divisor)?;
    }
    u64::try_from(nanos).ok().map(|n| (n, rest))
}

/// An `EXPOSE` entry that is not `[ip:][hostport:]port[-end][/proto]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum PortError {
    /// Nothing before the `/proto`.
    #[error("invalid port {spec:?}: no port specified")]
    NoPort {
        /// The entry as expanded.
        spec: String,
    },
    /// A protocol other than tcp, udp and sctp.
    #[error("invalid port {spec:?}: invalid proto: {proto}")]
    Proto {
        /// The entry as expanded.
        spec: String,
        /// The protocol as written.
        proto: String,
    },
    /// Not a port number, or a range that ends before it starts.
    #[error("invalid port {spec:?}: invalid containerPort: {port}")]
    ContainerPort {
        /// The entry as expanded.
        spec: String,
        /// The port (or range) part.
        port: String,
    },
}

/// `[ip:][hostport:]port[-end][/proto]` → (start, end, proto).
pub(super) fn parse_port_spec(spec: &str) -> Result<(u16, u16, String), PortError> {
    let container = spec.rsplit(':').next().unwrap_or(spec);
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(PortError::NoPort {
            spec: spec.to_string(),
        });
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        _ => {
            return Err(PortError::Proto {
                spec: spec.to_string(),
                proto: proto.to_string(),
            })
        }
    };
    let invalid = || PortError::ContainerPort {
        spec: spec.to_string(),
        port: port.to_string(),
    };
    let number = |s: &str| s.parse::<u16>().map_err(|_| invalid());
    let (start, end) = match port.split_once('-') {
        Some((a, b)) if a != b => (number(a)?, number(b)?),
        Some((a, _)) => (number(a)?, number(a)?),
        None => (number(port)?, number(port)?),
    };
    if end < start {
        return Err(invalid());
    }
    Ok((start, end, proto))
}

/// A `--chmod` value regbuild cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ChmodError {
    /// Not up to 12 octal digits (a symbolic mode, say).
    #[error("--chmod={0}: only octal modes such as 0755 are supported (symbolic modes like u+x are not)")]
    NotOctal(String),
    /// Octal, but above 7777.
    #[error("--chmod={0}: mode is out of range (at most 7777)")]
    OutOfRange(String),
}

/// An octal mode such as `755` or `0644`.
pub(super) fn validate_chmod(mode: &str) -> Result<(), ChmodError> {
    let octal =
        !mode.is_empty() && mode.len() <= 12 && mode.chars().all(|c| ('0'..='7').contains(&c));
    if !octal {
        return Err(ChmodError::NotOctal(mode.to_string()));
    }
    match u32::from_str_radix(mode, 8) {
        Ok(m) if m <= 0o7777 => Ok(()),
        _ => Err(ChmodError::OutOfRange(mode.to_string())),
    }
}

/// A `STOPSIGNAL` value that names no signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SignalError {
    /// A number that is 0.
    #[error("invalid signal: 0")]
    Zero,
    /// Neither a number nor a Linux signal name.
    #[error("invalid signal: {0}")]
    Unknown(String),
}

/// A signal number or a Linux signal name, with or without `SIG`.
pub(super) fn validate_signal(signal: &str) -> Result<(), SignalError> {
    const NAMES: [&str; 34] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
    ];
    if let Ok(n) = signal.parse::<u32>() {
        return if n == 0 {
            Err(SignalError::Zero)
        } else {
            Ok(())
        };
    }
    let upper = signal.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |base: &str, sign: char| {
        name.strip_prefix(base).is_some_and(|r| {
            r.is_empty()
                || r.strip_prefix(sign)
                    .and_then(|n| n.parse::<u8>().ok())
                    .is_some_and(|n| (1..=15).contains(&n))
        })
    };
    if NAMES.contains(&name) || name == "XFSZ" || realtime("RTMIN", '+') || realtime("RTMAX", '-') {
        return Ok(());
    }
    Err(SignalError::Unknown(signal.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Ok((false, 3_723_500_000_000))
        );
        assert_eq!(parse_go_duration("0"), Ok((false, 0)));
        assert_eq!(parse_go_duration(".5ms"), Ok((false, 500_000)));
        assert_eq!(parse_go_duration("10\u{b5}s"), Ok((false, 10_000)));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("s").is_err());
        assert!(parse_go_duration("99999999999h").is_err());
    }
}
