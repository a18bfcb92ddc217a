//! Several `apply` processes and a `watch --once` racing on one store, with lock timeouts short
//! enough that some may give up: each ends with 0 or 4, nothing is lost or half-applied, the audit
//! log holds exactly the applied changes, and no raw "database is locked" reaches the user.

mod common;
use common::*;
use std::process::Stdio;

const ADMIN: &str = "gary@contoso.example";

#[test]
fn racing_applies_and_a_reconcile_end_in_0_or_4_and_lose_nothing() {
    let env = Env::example();
    let users = ["alice", "bob", "carol", "dave", "henry"];
    for u in users {
        env.write(
            &format!("{u}/m.yaml"),
            &manifest(u, &format!("  - users: [{u}@contoso.example]\n    revoke-sessions-before: 2026-11-30T00:00:00Z\n    revoke-trusted-devices-before: 2026-11-30T00:00:00Z\n")),
        );
    }
    for round in 0..3 {
        let children: Vec<_> = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let mut c = env.cmd();
                if i == 0 {
                    c.args(["watch", u, "--once", "--actor", ADMIN]);
                } else {
                    c.args(["apply", u, "--auto-approve", "--actor", ADMIN]);
                }
                c.args(["--lock-timeout", if round == 0 { "0s" } else { "30s" }])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (child, u) in children.into_iter().zip(users) {
            let o = child.wait_with_output().unwrap();
            let code = o.status.code().unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                code == 0 || code == 4,
                "round {round}, {u}: exit {code}: {stderr}"
            );
            assert!(
                !stderr.contains("database is locked"),
                "raw SQLite error: {stderr}"
            );
        }
        // Whatever ran is fully there and audited; whatever gave up left its user untouched.
        let audit: serde_json::Value =
            serde_json::from_str(&env.ok(&["audit", "--format", "json"]).stdout).unwrap();
        let records = audit.as_array().unwrap();
        for u in users {
            let id = format!("{u}@contoso.example");
            let shown = env.show(&id);
            let applied = shown["sessions-valid-from"].as_str() == Some("2026-11-30T00:00:00Z");
            let devices_done = shown["devices-valid-from"].as_str() == Some("2026-11-30T00:00:00Z");
            assert_eq!(applied, devices_done, "round {round}: {u} half-applied");
            let n = records.iter().filter(|r| r["user"] == id.as_str()).count();
            assert_eq!(
                n,
                if applied { 2 } else { 0 },
                "round {round}: audit records for {u}"
            );
        }
        assert_eq!(env.run(&["audit", "verify"]).code, 0);
    }
    // With a 30 s lock timeout every process got its turn.
    for u in users {
        let shown = env.show(&format!("{u}@contoso.example"));
        assert_eq!(
            shown["sessions-valid-from"].as_str(),
            Some("2026-11-30T00:00:00Z"),
            "{u}"
        );
    }
}
