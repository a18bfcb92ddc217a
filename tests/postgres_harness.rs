//! The PostgreSQL test harness itself (tests/common/pg.rs): the server answers with a real
//! password check, each test's database is fresh, the roles block of docs/postgres.md grants
//! what the page says and nothing more, TLS works up to `verify-full`, and the server does not
//! outlive the process that started it.

mod common;
use common::pg;

use postgres::error::SqlState;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What `sql` run by `client` failed with; panics if it succeeded.
fn refused(client: &mut postgres::Client, sql: &str) -> SqlState {
    match client.batch_execute(sql) {
        Ok(()) => panic!("allowed, and should not be: {sql}"),
        Err(e) => e
            .code()
            .cloned()
            .unwrap_or_else(|| panic!("{sql} failed without an SQLSTATE: {e}")),
    }
}

fn count(client: &mut postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[test]
fn the_server_answers_with_a_checked_password() {
    let Some(db) = pg::database() else { return };
    let mut admin = db.admin();
    let one: i32 = admin.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    let (user, current): (String, String) = {
        let row = admin
            .query_one("SELECT current_user::text, current_database()::text", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(current, db.name());
    assert!(db.url().contains(&format!("://{user}:")), "{}", db.url());

    // The password is checked (scram-sha-256 on TCP): a wrong one and none at all are refused.
    let wrong = db.url().replace(db.admin_password(), "not-the-password");
    let e = db
        .connect(&wrong)
        .err()
        .expect("a wrong password was accepted");
    assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{e}");
    assert!(
        db.connect(&db.url_without_password()).is_err(),
        "no password was accepted"
    );

    // The psql client, with the password from PGPASSWORD rather than the URL.
    let o = db.psql(&db.url_without_password(), "SELECT 40 + 2", &[]);
    assert_ne!(o.code, 0, "psql got in without a password: {}", o.all());
    let o = db.psql(
        &db.url_without_password(),
        "SELECT 40 + 2",
        &[("PGPASSWORD", db.admin_password())],
    );
    assert_eq!((o.code, o.stdout.trim()), (0, "42"), "{}", o.all());
}

#[test]
fn each_test_gets_a_fresh_database() {
    let Some(first) = pg::database() else { return };
    let second = pg::database().expect("a second database on the same server");
    assert_ne!(first.name(), second.name());
    assert_eq!(first.port(), second.port(), "one server per test binary");
    for db in [&first, &second] {
        let mut c = db.admin();
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'mfactl'"
            ),
            0,
            "{} already has schema mfactl",
            db.name()
        );
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            ),
            0,
            "{} is not empty",
            db.name()
        );
    }
    first.execute("CREATE SCHEMA mfactl; CREATE TABLE mfactl.meta (k text PRIMARY KEY)");
    assert_eq!(
        count(
            &mut second.admin(),
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'mfactl'"
        ),
        0,
        "a table made in {} shows in {}",
        first.name(),
        second.name()
    );

    // Dropped with its Db, connections and all.
    let name = first.name().to_string();
    let _held = first.admin();
    drop(first);
    let left = count(
        &mut second.admin(),
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    );
    assert_eq!(left, 0, "{name} outlived its Db");
}

