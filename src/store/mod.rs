//! The SQLite store (see docs/store.md): the only module that knows table names.
//!
//! One file holds the directory (one compact record per user, see [`record`]; groups and their
//! members), the audit log and the store revision. Schema changes are numbered forward-only migrations tracked in
//! `PRAGMA user_version`; `PRAGMA application_id` marks the file as ours so that someone else's
//! SQLite database is refused rather than written to.

mod apply;
mod damage;
mod export;
mod import;
mod load;
pub mod postgres;
pub mod record;
mod schema;

pub use apply::{apply_plan, failpoint, failpoint_wait, password_hash, plan_applied};
pub use export::{export, export_with, show, user_batches, ExportPart, EXPORT_BATCH};
pub use import::{import, import_with_progress, in_import_transaction, write_groups, write_users};
pub use load::{
    existing_users, load, load_actor, load_groups, load_keys, load_selected, select, selected_named,
};

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

/// A connection to the store, as the workflows hold it (they never issue SQL themselves).
pub type Conn = Connection;
/// The store's write transaction: held from the plan under the lock to the commit.
pub type Tx<'a> = Transaction<'a>;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `MFAC` as a big-endian u32: marks an mfactl store in the SQLite header.
const APPLICATION_ID: i64 = 0x4D46_4143;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {0} does not exist; create it with `mfactl init` (or point --store / MFACTL_STORE at an existing one)")]
    Missing(PathBuf),
    #[error("store {0} is not an SQLite database ({1}); check the --store path")]
    NotSqlite(PathBuf, String),
    #[error("store {0} is an SQLite database that mfactl did not create; refusing to touch it (check the --store path)")]
    Foreign(PathBuf),
    #[error("store {path} has schema version {found}, newer than this mfactl knows ({known}); upgrade mfactl")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("store {path} has schema version {found}, older than this mfactl ({known}); run `mfactl init` to migrate it")]
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "store {0} stayed locked by another mfactl for {1:?}; try again, or raise --lock-timeout"
    )]
    Locked(PathBuf, Duration),
    #[error("store {0} is read-only; mfactl needs write access to change it")]
    ReadOnly(PathBuf),
    #[error("store {0}: the disk is full; free space and retry (nothing was changed)")]
    Full(PathBuf),
    #[error("store {path}: {context}: {detail}")]
    Sql {
        path: PathBuf,
        context: String,
        detail: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("store {path} is damaged: {detail}; it was changed outside mfactl: restore it from a backup, or repair what is named")]
    Damaged { path: PathBuf, detail: String },
    #[error("store {path}: the audit log is broken: {detail}; nothing was applied. Inspect it with `mfactl audit verify`; `apply --accept-broken-audit` applies anyway and records that in the log")]
    BrokenAudit { path: PathBuf, detail: String },
    #[error("store {path}: {detail}")]
    Io { path: PathBuf, detail: String },
}

