//! The command line: argument parsing and output. Each subcommand lives in its own module
//! and returns an exit code; errors are printed once, here, as `error: …`, and mapped to the
//! exit-code convention of `exit`.

mod exit;
mod inspect;
mod lock;
mod metadata;
mod outdated;
mod output;
mod promote;
mod prune;
mod push;
mod rebase;
mod reference;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use regbuild_registry::retry::RetryPolicy;
use regbuild_registry::{CredentialSource, Registry, RegistryOptions, UploadStrategy};

#[derive(Parser, Debug)]
#[command(
    name = "regbuild",
    version,
    about = "Build, push and promote container images straight to an OCI registry, without a daemon"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Concurrent registry operations for the whole run.
    #[arg(long, global = true, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Reach this registry (`host` or `host:port`) over plain HTTP. Loopback registries always are.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// No progress output on stderr.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Attempts per request for transient failures (408, 429, 5xx, connection errors).
    #[arg(long, global = true, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retries: u32,
    /// Give up (exit 1) when the run takes longer than this many seconds.
    #[arg(long, global = true, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub deadline: u64,
    /// Blobs larger than this are uploaded in resumable chunks (`64MiB`, `1GB`, bytes).
    #[arg(long, global = true, default_value = "64MiB", value_parser = parse_size_arg)]
    pub chunk_threshold: u64,
    /// The chunk size for those uploads (raised to the registry's minimum).
    #[arg(long, global = true, default_value = "32MiB", value_parser = parse_chunk_size_arg)]
    pub chunk_size: u64,
    /// How blobs are sent: `auto` (known hosts get their documented method, refusals are
    /// learned), `stream` (one PATCH), `monolithic` (one PUT) or `chunked` (PATCH chunks).
    #[arg(long, global = true, default_value = "auto", value_name = "STRATEGY", value_parser = parse_strategy_arg)]
    pub upload_strategy: UploadStrategy,
    /// Take a registry's first refusal of an upload method (or a mount) as final instead of
    /// falling back to another method.
    #[arg(long, global = true)]
    pub no_upload_fallback: bool,
    /// More logging on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy an image or index, with its referrers, from SRC to DST (mounts on one registry).
    Promote(promote::PromoteArgs),
    /// Build a Dockerfile (RUN in a rootless sandbox, no daemon) and push the image straight to the registry.
    Push(Box<push::PushArgs>),
    /// Per-layer sizes, file counts, wasted bytes and setuid files of an image; `--ci` gates.
    Inspect(inspect::InspectArgs),
    /// Pin every base of a Dockerfile by digest in regbuild.lock.
    Lock(lock::LockArgs),
    /// Report bases whose tags moved since they were pinned (exit 1 when one did).
    Outdated(outdated::OutdatedArgs),
    /// Move an image onto a new base without rebuilding (layers mounted, nothing re-uploaded).
    Rebase(rebase::RebaseArgs),
    /// Free the local cache: unpacked layers, RUN layers and cache mounts unused for a while.
    Prune(prune::PruneArgs),
    /// Write the CLI reference (Markdown), man pages and shell completions under OUT.
    #[command(hide = true)]
    GenDocs(GenDocsArgs),
}

#[derive(Args, Debug)]
pub struct GenDocsArgs {
    /// Where: `reference/`, `man/` and `completions/` are written under it.
    #[arg(long, default_value = "docs")]
    pub out: std::path::PathBuf,
}

