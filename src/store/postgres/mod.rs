//! The PostgreSQL store (docs/postgres.md): the same rows as the SQLite file, in schema `mfactl` of a
//! database that several machines share. This module owns the connection and its transaction
//! state; `connect` reaches the server, `schema` creates and migrates the tables, `read`
//! and `write` are the [`Backend`] methods' SQL, `error` turns PostgreSQL's errors into
//! store errors.
//!
//! Three habits hold throughout. Every key is compared and sorted in the `"C"` collation (the
//! columns are declared with it): Rust orders keys by bytes, and plans, batches and copies must
//! come out as they do from SQLite. Reads never write, not even a temporary table (lists of
//! keys go as arrays), so that a read-only role can plan, show and audit. Many rows go in one
//! statement (arrays through `unnest`, or `COPY` for an import's thousands), never one
//! statement per row.

mod connect;
mod error;
mod read;
mod schema;
mod write;

#[cfg(test)]
mod tests;

use super::backend::{AuditRow, Backend, Head, Piece};
use super::record::Stored;
use super::{Init, Result, StoreError};
use crate::model::{AuditRecord, Group, Timestamp, User};
use error::Op;
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};
use std::cell::{Cell, RefCell, RefMut};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use connect::redact;
#[doc(hidden)]
pub use connect::{parsed_parts, pgpass_line};

/// The advisory lock every mfactl takes to write: the two-key form, so that its class
/// (`MFAC` as a big-endian number) keeps our ids apart from other applications' locks.
const LOCK_CLASS: i32 = 0x4D46_4143;
/// The lock's id within the class: the store's write lock.
const WRITE_LOCK: i32 = 1;

/// Begins a write transaction with the server's TCP keepalives on this connection at 10 s idle,
/// then 3 probes 5 s apart, until it ends (LOCAL). Over a Unix socket the server ignores them.
const KEEPALIVE_SQL: &str = "BEGIN; SET LOCAL tcp_keepalives_idle = 10; \
     SET LOCAL tcp_keepalives_interval = 5; SET LOCAL tcp_keepalives_count = 3";

/// The fence an apply checks in its own transaction, just before it commits (`$1` the replica
/// id, `$2` the epoch): no row means this replica no longer leads, and nothing may be committed.
/// `FOR SHARE` locks the row until that commit, so a takeover (an UPDATE of the row) waits for
/// it: an apply either commits before another replica leads, or is refused. The clock is
/// `clock_timestamp()`, not `now()`, which inside a transaction is the time it began: an apply
/// that began long ago (its replica hung) must not count its lease from back then.
pub const FENCE_SQL: &str = "SELECT 1 FROM mfactl.lease \
     WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp() \
     FOR SHARE";

/// Where the connection stands: the transaction, if any, that mfactl opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    None,
    /// A read-only, repeatable-read transaction: one snapshot for every read in it.
    Snapshot,
    /// The write transaction, holding the write lock.
    Write,
}

/// A connection to a PostgreSQL store. Trait methods take `&self`, so the client and the
/// transaction state sit in cells; the store is used from one thread.
pub struct Postgres {
    client: RefCell<Client>,
    /// The URL without its password: how every message names the store.
    name: PathBuf,
    lock_timeout: Duration,
    tx: Cell<Tx>,
    /// Savepoints open inside the transaction (nested snapshots).
    savepoints: Cell<u32>,
    /// The savepoint depth at which a statement of the open transaction failed, if one did:
    /// PostgreSQL then refuses every statement until it is rolled back to before that, and a
    /// `COMMIT` would quietly roll back instead, so that commit is refused here.
    failed_at: Cell<Option<u32>>,
    /// The plan's selection ([`Backend::select`]), sorted by bytes.
    selection: RefCell<Vec<String>>,
    /// Prepared statements by SQL text: a plan or an apply runs the same few statements many
    /// times, and preparing costs a round trip.
    statements: RefCell<HashMap<&'static str, Statement>>,
}

