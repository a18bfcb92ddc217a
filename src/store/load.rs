//! Loading the users a plan needs, in bulk: the wanted keys go into a temporary table and each
//! kind of row is read with one join, so a plan costs a handful of queries whatever its size.

use super::damage::{self, cell, name_row};
use super::{map_err, revision, Result};
use crate::model::{key_of, AppPassword, Device, Group, Method, Session, User};
use crate::plan::{Actual, Needs};
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Which users to read.
pub(crate) enum Scope<'a> {
    All,
    /// The users whose keys lie between these two, inclusive (export reads the store in batches).
    Range {
        first: &'a str,
        last: &'a str,
    },
    /// These keys, plus every member of these groups.
    Keys {
        users: &'a [String],
        groups: &'a [String],
    },
}

/// Everything `plan` needs for `needs`, plus the actor's record when there is one.
pub fn load(conn: &Connection, path: &Path, needs: &Needs, actor: Option<&str>) -> Result<Actual> {
    let scope_users: Vec<String> = needs
        .user_keys
        .iter()
        .cloned()
        .chain(actor.map(key_of))
        .collect();
    let groups: Vec<String> = needs.group_keys.iter().cloned().collect();
    let scope = if needs.all_users {
        Scope::All
    } else {
        Scope::Keys {
            users: &scope_users,
            groups: &groups,
        }
    };
    Ok(Actual {
        users: load_users(conn, path, scope)?,
        groups: load_groups(conn, path)?,
        revision: revision(conn, path)?,
    })
}

/// Which of `keys` are users in the store.
pub fn existing_users(
    conn: &Connection,
    path: &Path,
    keys: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let e = |e| map_err(path, "read users", e);
    super::read_snapshot(conn, path, || {
        fill_want(conn, keys.iter().map(String::as_str)).map_err(e)?;
        let mut stmt = conn
            .prepare_cached("SELECT w.key FROM temp.want w CROSS JOIN users u ON u.key = w.key")
            .map_err(e)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(e)
    })
}

/// The keys of `users` (which exist) and of every member of `groups`, sorted and unique.
pub fn member_keys(
    conn: &Connection,
    path: &Path,
    users: &BTreeSet<String>,
    groups: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let e = |e| map_err(path, "read group members", e);
    super::read_snapshot(conn, path, || {
        fill_want(conn, users.iter().map(String::as_str)).map_err(e)?;
        let mut members = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO temp.want (key) SELECT user_key FROM memberships WHERE group_key = ?1",
            )
            .map_err(e)?;
        for g in groups {
            members.execute([g]).map_err(e)?;
        }
        let mut stmt = conn
            .prepare_cached("SELECT key FROM temp.want ORDER BY key")
            .map_err(e)?;
        // Besides the keys given, these are the members' `user_key`s read from `memberships`.
        let rows = stmt
            .query_map([], |r| {
                r.get(0).map_err(|e| {
                    name_row(e, r, &|_| {
                        "memberships, a member of the groups selected".into()
                    })
                })
            })
            .map_err(e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(e)
    })
}

/// These users (by key, sorted) with every child row; keys without a user are left out.
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

/// The actor as the store knows them (`None` when no actor was given).
pub fn load_actor(actual: &Actual, actor: Option<&str>) -> crate::policy::Actor {
    use crate::policy::Actor;
    match actor {
        None => Actor::None,
        Some(id) => match actual.users.get(&key_of(id)) {
            None => Actor::Unknown(id.to_string()),
            Some(u) if !u.enabled => Actor::Disabled(u.id.clone()),
            Some(u) => Actor::Known {
                id: u.id.clone(),
                roles: u.roles.clone(),
            },
        },
    }
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
    super::read_snapshot(conn, path, || read_users(conn, scope).map_err(e))
}

/// The users of `scope` with every child row. With a key list, the wanted keys drive each query
/// (`CROSS JOIN` keeps `want` the outer loop, so each user costs a primary-key seek and the cost
/// follows the users wanted, not the size of the store); rows then arrive grouped by user in key
/// order and are matched to their user without a per-row allocation or map lookup.
/// `FROM … WHERE …` of every query: a table alone, a key range of it, or the table driven by
/// the wanted keys (`CROSS JOIN` keeps `want` the outer loop, so each user costs a primary-key
/// seek and the cost follows the users wanted, not the size of the store).
#[derive(Clone, Copy)]
struct Source<'a> {
    keyed: bool,
    range: Option<[&'a str; 2]>,
}

