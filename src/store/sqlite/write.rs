//! The SQLite store's writes: records, the group index, groups, audit rows and the applied
//! plans, many rows to a statement (SQLite's cost per statement — binding, stepping,
//! resetting — is most of a small row's), and the rows of a copy.

use super::{map_err, Sqlite};
use crate::model::Group;
use crate::store::backend::{AuditRow, Piece};
use crate::store::Result;
use rusqlite::{params, Connection};
use std::path::Path;

/// Rows for one `INSERT`, written [`Rows::PER_STATEMENT`] to a statement: SQLite's cost per
/// statement (binding, stepping, resetting) is most of a small row's, so an import of 100,000
/// users (830,000 rows) writes a fraction of the statements.
struct Rows<'t, 'v> {
    tx: &'t Connection,
    path: &'t Path,
    /// `INSERT … VALUES `, and what follows the rows (an upsert clause).
    head: &'static str,
    tail: &'static str,
    columns: usize,
    /// The step named in errors.
    context: &'static str,
    values: Vec<&'v dyn rusqlite::ToSql>,
    /// The statement for a full batch of rows, once built.
    full: Option<String>,
}

impl<'t, 'v> Rows<'t, 'v> {
    const PER_STATEMENT: usize = 64;

    fn new(
        tx: &'t Connection,
        path: &'t Path,
        head: &'static str,
        columns: usize,
        tail: &'static str,
        context: &'static str,
    ) -> Self {
        Rows {
            tx,
            path,
            head,
            tail,
            columns,
            context,
            values: Vec::with_capacity(columns * Self::PER_STATEMENT),
            full: None,
        }
    }

    fn sql(&self, rows: usize) -> String {
        let one = format!("({})", vec!["?"; self.columns].join(", "));
        format!("{}{}{}", self.head, vec![one; rows].join(", "), self.tail)
    }

    fn push(&mut self, row: &[&'v dyn rusqlite::ToSql]) -> Result<()> {
        self.values.extend_from_slice(row);
        if self.values.len() == self.columns * Self::PER_STATEMENT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let rows = self.values.len() / self.columns;
        if rows == 0 {
            return Ok(());
        }
        let sql = if rows == Self::PER_STATEMENT {
            let full = self.full.take().unwrap_or_else(|| self.sql(rows));
            self.full.insert(full).clone()
        } else {
            self.sql(rows)
        };
        self.tx
            .prepare_cached(&sql)
            .and_then(|mut st| st.execute(self.values.as_slice()))
            .map_err(|e| map_err(self.path, self.context, e))?;
        self.values.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.flush()
    }
}

impl rusqlite::ToSql for crate::model::Timestamp {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.unix().into())
    }
}

/// The page cache during an import, in KiB (negative: SQLite's unit for a size rather than
/// pages): with SQLite's default 2 MB, an import of 100,000 users spills dirty pages to the WAL
/// over and over, which measured 1.7x slower.
const IMPORT_CACHE_KIB: i64 = -65_536;

impl Sqlite {
    /// On: a large page cache, and foreign keys not checked row by row (a quarter of an
    /// import's time; the import writes members only of groups it checked). Off: as before.
    pub(super) fn set_bulk_mode(&self, on: bool) -> Result<()> {
        let e = self.err("import");
        let cache = if on { IMPORT_CACHE_KIB } else { -2_000 };
        self.conn
            .pragma_update(None, "cache_size", cache)
            .map_err(&e)?;
        let fk = if on { "OFF" } else { "ON" };
        self.conn
            .execute_batch(&format!("PRAGMA foreign_keys = {fk}"))
            .map_err(e)
    }

    pub(super) fn write_records(&self, records: &[(&str, &[u8])], upsert: bool) -> Result<()> {
        let tail = if upsert {
            " ON CONFLICT (key) DO UPDATE SET record = excluded.record"
        } else {
            ""
        };
        if !upsert {
            // Replacing the records of users the store holds: one UPDATE each (a seek).
            let mut st = self
                .conn
                .prepare_cached("UPDATE users SET record = ?2 WHERE key = ?1")
                .map_err(self.err("apply"))?;
            for (k, r) in records {
                st.execute(params![k, r]).map_err(self.err("apply"))?;
            }
            return Ok(());
        }
        let mut rows = Rows::new(
            &self.conn,
            &self.path,
            "INSERT INTO users (key, record) VALUES ",
            2,
            tail,
            "import",
        );
        for (k, r) in records {
            rows.push(&[k, r])?;
        }
        rows.finish()
    }

