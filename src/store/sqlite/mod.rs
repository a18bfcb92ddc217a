//! The SQLite store (see docs/store.md): one file holds the directory (one compact record per
//! user, see [`crate::store::record`]; groups and their members), the audit log and the store revision.
//! Schema changes are numbered forward-only migrations tracked in `PRAGMA user_version`;
//! `PRAGMA application_id` marks the file as ours so that someone else's SQLite database is
//! refused rather than written to. The write lock is SQLite's own (`BEGIN IMMEDIATE`), waited
//! for up to the lock timeout.

mod damage;
mod load;
mod schema;
mod write;

use super::backend::{AuditRow, Backend, Head, Piece};
use super::{Init, Result, StoreError};
use crate::model::{AuditRecord, Group, Timestamp, User};
use crate::store::record::Stored;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `MFAC` as a big-endian u32: marks an mfactl store in the SQLite header.
const APPLICATION_ID: i64 = 0x4D46_4143;

pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
    lock_timeout: Duration,
}

impl Sqlite {
    /// A store over a connection already open on a file of the current layout, unchecked (the
    /// layout benchmark builds such files itself). Everything else opens with [`Sqlite::open`].
    pub fn with_connection(conn: Connection, path: &Path) -> Sqlite {
        Sqlite {
            conn,
            path: path.to_path_buf(),
            lock_timeout: Duration::ZERO,
        }
    }

    /// Opens an existing store and checks that it is ours and of this schema version.
    pub fn open(path: &Path, lock_timeout: Duration) -> Result<Sqlite> {
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
    pub fn init(path: &Path, lock_timeout: Duration) -> Result<(Sqlite, Init)> {
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

    fn connect(path: &Path, lock_timeout: Duration) -> Result<Sqlite> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(plain_path(path)?, flags)
            .map_err(|e| map_err(path, "open", e))?;
        conn.busy_timeout(lock_timeout)
            .map_err(|e| map_err(path, "open", e))?;
        let store = Sqlite {
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

    /// A mapper from rusqlite errors to store errors that name this store and the step.
    pub(crate) fn err(&self, context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| match map_err(&self.path, context, e) {
            StoreError::Locked(p, _) => StoreError::Locked(p, self.lock_timeout),
            other => other,
        }
    }
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

/// Every audit row as stored, oldest first. A value someone stored with another type reads as
/// its text (an integer column as `i64::MIN`), so that it shows as edited, not unreadable.
fn each_audit_row(conn: &Connection, each: &mut dyn FnMut(&AuditRow)) -> rusqlite::Result<()> {
    use rusqlite::types::ValueRef;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, actor, role, action, user, user_key, before, after, sources, plan_id,
                prev_hash, hash, requested_by
         FROM audit ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let text = |i: usize| damage::lossy(r, i).map(std::borrow::Cow::into_owned);
        let int = |i: usize| -> rusqlite::Result<i64> {
            Ok(match r.get_ref(i)? {
                ValueRef::Integer(n) => n,
                _ => i64::MIN,
            })
        };
        let row = AuditRow {
            seq: int(0)?,
            at: int(1)?,
            actor: text(2)?,
            role: text(3)?,
            action: text(4)?,
            user: text(5)?,
            user_key: text(6)?,
            before: text(7)?,
            after: text(8)?,
            sources: text(9)?,
            plan_id: text(10)?,
            prev_hash: text(11)?,
            hash: text(12)?,
            requested_by: match r.get_ref(13)? {
                ValueRef::Null => None,
                _ => Some(text(13)?),
            },
        };
        each(&row);
    }
    Ok(())
}

/// The recorded head of the audit chain, compared as stored text, like the records.
fn audit_head(conn: &Connection, path: &Path) -> Result<Head> {
    let e = |e| map_err(path, "verify audit log", e);
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
        Ok((hash, count)) => Head::Recorded { hash, count },
        Err(what) => Head::Broken(what),
    })
}

impl Backend for Sqlite {
    fn name(&self) -> &Path {
        &self.path
    }

    fn snapshot_begin(&self) -> Result<()> {
        // A savepoint outside a transaction begins a deferred one: one snapshot for its reads.
        self.conn
            .execute_batch("SAVEPOINT mfactl_read")
            .map_err(self.err("read the store"))
    }

