//! `mfactl apply`: plan and apply in one `BEGIN IMMEDIATE` transaction, all or nothing.
//!
//! The plan is recomputed under the write lock, so what is applied is exactly what the store held
//! at that moment; on a terminal, the plan the user approved must still be that plan.

use super::interrupt::{self, Interrupts};
use super::{compute_plan, credentials, manifests, out_with, Ctx, Loaded};
use crate::error::{CmdResult, Exit, Failure};
use crate::model::{key_of, Action, Secret};
use crate::plan::Plan;
use crate::policy::{Policy, Verdict};
use crate::render;
use crate::sources::io_reason;
use crate::store::{self, Store};
use crate::util::escape_text;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub auto_approve: bool,
    pub allow_large: bool,
    pub credentials_out: Option<PathBuf>,
    /// Append to a broken audit chain, recording that in the chain.
    pub accept_broken_audit: bool,
}

pub fn run(ctx: &Ctx, paths: &[PathBuf], opts: &Options) -> CmdResult {
    let actor = require_actor(ctx)?;
    let interactive = require_approval(opts)?;
    let input = manifests(paths)?;
    ctx.warn_skipped_links(&input.skipped_links);
    let policy = ctx.policy()?;
    let mut st = ctx.open_store()?;
    ctx.warn_unprotected(&st, &policy)?;
    let preview = if interactive {
        let plan = compute_plan(st.conn(), st.path(), &input, &policy, Some(&actor), ctx.now)?;
        out_with(|w| render::text::write_plan(w, &plan, ctx.style));
        if plan.is_empty() {
            return Ok(Exit::Ok);
        }
        check(&plan, &policy, opts)?;
        if !confirm(plan.changes.len())? {
            return Err(Failure::error("apply cancelled; nothing was changed"));
        }
        Some(plan)
    } else {
        None
    };
    execute(
        ctx,
        &mut st,
        &input,
        &policy,
        &actor,
        opts,
        preview.as_ref(),
    )
}

fn require_actor(ctx: &Ctx) -> Result<String, Failure> {
    ctx.actor
        .clone()
        .ok_or_else(|| Failure::error("apply needs an actor: pass --actor ID or set MFACTL_ACTOR"))
}

/// Whether to ask on the terminal; an error when there is no terminal and no `--auto-approve`.
fn require_approval(opts: &Options) -> Result<bool, Failure> {
    let interactive = !opts.auto_approve && std::io::stdin().is_terminal();
    if !opts.auto_approve && !interactive {
        return Err(Failure::error(
            "stdin is not a terminal, so apply cannot ask for confirmation; pass --auto-approve",
        ));
    }
    Ok(interactive)
}

/// Applies under the write lock. With `preview`, refuses when the store no longer gives that plan.
pub fn execute(
    ctx: &Ctx,
    st: &mut Store,
    input: &Loaded,
    policy: &Policy,
    actor: &str,
    opts: &Options,
    preview: Option<&Plan>,
) -> CmdResult {
    let path = st.path().to_path_buf();
    let tx = st.begin()?;
    let plan = compute_plan(&tx, &path, input, policy, Some(actor), ctx.now)?;
    match preview {
        Some(p) if p.changes != plan.changes => {
            return Err(Failure::new(
                Exit::Conflict,
                "the store changed while you were deciding; nothing was applied; run apply again",
            ))
        }
        Some(_) => {}
        None => out_with(|w| render::text::write_plan(w, &plan, ctx.style)),
    }
    commit_plan(ctx, tx, &path, &plan, policy, actor, opts)
}

