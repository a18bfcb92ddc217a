//! One reconcile: reload every manifest and the policies, plan, and (unless detecting only) apply
//! all or nothing — the CLI's own `ops::plan::compute_plan` and `ops::apply::apply_locked`, with
//! no decision of its own.
//!
//! It runs on a blocking thread (SQLite and argon2 block) and prints nothing: it returns a
//! [`Report`] that the loop logs and turns into metrics.

use crate::credentials;
use crate::error::{Exit, Failure, Kind};
use crate::model::{Action, ActionKind, Timestamp};
use crate::ops::apply::{apply_locked, Options as ApplyOptions};
use crate::ops::load::{self, manifests, Loaded};
use crate::ops::plan::{compute_plan, Who};
use crate::ops::{self, signed};
use crate::plan::Plan;
use crate::store::lease::Fence;
use crate::store::{Store, StoreError};
use crate::util::escape_text;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the daemon was started with, fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct Settings {
    pub paths: Vec<PathBuf>,
    /// The policy directory in force (`--policies`, or `./policies` when it existed at start),
    /// watched like the manifests; `None` for the built-in policies.
    pub policies: Option<PathBuf>,
    pub detect_only: bool,
    pub credentials_dir: Option<PathBuf>,
    /// How long one attempt waits for the store's write lock (the loop retries with backoff).
    pub lock_wait: Duration,
    /// `--signers FILE`: changes are judged for the signers of the manifests.
    pub signers: Option<PathBuf>,
}

/// What started a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Start,
    File,
    Timer,
    Retry,
    /// This replica became the leader.
    Leader,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::File => "file",
            Trigger::Timer => "timer",
            Trigger::Retry => "retry",
            Trigger::Leader => "leader",
        }
    }
}

/// How a reconcile ended: the `result` label of the metrics and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Changes were applied and committed.
    Applied,
    /// Nothing to do: the store already holds the desired state.
    InSync,
    /// `--detect-only` found users whose state differs from the manifests.
    Drift,
    /// The manifests are invalid or unreadable; nothing was applied.
    Invalid,
    /// A change is not allowed for the actor, or a guardrail refused the apply.
    Denied,
    /// The plan resets a password and there is no `--credentials-dir`.
    NeedsCredentials,
    /// The store stayed locked by another writer; retried with backoff.
    Locked,
    /// Another replica took over while this one planned: its apply was refused at the fence,
    /// nothing was committed, and this replica stands by.
    Fenced,
    /// Anything else: an unreadable store or policies, I/O.
    Error,
    /// The reconcile panicked (a bug): caught, logged, nothing of it committed, the daemon goes on.
    Panic,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Applied,
        Outcome::InSync,
        Outcome::Drift,
        Outcome::Invalid,
        Outcome::Denied,
        Outcome::NeedsCredentials,
        Outcome::Locked,
        Outcome::Fenced,
        Outcome::Error,
        Outcome::Panic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::InSync => "in-sync",
            Outcome::Drift => "drift",
            Outcome::Invalid => "invalid",
            Outcome::Denied => "denied",
            Outcome::NeedsCredentials => "needs-credentials",
            Outcome::Locked => "locked",
            Outcome::Fenced => "fenced",
            Outcome::Error => "error",
            Outcome::Panic => "panic",
        }
    }

    /// The reconcile did what it is for (applied, or found nothing to apply, or reported drift).
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Applied | Outcome::InSync | Outcome::Drift)
    }

    /// The outcome of a reconcile that failed with a failure of `kind`.
    pub fn of(kind: Kind) -> Outcome {
        match kind {
            Kind::Invalid => Outcome::Invalid,
            Kind::Denied => Outcome::Denied,
            Kind::NeedsCredentials => Outcome::NeedsCredentials,
            Kind::Locked => Outcome::Locked,
            // Nothing else of a reconcile ends in a conflict: the fence refused the commit.
            Kind::Conflict => Outcome::Fenced,
            Kind::Error => Outcome::Error,
        }
    }

    /// `watch --once` exits with apply's code for the same situation.
    pub fn exit(self) -> Exit {
        match self {
            Outcome::Applied | Outcome::InSync | Outcome::Drift => Exit::Ok,
            Outcome::Invalid | Outcome::NeedsCredentials | Outcome::Error | Outcome::Panic => {
                Exit::Error
            }
            Outcome::Denied => Exit::Denied,
            Outcome::Locked | Outcome::Fenced => Exit::Conflict,
        }
    }
}

