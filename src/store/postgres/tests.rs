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