/// `apply --plan FILE`: exactly the saved changes, only if the file is a plan mfactl wrote (its
/// content gives its id), its id is the one expected, it was not applied before, every user it
/// touches is unchanged, and the changes pass the applying actor's permissions and the guardrails.
pub fn run_saved(ctx: &Ctx, file: &Path, expect_id: Option<&str>, opts: &Options) -> CmdResult {
    let actor = require_actor(ctx)?;
    let reader = std::fs::File::open(file)
        .map_err(|e| Failure::error(format!("{}: {}", file.display(), io_reason(&e))))?;
    let name = file.display().to_string();
    let mut saved = crate::saved::parse_from(&name, reader).map_err(Failure::error)?;
    if let Some(want) = expect_id {
        if want != saved.plan_id {
            return Err(Failure::new(
                Exit::Conflict,
                format!(
                    "{name} holds plan {}, not the expected plan {}; nothing was applied; apply \
                     the plan that was reviewed",
                    saved.plan_id,
                    escape_text(want)
                ),
            ));
        }
    }
    let policy = ctx.policy()?;
    let planned = saved.planned();
    let future = crate::plan::future_cutoffs(&planned, &policy, ctx.now);
    if !future.is_empty() {
        let n = future.len();
        let mut lines: Vec<String> = future
            .into_iter()
            .take(DENIED_LISTED)
            .map(|l| format!("{name}: {l}"))
            .collect();
        lines.push(format!(
            "error: {n} change{} of the saved plan lie{} in the future; nothing was applied",
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" }
        ));
        return Err(Failure::many(Exit::Error, lines));
    }
    let mut st = ctx.open_store()?;
    ctx.warn_unprotected(&st, &policy)?;
    let path = st.path().to_path_buf();
    let tx = st.begin()?;
    if store::plan_applied(&tx, &path, &saved.plan_id)? {
        return Err(Failure::new(
            Exit::Conflict,
            format!(
                "plan {} in {name} was already applied; run `mfactl plan --out` again",
                saved.plan_id
            ),
        ));
    }
    // A batch of users at a time, as a plan is computed: the saved changes are in user order, so
    // each batch is a run of them; its users are loaded, checked against their fingerprints, and
    // the changes rebuilt and compared with the file, then the users are dropped.
    let groups = store::load_groups(&tx, &path)?;
    let revision = store::revision(&tx, &path)?;
    let who = {
        let users = store::load_keys(&tx, &path, &[key_of(&actor)])?;
        store::load_actor(
            &crate::plan::Actual {
                users,
                ..Default::default()
            },
            Some(&actor),
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
                if keys.len() == super::planning::batch_size() {
                    break;
                }
                keys.push(k);
            }
            end += 1;
        }
        let batch = crate::plan::Actual {
            users: store::load_keys(&tx, &path, &keys)?,
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
            match crate::plan::replan(&planned[start..end], &batch, &policy, &who, ctx.now) {
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
            Exit::Conflict,
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
        return Err(Failure::error(crate::saved::SavedPlan::refusal(
            &name, &bad,
        )));
    }
    let saved_id = saved.plan_id.clone();
    drop(saved);
    let plan = Plan {
        id: saved_id,
        created_at: ctx.now,
        actor: Some(actor.clone()),
        store_revision: revision,
        policies: policy.source.to_string(),
        changes,
        skipped: Vec::new(),
    };
    out_with(|w| render::text::write_plan(w, &plan, ctx.style));
    commit_plan(ctx, tx, &path, &plan, &policy, &actor, opts)
}

/// The checks every apply makes before writing: verdicts, guardrails, somewhere for passwords.
fn check(plan: &Plan, policy: &Policy, opts: &Options) -> Result<(), Failure> {
    refuse_denied(plan)?;
    refuse_large(plan, policy, opts)?;
    refuse_missing_credentials(plan, opts)
}

/// What a committed apply did.
#[derive(Debug)]
pub struct Applied {
    pub revision: i64,
    /// The credentials file and how many passwords it holds, when the plan reset any.
    pub credentials: Option<(PathBuf, usize)>,
}

/// Checks, issues temporary passwords, writes and commits; prints nothing, so the daemon can
/// share it. `Ok(None)` for an empty plan. The transaction is dropped (rolled back) on any refusal.
pub fn apply_locked(
    tx: rusqlite::Transaction<'_>,
    path: &Path,
    plan: &Plan,
    policy: &Policy,
    actor: &str,
    now: crate::model::Timestamp,
    opts: &Options,
) -> Result<Option<Applied>, Failure> {
    apply_locked_with(
        tx,
        path,
        plan,
        policy,
        actor,
        now,
        opts,
        &Interrupts::none(),
        &mut |_, _| {},
    )
}

/// [`apply_locked`], reporting the writes' progress to `progress(done, total)` and rolling back
/// when `interrupts` caught a signal before the commit. The passwords wait in a pending file that
/// becomes `--credentials-out` only once the apply has committed (see `credentials`).
#[allow(clippy::too_many_arguments)]
fn apply_locked_with(
    tx: rusqlite::Transaction<'_>,
    path: &Path,
    plan: &Plan,
    policy: &Policy,
    actor: &str,
    now: crate::model::Timestamp,
    opts: &Options,
    interrupts: &Interrupts,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<Applied>, Failure> {
    if plan.is_empty() {
        return Ok(None);
    }
    check(plan, policy, opts)?;
    let resets: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::ResetPassword { .. }))
        .map(|c| c.user.as_str())
        .collect();
    let issued: Vec<(&str, Secret)> = match (&opts.credentials_out, resets.is_empty()) {
        (Some(_), false) => resets.iter().map(|u| (*u, new_password())).collect(),
        _ => Vec::new(),
    };
    // Hashed first (argon2, ~30 ms each by design; refusing a password the RNG could not make),
    // and only then written out. Hashing on a second thread while the changes were written saved
    // that time but now and then left the thread's 19 MiB blocks in a glibc arena (455 MB peak in
    // one apply of eighteen).
    let mut hashed: BTreeMap<String, String> = BTreeMap::new();
    for (u, pw) in &issued {
        interrupts.check()?;
        hashed.insert(key_of(u), hash_password(pw)?);
    }
    interrupts.check()?;
    let pending = match &opts.credentials_out {
        Some(file) if !issued.is_empty() => Some(credentials::write(file, &plan.id, &issued)?),
        _ => None,
    };
    drop(issued); // the clear texts are zeroized now
    let committed = store::apply_plan(
        &tx,
        path,
        plan,
        actor,
        now,
        &hashed,
        opts.accept_broken_audit,
        progress,
    )
    .map_err(Failure::from)
    .and_then(|rev| {
        interrupt::failpoint_wait("apply-wait-before-commit", &|| {
            interrupts.caught().is_some()
        });
        interrupts.check()?; // the last moment a signal stops the apply
        store::commit(tx, path)?;
        Ok(rev)
    });
    let revision = match committed {
        Ok(revision) => revision,
        Err(e) => {
            if let Some(p) = pending {
                p.discard(); // those passwords were never set
            }
            return Err(e);
        }
    };
    store::failpoint("apply-after-commit");
    let credentials = match pending {
        Some(p) => {
            let n = p.count();
            let file = p.publish().map_err(|why| {
                Failure::error(format!(
                    "the apply committed (store revision {revision}, plan {}), but {why}",
                    plan.id
                ))
            })?;
            Some((file, n))
        }
        None => None,
    };
    Ok(Some(Applied {
        revision,
        credentials,
    }))
}

