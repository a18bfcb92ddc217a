//! `mfactl init [--demo]`: create or migrate the store.

use super::Ctx;
use crate::error::{CmdResult, Exit};
use crate::store::Store;

pub fn run(ctx: &Ctx, demo: bool) -> CmdResult {
    let (mut store, created) = Store::init(&ctx.store, ctx.lock_timeout)?;
    if created {
        ctx.status(&format!("Created store {}.", ctx.store.display()));
    } else {
        ctx.status(&format!("Store {} is up to date.", ctx.store.display()));
    }
    if demo {
        let (g, u, rev) = crate::ops::import::import_text(
            &mut store,
            "examples/directory.yaml",
            crate::examples::DIRECTORY,
        )?;
        ctx.status(&format!(
            "Imported the demo directory: {u} users, {g} groups (store revision {rev})."
        ));
    }
    Ok(Exit::Ok)
}
