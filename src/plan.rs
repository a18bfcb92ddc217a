//! The decision: `plan(manifests, actual, policy, actor, now) -> (changes, skipped)`, a pure
//! function, called by production a batch of users at a time and by the tests on whole tenants.
//!
//! It resolves selectors against the users the store loaded, merges every manifest's settings per
//! user and field (latest timestamp wins, `app-passwords: none` wins over nothing), compares the
//! result with each user's actual state, and asks the policy about each change. No I/O, no clock:
//! the shell passes time and policies in, which makes plans reproducible and property-testable.

use crate::manifest::locate::Seg;
use crate::manifest::{Manifest, Problem, Selector, Where};
use crate::model::{key_of, Action, ActionKind, Group, Timestamp, User};
use crate::policy::{
    evaluate, Actor, Policy, RequestedBy, Requester, Requesters, TargetFacts, Verdict,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// [`key_of`] without an allocation when the id is already lower case, as most are: plans look
/// up every named user several times.
fn key_cow(id: &str) -> Cow<'_, str> {
    if id.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(key_of(id))
    } else {
        Cow::Borrowed(id)
    }
}

/// The part of the store a plan needs: the users it may touch, every group, the revision.
#[derive(Debug, Clone, Default)]
pub struct Actual {
    /// By key (lowercase id). Holds every user a manifest names, every member of every group a
    /// manifest names, and the whole directory when a manifest says `all-users`.
    pub users: BTreeMap<String, User>,
    /// Every group, by key.
    pub groups: BTreeMap<String, Group>,
    pub revision: i64,
}

impl Actual {
    pub fn role_assignable_groups(&self) -> BTreeSet<String> {
        self.groups
            .iter()
            .filter(|(_, g)| g.role_assignable)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// What the store must load for these manifests (see [`Actual::users`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub user_keys: BTreeSet<String>,
    pub group_keys: BTreeSet<String>,
    pub all_users: bool,
}

pub fn needs(manifests: &[Manifest]) -> Needs {
    let mut n = Needs::default();
    for e in manifests.iter().flat_map(|m| &m.entries) {
        match &e.selector {
            Selector::Users(us) => n.user_keys.extend(us.iter().map(|u| key_of(u))),
            Selector::Group(g) => {
                n.group_keys.insert(key_of(g));
            }
            Selector::AllUsers => n.all_users = true,
        }
        n.user_keys.extend(e.except.iter().map(|u| key_of(u)));
    }
    n
}

/// A value in a change's `before`/`after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Time(Option<Timestamp>),
    Count(usize),
    Flag(bool),
}

/// The slice of a user's state an action changes, as ordered `(field, value)` pairs.
pub type Slice = Vec<(&'static str, Val)>;

/// The version of the JSON plan (and saved-plan) format; later versions only add fields.
pub const FORMAT_VERSION: u64 = 1;

/// The requesters of a plan made with `--signers`, as the JSON plan and the saved plan write
/// them (and the plan id covers them): per manifest name, its file, requester, key and commit, or
/// why there is none; and why the role table does not count, if it does not.
pub fn requesters_value(r: &Requesters) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut m = Map::new();
    for (name, req) in &r.by_manifest {
        let v = match req {
            Requester::Signed {
                signer,
                key,
                commit,
                file,
            } => json!({"file": file, "user": signer.id(), "key": key, "commit": commit}),
            Requester::Refused { file, reason } => json!({"file": file, "refused": reason}),
        };
        m.insert(name.clone(), v);
    }
    json!({"manifests": Value::Object(m), "policy_refused": r.policy_refused})
}

/// A slice as the JSON plan, the saved plan and the audit record write it: an object of its
/// fields in order, times as RFC 3339 strings (`null` for never).
pub fn slice_value(s: &Slice) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut m = Map::new();
    for (k, v) in s {
        let v = match v {
            Val::Time(t) => t.map_or(Value::Null, |t| Value::String(t.to_string())),
            Val::Count(n) => json!(n),
            Val::Flag(b) => json!(b),
        };
        m.insert((*k).to_string(), v);
    }
    Value::Object(m)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The user id as the store spells it.
    pub user: String,
    pub action: Action,
    pub before: Slice,
    pub after: Slice,
    /// Ids of the objects the change deletes.
    pub removes: Vec<String>,
    /// Names of the manifests that asked for this change.
    pub sources: Vec<String>,
    /// `None` when there is no actor.
    pub verdict: Option<Verdict>,
    /// The policy's roles that could approve it (shown when there is no actor).
    pub could_approve: Vec<String>,
    /// Under `--signers`: the signer whose request allowed it (`None` when denied, or without
    /// `--signers`).
    pub requested_by: Option<RequestedBy>,
}

