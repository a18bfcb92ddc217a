//! Soak benchmark for `mfactl watch` (not a test): N reconciles triggered by file edits on the
//! example tenant, measuring the reaction latency from a save to the applied reconcile's log line
//! and the daemon's resident memory (VmRSS) over the run.
//!
//! ```sh
//! cargo bench --bench soak            # 1,000 edits
//! MFACTL_SOAK_N=100 cargo bench --bench soak
//! ```
//!
//! Each edit moves one manifest's `revoke-sessions-before` one second later and saves it the way
//! editors and `git checkout` do (write a temporary file, rename it over the manifest), so every
//! save needs exactly one change. The next save waits for the previous apply, so no two coalesce.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mfactl");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
const NOW: &str = "2026-11-30T12:00:00Z";
/// 2026-11-29T00:00:00Z: the first cutoff; edit i uses this plus i seconds (before NOW).
const BASE_UNIX: i64 = 1_795_910_400;
const ACTOR: &str = "gary@contoso.example";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --all-targets` runs bench targets without `--bench`: do nothing there.
    if !args.iter().any(|a| a == "--bench") {
        println!("soak: skipped (run it with `cargo bench --bench soak`)");
        return;
    }
    let n: usize = std::env::var("MFACTL_SOAK_N")
        .ok()
        .or_else(|| args.iter().find(|a| a.parse::<usize>().is_ok()).cloned())
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    if let Err(e) = run(n) {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}

fn mfactl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let o = Command::new(BIN)
        .current_dir(dir)
        .env("MFACTL_STORE", dir.join("mfactl.db"))
        .env("MFACTL_NOW", NOW)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "mfactl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(())
}

fn manifest(i: i64) -> String {
    let t = time_of(BASE_UNIX + i);
    format!(
        "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata:\n  name: soak\nspec:\n  - users: [dave@contoso.example]\n    revoke-sessions-before: {t}\n"
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time in 2026-11-29 (the only day the soak uses).
fn time_of(unix: i64) -> String {
    let s = unix - BASE_UNIX;
    assert!((0..86_400).contains(&s), "the soak stays within one day");
    format!(
        "2026-11-29T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// A reconcile summary line from the JSON log: (result, changes).
fn summary(line: &str) -> Option<(String, u64)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["message"] != "reconcile" {
        return None;
    }
    Some((v["result"].as_str()?.to_string(), v["changes"].as_u64()?))
}

/// A running daemon whose reconcile summaries arrive on `rx`; killed on drop.
struct Daemon {
    child: Child,
    pid: u32,
    rx: mpsc::Receiver<(Instant, String, u64)>,
}

impl Daemon {
    fn start(dir: &Path) -> Result<Daemon, String> {
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .env("MFACTL_STORE", dir.join("mfactl.db"))
            .env("MFACTL_NOW", NOW)
            .args(["watch", "manifests", "--actor", ACTOR, "--interval", "1h"])
            .args(["--credentials-dir", "credentials", "--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let pid = child.id();
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((result, changes)) = summary(&line) {
                    if tx.send((Instant::now(), result, changes)).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Daemon { child, pid, rx })
    }

    /// The next reconcile summary: (when it was logged, result, changes).
    fn next(&self, what: &str) -> Result<(Instant, String, u64), String> {
        self.rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| format!("{what}: no reconcile within 30 s"))
    }

    fn rss_kib(&self) -> Result<u64, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .map_err(|e| e.to_string())?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS".to_string())
    }

    /// SIGTERM, then how it exited and how long that took.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(s)) = self.child.try_wait() {
                return format!("exit {:?} after {:?}", s.code(), sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        "did not exit within 10 s (killed)".into()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves the soak manifest as editors and git do: a temporary file renamed over it.
fn save(m: &Path, i: i64) -> Result<Instant, String> {
    let tmp = m.join(".soak.yaml.tmp");
    std::fs::write(&tmp, manifest(i)).map_err(|e| e.to_string())?;
    let saved = Instant::now();
    std::fs::rename(&tmp, m.join("soak.yaml")).map_err(|e| e.to_string())?;
    Ok(saved)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn run(n: usize) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    mfactl(dir, &["init"])?;
    mfactl(
        dir,
        &["store", "import", &format!("{EXAMPLES}/directory.yaml")],
    )?;
    let m = dir.join("manifests");
    std::fs::create_dir(&m).map_err(|e| e.to_string())?;
    for e in std::fs::read_dir(format!("{EXAMPLES}/manifests")).map_err(|e| e.to_string())? {
        let p = e.map_err(|e| e.to_string())?.path();
        std::fs::copy(&p, m.join(p.file_name().unwrap())).map_err(|e| e.to_string())?;
    }
    std::fs::write(m.join("soak.yaml"), manifest(0)).map_err(|e| e.to_string())?;
    std::fs::create_dir(dir.join("credentials")).map_err(|e| e.to_string())?;

    let daemon = Daemon::start(dir)?;
    println!("{}", soak(n, &m, &daemon)?);

    // Saves that change nothing (an older cutoff is already met): reconciles without a write.
    let quiet = (n / 5).max(20);
    let before = daemon.rss_kib()?;
    for i in 0..quiet {
        save(&m, (n - 1 - i % 2) as i64)?;
        let (_, result, _) = daemon.next("in-sync save")?;
        if result != "in-sync" {
            return Err(format!("an unchanged save gave {result}"));
        }
    }
    println!(
        "{quiet} more saves that change nothing (in-sync reconciles): RSS {:.1} -> {:.1} MiB",
        mib(before),
        mib(daemon.rss_kib()?)
    );
    println!("shutdown on SIGTERM: {}", daemon.stop());

    // The same store, a fresh daemon, one apply: how much of the growth is the store's size.
    let fresh = Daemon::start(dir)?;
    fresh.next("fresh daemon start")?;
    let start = fresh.rss_kib()?;
    save(&m, n as i64 + 1)?;
    fresh.next("fresh daemon apply")?;
    println!(
        "a fresh daemon on the final store: RSS {:.1} MiB at start, {:.1} MiB after one apply",
        mib(start),
        mib(fresh.rss_kib()?)
    );
    fresh.stop();
    Ok(())
}

fn soak(n: usize, m: &Path, daemon: &Daemon) -> Result<String, String> {
    let (_, first, changes) = daemon.next("start")?;
    if first != "applied" {
        return Err(format!("the first reconcile was {first}, not applied"));
    }
    let rss_start = daemon.rss_kib()?;
    let mut samples = vec![(0usize, rss_start)];
    let mut latencies = Vec::with_capacity(n);
    let mut other = 0usize;
    let started = Instant::now();
    for i in 1..=n {
        let saved = save(m, i as i64)?;
        loop {
            let (at, result, changes) = daemon.next(&format!("edit {i}"))?;
            if result == "applied" && changes == 1 {
                latencies.push(at.duration_since(saved));
                break;
            }
            other += 1;
        }
        if i % (n / 10).max(1) == 0 {
            samples.push((i, daemon.rss_kib()?));
        }
    }
    let total = started.elapsed();
    let rss_end = daemon.rss_kib()?;
    latencies.sort();
    let pct = |p: f64| {
        let idx = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[idx].as_secs_f64() * 1000.0
    };
    let mean =
        latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / latencies.len() as f64 * 1000.0;
    let trend: Vec<String> = samples
        .iter()
        .map(|(i, kib)| format!("{i}:{:.1}", mib(*kib)))
        .collect();
    Ok(format!(
        "soak: {n} file-triggered reconciles in {:.1} s ({changes} changes in the first, the example tenant)\n\
         latency save -> applied: median {:.1} ms, mean {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (includes the 250 ms debounce and the 50 ms stable-read check)\n\
         daemon RSS: start {:.1} MiB, end {:.1} MiB (after edit:MiB {})\n\
         reconciles that did not apply the edit: {other}",
        total.as_secs_f64(),
        pct(0.5),
        mean,
        pct(0.9),
        pct(0.99),
        pct(1.0),
        mib(rss_start),
        mib(rss_end),
        trend.join(" ")
    ))
}
