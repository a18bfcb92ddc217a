//! The role matrix (docs/roles.md) through the real binary: which directory role may perform which
//! action on which target, the verdicts in `plan --format json`, the exit codes of
//! `plan --detailed-exitcode` and `apply`, protected users, and `--policies DIR`.
mod common;
use common::*;

use serde_json::Value;
use std::collections::BTreeMap;

const HELPDESK: &str = "helpdesk-administrator";
const AUTH: &str = "authentication-administrator";
const PRIV: &str = "privileged-authentication-administrator";
const GLOBAL: &str = "global-administrator";

/// The actors of the example tenant, one per default role.
const FRANK: &str = "frank@contoso.example"; // helpdesk-administrator
const ERIN: &str = "erin@contoso.example"; // authentication-administrator
const PRIYA: &str = "priya@contoso.example"; // privileged-authentication-administrator
const GARY: &str = "gary@contoso.example"; // global-administrator
const OLGA: &str = "olga@contoso.example"; // disabled authentication-administrator
const IVAN: &str = "ivan@contoso.example"; // member of the role-assignable helpdesk-admins

const REREG: &str = "require-reregistration";
const SESSIONS: &str = "revoke-sessions";
const DEVICES: &str = "revoke-trusted-devices";
const RESET: &str = "reset-password";
const APP_PW: &str = "delete-app-passwords";
const ALL_ACTIONS: [&str; 5] = [APP_PW, REREG, RESET, SESSIONS, DEVICES];

/// The five settings, each at a time that every target user of [`target_state`] violates.
const ALL_FIVE: &str = "    require-reregistration: 2026-11-29T00:00:00Z\n    \
    revoke-sessions-before: 2026-11-29T00:00:00Z\n    \
    revoke-trusted-devices-before: 2026-11-29T00:00:00Z\n    \
    reset-password-before: 2026-11-29T00:00:00Z\n    \
    app-passwords: none\n";

/// A user record state (for `user_yaml`'s `extra`) that needs all five actions at 2026-11-29.
fn target_state(tag: &str) -> String {
    format!(
        "    password-set-at: 2026-01-01T00:00:00Z\n    must-change-password: false\n    \
         registration-valid-from: null\n    sessions-valid-from: null\n    devices-valid-from: null\n    \
         methods: [{{id: m-{tag}, kind: sms, registered-at: 2026-01-01T00:00:00Z}}]\n    \
         sessions: [{{id: s-{tag}, issued-at: 2026-11-01T00:00:00Z}}]\n    \
         trusted-devices: [{{id: d-{tag}, name: laptop, remembered-at: 2026-11-01T00:00:00Z}}]\n    \
         app-passwords: [{{id: a-{tag}, name: mail, created-at: 2026-01-01T00:00:00Z}}]\n"
    )
}

/// Imports a target user `NAME@contoso.example` holding `roles`, in `groups`, needing all five
/// actions; returns the id.
fn add_target(env: &Env, name: &str, roles: &[&str], groups: &[&str]) -> String {
    let id = format!("{name}@contoso.example");
    env.import(&user_yaml(&id, roles, groups, &target_state(name)));
    id
}

/// Imports an enabled (or disabled) actor without any MFA state.
fn add_actor(env: &Env, id: &str, roles: &[&str], enabled: bool) {
    let yaml = user_yaml(id, roles, &[], "").replace(
        "enabled: true",
        if enabled {
            "enabled: true"
        } else {
            "enabled: false"
        },
    );
    env.import(&yaml);
}

/// Writes `m/NAME.yaml` with one entry for `users` and the given settings; returns its path.
fn write_users_manifest(env: &Env, name: &str, users: &[&str], settings: &str) -> String {
    let spec = format!("  - users: [{}]\n{settings}", users.join(", "));
    let rel = format!("m/{name}.yaml");
    env.write(&rel, &manifest(name, &spec));
    rel
}

fn parse_json(o: &Out) -> Value {
    serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", o.stdout, o.stderr))
}

/// `plan PATH --format json [--actor A]`, asserting exit 0.
fn plan_json(env: &Env, path: &str, actor: Option<&str>) -> Value {
    let mut args = vec!["plan", path, "--format", "json"];
    if let Some(a) = actor {
        args.extend(["--actor", a]);
    }
    let o = env.run(&args);
    assert_eq!(o.code, 0, "plan {args:?}:\n{}", o.all());
    parse_json(&o)
}

/// `(user, action) -> verdict` of a JSON plan.
fn verdicts(plan: &Value) -> BTreeMap<(String, String), Value> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                (
                    c["user"].as_str().unwrap().to_string(),
                    c["action"].as_str().unwrap().to_string(),
                ),
                c["verdict"].clone(),
            )
        })
        .collect()
}

fn verdict<'a>(v: &'a BTreeMap<(String, String), Value>, user: &str, action: &str) -> &'a Value {
    v.get(&(user.to_string(), action.to_string()))
        .unwrap_or_else(|| panic!("no {action} change for {user} in {v:#?}"))
}

/// Asserts the verdict is `{"allowed": true, "role": role}`.
fn assert_allowed(v: &Value, role: &str, what: &str) {
    assert_eq!(v["allowed"], Value::Bool(true), "{what}: {v}");
    assert_eq!(v["role"], Value::String(role.into()), "{what}: {v}");
    assert!(v.get("reason").is_none(), "{what}: {v}");
}

