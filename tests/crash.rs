//! Crash safety: `apply` on a 20,000-user plan, killed (SIGKILL) at moments spread over the whole
//! run and aborted at deterministic fail points inside the transaction. After each: the SQLite file
//! passes `integrity_check`, the store is exactly as before or exactly as after, the audit log
//! matches it, and a new apply converges.

mod common;
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

const USERS: usize = 20_000;
const ADMIN: &str = "gary@contoso.example";

fn bulk_directory() -> String {
    let mut yaml = String::from("groups:\n  - {name: bulk}\nusers:\n");
    for i in 0..USERS {
        yaml.push_str(&format!(
            "  - id: user{i:05}@contoso.example\n    groups: [bulk]\n    sessions: [{{id: s-{i}, issued-at: 2026-01-02T00:00:00Z}}]\n    app-passwords: [{{id: a-{i}, name: mail, created-at: 2025-01-01T00:00:00Z}}]\n"
        ));
    }
    yaml
}

struct Fixture {
    env: Env,
    before_db: std::path::PathBuf,
    before: String,
    after: String,
    duration: Duration,
}

fn store_files(base: &std::path::Path) -> [std::path::PathBuf; 3] {
    let s = base.display().to_string();
    [
        base.to_path_buf(),
        format!("{s}-wal").into(),
        format!("{s}-shm").into(),
    ]
}

/// Replaces the working store with the snapshot taken before the apply.
fn restore(f: &Fixture) {
    for p in store_files(&f.env.store) {
        let _ = std::fs::remove_file(p);
    }
    std::fs::copy(&f.before_db, &f.env.store).unwrap();
}

fn apply_cmd(env: &Env) -> std::process::Command {
    let mut c = env.cmd();
    c.args([
        "apply",
        "m",
        "--auto-approve",
        "--allow-large",
        "--actor",
        ADMIN,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

fn fixture() -> Fixture {
    let env = Env::example();
    env.import(&bulk_directory());
    env.write(
        "m/bulk.yaml",
        &manifest(
            "bulk",
            "  - group: bulk\n    revoke-sessions-before: 2026-11-01\n    app-passwords: none\n",
        ),
    );
    let before = env.export();
    let before_db = env.path("before.db");
    assert!(
        !store_files(&env.store)[1].exists(),
        "no WAL left behind by a finished command"
    );
    std::fs::copy(&env.store, &before_db).unwrap();
    let start = Instant::now();
    let status = apply_cmd(&env).status().unwrap();
    let duration = start.elapsed();
    assert!(status.success());
    let after = env.export();
    assert_ne!(before, after);
    Fixture {
        env,
        before_db,
        before,
        after,
        duration,
    }
}

/// What every interrupted apply must leave: an intact file, before or after, a matching audit log,
/// and convergence on the next apply.
fn check(f: &Fixture, label: &str) -> &'static str {
    {
        let db = rusqlite::Connection::open(&f.env.store).unwrap();
        let ok: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "{label}: integrity_check");
    }
    let now = f.env.export();
    let audit: serde_json::Value =
        serde_json::from_str(&f.env.ok(&["audit", "--format", "json"]).stdout).unwrap();
    let records = audit.as_array().unwrap().len();
    let state = if now == f.before {
        assert_eq!(
            records, 0,
            "{label}: store as before, but {records} audit records"
        );
        "before"
    } else if now == f.after {
        assert_eq!(records, 2 * USERS, "{label}: store as after, audit records");
        "after"
    } else {
        panic!("{label}: the store is neither as before nor as after the apply");
    };
    let verify = f.env.run(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{label}: {}", verify.all());
    let status = apply_cmd(&f.env).status().unwrap();
    assert!(status.success(), "{label}: the next apply");
    assert_eq!(f.env.export(), f.after, "{label}: the next apply converges");
    state
}

#[test]
fn killed_and_aborted_applies_leave_the_store_before_or_after() {
    let f = fixture();
    let mut outcomes = Vec::new();

    // Deterministic: abort at fixed points inside and around the transaction.
    for point in [
        "apply-begin",
        "apply-mid",
        "apply-before-commit",
        "apply-after-commit",
    ] {
        restore(&f);
        let status = apply_cmd(&f.env)
            .env("MFACTL_FAILPOINT", point)
            .status()
            .unwrap();
        assert!(!status.success(), "{point}: the process was aborted");
        let state = check(&f, point);
        let expected = if point == "apply-after-commit" {
            "after"
        } else {
            "before"
        };
        assert_eq!(state, expected, "{point}");
        outcomes.push((point.to_string(), state));
    }

    // SIGKILL at moments spread over the whole run, from before the transaction to after commit.
    for fraction in [0.02, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05] {
        restore(&f);
        let mut child = apply_cmd(&f.env).spawn().unwrap();
        std::thread::sleep(f.duration.mul_f64(fraction));
        let _ = child.kill();
        let _ = child.wait();
        let label = format!("SIGKILL at {:.0}%", fraction * 100.0);
        let state = check(&f, &label);
        outcomes.push((label, state));
    }
    eprintln!("kill points: {outcomes:?}");
    assert!(
        outcomes.iter().any(|(_, s)| *s == "before") && outcomes.iter().any(|(_, s)| *s == "after")
    );
}
