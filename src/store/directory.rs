//! `store import` / `store export` / `show`: the directory format of SPEC §3. Import replaces each
//! listed user's record as a whole in one transaction; export prints everything but secrets.

use super::load::{load_groups, load_users, normalize, Scope};
use super::{bump_revision, map_err, Result, Store, StoreError};
use crate::model::{key_of, Directory, User};
use rusqlite::params;
use std::collections::{BTreeMap, BTreeSet};

/// Parses and checks a directory file; errors are `FILE:LINE:COL: message` lines.
pub fn parse(file: &str, text: &str) -> std::result::Result<Directory, Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Err((line, col, msg)) = crate::manifest::guard::check_nesting(text) {
        return Err(vec![format!("{file}:{line}:{col}: {msg}")]);
    }
    let dir: Directory = serde_yaml::from_str(text).map_err(|e| {
        let loc = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        vec![format!(
            "{file}:{}:{}: {}",
            loc.0,
            loc.1,
            crate::render::escape_text(&msg)
        )]
    })?;
    let mut problems = Vec::new();
    let mut seen_groups = BTreeSet::new();
    for g in &dir.groups {
        if g.name.trim().is_empty() {
            problems.push(format!("{file}: a group has an empty name"));
        } else if !seen_groups.insert(key_of(&g.name)) {
            problems.push(format!("{file}: group `{}` is listed twice", esc(&g.name)));
        }
    }
    let mut seen_users = BTreeSet::new();
    for u in &dir.users {
        if u.id.trim().is_empty() {
            problems.push(format!("{file}: a user has an empty id"));
            continue;
        }
        if !seen_users.insert(u.key()) {
            problems.push(format!("{file}: user `{}` is listed twice", esc(&u.id)));
        }
        let kinds: [(&str, Vec<&str>); 4] = [
            ("methods", u.methods.iter().map(|m| m.id.as_str()).collect()),
            (
                "sessions",
                u.sessions.iter().map(|m| m.id.as_str()).collect(),
            ),
            (
                "trusted-devices",
                u.trusted_devices.iter().map(|m| m.id.as_str()).collect(),
            ),
            (
                "app-passwords",
                u.app_passwords.iter().map(|m| m.id.as_str()).collect(),
            ),
        ];
        for (kind, ids) in kinds {
            let mut seen = BTreeSet::new();
            for id in ids {
                if !seen.insert(id) {
                    problems.push(format!(
                        "{file}: user `{}` has two {kind} with id `{}`",
                        esc(&u.id),
                        esc(id)
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(dir)
    } else {
        Err(problems)
    }
}

fn esc(s: &str) -> String {
    crate::render::escape_text(s).into_owned()
}

/// Upserts the directory in one transaction. Returns (groups, users) written and the new revision.
pub fn import(store: &mut Store, file: &str, dir: &Directory) -> Result<(usize, usize, i64)> {
    let path = store.path().to_path_buf();
    let tx = store.begin()?;
    let e = |e| map_err(&path, "import", e);
    let mut known_groups: BTreeSet<String> = load_groups(&tx, &path)?.into_keys().collect();
    {
        let mut up = tx
            .prepare_cached(
                "INSERT INTO groups (key, name, role_assignable) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET name = excluded.name, role_assignable = excluded.role_assignable",
            )
            .map_err(e)?;
        for g in &dir.groups {
            up.execute(params![key_of(&g.name), g.name, g.role_assignable])
                .map_err(e)?;
            known_groups.insert(key_of(&g.name));
        }
        for u in &dir.users {
            for g in &u.groups {
                if !known_groups.contains(&key_of(g)) {
                    return Err(StoreError::Invalid(format!(
                        "{file}: user `{}` is in group `{}`, which is neither in the file's `groups:` nor in the store; add it to `groups:`",
                        esc(&u.id),
                        esc(g)
                    )));
                }
            }
        }
        let mut user_up = tx
            .prepare_cached(
                "INSERT INTO users (key, id, display_name, enabled, password_set_at, must_change_password,
                                    password_hash, registration_valid_from, sessions_valid_from, devices_valid_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, ?9)
                 ON CONFLICT (key) DO UPDATE SET
                    id = excluded.id, display_name = excluded.display_name, enabled = excluded.enabled,
                    password_hash = CASE WHEN users.password_set_at IS excluded.password_set_at
                                         THEN users.password_hash END,
                    password_set_at = excluded.password_set_at,
                    must_change_password = excluded.must_change_password,
                    registration_valid_from = excluded.registration_valid_from,
                    sessions_valid_from = excluded.sessions_valid_from,
                    devices_valid_from = excluded.devices_valid_from",
            )
            .map_err(e)?;
        let clear: Vec<_> = [
            "user_roles",
            "memberships",
            "methods",
            "sessions",
            "trusted_devices",
            "app_passwords",
        ]
        .iter()
        .map(|t| format!("DELETE FROM {t} WHERE user_key = ?1"))
        .collect();
        let mut role = tx
            .prepare_cached("INSERT OR IGNORE INTO user_roles (user_key, role) VALUES (?1, ?2)")
            .map_err(e)?;
        let mut member = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO memberships (user_key, group_key) VALUES (?1, ?2)",
            )
            .map_err(e)?;
        let mut method = tx
            .prepare_cached(
                "INSERT INTO methods (user_key, id, kind, registered_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(e)?;
        let mut session = tx
            .prepare_cached("INSERT INTO sessions (user_key, id, issued_at) VALUES (?1, ?2, ?3)")
            .map_err(e)?;
        let mut device = tx
            .prepare_cached("INSERT INTO trusted_devices (user_key, id, name, remembered_at) VALUES (?1, ?2, ?3, ?4)")
            .map_err(e)?;
        let mut app = tx
            .prepare_cached("INSERT INTO app_passwords (user_key, id, name, created_at) VALUES (?1, ?2, ?3, ?4)")
            .map_err(e)?;
        let ts = |t: Option<crate::model::Timestamp>| t.map(|t| t.unix());
        for u in &dir.users {
            let k = u.key();
            user_up
                .execute(params![
                    k,
                    u.id,
                    u.display_name,
                    u.enabled,
                    ts(u.password_set_at),
                    u.must_change_password,
                    ts(u.registration_valid_from),
                    ts(u.sessions_valid_from),
                    ts(u.devices_valid_from)
                ])
                .map_err(e)?;
            for sql in &clear {
                tx.prepare_cached(sql)
                    .and_then(|mut s| s.execute([&k]))
                    .map_err(e)?;
            }
            for r in &u.roles {
                role.execute(params![k, r]).map_err(e)?;
            }
            for g in &u.groups {
                member.execute(params![k, key_of(g)]).map_err(e)?;
            }
            for m in &u.methods {
                method
                    .execute(params![k, m.id, m.kind, m.registered_at.unix()])
                    .map_err(e)?;
            }
            for s in &u.sessions {
                session
                    .execute(params![k, s.id, s.issued_at.unix()])
                    .map_err(e)?;
            }
            for d in &u.trusted_devices {
                device
                    .execute(params![k, d.id, d.name, d.remembered_at.unix()])
                    .map_err(e)?;
            }
            for a in &u.app_passwords {
                app.execute(params![k, a.id, a.name, a.created_at.unix()])
                    .map_err(e)?;
            }
        }
    }
    let revision = bump_revision(&tx, &path)?;
    super::commit(tx, &path)?;
    Ok((dir.groups.len(), dir.users.len(), revision))
}

/// The whole directory, sorted, without secrets.
pub fn export(store: &Store) -> Result<Directory> {
    let path = store.path();
    let groups: BTreeMap<_, _> = load_groups(store.conn(), path)?;
    let users = load_users(store.conn(), path, Scope::All)?;
    Ok(Directory {
        groups: groups.into_values().collect(),
        users: users.into_values().collect(),
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
        normalize(&mut u);
        u
    }))
}
