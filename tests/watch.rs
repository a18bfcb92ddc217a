//! `watch`: the real daemon on a temp store and manifest directory — file changes, invalid
//! manifests, drift, a locked store, a vanished directory, health and metrics, signals, and the
//! `--once` and `--detect-only` modes. Every wait polls with a deadline; a guard kills the daemon
//! whatever happens to the test.

mod common;
use common::replica::http_get;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN: &str = "gary@contoso.example";
/// Long enough for a debug build on a busy CI machine; a pass takes a fraction of it.
const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `f` every 20 ms until it gives a value, or panics after `limit` saying what it waited for.
fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `mfactl watch --log-format json`; killed on drop, so no daemon outlives its test.
struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(env: &Env, args: &[&str]) -> Daemon {
        Daemon::start_with(env, args, &[])
    }

    /// `start` with extra environment variables.
    fn start_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Daemon {
        let mut cmd = env.cmd();
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd
            .arg("watch")
            .args(args)
            .args(["--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mfactl watch");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Daemon { child, log }
    }

    fn raw(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Every log line, parsed (each must be one JSON object).
    fn events(&self) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
            })
            .collect()
    }

    /// The one-per-reconcile summary lines, in order.
    fn reconciles(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["message"] == "reconcile")
            .collect()
    }

    /// Waits for the `n`th reconcile (1-based) and returns it.
    fn nth_reconcile(&self, n: usize) -> Value {
        self.wait(&format!("reconcile #{n}"), |_| {
            self.reconciles().get(n - 1).cloned()
        })
    }

    /// Waits for a reconcile after the first `after` with this result, and returns it.
    fn reconcile_with(&self, after: usize, result: &str) -> Value {
        self.wait(&format!("a reconcile with result {result}"), |_| {
            self.reconciles()
                .into_iter()
                .skip(after)
                .find(|r| r["result"] == result)
        })
    }

    fn wait<T>(&self, what: &str, mut f: impl FnMut(&Self) -> Option<T>) -> T {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; the daemon logged:\n{}",
                self.raw()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the daemon to exit by itself.
    fn exited(&mut self, limit: Duration) -> ExitStatus {
        let child = &mut self.child;
        let status = eventually("the daemon to exit", limit, || child.try_wait().unwrap());
        // Let the reader thread drain the last lines.
        std::thread::sleep(Duration::from_millis(50));
        status
    }

    fn metrics_addr(&self) -> String {
        self.wait("the metrics address", |d| {
            d.events()
                .into_iter()
                .find(|e| e["message"] == "serving /healthz and /metrics")
                .map(|e| e["addr"].as_str().unwrap().to_string())
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn app_passwords(env: &Env, user: &str) -> usize {
    env.show(user)["app-passwords"].as_sequence().unwrap().len()
}

fn bob_without_app_passwords() -> String {
    manifest(
        "bob-apps",
        "  - users: [bob@contoso.example]\n    app-passwords: none\n",
    )
}

/// Replaces bob's record by one holding a fresh app password: drift made outside git.
fn import_app_password_for_bob(env: &Env) {
    env.import(&user_yaml(
        "bob@contoso.example",
        &[],
        &["contractors"],
        "    app-passwords: [{id: a-drift, name: imap-client, created-at: 2026-11-29T00:00:00Z}]\n",
    ));
}

#[test]
fn a_new_manifest_is_applied_within_a_couple_of_seconds() {
    let env = Env::example();
    std::fs::create_dir(env.path("m")).unwrap();
    let d = Daemon::start(&env, &["m", "--actor", ADMIN]);
    let first = d.nth_reconcile(1);
    assert_eq!(first["trigger"], "start");
    assert_eq!(
        first["result"], "in-sync",
        "an empty directory asks for nothing"
    );
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 2);

    // Waited for with a generous deadline; how fast it reacts is the soak benchmark's business.
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let applied = d.reconcile_with(1, "applied");
    assert_eq!(applied["trigger"], "file");
    assert_eq!(applied["changes"], 1);
    assert_eq!(applied["applied"], "delete-app-passwords:1");
    assert_eq!(applied["users"], 1);
    assert_eq!(applied["touched"], "bob@contoso.example");
    assert!(applied["duration_ms"].is_u64(), "{applied}");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
    let audit = env.ok(&["audit", "--user", "bob@contoso.example"]).stdout;
    assert!(audit.contains(ADMIN), "{audit}");
    assert!(audit.contains("delete-app-passwords"), "{audit}");
}

#[test]
fn an_invalid_manifest_applies_nothing_keeps_the_daemon_alive_and_fixing_it_applies() {
    let env = Env::example();
    std::fs::create_dir(env.path("m")).unwrap();
    let mut d = Daemon::start(&env, &["m", "--actor", ADMIN]);
    d.nth_reconcile(1);
    let before = env.export();

    let good = bob_without_app_passwords();
    env.write(
        "m/apps.yaml",
        &good.replace("app-passwords", "app-passwordz"),
    );
    let invalid = d.reconcile_with(1, "invalid");
    assert_eq!(invalid["trigger"], "file");
    assert_eq!(invalid["changes"], 0);
    let located = d
        .events()
        .into_iter()
        .filter(|e| e["level"] == "ERROR")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .find(|m| m.contains("apps.yaml:7:5:"));
    let located = located.unwrap_or_else(|| panic!("no located error in:\n{}", d.raw()));
    assert!(located.contains("app-passwordz"), "{located}");
    assert_eq!(env.export(), before, "nothing was applied");
    assert!(d.alive(), "the daemon keeps running");

    env.write("m/apps.yaml", &good);
    let applied = d.reconcile_with(2, "applied");
    assert_eq!(applied["trigger"], "file");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
}

#[test]
fn a_panic_in_one_reconcile_is_logged_and_the_daemon_keeps_serving_and_applying() {
    let env = Env::example();
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let before = env.export();
    // The test build's failpoint panics in the first reconcile, inside its transaction.
    let once = env.run_env(
        &["watch", "m", "--once", "--actor", ADMIN],
        &[("MFACTL_FAILPOINT", "reconcile-panic")],
    );
    assert_eq!(once.code, 1, "--once exits 1, not 101:\n{}", once.all());
    assert!(once.stderr.contains("result=panic"), "{}", once.stderr);
    assert!(!once.stderr.contains("RUST_BACKTRACE"), "{}", once.stderr);
    assert_eq!(env.export(), before);
    let mut d = Daemon::start_with(
        &env,
        &["m", "--actor", ADMIN, "--metrics-addr", "127.0.0.1:0"],
        &[("MFACTL_FAILPOINT", "reconcile-panic")],
    );
    let addr = d.metrics_addr();
    let first = d.nth_reconcile(1);
    assert_eq!(first["result"], "panic", "{first}");
    assert_eq!(first["level"], "WARN", "{first}");
    // Every line stays a JSON log line (`events` parses each), the panic among them.
    let errors: Vec<String> = d
        .events()
        .into_iter()
        .filter(|e| e["level"] == "ERROR")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        errors
            .iter()
            .any(|m| m == "panicked: failpoint reconcile-panic"),
        "{}",
        d.raw()
    );
    assert!(
        errors
            .iter()
            .any(|m| m.starts_with("the reconcile panicked: failpoint reconcile-panic")),
        "{}",
        d.raw()
    );
    assert_eq!(
        env.export(),
        before,
        "the panicking reconcile committed nothing"
    );
    assert!(d.alive(), "the daemon keeps running");
    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("last reconcile: panic"), "{body}");
    let (_, body) = http_get(&addr, "/metrics");
    for expected in [
        "mfactl_reconciles_total{result=\"panic\"} 1",
        "mfactl_reconciles_total{result=\"applied\"} 0",
        "mfactl_reconciles_total{result=\"error\"} 0",
    ] {
        assert!(body.contains(expected), "{expected} missing from:\n{body}");
    }

    // The next reconcile starts afresh: the store is not left locked, and it applies.
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let applied = d.reconcile_with(1, "applied");
    assert_eq!(applied["trigger"], "file");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
    let (_, body) = http_get(&addr, "/metrics");
    assert!(
        body.contains("mfactl_reconciles_total{result=\"applied\"} 1"),
        "{body}"
    );
}

#[test]
fn an_alias_to_an_unknown_anchor_leaves_the_daemon_running() {
    let env = Env::example();
    std::fs::create_dir(env.path("m")).unwrap();
    let mut d = Daemon::start(&env, &["m", "--actor", ADMIN]);
    d.nth_reconcile(1);
    let before = env.export();
    // The one-line manifest that crashed the daemon, then the same alias in a real manifest.
    env.write("m/crash.yaml", "a:\n  b: *x\n");
    d.reconcile_with(1, "invalid");
    std::fs::remove_file(env.path("m/crash.yaml")).unwrap();
    let aliased = bob_without_app_passwords().replace("[bob@contoso.example]", "*x");
    env.write("m/apps.yaml", &aliased);
    let invalid = d.reconcile_with(2, "invalid");
    assert_eq!(invalid["changes"], 0);
    let located = d
        .events()
        .into_iter()
        .filter(|e| e["level"] == "ERROR")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .find(|m| m.contains("apps.yaml:6:12: unknown anchor"));
    assert!(located.is_some(), "no located error in:\n{}", d.raw());
    assert_eq!(env.export(), before, "nothing was applied");
    assert!(d.alive(), "the daemon keeps running");

    env.write("m/apps.yaml", &bob_without_app_passwords());
    d.reconcile_with(3, "applied");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
}

#[test]
fn drift_from_a_store_import_is_removed_within_one_interval() {
    let env = Env::example();
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let d = Daemon::start(&env, &["m", "--actor", ADMIN, "--interval", "1s"]);
    assert_eq!(d.nth_reconcile(1)["result"], "applied");
    let seen = d.reconciles().len();

    import_app_password_for_bob(&env);
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 1);
    let fixed = d.reconcile_with(seen, "applied");
    assert_eq!(
        fixed["trigger"], "timer",
        "no file changed; the timer found the drift"
    );
    assert_eq!(fixed["applied"], "delete-app-passwords:1");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
}

