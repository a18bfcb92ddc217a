//! A real PostgreSQL server for the end-to-end tests, and one fresh database per test.
//!
//! ```ignore
//! let Some(db) = pg::database() else { return }; // printed one "skipped: …" line
//! env.run_env(&["init"], &[("MFACTL_STORE", &db.url())]); // the owner creates schema mfactl
//! db.grant_roles();                                       // the roles SQL of docs/postgres.md
//! let reader = db.url_as("mfactl_reader");                // for plan, show, audit verify, …
//! ```
//!
//! **The server.** One per test binary, started on first use and shared by its tests: the newest
//! `/usr/lib/postgresql/<version>/bin` (Debian's layout), else `initdb` on `PATH`, else the
//! directory `MFACTL_TEST_PG_BIN` names (then only that one). `initdb` makes a cluster in a new
//! temp dir whose superuser is `mfactl_admin`, with a random password and `scram-sha-256` on
//! TCP, so a password is really checked; the server listens on a free port of 127.0.0.1 and on a
//! unix socket in the temp dir, with `ssl=on` and a self-signed certificate made with the
//! `openssl` CLI for `localhost` and `127.0.0.1` ([`Db::tls_root_cert`]). Durability is off
//! (`fsync=off`): the server is thrown away. Run as root, the server runs as the `postgres` user
//! (else `nobody`), through `runuser` or `setpriv`, and the temp dir is chowned to that user.
//!
//! **Stopping it.** The server is started by a small shell wrapper (`run.sh` in the temp dir)
//! whose standard input is a pipe; only this process holds the pipe's writing end, and never
//! writes to it. However this process ends (tests done, panic, SIGKILL), the kernel closes that
//! end, the wrapper reads EOF, sends the postmaster SIGINT (a fast shutdown: backends are ended,
//! no checkpoint wait), waits for it and removes the temp dir. The wrapper runs in a process group
//! of its own, so a Ctrl-C at the terminal reaches it only through that EOF too.
//!
//! **Another server.** With `MFACTL_TEST_POSTGRES=postgres://ADMIN:PASSWORD@HOST:PORT/DB` (a role
//! that may create databases and roles), that server is used instead and none is started; each
//! test still gets a fresh database, dropped when its [`Db`] is. There is no TLS certificate then
//! ([`Db::tls_root_cert`] is `None`), and the harness connects without TLS.
//!
//! **No PostgreSQL.** [`database`] prints one line, `skipped: …`, naming what is missing, and
//! returns `None`; the test returns. With `CI=true` it panics instead: on CI a skipped PostgreSQL
//! test is a failure (`.ci/run` installs the server).
//!
//! **Roles.** The roles SQL is the block between `-- BEGIN mfactl roles` and `-- END mfactl roles`
//! in docs/postgres.md, read at run time, so the GRANTs the documentation gives are the ones the
//! tests run. Roles are global to a server and tests run in parallel, so [`Db::grant_roles`] runs
//! the block's `CREATE ROLE` statements once per server and process (behind a `OnceLock`; a role
//! that already exists, from an earlier run on an external server or a concurrent process, gets
//! the same options through `ALTER ROLE`), and every other statement, the GRANTs, in the test's
//! own database, with `mfactl` (the documented database name) replaced by its name. The role
//! passwords are derived from the admin's, so concurrent processes on one server agree on them.

use super::Out;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The superuser of the harness's own server; the admin whose URL [`Db::url`] gives.
pub const ADMIN: &str = "mfactl_admin";
/// The documented roles ([`Db::grant_roles`]).
pub const READER: &str = "mfactl_reader";
pub const WRITER: &str = "mfactl_writer";
/// The page whose roles block the harness runs, and its marker lines.
pub const ROLES_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/postgres.md");
pub const ROLES_BEGIN: &str = "-- BEGIN mfactl roles";
pub const ROLES_END: &str = "-- END mfactl roles";

/// A fresh, empty database on the shared server, dropped (with its connections) on drop.
pub struct Db {
    server: &'static Server,
    name: String,
}

