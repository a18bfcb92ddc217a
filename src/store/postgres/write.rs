//! The writes, all inside the write transaction: each call is one statement whatever its
//! number of rows (arrays through `unnest`), and thousands of rows at once (an import, a copy)
//! go by binary `COPY` instead, straight into the table when no row can conflict, else through
//! a temporary staging table and one `INSERT … ON CONFLICT`.

use super::error::Op;
use super::{Postgres, Tx};
use crate::model::{key_of, Group};
use crate::store::backend::{AuditRow, Piece};
use crate::store::{Result, StoreError};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use std::collections::HashMap;

/// From how many rows a write goes by `COPY` rather than by arrays: below it the staging
/// table's extra statements cost more than they save.
const COPY_FROM: usize = 2_000;

/// The items of `items` that are the last of their key: a later one replaces an earlier one,
/// as a row written twice would, and one statement may not touch a row twice.
fn last_of_each<'a, T>(items: &'a [T], key: impl Fn(&'a T) -> &'a str) -> Vec<&'a T> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        last.insert(key(it), i);
    }
    if last.len() == items.len() {
        return items.iter().collect();
    }
    items
        .iter()
        .enumerate()
        .filter(|(i, it)| last.get(key(it)) == Some(i))
        .map(|(_, it)| it)
        .collect()
}

impl Postgres {
    /// Refuses a write outside the write transaction (a bug: it would commit on its own,
    /// without the lock).
    fn writing(&self) -> Result<()> {
        if self.tx.get() == Tx::Write {
            Ok(())
        } else {
            Err(StoreError::Invalid(
                "internal: a write outside the write transaction".into(),
            ))
        }
    }

    /// Writes `rows` into `table (columns)` by binary `COPY`.
    fn copy_in(
        &self,
        ctx: &'static str,
        sql: &str,
        types: &[Type],
        rows: &mut dyn Iterator<Item = Vec<&(dyn ToSql + Sync)>>,
    ) -> Result<()> {
        let mut c = self.client()?;
        let err = self.err(Op::Write, ctx);
        let w = c.copy_in(sql).map_err(&err)?;
        let mut w = BinaryCopyInWriter::new(w, types);
        for row in rows {
            w.write(&row).map_err(&err)?;
        }
        w.finish().map_err(&err)?;
        Ok(())
    }

    /// Empties (creating it for this transaction if need be) a temporary staging table.
    fn staging(&self, ctx: &'static str, table: &str, columns: &str) -> Result<()> {
        self.batch(
            Op::Write,
            ctx,
            &format!(
                "CREATE TEMP TABLE IF NOT EXISTS {table} ({columns}) ON COMMIT DROP;
                 TRUNCATE {table}"
            ),
        )
    }

    pub(super) fn write_bump_revision(&self) -> Result<i64> {
        self.writing()?;
        let rows = self.query(
            Op::Write,
            "bump revision",
            "UPDATE mfactl.meta SET value = value + 1 WHERE key = 'revision' RETURNING value",
            &[],
        )?;
        match rows.first() {
            Some(r) => self.get(r, 0, &|| "meta, row `revision`".into()),
            None => Err(self.damaged("meta: the `revision` row is missing".into())),
        }
    }

    pub(super) fn write_update_records(&self, records: &[(&str, &[u8])]) -> Result<()> {
        self.writing()?;
        if records.is_empty() {
            return Ok(());
        }
        let latest = last_of_each(records, |(k, _)| k);
        let keys: Vec<&str> = latest.iter().map(|(k, _)| *k).collect();
        let recs: Vec<&[u8]> = latest.iter().map(|(_, r)| *r).collect();
        self.execute(
            Op::Write,
            "apply",
            "UPDATE mfactl.users u SET record = v.r
             FROM unnest($1::text[], $2::bytea[]) AS v(k, r) WHERE u.key = v.k",
            &[&keys, &recs],
        )?;
        Ok(())
    }

