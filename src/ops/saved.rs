//! `apply --plan FILE`: a saved plan is applied exactly as it was reviewed, or not at all. It
//! must be a plan mfactl wrote (its content gives its id), the one expected, not applied before,
//! with every user it touches unchanged since (their fingerprints match), and its changes must
//! come out the same when rebuilt from the store, under the applying actor's permissions and
//! the guardrails.

use super::apply::DENIED_LISTED;
use super::plan::batch_size;
use crate::error::{Failure, Kind};
use crate::model::{key_of, Timestamp};
use crate::plan::{Actual, Plan};
use crate::policy::Policy;
use crate::saved::SavedPlan;
use crate::sources::io_reason;
use crate::store;
use crate::util::escape_text;
use std::collections::BTreeMap;
use std::path::Path;

/// A saved plan as read: the file's name (for messages) and its content.
pub struct Opened {
    pub name: String,
    pub saved: SavedPlan,
    /// The saved changes as the planner takes them, built once.
    pub planned: Vec<crate::plan::Planned>,
}

/// Reads and checks the file (streamed: a plan of a million users is never held as text), then
/// its id against `expect_id` (`--expect-plan-id`, a conflict when they differ).
pub fn open(file: &Path, expect_id: Option<&str>) -> Result<Opened, Failure> {
    let reader = std::fs::File::open(file)
        .map_err(|e| Failure::invalid(format!("{}: {}", file.display(), io_reason(&e))))?;
    let name = file.display().to_string();
    let saved = crate::saved::parse_from(&name, reader).map_err(Failure::invalid)?;
    if let Some(want) = expect_id {
        if want != saved.plan_id {
            return Err(Failure::new(
                Kind::Conflict,
                format!(
                    "{name} holds plan {}, not the expected plan {}; nothing was applied; apply \
                     the plan that was reviewed",
                    saved.plan_id,
                    escape_text(want)
                ),
            ));
        }
    }
    let planned = saved.planned();
    Ok(Opened {
        name,
        saved,
        planned,
    })
}

/// Refuses a saved plan whose cutoffs lie in the future now, as the manifest check would.
pub fn refuse_future(o: &Opened, policy: &Policy, now: Timestamp) -> Result<(), Failure> {
    let future = crate::plan::future_cutoffs(&o.planned, policy, now);
    if future.is_empty() {
        return Ok(());
    }
    let n = future.len();
    let mut lines: Vec<String> = future
        .into_iter()
        .take(DENIED_LISTED)
        .map(|l| format!("{}: {l}", o.name))
        .collect();
    lines.push(format!(
        "error: {n} change{} of the saved plan lie{} in the future; nothing was applied",
        if n == 1 { "" } else { "s" },
        if n == 1 { "s" } else { "" }
    ));
    Err(Failure::many(Kind::Invalid, lines))
}

/// The plan to apply, rebuilt under the write lock `tx` holds: exactly the saved changes, or a
/// failure saying why not (already applied, stale users, changes the store does not give).
///
/// A batch of users at a time, as a plan is computed: the saved changes are in user order, so
/// each batch is a run of them; its users are loaded, checked against their fingerprints, and
/// the changes rebuilt and compared with the file, then the users are dropped.
pub fn rebuild(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    o: Opened,
    policy: &Policy,
    actor: &str,
    now: Timestamp,
) -> Result<Plan, Failure> {
    let Opened {
        name,
        mut saved,
        planned,
    } = o;
    if store::plan_applied(tx, path, &saved.plan_id)? {
        return Err(Failure::new(
            Kind::Conflict,
            format!(
                "plan {} in {name} was already applied; run `mfactl plan --out` again",
                saved.plan_id
            ),
        ));
    }
    let groups = store::load_groups(tx, path)?;
    let revision = store::revision(tx, path)?;
    let who = {
        let users = store::load_keys(tx, path, &[key_of(actor)])?;
        store::load_actor(
            &Actual {
                users,
                ..Default::default()
            },
            Some(actor),
        )
    };
    // One fingerprint per user, looked up by key: linear in the plan's size.
    let saw: BTreeMap<String, String> = std::mem::take(&mut saved.fingerprints)
        .into_iter()
        .map(|(u, f)| (key_of(&u), f))
        .collect();
    let (mut stale, mut bad, mut differ) = (Vec::new(), Vec::new(), Vec::new());
    let mut changes = Vec::with_capacity(planned.len());
    let mut start = 0;
    while start < planned.len() {
        let mut keys: Vec<String> = Vec::new();
        let mut end = start;
        while end < planned.len() {
            let k = key_of(&planned[end].user);
            if keys.last() != Some(&k) {
                if keys.len() == batch_size() {
                    break;
                }
                keys.push(k);
            }
            end += 1;
        }
        let batch = Actual {
            users: store::load_keys(tx, path, &keys)?,
            groups: groups.clone(),
            revision,
        };
        for k in &keys {
            let now = batch.users.get(k).map(crate::plan::fingerprint);
            if saw.get(k) != now.as_ref() {
                stale.push(
                    batch
                        .users
                        .get(k)
                        .map_or(k.clone(), |u| escape_text(&u.id).into_owned()),
                );
            }
        }
        if stale.is_empty() {
            // The state is the one the plan fingerprinted: rebuilt, every change must come out
            // exactly as the file says.
            match crate::plan::replan(&planned[start..end], &batch, policy, &who, now) {
                Ok(remade) => {
                    differ.extend(saved.differences_from(start, &remade));
                    changes.extend(remade);
                }
                Err(why) => bad.extend(why),
            }
        }
        start = end;
    }
    stale.sort();
    if !stale.is_empty() {
        let n = stale.len();
        stale.truncate(DENIED_LISTED);
        if n > DENIED_LISTED {
            stale.push(format!("and {} more", n - DENIED_LISTED));
        }
        return Err(Failure::new(
            Kind::Conflict,
            format!(
                "the saved plan is stale: {} changed since it was made ({}); nothing was applied; run plan again",
                if n == 1 { "this user" } else { "these users" },
                stale.join(", ")
            ),
        ));
    }
    drop(planned);
    bad.extend(differ);
    if !bad.is_empty() {
        return Err(Failure::invalid(SavedPlan::refusal(&name, &bad)));
    }
    Ok(Plan {
        id: saved.plan_id,
        created_at: now,
        actor: Some(actor.to_string()),
        store_revision: revision,
        policies: policy.source.to_string(),
        changes,
        skipped: Vec::new(),
    })
}
