//! The watch daemon (docs/daemon.md): level-triggered, like a Kubernetes controller. File events
//! (debounced and coalesced), the drift timer and a locked store's retry all mean the same thing —
//! "reconcile now" — and every reconcile reloads everything and runs the CLI's plan and apply.
//!
//! One `tokio::select!` loop owns the schedule: one reconcile at a time, on a blocking thread; a
//! trigger while one runs schedules exactly one more. SIGINT/SIGTERM let the reconcile in flight
//! finish (a transaction is never cut), then the daemon exits 0.
//!
//! Only the leader reconciles ([`leader`]): a standby keeps its file watches, its timer and its
//! HTTP endpoint, but starts nothing; becoming leader reconciles at once, and losing the lead
//! stops the next reconcile from starting (one in flight is refused at its fence).

pub mod files;
pub mod leader;
pub mod metrics;
pub mod reconcile;

use crate::error::{Exit, Failure, Kind};
use crate::ops;
use crate::store::lease::{Elector, Fence, Role};
use crate::util::escape_text;
use files::{Note, Signal, Watches};
use metrics::Metrics;
use reconcile::{Outcome, Report, Settings, Trigger};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

/// A burst of saves is one reconcile: it runs once the files have been quiet this long...
pub const DEBOUNCE: Duration = Duration::from_millis(250);
/// ...or this long after the first event, so that a file rewritten nonstop is still reconciled.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(2);
/// The first retry after a locked store; doubled each time up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How the daemon runs, beyond what a single reconcile needs.
pub struct Daemon {
    pub interval: Duration,
    pub metrics_addr: Option<String>,
    /// This replica's id (`--replica-id`), which the lease and every fence name.
    pub replica: String,
    /// Who leads among the daemons on the store.
    pub elector: Box<dyn Elector>,
}

/// One reconcile at a time; a trigger while one runs queues exactly one more (the first
/// trigger's name is kept; they all mean the same thing).
#[derive(Debug, Default)]
pub struct Scheduler {
    running: bool,
    pending: Option<Trigger>,
}

impl Scheduler {
    /// The trigger to start now, or `None` when one is running (then one more is queued).
    pub fn trigger(&mut self, t: Trigger) -> Option<Trigger> {
        if self.running {
            self.pending.get_or_insert(t);
            None
        } else {
            self.running = true;
            Some(t)
        }
    }

    /// The running reconcile ended: the queued trigger to start now, if any.
    pub fn finished(&mut self) -> Option<Trigger> {
        self.running = false;
        let next = self.pending.take()?;
        self.running = true;
        Some(next)
    }

    /// Drops the queued trigger: this replica no longer leads, so it starts nothing more.
    pub fn drop_pending(&mut self) {
        self.pending = None;
    }

    #[cfg(test)]
    pub fn is_running(&self) -> bool {
        self.running
    }
}

/// Sends every panic through the log, as one error line in the log's format (JSON lines stay
/// JSON lines), instead of Rust's message on stderr. The reconcile that panicked then reports it.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            at = %at,
            "panicked: {}",
            escape_text(reconcile::panic_message(info.payload()))
        );
    }));
}

/// `watch --once`: one reconcile on this thread, logged, and apply's exit code. With an
/// elector (every mode but `--detect-only`, which commits nothing), only as the leader: it
/// takes the lead for this one reconcile and gives it up after; while another replica leads,
/// it reconciles nothing and exits 4.
pub fn once(
    base: &ops::Settings,
    settings: &Settings,
    election: Option<(Box<dyn Elector>, &str)>,
) -> Result<Exit, Failure> {
    let (fence, elector) = match election {
        None => (None, None),
        Some((mut elector, replica)) => match elector.poll()? {
            Role::Leader { epoch } => (Some(Fence::new(replica, epoch)), Some(elector)),
            Role::Standby { leader } => {
                return Err(Failure::new(
                    Kind::Conflict,
                    format!(
                        "another watch replica leads ({}); `watch --once` reconciles only as \
                         the leader; nothing was applied",
                        leader.map_or("its id unknown".into(), |l| {
                            escape_text(&l).into_owned()
                        })
                    ),
                ))
            }
        },
    };
    let report = reconcile::reconcile(base, settings, fence.as_ref());
    if let Some(mut elector) = elector {
        elector.resign();
    }
    log_report(Trigger::Start, &report, settings);
    Ok(report.outcome.exit())
}

