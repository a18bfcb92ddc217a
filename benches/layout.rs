//! Store layout benchmark (not a test), the measurement step of "store layout v2": the same
//! tenant copied into candidate layouts, each in a fresh SQLite file, and on each of them, side by
//! side, what `plan` and `apply` do to the store: read the full state of the M=100k and M=1k users
//! the scale benchmark's plans select (into `mfactl::model::User`s, as the plan holds them) three
//! ways (a temporary-table join as src/store/load.rs does, point lookups, a full scan picking them
//! out), read every user, perform the writes of the M=100k apply (for each declared user, delete
//! every session and raise the sessions watermark, in one transaction: on `c` a read, decode,
//! re-encode and rewrite of the record), read every row with the `sqlite3` CLI, and read the file
//! sequentially (the disk's own speed). Each is timed cold (the file's pages evicted from the OS page cache with
//! `posix_fadvise(DONTNEED)` and checked gone with `mincore`) and warm (the whole file read first),
//! reported as the median and range of the runs. The layouts:
//!
//! - `a`, today's: the store copied byte for byte (`users` plus six child tables keyed by user);
//! - `a′`, today's tables `VACUUM INTO` a fresh file: what rewriting the file alone gains;
//! - `b`, `users` (roles and group keys inline, one text each) plus one `objects` table
//!   `WITHOUT ROWID`, `PRIMARY KEY (user_key, kind, id)`, and `members(group_key, user_key)`;
//! - `c`, one compact binary record per user (`users(key, record)`, see [`record`]) plus
//!   `members`.
//!
//! ```sh
//! cargo bench --bench layout                 # the 1M-user tenant `cargo bench --bench scale` made
//! MFACTL_LAYOUT_SOURCE=/path/store.db cargo bench --bench layout    # another generated store
//! MFACTL_LAYOUT_RUNS=5 cargo bench --bench layout                   # 5 runs (default 3)
//! ```
//!
//! The source store is only ever copied, never opened. The layouts are built once into
//! `target/layout-bench/` (or `MFACTL_LAYOUT_DIR`) and reused while the source file and
//! [`BUILD`] are unchanged; the M=100k and M=1k selections come from the scale benchmark's
//! generator (`examples/generate.rs`, seed 1) for the N of the source. Every result is checked:
//! each way of reading must return exactly the users `a` returns (compared by digest), `a`'s
//! M=1k users are compared with `mfactl::store::load_keys`, and every write run is read back.
#![allow(dead_code)]

#[path = "../examples/generate.rs"]
mod generate;

use mfactl::model::{AppPassword, Device, Method, Session, Timestamp, User};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bumped whenever a layout's schema or encoding changes, so cached builds are redone.
const BUILD: u32 = 2;
/// Users per batch when the per-user records are written.
const BATCH: usize = 50_000;

type Res<T> = Result<T, String>;

/// `rusqlite::Error` → the bench's error, naming what was being done.
fn sql(what: &str) -> impl FnOnce(rusqlite::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

// ---------------------------------------------------------------------------------------------
// The layouts.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    A,
    AVacuumed,
    B,
    C,
}

const LAYOUTS: [Layout; 4] = [Layout::A, Layout::AVacuumed, Layout::B, Layout::C];

impl Layout {
    fn file(self) -> &'static str {
        match self {
            Layout::A => "a-today.db",
            Layout::AVacuumed => "a-vacuumed.db",
            Layout::B => "b-objects.db",
            Layout::C => "c-records.db",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Layout::A => "a: today",
            Layout::AVacuumed => "a′: today, vacuumed",
            Layout::B => "b: users + objects",
            Layout::C => "c: per-user record",
        }
    }
    /// The table group selectors read their members from (`group_key` first).
    fn members_sql(self) -> &'static str {
        match self {
            Layout::A | Layout::AVacuumed => {
                "SELECT user_key FROM memberships WHERE group_key = ?1"
            }
            Layout::B | Layout::C => "SELECT user_key FROM members WHERE group_key = ?1",
        }
    }
}