impl Source<'_> {
    /// `join` goes between the table and the condition.
    fn from(&self, table: &str, join: &str) -> String {
        let key = if table == "users" { "key" } else { "user_key" };
        if self.keyed {
            format!("FROM temp.want w CROSS JOIN {table} c ON c.{key} = w.key{join}")
        } else if self.range.is_some() {
            format!("FROM {table} c{join} WHERE c.{key} BETWEEN ?1 AND ?2")
        } else {
            format!("FROM {table} c{join}")
        }
    }

    fn params(&self) -> Vec<&dyn rusqlite::ToSql> {
        match &self.range {
            Some([first, last]) => vec![first, last],
            None => Vec::new(),
        }
    }
}

/// Fills this connection's `temp.want` with `keys`.
fn fill_want<'k>(conn: &Connection, keys: impl Iterator<Item = &'k str>) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS want (key TEXT PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.want;",
    )?;
    let mut ins = conn.prepare_cached("INSERT OR IGNORE INTO temp.want (key) VALUES (?1)")?;
    for k in keys {
        ins.execute([k])?;
    }
    Ok(())
}

/// The kinds of child row, each read with one query and pushed onto its user.
#[derive(Clone, Copy)]
enum Child {
    Roles,
    Groups,
    Methods,
    Sessions,
    Devices,
    AppPasswords,
}

const CHILDREN: [Child; 6] = [
    Child::Roles,
    Child::Groups,
    Child::Methods,
    Child::Sessions,
    Child::Devices,
    Child::AppPasswords,
];

impl Child {
    /// The table, the columns after `c.user_key`, and a join.
    fn query(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Child::Roles => ("user_roles", "c.role", ""),
            // The group's name comes from `names`, not a join: a seek per membership saved.
            Child::Groups => ("memberships", "c.group_key", ""),
            Child::Methods => ("methods", "c.id, c.kind, c.registered_at", ""),
            Child::Sessions => ("sessions", "c.id, c.issued_at", ""),
            Child::Devices => ("trusted_devices", "c.id, c.name, c.remembered_at", ""),
            Child::AppPasswords => ("app_passwords", "c.id, c.name, c.created_at", ""),
        }
    }

    /// How a message names one of these rows: the table, its user and its own id.
    fn row(self, r: &rusqlite::Row) -> String {
        let (table, ..) = self.query();
        let what = match self {
            Child::Roles => "role",
            Child::Groups => "group",
            Child::Methods => "method",
            Child::Sessions => "session",
            Child::Devices => "trusted device",
            Child::AppPasswords => "app password",
        };
        format!("{table}, user {}, {what} {}", cell(r, 0), cell(r, 1))
    }

    fn push(
        self,
        u: &mut User,
        r: &rusqlite::Row,
        names: &BTreeMap<String, String>,
    ) -> rusqlite::Result<()> {
        let t = |i| damage::time(r, i);
        match self {
            Child::Roles => u.roles.push(r.get(1)?),
            Child::Groups => {
                let key = damage::text(r, 1)?;
                u.groups
                    .push(names.get(key).cloned().unwrap_or_else(|| key.to_string()))
            }
            Child::Methods => u.methods.push(Method {
                id: r.get(1)?,
                kind: r.get(2)?,
                registered_at: t(3)?,
            }),
            Child::Sessions => u.sessions.push(Session {
                id: r.get(1)?,
                issued_at: t(2)?,
            }),
            Child::Devices => u.trusted_devices.push(Device {
                id: r.get(1)?,
                name: r.get(2)?,
                remembered_at: t(3)?,
            }),
            Child::AppPasswords => u.app_passwords.push(AppPassword {
                id: r.get(1)?,
                name: r.get(2)?,
                created_at: t(3)?,
            }),
        }
        Ok(())
    }
}

/// How a message names a row of `groups`.
fn group_row(r: &rusqlite::Row) -> String {
    format!("groups, group {}", cell(r, 0))
}

/// How a message names a row of `users`.
fn user_row(r: &rusqlite::Row) -> String {
    format!("users, user {}", cell(r, 0))
}

/// A user with no fields set, to fill in.
fn empty_user() -> User {
    User {
        id: String::new(),
        display_name: String::new(),
        enabled: false,
        roles: Vec::new(),
        groups: Vec::new(),
        password_set_at: None,
        must_change_password: false,
        registration_valid_from: None,
        sessions_valid_from: None,
        devices_valid_from: None,
        methods: Vec::new(),
        sessions: Vec::new(),
        trusted_devices: Vec::new(),
        app_passwords: Vec::new(),
    }
}

