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
use std::process::{Command, Stdio};
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

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A reconcile summary line from the JSON log: (result, changes).
fn summary(line: &str) -> Option<(String, u64)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["message"] != "reconcile" {
        return None;
    }
    Some((v["result"].as_str()?.to_string(), v["changes"].as_u64()?))
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
    let creds = dir.join("credentials");
    std::fs::create_dir(&creds).map_err(|e| e.to_string())?;

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
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, String, u64)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((result, changes)) = summary(&line) {
                if tx.send((Instant::now(), result, changes)).is_err() {
                    break;
                }
            }
        }
    });
    let result = soak(n, &m, pid, &rx);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stop = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            _ if stop.elapsed() > Duration::from_secs(10) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let report = result?;
    println!("{report}");
    println!(
        "shutdown on SIGTERM: {}",
        match status {
            Some(s) => format!("exit {:?} after {:?}", s.code(), stop.elapsed()),
            None => "did not exit within 10 s (killed)".into(),
        }
    );
    Ok(())
}

fn soak(
    n: usize,
    m: &Path,
    pid: u32,
    rx: &mpsc::Receiver<(Instant, String, u64)>,
) -> Result<String, String> {
    let wait = Duration::from_secs(30);
    let (_, first, changes) = rx
        .recv_timeout(wait)
        .map_err(|_| "no first reconcile within 30 s".to_string())?;
    if first != "applied" {
        return Err(format!("the first reconcile was {first}, not applied"));
    }
    let rss_start = rss_kib(pid).ok_or("cannot read VmRSS")?;
    let mut samples = vec![(0usize, rss_start)];
    let mut latencies = Vec::with_capacity(n);
    let mut other = 0usize;
    let started = Instant::now();
    for i in 1..=n {
        let tmp = m.join(".soak.yaml.tmp");
        std::fs::write(&tmp, manifest(i as i64)).map_err(|e| e.to_string())?;
        let saved = Instant::now();
        std::fs::rename(&tmp, m.join("soak.yaml")).map_err(|e| e.to_string())?;
        loop {
            let (at, result, changes) = rx
                .recv_timeout(wait)
                .map_err(|_| format!("edit {i}: no reconcile within 30 s"))?;
            if result == "applied" && changes == 1 {
                latencies.push(at.duration_since(saved));
                break;
            }
            other += 1;
        }
        if i % (n / 10).max(1) == 0 {
            samples.push((i, rss_kib(pid).ok_or("cannot read VmRSS")?));
        }
    }
    let total = started.elapsed();
    let rss_end = rss_kib(pid).ok_or("cannot read VmRSS")?;
    latencies.sort();
    let pct = |p: f64| {
        let idx = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[idx].as_secs_f64() * 1000.0
    };
    let mean =
        latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / latencies.len() as f64 * 1000.0;
    let trend: Vec<String> = samples
        .iter()
        .map(|(i, kib)| format!("{i}:{:.1}", *kib as f64 / 1024.0))
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
        rss_start as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        trend.join(" ")
    ))
}