impl GlobalArgs {
    pub fn registry(&self) -> Registry {
        Registry::new(
            RegistryOptions {
                insecure: self.insecure_registry.clone(),
                jobs: usize::from(self.jobs),
                retry: RetryPolicy {
                    attempts: self.retries,
                    // Past what an Instant can hold: no deadline at all.
                    deadline: std::time::Instant::now()
                        .checked_add(std::time::Duration::from_secs(self.deadline)),
                    ..RetryPolicy::default()
                },
                chunk_threshold: self.chunk_threshold,
                chunk_size: self.chunk_size,
                upload_strategy: self.upload_strategy,
                upload_fallback: !self.no_upload_fallback,
            },
            CredentialSource::DockerConfig,
        )
    }
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let deadline = std::time::Duration::from_secs(cli.global.deadline);
    // `outdated`'s 1 means "a base moved" (CI rebuilds on it): every error of it is 2 (the
    // deadline's included), or an outage would look like a moved base.
    let failure = if matches!(cli.command, Command::Outdated(_)) {
        exit::BAD_INPUT
    } else {
        exit::FAILED
    };
    let result = runtime.block_on(async {
        let work = async {
            match cli.command {
                Command::Promote(args) => promote::run(&cli.global, args).await,
                Command::Push(args) => push::run(&cli.global, *args).await,
                Command::Inspect(args) => inspect::run(&cli.global, args).await,
                Command::Lock(args) => lock::run(&cli.global, args).await,
                Command::Outdated(args) => outdated::run(&cli.global, args).await,
                Command::Rebase(args) => rebase::run(&cli.global, args).await,
                Command::Prune(args) => prune::run(&cli.global, args).await,
                Command::GenDocs(args) => reference::write(&args.out)
                    .map(|()| ExitCode::SUCCESS)
                    .map_err(|e| format!("{}: {e}", args.out.display()).into()),
            }
        };
        // SIGINT/SIGTERM: running RUN steps are killed from a task of their own (the build
        // may be blocked in one), and the work is dropped, so temporary files are removed.
        let signalled = std::sync::Arc::new(tokio::sync::Notify::new());
        let notify = signalled.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            crate::builder::run::interrupt::interrupt_all();
            notify.notify_one();
            // The work stops at its next await; one blocked in a long unpack, diff or pack
            // would keep the user waiting. Past the grace, exit as SIGKILL would: steps die
            // with their helper, and the next run removes the scratch left behind.
            std::thread::spawn(|| {
                std::thread::sleep(INTERRUPT_GRACE);
                eprintln!(
                    "error: interrupted: still busy after {} s, exiting (the next run removes what this one left)",
                    INTERRUPT_GRACE.as_secs()
                );
                std::process::exit(i32::from(exit::INTERRUPTED));
            });
        });
        tokio::select! {
            r = tokio::time::timeout(deadline, work) => match r {
                Ok(r) => r,
                Err(_) => Err(format!("gave up after {} s (--deadline)", deadline.as_secs()).into()),
            },
            _ = signalled.notified() => Err(Box::new(exit::Interrupted) as CliError),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", elide_middle(&format!("{e:#}"), 4096));
            match exit::code_for(e.as_ref()) {
                exit::FAILED => ExitCode::from(failure),
                code => ExitCode::from(code),
            }
        }
    }
}

/// How long SIGINT/SIGTERM waits for the build to unwind (killed steps, removed scratch)
/// before the process exits anyway.
const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// `-v`: regbuild's own decisions (each blob exists / mounted from / uploaded, cache hits and
/// misses, retries and why, upload fallbacks); `-vv`: its debug lines too; `-vvv`: every
/// library's. Colour only when stderr is a terminal.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "warn,regbuild=info",
        2 => "info,regbuild=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REGBUILD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(verbose >= 2)
        .try_init();
}

/// Keeps a message readable when it quotes huge input (a 10 MB Dockerfile line): its start
/// (file:line) and its end (the reason) survive, the middle is elided.
fn elide_middle(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max / 2).collect();
    let tail_rev: String = text.chars().rev().take(max / 2).collect();
    let tail: String = tail_rev.chars().rev().collect();
    format!(
        "{head}…({} bytes elided)…{tail}",
        text.len() - head.len() - tail.len()
    )
}

fn parse_strategy_arg(
    s: &str,
) -> Result<UploadStrategy, regbuild_registry::strategy::UnknownStrategy> {
    s.parse()
}

fn parse_size_arg(s: &str) -> Result<u64, crate::inspect::analysis::InvalidSize> {
    crate::inspect::analysis::parse_size(s)
}

/// `--chunk-size`: 0 is refused, as clap refuses any bad value (exit 2, before any registry
/// is asked): chunks of nothing would never finish an upload.
fn parse_chunk_size_arg(s: &str) -> Result<u64, crate::inspect::analysis::InvalidSize> {
    match parse_size_arg(s)? {
        0 => Err(crate::inspect::analysis::InvalidSize {
            text: s.to_string(),
            why: "a chunk must be at least 1 byte (chunks of 0 bytes never finish an upload)",
        }),
        n => Ok(n),
    }
}

/// Errors a command reports: anything displayable, printed once by `main`.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;
