//! A tampered or damaged store never panics: any cell of any table set to any type or text, or
//! any row deleted, and every command that reads the store exits with a code a pipeline knows
//! (0, 1, 3 or 4) and an `error:` line naming what is wrong, never a panic or a signal.

mod common;
use common::*;

use proptest::prelude::*;
use proptest::sample::Index;
use rusqlite::types::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const GARY: &str = "gary@contoso.example";

/// A real store, built once by the binary: the example directory, two applies (so the audit log
/// holds records, with a password reset among them) and changes still pending, with a saved plan
/// of them. Each case corrupts a copy.
struct Base {
    env: Env,
    pending: PathBuf,
    saved: PathBuf,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let env = Env::example();
        let m = |name: &str| format!("{EXAMPLES}/manifests/{name}.yaml");
        env.ok(&[
            "apply",
            &m("stolen-laptop-carol"),
            "--auto-approve",
            "--actor",
            GARY,
            "--credentials-out",
            "c.txt",
        ]);
        env.ok(&[
            "apply",
            &m("tenant-wide-revocation"),
            "--auto-approve",
            "--actor",
            GARY,
        ]);
        let pending = env.path("pending");
        std::fs::create_dir(&pending).unwrap();
        for name in ["offboarding-2026-11", "contractors"] {
            std::fs::copy(m(name), pending.join(format!("{name}.yaml"))).unwrap();
        }
        let saved = env.path("saved.json");
        env.ok(&[
            "plan",
            "pending",
            "--actor",
            GARY,
            "--out",
            saved.to_str().unwrap(),
        ]);
        // One file, no WAL beside it, so that a copy is the whole store.
        let conn = rusqlite::Connection::open(&env.store).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        drop(conn);
        Base {
            env,
            pending,
            saved,
        }
    })
}

/// What goes into the chosen cell.
#[derive(Debug, Clone)]
enum Poison {
    /// The whole row is deleted instead.
    DeleteRow,
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// Bytes stored with type TEXT, valid UTF-8 or not.
    RawText(Vec<u8>),
    Blob(Vec<u8>),
}

fn poison() -> impl Strategy<Value = Poison> {
    let ints = prop_oneof![
        Just(0i64),
        Just(-1),
        Just(1),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(253_402_300_800),  // year 10000
        Just(-377_705_116_800), // year -10000
        any::<i64>(),
    ];
    let texts = prop_oneof![
        Just(String::new()),
        Just("ab".to_string()),
        Just("é".repeat(40)),
        Just(format!("{}é", "a".repeat(63))),
        Just(format!("{}é{}", "a".repeat(11), "b".repeat(52))),
        Just("日本語のテキスト".to_string()),
        Just("\u{202e}\u{1b}[31m\n".to_string()),
        Just("{\"sessions\": ".to_string()),
        Just("[1, 2]".to_string()),
        Just("null".to_string()),
        Just("2026-11-30T12:00:00Z".to_string()),
        Just("x".repeat(200_000)),
        "(?s).{0,80}",
    ];
    prop_oneof![
        1 => Just(Poison::DeleteRow),
        2 => Just(Poison::Null),
        3 => ints.prop_map(Poison::Int),
        1 => any::<f64>().prop_map(Poison::Real),
        4 => texts.prop_map(Poison::Text),
        1 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Poison::RawText),
        1 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Poison::Blob),
    ]
}