/// Asserts the verdict is `{"allowed": false, "reason": "…"}` and returns the reason.
fn assert_denied<'a>(v: &'a Value, what: &str) -> &'a str {
    assert_eq!(v["allowed"], Value::Bool(false), "{what}: {v}");
    assert!(
        v.get("role").is_none(),
        "{what}: a denied verdict names no role: {v}"
    );
    let reason = v["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {v}"));
    assert!(!reason.trim().is_empty(), "{what}: empty reason");
    reason
}

/// `apply PATH --auto-approve --actor A --credentials-out FILE`.
fn apply(env: &Env, path: &str, actor: &str, creds: &str) -> Out {
    env.run(&[
        "apply",
        path,
        "--auto-approve",
        "--actor",
        actor,
        "--credentials-out",
        creds,
    ])
}

fn audit_json(env: &Env) -> Vec<Value> {
    let o = env.ok(&["audit", "--format", "json"]);
    parse_json(&o).as_array().expect("audit array").clone()
}

/// Runs a denied apply and asserts exit 3, an unchanged store, an empty audit log and no
/// credentials file.
fn assert_apply_denied(env: &Env, path: &str, actor: &str) -> Out {
    let before = env.export();
    let audit_before = audit_json(env).len();
    let o = apply(env, path, actor, "denied-creds.tsv");
    assert_eq!(o.code, 3, "apply as {actor} should be denied:\n{}", o.all());
    assert!(o.stderr.contains("denied"), "{}", o.all());
    assert_eq!(env.export(), before, "a denied apply changed the store");
    assert_eq!(
        audit_json(env).len(),
        audit_before,
        "a denied apply wrote audit records"
    );
    assert!(
        !env.exists("denied-creds.tsv"),
        "a denied apply wrote credentials"
    );
    o
}

// ---------------------------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------------------------

/// The kinds of target of the role table (docs/roles.md).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    /// No role, no group.
    Plain,
    /// No role, in an ordinary (not role-assignable) group.
    Contractor,
    /// Holds only reports-reader (on both lists).
    Reader,
    /// Holds only helpdesk-administrator (on helpdesk's list, not on authentication's).
    Helpdesk,
    /// Holds only authentication-administrator (on authentication's list, not on helpdesk's).
    AuthAdmin,
    /// Holds global-administrator (a privileged role).
    Global,
    /// Holds reports-reader and global-administrator: not "only" listed roles.
    ReaderAndGlobal,
    /// No role, but a member of the role-assignable group helpdesk-admins.
    RoleAssignable,
}

const TARGETS: [(Target, &str, &[&str], &[&str]); 8] = [
    (Target::Plain, "t-plain", &[], &[]),
    (Target::Contractor, "t-contractor", &[], &["contractors"]),
    (Target::Reader, "t-reader", &["reports-reader"], &[]),
    (Target::Helpdesk, "t-helpdesk", &[HELPDESK], &[]),
    (Target::AuthAdmin, "t-authadmin", &[AUTH], &[]),
    (Target::Global, "t-global", &[GLOBAL], &[]),
    (
        Target::ReaderAndGlobal,
        "t-mixed",
        &["reports-reader", GLOBAL],
        &[],
    ),
    (Target::RoleAssignable, "t-rag", &[], &["helpdesk-admins"]),
];

/// The built-in role table (docs/roles.md): the role that allows `action` on `target` for an actor
/// holding only `role`.
fn expected(role: &str, action: &str, target: Target) -> Option<&'static str> {
    use Target::*;
    match role {
        HELPDESK => (action == RESET && matches!(target, Plain | Contractor | Reader | Helpdesk))
            .then_some(HELPDESK),
        AUTH => (action != APP_PW && matches!(target, Plain | Contractor | Reader | AuthAdmin))
            .then_some(AUTH),
        PRIV => (action != APP_PW).then_some(PRIV),
        GLOBAL => Some(GLOBAL),
        _ => unreachable!(),
    }
}

/// An example tenant plus one target of each kind, and a manifest asking all five actions of all.
fn matrix_env() -> (Env, Vec<(Target, String)>, String) {
    let env = Env::example();
    let targets: Vec<(Target, String)> = TARGETS
        .iter()
        .map(|(t, name, roles, groups)| (*t, add_target(&env, name, roles, groups)))
        .collect();
    let ids: Vec<&str> = targets.iter().map(|(_, id)| id.as_str()).collect();
    let path = write_users_manifest(&env, "matrix", &ids, ALL_FIVE);
    (env, targets, path)
}

fn check_matrix(actor: &str, role: &str) {
    let (env, targets, path) = matrix_env();
    let plan = plan_json(&env, &path, Some(actor));
    assert_eq!(plan["actor"], Value::String(actor.into()));
    let v = verdicts(&plan);
    assert_eq!(v.len(), targets.len() * 5, "{plan:#}");
    let mut denied = 0;
    for (target, id) in &targets {
        for action in ALL_ACTIONS {
            let what = format!("{role} ({actor}) {action} on {id} ({target:?})");
            let got = verdict(&v, id, action);
            match expected(role, action, *target) {
                Some(r) => assert_allowed(got, r, &what),
                None => {
                    denied += 1;
                    let reason = assert_denied(got, &what);
                    assert!(
                        reason.contains(action),
                        "{what}: the reason should name the action: {reason}"
                    );
                }
            }
        }
    }
    assert_eq!(plan["summary"]["denied"], Value::from(denied), "{plan:#}");
    assert_eq!(plan["summary"]["changes"], Value::from(targets.len() * 5));
    assert_eq!(plan["summary"]["users"], Value::from(targets.len()));
}

