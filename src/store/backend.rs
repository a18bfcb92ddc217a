//! The one interface of a store, and what passes through it. Two implementations: the SQLite
//! file ([`super::sqlite`]) and the PostgreSQL database ([`super::postgres`]). What a change
//! means (how a plan is applied, how the audit chain is extended, what an import keeps) is
//! written once, above this trait, in `apply`, `import` and `copy`;
//! a backend only reads and writes rows. The workflows see `&Conn` (`dyn Backend`) and never
//! learn which one they hold.

use super::record::Stored;
use super::Result;
use crate::model::{AuditRecord, Group, Timestamp, User};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A store, as the workflows hold it.
pub type Conn = dyn Backend;

/// One audit record as the store keeps it: the JSON fields as their stored text, so that a
/// record is copied, and its hash checked, exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    /// Seconds since the epoch (a value that is not a time reads as `i64::MIN`: it then fails
    /// the chain's check rather than the read).
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub user: String,
    pub user_key: String,
    pub before: String,
    pub after: String,
    pub sources: String,
    pub plan_id: String,
    pub prev_hash: String,
    pub hash: String,
    pub requested_by: Option<String>,
}

impl AuditRow {
    /// The row of a record built by mfactl (`user_key` is the record's user's key).
    pub fn of(r: &AuditRecord, user_key: &str) -> AuditRow {
        AuditRow {
            seq: r.seq,
            at: r.at.unix(),
            actor: r.actor.clone(),
            role: r.role.clone(),
            action: r.action.clone(),
            user: r.user.clone(),
            user_key: user_key.to_string(),
            before: r.before.to_string(),
            after: r.after.to_string(),
            sources: serde_json::to_string(&r.sources).unwrap_or_default(),
            plan_id: r.plan_id.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
            requested_by: crate::audit::requested_by_text(r),
        }
    }

    /// The hash the chain expects of this row, computed over its stored text.
    pub fn computed_hash(&self, buf: &mut Vec<u8>) -> String {
        crate::audit::Canonical {
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            role: &self.role,
            action: &self.action,
            user: &self.user,
            before: &self.before,
            after: &self.after,
            sources: &self.sources,
            plan_id: &self.plan_id,
            prev_hash: &self.prev_hash,
            requested_by: self.requested_by.as_deref(),
        }
        .hash(buf)
    }

    /// As `mfactl audit` lists it. A JSON field that does not parse is shown as its text.
    pub fn to_record(&self) -> AuditRecord {
        let json = |s: &str| {
            serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.to_string()))
        };
        AuditRecord {
            seq: self.seq,
            at: Timestamp::from_unix(self.at),
            actor: self.actor.clone(),
            role: self.role.clone(),
            action: self.action.clone(),
            user: self.user.clone(),
            before: json(&self.before),
            after: json(&self.after),
            sources: serde_json::from_str(&self.sources).unwrap_or_default(),
            plan_id: self.plan_id.clone(),
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
            requested_by: self
                .requested_by
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok()),
        }
    }
}

/// One piece of a whole store, as `store copy` moves it: every row of every table, the record
/// bytes (password and app-password hashes included) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The store revision. Always first.
    Revision(i64),
    Group {
        key: String,
        name: String,
        role_assignable: bool,
    },
    User {
        key: String,
        record: Vec<u8>,
    },
    Member {
        group_key: String,
        user_key: String,
    },
    Audit(Box<AuditRow>),
    /// The recorded head of the audit chain (absent when someone deleted it).
    AuditHead {
        hash: String,
        count: i64,
    },
    AppliedPlan {
        plan_id: String,
        applied_at: i64,
        revision: i64,
    },
}

/// What the head row of the audit chain holds.
pub enum Head {
    Recorded {
        hash: String,
        count: i64,
    },
    /// Missing, or holding something that is not a count: described for `audit verify`.
    Broken(String),
}

/// A store: every read and write the workflows make, as rows in and out. Reads outside a
/// transaction each see a snapshot of their own; between [`Backend::snapshot_begin`] and
/// [`Backend::snapshot_end`], or inside a write transaction, they all see the same one.
pub trait Backend {
    /// How messages name the store: its file path, or its URL without the password.
    fn name(&self) -> &Path;

    // ---- snapshots and the write transaction ----

    /// Starts a read snapshot (nested inside a write transaction or another snapshot).
    fn snapshot_begin(&self) -> Result<()>;
    /// Ends the snapshot begun last; `ok: false` undoes whatever it did (it wrote nothing).
    fn snapshot_end(&self, ok: bool) -> Result<()>;
    /// Begins the write transaction, waiting up to the lock timeout for the store's write
    /// lock, which no other mfactl anywhere holds until this one commits or rolls back
    /// (`StoreError::Locked` after the timeout).
    fn begin_write(&self) -> Result<()>;
    fn commit_write(&self) -> Result<()>;
    /// Rolls the write transaction back; errors are ignored (a lost connection has rolled it
    /// back already).
    fn rollback_write(&self);

    // ---- reading the directory ----

