//! The store (see docs/store.md): the only module that knows tables. Two backends implement
//! one interface ([`Backend`]): a SQLite file, the embedded default, and a PostgreSQL database
//! shared by several machines (`--store postgres://…`). What a change, an import or a copy does
//! is written once above them (`apply`, `import`, `copy`); each backend only reads and
//! writes rows, and owns its SQL, its migrations and its lock.

mod apply;
pub mod backend;
mod copy;
mod export;
mod import;
pub mod lease;
pub mod postgres;
pub mod record;
pub mod sqlite;

pub use apply::{apply_plan, failpoint, failpoint_wait, verify_audit};
pub use backend::{Backend, Conn};
pub use copy::{copy, Copied};
pub use export::{export, export_with, show, ExportPart, EXPORT_BATCH};
pub use import::{import, import_with_progress, in_import_transaction, write_groups, write_users};

use crate::model::{key_of, AuditRecord, Timestamp};
use crate::plan::Actual;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {0} does not exist; create it with `mfactl init` (or point --store / MFACTL_STORE at an existing one)")]
    Missing(PathBuf),
    #[error("store {0} is not an SQLite database ({1}); check the --store path")]
    NotSqlite(PathBuf, String),
    #[error("store {0} is a database that mfactl did not create; refusing to touch it (check the --store path)")]
    Foreign(PathBuf),
    #[error("store {path} has schema version {found}, newer than this mfactl knows ({known}); upgrade mfactl")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("store {path} has schema version {found}, older than this mfactl ({known}); run `mfactl init` to migrate it")]
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "store {0} stayed locked by another mfactl for {1:?}; try again, or raise --lock-timeout"
    )]
    Locked(PathBuf, Duration),
    #[error("store {0} is read-only; mfactl needs write access to change it")]
    ReadOnly(PathBuf),
    #[error("store {0}: the disk is full; free space and retry (nothing was changed)")]
    Full(PathBuf),
    #[error("store {path}: {context}: {detail}")]
    Sql {
        path: PathBuf,
        context: String,
        detail: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("store {path} is damaged: {detail}; it was changed outside mfactl: restore it from a backup, or repair what is named")]
    Damaged { path: PathBuf, detail: String },
    #[error("store {path}: the audit log is broken: {detail}; nothing was applied. Inspect it with `mfactl audit verify`; `apply --accept-broken-audit` applies anyway and records that in the log")]
    BrokenAudit { path: PathBuf, detail: String },
    #[error("store {path}: {detail}")]
    Io { path: PathBuf, detail: String },
}

impl StoreError {
    pub fn is_lock_timeout(&self) -> bool {
        matches!(self, StoreError::Locked(..))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What [`Store::init`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    Created,
    /// An older store brought to the current schema version.
    Migrated {
        from: i64,
        to: i64,
    },
    Current,
}

/// Whether `--store` names a PostgreSQL database (a `postgres://` or `postgresql://` URL)
/// rather than a SQLite file.
pub fn is_postgres(location: &Path) -> bool {
    let s = location.to_string_lossy();
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// An open store of either kind.
pub struct Store {
    conn: Box<dyn Backend>,
}

impl Store {
    /// Opens an existing store and checks that it is ours and of this schema version.
    pub fn open(location: &Path, lock_timeout: Duration) -> Result<Store> {
        let conn: Box<dyn Backend> = if is_postgres(location) {
            postgres::open(&location.to_string_lossy(), lock_timeout)?
        } else {
            Box::new(sqlite::Sqlite::open(location, lock_timeout)?)
        };
        Ok(Store { conn })
    }

    /// Creates the store or migrates an older one; a no-op on a current store. Returns the
    /// store and what was done.
    pub fn init(location: &Path, lock_timeout: Duration) -> Result<(Store, Init)> {
        let (conn, done): (Box<dyn Backend>, Init) = if is_postgres(location) {
            postgres::init(&location.to_string_lossy(), lock_timeout)?
        } else {
            let (s, done) = sqlite::Sqlite::init(location, lock_timeout)?;
            (Box::new(s), done)
        };
        Ok((Store { conn }, done))
    }

    /// How messages name the store: its path, or its URL without the password.
    pub fn path(&self) -> &Path {
        self.conn.name()
    }

    pub fn conn(&self) -> &Conn {
        &*self.conn
    }

    /// Begins the write transaction, waiting up to the lock timeout for the store's lock.
    pub fn begin(&mut self) -> Result<Tx<'_>> {
        self.conn.begin_write()?;
        Ok(Tx {
            conn: &*self.conn,
            open: true,
        })
    }
}

/// The store's write transaction: held from the plan under the lock to the commit; dropped
/// without [`Tx::commit`], it rolls back.
pub struct Tx<'a> {
    conn: &'a Conn,
    open: bool,
}

impl Tx<'_> {
    /// Commits, naming the store in the error (a full disk or a lost connection can surface
    /// only here).
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.conn.commit_write()
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            self.conn.rollback_write();
        }
    }
}

/// Runs `read` in one snapshot of the store (nested inside an apply's transaction, it sees the
/// transaction's view); the snapshot ends either way, as reading changes nothing.
pub fn read_snapshot<T, E: From<StoreError>>(
    conn: &Conn,
    read: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    conn.snapshot_begin()?;
    let result = read();
    let ended = conn.snapshot_end(result.is_ok());
    let value = result?;
    ended?;
    Ok(value)
}

/// The audit log, oldest first, optionally for one user and from a time on.
pub fn audit(
    conn: &Conn,
    user: Option<&str>,
    since: Option<Timestamp>,
) -> Result<Vec<AuditRecord>> {
    let mut out = Vec::new();
    let key = user.map(key_of);
    conn.each_audit(key.as_deref(), since, &mut |r| out.push(r))?;
    Ok(out)
}

/// The actor as the store knows them (`None` when no actor was given).
pub fn load_actor(actual: &Actual, actor: Option<&str>) -> crate::policy::Actor {
    use crate::policy::Actor;
    match actor {
        None => Actor::None,
        Some(id) => match actual.users.get(&key_of(id)) {
            None => Actor::Unknown(id.to_string()),
            Some(u) if !u.enabled => Actor::Disabled(u.id.clone()),
            Some(u) => Actor::Known {
                id: u.id.clone(),
                roles: u.roles.clone(),
            },
        },
    }
}

/// A user's stored password hash; `None` for an unknown user or no hash. A damaged record is
/// an error naming it.
pub fn password_hash(conn: &Conn, key: &str) -> Result<Option<String>> {
    Ok(conn
        .read_records(&[key])?
        .into_iter()
        .next()
        .and_then(|(_, s)| s.password_hash))
}