#[test]
fn helpdesk_administrator_may_only_reset_passwords_of_unprivileged_users() {
    check_matrix(FRANK, HELPDESK);
}

#[test]
fn authentication_administrator_may_not_touch_privileged_users_or_app_passwords() {
    check_matrix(ERIN, AUTH);
}

#[test]
fn privileged_authentication_administrator_reaches_anyone_but_not_app_passwords() {
    check_matrix(PRIYA, PRIV);
}

#[test]
fn global_administrator_may_do_everything_to_anyone() {
    check_matrix(GARY, GLOBAL);
}

#[test]
fn denial_reasons_say_why_the_target_is_out_of_reach() {
    let (env, _, path) = matrix_env();
    let v = verdicts(&plan_json(&env, &path, Some(ERIN)));
    let r = assert_denied(
        verdict(&v, "t-global@contoso.example", SESSIONS),
        "erin on t-global",
    );
    assert!(
        r.contains(GLOBAL),
        "names the target's privileged role: {r}"
    );
    let r = assert_denied(
        verdict(&v, "t-rag@contoso.example", SESSIONS),
        "erin on t-rag",
    );
    assert!(
        r.contains("role-assignable"),
        "says the target is in a role-assignable group: {r}"
    );
    let r = assert_denied(
        verdict(&v, "t-plain@contoso.example", APP_PW),
        "erin delete-app-passwords",
    );
    assert!(r.contains(GLOBAL), "names the role that could: {r}");
}

#[test]
fn ivan_of_the_role_assignable_group_is_reached_only_by_any_target_roles() {
    let env = Env::example();
    // Ivan has a session from 2025-12-01 and an authenticator registered 2026-08-08.
    let path = write_users_manifest(
        &env,
        "ivan",
        &[IVAN],
        "    revoke-sessions-before: 2026-11-01T00:00:00Z\n    reset-password-before: 2026-11-01\n",
    );
    for actor in [FRANK, ERIN] {
        let v = verdicts(&plan_json(&env, &path, Some(actor)));
        assert_eq!(v.len(), 2, "{v:#?}");
        for action in [SESSIONS, RESET] {
            let r = assert_denied(verdict(&v, IVAN, action), actor);
            // frank's role may not revoke sessions at all; otherwise it is the group that denies.
            if !(actor == FRANK && action == SESSIONS) {
                assert!(r.contains("role-assignable"), "{r}");
            }
        }
    }
    let v = verdicts(&plan_json(&env, &path, Some(PRIYA)));
    assert_allowed(verdict(&v, IVAN, SESSIONS), PRIV, "priya on ivan");
    assert_allowed(verdict(&v, IVAN, RESET), PRIV, "priya on ivan");
    let v = verdicts(&plan_json(&env, &path, Some(GARY)));
    assert_allowed(verdict(&v, IVAN, SESSIONS), GLOBAL, "gary on ivan");

    // And the denied apply changes nothing; the allowed one goes through as the named role.
    assert_apply_denied(&env, &path, ERIN);
    let o = apply(&env, &path, PRIYA, "creds.tsv");
    assert_eq!(o.code, 0, "{}", o.all());
    let audit = audit_json(&env);
    assert_eq!(audit.len(), 2, "{audit:#?}");
    for rec in &audit {
        assert_eq!(rec["actor"], Value::String(PRIYA.into()));
        assert_eq!(rec["role"], Value::String(PRIV.into()));
        assert_eq!(rec["user"], Value::String(IVAN.into()));
    }
}

// ---------------------------------------------------------------------------------------------
// The least privileged role
// ---------------------------------------------------------------------------------------------

#[test]
fn the_plan_names_the_least_privileged_allowing_role() {
    let env = Env::example();
    // Roles listed in the store most privileged first: the order must not matter.
    let boss = "boss@contoso.example";
    add_actor(&env, boss, &[GLOBAL, PRIV, AUTH, HELPDESK], true);
    let plain = add_target(&env, "t-plain", &[], &[]);
    let global = add_target(&env, "t-global", &[GLOBAL], &[]);
    let rag = add_target(&env, "t-rag", &[], &["helpdesk-admins"]);
    let path = write_users_manifest(&env, "all", &[&plain, &global, &rag], ALL_FIVE);
    let v = verdicts(&plan_json(&env, &path, Some(boss)));
    assert_allowed(verdict(&v, &plain, RESET), HELPDESK, "reset on plain");
    for action in [REREG, SESSIONS, DEVICES] {
        assert_allowed(verdict(&v, &plain, action), AUTH, action);
    }
    assert_allowed(verdict(&v, &plain, APP_PW), GLOBAL, "app passwords");
    for t in [&global, &rag] {
        for action in [RESET, REREG, SESSIONS, DEVICES] {
            assert_allowed(verdict(&v, t, action), PRIV, &format!("{action} on {t}"));
        }
        assert_allowed(verdict(&v, t, APP_PW), GLOBAL, "app passwords");
    }

    // The audit log records the same roles.
    let o = apply(&env, &path, boss, "creds.tsv");
    assert_eq!(o.code, 0, "{}", o.all());
    let audit = audit_json(&env);
    assert_eq!(audit.len(), 15, "{audit:#?}");
    for rec in &audit {
        let (user, action) = (
            rec["user"].as_str().unwrap(),
            rec["action"].as_str().unwrap(),
        );
        let want = verdict(&v, user, action)["role"].clone();
        assert_eq!(rec["role"], want, "audit role of {action} on {user}");
        assert_eq!(rec["actor"], Value::String(boss.into()));
    }
}

