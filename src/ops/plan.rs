//! Computing a plan against the store, a batch of users at a time in key order: the users the
//! manifests name and the members of the groups they name, or the whole directory when one says
//! `all-users`. No plan holds all its users at once (and, when its consumer renders each batch as
//! it comes, nor all its changes): a plan of a million users takes a few megabytes.

use super::load::{invalid, offline_problems, Loaded};
use super::signed::{self, Signatures};
use crate::error::Failure;
use crate::manifest;
use crate::model::{key_of, Timestamp, User};
use crate::plan::{self, Actual, Change, Plan, Skip};
use crate::policy::{Actor, Policy};
use crate::saved::PlanDigest;
use crate::store;
use crate::store::Conn as Connection;
use std::collections::BTreeMap;

/// Users per batch: each batch's queries cost a few milliseconds of fixed overhead, and its users
/// and changes a few megabytes.
pub const PLAN_BATCH: usize = 5_000;

/// [`PLAN_BATCH`]; with the `failpoints` feature (the tests' build) `MFACTL_PLAN_BATCH=N` makes
/// small tenants cross many batch boundaries. Other builds compile the override away.
pub(crate) fn batch_size() -> usize {
    #[cfg(feature = "failpoints")]
    if let Some(n) = std::env::var("MFACTL_PLAN_BATCH")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    PLAN_BATCH
}

