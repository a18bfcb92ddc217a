//! `mfactl apply` and `mfactl apply --plan FILE`: asks for approval (on a terminal) or requires
//! `--auto-approve` (a saved plan was approved when it was reviewed), prints the plan being
//! applied and what the apply did. The work is `ops::apply` and `ops::saved`.
//!
//! SIGINT and SIGTERM are caught from the moment the plan under the write lock is known until
//! the commit: the apply rolls back, then the process dies of the signal (see `ops::interrupt`).

use super::Ctx;
use crate::error::{CmdResult, Exit, Failure};
use crate::ops::apply::{self, Options, NO_ACTOR};
use crate::ops::interrupt::{self, Interrupts};
use crate::ops::plan::{compute_plan, Who};
use crate::ops::{load, saved};
use crate::plan::Plan;
use crate::policy::Policy;
use crate::printer::{self, out_with};
use crate::render;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// `apply [PATHS]`: plan under the write lock and apply, all or nothing.
pub fn run(
    ctx: &Ctx,
    paths: &[PathBuf],
    auto_approve: bool,
    signers: Option<&Path>,
    opts: &Options,
) -> CmdResult {
    let actor = require_actor(ctx, signers)?;
    let interactive = require_approval(auto_approve)?;
    settle_leftovers(ctx, opts)?;
    let input = load::manifests(paths)?;
    ctx.warn_skipped_links(&input.skipped_links);
    let policy = ctx.policy()?;
    let sigs = ctx.signatures(signers, &input)?;
    let who = match &sigs {
        Some(s) => Who::Signed(s),
        None => Who::Actor(Some(&actor)),
    };
    let mut st = ctx.open_store()?;
    ctx.warn_unprotected(&st, &policy)?;
    let preview = if interactive {
        let plan = compute_plan(st.conn(), &input, &policy, who, ctx.now)?;
        out_with(|w| render::text::write_plan(w, &plan, ctx.style));
        if plan.is_empty() {
            return Ok(Exit::Ok);
        }
        apply::check(&plan, &policy, opts)?;
        let n = plan.changes.len();
        let what = if n == 1 {
            "this change".to_string()
        } else {
            format!("these {n} changes")
        };
        if !printer::confirm(&format!("Apply {what}?"))? {
            return Err(Failure::error("apply cancelled; nothing was changed"));
        }
        Some(plan)
    } else {
        None
    };
    let tx = st.begin()?;
    let plan = apply::plan_locked(&tx, &input, &policy, who, ctx.now, preview.as_ref())?;
    if preview.is_none() {
        out_with(|w| render::text::write_plan(w, &plan, ctx.style));
    }
    commit(ctx, tx, &plan, &policy, &actor, opts)
}

/// `apply --plan FILE`: exactly the saved changes, or nothing (see `ops::saved`).
pub fn run_saved(
    ctx: &Ctx,
    file: &Path,
    expect_id: Option<&str>,
    signers: Option<&Path>,
    opts: &Options,
) -> CmdResult {
    let actor = require_actor(ctx, signers)?;
    settle_leftovers(ctx, opts)?;
    let opened = saved::open(file, expect_id)?;
    let policy = ctx.policy()?;
    let dir = load::policy_dir(&ctx.settings);
    let sigs = saved::signatures(&opened, signers, dir.as_deref(), ctx.actor.as_deref())?;
    let who = match &sigs {
        Some(s) => Who::Signed(s),
        None => Who::Actor(Some(&actor)),
    };
    saved::refuse_future(&opened, &policy, ctx.now)?;
    let mut st = ctx.open_store()?;
    ctx.warn_unprotected(&st, &policy)?;
    let tx = st.begin()?;
    let plan = saved::rebuild(&tx, opened, &policy, who, ctx.now)?;
    out_with(|w| render::text::write_plan(w, &plan, ctx.style));
    commit(ctx, tx, &plan, &policy, &actor, opts)
}

/// The actor the audit log records. Under `--signers` the signers' roles decide and `--actor`
/// is optional: without it, the records name [`NO_ACTOR`].
fn require_actor(ctx: &Ctx, signers: Option<&Path>) -> Result<String, Failure> {
    match (&ctx.actor, signers) {
        (Some(a), _) => Ok(a.clone()),
        (None, Some(_)) => Ok(NO_ACTOR.to_string()),
        (None, None) => Err(Failure::invalid(
            "apply needs an actor: pass --actor ID or set MFACTL_ACTOR (or --signers FILE)",
        )),
    }
}

/// Whether to ask on the terminal; an error when there is no terminal and no `--auto-approve`.
fn require_approval(auto_approve: bool) -> Result<bool, Failure> {
    let interactive = !auto_approve && std::io::stdin().is_terminal();
    if !auto_approve && !interactive {
        return Err(Failure::invalid(
            "stdin is not a terminal, so apply cannot ask for confirmation; pass --auto-approve",
        ));
    }
    Ok(interactive)
}

/// `--credentials-out FILE`: first settles what an interrupted apply left beside FILE, and says
/// what became of it.
fn settle_leftovers(ctx: &Ctx, opts: &Options) -> Result<(), Failure> {
    if let Some(target) = opts.credentials_out.as_deref() {
        for note in apply::settle_before_apply(&ctx.settings, target)? {
            printer::status(false, &format!("warning: {note}"));
        }
    }
    Ok(())
}

/// Writes and commits the plan under the write lock `tx` holds, with a progress bar on a
/// terminal, and says what was done.
fn commit(
    ctx: &Ctx,
    tx: crate::store::Tx<'_>,
    plan: &Plan,
    policy: &Policy,
    actor: &str,
    opts: &Options,
) -> CmdResult {
    // From here until the commit, SIGINT and SIGTERM roll the apply back; the process then dies
    // of the signal, as it would have before this point.
    let interrupts = Interrupts::install()?;
    let mut bar = ctx.progress("applying changes");
    let applied = apply::apply_locked_with(
        tx,
        plan,
        policy,
        actor,
        ctx.now,
        opts,
        &interrupts,
        &mut |d, t| bar.update(d, t),
    );
    drop(bar);
    let applied = match (applied, interrupts.caught()) {
        (Err(f), Some(sig)) => {
            printer::failure(&f);
            interrupt::die_of(sig)
        }
        (applied, _) => applied?,
    };
    let Some(applied) = applied else {
        ctx.status("Nothing to apply.");
        return Ok(Exit::Ok);
    };
    printer::applied(ctx.quiet, plan, &applied);
    Ok(Exit::Ok)
}