#[test]
fn two_limited_roles_combine_per_change() {
    // helpdesk reaches helpdesk-administrators, authentication reaches authentication-administrators:
    // an actor holding both may reset both kinds of user's passwords, each through another role.
    let env = Env::example();
    let both = "both@contoso.example";
    add_actor(&env, both, &[AUTH, HELPDESK], true);
    let hd = add_target(&env, "t-helpdesk", &[HELPDESK], &[]);
    let aa = add_target(&env, "t-authadmin", &[AUTH], &[]);
    let path = write_users_manifest(&env, "both", &[&hd, &aa], ALL_FIVE);
    let v = verdicts(&plan_json(&env, &path, Some(both)));
    assert_allowed(verdict(&v, &hd, RESET), HELPDESK, "reset helpdesk admin");
    assert_allowed(verdict(&v, &aa, RESET), AUTH, "reset auth admin");
    assert_denied(verdict(&v, &hd, SESSIONS), "sessions of a helpdesk admin");
    assert_allowed(
        verdict(&v, &aa, SESSIONS),
        AUTH,
        "sessions of an auth admin",
    );
}

// ---------------------------------------------------------------------------------------------
// Applies per role
// ---------------------------------------------------------------------------------------------

#[test]
fn helpdesk_applies_password_resets_and_is_refused_anything_else() {
    let env = Env::example();
    let plain = add_target(&env, "t-plain", &[], &[]);
    let reader = add_target(&env, "t-reader", &["reports-reader"], &[]);
    let global = add_target(&env, "t-global", &[GLOBAL], &[]);

    let sessions = write_users_manifest(
        &env,
        "sessions",
        &[&plain],
        "    revoke-sessions-before: 2026-11-29T00:00:00Z\n",
    );
    assert_apply_denied(&env, &sessions, FRANK);
    let reset_global = write_users_manifest(
        &env,
        "reset-global",
        &[&global],
        "    reset-password-before: 2026-11-29T00:00:00Z\n",
    );
    assert_apply_denied(&env, &reset_global, FRANK);
    std::fs::remove_dir_all(env.path("m")).unwrap();

    let reset = write_users_manifest(
        &env,
        "reset",
        &[&plain, &reader],
        "    reset-password-before: 2026-11-29T00:00:00Z\n",
    );
    let o = apply(&env, &reset, FRANK, "creds.tsv");
    assert_eq!(o.code, 0, "{}", o.all());
    let audit = audit_json(&env);
    assert_eq!(audit.len(), 2, "{audit:#?}");
    for rec in &audit {
        assert_eq!(rec["role"], Value::String(HELPDESK.into()));
        assert_eq!(rec["action"], Value::String(RESET.into()));
    }
    let creds = std::fs::read_to_string(env.path("creds.tsv")).unwrap();
    assert_eq!(creds.lines().count(), 2, "one line per reset user");
    assert_eq!(
        env.show(&plain)["must-change-password"],
        serde_yaml::Value::Bool(true)
    );
}

#[test]
fn authentication_administrator_applies_on_a_reports_reader_but_not_app_passwords() {
    let env = Env::example();
    // henry holds only reports-reader.
    let henry = "henry@contoso.example";
    let path = write_users_manifest(&env, "henry", &[henry], ALL_FIVE);
    assert_apply_denied(&env, &path, ERIN);

    let four = "    require-reregistration: 2026-11-29T00:00:00Z\n    \
                revoke-sessions-before: 2026-11-30T00:00:00Z\n    \
                revoke-trusted-devices-before: 2026-11-29T00:00:00Z\n    \
                reset-password-before: 2026-11-29T00:00:00Z\n";
    let path = write_users_manifest(&env, "henry", &[henry], four);
    let o = apply(&env, &path, ERIN, "creds.tsv");
    assert_eq!(o.code, 0, "{}", o.all());
    let audit = audit_json(&env);
    let actions: Vec<&str> = audit
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    // henry has no trusted device but no devices watermark either: four changes.
    assert_eq!(actions, [REREG, RESET, SESSIONS, DEVICES], "{audit:#?}");
    assert!(audit
        .iter()
        .all(|r| r["role"] == Value::String(AUTH.into())));
    // Applied: the next plan is empty.
    let o = env.run(&["plan", &path, "--actor", ERIN, "--detailed-exitcode"]);
    assert_eq!(o.code, 0, "{}", o.all());
}

