//! Scale benchmark (not a test): wall time and peak RSS of the release `mfactl` on a generated
//! tenant of a million users, next to limit references measured in the same run: the bare YAML
//! parse of the same manifests, bare SQL reading exactly the records the M=100k plan needs, bare
//! SQL performing the writes of the M=100k apply (one record rewrite per changed user, the audit
//! rows 64 to an INSERT), and two schema-agnostic reads of every row of every table of the big
//! store: in Rust, and with the `sqlite3` shell (skipped, saying so, when it is not on PATH).
//!
//! ```sh
//! cargo bench --bench scale                    # N = 1,000,000 / 100,000, M = 100,000 / 1,000
//! MFACTL_SCALE_N=200000 cargo bench --bench scale   # a smaller big tenant
//! MFACTL_SCALE_RUNS=5 cargo bench --bench scale     # median of 5 runs (default 3)
//! MFACTL_SCALE_SMALL=20000 MFACTL_SCALE_M=10000 …    # the small tenant's N, and M
//! ```
//!
//! The tenants are written by `examples/generate.rs` (included below) into
//! `target/scale-bench/` (or `MFACTL_SCALE_DIR`) and reused while the generator and the sizes are
//! unchanged; scenarios that write work on copies, so the generated stores stay pristine. Every
//! figure is the median of the runs, shown with its range (min–max); the files are in the OS
//! page cache (warm), as they are for a CI job or a daemon that just read them. `tests/scale.rs`
//! runs every scenario here at a few thousand users and checks what they print, so this code
//! cannot rot.
#![allow(dead_code)]

#[path = "../examples/generate.rs"]
pub mod generate;

use rusqlite::Connection;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mfactl");
/// The repository's example policies, whose guardrails protect the generated tenant's
/// break-glass account (the built-in guardrails protect nobody).
pub const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");

/// Sizes and where to put the tenants.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    /// N of the big tenant (1,000,000).
    pub big: usize,
    /// N of the small tenant (100,000); also the users of the import file.
    pub small: usize,
    /// M of the big plans (100,000).
    pub declared: usize,
    /// M of the small plan (1,000).
    pub few: usize,
    pub runs: usize,
    pub seed: u64,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// Generate the tenants in a child process. A spawned child's peak RSS (`ru_maxrss`)
    /// includes its parent's resident memory at the spawn, so the benchmark keeps its own small.
    pub generate_in_child: bool,
}

impl Config {
    pub fn full(dir: PathBuf) -> Config {
        Config {
            dir,
            big: 1_000_000,
            small: 100_000,
            declared: 100_000,
            few: 1_000,
            runs: 3,
            seed: 1,
            verbose: true,
            generate_in_child: true,
        }
    }
}

/// One process run: wall time, peak RSS (`ru_maxrss` from `wait4`), exit code, stderr and the
/// summary of its stdout.
#[derive(Debug, Clone)]
pub struct Run {
    pub wall: Duration,
    pub rss_kib: u64,
    pub code: i32,
    pub stderr: String,
    /// Bytes written to stdout, lines starting with `- id: ` (export), and the last 4 KiB.
    pub out_bytes: u64,
    pub out_ids: u64,
    pub out_tail: String,
}

/// Runs `mfactl ARGS` in `cwd` at the fixed clock, reading its stdout through a pipe (as
/// `mfactl … | tool` would), and reaps it with `wait4` to read its own peak RSS.
pub fn mfactl(cwd: &Path, args: &[&str]) -> Result<Run, String> {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .args(["--policies", POLICIES])
        .args(args)
        .env("MFACTL_NOW", generate::NOW)
        .env("NO_COLOR", "1")
        .env_remove("MFACTL_ACTOR")
        .env_remove("MFACTL_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("{BIN}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let out_reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let (mut bytes, mut ids, mut at_line_start) = (0u64, 0u64, true);
        let mut tail: Vec<u8> = Vec::new();
        let mut pending: Vec<u8> = Vec::new(); // the start of a line split across reads
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            bytes += n as u64;
            for &b in &buf[..n] {
                // A user starts a line with `- id: ` in YAML, `{"kind":"user"` in JSON Lines.
                if at_line_start {
                    pending.push(b);
                    let done = match pending.len() {
                        6 if pending != b"{\"kind" => {
                            ids += u64::from(pending == b"- id: ");
                            true
                        }
                        14 => {
                            ids += u64::from(pending == b"{\"kind\":\"user\"");
                            true
                        }
                        _ => false,
                    };
                    if done {
                        at_line_start = false;
                        pending.clear();
                    }
                }
                if b == b'\n' {
                    at_line_start = true;
                    pending.clear();
                }
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 8192 {
                tail.drain(..tail.len() - 4096);
            }
        }
        (bytes, ids, String::from_utf8_lossy(&tail).into_owned())
    });
    let (status, rss_kib) = wait4(child.id())?;
    let wall = start.elapsed();
    let (out_bytes, out_ids, out_tail) = out_reader.join().map_err(|_| "stdout reader panicked")?;
    let stderr = err_reader.join().map_err(|_| "stderr reader panicked")?;
    Ok(Run {
        wall,
        rss_kib,
        code: status,
        stderr,
        out_bytes,
        out_ids,
        out_tail,
    })
}

/// Waits for `pid` and returns its exit code (or 128 + signal) and its peak RSS in KiB.
fn wait4(pid: u32) -> Result<(i32, u64), String> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills in; an all-zero value is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; both pointers point at live locals.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
    if r < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, ru.ru_maxrss as u64))
}

/// `Plan: X changes for Y users, D denied.` → (X, Y, D), from the end of a plan.
pub fn summary(text: &str) -> Option<(usize, usize, usize)> {
    let line = text.lines().rev().find(|l| l.starts_with("Plan: "))?;
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    match nums[..] {
        [x, y, d] => Some((x, y, d)),
        _ => None,
    }
}

/// A generated tenant: its store, its manifests and what the generator says they select.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub dir: PathBuf,
    pub users: usize,
    pub store: PathBuf,
    pub gen: generate::Generated,
}

impl Tenant {
    pub fn manifests(&self, kind: &str) -> String {
        self.dir.join("manifests").join(kind).display().to_string()
    }
    /// The declared and group manifests: the M-user plan (the all-users one is separate).
    pub fn plan_paths(&self) -> [String; 2] {
        [self.manifests("declared"), self.manifests("groups")]
    }
    /// Users the declared and group manifests select (every one of them needs a change).
    pub fn selected(&self) -> usize {
        let all: BTreeSet<&String> = self
            .gen
            .declared
            .iter()
            .chain(&self.gen.group_selected)
            .collect();
        all.len()
    }
}

