//! Checks against a real server, run only when `MFACTL_TEST_POSTGRES` holds an admin URL (the
//! project's throwaway-server harness lives in tests/common/pg.rs); each test works in a
//! database of its own, created and dropped here.

use super::*;

/// A fresh database on the server of `MFACTL_TEST_POSTGRES`, and its URL; `None` (with one
/// printed line) when the variable is unset.
fn fresh_db(tag: &str) -> Option<String> {
    let Ok(admin) = std::env::var("MFACTL_TEST_POSTGRES") else {
        eprintln!("skipped: MFACTL_TEST_POSTGRES is not set");
        return None;
    };
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("admin connection");
    let db = format!("mfactl_t_{tag}_{}", std::process::id());
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(format!("{base}/{db}?sslmode=disable"))
}

#[test]
fn init_creates_then_is_current() {
    let Some(url) = fresh_db("init") else { return };
    let pg = Postgres::connect(&url, Duration::from_secs(5)).unwrap();
    assert!(matches!(pg.check_version(), Err(StoreError::Missing(_))));
    assert_eq!(pg.init().unwrap(), Init::Created);
    assert_eq!(pg.init().unwrap(), Init::Current);
    pg.check_version().unwrap();
    assert_eq!(pg.revision().unwrap(), 0);
    assert!(pg.is_blank().unwrap());
}

/// An admin connection to the test server.
fn admin() -> postgres::Client {
    let url = std::env::var("MFACTL_TEST_POSTGRES").expect("checked by fresh_db");
    postgres::Client::connect(&url, postgres::NoTls).expect("admin connection")
}

fn user(id: &str, groups: &[&str]) -> User {
    serde_json::from_value(serde_json::json!({"id": id, "groups": groups})).unwrap()
}

fn record(u: &User) -> Vec<u8> {
    crate::store::record::to_bytes(&crate::model::key_of(&u.id), &Stored::new(u.clone()))
}

fn audit_row(seq: i64, user_key: &str, prev: &str) -> AuditRow {
    AuditRow {
        seq,
        at: 1_700_000_000 + seq,
        actor: "erin@contoso.example".into(),
        role: "authentication-administrator".into(),
        action: "revoke-sessions".into(),
        user: user_key.into(),
        user_key: user_key.into(),
        before: "{\"sessions\":2}".into(),
        after: "{\"sessions\":0}".into(),
        sources: "[\"x.yaml\"]".into(),
        plan_id: "p1".into(),
        prev_hash: prev.into(),
        hash: format!("h{seq}"),
        requested_by: (seq % 2 == 0).then(|| "{\"user\":\"bob\"}".to_string()),
    }
}

/// Keys whose byte order differs from a linguistic collation's: the store must keep Rust's.
const KEYS: &[&str] = &["a-b", "a_b", "ab", "a.b", "b", "z", "ä", "a~", "A1"];

/// Fills a store with groups, users (some in groups), audit rows and an applied plan.
fn fill(pg: &Postgres) {
    pg.begin_write().unwrap();
    pg.upsert_groups(&[
        Group {
            name: "Staff".into(),
            role_assignable: false,
        },
        Group {
            name: "admins".into(),
            role_assignable: true,
        },
    ])
    .unwrap();
    let users: Vec<User> = KEYS
        .iter()
        .map(|k| user(k, if k.starts_with('a') { &["Staff"] } else { &[] }))
        .collect();
    let recs: Vec<(String, Vec<u8>)> = users
        .iter()
        .map(|u| (crate::model::key_of(&u.id), record(u)))
        .collect();
    let pairs: Vec<(&str, &[u8])> = recs
        .iter()
        .map(|(k, r)| (k.as_str(), r.as_slice()))
        .collect();
    pg.upsert_records(&pairs).unwrap();
    let members: Vec<(&str, &str)> = recs
        .iter()
        .filter(|(k, _)| k.starts_with('a'))
        .map(|(k, _)| ("staff", k.as_str()))
        .collect();
    pg.insert_members(&members).unwrap();
    pg.insert_members(&members).unwrap(); // present ones are left
    let rows = vec![
        audit_row(1, "ab", ""),
        audit_row(2, "b", "h1"),
        audit_row(3, "ab", "h2"),
    ];
    pg.append_audit(&rows).unwrap();
    pg.set_audit_head("h3", 3).unwrap();
    assert_eq!(pg.bump_revision().unwrap(), 1);
    pg.record_applied("p1", Timestamp::from_unix(1_700_000_000), 1)
        .unwrap();
    pg.commit_write().unwrap();
}

