//! The reads: the directory, the audit log, the applied plans and the whole store for a copy.
//! A list of keys goes to the server as one array (`key = ANY($1)`), so loading 5,000 users is
//! one query and a read-only role suffices; long reads (every user, the whole log) go a page
//! at a time by key inside one snapshot, so that memory stays bounded and no callback runs
//! while the connection is busy.

use super::error::Op;
use super::{shown, Postgres};
use crate::model::{key_of, Group, Timestamp, User};
use crate::store::backend::{AuditRow, Head, Piece};
use crate::store::record::{self, Stored};
use crate::store::Result;
use postgres::types::FromSql;
use postgres::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Rows per page of a long read: a few megabytes of records.
const PAGE: i64 = 5_000;

/// The columns of an audit row, in [`audit_row`]'s order.
macro_rules! audit_columns {
    () => {
        "seq, at, actor, role, action, user_id, user_key, before, after, sources, plan_id, \
         prev_hash, hash, requested_by"
    };
}

impl Postgres {
    /// Column `i` of `row` (of the table and row `what` names), or a damaged-store error: the
    /// schema fixes every type, so only a table altered outside mfactl gets here.
    pub(super) fn get<'a, T: FromSql<'a>>(
        &self,
        row: &'a Row,
        i: usize,
        what: &dyn Fn() -> String,
    ) -> Result<T> {
        row.try_get(i).map_err(|e| {
            let column = row.columns().get(i).map_or("?", |c| c.name());
            self.damaged(format!(
                "{}: column `{column}` cannot be read ({})",
                what(),
                crate::util::escape_text(&e.to_string())
            ))
        })
    }

    pub(super) fn read_revision(&self) -> Result<i64> {
        let rows = self.query(
            Op::Read,
            "read revision",
            "SELECT value FROM mfactl.meta WHERE key = 'revision'",
            &[],
        )?;
        match rows.first() {
            Some(r) => self.get(r, 0, &|| "meta, row `revision`".into()),
            None => Err(self.damaged("meta: the `revision` row is missing".into())),
        }
    }

    pub(super) fn read_groups(&self) -> Result<BTreeMap<String, Group>> {
        let rows = self.query(
            Op::Read,
            "read groups",
            "SELECT key, name, role_assignable FROM mfactl.groups",
            &[],
        )?;
        let mut out = BTreeMap::new();
        for r in &rows {
            let what = || "groups, a group".to_string();
            out.insert(
                self.get::<String>(r, 0, &what)?,
                Group {
                    name: self.get(r, 1, &what)?,
                    role_assignable: self.get(r, 2, &what)?,
                },
            );
        }
        Ok(out)
    }

    /// Group key → name, for decoding records (a key the table lacks shows as itself).
    fn group_names(&self) -> Result<HashMap<String, String>> {
        Ok(self
            .read_groups()?
            .into_iter()
            .map(|(k, g)| (k, g.name))
            .collect())
    }

    /// Which of `keys` are users in the store.
    pub(super) fn read_existing(&self, keys: &[&str]) -> Result<BTreeSet<String>> {
        if keys.is_empty() {
            return Ok(BTreeSet::new());
        }
        let rows = self.query(
            Op::Read,
            "read users",
            "SELECT key FROM mfactl.users WHERE key = ANY($1)",
            &[&keys],
        )?;
        rows.iter()
            .map(|r| self.get(r, 0, &|| "users, a user".into()))
            .collect()
    }

    /// The keys of the users named and of every member of the groups named, sorted by bytes.
    pub(super) fn read_selection(
        &self,
        users: &BTreeSet<String>,
        groups: &BTreeSet<String>,
    ) -> Result<Vec<String>> {
        let mut selected: BTreeSet<String> = users.clone();
        if !groups.is_empty() {
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let rows = self.query(
                Op::Read,
                "read group members",
                "SELECT user_key FROM mfactl.members WHERE group_key = ANY($1)",
                &[&groups],
            )?;
            for r in &rows {
                selected
                    .insert(self.get(r, 0, &|| "members, a member of the groups selected".into())?);
            }
        }
        Ok(selected.into_iter().collect())
    }

    /// The record in `row` (`key, record`) decoded, or a damaged-store error naming the user,
    /// worded as the SQLite store words it.
    fn decode_row(&self, row: &Row, names: &HashMap<String, String>) -> Result<(String, Stored)> {
        let key: String = self.get(row, 0, &|| "users, a user".into())?;
        let user_row = || format!("users, user `{}`", shown(&key));
        let bytes: &[u8] = self.get(row, 1, &user_row)?;
        let stored = record::decode(&key, bytes, |g| {
            names.get(g).cloned().unwrap_or_else(|| g.to_string())
        })
        .map_err(|d| self.damaged(format!("{}: column `record` is damaged {d}", user_row())))?;
        Ok((key, stored))
    }

