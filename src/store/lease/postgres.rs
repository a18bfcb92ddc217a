//! The lease of `mfactl watch` replicas on a PostgreSQL store: one row, `mfactl.lease` (id 1:
//! `holder`, `epoch`, `expires_at`), and one advisory lock per epoch, on a connection of the
//! elector's own (never the store's, which comes and goes with each reconcile). Every time is
//! the database's (`now()`), so the replicas' clocks never matter.
//!
//! - **Taking over.** A standby polls every [`standby_every`]. It reads the row, then probes the
//!   advisory lock of the row's epoch, which the leader of that epoch holds for as long as its
//!   session lives: if the probe gets it, that leader's session is gone (killed, cut off) and
//!   the standby takes over at once; if not, it takes over only once the lease has expired (a
//!   hung leader, SIGSTOPped say, still holds its session and its lock). A takeover raises the
//!   epoch, names this replica and takes the new epoch's lock in one transaction, and only if
//!   the epoch is still the one read, so two standbys never both win.
//! - **Leading.** The leader renews every [`renew_every`]; a renewal that finds the row no
//!   longer its own, or any error (the connection lost), ends its leadership at once: it
//!   releases its lock if it still can, reconnects, and waits one lease before it contends
//!   again, so that a healthier replica takes over rather than the one just cut off.
//! - **Fencing.** Every apply checks `store::postgres::FENCE_SQL` in its own transaction just
//!   before it commits; see there.
//!
//! Why a lock per epoch rather than one lock: a standby that takes over because the lease
//! expired cannot get a lock the hung leader still holds. With one lock, the moment the old
//! leader woke and let go of it, any standby probing it would read "the leader is gone" and
//! depose the live new leader. The lock of epoch N proves only that the leader of epoch N is
//! alive, which is the question asked.

use super::{Elector, Role};
use crate::store::postgres::redact;
use crate::store::{Result, StoreError};
use postgres::Client;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The advisory-lock class of the lease locks: `MFAL` as a big-endian number. The two-key form
/// keeps our ids apart from other applications' (and from the store's write lock, class
/// `MFAC`); the second key is the epoch's ([`epoch_key`]).
pub const LEASE_CLASS: i32 = 0x4D46_414C;

/// A standby never polls more often than this, whatever the lease.
pub const MIN_POLL: Duration = Duration::from_millis(200);

/// How often a standby polls: five times a lease.
pub fn standby_every(lease: Duration) -> Duration {
    (lease / 5).max(MIN_POLL)
}

/// How often the leader renews: three times a lease, so a renewal or two may fail or be slow
/// before the lease runs out.
pub fn renew_every(lease: Duration) -> Duration {
    lease / 3
}

/// How long a renewal keeps the row valid: the lease less a standby's poll, so that a standby
/// notices an expired row, and takes over, within `--lease` of the leader's last renewal.
pub fn row_ttl(lease: Duration) -> Duration {
    lease.saturating_sub(standby_every(lease))
}

/// The second key of epoch `epoch`'s advisory lock (epochs wrap around after 2^31 takeovers).
pub fn epoch_key(epoch: i64) -> i32 {
    epoch.rem_euclid(1 << 31) as i32
}

/// The row as a standby reads it: `$1`-free, one row or none.
const OBSERVE_SQL: &str = "SELECT holder, epoch, \
     (expires_at IS NULL OR expires_at < now()) AS expired \
     FROM mfactl.lease WHERE id = 1";

/// Probes an epoch's lock: held only for the statement (a transaction lock), so a probe never
/// keeps a leader from its own lock.
const PROBE_SQL: &str = "SELECT pg_try_advisory_xact_lock($1, $2)";

/// The takeover (`$1` me, `$2` the row's time to live in seconds, `$3` the epoch read, `$4`
/// whether its leader's session is gone): only from the epoch read, and only from a leader that
/// is gone, resigned, or whose lease expired.
const TAKEOVER_SQL: &str = "UPDATE mfactl.lease \
     SET holder = $1, epoch = epoch + 1, expires_at = now() + make_interval(secs => $2) \
     WHERE id = 1 AND epoch = $3 \
       AND ($4 OR holder IS NULL OR expires_at IS NULL OR expires_at < now()) \
     RETURNING epoch";