/// The documented GRANTs, run as written: the reader reads, the writer writes, neither creates,
/// and tables a later migration adds are covered too (default privileges).
#[test]
fn the_documented_roles_read_and_write_as_the_page_says() {
    let Some(db) = pg::database() else { return };
    // Stand-ins for what `mfactl init` creates: a table with a generated key (a sequence), and
    // one with a text key.
    db.execute(
        "CREATE SCHEMA mfactl;
         CREATE TABLE mfactl.probe (id bigserial PRIMARY KEY, v text NOT NULL);
         CREATE TABLE mfactl.meta (k text COLLATE \"C\" PRIMARY KEY, v text NOT NULL);
         INSERT INTO mfactl.probe (v) VALUES ('by the owner');
         INSERT INTO mfactl.meta VALUES ('schema', '1');",
    );
    db.grant_roles();
    // Running it again (another test's database, or a re-run after an upgrade) is harmless.
    db.grant_roles();
    // A table that a later `mfactl init` adds, made by the same owner after the grants.
    db.execute("CREATE TABLE mfactl.later (id bigserial PRIMARY KEY, v text)");

    let mut reader = db
        .connect(&db.url_as(pg::READER))
        .unwrap_or_else(|e| panic!("{} cannot connect: {e}", pg::READER));
    assert_eq!(count(&mut reader, "SELECT count(*) FROM mfactl.probe"), 1);
    assert_eq!(count(&mut reader, "SELECT count(*) FROM mfactl.meta"), 1);
    assert_eq!(count(&mut reader, "SELECT count(*) FROM mfactl.later"), 0);
    for sql in [
        "INSERT INTO mfactl.probe (v) VALUES ('by the reader')",
        "INSERT INTO mfactl.later (v) VALUES ('by the reader')",
        "UPDATE mfactl.meta SET v = '2'",
        "DELETE FROM mfactl.probe",
        "TRUNCATE mfactl.probe",
        "CREATE TABLE mfactl.mine (x int)",
        "CREATE SCHEMA elsewhere",
    ] {
        assert_eq!(
            refused(&mut reader, sql),
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{sql}"
        );
    }
    // Advisory locks need no grant: the reader may take them (and the writer, below).
    reader
        .batch_execute("SELECT pg_advisory_lock(1296449859, 1); SELECT pg_advisory_unlock_all()")
        .expect("advisory locks as the reader");

    let mut writer = db
        .connect(&db.url_as(pg::WRITER))
        .unwrap_or_else(|e| panic!("{} cannot connect: {e}", pg::WRITER));
    let mut tx = writer.transaction().unwrap();
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(1296449859, 1);
         INSERT INTO mfactl.probe (v) VALUES ('by the writer');
         INSERT INTO mfactl.later (v) VALUES ('by the writer');
         UPDATE mfactl.meta SET v = '2' WHERE k = 'schema';
         DELETE FROM mfactl.probe WHERE v = 'by the owner';",
    )
    .expect("the writer inserts, updates and deletes");
    tx.commit().unwrap();
    let mut admin = db.admin();
    let rows: Vec<String> = admin
        .query("SELECT v FROM mfactl.probe ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["by the writer"]);
    assert_eq!(count(&mut admin, "SELECT count(*) FROM mfactl.later"), 1);
    for sql in [
        "CREATE TABLE mfactl.mine (x int)",
        "DROP TABLE mfactl.probe",
    ] {
        let code = refused(&mut writer, sql);
        assert!(code == SqlState::INSUFFICIENT_PRIVILEGE, "{sql}: {code:?}");
    }
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'mfactl'"
        ),
        3
    );
}

/// The roles block of docs/postgres.md is what the harness runs, so it must stay in the shape
/// the harness reads: the two roles, the psql password variables, the database `mfactl`.
#[test]
fn the_documented_roles_block_is_the_one_the_harness_runs() {
    let block = pg::roles_block();
    for needle in [
        "CREATE ROLE mfactl_reader LOGIN PASSWORD :'reader_password';",
        "CREATE ROLE mfactl_writer LOGIN PASSWORD :'writer_password';",
        "GRANT CONNECT ON DATABASE mfactl TO mfactl_reader, mfactl_writer;",
        "GRANT USAGE ON SCHEMA mfactl TO mfactl_reader, mfactl_writer;",
        "GRANT SELECT ON ALL TABLES IN SCHEMA mfactl TO mfactl_reader, mfactl_writer;",
        "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA mfactl TO mfactl_writer;",
    ] {
        assert!(
            block.contains(needle),
            "{needle:?} not in the block:\n{block}"
        );
    }
    assert!(
        !block.contains("GRANT ALL") && !block.contains("SUPERUSER"),
        "the roles get only what they need:\n{block}"
    );
}