/// One user's pending changes, for the `drift` log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drifted {
    pub user: String,
    pub actions: Vec<ActionKind>,
    pub denied: usize,
}

/// Everything the loop needs to log and count one reconcile. Holds no secret.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    /// Changes applied, by action (empty unless applied).
    pub applied: BTreeMap<ActionKind, usize>,
    /// The users the apply changed, as the store spells them.
    pub touched: Vec<String>,
    /// Under `--signers`: who requested the changes planned, `USER (commit SHORT)`, each once.
    pub requested_by: Vec<String>,
    /// Users whose state still differs from the manifests after this reconcile; `None` when the
    /// reconcile could not tell (invalid manifests, unreadable store).
    pub drifted: Option<usize>,
    /// Per-user drift, for `--detect-only`.
    pub drift: Vec<Drifted>,
    /// Whether the manifests parsed and checked; `None` when the reconcile did not get that far.
    pub manifests_valid: Option<bool>,
    /// The messages of a failure (located manifest problems, denied changes), one per line.
    pub problems: Vec<String>,
    pub plan_id: Option<String>,
    pub revision: Option<i64>,
    /// The credentials file written and how many passwords it holds.
    pub credentials: Option<(PathBuf, usize)>,
    /// What became of credentials files left by an interrupted apply, one line each.
    pub settled: Vec<String>,
    /// What the reconcile passed over and says so (symlinks not followed), one line each.
    pub warnings: Vec<String>,
    pub duration: Duration,
}

impl Report {
    fn new(outcome: Outcome) -> Report {
        Report {
            outcome,
            applied: BTreeMap::new(),
            touched: Vec::new(),
            requested_by: Vec::new(),
            drifted: None,
            drift: Vec::new(),
            manifests_valid: None,
            problems: Vec::new(),
            plan_id: None,
            revision: None,
            credentials: None,
            settled: Vec::new(),
            warnings: Vec::new(),
            duration: Duration::ZERO,
        }
    }

    pub fn failed(outcome: Outcome, f: Failure) -> Report {
        let mut r = Report::new(outcome);
        r.problems = f.lines;
        r
    }

    /// The number of changes applied.
    pub fn changes(&self) -> usize {
        self.applied.values().sum()
    }
}

/// Reloads everything and plans; applies unless `settings.detect_only`, fenced with `fence` (this
/// replica's leadership; the apply commits only while it still holds). A panic (a bug; no input
/// should cause one) ends only this reconcile: its transaction rolls back as it unwinds, and the
/// report says what happened, so the daemon keeps its last good state and keeps running.
pub fn reconcile(base: &ops::Settings, settings: &Settings, fence: Option<&Fence>) -> Report {
    let started = Instant::now();
    // Nothing outlives a reconcile but the report: it reloads everything and opens its own store.
    let mut report = match std::panic::catch_unwind(AssertUnwindSafe(|| run(base, settings, fence)))
    {
        Ok(report) => report,
        Err(payload) => panicked(panic_message(payload.as_ref())),
    };
    report.duration = started.elapsed();
    report
}

/// The report of a reconcile that panicked with `message`.
pub fn panicked(message: &str) -> Report {
    Report::failed(
        Outcome::Panic,
        Failure::error(format!(
            "the reconcile panicked: {}; this is a bug in mfactl, please report it. Nothing of \
             this reconcile was committed; the next one starts afresh",
            escape_text(message)
        )),
    )
}

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Test hook, compiled only with the `failpoints` feature (which only the tests turn on):
/// `MFACTL_FAILPOINT=reconcile-panic` makes the first reconcile of the process panic inside its
/// transaction, after planning, so the tests can watch the daemon survive it.
#[cfg(feature = "failpoints")]
fn failpoint_panic() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    if std::env::var("MFACTL_FAILPOINT").is_ok_and(|v| v == "reconcile-panic")
        && !FIRED.swap(true, Ordering::SeqCst)
    {
        panic!("failpoint reconcile-panic");
    }
}

fn run(base: &ops::Settings, settings: &Settings, fence: Option<&Fence>) -> Report {
    let input = match load_stable(&settings.paths) {
        Ok(input) => input,
        Err(f) => {
            let mut r = Report::failed(Outcome::Invalid, f);
            r.manifests_valid = Some(false);
            return r;
        }
    };
    let mut report = run_loaded(base, settings, &input, fence);
    report.warnings = input
        .skipped_links
        .iter()
        .map(|l| crate::sources::skipped_link_warning(l))
        .collect();
    report
}