impl StoreError {
    pub fn is_lock_timeout(&self) -> bool {
        matches!(self, StoreError::Locked(..))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An open store and how long to wait for its write lock.
/// What [`Store::init`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    Created,
    /// An older store brought to the current schema version.
    Migrated {
        from: i64,
        to: i64,
    },
    Current,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    lock_timeout: Duration,
}

impl Store {
    /// Opens an existing store and checks that it is ours and of this schema version.
    pub fn open(path: &Path, lock_timeout: Duration) -> Result<Store> {
        plain_path(path)?;
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let store = Self::connect(path, lock_timeout)?;
        let (app_id, version) = store.identity()?;
        if app_id != APPLICATION_ID {
            return Err(StoreError::Foreign(path.to_path_buf()));
        }
        let known = schema::latest();
        if version > known {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known,
            });
        }
        if version < known {
            return Err(StoreError::TooOld {
                path: path.to_path_buf(),
                found: version,
                known,
            });
        }
        Ok(store)
    }

    /// Creates the store (mode 0600) or migrates an older one; a no-op on a current store.
    /// Returns the store and what was done.
    pub fn init(path: &Path, lock_timeout: Duration) -> Result<(Store, Init)> {
        plain_path(path)?;
        let created = !path.exists();
        if created {
            create_private_file(path)?;
        }
        let mut store = Self::connect(path, lock_timeout)?;
        let (app_id, version) = store.identity()?;
        let empty = store.is_empty()?;
        if app_id != APPLICATION_ID && !(app_id == 0 && version == 0 && empty) {
            return Err(StoreError::Foreign(path.to_path_buf()));
        }
        let known = schema::latest();
        if version > known {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known,
            });
        }
        if version < known {
            schema::migrate(&mut store.conn, version, APPLICATION_ID)
                .map_err(store.err("migrate"))?;
            // WAL lets readers (plan, watch --detect-only) run beside an apply; it is persistent.
            // Set once the migration committed, so that a failed one leaves the file as it was.
            store
                .conn
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(store.err("set journal mode"))?;
            if !created && version < 4 && version > 0 {
                // Migration 4 rewrote every user into a new table: compact the file so that the
                // records lie in key order, as a fresh import leaves them. VACUUM is atomic on
                // its own; the migration is already committed.
                store
                    .conn
                    .execute_batch("VACUUM")
                    .map_err(store.err("compact the migrated store"))?;
            }
        }
        let done = if created || version == 0 {
            Init::Created
        } else if version < known {
            Init::Migrated {
                from: version,
                to: known,
            }
        } else {
            Init::Current
        };
        Ok((store, done))
    }

    fn connect(path: &Path, lock_timeout: Duration) -> Result<Store> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(plain_path(path)?, flags)
            .map_err(|e| map_err(path, "open", e))?;
        conn.busy_timeout(lock_timeout)
            .map_err(|e| map_err(path, "open", e))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            lock_timeout,
        };
        store
            .conn
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
            .map_err(store.err("open"))?;
        // `rarray(?)`: a list of keys bound as one value, so a temporary table of 100,000
        // keys fills with one statement.
        rusqlite::vtab::array::load_module(&store.conn).map_err(store.err("open"))?;
        Ok(store)
    }

    fn identity(&self) -> Result<(i64, i64)> {
        let app: i64 = self
            .conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(self.err("read header"))?;
        let ver: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.err("read header"))?;
        Ok((app, ver))
    }

    fn is_empty(&self) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(self.err("read schema"))?;
        Ok(n == 0)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Takes the write lock (`BEGIN IMMEDIATE`), waiting up to the lock timeout.
    pub fn begin(&mut self) -> Result<Transaction<'_>> {
        let (path, timeout) = (self.path.clone(), self.lock_timeout);
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| match map_err(&path, "begin transaction", e) {
                StoreError::Locked(p, _) => StoreError::Locked(p, timeout),
                other => other,
            })
    }

    /// A mapper from rusqlite errors to store errors that name this store and the step.
    pub fn err(&self, context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| match map_err(&self.path, context, e) {
            StoreError::Locked(p, _) => StoreError::Locked(p, self.lock_timeout),
            other => other,
        }
    }
}

/// Commits, naming the store in the error (a full disk or lost lock can surface only here).
pub fn commit(tx: Transaction<'_>, path: &Path) -> Result<()> {
    tx.commit().map_err(|e| map_err(path, "commit", e))
}

pub(crate) fn map_err(path: &Path, context: &str, e: rusqlite::Error) -> StoreError {
    let p = path.to_path_buf();
    if let Some(detail) = damage::description(&e) {
        return StoreError::Damaged {
            path: p,
            detail: detail.to_string(),
        };
    }
    // A value of the wrong type that no reader named (every reader should): still a damaged
    // store, not an SQL error.
    if matches!(
        e,
        rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
    ) {
        return StoreError::Damaged {
            path: p,
            detail: format!("{context}: {e}"),
        };
    }
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return StoreError::Locked(p, Duration::ZERO)
            }
            ErrorCode::NotADatabase => {
                return StoreError::NotSqlite(p, "file is not a database".into())
            }
            ErrorCode::DatabaseCorrupt => {
                return StoreError::NotSqlite(p, "the database file is corrupt or truncated".into())
            }
            ErrorCode::ReadOnly => return StoreError::ReadOnly(p),
            ErrorCode::DiskFull => return StoreError::Full(p),
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied => {
                return StoreError::Io {
                    path: p,
                    detail: format!("cannot open ({e})"),
                }
            }
            _ => {}
        }
    }
    StoreError::Sql {
        path: p,
        context: context.to_string(),
        detail: e.to_string(),
    }
}