/// Generates (or reuses) a tenant of `users` users with `declared` declared, optionally without a
/// store of its own (`store_from`) and with the import file.
pub fn tenant(
    cfg: &Config,
    name: &str,
    users: usize,
    declared: usize,
    store_from: Option<&Tenant>,
    directory_yaml: bool,
) -> Result<Tenant, String> {
    let dir = cfg.dir.join(name);
    let opts = generate::Options {
        users,
        declared,
        out: dir.clone(),
        seed: cfg.seed,
        manifests_only: store_from.is_some(),
        directory_yaml,
    };
    // Reused only when the generator's source and every option are the same.
    let stamp = format!(
        "{:?} {:x}",
        opts,
        fnv(include_str!("../examples/generate.rs").as_bytes())
    );
    let stamp_file = dir.join("stamp");
    let fresh = std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp);
    if !fresh {
        if cfg.verbose {
            eprintln!("scale: generating {name}: N={users}, M={declared} …");
        }
        let _ = std::fs::remove_file(&stamp_file);
        if cfg.generate_in_child {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut args = vec![
                "--generate".to_string(),
                "--users".into(),
                users.to_string(),
                "--declared".into(),
                declared.to_string(),
                "--out".into(),
                dir.display().to_string(),
                "--seed".into(),
                cfg.seed.to_string(),
            ];
            args.extend(opts.manifests_only.then(|| "--manifests-only".to_string()));
            args.extend(directory_yaml.then(|| "--directory-yaml".to_string()));
            let status = Command::new(exe)
                .args(&args)
                .status()
                .map_err(|e| e.to_string())?;
            expect(status.success(), || format!("generating {name} failed"))?;
        } else {
            generate::generate(&opts)?;
        }
        std::fs::write(&stamp_file, &stamp).map_err(|e| e.to_string())?;
    }
    // The manifests are cheap to regenerate and tell us what they select.
    let gen = generate::write_manifests(&opts)?;
    let store = store_from.map_or(dir.join("store.db"), |t| t.store.clone());
    // A tenant generated by an older mfactl holds an older schema: migrate it (a no-op when
    // it is current), as a user upgrading would.
    if store_from.is_none() && fresh {
        let store_s = store.display().to_string();
        let r = mfactl(&dir, &["--store", &store_s, "init"])?;
        expect(r.code == 0, || {
            format!("mfactl init on {store_s}: {}", r.stderr)
        })?;
    }
    Ok(Tenant {
        dir,
        users,
        store,
        gen,
    })
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A scenario's figures: one [`Run`] per repetition.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    /// Users the operation covers (for the per-user rates).
    pub users: usize,
    pub runs: Vec<Run>,
}

impl Row {
    pub fn wall(&self) -> Duration {
        median(self.runs.iter().map(|r| r.wall).collect())
    }
    /// The fastest and the slowest run.
    pub fn range(&self) -> (Duration, Duration) {
        range(self.runs.iter().map(|r| r.wall))
    }
    pub fn rss_kib(&self) -> u64 {
        self.runs.iter().map(|r| r.rss_kib).max().unwrap_or(0)
    }
}

/// A limit reference: the median of its runs.
#[derive(Debug, Clone)]
pub struct Reference {
    pub name: String,
    pub walls: Vec<Duration>,
    /// What it touched (rows read or written, documents parsed), to show it did the work.
    pub work: String,
}