/// Sets one cell of `db` (the table, row and column picked by the indexes) to `p`, or deletes
/// the row; returns what was done, or None when SQLite's own constraints refuse it (a NOT
/// NULL column, a duplicate key), which no tampering can get past either.
fn corrupt(db: &Path, t: Index, r: Index, c: Index, p: &Poison) -> Option<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "ignore_check_constraints", true)
        .unwrap();
    let tables: Vec<(String, bool)> = conn
        .prepare(
            "SELECT name, sql LIKE '%WITHOUT ROWID%' FROM sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    // The tables that hold the audit chain and the revision are drawn three times as often:
    // they are few rows, and the ones a tamperer aims at.
    let mut weighted = tables.clone();
    for (name, rowless) in &tables {
        if matches!(name.as_str(), "audit" | "audit_head" | "meta") {
            weighted.extend([(name.clone(), *rowless), (name.clone(), *rowless)]);
        }
    }
    let (table, without_rowid) = t.get(&weighted).clone();
    let info: Vec<(String, i64)> = conn
        .prepare(&format!(
            "SELECT name, pk FROM pragma_table_info('{table}')"
        ))
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let key = if without_rowid {
        let mut pk: Vec<&(String, i64)> = info.iter().filter(|(_, pk)| *pk > 0).collect();
        pk.sort_by_key(|(_, n)| *n);
        let cols: Vec<String> = pk.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        format!("({})", cols.join(", "))
    } else {
        "rowid".to_string()
    };
    let rows: i64 = conn
        .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })
        .unwrap();
    if rows == 0 {
        return None;
    }
    let row = r.index(rows as usize) as i64;
    let which = format!(
        "WHERE {key} = (SELECT {key} FROM \"{table}\" ORDER BY {key} LIMIT 1 OFFSET {row})"
    );
    let column = &c.get(&info).0;
    let (sql, value) = match p {
        Poison::DeleteRow => (format!("DELETE FROM \"{table}\" {which}"), Value::Null),
        Poison::RawText(b) => (
            format!("UPDATE \"{table}\" SET \"{column}\" = CAST(?1 AS TEXT) {which}"),
            Value::Blob(b.clone()),
        ),
        other => (
            format!("UPDATE \"{table}\" SET \"{column}\" = ?1 {which}"),
            match other {
                Poison::Null => Value::Null,
                Poison::Int(n) => Value::Integer(*n),
                Poison::Real(x) => Value::Real(*x),
                Poison::Text(s) => Value::Text(s.clone()),
                Poison::Blob(b) => Value::Blob(b.clone()),
                Poison::DeleteRow | Poison::RawText(_) => unreachable!(),
            },
        ),
    };
    let params: &[&dyn rusqlite::ToSql] = if matches!(p, Poison::DeleteRow) {
        &[]
    } else {
        &[&value]
    };
    match conn.execute(&sql, params) {
        Ok(_) => Some(match p {
            Poison::DeleteRow => format!("deleted row {row} of {table}"),
            _ => format!("{table}.{column} of row {row}"),
        }),
        Err(_) => None,
    }
}

fn check(what: &str, args: &[&str], o: &Out) -> Result<(), TestCaseError> {
    prop_assert!(
        [0, 1, 3, 4].contains(&o.code),
        "{what}: mfactl {args:?} exited {}:\n{}",
        o.code,
        o.all()
    );
    prop_assert!(
        !o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"),
        "{what}: mfactl {args:?} panicked:\n{}",
        o.stderr
    );
    if o.code != 0 {
        prop_assert!(
            o.stderr.lines().any(|l| l.starts_with("error:")),
            "{what}: mfactl {args:?} exited {} without an `error:` line:\n{}",
            o.code,
            o.all()
        );
    }
    // rusqlite's own words name neither the table nor the row.
    for raw in [
        "Invalid column type",
        "Query returned no rows",
        "Conversion error from type",
        "out of range at index",
        "invalid utf-8 sequence",
    ] {
        prop_assert!(
            !o.stderr.contains(raw),
            "{what}: mfactl {args:?} said {raw:?} without naming the row:\n{}",
            o.stderr
        );
    }
    Ok(())
}

