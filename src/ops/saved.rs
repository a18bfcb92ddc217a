//! `apply --plan FILE`: a saved plan is applied exactly as it was reviewed, or not at all. It
//! must be a plan mfactl wrote (its content gives its id), the one expected, not applied before,
//! with every user it touches unchanged since (their fingerprints match), and its changes must
//! come out the same when rebuilt from the store, under the applying actor's permissions and
//! the guardrails.

use super::apply::DENIED_LISTED;
use super::plan::{batch_size, Who};
use super::signed::{self, Signatures};
use crate::error::{Failure, Kind};
use crate::model::{key_of, Timestamp};
use crate::plan::{Actual, Plan};
use crate::policy::Actor;
use crate::policy::Policy;
use crate::saved::SavedPlan;
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
    let reader = crate::sources::open(file).map_err(Failure::invalid)?;
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

/// Under `--signers`, the saved plan's requesters read again from git: the manifest files it
/// names must still be committed, and their latest commits signed, as when it was made (checked
/// in [`rebuild`]). A plan made with `--signers` is applied only with `--signers`, and the
/// other way round.
pub fn signatures(
    o: &Opened,
    signers: Option<&Path>,
    policy_dir: Option<&Path>,
    ran_by: Option<&str>,
) -> Result<Option<Signatures>, Failure> {
    let recorded = o.saved.requesters.as_ref().filter(|v| !v.is_null());
    match (recorded, signers) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(Failure::invalid(format!(
            "{} was made with --signers: apply it with --signers FILE, so that its requesters \
             are verified again; nothing was applied",
            o.name
        ))),
        (None, Some(_)) => Err(Failure::invalid(format!(
            "{} was made without --signers, so it names no requesters; make it again with \
             `mfactl plan --signers FILE --out FILE`; nothing was applied",
            o.name
        ))),
        (Some(r), Some(file)) => {
            let named: Vec<(&str, &str)> = r["manifests"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(name, v)| Some((name.as_str(), v["file"].as_str()?)))
                        .collect()
                })
                .unwrap_or_default();
            signed::read_named(file, &named, policy_dir, ran_by).map(Some)
        }
    }
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
    tx: &crate::store::Tx<'_>,
    o: Opened,
    policy: &Policy,
    who: Who,
    now: Timestamp,
) -> Result<Plan, Failure> {
    let Opened {
        name,
        mut saved,
        planned,
    } = o;
    if tx.plan_applied(&saved.plan_id)? {
        return Err(Failure::new(
            Kind::Conflict,
            format!(
                "plan {} in {name} was already applied; run `mfactl plan --out` again",
                saved.plan_id
            ),
        ));
    }
    let groups = tx.load_groups()?;
    let revision = tx.revision()?;
    let who = who.load(&**tx)?;
    let requesters = match &who {
        Actor::Requesters(r) => Some((**r).clone()),
        _ => None,
    };
    if let (Some(now), Some(then)) = (&requesters, &saved.requesters) {
        let now = crate::plan::requesters_value(now);
        if &now != then {
            return Err(Failure::new(
                Kind::Conflict,
                format!(
                    "the requesters of {name} changed since it was made: {}; nothing was applied; \
                     run plan again",
                    requester_changes(then, &now).join("; ")
                ),
            ));
        }
    }
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
            users: tx.load_keys(&keys)?,
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
        actor: who.id().map(str::to_string),
        store_revision: revision,
        policies: policy.source.to_string(),
        changes,
        skipped: Vec::new(),
        requesters,
    })
}

/// What differs between the requesters a saved plan recorded and those git gives now, one
/// phrase per manifest (and the role table).
fn requester_changes(then: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    fn describe(v: &serde_json::Value) -> String {
        if v.is_null() {
            return "no such manifest".into();
        }
        match v["refused"].as_str() {
            Some(why) => format!("refused ({why})"),
            None => format!(
                "requested by {} in commit {} with key {}",
                v["user"].as_str().unwrap_or("nobody"),
                v["commit"]
                    .as_str()
                    .map_or("?", |c| c.get(..7).unwrap_or(c)),
                v["key"].as_str().unwrap_or("?")
            ),
        }
    }
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["manifests"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut all = names(then);
    all.extend(names(now));
    all.sort();
    all.dedup();
    let mut out: Vec<String> = all
        .iter()
        .filter(|n| then["manifests"][n.as_str()] != now["manifests"][n.as_str()])
        .map(|n| {
            format!(
                "manifest {} was {}, and is now {}",
                escape_text(n),
                escape_text(&describe(&then["manifests"][n.as_str()])),
                escape_text(&describe(&now["manifests"][n.as_str()]))
            )
        })
        .collect();
    if then["policy_refused"] != now["policy_refused"] {
        out.push(match now["policy_refused"].as_str() {
            Some(why) => format!("the role table no longer counts: {}", escape_text(why)),
            None => "the role table counts now, and did not then".into(),
        });
    }
    out
}