/// [`run`], once the manifests are read.
fn run_loaded(
    base: &ops::Settings,
    settings: &Settings,
    input: &Loaded,
    fence: Option<&Fence>,
) -> Report {
    // `MFACTL_NOW` was checked at startup; a daemon must not plan with a stale clock.
    let now = ops::now().unwrap_or_else(|_| ops::wall_clock());
    // Invalid policies are like invalid manifests: logged, nothing applied, the store left in
    // the state the last good ones gave, and the next save reconciles again.
    let policy = match load::policies(base) {
        Ok(p) => p.policy,
        Err(f) => return Report::failed(Outcome::Invalid, f),
    };
    let mut st = match Store::open(&base.store, settings.lock_wait) {
        Ok(st) => st,
        Err(e) => return store_failure(e),
    };
    // Under `--signers`, who signed each manifest and policy file, read afresh each reconcile.
    let sigs = match &settings.signers {
        None => None,
        Some(file) => {
            let dir = load::policy_dir(base);
            match signed::read(file, input, dir.as_deref(), base.actor.as_deref()) {
                Ok(s) => Some(s),
                Err(f) => return plan_failure(f),
            }
        }
    };
    let who = match &sigs {
        Some(s) => Who::Signed(s),
        None => Who::Actor(base.actor.as_deref()),
    };
    if settings.detect_only {
        return match compute_plan(st.conn(), input, &policy, who, now) {
            Ok(plan) => detected(&plan),
            Err(f) => plan_failure(f),
        };
    }
    let actor = match (base.actor.as_deref(), &sigs) {
        (Some(a), _) => a,
        (None, Some(_)) => crate::ops::apply::NO_ACTOR,
        (None, None) => {
            return Report::failed(Outcome::Error, Failure::error("watch needs an actor"))
        }
    };
    let tx = match st.begin() {
        Ok(tx) => tx,
        Err(e) => return store_failure(e),
    };
    // Passwords left by an apply that was killed: handed over if it committed, else deleted.
    let settled = match &settings.credentials_dir {
        Some(dir) => match credentials::settle(&*tx, &credentials::leftovers_in(dir)) {
            Ok(notes) => notes,
            Err(e) => return Report::failed(Outcome::Error, e.into()),
        },
        None => Vec::new(),
    };
    let mut report = plan_and_apply(tx, input, &policy, who, actor, now, settings, fence);
    report.settled = settled;
    report
}

/// The plan and, all or nothing, its apply, under the write lock `tx` holds.
#[allow(clippy::too_many_arguments)]
fn plan_and_apply(
    tx: crate::store::Tx<'_>,
    input: &Loaded,
    policy: &crate::policy::Policy,
    who: Who,
    actor: &str,
    now: Timestamp,
    settings: &Settings,
    fence: Option<&Fence>,
) -> Report {
    let plan = match compute_plan(&*tx, input, policy, who, now) {
        Ok(plan) => plan,
        Err(f) => return plan_failure(f),
    };
    #[cfg(feature = "failpoints")]
    failpoint_panic();
    let opts = ApplyOptions {
        allow_large: false,
        credentials_out: settings
            .credentials_dir
            .as_ref()
            .map(|d| credentials::daemon_file(d, &plan.id)),
        accept_broken_audit: false,
        fence: fence.cloned(),
    };
    let mut report = match apply_locked(tx, &plan, policy, actor, now, &opts) {
        Ok(None) => {
            let mut r = Report::new(Outcome::InSync);
            r.drifted = Some(0);
            r
        }
        Ok(Some(applied)) => {
            let mut r = Report::new(Outcome::Applied);
            for c in &plan.changes {
                *r.applied.entry(c.kind()).or_default() += 1;
            }
            r.touched = users_of(&plan);
            r.requested_by = requesters_of(&plan);
            r.drifted = Some(0);
            r.revision = Some(applied.revision);
            r.credentials = applied.credentials;
            r
        }
        Err(f) => {
            let outcome = Outcome::of(f.kind);
            let mut r = if outcome == Outcome::NeedsCredentials {
                Report::failed(outcome, needs_credentials(&plan))
            } else {
                Report::failed(outcome, f)
            };
            r.drifted = Some(plan.summary().users);
            r
        }
    };
    report.manifests_valid = Some(true);
    report.plan_id = Some(plan.id.clone());
    report
}

