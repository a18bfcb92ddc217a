//! Applying a plan: in one `BEGIN IMMEDIATE` transaction, all or nothing, with the guardrails
//! checked, temporary passwords issued and hashed, and an audit record for every change.
//!
//! The plan is recomputed under the write lock, so what is applied is exactly what the store held
//! at that moment. `apply`, `apply --plan`, the demo and every reconcile of the daemon go
//! through [`apply_locked`].

use super::interrupt::Interrupts;
use super::load::Loaded;
use super::plan::{compute_plan, Who};
use super::Settings;
use crate::credentials;
use crate::error::{Failure, Kind};
use crate::model::{key_of, Action, Secret, Timestamp};
use crate::plan::Plan;
use crate::policy::{Policy, Verdict};
use crate::store;
use crate::store::lease::Fence;
use crate::util::escape_text;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Who ran an apply under `--signers` without `--actor`, as the audit log records it.
pub const NO_ACTOR: &str = "(not given)";

/// How an apply may go beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Pass `max-users-per-apply`.
    pub allow_large: bool,
    /// Where temporary passwords go (see [`credentials`]); required when the plan resets any.
    pub credentials_out: Option<PathBuf>,
    /// Append to a broken audit chain, recording that in the chain.
    pub accept_broken_audit: bool,
    /// A watch replica's leadership: checked in the transaction just before the commit, so
    /// that a replica that no longer leads commits nothing. `None` outside the daemon.
    pub fence: Option<Fence>,
}

/// The plan under the write lock that `tx` holds: what the apply will write. With `preview` (the
/// plan a person approved at the prompt), refuses when the store no longer gives that plan.
#[allow(clippy::too_many_arguments)]
pub fn plan_locked(
    tx: &crate::store::Tx<'_>,
    input: &Loaded,
    policy: &Policy,
    who: Who,
    now: Timestamp,
    preview: Option<&Plan>,
) -> Result<Plan, Failure> {
    let plan = compute_plan(&**tx, input, policy, who, now)?;
    match preview {
        Some(p) if p.changes != plan.changes => Err(Failure::new(
            Kind::Conflict,
            "the store changed while you were deciding; nothing was applied; run apply again",
        )),
        _ => Ok(plan),
    }
}

/// The checks every apply makes before writing: verdicts, guardrails, somewhere for passwords.
pub fn check(plan: &Plan, policy: &Policy, opts: &Options) -> Result<(), Failure> {
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
    tx: crate::store::Tx<'_>,
    plan: &Plan,
    policy: &Policy,
    actor: &str,
    now: Timestamp,
    opts: &Options,
) -> Result<Option<Applied>, Failure> {
    apply_locked_with(
        tx,
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
pub fn apply_locked_with(
    tx: crate::store::Tx<'_>,
    plan: &Plan,
    policy: &Policy,
    actor: &str,
    now: Timestamp,
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
        &*tx,
        plan,
        actor,
        now,
        &hashed,
        opts.accept_broken_audit,
        progress,
    )
    .map_err(Failure::from)
    .and_then(|rev| {
        store::failpoint_wait("apply-wait-before-commit", &|| {
            interrupts.caught().is_some()
        });
        interrupts.check()?; // the last moment a signal stops the apply
        if let Some(f) = &opts.fence {
            store::failpoint_wait("apply-wait-before-fence", &|| {
                interrupts.caught().is_some() || failpoint_released()
            });
            check_fence(&tx, f)?;
        }
        tx.commit()?;
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

/// Refuses the commit of a replica that no longer leads (its transaction then rolls back).
fn check_fence(tx: &crate::store::Tx<'_>, fence: &Fence) -> Result<(), Failure> {
    if tx.check_fence(fence)? {
        return Ok(());
    }
    Err(Failure::new(
        Kind::Conflict,
        format!(
            "this replica no longer leads (epoch {}); nothing was applied",
            fence.epoch()
        ),
    ))
}

/// Test hook, for `store::failpoint_wait`'s `until`: true once the test has deleted the file
/// `MFACTL_FAILPOINT_MARK` names (which the failpoint created), so that a test can hold a
/// replica just before its fence, freeze it (SIGSTOP), and let it go on, in that order.
fn failpoint_released() -> bool {
    #[cfg(feature = "failpoints")]
    if let Some(mark) = std::env::var_os("MFACTL_FAILPOINT_MARK") {
        return !Path::new(&mark).exists();
    }
    false
}

/// How many denied changes an error lists before summarising the rest.
pub const DENIED_LISTED: usize = 20;

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
    lines.push(if plan.requesters.is_some() {
        format!(
            "error: {n} change{} not allowed for {} requesters; nothing was applied (remove \
             them from the manifests, or have an administrator with the named roles sign them)",
            if n == 1 { " is" } else { "s are" },
            if n == 1 { "its" } else { "their" }
        )
    } else {
        format!(
            "error: {n} change{} not allowed for the actor; nothing was applied (remove them \
             from the manifests, or have an administrator with the named roles apply)",
            if n == 1 { " is" } else { "s are" }
        )
    });
    Err(Failure::many(Kind::Denied, lines))
}

fn refuse_large(plan: &Plan, policy: &Policy, opts: &Options) -> Result<(), Failure> {
    let users = plan.summary().users;
    let max = policy.guardrails.max_users_per_apply;
    if users > max && !opts.allow_large {
        return Err(Failure::new(
            Kind::Denied,
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
        return Err(Failure::new(Kind::NeedsCredentials, format!(
            "the plan resets {n} password{}; pass --credentials-out FILE (a new file) to receive the \
             temporary passwords; nothing was applied",
            if n == 1 { "" } else { "s" }
        )));
    }
    Ok(())
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

/// `apply --credentials-out FILE`: settles FILE's leftovers before anything else (even a saved
/// plan already applied then still hands over its passwords), under the store's write lock, so
/// that no running apply is judged halfway. One line per leftover says what became of it.
pub fn settle_before_apply(settings: &Settings, target: &Path) -> Result<Vec<String>, Failure> {
    let found = credentials::leftovers_of(target);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let mut st = settings.open_store()?;
    let tx = st.begin()?;
    let notes = credentials::settle(&*tx, &found)?;
    drop(tx); // nothing was written
    Ok(notes)
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
