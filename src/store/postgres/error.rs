//! PostgreSQL's errors as store errors, in one place: which SQLSTATE means a lock that stayed
//! taken, a role that may not write, a full disk or a lost connection, and how each is said.
//! Nothing here retries: a failed statement has aborted its transaction, and the caller
//! decides.

use super::super::StoreError;
use super::connect::error_chain;
use postgres::error::SqlState;
use std::path::Path;
use std::time::Duration;

/// Whether the failed statement read or wrote: the same refusal of privilege means a
/// read-only role on a write and a missing grant on a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Read,
    Write,
    /// The commit itself: a connection lost here leaves its outcome unknown.
    Commit,
}

/// `e`, met while doing `context` on store `name`, as the store error a person can act on.
pub(super) fn map(
    name: &Path,
    lock_timeout: Duration,
    op: Op,
    context: &str,
    e: &postgres::Error,
) -> StoreError {
    let path = name.to_path_buf();
    let lost = |detail: String| {
        let outcome = if op == Op::Commit {
            "whether the change was committed is unknown: check with `mfactl audit` or \
             `mfactl plan` before applying again"
        } else {
            "nothing was committed"
        };
        StoreError::Io {
            path: path.clone(),
            detail: format!("{context}: lost the connection to the database ({detail}); {outcome}"),
        }
    };
    let Some(db) = e.as_db_error() else {
        // No answer from the server: the connection broke (rust-postgres marks it closed, or
        // the cause is an I/O error).
        let text = crate::util::escape_text(&error_chain(e)).into_owned();
        if e.is_closed() || has_io_cause(e) {
            return lost(text);
        }
        return StoreError::Sql {
            path,
            context: context.to_string(),
            detail: text,
        };
    };
    let code = db.code();
    let msg = crate::util::escape_text(db.message()).into_owned();
    if *code == SqlState::LOCK_NOT_AVAILABLE {
        return StoreError::Locked(path, lock_timeout);
    }
    if *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::IDLE_SESSION_TIMEOUT
    {
        return lost(msg);
    }
    if *code == SqlState::DISK_FULL {
        return StoreError::Full(path);
    }
    let refused = *code == SqlState::INSUFFICIENT_PRIVILEGE;
    if op != Op::Read && (refused || *code == SqlState::READ_ONLY_SQL_TRANSACTION) {
        return StoreError::ReadOnly(path);
    }
    if refused {
        return StoreError::Sql {
            path,
            context: context.to_string(),
            detail: format!(
                "{msg}; the role needs USAGE on schema mfactl and SELECT on its tables \
                 (GRANT USAGE ON SCHEMA mfactl TO …; GRANT SELECT ON ALL TABLES IN SCHEMA \
                 mfactl TO …)"
            ),
        };
    }
    if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME {
        return StoreError::Damaged {
            path,
            detail: format!("{context}: {msg}"),
        };
    }
    let detail = match db.detail() {
        Some(d) => format!("{msg} ({})", crate::util::escape_text(d)),
        None => msg,
    };
    StoreError::Sql {
        path,
        context: context.to_string(),
        detail,
    }
}

/// Whether an I/O error lies under `e` (the socket broke under the statement).
fn has_io_cause(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}