const SCHEMA_B: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE groups (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role_assignable INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE users (
    key TEXT PRIMARY KEY,
    id TEXT,                    -- NULL when the same as key
    display_name TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    password_set_at INTEGER,
    must_change_password INTEGER NOT NULL,
    password_hash TEXT,
    registration_valid_from INTEGER,
    sessions_valid_from INTEGER,
    devices_valid_from INTEGER,
    roles TEXT,                 -- role names, newline-separated; NULL for none
    groups TEXT                 -- group keys, likewise
) WITHOUT ROWID;
-- kind: 0 method, 1 session, 2 trusted device, 3 app password. name: the method's kind, the
-- device's or app password's name. time: registered, issued, remembered or created at.
CREATE TABLE objects (
    user_key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    id TEXT NOT NULL,
    name TEXT,
    time INTEGER NOT NULL,
    secret_hash TEXT,
    PRIMARY KEY (user_key, kind, id)
) WITHOUT ROWID;
CREATE TABLE members (
    group_key TEXT NOT NULL,
    user_key TEXT NOT NULL,
    PRIMARY KEY (group_key, user_key)
) WITHOUT ROWID;
"#;

const FILL_B: &str = r#"
INSERT INTO meta SELECT key, value FROM src.meta;
INSERT INTO groups SELECT key, name, role_assignable FROM src.groups;
INSERT INTO users
SELECT u.key, nullif(u.id, u.key), u.display_name, u.enabled, u.password_set_at,
       u.must_change_password, u.password_hash, u.registration_valid_from,
       u.sessions_valid_from, u.devices_valid_from,
       (SELECT group_concat(role, char(10)) FROM
           (SELECT role FROM src.user_roles r WHERE r.user_key = u.key ORDER BY role)),
       (SELECT group_concat(group_key, char(10)) FROM
           (SELECT group_key FROM src.memberships m WHERE m.user_key = u.key ORDER BY group_key))
FROM src.users u ORDER BY u.key;
INSERT INTO objects SELECT * FROM (
    SELECT user_key, 0, id, kind, registered_at, NULL FROM src.methods
    UNION ALL SELECT user_key, 1, id, NULL, issued_at, NULL FROM src.sessions
    UNION ALL SELECT user_key, 2, id, name, remembered_at, NULL FROM src.trusted_devices
    UNION ALL SELECT user_key, 3, id, name, created_at, secret_hash FROM src.app_passwords
) ORDER BY 1, 2, 3;
INSERT INTO members SELECT group_key, user_key FROM src.memberships ORDER BY 1, 2;
"#;

const SCHEMA_C: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE groups (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role_assignable INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE users (key TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE members (
    group_key TEXT NOT NULL,
    user_key TEXT NOT NULL,
    PRIMARY KEY (group_key, user_key)
) WITHOUT ROWID;
"#;

const FILL_C: &str = r#"
INSERT INTO meta SELECT key, value FROM src.meta;
INSERT INTO groups SELECT key, name, role_assignable FROM src.groups;
INSERT INTO members SELECT group_key, user_key FROM src.memberships ORDER BY 1, 2;
"#;

/// A user as the store keeps it: the state plus the secrets' hashes, which `User` leaves out.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    user: User,
    password_hash: Option<String>,
    /// `(app password id, secret hash)` of the app passwords that have one.
    secrets: Vec<(String, String)>,
}

/// The per-user record of layout `c`: a hand-written length-prefixed encoding (no dependency),
/// unsigned LEB128 varints for lengths and counts, zigzag varints for times. Group *keys* are
/// stored (names come from `groups`, as today), and the id only when it differs from the key.
///
/// ```text
/// version 1 | flags | [id] display_name | [password_set_at] [registration_valid_from]
/// [sessions_valid_from] [devices_valid_from] | [password_hash]
/// roles: n, str… | groups: n, str… | methods: n, (id kind time)… | sessions: n, (id time)…
/// devices: n, (id name time)… | app passwords: n, (id name time has_secret [secret])…
/// ```
/// flags: 1 enabled, 2 must change password, 4 id is not the key, 8/16/32/64 the four times
/// present, 128 password hash present.
mod record {
    use super::Stored;
    use mfactl::model::{AppPassword, Device, Method, Session, Timestamp, User};

    const VERSION: u8 = 1;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn time(out: &mut Vec<u8>, t: Timestamp) {
        let v = t.unix();
        varint(out, ((v << 1) ^ (v >> 63)) as u64);
    }
    fn text(out: &mut Vec<u8>, s: &str) {
        varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    /// Appends the record of `s` (whose key is `key`) to `out`.
    pub fn encode(key: &str, s: &Stored, out: &mut Vec<u8>) {
        let u = &s.user;
        let times = [
            u.password_set_at,
            u.registration_valid_from,
            u.sessions_valid_from,
            u.devices_valid_from,
        ];
        let mut flags = u8::from(u.enabled) | u8::from(u.must_change_password) << 1;
        flags |= u8::from(u.id != key) << 2;
        for (i, t) in times.iter().enumerate() {
            flags |= u8::from(t.is_some()) << (3 + i);
        }
        flags |= u8::from(s.password_hash.is_some()) << 7;
        out.push(VERSION);
        out.push(flags);
        if u.id != key {
            text(out, &u.id);
        }
        text(out, &u.display_name);
        for t in times.into_iter().flatten() {
            time(out, t);
        }
        if let Some(h) = &s.password_hash {
            text(out, h);
        }
        for list in [&u.roles, &u.groups] {
            varint(out, list.len() as u64);
            for x in list {
                text(out, x);
            }
        }
        varint(out, u.methods.len() as u64);
        for m in &u.methods {
            text(out, &m.id);
            text(out, &m.kind);
            time(out, m.registered_at);
        }
        varint(out, u.sessions.len() as u64);
        for x in &u.sessions {
            text(out, &x.id);
            time(out, x.issued_at);
        }
        varint(out, u.trusted_devices.len() as u64);
        for d in &u.trusted_devices {
            text(out, &d.id);
            text(out, &d.name);
            time(out, d.remembered_at);
        }
        varint(out, u.app_passwords.len() as u64);
        for a in &u.app_passwords {
            text(out, &a.id);
            text(out, &a.name);
            time(out, a.created_at);
            match s.secrets.iter().find(|(id, _)| *id == a.id) {
                Some((_, h)) => {
                    out.push(1);
                    text(out, h);
                }
                None => out.push(0),
            }
        }
    }

    struct Reader<'b> {
        b: &'b [u8],
        at: usize,
    }

    impl<'b> Reader<'b> {
        fn byte(&mut self) -> Result<u8, String> {
            let v = *self.b.get(self.at).ok_or("record ends early")?;
            self.at += 1;
            Ok(v)
        }
        fn varint(&mut self) -> Result<u64, String> {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = self.byte()?;
                if shift > 63 {
                    return Err("varint too long".into());
                }
                v |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return Ok(v);
                }
                shift += 7;
            }
        }
        fn time(&mut self) -> Result<Timestamp, String> {
            let v = self.varint()?;
            Ok(Timestamp::from_unix((v >> 1) as i64 ^ -((v & 1) as i64)))
        }
        fn str(&mut self) -> Result<&'b str, String> {
            let n = self.varint()? as usize;
            let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
            let bytes = &self.b[self.at..end.ok_or("text runs past the record")?];
            self.at += n;
            std::str::from_utf8(bytes).map_err(|e| format!("text: {e}"))
        }
        fn string(&mut self) -> Result<String, String> {
            self.str().map(str::to_string)
        }
        /// A count, refused when it exceeds the bytes left (each item takes at least one).
        fn count(&mut self) -> Result<usize, String> {
            let n = self.varint()? as usize;
            if n > self.b.len() - self.at {
                return Err("count larger than the record".into());
            }
            Ok(n)
        }
    }

    /// The user of key `key` from its record; `group` turns a stored group key into the name
    /// the user carries.
    pub fn decode(key: &str, b: &[u8], group: impl Fn(&str) -> String) -> Result<Stored, String> {
        let mut r = Reader { b, at: 0 };
        let version = r.byte()?;
        if version != VERSION {
            return Err(format!("record version {version}"));
        }
        let flags = r.byte()?;
        let id = if flags & 4 != 0 {
            r.string()?
        } else {
            key.to_string()
        };
        let display_name = r.string()?;
        let mut times = [None; 4];
        for (i, t) in times.iter_mut().enumerate() {
            if flags & (8 << i) != 0 {
                *t = Some(r.time()?);
            }
        }
        let password_hash = if flags & 128 != 0 {
            Some(r.string()?)
        } else {
            None
        };
        let n = r.count()?;
        let roles = (0..n).map(|_| r.string()).collect::<Result<_, _>>()?;
        let n = r.count()?;
        let groups = (0..n)
            .map(|_| r.str().map(&group))
            .collect::<Result<_, _>>()?;
        let n = r.count()?;
        let mut methods = Vec::with_capacity(n);
        for _ in 0..n {
            methods.push(Method {
                id: r.string()?,
                kind: r.string()?,
                registered_at: r.time()?,
            });
        }
        let n = r.count()?;
        let mut sessions = Vec::with_capacity(n);
        for _ in 0..n {
            sessions.push(Session {
                id: r.string()?,
                issued_at: r.time()?,
            });
        }
        let n = r.count()?;
        let mut trusted_devices = Vec::with_capacity(n);
        for _ in 0..n {
            trusted_devices.push(Device {
                id: r.string()?,
                name: r.string()?,
                remembered_at: r.time()?,
            });
        }
        let n = r.count()?;
        let mut app_passwords = Vec::with_capacity(n);
        let mut secrets = Vec::new();
        for _ in 0..n {
            let a = AppPassword {
                id: r.string()?,
                name: r.string()?,
                created_at: r.time()?,
            };
            if r.byte()? != 0 {
                secrets.push((a.id.clone(), r.string()?));
            }
            app_passwords.push(a);
        }
        if r.at != b.len() {
            return Err("bytes after the record".into());
        }
        let [password_set_at, registration_valid_from, sessions_valid_from, devices_valid_from] =
            times;
        Ok(Stored {
            user: User {
                id,
                display_name,
                enabled: flags & 1 != 0,
                roles,
                groups,
                password_set_at,
                must_change_password: flags & 2 != 0,
                registration_valid_from,
                sessions_valid_from,
                devices_valid_from,
                methods,
                sessions,
                trusted_devices,
                app_passwords,
            },
            password_hash,
            secrets,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reading users.

/// How a read finds its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How<'a> {
    /// The wanted keys in `temp.want`, each table read with `temp.want CROSS JOIN table` (as
    /// src/store/load.rs does): one primary-key seek per user and table.
    Join,
    /// One prepared point query per user and table, driven from Rust.
    Lookup,
    /// Every table read whole in key order, the wanted users picked out by a merge.
    Scan,
    /// Every user.
    All,
    /// The users whose keys lie in `[first, last]` (the build reads `a` in batches).
    Range(&'a str, &'a str),
    /// Today's code, `mfactl::store::load_keys` (layout `a` only): a reference for the bench's
    /// own reading of `a`.
    Library,
}

impl How<'_> {
    fn label(self) -> &'static str {
        match self {
            How::Join => "temp-table join",
            How::Lookup => "point lookups",
            How::Scan => "full scan + merge",
            How::All => "full scan",
            How::Range(..) => "key range",
            How::Library => "mfactl::store::load_keys",
        }
    }

    /// `FROM … [WHERE …]` of a query on `table` whose user key column is `key`.
    fn from(self, table: &str, key: &str) -> String {
        match self {
            How::Join | How::Library => {
                format!("FROM temp.want w CROSS JOIN {table} c ON c.{key} = w.key")
            }
            How::Lookup => format!("FROM {table} c WHERE c.{key} = ?1"),
            // In key order: SQLite would otherwise scan `memberships` through its by-group
            // index, which covers both columns.
            How::Scan | How::All => format!("FROM {table} c ORDER BY c.{key}"),
            How::Range(..) => {
                format!("FROM {table} c WHERE c.{key} BETWEEN ?1 AND ?2 ORDER BY c.{key}")
            }
        }
    }
}

