//! The SQL of an import: one `BEGIN IMMEDIATE` transaction that upserts the groups and replaces
//! each listed user's record as a whole, written many rows to a statement. Reading and checking
//! the file is `directory`'s; streaming it through here is `ops::import`'s.

use super::load::load_groups;
use super::record::{self, Stored};
use super::{bump_revision, map_err, Result, Store, StoreError};
use crate::model::{key_of, Directory, Group, Timestamp, User};
use crate::util::escape_text;
use rusqlite::params;
use std::collections::BTreeSet;
use std::path::Path;

/// Upserts the directory in one transaction. Returns (groups, users) written and the new revision.
pub fn import(store: &mut Store, file: &str, dir: &Directory) -> Result<(usize, usize, i64)> {
    import_with_progress(store, file, dir, &mut |_, _| {})
}

/// [`import`], calling `progress(done, total)` now and then as the users are written.
pub fn import_with_progress(
    store: &mut Store,
    file: &str,
    dir: &Directory,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(usize, usize, i64)> {
    let imported = in_import_transaction(store, |tx, path| {
        let mut known = write_groups(tx, path, &dir.groups)?;
        write_users(tx, path, file, &dir.users, &mut known, progress)?;
        progress(dir.users.len(), dir.users.len());
        Ok(Some((dir.groups.len(), dir.users.len())))
    })?;
    Ok(imported.unwrap_or((0, 0, 0)))
}

/// Runs `write` in one `BEGIN IMMEDIATE` transaction with a large page cache, bumping the revision
/// and committing when it returns `Some((groups, users))`; rolling back when it returns `None`.
pub fn in_import_transaction(
    store: &mut Store,
    write: impl FnOnce(&rusqlite::Transaction, &Path) -> Result<Option<(usize, usize)>>,
) -> Result<Option<(usize, usize, i64)>> {
    let path = store.path().to_path_buf();
    // A 64 MiB page cache for the import's transaction: with SQLite's default 2 MB, an import of
    // 100,000 users spills dirty pages to the WAL over and over, which measured 1.7× slower.
    let cache: i64 = store
        .conn()
        .pragma_query_value(None, "cache_size", |r| r.get(0))
        .map_err(|e| map_err(&path, "import", e))?;
    store
        .conn()
        .pragma_update(None, "cache_size", IMPORT_CACHE_KIB)
        .map_err(|e| map_err(&path, "import", e))?;
    // Foreign keys are not checked row by row during the import (a quarter of its writes'
    // time): it writes a user's rows only after the user, and refuses a group the store does
    // not know before writing, so it cannot break one. They are on again afterwards.
    store
        .conn()
        .execute_batch("PRAGMA foreign_keys = OFF")
        .map_err(|e| map_err(&path, "import", e))?;
    let imported = (|| {
        let tx = store.begin()?;
        let Some((groups, users)) = write(&tx, &path)? else {
            return Ok(None); // dropped: rolled back
        };
        let revision = bump_revision(&tx, &path)?;
        super::commit(tx, &path)?;
        Ok(Some((groups, users, revision)))
    })();
    store
        .conn()
        .pragma_update(None, "cache_size", cache)
        .and_then(|_| store.conn().execute_batch("PRAGMA foreign_keys = ON"))
        .map_err(|e| map_err(&path, "import", e))?;
    imported
}

/// The import's page cache, in KiB (negative: SQLite's unit for a size rather than pages).
const IMPORT_CACHE_KIB: i64 = -65_536;

/// Upserts the groups; the keys of every group the store then knows.
pub fn write_groups(
    tx: &rusqlite::Transaction,
    path: &Path,
    groups: &[Group],
) -> Result<BTreeSet<String>> {
    let e = |e| map_err(path, "import", e);
    let mut known: BTreeSet<String> = load_groups(tx, path)?.into_keys().collect();
    let mut up = tx
        .prepare_cached(
            "INSERT INTO groups (key, name, role_assignable) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET name = excluded.name, role_assignable = excluded.role_assignable",
        )
        .map_err(e)?;
    for g in groups {
        up.execute(params![key_of(&g.name), g.name, g.role_assignable])
            .map_err(e)?;
        known.insert(key_of(&g.name));
    }
    Ok(known)
}

/// Rows for one `INSERT`, written [`Rows::PER_STATEMENT`] to a statement: SQLite's cost per
/// statement (binding, stepping, resetting) is most of a small row's, so an import of 100,000
/// users (830,000 rows) writes a fraction of the statements.
struct Rows<'t, 'v> {
    tx: &'t rusqlite::Transaction<'t>,
    path: &'t Path,
    /// `INSERT … VALUES `, and what follows the rows (an upsert clause).
    head: &'static str,
    tail: &'static str,
    columns: usize,
    values: Vec<&'v dyn rusqlite::ToSql>,
    /// The statement for a full batch of rows, once built.
    full: Option<String>,
}

impl<'t, 'v> Rows<'t, 'v> {
    const PER_STATEMENT: usize = 64;

    fn new(
        tx: &'t rusqlite::Transaction<'t>,
        path: &'t Path,
        head: &'static str,
        columns: usize,
        tail: &'static str,
    ) -> Self {
        Rows {
            tx,
            path,
            head,
            tail,
            columns,
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
            .map_err(|e| map_err(self.path, "import", e))?;
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

/// Users encoded per batch of an import's writes.
const BATCH: usize = 8_192;

/// For each of `users` the store holds: the time and hash of their password, if it has a hash,
/// and their group keys. A record that does not decode is replaced by the import (the import
/// repairs it); its `members` rows are found by a scan instead.
#[allow(clippy::type_complexity)]
fn old_records(
    tx: &rusqlite::Transaction,
    path: &Path,
    users: &[(&str, &User)],
) -> Result<std::collections::HashMap<String, (Option<(Timestamp, String)>, Vec<String>)>> {
    let e = |e| map_err(path, "import", e);
    let mut out = std::collections::HashMap::new();
    let any: i64 = tx
        .query_row(
            "SELECT count(*) FROM (SELECT 1 FROM users LIMIT 1)",
            [],
            |r| r.get(0),
        )
        .map_err(e)?;
    if any == 0 {
        return Ok(out);
    }
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS imported (key TEXT PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.imported;",
    )
    .map_err(e)?;
    let mut listed = Rows::new(
        tx,
        path,
        "INSERT OR IGNORE INTO temp.imported (key) VALUES ",
        1,
        "",
    );
    for (k, _) in users {
        listed.push(&[k])?;
    }
    listed.finish()?;
    let mut damaged = false;
    {
        let names = std::collections::HashMap::new();
        let mut stmt = tx
            .prepare(
                "SELECT u.key, u.record FROM temp.imported i CROSS JOIN users u ON u.key = i.key",
            )
            .map_err(e)?;
        let mut rows = stmt.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            match super::load::decode_row(r, &names) {
                Ok(s) => {
                    let password = s.user.password_set_at.zip(s.password_hash);
                    out.insert(s.user.key(), (password, s.user.groups));
                }
                Err(_) => damaged = true,
            }
        }
    }
    if damaged {
        tx.execute(
            "DELETE FROM members WHERE user_key IN (SELECT key FROM temp.imported)",
            [],
        )
        .map_err(e)?;
    }
    tx.execute_batch("DELETE FROM temp.imported").map_err(e)?;
    Ok(out)
}

/// Replaces each of `users`' records as a whole (a user listed twice by its last record). Every
/// group a user is in must be `known`. `progress(done, total)` is called as the rows are written.
pub fn write_users(
    tx: &rusqlite::Transaction,
    path: &Path,
    file: &str,
    users: &[User],
    known: &mut BTreeSet<String>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    for u in users {
        for g in &u.groups {
            if !known.contains(&key_of(g)) {
                return Err(StoreError::Invalid(format!(
                    "{file}: user `{}` is in group `{}`, which is neither in the file's `groups:` nor in the store; add it to `groups:`",
                    escape_text(&u.id),
                    escape_text(g)
                )));
            }
        }
    }
    // A user listed twice (only possible past `parse`) is replaced by its last record.
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let keys: Vec<String> = users.iter().map(User::key).collect();
    for (i, k) in keys.iter().enumerate() {
        last.insert(k, i);
    }
    let latest: Vec<(&str, &User)> = keys
        .iter()
        .zip(users)
        .enumerate()
        .filter(|(i, (k, _))| last.get(k.as_str()) == Some(i))
        .map(|(_, (k, u))| (k.as_str(), u))
        .collect();
    // What the store holds of the listed users now: a password hash survives an import that
    // leaves the password's time alone, and the old groups' `members` rows go.
    let old = old_records(tx, path, &latest)?;
    let mut gone = Rows::new(
        tx,
        path,
        "DELETE FROM members WHERE (group_key, user_key) IN (VALUES ",
        2,
        ")",
    );
    for (key, (_, groups)) in &old {
        for g in groups {
            gone.push(&[g, key])?;
        }
    }
    gone.finish()?;
    // The records, encoded first (the `Rows` borrow them), a batch of users at a time.
    let mut encoded: Vec<Vec<u8>> = Vec::with_capacity(BATCH.min(latest.len()));
    let mut group_keys: Vec<Vec<String>> = Vec::with_capacity(BATCH.min(latest.len()));
    for (n, chunk) in latest.chunks(BATCH).enumerate() {
        progress(n * BATCH, latest.len());
        encoded.clear();
        group_keys.clear();
        for (k, u) in chunk {
            let mut user = (*u).clone();
            user.normalize();
            let mut stored = Stored::new(user);
            if let Some((Some((at, hash)), _)) = old.get(*k) {
                if stored.user.password_set_at == Some(*at) {
                    stored.password_hash = Some(hash.clone());
                }
            }
            encoded.push(record::to_bytes(k, &stored));
            group_keys.push(stored.user.groups.iter().map(|g| key_of(g)).collect());
        }
        let mut up = Rows::new(
            tx,
            path,
            "INSERT INTO users (key, record) VALUES ",
            2,
            " ON CONFLICT (key) DO UPDATE SET record = excluded.record",
        );
        let mut member = Rows::new(
            tx,
            path,
            "INSERT OR IGNORE INTO members (group_key, user_key) VALUES ",
            2,
            "",
        );
        for (((k, _), rec), groups) in chunk.iter().zip(&encoded).zip(&group_keys) {
            up.push(&[k, rec])?;
            for g in groups {
                member.push(&[g, k])?;
            }
        }
        up.finish()?;
        member.finish()?;
    }
    Ok(())
}