    fn revision(&self) -> Result<i64>;
    fn load_groups(&self) -> Result<BTreeMap<String, Group>>;
    /// Which of `keys` are users in the store.
    fn existing_users(&self, keys: &BTreeSet<String>) -> Result<BTreeSet<String>>;
    /// These users (by key) with their whole state; keys without a user are left out.
    fn load_keys(&self, keys: &[String]) -> Result<BTreeMap<String, User>>;
    /// A plan's selection, kept by the backend for the current snapshot: the `users` named
    /// (whether they exist or not) and every member of `groups`. Returns every selected key,
    /// sorted by bytes.
    fn select(&self, users: &BTreeSet<String>, groups: &BTreeSet<String>) -> Result<Vec<String>>;
    /// Which of `named` (all in the selection) are users in the store.
    fn selected_named(&self, named: &BTreeSet<String>) -> Result<BTreeSet<String>>;
    /// The selected users whose keys lie between `first` and `last` (inclusive, by bytes).
    fn load_selected(&self, first: &str, last: &str) -> Result<BTreeMap<String, User>>;
    /// Every user, in key order, `batch` at a time (never an empty batch), in one snapshot;
    /// `each` returns false to stop.
    fn user_batches(
        &self,
        batch: usize,
        each: &mut dyn FnMut(BTreeMap<String, User>) -> bool,
    ) -> Result<()>;
    /// The stored records of these users, with their secrets; keys without a user are left
    /// out. A record that does not decode is an error naming it.
    fn read_records(&self, keys: &[&str]) -> Result<Vec<(String, Stored)>>;
    /// As [`Backend::read_records`], but a record that does not decode is `None` (an import
    /// replaces it).
    fn read_records_lenient(&self, keys: &[&str]) -> Result<Vec<(String, Option<Stored>)>>;

    // ---- reading the audit log and the applied plans ----

    fn plan_applied(&self, plan_id: &str) -> Result<bool>;
    /// The audit log, oldest first, optionally for one user key and from a time on.
    fn each_audit(
        &self,
        user_key: Option<&str>,
        since: Option<Timestamp>,
        each: &mut dyn FnMut(AuditRecord),
    ) -> Result<()>;
    /// Every audit row as stored, oldest first.
    fn each_audit_row(&self, each: &mut dyn FnMut(&AuditRow)) -> Result<()>;
    fn audit_head(&self) -> Result<Head>;
    fn max_audit_seq(&self) -> Result<i64>;

    // ---- writing, inside the write transaction ----

    fn bump_revision(&self) -> Result<i64>;
    /// Replaces the records of users the store holds.
    fn update_records(&self, records: &[(&str, &[u8])]) -> Result<()>;
    /// Writes these records, replacing any the store holds for the same keys.
    fn upsert_records(&self, records: &[(&str, &[u8])]) -> Result<()>;
    /// Adds `(group_key, user_key)` pairs to the group index (present ones are left).
    fn insert_members(&self, pairs: &[(&str, &str)]) -> Result<()>;
    /// Writes the records and group-index rows of users the store does not hold (the caller
    /// has just read their keys and found none): no row can conflict, so a backend may write
    /// them without looking. By default, [`Backend::upsert_records`] and
    /// [`Backend::insert_members`].
    fn insert_new_users(&self, records: &[(&str, &[u8])], members: &[(&str, &str)]) -> Result<()> {
        self.upsert_records(records)?;
        self.insert_members(members)
    }
    /// Removes `(group_key, user_key)` pairs from the group index.
    fn delete_members(&self, pairs: &[(&str, &str)]) -> Result<()>;
    /// Removes every group-index row of these users.
    fn delete_members_of(&self, user_keys: &[&str]) -> Result<()>;
    fn upsert_groups(&self, groups: &[Group]) -> Result<()>;
    fn append_audit(&self, rows: &[AuditRow]) -> Result<()>;
    /// Records the head of the audit chain (writing the row anew if it was deleted).
    fn set_audit_head(&self, hash: &str, count: i64) -> Result<()>;
    fn record_applied(&self, plan_id: &str, at: Timestamp, revision: i64) -> Result<()>;
    /// Whether the watch replica `fence` names still leads, checked inside the write
    /// transaction just before it commits: `Ok(false)` means another replica took over, and
    /// the caller must not commit. A backend with replicas (PostgreSQL) also locks the lease
    /// row until the commit, so that no takeover lands in between (see
    /// the PostgreSQL backend's `FENCE_SQL`). A SQLite store has one daemon at most: always
    /// true.
    fn check_fence(&self, _fence: &Fence) -> Result<bool> {
        Ok(true)
    }
    /// Settings for a large write (an import), on before its transaction, off after it.
    fn bulk_mode(&self, _on: bool) -> Result<()> {
        Ok(())
    }

    // ---- the whole store, for `store copy` ----

    /// Whether the store holds nothing yet: no user, group, audit record or applied plan, and
    /// revision 0.
    fn is_blank(&self) -> Result<bool>;
    /// Every row of every table, in the order of [`Piece`]'s variants, in one snapshot.
    fn dump(&self, each: &mut dyn FnMut(Piece) -> Result<()>) -> Result<()>;
    /// Writes pieces of a copy, inside the write transaction of a blank store.
    fn restore(&self, pieces: &[Piece]) -> Result<()>;
}

/// What an apply proves before it commits: that `holder` still leads, in `epoch`. The watch
/// daemon builds one only from a lease poll that said it leads (`lease::Role::Leader`), so a
/// standby cannot make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    holder: String,
    epoch: i64,
}

impl Fence {
    pub fn new(holder: impl Into<String>, epoch: i64) -> Fence {
        Fence {
            holder: holder.into(),
            epoch,
        }
    }

    /// The replica id the lease must name.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The epoch the lease must be in.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }
}