impl Reference {
    pub fn wall(&self) -> Duration {
        median(self.walls.clone())
    }
    /// The fastest and the slowest run.
    pub fn range(&self) -> (Duration, Duration) {
        range(self.walls.iter().copied())
    }
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub fn range(v: impl Iterator<Item = Duration> + Clone) -> (Duration, Duration) {
    (
        v.clone().min().unwrap_or_default(),
        v.max().unwrap_or_default(),
    )
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub references: Vec<Reference>,
    /// References that could not run here, one line each (printed under the table).
    pub skipped: Vec<String>,
}

impl Report {
    pub fn row(&self, name: &str) -> &Row {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .expect("a measured scenario")
    }
    pub fn reference(&self, name: &str) -> &Reference {
        self.references
            .iter()
            .find(|r| r.name == name)
            .expect("a measured reference")
    }
}

pub fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// Runs `args` `runs` times, checking each run with `check`; `prepare` runs untimed before each.
#[allow(clippy::too_many_arguments)]
fn scenario(
    cfg: &Config,
    report: &mut Report,
    name: &str,
    users: usize,
    runs: usize,
    prepare: &mut dyn FnMut() -> Result<(), String>,
    args: &[&str],
    check: &dyn Fn(&Run) -> Result<(), String>,
) -> Result<(), String> {
    if cfg.verbose {
        eprintln!("scale: {name} …");
    }
    let mut row = Row {
        name: name.to_string(),
        users,
        runs: Vec::new(),
    };
    for _ in 0..runs.max(1) {
        prepare()?;
        let run = mfactl(&cfg.dir, args)?;
        check(&run).map_err(|e| {
            format!(
                "{name}: {e}\nstderr: {}\nstdout tail: {}",
                run.stderr, run.out_tail
            )
        })?;
        row.runs.push(run);
    }
    report.rows.push(row);
    Ok(())
}

pub const PLAN_BIG: &str = "plan M=100k N=1M";
pub const PLAN_SMALL: &str = "plan M=100k N=100k";
pub const PLAN_FEW: &str = "plan M=1k N=1M";
pub const PLAN_ALL: &str = "plan all-users N=1M";
pub const APPLY: &str = "apply M=100k N=1M";
pub const APPLY_SAVED: &str = "apply --plan (the M=100k plan saved)";
pub const EMPTY: &str = "plan after apply (empty)";
pub const IMPORT: &str = "store import 100k users";
pub const EXPORT: &str = "store export 1M users";
pub const EXPORT_JSONL: &str = "store export --format jsonl, 1M users";
pub const IMPORT_JSONL: &str = "store import JSON Lines, 1M users (its export)";
pub const IMPORT_YAML_BIG: &str = "store import YAML, 1M users (its export)";
pub const VALIDATE: &str = "validate M=100k N=1M";
pub const REF_PARSE: &str = "bare YAML parse (M=100k manifests)";
pub const REF_READ: &str = "bare SQL read (rows of the M=100k plan)";
pub const REF_WRITE: &str = "bare SQL writes (the M=100k apply)";
pub const REF_ALL: &str = "bare SQL read, every row of every table (N=1M store)";
pub const REF_SQLITE3: &str = "sqlite3 CLI, SELECT * of every table (N=1M store)";

/// Every scenario and reference. Checks what each run prints, so a wrong result fails the run.
pub fn run(cfg: &Config) -> Result<(Report, Tenants), String> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| format!("{}: {e}", cfg.dir.display()))?;
    let big = tenant(cfg, "big", cfg.big, cfg.declared, None, false)?;
    let small = tenant(cfg, "small", cfg.small, cfg.declared, None, true)?;
    let few = tenant(cfg, "few", cfg.big, cfg.few, Some(&big), false)?;
    let mut report = Report::default();
    let admin = generate::ADMIN;
    let runs = cfg.runs;
    let s = |p: &Path| p.display().to_string();
    let (big_store, small_store) = (s(&big.store), s(&small.store));
    let none = &mut || Ok(());

    let plan_check = |users: usize| {
        move |r: &Run| -> Result<(), String> {
            expect(r.code == 0, || format!("exit {}", r.code))?;
            let (_, u, d) = summary(&r.out_tail).ok_or("no summary line")?;
            expect(u == users && d == 0, || {
                format!("{u} users, {d} denied; expected {users}, 0")
            })
        }
    };
    let [bd, bg] = big.plan_paths();
    let plan_args = |store: &str, d: &str, g: &str| -> Vec<String> {
        ["--store", store, "plan", d, g, "--actor", admin]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let args = plan_args(&big_store, &bd, &bg);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    scenario(
        cfg,
        &mut report,
        PLAN_BIG,
        big.selected(),
        runs,
        none,
        &argv,
        &plan_check(big.selected()),
    )?;

    let [sd, sg] = small.plan_paths();
    let args = plan_args(&small_store, &sd, &sg);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    scenario(
        cfg,
        &mut report,
        PLAN_SMALL,
        small.selected(),
        runs,
        none,
        &argv,
        &plan_check(small.selected()),
    )?;

    let [fd, fg] = few.plan_paths();
    let args = plan_args(&big_store, &fd, &fg);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    scenario(
        cfg,
        &mut report,
        PLAN_FEW,
        few.selected(),
        runs,
        none,
        &argv,
        &plan_check(few.selected()),
    )?;

    let all = big.manifests("all-users");
    let argv = ["--store", &big_store, "plan", &all, "--actor", admin];
    let n_all = cfg.big - 1; // everyone but the protected user, who is listed as skipped
    scenario(
        cfg,
        &mut report,
        PLAN_ALL,
        cfg.big,
        runs,
        none,
        &argv,
        &|r: &Run| {
            plan_check(n_all)(r)?;
            expect(
                r.out_tail.contains(&format!(
                    "{} (protected; selected by incident-all-users)",
                    generate::BREAKGLASS
                )),
                || "the protected user is not listed as skipped".into(),
            )
        },
    )?;

    let argv = ["--store", &big_store, "validate", &bd, &bg];
    scenario(
        cfg,
        &mut report,
        VALIDATE,
        big.selected(),
        runs,
        none,
        &argv,
        &|r: &Run| {
            expect(r.code == 0 && r.stderr.contains("valid."), || {
                format!("exit {}", r.code)
            })
        },
    )?;

    let big_users = cfg.big;
    for (name, format) in [(EXPORT, "yaml"), (EXPORT_JSONL, "jsonl")] {
        let argv = ["--store", &big_store, "store", "export", "--format", format];
        scenario(
            cfg,
            &mut report,
            name,
            cfg.big,
            runs,
            none,
            &argv,
            &|r: &Run| {
                expect(r.code == 0 && r.out_ids == big_users as u64, || {
                    format!(
                        "exit {}, {} users exported; expected {big_users}",
                        r.code, r.out_ids
                    )
                })
            },
        )?;
    }

    // Round trips: the big directory exported in each format (untimed), imported into a fresh
    // store (timed), and exported again, byte for byte the same.
    let imported = cfg.dir.join("import.db");
    let imported_s = s(&imported);
    for (name, format, file) in [
        (IMPORT_JSONL, "jsonl", "directory-1m.jsonl"),
        (IMPORT_YAML_BIG, "yaml", "directory-1m.yaml"),
    ] {
        let file = cfg.dir.join(file);
        export_to(cfg, &big.store, format, &file)?;
        let file_s = s(&file);
        let mut fresh = || -> Result<(), String> {
            remove_store(&imported);
            let r = mfactl(&cfg.dir, &["--store", &imported_s, "init"])?;
            expect(r.code == 0, || format!("init: {}", r.stderr))
        };
        let argv = ["--store", &imported_s, "store", "import", &file_s];
        scenario(
            cfg,
            &mut report,
            name,
            cfg.big,
            runs,
            &mut fresh,
            &argv,
            &|r: &Run| {
                expect(
                    r.code == 0 && r.stderr.contains(&format!("Imported {big_users} users")),
                    || format!("exit {}", r.code),
                )
            },
        )?;
        let again = cfg.dir.join(format!("again.{format}"));
        export_to(cfg, &imported, format, &again)?;
        expect(same_bytes(&file, &again)?, || {
            format!("{name}: the export of the imported store differs from the file imported")
        })?;
        let _ = std::fs::remove_file(&again);
        let _ = std::fs::remove_file(&file);
    }
    remove_store(&imported);

    let imported = cfg.dir.join("import.db");
    let imported_s = s(&imported);
    let file = s(&small.dir.join("directory.yaml"));
    let mut fresh = || -> Result<(), String> {
        remove_store(&imported);
        let r = mfactl(&cfg.dir, &["--store", &imported_s, "init"])?;
        expect(r.code == 0, || format!("init: {}", r.stderr))
    };
    let argv = ["--store", &imported_s, "store", "import", &file];
    let small_users = cfg.small;
    scenario(
        cfg,
        &mut report,
        IMPORT,
        cfg.small,
        runs,
        &mut fresh,
        &argv,
        &|r: &Run| {
            expect(
                r.code == 0 && r.stderr.contains(&format!("Imported {small_users} users")),
                || format!("exit {}", r.code),
            )
        },
    )?;

    // The apply works on a copy; the last run's result is what the empty plan reads.
    let work = cfg.dir.join("work.db");
    let work_s = s(&work);
    let creds = cfg.dir.join("credentials.tsv");
    let creds_s = s(&creds);
    let mut copy = || -> Result<(), String> {
        remove_store(&work);
        let _ = std::fs::remove_file(&creds);
        copy_store(&big.store, &work)
    };
    let argv = [
        "--store",
        &work_s,
        "apply",
        &bd,
        &bg,
        "--actor",
        admin,
        "--auto-approve",
        "--allow-large",
        "--credentials-out",
        &creds_s,
    ];
    let selected = big.selected();
    let applied = |r: &Run| -> Result<(), String> {
        expect(r.code == 0, || format!("exit {}", r.code))?;
        expect(
            r.stderr
                .contains(&format!(" for {selected} users; store revision")),
            || "wrong apply summary".into(),
        )
    };
    scenario(
        cfg,
        &mut report,
        APPLY,
        selected,
        runs,
        &mut copy,
        &argv,
        &applied,
    )?;
    let args = plan_args(&work_s, &bd, &bg);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    scenario(
        cfg,
        &mut report,
        EMPTY,
        selected,
        runs,
        none,
        &argv,
        &|r: &Run| {
            expect(
                r.code == 0
                    && r.out_tail
                        .contains("No changes: the store matches the manifests."),
                || format!("not empty: {:?}", summary(&r.out_tail)),
            )
        },
    )?;

    // The same apply from a saved plan (made once, untimed, on the pristine store), each run on
    // a fresh copy: the saved plan's checks (its id, each change remade and compared, the
    // fingerprints) are what it costs beyond the plain apply.
    let saved = cfg.dir.join("saved-plan.json");
    let saved_s = s(&saved);
    let mut args = plan_args(&big_store, &bd, &bg);
    args.extend(["--out".to_string(), saved_s.clone()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let made = mfactl(&cfg.dir, &argv)?;
    expect(made.code == 0, || {
        format!("plan --out: exit {}: {}", made.code, made.stderr)
    })?;
    let argv = [
        "--store",
        &work_s,
        "apply",
        "--plan",
        &saved_s,
        "--actor",
        admin,
        "--allow-large",
        "--credentials-out",
        &creds_s,
    ];
    scenario(
        cfg,
        &mut report,
        APPLY_SAVED,
        selected,
        runs,
        &mut copy,
        &argv,
        &applied,
    )?;
    let _ = std::fs::remove_file(&saved);

    // Limit references, measured in this process.
    if cfg.verbose {
        eprintln!("scale: limit references …");
    }
    let files = manifest_files(&big)?;
    let mut parse = Reference {
        name: REF_PARSE.into(),
        walls: Vec::new(),
        work: String::new(),
    };
    let mut read = Reference {
        name: REF_READ.into(),
        walls: Vec::new(),
        work: String::new(),
    };
    let mut write = Reference {
        name: REF_WRITE.into(),
        walls: Vec::new(),
        work: String::new(),
    };
    let mut all_rows = Reference {
        name: REF_ALL.into(),
        walls: Vec::new(),
        work: String::new(),
    };
    let mut cli = Reference {
        name: REF_SQLITE3.into(),
        walls: Vec::new(),
        work: String::new(),
    };
    let mut cli_skipped = false;
    let changes = planned_changes(cfg, &big)?;
    expect(!changes.is_empty(), || {
        "the M=100k plan has no changes".into()
    })?;
    for _ in 0..runs.max(1) {
        let (wall, selectors) = bare_parse(&files)?;
        parse.walls.push(wall);
        parse.work = format!(
            "{} documents, {} user ids",
            selectors.docs,
            selectors.users.len()
        );
        let (wall, done) = bare_read(&big.store, &selectors)?;
        read.walls.push(wall);
        read.work = done;
        let (wall, all) = bare_read_all(&big.store)?;
        all_rows.walls.push(wall);
        all_rows.work = format!(
            "{} tables, {} rows, {} bytes",
            all.tables, all.rows, all.bytes
        );
        match sqlite3_read_all(&big.store, all.rows)? {
            Some((wall, done)) => {
                cli.walls.push(wall);
                cli.work = done;
            }
            None => cli_skipped = true,
        }
        copy()?;
        let (wall, done) = bare_writes(&work, &changes)?;
        write.walls.push(wall);
        write.work = done;
    }
    remove_store(&work);
    report.references.extend([parse, read, write, all_rows]);
    if cli_skipped {
        report
            .skipped
            .push(format!("{REF_SQLITE3}: skipped (sqlite3 is not on PATH)"));
    } else {
        report.references.push(cli);
    }
    Ok((report, Tenants { big, small, few }))
}

/// The tenants a run used, for callers that check more.
#[derive(Debug, Clone)]
pub struct Tenants {
    pub big: Tenant,
    pub small: Tenant,
    pub few: Tenant,
}

/// `mfactl --store STORE store export --format FORMAT > OUT`, untimed.
pub fn export_to(cfg: &Config, store: &Path, format: &str, out: &Path) -> Result<(), String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let status = Command::new(BIN)
        .current_dir(&cfg.dir)
        .args([
            "--store",
            &store.display().to_string(),
            "store",
            "export",
            "--format",
            format,
        ])
        .stdout(file)
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("{BIN}: {e}"))?;
    expect(status.success(), || {
        format!("export to {}: {status}", out.display())
    })
}

