//! A stand-in for the shared PostgreSQL test harness (`tests/common/pg.rs`, on its way), with
//! the same calls: `database()` gives a fresh database, or `None` (one `skipped: …` line) when
//! `MFACTL_TEST_POSTGRES` names no server. Replace `pg::` by `common::pg::` when it lands.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// `mfactl.lease` as `mfactl init` will create it; until it does, the tests create it.
pub const LEASE_DDL: &str = "CREATE SCHEMA IF NOT EXISTS mfactl; \
    CREATE TABLE IF NOT EXISTS mfactl.lease (id int PRIMARY KEY CHECK (id = 1), holder text, \
      epoch bigint NOT NULL DEFAULT 0, expires_at timestamptz); \
    INSERT INTO mfactl.lease (id) VALUES (1) ON CONFLICT DO NOTHING";

/// A fresh database on the server `MFACTL_TEST_POSTGRES` names (an admin URL), dropped on drop.
pub struct Db {
    server: String,
    name: String,
}

pub fn database() -> Option<Db> {
    let Ok(server) = std::env::var("MFACTL_TEST_POSTGRES") else {
        eprintln!(
            "skipped: no PostgreSQL (set MFACTL_TEST_POSTGRES=postgres://ADMIN@HOST:PORT/DB)"
        );
        return None;
    };
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t_{}_{}_lease",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin = postgres::Client::connect(&server, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to MFACTL_TEST_POSTGRES: {e}"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    Some(Db { server, name })
}

impl Db {
    /// The admin's URL of this database.
    pub fn url(&self) -> String {
        let base = self.server.split('?').next().unwrap_or(&self.server);
        let (root, _) = base.rsplit_once('/').expect("a URL with a database");
        format!("{root}/{}", self.name)
    }

    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name))
    }

    pub fn execute(&self, sql: &str) {
        self.admin()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Ends every other connection whose `application_name` or user is `who`.
    pub fn terminate_backends(&self, who: &str) -> i64 {
        self.admin()
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid() \
                   AND (application_name = $2 OR usename = $2)",
                &[&self.name, &who],
            )
            .unwrap_or_else(|e| panic!("terminating {who}: {e}"))
            .get(0)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