/// The fence of a reconcile started now, or `None` when this replica does not lead.
fn fence_of(role: &Role, replica: &str) -> Option<Fence> {
    match role {
        Role::Leader { epoch } => Some(Fence::new(replica, *epoch)),
        Role::Standby { .. } => None,
    }
}

/// Runs the daemon until SIGINT or SIGTERM; `Ok(Exit::Ok)` after a clean shutdown.
pub async fn run(
    base: Arc<ops::Settings>,
    settings: Arc<Settings>,
    daemon: Daemon,
) -> Result<Exit, Failure> {
    let metrics = Arc::new(Metrics::new());
    let Daemon {
        interval,
        metrics_addr,
        replica,
        mut elector,
    } = daemon;
    // The first poll before anything else: a single SQLite daemon starts as the leader, at once.
    let (first, elector) = tokio::task::spawn_blocking(move || {
        let first = elector.poll().unwrap_or_else(|e| {
            tracing::warn!("leader election: {e}");
            Role::Standby { leader: None }
        });
        (first, elector)
    })
    .await
    .map_err(|e| Failure::error(format!("the leader election failed at start: {e}")))?;
    leader::changed(&Role::Standby { leader: None }, &first, &metrics);
    let (role_tx, mut roles) = watch::channel(first.clone());
    let election = leader::Election::start(elector, first, role_tx, metrics.clone())
        .map_err(|e| Failure::error(format!("cannot start the leader election: {e}")))?;
    let mut election_alive = true;
    let (stop_http, http_stopped) = oneshot::channel::<()>();
    let server = match &metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| Failure::error(format!("--metrics-addr {addr}: {e}")))?;
            let bound = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| addr.clone());
            tracing::info!(addr = %bound, "serving /healthz and /metrics");
            let m = metrics.clone();
            Some(tokio::spawn(async move {
                let stopped = async {
                    let _ = http_stopped.await;
                };
                if let Err(e) = metrics::serve(listener, m, stopped).await {
                    tracing::error!(error = %e, "the metrics server stopped");
                }
            }))
        }
        None => None,
    };
    let signals = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| Failure::error(format!("cannot handle {name}: {e}")))
    };
    let mut sigterm = signals(SignalKind::terminate(), "SIGTERM")?;
    let mut sigint = signals(SignalKind::interrupt(), "SIGINT")?;

    let (tx, mut events) = mpsc::channel::<Signal>(16);
    // The policy files are watched like the manifests: a reviewed change to them reconciles.
    let roots: Vec<std::path::PathBuf> = settings
        .paths
        .iter()
        .chain(settings.policies.iter())
        .cloned()
        .collect();
    let mut watches = Watches::new(&roots, tx)
        .map_err(|e| Failure::error(format!("cannot watch the manifests: {e}")))?;
    log_notes(watches.rearm());

    tracing::info!(
        paths = %settings.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(","),
        interval_s = interval.as_secs(),
        replica = %escape_text(&replica),
        mode = if settings.detect_only { "detect-only" } else { "apply" },
        "watching"
    );

    let mut timer = tokio::time::interval_at(Instant::now() + interval, interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sched = Scheduler::default();
    let mut running: Option<(Trigger, tokio::task::JoinHandle<Report>)> = None;
    // (first event, deadline) of the burst being debounced.
    let mut burst: Option<(Instant, Instant)> = None;
    let mut retry: Option<Instant> = None;
    let mut backoff = BACKOFF_START;

    // Starts a reconcile fenced with the current leadership; only called while leading.
    let start = |t: Trigger, role: &Role| {
        let (base, settings) = (base.clone(), settings.clone());
        let fence = fence_of(role, &replica);
        (
            t,
            tokio::task::spawn_blocking(move || {
                reconcile::reconcile(&base, &settings, fence.as_ref())
            }),
        )
    };
    if roles.borrow().is_leader() {
        if let Some(t) = sched.trigger(Trigger::Start) {
            running = Some(start(t, &roles.borrow()));
        }
    }

    loop {
        let far = Instant::now() + Duration::from_secs(86400);
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!(signal = "SIGTERM", "shutting down"); break; }
            _ = sigint.recv() => { tracing::info!(signal = "SIGINT", "shutting down"); break; }
            joined = async { running.as_mut().map(|(_, h)| h).expect("guarded").await }, if running.is_some() => {
                let (trigger, _) = running.take().expect("guarded");
                let report = finished(trigger, joined, &metrics, &settings);
                if report.outcome == Outcome::Locked {
                    retry = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                } else {
                    retry = None;
                    backoff = BACKOFF_START;
                }
                // A standby runs nothing queued while it led.
                let role = leading(&roles, election_alive);
                if role.is_none() {
                    sched.drop_pending();
                }
                if let (Some(t), Some(role)) = (sched.finished(), role) {
                    running = Some(start(t, &role));
                }
            }
            changed = roles.changed(), if election_alive => {
                if changed.is_err() {
                    // The election thread ended (it never should before shutdown): stand by.
                    election_alive = false;
                    tracing::error!("the leader election stopped; this replica stands by");
                    metrics.set_leader(false);
                    continue;
                }
                let role = roles.borrow_and_update().clone();
                if role.is_leader() {
                    retry = None;
                    backoff = BACKOFF_START;
                    if let Some(t) = sched.trigger(Trigger::Leader) {
                        running = Some(start(t, &role));
                    }
                } else {
                    sched.drop_pending();
                    retry = None;
                }
            }
            Some(sig) = events.recv() => match sig {
                Signal::Changed => {
                    let now = Instant::now();
                    let first = burst.map_or(now, |(f, _)| f);
                    burst = Some((first, (now + DEBOUNCE).min(first + DEBOUNCE_MAX)));
                }
                Signal::Error(e) => tracing::warn!(error = %e, "file watcher"),
            },
            _ = sleep_until(burst.map_or(far, |(_, d)| d)), if burst.is_some() => {
                burst = None;
                log_notes(watches.rearm());
                let role = leading(&roles, election_alive);
                if let Some(role) = role {
                    if let Some(t) = sched.trigger(Trigger::File) {
                        running = Some(start(t, &role));
                    }
                }
            }
            _ = timer.tick() => {
                log_notes(watches.rearm());
                if let Some(role) = leading(&roles, election_alive) {
                    if let Some(t) = sched.trigger(Trigger::Timer) {
                        running = Some(start(t, &role));
                    }
                }
            }
            _ = sleep_until(retry.unwrap_or(far)), if retry.is_some() => {
                retry = None;
                if let Some(role) = leading(&roles, election_alive) {
                    if let Some(t) = sched.trigger(Trigger::Retry) {
                        running = Some(start(t, &role));
                    }
                }
            }
        }
    }

    if let Some((trigger, handle)) = running.take() {
        tracing::info!("finishing the reconcile in flight");
        finished(trigger, handle.await, &metrics, &settings);
    }
    // Resign only now: no reconcile of this replica can commit any more.
    let _ = tokio::task::spawn_blocking(move || election.stop()).await;
    let _ = stop_http.send(());
    if let Some(server) = server {
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    }
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