#[test]
fn healthz_and_metrics_answer_with_the_named_metrics() {
    let env = Env::example();
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let d = Daemon::start(
        &env,
        &["m", "--actor", ADMIN, "--metrics-addr", "127.0.0.1:0"],
    );
    let addr = d.metrics_addr();
    d.nth_reconcile(1);

    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("leader\n"), "the one daemon leads: {body}");
    assert!(
        body.contains("last reconcile: applied (trigger start)"),
        "{body}"
    );

    let (status, body) = http_get(&addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    for expected in [
        "mfactl_reconciles_total{result=\"applied\"} 1",
        "mfactl_reconciles_total{result=\"invalid\"} 0",
        "# TYPE mfactl_reconcile_duration_seconds histogram",
        "mfactl_reconcile_duration_seconds_count 1",
        "mfactl_changes_applied_total{action=\"delete-app-passwords\"} 1",
        "mfactl_changes_applied_total{action=\"revoke-sessions\"} 0",
        "mfactl_drifted_users 0",
        "mfactl_manifests_valid 1",
        "mfactl_leader 1",
        "mfactl_leadership_changes_total 1",
    ] {
        assert!(body.contains(expected), "{expected} missing from:\n{body}");
    }
    let last_success: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("mfactl_last_success_timestamp_seconds "))
        .expect("mfactl_last_success_timestamp_seconds")
        .parse()
        .unwrap();
    assert!(last_success > 1.7e9, "a wall-clock time: {last_success}");

    // An invalid manifest shows in the metrics and the health body; the endpoint stays up.
    env.write("m/bad.yaml", "apiVersion: [");
    d.reconcile_with(1, "invalid");
    let (_, body) = http_get(&addr, "/metrics");
    assert!(body.contains("mfactl_manifests_valid 0"), "{body}");
    assert!(
        body.contains("mfactl_reconciles_total{result=\"invalid\"} 1"),
        "{body}"
    );
    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!(status, 200);
    assert!(body.contains("last reconcile: invalid"), "{body}");
    assert_eq!(http_get(&addr, "/nothing-here").0, 404);
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    for sig in ["TERM", "INT"] {
        let env = Env::example();
        std::fs::create_dir(env.path("m")).unwrap();
        let mut d = Daemon::start(&env, &["m", "--actor", ADMIN]);
        d.nth_reconcile(1);
        d.signal(sig);
        let status = d.exited(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "SIG{sig}: {}", d.raw());
        assert!(d.raw().contains("\"stopped\""), "{}", d.raw());
    }
}

