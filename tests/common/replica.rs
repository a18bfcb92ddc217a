//! `mfactl watch` replicas on a PostgreSQL store, as real daemons: started, signalled, their JSON
//! logs and their `/healthz` read (tests/replicas.rs, benches/failover.rs).

use super::{pg, Env};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The actor every replica runs as: the example directory's administrator.
pub const ACTOR: &str = "gary@contoso.example";

/// How long a wait lasts at least before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// One replica: `mfactl watch m` as `--replica-id NAME`, its store connections named NAME too
/// (so that a test can cut exactly them), logging JSON; killed on drop.
pub struct Replica {
    pub name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// How long `wait` waits: 30 s, or four leases when that is longer.
    deadline: Duration,
}

impl Replica {
    pub fn start(
        env: &Env,
        db: &pg::Db,
        name: &str,
        lease: Duration,
        vars: &[(&str, &str)],
    ) -> Replica {
        Replica::start_in(env, env.dir.path(), db, name, lease, vars)
    }

    /// [`Replica::start`] in the directory `cwd` (a machine of its own: its own checkout of the
    /// manifests in `cwd/m`, its own policies).
    pub fn start_in(
        env: &Env,
        cwd: &std::path::Path,
        db: &pg::Db,
        name: &str,
        lease: Duration,
        vars: &[(&str, &str)],
    ) -> Replica {
        let url = format!("{}?application_name={name}", db.url());
        let mut cmd = env.cmd();
        cmd.current_dir(cwd).env("MFACTL_STORE", &url);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let deadline = DEADLINE.max(lease * 4);
        let lease = format!("{}s", lease.as_secs().max(1));
        let mut child = cmd
            .args(["watch", "m", "--actor", ACTOR, "--replica-id", name])
            .args(["--lease", &lease, "--lock-timeout", "1s"])
            .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
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
        Replica {
            name: name.into(),
            child,
            log,
            deadline,
        }
    }

    pub fn raw(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn events(&self) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn wait<T>(&self, what: &str, mut f: impl FnMut(&Self) -> Option<T>) -> T {
        let end = Instant::now() + self.deadline;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {} to {what}; it logged:\n{}",
                self.name,
                self.raw()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the log line of a role (`leader (epoch 1)`, `standby (leader: a)`).
    pub fn logged(&self, message: &str) {
        self.wait(&format!("log `{message}`"), |r| {
            r.events()
                .iter()
                .any(|e| e["message"] == message)
                .then_some(())
        })
    }

    pub fn reconciles(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["message"] == "reconcile")
            .collect()
    }

    pub fn reconcile_with(&self, result: &str) -> Value {
        self.wait(&format!("reconcile with result {result}"), |r| {
            r.reconciles().into_iter().find(|e| e["result"] == result)
        })
    }

    pub fn metrics_addr(&self) -> String {
        self.wait("serve metrics", |r| {
            r.events()
                .into_iter()
                .find(|e| e["message"] == "serving /healthz and /metrics")
                .and_then(|e| e["addr"].as_str().map(str::to_string))
        })
    }

    /// The first line of `/healthz`: `leader` or `standby`.
    pub fn health(&self) -> String {
        let (status, body) = http_get(&self.metrics_addr(), "/healthz");
        assert_eq!(status, 200, "{body}");
        body.lines().next().unwrap_or_default().to_string()
    }

    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET over a TcpStream: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics address");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Waits until `r`'s health says `role`.
pub fn health_is(r: &Replica, role: &str) {
    r.wait(&format!("report {role} on /healthz"), |r| {
        (r.health() == role).then_some(())
    });
}