/// The server every [`Db`] of this process lives on.
struct Server {
    host: String,
    port: u16,
    /// The admin's user name and password, as written in a URL (percent-encoded).
    admin_user: String,
    admin_password: String,
    /// The query string of `MFACTL_TEST_POSTGRES`, kept in every URL; empty for our own server.
    params: String,
    role_passwords: [(String, String); 2],
    roles_created: OnceLock<()>,
    /// The server binaries' directory, also where `psql` is looked for first.
    bin: Option<PathBuf>,
    own: Option<Own>,
}

/// What only a server this process started has.
struct Own {
    dir: PathBuf,
    tls_root_cert: PathBuf,
    postmaster_pid: u32,
    /// The pipe's writing end: held, never written, closed by the kernel when this process ends.
    _lifeline: ChildStdin,
}

enum Failure {
    /// No PostgreSQL here: skip (or fail on CI).
    Unavailable(String),
    /// PostgreSQL is here but did not work: always a failure.
    Broken(String),
}

static SERVER: OnceLock<Result<Server, Failure>> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A fresh database for one test, on this process's server (started on first use); `None`, after
/// one `skipped: …` line on stderr, where there is no PostgreSQL (a panic instead under `CI=true`).
pub fn database() -> Option<Db> {
    let server = match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(Failure::Unavailable(why)) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "PostgreSQL tests cannot run: {why}. On CI they must (CI=true); .ci/run \
                     installs Debian's postgresql package when no /usr/lib/postgresql/*/bin/initdb \
                     exists"
                );
            }
            eprintln!("skipped: no PostgreSQL for this test: {why}");
            return None;
        }
        Err(Failure::Broken(msg)) => panic!("the PostgreSQL test server failed: {msg}"),
    };
    let n = DATABASES.fetch_add(1, Ordering::Relaxed);
    let name = format!("t_{}_{n}_{}", std::process::id(), hex(&random::<3>()));
    let mut admin = server
        .connect(&server.admin_url("postgres"))
        .unwrap_or_else(|e| panic!("connecting to the test server as {ADMIN}: {e}"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    Some(Db { server, name })
}

impl Db {
    /// The database's name, `t_<pid>_<n>_<random>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admin's URL of this database, password included: a superuser here, so also the role
    /// that runs `mfactl init` (the owner of what it creates). No `sslmode`: add one as
    /// `?sslmode=…` (or `&sslmode=…` on an external server whose URL has parameters).
    pub fn url(&self) -> String {
        self.server.url(
            &self.server.admin_user,
            Some(&self.server.admin_password),
            &self.name,
        )
    }

    /// [`Db::url`] without the password, for `PGPASSWORD` and `~/.pgpass` tests
    /// ([`Db::admin_password`] is the password).
    pub fn url_without_password(&self) -> String {
        self.server.url(&self.server.admin_user, None, &self.name)
    }

    /// The admin's password, as written in its URL (ours is hex, so also as typed).
    pub fn admin_password(&self) -> &str {
        &self.server.admin_password
    }

    /// The URL of this database as `mfactl_reader` or `mfactl_writer`, password included; they
    /// can do anything only after [`Db::grant_roles`].
    pub fn url_as(&self, role: &str) -> String {
        self.server
            .url(role, Some(self.role_password(role)), &self.name)
    }

    /// The password of `mfactl_reader` or `mfactl_writer`.
    pub fn role_password(&self, role: &str) -> &str {
        self.server
            .role_passwords
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, p)| p.as_str())
            .unwrap_or_else(|| {
                panic!("no role {role:?}: the documented roles are {READER} and {WRITER}")
            })
    }

    /// Runs the roles block of docs/postgres.md as the owner, in this database: creates the roles
    /// (once per server) and grants them what the page says. Schema `mfactl` must exist first
    /// (`mfactl init`, or a test's own `CREATE SCHEMA mfactl`).
    pub fn grant_roles(&self) {
        let block = roles_block();
        let (creates, grants) = self.server.roles_statements(&block);
        self.server.roles_created.get_or_init(|| {
            let mut admin = self.admin();
            for (role, sql) in &creates {
                self.server.create_or_alter_role(&mut admin, role, sql);
            }
        });
        let mut client = self.admin();
        for sql in grants {
            let sql = database_named(&sql, &self.name);
            client
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("the roles block of {ROLES_DOC} failed at\n{sql}\n{e}"));
        }
    }

    /// A connection as the admin, to this database.
    pub fn admin(&self) -> postgres::Client {
        self.connect(&self.url())
            .unwrap_or_else(|e| panic!("connecting to {} as {ADMIN}: {e}", self.name))
    }

    /// A connection (without TLS) with `url`, e.g. [`Db::url_as`]'s.
    pub fn connect(&self, url: &str) -> Result<postgres::Client, postgres::Error> {
        self.server.connect(url)
    }

    /// Runs `sql` (one or more statements) as the admin in this database; panics naming it.
    pub fn execute(&self, sql: &str) {
        self.admin()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("SQL as {ADMIN} in {} failed: {e}\n{sql}", self.name));
    }

    /// Runs the `psql` client on `url` with `sql` (unaligned, tuples only, stop on error),
    /// without any `~/.psqlrc`, `~/.pgpass` or `PG*` variable of the machine; `env` adds some.
    pub fn psql(&self, url: &str, sql: &str, env: &[(&str, &str)]) -> Out {
        let psql = self
            .server
            .bin
            .as_ref()
            .map(|b| b.join("psql"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let mut cmd = Command::new(&psql);
        for (k, _) in std::env::vars() {
            if k.starts_with("PG") {
                cmd.env_remove(k);
            }
        }
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env("PGPASSFILE", "/nonexistent/pgpass")
        .env("PGCONNECT_TIMEOUT", "10")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
        let o = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", psql.display()));
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Ends every other connection to this database whose `application_name` or user is `who`
    /// (`pg_terminate_backend`), as a network cut or a killed server process would; returns how
    /// many it ended.
    pub fn terminate_backends(&self, who: &str) -> i64 {
        let row = self
            .admin()
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid() \
                   AND (application_name = $2 OR usename = $2)",
                &[&self.name, &who],
            )
            .unwrap_or_else(|e| panic!("terminating the backends of {who}: {e}"));
        row.get(0)
    }

    /// The host in every URL: `127.0.0.1` for our own server (whose certificate also names
    /// `localhost`).
    pub fn host(&self) -> &str {
        &self.server.host
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The certificate the server presents, which is its own CA: `sslrootcert=` for
    /// `sslmode=verify-full`, with host `localhost` or `127.0.0.1`. `None` on an external server.
    pub fn tls_root_cert(&self) -> Option<&Path> {
        self.server.own.as_ref().map(|o| o.tls_root_cert.as_path())
    }

    /// The postmaster's pid and the server's temp dir, for our own server.
    pub fn own_server(&self) -> Option<(u32, &Path)> {
        self.server
            .own
            .as_ref()
            .map(|o| (o.postmaster_pid, o.dir.as_path()))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Best effort: a test that failed may have left anything behind, and the whole server
        // goes with the process anyway.
        if let Ok(mut c) = self.server.connect(&self.server.admin_url("postgres")) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

impl Server {
    fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        let auth = match password {
            Some(p) => format!("{user}:{p}"),
            None => user.to_string(),
        };
        let query = if self.params.is_empty() {
            String::new()
        } else {
            format!("?{}", self.params)
        };
        format!("postgres://{auth}@{}:{}/{db}{query}", self.host, self.port)
    }

    fn admin_url(&self, db: &str) -> String {
        self.url(&self.admin_user, Some(&self.admin_password), db)
    }

    fn connect(&self, url: &str) -> Result<postgres::Client, postgres::Error> {
        let mut config: postgres::Config = url.parse()?;
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("mfactl-test-harness");
        config.connect(postgres::NoTls)
    }

    /// The block's statements: `CREATE ROLE`s (with their role and the passwords filled in),
    /// and the rest.
    fn roles_statements(&self, block: &str) -> (Vec<(String, String)>, Vec<String>) {
        let mut creates = Vec::new();
        let mut others = Vec::new();
        for stmt in statements(block) {
            let mut sql = stmt.clone();
            for (role, password) in &self.role_passwords {
                let var = format!(":'{}_password'", role.trim_start_matches("mfactl_"));
                sql = sql.replace(&var, &format!("'{password}'"));
            }
            assert!(
                !sql.contains(":'"),
                "the roles block of {ROLES_DOC} uses a psql variable the harness does not know: {stmt}"
            );
            let words: Vec<&str> = sql.split_whitespace().collect();
            if words.len() > 2
                && words[0].eq_ignore_ascii_case("CREATE")
                && words[1].eq_ignore_ascii_case("ROLE")
            {
                creates.push((words[2].to_string(), sql));
            } else {
                others.push(sql);
            }
        }
        for role in [READER, WRITER] {
            assert!(
                creates.iter().any(|(r, _)| r == role),
                "the roles block of {ROLES_DOC} does not create {role}"
            );
        }
        (creates, others)
    }

    /// `CREATE ROLE`, or the same options through `ALTER ROLE` when the role already exists (a
    /// server shared with other runs or processes).
    fn create_or_alter_role(&self, admin: &mut postgres::Client, role: &str, create: &str) {
        let alter = format!("ALTER{}", &create["CREATE".len()..]);
        let exists = admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .unwrap_or_else(|e| panic!("looking up role {role}: {e}"))
            .is_some();
        let sql = if exists { &alter } else { create };
        if let Err(e) = admin.batch_execute(sql) {
            let raced = e.code().is_some_and(|c| {
                *c == postgres::error::SqlState::DUPLICATE_OBJECT
                    || *c == postgres::error::SqlState::UNIQUE_VIOLATION
            });
            if !raced || exists {
                panic!("creating role {role} (from {ROLES_DOC}) failed: {e}");
            }
            admin
                .batch_execute(&alter)
                .unwrap_or_else(|e| panic!("ALTER ROLE {role} failed: {e}"));
        }
    }
}

/// The text between the roles markers of docs/postgres.md.
pub fn roles_block() -> String {
    let doc =
        std::fs::read_to_string(ROLES_DOC).unwrap_or_else(|e| panic!("reading {ROLES_DOC}: {e}"));
    let start = doc
        .find(ROLES_BEGIN)
        .unwrap_or_else(|| panic!("{ROLES_DOC} has no line {ROLES_BEGIN:?}"));
    let end = doc[start..]
        .find(ROLES_END)
        .unwrap_or_else(|| panic!("{ROLES_DOC} has no line {ROLES_END:?} after {ROLES_BEGIN:?}"));
    let block = &doc[start + ROLES_BEGIN.len()..start + end];
    assert!(
        !block.contains(ROLES_BEGIN),
        "{ROLES_DOC}: two {ROLES_BEGIN:?} lines"
    );
    block.to_string()
}

/// SQL statements of `block`: comment lines dropped, split at the `;` that ends a line.
fn statements(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line);
        if line.ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    assert!(
        current.is_empty(),
        "the roles block of {ROLES_DOC} ends without a ';': {current}"
    );
    out
}

/// `sql` with the documented database name `mfactl` replaced by `db` in `DATABASE mfactl`.
fn database_named(sql: &str, db: &str) -> String {
    let documented = "DATABASE mfactl ";
    if sql.contains("DATABASE") {
        assert!(
            sql.contains(documented),
            "the roles block of {ROLES_DOC} names a database other than `mfactl`: {sql}"
        );
    }
    sql.replace(documented, &format!("DATABASE {db} "))
}

fn start() -> Result<Server, Failure> {
    if let Ok(url) = std::env::var("MFACTL_TEST_POSTGRES") {
        return external(&url);
    }
    let bin = bin_dir().map_err(Failure::Unavailable)?;
    own(bin).map_err(Failure::Broken)
}

/// The server of `MFACTL_TEST_POSTGRES`.
fn external(url: &str) -> Result<Server, Failure> {
    let broken = |why: &str| {
        Failure::Broken(format!(
            "MFACTL_TEST_POSTGRES ({}) {why}",
            without_password(url)
        ))
    };
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| broken("is not a postgres:// URL"))?;
    let (rest, params) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, _db) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .ok_or_else(|| broken("names no user"))?;
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    // `host:port`, `host`, `[v6]:port` or `[v6]`.
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            (h, p.parse().map_err(|_| broken("has a bad port"))?)
        }
        _ => (hostport, 5432),
    };
    let server = Server {
        host: host.to_string(),
        port,
        admin_user: user.to_string(),
        admin_password: password.to_string(),
        params: params.to_string(),
        role_passwords: role_passwords(url),
        roles_created: OnceLock::new(),
        bin: bin_dir().ok(),
        own: None,
    };
    server
        .connect(&server.admin_url("postgres"))
        .map_err(|e| broken(&format!("does not answer: {e}")))?;
    Ok(server)
}