#[test]
fn reads_see_what_writes_wrote_in_byte_order() {
    let Some(url) = fresh_db("rw") else { return };
    let pg = Postgres::connect(&url, Duration::from_secs(5)).unwrap();
    pg.init().unwrap();
    fill(&pg);
    let mut sorted: Vec<String> = KEYS.iter().map(|k| crate::model::key_of(k)).collect();
    sorted.sort();
    assert_eq!(pg.revision().unwrap(), 1);
    assert!(!pg.is_blank().unwrap());
    assert!(pg.plan_applied("p1").unwrap());
    assert!(!pg.plan_applied("p2").unwrap());
    let groups = pg.load_groups().unwrap();
    assert_eq!(groups.keys().collect::<Vec<_>>(), ["admins", "staff"]);
    let loaded = pg.load_keys(&["ab".into(), "nobody".into()]).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded["ab"].groups, ["Staff"]);
    let named: BTreeSet<String> = ["b".to_string(), "ghost".to_string()].into();
    let selected = pg.select(&named, &["staff".to_string()].into()).unwrap();
    let mut want: Vec<String> = sorted
        .iter()
        .filter(|k| k.starts_with('a'))
        .cloned()
        .collect();
    want.extend(["b".to_string(), "ghost".to_string()]);
    want.sort();
    assert_eq!(selected, want);
    assert_eq!(pg.selected_named(&named).unwrap(), ["b".to_string()].into());
    let batch = pg.load_selected("a.b", "ab").unwrap();
    let want: Vec<&String> = sorted
        .iter()
        .filter(|k| ("a.b".."ab~").contains(&k.as_str()) && k.as_str() <= "ab")
        .collect();
    assert_eq!(batch.keys().collect::<Vec<_>>(), want);
    let mut batches = Vec::new();
    pg.user_batches(4, &mut |b| {
        batches.push(b.into_keys().collect::<Vec<_>>());
        true
    })
    .unwrap();
    assert_eq!(batches.concat(), sorted);
    assert_eq!(batches[0].len(), 4);
    let recs = pg.read_records(&["b", "ab", "nobody"]).unwrap();
    assert_eq!(
        recs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["ab", "b"]
    );
    let mut audit = Vec::new();
    pg.each_audit(Some("AB"), None, &mut |r| audit.push(r.seq))
        .unwrap();
    assert_eq!(audit, [1, 3]);
    let mut audit = Vec::new();
    pg.each_audit(None, Some(Timestamp::from_unix(1_700_000_002)), &mut |r| {
        audit.push(r.seq)
    })
    .unwrap();
    assert_eq!(audit, [2, 3]);
    let mut rows = Vec::new();
    pg.each_audit_row(&mut |r| rows.push(r.clone())).unwrap();
    assert_eq!(rows[1], audit_row(2, "b", "h1"));
    assert_eq!(rows[0].requested_by, None);
    assert_eq!(pg.max_audit_seq().unwrap(), 3);
    assert!(matches!(
        pg.audit_head().unwrap(),
        Head::Recorded { count: 3, .. }
    ));
    // Replacing and removing.
    pg.begin_write().unwrap();
    let u = user("b", &["admins"]);
    pg.update_records(&[("b", &record(&u))]).unwrap();
    pg.insert_members(&[("admins", "b")]).unwrap();
    pg.delete_members(&[("staff", "ab")]).unwrap();
    pg.delete_members_of(&["a-b"]).unwrap();
    pg.commit_write().unwrap();
    assert_eq!(pg.load_keys(&["b".into()]).unwrap()["b"].groups, ["admins"]);
    let sel = pg
        .select(&BTreeSet::new(), &["staff".to_string()].into())
        .unwrap();
    assert!(!sel.contains(&"ab".to_string()) && !sel.contains(&"a-b".to_string()));
}

