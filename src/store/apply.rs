//! Applying a plan: every change, its audit record, the applied plan id and the revision bump,
//! inside the caller's `BEGIN IMMEDIATE` transaction, so a crash leaves all or nothing.

use super::{bump_revision, map_err, Result};
use crate::model::{key_of, Action, Timestamp};
use crate::plan::Plan;
use crate::policy::Verdict;
use crate::render::json::slice_value;
use rusqlite::{params, Transaction};
use std::collections::BTreeMap;
use std::path::Path;

/// The argon2 hash of a new temporary password, by user key. The clear text never comes here.
pub struct ResetSecret {
    pub hash: String,
}

/// Writes `plan` (already checked: every change allowed) and returns the new store revision.
pub fn apply_plan(
    tx: &Transaction<'_>,
    path: &Path,
    plan: &Plan,
    actor: &str,
    now: Timestamp,
    secrets: &BTreeMap<String, ResetSecret>,
) -> Result<i64> {
    let e = |e| map_err(path, "apply", e);
    let watermark =
        |table: &str, col: &str, time_col: &str, key: &str, t: Timestamp| -> Result<()> {
            tx.prepare_cached(&format!(
                "UPDATE users SET {col} = max(coalesce({col}, ?2), ?2) WHERE key = ?1"
            ))
            .and_then(|mut s| s.execute(params![key, t.unix()]))
            .map_err(e)?;
            tx.prepare_cached(&format!(
                "DELETE FROM {table} WHERE user_key = ?1 AND {time_col} < ?2"
            ))
            .and_then(|mut s| s.execute(params![key, t.unix()]))
            .map_err(e)?;
            Ok(())
        };
    let mut audit = tx
        .prepare_cached(
            "INSERT INTO audit (at, actor, role, action, user, user_key, before, after, sources, plan_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(e)?;
    for c in &plan.changes {
        let key = key_of(&c.user);
        match c.action {
            Action::RequireReregistration { before } => watermark(
                "methods",
                "registration_valid_from",
                "registered_at",
                &key,
                before,
            )?,
            Action::RevokeSessions { before } => {
                watermark("sessions", "sessions_valid_from", "issued_at", &key, before)?
            }
            Action::RevokeTrustedDevices { before } => watermark(
                "trusted_devices",
                "devices_valid_from",
                "remembered_at",
                &key,
                before,
            )?,
            Action::ResetPassword { set_at, .. } => {
                let hash = secrets.get(&key).map(|s| s.hash.as_str()).ok_or_else(|| {
                    super::StoreError::Invalid(format!(
                        "internal: no temporary password for {}",
                        c.user
                    ))
                })?;
                tx.prepare_cached(
                    "UPDATE users SET password_set_at = ?2, must_change_password = 1, password_hash = ?3
                     WHERE key = ?1",
                )
                .and_then(|mut s| s.execute(params![key, set_at.unix(), hash]))
                .map_err(e)?;
            }
            Action::DeleteAppPasswords => {
                tx.prepare_cached("DELETE FROM app_passwords WHERE user_key = ?1")
                    .and_then(|mut s| s.execute([&key]))
                    .map_err(e)?;
            }
        }
        let role = match &c.verdict {
            Some(Verdict::Allowed { role }) => role.as_str(),
            _ => {
                return Err(super::StoreError::Invalid(format!(
                    "internal: change for {} is not allowed",
                    c.user
                )))
            }
        };
        audit
            .execute(params![
                now.unix(),
                actor,
                role,
                c.kind().verb(),
                c.user,
                key,
                slice_value(&c.before).to_string(),
                slice_value(&c.after).to_string(),
                serde_json::to_string(&c.sources).unwrap_or_default(),
                plan.id,
            ])
            .map_err(e)?;
    }
    let revision = bump_revision(tx, path)?;
    tx.execute(
        "INSERT INTO applied_plans (plan_id, applied_at, revision) VALUES (?1, ?2, ?3)",
        params![plan.id, now.unix(), revision],
    )
    .map_err(e)?;
    Ok(revision)
}

/// Whether a plan id has been applied before.
pub fn plan_applied(conn: &rusqlite::Connection, path: &Path, plan_id: &str) -> Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM applied_plans WHERE plan_id = ?1",
        [plan_id],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(|e| map_err(path, "read applied plans", e))
}
