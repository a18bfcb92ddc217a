//! Applying a plan, on either store: every change, its audit record, the applied plan id and the
//! revision bump, inside the caller's write transaction, so a crash leaves all or nothing. What
//! the changes do to a user's record is [`crate::plan::act`], the function the planner simulates
//! with; the backend only reads and writes rows.

use super::backend::{AuditRow, Backend, Head};
use super::record::Stored;
use super::{Result, StoreError};
use crate::model::{key_of, Action, AuditRecord, Timestamp};
use crate::plan::slice_value;
use crate::plan::Plan;
use crate::policy::Verdict;
use std::collections::BTreeMap;

/// Users read, changed and written back per round trip: large enough that a round trip to a
/// database server costs little per user, small enough to hold a few megabytes.
const USERS_PER_ROUND: usize = 512;

/// Writes `plan` (already checked: every change allowed) and returns the new store revision,
/// calling `progress(done, total)` now and then as the changes are written. `hashes` holds
/// the argon2 hash of each reset user's new password, by key (the clear text never comes here).
#[allow(clippy::too_many_arguments)]
pub fn apply_plan(
    tx: &dyn Backend,
    plan: &Plan,
    actor: &str,
    now: Timestamp,
    hashes: &BTreeMap<String, String>,
    accept_broken_audit: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<i64> {
    let report = verify_audit(tx)?;
    let mut chain = Chain::open(tx, &report)?;
    if !report.intact() {
        let problems: Vec<String> = report
            .unacknowledged()
            .map(|b| format!("record #{} {}", b.seq, b.what))
            .collect();
        if !accept_broken_audit {
            return Err(StoreError::BrokenAudit {
                path: tx.name().to_path_buf(),
                detail: problems.join("; "),
            });
        }
        let mut r = AuditRecord {
            seq: chain.seq + 1,
            at: now,
            actor: actor.to_string(),
            role: String::new(),
            action: crate::audit::ACCEPT_BROKEN.to_string(),
            user: String::new(),
            before: serde_json::json!({"problems": problems}),
            after: serde_json::json!({}),
            sources: Vec::new(),
            plan_id: plan.id.clone(),
            prev_hash: chain.head.clone(),
            hash: String::new(),
            requested_by: None,
        };
        r.hash = crate::audit::record_hash(&r);
        chain.push(AuditRow::of(&r, ""))?;
    }
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
        let (records_out, chunks) = std::sync::mpsc::sync_channel::<Vec<AuditRow>>(16);
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
                chunk.push(AuditRow::of(&r, &key_of(&c.user)));
                if chunk.len() == CHUNK || i + 1 == plan.changes.len() {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if records_out.send(full).is_err() {
                        return; // the writer stopped
                    }
                }
            }
        });
        let mut records = Vec::new().into_iter();
        let mut users = Users::new(tx);
        for (i, c) in plan.changes.iter().enumerate() {
            if i == half {
                failpoint("apply-mid");
            }
            if i % 1024 == 0 {
                progress(i, plan.changes.len());
            }
            if !matches!(&c.verdict, Some(Verdict::Allowed { .. })) {
                return Err(StoreError::Invalid(format!(
                    "internal: change for {} is not allowed",
                    c.user
                )));
            }
            let key = key_of(&c.user);
            let stored = users.get(&key, &plan.changes[i..])?;
            crate::plan::act(&mut stored.user, &c.action);
            match c.action {
                Action::ResetPassword { .. } => {
                    let hash = hashes.get(&key).ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "internal: no temporary password for {}",
                            c.user
                        ))
                    })?;
                    stored.password_hash = Some(hash.clone());
                }
                Action::DeleteAppPasswords => stored.secrets.clear(),
                _ => {}
            }
            let next = match records.next() {
                Some(r) => Some(r),
                None => chunks.recv().ok().and_then(|c| {
                    records = c.into_iter();
                    records.next()
                }),
            };
            let row = next
                .ok_or_else(|| StoreError::Invalid("internal: the audit records stopped".into()))?;
            chain.push(row)?;
        }
        users.flush()?;
        chain.flush()?;
        Ok(())
    })?;
    chain.close()?;
    progress(plan.changes.len(), plan.changes.len());
    let revision = tx.bump_revision()?;
    tx.record_applied(&plan.id, now, revision)?;
    failpoint("apply-before-commit");
    Ok(revision)
}