/// The current role, if this replica leads (and its election still runs).
fn leading(roles: &watch::Receiver<Role>, election_alive: bool) -> Option<Role> {
    let role = roles.borrow().clone();
    (election_alive && role.is_leader()).then_some(role)
}

fn finished(
    trigger: Trigger,
    joined: Result<Report, tokio::task::JoinError>,
    metrics: &Metrics,
    settings: &Settings,
) -> Report {
    // `reconcile` catches its own panics; this is the last line of defence (and a cancelled task).
    let report = joined.unwrap_or_else(|e| match e.try_into_panic() {
        Ok(payload) => reconcile::panicked(reconcile::panic_message(payload.as_ref())),
        Err(e) => Report::failed(
            Outcome::Error,
            Failure::error(format!("the reconcile failed unexpectedly: {e}")),
        ),
    });
    log_report(trigger, &report, settings);
    metrics.record(trigger, &report);
    report
}

fn log_notes(notes: Vec<Note>) {
    for n in notes {
        match n {
            Note::Missing { path, watching } => tracing::warn!(
                path = %path.display(),
                watching = %watching.display(),
                "manifest path is missing; watching for it to come back"
            ),
            Note::Back(path) => tracing::info!(path = %path.display(), "manifest path is back"),
            Note::Failed { path, error } => tracing::warn!(
                path = %path.display(),
                error = %error,
                "cannot watch; changes there are picked up by the timer"
            ),
            Note::Polling { error } => tracing::warn!(
                error = %error,
                poll_interval_s = files::POLL_INTERVAL.as_secs(),
                "the inotify watches ran out; polling the manifest and policy files instead"
            ),
        }
    }
}

