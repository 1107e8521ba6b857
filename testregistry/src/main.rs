//! Runs the test registry standalone (demos, manual testing) until Ctrl-C.
//!
//! ```text
//! testregistry [--addr 127.0.0.1:5000] [--auth-user user:pass]... [--token-auth]
//!              [--anonymous-pull] [--redirect-blobs] [--no-referrers]
//!              [--profile NAME] [--max-request-body BYTES] [--log-requests]
//! ```
//! `--log-requests` prints the request log on stdout when stopped (Ctrl-C), one request a
//! line: `METHOD PATH STATUS BYTES_RECEIVED CONTENT_RANGE` (`-` when none).
//! `--profile` takes a `Profile` name (`distribution`, `gar`, `ghcr`, `ecr`,
//! `jfrog`, `dockerhub`, `quay`, `harbor`) and applies its default knobs;
//! `--max-request-body` overrides the request body cap.
//! Prints `testregistry listening on http://ADDR` once ready.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use testregistry::{Auth, Config, Profile, TestRegistry};

const USAGE: &str = "usage: testregistry [--addr HOST:PORT] [--auth-user USER:PASS]... \
[--token-auth] [--anonymous-pull] [--redirect-blobs] [--no-referrers] \
[--profile NAME] [--max-request-body BYTES] [--log-requests]";

struct Args {
    addr: SocketAddr,
    config: Config,
    log_requests: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 5000));
    let mut users = Vec::new();
    let mut token = false;
    let mut anonymous_pull = false;
    let mut profile = Profile::default();
    let mut max_request_body = None;
    let mut redirect_blob_gets = false;
    let mut no_referrers = false;
    let mut log_requests = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                let v = args.next().ok_or("--addr needs a value")?;
                addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
            }
            "--auth-user" => {
                let v = args.next().ok_or("--auth-user needs USER:PASS")?;
                let (u, p) = v.split_once(':').ok_or("--auth-user needs USER:PASS")?;
                users.push((u.to_string(), p.to_string()));
            }
            "--token-auth" => token = true,
            "--anonymous-pull" => anonymous_pull = true,
            "--redirect-blobs" => redirect_blob_gets = true,
            "--no-referrers" => no_referrers = true,
            "--log-requests" => log_requests = true,
            "--profile" => {
                let v = args.next().ok_or("--profile needs a NAME")?;
                profile = v.parse().map_err(|e| format!("--profile: {e}\n{USAGE}"))?;
            }
            "--max-request-body" => {
                let v = args.next().ok_or("--max-request-body needs BYTES")?;
                let bytes = v
                    .parse()
                    .map_err(|e| format!("--max-request-body {v}: {e}"))?;
                max_request_body = Some(bytes);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    // The profile's defaults first, so explicit flags win in any order.
    let mut config = Config::with_profile(profile);
    config.redirect_blob_gets |= redirect_blob_gets;
    if no_referrers {
        config.referrers_api = false;
    }
    if max_request_body.is_some() {
        config.max_request_body = max_request_body;
    }
    config.auth = match (token, users.is_empty()) {
        (true, _) => Auth::Token {
            users,
            anonymous_pull,
            token_ttl_secs: 300,
        },
        (false, false) => Auth::Basic { users },
        (false, true) => Auth::None,
    };
    Ok(Args {
        addr,
        config,
        log_requests,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let registry = match TestRegistry::start_on(args.addr, args.config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("testregistry: cannot listen on {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    // Scripts wait for this exact line.
    let _ = writeln!(out, "testregistry listening on http://{}", registry.addr());
    let _ = out.flush();
    let _ = tokio::signal::ctrl_c().await;
    if args.log_requests {
        for r in registry.requests() {
            let range = r.content_range.as_deref().unwrap_or("-");
            let _ = writeln!(
                out,
                "{} {} {} {} {range}",
                r.method, r.path, r.status, r.bytes_received
            );
        }
        let _ = out.flush();
    }
    registry.shutdown();
    ExitCode::SUCCESS
}