fn commit_plan(
    ctx: &Ctx,
    tx: rusqlite::Transaction<'_>,
    path: &Path,
    plan: &Plan,
    policy: &Policy,
    actor: &str,
    opts: &Options,
) -> CmdResult {
    // From here until the commit, SIGINT and SIGTERM roll the apply back; the process then dies
    // of the signal, as it would have before this point.
    let interrupts = Interrupts::install()?;
    let mut bar = super::Progress::new(ctx, "applying changes");
    let applied = apply_locked_with(
        tx,
        path,
        plan,
        policy,
        actor,
        ctx.now,
        opts,
        &interrupts,
        &mut |d, t| bar.update(d, t),
    );
    drop(bar);
    let applied = match (applied, interrupts.caught()) {
        (Err(f), Some(sig)) => interrupt::die_of(sig, &f),
        (applied, _) => applied?,
    };
    let Some(applied) = applied else {
        ctx.status("Nothing to apply.");
        return Ok(Exit::Ok);
    };
    let s = plan.summary();
    ctx.status(&format!(
        "Apply complete: {} change{} for {} user{}; store revision {}; plan {}.",
        s.changes,
        if s.changes == 1 { "" } else { "s" },
        s.users,
        if s.users == 1 { "" } else { "s" },
        applied.revision,
        plan.id
    ));
    if let Some((f, n)) = applied.credentials {
        ctx.status(&format!(
            "{n} temporary password{} written to {} (mode 0600); hand them over out of band, then delete it.",
            if n == 1 { "" } else { "s" },
            f.display()
        ));
    }
    Ok(Exit::Ok)
}

