//! Loading the users a plan needs, in bulk: the wanted keys go into a temporary table (filled
//! with one statement) and the users' records are read with one join, one seek per user, so a
//! plan costs a handful of queries whatever its size.

use super::damage::{self, cell, name_row};
use super::{map_err, Result};
use crate::model::{Group, User};
use crate::store::record::{self, Stored};
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Which users to read.
pub(crate) enum Scope<'a> {
    /// The users whose keys lie between these two, inclusive (export reads the store in batches).
    Range { first: &'a str, last: &'a str },
    /// The keys of the plan's selection (`temp.selected`) between these two, inclusive.
    Selected { first: &'a str, last: &'a str },
    /// These keys, plus every member of these groups.
    Keys {
        users: &'a [String],
        groups: &'a [String],
    },
}

/// Which of `keys` are users in the store.
pub fn existing_users(
    conn: &Connection,
    path: &Path,
    keys: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let e = |e| map_err(path, "read users", e);
    snapshot(conn, path, || {
        fill_want(conn, keys.iter().map(String::as_str)).map_err(e)?;
        let mut stmt = conn
            .prepare_cached("SELECT w.key FROM temp.want w CROSS JOIN users u ON u.key = w.key")
            .map_err(e)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(e)
    })
}

/// These users (by key, sorted) with their whole state; keys without a user are left out.
pub fn load_keys(
    conn: &Connection,
    path: &Path,
    keys: &[String],
) -> Result<BTreeMap<String, User>> {
    load_users(
        conn,
        path,
        Scope::Keys {
            users: keys,
            groups: &[],
        },
    )
}

pub fn load_groups(conn: &Connection, path: &Path) -> Result<BTreeMap<String, Group>> {
    let e = |e| map_err(path, "read groups", e);
    let mut stmt = conn
        .prepare_cached("SELECT key, name, role_assignable FROM groups")
        .map_err(e)?;
    let rows = stmt
        .query_map([], |r| {
            let group = || -> rusqlite::Result<(String, Group)> {
                Ok((
                    r.get(0)?,
                    Group {
                        name: r.get(1)?,
                        role_assignable: r.get(2)?,
                    },
                ))
            };
            group().map_err(|e| name_row(e, r, &group_row))
        })
        .map_err(e)?;
    rows.collect::<rusqlite::Result<_>>().map_err(e)
}

pub(crate) fn load_users(
    conn: &Connection,
    path: &Path,
    scope: Scope,
) -> Result<BTreeMap<String, User>> {
    let e = |e| map_err(path, "read users", e);
    // One read transaction (a savepoint nests inside apply's): the queries see one snapshot, and
    // filling `want` is one temp-table transaction instead of one per key.
    snapshot(conn, path, || read_users(conn, scope).map_err(e))
}

/// `FROM … WHERE …` of a read of `users`: the whole table, a key range of it, or the table
/// driven by the wanted keys (`CROSS JOIN` keeps `want` the outer loop, so each user costs one
/// primary-key seek and the cost follows the users wanted, not the size of the store).
fn users_from(scope: &Scope) -> &'static str {
    match scope {
        Scope::Range { .. } => "FROM users c WHERE c.key BETWEEN ?1 AND ?2",
        Scope::Keys { .. } => "FROM temp.want w CROSS JOIN users c ON c.key = w.key",
        Scope::Selected { .. } => {
            "FROM temp.selected w CROSS JOIN users c ON c.key = w.key WHERE w.key BETWEEN ?1 AND ?2"
        }
    }
}

/// Fills this connection's `temp.want` with `keys`.
fn fill_want<'k>(conn: &Connection, keys: impl Iterator<Item = &'k str>) -> rusqlite::Result<()> {
    fill(conn, "want", keys)
}

/// Empties (creating it if need be) the temporary key table `table` and fills it with `keys`,
/// in one statement.
fn fill<'k>(
    conn: &Connection,
    table: &str,
    keys: impl Iterator<Item = &'k str>,
) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.{table};"
    ))?;
    let list: rusqlite::vtab::array::Array = std::rc::Rc::new(
        keys.map(|k| rusqlite::types::Value::Text(k.to_string()))
            .collect(),
    );
    conn.prepare_cached(&format!(
        "INSERT OR IGNORE INTO temp.{table} (key) SELECT value FROM rarray(?1)"
    ))?
    .execute([list])?;
    Ok(())
}

