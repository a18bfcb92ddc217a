//! The commands, one file each, in cargo's shape: gather inputs, call the core, call the store,
//! render, return an exit status. This module holds what they share: the context built once from
//! the global options, reading manifests and policies, computing a plan, and the stdout printer.

pub mod apply;
pub mod audit;
pub mod credentials;
pub mod demo;
pub mod init;
pub mod interrupt;
pub mod plan;
pub mod planning;
pub mod policies;
pub mod show;
pub mod store;
pub mod validate;
pub mod watch;

pub use planning::{compute_plan, plan_batches};

use crate::cli::Global;
use crate::error::{Exit, Failure};
use crate::manifest::{self, Manifest, SourceFile};
use crate::model::Timestamp;
use crate::policy::{self, Policy, PolicySource};
use crate::render::Style;
use crate::sources;
use crate::store::Store;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything decided once from the global options and the environment.
pub struct Ctx {
    pub store: PathBuf,
    pub policies: Option<PathBuf>,
    pub actor: Option<String>,
    pub style: Style,
    pub quiet: bool,
    pub verbose: bool,
    pub lock_timeout: Duration,
    pub now: Timestamp,
}

impl Ctx {
    pub fn from_global(g: &Global) -> Result<Ctx, Failure> {
        let now = match std::env::var("MFACTL_NOW") {
            Ok(s) if !s.is_empty() => {
                Timestamp::parse(&s).map_err(|m| Failure::error(format!("MFACTL_NOW: {m}")))?
            }
            _ => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                Timestamp::from_unix(secs)
            }
        };
        let no_color = g.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let lock = policy::parse_duration(&g.lock_timeout)
            .map_err(|m| Failure::error(format!("--lock-timeout: {m}")))?;
        Ok(Ctx {
            store: g
                .store
                .clone()
                .unwrap_or_else(|| PathBuf::from("mfactl.db")),
            policies: g.policies.clone(),
            actor: actor(g)?,
            style: Style {
                color: !no_color && std::io::stdout().is_terminal(),
            },
            quiet: g.quiet,
            verbose: g.verbose,
            lock_timeout: Duration::from_secs(lock.max(0) as u64),
            now,
        })
    }

    /// A `warning:` line on stderr for each symlink the manifest search did not follow.
    pub fn warn_skipped_links(&self, links: &[String]) {
        for l in links {
            self.status(&format!("warning: {}", sources::skipped_link_warning(l)));
        }
    }

    /// A status line on stderr (suppressed by `-q`).
    pub fn status(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    pub fn open_store(&self) -> Result<Store, Failure> {
        Ok(Store::open(&self.store, self.lock_timeout)?)
    }

    /// `--policies DIR`, else `./policies` when it exists, else the built-in defaults; the
    /// policy records which of them it is, for the plan's header and `mfactl policies`.
    pub fn policy(&self) -> Result<Policy, Failure> {
        let (dir, source) = match &self.policies {
            Some(d) => (d.clone(), PolicySource::Dir(d.display().to_string())),
            None if Path::new("policies").is_dir() => {
                (PathBuf::from("policies"), PolicySource::WorkingDir)
            }
            None => {
                if self.verbose {
                    eprintln!("policies: built-in (no --policies, and no ./policies here)");
                }
                return Ok(Policy::defaults());
            }
        };
        let read = |name: &str| -> Result<(String, String), Failure> {
            let p = dir.join(name);
            std::fs::read_to_string(&p)
                .map(|t| (p.display().to_string(), t))
                .map_err(|e| Failure::error(format!("{}: {}", p.display(), sources::io_reason(&e))))
        };
        let (rn, rt) = read("roles.yaml")?;
        let (gn, gt) = read("guardrails.yaml")?;
        if self.verbose {
            eprintln!("policies: {rn}, {gn}");
        }
        Policy::parse(&rn, &rt, &gn, &gt)
            .map(|p| p.with_source(source))
            .map_err(|e| Failure::error(e.to_string()))
    }

    /// The warning for guardrails that protect nobody in the store (none listed, or none of
    /// those listed exists), or `None`. A real tenant's break-glass accounts are its own to list.
    pub fn unprotected_warning(
        &self,
        st: &Store,
        policy: &Policy,
    ) -> Result<Option<String>, Failure> {
        let protected = &policy.guardrails.protected_users;
        if !protected.is_empty()
            && !crate::store::existing_users(st.conn(), st.path(), protected)?.is_empty()
        {
            return Ok(None);
        }
        let why = if protected.is_empty() {
            "protected-users is empty"
        } else {
            "none of protected-users is a user in the store"
        };
        Ok(Some(format!(
            "the guardrails protect no user in the store ({why}; policies: {}); list your \
             break-glass accounts under protected-users in guardrails.yaml (./policies or \
             --policies DIR); see `mfactl policies`",
            crate::util::escape_text(&policy.source.to_string())
        )))
    }

    /// [`Self::unprotected_warning`] as a `warning:` status line on stderr.
    pub fn warn_unprotected(&self, st: &Store, policy: &Policy) -> Result<(), Failure> {
        if let Some(w) = self.unprotected_warning(st, policy)? {
            self.status(&format!("warning: {w}"));
        }
        Ok(())
    }
}