/// How many denied changes an error lists before summarising the rest.
const DENIED_LISTED: usize = 20;

fn refuse_denied(plan: &Plan) -> Result<(), Failure> {
    let denied: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| match &c.verdict {
            Some(Verdict::Denied { reason }) => Some(format!(
                "denied: {} for {}: {}",
                c.kind().verb(),
                escape_text(&c.user),
                escape_text(reason)
            )),
            _ => None,
        })
        .collect();
    if denied.is_empty() {
        return Ok(());
    }
    let n = denied.len();
    let mut lines: Vec<String> = denied.into_iter().take(DENIED_LISTED).collect();
    if n > DENIED_LISTED {
        lines.push(format!(
            "denied: … and {} more (the plan lists them all)",
            n - DENIED_LISTED
        ));
    }
    lines.push(format!(
        "error: {n} change{} not allowed for the actor; nothing was applied (remove them from the \
         manifests, or have an administrator with the named roles apply)",
        if n == 1 { " is" } else { "s are" }
    ));
    Err(Failure::many(Exit::Denied, lines))
}

fn refuse_large(plan: &Plan, policy: &Policy, opts: &Options) -> Result<(), Failure> {
    let users = plan.summary().users;
    let max = policy.guardrails.max_users_per_apply;
    if users > max && !opts.allow_large {
        return Err(Failure::new(
            Exit::Denied,
            format!(
                "this apply changes {users} users, more than max-users-per-apply ({max}); nothing was \
                 applied; pass --allow-large if that is intended"
            ),
        ));
    }
    Ok(())
}

fn refuse_missing_credentials(plan: &Plan, opts: &Options) -> Result<(), Failure> {
    let n = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::ResetPassword { .. }))
        .count();
    if n > 0 && opts.credentials_out.is_none() {
        return Err(Failure::error(format!(
            "the plan resets {n} password{}; pass --credentials-out FILE (a new file) to receive the \
             temporary passwords; nothing was applied",
            if n == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

fn confirm(n: usize) -> Result<bool, Failure> {
    let what = if n == 1 {
        "this change".to_string()
    } else {
        format!("these {n} changes")
    };
    eprint!("\nApply {what}? Only 'yes' is accepted: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::error(format!("reading the answer: {}", io_reason(&e))))?;
    Ok(line.trim() == "yes")
}

const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
const PASSWORD_LEN: usize = 20;

/// A temporary password from the OS CSPRNG: 20 characters of an unambiguous 57-symbol alphabet
/// (about 116 bits), drawn by rejection sampling so every symbol is equally likely.
fn new_password() -> Secret {
    let mut out = String::with_capacity(PASSWORD_LEN);
    let limit = 256 - (256 % ALPHABET.len());
    while out.len() < PASSWORD_LEN {
        let mut buf = [0u8; 32];
        if getrandom::fill(&mut buf).is_err() {
            // Without an entropy source there is no safe password; the hash step reports it.
            return Secret::new(String::new());
        }
        for b in buf {
            if (b as usize) < limit && out.len() < PASSWORD_LEN {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Secret::new(out)
}

fn hash_password(pw: &Secret) -> Result<String, Failure> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    if pw.expose().is_empty() {
        return Err(Failure::error(
            "the OS random number generator is unavailable; nothing was applied",
        ));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|_| Failure::error("the OS random number generator is unavailable"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Failure::error(format!("salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(pw.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Failure::error(format!("hashing a temporary password: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_random_and_from_the_alphabet() {
        let a = new_password();
        let b = new_password();
        assert_eq!(a.expose().len(), PASSWORD_LEN);
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().bytes().all(|c| ALPHABET.contains(&c)));
    }
}
