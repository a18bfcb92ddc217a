//! The tamper-evident audit log: `audit verify` names the first record edited, deleted, inserted
//! or reordered (by editing the SQLite file directly), and apply refuses a broken chain unless
//! `--accept-broken-audit`, which is itself recorded.

mod common;
use common::*;

const ADMIN: &str = "gary@contoso.example";

/// A store whose audit log holds the 15 changes of the example manifests (under the example
/// policies, which protect the break-glass account).
fn audited() -> Env {
    let env = Env::example();
    env.use_example_policies();
    let m = format!("{EXAMPLES}/manifests");
    env.ok(&[
        "apply",
        &m,
        "--auto-approve",
        "--actor",
        ADMIN,
        "--credentials-out",
        "c.txt",
    ]);
    env
}

fn sql(env: &Env, statements: &str) {
    rusqlite::Connection::open(&env.store)
        .unwrap()
        .execute_batch(statements)
        .unwrap();
}

fn verify(env: &Env) -> Out {
    env.run(&["audit", "verify"])
}

#[test]
fn an_untouched_log_verifies() {
    let env = audited();
    let o = verify(&env);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stdout.contains("15 records, head "), "{}", o.stdout);
    let records: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--format", "json"]).stdout).unwrap();
    let r = records.as_array().unwrap();
    assert_eq!(r[0]["prev_hash"], "");
    assert_eq!(
        r[1]["prev_hash"], r[0]["hash"],
        "each record chains to the one before"
    );
}

#[test]
fn an_edited_record_is_named() {
    let env = audited();
    sql(
        &env,
        "UPDATE audit SET user = 'mallory@contoso.example' WHERE seq = 4",
    );
    let o = verify(&env);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stdout.contains("record #4 was edited"), "{}", o.stdout);
    assert!(o.stderr.contains("first at record #4"), "{}", o.stderr);
}

/// Verification hashes the stored text as it is: a change of type, or of the JSON's spelling
/// with the same meaning, is an edit too.
#[test]
fn edits_of_stored_json_or_column_types_are_named() {
    for (edit, seq) in [
        ("UPDATE audit SET before = ' ' || before WHERE seq = 3", 3),
        ("UPDATE audit SET sources = '[]' WHERE seq = 5", 5),
        ("UPDATE audit SET at = at || 'x' WHERE seq = 6", 6),
        (
            "UPDATE audit SET actor = CAST(actor AS BLOB) || x'ff' WHERE seq = 2",
            2,
        ),
    ] {
        let env = audited();
        sql(&env, edit);
        let o = verify(&env);
        assert_eq!(o.code, 1, "{edit}: {}", o.all());
        assert!(
            o.stdout.contains(&format!("record #{seq} was edited")),
            "{edit}: {}",
            o.stdout
        );
    }
}

#[test]
fn a_deleted_record_is_named() {
    let env = audited();
    sql(&env, "DELETE FROM audit WHERE seq = 7");
    let o = verify(&env);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("first at record #8"), "{}", o.all());
}

#[test]
fn a_record_deleted_from_the_end_is_detected() {
    let env = audited();
    sql(&env, "DELETE FROM audit WHERE seq = 15");
    let o = verify(&env);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stdout.contains("deleted from the end"), "{}", o.stdout);
}

#[test]
fn an_inserted_record_is_named() {
    let env = audited();
    sql(
        &env,
        "UPDATE audit SET seq = seq + 1000 WHERE seq >= 5;
         UPDATE audit SET seq = seq - 999 WHERE seq >= 1000;
         INSERT INTO audit (seq, at, actor, role, action, user, user_key, before, after, sources, plan_id, prev_hash, hash)
         SELECT 5, at, actor, role, 'delete-app-passwords', 'eve@contoso.example', 'eve@contoso.example', before, after, sources, plan_id, hash, hash
         FROM audit WHERE seq = 4;",
    );
    let o = verify(&env);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("first at record #5"), "{}", o.all());
}

#[test]
fn reordered_records_are_named() {
    let env = audited();
    sql(
        &env,
        "UPDATE audit SET seq = 1000 WHERE seq = 9;
         UPDATE audit SET seq = 9 WHERE seq = 10;
         UPDATE audit SET seq = 10 WHERE seq = 1000;",
    );
    let o = verify(&env);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("first at record #9"), "{}", o.all());
}

#[test]
fn apply_refuses_a_broken_chain_unless_accepted_and_records_the_acceptance() {
    let env = audited();
    sql(&env, "UPDATE audit SET actor = 'nobody' WHERE seq = 2");
    env.write(
        "m/apps.yaml",
        &manifest(
            "apps",
            "  - users: [henry@contoso.example]\n    app-passwords: none\n",
        ),
    );
    let before = env.export();
    let o = env.run(&["apply", "m", "--auto-approve", "--actor", ADMIN]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("audit log is broken"), "{}", o.stderr);
    assert!(o.stderr.contains("--accept-broken-audit"), "{}", o.stderr);
    assert_eq!(env.export(), before, "nothing applied");

    let o = env.run(&[
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        ADMIN,
        "--accept-broken-audit",
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    let records: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--format", "json"]).stdout).unwrap();
    let r = records.as_array().unwrap();
    assert_eq!(r[15]["action"], "accept-broken-audit");
    assert_eq!(r[15]["actor"], ADMIN);
    assert!(
        r[15]["before"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("record #2"),
        "{}",
        r[15]
    );
    assert_eq!(r[16]["action"], "delete-app-passwords");

    // The break stays visible, acknowledged; later applies need no flag.
    let o = verify(&env);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.stdout.contains("record #2 was edited")
            && o.stdout.contains("acknowledged by record #16"),
        "{}",
        o.stdout
    );
    env.write("m/more.yaml", &manifest("more", "  - users: [henry@contoso.example]\n    revoke-sessions-before: 2026-11-30T00:00:00Z\n"));
    env.ok(&["apply", "m", "--auto-approve", "--actor", ADMIN]);
}
