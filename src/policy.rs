//! Roles and guardrails (docs/roles.md): which role may perform which action on which user, and
//! the limits every plan and apply respects. Pure: the shell reads `policies/` (or the built-in
//! defaults) and hands in the text, with where it came from.

use crate::model::{key_of, ActionKind, User};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The built-in role table: the repository's `policies/roles.yaml`, which follows the Entra ID
/// role reference.
pub const DEFAULT_ROLES: &str = include_str!("../policies/roles.yaml");
/// The built-in guardrails protect nobody: a real tenant's break-glass accounts are its own, and
/// protecting the example tenant's account instead would leave them unprotected without a word.
pub const DEFAULT_GUARDRAILS: &str =
    "protected-users: []\nmax-users-per-apply: 500\nmax-future-skew: 5m\n";
/// The repository's `policies/guardrails.yaml`, an example to copy that protects the example
/// tenant's break-glass account; the demo walks through the example tenant with it.
pub const EXAMPLE_GUARDRAILS: &str = include_str!("../policies/guardrails.yaml");

/// Where the policies in force came from; every plan names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// Built into the binary: no `--policies`, and no `./policies` directory.
    BuiltIn,
    /// The repository's example policies, built in for `mfactl demo`.
    Example,
    /// `./policies`, found in the working directory.
    WorkingDir,
    /// `--policies DIR`, as given.
    Dir(String),
}

