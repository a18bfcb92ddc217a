//! The workflows that the commands and the daemon share: load the inputs, plan, apply, apply a
//! saved plan, hand over temporary passwords, import and export the directory. Each returns
//! values and a typed [`Failure`] and prints nothing; `commands/*` and `watch/` call these and
//! never each other, and the printer in the shell says what happened.

pub mod apply;
pub mod copy;
pub mod export;
pub mod import;
pub mod interrupt;
pub mod load;
pub mod plan;
pub mod saved;
pub mod signed;

use crate::error::Failure;
use crate::model::Timestamp;
use crate::store::Store;
use std::path::PathBuf;
use std::time::Duration;

/// What every workflow runs with, decided once from the global options and the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The store file.
    pub store: PathBuf,
    /// `--policies DIR`; `None` means `./policies` when it exists, else the built-in ones.
    pub policies: Option<PathBuf>,
    /// The acting administrator (`--actor` / `MFACTL_ACTOR`).
    pub actor: Option<String>,
    /// How long a write waits for the store's write lock.
    pub lock_timeout: Duration,
    /// "Now" for this command; the daemon reads [`now`] again for each reconcile.
    pub now: Timestamp,
}

impl Settings {
    pub fn open_store(&self) -> Result<Store, Failure> {
        Ok(Store::open(&self.store, self.lock_timeout)?)
    }
}

/// "Now": `MFACTL_NOW` when set (reproducible runs and tests), else the system clock. The one
/// place mfactl reads the time of day; the core takes it as an argument.
pub fn now() -> Result<Timestamp, Failure> {
    match std::env::var("MFACTL_NOW") {
        Ok(s) if !s.is_empty() => {
            Timestamp::parse(&s).map_err(|m| Failure::invalid(format!("MFACTL_NOW: {m}")))
        }
        _ => Ok(wall_clock()),
    }
}

/// The system clock, whatever `MFACTL_NOW` says (the daemon's metrics stamp real time).
pub fn wall_clock() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Timestamp::from_unix(secs)
}
