//! SIGINT and SIGTERM during `apply`: caught while the apply runs, so that it can roll back and
//! throw away the passwords it had not issued yet, instead of dying with a credentials file of
//! passwords that were never set.
//!
//! The handlers only note the signal; the apply checks the note before it hashes each password
//! and once more just before it commits. Once it has committed, a signal no longer stops it: it
//! finishes handing over the passwords and reports success. After rolling back, the process dies
//! of the signal it caught (`die_of`), so that a shell reports 130 or 143, and a script that was
//! interrupted stops, exactly as when the same signal arrives before the apply (while planning or
//! waiting for the lock), where it still has its default effect.

use crate::error::Failure;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// SIGINT and SIGTERM, noted; `none()` for callers that never stop an apply (the daemon finishes
/// the reconcile in flight on its own terms).
#[derive(Clone, Default)]
pub struct Interrupts {
    caught: Option<Arc<AtomicUsize>>,
}

impl Interrupts {
    /// Never interrupted.
    pub fn none() -> Interrupts {
        Interrupts::default()
    }

    /// Catches SIGINT and SIGTERM from now until the process exits (signal-hook cannot give the
    /// default action back; the apply is the last thing the command does).
    pub fn install() -> Result<Interrupts, Failure> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let caught = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            signal_hook::flag::register_usize(sig, caught.clone(), sig as usize).map_err(|e| {
                Failure::error(format!(
                    "cannot catch {}: {e}; nothing was applied",
                    signal_name(sig)
                ))
            })?;
        }
        Ok(Interrupts {
            caught: Some(caught),
        })
    }

    /// The signal caught, if any (the last one, when both came).
    pub fn caught(&self) -> Option<i32> {
        let sig = self.caught.as_ref()?.load(Ordering::SeqCst);
        (sig != 0).then_some(sig as i32)
    }

    /// An error naming the signal once one was caught: the caller rolls back.
    pub fn check(&self) -> Result<(), Failure> {
        match self.caught() {
            None => Ok(()),
            Some(sig) => Err(Failure::error(format!(
                "interrupted by {} before the commit; nothing was applied (the store is as it was) \
                 and no temporary password was issued",
                signal_name(sig)
            ))),
        }
    }
}

pub fn signal_name(sig: i32) -> &'static str {
    signal_hook::low_level::signal_name(sig).unwrap_or("a signal")
}

/// Ends the process by `sig`'s default action, as if it had not been caught (the shell has
/// printed why the apply stopped).
pub fn die_of(sig: i32) -> ! {
    let _ = signal_hook::low_level::emulate_default_handler(sig);
    // Only if the signal's default action does not end the process (never for SIGINT/SIGTERM).
    std::process::exit(128 + sig)
}
