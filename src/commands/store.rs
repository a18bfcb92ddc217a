//! `mfactl store import FILE` / `store export` / `store copy DEST`: pick the format, run
//! `ops::import`, `ops::export` or `ops::copy`, say what was done.

use super::Ctx;
use crate::cli::DirectoryFormat;
use crate::error::{CmdResult, Exit};
use crate::ops::export;
use crate::ops::import::{self, Format};
use crate::printer::out_with;
use std::path::Path;

pub fn import(ctx: &Ctx, file: &Path, format: Option<DirectoryFormat>) -> CmdResult {
    let format = match format {
        Some(DirectoryFormat::Jsonl) => Format::Jsonl,
        Some(DirectoryFormat::Yaml) => Format::Yaml,
        None => match file.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => Format::Jsonl,
            _ => Format::Yaml,
        },
    };
    let policy = ctx.policy()?;
    let mut progress = ctx.progress("importing users");
    let imported = import::import(&ctx.settings, &policy, file, format, &mut |d, t| {
        progress.update(d, t)
    })?;
    drop(progress);
    for w in &imported.warnings {
        ctx.status(w);
    }
    ctx.status(&format!(
        "Imported {} and {} from {}; store revision {}.",
        plural(imported.users, "user", "users"),
        plural(imported.groups, "group", "groups"),
        imported.name,
        imported.revision
    ));
    Ok(Exit::Ok)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn export(ctx: &Ctx, format: DirectoryFormat) -> CmdResult {
    let st = ctx.open_store()?;
    let format = match format {
        DirectoryFormat::Yaml => Format::Yaml,
        DirectoryFormat::Jsonl => Format::Jsonl,
    };
    let mut failure = None;
    out_with(|w| match export::write(&st, format, w) {
        Ok(written) => written,
        Err(f) => {
            failure = Some(f);
            Ok(())
        }
    });
    failure.map_or(Ok(Exit::Ok), Err)
}

pub fn copy(ctx: &Ctx, dest: &Path) -> CmdResult {
    let done = crate::ops::copy::copy(&ctx.settings, dest)?;
    let c = &done.copied;
    ctx.status(&format!(
        "Copied {}, {}, {} and {} at store revision {} into {}; its audit chain {}.",
        plural(c.users, "user", "users"),
        plural(c.groups, "group", "groups"),
        plural(c.audit_records, "audit record", "audit records"),
        plural(c.applied_plans, "applied plan id", "applied plan ids"),
        c.revision,
        done.dest,
        if done.audit.intact() {
            "verifies".to_string()
        } else {
            format!(
                "has the source's {} (run `mfactl audit verify` on either)",
                plural(done.audit.breaks.len(), "break", "breaks")
            )
        }
    ));
    Ok(Exit::Ok)
}