/// Each role's password: derived from the admin URL, so every process sharing a server agrees.
fn role_passwords(admin_url: &str) -> [(String, String); 2] {
    [READER, WRITER].map(|role| {
        let digest = Sha256::digest(format!("mfactl test role {role} on {admin_url}"));
        (role.to_string(), hex(&digest[..16]))
    })
}

fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Where `initdb` and `postgres` are: `MFACTL_TEST_PG_BIN` if set, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else `initdb`'s directory on `PATH`.
pub fn bin_dir() -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("MFACTL_TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "MFACTL_TEST_PG_BIN={} has no initdb and postgres",
                dir.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|d| has_server(d))
        .ok_or_else(|| {
            "no PostgreSQL server binaries (no /usr/lib/postgresql/*/bin/initdb, no initdb on \
             PATH); install PostgreSQL (Debian: apt-get install postgresql), or set \
             MFACTL_TEST_POSTGRES to an admin URL of a server"
                .to_string()
        })
}

/// Starts our own server from `bin`.
fn own(bin: PathBuf) -> Result<Server, String> {
    let dir = tempfile::Builder::new()
        .prefix("mfactl-pg-")
        .tempdir()
        .map_err(|e| format!("making a temp dir: {e}"))?
        .keep();
    let started = start_in(&bin, &dir);
    if started.is_err() {
        // The wrapper removes the dir only after a server it stopped; here none runs.
        let _ = std::fs::remove_dir_all(&dir);
    }
    started
}