/// Runs `sql` (built with `how.from`) and calls `f` on each row, in key order.
fn each_row(
    conn: &Connection,
    sql: &str,
    how: How,
    wanted: &[String],
    mut f: impl FnMut(&Row) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut run = |params: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<()> {
        let mut rows = stmt.query(params)?;
        while let Some(r) = rows.next()? {
            f(r)?;
        }
        Ok(())
    };
    match how {
        How::Lookup => {
            for k in wanted {
                run(&[k as &dyn rusqlite::ToSql])?;
            }
            Ok(())
        }
        How::Range(first, last) => run(&[&first as &dyn rusqlite::ToSql, &last]),
        _ => run(&[]),
    }
}

/// Column `i` as UTF-8 text.
fn text<'r>(r: &'r Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    match r.get_ref(i)? {
        ValueRef::Text(t) => std::str::from_utf8(t).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        }),
        other => Err(rusqlite::Error::InvalidColumnType(
            i,
            format!("column {i}"),
            other.data_type(),
        )),
    }
}

fn time(r: &Row, i: usize) -> rusqlite::Result<Timestamp> {
    r.get::<_, i64>(i).map(Timestamp::from_unix)
}

fn opt_time(r: &Row, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(Timestamp::from_unix))
}

/// Whether `key` is among `wanted` (sorted), for rows arriving in key order: `at` only moves on.
fn pick(wanted: &[String], at: &mut usize, key: &str) -> bool {
    while *at < wanted.len() && wanted[*at].as_str() < key {
        *at += 1;
    }
    *at < wanted.len() && wanted[*at] == key
}

/// The user `key` belongs to among `users` (sorted by key), for rows arriving in key order.
fn owner<'u>(users: &'u mut [(String, User)], at: &mut usize, key: &str) -> Option<&'u mut User> {
    while *at < users.len() && users[*at].0.as_str() < key {
        *at += 1;
    }
    match users.get_mut(*at) {
        Some((k, u)) if k == key => Some(u),
        _ => None,
    }
}

fn empty_user(id: String) -> User {
    User {
        id,
        display_name: String::new(),
        enabled: false,
        roles: Vec::new(),
        groups: Vec::new(),
        password_set_at: None,
        must_change_password: false,
        registration_valid_from: None,
        sessions_valid_from: None,
        devices_valid_from: None,
        methods: Vec::new(),
        sessions: Vec::new(),
        trusted_devices: Vec::new(),
        app_passwords: Vec::new(),
    }
}