    fn snapshot_end(&self, ok: bool) -> Result<()> {
        let end = if ok {
            "RELEASE mfactl_read"
        } else {
            "ROLLBACK TO mfactl_read; RELEASE mfactl_read"
        };
        self.conn
            .execute_batch(end)
            .map_err(self.err("read the store"))
    }

    fn begin_write(&self) -> Result<()> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(self.err("begin transaction"))
    }

    fn commit_write(&self) -> Result<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(self.err("commit"))
    }

    fn rollback_write(&self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    fn revision(&self) -> Result<i64> {
        revision(&self.conn, &self.path)
    }

    fn load_groups(&self) -> Result<BTreeMap<String, Group>> {
        load::load_groups(&self.conn, &self.path)
    }

    fn existing_users(&self, keys: &BTreeSet<String>) -> Result<BTreeSet<String>> {
        load::existing_users(&self.conn, &self.path, keys)
    }

    fn load_keys(&self, keys: &[String]) -> Result<BTreeMap<String, User>> {
        load::load_keys(&self.conn, &self.path, keys)
    }

    fn select(&self, users: &BTreeSet<String>, groups: &BTreeSet<String>) -> Result<Vec<String>> {
        load::select(&self.conn, &self.path, users, groups)
    }

    fn selected_named(&self, named: &BTreeSet<String>) -> Result<BTreeSet<String>> {
        load::selected_named(&self.conn, &self.path, named)
    }

    fn load_selected(&self, first: &str, last: &str) -> Result<BTreeMap<String, User>> {
        load::load_selected(&self.conn, &self.path, first, last)
    }

    fn user_batches(
        &self,
        batch: usize,
        each: &mut dyn FnMut(BTreeMap<String, User>) -> bool,
    ) -> Result<()> {
        load::user_batches(&self.conn, &self.path, batch, each)
    }

    fn read_records(&self, keys: &[&str]) -> Result<Vec<(String, Stored)>> {
        Ok(load::read_records(&self.conn, &self.path, keys, false)?
            .into_iter()
            .filter_map(|(k, s)| Some((k, s?)))
            .collect())
    }

    fn read_records_lenient(&self, keys: &[&str]) -> Result<Vec<(String, Option<Stored>)>> {
        load::read_records(&self.conn, &self.path, keys, true)
    }

    fn plan_applied(&self, plan_id: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT count(*) FROM applied_plans WHERE plan_id = ?1",
                [plan_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(self.err("read applied plans"))
    }

    fn each_audit(
        &self,
        user_key: Option<&str>,
        since: Option<Timestamp>,
        each: &mut dyn FnMut(AuditRecord),
    ) -> Result<()> {
        each_audit(&self.conn, user_key, since, each).map_err(self.err("read audit log"))
    }

    fn each_audit_row(&self, each: &mut dyn FnMut(&AuditRow)) -> Result<()> {
        each_audit_row(&self.conn, each).map_err(self.err("verify audit log"))
    }

    fn audit_head(&self) -> Result<Head> {
        audit_head(&self.conn, &self.path)
    }

    fn max_audit_seq(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))
            .map_err(self.err("read audit log"))
    }

    fn bump_revision(&self) -> Result<i64> {
        bump_revision(&self.conn, &self.path)
    }

    fn update_records(&self, records: &[(&str, &[u8])]) -> Result<()> {
        self.write_records(records, false)
    }

    fn upsert_records(&self, records: &[(&str, &[u8])]) -> Result<()> {
        self.write_records(records, true)
    }

    fn insert_members(&self, pairs: &[(&str, &str)]) -> Result<()> {
        self.members(pairs, true)
    }

    fn delete_members(&self, pairs: &[(&str, &str)]) -> Result<()> {
        self.members(pairs, false)
    }

    fn delete_members_of(&self, user_keys: &[&str]) -> Result<()> {
        self.delete_members_of_users(user_keys)
    }

    fn upsert_groups(&self, groups: &[Group]) -> Result<()> {
        self.write_groups(groups)
    }

    fn append_audit(&self, rows: &[AuditRow]) -> Result<()> {
        self.write_audit(rows)
    }

    fn set_audit_head(&self, hash: &str, count: i64) -> Result<()> {
        self.write_head(hash, count)
    }

    fn record_applied(&self, plan_id: &str, at: Timestamp, revision: i64) -> Result<()> {
        self.write_applied(plan_id, at.unix(), revision)
    }

    fn bulk_mode(&self, on: bool) -> Result<()> {
        self.set_bulk_mode(on)
    }

    fn is_blank(&self) -> Result<bool> {
        let e = self.err("read the store");
        let rows: i64 = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM users LIMIT 1))
                      + (SELECT count(*) FROM (SELECT 1 FROM groups LIMIT 1))
                      + (SELECT count(*) FROM (SELECT 1 FROM audit LIMIT 1))
                      + (SELECT count(*) FROM (SELECT 1 FROM applied_plans LIMIT 1))",
                [],
                |r| r.get(0),
            )
            .map_err(e)?;
        Ok(rows == 0 && self.revision()? == 0)
    }

    fn dump(&self, each: &mut dyn FnMut(Piece) -> Result<()>) -> Result<()> {
        use rusqlite::types::ValueRef;
        let e = self.err("read the store");
        each(Piece::Revision(self.revision()?))?;
        let mut groups = self
            .conn
            .prepare("SELECT key, name, role_assignable FROM groups ORDER BY key")
            .map_err(&e)?;
        let mut rows = groups.query([]).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            let piece = Piece::Group {
                key: r.get(0).map_err(&e)?,
                name: r.get(1).map_err(&e)?,
                role_assignable: r.get(2).map_err(&e)?,
            };
            each(piece)?;
        }
        let mut users = self
            .conn
            .prepare("SELECT key, record FROM users ORDER BY key")
            .map_err(&e)?;
        let mut rows = users.query([]).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            let record = match r.get_ref(1).map_err(&e)? {
                ValueRef::Blob(b) => b.to_vec(),
                other => {
                    return Err(StoreError::Damaged {
                        path: self.path.clone(),
                        detail: format!(
                            "users, user {}: column `record` holds {}, where mfactl writes a blob",
                            damage::cell(r, 0),
                            damage::describe(other)
                        ),
                    })
                }
            };
            each(Piece::User {
                key: r.get(0).map_err(&e)?,
                record,
            })?;
        }
        let mut members = self
            .conn
            .prepare("SELECT group_key, user_key FROM members ORDER BY group_key, user_key")
            .map_err(&e)?;
        let mut rows = members.query([]).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            each(Piece::Member {
                group_key: r.get(0).map_err(&e)?,
                user_key: r.get(1).map_err(&e)?,
            })?;
        }
        let mut failed: Option<StoreError> = None;
        each_audit_row(&self.conn, &mut |row| {
            if failed.is_none() {
                if let Err(err) = each(Piece::Audit(Box::new(row.clone()))) {
                    failed = Some(err);
                }
            }
        })
        .map_err(&e)?;
        if let Some(err) = failed.take() {
            return Err(err);
        }
        if let Head::Recorded { hash, count } = self.audit_head()? {
            each(Piece::AuditHead { hash, count })?;
        }
        let mut plans = self
            .conn
            .prepare("SELECT plan_id, applied_at, revision FROM applied_plans ORDER BY plan_id")
            .map_err(&e)?;
        let mut rows = plans.query([]).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            each(Piece::AppliedPlan {
                plan_id: r.get(0).map_err(&e)?,
                applied_at: r.get(1).map_err(&e)?,
                revision: r.get(2).map_err(&e)?,
            })?;
        }
        Ok(())
    }

    fn restore(&self, pieces: &[Piece]) -> Result<()> {
        self.write_pieces(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An import turns foreign keys off for its transaction; they must be on again after it.
    #[test]
    fn bulk_mode_off_turns_foreign_keys_back_on() {
        let tmp = tempfile::tempdir().unwrap();
        let (st, _) = Sqlite::init(&tmp.path().join("s.db"), Duration::ZERO).unwrap();
        let fk = |st: &Sqlite| -> i64 {
            st.conn
                .pragma_query_value(None, "foreign_keys", |r| r.get(0))
                .unwrap()
        };
        st.bulk_mode(true).unwrap();
        assert_eq!(fk(&st), 0);
        st.bulk_mode(false).unwrap();
        assert_eq!(fk(&st), 1);
    }
}
