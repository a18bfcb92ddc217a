//! `mfactl store import FILE` / `mfactl store export`.

use super::{out, Ctx};
use crate::error::{CmdResult, Exit, Failure};
use crate::sources;
use crate::store::{self, Store};
use std::path::Path;

pub fn import(ctx: &Ctx, file: &Path) -> CmdResult {
    let name = file.display().to_string();
    let text = read_capped(file)?;
    let mut st = ctx.open_store()?;
    let (g, u, rev) = import_text(&mut st, &name, &text)?;
    ctx.status(&format!(
        "Imported {u} users and {g} groups from {name}; store revision {rev}."
    ));
    Ok(Exit::Ok)
}

/// Parses and imports a directory document; shared with `init --demo` and `demo`.
pub fn import_text(st: &mut Store, name: &str, text: &str) -> Result<(usize, usize, i64), Failure> {
    let dir = store::directory_parse(name, text).map_err(|lines| {
        let mut lines = lines;
        lines.push("error: nothing was imported".into());
        Failure::many(Exit::Error, lines)
    })?;
    Ok(store::import(st, name, &dir)?)
}

pub fn read_capped(file: &Path) -> Result<String, Failure> {
    use std::io::Read;
    let f = std::fs::File::open(file)
        .map_err(|e| Failure::error(format!("{}: {}", file.display(), sources::io_reason(&e))))?;
    let mut buf = Vec::new();
    f.take(sources::MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Failure::error(format!("{}: {}", file.display(), sources::io_reason(&e))))?;
    if buf.len() as u64 > sources::MAX_FILE_BYTES {
        return Err(Failure::error(format!(
            "{}: larger than the {}-byte limit",
            file.display(),
            sources::MAX_FILE_BYTES
        )));
    }
    String::from_utf8(buf).map_err(|_| Failure::error(format!("{}: not UTF-8", file.display())))
}

pub fn export(ctx: &Ctx) -> CmdResult {
    let st = ctx.open_store()?;
    let dir = store::export(&st)?;
    out(&to_yaml(&dir)?);
    Ok(Exit::Ok)
}

pub fn to_yaml<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    serde_yaml::to_string(v).map_err(|e| Failure::error(format!("cannot render YAML: {e}")))
}
