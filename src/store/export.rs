//! Reading the directory back out: the whole of it in batches of users (one snapshot), for
//! `store export` and the all-users plan, and one user for `show`. Secrets never leave.

use super::load::{load_groups, load_users, Scope};
use super::{map_err, Result, Store};
use crate::model::{key_of, Directory, User};
use rusqlite::params;
use std::collections::BTreeMap;
use std::path::Path;

/// The whole directory, sorted, without secrets.
pub fn export(store: &Store) -> Result<Directory> {
    let mut dir = Directory::default();
    export_with(store, EXPORT_BATCH, &mut |part| {
        match part {
            ExportPart::Groups(g) => dir.groups = g,
            ExportPart::Users(u) => dir.users.extend(u),
        }
        true
    })?;
    Ok(dir)
}

/// Users per batch of [`export_with`]: large enough that each query's fixed cost vanishes,
/// small enough that a batch takes a few megabytes.
pub const EXPORT_BATCH: usize = 5_000;

/// One piece of the directory, in the order of the export format.
pub enum ExportPart {
    /// Every group, sorted by key; always first, exactly once.
    Groups(Vec<crate::model::Group>),
    /// The next users by key (never empty).
    Users(Vec<User>),
}

/// The whole directory, sorted, without secrets, handed to `each` a batch of users at a time
/// (all read in one snapshot), so that exporting a million users never holds them all. `each`
/// returns false to stop early.
pub fn export_with(
    store: &Store,
    batch: usize,
    each: &mut dyn FnMut(ExportPart) -> bool,
) -> Result<()> {
    let (conn, path) = (store.conn(), store.path());
    super::read_snapshot(conn, path, || {
        let groups: BTreeMap<_, _> = load_groups(conn, path)?;
        if !each(ExportPart::Groups(groups.into_values().collect())) {
            return Ok(());
        }
        user_batches(conn, path, batch, &mut |users| {
            each(ExportPart::Users(users.into_values().collect()))
        })
    })
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
    super::read_snapshot(conn, path, || {
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
                    super::damage::name_row(e, r, &|r| {
                        format!("users, user {}", super::damage::cell(r, 0))
                    })
                })
            };
            let keys: Vec<String> = match &last {
                None => first_keys
                    .query_map([batch as i64], key)
                    .and_then(|rows| rows.collect()),
                Some(k) => next_keys
                    .query_map(params![k, batch as i64], key)
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

/// One user's state, or `None` when the store has no such user.
pub fn show(store: &Store, id: &str) -> Result<Option<User>> {
    let keys = [key_of(id)];
    let mut users = load_users(
        store.conn(),
        store.path(),
        Scope::Keys {
            users: &keys,
            groups: &[],
        },
    )?;
    Ok(users.remove(&keys[0]).map(|mut u| {
        u.normalize();
        u
    }))
}
