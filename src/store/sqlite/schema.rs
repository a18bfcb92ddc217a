//! Numbered, forward-only migrations. Migration N brings `user_version` from N-1 to N.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: the directory, the audit log, applied plans and the revision.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('revision', 0);
    CREATE TABLE groups (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role_assignable INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE users (
        key TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        display_name TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        password_set_at INTEGER,
        must_change_password INTEGER NOT NULL,
        password_hash TEXT,
        registration_valid_from INTEGER,
        sessions_valid_from INTEGER,
        devices_valid_from INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE user_roles (
        user_key TEXT NOT NULL REFERENCES users(key) ON DELETE CASCADE,
        role TEXT NOT NULL,
        PRIMARY KEY (user_key, role)
    ) WITHOUT ROWID;
    CREATE TABLE memberships (
        user_key TEXT NOT NULL REFERENCES users(key) ON DELETE CASCADE,
        group_key TEXT NOT NULL REFERENCES groups(key),
        PRIMARY KEY (user_key, group_key)
    ) WITHOUT ROWID;
    CREATE INDEX memberships_by_group ON memberships (group_key, user_key);
    CREATE TABLE methods (
        user_key TEXT NOT NULL REFERENCES users(key) ON DELETE CASCADE,
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        registered_at INTEGER NOT NULL,
        PRIMARY KEY (user_key, id)
    ) WITHOUT ROWID;
    CREATE TABLE sessions (
        user_key TEXT NOT NULL REFERENCES users(key) ON DELETE CASCADE,
        id TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        PRIMARY KEY (user_key, id)
    ) WITHOUT ROWID;
    CREATE TABLE trusted_devices (
        user_key TEXT NOT NULL REFERENCES users(key) ON DELETE CASCADE,
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        remembered_at INTEGER NOT NULL,
        PRIMARY KEY (user_key, id)
    ) WITHOUT ROWID;
    CREATE TABLE app_passwords (
        user_key TEXT NOT NULL REFERENCES users(key) ON DELETE CASCADE,
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        secret_hash TEXT,
        PRIMARY KEY (user_key, id)
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        user TEXT NOT NULL,
        user_key TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        sources TEXT NOT NULL,
        plan_id TEXT NOT NULL
    );
    CREATE INDEX audit_by_user ON audit (user_key, seq);
    CREATE TABLE applied_plans (
        plan_id TEXT PRIMARY KEY,
        applied_at INTEGER NOT NULL,
        revision INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: the tamper-evident audit chain (each record's hash covers the previous one's).
    r#"
    ALTER TABLE audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN hash TEXT NOT NULL DEFAULT '';
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        hash TEXT NOT NULL,
        count INTEGER NOT NULL
    );
    INSERT INTO audit_head (id, hash, count) VALUES (1, '', 0);
    "#,
    // 3: who requested each change under `--signers` (compact JSON of user, key and commit).
    r#"
    ALTER TABLE audit ADD COLUMN requested_by TEXT;
    "#,
    // 4: the per-user record (docs/store.md, "Layout"): one row per user holding their whole
    // state, and the group index. The data step (`records_from_tables`) fills them from the
    // tables of migrations 1-3, which are then dropped.
    r#"
    CREATE TABLE user_records (key TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE members (
        group_key TEXT NOT NULL REFERENCES groups(key),
        user_key TEXT NOT NULL,
        PRIMARY KEY (group_key, user_key)
    ) WITHOUT ROWID;
    "#,
];

/// Migration 4's data step and the SQL that finishes it.
const DROP_TABLES: &str = r#"
    DROP TABLE user_roles;
    DROP TABLE memberships;
    DROP TABLE methods;
    DROP TABLE sessions;
    DROP TABLE trusted_devices;
    DROP TABLE app_passwords;
    DROP TABLE users;
    ALTER TABLE user_records RENAME TO users;
"#;

pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Runs migrations `from+1 ..= latest` in one transaction.
pub fn migrate(conn: &mut Connection, from: i64, app_id: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        tx.execute_batch(sql)?;
        if i + 1 == 4 {
            records_from_tables(&tx)?;
            tx.execute_batch(DROP_TABLES)?;
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    // Migration 2's data step, once the records can be read as the latest schema has them.
    if from < 2 {
        chain_existing_records(&tx)?;
    }
    tx.pragma_update(None, "application_id", app_id)?;
    tx.commit()
}

/// Migration 4's data step: each user of the tables of migrations 1-3, with their child rows
/// gathered by SQLite as JSON arrays, becomes one record, and each membership a `members` row.
/// A row of a type mfactl never wrote stops the migration (rolled back), naming it.
fn records_from_tables(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    use crate::model::{AppPassword, Device, Method, Session, Timestamp, User};
    use crate::store::record::{self, Stored};
    use serde_json::Value;
    let mut read = tx.prepare(
        "SELECT u.key, u.id, u.display_name, u.enabled, u.password_set_at, u.must_change_password,
                u.password_hash, u.registration_valid_from, u.sessions_valid_from, u.devices_valid_from,
                (SELECT json_group_array(role) FROM user_roles WHERE user_key = u.key),
                (SELECT json_group_array(group_key) FROM memberships WHERE user_key = u.key),
                (SELECT json_group_array(json_array(id, kind, registered_at))
                   FROM methods WHERE user_key = u.key),
                (SELECT json_group_array(json_array(id, issued_at))
                   FROM sessions WHERE user_key = u.key),
                (SELECT json_group_array(json_array(id, name, remembered_at))
                   FROM trusted_devices WHERE user_key = u.key),
                (SELECT json_group_array(json_array(id, name, created_at, secret_hash))
                   FROM app_passwords WHERE user_key = u.key)
         FROM users u ORDER BY u.key",
    )?;
    let mut write = tx.prepare("INSERT INTO user_records (key, record) VALUES (?1, ?2)")?;
    let mut member =
        tx.prepare("INSERT OR IGNORE INTO members (group_key, user_key) VALUES (?1, ?2)")?;
    let mut rows = read.query([])?;
    let mut buf = Vec::new();
    while let Some(r) = rows.next()? {
        let key: String = r.get(0)?;
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            super::damage::damaged(format!(
                "migrating user `{}` to the per-user record: {what}: {e}",
                crate::util::escape_text(&key)
            ))
        };
        let t = |v: &Value, what: &str| -> rusqlite::Result<Timestamp> {
            match v.as_i64() {
                Some(n) if (record::FIRST_TIME..=record::LAST_TIME).contains(&n) => {
                    Ok(Timestamp::from_unix(n))
                }
                _ => Err(bad(what, &format!("the time {v} is not one mfactl writes"))),
            }
        };
        let s = |v: &Value, what: &str| -> rusqlite::Result<String> {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(what, &format!("{v} is not text")))
        };
        let list = |i: usize, what: &str| -> rusqlite::Result<Vec<Vec<Value>>> {
            let text: String = r.get(i)?;
            let v: Vec<Value> = serde_json::from_str(&text).map_err(|e| bad(what, &e))?;
            Ok(v.into_iter()
                .map(|x| match x {
                    Value::Array(a) => a,
                    other => vec![other],
                })
                .collect())
        };
        let opt_time = |i: usize, what: &str| -> rusqlite::Result<Option<Timestamp>> {
            match r.get::<_, Option<i64>>(i)? {
                None => Ok(None),
                Some(n) => t(&Value::from(n), what).map(Some),
            }
        };
        let roles = list(10, "roles")?
            .iter()
            .map(|x| s(&x[0], "roles"))
            .collect::<rusqlite::Result<_>>()?;
        let groups: Vec<String> = list(11, "groups")?
            .iter()
            .map(|x| s(&x[0], "groups"))
            .collect::<rusqlite::Result<_>>()?;
        let field = |x: &[Value], i: usize| x.get(i).cloned().unwrap_or(Value::Null);
        let mut methods = Vec::new();
        for x in list(12, "methods")? {
            methods.push(Method {
                id: s(&field(&x, 0), "methods")?,
                kind: s(&field(&x, 1), "methods")?,
                registered_at: t(&field(&x, 2), "methods")?,
            });
        }
        let mut sessions = Vec::new();
        for x in list(13, "sessions")? {
            sessions.push(Session {
                id: s(&field(&x, 0), "sessions")?,
                issued_at: t(&field(&x, 1), "sessions")?,
            });
        }
        let mut trusted_devices = Vec::new();
        for x in list(14, "trusted devices")? {
            trusted_devices.push(Device {
                id: s(&field(&x, 0), "trusted devices")?,
                name: s(&field(&x, 1), "trusted devices")?,
                remembered_at: t(&field(&x, 2), "trusted devices")?,
            });
        }
        let (mut app_passwords, mut secrets) = (Vec::new(), Vec::new());
        for x in list(15, "app passwords")? {
            let a = AppPassword {
                id: s(&field(&x, 0), "app passwords")?,
                name: s(&field(&x, 1), "app passwords")?,
                created_at: t(&field(&x, 2), "app passwords")?,
            };
            if let Some(h) = field(&x, 3).as_str() {
                secrets.push((a.id.clone(), h.to_string()));
            }
            app_passwords.push(a);
        }
        let mut user = User {
            id: r.get(1)?,
            display_name: r.get(2)?,
            enabled: r.get(3)?,
            roles,
            groups: groups.clone(),
            password_set_at: opt_time(4, "password-set-at")?,
            must_change_password: r.get(5)?,
            registration_valid_from: opt_time(7, "registration-valid-from")?,
            sessions_valid_from: opt_time(8, "sessions-valid-from")?,
            devices_valid_from: opt_time(9, "devices-valid-from")?,
            methods,
            sessions,
            trusted_devices,
            app_passwords,
        };
        user.normalize();
        let stored = Stored {
            user,
            password_hash: r.get(6)?,
            secrets,
        };
        buf.clear();
        record::encode(&key, &stored, &mut buf);
        write.execute(rusqlite::params![key, buf])?;
        for g in &groups {
            member.execute([g, &key])?;
        }
    }
    Ok(())
}

/// Migration 2's data step: hash the records an older store already holds, in order.
fn chain_existing_records(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let mut records = Vec::new();
    super::each_audit(tx, None, None, &mut |r| records.push(r))?;
    let mut prev = String::new();
    let mut update = tx.prepare("UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE seq = ?1")?;
    for mut r in records {
        r.prev_hash = prev;
        r.hash = crate::audit::record_hash(&r);
        update.execute(rusqlite::params![r.seq, r.prev_hash, r.hash])?;
        prev = r.hash;
    }
    tx.execute(
        "UPDATE audit_head SET hash = ?1, count = (SELECT count(*) FROM audit) WHERE id = 1",
        [prev],
    )?;
    Ok(())
}