/// The actor of `--actor` or `MFACTL_ACTOR`. An empty one is a mistake (a variable a pipeline
/// meant to fill and did not), not "no actor": a plan without an actor would hide it.
fn actor(g: &Global) -> Result<Option<String>, Failure> {
    // clap reads a set-but-empty MFACTL_ACTOR as an empty value, like `--actor ""`.
    match &g.actor {
        Some(a) if a.trim().is_empty() => Err(Failure::error(
            "the actor is empty (--actor \"\" or MFACTL_ACTOR set to nothing): pass the acting \
             administrator's user id, or leave out --actor and unset MFACTL_ACTOR to plan without one",
        )),
        other => Ok(other.clone()),
    }
}

/// The progress bar of a long write (apply, import) on stderr: only when stderr is a terminal
/// and `-q` is not given, and only once the command has run for more than a second, so short
/// runs and pipelines print nothing. Cleared when dropped.
pub struct Progress {
    what: &'static str,
    started: std::time::Instant,
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(ctx: &Ctx, what: &'static str) -> Progress {
        Progress {
            what,
            started: std::time::Instant::now(),
            enabled: !ctx.quiet && std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    /// `done` of `total` items written.
    pub fn update(&mut self, done: usize, total: usize) {
        if !self.enabled {
            return;
        }
        if self.bar.is_none() {
            if self.started.elapsed() < Duration::from_secs(1) || done >= total {
                return;
            }
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {human_pos}/{human_len} ({eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(self.what);
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The manifests as read and parsed, with the problems parsing found. Checks that need the store
/// run in [`compute_plan`], which reports these problems together with its own.
pub struct Loaded {
    pub files: Vec<SourceFile>,
    /// Symlinks inside manifest directories, not followed (see [`sources::Found`]).
    pub skipped_links: Vec<String>,
    pub manifests: Vec<Manifest>,
    pub problems: Vec<manifest::Problem>,
}

/// Reads and parses the manifests; unreadable files fail at once.
pub fn manifests(paths: &[PathBuf]) -> Result<Loaded, Failure> {
    let found = sources::read(paths).map_err(|lines| Failure::many(Exit::Error, lines))?;
    let (manifests, problems) = parse_all(&found.files);
    Ok(Loaded {
        files: found.files,
        skipped_links: found.skipped_links,
        manifests,
        problems,
    })
}

pub fn parse_all(files: &[SourceFile]) -> (Vec<Manifest>, Vec<manifest::Problem>) {
    // Files parse independently: with more than a few megabytes of them, a second thread parses
    // the second half of the list (by size). Results are joined in file order either way.
    let total: usize = files.iter().map(|f| f.text.len()).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parallel = total >= PARALLEL_PARSE_BYTES && threads >= 2 && files.len() >= 2;
    let parsed: Vec<(Vec<Manifest>, Vec<manifest::Problem>)> = if !parallel {
        files.iter().map(manifest::parse_file).collect()
    } else {
        let mut split = 0;
        let mut seen = 0;
        while split < files.len() - 1 && seen + files[split].text.len() / 2 < total / 2 {
            seen += files[split].text.len();
            split += 1;
        }
        let (first, second) = files.split_at(split.max(1));
        std::thread::scope(|s| {
            let later = s.spawn(|| second.iter().map(manifest::parse_file).collect::<Vec<_>>());
            let mut parsed: Vec<_> = first.iter().map(manifest::parse_file).collect();
            match later.join() {
                Ok(rest) => parsed.extend(rest),
                Err(panic) => std::panic::resume_unwind(panic),
            }
            parsed
        })
    };
    let mut ms = Vec::new();
    let mut problems = Vec::new();
    for (m, p) in parsed {
        ms.extend(m);
        problems.extend(p);
    }
    (ms, problems)
}

/// Below this many bytes of manifests, a second parsing thread costs more than it saves.
const PARALLEL_PARSE_BYTES: usize = 1 << 20;

/// The failure for invalid manifests: every problem, then a one-line verdict.
pub fn invalid(located: Vec<manifest::Located>) -> Failure {
    let n = located.len();
    let mut lines: Vec<String> = located.iter().map(|l| l.to_string()).collect();
    lines.push(format!(
        "error: {n} problem{} in the manifests; nothing was planned or applied",
        if n == 1 { "" } else { "s" }
    ));
    Failure::many(Exit::Error, lines)
}

/// Writes data to stdout; a closed pipe (`mfactl plan | head`) ends the process quietly.
pub fn out(s: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(s.as_bytes()).and_then(|_| stdout.flush()) {
        stdout_failed(e);
    }
}

/// Streams text to stdout through a buffer, as [`out`] writes it but without first building the
/// whole text: large plans and exports are written piece by piece.
pub fn out_with(write: impl FnOnce(&mut dyn std::fmt::Write) -> std::fmt::Result) {
    let mut sink = Stdout::new();
    let written = write(&mut sink);
    sink.finish(written);
}

/// An `io::Write` as a `fmt::Write`, keeping the I/O error that stopped it.
pub struct Sink<W: Write> {
    w: W,
    failed: Option<std::io::Error>,
}

impl<W: Write> Sink<W> {
    pub fn new(w: W) -> Sink<W> {
        Sink { w, failed: None }
    }

    /// Flushes what was written, given how the writing ended; the writer back, or the error.
    pub fn finish(mut self, written: std::fmt::Result) -> std::io::Result<W> {
        match (written, self.failed.take()) {
            (_, Some(e)) => Err(e),
            (Err(_), None) => Err(std::io::Error::other("formatting failed")),
            (Ok(()), None) => self.w.flush().map(|_| self.w),
        }
    }
}

impl<W: Write> std::fmt::Write for Sink<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.w.write_all(s.as_bytes()).map_err(|e| {
            self.failed = Some(e);
            std::fmt::Error
        })
    }
}

/// Buffered stdout as a `fmt::Write`, for writing a long text piece by piece; a closed pipe
/// (`mfactl plan | head`) ends the process quietly, any other failure with a message.
pub struct Stdout(Sink<std::io::BufWriter<std::io::StdoutLock<'static>>>);

impl Stdout {
    pub fn new() -> Stdout {
        Stdout(Sink::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout().lock(),
        )))
    }

    /// Flushes what was written; `written` is how the writing ended.
    pub fn finish(self, written: std::fmt::Result) {
        if let Err(e) = self.0.finish(written) {
            stdout_failed(e);
        }
    }
}

impl Default for Stdout {
    fn default() -> Self {
        Stdout::new()
    }
}

impl std::fmt::Write for Stdout {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write_str(s)
    }
}

fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to stdout: {}", sources::io_reason(&e));
    std::process::exit(1);
}

/// Runs one parsed command line.
pub fn run(cli: crate::cli::Cli) -> crate::error::CmdResult {
    use crate::cli::{Command, StoreCommand};
    let ctx = Ctx::from_global(&cli.global)?;
    match cli.command {
        Command::Init { demo } => init::run(&ctx, demo),
        Command::Demo => demo::run(&ctx),
        Command::Validate {
            paths,
            offline,
            format,
        } => validate::run(&ctx, &paths, offline, format),
        Command::Plan {
            paths,
            detailed_exitcode,
            format,
            out,
            diff,
        } => plan::run(
            &ctx,
            &paths,
            &plan::Options {
                detailed: detailed_exitcode,
                format,
                out,
                diff,
            },
        ),
        Command::Apply {
            paths,
            plan,
            expect_plan_id,
            auto_approve,
            allow_large,
            credentials_out,
            accept_broken_audit,
        } => {
            credentials::settle_before_apply(&ctx, credentials_out.as_deref())?;
            let opts = apply::Options {
                auto_approve,
                allow_large,
                credentials_out,
                accept_broken_audit,
            };
            match plan {
                Some(file) => apply::run_saved(&ctx, &file, expect_plan_id.as_deref(), &opts),
                None => apply::run(&ctx, &paths, &opts),
            }
        }
        Command::Show { user } => show::run(&ctx, &user),
        Command::Policies { format } => policies::run(&ctx, format),
        Command::Schema => {
            out(&crate::manifest::json_schema());
            Ok(Exit::Ok)
        }
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "mfactl", &mut buf);
            out(&String::from_utf8_lossy(&buf));
            Ok(Exit::Ok)
        }
        Command::Audit {
            verify: Some(crate::cli::AuditCommand::Verify),
            ..
        } => audit::verify(&ctx),
        Command::Audit {
            verify: None,
            user,
            since,
            format,
        } => audit::run(&ctx, user.as_deref(), since.as_deref(), format),
        Command::Store(StoreCommand::Import { file, format }) => store::import(&ctx, &file, format),
        Command::Store(StoreCommand::Export { format }) => store::export(&ctx, format),
        Command::Watch {
            paths,
            interval,
            once,
            detect_only,
            credentials_dir,
            metrics_addr,
            log_format,
        } => watch::run(
            ctx,
            watch::Options {
                paths,
                interval,
                once,
                detect_only,
                credentials_dir,
                metrics_addr,
                log_format,
            },
        ),
    }
}