/// Reads one kind of child row and pushes each onto `users[i]`, where `keys[i]` is its user's
/// key: rows arrive grouped by user, so the previous and next keys are tried before a search,
/// and nothing is allocated per row to find its user.
fn read_children(
    conn: &Connection,
    source: &Source,
    child: Child,
    keys: &[String],
    users: &mut [User],
    names: &BTreeMap<String, String>,
) -> rusqlite::Result<()> {
    let (table, cols, join) = child.query();
    let sql = format!("SELECT c.user_key, {cols} {}", source.from(table, join));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(source.params().as_slice())?;
    let mut at = usize::MAX;
    while let Some(r) = rows.next()? {
        let key = damage::text(r, 0).map_err(|e| name_row(e, r, &|r| child.row(r)))?;
        if keys.get(at).is_none_or(|k| k != key) {
            let next = at.wrapping_add(1);
            if keys.get(next).is_some_and(|k| k == key) {
                at = next;
            } else {
                match keys.binary_search_by(|k| k.as_str().cmp(key)) {
                    Ok(i) => at = i,
                    Err(_) => {
                        at = usize::MAX;
                        continue;
                    }
                }
            }
        }
        child
            .push(&mut users[at], r, names)
            .map_err(|e| name_row(e, r, &|r| child.row(r)))?;
    }
    Ok(())
}

/// The users of `scope` with every child row, by key.
fn read_users(conn: &Connection, scope: Scope) -> rusqlite::Result<BTreeMap<String, User>> {
    let source = match scope {
        Scope::All => Source {
            keyed: false,
            range: None,
        },
        Scope::Range { first, last } => Source {
            keyed: false,
            range: Some([first, last]),
        },
        Scope::Keys { users, groups } => {
            fill_want(conn, users.iter().map(String::as_str))?;
            let mut members = conn.prepare_cached(
                "INSERT OR IGNORE INTO temp.want (key) SELECT user_key FROM memberships WHERE group_key = ?1",
            )?;
            for g in groups {
                members.execute([g])?;
            }
            Source {
                keyed: true,
                range: None,
            }
        }
    };
    let mut keys: Vec<String> = Vec::new();
    let mut users: Vec<User> = Vec::new();
    {
        let sql = format!(
            "SELECT c.key, c.id, c.display_name, c.enabled, c.password_set_at, c.must_change_password,
                    c.registration_valid_from, c.sessions_valid_from, c.devices_valid_from
             {}",
            source.from("users", "")
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let ts = |r: &rusqlite::Row, i| damage::opt_time(r, i);
        let mut rows = stmt.query(source.params().as_slice())?;
        while let Some(r) = rows.next()? {
            let user = || -> rusqlite::Result<(String, User)> {
                Ok((
                    r.get(0)?,
                    User {
                        id: r.get(1)?,
                        display_name: r.get(2)?,
                        enabled: r.get(3)?,
                        password_set_at: ts(r, 4)?,
                        must_change_password: r.get(5)?,
                        registration_valid_from: ts(r, 6)?,
                        sessions_valid_from: ts(r, 7)?,
                        devices_valid_from: ts(r, 8)?,
                        ..empty_user()
                    },
                ))
            };
            let (key, user) = user().map_err(|e| name_row(e, r, &user_row))?;
            keys.push(key);
            users.push(user);
        }
    }
    // Both scans return key order; sort anyway if SQLite ever chose otherwise.
    if !keys.windows(2).all(|w| w[0] < w[1]) {
        let mut pairs: Vec<(String, User)> = keys.into_iter().zip(users).collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        (keys, users) = pairs.into_iter().unzip();
    }
    // Group key → name, for the memberships.
    let names: BTreeMap<String, String> = conn
        .prepare_cached("SELECT key, name FROM groups")?
        .query_map([], |r| {
            let pair = || Ok((r.get(0)?, r.get(1)?));
            pair().map_err(|e| name_row(e, r, &group_row))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for child in CHILDREN {
        read_children(conn, &source, child, &keys, &mut users, &names)?;
    }
    for u in &mut users {
        u.normalize();
    }
    // Keys are sorted and unique, so the map is built in one pass.
    Ok(keys.into_iter().zip(users).collect())
}
