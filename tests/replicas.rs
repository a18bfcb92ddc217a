//! `watch` replicas on a PostgreSQL store: the real daemons, two at a time, on one database.
//! Exactly one leads; a standby takes over when the leader is killed, cut off or hung; and a
//! deposed leader commits nothing (every change is applied exactly once, which the audit log
//! counts). Without a server every test prints `skipped`. Each waits with a deadline, and a
//! guard kills every daemon whatever happens to the test.

mod common;
use common::pg;

use common::replica::{health_is, http_get, Replica};
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BOB: &str = "bob@contoso.example";
/// Short, so that takeovers are quick; the protocol scales with it.
const LEASE: Duration = Duration::from_secs(2);

/// The store on a fresh database, holding the example directory; `None` without a server.
fn store() -> Option<(pg::Db, Env)> {
    let db = pg::database()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let env = Env {
        dir,
        store: PathBuf::from(db.url()),
    };
    env.ok(&["init"]);
    env.ok(&["store", "import", &format!("{EXAMPLES}/directory.yaml")]);
    std::fs::create_dir(env.path("m")).unwrap();
    Some((db, env))
}

fn bob_without_app_passwords() -> String {
    manifest(
        "bob-apps",
        "  - users: [bob@contoso.example]\n    app-passwords: none\n",
    )
}

/// The audit records of bob's app-password deletions: each change must be there exactly once.
fn deletions_audited(env: &Env) -> usize {
    let out = env.ok(&["audit", "--user", BOB, "--format", "json"]).stdout;
    let records: Vec<Value> = match serde_json::from_str::<Value>(&out) {
        Ok(Value::Array(a)) => a,
        _ => out
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    };
    records
        .iter()
        .filter(|r| r["action"] == "delete-app-passwords")
        .count()
}

/// Starts `a`, lets it lead, then `b` as its standby.
fn a_leads_b_stands_by(env: &Env, db: &pg::Db, a_vars: &[(&str, &str)]) -> (Replica, Replica) {
    let a = Replica::start(env, db, "a", LEASE, a_vars);
    a.logged("leader (epoch 1)");
    a.reconcile_with("in-sync");
    let b = Replica::start(env, db, "b", LEASE, &[]);
    b.logged("standby (leader: a)");
    assert_eq!(a.health(), "leader");
    assert_eq!(b.health(), "standby");
    (a, b)
}

#[test]
fn a_killed_leader_is_replaced_and_the_standby_applies_within_the_lease() {
    let Some((db, env)) = store() else { return };
    let (a, b) = a_leads_b_stands_by(&env, &db, &[]);
    a.signal("KILL");
    let killed = Instant::now();
    env.write("m/apps.yaml", &bob_without_app_passwords());
    b.logged("leader (epoch 2)");
    let took_over = killed.elapsed();
    let applied = b.reconcile_with("applied");
    let applied_after = killed.elapsed();
    eprintln!(
        "after SIGKILL of the leader: standby led after {took_over:?}, applied after \
         {applied_after:?} (lease {LEASE:?})"
    );
    assert!(
        took_over < LEASE + Duration::from_secs(2),
        "took over in {took_over:?}, lease {LEASE:?}"
    );
    assert_eq!(applied["applied"], "delete-app-passwords:1");
    assert_eq!(b.health(), "leader");
    assert_eq!(deletions_audited(&env), 1);
    let (_, metrics) = http_get(&b.metrics_addr(), "/metrics");
    assert!(metrics.contains("mfactl_leader 1"), "{metrics}");
    assert!(
        metrics.contains("mfactl_leadership_changes_total 1"),
        "{metrics}"
    );
}

#[test]
fn a_leader_cut_off_from_the_database_stops_and_the_standby_takes_over() {
    let Some((db, env)) = store() else { return };
    let (a, b) = a_leads_b_stands_by(&env, &db, &[]);
    let cut = db.terminate_backends("a");
    assert!(cut >= 1, "a's lease connection at least");
    health_is(&a, "standby");
    a.logged("standby (leader: unknown)");
    b.logged("leader (epoch 2)");
    let seen_by_a = a.reconciles().len();

    env.write("m/apps.yaml", &bob_without_app_passwords());
    b.reconcile_with("applied");
    assert_eq!(deletions_audited(&env), 1);
    assert_eq!(a.health(), "standby");
    std::thread::sleep(LEASE);
    assert_eq!(
        a.reconciles().len(),
        seen_by_a,
        "a standby reconciles nothing:\n{}",
        a.raw()
    );
    let (_, metrics) = http_get(&a.metrics_addr(), "/metrics");
    assert!(metrics.contains("mfactl_leader 0"), "{metrics}");
    assert!(
        metrics.contains("mfactl_leadership_changes_total 2"),
        "{metrics}"
    );
}

#[test]
fn a_hung_leader_woken_after_a_takeover_commits_nothing() {
    let Some((db, env)) = store() else { return };
    let mark = env.path("at-fence");
    let mark_s = mark.to_str().unwrap().to_string();
    // `a` stops in its apply, after planning and writing, just before its fence.
    let (a, b) = a_leads_b_stands_by(
        &env,
        &db,
        &[
            ("MFACTL_FAILPOINT", "apply-wait-before-fence"),
            ("MFACTL_FAILPOINT_MARK", &mark_s),
        ],
    );
    env.write("m/apps.yaml", &bob_without_app_passwords());
    a.wait("reach its fence", |_| mark.exists().then_some(()));
    a.signal("STOP");
    // `a`'s session lives on and holds its lock: `b` waits for the lease to expire.
    let stopped = Instant::now();
    b.logged("leader (epoch 2)");
    eprintln!(
        "takeover from a SIGSTOPped leader after {:?} (lease {LEASE:?})",
        stopped.elapsed()
    );
    // `a`'s open transaction holds the store's write lock; `b` retries until it is gone.
    std::fs::remove_file(&mark).unwrap();
    a.signal("CONT");
    let fenced = a.reconcile_with("fenced");
    assert_eq!(fenced["changes"], 0, "{fenced}");
    assert!(
        a.raw()
            .contains("this replica no longer leads (epoch 1); nothing was applied"),
        "{}",
        a.raw()
    );
    a.logged("standby (leader: b)");
    let applied = b.reconcile_with("applied");
    assert_eq!(applied["applied"], "delete-app-passwords:1");
    assert_eq!(deletions_audited(&env), 1, "applied exactly once");
    assert_eq!(a.health(), "standby");
    assert_eq!(b.health(), "leader");
}
