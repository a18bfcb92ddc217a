//! The tables, in schema `mfactl`, and their numbered, forward-only migrations. The version is
//! the `schema_version` row of `mfactl.meta`; that table also marks the schema as ours, so
//! that a schema `mfactl` someone else made is refused rather than written to. `init` runs the
//! migrations in one transaction, under the store's write lock, so two machines running
//! `mfactl init` at once create the tables once.

use super::error::Op;
use super::{Postgres, Tx};
use crate::store::{Init, Result, StoreError};

/// Migration N brings the schema from version N-1 to N. Every key column is in the `"C"`
/// collation: keys sort by bytes, as Rust and the SQLite store sort them.
const MIGRATIONS: &[&str] = &[
    // 1: the layout of SQLite's schema 4 (docs/store.md), plus the watch daemon's lease.
    r#"
    CREATE TABLE mfactl.meta (key text PRIMARY KEY, value bigint NOT NULL);
    INSERT INTO mfactl.meta (key, value) VALUES ('revision', 0);
    CREATE TABLE mfactl.groups (
        key text COLLATE "C" PRIMARY KEY,
        name text NOT NULL,
        role_assignable boolean NOT NULL DEFAULT false
    );
    CREATE TABLE mfactl.users (
        key text COLLATE "C" PRIMARY KEY,
        record bytea NOT NULL
    );
    CREATE TABLE mfactl.members (
        group_key text COLLATE "C" NOT NULL REFERENCES mfactl.groups (key),
        user_key text COLLATE "C" NOT NULL,
        PRIMARY KEY (group_key, user_key)
    );
    CREATE TABLE mfactl.audit (
        seq bigint PRIMARY KEY,
        at bigint NOT NULL,
        actor text NOT NULL,
        role text NOT NULL,
        action text NOT NULL,
        user_id text NOT NULL,
        user_key text COLLATE "C" NOT NULL,
        before text NOT NULL,
        after text NOT NULL,
        sources text NOT NULL,
        plan_id text NOT NULL,
        prev_hash text NOT NULL,
        hash text NOT NULL,
        requested_by text
    );
    CREATE INDEX audit_by_user ON mfactl.audit (user_key, seq);
    CREATE TABLE mfactl.audit_head (
        id int PRIMARY KEY CHECK (id = 1),
        hash text NOT NULL,
        count bigint NOT NULL
    );
    INSERT INTO mfactl.audit_head (id, hash, count) VALUES (1, '', 0);
    CREATE TABLE mfactl.applied_plans (
        plan_id text PRIMARY KEY,
        applied_at bigint NOT NULL,
        revision bigint NOT NULL
    );
    CREATE TABLE mfactl.lease (
        id int PRIMARY KEY CHECK (id = 1),
        holder text,
        epoch bigint NOT NULL DEFAULT 0,
        expires_at timestamptz
    );
    INSERT INTO mfactl.lease (id, holder, epoch, expires_at) VALUES (1, NULL, 0, NULL);
    "#,
    // 2: the group index without its foreign key. Its check ran once per row written (a
    // `SELECT … FOR KEY SHARE` of the group), which made a first import's `COPY` of the index
    // four times slower; every write of the index comes from an import that has checked each
    // group first, as on SQLite, whose imports write with foreign keys off.
    r#"
    ALTER TABLE mfactl.members DROP CONSTRAINT IF EXISTS members_group_key_fkey;
    "#,
];

/// The schema version this build creates and reads.
pub(super) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// What the database holds under the name `mfactl`.
enum Found {
    /// No schema `mfactl`.
    Nothing,
    /// An empty schema `mfactl` (a DBA may create it for mfactl's role): ours to fill.
    Empty,
    /// Our schema, at this version.
    Version(i64),
    /// A schema `mfactl` with tables but no version of ours.
    Foreign,
}