/// Group key → name.
fn group_names(conn: &Connection) -> rusqlite::Result<HashMap<String, String>> {
    let mut stmt = conn.prepare_cached("SELECT key, name FROM groups")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

fn group_name(names: &HashMap<String, String>, key: &str) -> String {
    names.get(key).cloned().unwrap_or_else(|| key.to_string())
}

/// The keys a plan of `sel` loads: the users named plus every member of the groups named,
/// sorted and unique (the members read from the layout's own table).
fn wanted(conn: &Connection, layout: Layout, sel: &Selection) -> rusqlite::Result<Vec<String>> {
    let mut keys = sel.users.clone();
    let mut stmt = conn.prepare_cached(layout.members_sql())?;
    for g in &sel.groups {
        let mut rows = stmt.query([g])?;
        while let Some(r) = rows.next()? {
            keys.push(text(r, 0)?.to_string());
        }
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

/// Fills `temp.want` with `keys`.
fn fill_want(conn: &Connection, keys: &[String]) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS want (key TEXT PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.want;",
    )?;
    let mut ins = conn.prepare_cached("INSERT OR IGNORE INTO temp.want (key) VALUES (?1)")?;
    for k in keys {
        ins.execute([k])?;
    }
    Ok(())
}

/// The users of `how` (`wanted`: sorted keys, for `Join`, `Lookup` and `Scan`) with their full
/// state, sorted by key, read in one transaction.
fn read_users(
    conn: &Connection,
    layout: Layout,
    how: How,
    wanted: &[String],
) -> rusqlite::Result<Vec<(String, User)>> {
    conn.execute_batch("BEGIN")?;
    let users = (|| {
        if matches!(how, How::Join | How::Library) {
            fill_want(conn, wanted)?;
        }
        let names = group_names(conn)?;
        let mut users = match layout {
            Layout::A | Layout::AVacuumed => read_a(conn, how, wanted, &names)?,
            Layout::B => read_b(conn, how, wanted, &names)?,
            Layout::C => read_c(conn, how, wanted, &names)?,
        };
        for (_, u) in &mut users {
            u.normalize();
        }
        Ok(users)
    })();
    conn.execute_batch("COMMIT")?;
    users
}

/// Today's layout: `users`, then each child table, every row pushed onto its user.
fn read_a(
    conn: &Connection,
    how: How,
    wanted: &[String],
    names: &HashMap<String, String>,
) -> rusqlite::Result<Vec<(String, User)>> {
    let mut users: Vec<(String, User)> = Vec::new();
    let sql = format!(
        "SELECT c.key, c.id, c.display_name, c.enabled, c.password_set_at,
                c.must_change_password, c.registration_valid_from, c.sessions_valid_from,
                c.devices_valid_from {}",
        how.from("users", "key")
    );
    let mut w = 0;
    each_row(conn, &sql, how, wanted, |r| {
        let key = text(r, 0)?;
        if how == How::Scan && !pick(wanted, &mut w, key) {
            return Ok(());
        }
        let mut u = empty_user(r.get(1)?);
        u.display_name = r.get(2)?;
        u.enabled = r.get(3)?;
        u.password_set_at = opt_time(r, 4)?;
        u.must_change_password = r.get(5)?;
        u.registration_valid_from = opt_time(r, 6)?;
        u.sessions_valid_from = opt_time(r, 7)?;
        u.devices_valid_from = opt_time(r, 8)?;
        users.push((key.to_string(), u));
        Ok(())
    })?;
    type Push = fn(&mut User, &Row, &HashMap<String, String>) -> rusqlite::Result<()>;
    let children: [(&str, &str, Push); 6] = [
        ("user_roles", "c.role", |u, r, _| {
            u.roles.push(r.get(1)?);
            Ok(())
        }),
        ("memberships", "c.group_key", |u, r, names| {
            u.groups.push(group_name(names, text(r, 1)?));
            Ok(())
        }),
        ("methods", "c.id, c.kind, c.registered_at", |u, r, _| {
            u.methods.push(Method {
                id: r.get(1)?,
                kind: r.get(2)?,
                registered_at: time(r, 3)?,
            });
            Ok(())
        }),
        ("sessions", "c.id, c.issued_at", |u, r, _| {
            u.sessions.push(Session {
                id: r.get(1)?,
                issued_at: time(r, 2)?,
            });
            Ok(())
        }),
        (
            "trusted_devices",
            "c.id, c.name, c.remembered_at",
            |u, r, _| {
                u.trusted_devices.push(Device {
                    id: r.get(1)?,
                    name: r.get(2)?,
                    remembered_at: time(r, 3)?,
                });
                Ok(())
            },
        ),
        ("app_passwords", "c.id, c.name, c.created_at", |u, r, _| {
            u.app_passwords.push(AppPassword {
                id: r.get(1)?,
                name: r.get(2)?,
                created_at: time(r, 3)?,
            });
            Ok(())
        }),
    ];
    for (table, cols, push) in children {
        let sql = format!("SELECT c.user_key, {cols} {}", how.from(table, "user_key"));
        let mut at = 0;
        each_row(conn, &sql, how, wanted, |r| {
            match owner(&mut users, &mut at, text(r, 0)?) {
                Some(u) => push(u, r, names),
                None => Ok(()),
            }
        })?;
    }
    Ok(users)
}

/// Layout `b`: `users` (roles and groups inline), then `objects`.
fn read_b(
    conn: &Connection,
    how: How,
    wanted: &[String],
    names: &HashMap<String, String>,
) -> rusqlite::Result<Vec<(String, User)>> {
    let mut users: Vec<(String, User)> = Vec::new();
    let sql = format!(
        "SELECT c.key, c.id, c.display_name, c.enabled, c.password_set_at,
                c.must_change_password, c.registration_valid_from, c.sessions_valid_from,
                c.devices_valid_from, c.roles, c.groups {}",
        how.from("users", "key")
    );
    let mut w = 0;
    each_row(conn, &sql, how, wanted, |r| {
        let key = text(r, 0)?;
        if how == How::Scan && !pick(wanted, &mut w, key) {
            return Ok(());
        }
        let id = match r.get_ref(1)? {
            ValueRef::Null => key.to_string(),
            _ => text(r, 1)?.to_string(),
        };
        let mut u = empty_user(id);
        u.display_name = r.get(2)?;
        u.enabled = r.get(3)?;
        u.password_set_at = opt_time(r, 4)?;
        u.must_change_password = r.get(5)?;
        u.registration_valid_from = opt_time(r, 6)?;
        u.sessions_valid_from = opt_time(r, 7)?;
        u.devices_valid_from = opt_time(r, 8)?;
        if !matches!(r.get_ref(9)?, ValueRef::Null) {
            u.roles = text(r, 9)?.split('\n').map(str::to_string).collect();
        }
        if !matches!(r.get_ref(10)?, ValueRef::Null) {
            u.groups = text(r, 10)?
                .split('\n')
                .map(|g| group_name(names, g))
                .collect();
        }
        users.push((key.to_string(), u));
        Ok(())
    })?;
    let sql = format!(
        "SELECT c.user_key, c.kind, c.id, c.name, c.time {}",
        how.from("objects", "user_key")
    );
    let mut at = 0;
    each_row(conn, &sql, how, wanted, |r| {
        let Some(u) = owner(&mut users, &mut at, text(r, 0)?) else {
            return Ok(());
        };
        let (id, t) = (r.get(2)?, time(r, 4)?);
        match r.get::<_, i64>(1)? {
            0 => u.methods.push(Method {
                id,
                kind: r.get(3)?,
                registered_at: t,
            }),
            1 => u.sessions.push(Session { id, issued_at: t }),
            2 => u.trusted_devices.push(Device {
                id,
                name: r.get(3)?,
                remembered_at: t,
            }),
            3 => u.app_passwords.push(AppPassword {
                id,
                name: r.get(3)?,
                created_at: t,
            }),
            k => return Err(rusqlite::Error::IntegralValueOutOfRange(1, k)),
        }
        Ok(())
    })?;
    Ok(users)
}

/// A record that does not decode, as a conversion error of its column.
fn bad_record(e: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, e.into())
}

/// Layout `c`: one record per user.
fn read_c(
    conn: &Connection,
    how: How,
    wanted: &[String],
    names: &HashMap<String, String>,
) -> rusqlite::Result<Vec<(String, User)>> {
    let mut users: Vec<(String, User)> = Vec::new();
    let sql = format!("SELECT c.key, c.record {}", how.from("users", "key"));
    let mut w = 0;
    each_row(conn, &sql, how, wanted, |r| {
        let key = text(r, 0)?;
        if how == How::Scan && !pick(wanted, &mut w, key) {
            return Ok(());
        }
        let bytes = match r.get_ref(1)? {
            ValueRef::Blob(b) => b,
            other => {
                return Err(rusqlite::Error::InvalidColumnType(
                    1,
                    "record".into(),
                    other.data_type(),
                ))
            }
        };
        let s = record::decode(key, bytes, |g| group_name(names, g))
            .map_err(|e| bad_record(format!("users, user {key}: {e}")))?;
        users.push((key.to_string(), s.user));
        Ok(())
    })?;
    Ok(users)
}

// ---------------------------------------------------------------------------------------------
// The writes of the M=100k apply.

/// For each of `keys` (sorted), in one `BEGIN IMMEDIATE` transaction: delete every session and
/// raise the sessions watermark to `cutoff`. Returns the statements executed.
fn apply_writes(
    conn: &mut Connection,
    layout: Layout,
    keys: &[String],
    cutoff: i64,
) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut n = 0u64;
    {
        const RAISE: &str = "UPDATE users SET sessions_valid_from = \
                             max(coalesce(sessions_valid_from, ?2), ?2) WHERE key = ?1";
        match layout {
            Layout::A | Layout::AVacuumed | Layout::B => {
                let mut raise = tx.prepare(RAISE)?;
                let mut delete = tx.prepare(if layout == Layout::B {
                    "DELETE FROM objects WHERE user_key = ?1 AND kind = 1"
                } else {
                    "DELETE FROM sessions WHERE user_key = ?1"
                })?;
                for k in keys {
                    raise.execute(rusqlite::params![k, cutoff])?;
                    delete.execute([k])?;
                    n += 2;
                }
            }
            Layout::C => {
                let mut get = tx.prepare("SELECT record FROM users WHERE key = ?1")?;
                let mut put = tx.prepare("UPDATE users SET record = ?2 WHERE key = ?1")?;
                let mut buf = Vec::new();
                for k in keys {
                    let bytes: Vec<u8> = get.query_row([k], |r| r.get(0))?;
                    let mut s = record::decode(k, &bytes, str::to_string)
                        .map_err(|e| bad_record(format!("users, user {k}: {e}")))?;
                    let cut = Timestamp::from_unix(cutoff);
                    s.user.sessions.clear();
                    s.user.sessions_valid_from =
                        Some(s.user.sessions_valid_from.map_or(cut, |t| t.max(cut)));
                    buf.clear();
                    record::encode(k, &s, &mut buf);
                    put.execute(rusqlite::params![k, buf])?;
                    n += 2;
                }
            }
        }
    }
    tx.commit()?;
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Building the layouts.

/// Opens `path` as mfactl does (read-write, `foreign_keys`, `synchronous = FULL`).
fn open(path: &Path) -> Res<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c =
        Connection::open_with_flags(path, flags).map_err(|e| format!("{}: {e}", path.display()))?;
    c.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(c)
}

