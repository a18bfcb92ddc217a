//! `mfactl plan`: show what apply would change, and who may approve it; optionally save it.

use super::{compute_plan, manifests, out, out_with, Ctx};
use crate::cli::PlanFormat;
use crate::error::{CmdResult, Exit, Failure};
use crate::render;
use crate::sources::io_reason;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct Options {
    pub detailed: bool,
    pub format: PlanFormat,
    pub out: Option<PathBuf>,
    pub diff: bool,
}

pub fn run(ctx: &Ctx, paths: &[PathBuf], opts: &Options) -> CmdResult {
    let input = manifests(paths)?;
    let policy = ctx.policy()?;
    let st = ctx.open_store()?;
    let (plan, actual) = compute_plan(
        st.conn(),
        st.path(),
        &input,
        &policy,
        ctx.actor.as_deref(),
        ctx.now,
    )?;
    let diffs = if opts.diff {
        render::diff::user_diffs(&plan, &actual)
    } else {
        BTreeMap::new()
    };
    if let Some(file) = &opts.out {
        let fingerprints = json!(crate::plan::fingerprints(&plan, &actual));
        let text = render::json::plan(&plan, &[("fingerprints", fingerprints)]);
        std::fs::write(file, text)
            .map_err(|e| Failure::error(format!("--out {}: {}", file.display(), io_reason(&e))))?;
        ctx.status(&format!(
            "Saved plan {} to {}; apply it with `mfactl apply --plan {}`.",
            plan.id,
            file.display(),
            file.display()
        ));
    }
    match opts.format {
        PlanFormat::Text => {
            out_with(|w| render::text::write_plan(w, &plan, ctx.style));
            out(&render::diff::text(&diffs));
        }
        PlanFormat::Json => {
            let extra = if opts.diff {
                vec![("diffs", json!(diffs))]
            } else {
                vec![]
            };
            out(&render::json::plan(&plan, &extra));
        }
        PlanFormat::Markdown => out(&render::markdown::plan(&plan, &diffs)),
    }
    let s = plan.summary();
    if s.users > policy.guardrails.max_users_per_apply {
        ctx.status(&format!(
            "warning: this plan changes {} users, more than max-users-per-apply ({}); apply will need --allow-large",
            s.users, policy.guardrails.max_users_per_apply
        ));
    }
    // The process ends here: freeing a plan of 100,000 users and their state one allocation at a
    // time would only add to the wall time.
    std::mem::forget((plan, actual, input, diffs));
    Ok(match (opts.detailed, s.changes, s.denied) {
        (false, _, _) | (true, 0, _) => Exit::Ok,
        (true, _, 0) => Exit::Changes,
        (true, _, _) => Exit::Denied,
    })
}
