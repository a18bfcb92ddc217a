//! PostgreSQL benchmark (not a test): the scale scenarios of `benches/scale.rs` on PostgreSQL
//! beside SQLite, in the same run, with the release `mfactl` as a user runs it, against targets.
//!
//! ```sh
//! cargo bench --bench postgres                  # N = 1,000,000, M = 100,000, 3 runs
//! MFACTL_PG_RUNS=5 cargo bench --bench postgres # median of 5 runs
//! MFACTL_SCALE_DIR=… MFACTL_SCALE_N=… MFACTL_SCALE_M=…   # as for the scale benchmark
//! ```
//!
//! The big tenant is `benches/scale.rs`'s (generated into `target/scale-bench/`, or
//! `MFACTL_SCALE_DIR`, and reused). Its store is exported as JSON Lines (untimed); then, on each
//! store, every run of each scenario works on a fresh copy (SQLite: the file copied; PostgreSQL:
//! `CREATE DATABASE … TEMPLATE`), and SQLite and PostgreSQL alternate run by run so both see the
//! same machine noise:
//!
//! - **import** of that file into an empty store (users/s; target on PostgreSQL ≥ 100,000/s);
//!   the PostgreSQL store is exported again and must give the same bytes;
//! - **plan** M=100k over N=1M from the imported store (target: PostgreSQL ≤ 2× SQLite); the
//!   JSON plans of both stores must be the same bytes;
//! - **apply** of that plan (target ≤ 2× SQLite), then the **empty plan** after it;
//! - **eight concurrent appliers**, each revoking the sessions of its own 1,000 users, started at
//!   once with a long `--lock-timeout`: all must exit 0, the audit log must grow by the sum of
//!   their plans' changes, and a plan of all eight afterwards must be empty.
//!
//! The PostgreSQL server is the tests' throwaway one (`tests/common/pg.rs`: `fsync=off`,
//! `synchronous_commit=off`, default `shared_buffers`), on the same machine as the client; with
//! `MFACTL_TEST_POSTGRES=postgres://ADMIN:PASSWORD@HOST:PORT/DB` it uses that server instead.
#![allow(dead_code)]

#[path = "scale.rs"]
mod scale;

#[path = "../tests/common/mod.rs"]
mod common;

use scale::{
    copy_store, env_num, expect, export_to, generate, median, mfactl, range, remove_store,
    same_bytes, secs, summary, thousands, Config, Run, Tenant, BIN, POLICIES,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IMPORT: &str = "store import JSON Lines, 1M users, empty store";
const PLAN: &str = "plan M=100k N=1M";
const APPLY: &str = "apply M=100k N=1M (fresh copy)";
const EMPTY: &str = "plan after the apply (empty)";
const CONCURRENT: &str = "8 concurrent applies × 1,000 users";

/// Concurrent appliers, and the users each names.
const APPLIERS: usize = 8;
const PER_APPLIER: usize = 1_000;
/// Their `revoke-sessions-before`: before the benchmark's clock, after every generated session.
const REVOKE_AT: &str = "2026-11-30T11:00:00Z";

/// One scenario's runs on both stores.
#[derive(Debug, Default)]
struct Pair {
    name: &'static str,
    /// Users (or, for the concurrent applies, changes) the operation covers.
    work: usize,
    sqlite: Vec<Duration>,
    pg: Vec<Duration>,
}

impl Pair {
    fn new(name: &'static str, work: usize) -> Pair {
        Pair {
            name,
            work,
            ..Pair::default()
        }
    }
    fn ratio(&self) -> f64 {
        median(self.pg.clone()).as_secs_f64() / median(self.sqlite.clone()).as_secs_f64()
    }
}

/// The server and the databases this run made on it (dropped at the end).
struct Pg {
    db: common::pg::Db,
    made: Vec<String>,
}

impl Pg {
    fn url(&self, name: &str) -> String {
        let own = format!("/{}", self.db.name());
        let url = self.db.url();
        match url.rfind(&own) {
            Some(i) => format!("{}/{name}{}", &url[..i], &url[i + own.len()..]),
            None => url,
        }
    }
    fn sql(&self, sql: &str) -> Result<(), String> {
        self.db
            .admin()
            .batch_execute(sql)
            .map_err(|e| format!("{sql}: {e}"))
    }
    /// A new database: empty, or a copy of `template`.
    fn create(&mut self, name: &str, template: Option<&str>) -> Result<String, String> {
        self.drop_db(name)?;
        match template {
            Some(t) => self.sql(&format!("CREATE DATABASE {name} TEMPLATE {t}"))?,
            None => self.sql(&format!("CREATE DATABASE {name}"))?,
        }
        self.made.push(name.to_string());
        Ok(self.url(name))
    }
    fn drop_db(&mut self, name: &str) -> Result<(), String> {
        self.made.retain(|m| m != name);
        self.sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    }
    fn audit_rows(&self, name: &str) -> Result<i64, String> {
        let mut c = self
            .db
            .connect(&self.url(name))
            .map_err(|e| e.to_string())?;
        let row = c
            .query_one("SELECT count(*) FROM mfactl.audit", &[])
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.made) {
            let _ = self.drop_db(&name);
        }
    }
}