/// Whether two files hold the same bytes, read a megabyte at a time.
pub fn same_bytes(a: &Path, b: &Path) -> Result<bool, String> {
    let open = |p: &Path| {
        std::fs::File::open(p)
            .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let (mut a, mut b) = (open(a)?, open(b)?);
    loop {
        use std::io::BufRead;
        let x = a.fill_buf().map_err(|e| e.to_string())?.to_vec();
        let y = b.fill_buf().map_err(|e| e.to_string())?;
        let n = x.len().min(y.len());
        if x[..n] != y[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(x.is_empty() && y.is_empty());
        }
        a.consume(n);
        b.consume(n);
    }
}

pub fn remove_store(p: &Path) {
    let s = p.display().to_string();
    for f in [s.clone(), format!("{s}-wal"), format!("{s}-shm")] {
        let _ = std::fs::remove_file(f);
    }
}

pub fn copy_store(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copy {}: {e}", from.display()))
}

fn manifest_files(t: &Tenant) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for dir in t.plan_paths() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{dir}: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        for p in names {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            out.push((p.display().to_string(), text));
        }
    }
    Ok(out)
}

/// What the bare parse found: the ids and groups the manifests name.
#[derive(Debug, Default)]
pub struct Selectors {
    pub docs: usize,
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

/// serde_yaml parsing every document into a generic `Value` (no types, no checks), then picking
/// out the ids and groups the plan must load.
pub fn bare_parse(files: &[(String, String)]) -> Result<(Duration, Selectors), String> {
    use serde::Deserialize;
    let start = Instant::now();
    let mut docs = Vec::new();
    for (name, text) in files {
        for de in serde_yaml::Deserializer::from_str(text) {
            docs.push(serde_yaml::Value::deserialize(de).map_err(|e| format!("{name}: {e}"))?);
        }
    }
    let wall = start.elapsed();
    let mut sel = Selectors {
        docs: docs.len(),
        ..Default::default()
    };
    for d in &docs {
        for e in d
            .get("spec")
            .and_then(|s| s.as_sequence())
            .into_iter()
            .flatten()
        {
            for list in ["users", "except"] {
                for u in e
                    .get(list)
                    .and_then(|l| l.as_sequence())
                    .into_iter()
                    .flatten()
                {
                    sel.users.extend(u.as_str().map(|u| u.to_ascii_lowercase()));
                }
            }
            sel.groups.extend(
                e.get("group")
                    .and_then(|g| g.as_str())
                    .map(|g| g.to_ascii_lowercase()),
            );
        }
    }
    sel.users.push(generate::ADMIN.to_string());
    Ok((wall, sel))
}

/// Opens the store as mfactl does (same pragmas: foreign keys, `synchronous = FULL`, WAL), for
/// the references.
fn open(path: &Path) -> Result<Connection, String> {
    let c = Connection::open(path).map_err(|e| e.to_string())?;
    c.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
        .map_err(|e| e.to_string())?;
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    expect(mode.eq_ignore_ascii_case("wal"), || {
        format!("{}: journal mode {mode}, not WAL", path.display())
    })?;
    Ok(c)
}

/// Every byte of a value, added into `sum` (so the reader cannot skip any, at the least cost:
/// the sum vectorizes), and its length.
fn touch(v: rusqlite::types::ValueRef<'_>, sum: &mut u64) -> usize {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            *sum = sum.wrapping_add(t.iter().map(|&b| u64::from(b)).sum::<u64>());
            t.len()
        }
        ValueRef::Integer(i) => {
            *sum = sum.wrapping_add(i as u64);
            8
        }
        ValueRef::Real(f) => {
            *sum = sum.wrapping_add(f.to_bits());
            8
        }
        ValueRef::Null => 0,
    }
}

