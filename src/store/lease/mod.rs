//! Leadership among `mfactl watch` replicas (see docs/daemon.md, "Replicas"): which one of the
//! daemons on a store reconciles. An [`Elector`] answers, each time it is polled, whether this
//! replica leads ([`Role::Leader`], with the epoch of its leadership) or stands by; a [`Fence`]
//! (this replica and that epoch) goes into every apply, which commits only if the store still
//! names this replica leader of that epoch. On a SQLite store there are no replicas: a lock
//! file beside the store keeps a second daemon out ([`sqlite`]). On PostgreSQL a lease row and
//! advisory locks elect one leader among any number ([`postgres`]).
//!
//! The electors block (file locks, a database connection); the daemon polls them on a thread of
//! their own.

pub mod postgres;
pub mod sqlite;

use super::Result;
use std::path::Path;
use std::time::Duration;

/// What this replica is, as of the last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// This replica reconciles. `epoch` counts the leaderships the store has seen: each
    /// takeover raises it, so an apply fenced with an older one is refused.
    Leader { epoch: i64 },
    /// Another replica leads (`leader`, its id), or none does that this replica can name.
    Standby { leader: Option<String> },
}

impl Role {
    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Leader { .. })
    }
}

/// What an apply proves before it commits (defined with the store's interface, which checks it).
pub use super::backend::Fence;

/// One replica's view of the election. `poll` is called again and again, `next_poll` apart; an
/// error means this replica does not lead (it stands by until a later poll says otherwise).
pub trait Elector: Send {
    /// Renews a leadership held, or tries to take one: the role this replica holds now.
    fn poll(&mut self) -> Result<Role>;
    /// How long to wait before the next poll, given the last one; `None` when the role can
    /// never change (a single daemon on a SQLite store).
    fn next_poll(&self) -> Option<Duration>;
    /// Gives leadership up at shutdown, so a standby takes over at its next poll instead of
    /// after the lease runs out. Errors are ignored: a lost connection gave it up already.
    fn resign(&mut self);
}

/// The default `--lease`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// Shorter leases leave too little time to renew one over a real network.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// Longer ones mean a dead leader goes unreplaced for too long; surely a typo.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

/// This replica's id when `--replica-id` is not given: `HOST:PID`, unique among live daemons.
pub fn default_replica_id() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// The machine's name, for replica ids and the SQLite lock file (`localhost` if unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// The elector for the store at `location`: the lock file of a SQLite store (an error naming the
/// daemon that runs already, if one does), or the lease of a PostgreSQL store, on a connection
/// of its own. `replica` names this daemon; `lease` is how long a leader that stops renewing
/// keeps the lead.
pub fn elector(location: &Path, replica: &str, lease: Duration) -> Result<Box<dyn Elector>> {
    if super::is_postgres(location) {
        Ok(Box::new(postgres::PgElector::new(
            &location.to_string_lossy(),
            replica,
            lease,
        )))
    } else {
        Ok(Box::new(sqlite::LockFile::acquire(location)?))
    }
}