/// Reads the manifests until two reads ~50 ms apart agree, so that an editor's half-written save
/// is never planned: the debounce waits for a quiet moment, this catches a writer still going.
fn load_stable(paths: &[PathBuf]) -> Result<Loaded, Failure> {
    const SETTLE: Duration = Duration::from_millis(50);
    const TRIES: usize = 20;
    let mut prev = manifests(paths)?;
    for _ in 0..TRIES {
        std::thread::sleep(SETTLE);
        let next = manifests(paths)?;
        if same_files(&prev, &next) {
            return Ok(next);
        }
        prev = next;
    }
    Err(Failure::error(
        "the manifests kept changing for a second; nothing was applied; waiting for the next change",
    ))
}

fn same_files(a: &Loaded, b: &Loaded) -> bool {
    a.files.len() == b.files.len()
        && a.files
            .iter()
            .zip(&b.files)
            .all(|(x, y)| x.path == y.path && x.text == y.text)
}

fn detected(plan: &Plan) -> Report {
    let mut by_user: BTreeMap<&str, Drifted> = BTreeMap::new();
    for c in &plan.changes {
        let d = by_user.entry(c.user.as_str()).or_insert_with(|| Drifted {
            user: c.user.clone(),
            actions: Vec::new(),
            denied: 0,
        });
        d.actions.push(c.kind());
        d.denied += usize::from(c.is_denied());
    }
    let mut r = Report::new(if plan.is_empty() {
        Outcome::InSync
    } else {
        Outcome::Drift
    });
    r.drifted = Some(by_user.len());
    r.drift = by_user.into_values().collect();
    r.requested_by = requesters_of(plan);
    r.manifests_valid = Some(true);
    r.plan_id = Some(plan.id.clone());
    r
}

/// A failure of `compute_plan`: invalid manifests, or the store.
fn plan_failure(f: Failure) -> Report {
    let invalid = f.kind == Kind::Invalid;
    let mut r = Report::failed(Outcome::of(f.kind), f);
    if invalid {
        r.manifests_valid = Some(false);
    }
    r
}

fn store_failure(e: StoreError) -> Report {
    let f = Failure::from(e);
    Report::failed(Outcome::of(f.kind), f)
}

fn needs_credentials(plan: &Plan) -> Failure {
    let users: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::ResetPassword { .. }))
        .map(|c| escape_text(&c.user).into_owned())
        .collect();
    Failure::new(
        Kind::NeedsCredentials,
        format!(
            "the plan resets the password of {}; run watch with --credentials-dir DIR to receive \
         the temporary passwords; nothing was applied",
            users.join(", ")
        ),
    )
}

/// Each requester of the plan's changes once, as `USER (commit SHORT)`.
fn requesters_of(plan: &Plan) -> Vec<String> {
    let mut who: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| c.requested_by.as_ref())
        .map(|by| {
            format!(
                "{} (commit {})",
                escape_text(&by.user),
                escape_text(by.commit.get(..7).unwrap_or(&by.commit))
            )
        })
        .collect();
    who.sort();
    who.dedup();
    who
}

fn users_of(plan: &Plan) -> Vec<String> {
    let mut users: Vec<String> = plan.changes.iter().map(|c| c.user.clone()).collect();
    users.dedup();
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_manifests_are_told_apart_from_store_errors() {
        let invalid = plan_failure(crate::ops::load::invalid(Vec::new()));
        assert_eq!(invalid.outcome, Outcome::Invalid);
        assert_eq!(invalid.manifests_valid, Some(false));
        let store: Failure = StoreError::Invalid("store x: broken".into()).into();
        assert_eq!(plan_failure(store).outcome, Outcome::Error);
        let locked: Failure =
            StoreError::Locked(PathBuf::from("x.db"), Duration::from_secs(1)).into();
        assert_eq!(plan_failure(locked).outcome, Outcome::Locked);
    }

    #[test]
    fn once_exits_with_apply_codes() {
        assert_eq!(Outcome::Applied.exit(), Exit::Ok);
        assert_eq!(Outcome::InSync.exit(), Exit::Ok);
        assert_eq!(Outcome::Drift.exit(), Exit::Ok);
        assert_eq!(Outcome::Invalid.exit(), Exit::Error);
        assert_eq!(Outcome::NeedsCredentials.exit(), Exit::Error);
        assert_eq!(Outcome::Denied.exit(), Exit::Denied);
        assert_eq!(Outcome::Locked.exit(), Exit::Conflict);
        assert_eq!(Outcome::Fenced.exit(), Exit::Conflict);
    }
}