/// The log of one reconcile: each problem on its own line (with its FILE:LINE:COL), a `drift`
/// line per user when detecting only, then the one summary line.
pub fn log_report(trigger: Trigger, r: &Report, settings: &Settings) {
    for w in &r.warnings {
        tracing::warn!(trigger = %trigger.as_str(), "{w}");
    }
    for line in &r.problems {
        let msg = line.strip_prefix("error: ").unwrap_or(line);
        match r.outcome {
            Outcome::Denied | Outcome::Locked | Outcome::Fenced => {
                tracing::warn!(trigger = %trigger.as_str(), "{msg}")
            }
            _ => tracing::error!(trigger = %trigger.as_str(), "{msg}"),
        }
    }
    for line in &r.settled {
        tracing::warn!(trigger = %trigger.as_str(), "{line}");
    }
    for d in &r.drift {
        let actions: Vec<&str> = d.actions.iter().map(|a| a.verb()).collect();
        tracing::info!(
            user = %escape_text(&d.user),
            actions = %actions.join(","),
            denied = d.denied,
            "drift"
        );
    }
    if let Some((file, n)) = &r.credentials {
        tracing::info!(
            file = %file.display(),
            passwords = n,
            "temporary passwords written (mode 0600); hand them over out of band, then delete the file"
        );
    }
    let applied: Vec<String> = r
        .applied
        .iter()
        .map(|(k, n)| format!("{}:{n}", k.verb()))
        .collect();
    let touched = summarize_users(&r.touched);
    let result = r.outcome.as_str();
    let mode = if settings.detect_only {
        "detect-only"
    } else {
        "apply"
    };
    macro_rules! summary {
        ($level:ident) => {
            tracing::$level!(
                trigger = %trigger.as_str(),
                result = %result,
                mode = %mode,
                changes = r.changes(),
                applied = %applied.join(","),
                users = r.touched.len(),
                touched = %touched,
                requested_by = %r.requested_by.join(", "),
                drifted = r.drifted.map(|n| n as u64),
                duration_ms = r.duration.as_millis() as u64,
                revision = r.revision,
                plan = r.plan_id.as_deref().map(tracing::field::display),
                "reconcile"
            )
        };
    }
    if r.outcome.is_success() {
        summary!(info);
    } else {
        summary!(warn);
    }
}

/// Up to ten user ids, then how many more: a log line stays one line.
fn summarize_users(users: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s: Vec<String> = users
        .iter()
        .take(SHOWN)
        .map(|u| escape_text(u).into_owned())
        .collect();
    if users.len() > SHOWN {
        s.push(format!("+{} more", users.len() - SHOWN));
    }
    s.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_during_a_reconcile_queues_exactly_one_more() {
        let mut s = Scheduler::default();
        assert_eq!(s.trigger(Trigger::Start), Some(Trigger::Start));
        assert!(s.is_running());
        assert_eq!(s.trigger(Trigger::File), None);
        assert_eq!(s.trigger(Trigger::Timer), None);
        assert_eq!(s.trigger(Trigger::File), None);
        assert_eq!(s.finished(), Some(Trigger::File), "one more, not three");
        assert!(s.is_running());
        assert_eq!(s.finished(), None);
        assert!(!s.is_running());
        assert_eq!(s.trigger(Trigger::Timer), Some(Trigger::Timer));
    }

    #[test]
    fn long_user_lists_are_cut() {
        let users: Vec<String> = (0..12).map(|i| format!("u{i}@x")).collect();
        let s = summarize_users(&users);
        assert!(s.ends_with(",+2 more"), "{s}");
        assert_eq!(summarize_users(&["a\nb".into()]), "a\\u{a}b");
    }
}
