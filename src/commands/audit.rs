//! `mfactl audit [--user U] [--since T] [--format text|json]`.

use super::{out, Ctx};
use crate::cli::AuditFormat;
use crate::error::{CmdResult, Exit, Failure};
use crate::model::Timestamp;
use crate::render;

pub fn run(ctx: &Ctx, user: Option<&str>, since: Option<&str>, format: AuditFormat) -> CmdResult {
    let since = since
        .map(Timestamp::parse)
        .transpose()
        .map_err(|m| Failure::error(format!("--since: {m}")))?;
    let st = ctx.open_store()?;
    let records = crate::store::audit(st.conn(), user, since)?;
    match format {
        AuditFormat::Text => out(&render::text::audit(&records, ctx.style)),
        AuditFormat::Json => out(&render::json::audit(&records)),
    }
    Ok(Exit::Ok)
}

/// `mfactl audit verify`: walks the hash chain; exit 1 naming each unacknowledged break.
pub fn verify(ctx: &Ctx) -> CmdResult {
    let st = ctx.open_store()?;
    let report = crate::store::verify_audit(st.conn())?;
    let mut text = String::new();
    for b in &report.breaks {
        match b.acknowledged_by {
            Some(by) => text.push_str(&format!(
                "record #{} {} (acknowledged by record #{by}, accept-broken-audit)\n",
                b.seq, b.what
            )),
            None => text.push_str(&format!("record #{} {}\n", b.seq, b.what)),
        }
    }
    text.push_str(&format!(
        "{} record{}, head {}\n",
        report.records,
        if report.records == 1 { "" } else { "s" },
        if report.head.is_empty() {
            "(empty log)".to_string()
        } else if report.head.len() == 64 && report.head.bytes().all(|b| b.is_ascii_hexdigit()) {
            report.head.clone()
        } else {
            // A tampered last record: its "hash" may be any text, of any length.
            format!("{}… (not a hash)", crate::audit::short(&report.head))
        }
    ));
    out(&text);
    if report.intact() && report.breaks.is_empty() {
        ctx.status("The audit chain is intact.");
        Ok(Exit::Ok)
    } else if report.intact() {
        ctx.status(&format!(
            "The audit chain verifies; {} earlier break{} acknowledged with --accept-broken-audit.",
            report.breaks.len(),
            if report.breaks.len() == 1 {
                " was"
            } else {
                "s were"
            }
        ));
        Ok(Exit::Ok)
    } else {
        let first = report.unacknowledged().next().map(|b| b.seq).unwrap_or(0);
        Err(Failure::error(format!(
            "the audit log of {} is broken, first at record #{first}",
            st.path().display()
        )))
    }
}