#[test]
fn sigterm_lets_the_reconcile_in_flight_finish() {
    let env = Env::example();
    env.write("m/apps.yaml", &bob_without_app_passwords());
    // Another writer holds the store, so the first reconcile is still waiting for the lock when
    // the signal arrives.
    let holder = rusqlite::Connection::open(&env.store).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut d = Daemon::start(&env, &["m", "--actor", ADMIN, "--lock-timeout", "1s"]);
    d.wait("the daemon to start", |d| {
        d.events()
            .iter()
            .any(|e| e["message"] == "watching")
            .then_some(())
    });
    d.signal("TERM");
    let status = d.exited(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", d.raw());
    let events = d.events();
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    let pos = |m: &str| messages.iter().position(|x| *x == m);
    let (finish, done, stop) = (
        pos("finishing the reconcile in flight"),
        pos("reconcile"),
        pos("stopped"),
    );
    assert!(
        finish.is_some() && done > finish && stop > done,
        "{messages:?}"
    );
    drop(holder);
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 2);
}

#[test]
fn a_locked_store_is_retried_with_backoff_until_it_applies() {
    let env = Env::example();
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let holder = rusqlite::Connection::open(&env.store).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let d = Daemon::start(&env, &["m", "--actor", ADMIN, "--lock-timeout", "1s"]);
    let locked = d.nth_reconcile(1);
    assert_eq!(locked["result"], "locked");
    assert!(d.raw().contains("stayed locked"), "{}", d.raw());
    holder.execute_batch("COMMIT").unwrap();
    let applied = d.reconcile_with(1, "applied");
    assert_eq!(applied["trigger"], "retry");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
}