/// The renewal (`$1` me, `$2` my epoch, `$3` the time to live in seconds): one row, or none
/// when another replica took over.
const RENEW_SQL: &str = "UPDATE mfactl.lease \
     SET expires_at = now() + make_interval(secs => $3) \
     WHERE id = 1 AND holder = $1 AND epoch = $2";

/// Giving the lead up: the row names nobody, so a standby takes over at its next poll.
const RESIGN_SQL: &str = "UPDATE mfactl.lease SET holder = NULL, expires_at = NULL \
     WHERE id = 1 AND holder = $1 AND epoch = $2";

const LOCK_SQL: &str = "SELECT pg_try_advisory_lock($1, $2)";
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock($1, $2)";

/// The row, as a standby read it and probed its epoch's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub holder: Option<String>,
    pub epoch: i64,
    /// The lease ran out (or was never set).
    pub expired: bool,
    /// The probe got the epoch's lock: that epoch's leader has no session any more.
    pub gone: bool,
}

/// What a standby does with what it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Try to take over from `from_epoch`.
    TakeOver { from_epoch: i64 },
    /// Stay standby; `leader` is the live leader, if the row names one.
    Wait { leader: Option<String> },
}

/// The standby's decision: take over from a leader that is gone, resigned or expired, unless
/// this replica is cooling down after losing the lead itself.
pub fn decide(o: &Observed, cooling_down: bool) -> Decision {
    let vacant = o.holder.is_none() || o.expired || o.gone;
    if vacant && !cooling_down {
        Decision::TakeOver {
            from_epoch: o.epoch,
        }
    } else {
        Decision::Wait {
            leader: o.holder.clone().filter(|_| !vacant),
        }
    }
}

enum State {
    Standby {
        /// No takeover before then: this replica just lost the lead.
        cooldown_until: Option<Instant>,
    },
    Leader {
        epoch: i64,
    },
}

/// This replica's side of the lease.
pub struct PgElector {
    url: String,
    /// The URL without its password: how messages name the store.
    name: PathBuf,
    me: String,
    lease: Duration,
    client: Option<Client>,
    state: State,
}

impl PgElector {
    /// An elector that connects at its first poll (so that a database down at start is a
    /// standby that keeps trying, not a daemon that exits).
    pub fn new(url: &str, replica: &str, lease: Duration) -> PgElector {
        PgElector {
            url: url.to_string(),
            name: PathBuf::from(redact(url)),
            me: replica.to_string(),
            lease,
            client: None,
            state: State::Standby {
                cooldown_until: None,
            },
        }
    }

