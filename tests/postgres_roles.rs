//! Least privilege on a PostgreSQL store: with the read-only role of docs/postgres.md,
//! `validate`, `plan`, `show`, `audit` and `audit verify` work, and anything that writes fails at
//! once with a message saying the role may not write (no retry, nothing changed); the writer
//! role applies. The roles and GRANTs are the documented ones (`pg::Db::grant_roles`).

mod common;
use common::*;

const ADMIN: &str = "gary@contoso.example";

/// The example tenant on a fresh database, initialised and imported by the owner, with the
/// documented roles granted; `None` where the machine has no PostgreSQL.
fn tenant() -> Option<(Env, pg::Db)> {
    let db = pg::database()?;
    let mut env = Env::bare();
    env.store = db.url().into();
    env.ok(&["init"]);
    env.ok(&["store", "import", &format!("{EXAMPLES}/directory.yaml")]);
    db.grant_roles();
    env.use_example_policies();
    env.write(
        "m/off.yaml",
        &manifest(
            "off",
            "  - users: [bob@contoso.example]\n    revoke-sessions-before: 2026-11-27T09:00:00Z\n",
        ),
    );
    Some((env, db))
}

#[test]
fn the_read_only_role_plans_shows_and_verifies_but_never_writes() {
    let Some((env, db)) = tenant() else { return };
    let reader = db.url_as(pg::READER);
    let as_reader = |args: &[&str]| env.run_env(args, &[("MFACTL_STORE", &reader)]);
    for args in [
        &["validate", "m"][..],
        &["--actor", ADMIN, "plan", "m"],
        &[
            "--actor",
            ADMIN,
            "plan",
            "m",
            "--format",
            "json",
            "--out",
            "plan.json",
        ],
        &["show", "bob@contoso.example"],
        &["audit"],
        &["audit", "verify"],
        &["store", "export"],
    ] {
        let o = as_reader(args);
        assert_eq!(o.code, 0, "{args:?} as the reader: {}", o.all());
    }
    assert!(
        as_reader(&["--actor", ADMIN, "plan", "m"])
            .stdout
            .contains("revoke-sessions"),
        "the reader's plan has the change"
    );
    let before = env.export();
    let started = std::time::Instant::now();
    for args in [
        &["--actor", ADMIN, "apply", "m", "--auto-approve"][..],
        &["--actor", ADMIN, "apply", "--plan", "plan.json"],
        &["store", "import", &format!("{EXAMPLES}/directory.yaml")],
    ] {
        let o = as_reader(args);
        assert_eq!(o.code, 1, "{args:?} as the reader: {}", o.all());
        assert!(o.stderr.contains("read-only"), "{args:?}: {}", o.stderr);
        assert!(
            !o.stderr.contains(db.role_password(pg::READER)),
            "password leaked"
        );
    }
    // Refused at once, not after a lock timeout or a retry loop.
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    assert_eq!(env.export(), before, "the reader changed the store");
    // The writer applies the plan the reader saved.
    let writer = db.url_as(pg::WRITER);
    let o = env.run_env(
        &["--actor", ADMIN, "apply", "--plan", "plan.json"],
        &[("MFACTL_STORE", &writer)],
    );
    assert_eq!(o.code, 0, "the writer: {}", o.all());
    assert_ne!(env.export(), before);
}

#[test]
fn the_password_comes_from_pgpassword_and_is_never_printed() {
    let Some((env, db)) = tenant() else { return };
    let bare = db.url_without_password();
    let o = env.run_env(
        &["audit", "verify"],
        &[("MFACTL_STORE", &bare), ("PGPASSWORD", db.admin_password())],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    // A wrong password: a clear error naming the store without any password.
    let o = env.run_env(
        &["audit", "verify"],
        &[
            ("MFACTL_STORE", &bare),
            ("PGPASSWORD", "not-the-password-4711"),
        ],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(!o.all().contains("not-the-password-4711"), "{}", o.all());
    assert!(o.stderr.contains("password"), "{}", o.stderr);
    // Every message names the store by its URL without the password.
    let o = env.run_env(
        &["show", "nobody@contoso.example"],
        &[("MFACTL_STORE", &db.url())],
    );
    assert_eq!(o.code, 1);
    assert!(!o.all().contains(db.admin_password()), "{}", o.all());
}

#[test]
fn tls_require_and_verify_full_connect() {
    let Some((env, db)) = tenant() else { return };
    let Some(ca) = db.tls_root_cert() else { return };
    let url = db.url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let require = format!("{url}{sep}sslmode=require");
    let full = format!(
        "{}{sep}sslmode=verify-full&sslrootcert={}",
        url.replace("127.0.0.1", "localhost"),
        ca.display()
    );
    for u in [&require, &full] {
        let o = env.run_env(&["audit", "verify"], &[("MFACTL_STORE", u)]);
        assert_eq!(o.code, 0, "{}: {}", pg_redact(u), o.all());
    }
    // verify-full refuses a host name the certificate does not carry (`vm` is this machine's
    // other name for 127.0.0.1 in /etc/hosts; the certificate names localhost and 127.0.0.1).
    if std::fs::read_to_string("/etc/hosts").is_ok_and(|h| h.contains("127.0.0.1 vm")) {
        let wrong = format!(
            "{}{sep}sslmode=verify-full&sslrootcert={}",
            url.replace("127.0.0.1", "vm"),
            ca.display()
        );
        let o = env.run_env(&["audit", "verify"], &[("MFACTL_STORE", &wrong)]);
        assert_eq!(o.code, 1, "{}", o.all());
        assert!(
            o.stderr.contains("certificate") || o.stderr.contains("TLS"),
            "{}",
            o.stderr
        );
        // ...which sslmode=require does not check.
        let o = env.run_env(
            &["audit", "verify"],
            &[(
                "MFACTL_STORE",
                &format!("{}{sep}sslmode=require", url.replace("127.0.0.1", "vm")),
            )],
        );
        assert_eq!(o.code, 0, "{}", o.all());
    }
}

fn pg_redact(url: &str) -> String {
    mfactl::store::postgres::redact(url)
}
