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