/// The users being changed, a round of [`USERS_PER_ROUND`] at a time: the changes of one user
/// are consecutive in a plan (sorted by user), so the next round's users are read with one
/// query, changed in memory, and written back with one.
struct Users<'a> {
    tx: &'a dyn Backend,
    /// The round's records, in plan order, and the index of the one being changed.
    round: Vec<(String, Stored)>,
    at: usize,
    buf: Vec<Vec<u8>>,
}

impl<'a> Users<'a> {
    fn new(tx: &'a dyn Backend) -> Self {
        Users {
            tx,
            round: Vec::new(),
            at: 0,
            buf: Vec::new(),
        }
    }

    /// The record of `key`, whose change is the first of `rest` (the plan's changes from it on).
    fn get(&mut self, key: &str, rest: &[crate::plan::Change]) -> Result<&mut Stored> {
        if self.round.get(self.at).is_some_and(|(k, _)| k != key) {
            self.at += 1;
        }
        if self.at >= self.round.len() {
            self.flush()?;
            let mut keys: Vec<String> = Vec::with_capacity(USERS_PER_ROUND);
            for c in rest {
                let k = key_of(&c.user);
                if keys.last() != Some(&k) {
                    if keys.len() == USERS_PER_ROUND {
                        break;
                    }
                    keys.push(k);
                }
            }
            let wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut read: BTreeMap<String, Stored> =
                self.tx.read_records(&wanted)?.into_iter().collect();
            for k in keys {
                let Some(stored) = read.remove(&k) else {
                    return Err(StoreError::Invalid(format!(
                        "internal: user {k} is not in the store"
                    )));
                };
                self.round.push((k, stored));
            }
            self.at = 0;
        }
        match self.round.get_mut(self.at) {
            Some((k, stored)) if k == key => Ok(stored),
            _ => Err(StoreError::Invalid(format!(
                "internal: the plan's changes for {key} are not together"
            ))),
        }
    }

    /// Writes the round's records back.
    fn flush(&mut self) -> Result<()> {
        if self.round.is_empty() {
            return Ok(());
        }
        self.buf.resize_with(self.round.len(), Vec::new);
        for ((key, stored), buf) in self.round.iter().zip(&mut self.buf) {
            buf.clear();
            super::record::encode(key, stored, buf);
        }
        let rows: Vec<(&str, &[u8])> = (self.round.iter())
            .zip(&self.buf)
            .map(|((k, _), b)| (k.as_str(), b.as_slice()))
            .collect();
        self.tx.update_records(&rows)?;
        self.round.clear();
        self.at = 0;
        Ok(())
    }
}

/// Appends hash-chained audit records and moves the recorded head.
struct Chain<'a> {
    tx: &'a dyn Backend,
    seq: i64,
    head: String,
    count: i64,
    pending: Vec<AuditRow>,
}

impl<'a> Chain<'a> {
    const PER_WRITE: usize = 256;

    fn open(tx: &'a dyn Backend, report: &crate::audit::Report) -> Result<Self> {
        Ok(Chain {
            tx,
            seq: tx.max_audit_seq()?,
            head: report.head.clone(),
            count: report.records as i64,
            pending: Vec::with_capacity(Self::PER_WRITE),
        })
    }

    /// Queues a record, which must follow the head.
    fn push(&mut self, r: AuditRow) -> Result<()> {
        if r.seq != self.seq + 1 || r.prev_hash != self.head {
            return Err(StoreError::Invalid(
                "internal: an audit record out of order".into(),
            ));
        }
        self.seq = r.seq;
        self.head = r.hash.clone();
        self.count += 1;
        self.pending.push(r);
        if self.pending.len() == Self::PER_WRITE {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.tx.append_audit(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Writes what is queued and records the new head.
    fn close(mut self) -> Result<()> {
        self.flush()?;
        self.tx.set_audit_head(&self.head, self.count)
    }
}

/// Verifies the whole audit chain against the recorded head, hashing each record's stored text
/// as it is (nothing is parsed: 200,000 records take a fraction of a second).
pub fn verify_audit(conn: &dyn Backend) -> Result<crate::audit::Report> {
    let mut verifier = crate::audit::Verifier::default();
    let mut buf = Vec::new();
    conn.each_audit_row(&mut |r| {
        let computed = r.computed_hash(&mut buf);
        verifier.check(r.seq, &r.action, &r.prev_hash, &r.hash, &computed);
    })?;
    // A head that is missing or holds no count is a break of the chain (records deleted from
    // the end could hide behind it), reported by `audit verify` and refused by apply.
    Ok(match conn.audit_head()? {
        Head::Recorded { hash, count } => verifier.finish(Some((&hash, count))),
        Head::Broken(what) => verifier.finish_without_head(&what),
    })
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