fn sqlite_audit_rows(store: &Path) -> Result<i64, String> {
    let c = rusqlite::Connection::open(store).map_err(|e| e.to_string())?;
    c.query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}

fn ok(r: &Run, what: &str) -> Result<(), String> {
    expect(r.code == 0, || {
        format!("{what}: exit {}\n{}\n{}", r.code, r.stderr, r.out_tail)
    })
}

/// `mfactl ARGS > out`, untimed.
fn to_file(cwd: &Path, args: &[&str], out: &Path) -> Result<(), String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let o = Command::new(BIN)
        .current_dir(cwd)
        .args(["--policies", POLICIES])
        .args(args)
        .env("MFACTL_NOW", generate::NOW)
        .env("NO_COLOR", "1")
        .env_remove("MFACTL_ACTOR")
        .env_remove("MFACTL_STORE")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{BIN}: {e}"))?;
    expect(o.status.success(), || {
        format!(
            "{args:?}: {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Runs the `APPLIERS` applies on `store` at once; the wall time from the first start to the
/// last exit. Each must exit 0.
fn concurrent(cwd: &Path, store: &str, manifests: &[String]) -> Result<Duration, String> {
    let start = Instant::now();
    let handles: Vec<_> = manifests
        .iter()
        .map(|m| {
            let mut cmd = Command::new(BIN);
            cmd.current_dir(cwd)
                .args(["--policies", POLICIES, "--store", store, "apply", m])
                .args([
                    "--actor",
                    generate::ADMIN,
                    "--auto-approve",
                    "--allow-large",
                ])
                .args(["--lock-timeout", "10m"])
                .env("MFACTL_NOW", generate::NOW)
                .env("NO_COLOR", "1")
                .env_remove("MFACTL_ACTOR")
                .env_remove("MFACTL_STORE")
                .stdin(Stdio::null());
            std::thread::spawn(move || cmd.output())
        })
        .collect();
    let mut failures = Vec::new();
    for (h, m) in handles.into_iter().zip(manifests) {
        let o = h
            .join()
            .map_err(|_| "an applier thread panicked".to_string())?
            .map_err(|e| format!("{BIN}: {e}"))?;
        if !o.status.success() {
            failures.push(format!(
                "{m}: {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    let wall = start.elapsed();
    expect(failures.is_empty(), || failures.join("\n"))?;
    Ok(wall)
}

/// Writes the concurrent appliers' manifests: each revokes the sessions of its own users.
fn concurrent_manifests(dir: &Path, big: usize) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let first = big
        .checked_sub(APPLIERS * PER_APPLIER + 10)
        .filter(|f| *f >= 2)
        .ok_or("the tenant is too small for the concurrent appliers")?;
    let mut out = Vec::new();
    for a in 0..APPLIERS {
        let mut y = format!(
            "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata:\n  name: concurrent-{a}\nspec:\n  - users:\n"
        );
        for i in 0..PER_APPLIER {
            y.push_str(&format!(
                "      - {}\n",
                generate::user_id(first + a * PER_APPLIER + i)
            ));
        }
        y.push_str(&format!("    revoke-sessions-before: {REVOKE_AT}\n"));
        let path = dir.join(format!("concurrent-{a}.yaml"));
        std::fs::write(&path, y).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(path.display().to_string());
    }
    Ok(out)
}

struct Figures {
    pairs: Vec<Pair>,
    /// Changes of the eight concurrent plans together.
    concurrent_changes: usize,
    notes: Vec<String>,
}

fn run(cfg: &Config, runs: usize) -> Result<Figures, String> {
    let say = |s: &str| eprintln!("postgres: {s}");
    std::fs::create_dir_all(&cfg.dir).map_err(|e| format!("{}: {e}", cfg.dir.display()))?;
    let big: Tenant = scale::tenant(cfg, "big", cfg.big, cfg.declared, None, false)?;
    let work = cfg.dir.join("pg-bench");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let s = |p: &Path| p.display().to_string();
    let Some(db) = common::pg::database() else {
        return Err("no PostgreSQL here (see the skipped line above)".into());
    };
    let mut pg = Pg {
        db,
        made: Vec::new(),
    };
    let mut notes = Vec::new();
    let n = cfg.big;
    let admin = generate::ADMIN;

    say("exporting the big store as JSON Lines (untimed) …");
    let jsonl = work.join("directory-1m.jsonl");
    export_to(cfg, &big.store, "jsonl", &jsonl)?;
    let jsonl_s = s(&jsonl);

    // Import: each run into an empty store; the last run's stores are the ones used below.
    let mut import = Pair::new(IMPORT, n);
    let lite = work.join("imported.db");
    let lite_s = s(&lite);
    let imported_msg = format!("Imported {n} users");
    for i in 0..runs {
        say(&format!("import, run {} of {runs} …", i + 1));
        remove_store(&lite);
        ok(&mfactl(&work, &["--store", &lite_s, "init"])?, "init")?;
        let r = mfactl(&work, &["--store", &lite_s, "store", "import", &jsonl_s])?;
        ok(&r, "SQLite import")?;
        expect(r.stderr.contains(&imported_msg), || r.stderr.clone())?;
        import.sqlite.push(r.wall);

        let url = pg.create("imported", None)?;
        ok(&mfactl(&work, &["--store", &url, "init"])?, "init")?;
        let r = mfactl(&work, &["--store", &url, "store", "import", &jsonl_s])?;
        ok(&r, "PostgreSQL import")?;
        expect(r.stderr.contains(&imported_msg), || r.stderr.clone())?;
        import.pg.push(r.wall);
    }
    let imported = pg.url("imported");
    // Both stores hold what the file says: exported again, the same bytes.
    say("exporting the imported stores again (untimed) …");
    for (what, store) in [("SQLite", &lite_s), ("PostgreSQL", &imported)] {
        let again = work.join("again.jsonl");
        to_file(
            &work,
            &["--store", store, "store", "export", "--format", "jsonl"],
            &again,
        )?;
        expect(same_bytes(&jsonl, &again)?, || {
            format!("the {what} store's export differs from the file it imported")
        })?;
        let _ = std::fs::remove_file(&again);
    }
    notes.push(format!(
        "import: both stores exported again give the imported file byte for byte ({} MB)",
        std::fs::metadata(&jsonl).map_or(0, |m| m.len() / 1_000_000)
    ));
    let _ = std::fs::remove_file(&jsonl);

    // Plan M=100k over N=1M, from the imported stores.
    let [d, g] = big.plan_paths();
    let selected = big.selected();
    let plan_args = |store: &str| -> Vec<String> {
        ["--store", store, "plan", &d, &g, "--actor", admin]
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    let planned = |r: &Run| -> Result<usize, String> {
        ok(r, "plan")?;
        let (x, u, den) = summary(&r.out_tail).ok_or("no plan summary")?;
        expect(u == selected && den == 0, || {
            format!("{u} users, {den} denied; expected {selected}, 0")
        })?;
        Ok(x)
    };
    let mut plan = Pair::new(PLAN, selected);
    let mut changes = None;
    for i in 0..runs {
        say(&format!("plan, run {} of {runs} …", i + 1));
        for (store, times) in [(&lite_s, &mut plan.sqlite), (&imported, &mut plan.pg)] {
            let a = plan_args(store);
            let r = mfactl(&work, &a.iter().map(String::as_str).collect::<Vec<_>>())?;
            let x = planned(&r)?;
            expect(changes.is_none_or(|c| c == x), || {
                format!("{x} changes planned; another run planned {changes:?}")
            })?;
            changes = Some(x);
            times.push(r.wall);
        }
    }
    let changes = changes.unwrap_or(0);
    // The JSON plans of both stores: the same bytes.
    let (jl, jp) = (work.join("plan-sqlite.json"), work.join("plan-pg.json"));
    for (store, out) in [(&lite_s, &jl), (&imported, &jp)] {
        let mut a = plan_args(store);
        a.extend(["--format".into(), "json".into()]);
        to_file(
            &work,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            out,
        )?;
    }
    expect(same_bytes(&jl, &jp)?, || {
        format!(
            "the JSON plans differ: {} and {}",
            jl.display(),
            jp.display()
        )
    })?;
    notes.push(format!(
        "plan: {changes} changes for {selected} users on both; the JSON plans ({} MB) are the same bytes",
        std::fs::metadata(&jl).map_or(0, |m| m.len() / 1_000_000)
    ));
    let _ = (std::fs::remove_file(&jl), std::fs::remove_file(&jp));

    // Apply, each run on a fresh copy; the last run's stores are planned again.
    let creds = work.join("credentials.tsv");
    let creds_s = s(&creds);
    let lite_work = work.join("work.db");
    let lite_work_s = s(&lite_work);
    let apply_args = |store: &str| -> Vec<String> {
        [
            "--store",
            store,
            "apply",
            &d,
            &g,
            "--actor",
            admin,
            "--auto-approve",
            "--allow-large",
            "--credentials-out",
            &creds_s,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let applied_msg = format!(" for {selected} users; store revision");
    let mut apply = Pair::new(APPLY, selected);
    let audit_before = (sqlite_audit_rows(&lite)?, pg.audit_rows("imported")?);
    let mut pg_work = String::new();
    for i in 0..runs {
        say(&format!("apply, run {} of {runs} …", i + 1));
        remove_store(&lite_work);
        let _ = std::fs::remove_file(&creds);
        copy_store(&lite, &lite_work)?;
        let a = apply_args(&lite_work_s);
        let r = mfactl(&work, &a.iter().map(String::as_str).collect::<Vec<_>>())?;
        ok(&r, "SQLite apply")?;
        expect(r.stderr.contains(&applied_msg), || r.stderr.clone())?;
        apply.sqlite.push(r.wall);

        let _ = std::fs::remove_file(&creds);
        pg_work = pg.create("applied", Some("imported"))?;
        let a = apply_args(&pg_work);
        let r = mfactl(&work, &a.iter().map(String::as_str).collect::<Vec<_>>())?;
        ok(&r, "PostgreSQL apply")?;
        expect(r.stderr.contains(&applied_msg), || r.stderr.clone())?;
        apply.pg.push(r.wall);
    }
    let _ = std::fs::remove_file(&creds);
    let audit_after = (sqlite_audit_rows(&lite_work)?, pg.audit_rows("applied")?);
    expect(
        audit_after.0 - audit_before.0 == changes as i64
            && audit_after.1 - audit_before.1 == changes as i64,
        || format!("audit rows {audit_before:?} → {audit_after:?}; expected +{changes}"),
    )?;
    notes.push(format!(
        "apply: the audit log grew by {changes} rows on both"
    ));

    let mut empty = Pair::new(EMPTY, selected);
    for i in 0..runs {
        say(&format!("empty plan, run {} of {runs} …", i + 1));
        for (store, times) in [(&lite_work_s, &mut empty.sqlite), (&pg_work, &mut empty.pg)] {
            let a = plan_args(store);
            let r = mfactl(&work, &a.iter().map(String::as_str).collect::<Vec<_>>())?;
            ok(&r, "empty plan")?;
            expect(
                r.out_tail
                    .contains("No changes: the store matches the manifests."),
                || format!("not empty: {:?}", summary(&r.out_tail)),
            )?;
            times.push(r.wall);
        }
    }
    remove_store(&lite_work);
    pg.drop_db("applied")?;

    // Eight appliers at once, each run on a fresh copy of the imported store.
    let manifests = concurrent_manifests(&work.join("concurrent"), n)?;
    let mut each = Vec::new();
    for m in &manifests {
        let r = mfactl(&work, &["--store", &lite_s, "plan", m, "--actor", admin])?;
        ok(&r, "plan")?;
        let (x, u, den) = summary(&r.out_tail).ok_or("no plan summary")?;
        expect(u == PER_APPLIER && den == 0 && x > 0, || {
            format!("{m}: {x} changes for {u} users, {den} denied")
        })?;
        each.push(x);
    }
    let total: usize = each.iter().sum();
    let mut conc = Pair::new(CONCURRENT, total);
    let mut all_args: Vec<String> = vec!["--store".into(), String::new(), "plan".into()];
    all_args.extend(manifests.iter().cloned());
    all_args.extend(["--actor".into(), admin.into()]);
    for i in 0..runs {
        say(&format!("8 concurrent applies, run {} of {runs} …", i + 1));
        remove_store(&lite_work);
        copy_store(&lite, &lite_work)?;
        let url = pg.create("concurrent", Some("imported"))?;
        for (store, times, audit) in [
            (
                &lite_work_s,
                &mut conc.sqlite,
                &(|| sqlite_audit_rows(&lite_work)) as &dyn Fn() -> Result<i64, String>,
            ),
            (
                &url,
                &mut conc.pg,
                &(|| pg.audit_rows("concurrent")) as &dyn Fn() -> Result<i64, String>,
            ),
        ] {
            let before = audit()?;
            times.push(concurrent(&work, store, &manifests)?);
            let after = audit()?;
            expect(after - before == total as i64, || {
                format!(
                    "{store}: the audit log grew by {}; the plans had {total} changes",
                    after - before
                )
            })?;
            all_args[1] = store.clone();
            let r = mfactl(
                &work,
                &all_args.iter().map(String::as_str).collect::<Vec<_>>(),
            )?;
            ok(&r, "plan after the concurrent applies")?;
            expect(
                r.out_tail
                    .contains("No changes: the store matches the manifests."),
                || format!("{store}: not empty after the concurrent applies"),
            )?;
        }
    }
    remove_store(&lite_work);
    remove_store(&lite);
    notes.push(format!(
        "concurrent: every applier exited 0 on both stores; the audit log grew by exactly {total} rows ({each:?}) and a plan afterwards was empty, every run"
    ));

    Ok(Figures {
        pairs: vec![import, plan, apply, empty, conc],
        concurrent_changes: total,
        notes,
    })
}

fn table(f: &Figures, runs: usize) -> String {
    let cell = |v: &[Duration]| {
        let (lo, hi) = range(v.iter().copied());
        format!("{} ({}–{})", secs(median(v.to_vec())), secs(lo), secs(hi))
    };
    let per_s = |n: usize, v: &[Duration]| {
        thousands((n as f64 / median(v.to_vec()).as_secs_f64().max(1e-9)) as usize)
    };
    let mut out = String::from(
        "| scenario | users | SQLite: median (range) | PostgreSQL: median (range) | PG / SQLite | target | met? |\n\
         |---|---:|---:|---:|---:|---|---|\n",
    );
    for p in &f.pairs {
        let x = p.ratio();
        let (target, met) = match p.name {
            IMPORT => {
                let rate = p.work as f64 / median(p.pg.clone()).as_secs_f64();
                (
                    format!(
                        "PostgreSQL ≥ 100,000 users/s: {} users/s (SQLite {} users/s)",
                        per_s(p.work, &p.pg),
                        per_s(p.work, &p.sqlite)
                    ),
                    Some(rate >= 100_000.0),
                )
            }
            PLAN | APPLY => ("PostgreSQL ≤ 2× SQLite".to_string(), Some(x <= 2.0)),
            CONCURRENT => (
                format!(
                    "none: {} changes/s and {:.2} applies/s on PostgreSQL, {} changes/s and {:.2} applies/s on SQLite",
                    per_s(f.concurrent_changes, &p.pg),
                    APPLIERS as f64 / median(p.pg.clone()).as_secs_f64(),
                    per_s(f.concurrent_changes, &p.sqlite),
                    APPLIERS as f64 / median(p.sqlite.clone()).as_secs_f64(),
                ),
                None,
            ),
            _ => ("none".to_string(), None),
        };
        let users = if p.name == CONCURRENT {
            format!(
                "{} ({} changes)",
                thousands(APPLIERS * PER_APPLIER),
                thousands(p.work)
            )
        } else {
            thousands(p.work)
        };
        out.push_str(&format!(
            "| {} | {users} | {} | {} | {x:.2}× | {target} | {} |\n",
            p.name,
            cell(&p.sqlite),
            cell(&p.pg),
            match met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "—",
            }
        ));
    }
    out.push_str(&format!(
        "\n(median and range of {runs} runs, SQLite and PostgreSQL alternating; {} cores; the server on the same machine)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    for n in &f.notes {
        out.push_str(&format!("- {n}\n"));
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The scale benchmark's generator child (see `scale::Config::generate_in_child`).
    if args.first().is_some_and(|a| a == "--generate") {
        let result = generate::parse_args(&args[1..]).and_then(|o| generate::generate(&o));
        if let Err(e) = result {
            eprintln!("postgres: {e}");
            std::process::exit(1);
        }
        return;
    }
    // `cargo test --all-targets` runs bench targets without `--bench`: do nothing there.
    if !args.iter().any(|a| a == "--bench") {
        println!("postgres: skipped (run it with `cargo bench --bench postgres`)");
        return;
    }
    let cfg = Config::from_env();
    let runs = env_num("MFACTL_PG_RUNS").unwrap_or(3).max(1);
    let started = Instant::now();
    match run(&cfg, runs) {
        Ok(f) => {
            println!("{}", table(&f, runs));
            println!(
                "(MFACTL_NOW={}; whole benchmark {:.0} s)",
                generate::NOW,
                started.elapsed().as_secs_f64()
            );
        }
        Err(e) => {
            eprintln!("postgres: {e}");
            std::process::exit(1);
        }
    }
}