#[test]
fn authentication_administrator_is_refused_a_global_administrator() {
    let env = Env::example();
    // gary has a session from 2025-10-15.
    let path = write_users_manifest(
        &env,
        "gary",
        &[GARY],
        "    revoke-sessions-before: 2026-01-01T00:00:00Z\n",
    );
    let o = assert_apply_denied(&env, &path, ERIN);
    assert!(o.stderr.contains(GARY), "names the user: {}", o.all());
    let o = apply(&env, &path, PRIYA, "creds.tsv");
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(audit_json(&env)[0]["role"], Value::String(PRIV.into()));
}

#[test]
fn privileged_authentication_administrator_is_refused_app_passwords() {
    let env = Env::example();
    let global = add_target(&env, "t-global", &[GLOBAL], &[]);
    let path = write_users_manifest(&env, "g", &[&global], ALL_FIVE);
    assert_apply_denied(&env, &path, PRIYA);
    let o = apply(&env, &path, GARY, "creds.tsv");
    assert_eq!(o.code, 0, "{}", o.all());
    let audit = audit_json(&env);
    assert_eq!(audit.len(), 5, "{audit:#?}");
    assert!(audit
        .iter()
        .all(|r| r["role"] == Value::String(GLOBAL.into())));
    assert_eq!(
        env.show(&global)["app-passwords"],
        serde_yaml::Value::Sequence(vec![])
    );
}

#[test]
fn one_denied_change_blocks_the_allowed_ones_too() {
    let env = Env::example();
    // erin may revoke henry's session but not delete his app password: nothing is applied.
    let path = write_users_manifest(
        &env,
        "henry",
        &["henry@contoso.example"],
        "    revoke-sessions-before: 2026-11-30T00:00:00Z\n    app-passwords: none\n",
    );
    let plan = plan_json(&env, &path, Some(ERIN));
    assert_eq!(plan["summary"]["denied"], Value::from(1));
    let o = assert_apply_denied(&env, &path, ERIN);
    assert!(o.stderr.contains(APP_PW), "{}", o.all());
    assert_eq!(audit_json(&env), Vec::<Value>::new());
    // The audit log is literally empty.
    let o = env.ok(&["audit", "--format", "json"]);
    assert_eq!(parse_json(&o), serde_json::json!([]));
}

// ---------------------------------------------------------------------------------------------
// Actors without rights, and no actor
// ---------------------------------------------------------------------------------------------

fn check_actor_without_rights(env: &Env, actor: &str, reason_has: &str) {
    let plan = plan_json(env, "m", Some(actor));
    let v = verdicts(&plan);
    assert!(v.len() >= 5, "{plan:#}");
    for ((user, action), verdict) in &v {
        let r = assert_denied(verdict, &format!("{actor}: {action} on {user}"));
        assert!(r.contains(reason_has), "{actor}: {r}");
    }
    assert_eq!(plan["summary"]["denied"], Value::from(v.len()));
    let o = env.run(&["plan", "m", "--actor", actor, "--detailed-exitcode"]);
    assert_eq!(o.code, 3, "{}", o.all());
    assert_apply_denied(env, "m", actor);
}

#[test]
fn a_disabled_actor_has_no_rights() {
    let env = Env::example();
    let plain = add_target(&env, "t-plain", &[], &[]);
    write_users_manifest(&env, "plain", &[&plain], ALL_FIVE);
    // olga is a disabled authentication-administrator (who could otherwise revoke sessions).
    check_actor_without_rights(&env, OLGA, "disabled");
    // Even a disabled global administrator.
    let dga = "dga@contoso.example";
    add_actor(&env, dga, &[GLOBAL], false);
    write_users_manifest(&env, "gary", &[GARY], ALL_FIVE);
    check_actor_without_rights(&env, dga, "disabled");
}

#[test]
fn an_unknown_actor_has_no_rights() {
    let env = Env::example();
    let plain = add_target(&env, "t-plain", &[], &[]);
    write_users_manifest(&env, "plain", &[&plain], ALL_FIVE);
    check_actor_without_rights(&env, "nobody@contoso.example", "nobody@contoso.example");
}

