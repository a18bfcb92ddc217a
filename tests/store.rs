//! The store: init and migrations, refusing stores that are missing, foreign, corrupt or newer,
//! import/export round trips, `show`.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn a_missing_store_is_refused_with_a_hint_to_init() {
    let env = Env::bare();
    for args in [vec!["store", "export"], vec!["show", "a@x"], vec!["audit"]] {
        let o = env.run(&args);
        assert_eq!(o.code, 1, "{args:?}");
        assert!(o.stderr.contains("mfactl init"), "{}", o.stderr);
        assert!(
            o.stderr.contains("mfactl.db"),
            "names the store: {}",
            o.stderr
        );
    }
    assert!(!env.exists("mfactl.db"), "nothing but init creates a store");
}

#[test]
fn init_creates_a_private_store_and_is_a_no_op_after() {
    let env = Env::example();
    let mode = std::fs::metadata(&env.store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = env.export();
    let o = env.ok(&["init"]);
    assert!(o.stderr.contains("up to date"), "{}", o.stderr);
    assert_eq!(env.export(), before);
}

#[test]
fn init_demo_imports_the_example_tenant() {
    let env = Env::bare();
    env.ok(&["init", "--demo"]);
    let other = Env::example();
    assert_eq!(env.export(), other.export());
}

#[test]
fn a_store_from_a_newer_mfactl_is_refused() {
    let env = Env::example();
    rusqlite::Connection::open(&env.store)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    for args in [vec!["store", "export"], vec!["init"]] {
        let o = env.run(&args);
        assert_eq!(o.code, 1, "{args:?}");
        assert!(o.stderr.contains("newer"), "{}", o.stderr);
    }
}

#[test]
fn someone_elses_sqlite_database_is_refused_and_untouched() {
    let env = Env::bare();
    let c = rusqlite::Connection::open(&env.store).unwrap();
    c.execute_batch("CREATE TABLE invoices (id INTEGER); INSERT INTO invoices VALUES (1);")
        .unwrap();
    drop(c);
    let before = std::fs::read(&env.store).unwrap();
    for args in [vec!["init"], vec!["store", "export"]] {
        let o = env.run(&args);
        assert_eq!(o.code, 1, "{args:?}");
        assert!(o.stderr.contains("did not create"), "{}", o.stderr);
    }
    assert_eq!(std::fs::read(&env.store).unwrap(), before);
}

#[test]
fn random_bytes_are_not_a_store() {
    let env = Env::bare();
    let junk: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&env.store, &junk).unwrap();
    let o = env.run(&["store", "export"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not an SQLite database"), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked"));
    assert_eq!(std::fs::read(&env.store).unwrap(), junk);
}

#[test]
fn export_import_export_round_trips() {
    let env = Env::example();
    let first = env.export();
    let fresh = Env::empty();
    fresh.write("dir.yaml", &first);
    fresh.ok(&["store", "import", "dir.yaml"]);
    assert_eq!(fresh.export(), first);
    // Importing the same file again changes nothing either.
    env.write("dir.yaml", &first);
    env.ok(&["store", "import", "dir.yaml"]);
    assert_eq!(env.export(), first);
    // The export is the directory format: it parses as the example does and names no secrets.
    assert!(first.contains("id: alice@contoso.example"));
    assert!(!first.to_lowercase().contains("hash"));
}

#[test]
fn import_replaces_listed_users_whole_and_leaves_others() {
    let env = Env::example();
    let bob_before = env.ok(&["show", "bob@contoso.example"]).stdout;
    env.import(&user_yaml(
        "Alice@Contoso.example",
        &[],
        &[],
        "    must-change-password: true\n",
    ));
    let alice = env.show("alice@contoso.example");
    assert_eq!(
        alice["id"].as_str(),
        Some("Alice@Contoso.example"),
        "the store keeps the new spelling"
    );
    assert_eq!(alice["display-name"].as_str(), Some("T"));
    assert_eq!(alice["must-change-password"].as_bool(), Some(true));
    assert_eq!(
        alice["methods"].as_sequence().unwrap().len(),
        0,
        "replaced as a whole"
    );
    assert_eq!(alice["groups"].as_sequence().unwrap().len(), 0);
    assert_eq!(env.ok(&["show", "bob@contoso.example"]).stdout, bob_before);
}

