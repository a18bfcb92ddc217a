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
];

pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Runs migrations `from+1 ..= latest` in one transaction.
pub fn migrate(conn: &mut Connection, from: i64, app_id: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    // Migration 2's data step, once the records can be read as the latest schema has them.
    if from < 2 {
        chain_existing_records(&tx)?;
    }
    tx.pragma_update(None, "application_id", app_id)?;
    tx.commit()
}

/// Migration 2's data step: hash the records an older store already holds, in order.
fn chain_existing_records(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let records = super::read_audit(tx, None, None)?;
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