/// A plan's selection, kept in the temporary table `selected` for the plan's snapshot: the
/// users named (whether they exist or not) and every member of the groups named. Returns every
/// selected key, sorted. Loading it a batch at a time reads a key range of the table
/// ([`load_selected`]), with no key list sent again.
pub fn select(
    conn: &Connection,
    path: &Path,
    users: &BTreeSet<String>,
    groups: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let e = |e| map_err(path, "read group members", e);
    fill(conn, "selected", users.iter().map(String::as_str)).map_err(e)?;
    let mut members = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO temp.selected (key) SELECT user_key FROM members WHERE group_key = ?1",
        )
        .map_err(e)?;
    for g in groups {
        members.execute([g]).map_err(e)?;
    }
    let mut stmt = conn
        .prepare_cached("SELECT key FROM temp.selected ORDER BY key")
        .map_err(e)?;
    let rows = stmt
        .query_map([], |r| {
            r.get(0)
                .map_err(|e| name_row(e, r, &|_| "members, a member of the groups selected".into()))
        })
        .map_err(e)?;
    rows.collect::<rusqlite::Result<_>>().map_err(e)
}

/// Which of `named` (all in the selection [`select`] made) are users in the store: one seek
/// each.
pub fn selected_named(
    conn: &Connection,
    path: &Path,
    named: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let e = |e| map_err(path, "read users", e);
    let mut stmt = conn
        .prepare_cached("SELECT w.key FROM temp.selected w CROSS JOIN users u ON u.key = w.key")
        .map_err(e)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(e)?;
    let mut known = BTreeSet::new();
    for k in rows {
        let k = k.map_err(e)?;
        if named.contains(&k) {
            known.insert(k);
        }
    }
    Ok(known)
}

/// The selected users whose keys lie between `first` and `last` (inclusive), by key.
pub fn load_selected(
    conn: &Connection,
    path: &Path,
    first: &str,
    last: &str,
) -> Result<BTreeMap<String, User>> {
    load_users(conn, path, Scope::Selected { first, last })
}

/// How a message names a row of `groups`.
fn group_row(r: &rusqlite::Row) -> String {
    format!("groups, group {}", cell(r, 0))
}

/// How a message names a row of `users`.
fn user_row(r: &rusqlite::Row) -> String {
    format!("users, user {}", cell(r, 0))
}

/// Group key → name, for the users' groups (a key the table lacks is shown as itself).
pub(crate) fn group_names(conn: &Connection) -> rusqlite::Result<HashMap<String, String>> {
    conn.prepare_cached("SELECT key, name FROM groups")?
        .query_map([], |r| {
            let pair = || Ok((r.get(0)?, r.get(1)?));
            pair().map_err(|e| name_row(e, r, &group_row))
        })?
        .collect()
}

/// Decodes row `r` (`key, record`) of `users`, naming the row when it is damaged.
pub(crate) fn decode_row(
    r: &rusqlite::Row,
    names: &HashMap<String, String>,
) -> rusqlite::Result<Stored> {
    let key = damage::text(r, 0).map_err(|e| name_row(e, r, &user_row))?;
    let bytes = match r.get_ref(1)? {
        ValueRef::Blob(b) => b,
        // Text is described by its length only: a record's bytes include password hashes.
        ValueRef::Text(t) => {
            let unit = if t.len() == 1 { "byte" } else { "bytes" };
            return Err(damage::damaged(format!(
                "{}: column `record` holds a text of {} {unit} (not shown: a record holds \
                 password hashes), where mfactl writes a blob",
                user_row(r),
                t.len()
            )));
        }
        other => {
            return Err(damage::damaged(format!(
                "{}: column `record` holds {}, where mfactl writes a blob",
                user_row(r),
                damage::describe(other)
            )))
        }
    };
    record::decode(key, bytes, |g| {
        names.get(g).cloned().unwrap_or_else(|| g.to_string())
    })
    .map_err(|d| damage::damaged(format!("{}: column `record` is damaged {d}", user_row(r))))
}

/// The users of `scope` with their whole state, by key.
fn read_users(conn: &Connection, scope: Scope) -> rusqlite::Result<BTreeMap<String, User>> {
    let mut out = BTreeMap::new();
    each_stored(conn, scope, &mut |key, s| {
        out.insert(key.to_string(), s.user);
    })?;
    Ok(out)
}

