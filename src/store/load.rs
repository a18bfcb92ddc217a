//! Loading the users a plan needs, in bulk: the wanted keys go into a temporary table and each
//! kind of row is read with one join, so a plan costs a handful of queries whatever its size.

use super::{map_err, revision, Result};
use crate::model::{key_of, AppPassword, Device, Group, Method, Session, Timestamp, User};
use crate::plan::{Actual, Needs};
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::Path;

/// Which users to read.
pub(crate) enum Scope<'a> {
    All,
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

pub(crate) fn load_groups(conn: &Connection, path: &Path) -> Result<BTreeMap<String, Group>> {
    let e = |e| map_err(path, "read groups", e);
    let mut stmt = conn
        .prepare_cached("SELECT key, name, role_assignable FROM groups")
        .map_err(e)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Group {
                    name: r.get(1)?,
                    role_assignable: r.get(2)?,
                },
            ))
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
    let join = match scope {
        Scope::All => "",
        Scope::Keys { users, groups } => {
            conn.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS want (key TEXT PRIMARY KEY) WITHOUT ROWID;
                 DELETE FROM temp.want;",
            )
            .map_err(e)?;
            let mut ins = conn
                .prepare_cached("INSERT OR IGNORE INTO temp.want (key) VALUES (?1)")
                .map_err(e)?;
            for k in users {
                ins.execute([k]).map_err(e)?;
            }
            let mut members = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO temp.want (key) SELECT user_key FROM memberships WHERE group_key = ?1",
                )
                .map_err(e)?;
            for g in groups {
                members.execute([g]).map_err(e)?;
            }
            "JOIN temp.want w ON w.key = c.user_key"
        }
    };
    let mut users: BTreeMap<String, User> = BTreeMap::new();
    {
        let sql = format!(
            "SELECT c.key, c.id, c.display_name, c.enabled, c.password_set_at, c.must_change_password,
                    c.registration_valid_from, c.sessions_valid_from, c.devices_valid_from
             FROM users c {}",
            join.replace("c.user_key", "c.key")
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(e)?;
        let ts = |v: Option<i64>| v.map(Timestamp::from_unix);
        let mut rows = stmt.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let key: String = r.get(0).map_err(e)?;
            let user = User {
                id: r.get(1).map_err(e)?,
                display_name: r.get(2).map_err(e)?,
                enabled: r.get(3).map_err(e)?,
                roles: Vec::new(),
                groups: Vec::new(),
                password_set_at: ts(r.get(4).map_err(e)?),
                must_change_password: r.get(5).map_err(e)?,
                registration_valid_from: ts(r.get(6).map_err(e)?),
                sessions_valid_from: ts(r.get(7).map_err(e)?),
                devices_valid_from: ts(r.get(8).map_err(e)?),
                methods: Vec::new(),
                sessions: Vec::new(),
                trusted_devices: Vec::new(),
                app_passwords: Vec::new(),
            };
            users.insert(key, user);
        }
    }
    // One query per kind of child row; each row is pushed onto its user.
    let mut each = |sql: &str,
                    f: &mut dyn FnMut(&mut User, &rusqlite::Row) -> rusqlite::Result<()>|
     -> Result<()> {
        let sql = format!("{sql} {join}");
        let mut stmt = conn.prepare_cached(&sql).map_err(e)?;
        let mut rows = stmt.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let key: String = r.get(0).map_err(e)?;
            if let Some(u) = users.get_mut(&key) {
                f(u, r).map_err(e)?;
            }
        }
        Ok(())
    };
    let t = |r: &rusqlite::Row, i| r.get::<_, i64>(i).map(Timestamp::from_unix);
    each(
        "SELECT c.user_key, c.role FROM user_roles c",
        &mut |u, r| {
            u.roles.push(r.get(1)?);
            Ok(())
        },
    )?;
    each(
        "SELECT c.user_key, g.name FROM memberships c JOIN groups g ON g.key = c.group_key",
        &mut |u, r| {
            u.groups.push(r.get(1)?);
            Ok(())
        },
    )?;
    each(
        "SELECT c.user_key, c.id, c.kind, c.registered_at FROM methods c",
        &mut |u, r| {
            u.methods.push(Method {
                id: r.get(1)?,
                kind: r.get(2)?,
                registered_at: t(r, 3)?,
            });
            Ok(())
        },
    )?;
    each(
        "SELECT c.user_key, c.id, c.issued_at FROM sessions c",
        &mut |u, r| {
            u.sessions.push(Session {
                id: r.get(1)?,
                issued_at: t(r, 2)?,
            });
            Ok(())
        },
    )?;
    each(
        "SELECT c.user_key, c.id, c.name, c.remembered_at FROM trusted_devices c",
        &mut |u, r| {
            u.trusted_devices.push(Device {
                id: r.get(1)?,
                name: r.get(2)?,
                remembered_at: t(r, 3)?,
            });
            Ok(())
        },
    )?;
    each(
        "SELECT c.user_key, c.id, c.name, c.created_at FROM app_passwords c",
        &mut |u, r| {
            u.app_passwords.push(AppPassword {
                id: r.get(1)?,
                name: r.get(2)?,
                created_at: t(r, 3)?,
            });
            Ok(())
        },
    )?;
    for u in users.values_mut() {
        normalize(u);
    }
    Ok(users)
}

/// Sorts a user's lists so that every output of the same state is the same bytes.
pub(crate) fn normalize(u: &mut User) {
    u.roles.sort();
    u.groups.sort_by_key(|g| key_of(g));
    u.methods
        .sort_by(|a, b| (a.registered_at, &a.id).cmp(&(b.registered_at, &b.id)));
    u.sessions
        .sort_by(|a, b| (a.issued_at, &a.id).cmp(&(b.issued_at, &b.id)));
    u.trusted_devices
        .sort_by(|a, b| (a.remembered_at, &a.id).cmp(&(b.remembered_at, &b.id)));
    u.app_passwords
        .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}