/// Reads exactly the rows the plan needs on layout v2 (the named users, the groups' members,
/// the actor: one `users` record each) and touches every byte of each, decoding nothing: the
/// keys go into a temporary table in one transaction (`members` gives the groups'), then one
/// join reads the records by primary-key seeks. Checks that every wanted key was read.
pub fn bare_read(store: &Path, sel: &Selectors) -> Result<(Duration, String), String> {
    let c = open(store)?;
    let e = |e: rusqlite::Error| e.to_string();
    let start = Instant::now();
    c.execute_batch("BEGIN; CREATE TEMP TABLE want (key TEXT PRIMARY KEY) WITHOUT ROWID;")
        .map_err(e)?;
    {
        let mut ins = c
            .prepare("INSERT OR IGNORE INTO temp.want VALUES (?1)")
            .map_err(e)?;
        for k in &sel.users {
            ins.execute([k]).map_err(e)?;
        }
        let mut members = c
            .prepare(
                "INSERT OR IGNORE INTO temp.want SELECT user_key FROM members WHERE group_key = ?1",
            )
            .map_err(e)?;
        for g in &sel.groups {
            members.execute([g]).map_err(e)?;
        }
    }
    let (mut rows, mut bytes, mut sum) = (0u64, 0usize, 0u64);
    {
        let mut stmt = c
            .prepare("SELECT c.key, c.record FROM temp.want w CROSS JOIN users c ON c.key = w.key")
            .map_err(e)?;
        let mut q = stmt.query([]).map_err(e)?;
        while let Some(r) = q.next().map_err(e)? {
            rows += 1;
            bytes += touch(r.get_ref(0).map_err(e)?, &mut sum);
            bytes += touch(r.get_ref(1).map_err(e)?, &mut sum);
        }
    }
    c.execute_batch("COMMIT").map_err(e)?;
    let wall = start.elapsed();
    std::hint::black_box(sum);
    // Untimed: every key asked for is a user of the store, and was read once.
    let wanted: u64 = c
        .query_row("SELECT count(*) FROM temp.want", [], |r| r.get(0))
        .map_err(e)?;
    expect(rows == wanted && rows > 0, || {
        format!("bare read: {rows} records read for {wanted} keys")
    })?;
    Ok((wall, format!("{rows} records, {bytes} bytes")))
}

