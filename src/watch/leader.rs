//! The daemon's side of leader election: a thread of its own polls the store's
//! [`Elector`] (it blocks: a lock file, a database connection) and publishes this replica's
//! [`Role`] on a `watch` channel for the loop, which reconciles only while it leads. The thread
//! also logs each change of role, one line each, and keeps the `mfactl_leader` gauge and the
//! leadership-changes counter, since it alone sees every change; at shutdown it resigns.

use super::metrics::Metrics;
use crate::store::lease::{Elector, Role};
use crate::util::escape_text;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use tokio::sync::watch;

/// The running election thread.
pub struct Election {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Election {
    /// Starts polling `elector`, whose first poll gave `first` (already published and logged).
    pub fn start(
        mut elector: Box<dyn Elector>,
        first: Role,
        roles: watch::Sender<Role>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Election> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mfactl-election".into())
            .spawn(move || {
                let mut last = first;
                let mut last_error: Option<String> = None;
                loop {
                    let next = elector.next_poll();
                    let woken = match next {
                        Some(wait) => stopped.recv_timeout(wait),
                        // The role never changes: wait for the stop only.
                        None => stopped.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    if !matches!(woken, Err(RecvTimeoutError::Timeout)) {
                        break;
                    }
                    let role = match elector.poll() {
                        Ok(role) => {
                            last_error = None;
                            role
                        }
                        Err(e) => {
                            // Once per distinct error, not once per poll.
                            let msg = e.to_string();
                            if last_error.as_deref() != Some(msg.as_str()) {
                                tracing::warn!("leader election: {msg}");
                                last_error = Some(msg);
                            }
                            Role::Standby { leader: None }
                        }
                    };
                    if role != last {
                        changed(&last, &role, &metrics);
                        roles.send_replace(role.clone());
                        last = role;
                    }
                }
                elector.resign();
            })?;
        Ok(Election { stop, thread })
    }

    /// Stops polling and resigns (call once no reconcile runs any more); waits for the thread.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Logs a change of role (one line) and counts it. A daemon starts as a standby that knows no
/// leader, so its first lead counts as a change.
pub fn changed(from: &Role, to: &Role, metrics: &Metrics) {
    log_role(to);
    metrics.set_leader(to.is_leader());
    if from.is_leader() != to.is_leader() {
        metrics.leadership_changed();
    }
}

/// The one log line of a role: `leader (epoch N)` or `standby (leader: ID)`.
pub fn log_role(role: &Role) {
    match role {
        Role::Leader { epoch } => {
            tracing::info!(role = "leader", epoch = *epoch, "leader (epoch {epoch})")
        }
        Role::Standby { leader: Some(l) } => {
            let l = escape_text(l);
            tracing::info!(role = "standby", leader = %l, "standby (leader: {l})")
        }
        Role::Standby { leader: None } => {
            tracing::info!(role = "standby", "standby (leader: unknown)")
        }
    }
}
