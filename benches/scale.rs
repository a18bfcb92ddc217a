//! Scale benchmark (not a test): wall time and peak RSS of the release `mfactl` on a generated
//! tenant of a million users, next to limit references measured in the same run: the bare YAML
//! parse of the same manifests, bare SQL reading exactly the rows the M=100k plan needs, and bare
//! SQL performing exactly the writes of the M=100k apply.
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
//! figure is the median of the runs; the files are in the OS page cache (warm), as they are for a
//! CI job or a daemon that just read them. `tests/scale.rs` runs every scenario here at a few
//! thousand users and checks what they print, so this code cannot rot.
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
fn tenant(
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
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub references: Vec<Reference>,
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

fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
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
    let changes = planned_changes(cfg, &big)?;
    for _ in 0..runs.max(1) {
        let (wall, selectors) = bare_parse(&files)?;
        parse.walls.push(wall);
        parse.work = format!(
            "{} documents, {} user ids",
            selectors.docs,
            selectors.users.len()
        );
        let (wall, rows) = bare_read(&big.store, &selectors)?;
        read.walls.push(wall);
        read.work = format!("{rows} rows");
        copy()?;
        let (wall, n) = bare_writes(&work, &changes)?;
        write.walls.push(wall);
        write.work = format!("{n} statements");
    }
    remove_store(&work);
    report.references.extend([parse, read, write]);
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
fn export_to(cfg: &Config, store: &Path, format: &str, out: &Path) -> Result<(), String> {
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
fn same_bytes(a: &Path, b: &Path) -> Result<bool, String> {
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

fn remove_store(p: &Path) {
    let s = p.display().to_string();
    for f in [s.clone(), format!("{s}-wal"), format!("{s}-shm")] {
        let _ = std::fs::remove_file(f);
    }
}

fn copy_store(from: &Path, to: &Path) -> Result<(), String> {
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

/// Opens the store as mfactl does (same pragmas), for the references.
fn open(path: &Path) -> Result<Connection, String> {
    let c = Connection::open(path).map_err(|e| e.to_string())?;
    c.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
        .map_err(|e| e.to_string())?;
    Ok(c)
}

/// Reads exactly the rows the plan needs (the named users, the groups' members, the actor; their
/// record and every child row) and touches every column, allocating nothing per row: the keys go
/// into a temporary table in one transaction and each table is read by primary-key seeks.
pub fn bare_read(store: &Path, sel: &Selectors) -> Result<(Duration, u64), String> {
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
            .prepare("INSERT OR IGNORE INTO temp.want SELECT user_key FROM memberships WHERE group_key = ?1")
            .map_err(e)?;
        for g in &sel.groups {
            members.execute([g]).map_err(e)?;
        }
    }
    let mut rows = 0u64;
    let mut touched = 0usize;
    for (table, key) in [
        ("users", "key"),
        ("user_roles", "user_key"),
        ("memberships", "user_key"),
        ("methods", "user_key"),
        ("sessions", "user_key"),
        ("trusted_devices", "user_key"),
        ("app_passwords", "user_key"),
    ] {
        let mut stmt = c
            .prepare(&format!(
                "SELECT c.* FROM temp.want w CROSS JOIN {table} c ON c.{key} = w.key"
            ))
            .map_err(e)?;
        let n = stmt.column_count();
        let mut q = stmt.query([]).map_err(e)?;
        while let Some(r) = q.next().map_err(e)? {
            rows += 1;
            for i in 0..n {
                touched += match r.get_ref(i).map_err(e)? {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        t.len()
                    }
                    _ => 1,
                };
            }
        }
    }
    c.execute_batch("COMMIT").map_err(e)?;
    let wall = start.elapsed();
    std::hint::black_box(touched);
    Ok((wall, rows))
}

/// A change of the plan, as the JSON plan gives it, with its audit fields pre-rendered.
#[derive(Debug, Clone)]
pub struct Planned {
    pub user: String,
    pub action: String,
    pub cutoff: Option<i64>,
    pub before: String,
    pub after: String,
    pub sources: String,
}

/// The M=100k plan's changes, from `mfactl plan --format json` (untimed).
fn planned_changes(cfg: &Config, t: &Tenant) -> Result<Vec<Planned>, String> {
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
    Ok(changes
        .iter()
        .map(|c| Planned {
            user: c["user"].as_str().unwrap_or_default().to_string(),
            action: c["action"].as_str().unwrap_or_default().to_string(),
            cutoff: c["cutoff"]
                .as_str()
                .and_then(|t| mfactl::model::Timestamp::parse(t).ok())
                .map(|t| t.unix()),
            before: c["before"].to_string(),
            after: c["after"].to_string(),
            sources: c["sources"].to_string(),
        })
        .collect())
}

/// Exactly the apply's writes, in one `BEGIN IMMEDIATE` transaction on a copy of the store:
/// per change the watermark update and the deletes (or the password / app-password writes) and
/// its audit record (hashes are fixed strings here), then the audit head, the revision and the
/// applied plan, and the commit (`synchronous = FULL`, WAL).
pub fn bare_writes(store: &Path, changes: &[Planned]) -> Result<(Duration, u64), String> {
    let mut c = open(store)?;
    let e = |e: rusqlite::Error| e.to_string();
    let hash = "0".repeat(64);
    let start = Instant::now();
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(e)?;
    let mut n = 0u64;
    {
        let mut stmts = Vec::new();
        for (col, table, time) in [
            ("registration_valid_from", "methods", "registered_at"),
            ("sessions_valid_from", "sessions", "issued_at"),
            ("devices_valid_from", "trusted_devices", "remembered_at"),
        ] {
            stmts.push((
                tx.prepare(&format!(
                    "UPDATE users SET {col} = max(coalesce({col}, ?2), ?2) WHERE key = ?1"
                ))
                .map_err(e)?,
                tx.prepare(&format!(
                    "DELETE FROM {table} WHERE user_key = ?1 AND {time} < ?2"
                ))
                .map_err(e)?,
            ));
        }
        let mut reset = tx
            .prepare("UPDATE users SET password_set_at = ?2, must_change_password = 1, password_hash = ?3 WHERE key = ?1")
            .map_err(e)?;
        let mut apps = tx
            .prepare("DELETE FROM app_passwords WHERE user_key = ?1")
            .map_err(e)?;
        let mut audit = tx
            .prepare(
                "INSERT INTO audit (seq, at, actor, role, action, user, user_key, before, after, sources, plan_id, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .map_err(e)?;
        let now = mfactl::model::Timestamp::parse(generate::NOW)
            .map_err(|e| e.to_string())?
            .unix();
        for (i, ch) in changes.iter().enumerate() {
            let key = ch.user.to_ascii_lowercase();
            let t = ch.cutoff.unwrap_or(now);
            let k = match ch.action.as_str() {
                "require-reregistration" => Some(0),
                "revoke-sessions" => Some(1),
                "revoke-trusted-devices" => Some(2),
                _ => None,
            };
            match (k, ch.action.as_str()) {
                (Some(k), _) => {
                    stmts[k].0.execute(rusqlite::params![key, t]).map_err(e)?;
                    stmts[k].1.execute(rusqlite::params![key, t]).map_err(e)?;
                    n += 2;
                }
                (None, "reset-password") => {
                    reset
                        .execute(rusqlite::params![key, now.max(t), hash])
                        .map_err(e)?;
                    n += 1;
                }
                _ => {
                    apps.execute([&key]).map_err(e)?;
                    n += 1;
                }
            }
            audit
                .execute(rusqlite::params![
                    i as i64 + 1,
                    now,
                    generate::ADMIN,
                    "global-administrator",
                    ch.action,
                    ch.user,
                    key,
                    ch.before,
                    ch.after,
                    ch.sources,
                    "bare",
                    hash,
                    hash
                ])
                .map_err(e)?;
            n += 1;
        }
        tx.execute(
            "UPDATE audit_head SET hash = ?1, count = ?2 WHERE id = 1",
            rusqlite::params![hash, changes.len() as i64],
        )
        .map_err(e)?;
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'revision'",
            [],
        )
        .map_err(e)?;
        tx.execute(
            "INSERT INTO applied_plans (plan_id, applied_at, revision) VALUES ('bare', ?1, 1)",
            [now],
        )
        .map_err(e)?;
        n += 3;
    }
    tx.commit().map_err(e)?;
    Ok((start.elapsed(), n))
}

fn secs(d: Duration) -> String {
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

fn thousands(n: usize) -> String {
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

/// The table: every scenario against its targets, with the ratios to the references.
pub fn table(r: &Report) -> String {
    const RSS_MAX_KIB: u64 = 400 * 1_000_000 / 1024;
    let parse = r.reference(REF_PARSE).wall();
    let read = r.reference(REF_READ).wall();
    let write = r.reference(REF_WRITE).wall();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let mark = |ok: bool| if ok { "pass" } else { "MISS" };
    let mut out = String::new();
    out.push_str("| scenario | users | wall (median) | peak RSS | target | result |\n|---|---:|---:|---:|---|---|\n");
    for row in &r.rows {
        let (w, rss) = (row.wall(), row.rss_kib());
        let rss_ok = rss <= RSS_MAX_KIB;
        let (target, ok) = match row.name.as_str() {
            PLAN_BIG => {
                let x = ratio(w, parse + read);
                (
                    format!("≤ 1.0 s and ≤ 1.5× (parse + read): {x:.2}×"),
                    w.as_secs_f64() <= 1.0 && x <= 1.5,
                )
            }
            PLAN_SMALL => {
                let x = ratio(r.row(PLAN_BIG).wall(), w);
                (format!("N=1M within 1.2× of this: {x:.2}×"), x <= 1.2)
            }
            PLAN_FEW => ("≤ 50 ms".to_string(), w.as_secs_f64() <= 0.050),
            APPLY => {
                let x = ratio(w, write);
                (
                    format!("≤ 5 s and ≤ 1.5× bare writes: {x:.2}×"),
                    w.as_secs_f64() <= 5.0 && x <= 1.5,
                )
            }
            APPLY_SAVED => {
                let x = ratio(w, r.row(APPLY).wall());
                (format!("within 1.2× of the plain apply: {x:.2}×"), x <= 1.2)
            }
            IMPORT => {
                let rate = row.users as f64 / w.as_secs_f64();
                (
                    format!("≥ 50,000 users/s: {}/s", thousands(rate as usize)),
                    rate >= 50_000.0,
                )
            }
            EXPORT_JSONL => {
                let rate = row.users as f64 / w.as_secs_f64();
                (
                    format!("≥ 300,000 users/s: {}/s", thousands(rate as usize)),
                    rate >= 300_000.0,
                )
            }
            IMPORT_JSONL => {
                let rate = row.users as f64 / w.as_secs_f64();
                (
                    format!("≥ 150,000 users/s: {}/s", thousands(rate as usize)),
                    rate >= 150_000.0,
                )
            }
            IMPORT_YAML_BIG => {
                let rate = row.users as f64 / w.as_secs_f64();
                (format!("round trip; {}/s", thousands(rate as usize)), true)
            }
            EXPORT => {
                let rate = row.users as f64 / w.as_secs_f64();
                (
                    format!("≥ 200,000 users/s: {}/s", thousands(rate as usize)),
                    rate >= 200_000.0,
                )
            }
            _ => ("—".to_string(), true),
        };
        let result = match (ok, rss_ok) {
            (true, true) => "pass".to_string(),
            (t, m) => format!(
                "{}{}",
                if t { "" } else { "MISS time" },
                if m {
                    String::new()
                } else {
                    format!("{}MISS RSS", if t { "" } else { ", " })
                }
            ),
        };
        let _ = mark;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {target}; RSS ≤ 400 MB | {result} |\n",
            row.name,
            thousands(row.users),
            secs(w),
            mib(rss)
        ));
    }
    out.push_str("\n| limit reference | wall (median) | work |\n|---|---:|---|\n");
    for x in &r.references {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            x.name,
            secs(x.wall()),
            x.work
        ));
    }
    out
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
    let env_num = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.replace('_', "").parse::<usize>().ok())
    };
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