#[test]
fn copy_moves_every_row_exactly() {
    let Some(url) = fresh_db("dump") else { return };
    let Some(url2) = fresh_db("restore") else {
        return;
    };
    let src = Postgres::connect(&url, Duration::from_secs(5)).unwrap();
    src.init().unwrap();
    fill(&src);
    let dst = Postgres::connect(&url2, Duration::from_secs(5)).unwrap();
    dst.init().unwrap();
    assert!(dst.is_blank().unwrap());
    let mut pieces = Vec::new();
    src.dump(&mut |p| {
        pieces.push(p);
        Ok(())
    })
    .unwrap();
    assert!(matches!(pieces[0], Piece::Revision(1)));
    dst.begin_write().unwrap();
    dst.restore(&pieces).unwrap();
    dst.commit_write().unwrap();
    let mut again = Vec::new();
    dst.dump(&mut |p| {
        again.push(p);
        Ok(())
    })
    .unwrap();
    assert_eq!(pieces, again);
}

#[test]
fn a_held_lock_times_out_as_locked() {
    let Some(url) = fresh_db("lock") else { return };
    let a = Postgres::connect(&url, Duration::from_secs(5)).unwrap();
    a.init().unwrap();
    let b = Postgres::connect(&url, Duration::from_millis(200)).unwrap();
    let c = Postgres::connect(&url, Duration::ZERO).unwrap();
    a.begin_write().unwrap();
    let t = std::time::Instant::now();
    assert!(
        matches!(b.begin_write(), Err(StoreError::Locked(_, d)) if d == Duration::from_millis(200))
    );
    assert!(t.elapsed() >= Duration::from_millis(190));
    assert!(matches!(c.begin_write(), Err(StoreError::Locked(..))));
    // A failed begin leaves no transaction behind: reads still work, and so does the lock later.
    assert_eq!(b.revision().unwrap(), 0);
    a.rollback_write();
    b.begin_write().unwrap();
    b.commit_write().unwrap();
}

#[test]
fn a_read_only_role_reads_and_is_refused_writes() {
    let Some(url) = fresh_db("ro") else { return };
    let owner = Postgres::connect(&url, Duration::from_secs(5)).unwrap();
    owner.init().unwrap();
    fill(&owner);
    let role = format!("mfactl_ro_{}", std::process::id());
    let db = url
        .rsplit_once('/')
        .unwrap()
        .1
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let mut a = admin();
    a.batch_execute(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'ro-pw'"
    ))
    .unwrap();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA mfactl TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA mfactl TO {role}"
    ))
    .unwrap();
    let base = url
        .split("://")
        .nth(1)
        .unwrap()
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let ro_url = format!("postgres://{role}:ro-pw@{base}/{db}?sslmode=disable");
    let ro = Postgres::connect(&ro_url, Duration::from_secs(1)).unwrap();
    ro.check_version().unwrap();
    ro.snapshot_begin().unwrap();
    assert_eq!(ro.revision().unwrap(), 1);
    ro.select(&BTreeSet::new(), &["staff".to_string()].into())
        .unwrap();
    ro.load_selected("a", "b").unwrap();
    ro.each_audit_row(&mut |_| {}).unwrap();
    ro.snapshot_end(true).unwrap();
    // The advisory lock is not a write: the refusal comes with the first write.
    ro.begin_write().unwrap();
    let e = ro.bump_revision().unwrap_err();
    assert!(matches!(e, StoreError::ReadOnly(_)), "{e}");
    ro.rollback_write();
    // A read the role may not make names the grant.
    c.batch_execute(&format!("REVOKE SELECT ON mfactl.audit FROM {role}"))
        .unwrap();
    let e = ro.max_audit_seq().unwrap_err().to_string();
    assert!(e.contains("GRANT SELECT"), "{e}");
    drop(ro);
    drop(c);
    let _ = a.batch_execute(&format!(
        "DROP DATABASE {db} WITH (FORCE); DROP ROLE {role}"
    ));
}

