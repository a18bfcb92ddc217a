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
use std::path::Path;

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
    pub fn load(self, conn: &Connection, store_path: &Path) -> Result<Actor, Failure> {
        match self {
            Who::Actor(actor) => {
                let keys: Vec<String> = actor.map(key_of).into_iter().collect();
                let users = store::load_keys(conn, store_path, &keys)?;
                Ok(store::load_actor(
                    &Actual {
                        users,
                        ..Actual::default()
                    },
                    actor,
                ))
            }
            Who::Signed(sigs) => Ok(Actor::Requesters(Box::new(signed::requesters(
                conn, store_path, sigs,
            )?))),
        }
    }
}

/// The whole plan, for the commands that need it whole (apply, watch, the demo).
pub fn compute_plan(
    conn: &Connection,
    store_path: &Path,
    input: &Loaded,
    policy: &Policy,
    who: Who,
    now: Timestamp,
) -> Result<Plan, Failure> {
    let mut plan = None;
    let id = plan_batches(
        conn,
        store_path,
        input,
        policy,
        who,
        now,
        false,
        &mut |step| {
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
        },
    )?;
    let mut plan =
        plan.ok_or_else(|| Failure::error("internal error: the plan was not started"))?;
    plan.id = id;
    Ok(plan)
}

/// Takes one planned batch: its changes, its skipped users, the users it was planned from.
type BatchFn<'f> = dyn FnMut(Vec<Change>, Vec<Skip>, &Actual) -> Result<(), Failure> + 'f;

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
    store_path: &Path,
    input: &Loaded,
    policy: &Policy,
    who: Who,
    now: Timestamp,
    id_first: bool,
    each: &mut dyn FnMut(Step) -> Result<(), Failure>,
) -> Result<String, Failure> {
    store::read_snapshot(conn, store_path, || {
        let needs = plan::needs(&input.manifests);
        let known = store::select_named(conn, store_path, &needs.user_keys)?;
        let groups = store::load_groups(conn, store_path)?;
        let revision = store::revision(conn, store_path)?;
        let who = who.load(conn, store_path)?;
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
        // The named users and the groups' members; `None` for the whole directory.
        let keys = if needs.all_users {
            None
        } else {
            Some(store::select_members(conn, store_path, &needs.group_keys)?)
        };
        let bs = batch_size();
        // Plans every batch in key order, handing each with its users to `f`.
        let batches = |f: &mut BatchFn| {
            let mut plan_batch = |users: BTreeMap<String, User>| -> Result<(), Failure> {
                let batch = Actual {
                    users,
                    groups: groups.clone(),
                    revision,
                };
                let (changes, skipped) = plan::plan(&input.manifests, &batch, policy, &who, now);
                f(changes, skipped, &batch)
            };
            if let Some(keys) = &keys {
                for chunk in keys.chunks(bs) {
                    let (first, last) = (&chunk[0], &chunk[chunk.len() - 1]);
                    plan_batch(store::load_selected(conn, store_path, first, last)?)?;
                }
                return Ok(());
            }
            let mut failed = None;
            store::user_batches(conn, store_path, bs, &mut |users| match plan_batch(users) {
                Ok(()) => true,
                Err(f) => {
                    failed = Some(f);
                    false
                }
            })?;
            failed.map_or(Ok(()), Err)
        };
        if let Some(keys) = keys.as_ref().filter(|k| k.len() <= bs) {
            // One batch: planned before the start, so the start carries the id.
            let users = match (keys.first(), keys.last()) {
                (Some(first), Some(last)) => store::load_selected(conn, store_path, first, last)?,
                _ => BTreeMap::new(),
            };
            let batch = Actual {
                users,
                groups: groups.clone(),
                revision,
            };
            let (changes, skipped) = plan::plan(&input.manifests, &batch, policy, &who, now);
            let fingerprints = plan::fingerprints(&changes, &batch);
            let mut d = digest();
            d.add_changes(&changes, &fingerprints);
            let id = d.finish();
            each(Step::Start(&head(id.clone())))?;
            each(Step::Batch {
                changes,
                skipped,
                users: &batch,
                fingerprints: &fingerprints,
            })?;
            return Ok(id);
        }
        if id_first {
            let mut d = digest();
            batches(&mut |changes, _, users| {
                d.add_changes(&changes, &plan::fingerprints(&changes, users));
                Ok(())
            })?;
            let id = d.finish();
            each(Step::Start(&head(id.clone())))?;
            batches(&mut |changes, skipped, users| {
                let fingerprints = plan::fingerprints(&changes, users);
                each(Step::Batch {
                    changes,
                    skipped,
                    users,
                    fingerprints: &fingerprints,
                })
            })?;
            return Ok(id);
        }
        each(Step::Start(&head(String::new())))?;
        let mut d = digest();
        batches(&mut |changes, skipped, users| {
            let fingerprints = plan::fingerprints(&changes, users);
            d.add_changes(&changes, &fingerprints);
            each(Step::Batch {
                changes,
                skipped,
                users,
                fingerprints: &fingerprints,
            })
        })?;
        Ok(d.finish())
    })
}