    /// The users of `keys` with their whole state; keys without a user are left out.
    pub(super) fn read_users(&self, keys: &[&str]) -> Result<BTreeMap<String, User>> {
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        let names = self.group_names()?;
        let rows = self.query(
            Op::Read,
            "read users",
            r#"SELECT key, record FROM mfactl.users WHERE key = ANY($1) ORDER BY key COLLATE "C""#,
            &[&keys],
        )?;
        let mut out = BTreeMap::new();
        for r in &rows {
            let (k, s) = self.decode_row(r, &names)?;
            out.insert(k, s.user);
        }
        Ok(out)
    }

    /// The stored records of `keys`, in key order; `lenient` turns a record that does not
    /// decode into `None` rather than an error.
    pub(super) fn read_stored(
        &self,
        keys: &[&str],
        lenient: bool,
    ) -> Result<Vec<(String, Option<Stored>)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Group names matter only to the user part, which an import replaces anyway.
        let names = if lenient {
            HashMap::new()
        } else {
            self.group_names()?
        };
        let rows = self.query(
            Op::Read,
            "read users",
            r#"SELECT key, record FROM mfactl.users WHERE key = ANY($1) ORDER BY key COLLATE "C""#,
            &[&keys],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            match self.decode_row(r, &names) {
                Ok((k, s)) => out.push((k, Some(s))),
                Err(_) if lenient => out.push((self.get(r, 0, &|| "users, a user".into())?, None)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Every user in key order, `batch` at a time, a page query each (inside the caller's
    /// snapshot).
    pub(super) fn read_user_batches(
        &self,
        batch: usize,
        each: &mut dyn FnMut(BTreeMap<String, User>) -> bool,
    ) -> Result<()> {
        let names = self.group_names()?;
        let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let mut after: Option<String> = None;
        loop {
            let rows = self.user_page(after.as_deref(), limit)?;
            let mut users = BTreeMap::new();
            for r in &rows {
                let (k, s) = self.decode_row(r, &names)?;
                users.insert(k, s.user);
            }
            let Some(last) = users.keys().next_back().cloned() else {
                return Ok(());
            };
            let full = rows.len() as i64 == limit;
            if !each(users) || !full {
                return Ok(());
            }
            after = Some(last);
        }
    }

    /// Up to `limit` rows of `users` (`key, record`) after key `after`, in key order.
    fn user_page(&self, after: Option<&str>, limit: i64) -> Result<Vec<Row>> {
        match after {
            None => self.query(
                Op::Read,
                "read users",
                r#"SELECT key, record FROM mfactl.users ORDER BY key COLLATE "C" LIMIT $1"#,
                &[&limit],
            ),
            Some(k) => self.query(
                Op::Read,
                "read users",
                r#"SELECT key, record FROM mfactl.users WHERE key > $1
                   ORDER BY key COLLATE "C" LIMIT $2"#,
                &[&k, &limit],
            ),
        }
    }

    pub(super) fn read_plan_applied(&self, plan_id: &str) -> Result<bool> {
        let rows = self.query(
            Op::Read,
            "read applied plans",
            "SELECT EXISTS (SELECT 1 FROM mfactl.applied_plans WHERE plan_id = $1)",
            &[&plan_id],
        )?;
        match rows.first() {
            Some(r) => self.get(r, 0, &|| "applied_plans".into()),
            None => Ok(false),
        }
    }

    /// An audit row as stored.
    fn audit_row(&self, r: &Row) -> Result<AuditRow> {
        let what = || "audit, a record".to_string();
        Ok(AuditRow {
            seq: self.get(r, 0, &what)?,
            at: self.get(r, 1, &what)?,
            actor: self.get(r, 2, &what)?,
            role: self.get(r, 3, &what)?,
            action: self.get(r, 4, &what)?,
            user: self.get(r, 5, &what)?,
            user_key: self.get(r, 6, &what)?,
            before: self.get(r, 7, &what)?,
            after: self.get(r, 8, &what)?,
            sources: self.get(r, 9, &what)?,
            plan_id: self.get(r, 10, &what)?,
            prev_hash: self.get(r, 11, &what)?,
            hash: self.get(r, 12, &what)?,
            requested_by: self.get(r, 13, &what)?,
        })
    }

    /// The audit rows, oldest first, optionally of one user (by id or key) and from a time
    /// on, a page at a time (inside the caller's snapshot).
    pub(super) fn read_audit(
        &self,
        user: Option<&str>,
        since: Option<Timestamp>,
        each: &mut dyn FnMut(&AuditRow) -> Result<()>,
    ) -> Result<()> {
        let key = user.map(key_of);
        let since = since.map_or(i64::MIN, Timestamp::unix);
        let ctx = "read audit log";
        let mut after = i64::MIN;
        loop {
            let rows = match &key {
                None => self.query(
                    Op::Read,
                    ctx,
                    concat!(
                        "SELECT ",
                        audit_columns!(),
                        " FROM mfactl.audit WHERE seq > $1 AND at >= $2 ORDER BY seq LIMIT $3"
                    ),
                    &[&after, &since, &PAGE],
                )?,
                Some(k) => self.query(
                    Op::Read,
                    ctx,
                    concat!(
                        "SELECT ",
                        audit_columns!(),
                        " FROM mfactl.audit WHERE user_key = $4 AND seq > $1 AND at >= $2
                          ORDER BY seq LIMIT $3"
                    ),
                    &[&after, &since, &PAGE, k],
                )?,
            };
            for r in &rows {
                let row = self.audit_row(r)?;
                after = row.seq;
                each(&row)?;
            }
            if (rows.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }

    pub(super) fn read_audit_head(&self) -> Result<Head> {
        let rows = self.query(
            Op::Read,
            "verify audit log",
            "SELECT hash, count FROM mfactl.audit_head WHERE id = 1",
            &[],
        )?;
        Ok(match rows.first() {
            None => Head::Broken("is missing".into()),
            Some(r) => Head::Recorded {
                hash: self.get(r, 0, &|| "audit_head".into())?,
                count: self.get(r, 1, &|| "audit_head".into())?,
            },
        })
    }

    pub(super) fn read_max_audit_seq(&self) -> Result<i64> {
        let rows = self.query(
            Op::Read,
            "read audit log",
            "SELECT coalesce(max(seq), 0) FROM mfactl.audit",
            &[],
        )?;
        match rows.first() {
            Some(r) => self.get(r, 0, &|| "audit".into()),
            None => Ok(0),
        }
    }

    pub(super) fn read_is_blank(&self) -> Result<bool> {
        let rows = self.query(
            Op::Read,
            "read the store",
            "SELECT EXISTS (SELECT 1 FROM mfactl.users)
                 OR EXISTS (SELECT 1 FROM mfactl.groups)
                 OR EXISTS (SELECT 1 FROM mfactl.audit)
                 OR EXISTS (SELECT 1 FROM mfactl.applied_plans)",
            &[],
        )?;
        let any: bool = match rows.first() {
            Some(r) => self.get(r, 0, &|| "the store".into())?,
            None => false,
        };
        Ok(!any && self.read_revision()? == 0)
    }

    /// Every row of every table, in [`Piece`]'s order (inside the caller's snapshot).
    pub(super) fn read_dump(&self, each: &mut dyn FnMut(Piece) -> Result<()>) -> Result<()> {
        each(Piece::Revision(self.read_revision()?))?;
        let rows = self.query(
            Op::Read,
            "read groups",
            r#"SELECT key, name, role_assignable FROM mfactl.groups ORDER BY key COLLATE "C""#,
            &[],
        )?;
        for r in &rows {
            let what = || "groups, a group".to_string();
            each(Piece::Group {
                key: self.get(r, 0, &what)?,
                name: self.get(r, 1, &what)?,
                role_assignable: self.get(r, 2, &what)?,
            })?;
        }
        let mut after: Option<String> = None;
        loop {
            let rows = self.user_page(after.as_deref(), PAGE)?;
            for r in &rows {
                let key: String = self.get(r, 0, &|| "users, a user".into())?;
                let record: Vec<u8> =
                    self.get(r, 1, &|| format!("users, user `{}`", shown(&key)))?;
                after = Some(key.clone());
                each(Piece::User { key, record })?;
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        let mut after: Option<(String, String)> = None;
        loop {
            let rows = match &after {
                None => self.query(
                    Op::Read,
                    "read group members",
                    r#"SELECT group_key, user_key FROM mfactl.members
                       ORDER BY group_key COLLATE "C", user_key COLLATE "C" LIMIT $1"#,
                    &[&PAGE],
                )?,
                Some((g, u)) => self.query(
                    Op::Read,
                    "read group members",
                    r#"SELECT group_key, user_key FROM mfactl.members
                       WHERE (group_key, user_key) > ($1, $2)
                       ORDER BY group_key COLLATE "C", user_key COLLATE "C" LIMIT $3"#,
                    &[g, u, &PAGE],
                )?,
            };
            for r in &rows {
                let what = || "members, a row".to_string();
                let (group_key, user_key): (String, String) =
                    (self.get(r, 0, &what)?, self.get(r, 1, &what)?);
                after = Some((group_key.clone(), user_key.clone()));
                each(Piece::Member {
                    group_key,
                    user_key,
                })?;
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        self.read_audit(None, None, &mut |row| {
            each(Piece::Audit(Box::new(row.clone())))
        })?;
        if let Head::Recorded { hash, count } = self.read_audit_head()? {
            each(Piece::AuditHead { hash, count })?;
        }
        let rows = self.query(
            Op::Read,
            "read applied plans",
            r#"SELECT plan_id, applied_at, revision FROM mfactl.applied_plans
               ORDER BY plan_id COLLATE "C""#,
            &[],
        )?;
        for r in &rows {
            let what = || "applied_plans, a row".to_string();
            each(Piece::AppliedPlan {
                plan_id: self.get(r, 0, &what)?,
                applied_at: self.get(r, 1, &what)?,
                revision: self.get(r, 2, &what)?,
            })?;
        }
        Ok(())
    }
}