#[test]
fn a_damaged_record_is_named() {
    let Some(url) = fresh_db("damage") else {
        return;
    };
    let pg = Postgres::connect(&url, Duration::from_secs(5)).unwrap();
    pg.init().unwrap();
    fill(&pg);
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute("UPDATE mfactl.users SET record = '\\x0700' WHERE key = 'b'")
        .unwrap();
    let e = pg.load_keys(&["b".into()]).unwrap_err().to_string();
    assert!(
        e.contains("users, user `b`: column `record` is damaged at byte 0"),
        "{e}"
    );
    let lenient = pg.read_records_lenient(&["b", "z"]).unwrap();
    assert!(lenient[0].1.is_none() && lenient[1].1.is_some());
    c.batch_execute("DELETE FROM mfactl.audit_head").unwrap();
    assert!(matches!(pg.audit_head().unwrap(), Head::Broken(w) if w == "is missing"));
    c.batch_execute("DELETE FROM mfactl.meta WHERE key = 'revision'")
        .unwrap();
    let e = pg.revision().unwrap_err().to_string();
    assert!(e.contains("the `revision` row is missing"), "{e}");
}

#[test]
fn a_foreign_schema_is_refused_and_a_newer_one_too() {
    let Some(url) = fresh_db("foreign") else {
        return;
    };
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute("CREATE SCHEMA mfactl; CREATE TABLE mfactl.t (x int)")
        .unwrap();
    let pg = Postgres::connect(&url, Duration::from_secs(5)).unwrap();
    assert!(matches!(pg.init(), Err(StoreError::Foreign(_))));
    assert!(matches!(pg.check_version(), Err(StoreError::Foreign(_))));
    c.batch_execute("DROP TABLE mfactl.t").unwrap();
    assert_eq!(pg.init().unwrap(), Init::Created);
    c.batch_execute("UPDATE mfactl.meta SET value = 99 WHERE key = 'schema_version'")
        .unwrap();
    assert!(matches!(
        pg.check_version(),
        Err(StoreError::TooNew { found: 99, .. })
    ));
    assert!(matches!(pg.init(), Err(StoreError::TooNew { .. })));
}

#[test]
fn a_connection_lost_in_a_write_says_nothing_was_committed() {
    let Some(url) = fresh_db("lost") else { return };
    let pg = Postgres::connect(&url, Duration::from_secs(5)).unwrap();
    pg.init().unwrap();
    pg.begin_write().unwrap();
    pg.bump_revision().unwrap();
    let mut a = admin();
    a.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mfactl' \
         AND state = 'idle in transaction'",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let e = pg.bump_revision().unwrap_err().to_string();
    assert!(
        e.contains("lost the connection") && e.contains("nothing was committed"),
        "{e}"
    );
    pg.rollback_write();
    let fresh = Postgres::connect(&url, Duration::from_secs(5)).unwrap();
    assert_eq!(fresh.revision().unwrap(), 0);
}