#[test]
fn roles_of_the_actor_are_read_from_the_store_case_insensitively_and_from_the_environment() {
    let env = Env::example();
    let path = write_users_manifest(
        &env,
        "henry",
        &["henry@contoso.example"],
        "    revoke-sessions-before: 2026-11-30T00:00:00Z\n",
    );
    let v = verdicts(&plan_json(&env, &path, Some("Erin@Contoso.EXAMPLE")));
    assert_allowed(
        verdict(&v, "henry@contoso.example", SESSIONS),
        AUTH,
        "actor id in another case",
    );
    let o = env.run_env(
        &["plan", &path, "--format", "json"],
        &[("MFACTL_ACTOR", ERIN)],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    let plan = parse_json(&o);
    assert_eq!(plan["actor"], Value::String(ERIN.into()));
    assert_allowed(
        verdict(&verdicts(&plan), "henry@contoso.example", SESSIONS),
        AUTH,
        "MFACTL_ACTOR",
    );
}

#[test]
fn without_an_actor_verdicts_are_null_and_say_who_could_approve() {
    let (env, _, path) = matrix_env();
    let plan = plan_json(&env, &path, None);
    assert_eq!(plan["actor"], Value::Null);
    let v = verdicts(&plan);
    assert_eq!(v.len(), 40);
    for ((user, action), verdict) in &v {
        assert_eq!(verdict, &Value::Null, "{action} on {user}");
    }
    assert_eq!(plan["summary"]["denied"], Value::from(0));
    let o = env.run(&["plan", &path, "--detailed-exitcode"]);
    assert_eq!(o.code, 2, "pending changes, none denied: {}", o.all());

    // The text plan names the roles that could approve each change.
    let o = env.ok(&["plan", &path]);
    let text = &o.stdout;
    let block = text
        .split("\n\n")
        .find(|b| b.starts_with("t-global@contoso.example"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(block.contains(PRIV), "{block}");
    assert!(block.contains(GLOBAL), "{block}");
    assert!(
        !block.contains(HELPDESK),
        "no helpdesk for a global admin: {block}"
    );

    // apply needs an actor.
    let before = env.export();
    let o = env.run(&[
        "apply",
        &path,
        "--auto-approve",
        "--credentials-out",
        "c.tsv",
    ]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("actor"), "{}", o.all());
    assert_eq!(env.export(), before);
}

// ---------------------------------------------------------------------------------------------
// plan --detailed-exitcode
// ---------------------------------------------------------------------------------------------

#[test]
fn detailed_exitcode_is_2_when_all_allowed_3_when_any_denied_0_when_no_changes() {
    let env = Env::example();
    let plain = add_target(&env, "t-plain", &[], &[]);
    let path = write_users_manifest(&env, "plain", &[&plain], ALL_FIVE);
    let code = |actor: &str| {
        let o = env.run(&["plan", &path, "--actor", actor, "--detailed-exitcode"]);
        assert!(!o.stdout.is_empty(), "the plan is still printed");
        o.code
    };
    assert_eq!(code(GARY), 2, "all five allowed for a global administrator");
    assert_eq!(code(PRIYA), 3, "app passwords denied");
    assert_eq!(code(ERIN), 3);
    assert_eq!(code(FRANK), 3);
    assert_eq!(code(OLGA), 3);
    assert_eq!(code("nobody@contoso.example"), 3);

    // Without --detailed-exitcode a computed plan exits 0 whatever its verdicts.
    let o = env.run(&["plan", &path, "--actor", FRANK]);
    assert_eq!(o.code, 0, "{}", o.all());

    // JSON output does not change the exit code.
    let o = env.run(&[
        "plan",
        &path,
        "--actor",
        ERIN,
        "--format",
        "json",
        "--detailed-exitcode",
    ]);
    assert_eq!(o.code, 3, "{}", o.all());

    // Only the resets: all allowed for the helpdesk.
    let reset = write_users_manifest(
        &env,
        "plain",
        &[&plain],
        "    reset-password-before: 2026-11-29T00:00:00Z\n",
    );
    let o = env.run(&["plan", &reset, "--actor", FRANK, "--detailed-exitcode"]);
    assert_eq!(o.code, 2, "{}", o.all());

    // After the apply nothing is pending: 0, for every actor.
    let path = write_users_manifest(&env, "plain", &[&plain], ALL_FIVE);
    let o = apply(&env, &path, GARY, "creds.tsv");
    assert_eq!(o.code, 0, "{}", o.all());
    for actor in [GARY, ERIN, FRANK, OLGA, "nobody@contoso.example"] {
        assert_eq!(code(actor), 0, "no changes pending for {actor}");
    }
    let o = env.run(&["plan", &path, "--detailed-exitcode"]);
    assert_eq!(o.code, 0, "{}", o.all());
}

#[test]
fn detailed_exitcode_for_a_satisfied_manifest_is_0() {
    let env = Env::example();
    // alice's sessions watermark is 2025-12-31T23:00:00Z and her sessions are newer than 2025.
    let path = write_users_manifest(
        &env,
        "old",
        &["alice@contoso.example"],
        "    revoke-sessions-before: 2025-06-01\n",
    );
    let o = env.run(&["plan", &path, "--actor", FRANK, "--detailed-exitcode"]);
    assert_eq!(o.code, 0, "{}", o.all());
    let plan = plan_json(&env, &path, Some(FRANK));
    assert_eq!(plan["changes"], serde_json::json!([]));
}

// ---------------------------------------------------------------------------------------------
// Protected users
// ---------------------------------------------------------------------------------------------

const BREAKGLASS: &str = "breakglass@contoso.example";

fn skipped(plan: &Value) -> Vec<(String, String)> {
    plan["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            (
                s["user"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn all_users_skips_the_protected_user_and_says_so() {
    let env = Env::example();
    env.use_example_policies();
    // breakglass has no session watermark, so without the guardrail it would change.
    env.write(
        "m/all.yaml",
        &manifest(
            "all",
            "  - all-users: true\n    revoke-sessions-before: 2026-11-01T00:00:00Z\n",
        ),
    );
    let plan = plan_json(&env, "m", Some(GARY));
    assert_eq!(
        skipped(&plan),
        [(BREAKGLASS.to_string(), "protected".to_string())]
    );
    let users: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"].as_str().unwrap())
        .collect();
    assert!(!users.contains(&BREAKGLASS), "{users:?}");
    assert!(users.contains(&GARY), "{users:?}");

    let before = env.show(BREAKGLASS);
    let o = apply(&env, "m", GARY, "creds.tsv");
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(
        env.show(BREAKGLASS),
        before,
        "the protected user was changed"
    );
    assert!(audit_json(&env)
        .iter()
        .all(|r| r["user"] != Value::String(BREAKGLASS.into())));
}

#[test]
fn a_group_selector_skips_the_protected_user_and_says_so() {
    let env = Env::example();
    env.use_example_policies();
    env.import(&user_yaml(
        BREAKGLASS,
        &[GLOBAL],
        &["engineering"],
        &target_state("bg"),
    ));
    env.write(
        "m/eng.yaml",
        &manifest("eng", &format!("  - group: Engineering\n{ALL_FIVE}")),
    );
    let plan = plan_json(&env, "m", Some(GARY));
    assert_eq!(
        skipped(&plan),
        [(BREAKGLASS.to_string(), "protected".to_string())]
    );
    let users: std::collections::BTreeSet<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"].as_str().unwrap())
        .collect();
    assert_eq!(
        users.into_iter().collect::<Vec<_>>(),
        ["carol@contoso.example", "henry@contoso.example"]
    );
    // The text plan says so too.
    let o = env.ok(&["plan", "m", "--actor", GARY]);
    assert!(o.stdout.contains(BREAKGLASS), "{}", o.stdout);
    assert!(o.stdout.contains("protected"), "{}", o.stdout);

    let before = env.show(BREAKGLASS);
    let o = apply(&env, "m", GARY, "creds.tsv");
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(env.show(BREAKGLASS), before);
}

#[test]
fn a_protected_user_named_explicitly_is_an_error() {
    let env = Env::example();
    env.use_example_policies();
    // line 6 is the entry; the second user of the flow list starts at column 36.
    env.write(
        "m/bg.yaml",
        &manifest(
            "bg",
            "  - users: [alice@contoso.example, Breakglass@Contoso.example]\n    \
             revoke-sessions-before: 2026-11-01T00:00:00Z\n",
        ),
    );
    let before = env.export();
    for args in [
        vec!["validate", "m"],
        vec!["plan", "m", "--actor", GARY],
        vec!["plan", "m", "--actor", GARY, "--detailed-exitcode"],
        vec!["apply", "m", "--auto-approve", "--actor", GARY],
    ] {
        let o = env.run(&args);
        assert_eq!(o.code, 1, "{args:?}: {}", o.all());
        assert!(
            o.stderr.contains("m/bg.yaml:6:36: "),
            "{args:?}: {}",
            o.all()
        );
        assert!(o.stderr.contains("protected"), "{}", o.all());
    }
    assert_eq!(env.export(), before);
    assert_eq!(audit_json(&env), Vec::<Value>::new());
}

// ---------------------------------------------------------------------------------------------
// --policies DIR
// ---------------------------------------------------------------------------------------------

const OPERATOR_ROLES: &str =
    "roles:\n  - name: mfa-operator\n    actions: [revoke-sessions]\n    targets: any\n";
const OPERATOR_GUARDRAILS: &str =
    "protected-users: [alice@contoso.example]\nmax-users-per-apply: 500\nmax-future-skew: 5m\n";

fn operator_env() -> (Env, &'static str, String) {
    let env = Env::example();
    let op = "op@contoso.example";
    add_actor(&env, op, &["mfa-operator"], true);
    env.write("custom/roles.yaml", OPERATOR_ROLES);
    env.write("custom/guardrails.yaml", OPERATOR_GUARDRAILS);
    // gary: a session from 2025-10-15 and no devices watermark.
    let path = write_users_manifest(
        &env,
        "gary",
        &[GARY],
        "    revoke-sessions-before: 2026-01-01T00:00:00Z\n    \
         revoke-trusted-devices-before: 2026-01-01T00:00:00Z\n",
    );
    (env, op, path)
}

fn plan_with_policies(env: &Env, dir: &str, path: &str, actor: &str) -> Value {
    let o = env.run(&[
        "--policies",
        dir,
        "plan",
        path,
        "--format",
        "json",
        "--actor",
        actor,
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    parse_json(&o)
}

#[test]
fn custom_policies_are_read_from_the_policies_directory() {
    let (env, op, path) = operator_env();
    let v = verdicts(&plan_with_policies(&env, "custom", &path, op));
    assert_allowed(verdict(&v, GARY, SESSIONS), "mfa-operator", "custom role");
    let r = assert_denied(verdict(&v, GARY, DEVICES), "custom role, other action");
    assert!(r.contains(DEVICES), "{r}");
    // Under these policies the default roles grant nothing, not even global-administrator.
    for actor in [GARY, ERIN] {
        let v = verdicts(&plan_with_policies(&env, "custom", &path, actor));
        assert_denied(verdict(&v, GARY, SESSIONS), actor);
        assert_denied(verdict(&v, GARY, DEVICES), actor);
    }
    // Without --policies (and no ./policies) the built-in defaults apply: mfa-operator is nobody.
    let v = verdicts(&plan_json(&env, &path, Some(op)));
    assert_denied(verdict(&v, GARY, SESSIONS), "default policies");
    let v = verdicts(&plan_json(&env, &path, Some(GARY)));
    assert_allowed(verdict(&v, GARY, SESSIONS), GLOBAL, "default policies");

    // The operator's apply of the allowed change goes through, recorded as mfa-operator.
    let sessions = write_users_manifest(
        &env,
        "gary",
        &[GARY],
        "    revoke-sessions-before: 2026-01-01T00:00:00Z\n",
    );
    let o = env.run(&[
        "--policies",
        "custom",
        "apply",
        &sessions,
        "--auto-approve",
        "--actor",
        op,
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    let audit = audit_json(&env);
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["role"], Value::String("mfa-operator".into()));
}

#[test]
fn custom_guardrails_are_read_from_the_policies_directory_too() {
    let (env, _, _) = operator_env();
    // custom/guardrails.yaml protects alice instead of breakglass.
    env.write(
        "m/alice.yaml",
        &manifest(
            "alice",
            "  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-01T00:00:00Z\n",
        ),
    );
    let o = env.run(&["--policies", "custom", "validate", "m/alice.yaml"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("m/alice.yaml:6:13: "), "{}", o.all());
    assert!(o.stderr.contains("protected"), "{}", o.all());
    env.ok(&["validate", "m/alice.yaml"]);

    env.write(
        "m/bg.yaml",
        &manifest(
            "bg",
            "  - users: [breakglass@contoso.example]\n    revoke-sessions-before: 2026-11-01T00:00:00Z\n",
        ),
    );
    env.ok(&["--policies", "custom", "validate", "m/bg.yaml"]);
    // The built-in guardrails protect nobody; the repository's example protects breakglass.
    env.ok(&["validate", "m/bg.yaml"]);
    let o = env.run(&["--policies", EXAMPLE_POLICIES, "validate", "m/bg.yaml"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("protected"), "{}", o.all());
}

#[test]
fn a_policies_directory_in_the_working_directory_is_used_by_default() {
    let (env, op, path) = operator_env();
    env.write("policies/roles.yaml", OPERATOR_ROLES);
    env.write("policies/guardrails.yaml", OPERATOR_GUARDRAILS);
    let v = verdicts(&plan_json(&env, &path, Some(op)));
    assert_allowed(verdict(&v, GARY, SESSIONS), "mfa-operator", "./policies");
}

#[test]
fn a_malformed_roles_file_is_an_error_naming_the_file() {
    let (env, op, path) = operator_env();
    let before = env.export();
    for (name, text) in [
        ("syntax", "roles:\n  - name: mfa-operator\n    actions: [revoke-sessions\n"),
        (
            "unknown-action",
            "roles:\n  - name: x\n    actions: [nuke-everything]\n    targets: any\n",
        ),
        (
            "bad-targets",
            "roles:\n  - name: x\n    actions: [revoke-sessions]\n    targets: everyone\n",
        ),
        ("wrong-shape", "roles: mfa-operator\n"),
        (
            "unknown-key",
            "roles:\n  - name: x\n    actions: [revoke-sessions]\n    targets: any\n    scope: all\n",
        ),
        (
            "duplicate-role",
            "roles:\n  - name: x\n    actions: [revoke-sessions]\n    targets: any\n  \
             - name: x\n    actions: [reset-password]\n    targets: any\n",
        ),
    ] {
        let dir = format!("bad-{name}");
        env.write(&format!("{dir}/roles.yaml"), text);
        env.write(&format!("{dir}/guardrails.yaml"), OPERATOR_GUARDRAILS);
        for args in [
            vec!["--policies", dir.as_str(), "plan", path.as_str(), "--actor", op],
            vec!["--policies", dir.as_str(), "validate", path.as_str()],
            vec![
                "--policies",
                dir.as_str(),
                "apply",
                path.as_str(),
                "--auto-approve",
                "--actor",
                GARY,
            ],
        ] {
            let o = env.run(&args);
            assert_eq!(o.code, 1, "{name} {args:?}: {}", o.all());
            assert!(
                o.stderr.contains(&format!("{dir}/roles.yaml")),
                "{name}: the message names the file: {}",
                o.all()
            );
            assert!(!o.stderr.contains("panicked"), "{}", o.all());
        }
    }
    assert_eq!(env.export(), before);
}

#[test]
fn a_missing_policies_directory_is_an_error() {
    let (env, op, path) = operator_env();
    let o = env.run(&["--policies", "nowhere", "plan", &path, "--actor", op]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("nowhere"), "{}", o.all());
}

#[test]
fn a_malformed_guardrails_file_is_an_error_naming_the_file() {
    let (env, op, path) = operator_env();
    for (name, text) in [
        ("skew", "max-future-skew: five minutes\n"),
        ("unknown-key", "protected-user: [alice@contoso.example]\n"),
        ("syntax", "protected-users: [alice@contoso.example\n"),
    ] {
        let dir = format!("bad-{name}");
        env.write(&format!("{dir}/roles.yaml"), OPERATOR_ROLES);
        env.write(&format!("{dir}/guardrails.yaml"), text);
        let o = env.run(&["--policies", &dir, "plan", &path, "--actor", op]);
        assert_eq!(o.code, 1, "{name}: {}", o.all());
        assert!(
            o.stderr.contains(&format!("{dir}/guardrails.yaml")),
            "{name}: {}",
            o.all()
        );
    }
}