/// What a read of every row of every table touched.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllRows {
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// The tables of a store, from `sqlite_master` (SQLite's own excluded).
fn tables(c: &Connection) -> Result<Vec<String>, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let mut stmt = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .map_err(e)?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(e)?;
    Ok(names)
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Schema-agnostic: every column of every row of every table (listed from `sqlite_master`),
/// each value's bytes touched, in one read transaction. Checks the rows against `count(*)`.
pub fn bare_read_all(store: &Path) -> Result<(Duration, AllRows), String> {
    let c = open(store)?;
    let e = |e: rusqlite::Error| e.to_string();
    let start = Instant::now();
    c.execute_batch("BEGIN").map_err(e)?;
    let names = tables(&c)?;
    let (mut rows, mut bytes, mut sum) = (0u64, 0u64, 0u64);
    for t in &names {
        let mut stmt = c
            .prepare(&format!("SELECT * FROM {}", quoted(t)))
            .map_err(e)?;
        let n = stmt.column_count();
        let mut q = stmt.query([]).map_err(e)?;
        while let Some(r) = q.next().map_err(e)? {
            rows += 1;
            for i in 0..n {
                bytes += touch(r.get_ref(i).map_err(e)?, &mut sum) as u64;
            }
        }
    }
    c.execute_batch("COMMIT").map_err(e)?;
    let wall = start.elapsed();
    std::hint::black_box(sum);
    let mut counted = 0u64;
    for t in &names {
        counted += c
            .query_row(&format!("SELECT count(*) FROM {}", quoted(t)), [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(e)? as u64;
    }
    expect(rows == counted && names.len() >= 7, || {
        format!(
            "bare read of every table: {rows} rows read of {counted}, {} tables",
            names.len()
        )
    })?;
    Ok((
        wall,
        AllRows {
            tables: names.len(),
            rows,
            bytes,
        },
    ))
}

/// The `sqlite3` command-line shell reading every row of every table: the tables listed from
/// `sqlite_master` (one `sqlite3` run), then `SELECT * FROM t;` for each (a second run, default
/// list mode), its output counted through a pipe. `None` when `sqlite3` is not on PATH. Checks
/// that it printed at least one line per row (`rows`, from [`bare_read_all`]).
pub fn sqlite3_read_all(store: &Path, rows: u64) -> Result<Option<(Duration, String)>, String> {
    if Command::new("sqlite3")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Ok(None);
    }
    let store_s = store.display().to_string();
    let start = Instant::now();
    let listed = Command::new("sqlite3")
        .args([
            &store_s,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("sqlite3: {e}"))?;
    expect(listed.status.success(), || {
        format!(
            "sqlite3 listing tables: {}",
            String::from_utf8_lossy(&listed.stderr)
        )
    })?;
    let names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let script: String = names
        .iter()
        .map(|t| format!("SELECT * FROM {};\n", quoted(t)))
        .collect();
    let mut child = Command::new("sqlite3")
        .arg(&store_s)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sqlite3: {e}"))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (mut bytes, mut lines) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                bytes += n as u64;
                lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let wall = start.elapsed();
    let err = err_reader.join().map_err(|_| "stderr reader panicked")?;
    expect(status.success() && err.is_empty(), || {
        format!("sqlite3 SELECT * …: {status}: {err}")
    })?;
    expect(lines >= rows, || {
        format!("sqlite3 printed {lines} lines for {rows} rows")
    })?;
    Ok(Some((
        wall,
        format!(
            "{} tables, {bytes} bytes printed ({})",
            names.len(),
            String::from_utf8_lossy(
                &Command::new("sqlite3")
                    .arg("-version")
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default()
            )
            .split_whitespace()
            .next()
            .map_or("sqlite3".to_string(), |v| format!("sqlite3 {v}"))
        ),
    )))
}

/// A change of the plan, as the JSON plan gives it: its action rebuilt, its audit fields
/// pre-rendered.
#[derive(Debug, Clone)]
pub struct Planned {
    pub user: String,
    pub key: String,
    pub action: mfactl::model::Action,
    pub before: String,
    pub after: String,
    pub sources: String,
}

/// The M=100k plan's changes, from `mfactl plan --format json` (untimed).
fn planned_changes(cfg: &Config, t: &Tenant) -> Result<Vec<Planned>, String> {
    use mfactl::model::{Action, Timestamp};
    let [d, g] = t.plan_paths();
    let store = t.store.display().to_string();
    let out = Command::new(BIN)
        .current_dir(&cfg.dir)
        .args([
            "--policies",
            POLICIES,
            "--store",
            &store,
            "plan",
            &d,
            &g,
            "--actor",
            generate::ADMIN,
            "--format",
            "json",
        ])
        .env("MFACTL_NOW", generate::NOW)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("plan JSON: {e}"))?;
    let changes = v["changes"].as_array().ok_or("plan JSON has no changes")?;
    let now = Timestamp::parse(generate::NOW).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let user = c["user"].as_str().unwrap_or_default().to_string();
        let cutoff = c["cutoff"].as_str().and_then(|t| Timestamp::parse(t).ok());
        let verb = c["action"].as_str().unwrap_or_default();
        let t = || cutoff.ok_or_else(|| format!("{user}: {verb} without a cutoff"));
        let action = match verb {
            "require-reregistration" => Action::RequireReregistration { before: t()? },
            "revoke-sessions" => Action::RevokeSessions { before: t()? },
            "revoke-trusted-devices" => Action::RevokeTrustedDevices { before: t()? },
            "reset-password" => Action::ResetPassword {
                before: t()?,
                set_at: now.max(t()?),
            },
            "delete-app-passwords" => Action::DeleteAppPasswords,
            other => return Err(format!("{user}: unknown action {other:?}")),
        };
        out.push(Planned {
            key: mfactl::model::key_of(&user),
            user,
            action,
            before: c["before"].to_string(),
            after: c["after"].to_string(),
            sources: c["sources"].to_string(),
        });
    }
    Ok(out)
}

/// A stand-in argon2 hash of a temporary password (hashing is outside the apply's transaction).
const PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$YmFyZS13cml0ZXMtc2FsdA$YmFyZS13cml0ZXMtaGFzaC1vZi10aGUtcGFzc3dvcmQ";
/// Audit records written per `INSERT`, as the apply does.
const AUDIT_PER_STATEMENT: usize = 64;