#[test]
fn connection_failures_say_what_to_check_and_never_the_password() {
    let e = Postgres::connect(
        "postgres://u:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
        Duration::ZERO,
    )
    .unwrap_err()
    .to_string();
    assert!(!e.contains("hunter2"), "{e}");
    assert!(e.contains("check the host and port"), "{e}");
    assert!(e.contains("postgres://u@127.0.0.1:1/db"), "{e}");
    let e = Postgres::connect("postgres://u:hunter2@h/db?sslmode=nope", Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(!e.contains("hunter2") && e.contains("sslmode"), "{e}");
}

/// By hand: `MFACTL_PG_TRY=URL cargo test … try_url -- --ignored --nocapture` prints what
/// connecting to URL gives (for checking TLS modes, passwords and messages on a real setup).
#[test]
#[ignore]
fn try_url() {
    let url = std::env::var("MFACTL_PG_TRY").expect("MFACTL_PG_TRY");
    match Postgres::connect(&url, Duration::from_secs(1)) {
        Ok(pg) => {
            let rows = pg
                .query(
                    Op::Read,
                    "t",
                    "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)::text",
                    &[],
                )
                .unwrap();
            println!(
                "connected as {:?}; tls: {}",
                pg,
                rows[0].get::<_, String>(0)
            );
        }
        Err(e) => println!("error: {e}"),
    }
}

/// How an import's users are written, for [`bench_import`].
#[derive(Clone, Copy, Debug)]
enum Upsert {
    /// What `upsert_records` does.
    Chosen,
    /// Always one `INSERT … SELECT FROM unnest … ON CONFLICT`.
    Arrays,
    /// Always `COPY` into a staging table, then `INSERT … ON CONFLICT`.
    Staged,
}

/// Writes `users` as an import does, `BATCH` at a time: read the old records, encode, upsert,
/// add the members; one transaction. Returns the seconds it took.
fn import(pg: &Postgres, users: &[User], how: Upsert) -> f64 {
    const BATCH: usize = 8_192;
    let t = std::time::Instant::now();
    let mut phases = [0f64; 4];
    let mut lap = std::time::Instant::now();
    let mut mark = |i: usize| {
        phases[i] += lap.elapsed().as_secs_f64();
        lap = std::time::Instant::now();
    };
    pg.begin_write().unwrap();
    for chunk in users.chunks(BATCH) {
        let keys: Vec<String> = chunk.iter().map(User::key).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let _old = pg.read_records_lenient(&refs).unwrap();
        mark(0);
        let recs: Vec<Vec<u8>> = chunk
            .iter()
            .zip(&keys)
            .map(|(u, k)| crate::store::record::to_bytes(k, &Stored::new(u.clone())))
            .collect();
        let pairs: Vec<(&str, &[u8])> = refs
            .iter()
            .copied()
            .zip(recs.iter().map(Vec::as_slice))
            .collect();
        match how {
            Upsert::Chosen => pg.upsert_records(&pairs).unwrap(),
            Upsert::Arrays => {
                let recs: Vec<&[u8]> = pairs.iter().map(|p| p.1).collect();
                pg.upsert_by_arrays(&refs, &recs).unwrap()
            }
            Upsert::Staged => {
                let refs: Vec<&(&str, &[u8])> = pairs.iter().collect();
                pg.upsert_staged(&refs).unwrap()
            }
        }
        mark(2);
        let members: Vec<(&str, &str)> = refs.iter().map(|k| ("staff", *k)).collect();
        pg.insert_members(&members).unwrap();
        mark(3);
    }
    pg.bump_revision().unwrap();
    pg.commit_write().unwrap();
    println!(
        "  read old {:.2}s, encode {:.2}s, users {:.2}s, members {:.2}s, commit {:.2}s",
        phases[0],
        phases[1],
        phases[2],
        phases[3],
        lap.elapsed().as_secs_f64()
    );
    t.elapsed().as_secs_f64()
}

/// By hand: `MFACTL_PG_BENCH_USERS=1000000 MFACTL_TEST_POSTGRES=… cargo test --release …
/// bench_import -- --ignored --nocapture`: an import's writes at scale, each way of upserting.
#[test]
#[ignore]
fn bench_import() {
    let n: usize = std::env::var("MFACTL_PG_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let template: User = serde_json::from_value(serde_json::json!({
        "id": "x", "display-name": "Some Body", "groups": ["Staff"],
        "password-set-at": "2026-01-01T00:00:00Z",
        "methods": [{"id": "m-1", "kind": "authenticator-app", "registered-at": "2025-06-01T00:00:00Z"}],
        "sessions": [{"id": "s-1", "issued-at": "2026-11-20T10:00:00Z"}]
    }))
    .unwrap();
    let users: Vec<User> = (0..n)
        .map(|i| {
            let mut u = template.clone();
            u.id = format!("user{i:07}@contoso.example");
            u
        })
        .collect();
    let ways = match std::env::var("MFACTL_PG_BENCH_WAYS").as_deref() {
        Ok("chosen") => vec![Upsert::Chosen],
        _ => vec![Upsert::Chosen, Upsert::Arrays, Upsert::Staged],
    };
    for how in ways {
        let Some(url) = fresh_db(&format!("bench{}", how as u8)) else {
            return;
        };
        let pg = Postgres::connect(&url, Duration::from_secs(5)).unwrap();
        pg.init().unwrap();
        pg.begin_write().unwrap();
        pg.upsert_groups(&[Group {
            name: "Staff".into(),
            role_assignable: false,
        }])
        .unwrap();
        pg.commit_write().unwrap();
        let fresh = import(&pg, &users, how);
        let again = import(&pg, &users, how);
        println!(
            "{how:?}: {n} users: new {fresh:.2}s ({:.0}/s), again {again:.2}s ({:.0}/s)",
            n as f64 / fresh,
            n as f64 / again
        );
    }
}