impl std::fmt::Debug for Postgres {
    /// The name only: the client's configuration holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Opens the store at `url` and checks that it is ours and of this schema version.
pub fn open(url: &str, lock_timeout: Duration) -> Result<Box<dyn Backend>> {
    let pg = Postgres::connect(url, lock_timeout)?;
    pg.check_version()?;
    Ok(Box::new(pg))
}

/// Creates the store's tables in the database at `url`, or migrates older ones; a no-op on a
/// current store.
pub fn init(url: &str, lock_timeout: Duration) -> Result<(Box<dyn Backend>, Init)> {
    let pg = Postgres::connect(url, lock_timeout)?;
    let done = pg.init()?;
    Ok((Box::new(pg), done))
}

/// A connection of its own to the database at `url`, with the store's TLS modes and password
/// sources: the watch lease's, which must never be the store's (a session lock lives and dies
/// with its connection).
pub fn dedicated_client(url: &str) -> Result<postgres::Client> {
    let name = PathBuf::from(redact(url));
    let target = connect::parse(url)
        .map_err(|detail| StoreError::Invalid(format!("store {}: {detail}", name.display())))?;
    connect::connect(&target).map_err(|detail| StoreError::Io { path: name, detail })
}

impl Postgres {
    /// Connects to the database at `url` (libpq-style; see `connect`). Nothing is read or
    /// checked yet: [`Postgres::check_version`] or [`Postgres::init`] come next.
    pub fn connect(url: &str, lock_timeout: Duration) -> Result<Postgres> {
        let name = PathBuf::from(redact(url));
        let target = connect::parse(url)
            .map_err(|detail| StoreError::Invalid(format!("store {}: {detail}", name.display())))?;
        let client = connect::connect(&target).map_err(|detail| StoreError::Io {
            path: name.clone(),
            detail,
        })?;
        Ok(Postgres {
            client: RefCell::new(client),
            name,
            lock_timeout,
            tx: Cell::new(Tx::None),
            savepoints: Cell::new(0),
            failed_at: Cell::new(None),
            selection: RefCell::new(Vec::new()),
            statements: RefCell::new(HashMap::new()),
        })
    }

    /// The client, or an error if a callback of this store's own is calling back into it
    /// (a bug, reported rather than a panic).
    fn client(&self) -> Result<RefMut<'_, Client>> {
        self.client.try_borrow_mut().map_err(|_| {
            StoreError::Invalid(
                "internal: the PostgreSQL store was called from inside one of its own reads".into(),
            )
        })
    }

    /// A mapper from the client's errors to store errors naming this store and the step; it
    /// also remembers that the open transaction has failed.
    fn err(&self, op: Op, context: &'static str) -> impl Fn(postgres::Error) -> StoreError + '_ {
        move |e| {
            if self.tx.get() != Tx::None && self.failed_at.get().is_none() {
                self.failed_at.set(Some(self.savepoints.get()));
            }
            error::map(&self.name, self.lock_timeout, op, context, &e)
        }
    }

    /// The prepared statement for `sql`, prepared on first use.
    fn statement(
        &self,
        c: &mut Client,
        op: Op,
        ctx: &'static str,
        sql: &'static str,
    ) -> Result<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = c.prepare(sql).map_err(self.err(op, ctx))?;
        self.statements.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    /// Runs `sql` (prepared once) and returns its rows.
    fn query(
        &self,
        op: Op,
        ctx: &'static str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let mut c = self.client()?;
        let st = self.statement(&mut c, op, ctx, sql)?;
        c.query(&st, params).map_err(self.err(op, ctx))
    }

    /// Runs `sql` (prepared once) and returns how many rows it changed.
    fn execute(
        &self,
        op: Op,
        ctx: &'static str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        let mut c = self.client()?;
        let st = self.statement(&mut c, op, ctx, sql)?;
        c.execute(&st, params).map_err(self.err(op, ctx))
    }

    /// Runs statements without parameters (transaction control, DDL) in one round trip.
    fn batch(&self, op: Op, ctx: &'static str, sql: &str) -> Result<()> {
        self.client()?.batch_execute(sql).map_err(self.err(op, ctx))
    }

    /// Runs `read` in a snapshot of its own (nested in the caller's, if any).
    fn in_snapshot<T>(&self, read: impl FnOnce() -> Result<T>) -> Result<T> {
        self.snapshot_begin()?;
        let result = read();
        let ended = self.snapshot_end(result.is_ok());
        let value = result?;
        ended?;
        Ok(value)
    }

    /// Takes the write lock inside the open transaction, waiting up to the lock timeout (a
    /// timeout of zero tries once).
    fn take_write_lock(&self) -> Result<()> {
        let ctx = "take the store's write lock";
        if self.lock_timeout.is_zero() {
            let rows = self.query(
                Op::Read,
                ctx,
                "SELECT pg_try_advisory_xact_lock($1, $2)",
                &[&LOCK_CLASS, &WRITE_LOCK],
            )?;
            let taken = rows.first().and_then(|r| r.try_get::<_, bool>(0).ok());
            return match taken {
                Some(true) => Ok(()),
                _ => Err(StoreError::Locked(self.name.clone(), self.lock_timeout)),
            };
        }
        // `lock_timeout` bounds the wait for the advisory lock, and for any row lock after it
        // (LOCAL: it ends with the transaction). The server caps it at INT_MAX milliseconds.
        let ms = self.lock_timeout.as_millis().clamp(1, i32::MAX as u128);
        self.batch(Op::Read, ctx, &format!("SET LOCAL lock_timeout = '{ms}ms'"))?;
        self.query(
            Op::Read,
            ctx,
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &WRITE_LOCK],
        )?;
        Ok(())
    }