impl Postgres {
    /// What schema `mfactl` holds.
    fn found(&self) -> Result<Found> {
        let ctx = "read the schema";
        let rows = self.query(
            Op::Read,
            ctx,
            "SELECT n.oid IS NOT NULL,
                    to_regclass('mfactl.meta') IS NOT NULL,
                    EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid)
             FROM (SELECT 1) one
             LEFT JOIN pg_namespace n ON n.nspname = 'mfactl'",
            &[],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| self.damaged("the schema query returned no row".into()))?;
        let get = |i| row.try_get::<_, bool>(i).unwrap_or(false);
        let (schema, meta, any) = (get(0), get(1), get(2));
        if !schema {
            return Ok(Found::Nothing);
        }
        if !meta {
            return Ok(if any { Found::Foreign } else { Found::Empty });
        }
        let rows = self.query(
            Op::Read,
            ctx,
            "SELECT value FROM mfactl.meta WHERE key = 'schema_version'",
            &[],
        )?;
        Ok(match rows.first().map(|r| r.try_get::<_, i64>(0)) {
            Some(Ok(v)) => Found::Version(v),
            _ => Found::Foreign,
        })
    }

    /// Checks that the store exists, is ours and is of this build's schema version (what
    /// every command but `init` needs). Reads only.
    pub fn check_version(&self) -> Result<()> {
        let known = latest();
        match self.found()? {
            Found::Nothing | Found::Empty => Err(StoreError::Missing(self.path())),
            Found::Foreign => Err(StoreError::Foreign(self.path())),
            Found::Version(v) if v > known => Err(StoreError::TooNew {
                path: self.path(),
                found: v,
                known,
            }),
            Found::Version(v) if v < known => Err(StoreError::TooOld {
                path: self.path(),
                found: v,
                known,
            }),
            Found::Version(_) => Ok(()),
        }
    }

    /// Creates schema `mfactl` and its tables, or migrates older ones, in one transaction
    /// under the write lock; a no-op on a current store. Says what it did.
    pub fn init(&self) -> Result<Init> {
        use super::Backend;
        self.begin_write()?;
        let result = self.migrate();
        match result {
            Ok(done) => {
                self.commit_write()?;
                Ok(done)
            }
            Err(e) => {
                self.rollback_write();
                Err(e)
            }
        }
    }

    /// The body of [`Postgres::init`], inside its transaction.
    fn migrate(&self) -> Result<Init> {
        let ctx = "create the store's tables";
        let known = latest();
        let from = match self.found()? {
            Found::Foreign => return Err(StoreError::Foreign(self.path())),
            Found::Nothing => {
                self.batch(Op::Write, ctx, "CREATE SCHEMA mfactl")
                    .map_err(|e| self.create_refused(e))?;
                0
            }
            Found::Empty => 0,
            Found::Version(v) if v > known => {
                return Err(StoreError::TooNew {
                    path: self.path(),
                    found: v,
                    known,
                })
            }
            Found::Version(v) => v,
        };
        debug_assert_eq!(self.tx.get(), Tx::Write);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
            self.batch(Op::Write, ctx, sql)
                .map_err(|e| self.create_refused(e))?;
            let version = i as i64 + 1;
            self.execute(
                Op::Write,
                ctx,
                "INSERT INTO mfactl.meta (key, value) VALUES ('schema_version', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&version],
            )?;
        }
        Ok(if from == 0 {
            Init::Created
        } else if from < known {
            Init::Migrated { from, to: known }
        } else {
            Init::Current
        })
    }

    /// A refused `CREATE` during `init` says which grant is missing, rather than calling the
    /// store read-only.
    fn create_refused(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::ReadOnly(path) => StoreError::Sql {
                path,
                context: "create the store's tables".into(),
                detail: "this role may not create schema `mfactl` or its tables; grant it \
                         CREATE on the database, or create schema `mfactl` owned by it \
                         (CREATE SCHEMA mfactl AUTHORIZATION …)"
                    .into(),
            },
            other => other,
        }
    }
}