/// The store path as SQLite must be given it to open exactly that file. The bundled SQLite
/// reads a name that starts with `file:` as a URI (`file:x.db?mode=memory` would be an
/// in-memory database that `init` reports created and that vanishes), whatever the open flags
/// say, so a relative path goes as `./PATH`, which is never a URI. `:memory:` and an empty path
/// are refused: neither is a file.
fn plain_path(path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(StoreError::Invalid(
            "the store path is empty: give the store's file path (--store PATH or MFACTL_STORE)"
                .into(),
        ));
    }
    if path.as_os_str() == ":memory:" {
        return Err(StoreError::Invalid(
            "store `:memory:` is SQLite's in-memory database, which would vanish when mfactl \
             exits: give the store a file path (--store PATH or MFACTL_STORE), e.g. ./mfactl.db"
                .into(),
        ));
    }
    Ok(if path.is_relative() {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    })
}

fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(|_| ())
        .map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            detail: format!("cannot create: {e}"),
        })
}

/// The store revision: incremented by every apply and import.
pub fn revision(conn: &Connection, path: &Path) -> Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
        r.get(0)
            .map_err(|e| damage::name_row(e, r, &|_| "meta, row `revision`".to_string()))
    })
    .map_err(|e| revision_err(path, "read revision", e))
}

pub(crate) fn bump_revision(conn: &Connection, path: &Path) -> Result<i64> {
    revision(conn, path)?;
    conn.query_row(
        "UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value",
        [],
        |r| {
            r.get(0)
                .map_err(|e| damage::name_row(e, r, &|_| "meta, row `revision`".to_string()))
        },
    )
    .map_err(|e| revision_err(path, "bump revision", e))
}

fn revision_err(path: &Path, context: &str, e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::Damaged {
            path: path.to_path_buf(),
            detail: "meta: the `revision` row is missing".to_string(),
        },
        e => map_err(path, context, e),
    }
}

/// The audit log, oldest first, optionally for one user and from a time on.
pub fn audit(
    conn: &Connection,
    path: &Path,
    user: Option<&str>,
    since: Option<crate::model::Timestamp>,
) -> Result<Vec<crate::model::AuditRecord>> {
    read_audit(conn, user, since).map_err(|e| map_err(path, "read audit log", e))
}

pub(crate) fn read_audit(
    conn: &Connection,
    user: Option<&str>,
    since: Option<crate::model::Timestamp>,
) -> rusqlite::Result<Vec<crate::model::AuditRecord>> {
    let mut out = Vec::new();
    each_audit(conn, user, since, &mut |r| out.push(r))?;
    Ok(out)
}

/// Streams audit records, oldest first, to `f` without holding the log in memory.
pub(crate) fn each_audit(
    conn: &Connection,
    user: Option<&str>,
    since: Option<crate::model::Timestamp>,
    f: &mut dyn FnMut(crate::model::AuditRecord),
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, actor, role, action, user, before, after, sources, plan_id, prev_hash, hash,
                requested_by
         FROM audit WHERE (?1 IS NULL OR user_key = ?1) AND (?2 IS NULL OR at >= ?2) ORDER BY seq",
    )?;
    let key = user.map(crate::model::key_of);
    let mut rows = stmt.query(rusqlite::params![key, since.map(|t| t.unix())])?;
    while let Some(r) = rows.next()? {
        // Text is read as the chain hashes it, whatever its type, so that an edited record
        // still lists (and `audit verify` names it); only the record's time must be a time.
        let text = |i: usize| damage::lossy(r, i).map(std::borrow::Cow::into_owned);
        let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
            let s = text(i)?;
            Ok(serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s)))
        };
        let record = || -> rusqlite::Result<crate::model::AuditRecord> {
            let sources: serde_json::Value = json(8)?;
            Ok(crate::model::AuditRecord {
                seq: r.get(0)?,
                at: damage::time(r, 1)?,
                actor: text(2)?,
                role: text(3)?,
                action: text(4)?,
                user: text(5)?,
                before: json(6)?,
                after: json(7)?,
                sources: serde_json::from_value(sources).unwrap_or_default(),
                plan_id: text(9)?,
                prev_hash: text(10)?,
                hash: text(11)?,
                requested_by: match r.get_ref(12)? {
                    rusqlite::types::ValueRef::Null => None,
                    _ => serde_json::from_str(&text(12)?).ok(),
                },
            })
        };
        f(record().map_err(|e| {
            damage::name_row(e, r, &|r| format!("audit, record #{}", damage::cell(r, 0)))
        })?);
    }
    Ok(())
}