    /// The connection, made anew if there is none. The session's statements may take no longer
    /// than a renewal interval: one stuck longer has lost the lead anyway.
    fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_none() {
            let mut c = connect(&self.url)?;
            let ms = renew_every(self.lease).as_millis().max(100);
            c.batch_execute(&format!("SET statement_timeout = {ms}"))
                .map_err(|e| sql_error(&self.name, "setting up the lease connection", &e))?;
            self.client = Some(c);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => Err(StoreError::Invalid("internal: no lease connection".into())),
        }
    }

    /// Leadership ended: release the epoch's lock if the connection still works (else drop the
    /// connection, and the lock with it), and cool down.
    fn step_down(&mut self, epoch: i64, connection_ok: bool) {
        if connection_ok {
            if let Some(c) = self.client.as_mut() {
                if c.execute(UNLOCK_SQL, &[&LEASE_CLASS, &epoch_key(epoch)])
                    .is_err()
                {
                    self.client = None;
                }
            }
        } else {
            self.client = None;
        }
        self.state = State::Standby {
            cooldown_until: Some(Instant::now() + self.lease),
        };
    }

    fn renew(&mut self, epoch: i64) -> Result<Role> {
        let ttl = row_ttl(self.lease).as_secs_f64();
        let (me, name) = (self.me.clone(), self.name.clone());
        let renewed = self.client().and_then(|c| {
            c.execute(RENEW_SQL, &[&me, &epoch, &ttl]).map_err(|e| {
                sql_error(
                    &name,
                    &format!("renewing the watch lease (epoch {epoch})"),
                    &e,
                )
            })
        });
        match renewed {
            Ok(1) => Ok(Role::Leader { epoch }),
            // Another replica took over: this one stands by, and says who leads.
            Ok(_) => {
                self.step_down(epoch, true);
                self.observe()
            }
            Err(e) => {
                self.step_down(epoch, false);
                Err(e)
            }
        }
    }

    /// A standby's poll: read the row, probe its epoch's lock, and take over if `decide` says so.
    fn observe(&mut self) -> Result<Role> {
        let cooling = match self.state {
            State::Standby {
                cooldown_until: Some(t),
            } => Instant::now() < t,
            _ => false,
        };
        let name = self.name.clone();
        let c = self.client()?;
        let row = c
            .query_opt(OBSERVE_SQL, &[])
            .map_err(|e| sql_error(&name, "reading the watch lease", &e))?
            .ok_or_else(|| StoreError::Sql {
                path: name.clone(),
                context: "reading the watch lease".into(),
                detail: "mfactl.lease has no row 1; run `mfactl init` with this mfactl to \
                         create it"
                    .into(),
            })?;
        let holder: Option<String> = row.get(0);
        let epoch: i64 = row.get(1);
        let expired: bool = row.get(2);
        let gone = match &holder {
            Some(_) if !expired && !cooling => c
                .query_one(PROBE_SQL, &[&LEASE_CLASS, &epoch_key(epoch)])
                .map_err(|e| sql_error(&name, "probing the leader's lock", &e))?
                .get(0),
            _ => false,
        };
        let seen = Observed {
            holder,
            epoch,
            expired,
            gone,
        };
        match decide(&seen, cooling) {
            Decision::Wait { leader } => Ok(Role::Standby { leader }),
            Decision::TakeOver { from_epoch } => self.take_over(from_epoch, gone),
        }
    }

    fn take_over(&mut self, from_epoch: i64, gone: bool) -> Result<Role> {
        let ttl = row_ttl(self.lease).as_secs_f64();
        let (me, name) = (self.me.clone(), self.name.clone());
        let c = self.client()?;
        let mut tx = c
            .transaction()
            .map_err(|e| sql_error(&name, "taking over the watch lease", &e))?;
        let taken = tx
            .query_opt(TAKEOVER_SQL, &[&me, &ttl, &from_epoch, &gone])
            .map_err(|e| sql_error(&name, "taking over the watch lease", &e))?;
        let Some(row) = taken else {
            // Another standby was quicker: its name is read at the next poll.
            return Ok(Role::Standby { leader: None });
        };
        let epoch: i64 = row.get(0);
        let locked: bool = tx
            .query_one(LOCK_SQL, &[&LEASE_CLASS, &epoch_key(epoch)])
            .map_err(|e| sql_error(&name, "taking the new epoch's lock", &e))?
            .get(0);
        if !locked {
            // Only a session of 2^31 epochs ago could hold it; never lead without it.
            return Ok(Role::Standby { leader: None });
        }
        if let Err(e) = tx.commit() {
            // The session lock outlives a failed commit: drop the connection with it.
            self.client = None;
            return Err(sql_error(&name, "taking over the watch lease", &e));
        }
        self.state = State::Leader { epoch };
        Ok(Role::Leader { epoch })
    }
}

impl Elector for PgElector {
    fn poll(&mut self) -> Result<Role> {
        let result = match self.state {
            State::Leader { epoch } => self.renew(epoch),
            State::Standby { .. } => self.observe(),
        };
        if result.is_err() {
            // Whatever failed, the connection is suspect: the next poll starts afresh.
            self.client = None;
        }
        result
    }