#[test]
fn a_tampered_store_never_panics_and_names_what_is_wrong() {
    let base = base();
    let config = ProptestConfig {
        // A few seconds in a debug build; PROPTEST_CASES=1000 for a longer hunt.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (any::<Index>(), any::<Index>(), any::<Index>(), poison());
    let result = runner.run(&strategy, |(t, r, c, p)| {
        let env = Env::bare();
        std::fs::copy(&base.env.store, &env.store).unwrap();
        let what = corrupt(&env.store, t, r, c, &p);
        prop_assume!(what.is_some());
        let what = format!("{} := {p:.60?}", what.unwrap_or_default());
        let pending = base.pending.to_str().unwrap();
        let saved = base.saved.to_str().unwrap();
        // The two applies each get their own copy: the first to commit would leave nothing
        // for the other to do.
        let second = env.path("second.db");
        std::fs::copy(&env.store, &second).unwrap();
        let second = second.to_str().unwrap();
        let runs: [&[&str]; 7] = [
            &["audit", "verify"],
            &["audit"],
            &["show", "carol@contoso.example"],
            &["store", "export"],
            &["plan", pending, "--actor", GARY],
            &["apply", "--plan", saved, "--auto-approve", "--actor", GARY],
            &[
                "--store",
                second,
                "apply",
                pending,
                "--auto-approve",
                "--actor",
                GARY,
            ],
        ];
        for args in runs {
            check(&what, args, &env.run(args))?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A copy of the base store, changed by `sql` (run with CHECK constraints off, as a hand edit
/// with the sqlite3 shell can).
fn tampered(sql: &str) -> Env {
    let env = Env::bare();
    std::fs::copy(&base().env.store, &env.store).unwrap();
    let conn = rusqlite::Connection::open(&env.store).unwrap();
    conn.pragma_update(None, "ignore_check_constraints", true)
        .unwrap();
    conn.execute_batch(sql).unwrap();
    env
}

fn pending_apply(env: &Env, extra: &[&str]) -> Out {
    let pending = base().pending.to_str().unwrap().to_string();
    let mut args = vec!["apply", &pending, "--auto-approve", "--actor", GARY];
    args.extend_from_slice(extra);
    env.run(&args)
}

fn refused(o: &Out, needles: &[&str]) {
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        !o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"),
        "{}",
        o.stderr
    );
    // Warnings (such as guardrails that protect nobody) may come first.
    assert!(
        o.stderr.lines().any(|l| l.starts_with("error: ")),
        "{}",
        o.stderr
    );
    for n in needles {
        assert!(o.stderr.contains(n), "expected {n:?} in:\n{}", o.stderr);
    }
}

/// `audit verify` and apply cut stored hashes by bytes for their messages: a hash that is not
/// ASCII, or shorter than the cut, panicked.
#[test]
fn a_non_ascii_or_short_hash_in_the_audit_chain_is_reported_not_a_panic() {
    let last: i64 = {
        let conn = rusqlite::Connection::open(&base().env.store).unwrap();
        conn.query_row("SELECT max(seq) FROM audit", [], |r| r.get(0))
            .unwrap()
    };
    for (sql, record) in [
        (
            "UPDATE audit_head SET hash = 'aéééééééééééé'".to_string(),
            last,
        ),
        ("UPDATE audit_head SET hash = 'ab'".to_string(), last),
        (
            format!("UPDATE audit SET hash = 'aéééééééééééé' WHERE seq = {last}"),
            last,
        ),
        (
            "UPDATE audit SET prev_hash = 'é' WHERE seq = 2".to_string(),
            2,
        ),
        (
            format!("UPDATE audit SET hash = x'ff00e9' WHERE seq = {last}"),
            last,
        ),
    ] {
        let env = tampered(&sql);
        let o = env.run(&["audit", "verify"]);
        refused(&o, &[&format!("broken, first at record #{record}")]);
        assert!(
            o.stdout.contains(&format!("record #{record} ")),
            "{sql}: {}",
            o.stdout
        );
        assert!(!o.stdout.contains('\0'), "{sql}: {:?}", o.stdout);
        refused(
            &pending_apply(&env, &[]),
            &[
                "the audit log is broken",
                &format!("record #{record} "),
                "nothing was applied",
            ],
        );
    }
}

/// A deleted `audit_head` row made `audit verify` and apply fail with "Query returned no rows";
/// a deleted `meta` row did the same for every plan.
#[test]
fn deleted_audit_head_or_meta_rows_are_named() {
    let env = tampered("DELETE FROM audit_head");
    let o = env.run(&["audit", "verify"]);
    refused(&o, &["broken, first at record #"]);
    assert!(
        o.stdout
            .contains("the store's record of the chain's head is missing"),
        "{}",
        o.stdout
    );
    refused(
        &pending_apply(&env, &[]),
        &[
            "the store's record of the chain's head is missing",
            "--accept-broken-audit",
        ],
    );
    // Accepting the break records it in the log and writes the head anew: the chain verifies.
    let o = pending_apply(&env, &["--accept-broken-audit"]);
    assert_eq!(o.code, 0, "{}", o.all());
    let o = env.run(&["audit", "verify"]);
    assert_eq!(o.code, 0, "{}", o.all());
    let log = env.ok(&["audit"]).stdout;
    assert!(
        log.contains("accept-broken-audit") && log.contains("head is missing"),
        "{log}"
    );

    let env = tampered("DELETE FROM meta");
    let pending = base().pending.to_str().unwrap();
    for args in [
        vec!["plan", pending],
        vec!["store", "import", &format!("{EXAMPLES}/directory.yaml")],
    ] {
        refused(
            &env.run(&args),
            &[
                "is damaged: meta: the `revision` row is missing",
                "restore it from a backup",
            ],
        );
    }
    refused(
        &pending_apply(&env, &[]),
        &["the `revision` row is missing"],
    );
}

/// A value of a type mfactl never writes failed with rusqlite's "Invalid column type Text at
/// index: 3, name: enabled", naming neither the table nor the row.
#[test]
fn a_value_of_the_wrong_type_names_its_table_row_and_column() {
    let cases = [
        (
            "UPDATE users SET enabled = 'yes' WHERE key = 'carol@contoso.example'",
            "users, user `carol@contoso.example`: column `enabled` holds the text `yes`",
        ),
        (
            "UPDATE methods SET registered_at = x'00ff' WHERE id = 'm-carol-1'",
            "methods, user `carol@contoso.example`, method `m-carol-1`: column `registered_at` holds a blob of 2 bytes",
        ),
        (
            "UPDATE trusted_devices SET name = CAST(x'ff' AS TEXT) WHERE id = 'd-carol-2'",
            "trusted_devices, user `carol@contoso.example`, trusted device `d-carol-2`: column `name` holds text that is not UTF-8",
        ),
        (
            "UPDATE users SET sessions_valid_from = 9223372036854775807 WHERE key = 'carol@contoso.example'",
            "column `sessions_valid_from` holds the integer 9223372036854775807",
        ),
        (
            "UPDATE groups SET role_assignable = 'x' WHERE key = 'contractors'",
            "groups, group `contractors`: column `role_assignable` holds the text `x`",
        ),
    ];
    for (i, (sql, needle)) in cases.into_iter().enumerate() {
        let env = tampered(sql);
        let mut runs = vec![vec!["store", "export"]];
        if i < 4 {
            runs.push(vec!["show", "carol@contoso.example"]);
        }
        for args in runs {
            let o = env.run(&args);
            assert_eq!(o.code, 1, "{sql}: {args:?}: {}", o.all());
            refused(&o, &["is damaged: ", needle]);
        }
    }
    // An audit record's time: `audit` names the record; verify reports it as edited.
    let env = tampered("UPDATE audit SET at = 'x' WHERE seq = 3");
    refused(
        &env.run(&["audit"]),
        &["is damaged: audit, record #3: column `at` holds the text `x`"],
    );
    refused(&env.run(&["audit", "verify"]), &["first at record #3"]);
}
