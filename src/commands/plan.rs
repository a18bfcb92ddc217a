//! `mfactl plan`: show what apply would change, and who may approve it.

use super::{compute_plan, manifests, out, Ctx};
use crate::cli::PlanFormat;
use crate::error::{CmdResult, Exit};
use crate::render;
use std::path::PathBuf;

pub fn run(ctx: &Ctx, paths: &[PathBuf], detailed: bool, format: PlanFormat) -> CmdResult {
    let input = manifests(paths)?;
    let policy = ctx.policy()?;
    let st = ctx.open_store()?;
    let plan = compute_plan(
        st.conn(),
        st.path(),
        &input,
        &policy,
        ctx.actor.as_deref(),
        ctx.now,
    )?;
    match format {
        PlanFormat::Text => out(&render::text::plan(&plan, ctx.style)),
        PlanFormat::Json => out(&render::json::plan(&plan)),
    }
    let s = plan.summary();
    if s.users > policy.guardrails.max_users_per_apply {
        ctx.status(&format!(
            "warning: this plan changes {} users, more than max-users-per-apply ({}); apply will need --allow-large",
            s.users, policy.guardrails.max_users_per_apply
        ));
    }
    Ok(match (detailed, s.changes, s.denied) {
        (false, _, _) | (true, 0, _) => Exit::Ok,
        (true, _, 0) => Exit::Changes,
        (true, _, _) => Exit::Denied,
    })
}