#[test]
fn a_deleted_manifest_directory_is_reported_and_picked_up_when_it_returns() {
    let env = Env::example();
    std::fs::create_dir(env.path("m")).unwrap();
    let mut d = Daemon::start(&env, &["m", "--actor", ADMIN]);
    d.nth_reconcile(1);
    let before = env.export();

    std::fs::rename(env.path("m"), env.path("m-old")).unwrap();
    let gone = d.reconcile_with(1, "invalid");
    assert_eq!(gone["trigger"], "file");
    assert!(d.raw().contains("manifest path is missing"), "{}", d.raw());
    assert_eq!(env.export(), before);
    assert!(d.alive());

    // It comes back (as a new directory), and a manifest written into it is applied.
    std::fs::create_dir(env.path("m")).unwrap();
    d.wait("the directory to be seen again", |d| {
        d.raw().contains("manifest path is back").then_some(())
    });
    let seen = d.reconciles().len();
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let applied = d.reconcile_with(seen, "applied");
    assert_eq!(applied["trigger"], "file");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
}

#[test]
fn a_save_written_in_pieces_is_applied_whole_and_never_half() {
    let env = Env::example();
    std::fs::create_dir(env.path("m")).unwrap();
    let d = Daemon::start(&env, &["m", "--actor", ADMIN]);
    d.nth_reconcile(1);

    let text = manifest(
        "two-users",
        "  - users: [alice@contoso.example, bob@contoso.example]\n    app-passwords: none\n",
    );
    let mut f = std::fs::File::create(env.path("m/slow.yaml")).unwrap();
    for chunk in text.as_bytes().chunks(text.len() / 5 + 1) {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(40));
    }
    drop(f);
    let applied = d.reconcile_with(1, "applied");
    assert_eq!(
        applied["users"], 2,
        "both users of the whole file: {applied}"
    );
    let results: Vec<Value> = d.reconciles().iter().map(|r| r["result"].clone()).collect();
    assert!(
        !results.contains(&Value::from("invalid")),
        "a partial file was read: {results:?}"
    );
}

#[test]
fn a_burst_of_saves_is_one_reconcile() {
    let env = Env::example();
    std::fs::create_dir(env.path("m")).unwrap();
    let d = Daemon::start(&env, &["m", "--actor", ADMIN]);
    d.nth_reconcile(1);
    for (i, user) in ["alice", "bob", "carol", "dave"].iter().enumerate() {
        env.write(
            &format!("m/{i}.yaml"),
            &manifest(
                &format!("m{i}"),
                &format!("  - users: [{user}@contoso.example]\n    revoke-sessions-before: 2026-11-29T00:00:00Z\n"),
            ),
        );
    }
    let applied = d.reconcile_with(1, "applied");
    assert_eq!(applied["users"], 4, "{applied}");
    // Well past the debounce: still no other reconcile (the apply's own store writes do not count).
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(d.reconciles().len(), 2, "{}", d.raw());
}