/// The apply's writes on layout v2, minimal but honest, in one `BEGIN IMMEDIATE` transaction on
/// a copy of the store (the pragmas mfactl uses): per changed user one `SELECT record`,
/// `record::decode`, `plan::act` for each of its changes (and the password hash or the app
/// passwords' secrets, as the apply keeps them), `record::encode` and one `UPDATE users SET
/// record`; the audit records with precomputed texts and fixed hashes,
/// [`AUDIT_PER_STATEMENT`] to an `INSERT`; then the audit head, the revision and the applied
/// plan, and the commit. Read back (untimed): every change holds, every record is there.
pub fn bare_writes(store: &Path, changes: &[Planned]) -> Result<(Duration, String), String> {
    use mfactl::model::Action;
    use mfactl::store::record;
    use std::collections::{HashMap, HashSet};
    // A user's changes are consecutive in a plan; the loop below relies on it, as the apply does.
    let mut seen = HashSet::new();
    let mut users = 0usize;
    for (i, ch) in changes.iter().enumerate() {
        if i == 0 || changes[i - 1].key != ch.key {
            users += 1;
            expect(seen.insert(ch.key.as_str()), || {
                format!(
                    "bare writes: the changes of {} are not consecutive",
                    ch.user
                )
            })?;
        }
    }
    let mut c = open(store)?;
    let e = |e: rusqlite::Error| e.to_string();
    let revision_before: i64 = c
        .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
            r.get(0)
        })
        .map_err(e)?;
    let hash = "0".repeat(64);
    let now = mfactl::model::Timestamp::parse(generate::NOW)
        .map_err(|e| e.to_string())?
        .unix();
    let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let insert = |n: usize| {
        format!(
            "INSERT INTO audit (seq, at, actor, role, action, user, user_key, before, after, sources, plan_id, prev_hash, hash, requested_by) VALUES {}",
            vec![row; n].join(", ")
        )
    };
    let start = Instant::now();
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(e)?;
    let (mut statements, mut inserts) = (0u64, 0u64);
    let first_seq: i64;
    {
        let names: HashMap<String, String> = tx
            .prepare("SELECT key, name FROM groups")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()
            })
            .map_err(e)?;
        first_seq = tx
            .query_row("SELECT coalesce(max(seq), 0) + 1 FROM audit", [], |r| {
                r.get(0)
            })
            .map_err(e)?;
        statements += 2;
        let mut read = tx
            .prepare("SELECT record FROM users WHERE key = ?1")
            .map_err(e)?;
        let mut write = tx
            .prepare("UPDATE users SET record = ?2 WHERE key = ?1")
            .map_err(e)?;
        let mut audit = tx.prepare(&insert(AUDIT_PER_STATEMENT)).map_err(e)?;
        let mut buf = Vec::with_capacity(512);
        let mut pending: Vec<usize> = Vec::with_capacity(AUDIT_PER_STATEMENT);
        let role = "global-administrator";
        let plan_id = "bare";
        let no_text: Option<String> = None;
        let flush =
            |pending: &mut Vec<usize>, audit: &mut rusqlite::Statement<'_>| -> Result<(), String> {
                let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(14 * pending.len());
                let seqs: Vec<i64> = pending.iter().map(|&i| first_seq + i as i64).collect();
                let verbs: Vec<&str> = pending
                    .iter()
                    .map(|&i| changes[i].action.kind().verb())
                    .collect();
                for (j, &i) in pending.iter().enumerate() {
                    let ch = &changes[i];
                    values.extend_from_slice(&[
                        &seqs[j],
                        &now,
                        &generate::ADMIN,
                        &role,
                        &verbs[j],
                        &ch.user,
                        &ch.key,
                        &ch.before,
                        &ch.after,
                        &ch.sources,
                        &plan_id,
                        &hash,
                        &hash,
                        &no_text,
                    ]);
                }
                if pending.len() == AUDIT_PER_STATEMENT {
                    audit.execute(values.as_slice()).map_err(e)?;
                } else {
                    tx.prepare(&insert(pending.len()))
                        .and_then(|mut s| s.execute(values.as_slice()))
                        .map_err(e)?;
                }
                pending.clear();
                Ok(())
            };
        let mut i = 0;
        while i < changes.len() {
            let key = changes[i].key.as_str();
            let mut stored = {
                let mut q = read.query([key]).map_err(e)?;
                let r = q
                    .next()
                    .map_err(e)?
                    .ok_or_else(|| format!("bare writes: no user {key}"))?;
                let bytes = r
                    .get_ref(0)
                    .map_err(e)?
                    .as_blob()
                    .map_err(|e| e.to_string())?;
                record::decode(key, bytes, |g| {
                    names.get(g).cloned().unwrap_or_else(|| g.to_string())
                })
                .map_err(|d| format!("bare writes: {key}: {d}"))?
            };
            statements += 1;
            while i < changes.len() && changes[i].key == key {
                let ch = &changes[i];
                mfactl::plan::act(&mut stored.user, &ch.action);
                match ch.action {
                    Action::ResetPassword { .. } => {
                        stored.password_hash = Some(PASSWORD_HASH.to_string())
                    }
                    Action::DeleteAppPasswords => stored.secrets.clear(),
                    _ => {}
                }
                pending.push(i);
                if pending.len() == AUDIT_PER_STATEMENT {
                    flush(&mut pending, &mut audit)?;
                    inserts += 1;
                }
                i += 1;
            }
            buf.clear();
            record::encode(key, &stored, &mut buf);
            write.execute(rusqlite::params![key, buf]).map_err(e)?;
            statements += 1;
        }
        if !pending.is_empty() {
            flush(&mut pending, &mut audit)?;
            inserts += 1;
        }
        statements += inserts;
        tx.execute(
            "UPDATE audit_head SET hash = ?1, count = count + ?2 WHERE id = 1",
            rusqlite::params![hash, changes.len() as i64],
        )
        .map_err(e)?;
        let revision: i64 = tx
            .query_row(
                "UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value",
                [],
                |r| r.get(0),
            )
            .map_err(e)?;
        tx.execute(
            "INSERT INTO applied_plans (plan_id, applied_at, revision) VALUES (?1, ?2, ?3)",
            rusqlite::params![plan_id, now, revision],
        )
        .map_err(e)?;
        statements += 3;
    }
    tx.commit().map_err(e)?;
    let wall = start.elapsed();

    // Read back, untimed: each changed user's record decodes, every change holds (acting again
    // changes nothing), the secrets went with them; the audit rows, head, revision and plan.
    let names = |g: &str| g.to_string();
    let mut read = c
        .prepare("SELECT record FROM users WHERE key = ?1")
        .map_err(e)?;
    for ch in changes {
        let bytes: Vec<u8> = read.query_row([&ch.key], |r| r.get(0)).map_err(e)?;
        let s = record::decode(&ch.key, &bytes, names)
            .map_err(|d| format!("read back {}: {d}", ch.key))?;
        let mut again = s.user.clone();
        mfactl::plan::act(&mut again, &ch.action);
        let kept = match ch.action {
            Action::ResetPassword { set_at, .. } => {
                s.user.must_change_password
                    && s.user.password_set_at == Some(set_at)
                    && s.password_hash.as_deref() == Some(PASSWORD_HASH)
            }
            Action::DeleteAppPasswords => s.user.app_passwords.is_empty() && s.secrets.is_empty(),
            _ => true,
        };
        expect(again == s.user && kept, || {
            format!("read back {}: {:?} was not written", ch.user, ch.action)
        })?;
    }
    drop(read);
    let (audit_rows, first, head_count): (i64, i64, i64) = c
        .query_row(
            "SELECT count(*), min(seq), (SELECT count FROM audit_head WHERE id = 1) FROM audit WHERE plan_id = 'bare'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(e)?;
    let (revision, applied): (i64, i64) = c
        .query_row(
            "SELECT value, (SELECT revision FROM applied_plans WHERE plan_id = 'bare') FROM meta WHERE key = 'revision'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(e)?;
    expect(
        audit_rows == changes.len() as i64
            && first == first_seq
            && head_count >= audit_rows
            && revision == revision_before + 1
            && applied == revision,
        || {
            format!(
                "read back: {audit_rows} audit rows from #{first} (head count {head_count}), revision {revision_before} → {revision}, applied at {applied}"
            )
        },
    )?;
    Ok((
        wall,
        format!(
            "{users} records rewritten, {} audit rows in {inserts} INSERTs; {statements} statements",
            changes.len()
        ),
    ))
}

pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MB", kib as f64 * 1024.0 / 1e6)
}

pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table: each scenario's median and range over the runs, against its target (met or
/// missed), with the ratios to the references; then the references themselves.
///
/// The targets: plan M=100k, N=1M ≤ 1.0 s and ≤ 1.5× (bare parse + bare read); plan M=1k,
/// N=1M ≤ 40 ms; plan all-users, N=1M ≤ 3 s and ≤ 3× the bare read of every row of every
/// table; the apply of the M=100k plan ≤ 4 s and ≤ 1.5× the bare writes; the empty plan after
/// it ≤ 0.6 s. The other scenarios have no target; their rates are shown for information.
pub fn table(r: &Report) -> String {
    let parse = r.reference(REF_PARSE).wall();
    let read = r.reference(REF_READ).wall();
    let write = r.reference(REF_WRITE).wall();
    let all = r.reference(REF_ALL).wall();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let rate = |row: &Row| {
        format!(
            "{} users/s",
            thousands((row.users as f64 / row.wall().as_secs_f64().max(1e-9)) as usize)
        )
    };
    let mut out = String::new();
    out.push_str(
        "| scenario | users | wall (median) | range (min–max) | peak RSS | target | met? |\n\
         |---|---:|---:|---:|---:|---|---|\n",
    );
    for row in &r.rows {
        let w = row.wall();
        let s = w.as_secs_f64();
        let (target, met) = match row.name.as_str() {
            PLAN_BIG => {
                let x = ratio(w, parse + read);
                (
                    format!("≤ 1.0 s and ≤ 1.5× (bare parse + bare read): {x:.2}×"),
                    Some(s <= 1.0 && x <= 1.5),
                )
            }
            PLAN_FEW => ("≤ 40 ms".to_string(), Some(s <= 0.040)),
            PLAN_ALL => {
                let x = ratio(w, all);
                (
                    format!("≤ 3 s and ≤ 3× bare read of every row of every table: {x:.2}×"),
                    Some(s <= 3.0 && x <= 3.0),
                )
            }
            APPLY => {
                let x = ratio(w, write);
                (
                    format!("≤ 4 s and ≤ 1.5× bare writes: {x:.2}×"),
                    Some(s <= 4.0 && x <= 1.5),
                )
            }
            EMPTY => ("≤ 0.6 s".to_string(), Some(s <= 0.6)),
            PLAN_SMALL => (
                format!(
                    "none (N=1M takes {:.2}× this)",
                    ratio(r.row(PLAN_BIG).wall(), w)
                ),
                None,
            ),
            APPLY_SAVED => (
                format!(
                    "none ({:.2}× the plain apply)",
                    ratio(w, r.row(APPLY).wall())
                ),
                None,
            ),
            IMPORT | EXPORT | EXPORT_JSONL | IMPORT_JSONL | IMPORT_YAML_BIG => {
                (format!("none ({})", rate(row)), None)
            }
            _ => ("none".to_string(), None),
        };
        let (lo, hi) = row.range();
        out.push_str(&format!(
            "| {} | {} | {} | {}–{} | {} | {target} | {} |\n",
            row.name,
            thousands(row.users),
            secs(w),
            secs(lo),
            secs(hi),
            mib(row.rss_kib()),
            match met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "—",
            }
        ));
    }
    out.push_str(
        "\n| limit reference | wall (median) | range (min–max) | work |\n|---|---:|---:|---|\n",
    );
    for x in &r.references {
        let (lo, hi) = x.range();
        out.push_str(&format!(
            "| {} | {} | {}–{} | {} |\n",
            x.name,
            secs(x.wall()),
            secs(lo),
            secs(hi),
            x.work
        ));
    }
    for s in &r.skipped {
        out.push_str(&format!("\n{s}\n"));
    }
    out
}

/// A number from the environment variable `k` (`1_000_000` allowed).
pub fn env_num(k: &str) -> Option<usize> {
    std::env::var(k)
        .ok()
        .and_then(|v| v.replace('_', "").parse::<usize>().ok())
}

impl Config {
    /// The full configuration with what `MFACTL_SCALE_DIR`, `_N`, `_SMALL`, `_M` and `_RUNS`
    /// change.
    pub fn from_env() -> Config {
        let root = std::env::var_os("MFACTL_SCALE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/scale-bench"))
            });
        let mut cfg = Config::full(root);
        if let Some(n) = env_num("MFACTL_SCALE_N") {
            cfg.big = n;
        }
        if let Some(n) = env_num("MFACTL_SCALE_SMALL") {
            cfg.small = n;
        }
        if let Some(n) = env_num("MFACTL_SCALE_M") {
            cfg.declared = n;
        }
        if let Some(n) = env_num("MFACTL_SCALE_RUNS") {
            cfg.runs = n;
        }
        cfg
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The benchmark's own child: write one tenant (see `Config::generate_in_child`).
    if args.first().is_some_and(|a| a == "--generate") {
        let o = match generate::parse_args(&args[1..]) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("scale: {e}");
                std::process::exit(2);
            }
        };
        if let Err(e) = generate::generate(&o) {
            eprintln!("scale: {e}");
            std::process::exit(1);
        }
        return;
    }
    // `cargo test --all-targets` runs bench targets without `--bench`: do nothing there.
    if !args.iter().any(|a| a == "--bench") {
        println!("scale: skipped (run it with `cargo bench --bench scale`)");
        return;
    }
    let cfg = Config::from_env();
    let started = Instant::now();
    match run(&cfg) {
        Ok((report, _)) => {
            println!("{}", table(&report));
            println!(
                "(median of {} runs; {} cores; MFACTL_NOW={}; whole benchmark {:.0} s)",
                cfg.runs,
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                generate::NOW,
                started.elapsed().as_secs_f64()
            );
        }
        Err(e) => {
            eprintln!("scale: {e}");
            std::process::exit(1);
        }
    }
}
