//! Computing a plan against the store, a batch of users at a time in key order: the users the
//! manifests name and the members of the groups they name, or the whole directory when one says
//! `all-users`. No plan holds all its users at once (and, when its consumer renders each batch as
//! it comes, nor all its changes): a plan of a million users takes a few megabytes.

use super::{invalid, random_id, Loaded};
use crate::error::Failure;
use crate::manifest;
use crate::model::{key_of, Timestamp, User};
use crate::plan::{self, Actual, Change, Plan, Skip};
use crate::policy::Policy;
use crate::store;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::Path;

/// Users per batch: each batch's queries cost a few milliseconds of fixed overhead, and its users
/// and changes a few megabytes.
pub const PLAN_BATCH: usize = 5_000;

/// [`PLAN_BATCH`]; in debug builds (which the tests drive) `MFACTL_PLAN_BATCH=N` makes small
/// tenants cross many batch boundaries. Release builds compile the override away.
fn batch_size() -> usize {
    #[cfg(debug_assertions)]
    if let Some(n) = std::env::var("MFACTL_PLAN_BATCH")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    PLAN_BATCH
}

/// The whole plan, for the commands that need it whole (apply, watch, the demo).
pub fn compute_plan(
    conn: &Connection,
    store_path: &Path,
    input: &Loaded,
    policy: &Policy,
    actor: Option<&str>,
    now: Timestamp,
) -> Result<Plan, Failure> {
    let mut plan = None;
    plan_batches(conn, store_path, input, policy, actor, now, &mut |step| {
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
    plan.ok_or_else(|| Failure::error("internal error: the plan was not started"))
}

/// What [`plan_batches`] hands on, in order: the start once, then each batch.
pub enum Step<'a> {
    /// The plan's head: id, time, actor, revision; no changes.
    Start(&'a Plan),
    /// The changes and skipped users of the next users in key order, with the users they were
    /// planned from. Concatenated, the batches are the plan.
    Batch {
        changes: Vec<Change>,
        skipped: Vec<Skip>,
        users: &'a Actual,
    },
}

/// Checks the manifests against the store and plans them, in one snapshot of the store, handing
/// each [`Step`] to `each`. Any problem — from parsing or from the checks — fails with every
/// located message before the start, so nothing has been rendered when a plan is refused.
pub fn plan_batches(
    conn: &Connection,
    store_path: &Path,
    input: &Loaded,
    policy: &Policy,
    actor: Option<&str>,
    now: Timestamp,
    each: &mut dyn FnMut(Step) -> Result<(), Failure>,
) -> Result<(), Failure> {
    store::read_snapshot(conn, store_path, || {
        let needs = plan::needs(&input.manifests);
        let known = store::existing_users(conn, store_path, &needs.user_keys)?;
        let groups = store::load_groups(conn, store_path)?;
        let revision = store::revision(conn, store_path)?;
        let who = {
            let keys: Vec<String> = actor.map(key_of).into_iter().collect();
            let users = store::load_keys(conn, store_path, &keys)?;
            store::load_actor(
                &Actual {
                    users,
                    ..Actual::default()
                },
                actor,
            )
        };
        let mut problems = input.problems.clone();
        problems.extend(plan::check_offline(&input.manifests, policy, now));
        problems.extend(plan::check_known_in(
            &input.manifests,
            &|k| known.contains(k),
            &|g| groups.contains_key(g),
        ));
        if !problems.is_empty() {
            return Err(invalid(manifest::locate_all(problems, &input.files)));
        }
        each(Step::Start(&Plan {
            id: random_id(),
            created_at: now,
            actor: who.id().map(str::to_string),
            store_revision: revision,
            policies: policy.source.to_string(),
            changes: Vec::new(),
            skipped: Vec::new(),
        }))?;
        let mut plan_batch = |users: BTreeMap<String, User>| -> Result<(), Failure> {
            let batch = Actual {
                users,
                groups: groups.clone(),
                revision,
            };
            let (changes, skipped) = plan::plan_users(&input.manifests, &batch, policy, &who, now);
            each(Step::Batch {
                changes,
                skipped,
                users: &batch,
            })
        };
        if !needs.all_users {
            // The named users and the groups' members, a batch of keys at a time.
            let keys = store::member_keys(conn, store_path, &known, &needs.group_keys)?;
            for chunk in keys.chunks(batch_size()) {
                plan_batch(store::load_keys(conn, store_path, chunk)?)?;
            }
            return Ok(());
        }
        let mut failed = None;
        store::user_batches(
            conn,
            store_path,
            batch_size(),
            &mut |users| match plan_batch(users) {
                Ok(()) => true,
                Err(f) => {
                    failed = Some(f);
                    false
                }
            },
        )?;
        failed.map_or(Ok(()), Err)
    })
}