#[test]
fn once_reconciles_one_time_and_exits_with_apply_codes() {
    let env = Env::example();
    // Denied: erin may not delete app passwords; nothing is applied (3).
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let before = env.export();
    let o = env.run(&["watch", "m", "--once", "--actor", "erin@contoso.example"]);
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(o.stderr.contains("denied"), "{}", o.stderr);
    assert!(o.stderr.contains("result=denied"), "{}", o.stderr);
    assert_eq!(env.export(), before);

    // Invalid (1), with the located error.
    env.write("m/bad.yaml", "apiVersion: mfactl/v1\nkind: Nope\n");
    let o = env.run(&["watch", "m", "--once", "--actor", ADMIN]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains("bad.yaml:1:1: missing field `metadata`"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("result=invalid"), "{}", o.stderr);
    std::fs::remove_file(env.path("m/bad.yaml")).unwrap();

    // Applied (0), then nothing to do (0).
    let o = env.run(&["watch", "m", "--once", "--actor", ADMIN]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stderr.contains("result=applied"), "{}", o.stderr);
    assert_eq!(o.stderr.matches("reconcile").count(), 1, "{}", o.stderr);
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
    let o = env.run(&["watch", "m", "--once", "--actor", ADMIN]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stderr.contains("result=in-sync"), "{}", o.stderr);

    // Locked (4).
    let holder = rusqlite::Connection::open(&env.store).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let o = env.run(&[
        "watch",
        "m",
        "--once",
        "--actor",
        ADMIN,
        "--lock-timeout",
        "1s",
    ]);
    assert_eq!(o.code, 4, "{}", o.all());
    drop(holder);
}

#[test]
fn a_password_reset_needs_a_credentials_dir_and_gets_a_new_private_file_there() {
    let env = Env::example();
    env.write(
        "m/carol.yaml",
        &manifest(
            "carol",
            "  - users: [carol@contoso.example]\n    reset-password-before: 2026-11-28T14:30:00Z\n    revoke-sessions-before: 2026-11-28T14:30:00Z\n",
        ),
    );
    let before = env.export();
    let o = env.run(&["watch", "m", "--once", "--actor", ADMIN]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("--credentials-dir"), "{}", o.stderr);
    assert!(o.stderr.contains("carol@contoso.example"), "{}", o.stderr);
    assert!(
        o.stderr.contains("result=needs-credentials"),
        "{}",
        o.stderr
    );
    assert_eq!(
        env.export(),
        before,
        "all or nothing: not even the sessions"
    );

    std::fs::create_dir(env.path("creds")).unwrap();
    let o = env.run(&[
        "watch",
        "m",
        "--once",
        "--actor",
        ADMIN,
        "--credentials-dir",
        "creds",
        "--log-format",
        "json",
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    let files: Vec<_> = std::fs::read_dir(env.path("creds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("credentials-") && name.ends_with(".tsv"),
        "{name}"
    );
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let body = std::fs::read_to_string(&files[0]).unwrap();
    let (user, password) = body.trim_end().split_once('\t').unwrap();
    assert_eq!(user, "carol@contoso.example");
    assert!(password.len() >= 16);
    assert!(!o.stderr.contains(password), "a secret in the log");
    assert!(
        o.stderr.contains(&name),
        "the log names the file: {}",
        o.stderr
    );

    // Nothing left to reset: no new file.
    let o = env.run(&[
        "watch",
        "m",
        "--once",
        "--actor",
        ADMIN,
        "--credentials-dir",
        "creds",
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(std::fs::read_dir(env.path("creds")).unwrap().count(), 1);
}

#[test]
fn detect_only_reports_drift_per_user_and_never_applies() {
    let env = Env::example();
    let manifests = format!("{EXAMPLES}/manifests");
    let before = env.export();
    let o = env.run(&[
        "watch",
        &manifests,
        "--once",
        "--detect-only",
        "--log-format",
        "json",
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(env.export(), before);
    let events: Vec<Value> = o
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut drifted: Vec<String> = events
        .iter()
        .filter(|e| e["message"] == "drift")
        .map(|e| e["user"].as_str().unwrap().to_string())
        .collect();
    // The same users as the plan's.
    let plan: Value =
        serde_json::from_str(&env.ok(&["plan", &manifests, "--format", "json"]).stdout).unwrap();
    let mut planned: Vec<String> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"].as_str().unwrap().to_string())
        .collect();
    planned.dedup();
    drifted.sort();
    planned.sort();
    assert_eq!(drifted, planned);
    let carol = events
        .iter()
        .find(|e| e["message"] == "drift" && e["user"] == "carol@contoso.example")
        .unwrap();
    assert!(
        carol["actions"]
            .as_str()
            .unwrap()
            .contains("reset-password"),
        "{carol}"
    );
    let summary = events.iter().find(|e| e["message"] == "reconcile").unwrap();
    assert_eq!(summary["result"], "drift");
    assert_eq!(summary["drifted"], planned.len());
    assert_eq!(summary["changes"], 0);

    // As a daemon too: drift is reported on every tick, and never applied.
    let d = Daemon::start(&env, &[&manifests, "--detect-only", "--interval", "1s"]);
    d.nth_reconcile(2);
    assert!(d.reconciles().iter().all(|r| r["result"] == "drift"));
    assert_eq!(env.export(), before);
}

#[test]
fn watch_refuses_bad_options_at_startup() {
    let env = Env::example();
    std::fs::create_dir(env.path("m")).unwrap();
    let o = env.run(&["watch", "m", "--once"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("--actor"), "{}", o.stderr);
    let o = env.run(&["watch", "m", "--actor", ADMIN, "--interval", "soon"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("--interval"), "{}", o.stderr);
    let o = env.run(&["watch", "m", "--actor", ADMIN, "--credentials-dir", "nope"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("--credentials-dir nope"), "{}", o.stderr);
    let bare = Env::bare();
    let o = bare.run(&["watch", "m", "--actor", ADMIN]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("mfactl init"), "{}", o.stderr);
}

/// A policy directory `dir` holding the repository's role table and these guardrails.
fn policies_dir(env: &Env, dir: &str, guardrails: &str) {
    let roles =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/roles.yaml"))
            .unwrap();
    env.write(&format!("{dir}/roles.yaml"), &roles);
    env.write(&format!("{dir}/guardrails.yaml"), guardrails);
}

const PROTECT_BOB: &str =
    "protected-users: [bob@contoso.example]\nmax-users-per-apply: 500\nmax-future-skew: 5m\n";
const PROTECT_NOBODY: &str = "protected-users: []\nmax-users-per-apply: 500\nmax-future-skew: 5m\n";

#[test]
fn a_change_to_the_policy_files_was_not_watched() {
    let env = Env::example();
    policies_dir(&env, "pol", PROTECT_BOB);
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let d = Daemon::start(
        &env,
        &[
            "m",
            "--actor",
            ADMIN,
            "--policies",
            "pol",
            "--interval",
            "1h",
        ],
    );
    // Bob is protected and named: the manifests are refused.
    assert_eq!(d.nth_reconcile(1)["result"], "invalid");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 2);
    // Unprotecting him in guardrails.yaml alone reconciles (the timer is an hour away).
    env.write("pol/guardrails.yaml", PROTECT_NOBODY);
    let applied = d.reconcile_with(1, "applied");
    assert_eq!(applied["trigger"], "file", "{applied}");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
}

#[test]
fn an_invalid_policy_file_is_logged_and_nothing_applied() {
    let env = Env::example();
    policies_dir(&env, "pol", PROTECT_NOBODY);
    std::fs::create_dir(env.path("m")).unwrap();
    let mut d = Daemon::start(
        &env,
        &[
            "m",
            "--actor",
            ADMIN,
            "--policies",
            "pol",
            "--interval",
            "1h",
        ],
    );
    assert_eq!(d.nth_reconcile(1)["result"], "in-sync");
    let good = std::fs::read_to_string(env.path("pol/roles.yaml")).unwrap();
    env.write("pol/roles.yaml", "roles: [\n");
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let invalid = d.reconcile_with(1, "invalid");
    assert_eq!(invalid["trigger"], "file");
    assert!(
        d.events()
            .iter()
            .any(|e| e["level"] == "ERROR"
                && e["message"].as_str().unwrap_or("").contains("roles.yaml")),
        "the error names the file: {}",
        d.raw()
    );
    assert!(d.alive(), "the daemon keeps running");
    assert_eq!(
        app_passwords(&env, "bob@contoso.example"),
        2,
        "nothing applied"
    );
    // Fixed, the next save applies.
    let seen = d.reconciles().len();
    env.write("pol/roles.yaml", &good);
    let applied = d.reconcile_with(seen, "applied");
    assert_eq!(applied["trigger"], "file");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
}

#[test]
fn running_out_of_inotify_watches_fell_back_to_nothing() {
    let env = Env::example();
    std::fs::create_dir(env.path("m")).unwrap();
    let d = Daemon::start_with(
        &env,
        &["m", "--actor", ADMIN, "--interval", "1h"],
        &[("MFACTL_FAILPOINT", "inotify-exhausted")],
    );
    assert_eq!(d.nth_reconcile(1)["result"], "in-sync");
    let polling: Vec<Value> = d
        .events()
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("the inotify watches ran out")
        })
        .collect();
    assert_eq!(polling.len(), 1, "logged once: {}", d.raw());
    assert_eq!(polling[0]["level"], "WARN");
    // Polling still sees a save, long before the hourly timer.
    env.write("m/apps.yaml", &bob_without_app_passwords());
    let applied = d.reconcile_with(1, "applied");
    assert_eq!(applied["trigger"], "file", "{applied}");
    assert_eq!(app_passwords(&env, "bob@contoso.example"), 0);
    let polling = d
        .events()
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("the inotify watches ran out")
        })
        .count();
    assert_eq!(polling, 1, "still once: {}", d.raw());
}

#[test]
fn a_symlink_in_the_watched_directory_was_skipped_without_a_word() {
    let env = Env::example();
    env.write("outside/apps.yaml", &bob_without_app_passwords());
    std::fs::create_dir(env.path("m")).unwrap();
    std::os::unix::fs::symlink(env.path("outside/apps.yaml"), env.path("m/apps.yaml")).unwrap();
    let d = Daemon::start(&env, &["m", "--actor", ADMIN, "--interval", "1h"]);
    assert_eq!(d.nth_reconcile(1)["result"], "in-sync", "not followed");
    assert!(
        d.events().iter().any(|e| e["level"] == "WARN"
            && e["message"]
                .as_str()
                .unwrap_or("")
                .contains("apps.yaml: a symlink, not followed")),
        "{}",
        d.raw()
    );
}

#[test]
fn a_second_watch_on_a_sqlite_store_exits_1_naming_the_first() {
    let env = Env::example();
    std::fs::create_dir(env.path("m")).unwrap();
    let mut first = Daemon::start(&env, &["m", "--actor", ADMIN]);
    first.nth_reconcile(1);
    let leads = first
        .events()
        .into_iter()
        .find(|e| e["message"] == "leader (epoch 0)");
    assert!(leads.is_some(), "{}", first.raw());
    let pid = format!("pid {} on ", first.child.id());
    for args in [
        &["watch", "m", "--actor", ADMIN][..],
        &["watch", "m", "--once", "--actor", ADMIN][..],
    ] {
        let second = env.run(args);
        assert_eq!(second.code, 1, "{args:?}: {}", second.all());
        assert!(second.stderr.contains(&pid), "{args:?}: {}", second.stderr);
        assert!(
            second.stderr.contains("mfactl.db.watch.lock"),
            "{}",
            second.stderr
        );
        assert!(
            second
                .stderr
                .contains("another `mfactl watch` runs on this store"),
            "{}",
            second.stderr
        );
    }
    // Detecting once commits nothing, so it runs beside the daemon.
    let detect = env.run(&["watch", "m", "--once", "--detect-only"]);
    assert_eq!(detect.code, 0, "{}", detect.all());
    assert!(first.alive());

    // The kernel releases the lock of a killed daemon: the next one starts.
    first.signal("KILL");
    first.exited(DEADLINE);
    let next = Daemon::start(&env, &["m", "--actor", ADMIN]);
    assert_eq!(next.nth_reconcile(1)["trigger"], "start");
}

#[test]
fn watch_refuses_a_bad_lease_or_replica_id() {
    let env = Env::example();
    std::fs::create_dir(env.path("m")).unwrap();
    for (args, expected) in [
        (
            &["--lease", "0s"][..],
            "--lease 0s: must be between 1s and 1h",
        ),
        (
            &["--lease", "2h"][..],
            "--lease 2h: must be between 1s and 1h",
        ),
        (
            &["--lease", "soon"][..],
            "--lease: `soon` is not a duration",
        ),
        (&["--replica-id", ""][..], "--replica-id : must be 1 to 200"),
    ] {
        let o = env.run(&[&["watch", "m", "--once", "--actor", ADMIN][..], args].concat());
        assert_eq!(o.code, 1, "{args:?}: {}", o.all());
        assert!(o.stderr.contains(expected), "{args:?}: {}", o.stderr);
    }
}
