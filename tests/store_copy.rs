//! `mfactl store copy DEST`: everything moves — directory, password hashes, audit chain,
//! revision, applied plan ids — into an empty store, which then behaves as the source did.

mod common;
use common::*;

const ADMIN: &str = "gary@contoso.example";

/// The example tenant with bob and dave offboarded (bob's password reset) by a saved plan, so
/// that the store holds audit records, an applied plan id and a password hash.
fn applied_example() -> Env {
    let env = Env::example();
    env.use_open_policies();
    env.offboard();
    env.ok(&["--actor", ADMIN, "plan", "m", "--out", "plan.json"]);
    env.ok(&[
        "--actor",
        ADMIN,
        "apply",
        "--plan",
        "plan.json",
        "--credentials-out",
        "creds.txt",
    ]);
    env
}

/// Runs `args` against the store at `store` instead of the env's own.
fn on(env: &Env, store: &str, args: &[&str]) -> Out {
    env.run_env(args, &[("MFACTL_STORE", store)])
}

#[test]
fn a_copy_keeps_the_directory_the_audit_chain_the_hashes_and_the_applied_plans() {
    let env = applied_example();
    let dest = env.path("copy.db");
    let dest = dest.to_str().unwrap();
    let o = env.ok(&["store", "copy", dest]);
    assert!(
        o.stderr.contains(
            "Copied 13 users, 3 groups, 4 audit records and 1 applied plan id at store revision 2"
        ),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("its audit chain verifies"),
        "{}",
        o.stderr
    );
    for args in [
        &["store", "export"][..],
        &["store", "export", "--format", "jsonl"],
        &["audit", "--format", "json"],
        &["audit", "verify"],
        &["show", "bob@contoso.example"],
    ] {
        let (a, b) = (env.ok(args), on(&env, dest, args));
        assert_eq!(b.code, 0, "{args:?} on the copy: {}", b.all());
        assert_eq!(a.stdout, b.stdout, "{args:?} differs on the copy");
    }
    assert_eq!(
        stored_password_hash(&env.store, "bob@contoso.example"),
        stored_password_hash(std::path::Path::new(dest), "bob@contoso.example"),
    );
    assert!(stored_password_hash(std::path::Path::new(dest), "bob@contoso.example").is_some());
    // The applied plan id came along: the same saved plan is refused on the copy (exit 4).
    let again = env.run_env(
        &[
            "--actor",
            ADMIN,
            "apply",
            "--plan",
            "plan.json",
            "--credentials-out",
            "c2.txt",
        ],
        &[("MFACTL_STORE", dest)],
    );
    assert_eq!(again.code, 4, "{}", again.all());
    assert!(again.all().contains("already applied"), "{}", again.all());
    // The revision came along: a new apply on the copy extends the same chain.
    env.write(
        "m2/x.yaml",
        &manifest(
            "x",
            "  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-28T00:00:00Z\n",
        ),
    );
    let o = on(
        &env,
        dest,
        &["--actor", ADMIN, "apply", "m2", "--auto-approve"],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    let v = on(&env, dest, &["audit", "verify"]);
    assert!(v.code == 0 && v.all().contains("intact"), "{}", v.all());
}

#[test]
fn a_copy_into_a_store_that_holds_anything_is_refused_and_changes_nothing() {
    let env = applied_example();
    let other = Env::example();
    let before = other.export();
    let o = env.run(&["store", "copy", other.store.to_str().unwrap()]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("is not empty"), "{}", o.stderr);
    assert_eq!(other.export(), before);
    // Nor onto itself.
    let o = env.run(&["store", "copy", env.store.to_str().unwrap()]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains("is the store being copied"),
        "{}",
        o.stderr
    );
}

/// SQLite → PostgreSQL → SQLite: the same export, audit log, `audit verify` report and
/// password hash at every step, and each copy carries on the same chain.
#[test]
fn a_store_copies_to_postgresql_and_back_unchanged() {
    let Some(db) = pg::database() else { return };
    let env = applied_example();
    let url = db.url();
    let back = env.path("back.db");
    let back = back.to_str().unwrap();
    let o = env.ok(&["store", "copy", &url]);
    assert!(
        o.stderr.contains("its audit chain verifies"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains(db.admin_password()), "{}", o.stderr);
    on(&env, &url, &["store", "copy", back]);
    let reads: [&[&str]; 4] = [
        &["store", "export", "--format", "jsonl"],
        &["audit", "--format", "json"],
        &["audit", "verify"],
        &["show", "bob@contoso.example"],
    ];
    for args in reads {
        let source = env.ok(args);
        for store in [url.as_str(), back] {
            let copy = on(&env, store, args);
            assert_eq!(copy.code, 0, "{args:?}: {}", copy.all());
            assert_eq!(source.stdout, copy.stdout, "{args:?} differs on {store}");
        }
    }
    let hash = stored_password_hash(&env.store, "bob@contoso.example");
    assert!(hash.is_some());
    assert_eq!(
        stored_password_hash(std::path::Path::new(&url), "bob@contoso.example"),
        hash
    );
    assert_eq!(
        stored_password_hash(std::path::Path::new(back), "bob@contoso.example"),
        hash
    );
    // The applied plan id travelled: refused on the PostgreSQL copy too.
    let again = on(
        &env,
        &url,
        &[
            "--actor",
            ADMIN,
            "apply",
            "--plan",
            "plan.json",
            "--credentials-out",
            "c3.txt",
        ],
    );
    assert_eq!(again.code, 4, "{}", again.all());
}

/// A broken chain is copied as it is, break and all: `audit verify` reports the same on the copy
/// (a copy is not a way to launder an edited log).
#[test]
fn a_tampered_audit_log_copies_with_its_break() {
    let env = applied_example();
    let conn = rusqlite::Connection::open(&env.store).unwrap();
    conn.execute(
        "UPDATE audit SET actor = 'mallory@contoso.example' WHERE seq = 2",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM audit_head", []).unwrap();
    drop(conn);
    let source = env.run(&["audit", "verify"]);
    assert_ne!(source.code, 0, "{}", source.all());
    let mut stores = vec![env.path("copy.db").to_str().unwrap().to_string()];
    let db = pg::database();
    if let Some(db) = &db {
        stores.push(db.url());
    }
    for dest in &stores {
        let o = env.ok(&["store", "copy", dest]);
        assert!(o.stderr.contains("break"), "{}", o.stderr);
        let copy = on(&env, dest, &["audit", "verify"]);
        assert_eq!(copy.code, source.code, "{}", copy.all());
        assert_eq!(copy.stdout, source.stdout);
    }
}