    pub(super) fn write_upsert_records(&self, records: &[(&str, &[u8])]) -> Result<()> {
        self.writing()?;
        if records.is_empty() {
            return Ok(());
        }
        let latest = last_of_each(records, |(k, _)| k);
        let keys: Vec<&str> = latest.iter().map(|(k, _)| *k).collect();
        if latest.len() < COPY_FROM {
            let recs: Vec<&[u8]> = latest.iter().map(|(_, r)| *r).collect();
            return self.upsert_by_arrays(&keys, &recs);
        }
        if self.read_existing(&keys)?.is_empty() {
            // None of them is in the store: straight into the table.
            return self.copy_in(
                "import",
                "COPY mfactl.users (key, record) FROM STDIN (FORMAT binary)",
                &[Type::TEXT, Type::BYTEA],
                &mut latest.iter().map(|(k, r)| vec![k as _, r as _]),
            );
        }
        self.upsert_staged(&latest)
    }

    /// The upsert of a few records: one statement over two arrays.
    pub(super) fn upsert_by_arrays(&self, keys: &[&str], recs: &[&[u8]]) -> Result<()> {
        self.execute(
            Op::Write,
            "import",
            "INSERT INTO mfactl.users (key, record)
             SELECT k, r FROM unnest($1::text[], $2::bytea[]) AS v(k, r)
             ON CONFLICT (key) DO UPDATE SET record = excluded.record",
            &[&keys, &recs],
        )?;
        Ok(())
    }

    /// The upsert of many records, some in the store: `COPY` into a staging table, then one
    /// `INSERT … ON CONFLICT` from it.
    pub(super) fn upsert_staged(&self, latest: &[&(&str, &[u8])]) -> Result<()> {
        let ctx = "import";
        self.staging(
            ctx,
            "pg_temp.mfactl_users_in",
            r#"key text COLLATE "C" NOT NULL, record bytea NOT NULL"#,
        )?;
        self.copy_in(
            ctx,
            "COPY pg_temp.mfactl_users_in (key, record) FROM STDIN (FORMAT binary)",
            &[Type::TEXT, Type::BYTEA],
            &mut latest.iter().map(|(k, r)| vec![k as _, r as _]),
        )?;
        self.batch(
            Op::Write,
            ctx,
            "INSERT INTO mfactl.users (key, record) SELECT key, record FROM pg_temp.mfactl_users_in
             ON CONFLICT (key) DO UPDATE SET record = excluded.record",
        )
    }