    /// The store's name as a `Path`, cloned (for errors).
    fn path(&self) -> PathBuf {
        self.name.clone()
    }

    /// A damaged-store error naming what is wrong.
    fn damaged(&self, detail: String) -> StoreError {
        StoreError::Damaged {
            path: self.path(),
            detail,
        }
    }
}

/// At most 60 characters of `s`, escaped so that it cannot steer a terminal: how a message
/// shows a stored value (as the SQLite store shows it).
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    crate::util::escape_text(&out).into_owned()
}

impl Backend for Postgres {
    fn name(&self) -> &Path {
        &self.name
    }

    fn snapshot_begin(&self) -> Result<()> {
        let ctx = "read the store";
        match self.tx.get() {
            Tx::None => {
                // Read only: a role that may only read can still plan, show and audit.
                self.batch(
                    Op::Read,
                    ctx,
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                )?;
                self.tx.set(Tx::Snapshot);
                self.savepoints.set(0);
                self.failed_at.set(None);
            }
            Tx::Snapshot | Tx::Write => {
                self.batch(Op::Read, ctx, "SAVEPOINT mfactl_read")?;
                self.savepoints.set(self.savepoints.get() + 1);
            }
        }
        Ok(())
    }

    fn snapshot_end(&self, ok: bool) -> Result<()> {
        let ctx = "read the store";
        let depth = self.savepoints.get();
        if depth > 0 {
            self.savepoints.set(depth - 1);
            if ok {
                return self.batch(Op::Read, ctx, "RELEASE SAVEPOINT mfactl_read");
            }
            self.batch(
                Op::Read,
                ctx,
                "ROLLBACK TO SAVEPOINT mfactl_read; RELEASE SAVEPOINT mfactl_read",
            )?;
            if self.failed_at.get().is_some_and(|at| at >= depth) {
                self.failed_at.set(None);
            }
            return Ok(());
        }
        if self.tx.get() != Tx::Snapshot {
            return Err(StoreError::Invalid(
                "internal: a snapshot ended that was not begun".into(),
            ));
        }
        self.tx.set(Tx::None);
        self.failed_at.set(None);
        // It wrote nothing: commit and rollback end it alike.
        self.batch(Op::Read, ctx, if ok { "COMMIT" } else { "ROLLBACK" })
    }

    fn begin_write(&self) -> Result<()> {
        if self.tx.get() != Tx::None {
            return Err(StoreError::Invalid(
                "internal: a write transaction begun inside another transaction".into(),
            ));
        }
        // Read committed, and the lock taken before anything is read: every read after it
        // sees what the previous holder committed. The keepalives are the server's, on this
        // connection, for this transaction: should this machine vanish while it holds the
        // store's lock (a power cut, a network partition: nothing closes the connection), the
        // server finds it dead within KEEPALIVE_SQL's 25 seconds rather than the operating
        // system's two hours, ends the session and frees the lock for the other applies.
        self.batch(Op::Read, "begin transaction", KEEPALIVE_SQL)?;
        self.tx.set(Tx::Write);
        self.savepoints.set(0);
        self.failed_at.set(None);
        if let Err(e) = self.take_write_lock() {
            self.rollback_write();
            return Err(e);
        }
        Ok(())
    }

    fn commit_write(&self) -> Result<()> {
        if self.tx.get() != Tx::Write {
            return Err(StoreError::Invalid(
                "internal: a commit without a write transaction".into(),
            ));
        }
        if self.failed_at.get().is_some() {
            self.rollback_write();
            return Err(StoreError::Invalid(
                "internal: a statement of the transaction failed, so it was rolled back".into(),
            ));
        }
        self.tx.set(Tx::None);
        self.savepoints.set(0);
        self.batch(Op::Commit, "commit", "COMMIT")
    }

    fn rollback_write(&self) {
        self.tx.set(Tx::None);
        self.savepoints.set(0);
        self.failed_at.set(None);
        if let Ok(mut c) = self.client.try_borrow_mut() {
            let _ = c.batch_execute("ROLLBACK");
        }
    }

    fn revision(&self) -> Result<i64> {
        self.read_revision()
    }

    fn load_groups(&self) -> Result<BTreeMap<String, Group>> {
        self.read_groups()
    }