    fn next_poll(&self) -> Option<Duration> {
        Some(match self.state {
            State::Leader { .. } => renew_every(self.lease),
            State::Standby { .. } => standby_every(self.lease),
        })
    }

    fn resign(&mut self) {
        if let State::Leader { epoch } = self.state {
            let me = self.me.clone();
            if let Some(c) = self.client.as_mut() {
                let _ = c.execute(RESIGN_SQL, &[&me, &epoch]);
                let _ = c.execute(UNLOCK_SQL, &[&LEASE_CLASS, &epoch_key(epoch)]);
            }
            self.state = State::Standby {
                cooldown_until: None,
            };
        }
        self.client = None;
    }
}

/// The lease's own connection to `url`, never the store's: with the store's TLS modes and
/// password sources. Errors name the store without its password.
fn connect(url: &str) -> Result<Client> {
    crate::store::postgres::dedicated_client(url)
}

/// A database error as a store error: the server's own message when it sent one (with a hint
/// when the lease table is missing), else the client's.
fn sql_error(name: &Path, context: &str, e: &postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(db) if *db.code() == postgres::error::SqlState::UNDEFINED_TABLE => format!(
            "{}; the store has no watch lease yet: run `mfactl init` with this mfactl to add it",
            db.message()
        ),
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    StoreError::Sql {
        path: name.to_path_buf(),
        context: context.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(holder: Option<&str>, expired: bool, gone: bool) -> Observed {
        Observed {
            holder: holder.map(str::to_string),
            epoch: 7,
            expired,
            gone,
        }
    }

    #[test]
    fn a_live_leader_is_waited_for_and_named() {
        assert_eq!(
            decide(&seen(Some("a:1"), false, false), false),
            Decision::Wait {
                leader: Some("a:1".into())
            }
        );
    }

    #[test]
    fn a_gone_expired_or_resigned_leader_is_taken_over_from_its_epoch() {
        for o in [
            seen(Some("a:1"), false, true),
            seen(Some("a:1"), true, false),
            seen(None, false, false),
        ] {
            assert_eq!(
                decide(&o, false),
                Decision::TakeOver { from_epoch: 7 },
                "{o:?}"
            );
        }
    }

    #[test]
    fn a_replica_that_just_lost_the_lead_does_not_contend() {
        assert_eq!(
            decide(&seen(Some("a:1"), true, false), true),
            Decision::Wait { leader: None }
        );
    }

    #[test]
    fn polls_fit_inside_the_lease() {
        for secs in [1, 2, 15, 60, 3600] {
            let lease = Duration::from_secs(secs);
            let (poll, renew, ttl) = (standby_every(lease), renew_every(lease), row_ttl(lease));
            assert!(poll >= MIN_POLL);
            // An expired row is seen, and taken over, within the lease.
            assert!(ttl + poll <= lease, "{secs}s");
            // The leader renews well before its row expires.
            assert!(renew * 3 / 2 < ttl, "{secs}s");
        }
        assert_eq!(
            standby_every(Duration::from_secs(15)),
            Duration::from_secs(3)
        );
        assert_eq!(renew_every(Duration::from_secs(15)), Duration::from_secs(5));
        assert_eq!(standby_every(Duration::from_secs(1)), MIN_POLL);
    }

    #[test]
    fn epoch_keys_fit_the_two_key_form() {
        assert_eq!(epoch_key(0), 0);
        assert_eq!(epoch_key(5), 5);
        assert_eq!(epoch_key(1 << 31), 0);
        assert_eq!(epoch_key(-1), i32::MAX);
    }

    #[test]
    fn the_password_never_shows() {
        assert_eq!(
            redact("postgres://u:s3cret@db:5432/mfactl?sslmode=require"),
            "postgres://u@db:5432/mfactl?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://db/mfactl?password=s3cret&sslmode=disable"),
            "postgresql://db/mfactl?sslmode=disable"
        );
        assert_eq!(redact("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact("postgres://u:p@w@db/x"), "postgres://u@db/x");
    }
}
