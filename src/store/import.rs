//! The SQL of an import: one `BEGIN IMMEDIATE` transaction that upserts the groups and replaces
//! each listed user's record as a whole, written many rows to a statement. Reading and checking
//! the file is `directory`'s; streaming it through here is `ops::import`'s.

use super::load::load_groups;
use super::{bump_revision, map_err, Result, Store, StoreError};
use crate::model::{key_of, Directory, Group, User};
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
        tx.execute_batch("DELETE FROM temp.imported")
            .map_err(|e| map_err(&path, "import", e))?;
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
    let e = |e| map_err(path, "import", e);
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
    // Each listed user's old rows go in one statement per table, through a temporary table of
    // their keys, rather than six statements per user (most of an import's statements).
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS imported (key TEXT PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.imported;",
    )
    .map_err(e)?;
    let keys: Vec<String> = users.iter().map(User::key).collect();
    // A user listed twice (only possible past `parse`) is replaced by its last record.
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
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
    let mut listed = Rows::new(
        tx,
        path,
        "INSERT OR IGNORE INTO temp.imported (key) VALUES ",
        1,
        "",
    );
    let mut user_up = Rows::new(
        tx,
        path,
        "INSERT INTO users (key, id, display_name, enabled, password_set_at, must_change_password,
                            registration_valid_from, sessions_valid_from, devices_valid_from)
         VALUES ",
        9,
        " ON CONFLICT (key) DO UPDATE SET
            id = excluded.id, display_name = excluded.display_name, enabled = excluded.enabled,
            password_hash = CASE WHEN users.password_set_at IS excluded.password_set_at
                                 THEN users.password_hash END,
            password_set_at = excluded.password_set_at,
            must_change_password = excluded.must_change_password,
            registration_valid_from = excluded.registration_valid_from,
            sessions_valid_from = excluded.sessions_valid_from,
            devices_valid_from = excluded.devices_valid_from",
    );
    // Rows in file order, so that a user listed twice ends as its last record, as before.
    for (k, u) in keys.iter().zip(users) {
        listed.push(&[k])?;
        user_up.push(&[
            k,
            &u.id,
            &u.display_name,
            &u.enabled,
            &u.password_set_at,
            &u.must_change_password,
            &u.registration_valid_from,
            &u.sessions_valid_from,
            &u.devices_valid_from,
        ])?;
    }
    listed.finish()?;
    user_up.finish()?;
    for t in [
        "user_roles",
        "memberships",
        "methods",
        "sessions",
        "trusted_devices",
        "app_passwords",
    ] {
        tx.execute(
            &format!("DELETE FROM {t} WHERE user_key IN (SELECT key FROM temp.imported)"),
            [],
        )
        .map_err(e)?;
    }
    let mut role = Rows::new(
        tx,
        path,
        "INSERT OR IGNORE INTO user_roles (user_key, role) VALUES ",
        2,
        "",
    );
    let mut member = Rows::new(
        tx,
        path,
        "INSERT OR IGNORE INTO memberships (user_key, group_key) VALUES ",
        2,
        "",
    );
    let mut method = Rows::new(
        tx,
        path,
        "INSERT INTO methods (user_key, id, kind, registered_at) VALUES ",
        4,
        "",
    );
    let mut session = Rows::new(
        tx,
        path,
        "INSERT INTO sessions (user_key, id, issued_at) VALUES ",
        3,
        "",
    );
    let mut device = Rows::new(
        tx,
        path,
        "INSERT INTO trusted_devices (user_key, id, name, remembered_at) VALUES ",
        4,
        "",
    );
    let mut app = Rows::new(
        tx,
        path,
        "INSERT INTO app_passwords (user_key, id, name, created_at) VALUES ",
        4,
        "",
    );
    let group_keys: Vec<Vec<String>> = latest
        .iter()
        .map(|(_, u)| u.groups.iter().map(|g| key_of(g)).collect())
        .collect();
    for (i, ((k, u), groups)) in latest.iter().zip(&group_keys).enumerate() {
        if i % 1024 == 0 {
            progress(i, latest.len());
        }
        for r in &u.roles {
            role.push(&[k, r])?;
        }
        for g in groups {
            member.push(&[k, g])?;
        }
        for m in &u.methods {
            method.push(&[k, &m.id, &m.kind, &m.registered_at])?;
        }
        for s in &u.sessions {
            session.push(&[k, &s.id, &s.issued_at])?;
        }
        for d in &u.trusted_devices {
            device.push(&[k, &d.id, &d.name, &d.remembered_at])?;
        }
        for a in &u.app_passwords {
            app.push(&[k, &a.id, &a.name, &a.created_at])?;
        }
    }
    for rows in [role, member, method, session, device, app] {
        rows.finish()?;
    }
    Ok(())
}