/// Who the plan is for: the acting administrator (`--actor`, or nobody), or, under `--signers`,
/// the signers of the manifests.
#[derive(Clone, Copy)]
pub enum Who<'a> {
    Actor(Option<&'a str>),
    Signed(&'a Signatures),
}

impl<'a> Who<'a> {
    /// As the core takes it, with roles read from the store in `conn`'s snapshot.
    pub fn load(self, conn: &Connection) -> Result<Actor, Failure> {
        match self {
            Who::Actor(actor) => {
                let keys: Vec<String> = actor.map(key_of).into_iter().collect();
                let users = conn.load_keys(&keys)?;
                Ok(store::load_actor(
                    &Actual {
                        users,
                        ..Actual::default()
                    },
                    actor,
                ))
            }
            Who::Signed(sigs) => Ok(Actor::Requesters(Box::new(signed::requesters(conn, sigs)?))),
        }
    }
}

/// The whole plan, for the commands that need it whole (apply, watch, the demo).
pub fn compute_plan(
    conn: &Connection,
    input: &Loaded,
    policy: &Policy,
    who: Who,
    now: Timestamp,
) -> Result<Plan, Failure> {
    let mut plan = None;
    let id = plan_batches(conn, input, policy, who, now, false, &mut |step| {
        match step {
            Step::Start(head) => plan = Some(head.clone()),
            Step::Batch {
                changes, skipped, ..
            } => {
                if let Some(p) = &mut plan {
                    // A single batch is moved, not copied: 100,000 changes are 20 MB.
                    if p.changes.is_empty() {
                        p.changes = changes;
                    } else {
                        p.changes.extend(changes);
                    }
                    p.skipped.extend(skipped);
                }
            }
        }
        Ok(())
    })?;
    let mut plan =
        plan.ok_or_else(|| Failure::error("internal error: the plan was not started"))?;
    plan.id = id;
    Ok(plan)
}

/// Takes one planned batch.
type BatchFn<'f> = dyn FnMut(Planned) -> Result<(), Failure> + 'f;

/// One batch of users, planned: its changes and skipped users, the users it was planned from,
/// the fingerprints of those changed, and each change's share of the plan id.
struct Planned {
    changes: Vec<Change>,
    skipped: Vec<Skip>,
    users: Actual,
    fingerprints: BTreeMap<String, String>,
    hashes: Vec<[u8; 32]>,
}

/// Plans one batch (pure: no store, no clock).
fn planned(
    manifests: &[manifest::Manifest],
    policy: &Policy,
    who: &Actor,
    now: Timestamp,
    users: Actual,
) -> Planned {
    let (changes, skipped) = plan::plan(manifests, &users, policy, who, now);
    let fingerprints = plan::fingerprints(&changes, &users);
    let hashes = changes.iter().map(crate::saved::change_hash).collect();
    Planned {
        changes,
        skipped,
        users,
        fingerprints,
        hashes,
    }
}

/// The batch a planning thread returns; its panic, if it had one, goes on here.
fn joined(h: std::thread::ScopedJoinHandle<'_, Planned>) -> Planned {
    h.join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// What [`plan_batches`] hands on, in order: the start once, then each batch.
pub enum Step<'a> {
    /// The plan's head: time, actor, revision, no changes, and the id when it is known before
    /// the changes are (empty otherwise: [`plan_batches`] returns it at the end).
    Start(&'a Plan),
    /// The changes and skipped users of the next users in key order, with the users they were
    /// planned from and the fingerprints of those changed. Concatenated, the batches are the plan.
    Batch {
        changes: Vec<Change>,
        skipped: Vec<Skip>,
        users: &'a Actual,
        fingerprints: &'a BTreeMap<String, String>,
    },
}

/// Checks the manifests against the store and plans them, in one snapshot of the store, handing
/// each [`Step`] to `each`, and returns the plan id (the digest of the plan's content). Any
/// problem — from parsing or from the checks — fails with every located message before the
/// start, so nothing has been rendered when a plan is refused.
///
/// The id is known at the start when the plan fits one batch. With `id_first`, a larger plan is
/// computed twice in the same snapshot, first for its id alone, so that the start carries it;
/// otherwise the start's id is empty and the caller takes the id from the return value.
#[allow(clippy::too_many_arguments)]
pub fn plan_batches(
    conn: &Connection,
    input: &Loaded,
    policy: &Policy,
    who: Who,
    now: Timestamp,
    id_first: bool,
    each: &mut dyn FnMut(Step) -> Result<(), Failure>,
) -> Result<String, Failure> {
    store::read_snapshot(conn, || {
        let needs = plan::needs(&input.manifests);
        let bs = batch_size();
        // The users selected by name and by group, in key order (`None`: the whole directory).
        // When they fit one batch they are read here, once, and the named users known from
        // them; otherwise each named user is looked up first (one seek), before anything is
        // planned or printed.
        let (known, keys, first_batch) = if needs.all_users {
            let known = conn.existing_users(&needs.user_keys)?;
            (known, None, None)
        } else {
            let keys = conn.select(&needs.user_keys, &needs.group_keys)?;
            if keys.len() <= bs {
                let users = match (keys.first(), keys.last()) {
                    (Some(first), Some(last)) => conn.load_selected(first, last)?,
                    _ => BTreeMap::new(),
                };
                let known = (needs.user_keys.iter())
                    .filter(|k| users.contains_key(k.as_str()))
                    .cloned()
                    .collect();
                (known, Some(keys), Some(users))
            } else {
                let known = conn.selected_named(&needs.user_keys)?;
                (known, Some(keys), None)
            }
        };
        let groups = conn.load_groups()?;
        let revision = conn.revision()?;
        let who = who.load(conn)?;
        let mut problems = offline_problems(input, policy, now);
        problems.extend(plan::check_known_in(
            &input.manifests,
            &|k| known.contains(k),
            &|g| groups.contains_key(g),
        ));
        if !problems.is_empty() {
            return Err(invalid(manifest::locate_all(problems, &input.files)));
        }
        let head = |id: String| Plan {
            id,
            created_at: now,
            actor: who.id().map(str::to_string),
            store_revision: revision,
            policies: policy.source.to_string(),
            changes: Vec::new(),
            skipped: Vec::new(),
            requesters: match &who {
                Actor::Requesters(r) => Some((**r).clone()),
                _ => None,
            },
        };
        let digest = || {
            let mut d = PlanDigest::new(who.id(), revision);
            if let Actor::Requesters(r) = &who {
                d.requesters(&plan::requesters_value(r));
            }
            d
        };
        let plan_one = |users: BTreeMap<String, User>| {
            planned(
                &input.manifests,
                policy,
                &who,
                now,
                Actual {
                    users,
                    groups: groups.clone(),
                    revision,
                },
            )
        };
        // Plans every batch in key order, handing each to `f`. Two stages: while a batch is
        // planned (and its fingerprints and change hashes taken) on a second thread, this one
        // reads and decodes the next from the store and hands on the one before.
        let batches = |f: &mut BatchFn| -> Result<(), Failure> {
            std::thread::scope(|scope| {
                let mut pending: Option<std::thread::ScopedJoinHandle<Planned>> = None;
                let mut failed: Option<Failure> = None;
                let mut next = |users: BTreeMap<String, User>| -> Result<(), Failure> {
                    let ahead = scope.spawn(|| plan_one(users));
                    match pending.replace(ahead) {
                        Some(done) => f(joined(done)),
                        None => Ok(()),
                    }
                };
                let read = if let Some(keys) = &keys {
                    keys.chunks(bs).try_for_each(|chunk| {
                        let (first, last) = (&chunk[0], &chunk[chunk.len() - 1]);
                        next(conn.load_selected(first, last)?)
                    })
                } else {
                    conn.user_batches(bs, &mut |users| match next(users) {
                        Ok(()) => true,
                        Err(f) => {
                            failed = Some(f);
                            false
                        }
                    })
                    .map_err(Failure::from)
                    .and_then(|()| failed.take().map_or(Ok(()), Err))
                };
                read?;
                match pending.take() {
                    Some(done) => f(joined(done)),
                    None => Ok(()),
                }
            })
        };
        if let Some(users) = first_batch {
            // One batch, read above: planned before the start, so the start carries the id.
            let b = plan_one(users);
            let mut d = digest();
            d.add_hashed_changes(&b.changes, &b.fingerprints, &b.hashes);
            let id = d.finish();
            each(Step::Start(&head(id.clone())))?;
            each(Step::Batch {
                changes: b.changes,
                skipped: b.skipped,
                users: &b.users,
                fingerprints: &b.fingerprints,
            })?;
            return Ok(id);
        }
        if id_first {
            let mut d = digest();
            batches(&mut |b| {
                d.add_hashed_changes(&b.changes, &b.fingerprints, &b.hashes);
                Ok(())
            })?;
            let id = d.finish();
            each(Step::Start(&head(id.clone())))?;
            batches(&mut |b| {
                each(Step::Batch {
                    changes: b.changes,
                    skipped: b.skipped,
                    users: &b.users,
                    fingerprints: &b.fingerprints,
                })
            })?;
            return Ok(id);
        }
        each(Step::Start(&head(String::new())))?;
        let mut d = digest();
        batches(&mut |b| {
            d.add_hashed_changes(&b.changes, &b.fingerprints, &b.hashes);
            each(Step::Batch {
                changes: b.changes,
                skipped: b.skipped,
                users: &b.users,
                fingerprints: &b.fingerprints,
            })
        })?;
        Ok(d.finish())
    })
}
