//! `mfactl policies`: the roles and guardrails in force, and where they came from (`built-in`,
//! `./policies` found in the working directory, or `--policies DIR`). Needs no store.

use super::{out, Ctx};
use crate::cli::PoliciesFormat;
use crate::error::{CmdResult, Exit};
use crate::render;

pub fn run(ctx: &Ctx, format: PoliciesFormat) -> CmdResult {
    let policy = ctx.policy()?;
    out(&match format {
        PoliciesFormat::Text => render::policies::text(&policy),
        PoliciesFormat::Json => render::policies::json(&policy),
    });
    Ok(Exit::Ok)
}