impl fmt::Display for PolicySource {
    /// `built-in`, `built-in example`, `./policies` or `--policies DIR` (DIR unescaped: the
    /// renderers escape it for their context).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::BuiltIn => f.write_str("built-in"),
            PolicySource::Example => f.write_str("built-in example"),
            PolicySource::WorkingDir => f.write_str("./policies"),
            PolicySource::Dir(d) => write!(f, "--policies {d}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every user.
    Any,
    /// Users holding no role, or only roles from this list.
    HoldingOnly(BTreeSet<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HoldingOnly {
    holding_only: BTreeSet<String>,
}

/// `targets: any` or `targets: {holding-only: [...]}`.
impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Targets;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`any` or `{holding-only: [roles...]}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Targets, E> {
                match v {
                    "any" => Ok(Targets::Any),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Targets, A::Error> {
                let h =
                    HoldingOnly::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Targets::HoldingOnly(h.holding_only))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    pub name: String,
    pub actions: Vec<ActionKind>,
    pub targets: Targets,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    roles: Vec<RoleRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrails {
    /// Keys (lowercase ids) of users never changed.
    pub protected_users: BTreeSet<String>,
    pub max_users_per_apply: usize,
    pub max_future_skew_secs: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GuardrailsFile {
    #[serde(default)]
    protected_users: Vec<String>,
    #[serde(default = "default_max_users")]
    max_users_per_apply: usize,
    #[serde(default = "default_skew")]
    max_future_skew: String,
}

fn default_max_users() -> usize {
    500
}
fn default_skew() -> String {
    "5m".into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub roles: Vec<RoleRule>,
    pub guardrails: Guardrails,
    pub source: PolicySource,
}

/// How a role name a user holds relates to the role table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleName<'p> {
    /// The table names it exactly, as a role or in a `holding-only` list.
    Known,
    /// The table names it only in another ASCII case (roles compare exactly, so it would grant
    /// nothing): this spelling.
    OtherCase(&'p str),
    /// The table never names it.
    Unmentioned,
}

/// A policy file that could not be read, with the position serde_yaml found.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub message: String,
}

impl Policy {
    /// Parses `roles.yaml` and `guardrails.yaml`; `*_name` label them in errors. The policy is
    /// labelled built-in until the caller names its source with [`Policy::with_source`].
    pub fn parse(
        roles_name: &str,
        roles: &str,
        guardrails_name: &str,
        guardrails: &str,
    ) -> Result<Policy, PolicyError> {
        let err = |file: &str, e: &dyn std::fmt::Display| PolicyError {
            file: file.to_string(),
            message: crate::util::escape_text(&e.to_string()).into_owned(),
        };
        for (name, text) in [(roles_name, roles), (guardrails_name, guardrails)] {
            crate::manifest::guard::check_nesting(text)
                .map_err(|(l, c, m)| err(name, &format!("line {l} column {c}: {m}")))?;
        }
        let rf: RolesFile = serde_yaml::from_str(roles).map_err(|e| err(roles_name, &e))?;
        let mut seen = BTreeSet::new();
        for r in &rf.roles {
            if !seen.insert(r.name.clone()) {
                return Err(err(
                    roles_name,
                    &format!("role `{}` is listed twice", r.name),
                ));
            }
        }
        let gf: GuardrailsFile =
            serde_yaml::from_str(guardrails).map_err(|e| err(guardrails_name, &e))?;
        let skew = parse_duration(&gf.max_future_skew)
            .map_err(|m| err(guardrails_name, &format!("max-future-skew: {m}")))?;
        Ok(Policy {
            roles: rf.roles,
            guardrails: Guardrails {
                protected_users: gf.protected_users.iter().map(|u| key_of(u)).collect(),
                max_users_per_apply: gf.max_users_per_apply,
                max_future_skew_secs: skew,
            },
            source: PolicySource::BuiltIn,
        })
    }

    /// This policy, recorded as read from `source`.
    pub fn with_source(self, source: PolicySource) -> Policy {
        Policy { source, ..self }
    }

    /// The policies built into the binary: the role table, and guardrails that protect nobody.
    pub fn defaults() -> Policy {
        Policy::parse(
            "roles.yaml",
            DEFAULT_ROLES,
            "guardrails.yaml",
            DEFAULT_GUARDRAILS,
        )
        .expect("the built-in policies parse")
    }

    /// The repository's example policies (`policies/`), for the demo's example tenant.
    pub fn example() -> Policy {
        Policy::parse(
            "policies/roles.yaml",
            DEFAULT_ROLES,
            "policies/guardrails.yaml",
            EXAMPLE_GUARDRAILS,
        )
        .expect("the example policies parse")
        .with_source(PolicySource::Example)
    }

    /// Every role name the table mentions: the roles, and the entries of `holding-only` lists.
    pub fn mentioned_roles(&self) -> BTreeSet<&str> {
        let mut names = BTreeSet::new();
        for r in &self.roles {
            names.insert(r.name.as_str());
            if let Targets::HoldingOnly(list) = &r.targets {
                names.extend(list.iter().map(String::as_str));
            }
        }
        names
    }

    /// How `role`, held by a user, relates to the table (`mentioned` is [`Self::mentioned_roles`]).
    pub fn role_name<'p>(mentioned: &BTreeSet<&'p str>, role: &str) -> RoleName<'p> {
        if mentioned.contains(role) {
            return RoleName::Known;
        }
        match mentioned.iter().find(|m| m.eq_ignore_ascii_case(role)) {
            Some(m) => RoleName::OtherCase(m),
            None => RoleName::Unmentioned,
        }
    }

    /// The roles that may perform `action` on a user with these target facts, in file order.
    pub fn roles_allowing(&self, action: ActionKind, target: &TargetFacts) -> Vec<&str> {
        self.roles
            .iter()
            .filter(|r| r.actions.contains(&action) && r.reaches(target))
            .map(|r| r.name.as_str())
            .collect()
    }
}

impl RoleRule {
    fn reaches(&self, t: &TargetFacts) -> bool {
        match &self.targets {
            Targets::Any => true,
            Targets::HoldingOnly(allowed) => {
                !t.in_role_assignable_group && t.roles.iter().all(|r| allowed.contains(r))
            }
        }
    }
}

/// `5m`, `30s`, `2h`, `1d` → seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 5m, 2h, 1d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("`{s}` is not a duration like 30s, 5m, 2h, 1d")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too long"))
}

/// Seconds as the shortest duration [`parse_duration`] reads back: `5m`, `1d`, `90s`.
pub fn duration_text(secs: i64) -> String {
    match secs {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// What the policy needs to know about a target user.
#[derive(Debug, Clone, Default)]
pub struct TargetFacts {
    pub roles: Vec<String>,
    pub in_role_assignable_group: bool,
}

impl TargetFacts {
    pub fn of(user: &User, role_assignable_groups: &BTreeSet<String>) -> Self {
        TargetFacts {
            roles: user.roles.clone(),
            in_role_assignable_group: user
                .groups
                .iter()
                .any(|g| role_assignable_groups.contains(&key_of(g))),
        }
    }
}

/// Who is acting, as far as the store knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// No `--actor`: plans show which roles could approve each change.
    None,
    Unknown(String),
    Disabled(String),
    Known {
        id: String,
        roles: Vec<String>,
    },
    /// `--signers`: each change is judged for the people who signed the manifests asking for it
    /// (see [`Requesters`]); `--actor`, if given, is only recorded as who ran the command.
    Requesters(Box<Requesters>),
}

impl Actor {
    /// The acting administrator named in the plan and the audit log (under `--signers`, who ran
    /// the command, when `--actor` names them).
    pub fn id(&self) -> Option<&str> {
        match self {
            Actor::None => None,
            Actor::Unknown(id) | Actor::Disabled(id) | Actor::Known { id, .. } => Some(id),
            Actor::Requesters(r) => r.ran_by.as_deref(),
        }
    }
}

/// Under `--signers`: who asked for each manifest's changes, and whether the role table itself
/// may be trusted. The shell reads signatures and roles; the decision is made here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requesters {
    /// `--actor`, recorded as who ran the command; its roles do not matter.
    pub ran_by: Option<String>,
    /// By manifest name.
    pub by_manifest: BTreeMap<String, Requester>,
    /// Why the policy files cannot be trusted (not committed, or not signed by a global
    /// administrator): every change is denied with this reason.
    pub policy_refused: Option<String>,
}

/// Who asked for one manifest's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// The signer of the latest commit that changed the manifest's file, with their roles as the
    /// store holds them (unknown or disabled signers have no rights).
    Signed {
        signer: Actor,
        /// The signing key's fingerprint, `SHA256:…`.
        key: String,
        /// The full id of the commit.
        commit: String,
        /// The manifest's file, for denial reasons.
        file: String,
    },
    /// No usable signature; the reason names the file, the commit and what was wrong.
    Refused { file: String, reason: String },
}

pub use crate::model::RequestedBy;

impl Requesters {
    /// Decides one change asked for, identically, by the manifests `sources`: allowed when the
    /// requester of any of them may make it (the first in order, named as the requester), else
    /// denied with every source's reason.
    pub fn judge(
        &self,
        policy: &Policy,
        action: ActionKind,
        target_id: &str,
        target: &TargetFacts,
        sources: &[&str],
    ) -> (Verdict, Option<RequestedBy>) {
        if let Some(why) = &self.policy_refused {
            return (
                Verdict::Denied {
                    reason: why.clone(),
                },
                None,
            );
        }
        let mut reasons = Vec::new();
        for name in sources {
            match self.by_manifest.get(*name) {
                None => reasons.push(format!("manifest {name} has no requester")),
                Some(Requester::Refused { reason, .. }) => reasons.push(reason.clone()),
                Some(Requester::Signed {
                    signer: signer @ (Actor::Unknown(id) | Actor::Disabled(id)),
                    commit,
                    file,
                    ..
                }) => reasons.push(format!(
                    "{file}: requested by {id} in commit {}, who {}, so has no rights",
                    commit.get(..7).unwrap_or(commit),
                    if matches!(signer, Actor::Disabled(_)) {
                        "is disabled"
                    } else {
                        "is not a user in the store"
                    }
                )),
                Some(Requester::Signed {
                    signer,
                    key,
                    commit,
                    file,
                }) => match evaluate(policy, signer, action, target_id, target) {
                    Some(Verdict::Allowed { role }) => {
                        return (
                            Verdict::Allowed { role },
                            Some(RequestedBy {
                                user: signer.id().unwrap_or_default().to_string(),
                                key: key.clone(),
                                commit: commit.clone(),
                            }),
                        )
                    }
                    Some(Verdict::Denied { reason }) => reasons.push(format!(
                        "{file}: requested by {} in commit {}, who may not: {reason}",
                        signer.id().unwrap_or_default(),
                        commit.get(..7).unwrap_or(commit)
                    )),
                    None => reasons.push(format!("{file}: no requester")),
                },
            }
        }
        (
            Verdict::Denied {
                reason: reasons.join("; "),
            },
            None,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed { role: String },
    Denied { reason: String },
}

impl Verdict {
    #[cfg(test)]
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}

/// Decides one change. `None` when there is no actor.
pub fn evaluate(
    policy: &Policy,
    actor: &Actor,
    action: ActionKind,
    target_id: &str,
    target: &TargetFacts,
) -> Option<Verdict> {
    let could = policy.roles_allowing(action, target);
    let could_text = if could.is_empty() {
        "no role in the policy may".to_string()
    } else {
        format!("roles that may: {}", could.join(", "))
    };
    let (id, roles) = match actor {
        Actor::None => return None,
        // Judged per source by `Requesters::judge`, which asks about each signer.
        Actor::Requesters(_) => return None,
        Actor::Unknown(id) => {
            return Some(Verdict::Denied {
                reason: format!("actor {id} is not a user in the store, so has no rights"),
            })
        }
        Actor::Disabled(id) => {
            return Some(Verdict::Denied {
                reason: format!("actor {id} is disabled, so has no rights"),
            })
        }
        Actor::Known { id, roles } => (id, roles),
    };
    for rule in &policy.roles {
        if roles.contains(&rule.name) && rule.actions.contains(&action) && rule.reaches(target) {
            return Some(Verdict::Allowed {
                role: rule.name.clone(),
            });
        }
    }
    let granting: Vec<&str> = policy
        .roles
        .iter()
        .filter(|r| roles.contains(&r.name) && r.actions.contains(&action))
        .map(|r| r.name.as_str())
        .collect();
    let reason = if granting.is_empty() {
        let held = if roles.is_empty() {
            "no role".to_string()
        } else {
            roles.join(", ")
        };
        format!("{id} holds {held}, which may not {action}; {could_text}")
    } else {
        let what = describe_target(target);
        format!(
            "{} may not {action} for {target_id}, who {what}; {could_text}",
            granting.join(", ")
        )
    };
    Some(Verdict::Denied { reason })
}

fn describe_target(t: &TargetFacts) -> String {
    let mut parts = Vec::new();
    if !t.roles.is_empty() {
        parts.push(format!("holds {}", t.roles.join(", ")));
    }
    if t.in_role_assignable_group {
        parts.push("is in a role-assignable group".to_string());
    }
    parts.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(roles: &[&str]) -> Actor {
        Actor::Known {
            id: "a@x".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }
    fn target(roles: &[&str], ra: bool) -> TargetFacts {
        TargetFacts {
            roles: roles.iter().map(|r| r.to_string()).collect(),
            in_role_assignable_group: ra,
        }
    }

    #[test]
    fn defaults_match_the_spec_table() {
        let p = Policy::defaults();
        let plain = target(&[], false);
        let ok = |actor: &[&str], a, t: &TargetFacts| {
            evaluate(&p, &known(actor), a, "t", t).unwrap().is_allowed()
        };
        assert!(ok(
            &["helpdesk-administrator"],
            ActionKind::ResetPassword,
            &plain
        ));
        assert!(!ok(
            &["helpdesk-administrator"],
            ActionKind::RevokeSessions,
            &plain
        ));
        assert!(!ok(
            &["helpdesk-administrator"],
            ActionKind::ResetPassword,
            &target(&["authentication-administrator"], false)
        ));
        assert!(ok(
            &["authentication-administrator"],
            ActionKind::RevokeSessions,
            &target(&["reports-reader"], false)
        ));
        assert!(!ok(
            &["authentication-administrator"],
            ActionKind::RevokeSessions,
            &target(&["global-administrator"], false)
        ));
        assert!(!ok(
            &["authentication-administrator"],
            ActionKind::RevokeSessions,
            &target(&[], true)
        ));
        assert!(!ok(
            &["authentication-administrator"],
            ActionKind::DeleteAppPasswords,
            &plain
        ));
        assert!(ok(
            &["privileged-authentication-administrator"],
            ActionKind::RevokeSessions,
            &target(&["global-administrator"], true)
        ));
        assert!(!ok(
            &["privileged-authentication-administrator"],
            ActionKind::DeleteAppPasswords,
            &plain
        ));
        assert!(ok(
            &["global-administrator"],
            ActionKind::DeleteAppPasswords,
            &target(&["global-administrator"], true)
        ));
        assert_eq!(p.guardrails.max_users_per_apply, 500);
        assert_eq!(p.guardrails.max_future_skew_secs, 300);
    }

    #[test]
    fn the_least_privileged_allowing_role_is_named() {
        let p = Policy::defaults();
        let v = evaluate(
            &p,
            &known(&["global-administrator", "helpdesk-administrator"]),
            ActionKind::ResetPassword,
            "t",
            &target(&[], false),
        );
        assert_eq!(
            v,
            Some(Verdict::Allowed {
                role: "helpdesk-administrator".into()
            })
        );
    }

    #[test]
    fn unknown_and_disabled_actors_have_no_rights() {
        let p = Policy::defaults();
        for a in [Actor::Unknown("u".into()), Actor::Disabled("d".into())] {
            assert!(!evaluate(
                &p,
                &a,
                ActionKind::ResetPassword,
                "t",
                &TargetFacts::default()
            )
            .unwrap()
            .is_allowed());
        }
        assert_eq!(
            evaluate(
                &p,
                &Actor::None,
                ActionKind::ResetPassword,
                "t",
                &TargetFacts::default()
            ),
            None
        );
    }

    #[test]
    fn the_built_in_guardrails_protect_nobody() {
        let p = Policy::defaults();
        assert!(p.guardrails.protected_users.is_empty());
        assert_eq!(p.source, PolicySource::BuiltIn);
        assert_eq!(p.source.to_string(), "built-in");
        // The repository's example still protects its own tenant's break-glass account.
        let example = Policy::example();
        assert!(example
            .guardrails
            .protected_users
            .contains("breakglass@contoso.example"));
        assert_eq!(example.roles, p.roles);
        assert_eq!(example.guardrails.max_users_per_apply, 500);
        assert_eq!(example.guardrails.max_future_skew_secs, 300);
    }

    #[test]
    fn role_names_are_known_spelled_otherwise_or_unmentioned() {
        let p = Policy::defaults();
        let m = p.mentioned_roles();
        assert_eq!(
            Policy::role_name(&m, "global-administrator"),
            RoleName::Known
        );
        // Only in a holding-only list: still known.
        assert_eq!(Policy::role_name(&m, "reports-reader"), RoleName::Known);
        assert_eq!(
            Policy::role_name(&m, "Global-Administrator"),
            RoleName::OtherCase("global-administrator")
        );
        assert_eq!(
            Policy::role_name(&m, "REPORTS-READER"),
            RoleName::OtherCase("reports-reader")
        );
        assert_eq!(Policy::role_name(&m, "global-admin"), RoleName::Unmentioned);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert!(parse_duration("5 minutes").is_err());
        for secs in [0, 1, 59, 60, 300, 3_600, 5_400, 86_400, 90_000] {
            assert_eq!(parse_duration(&duration_text(secs)), Ok(secs));
        }
        assert_eq!(duration_text(300), "5m");
    }
}
