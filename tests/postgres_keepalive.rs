//! A machine that vanishes (power cut, network partition) while its apply holds the store's
//! lock closes nothing: the server keeps the session, and the lock, until its TCP keepalives
//! find the peer dead, by default after two hours. So a write transaction asks the server for
//! short keepalives on its connection. This test reads them where the operating system keeps
//! them: the server's socket's keepalive timer, as `ss -o` shows it, while an apply waits to
//! commit. (Dropping the packets of a live connection needs a traffic filter that this
//! machine's kernel lacks.) Prints `skipped` without a server or without `ss`.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The keepalive timer of the server's socket whose peer is `client_port`, e.g. `9.4sec`,
/// `1min39sec`, `119min`; `None` while `ss` shows none.
fn server_keepalive(client_port: i32) -> Option<String> {
    let o = Command::new("ss")
        .args(["-tno", "state", "established"])
        .arg(format!("( dport = :{client_port} )"))
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&o.stdout);
    let at = text.find("timer:(keepalive,")? + "timer:(keepalive,".len();
    Some(text[at..].split(',').next()?.to_string())
}

#[test]
fn an_apply_holding_the_lock_has_the_server_find_a_vanished_client_within_seconds() {
    let has_ss = Command::new("ss")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_ss {
        eprintln!("skipped: no `ss` (iproute2) to read the server's socket timers");
        return;
    }
    let Some(db) = pg::database() else { return };
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
        store: db.url().into(),
    };
    env.ok(&["init"]);
    env.ok(&["store", "import", &format!("{EXAMPLES}/directory.yaml")]);
    env.write(
        "m/bob.yaml",
        &manifest(
            "bob",
            "  - users: [bob@contoso.example]\n    revoke-sessions-before: 2026-11-27T09:00:00Z\n",
        ),
    );
    let mark = env.path("at-commit");
    let mut apply = env
        .cmd()
        .args([
            "--actor",
            "gary@contoso.example",
            "apply",
            "m",
            "--auto-approve",
        ])
        .env("MFACTL_FAILPOINT", "apply-wait-before-commit")
        .env("MFACTL_FAILPOINT_MARK", &mark)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while !mark.exists() {
        assert!(apply.try_wait().unwrap().is_none(), "the apply ended early");
        assert!(Instant::now() < end, "the apply never reached its commit");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The apply's connection: the one session of this database idle in its transaction.
    let port: i32 = db
        .admin()
        .query_one(
            "SELECT client_port FROM pg_stat_activity \
             WHERE datname = current_database() AND state = 'idle in transaction'",
            &[],
        )
        .expect("the apply's session")
        .get(0);
    assert!(port > 0, "the harness connects over TCP");
    let mut timer = None;
    while timer.is_none() && Instant::now() < end {
        timer = server_keepalive(port);
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = apply.kill();
    let _ = apply.wait();
    let timer = timer.expect("a keepalive timer on the server's socket");
    assert!(
        !timer.contains("min") && !timer.contains('h'),
        "the server would wait {timer} before its first probe of a silent client"
    );
}
