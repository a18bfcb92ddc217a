//! `store copy DEST`: the whole store into another, of either kind. DEST is created (or, on a
//! PostgreSQL database, given its tables) when it does not exist yet, and must be empty; the copy
//! is one transaction on DEST, so a failure leaves it empty. Afterwards DEST's audit chain is
//! verified and must say what the source's says.

use super::Settings;
use crate::error::Failure;
use crate::store::{self, Copied, Store};
use std::path::Path;

/// What was copied, and the audit chain's report on the copy.
pub struct Copy {
    pub copied: Copied,
    pub audit: crate::audit::Report,
    /// How DEST is named in messages (a URL without its password).
    pub dest: String,
}

pub fn copy(settings: &Settings, dest: &Path) -> Result<Copy, Failure> {
    let from = settings.open_store()?;
    if same_place(from.path(), dest) {
        return Err(Failure::invalid(format!(
            "store copy: DEST {} is the store being copied; give another file or database",
            from.path().display()
        )));
    }
    let before = store::verify_audit(from.conn())?;
    let (mut to, _) = Store::init(dest, settings.lock_timeout)?;
    let copied = store::copy(&from, &mut to)?;
    let audit = store::verify_audit(to.conn())?;
    if audit.records != before.records || audit.breaks.len() != before.breaks.len() {
        return Err(Failure::error(format!(
            "store copy: the copy's audit chain says {} records and {} breaks where the source's \
             says {} and {}; the copy in {} is not to be trusted: delete it and copy again",
            audit.records,
            audit.breaks.len(),
            before.records,
            before.breaks.len(),
            to.path().display()
        )));
    }
    Ok(Copy {
        copied,
        audit,
        dest: to.path().display().to_string(),
    })
}

/// Whether two locations name the same store as written (the same URL, or the same file).
fn same_place(a: &Path, b: &Path) -> bool {
    if store::is_postgres(a) || store::is_postgres(b) {
        return a == b;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
