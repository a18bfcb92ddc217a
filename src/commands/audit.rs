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
    let records = crate::store::audit(st.conn(), st.path(), user, since)?;
    match format {
        AuditFormat::Text => out(&render::text::audit(&records, ctx.style)),
        AuditFormat::Json => out(&render::json::audit(&records)),
    }
    Ok(Exit::Ok)
}