    fn existing_users(&self, keys: &BTreeSet<String>) -> Result<BTreeSet<String>> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.read_existing(&keys)
    }

    fn load_keys(&self, keys: &[String]) -> Result<BTreeMap<String, User>> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.in_snapshot(|| self.read_users(&keys))
    }

    fn select(&self, users: &BTreeSet<String>, groups: &BTreeSet<String>) -> Result<Vec<String>> {
        let selected = self.read_selection(users, groups)?;
        *self.selection.borrow_mut() = selected.clone();
        Ok(selected)
    }

    fn selected_named(&self, named: &BTreeSet<String>) -> Result<BTreeSet<String>> {
        let keys: Vec<&str> = named.iter().map(String::as_str).collect();
        self.read_existing(&keys)
    }

    fn load_selected(&self, first: &str, last: &str) -> Result<BTreeMap<String, User>> {
        let keys: Vec<String> = {
            let sel = self.selection.borrow();
            let from = sel.partition_point(|k| k.as_str() < first);
            let to = sel.partition_point(|k| k.as_str() <= last);
            sel.get(from..to.max(from)).unwrap_or_default().to_vec()
        };
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.in_snapshot(|| self.read_users(&keys))
    }

    fn user_batches(
        &self,
        batch: usize,
        each: &mut dyn FnMut(BTreeMap<String, User>) -> bool,
    ) -> Result<()> {
        self.in_snapshot(|| self.read_user_batches(batch, each))
    }

    fn read_records(&self, keys: &[&str]) -> Result<Vec<(String, Stored)>> {
        Ok(self
            .in_snapshot(|| self.read_stored(keys, false))?
            .into_iter()
            .filter_map(|(k, s)| Some((k, s?)))
            .collect())
    }

    fn read_records_lenient(&self, keys: &[&str]) -> Result<Vec<(String, Option<Stored>)>> {
        self.in_snapshot(|| self.read_stored(keys, true))
    }

    fn plan_applied(&self, plan_id: &str) -> Result<bool> {
        self.read_plan_applied(plan_id)
    }

    fn check_fence(&self, fence: &crate::store::backend::Fence) -> Result<bool> {
        let rows = self.query(
            Op::Read,
            "checking this replica's lease",
            FENCE_SQL,
            &[&fence.holder(), &fence.epoch()],
        )?;
        Ok(!rows.is_empty())
    }

    fn each_audit(
        &self,
        user_key: Option<&str>,
        since: Option<Timestamp>,
        each: &mut dyn FnMut(AuditRecord),
    ) -> Result<()> {
        self.in_snapshot(|| {
            self.read_audit(user_key, since, &mut |row| {
                each(row.to_record());
                Ok(())
            })
        })
    }

    fn each_audit_row(&self, each: &mut dyn FnMut(&AuditRow)) -> Result<()> {
        self.in_snapshot(|| {
            self.read_audit(None, None, &mut |row| {
                each(row);
                Ok(())
            })
        })
    }

    fn audit_head(&self) -> Result<Head> {
        self.read_audit_head()
    }

    fn max_audit_seq(&self) -> Result<i64> {
        self.read_max_audit_seq()
    }

    fn bump_revision(&self) -> Result<i64> {
        self.write_bump_revision()
    }

    fn update_records(&self, records: &[(&str, &[u8])]) -> Result<()> {
        self.write_update_records(records)
    }

    fn upsert_records(&self, records: &[(&str, &[u8])]) -> Result<()> {
        self.write_upsert_records(records)
    }

    fn insert_members(&self, pairs: &[(&str, &str)]) -> Result<()> {
        self.write_insert_members(pairs)
    }

    fn insert_new_users(&self, records: &[(&str, &[u8])], members: &[(&str, &str)]) -> Result<()> {
        self.write_insert_new_users(records, members)
    }

    fn delete_members(&self, pairs: &[(&str, &str)]) -> Result<()> {
        self.write_delete_members(pairs)
    }

    fn delete_members_of(&self, user_keys: &[&str]) -> Result<()> {
        self.write_delete_members_of(user_keys)
    }

    fn upsert_groups(&self, groups: &[Group]) -> Result<()> {
        self.write_upsert_groups(groups)
    }

    fn append_audit(&self, rows: &[AuditRow]) -> Result<()> {
        self.write_audit(rows)
    }

    fn set_audit_head(&self, hash: &str, count: i64) -> Result<()> {
        self.write_audit_head(hash, count)
    }

    fn record_applied(&self, plan_id: &str, at: Timestamp, revision: i64) -> Result<()> {
        self.write_applied(plan_id, at.unix(), revision)
    }

    fn is_blank(&self) -> Result<bool> {
        self.in_snapshot(|| self.read_is_blank())
    }

    fn dump(&self, each: &mut dyn FnMut(Piece) -> Result<()>) -> Result<()> {
        self.in_snapshot(|| self.read_dump(each))
    }

    fn restore(&self, pieces: &[Piece]) -> Result<()> {
        self.write_pieces(pieces)
    }
}
