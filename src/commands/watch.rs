//! `mfactl watch`: check the options, set up the log, and run the daemon (`crate::watch`) or one
//! reconcile (`--once`).

use super::Ctx;
use crate::cli::LogFormat;
use crate::error::{CmdResult, Failure};
use crate::watch::{self, reconcile::Settings, Daemon};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Options {
    pub paths: Vec<PathBuf>,
    pub interval: String,
    pub once: bool,
    pub detect_only: bool,
    pub credentials_dir: Option<PathBuf>,
    pub metrics_addr: Option<String>,
    pub log_format: LogFormat,
    pub signers: Option<PathBuf>,
}

/// Longer intervals are a mistake, and timers that far out overflow the clock arithmetic.
const MAX_INTERVAL_SECS: i64 = 366 * 86_400;

/// The daemon waits at most this long for the store's write lock per attempt, then retries with
/// backoff, so that SIGTERM is never held up for a whole `--lock-timeout`.
const DAEMON_LOCK_WAIT: Duration = Duration::from_secs(2);

pub fn run(ctx: Ctx, opts: Options) -> CmdResult {
    if ctx.actor.is_none() && !opts.detect_only && opts.signers.is_none() {
        return Err(Failure::invalid(
            "watch applies changes, so it needs an actor: pass --actor ID or set MFACTL_ACTOR \
             (or use --detect-only to report drift without applying)",
        ));
    }
    let secs = crate::policy::parse_duration(&opts.interval)
        .map_err(|m| Failure::invalid(format!("--interval: {m}")))?;
    if !(1..=MAX_INTERVAL_SECS).contains(&secs) {
        return Err(Failure::invalid(format!(
            "--interval {}: must be between 1s and 366d",
            crate::util::escape_text(&opts.interval)
        )));
    }
    if let Some(dir) = &opts.credentials_dir {
        if !dir.is_dir() {
            return Err(Failure::invalid(format!(
                "--credentials-dir {}: not an existing directory; create it (mode 0700) first",
                dir.display()
            )));
        }
    }
    // Fail at startup on what no reconcile could fix: a missing or foreign store, bad policies.
    let st = ctx.open_store()?;
    let policy = ctx.policy()?;
    let unprotected = crate::ops::load::unprotected_warning(&st, &policy)?;
    drop(st);
    init_logging(&ctx, opts.log_format);
    watch::log_panics();
    // Once, at start: every reconcile rereads the policies, but a warning each --interval
    // would drown the log; restart the daemon after changing them.
    if let Some(w) = unprotected {
        tracing::warn!("{w}");
    }

    let paths = if opts.paths.is_empty() {
        vec![PathBuf::from("manifests")]
    } else {
        opts.paths
    };
    let settings = Settings {
        paths,
        policies: ctx
            .policies
            .clone()
            .or_else(|| Some(PathBuf::from("policies")).filter(|d| d.is_dir())),
        detect_only: opts.detect_only,
        credentials_dir: opts.credentials_dir,
        signers: opts.signers,
        lock_wait: if opts.once {
            ctx.lock_timeout
        } else {
            ctx.lock_timeout.min(DAEMON_LOCK_WAIT)
        },
    };
    if opts.once {
        return Ok(watch::once(&ctx.settings, &settings));
    }
    let daemon = Daemon {
        interval: Duration::from_secs(secs as u64),
        metrics_addr: opts.metrics_addr,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::error(format!("cannot start the runtime: {e}")))?;
    let result = rt.block_on(watch::run(
        Arc::new(ctx.settings.clone()),
        Arc::new(settings),
        daemon,
    ));
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Logs go to stderr, as text (coloured on a terminal) or one JSON object per line.
fn init_logging(ctx: &Ctx, format: LogFormat) {
    let level = if ctx.quiet {
        tracing::Level::WARN
    } else if ctx.verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(ctx.style.color && std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    if let Err(e) = installed {
        eprintln!("warning: cannot set up logging: {e}");
    }
}
