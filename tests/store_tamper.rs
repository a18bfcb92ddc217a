//! A tampered or damaged store never panics: any cell of any table set to any type or text, any
//! row deleted, or a user's record changed inside (bytes flipped, cut, inserted, a number made
//! huge), and every command that reads the store exits with a code a pipeline knows
//! (0, 1, 3 or 4) and an `error:` line naming what is wrong, never a panic or a signal.

mod common;
use common::*;

use proptest::prelude::*;
use proptest::sample::Index;
use rusqlite::types::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mfactl::model::Timestamp;
use mfactl::store::record::{self, Stored};

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
    /// A user's record is changed inside (the table, column and row indexes pick nothing): a
    /// random value rarely reaches the decoder's checks past the first bytes.
    Record(Mutation),
}

/// A change to the bytes of a real record.
#[derive(Debug, Clone)]
enum Mutation {
    /// Each byte picked is XORed with its mask (a mask of 0 leaves it).
    Flip(Vec<(Index, u8)>),
    /// The record is cut at the place picked.
    Truncate(Index),
    /// These bytes go in at the place picked.
    Insert(Index, Vec<u8>),
    /// These bytes replace as many from the place picked (or up to the end).
    Overwrite(Index, Vec<u8>),
    /// One of the record's varints (a length, a count or a time), picked among them, is
    /// replaced by these bytes: a huge number, one longer than 64 bits, or an over-long zero.
    Varint(Index, Vec<u8>),
}

/// `v` as an unsigned LEB128 varint, as the record stores numbers.
fn leb128(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let place = any::<Index>;
    let bytes = || proptest::collection::vec(any::<u8>(), 1..12);
    let varints = prop_oneof![
        Just(leb128(u64::MAX)),
        Just(leb128(1 << 63)),
        Just(leb128(i64::MAX as u64)),
        Just(leb128(u64::from(u32::MAX))),
        Just(leb128(1_000)),
        // Past 64 bits: a tenth byte above 1, and eleven bytes.
        Just([vec![0xff; 9], vec![0x02]].concat()),
        Just([vec![0x80; 10], vec![0x00]].concat()),
        // Zero, spelled long: it decodes.
        Just(vec![0x80, 0x80, 0x00]),
        any::<u64>().prop_map(leb128),
    ];
    prop_oneof![
        1 => proptest::collection::vec((place(), 1u8..), 1..4).prop_map(Mutation::Flip),
        1 => place().prop_map(Mutation::Truncate),
        1 => (place(), bytes()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (place(), bytes()).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        2 => (place(), varints).prop_map(|(i, b)| Mutation::Varint(i, b)),
    ]
}

/// Where each varint of the valid record `b` lies (start, end), by the layout of
/// `mfactl::store::record`.
fn varints(b: &[u8]) -> Vec<(usize, usize)> {
    struct W<'b> {
        b: &'b [u8],
        at: usize,
        out: Vec<(usize, usize)>,
    }
    impl W<'_> {
        fn num(&mut self) -> usize {
            let (start, mut v, mut shift) = (self.at, 0u64, 0);
            loop {
                let c = self.b[self.at];
                self.at += 1;
                v |= u64::from(c & 0x7f) << shift;
                shift += 7;
                if c < 0x80 {
                    break;
                }
            }
            self.out.push((start, self.at));
            v as usize
        }
        fn text(&mut self) {
            self.at += self.num();
        }
    }
    let mut w = W {
        b,
        at: 2,
        out: Vec::new(),
    };
    let flags = b[1];
    if flags & 4 != 0 {
        w.text();
    }
    w.text();
    for i in 3..7 {
        if flags & (1 << i) != 0 {
            w.num();
        }
    }
    if flags & 128 != 0 {
        w.text();
    }
    for _ in 0..w.num() {
        w.text(); // roles
    }
    for _ in 0..w.num() {
        w.text(); // groups
    }
    for _ in 0..w.num() {
        w.text(); // methods: id, kind, time
        w.text();
        w.num();
    }
    for _ in 0..w.num() {
        w.text(); // sessions: id, time
        w.num();
    }
    for _ in 0..w.num() {
        w.text(); // trusted devices: id, name, time
        w.text();
        w.num();
    }
    for _ in 0..w.num() {
        w.text(); // app passwords: id, name, time, secret marker and secret
        w.text();
        w.num();
        w.at += 1;
        if w.b[w.at - 1] == 1 {
            w.text();
        }
    }
    assert_eq!(w.at, b.len(), "the walk of a valid record ends at its end");
    w.out
}

