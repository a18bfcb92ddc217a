//! The shell's commands, one file each, in cargo's shape: parse the options, call `ops/` (and the
//! store for plain reads), hand the result to the printer, return an exit status. This module
//! holds the context every command gets and the dispatch of a parsed command line.

pub mod apply;
pub mod audit;
pub mod demo;
pub mod init;
pub mod plan;
pub mod policies;
pub mod show;
pub mod store;
pub mod validate;
pub mod watch;

use crate::cli::Global;
use crate::error::{Exit, Failure};
use crate::ops::{self, Settings};
use crate::policy::{self, Policy};
use crate::printer::{self, out};
use crate::render::Style;
use crate::sources;
use crate::store::Store;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// Everything decided once from the global options and the environment: the settings the
/// workflows run with, and how the printer prints (colour, `-q`, `-v`). It derefs to the
/// [`Settings`], so a command reads `ctx.store` or `ctx.now` directly.
pub struct Ctx {
    pub settings: Settings,
    pub style: Style,
    pub quiet: bool,
    pub verbose: bool,
}

impl std::ops::Deref for Ctx {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.settings
    }
}

impl Ctx {
    pub fn from_global(g: &Global) -> Result<Ctx, Failure> {
        let now = ops::now()?;
        let no_color = g.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let lock = policy::parse_duration(&g.lock_timeout)
            .map_err(|m| Failure::invalid(format!("--lock-timeout: {m}")))?;
        Ok(Ctx {
            settings: Settings {
                store: g
                    .store
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("mfactl.db")),
                policies: g.policies.clone(),
                actor: actor(g)?,
                lock_timeout: Duration::from_secs(lock.max(0) as u64),
                now,
            },
            style: Style {
                color: !no_color && std::io::stdout().is_terminal(),
            },
            quiet: g.quiet,
            verbose: g.verbose,
        })
    }

    /// A status line on stderr (suppressed by `-q`).
    pub fn status(&self, msg: &str) {
        printer::status(self.quiet, msg);
    }

    /// A `warning:` line on stderr for each symlink the manifest search did not follow.
    pub fn warn_skipped_links(&self, links: &[String]) {
        for l in links {
            self.status(&format!("warning: {}", sources::skipped_link_warning(l)));
        }
    }

    /// The policies in force; with `-v`, says on stderr where they were read from.
    pub fn policy(&self) -> Result<Policy, Failure> {
        let p = ops::load::policies(&self.settings)?;
        if self.verbose {
            printer::status(false, &p.note);
        }
        Ok(p.policy)
    }

    /// The warning of [`ops::load::unprotected_warning`] as a `warning:` status line.
    pub fn warn_unprotected(&self, st: &Store, policy: &Policy) -> Result<(), Failure> {
        if let Some(w) = ops::load::unprotected_warning(st, policy)? {
            self.status(&format!("warning: {w}"));
        }
        Ok(())
    }

    /// Under `--signers FILE`: who signed each manifest and policy file (see `ops::signed`).
    pub fn signatures(
        &self,
        signers: Option<&std::path::Path>,
        input: &ops::load::Loaded,
    ) -> Result<Option<ops::signed::Signatures>, Failure> {
        let Some(file) = signers else {
            return Ok(None);
        };
        let dir = ops::load::policy_dir(&self.settings);
        ops::signed::read(file, input, dir.as_deref(), self.actor.as_deref()).map(Some)
    }

    /// Whom a plan is for: the signers (under `--signers`), else `--actor`.
    pub fn who<'a>(&'a self, sigs: &'a Option<ops::signed::Signatures>) -> ops::plan::Who<'a> {
        match sigs {
            Some(s) => ops::plan::Who::Signed(s),
            None => ops::plan::Who::Actor(self.actor.as_deref()),
        }
    }

    /// A progress bar for a long write on stderr (see [`printer::Progress`]).
    pub fn progress(&self, what: &'static str) -> printer::Progress {
        printer::Progress::new(self.quiet, what)
    }
}

/// The actor of `--actor` or `MFACTL_ACTOR`. An empty one is a mistake (a variable a pipeline
/// meant to fill and did not), not "no actor": a plan without an actor would hide it.
fn actor(g: &Global) -> Result<Option<String>, Failure> {
    // clap reads a set-but-empty MFACTL_ACTOR as an empty value, like `--actor ""`.
    match &g.actor {
        Some(a) if a.trim().is_empty() => Err(Failure::invalid(
            "the actor is empty (--actor \"\" or MFACTL_ACTOR set to nothing): pass the acting \
             administrator's user id, or leave out --actor and unset MFACTL_ACTOR to plan without one",
        )),
        other => Ok(other.clone()),
    }
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
            signers,
        } => plan::run(
            &ctx,
            &paths,
            &plan::Options {
                detailed: detailed_exitcode,
                format,
                out,
                diff,
                signers,
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
            signers,
        } => {
            let opts = ops::apply::Options {
                allow_large,
                credentials_out,
                accept_broken_audit,
                fence: None,
            };
            match plan {
                Some(file) => apply::run_saved(
                    &ctx,
                    &file,
                    expect_plan_id.as_deref(),
                    signers.as_deref(),
                    &opts,
                ),
                None => apply::run(&ctx, &paths, auto_approve, signers.as_deref(), &opts),
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
        Command::Store(StoreCommand::Copy { dest }) => store::copy(&ctx, &dest),
        Command::Watch {
            paths,
            interval,
            once,
            detect_only,
            credentials_dir,
            metrics_addr,
            log_format,
            signers,
            lease,
            replica_id,
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
                signers,
                lease,
                replica_id,
            },
        ),
    }
}
