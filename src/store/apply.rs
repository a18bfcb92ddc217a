//! Applying a plan: every change, its audit record, the applied plan id and the revision bump,
//! inside the caller's `BEGIN IMMEDIATE` transaction, so a crash leaves all or nothing.

use super::record::Stored;
use super::{bump_revision, map_err, Result};
use crate::model::{key_of, Action, AuditRecord, Timestamp};
use crate::plan::slice_value;
use crate::plan::Plan;
use crate::policy::Verdict;
use rusqlite::{params, Transaction};
use std::collections::BTreeMap;
use std::path::Path;

/// Writes `plan` (already checked: every change allowed) and returns the new store revision,
/// calling `progress(done, total)` now and then as the changes are written. `hashes` holds
/// the argon2 hash of each reset user's new password, by key (the clear text never comes here).
#[allow(clippy::too_many_arguments)]
pub fn apply_plan(
    tx: &Transaction<'_>,
    path: &Path,
    plan: &Plan,
    actor: &str,
    now: Timestamp,
    hashes: &BTreeMap<String, String>,
    accept_broken_audit: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<i64> {
    let e = |e| map_err(path, "apply", e);
    let report = super::verify_audit(tx, path)?;
    let mut chain = Chain::open(tx, path, &report)?;
    if !report.intact() {
        let problems: Vec<String> = report
            .unacknowledged()
            .map(|b| format!("record #{} {}", b.seq, b.what))
            .collect();
        if !accept_broken_audit {
            return Err(super::StoreError::BrokenAudit {
                path: path.to_path_buf(),
                detail: problems.join("; "),
            });
        }
        chain.append(
            now,
            actor,
            "",
            crate::audit::ACCEPT_BROKEN,
            "",
            "",
            serde_json::json!({"problems": problems}),
            serde_json::json!({}),
            &[],
            &plan.id,
        )?;
    }
    let names = super::load::group_names(tx).map_err(e)?;
    let mut users = Users {
        tx,
        path,
        names,
        current: None,
        buf: Vec::new(),
    };
    failpoint("apply-begin");
    let half = plan.changes.len() / 2;
    // The audit records are built and hashed on a second thread, in order, while this one
    // writes: each needs only its change and the hash before it, all known now. (With 100,000
    // changes that is over a second of JSON and SHA-256 off the writing thread.)
    let (first_seq, first_head) = (chain.seq + 1, chain.head.clone());
    std::thread::scope(|scope| -> Result<()> {
        // Records go over in chunks: a hand-over per record cost more in wake-ups than the
        // records themselves.
        const CHUNK: usize = 256;
        let (records_out, chunks) = std::sync::mpsc::sync_channel::<Vec<(AuditRecord, Texts)>>(16);
        scope.spawn(move || {
            let mut prev_hash = first_head;
            let mut chunk = Vec::with_capacity(CHUNK);
            for (i, c) in plan.changes.iter().enumerate() {
                let role = match &c.verdict {
                    Some(Verdict::Allowed { role }) => role.clone(),
                    _ => String::new(), // refused below, before its record is used
                };
                let mut r = AuditRecord {
                    seq: first_seq + i as i64,
                    at: now,
                    actor: actor.to_string(),
                    role,
                    action: c.kind().verb().to_string(),
                    user: c.user.clone(),
                    before: slice_value(&c.before),
                    after: slice_value(&c.after),
                    sources: c.sources.clone(),
                    plan_id: plan.id.clone(),
                    prev_hash,
                    hash: String::new(),
                    requested_by: c.requested_by.clone(),
                };
                r.hash = crate::audit::record_hash(&r);
                prev_hash = r.hash.clone();
                let texts = Texts::of(&r);
                chunk.push((r, texts));
                if chunk.len() == CHUNK || i + 1 == plan.changes.len() {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if records_out.send(full).is_err() {
                        return; // the writer stopped
                    }
                }
            }
        });
        let mut records = Vec::new().into_iter();
        for (i, c) in plan.changes.iter().enumerate() {
            if i == half {
                failpoint("apply-mid");
            }
            if i % 1024 == 0 {
                progress(i, plan.changes.len());
            }
            let key = key_of(&c.user);
            let stored = users.get(&key)?;
            crate::plan::act(&mut stored.user, &c.action);
            match c.action {
                Action::ResetPassword { .. } => {
                    let hash = hashes.get(&key).ok_or_else(|| {
                        super::StoreError::Invalid(format!(
                            "internal: no temporary password for {}",
                            c.user
                        ))
                    })?;
                    stored.password_hash = Some(hash.clone());
                }
                Action::DeleteAppPasswords => stored.secrets.clear(),
                _ => {}
            }
            if !matches!(&c.verdict, Some(Verdict::Allowed { .. })) {
                return Err(super::StoreError::Invalid(format!(
                    "internal: change for {} is not allowed",
                    c.user
                )));
            }
            let next = match records.next() {
                Some(r) => Some(r),
                None => chunks.recv().ok().and_then(|c| {
                    records = c.into_iter();
                    records.next()
                }),
            };
            let (record, texts) = next.ok_or_else(|| {
                super::StoreError::Invalid("internal: the audit records stopped".into())
            })?;
            chain.insert(record, texts, &key)?;
        }
        users.flush()?;
        chain.flush()?;
        Ok(())
    })?;
    chain.close()?;
    progress(plan.changes.len(), plan.changes.len());
    let revision = bump_revision(tx, path)?;
    tx.execute(
        "INSERT INTO applied_plans (plan_id, applied_at, revision) VALUES (?1, ?2, ?3)",
        params![plan.id, now.unix(), revision],
    )
    .map_err(e)?;
    failpoint("apply-before-commit");
    Ok(revision)
}

/// Crash-test hook: in builds with the `failpoints` feature (which `cargo test` turns on for the
/// binary the tests drive), `MFACTL_FAILPOINT=NAME` aborts the process at the point of that name,
/// so the interesting moments are hit every run. Other builds, debug or release, compile it away.
pub fn failpoint(name: &str) {
    #[cfg(feature = "failpoints")]
    if std::env::var("MFACTL_FAILPOINT").is_ok_and(|v| v == name) {
        std::process::abort();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Test hook, like [`failpoint`]: with the `failpoints` feature, `MFACTL_FAILPOINT=NAME` makes the process
/// create the file named by `MFACTL_FAILPOINT_MARK` here, then wait until `until()` holds (or
/// the process is killed), so that a test can signal it at exactly this moment, without timing.
pub fn failpoint_wait(name: &str, until: &dyn Fn() -> bool) {
    #[cfg(feature = "failpoints")]
    if std::env::var("MFACTL_FAILPOINT").is_ok_and(|v| v == name) {
        if let Some(mark) = std::env::var_os("MFACTL_FAILPOINT_MARK") {
            let _ = std::fs::write(mark, name);
        }
        while !until() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = (name, until);
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

/// A user's stored password hash; `None` for an unknown user or no hash. A damaged record is
/// an error naming it.
pub fn password_hash(
    conn: &rusqlite::Connection,
    path: &Path,
    key: &str,
) -> Result<Option<String>> {
    let e = |e| map_err(path, "read password hashes", e);
    let names = std::collections::HashMap::new();
    let mut stmt = conn
        .prepare_cached("SELECT key, record FROM users WHERE key = ?1")
        .map_err(e)?;
    let mut rows = stmt.query([key]).map_err(e)?;
    match rows.next().map_err(e)? {
        Some(r) => Ok(super::load::decode_row(r, &names).map_err(e)?.password_hash),
        None => Ok(None),
    }
}

/// The user being changed: the changes of one user are consecutive in a plan (sorted by user),
/// so each user's record is read once, changed in memory and written once, with one statement.
struct Users<'a> {
    tx: &'a Transaction<'a>,
    path: &'a Path,
    names: std::collections::HashMap<String, String>,
    current: Option<(String, Stored)>,
    buf: Vec<u8>,
}

impl Users<'_> {
    /// The record of `key`, read unless it is the one being changed (the previous one written).
    fn get(&mut self, key: &str) -> Result<&mut Stored> {
        if self.current.as_ref().is_some_and(|(k, _)| k != key) {
            self.flush()?;
        }
        if self.current.is_none() {
            let e = |e| map_err(self.path, "apply", e);
            let mut stmt = self
                .tx
                .prepare_cached("SELECT key, record FROM users WHERE key = ?1")
                .map_err(e)?;
            let mut rows = stmt.query([key]).map_err(e)?;
            let stored = match rows.next().map_err(e)? {
                Some(r) => super::load::decode_row(r, &self.names).map_err(e)?,
                None => {
                    return Err(super::StoreError::Invalid(format!(
                        "internal: user {key} is not in the store"
                    )))
                }
            };
            self.current = Some((key.to_string(), stored));
        }
        Ok(&mut self.current.as_mut().expect("read above").1)
    }

    /// Writes the record being changed, if any.
    fn flush(&mut self) -> Result<()> {
        let Some((key, stored)) = self.current.take() else {
            return Ok(());
        };
        self.buf.clear();
        super::record::encode(&key, &stored, &mut self.buf);
        self.tx
            .prepare_cached("UPDATE users SET record = ?2 WHERE key = ?1")
            .and_then(|mut s| s.execute(params![key, self.buf]))
            .map_err(|e| map_err(self.path, "apply", e))?;
        Ok(())
    }
}

/// A record's JSON columns, as stored.
struct Texts {
    before: String,
    after: String,
    sources: String,
    requested_by: Option<String>,
}

impl Texts {
    fn of(r: &AuditRecord) -> Texts {
        Texts {
            before: r.before.to_string(),
            after: r.after.to_string(),
            sources: serde_json::to_string(&r.sources).unwrap_or_default(),
            requested_by: crate::audit::requested_by_text(r),
        }
    }
}

/// Appends hash-chained audit records and moves the recorded head.
struct Chain<'a> {
    tx: &'a Transaction<'a>,
    path: &'a Path,
    seq: i64,
    head: String,
    count: i64,
    pending: Vec<(AuditRecord, Texts, String)>,
}

impl<'a> Chain<'a> {
    fn open(
        tx: &'a Transaction<'a>,
        path: &'a Path,
        report: &crate::audit::Report,
    ) -> Result<Self> {
        let seq: i64 = tx
            .query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))
            .map_err(|e| map_err(path, "read audit log", e))?;
        Ok(Chain {
            tx,
            path,
            seq,
            head: report.head.clone(),
            count: report.records as i64,
            pending: Vec::with_capacity(Self::PER_STATEMENT),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        at: Timestamp,
        actor: &str,
        role: &str,
        action: &str,
        user: &str,
        user_key: &str,
        before: serde_json::Value,
        after: serde_json::Value,
        sources: &[String],
        plan_id: &str,
    ) -> Result<()> {
        let mut r = crate::model::AuditRecord {
            seq: self.seq + 1,
            at,
            actor: actor.to_string(),
            role: role.to_string(),
            action: action.to_string(),
            user: user.to_string(),
            before,
            after,
            sources: sources.to_vec(),
            plan_id: plan_id.to_string(),
            prev_hash: self.head.clone(),
            hash: String::new(),
            requested_by: None,
        };
        r.hash = crate::audit::record_hash(&r);
        let texts = Texts::of(&r);
        self.insert(r, texts, user_key)
    }

    /// Queues a record built and hashed elsewhere, which must follow the head; records are
    /// written [`Chain::PER_STATEMENT`] to an `INSERT`.
    fn insert(&mut self, r: AuditRecord, texts: Texts, user_key: &str) -> Result<()> {
        if r.seq != self.seq + 1 || r.prev_hash != self.head {
            return Err(super::StoreError::Invalid(
                "internal: an audit record out of order".into(),
            ));
        }
        self.seq = r.seq;
        self.head = r.hash.clone();
        self.count += 1;
        self.pending.push((r, texts, user_key.to_string()));
        if self.pending.len() == Self::PER_STATEMENT {
            self.flush()?;
        }
        Ok(())
    }

    const PER_STATEMENT: usize = 64;

    /// Writes the queued records, in one statement.
    fn flush(&mut self) -> Result<()> {
        let n = self.pending.len();
        if n == 0 {
            return Ok(());
        }
        let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let sql = format!(
            "INSERT INTO audit (seq, at, actor, role, action, user, user_key, before, after, sources, plan_id, prev_hash, hash, requested_by)
             VALUES {}",
            vec![row; n].join(", ")
        );
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(14 * n);
        for (r, t, key) in &self.pending {
            values.extend_from_slice(&[
                &r.seq,
                &r.at,
                &r.actor,
                &r.role,
                &r.action,
                &r.user,
                key,
                &t.before,
                &t.after,
                &t.sources,
                &r.plan_id,
                &r.prev_hash,
                &r.hash,
                &t.requested_by,
            ]);
        }
        self.tx
            .prepare_cached(&sql)
            .and_then(|mut s| s.execute(values.as_slice()))
            .map_err(|e| map_err(self.path, "append audit record", e))?;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is queued and records the new head; writes the row anew if it was deleted
    /// (an apply that accepted that break repairs it).
    fn close(mut self) -> Result<()> {
        self.flush()?;
        self.tx
            .execute(
                "INSERT INTO audit_head (id, hash, count) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, count = excluded.count",
                params![self.head, self.count],
            )
            .map(|_| ())
            .map_err(|e| map_err(self.path, "append audit record", e))
    }
}
