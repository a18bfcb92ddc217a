//! The store-level guarantees, on both stores: every test here runs once on a SQLite file and
//! once on a PostgreSQL database (a throwaway server the tests start; see `common::pg`): apply
//! and its audit chain, saved plans, import and export, hostile strings, a process killed or cut
//! off mid-apply, two applies at once. And the same contents give the same bytes on both.

mod common;
use common::*;
use std::process::{Child, Stdio};
use std::time::Duration;

const ADMIN: &str = "gary@contoso.example";

/// An env on one kind of store; holds the PostgreSQL database while it lives.
struct On {
    env: Env,
    kind: &'static str,
    db: Option<pg::Db>,
}

impl std::ops::Deref for On {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

/// The example tenant, imported, with open guardrails, on each store there is: SQLite always,
/// PostgreSQL when the machine has it (see `pg::database`).
fn stores() -> Vec<On> {
    let mut out = vec![On {
        env: Env::bare(),
        kind: "sqlite",
        db: None,
    }];
    if let Some(db) = pg::database() {
        let mut env = Env::bare();
        env.store = db.url().into();
        out.push(On {
            env,
            kind: "postgres",
            db: Some(db),
        });
    }
    for on in &out {
        on.ok(&["init"]);
        on.ok(&["store", "import", &format!("{EXAMPLES}/directory.yaml")]);
        on.use_open_policies();
    }
    out
}

fn apply_args(dir: &str, creds: &str) -> Vec<String> {
    [
        "--actor",
        ADMIN,
        "apply",
        dir,
        "--auto-approve",
        "--credentials-out",
        creds,
    ]
    .map(String::from)
    .to_vec()
}

/// Starts mfactl with `args`, stopped at failpoint `point`, and returns it once it is there.
fn stopped_at(env: &Env, point: &str, args: &[String]) -> Child {
    let mark = env.path("failpoint.mark");
    let _ = std::fs::remove_file(&mark);
    let mut child = env
        .cmd()
        .args(args)
        .env("MFACTL_FAILPOINT", point)
        .env("MFACTL_FAILPOINT_MARK", &mark)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !mark.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "mfactl ended ({status}) before {point}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

#[test]
fn the_same_contents_give_the_same_plans_exports_and_audit_on_both_stores() {
    let stores = stores();
    let mut seen: Vec<(&str, Vec<String>)> = Vec::new();
    for on in &stores {
        on.offboard();
        let mut outputs = Vec::new();
        for args in [
            &["--actor", ADMIN, "plan", "m"][..],
            &["--actor", ADMIN, "plan", "m", "--format", "json"],
            &["--actor", ADMIN, "plan", "m", "--format", "markdown"],
            &["plan", "m", "--diff"],
            &["store", "export"],
            &["store", "export", "--format", "jsonl"],
        ] {
            outputs.push(on.ok(args).stdout);
        }
        on.ok(&apply_args("m", "creds.txt")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>());
        outputs.push(on.ok(&["store", "export"]).stdout);
        outputs.push(on.ok(&["audit", "--format", "json"]).stdout);
        outputs.push(on.ok(&["--actor", ADMIN, "plan", "m"]).stdout);
        seen.push((on.kind, outputs));
    }
    if let [(a, first), (b, second)] = &seen[..] {
        for (i, (x, y)) in first.iter().zip(second).enumerate() {
            assert_eq!(x, y, "output #{i} differs between {a} and {b}");
        }
    }
}

#[test]
fn apply_writes_a_verifiable_audit_chain_and_a_saved_plan_applies_once() {
    for on in stores() {
        on.offboard();
        on.ok(&["--actor", ADMIN, "plan", "m", "--out", "plan.json"]);
        let args = [
            "--actor",
            ADMIN,
            "apply",
            "--plan",
            "plan.json",
            "--credentials-out",
            "c.txt",
        ];
        on.ok(&args);
        assert!(
            stored_password_hash(&on.store, "bob@contoso.example").is_some(),
            "{}",
            on.kind
        );
        let again = on.run(&[
            "--actor",
            ADMIN,
            "apply",
            "--plan",
            "plan.json",
            "--credentials-out",
            "c2.txt",
        ]);
        assert_eq!(again.code, 4, "{}: {}", on.kind, again.all());
        let v = on.run(&["audit", "verify"]);
        assert!(
            v.code == 0 && v.all().contains("intact"),
            "{}: {}",
            on.kind,
            v.all()
        );
        let audit: serde_json::Value =
            serde_json::from_str(&on.ok(&["audit", "--format", "json"]).stdout).unwrap();
        assert_eq!(
            audit.as_array().map(Vec::len),
            Some(4),
            "{}: {audit}",
            on.kind
        );
        // A saved plan goes stale when its users change, whatever the store.
        on.write(
            "m2/a.yaml",
            &manifest("a", "  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-28T00:00:00Z\n"),
        );
        on.ok(&["--actor", ADMIN, "plan", "m2", "--out", "p2.json"]);
        on.write(
            "m3/a.yaml",
            &manifest("a", "  - users: [alice@contoso.example]\n    revoke-trusted-devices-before: 2026-11-28T00:00:00Z\n"),
        );
        on.ok(&["--actor", ADMIN, "apply", "m3", "--auto-approve"]);
        let stale = on.run(&["--actor", ADMIN, "apply", "--plan", "p2.json"]);
        assert_eq!(stale.code, 4, "{}: {}", on.kind, stale.all());
        assert!(
            stale.all().contains("alice@contoso.example"),
            "{}: {}",
            on.kind,
            stale.all()
        );
    }
}

#[test]
fn import_and_export_round_trip_hostile_strings() {
    for on in stores() {
        let hostile = "users:\n  - id: \"o'brien\\\"; DROP TABLE users; --@contoso.example\"\n    display-name: \"\\u202e\\u0000 é 😀\"\n    enabled: true\n    roles: []\n    groups: []\n";
        let o = on.run(&[
            "store",
            "import",
            on.write("h.yaml", hostile).to_str().unwrap(),
        ]);
        assert_eq!(o.code, 0, "{}: {}", on.kind, o.all());
        let yaml = on.export();
        let jsonl = on.ok(&["store", "export", "--format", "jsonl"]).stdout;
        on.ok(&[
            "store",
            "import",
            on.write("back.jsonl", &jsonl).to_str().unwrap(),
        ]);
        assert_eq!(on.export(), yaml, "{}", on.kind);
        let shown = on
            .ok(&["show", "o'brien\"; drop table users; --@contoso.example"])
            .stdout;
        assert!(shown.contains("DROP TABLE"), "{}: {shown}", on.kind);
    }
}

/// `n` generated users from `from` on, in one or two of the example's groups, with a method, a
/// session and a password time; `gen` varies the groups, the session and the password time.
fn bulk_users(from: usize, n: usize, gen: usize) -> String {
    let mut y = String::from("users:\n");
    for i in from..from + n {
        let groups = match (i + gen) % 3 {
            0 => "[contractors]",
            1 => "[engineering, contractors]",
            _ => "[engineering]",
        };
        y.push_str(&format!(
            "  - id: bulk-{i:05}@contoso.example\n    display-name: Bulk {i} gen {gen}\n    \
             enabled: true\n    roles: []\n    groups: {groups}\n    \
             password-set-at: 2026-0{}-01T00:00:00Z\n    \
             methods:\n      - {{id: m-{i}, kind: sms, registered-at: 2026-01-01T00:00:00Z}}\n    \
             sessions:\n      - {{id: s-{i}-{gen}, issued-at: 2026-11-01T00:00:00Z}}\n",
            1 + (i + gen) % 9
        ));
    }
    y
}

/// Imports of thousands of users, the size at which PostgreSQL writes by `COPY`: first of users
/// the store does not hold (straight in), then of the same users changed and moved between
/// groups with new ones among them (staged and merged). Each export gives back what was imported,
/// the group index follows (a plan by group names exactly its members), and both stores give the
/// same bytes.
#[test]
fn bulk_imports_of_new_and_present_users_round_trip_with_their_group_index() {
    let mut exports = Vec::new();
    for on in stores() {
        let first = on.write("bulk1.yaml", &bulk_users(0, 4_500, 1));
        on.ok(&["store", "import", first.to_str().unwrap()]);
        let after_first = on.export();
        assert!(
            after_first.contains("bulk-04499@contoso.example"),
            "{}",
            on.kind
        );
        // The same users changed (each moved to another group) and 1,500 new ones.
        let second = on.write("bulk2.yaml", &bulk_users(1, 6_000, 2));
        on.ok(&["store", "import", second.to_str().unwrap()]);
        let jsonl = on.ok(&["store", "export", "--format", "jsonl"]).stdout;
        let yaml = on.export();
        // Exported, imported into a new store of the same kind: the same bytes.
        on.ok(&[
            "store",
            "import",
            on.write("again.jsonl", &jsonl).to_str().unwrap(),
        ]);
        assert_eq!(on.export(), yaml, "{}", on.kind);
        // The group index: a plan for group `engineering` touches exactly its members.
        on.write(
            "m/eng.yaml",
            &manifest(
                "eng",
                "  - group: engineering\n    revoke-sessions-before: 2026-11-15T00:00:00Z\n",
            ),
        );
        let plan = on
            .ok(&["plan", "m", "--actor", ADMIN, "--format", "json"])
            .stdout;
        let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
        let mut users: Vec<String> = plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["user"].as_str().unwrap().to_string())
            .collect();
        users.sort();
        users.dedup();
        // Bulk users 1..=6000 of generation 2 are in engineering unless `(i + 2) % 3 == 0`;
        // bulk-00000 kept generation 1's record, in engineering and contractors.
        let wanted: Vec<String> = (0..6_001)
            .filter(|i| *i == 0 || (i + 2) % 3 != 0)
            .map(|i| format!("bulk-{i:05}@contoso.example"))
            .collect();
        let bulk: Vec<String> = users
            .into_iter()
            .filter(|u| u.starts_with("bulk-"))
            .collect();
        assert_eq!(bulk.len(), wanted.len(), "{}", on.kind);
        assert!(bulk == wanted, "{}", on.kind);
        exports.push((on.kind, yaml));
    }
    if let [(_, a), (_, b)] = exports.as_slice() {
        assert!(a == b, "SQLite and PostgreSQL exports differ");
    }
}

#[test]
fn a_process_killed_mid_apply_leaves_the_store_as_before() {
    for on in stores() {
        on.offboard();
        let before = on.export();
        let o = on.run_env(
            &apply_args("m", "c.txt")
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            &[("MFACTL_FAILPOINT", "apply-mid")],
        );
        assert_ne!(o.code, 0, "{}", on.kind);
        assert_eq!(
            on.export(),
            before,
            "{}: a killed apply changed the store",
            on.kind
        );
        assert!(!on.exists("c.txt"), "{}", on.kind);
        // SIGKILL right before the commit: the same.
        let child = stopped_at(&on, "apply-wait-before-commit", &apply_args("m", "c.txt"));
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait_with_output();
        assert_eq!(
            on.export(),
            before,
            "{}: a SIGKILLed apply changed the store",
            on.kind
        );
        assert!(!on.exists("c.txt"), "{}", on.kind);
        let v = on.run(&["audit", "verify"]);
        assert!(
            v.all().contains("0 records") || v.all().contains("intact"),
            "{}: {}",
            on.kind,
            v.all()
        );
        // And the store still applies.
        on.ok(&apply_args("m", "c.txt")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>());
        assert_ne!(on.export(), before, "{}", on.kind);
    }
}

#[test]
fn a_second_apply_waits_for_the_lock_then_exits_4() {
    for on in stores() {
        on.offboard();
        let before = on.export();
        let first = stopped_at(&on, "apply-wait-before-commit", &apply_args("m", "c.txt"));
        let t = std::time::Instant::now();
        let second = on.run(&[
            "--actor",
            ADMIN,
            "--lock-timeout",
            "1s",
            "apply",
            "m",
            "--auto-approve",
            "--credentials-out",
            "d.txt",
        ]);
        assert_eq!(second.code, 4, "{}: {}", on.kind, second.all());
        assert!(
            t.elapsed() >= Duration::from_millis(900),
            "{}: did not wait",
            on.kind
        );
        assert!(
            second.stderr.contains("locked"),
            "{}: {}",
            on.kind,
            second.stderr
        );
        unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
        let _ = first.wait_with_output();
        assert_eq!(on.export(), before, "{}", on.kind);
    }
}

#[test]
fn a_connection_cut_mid_apply_leaves_the_store_as_before() {
    let Some(on) = stores().into_iter().find(|s| s.kind == "postgres") else {
        return;
    };
    on.offboard();
    let before = on.export();
    let mut child = stopped_at(&on, "apply-wait-before-commit", &apply_args("m", "c.txt"));
    let db = on.db.as_ref().unwrap();
    assert!(
        db.terminate_backends("mfactl") > 0,
        "no mfactl connection to cut"
    );
    // The apply goes on to its commit, which fails: the server rolled the transaction back.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(on.export(), before);
    assert!(!on.exists("c.txt"));
}