    pub(super) fn members(&self, pairs: &[(&str, &str)], insert: bool) -> Result<()> {
        let (head, tail) = if insert {
            (
                "INSERT OR IGNORE INTO members (group_key, user_key) VALUES ",
                "",
            )
        } else {
            (
                "DELETE FROM members WHERE (group_key, user_key) IN (VALUES ",
                ")",
            )
        };
        let mut rows = Rows::new(&self.conn, &self.path, head, 2, tail, "import");
        for (g, u) in pairs {
            rows.push(&[g, u])?;
        }
        rows.finish()
    }

    pub(super) fn delete_members_of_users(&self, users: &[&str]) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached("DELETE FROM members WHERE user_key = ?1")
            .map_err(self.err("import"))?;
        for u in users {
            st.execute([u]).map_err(self.err("import"))?;
        }
        Ok(())
    }

    pub(super) fn write_groups(&self, groups: &[Group]) -> Result<()> {
        let mut up = self
            .conn
            .prepare_cached(
                "INSERT INTO groups (key, name, role_assignable) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET name = excluded.name, role_assignable = excluded.role_assignable",
            )
            .map_err(self.err("import"))?;
        for g in groups {
            up.execute(params![
                crate::model::key_of(&g.name),
                g.name,
                g.role_assignable
            ])
            .map_err(self.err("import"))?;
        }
        Ok(())
    }

    pub(super) fn write_audit(&self, records: &[AuditRow]) -> Result<()> {
        let mut rows = Rows::new(
            &self.conn,
            &self.path,
            "INSERT INTO audit (seq, at, actor, role, action, user, user_key, before, after, sources, plan_id, prev_hash, hash, requested_by) VALUES ",
            14,
            "",
            "append audit record",
        );
        for r in records {
            rows.push(&[
                &r.seq,
                &r.at,
                &r.actor,
                &r.role,
                &r.action,
                &r.user,
                &r.user_key,
                &r.before,
                &r.after,
                &r.sources,
                &r.plan_id,
                &r.prev_hash,
                &r.hash,
                &r.requested_by,
            ])?;
        }
        rows.finish()
    }

    pub(super) fn write_head(&self, hash: &str, count: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO audit_head (id, hash, count) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, count = excluded.count",
                params![hash, count],
            )
            .map(|_| ())
            .map_err(self.err("append audit record"))
    }

    pub(super) fn write_applied(&self, plan_id: &str, at: i64, revision: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO applied_plans (plan_id, applied_at, revision) VALUES (?1, ?2, ?3)",
                params![plan_id, at, revision],
            )
            .map(|_| ())
            .map_err(self.err("apply"))
    }

    /// Writes the pieces of a copy into this (blank) store.
    pub(super) fn write_pieces(&self, pieces: &[Piece]) -> Result<()> {
        let e = self.err("copy");
        for p in pieces {
            match p {
                Piece::Revision(r) => {
                    self.conn
                        .execute("UPDATE meta SET value = ?1 WHERE key = 'revision'", [r])
                        .map_err(&e)?;
                    // The head is the source's, or none when the source has none (a deleted
                    // head is a break `audit verify` must report on the copy too).
                    self.conn
                        .execute("DELETE FROM audit_head", [])
                        .map_err(&e)?;
                }
                Piece::Group {
                    key,
                    name,
                    role_assignable,
                } => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO groups (key, name, role_assignable) VALUES (?1, ?2, ?3)",
                        )
                        .and_then(|mut s| s.execute(params![key, name, role_assignable]))
                        .map_err(&e)?;
                }
                Piece::User { key, record } => {
                    self.conn
                        .prepare_cached("INSERT INTO users (key, record) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![key, record]))
                        .map_err(&e)?;
                }
                Piece::Member {
                    group_key,
                    user_key,
                } => {
                    self.conn
                        .prepare_cached("INSERT INTO members (group_key, user_key) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![group_key, user_key]))
                        .map_err(&e)?;
                }
                Piece::Audit(r) => self.write_audit(std::slice::from_ref(r))?,
                Piece::AuditHead { hash, count } => self.write_head(hash, *count)?,
                Piece::AppliedPlan {
                    plan_id,
                    applied_at,
                    revision,
                } => self.write_applied(plan_id, *applied_at, *revision)?,
            }
        }
        Ok(())
    }
}
