//! The PostgreSQL lease of `watch` replicas, driven directly (several electors in one process,
//! each with its own connection) against a real server: one leader, takeover from a dead or a
//! hung leader, resignation, and the fence an apply checks before it commits. The daemons
//! themselves are driven in tests/replicas.rs. Without a server every test prints `skipped`.

mod common;
use common::pg;

use mfactl::store::lease::postgres::{row_ttl, standby_every};
use mfactl::store::lease::{Elector, Role};
use mfactl::store::postgres::FENCE_SQL;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(2);

fn db() -> Option<pg::Db> {
    let db = pg::database()?;
    // `mfactl init` creates the lease row with the store's tables.
    mfactl::store::Store::init(std::path::Path::new(&db.url()), Duration::ZERO)
        .expect("mfactl init on the test database");
    Some(db)
}

fn elector(db: &pg::Db, me: &str) -> Box<dyn Elector> {
    mfactl::store::lease::elector(std::path::Path::new(&db.url()), me, LEASE).expect("an elector")
}

fn leader(name: &str) -> Role {
    Role::Standby {
        leader: Some(name.into()),
    }
}

/// Polls `e` at its own pace until it leads; returns the epoch and how long it took.
fn until_leader(e: &mut Box<dyn Elector>, limit: Duration) -> (i64, Duration) {
    let start = Instant::now();
    loop {
        if let Ok(Role::Leader { epoch }) = e.poll() {
            return (epoch, start.elapsed());
        }
        assert!(start.elapsed() < limit, "no lead after {limit:?}");
        std::thread::sleep(e.next_poll().unwrap_or(Duration::from_millis(100)));
    }
}

/// Whether the fence of (`holder`, `epoch`) holds, in a transaction of its own.
fn fence_holds(db: &pg::Db, holder: &str, epoch: i64) -> bool {
    let mut c = db.admin();
    let mut tx = c.transaction().unwrap();
    let ok = tx
        .query_opt(FENCE_SQL, &[&holder, &epoch])
        .unwrap()
        .is_some();
    tx.commit().unwrap();
    ok
}

#[test]
fn one_replica_leads_and_the_others_name_it() {
    let Some(db) = db() else { return };
    let (mut a, mut b) = (elector(&db, "a"), elector(&db, "b"));
    assert_eq!(a.poll().unwrap(), Role::Leader { epoch: 1 });
    assert_eq!(b.poll().unwrap(), leader("a"));
    assert_eq!(a.poll().unwrap(), Role::Leader { epoch: 1 }, "renewed");
    assert_eq!(b.poll().unwrap(), leader("a"));
    assert!(fence_holds(&db, "a", 1));
    assert!(!fence_holds(&db, "b", 1));
    assert!(!fence_holds(&db, "a", 0));
}

#[test]
fn a_dead_leaders_session_is_taken_over_at_once() {
    let Some(db) = db() else { return };
    let (mut a, mut b) = (elector(&db, "a"), elector(&db, "b"));
    assert_eq!(a.poll().unwrap(), Role::Leader { epoch: 1 });
    assert_eq!(b.poll().unwrap(), leader("a"));
    drop(a); // its connection closes, and its session's lock goes with it
    let (epoch, took) = until_leader(&mut b, LEASE);
    eprintln!("takeover from a dead session took {took:?} (lease {LEASE:?})");
    assert_eq!(epoch, 2);
    assert!(
        took < row_ttl(LEASE),
        "taken over before the lease could expire: {took:?}"
    );
    assert!(!fence_holds(&db, "a", 1));
    assert!(fence_holds(&db, "b", 2));
}

#[test]
fn a_hung_leader_is_taken_over_once_its_lease_expires_and_then_stands_by() {
    let Some(db) = db() else { return };
    let (mut a, mut b) = (elector(&db, "a"), elector(&db, "b"));
    assert_eq!(a.poll().unwrap(), Role::Leader { epoch: 1 });
    // `a` stops polling (hung, SIGSTOPped) but its session lives and holds its lock.
    let (epoch, took) = until_leader(&mut b, LEASE * 3);
    eprintln!("takeover from a hung leader took {took:?} (lease {LEASE:?})");
    assert_eq!(epoch, 2);
    assert!(
        took + standby_every(LEASE) >= row_ttl(LEASE),
        "not before the lease expired: {took:?}"
    );
    // `a` wakes up: its renewal finds the row taken, and it stands by naming `b`.
    assert_eq!(a.poll().unwrap(), leader("b"));
    assert!(!fence_holds(&db, "a", 1));

    // Now that `a` let go of its epoch's lock, that lock is free while `b` leads without it:
    // a replica that read "free lock" as "the leader is gone" would depose `b` here.
    let mut c = elector(&db, "c");
    for _ in 0..5 {
        assert_eq!(c.poll().unwrap(), leader("b"));
        assert_eq!(a.poll().unwrap(), leader("b"));
        assert_eq!(b.poll().unwrap(), Role::Leader { epoch: 2 });
        std::thread::sleep(standby_every(LEASE));
    }
    assert!(fence_holds(&db, "b", 2));
}

#[test]
fn a_resigning_leader_is_replaced_at_the_next_poll() {
    let Some(db) = db() else { return };
    let (mut a, mut b) = (elector(&db, "a"), elector(&db, "b"));
    assert_eq!(a.poll().unwrap(), Role::Leader { epoch: 1 });
    assert_eq!(b.poll().unwrap(), leader("a"));
    a.resign();
    assert_eq!(b.poll().unwrap(), Role::Leader { epoch: 2 });
    assert!(!fence_holds(&db, "a", 1));
}

#[test]
fn a_takeover_waits_for_an_apply_that_passed_its_fence() {
    let Some(db) = db() else { return };
    let (mut a, mut b) = (elector(&db, "a"), elector(&db, "b"));
    assert_eq!(a.poll().unwrap(), Role::Leader { epoch: 1 });
    assert_eq!(b.poll().unwrap(), leader("a"));
    // `a`'s apply passes its fence; its transaction is still open when `a`'s session dies.
    let mut store = db.admin();
    let mut apply = store.transaction().unwrap();
    assert!(apply
        .query_opt(FENCE_SQL, &[&"a", &1i64])
        .unwrap()
        .is_some());
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    // `b` cannot take over while that apply may still commit.
    for _ in 0..3 {
        let polled = b.poll();
        assert!(
            !matches!(polled, Ok(Role::Leader { .. })),
            "took over under an apply's fence: {polled:?}"
        );
        std::thread::sleep(standby_every(LEASE));
    }
    apply.commit().unwrap();
    let (epoch, _) = until_leader(&mut b, LEASE * 2);
    assert_eq!(epoch, 2);
}

#[test]
fn a_store_without_the_lease_table_says_to_run_init() {
    let Some(db) = pg::database() else { return };
    let mut a = elector(&db, "a");
    let err = a.poll().unwrap_err().to_string();
    assert!(err.contains("mfactl init"), "{err}");
    assert!(err.contains("mfactl.lease"), "{err}");
}