/// Runs `read` inside a savepoint, so that its queries see one snapshot of the store (and nest
/// inside an apply's transaction); it is released either way, as reading changes nothing.
pub fn read_snapshot<T, E: From<StoreError>>(
    conn: &Connection,
    path: &Path,
    read: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let e = |e| map_err(path, "read the store", e);
    conn.execute_batch("SAVEPOINT mfactl_read").map_err(e)?;
    let result = read();
    let end = if result.is_ok() {
        "RELEASE mfactl_read"
    } else {
        "ROLLBACK TO mfactl_read; RELEASE mfactl_read"
    };
    let ended = conn.execute_batch(end).map_err(e);
    let value = result?;
    ended?;
    Ok(value)
}

/// Streams the stored records through `verifier`, hashing the stored text as it is (nothing is
/// parsed or allocated per record: 200,000 records take a fraction of a second).
fn verify_records(
    conn: &Connection,
    verifier: &mut crate::audit::Verifier,
) -> rusqlite::Result<()> {
    use rusqlite::types::ValueRef;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, actor, role, action, user, before, after, sources, plan_id, prev_hash, hash,
                requested_by
         FROM audit ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut buf = Vec::new();
    while let Some(r) = rows.next()? {
        // A value someone stored with another type hashes as its text, so it shows as edited.
        let text = |i: usize| damage::lossy(r, i);
        let int = |i: usize| -> rusqlite::Result<i64> {
            Ok(match r.get_ref(i)? {
                ValueRef::Integer(n) => n,
                _ => i64::MIN,
            })
        };
        let (seq, action, prev_hash, hash) = (int(0)?, text(4)?, text(10)?, text(11)?);
        let requested_by = match r.get_ref(12)? {
            ValueRef::Null => None,
            _ => Some(text(12)?),
        };
        let computed = crate::audit::Canonical {
            seq,
            at: int(1)?,
            actor: &text(2)?,
            role: &text(3)?,
            action: &action,
            user: &text(5)?,
            before: &text(6)?,
            after: &text(7)?,
            sources: &text(8)?,
            plan_id: &text(9)?,
            prev_hash: &prev_hash,
            requested_by: requested_by.as_deref(),
        }
        .hash(&mut buf);
        verifier.check(seq, &action, &prev_hash, &hash, &computed);
    }
    Ok(())
}

/// Verifies the whole audit chain against the recorded head.
pub fn verify_audit(conn: &Connection, path: &Path) -> Result<crate::audit::Report> {
    let e = |e| map_err(path, "verify audit log", e);
    let mut verifier = crate::audit::Verifier::default();
    verify_records(conn, &mut verifier).map_err(e)?;
    // The head is compared as stored text, like the records; a head that is missing or holds
    // no count is a break of the chain (records deleted from the end could hide behind it),
    // reported by `audit verify` and refused by apply, not an unreadable store.
    let head = conn
        .query_row("SELECT hash, count FROM audit_head WHERE id = 1", [], |r| {
            let hash = damage::lossy(r, 0)?.into_owned();
            Ok(match r.get_ref(1)? {
                rusqlite::types::ValueRef::Integer(count) => Ok((hash, count)),
                other => Err(format!(
                    "holds {} as its count of records",
                    damage::describe(other)
                )),
            })
        })
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(Err("is missing".to_string())),
            e => Err(e),
        })
        .map_err(e)?;
    Ok(match head {
        Ok((hash, count)) => verifier.finish(Some((&hash, count))),
        Err(what) => verifier.finish_without_head(&what),
    })
}