impl Mutation {
    fn apply(&self, b: &mut Vec<u8>) {
        // A place in the record, its end included.
        let at = |i: &Index, len: usize| i.index(len + 1);
        match self {
            Mutation::Flip(flips) => {
                for (i, mask) in flips {
                    if !b.is_empty() {
                        let i = i.index(b.len());
                        b[i] ^= mask;
                    }
                }
            }
            Mutation::Truncate(i) => b.truncate(i.index(b.len())),
            Mutation::Insert(i, bytes) => {
                let i = at(i, b.len());
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Overwrite(i, bytes) => {
                let i = at(i, b.len());
                let end = (i + bytes.len()).min(b.len());
                b.splice(i..end, bytes.iter().copied());
            }
            Mutation::Varint(i, bytes) => {
                let (start, end) = *i.get(&varints(b));
                b.splice(start..end, bytes.iter().copied());
            }
        }
    }
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
        6 => mutation().prop_map(Poison::Record),
    ]
}

/// Sets one cell of `db` (the table, row and column picked by the indexes) to `p`, or deletes
/// the row; returns what was done, or None when SQLite's own constraints refuse it (a NOT
/// NULL column, a duplicate key), which no tampering can get past either.
fn corrupt(db: &Path, t: Index, r: Index, c: Index, p: &Poison) -> Option<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "ignore_check_constraints", true)
        .unwrap();
    // The sqlite3 shell enforces no foreign keys unless told to (rusqlite's SQLite does).
    conn.pragma_update(None, "foreign_keys", false).unwrap();
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
                Poison::DeleteRow | Poison::RawText(_) | Poison::Record(_) => unreachable!(),
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