/// Calls `each(key, stored)` for every user of `scope`, in key order (one query).
pub(crate) fn each_stored(
    conn: &Connection,
    scope: Scope,
    each: &mut dyn FnMut(&str, Stored),
) -> rusqlite::Result<()> {
    if let Scope::Keys { users, groups } = &scope {
        fill_want(conn, users.iter().map(String::as_str))?;
        let mut members = conn.prepare_cached(
            "INSERT OR IGNORE INTO temp.want (key) SELECT user_key FROM members WHERE group_key = ?1",
        )?;
        for g in groups.iter() {
            members.execute([g])?;
        }
    }
    let names = group_names(conn)?;
    let sql = format!(
        "SELECT c.key, c.record {} ORDER BY c.key",
        users_from(&scope)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = match &scope {
        Scope::Range { first, last } | Scope::Selected { first, last } => {
            stmt.query([first, last])?
        }
        _ => stmt.query([])?,
    };
    while let Some(r) = rows.next()? {
        let stored = decode_row(r, &names)?;
        each(damage::text(r, 0)?, stored);
    }
    Ok(())
}

/// Every user, in key order, handed to `each` `batch` users at a time (the last batch may be
/// smaller; never an empty one), all read in one snapshot. `each` returns false to stop early.
pub fn user_batches(
    conn: &rusqlite::Connection,
    path: &Path,
    batch: usize,
    each: &mut dyn FnMut(BTreeMap<String, User>) -> bool,
) -> Result<()> {
    let e = |e| map_err(path, "read users", e);
    snapshot(conn, path, || {
        let mut first_keys = conn
            .prepare_cached("SELECT key FROM users ORDER BY key LIMIT ?1")
            .map_err(e)?;
        let mut next_keys = conn
            .prepare_cached("SELECT key FROM users WHERE key > ?1 ORDER BY key LIMIT ?2")
            .map_err(e)?;
        let mut last: Option<String> = None;
        loop {
            let key = |r: &rusqlite::Row| {
                r.get::<_, String>(0).map_err(|e| {
                    damage::name_row(e, r, &|r| format!("users, user {}", damage::cell(r, 0)))
                })
            };
            let keys: Vec<String> = match &last {
                None => first_keys
                    .query_map([batch as i64], key)
                    .and_then(|rows| rows.collect()),
                Some(k) => next_keys
                    .query_map(rusqlite::params![k, batch as i64], key)
                    .and_then(|rows| rows.collect()),
            }
            .map_err(e)?;
            let (Some(first), Some(end)) = (keys.first(), keys.last()) else {
                return Ok(());
            };
            let users = load_users(conn, path, Scope::Range { first, last: end })?;
            if !each(users) || keys.len() < batch {
                return Ok(());
            }
            last = Some(end.to_string());
        }
    })
}

/// The records of these keys (in key order) with their secrets; `lenient` turns a record that
/// does not decode into `None` instead of an error naming it.
pub(crate) fn read_records(
    conn: &Connection,
    path: &Path,
    keys: &[&str],
    lenient: bool,
) -> Result<Vec<(String, Option<Stored>)>> {
    let e = |e| map_err(path, "read users", e);
    snapshot(conn, path, || {
        fill_want(conn, keys.iter().copied()).map_err(e)?;
        let names = if lenient {
            HashMap::new()
        } else {
            group_names(conn).map_err(e)?
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT c.key, c.record FROM temp.want w CROSS JOIN users c ON c.key = w.key ORDER BY c.key",
            )
            .map_err(e)?;
        let mut rows = stmt.query([]).map_err(e)?;
        let mut out = Vec::with_capacity(keys.len());
        while let Some(r) = rows.next().map_err(e)? {
            let key: String = r.get(0).map_err(e)?;
            match decode_row(r, &names) {
                Ok(s) => out.push((key, Some(s))),
                Err(_) if lenient => out.push((key, None)),
                Err(err) => return Err(e(err)),
            }
        }
        Ok(out)
    })
}

/// Runs `read` in a savepoint: one snapshot (nested inside a write transaction).
fn snapshot<T>(conn: &Connection, path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
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
