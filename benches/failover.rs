//! Failover benchmark (not a test): how long a standby `mfactl watch` takes to lead, and to apply a
//! pending change, after the leader is SIGKILLed; the median and the worst of many kills.
//!
//! ```sh
//! cargo bench --bench failover                              # 20 kills, the default 15 s lease
//! MFACTL_FAILOVER_KILLS=5 MFACTL_FAILOVER_LEASE=2 cargo bench --bench failover
//! ```
//!
//! Two replicas of the real daemon run on one database of the tests' throwaway PostgreSQL server
//! (`tests/common/pg.rs`; `MFACTL_TEST_POSTGRES` for another server), each as a machine would run
//! it: in a directory of its own with its own copy of the manifests, its own `--replica-id`. Each
//! round SIGKILLs the leader, then changes the standby's manifest (a later
//! `revoke-sessions-before` for one user), and times from the kill to the standby's `leader` log line and to its `applied`
//! reconcile. The kills fall at twenty points spread over the standby's poll cycle (a fifth of
//! the lease). A new standby is then started for the next round, so each replica leads once.
//! Afterwards the audit log must hold exactly one record per round: no change lost, none twice.
#![allow(dead_code)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::replica::Replica;
use common::{manifest, pg, Env, EXAMPLES};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const USER: &str = "bob@contoso.example";

/// The manifest of round `i`: bob's sessions before a time that grows with `i` (all before the
/// tests' clock, 12:00) are revoked, one change per round.
fn round_manifest(i: usize) -> String {
    let minutes = 9 * 60 + i;
    manifest(
        "failover",
        &format!(
            "  - users: [{USER}]\n    revoke-sessions-before: 2026-11-30T{:02}:{:02}:00Z\n",
            minutes / 60,
            minutes % 60
        ),
    )
}

fn revocations(env: &Env) -> usize {
    let out = env
        .ok(&["audit", "--user", USER, "--format", "json"])
        .stdout;
    let records: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
    records
        .iter()
        .filter(|r| r["action"] == "revoke-sessions")
        .count()
}

fn leads(r: &Replica) {
    r.wait("lead", |r| {
        r.events()
            .iter()
            .any(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("leader ("))
            })
            .then_some(())
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --all-targets` runs bench targets without `--bench`: do nothing there.
    if !args.iter().any(|a| a == "--bench") {
        println!("failover: skipped (run it with `cargo bench --bench failover`)");
        return;
    }
    let num = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim_end_matches('s').parse::<u64>().ok())
            .unwrap_or(d)
    };
    let kills = num("MFACTL_FAILOVER_KILLS", 20).max(1) as usize;
    let lease = Duration::from_secs(num("MFACTL_FAILOVER_LEASE", 15).max(1));
    let Some(db) = pg::database() else {
        eprintln!("failover: no PostgreSQL here (see the line above)");
        std::process::exit(1);
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let env = Env {
        dir,
        store: PathBuf::from(db.url()),
    };
    env.ok(&["init"]);
    env.ok(&["store", "import", &format!("{EXAMPLES}/directory.yaml")]);
    // Each replica's machine: a directory with its checkout of the manifests at round `round`.
    let machine = |name: &str, round: usize| {
        env.write(&format!("{name}/m/failover.yaml"), &round_manifest(round));
        env.path(name)
    };
    let start = |name: &str, round: usize| {
        Replica::start_in(&env, &machine(name, round), &db, name, lease, &[])
    };

    let mut leader = start("r0", 0);
    leads(&leader);
    leader.reconcile_with("applied");
    let mut standby = start("r1", 0);
    standby.logged("standby (leader: r0)");

    let (mut led, mut applied) = (Vec::new(), Vec::new());
    // A standby polls every fifth of the lease; the kills fall at spread points of its poll
    // cycle (the same points on every run), as a crash would fall anywhere in it.
    let poll = lease / 5;
    for i in 1..=kills {
        std::thread::sleep(poll.mul_f64(((i * 7) % 20) as f64 / 20.0));
        leader.signal("KILL");
        let killed = Instant::now();
        machine(&standby.name, i);
        leads(&standby);
        led.push(killed.elapsed());
        let rec = standby.reconcile_with("applied");
        applied.push(killed.elapsed());
        assert_eq!(rec["applied"], "revoke-sessions:1", "{rec}");
        eprintln!(
            "failover: kill {i} of {kills}: {} led after {}, applied after {}",
            standby.name,
            ms(led[i - 1]),
            ms(applied[i - 1])
        );
        let next = start(&format!("r{}", i + 1), i);
        next.logged(&format!("standby (leader: {})", standby.name));
        leader = std::mem::replace(&mut standby, next);
    }
    drop((leader, standby));

    let audited = revocations(&env);
    assert_eq!(
        audited,
        kills + 1,
        "every round's change applied exactly once (the first by r0)"
    );
    let worst = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    println!(
        "| after SIGKILL of the leader (lease {}s, {kills} kills) | median | worst |",
        lease.as_secs()
    );
    println!("|---|---:|---:|");
    println!(
        "| the standby leads | {} | {} |",
        ms(median(led.clone())),
        ms(worst(&led))
    );
    println!(
        "| the standby has applied the pending change | {} | {} |",
        ms(median(applied.clone())),
        ms(worst(&applied))
    );
    println!("\n(the audit log holds {audited} revocations: one per round, none lost, none twice)");
}
