//! `mfactl init [--demo]`: create or migrate the store.

use super::Ctx;
use crate::error::{CmdResult, Exit};
use crate::store::{Init, Store};

pub fn run(ctx: &Ctx, demo: bool) -> CmdResult {
    let (mut store, done) = Store::init(&ctx.store, ctx.lock_timeout)?;
    let path = store.path().display().to_string();
    ctx.status(&match done {
        Init::Created => format!("Created store {path}."),
        Init::Migrated { from, to } => {
            let report = crate::store::verify_audit(store.conn())?;
            let chain = if report.intact() {
                format!("its audit chain of {} records verifies", report.records)
            } else {
                "its audit chain was already broken before; see `mfactl audit verify`".to_string()
            };
            format!("Migrated store {path} from schema version {from} to {to}; {chain}.")
        }
        Init::Current => format!("Store {path} is up to date."),
    });
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