#[test]
fn a_bad_import_reports_where_and_imports_nothing() {
    let env = Env::example();
    let before = env.export();
    env.write(
        "bad.yaml",
        "users:\n  - id: x@contoso.example\n    colour: blue\n",
    );
    let o = env.run(&["store", "import", "bad.yaml"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("bad.yaml:3:5:"), "{}", o.stderr);
    assert!(o.stderr.contains("colour"), "{}", o.stderr);

    // The second user refers to a group nobody declared: the first is not imported either.
    env.write(
        "bad2.yaml",
        "users:\n  - {id: new1@contoso.example}\n  - {id: new2@contoso.example, groups: [ghosts]}\n",
    );
    let o = env.run(&["store", "import", "bad2.yaml"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("ghosts"), "{}", o.stderr);
    env.write("bad3.yaml", "users:\n  - id: d@contoso.example\n    sessions: [{id: s, issued-at: 2026-01-01}, {id: s, issued-at: 2026-01-02}]\n");
    let o = env.run(&["store", "import", "bad3.yaml"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("two sessions with id `s`"),
        "{}",
        o.stderr
    );
    assert_eq!(env.export(), before);
}

#[test]
fn show_prints_one_user_and_refuses_an_unknown_one() {
    let env = Env::example();
    let carol = env.show("CAROL@contoso.example");
    assert_eq!(carol["id"].as_str(), Some("carol@contoso.example"));
    assert_eq!(carol["sessions"].as_sequence().unwrap().len(), 2);
    let o = env.run(&["show", "nobody@contoso.example"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("nobody@contoso.example"), "{}", o.stderr);
}

#[test]
fn a_bad_mfactl_now_is_an_error() {
    let env = Env::example();
    let o = env.run_env(&["store", "export"], &[("MFACTL_NOW", "yesterday")]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("MFACTL_NOW"), "{}", o.stderr);
}

/// `n` plain users in the export's block layout: over a megabyte at 10,000, so the streamed
/// import reads them in several pieces.
fn many_users(n: usize) -> String {
    let mut t = String::from("users:\n");
    for i in 0..n {
        t.push_str(&format!(
            "- id: user{i}@contoso.example\n  display-name: User {i}\n  enabled: true\n  roles: []\n  groups: []\n  password-set-at: 2026-01-01T00:00:00Z\n  sessions:\n  - id: s-{i}\n    issued-at: 2026-01-02T00:00:00Z\n  - id: t-{i}\n    issued-at: 2026-01-03T00:00:00Z\n"
        ));
    }
    t
}

#[test]
fn an_import_accepted_a_role_spelled_in_another_case_than_the_role_table() {
    let env = Env::example();
    let before = env.export();
    let big = many_users(12_000);
    let big_lines = big.lines().count();
    for (name, text, at) in [
        // Block and flow YAML, through the streamed reader.
        (
            "block.yaml",
            "users:\n  - id: new@contoso.example\n    roles:\n      - reports-reader\n      - Global-Administrator\n".to_string(),
            "block.yaml:5:9: ".to_string(),
        ),
        (
            "flow.yaml",
            "users:\n  - {id: new@contoso.example, roles: [global-ADMINISTRATOR]}\n".to_string(),
            "flow.yaml:2:39: ".to_string(),
        ),
        // A holding-only name counts as known, so its other spelling is refused too.
        (
            "reader.yaml",
            "users:\n  - {id: new@contoso.example, roles: [Reports-Reader]}\n".to_string(),
            "reader.yaml:2:39: ".to_string(),
        ),
        // An anchor: the whole-document reader.
        (
            "anchored.yaml",
            "users:\n  - &n {id: new@contoso.example, roles: [Global-Administrator]}\n".to_string(),
            "anchored.yaml:2:42: ".to_string(),
        ),
        // The last user of several pieces: the pieces before were written, then rolled back.
        (
            "big.yaml",
            format!("{big}- id: last@contoso.example\n  roles: [Global-Administrator]\n"),
            format!("big.yaml:{}:11: ", big_lines + 2),
        ),
    ] {
        env.write(name, &text);
        let o = env.run(&["store", "import", name]);
        assert_eq!(o.code, 1, "{name}: {}", o.all());
        assert!(o.stderr.contains(&at), "{name}: {at} in {}", o.stderr);
        assert!(
            o.stderr.contains("which spells it `global-administrator`")
                || o.stderr.contains("which spells it `reports-reader`"),
            "{}",
            o.stderr
        );
        assert!(
            o.stderr.ends_with("error: nothing was imported\n"),
            "{}",
            o.stderr
        );
        assert_eq!(env.export(), before, "{name} imported something");
    }

    // Known means the policies in force: under a custom table, its own spellings.
    env.write(
        "custom/roles.yaml",
        "roles:\n  - name: mfa-operator\n    actions: [revoke-sessions]\n    targets: any\n",
    );
    env.write("custom/guardrails.yaml", "{}\n");
    env.write(
        "op.yaml",
        "users:\n  - {id: op@contoso.example, roles: [MFA-Operator]}\n",
    );
    let o = env.run(&["--policies", "custom", "store", "import", "op.yaml"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr
            .contains("op.yaml:2:38: role `MFA-Operator` is not in the role table, which spells it `mfa-operator` (policies: --policies custom)"),
        "{}",
        o.stderr
    );
    assert_eq!(env.export(), before);
}

#[test]
fn an_import_was_silent_about_a_role_the_role_table_never_mentions() {
    let env = Env::example();
    env.write(
        "new.yaml",
        "users:\n  - id: a@contoso.example\n    roles: [global-admin, reports-reader]\n  \
         - id: b@contoso.example\n    roles:\n      - helpdesk-administrator\n      - global-admin\n",
    );
    let o = env.run(&["store", "import", "new.yaml"]);
    assert_eq!(o.code, 0, "{}", o.all());
    let warnings: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(
        warnings,
        ["warning: new.yaml:3:13: role `global-admin` (held by 2 users) is not in the role table \
          (policies: built-in): it grants no action, and only roles with `targets: any` may change \
          its holders; check its spelling, or add it to roles.yaml"],
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("Imported 2 users"), "{}", o.stderr);
    assert_eq!(
        env.show("a@contoso.example")["roles"],
        serde_yaml::from_str::<serde_yaml::Value>("[global-admin, reports-reader]").unwrap()
    );
    // -q: only data and errors.
    let o = env.run(&["-q", "store", "import", "new.yaml"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(o.stderr, "");

    // Through the whole-document reader, and after several pieces of the streamed one.
    env.write(
        "anchored.yaml",
        "users:\n  - &c {id: c@contoso.example, roles: [security-reader]}\n",
    );
    let o = env.run(&["store", "import", "anchored.yaml"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.stderr.contains(
            "warning: anchored.yaml:2:40: role `security-reader` is not in the role table"
        ),
        "{}",
        o.stderr
    );
    let big = many_users(12_000);
    let line = big.lines().count() + 2;
    env.write(
        "big.yaml",
        &format!("{big}- id: last@contoso.example\n  roles: [Global-Admin]\n"),
    );
    let o = env.run(&["store", "import", "big.yaml"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.stderr.contains(&format!(
            "warning: big.yaml:{line}:11: role `Global-Admin` is not in the role table"
        )),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("Imported 12001 users"), "{}", o.stderr);

    // The example tenant holds only roles the built-in table knows.
    let o = env.run(&["store", "import", &format!("{EXAMPLES}/directory.yaml")]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(!o.stderr.contains("warning"), "{}", o.stderr);
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A store written by an older mfactl: `tests/fixtures/store-v3.db`, written by the last release
/// of schema 3 (one table per kind of object), taken back to schema 2 (the hash chain, no
/// requesters) or 1 (no hash chain) by undoing those migrations exactly as their SQL added them.
/// Returns it with its export as that release printed it.
fn older(to: i64) -> (Env, String) {
    let env = Env::bare();
    std::fs::copy(format!("{FIXTURES}/store-v3.db"), &env.store).unwrap();
    let c = rusqlite::Connection::open(&env.store).unwrap();
    if to < 3 {
        c.execute_batch("ALTER TABLE audit DROP COLUMN requested_by")
            .unwrap();
    }
    if to < 2 {
        c.execute_batch(
            "DROP TABLE audit_head; ALTER TABLE audit DROP COLUMN prev_hash; \
             ALTER TABLE audit DROP COLUMN hash;",
        )
        .unwrap();
    }
    c.pragma_update(None, "user_version", to).unwrap();
    drop(c);
    let export = std::fs::read_to_string(format!("{FIXTURES}/store-v3.export.yaml")).unwrap();
    (env, export)
}

#[test]
fn init_migrates_a_store_of_each_older_schema_and_its_audit_chain_verifies() {
    let m = env_manifest();
    for from in [1, 2, 3] {
        let (env, before) = older(from);
        env.write("m/off.yaml", &m);
        let o = env.run(&["plan", "m"]);
        assert_eq!(o.code, 1, "schema {from}: {}", o.stderr);
        assert!(o.stderr.contains("run `mfactl init`"), "{}", o.stderr);
        let o = env.ok(&["init"]);
        assert!(
            o.stderr.contains(&format!(
                "from schema version {from} to 4; its audit chain of 7 records verifies"
            )),
            "schema {from}: {}",
            o.stderr
        );
        assert_eq!(env.export(), before, "schema {from}: the directory is kept");
        let v = env.ok(&["audit", "verify"]);
        assert!(
            v.stdout.starts_with("7 records, head "),
            "schema {from}: {}",
            v.stdout
        );
        let audit: serde_json::Value =
            serde_json::from_str(&env.ok(&["audit", "--format", "json"]).stdout).unwrap();
        assert!(audit
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["requested_by"].is_null()));
        if from == 3 {
            // The audit log reads exactly as the old release printed it, hashes and all.
            let old: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(format!("{FIXTURES}/store-v3.audit.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(audit, old);
        }
        // The migrated store takes new records on the same chain.
        env.ok(&[
            "apply",
            "m",
            "--actor",
            "gary@contoso.example",
            "--auto-approve",
        ]);
        let v = env.ok(&["audit", "verify"]);
        assert!(
            v.stdout.contains("9 records"),
            "schema {from}: {}",
            v.stdout
        );
        // A second init has nothing to do.
        let o = env.ok(&["init"]);
        assert!(o.stderr.contains("is up to date"), "{}", o.stderr);
    }
}

fn env_manifest() -> String {
    manifest(
        "off",
        "  - users: [bob@contoso.example, dave@contoso.example]\n    \
         revoke-sessions-before: 2026-11-29T09:00:00Z\n",
    )
}

/// The migration keeps what the export never shows: the hash of the temporary password the old
/// release issued still accepts that password, and the old tables are gone.
#[test]
fn the_migration_keeps_password_hashes_and_drops_the_old_tables() {
    use argon2::{PasswordHash, PasswordVerifier};
    let (env, _) = older(3);
    env.ok(&["init"]);
    let creds = std::fs::read_to_string(format!("{FIXTURES}/store-v3.credentials.txt")).unwrap();
    let (user, password) = creds.trim_end().split_once('\t').unwrap();
    let hash = stored_password_hash(&env.store, user).expect("the hash survived");
    assert!(argon2::Argon2::default()
        .verify_password(password.as_bytes(), &PasswordHash::new(&hash).unwrap())
        .is_ok());
    let c = rusqlite::Connection::open(&env.store).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "applied_plans",
            "audit",
            "audit_head",
            "groups",
            "members",
            "meta",
            "users"
        ]
    );
    let version: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
}

/// A row the migration cannot read stops it: `init` names the row, exits 1, and the file is
/// byte for byte what it was (one transaction).
#[test]
fn a_migration_that_fails_leaves_the_old_store_untouched() {
    let (env, _) = older(3);
    let c = rusqlite::Connection::open(&env.store).unwrap();
    c.execute_batch("UPDATE sessions SET issued_at = 'yesterday' WHERE rowid = (SELECT rowid FROM sessions LIMIT 1)")
        .or_else(|_| {
            c.execute_batch(
                "UPDATE sessions SET issued_at = 'yesterday' \
                 WHERE (user_key, id) = (SELECT user_key, id FROM sessions LIMIT 1)",
            )
        })
        .unwrap();
    c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(c);
    let before = std::fs::read(&env.store).unwrap();
    let o = env.run(&["init"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains("migrating user `") && o.stderr.contains("sessions"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    assert!(
        std::fs::read(&env.store).unwrap() == before,
        "the failed migration changed the file"
    );
    let o = env.run(&["store", "export"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("run `mfactl init`"), "{}", o.stderr);
}