/// `sslmode=require` encrypts; `verify-full` checks the certificate against the harness's CA
/// for `localhost` and refuses another CA; `disable` does not encrypt, so the check can fail.
#[test]
fn tls_works_up_to_verify_full() {
    let Some(db) = pg::database() else { return };
    let Some(ca) = db.tls_root_cert() else {
        assert!(
            std::env::var_os("MFACTL_TEST_POSTGRES").is_some(),
            "the harness's own server has no certificate"
        );
        eprintln!("skipped: MFACTL_TEST_POSTGRES names a server whose certificate the harness does not have");
        return;
    };
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let localhost = db.url().replace("@127.0.0.1:", "@localhost:");
    let ca = ca.display();
    for (url, wanted) in [
        (format!("{}?sslmode=disable", db.url()), "f"),
        (format!("{}?sslmode=require", db.url()), "t"),
        (
            format!("{localhost}?sslmode=verify-full&sslrootcert={ca}"),
            "t",
        ),
        (
            format!("{}?sslmode=verify-full&sslrootcert={ca}", db.url()),
            "t",
        ),
    ] {
        let o = db.psql(&url, ssl, &[]);
        assert_eq!(
            (o.code, o.stdout.trim()),
            (0, wanted),
            "{}\n{}",
            url.replace(db.admin_password(), "…"),
            o.all()
        );
    }

    // Another CA: verify-full refuses the server, require does not check.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other.crt");
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(other.path().join("other.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let url = format!(
        "{localhost}?sslmode=verify-full&sslrootcert={}",
        other_ca.display()
    );
    let o = db.psql(&url, ssl, &[]);
    assert_ne!(o.code, 0, "verify-full accepted a server of another CA");
    assert!(
        o.stderr.contains("certificate verify failed"),
        "{}",
        o.all()
    );
}

#[test]
fn terminate_backends_ends_the_named_connections_only() {
    let Some(db) = pg::database() else { return };
    db.execute("CREATE SCHEMA mfactl");
    db.grant_roles();
    let mut writer = db.connect(&db.url_as(pg::WRITER)).unwrap();
    let mut admin = db.admin();
    assert_eq!(db.terminate_backends(pg::WRITER), 1);
    let e = writer
        .batch_execute("SELECT 1")
        .expect_err("the writer's connection survived");
    assert!(
        e.is_closed() || e.code() == Some(&SqlState::ADMIN_SHUTDOWN),
        "{e}"
    );
    // The admin's own connection is not among them.
    assert_eq!(count(&mut admin, "SELECT 1::bigint"), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let who = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{}' AND datname = '{}'",
        pg::WRITER,
        db.name()
    );
    while count(&mut admin, &who) > 0 {
        assert!(
            Instant::now() < deadline,
            "the writer's backend is still there"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(db.terminate_backends(pg::WRITER), 0);
}

/// Not a test on its own: the_server_stops_when_its_test_process_exits runs it in a process of
/// its own, which starts a server, says where it is, and exits.
#[test]
#[ignore = "run by the_server_stops_when_its_test_process_exits"]
fn harness_child_starts_a_server_and_exits() {
    let Some(db) = pg::database() else { return };
    let (pid, dir) = db.own_server().expect("the harness started its own server");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // On a line of its own: libtest has printed "test NAME ... " before it.
    println!("\npostmaster={pid} dir={}", dir.display());
    // The process exits without dropping the server: only the closed pipe can stop it.
    std::mem::forget(db);
}

#[test]
fn the_server_stops_when_its_test_process_exits() {
    let o = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "harness_child_starts_a_server_and_exits",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("MFACTL_TEST_POSTGRES")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "the child failed:\n{stdout}{stderr}");
    if stderr.contains("skipped:") {
        eprintln!(
            "skipped: the child test process had no PostgreSQL ({})",
            stderr.trim()
        );
        return;
    }
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("postmaster=").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("the child named no server:\n{stdout}{stderr}"));
    let (pid, dir) = line.split_once(" dir=").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .filter(|stat| {
                // A zombie has exited; a reused pid is someone else's.
                let state = stat.rsplit_once(')').map(|(_, s)| s.trim_start());
                !state.is_some_and(|s| s.starts_with('Z')) && stat.contains("(postgres)")
            })
            .is_some()
    };
    let using_dir = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                cmdline
                    .contains(dir)
                    .then(|| format!("{:?}: {cmdline}", e.file_name()))
            })
            .collect()
    };
    while running(pid) || !using_dir().is_empty() || Path::new(dir).exists() {
        assert!(
            Instant::now() < deadline,
            "30 s after its test process exited, the server is still there: postmaster {pid} \
             running: {}; its dir {dir} exists: {}; processes using it: {:?}",
            running(pid),
            Path::new(dir).exists(),
            using_dir()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