impl Change {
    pub fn kind(&self) -> ActionKind {
        self.action.kind()
    }
    pub fn is_denied(&self) -> bool {
        matches!(self.verdict, Some(Verdict::Denied { .. }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub user: String,
    pub reason: String,
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Set by the shell (randomness is not the core's business).
    pub id: String,
    pub created_at: Timestamp,
    pub actor: Option<String>,
    pub store_revision: i64,
    /// Where the policies came from (`built-in`, `./policies`, `--policies DIR`): the shell's
    /// [`crate::policy::PolicySource`], named in every plan's header.
    pub policies: String,
    pub changes: Vec<Change>,
    pub skipped: Vec<Skip>,
    /// Under `--signers`: who asked for each manifest's changes (every change then names its
    /// requester, or none when denied).
    pub requesters: Option<Requesters>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub users: usize,
    pub changes: usize,
    pub denied: usize,
}

impl Summary {
    /// The summary of these changes.
    pub fn of(changes: &[Change]) -> Summary {
        let users: BTreeSet<&str> = changes.iter().map(|c| c.user.as_str()).collect();
        Summary {
            users: users.len(),
            changes: changes.len(),
            denied: changes.iter().filter(|c| c.is_denied()).count(),
        }
    }

    /// Adds the summary of changes for other users (a later batch of the same plan).
    pub fn add(&mut self, other: Summary) {
        self.users += other.users;
        self.changes += other.changes;
        self.denied += other.denied;
    }
}

impl Plan {
    pub fn summary(&self) -> Summary {
        Summary::of(&self.changes)
    }
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Checks that need neither the store nor the directory: duplicate names, future timestamps,
/// protected users named explicitly.
pub fn check_offline(manifests: &[Manifest], policy: &Policy, now: Timestamp) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut names: BTreeMap<&str, &Manifest> = BTreeMap::new();
    let latest = now.plus_secs(policy.guardrails.max_future_skew_secs);
    for m in manifests {
        let at = |path: Vec<Seg>| Where::Path { doc: m.doc, path };
        if let Some(first) = names.get(m.name.as_str()) {
            problems.push(Problem {
                file: m.file.clone(),
                at: at(vec![Seg::key("metadata"), Seg::key("name")]),
                message: format!(
                    "duplicate metadata.name `{}` (also in {}): names must be unique",
                    crate::util::escape_text(&m.name),
                    first.file
                ),
            });
        } else {
            names.insert(&m.name, m);
        }
        for (i, e) in m.entries.iter().enumerate() {
            for (field, t) in e.settings.timestamps() {
                if let Some(t) = t.filter(|t| *t > latest) {
                    problems.push(Problem {
                        file: m.file.clone(),
                        at: at(vec![Seg::key("spec"), Seg::Index(i), Seg::key(field)]),
                        message: format!(
                            "{field}: {t} is in the future (now is {now}, max-future-skew allows \
                             up to {latest}); a future watermark would revoke what users create \
                             until then"
                        ),
                    });
                }
            }
            if let Selector::Users(us) = &e.selector {
                for (j, u) in us.iter().enumerate() {
                    if policy.guardrails.protected_users.contains(&*key_cow(u)) {
                        problems.push(Problem {
                            file: m.file.clone(),
                            at: at(vec![
                                Seg::key("spec"),
                                Seg::Index(i),
                                Seg::key("users"),
                                Seg::Index(j),
                            ]),
                            message: format!(
                                "{} is a protected user (guardrails.yaml protected-users) and is \
                                 never changed; remove it from the list",
                                crate::util::escape_text(u)
                            ),
                        });
                    }
                }
            }
        }
    }
    problems
}

/// Checks against the store: every user and group a manifest names must exist.
pub fn check_known(manifests: &[Manifest], actual: &Actual) -> Vec<Problem> {
    check_known_in(manifests, &|k| actual.users.contains_key(k), &|g| {
        actual.groups.contains_key(g)
    })
}

/// [`check_known`], asking `user` and `group` whether a key exists: the shell answers from the
/// store without loading the users.
pub fn check_known_in(
    manifests: &[Manifest],
    user: &dyn Fn(&str) -> bool,
    group: &dyn Fn(&str) -> bool,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for m in manifests {
        for (i, e) in m.entries.iter().enumerate() {
            let mut unknown_user = |list: &str, j: usize, u: &str| {
                if !user(&key_cow(u)) {
                    problems.push(Problem {
                        file: m.file.clone(),
                        at: Where::Path {
                            doc: m.doc,
                            path: vec![
                                Seg::key("spec"),
                                Seg::Index(i),
                                Seg::key(list),
                                Seg::Index(j),
                            ],
                        },
                        message: format!(
                            "unknown user `{}`: no such user in the store (check the spelling, \
                             or import the user first)",
                            crate::util::escape_text(u)
                        ),
                    });
                }
            };
            if let Selector::Users(us) = &e.selector {
                for (j, u) in us.iter().enumerate() {
                    unknown_user("users", j, u);
                }
            }
            for (j, u) in e.except.iter().enumerate() {
                unknown_user("except", j, u);
            }
            if let Selector::Group(g) = &e.selector {
                if !group(&key_of(g)) {
                    problems.push(Problem {
                        file: m.file.clone(),
                        at: Where::Path {
                            doc: m.doc,
                            path: vec![Seg::key("spec"), Seg::Index(i), Seg::key("group")],
                        },
                        message: format!(
                            "unknown group `{}`: no such group in the store",
                            crate::util::escape_text(g)
                        ),
                    });
                }
            }
        }
    }
    problems
}

/// Every action kind, in the order plans list them (`ActionKind`'s order): the index into
/// [`Wants`]' per-user array.
const KINDS: [ActionKind; 5] = [
    ActionKind::DeleteAppPasswords,
    ActionKind::RequireReregistration,
    ActionKind::ResetPassword,
    ActionKind::RevokeSessions,
    ActionKind::RevokeTrustedDevices,
];

/// Per user (by key, borrowed from [`Actual::users`]): the user and, per action kind in
/// [`KINDS`] order, every `(timestamp, manifest)` that asks for it (app passwords carry no time).
type Wants<'a, 'm> = BTreeMap<&'a str, (&'a User, [Vec<(Option<Timestamp>, &'m str)>; 5])>;

/// The checks every plan runs first, then [`plan`] over all of `actual`, as one [`Plan`]: what
/// the tests and the fuzz target call. Returns the problems instead when the manifests are
/// invalid. (`ops::plan` makes the same checks against the store, then calls [`plan`] a batch of
/// users at a time.)
pub fn checked_plan(
    manifests: &[Manifest],
    actual: &Actual,
    policy: &Policy,
    actor: &Actor,
    now: Timestamp,
) -> Result<Plan, Vec<Problem>> {
    let mut problems = check_offline(manifests, policy, now);
    problems.extend(check_known(manifests, actual));
    if !problems.is_empty() {
        return Err(problems);
    }
    let (changes, skipped) = plan(manifests, actual, policy, actor, now);
    Ok(Plan {
        id: String::new(),
        created_at: now,
        actor: actor.id().map(str::to_string),
        store_revision: actual.revision,
        policies: policy.source.to_string(),
        changes,
        skipped,
        requesters: match actor {
            Actor::Requesters(r) => Some((**r).clone()),
            _ => None,
        },
    })
}

/// The decision: the changes (each with the policy's verdict) and the protected users skipped,
/// for the users in `actual`, once the manifests have passed their checks ([`check_offline`],
/// [`check_known_in`]). Selectors resolve against `actual.users` only, and changes come in user key
/// order, so planning a directory in key-ordered batches of users and concatenating the results
/// gives exactly the plan of the whole: a whole-directory plan never holds the whole directory.
pub fn plan(
    manifests: &[Manifest],
    actual: &Actual,
    policy: &Policy,
    actor: &Actor,
    now: Timestamp,
) -> (Vec<Change>, Vec<Skip>) {
    let protected = &policy.guardrails.protected_users;
    let mut wants: Wants = BTreeMap::new();
    let mut skipped: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for m in manifests {
        for e in &m.entries {
            let except: BTreeSet<Cow<str>> = e.except.iter().map(|u| key_cow(u)).collect();
            let selected: Vec<(&String, &User)> = match &e.selector {
                Selector::Users(us) => us
                    .iter()
                    .filter_map(|u| actual.users.get_key_value(&*key_cow(u)))
                    .collect(),
                Selector::Group(g) => {
                    // `g` is a key (lower case), so this is `key_of(ug) == g` without allocating.
                    let g = key_of(g);
                    actual
                        .users
                        .iter()
                        .filter(|(_, u)| u.groups.iter().any(|ug| ug.eq_ignore_ascii_case(&g)))
                        .collect()
                }
                Selector::AllUsers => actual.users.iter().collect(),
            };
            for (key, user) in selected {
                if except.contains(key.as_str()) {
                    continue;
                }
                if protected.contains(key) {
                    skipped.entry(key.clone()).or_default().insert(&m.name);
                    continue;
                }
                let (_, w) = wants
                    .entry(key)
                    .or_insert_with(|| (user, Default::default()));
                let s = &e.settings;
                for (kind, t) in [
                    (ActionKind::RequireReregistration, s.require_reregistration),
                    (ActionKind::RevokeSessions, s.revoke_sessions_before),
                    (
                        ActionKind::RevokeTrustedDevices,
                        s.revoke_trusted_devices_before,
                    ),
                    (ActionKind::ResetPassword, s.reset_password_before),
                ] {
                    if let Some(t) = t {
                        w[kind_index(kind)].push((Some(t), &m.name));
                    }
                }
                if s.app_passwords_none {
                    w[kind_index(ActionKind::DeleteAppPasswords)].push((None, &m.name));
                }
            }
        }
    }

    let ra_groups = actual.role_assignable_groups();
    let mut changes = Vec::new();
    let mut verdicts = Verdicts::default();
    // Consumed as it goes, so each user's requests are freed before the next changes are made.
    for (user, per_action) in wants.into_values() {
        let facts = TargetFacts::of(user, &ra_groups);
        for (kind, asks) in KINDS.iter().zip(per_action) {
            if asks.is_empty() {
                continue;
            }
            let merged = asks.iter().filter_map(|(t, _)| *t).max();
            let Some(action) = action_for(*kind, merged, user, now) else {
                continue;
            };
            let sources: BTreeSet<&str> = asks
                .iter()
                .filter(|(t, _)| action_for(*kind, *t, user, now).is_some())
                .map(|(_, name)| *name)
                .collect();
            let (before, after, removes) = effect(user, &action);
            let (verdict, could_approve, requested_by) = match actor {
                Actor::Requesters(r) => {
                    // Only the manifests that ask for exactly this change (the same cutoff).
                    let identical: BTreeSet<&str> = asks
                        .iter()
                        .filter(|(t, _)| *t == merged)
                        .map(|(_, name)| *name)
                        .collect();
                    let identical: Vec<&str> = identical.into_iter().collect();
                    let (_, could) = verdicts.get(policy, &Actor::None, *kind, &user.id, &facts);
                    let (v, by) = r.judge(policy, *kind, &user.id, &facts, &identical);
                    (Some(v), could, by)
                }
                _ => {
                    let (v, could) = verdicts.get(policy, actor, *kind, &user.id, &facts);
                    (v, could, None)
                }
            };
            changes.push(Change {
                user: user.id.clone(),
                action,
                before,
                after,
                removes,
                sources: sources.into_iter().map(str::to_string).collect(),
                verdict,
                could_approve,
                requested_by,
            });
        }
    }
    let skipped = skipped
        .into_iter()
        .filter_map(|(key, sources)| {
            actual.users.get(&key).map(|u| Skip {
                user: u.id.clone(),
                reason: "protected".into(),
                sources: sources.into_iter().map(str::to_string).collect(),
            })
        })
        .collect();
    (changes, skipped)
}

/// The action that brings `user` to "nothing of this kind older than `t`", or `None` when the user
/// already satisfies it (docs/store.md, "When a setting is satisfied").
fn action_for(
    kind: ActionKind,
    t: Option<Timestamp>,
    user: &User,
    now: Timestamp,
) -> Option<Action> {
    let below = |wm: Option<Timestamp>, t: Timestamp| wm.is_none_or(|w| w < t);
    match (kind, t) {
        (ActionKind::DeleteAppPasswords, _) => {
            (!user.app_passwords.is_empty()).then_some(Action::DeleteAppPasswords)
        }
        (ActionKind::RequireReregistration, Some(t)) => (below(user.registration_valid_from, t)
            || user.methods.iter().any(|m| m.registered_at < t))
        .then_some(Action::RequireReregistration { before: t }),
        (ActionKind::RevokeSessions, Some(t)) => (below(user.sessions_valid_from, t)
            || user.sessions.iter().any(|s| s.issued_at < t))
        .then_some(Action::RevokeSessions { before: t }),
        (ActionKind::RevokeTrustedDevices, Some(t)) => (below(user.devices_valid_from, t)
            || user.trusted_devices.iter().any(|d| d.remembered_at < t))
        .then_some(Action::RevokeTrustedDevices { before: t }),
        // A temporary password issued within the allowed skew before `t` counts as set at `t`,
        // or the next plan would reset it again until the clock passes `t`.
        (ActionKind::ResetPassword, Some(t)) => {
            below(user.password_set_at, t).then_some(Action::ResetPassword {
                before: t,
                set_at: now.max(t),
            })
        }
        (_, None) => None,
    }
}

/// The index of `kind` in [`KINDS`].
fn kind_index(kind: ActionKind) -> usize {
    match kind {
        ActionKind::DeleteAppPasswords => 0,
        ActionKind::RequireReregistration => 1,
        ActionKind::ResetPassword => 2,
        ActionKind::RevokeSessions => 3,
        ActionKind::RevokeTrustedDevices => 4,
    }
}

/// Target roles, the verdict, and the roles that could approve.
type Remembered = (Vec<String>, Option<Verdict>, Vec<String>);

/// Verdicts and approving roles, remembered per action and target facts: they depend on nothing
/// else, except a denial's reason, which may name the target, so denials are always recomputed.
#[derive(Default)]
struct Verdicts {
    /// Per (action, in a role-assignable group): (target roles, verdict, could approve).
    known: BTreeMap<(ActionKind, bool), Vec<Remembered>>,
}

impl Verdicts {
    fn get(
        &mut self,
        policy: &Policy,
        actor: &Actor,
        kind: ActionKind,
        target_id: &str,
        facts: &TargetFacts,
    ) -> (Option<Verdict>, Vec<String>) {
        let seen = self
            .known
            .entry((kind, facts.in_role_assignable_group))
            .or_default();
        if let Some((_, verdict, could)) = seen.iter().find(|(roles, _, _)| *roles == facts.roles) {
            if !matches!(verdict, Some(Verdict::Denied { .. })) {
                return (verdict.clone(), could.clone());
            }
            return (
                evaluate(policy, actor, kind, target_id, facts),
                could.clone(),
            );
        }
        let verdict = evaluate(policy, actor, kind, target_id, facts);
        let could: Vec<String> = policy
            .roles_allowing(kind, facts)
            .into_iter()
            .map(str::to_string)
            .collect();
        seen.push((facts.roles.clone(), verdict.clone(), could.clone()));
        (verdict, could)
    }
}

/// The before/after slices and removed ids of applying `action` to `user`: what
/// `simulate(user, [action])` gives for the action's own fields, without cloning the user.
fn effect(user: &User, action: &Action) -> (Slice, Slice, Vec<String>) {
    let k = action.kind();
    let raise = |wm: Option<Timestamp>, t: Timestamp| Some(wm.map_or(t, |w| w.max(t)));
    // How many objects the action keeps, and the sorted ids of the others (as `simulate` and
    // comparing the id lists before and after would give them).
    let split = |items: Vec<(&str, bool)>| -> (usize, Vec<String>) {
        let keep: BTreeSet<&str> = items
            .iter()
            .filter(|(_, kept)| *kept)
            .map(|(id, _)| *id)
            .collect();
        let left = items.iter().filter(|(_, kept)| *kept).count();
        let mut removed: Vec<String> = items
            .iter()
            .filter(|(id, _)| !keep.contains(id))
            .map(|(id, _)| id.to_string())
            .collect();
        removed.sort();
        (left, removed)
    };
    let (after, removes) = match *action {
        Action::RequireReregistration { before } => {
            let (left, removed) = split(
                user.methods
                    .iter()
                    .map(|m| (m.id.as_str(), m.registered_at >= before))
                    .collect(),
            );
            (
                vec![
                    (
                        "registration-valid-from",
                        Val::Time(raise(user.registration_valid_from, before)),
                    ),
                    ("methods", Val::Count(left)),
                ],
                removed,
            )
        }
        Action::RevokeSessions { before } => {
            let (left, removed) = split(
                user.sessions
                    .iter()
                    .map(|s| (s.id.as_str(), s.issued_at >= before))
                    .collect(),
            );
            (
                vec![
                    (
                        "sessions-valid-from",
                        Val::Time(raise(user.sessions_valid_from, before)),
                    ),
                    ("sessions", Val::Count(left)),
                ],
                removed,
            )
        }
        Action::RevokeTrustedDevices { before } => {
            let (left, removed) = split(
                user.trusted_devices
                    .iter()
                    .map(|d| (d.id.as_str(), d.remembered_at >= before))
                    .collect(),
            );
            (
                vec![
                    (
                        "devices-valid-from",
                        Val::Time(raise(user.devices_valid_from, before)),
                    ),
                    ("trusted-devices", Val::Count(left)),
                ],
                removed,
            )
        }
        Action::ResetPassword { set_at, .. } => (
            vec![
                ("password-set-at", Val::Time(Some(set_at))),
                ("must-change-password", Val::Flag(true)),
            ],
            Vec::new(),
        ),
        Action::DeleteAppPasswords => {
            let mut removed: Vec<String> =
                user.app_passwords.iter().map(|a| a.id.clone()).collect();
            removed.sort();
            (vec![("app-passwords", Val::Count(0))], removed)
        }
    };
    (slice(user, k), after, removes)
}

/// The fields of a user's state that an action of kind `k` changes (the JSON plan's `before` and
/// `after`, docs/commands.md).
pub fn slice(u: &User, k: ActionKind) -> Slice {
    match k {
        ActionKind::RequireReregistration => vec![
            (
                "registration-valid-from",
                Val::Time(u.registration_valid_from),
            ),
            ("methods", Val::Count(u.methods.len())),
        ],
        ActionKind::RevokeSessions => vec![
            ("sessions-valid-from", Val::Time(u.sessions_valid_from)),
            ("sessions", Val::Count(u.sessions.len())),
        ],
        ActionKind::RevokeTrustedDevices => vec![
            ("devices-valid-from", Val::Time(u.devices_valid_from)),
            ("trusted-devices", Val::Count(u.trusted_devices.len())),
        ],
        ActionKind::ResetPassword => vec![
            ("password-set-at", Val::Time(u.password_set_at)),
            ("must-change-password", Val::Flag(u.must_change_password)),
        ],
        ActionKind::DeleteAppPasswords => {
            vec![("app-passwords", Val::Count(u.app_passwords.len()))]
        }
    }
}

/// A user's state after `actions`: the rules the store applies, as a pure function.
pub fn simulate(user: &User, actions: &[Action]) -> User {
    let mut u = user.clone();
    for a in actions {
        act(&mut u, a);
    }
    u
}

/// What one action does to a user's state. The store's apply calls this too, so a plan's
/// `after` and the state it commits are the same by construction.
pub fn act(u: &mut User, a: &Action) {
    let raise = |wm: &mut Option<Timestamp>, t: Timestamp| *wm = Some(wm.map_or(t, |w| w.max(t)));
    match *a {
        Action::RequireReregistration { before } => {
            raise(&mut u.registration_valid_from, before);
            u.methods.retain(|m| m.registered_at >= before);
        }
        Action::RevokeSessions { before } => {
            raise(&mut u.sessions_valid_from, before);
            u.sessions.retain(|s| s.issued_at >= before);
        }
        Action::RevokeTrustedDevices { before } => {
            raise(&mut u.devices_valid_from, before);
            u.trusted_devices.retain(|d| d.remembered_at >= before);
        }
        Action::ResetPassword { set_at, .. } => {
            u.password_set_at = Some(set_at);
            u.must_change_password = true;
        }
        Action::DeleteAppPasswords => u.app_passwords.clear(),
    }
}

/// A change as a saved plan records it: enough to rebuild the exact [`Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub user: String,
    pub kind: ActionKind,
    /// The T of "nothing older than T"; `None` only for `delete-app-passwords`.
    pub cutoff: Option<Timestamp>,
    pub sources: Vec<String>,
}

/// The cutoff an action carries, for saving it.
pub fn cutoff(a: &Action) -> Option<Timestamp> {
    match *a {
        Action::RequireReregistration { before }
        | Action::RevokeSessions { before }
        | Action::RevokeTrustedDevices { before }
        | Action::ResetPassword { before, .. } => Some(before),
        Action::DeleteAppPasswords => None,
    }
}

/// Rebuilds a saved plan's changes against the current state (which the caller has checked is the
/// state the plan saw), as of `now`, with verdicts for the current actor and policy: a change for
/// a protected user is denied, as a guardrail. Each change must still be one the planner would
/// make: its user exists, and the setting it enforces is not yet satisfied. Returns what is
/// wrong with each one that is not.
pub fn replan(
    planned: &[Planned],
    actual: &Actual,
    policy: &Policy,
    actor: &Actor,
    now: Timestamp,
) -> Result<Vec<Change>, Vec<String>> {
    let ra_groups = actual.role_assignable_groups();
    let mut changes = Vec::with_capacity(planned.len());
    let mut bad = Vec::new();
    let mut verdicts = Verdicts::default();
    for p in planned {
        let Some(user) = actual.users.get(&*key_cow(&p.user)) else {
            bad.push(format!("{} for {}: no such user", p.kind.verb(), p.user));
            continue;
        };
        if p.kind != ActionKind::DeleteAppPasswords && p.cutoff.is_none() {
            bad.push(format!("{} for {}: no cutoff", p.kind.verb(), p.user));
            continue;
        }
        let Some(action) = action_for(p.kind, p.cutoff, user, now) else {
            bad.push(format!(
                "{} for {}: nothing to change, the user already satisfies it",
                p.kind.verb(),
                p.user
            ));
            continue;
        };
        let facts = TargetFacts::of(user, &ra_groups);
        let mut requested_by = None;
        let (verdict, could_approve) = if policy
            .guardrails
            .protected_users
            .contains(&*key_cow(&user.id))
        {
            (
                Some(Verdict::Denied {
                    reason: format!(
                        "{} is a protected user (guardrails.yaml protected-users) and is never \
                         changed",
                        user.id
                    ),
                }),
                Vec::new(),
            )
        } else if let Actor::Requesters(r) = actor {
            // A saved change keeps every manifest that asks for it; any of their requesters
            // may have allowed it, and the plan named the one that did.
            let sources: Vec<&str> = p.sources.iter().map(String::as_str).collect();
            let (_, could) = verdicts.get(policy, &Actor::None, p.kind, &user.id, &facts);
            let (v, by) = r.judge(policy, p.kind, &user.id, &facts, &sources);
            requested_by = by;
            (Some(v), could)
        } else {
            verdicts.get(policy, actor, p.kind, &user.id, &facts)
        };
        let (before, after, removes) = effect(user, &action);
        changes.push(Change {
            user: user.id.clone(),
            verdict,
            could_approve,
            action,
            before,
            after,
            removes,
            sources: p.sources.clone(),
            requested_by,
        });
    }
    if bad.is_empty() {
        Ok(changes)
    } else {
        Err(bad)
    }
}

/// The saved changes whose cutoff lies beyond `now` plus the allowed clock skew: a future
/// watermark would revoke what users create until then. One message each, as for manifests.
pub fn future_cutoffs(planned: &[Planned], policy: &Policy, now: Timestamp) -> Vec<String> {
    let latest = now.plus_secs(policy.guardrails.max_future_skew_secs);
    planned
        .iter()
        .filter_map(|p| {
            let t = p.cutoff.filter(|t| *t > latest)?;
            Some(format!(
                "{} for {}: {t} is in the future (now is {now}, max-future-skew allows up to \
                 {latest}); a future watermark would revoke what users create until then",
                p.kind.verb(),
                crate::util::escape_text(&p.user)
            ))
        })
        .collect()
}

/// A digest of a user's whole state: a saved plan records one per user it changes, and applying it
/// requires each to be unchanged.
pub fn fingerprint(user: &User) -> String {
    use sha2::{Digest, Sha256};
    let mut buf = Vec::with_capacity(512);
    user_json(user, &mut buf);
    crate::util::hex(&Sha256::digest(&buf))
}

/// `serde_json::to_vec(user)`, byte for byte, written directly: a fingerprint is taken of every
/// user a plan changes (a million in an all-users plan), and serde's path through `Serialize`
/// and `collect_str` cost more than the rest of the plan. A test holds the two equal.
pub fn user_json(u: &User, out: &mut Vec<u8>) {
    fn time(out: &mut Vec<u8>, t: Option<Timestamp>) {
        match t {
            None => out.extend_from_slice(b"null"),
            Some(t) => match crate::util::time::bytes(t.unix()) {
                Some(b) => {
                    out.push(b'"');
                    out.extend_from_slice(&b);
                    out.push(b'"');
                }
                None => crate::util::json_str(out, &t.to_string()),
            },
        }
    }
    fn texts(out: &mut Vec<u8>, items: &[String]) {
        out.push(b'[');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::util::json_str(out, x);
        }
        out.push(b']');
    }
    fn objects<T>(out: &mut Vec<u8>, items: &[T], each: impl Fn(&mut Vec<u8>, &T)) {
        out.push(b'[');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            each(out, x);
        }
        out.push(b']');
    }
    let flag = |b: bool| if b { &b"true"[..] } else { &b"false"[..] };
    out.extend_from_slice(b"{\"id\":");
    crate::util::json_str(out, &u.id);
    out.extend_from_slice(b",\"display-name\":");
    crate::util::json_str(out, &u.display_name);
    out.extend_from_slice(b",\"enabled\":");
    out.extend_from_slice(flag(u.enabled));
    out.extend_from_slice(b",\"roles\":");
    texts(out, &u.roles);
    out.extend_from_slice(b",\"groups\":");
    texts(out, &u.groups);
    out.extend_from_slice(b",\"password-set-at\":");
    time(out, u.password_set_at);
    out.extend_from_slice(b",\"must-change-password\":");
    out.extend_from_slice(flag(u.must_change_password));
    out.extend_from_slice(b",\"registration-valid-from\":");
    time(out, u.registration_valid_from);
    out.extend_from_slice(b",\"sessions-valid-from\":");
    time(out, u.sessions_valid_from);
    out.extend_from_slice(b",\"devices-valid-from\":");
    time(out, u.devices_valid_from);
    out.extend_from_slice(b",\"methods\":");
    objects(out, &u.methods, |out, m| {
        out.extend_from_slice(b"{\"id\":");
        crate::util::json_str(out, &m.id);
        out.extend_from_slice(b",\"kind\":");
        crate::util::json_str(out, &m.kind);
        out.extend_from_slice(b",\"registered-at\":");
        time(out, Some(m.registered_at));
        out.push(b'}');
    });
    out.extend_from_slice(b",\"sessions\":");
    objects(out, &u.sessions, |out, x| {
        out.extend_from_slice(b"{\"id\":");
        crate::util::json_str(out, &x.id);
        out.extend_from_slice(b",\"issued-at\":");
        time(out, Some(x.issued_at));
        out.push(b'}');
    });
    out.extend_from_slice(b",\"trusted-devices\":");
    objects(out, &u.trusted_devices, |out, d| {
        out.extend_from_slice(b"{\"id\":");
        crate::util::json_str(out, &d.id);
        out.extend_from_slice(b",\"name\":");
        crate::util::json_str(out, &d.name);
        out.extend_from_slice(b",\"remembered-at\":");
        time(out, Some(d.remembered_at));
        out.push(b'}');
    });
    out.extend_from_slice(b",\"app-passwords\":");
    objects(out, &u.app_passwords, |out, a| {
        out.extend_from_slice(b"{\"id\":");
        crate::util::json_str(out, &a.id);
        out.extend_from_slice(b",\"name\":");
        crate::util::json_str(out, &a.name);
        out.extend_from_slice(b",\"created-at\":");
        time(out, Some(a.created_at));
        out.push(b'}');
    });
    out.push(b'}');
}

/// Fingerprints of every user these changes touch, by id as the store spells it.
pub fn fingerprints(changes: &[Change], actual: &Actual) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut last: Option<&str> = None;
    for c in changes {
        if last == Some(c.user.as_str()) {
            continue;
        }
        last = Some(&c.user);
        if let Some(u) = actual.users.get(&*key_cow(&c.user)) {
            out.insert(u.id.clone(), fingerprint(u));
        }
    }
    out
}

#[cfg(test)]
mod tests;
