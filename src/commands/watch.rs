//! `mfactl watch`: check the options, set up the log, and run the daemon (`crate::watch`) or one
//! reconcile (`--once`).

use super::Ctx;
use crate::cli::LogFormat;
use crate::error::{CmdResult, Failure};
use crate::store::lease;
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
    pub lease: String,
    pub replica_id: Option<String>,
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
    let lease = parse_lease(&opts.lease)?;
    let replica = match opts.replica_id {
        Some(id) => check_replica_id(id)?,
        None => lease::default_replica_id(),
    };
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
    // A second daemon on a SQLite store stops here, naming the first. `--once --detect-only`
    // commits nothing, so it needs no leadership and runs beside the daemon.
    let elector = if opts.once && opts.detect_only {
        None
    } else {
        Some(lease::elector(&ctx.settings.store, &replica, lease)?)
    };
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
    let Some(elector) = elector else {
        return watch::once(&ctx.settings, &settings, None);
    };
    if opts.once {
        return watch::once(&ctx.settings, &settings, Some((elector, &replica)));
    }
    let daemon = Daemon {
        interval: Duration::from_secs(secs as u64),
        metrics_addr: opts.metrics_addr,
        replica,
        elector,
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

/// `--lease`: whole seconds, between [`lease::MIN_LEASE`] and [`lease::MAX_LEASE`].
fn parse_lease(text: &str) -> Result<Duration, Failure> {
    let secs = crate::policy::parse_duration(text)
        .map_err(|m| Failure::invalid(format!("--lease: {m}")))?;
    let lease = Duration::from_secs(secs.max(0) as u64);
    if secs < 0 || lease < lease::MIN_LEASE || lease > lease::MAX_LEASE {
        return Err(Failure::invalid(format!(
            "--lease {}: must be between 1s and 1h",
            crate::util::escape_text(text)
        )));
    }
    Ok(lease)
}

/// `--replica-id`: shown in logs and stored in the lease, so printable and of a sane length.
fn check_replica_id(id: String) -> Result<String, Failure> {
    if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
        return Err(Failure::invalid(format!(
            "--replica-id {}: must be 1 to 200 printable characters",
            crate::util::escape_text(&id)
        )));
    }
    Ok(id)
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