fn remove_db(p: &Path) {
    let s = p.display().to_string();
    for f in [
        s.clone(),
        format!("{s}-wal"),
        format!("{s}-shm"),
        format!("{s}-journal"),
    ] {
        let _ = std::fs::remove_file(f);
    }
}

/// A fresh file at `tmp` with `schema`, filled by `fill` (SQL reading the attached `src`, then
/// `rust`), written compactly to `out` with `VACUUM INTO` and put in WAL mode as mfactl's stores are.
fn build(
    src: &Path,
    tmp: &Path,
    out: &Path,
    schema: &str,
    fill: &str,
    rust: impl FnOnce(&Connection) -> Res<()>,
) -> Res<()> {
    remove_db(tmp);
    remove_db(out);
    let c = Connection::open(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    c.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;",
    )
    .map_err(sql("build pragmas"))?;
    c.execute("ATTACH ?1 AS src", [src.display().to_string()])
        .map_err(sql("attach the source"))?;
    c.execute_batch(&format!("BEGIN; {schema} {fill}"))
        .map_err(sql("fill the layout"))?;
    rust(&c)?;
    c.execute_batch("COMMIT; DETACH src;")
        .map_err(sql("commit the layout"))?;
    vacuum_into(&c, out)?;
    drop(c);
    remove_db(tmp);
    wal(out)
}

fn vacuum_into(c: &Connection, out: &Path) -> Res<()> {
    c.execute("VACUUM INTO ?1", [out.display().to_string()])
        .map_err(sql("VACUUM INTO"))?;
    Ok(())
}

fn wal(path: &Path) -> Res<()> {
    let c = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    c.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql("journal_mode = WAL"))
}

/// Layout `c`'s records, from `src` (today's layout) in key-range batches.
fn fill_records(c: &Connection, src: &Path) -> Res<()> {
    let src = open(src)?;
    let keys: Vec<String> = src
        .prepare("SELECT key FROM users ORDER BY key")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sql("read the keys"))?;
    let key_of_name: HashMap<String, String> = group_names(&src)
        .map_err(sql("read the groups"))?
        .into_iter()
        .map(|(k, n)| (n, k))
        .collect();
    let mut hashes = src
        .prepare("SELECT key, password_hash FROM users WHERE key BETWEEN ?1 AND ?2 AND password_hash IS NOT NULL")
        .map_err(sql("prepare"))?;
    let mut secrets = src
        .prepare("SELECT user_key, id, secret_hash FROM app_passwords WHERE user_key BETWEEN ?1 AND ?2 AND secret_hash IS NOT NULL")
        .map_err(sql("prepare"))?;
    let mut ins = c
        .prepare("INSERT INTO users (key, record) VALUES (?1, ?2)")
        .map_err(sql("prepare"))?;
    let mut buf = Vec::new();
    for chunk in keys.chunks(BATCH) {
        let (first, last) = (chunk[0].as_str(), chunk[chunk.len() - 1].as_str());
        let users = read_users(&src, Layout::A, How::Range(first, last), &[])
            .map_err(sql("read a batch of users"))?;
        let mut pw: HashMap<String, String> = hashes
            .query_map([first, last], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(sql("read password hashes"))?;
        let mut sec: HashMap<String, Vec<(String, String)>> = HashMap::new();
        let mut rows = secrets.query([first, last]).map_err(sql("read secrets"))?;
        while let Some(r) = rows.next().map_err(sql("read secrets"))? {
            let (k, id, h): (String, String, String) = (
                r.get(0).map_err(sql("secret"))?,
                r.get(1).map_err(sql("secret"))?,
                r.get(2).map_err(sql("secret"))?,
            );
            sec.entry(k).or_default().push((id, h));
        }
        for (key, mut user) in users {
            for g in &mut user.groups {
                if let Some(k) = key_of_name.get(g) {
                    g.clone_from(k);
                }
            }
            let s = Stored {
                user,
                password_hash: pw.remove(&key),
                secrets: sec.remove(&key).unwrap_or_default(),
            };
            buf.clear();
            record::encode(&key, &s, &mut buf);
            ins.execute(rusqlite::params![key, buf])
                .map_err(sql("insert a record"))?;
        }
    }
    Ok(())
}