    pub(super) fn write_insert_members(&self, pairs: &[(&str, &str)]) -> Result<()> {
        self.writing()?;
        if pairs.is_empty() {
            return Ok(());
        }
        let ctx = "write group members";
        if pairs.len() < COPY_FROM {
            let (groups, users): (Vec<&str>, Vec<&str>) = pairs.iter().copied().unzip();
            self.execute(
                Op::Write,
                ctx,
                "INSERT INTO mfactl.members (group_key, user_key)
                 SELECT g, u FROM unnest($1::text[], $2::text[]) AS v(g, u)
                 ON CONFLICT DO NOTHING",
                &[&groups, &users],
            )?;
            return Ok(());
        }
        // Many pairs: when none is in the table yet (a first import), `COPY` straight in;
        // else `COPY` into a staging table and one anti-join insert (half the time of
        // `ON CONFLICT DO NOTHING` here; safe, as the write lock keeps other mfactls out). A
        // pair listed twice goes once.
        let mut seen = std::collections::HashSet::with_capacity(pairs.len());
        let unique: Vec<&(&str, &str)> = pairs.iter().filter(|p| seen.insert(**p)).collect();
        let (groups, users): (Vec<&str>, Vec<&str>) = unique.iter().map(|p| **p).unzip();
        let rows = self.query(
            Op::Read,
            ctx,
            "SELECT EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[]) AS v(g, u)
                            JOIN mfactl.members m ON m.group_key = v.g AND m.user_key = v.u)",
            &[&groups, &users],
        )?;
        let any_present = match rows.first() {
            Some(r) => self.get(r, 0, &|| "members".into())?,
            None => true,
        };
        if !any_present {
            return self.copy_in(
                ctx,
                "COPY mfactl.members (group_key, user_key) FROM STDIN (FORMAT binary)",
                &[Type::TEXT, Type::TEXT],
                &mut unique.iter().map(|(g, u)| vec![g as _, u as _]),
            );
        }
        self.staging(
            ctx,
            "pg_temp.mfactl_members_in",
            r#"group_key text COLLATE "C" NOT NULL, user_key text COLLATE "C" NOT NULL"#,
        )?;
        self.copy_in(
            ctx,
            "COPY pg_temp.mfactl_members_in (group_key, user_key) FROM STDIN (FORMAT binary)",
            &[Type::TEXT, Type::TEXT],
            &mut unique.iter().map(|(g, u)| vec![g as _, u as _]),
        )?;
        self.batch(
            Op::Write,
            ctx,
            "INSERT INTO mfactl.members (group_key, user_key)
             SELECT s.group_key, s.user_key FROM pg_temp.mfactl_members_in s
             WHERE NOT EXISTS (SELECT 1 FROM mfactl.members m
                               WHERE m.group_key = s.group_key AND m.user_key = s.user_key)",
        )
    }

    /// Users the store does not hold: many go by `COPY` straight into both tables, without the
    /// reads [`Self::write_upsert_records`] and [`Self::write_insert_members`] make first; a
    /// few as those do. A pair or key listed twice goes once.
    pub(super) fn write_insert_new_users(
        &self,
        records: &[(&str, &[u8])],
        members: &[(&str, &str)],
    ) -> Result<()> {
        self.writing()?;
        let latest = last_of_each(records, |(k, _)| k);
        if latest.len() < COPY_FROM {
            self.write_upsert_records(records)?;
            return self.write_insert_members(members);
        }
        self.copy_in(
            "import",
            "COPY mfactl.users (key, record) FROM STDIN (FORMAT binary)",
            &[Type::TEXT, Type::BYTEA],
            &mut latest.iter().map(|(k, r)| vec![k as _, r as _]),
        )?;
        let mut seen = std::collections::HashSet::with_capacity(members.len());
        self.copy_in(
            "write group members",
            "COPY mfactl.members (group_key, user_key) FROM STDIN (FORMAT binary)",
            &[Type::TEXT, Type::TEXT],
            &mut members
                .iter()
                .filter(|p| seen.insert(**p))
                .map(|(g, u)| vec![g as _, u as _]),
        )
    }

    pub(super) fn write_delete_members(&self, pairs: &[(&str, &str)]) -> Result<()> {
        self.writing()?;
        if pairs.is_empty() {
            return Ok(());
        }
        let (groups, users): (Vec<&str>, Vec<&str>) = pairs.iter().copied().unzip();
        self.execute(
            Op::Write,
            "write group members",
            "DELETE FROM mfactl.members m USING unnest($1::text[], $2::text[]) AS v(g, u)
             WHERE m.group_key = v.g AND m.user_key = v.u",
            &[&groups, &users],
        )?;
        Ok(())
    }

    pub(super) fn write_delete_members_of(&self, user_keys: &[&str]) -> Result<()> {
        self.writing()?;
        if user_keys.is_empty() {
            return Ok(());
        }
        self.execute(
            Op::Write,
            "write group members",
            "DELETE FROM mfactl.members WHERE user_key = ANY($1)",
            &[&user_keys],
        )?;
        Ok(())
    }

    pub(super) fn write_upsert_groups(&self, groups: &[Group]) -> Result<()> {
        self.writing()?;
        if groups.is_empty() {
            return Ok(());
        }
        let keyed: Vec<(String, &Group)> = groups.iter().map(|g| (key_of(&g.name), g)).collect();
        let latest = last_of_each(&keyed, |(k, _)| k.as_str());
        let keys: Vec<&str> = latest.iter().map(|(k, _)| k.as_str()).collect();
        let names: Vec<&str> = latest.iter().map(|(_, g)| g.name.as_str()).collect();
        let flags: Vec<bool> = latest.iter().map(|(_, g)| g.role_assignable).collect();
        self.execute(
            Op::Write,
            "write groups",
            "INSERT INTO mfactl.groups (key, name, role_assignable)
             SELECT k, n, a FROM unnest($1::text[], $2::text[], $3::boolean[]) AS v(k, n, a)
             ON CONFLICT (key) DO UPDATE
             SET name = excluded.name, role_assignable = excluded.role_assignable",
            &[&keys, &names, &flags],
        )?;
        Ok(())
    }

    pub(super) fn write_audit(&self, rows: &[AuditRow]) -> Result<()> {
        self.writing()?;
        let ctx = "append audit record";
        if rows.is_empty() {
            return Ok(());
        }
        if rows.len() >= COPY_FROM {
            use Type as T;
            return self.copy_in(
                ctx,
                "COPY mfactl.audit (seq, at, actor, role, action, user_id, user_key, before, \
                 after, sources, plan_id, prev_hash, hash, requested_by) FROM STDIN (FORMAT binary)",
                &[
                    T::INT8, T::INT8, T::TEXT, T::TEXT, T::TEXT, T::TEXT, T::TEXT, T::TEXT,
                    T::TEXT, T::TEXT, T::TEXT, T::TEXT, T::TEXT, T::TEXT,
                ],
                &mut rows.iter().map(|r| -> Vec<&(dyn ToSql + Sync)> {
                    vec![
                        &r.seq, &r.at, &r.actor, &r.role, &r.action, &r.user, &r.user_key,
                        &r.before, &r.after, &r.sources, &r.plan_id, &r.prev_hash, &r.hash,
                        &r.requested_by,
                    ]
                }),
            );
        }
        let col = |f: fn(&AuditRow) -> &str| -> Vec<&str> { rows.iter().map(f).collect() };
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let ats: Vec<i64> = rows.iter().map(|r| r.at).collect();
        let requested: Vec<Option<&str>> = rows.iter().map(|r| r.requested_by.as_deref()).collect();
        self.execute(
            Op::Write,
            ctx,
            "INSERT INTO mfactl.audit (seq, at, actor, role, action, user_id, user_key, before,
                                       after, sources, plan_id, prev_hash, hash, requested_by)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                                  $11::text[], $12::text[], $13::text[], $14::text[])",
            &[
                &seqs,
                &ats,
                &col(|r| &r.actor),
                &col(|r| &r.role),
                &col(|r| &r.action),
                &col(|r| &r.user),
                &col(|r| &r.user_key),
                &col(|r| &r.before),
                &col(|r| &r.after),
                &col(|r| &r.sources),
                &col(|r| &r.plan_id),
                &col(|r| &r.prev_hash),
                &col(|r| &r.hash),
                &requested,
            ],
        )?;
        Ok(())
    }

    pub(super) fn write_audit_head(&self, hash: &str, count: i64) -> Result<()> {
        self.writing()?;
        self.execute(
            Op::Write,
            "append audit record",
            "INSERT INTO mfactl.audit_head (id, hash, count) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, count = excluded.count",
            &[&hash, &count],
        )?;
        Ok(())
    }

    pub(super) fn write_applied(&self, plan_id: &str, at: i64, revision: i64) -> Result<()> {
        self.writing()?;
        self.execute(
            Op::Write,
            "apply",
            "INSERT INTO mfactl.applied_plans (plan_id, applied_at, revision) VALUES ($1, $2, $3)",
            &[&plan_id, &at, &revision],
        )?;
        Ok(())
    }

    /// Writes pieces of a copy into this blank store, rows exactly as given: each kind in
    /// one statement (or `COPY`), in [`Piece`]'s order, so groups precede their members.
    pub(super) fn write_pieces(&self, pieces: &[Piece]) -> Result<()> {
        self.writing()?;
        let ctx = "copy";
        let mut revision = None;
        let (mut groups, mut users, mut members, mut audit, mut head, mut plans) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            None,
            Vec::new(),
        );
        for p in pieces {
            match p {
                Piece::Revision(r) => revision = Some(*r),
                Piece::Group {
                    key,
                    name,
                    role_assignable,
                } => groups.push((key.as_str(), name.as_str(), *role_assignable)),
                Piece::User { key, record } => users.push((key.as_str(), record.as_slice())),
                Piece::Member {
                    group_key,
                    user_key,
                } => members.push((group_key.as_str(), user_key.as_str())),
                Piece::Audit(row) => audit.push(row.as_ref().clone()),
                Piece::AuditHead { hash, count } => head = Some((hash.as_str(), *count)),
                Piece::AppliedPlan {
                    plan_id,
                    applied_at,
                    revision,
                } => plans.push((plan_id.as_str(), *applied_at, *revision)),
            }
        }
        if let Some(r) = revision {
            self.execute(
                Op::Write,
                ctx,
                "UPDATE mfactl.meta SET value = $1 WHERE key = 'revision'",
                &[&r],
            )?;
            // The head is the source's, or none when the source has none (a deleted head is a
            // break `audit verify` must report on the copy too): `init`'s empty head goes.
            self.execute(Op::Write, ctx, "DELETE FROM mfactl.audit_head", &[])?;
        }
        if !groups.is_empty() {
            let keys: Vec<&str> = groups.iter().map(|g| g.0).collect();
            let names: Vec<&str> = groups.iter().map(|g| g.1).collect();
            let flags: Vec<bool> = groups.iter().map(|g| g.2).collect();
            self.execute(
                Op::Write,
                ctx,
                "INSERT INTO mfactl.groups (key, name, role_assignable)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[])",
                &[&keys, &names, &flags],
            )?;
        }
        if users.len() >= COPY_FROM {
            self.copy_in(
                ctx,
                "COPY mfactl.users (key, record) FROM STDIN (FORMAT binary)",
                &[Type::TEXT, Type::BYTEA],
                &mut users.iter().map(|(k, r)| vec![k as _, r as _]),
            )?;
        } else if !users.is_empty() {
            let keys: Vec<&str> = users.iter().map(|u| u.0).collect();
            let recs: Vec<&[u8]> = users.iter().map(|u| u.1).collect();
            self.execute(
                Op::Write,
                ctx,
                "INSERT INTO mfactl.users (key, record)
                 SELECT * FROM unnest($1::text[], $2::bytea[])",
                &[&keys, &recs],
            )?;
        }
        if members.len() >= COPY_FROM {
            self.copy_in(
                ctx,
                "COPY mfactl.members (group_key, user_key) FROM STDIN (FORMAT binary)",
                &[Type::TEXT, Type::TEXT],
                &mut members.iter().map(|(g, u)| vec![g as _, u as _]),
            )?;
        } else if !members.is_empty() {
            let (g, u): (Vec<&str>, Vec<&str>) = members.iter().copied().unzip();
            self.execute(
                Op::Write,
                ctx,
                "INSERT INTO mfactl.members (group_key, user_key)
                 SELECT * FROM unnest($1::text[], $2::text[])",
                &[&g, &u],
            )?;
        }
        self.write_audit(&audit)?;
        if let Some((hash, count)) = head {
            self.write_audit_head(hash, count)?;
        }
        if !plans.is_empty() {
            let ids: Vec<&str> = plans.iter().map(|p| p.0).collect();
            let ats: Vec<i64> = plans.iter().map(|p| p.1).collect();
            let revs: Vec<i64> = plans.iter().map(|p| p.2).collect();
            self.execute(
                Op::Write,
                ctx,
                "INSERT INTO mfactl.applied_plans (plan_id, applied_at, revision)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])",
                &[&ids, &ats, &revs],
            )?;
        }
        Ok(())
    }
}