/// Applies `m` to the record of the user `r` picks (Carol's, who `show` reads, a third of the
/// time); returns their key and what the decoder says of the new bytes (the damage, in the
/// words an error shows, or None when they decode).
fn mutate_record(conn: &rusqlite::Connection, r: Index, m: &Mutation) -> (String, Option<String>) {
    let mut keys: Vec<String> = conn
        .prepare("SELECT key FROM users ORDER BY key")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    keys.extend(std::iter::repeat_n(CAROL.to_string(), keys.len() / 2));
    let key = r.get(&keys).clone();
    let mut b: Vec<u8> = conn
        .query_row("SELECT record FROM users WHERE key = ?1", [&key], |r| {
            r.get(0)
        })
        .unwrap();
    m.apply(&mut b);
    conn.execute(
        "UPDATE users SET record = ?1 WHERE key = ?2",
        rusqlite::params![b, key],
    )
    .unwrap();
    let damage = record::decode(&key, &b, str::to_string)
        .err()
        .map(|d| format!("is damaged: users, user `{key}`: column `record` is damaged {d};"));
    (key, damage)
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
        // For a record changed inside: whose, and what the decoder says of it.
        let (what, record) = match &p {
            Poison::Record(m) => {
                let conn = rusqlite::Connection::open(&env.store).unwrap();
                let (key, damage) = mutate_record(&conn, r, m);
                (Some(format!("the record of {key}")), Some((key, damage)))
            }
            _ => (corrupt(&env.store, t, r, c, &p), None),
        };
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
            let o = env.run(args);
            check(&what, args, &o)?;
            let Some((key, damage)) = &record else {
                continue;
            };
            // What reads every user, or the one changed, fails exactly when the record does
            // not decode, naming the row, the byte and what is wrong there.
            let reads_it = args == ["store", "export"] || (args[0] == "show" && key == CAROL);
            match damage {
                Some(damage) => prop_assert!(
                    if reads_it {
                        o.code == 1 && o.stderr.contains(damage.as_str())
                    } else {
                        o.stderr.contains(damage.as_str()) || !o.stderr.contains("column `record`")
                    },
                    "{what}: mfactl {args:?} exited {} without {damage:?}:\n{}",
                    o.code,
                    o.all()
                ),
                None => prop_assert!(
                    !o.stderr.contains("column `record`") && (o.code == 0 || !reads_it),
                    "{what}: mfactl {args:?} exited {} on a record that decodes:\n{}",
                    o.code,
                    o.all()
                ),
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A copy of the base store, changed by `sql` (run with CHECK constraints and foreign keys off,
/// as a hand edit with the sqlite3 shell can).
fn tampered(sql: &str) -> Env {
    let env = Env::bare();
    std::fs::copy(&base().env.store, &env.store).unwrap();
    let conn = rusqlite::Connection::open(&env.store).unwrap();
    conn.pragma_update(None, "ignore_check_constraints", true)
        .unwrap();
    conn.pragma_update(None, "foreign_keys", false).unwrap();
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

const CAROL: &str = "carol@contoso.example";

/// Carol's record in the base store.
fn carol_record() -> Vec<u8> {
    let conn = rusqlite::Connection::open(&base().env.store).unwrap();
    conn.query_row("SELECT record FROM users WHERE key = ?1", [CAROL], |r| {
        r.get(0)
    })
    .unwrap()
}

/// Carol's record decoded (groups by key).
fn carol() -> Stored {
    record::decode(CAROL, &carol_record(), str::to_string).unwrap()
}

/// SQL that sets Carol's record to `bytes`.
fn set_carol(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("UPDATE users SET record = x'{hex}' WHERE key = '{CAROL}'")
}

/// Where `needle` starts in `bytes`.
fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the record"))
}

/// The commands that read Carol: they all name her row the same way.
fn reading_carol() -> [Vec<String>; 3] {
    [
        vec!["store".into(), "export".into()],
        vec!["show".into(), CAROL.into()],
        vec![
            "plan".into(),
            format!("{EXAMPLES}/manifests/stolen-laptop-carol.yaml"),
            "--actor".into(),
            GARY.into(),
        ],
    ]
}

/// A value of a type mfactl never writes failed with rusqlite's "Invalid column type Text at
/// index: 3, name: enabled", naming neither the table nor the row. In layout v2 a user is one
/// record: a record that is not a blob, or whose bytes do not decode, is named with the byte,
/// the part of the record and what is wrong there.
#[test]
fn a_value_of_the_wrong_type_names_its_table_row_and_column() {
    let b = carol_record();
    let len = b.len();
    let row = format!("users, user `{CAROL}`: column `record`");
    let damaged = |what: &str| format!("{row} is damaged {what}");
    // Her session `s-carol-2` and her trusted device's name `carol-phone` (each text is its
    // length, then its bytes).
    let session = find(&b, b"\x09s-carol-2");
    let device_name = find(&b, b"\x0bcarol-phone");
    let mut not_utf8 = b.clone();
    not_utf8[device_name + 1] = 0xff;
    // Times outside the years 0000 to 9999: the first time of the record (her password's,
    // right after the display name `Carol White`), and her session's.
    let mut late = carol();
    late.user.password_set_at = Some(Timestamp::from_unix(record::LAST_TIME + 1));
    let late = record::to_bytes(CAROL, &late);
    let mut early = carol();
    early.user.sessions[0].issued_at = Timestamp::from_unix(i64::MIN);
    let early = record::to_bytes(CAROL, &early);
    assert_eq!(find(&early, b"\x09s-carol-2"), session);
    // A trusted device twice (as the tables of schema 3 could not hold it).
    let mut twice = carol();
    let mut again = twice.user.trusted_devices[0].clone();
    again.name = "carol-phone-again".into();
    twice.user.trusted_devices.push(again);
    let twice = record::to_bytes(CAROL, &twice);
    let second = twice
        .windows(10)
        .rposition(|w| w == b"\x09d-carol-2")
        .unwrap();
    let cases = [
        (
            format!("UPDATE users SET record = 'x' WHERE key = '{CAROL}'"),
            format!("{row} holds a text of 1 byte (not shown: a record holds password hashes), where mfactl writes a blob"),
        ),
        (
            format!("UPDATE users SET record = 42 WHERE key = '{CAROL}'"),
            format!("{row} holds the integer 42, where mfactl writes a blob"),
        ),
        (
            format!("UPDATE users SET record = x'' WHERE key = '{CAROL}'"),
            damaged("at byte 0 of 0, in the header: the record ends early"),
        ),
        (
            format!("UPDATE users SET record = substr(record, 1, 10) WHERE key = '{CAROL}'"),
            damaged("at byte 2 of 10, in the display name: a text of 11 bytes where 7 bytes are left"),
        ),
        (
            format!(
                "UPDATE users SET record = substr(record, 1, {}) WHERE key = '{CAROL}'",
                session + 4
            ),
            damaged(&format!(
                "at byte {session} of {}, in the sessions: a text of 9 bytes where 3 bytes are left",
                session + 4
            )),
        ),
        (
            format!(
                "UPDATE users SET record = CAST(x'02' || substr(record, 2) AS BLOB) WHERE key = '{CAROL}'"
            ),
            damaged(&format!(
                "at byte 0 of {len}, in the header: record version 2, where this mfactl reads version 1"
            )),
        ),
        (
            set_carol(&not_utf8),
            damaged(&format!(
                "at byte {device_name} of {len}, in the trusted devices: a text that is not UTF-8"
            )),
        ),
        (
            set_carol(&late),
            damaged(&format!(
                "at byte 14 of {}, in the times: the time 253402300800 lies outside the years 0000 to 9999",
                late.len()
            )),
        ),
        (
            set_carol(&early),
            damaged(&format!(
                "at byte {} of {}, in the sessions: the time -9223372036854775808 lies outside the years 0000 to 9999",
                session + 10,
                early.len()
            )),
        ),
        (
            set_carol(&twice),
            damaged(&format!(
                "at byte {second} of {}, in the trusted devices: a second trusted device with id `d-carol-2`",
                twice.len()
            )),
        ),
        (
            format!("UPDATE users SET record = CAST(record || x'00' AS BLOB) WHERE key = '{CAROL}'"),
            damaged(&format!(
                "at byte {len} of {}, in the end: 1 byte after the record",
                len + 1
            )),
        ),
    ];
    for (sql, needle) in &cases {
        let env = tampered(sql);
        for args in reading_carol() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = env.run(&args);
            assert_eq!(o.code, 1, "{sql}: {args:?}: {}", o.all());
            refused(
                &o,
                &[&format!(
                    "is damaged: {needle}; it was changed outside mfactl"
                )],
            );
        }
    }
    // NULL: SQLite keeps `record NOT NULL` even with CHECK constraints off, so a hand edit
    // cannot store one.
    let env = tampered("");
    let conn = rusqlite::Connection::open(&env.store).unwrap();
    conn.pragma_update(None, "ignore_check_constraints", true)
        .unwrap();
    let e = conn
        .execute("UPDATE users SET record = NULL WHERE key = ?1", [CAROL])
        .unwrap_err();
    assert!(e.to_string().contains("NOT NULL"), "{e}");

    // A group's column: everything that reads the groups (export, plans) names it.
    let env = tampered("UPDATE groups SET role_assignable = 'x' WHERE key = 'contractors'");
    for args in [&reading_carol()[0], &reading_carol()[2]] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = env.run(&args);
        refused(
            &o,
            &["is damaged: groups, group `contractors`: column `role_assignable` holds the text `x`"],
        );
    }
    // An audit record's time: `audit` names the record; verify reports it as edited.
    let env = tampered("UPDATE audit SET at = 'x' WHERE seq = 3");
    refused(
        &env.run(&["audit"]),
        &["is damaged: audit, record #3: column `at` holds the text `x`"],
    );
    refused(&env.run(&["audit", "verify"]), &["first at record #3"]);
}

/// `members` is only an index of the records' groups, to find a group's users: a row for a
/// group that does not exist is never read, and changes nothing anyone sees. A record naming a
/// group that `groups` lacks (its row deleted by hand) shows the stored key as the group's
/// name, as the tables of schema 3 did: `show` and `export` still work, and the export does not
/// import until the group is declared again, which that import says.
#[test]
fn a_group_missing_from_groups_shows_as_its_key() {
    let clean = tampered("");
    let before: Vec<Out> = reading_carol()
        .iter()
        .map(|args| clean.ok(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    let env = tampered(&format!(
        "INSERT INTO members (group_key, user_key) VALUES ('ghost', '{CAROL}'), ('phantom', 'nobody@contoso.example')"
    ));
    for (args, was) in reading_carol().iter().zip(&before) {
        let o = env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.stdout, was.stdout, "{args:?}");
    }

    let mut ghost = carol();
    ghost.user.groups = vec!["Ghost".into()];
    let env = tampered(&set_carol(&record::to_bytes(CAROL, &ghost)));
    let shown = env.ok(&["show", CAROL]).stdout;
    assert!(shown.contains("groups:\n- ghost\n"), "{shown}");
    let export = env.ok(&["store", "export"]).stdout;
    assert!(export.contains("  groups:\n  - ghost\n"), "{export}");
    let fresh = Env::empty();
    fresh.write("export.yaml", &export);
    refused(
        &fresh.run(&["store", "import", "export.yaml"]),
        &["user `carol@contoso.example` is in group `ghost`, which is neither in the file's `groups:` nor in the store"],
    );
}