/// Builds (or reuses) every layout's file under `dir` from `source`.
fn build_all(source: &Path, dir: &Path) -> Res<()> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let meta = std::fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let stamp = format!(
        "build {BUILD}; source {} {} bytes, modified {:?}",
        source.display(),
        meta.len(),
        meta.modified().ok()
    );
    let stamp_file = dir.join("stamp");
    if std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp)
        && LAYOUTS.iter().all(|l| dir.join(l.file()).exists())
    {
        return Ok(());
    }
    let _ = std::fs::remove_file(&stamp_file);
    for suffix in ["-wal", "-journal"] {
        let side = PathBuf::from(format!("{}{suffix}", source.display()));
        if std::fs::metadata(&side).is_ok_and(|m| m.len() > 0) {
            return Err(format!(
                "{} exists: the source has changes outside its main file; open it with mfactl \
                 once (which checkpoints) or point MFACTL_LAYOUT_SOURCE at a quiet copy",
                side.display()
            ));
        }
    }
    let step = |what: &str| eprintln!("layout: building {what} …");
    let a = dir.join(Layout::A.file());
    step(Layout::A.title());
    remove_db(&a);
    std::fs::copy(source, &a).map_err(|e| format!("copy {}: {e}", source.display()))?;
    step(Layout::AVacuumed.title());
    let av = dir.join(Layout::AVacuumed.file());
    remove_db(&av);
    vacuum_into(&open(&a)?, &av)?;
    wal(&av)?;
    let tmp = dir.join("build.tmp");
    step(Layout::B.title());
    build(
        &a,
        &tmp,
        &dir.join(Layout::B.file()),
        SCHEMA_B,
        FILL_B,
        |_| Ok(()),
    )?;
    step(Layout::C.title());
    build(
        &a,
        &tmp,
        &dir.join(Layout::C.file()),
        SCHEMA_C,
        FILL_C,
        |c| fill_records(c, &a),
    )?;
    std::fs::write(&stamp_file, stamp).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Selections, caches, digests.

/// What a plan's manifests select: user keys (the actor among them) and group keys.
#[derive(Debug, Clone, Default)]
struct Selection {
    users: Vec<String>,
    groups: Vec<String>,
    /// The declared users alone (the apply's writes).
    declared: Vec<String>,
}

/// The scale benchmark's selection of `m` declared users of an `n`-user tenant (seed 1): its
/// manifests are written under `dir` and read back as `bare_parse` in benches/scale.rs does.
fn selection(dir: &Path, n: usize, m: usize) -> Res<Selection> {
    use serde::Deserialize;
    let opts = generate::Options {
        users: n,
        declared: m,
        out: dir.join(format!("select-{m}")),
        seed: 1,
        manifests_only: true,
        directory_yaml: false,
    };
    let gen = generate::write_manifests(&opts)?;
    let mut sel = Selection {
        declared: gen
            .declared
            .iter()
            .map(|id| id.to_ascii_lowercase())
            .collect(),
        ..Default::default()
    };
    for sub in ["declared", "groups"] {
        let d = opts.out.join("manifests").join(sub);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
            .map_err(|e| format!("{}: {e}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for p in files {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            for de in serde_yaml::Deserializer::from_str(&text) {
                let doc = serde_yaml::Value::deserialize(de)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                let spec = doc.get("spec").and_then(|s| s.as_sequence());
                for e in spec.into_iter().flatten() {
                    for list in ["users", "except"] {
                        let ids = e.get(list).and_then(|l| l.as_sequence());
                        for u in ids.into_iter().flatten() {
                            sel.users.extend(u.as_str().map(|u| u.to_ascii_lowercase()));
                        }
                    }
                    if let Some(g) = e.get("group").and_then(|g| g.as_str()) {
                        sel.groups.push(g.to_ascii_lowercase());
                    }
                }
            }
        }
    }
    sel.users.push(generate::ADMIN.to_string());
    sel.declared.sort();
    Ok(sel)
}