fn start_in(bin: &Path, dir: &Path) -> Result<Server, String> {
    let admin_password = hex(&random::<16>());
    let user = server_user()?;
    std::fs::write(dir.join("pwfile"), format!("{admin_password}\n"))
        .map_err(|e| format!("writing the password file: {e}"))?;
    let tls_root_cert = dir.join("server.crt");
    self_signed_cert(&tls_root_cert, &dir.join("server.key"))?;
    std::fs::write(dir.join("run.sh"), WRAPPER).map_err(|e| format!("writing run.sh: {e}"))?;
    if let Some(name) = &user {
        let o = Command::new("chown")
            .args(["-R", &format!("{name}:"), &dir.display().to_string()])
            .output()
            .map_err(|e| format!("running chown: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "chown -R {name} {}: {}",
                dir.display(),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }

    let data = dir.join("data");
    let mut initdb = as_user(&user, &bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .arg(format!("--pwfile={}", dir.join("pwfile").display()))
        .args([
            "-U",
            ADMIN,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .args(["-E", "UTF8", "--no-locale", "--no-sync"])
        .current_dir(dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    let o = initdb
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "initdb failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let _ = std::fs::remove_file(dir.join("pwfile"));

    // A free port can be taken between our look and the server's bind: try a few.
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        match spawn(bin, dir, &user, port, &admin_password) {
            Ok((lifeline, postmaster_pid)) => {
                let admin_url = format!("postgres://{ADMIN}:{admin_password}@127.0.0.1:{port}");
                return Ok(Server {
                    host: "127.0.0.1".into(),
                    port,
                    admin_user: ADMIN.into(),
                    role_passwords: role_passwords(&admin_url),
                    admin_password,
                    params: String::new(),
                    roles_created: OnceLock::new(),
                    bin: Some(bin.to_path_buf()),
                    own: Some(Own {
                        dir: dir.to_path_buf(),
                        tls_root_cert,
                        postmaster_pid,
                        _lifeline: lifeline,
                    }),
                });
            }
            Err(e) if e.contains("could not bind") || e.contains("already in use") => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Starts the wrapper on `port` and waits until the server takes a password login; returns the
/// pipe that keeps it alive and the postmaster's pid.
fn spawn(
    bin: &Path,
    dir: &Path,
    user: &Option<String>,
    port: u16,
    admin_password: &str,
) -> Result<(ChildStdin, u32), String> {
    use std::os::unix::process::CommandExt;
    let log = dir.join("wrapper.log");
    let wrapper_log = std::fs::File::create(&log).map_err(|e| format!("creating {log:?}: {e}"))?;
    let mut cmd = as_user(user, Path::new("/bin/sh"));
    cmd.arg(dir.join("run.sh"))
        .arg(dir)
        .arg(bin)
        .arg(port.to_string())
        .current_dir(dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(wrapper_log)
        // Not in the test's process group: a Ctrl-C reaches the server only through the pipe.
        .process_group(0);
    let mut child: Child = cmd.spawn().map_err(|e| format!("starting run.sh: {e}"))?;
    let lifeline = child.stdin.take().expect("a piped stdin");
    let url = format!("postgres://{ADMIN}:{admin_password}@127.0.0.1:{port}/postgres");
    let config: postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let logs = || {
        format!(
            "{}{}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the server exited ({status}) while starting:\n{}",
                logs()
            ));
        }
        if config.connect(postgres::NoTls).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the server did not answer within 60 s:\n{}",
                logs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = std::fs::read_to_string(dir.join("data/postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse().ok())
        .ok_or_else(|| "the server runs but wrote no postmaster.pid".to_string())?;
    Ok((lifeline, pid))
}

/// Runs the server (see the module's comment): `run.sh DIR BIN PORT`.
const WRAPPER: &str = r#"#!/bin/sh
# The test process's lifeline: EOF on standard input (the test process is gone) stops the server.
dir=$1 bin=$2 port=$3
exec 3<&0 </dev/null
"$bin/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories="$dir" -c unix_socket_permissions=0700 \
  -c ssl=on -c ssl_cert_file="$dir/server.crt" -c ssl_key_file="$dir/server.key" \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c max_connections=300 -c log_min_messages=warning \
  >>"$dir/server.log" 2>&1 3<&- &
pid=$!
( read -r _ <&3; : > "$dir/stopping"; kill -INT "$pid" 2>/dev/null ) &
watcher=$!
exec 3<&-
wait "$pid"
status=$?
if [ -e "$dir/stopping" ]; then
  rm -rf "$dir"
else
  # The server ended on its own (say, it could not bind): leave the log for the harness.
  kill "$watcher" 2>/dev/null
fi
exit "$status"
"#;

/// A self-signed certificate for `localhost` and `127.0.0.1`, which is its own CA.
fn self_signed_cert(cert: &Path, key: &Path) -> Result<(), String> {
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "7", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running openssl (needed for the server's TLS certificate): {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {key:?}: {e}"))
}

/// Run as root, the user the server runs as (`postgres`, else `nobody`); else none.
fn server_user() -> Result<Option<String>, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(o) = Command::new("id").args(["-u", name]).output() {
            if o.status.success() {
                return Ok(Some(name.to_string()));
            }
        }
    }
    Err("running as root, and neither a postgres nor a nobody user exists to run the server".into())
}

/// `program` as `user`: through runuser, or setpriv where there is no runuser.
fn as_user(user: &Option<String>, program: &Path) -> Command {
    let Some(name) = user else {
        return Command::new(program);
    };
    let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    let mut cmd = match runuser {
        Some(runuser) => {
            let mut c = Command::new(runuser);
            c.args(["-u", name, "--"]);
            c
        }
        None => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={name}"))
                .arg(format!("--regid={name}"))
                .arg("--init-groups");
            c
        }
    };
    cmd.arg(program);
    cmd
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("random bytes");
    b
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