/// The database file and its WAL and shared-memory files.
fn db_files(p: &Path) -> Vec<PathBuf> {
    let s = p.display().to_string();
    [s.clone(), format!("{s}-wal"), format!("{s}-shm")]
        .into_iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

/// Evicts `p`'s pages from the OS page cache (written back first) and returns the fraction
/// still resident afterwards (by `mincore`).
fn drop_cache(p: &Path) -> Res<f64> {
    use std::os::fd::AsRawFd;
    for f in db_files(p) {
        let file = std::fs::File::open(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        file.sync_all()
            .map_err(|e| format!("fsync {}: {e}", f.display()))?;
        // SAFETY: a valid open descriptor; offset 0, length 0 means the whole file.
        let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if r != 0 {
            return Err(format!("posix_fadvise {}: error {r}", f.display()));
        }
    }
    resident(p)
}

/// The fraction of `p`'s pages in the page cache.
fn resident(p: &Path) -> Res<f64> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len() as usize;
    if len == 0 {
        return Ok(0.0);
    }
    // SAFETY: a read-only shared mapping of a file we hold open, unmapped below; mincore only
    // writes `vec`, which has one byte per page.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if addr == libc::MAP_FAILED {
            return Err(format!(
                "mmap {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            ));
        }
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let mut vec = vec![0u8; len.div_ceil(page)];
        let r = libc::mincore(addr, len, vec.as_mut_ptr());
        libc::munmap(addr, len);
        if r != 0 {
            return Err(format!(
                "mincore {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(vec.iter().filter(|&&b| b & 1 != 0).count() as f64 / vec.len() as f64)
    }
}

/// Reads the whole file sequentially (1 MiB at a time); returns the bytes read.
fn read_file(p: &Path) -> Res<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k as u64,
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
}

/// FNV-1a over whatever is written to it.
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A digest of users (their keys and every field, through their JSON).
fn digest<'u>(users: impl Iterator<Item = (&'u String, &'u User)>) -> Res<(usize, u64)> {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    let mut n = 0;
    for pair in users {
        serde_json::to_writer(&mut h, &pair).map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok((n, h.0))
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/// The times of one measurement on each layout.
struct Line {
    name: String,
    times: Vec<Vec<Duration>>,
    /// What each layout's run did (users read, statements…), the same on every run.
    work: Vec<String>,
}

#[derive(Default)]
struct Report {
    lines: Vec<Line>,
    /// Per layout: file size, then free-form facts.
    facts: Vec<(String, Vec<String>)>,
    notes: Vec<String>,
}

impl Report {
    fn add(&mut self, name: &str, layout: Layout, t: Duration, work: String) {
        let i = LAYOUTS.iter().position(|&l| l == layout).unwrap_or(0);
        let line = match self.lines.iter().position(|l| l.name == name) {
            Some(p) => &mut self.lines[p],
            None => {
                self.lines.push(Line {
                    name: name.to_string(),
                    times: vec![Vec::new(); LAYOUTS.len()],
                    work: vec![String::new(); LAYOUTS.len()],
                });
                self.lines.last_mut().expect("just pushed")
            }
        };
        line.times[i].push(t);
        line.work[i] = work;
    }

    fn fact(&mut self, name: &str, layout: Layout, v: String) {
        let i = LAYOUTS.iter().position(|&l| l == layout).unwrap_or(0);
        let row = match self.facts.iter().position(|f| f.0 == name) {
            Some(p) => &mut self.facts[p],
            None => {
                self.facts
                    .push((name.to_string(), vec![String::new(); LAYOUTS.len()]));
                self.facts.last_mut().expect("just pushed")
            }
        };
        row.1[i] = v;
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn cell(times: &[Duration]) -> String {
    if times.is_empty() {
        return "—".into();
    }
    let mut v = times.to_vec();
    v.sort();
    let med = v[v.len() / 2];
    format!("{} ({}–{})", secs(med), secs(v[0]), secs(v[v.len() - 1]))
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn table(r: &Report, runs: usize) -> String {
    let mut out = String::new();
    out.push_str("| measurement |");
    for l in LAYOUTS {
        out.push_str(&format!(" {} |", l.title()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(LAYOUTS.len()));
    out.push('\n');
    for (name, vals) in &r.facts {
        out.push_str(&format!("| {name} |"));
        for v in vals {
            out.push_str(&format!(" {v} |"));
        }
        out.push('\n');
    }
    for line in &r.lines {
        out.push_str(&format!("| {} |", line.name));
        for t in &line.times {
            out.push_str(&format!(" {} |", cell(t)));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "\nEach cell: median (min–max) of {runs} runs. What each run did:\n"
    ));
    for line in &r.lines {
        let done: Vec<(Layout, &String)> = LAYOUTS
            .iter()
            .zip(&line.work)
            .filter(|(_, w)| !w.is_empty())
            .map(|(&l, w)| (l, w))
            .collect();
        let work = if done.iter().all(|(_, w)| *w == done[0].1) {
            done[0].1.clone()
        } else {
            let each: Vec<String> = done
                .iter()
                .map(|(l, w)| format!("{}: {w}", l.title().split(':').next().unwrap_or("?")))
                .collect();
            each.join("; ")
        };
        out.push_str(&format!("- {}: {work}\n", line.name));
    }
    for n in &r.notes {
        out.push_str(&format!("- {n}\n"));
    }
    out
}

/// The state of the page cache a run starts from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cache {
    Cold,
    Warm,
}

impl Cache {
    fn label(self) -> &'static str {
        match self {
            Cache::Cold => "cold",
            Cache::Warm => "warm",
        }
    }
}

struct Bench {
    dir: PathBuf,
    big: Selection,
    few: Selection,
    cutoff: i64,
    /// Digest of each read's result, by measurement name: every layout must match the first.
    digests: BTreeMap<String, (usize, u64)>,
    /// The highest fraction of a file found resident right after evicting it.
    worst_resident: f64,
}

impl Bench {
    fn path(&self, l: Layout) -> PathBuf {
        self.dir.join(l.file())
    }

    fn prepare(&mut self, p: &Path, cache: Cache) -> Res<()> {
        match cache {
            Cache::Cold => {
                let r = drop_cache(p)?;
                self.worst_resident = self.worst_resident.max(r);
            }
            Cache::Warm => {
                read_file(p)?;
            }
        }
        Ok(())
    }

    /// Checks `users` against the first result of measurement `what`.
    fn check(&mut self, what: &str, layout: Layout, users: &[(String, User)]) -> Res<()> {
        let d = digest(users.iter().map(|(k, u)| (k, u)))?;
        match self.digests.get(what) {
            None => {
                self.digests.insert(what.to_string(), d);
                Ok(())
            }
            Some(&first) if first == d => Ok(()),
            Some(first) => Err(format!(
                "{what} on {}: {} users, digest {:x}; the first layout read {} users, digest {:x}",
                layout.title(),
                d.0,
                d.1,
                first.0,
                first.1
            )),
        }
    }

    /// Times one read of `sel`'s users (or every user) on `layout`.
    fn read(
        &mut self,
        report: &mut Report,
        layout: Layout,
        cache: Cache,
        what: &str,
        sel: Option<&Selection>,
        how: How,
    ) -> Res<()> {
        let p = self.path(layout);
        self.prepare(&p, cache)?;
        let start = Instant::now();
        let conn = open(&p)?;
        let keys = match sel {
            Some(s) => wanted(&conn, layout, s).map_err(sql("resolve the wanted users"))?,
            None => Vec::new(),
        };
        let users = match how {
            How::Library => mfactl::store::load_keys(&conn, &p, &keys)
                .map(|m| m.into_iter().collect())
                .map_err(|e| e.to_string()),
            _ => read_users(&conn, layout, how, &keys).map_err(|e| e.to_string()),
        }
        .map_err(|e| format!("{what} ({}) on {}: {e}", how.label(), layout.title()))?;
        let t = start.elapsed();
        drop(conn);
        self.check(what, layout, &users)?;
        let name = format!("{what}, {}, {}", how.label(), cache.label());
        report.add(&name, layout, t, format!("{} users", users.len()));
        Ok(())
    }

    /// Times the apply's writes on a fresh copy of `layout`'s file, then reads a sample back.
    fn write(&mut self, report: &mut Report, layout: Layout, cache: Cache) -> Res<()> {
        let work = self.dir.join(format!("work-{}", layout.file()));
        remove_db(&work);
        std::fs::copy(self.path(layout), &work).map_err(|e| format!("copy: {e}"))?;
        self.prepare(&work, cache)?;
        let start = Instant::now();
        let mut conn = open(&work)?;
        let n = apply_writes(&mut conn, layout, &self.big.declared, self.cutoff)
            .map_err(|e| format!("writes on {}: {e}", layout.title()))?;
        let wal = std::fs::metadata(format!("{}-wal", work.display())).map_or(0, |m| m.len());
        // Closing checkpoints the WAL into the file, as the end of `mfactl apply` does.
        drop(conn);
        let t = start.elapsed();
        // Read back every 100th user written: no sessions, the watermark raised.
        let conn = open(&work)?;
        let sample: Vec<String> = self.big.declared.iter().step_by(100).cloned().collect();
        let users = read_users(&conn, layout, How::Join, &sample)
            .map_err(|e| format!("read back on {}: {e}", layout.title()))?;
        let cut = Timestamp::from_unix(self.cutoff);
        let ok = users.len() == sample.len()
            && users
                .iter()
                .all(|(_, u)| u.sessions.is_empty() && u.sessions_valid_from >= Some(cut));
        drop(conn);
        remove_db(&work);
        if !ok {
            return Err(format!(
                "writes on {}: the users read back still have sessions",
                layout.title()
            ));
        }
        report.add(
            &format!(
                "apply writes (M=100k: delete sessions, raise watermark), {}",
                cache.label()
            ),
            layout,
            t,
            format!(
                "{n} statements on {} users, WAL {} at the commit; closing checkpoints it",
                self.big.declared.len(),
                mib(wal)
            ),
        );
        Ok(())
    }

    /// `sqlite3 FILE 'select * from T' > /dev/null` for every table, timed together.
    fn cli(&mut self, report: &mut Report, layout: Layout, cache: Cache) -> Res<()> {
        let p = self.path(layout);
        let tables: Vec<String> = open(&p)?
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(sql("list the tables"))?;
        self.prepare(&p, cache)?;
        let start = Instant::now();
        for t in &tables {
            let status = Command::new("sqlite3")
                .arg(&p)
                .arg(format!("SELECT * FROM \"{t}\""))
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("sqlite3: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "sqlite3 {} 'SELECT * FROM {t}': {status}",
                    p.display()
                ));
            }
        }
        report.add(
            &format!("sqlite3 CLI: select * from every table, {}", cache.label()),
            layout,
            start.elapsed(),
            format!("{} tables", tables.len()),
        );
        Ok(())
    }

    /// Reading the file from start to end: the disk's (or the cache's) speed.
    fn sequential(&mut self, report: &mut Report, layout: Layout, cache: Cache) -> Res<()> {
        let p = self.path(layout);
        self.prepare(&p, cache)?;
        let start = Instant::now();
        let n = read_file(&p)?;
        let t = start.elapsed();
        report.add(
            &format!("read the file sequentially, {}", cache.label()),
            layout,
            t,
            format!("{} at {:.0} MB/s", mib(n), n as f64 / t.as_secs_f64() / 1e6),
        );
        Ok(())
    }

    /// One run of every measurement on `layout`.
    fn run(&mut self, report: &mut Report, layout: Layout) -> Res<()> {
        let (big, few) = (self.big.clone(), self.few.clone());
        const CACHES: [Cache; 2] = [Cache::Cold, Cache::Warm];
        for cache in CACHES {
            self.sequential(report, layout, cache)?;
        }
        let today = matches!(layout, Layout::A | Layout::AVacuumed);
        let library = today.then_some(How::Library);
        for how in [How::Join, How::Lookup, How::Scan]
            .into_iter()
            .chain(library)
        {
            for cache in CACHES {
                self.read(report, layout, cache, "M=100k", Some(&big), how)?;
            }
        }
        for how in [How::Join, How::Lookup].into_iter().chain(library) {
            for cache in CACHES {
                self.read(report, layout, cache, "M=1k", Some(&few), how)?;
            }
        }
        for cache in CACHES {
            self.read(report, layout, cache, "all users", None, How::All)?;
        }
        for cache in CACHES {
            self.write(report, layout, cache)?;
        }
        for cache in CACHES {
            self.cli(report, layout, cache)?;
        }
        Ok(())
    }
}

/// Size facts of each layout: the file, its largest tables, and how much of each table lies in
/// key order in the file (by `dbstat`).
fn sizes(report: &mut Report, dir: &Path) -> Res<()> {
    for l in LAYOUTS {
        let p = dir.join(l.file());
        let len = std::fs::metadata(&p).map_err(|e| e.to_string())?.len();
        report.fact("file size", l, mib(len));
        let c = open(&p)?;
        let tables: Vec<(String, i64)> = c
            .prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name HAVING sum(pgsize) > 1048576 ORDER BY 2 DESC")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(sql("dbstat"))?;
        let list: Vec<String> = tables
            .iter()
            .map(|(t, b)| format!("{t} {}", mib(*b as u64)))
            .collect();
        report.fact("tables over 1 MiB", l, list.join(", "));
        // Kernel readahead helps a cold read in key order only where the next leaf in key order
        // is the next page of the file.
        let in_order: f64 = c
            .query_row(
                "SELECT 100.0 * sum(pageno = prev + 1) / count(*) FROM (
                     SELECT pageno, lag(pageno) OVER (PARTITION BY name ORDER BY path) AS prev
                     FROM dbstat WHERE pagetype = 'leaf')",
                [],
                |r| r.get(0),
            )
            .map_err(sql("dbstat page order"))?;
        report.fact(
            "leaf pages right after the previous leaf of their table",
            l,
            format!("{in_order:.0}%"),
        );
        if l == Layout::C {
            let avg: f64 = c
                .query_row("SELECT avg(length(record)) FROM users", [], |r| r.get(0))
                .map_err(sql("record sizes"))?;
            report
                .notes
                .push(format!("c: a record is {avg:.0} bytes on average"));
        }
    }
    Ok(())
}

/// The library's own reading of `keys` (`mfactl::store::load_keys`, today's code) must agree
/// with the bench's reading of layout `a`.
fn check_library(path: &Path, sel: &Selection) -> Res<()> {
    let conn = open(path)?;
    let keys = wanted(&conn, Layout::A, sel).map_err(sql("resolve the wanted users"))?;
    let lib = mfactl::store::load_keys(&conn, path, &keys).map_err(|e| e.to_string())?;
    let ours = read_users(&conn, Layout::A, How::Join, &keys).map_err(sql("read"))?;
    let same = lib.len() == ours.len()
        && lib
            .iter()
            .zip(&ours)
            .all(|((k1, u1), (k2, u2))| k1 == k2 && u1 == u2);
    if !same {
        return Err(format!(
            "the bench's reading of layout a differs from mfactl::store::load_keys ({} vs {} users)",
            ours.len(),
            lib.len()
        ));
    }
    Ok(())
}

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: do nothing there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("layout: skipped (run it with `cargo bench --bench layout`)");
        return;
    }
    if let Err(e) = run() {
        eprintln!("layout: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let source = std::env::var_os("MFACTL_LAYOUT_SOURCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/scale-bench/big/store.db"));
    let dir = std::env::var_os("MFACTL_LAYOUT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/layout-bench"));
    let runs = std::env::var("MFACTL_LAYOUT_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(3)
        .max(1);
    if !source.exists() {
        return Err(format!(
            "no source store at {}: run `cargo bench --bench scale` once (it generates it), or \
             set MFACTL_LAYOUT_SOURCE to a store the scale benchmark generated",
            source.display()
        ));
    }
    let started = Instant::now();
    build_all(&source, &dir)?;
    let a = dir.join(Layout::A.file());
    let n: i64 = open(&a)?
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .map_err(sql("count the users"))?;
    let n = n as usize;
    let big = selection(&dir, n, 100_000.min(n))?;
    let few = selection(&dir, n, 1_000.min(n))?;
    check_library(&a, &few)?;
    let cutoff = Timestamp::parse(generate::INCIDENT)?.unix();
    let mut bench = Bench {
        dir: dir.clone(),
        big,
        few,
        cutoff,
        digests: BTreeMap::new(),
        worst_resident: 0.0,
    };
    let mut report = Report::default();
    sizes(&mut report, &dir)?;
    for run in 0..runs {
        for l in LAYOUTS {
            eprintln!("layout: run {} of {runs}, {} …", run + 1, l.title());
            bench.run(&mut report, l)?;
        }
    }
    report.notes.push(format!(
        "cold: the file's pages evicted with posix_fadvise(DONTNEED) before the run; at most \
         {:.1}% of a file was still resident afterwards (mincore). Warm: the whole file read first.",
        bench.worst_resident * 100.0
    ));
    report.notes.push(format!(
        "every read returned the same users on every layout and run (digests); layout a's M=1k \
         read equals mfactl::store::load_keys; N = {n}"
    ));
    println!("{}", table(&report, runs));
    println!(
        "({} cores; whole benchmark {:.0} s)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
