//! Unit and property tests of the pure planner (docs/manifests.md, docs/store.md, docs/roles.md
//! and the plan part of docs/commands.md).
//!
//! The property tests compare the planner with an independent reference model written from the
//! tables of docs/store.md ("When a setting is satisfied"), and check idempotence (apply the plan,
//! plan again: nothing) and independence of manifest and entry order.

use super::{checked_plan, simulate, Actual, Plan, Skip, Slice, Val};
use crate::manifest::locate::Seg;
use crate::manifest::{Entry, Manifest, Problem, Selector, Settings, Where};
use crate::model::{
    key_of, Action, ActionKind, AppPassword, Device, Group, Method, Session, Timestamp, User,
};
use crate::policy::{Actor, Policy, Requester, Requesters, Verdict};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).expect("a valid test timestamp")
}

fn now() -> Timestamp {
    ts("2026-11-27T12:00:00Z")
}

fn user(id: &str) -> User {
    User {
        id: id.to_string(),
        display_name: String::new(),
        enabled: true,
        roles: Vec::new(),
        groups: Vec::new(),
        password_set_at: None,
        must_change_password: false,
        registration_valid_from: None,
        sessions_valid_from: None,
        devices_valid_from: None,
        methods: Vec::new(),
        sessions: Vec::new(),
        trusted_devices: Vec::new(),
        app_passwords: Vec::new(),
    }
}

fn method(id: &str, at: Timestamp) -> Method {
    Method {
        id: id.into(),
        kind: "authenticator-app".into(),
        registered_at: at,
    }
}
fn session(id: &str, at: Timestamp) -> Session {
    Session {
        id: id.into(),
        issued_at: at,
    }
}
fn device(id: &str, at: Timestamp) -> Device {
    Device {
        id: id.into(),
        name: format!("{id}-laptop"),
        remembered_at: at,
    }
}
fn app_password(id: &str, at: Timestamp) -> AppPassword {
    AppPassword {
        id: id.into(),
        name: format!("{id}-outlook"),
        created_at: at,
    }
}

fn directory(users: Vec<User>, groups: &[(&str, bool)]) -> Actual {
    Actual {
        users: users.into_iter().map(|u| (key_of(&u.id), u)).collect(),
        groups: groups
            .iter()
            .map(|(name, ra)| {
                (
                    key_of(name),
                    Group {
                        name: name.to_string(),
                        role_assignable: *ra,
                    },
                )
            })
            .collect(),
        revision: 7,
    }
}

fn manifest(name: &str, entries: Vec<Entry>) -> Manifest {
    Manifest {
        name: name.to_string(),
        description: None,
        file: format!("manifests/{name}.yaml"),
        doc: 0,
        entries,
    }
}

fn users_sel(ids: &[&str]) -> Selector {
    Selector::Users(ids.iter().map(|s| s.to_string()).collect())
}

fn entry(selector: Selector, except: &[&str], settings: Settings) -> Entry {
    Entry {
        selector,
        except: except.iter().map(|s| s.to_string()).collect(),
        settings,
    }
}

fn reregister(t: Timestamp) -> Settings {
    Settings {
        require_reregistration: Some(t),
        ..Settings::default()
    }
}
fn sessions_before(t: Timestamp) -> Settings {
    Settings {
        revoke_sessions_before: Some(t),
        ..Settings::default()
    }
}
fn devices_before(t: Timestamp) -> Settings {
    Settings {
        revoke_trusted_devices_before: Some(t),
        ..Settings::default()
    }
}
fn password_before(t: Timestamp) -> Settings {
    Settings {
        reset_password_before: Some(t),
        ..Settings::default()
    }
}
fn no_app_passwords() -> Settings {
    Settings {
        app_passwords_none: true,
        ..Settings::default()
    }
}
fn everything(t: Timestamp) -> Settings {
    Settings {
        require_reregistration: Some(t),
        revoke_sessions_before: Some(t),
        revoke_trusted_devices_before: Some(t),
        reset_password_before: Some(t),
        app_passwords_none: true,
    }
}

fn known(id: &str, roles: &[&str]) -> Actor {
    Actor::Known {
        id: id.to_string(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}
fn global_admin() -> Actor {
    known("root@contoso.example", &["global-administrator"])
}

fn protecting(ids: &[&str]) -> Policy {
    let mut p = Policy::defaults();
    p.guardrails.protected_users = ids.iter().map(|u| key_of(u)).collect();
    p
}

/// Plans with the default policy, no actor, at `now()`; panics on problems.
fn run(manifests: &[Manifest], actual: &Actual) -> Plan {
    checked_plan(manifests, actual, &Policy::defaults(), &Actor::None, now())
        .unwrap_or_else(|p| panic!("unexpected problems: {p:#?}"))
}

fn problems(manifests: &[Manifest], actual: &Actual, policy: &Policy) -> Vec<Problem> {
    match checked_plan(manifests, actual, policy, &Actor::None, now()) {
        Ok(p) => panic!("expected problems, got a plan: {p:#?}"),
        Err(problems) => problems,
    }
}

/// The store after applying every change of `p` (the same rules as the SQL, via `simulate`).
fn apply_all(actual: &Actual, p: &Plan) -> Actual {
    let mut per_user: BTreeMap<String, Vec<Action>> = BTreeMap::new();
    for c in &p.changes {
        per_user
            .entry(key_of(&c.user))
            .or_default()
            .push(c.action.clone());
    }
    let mut next = actual.clone();
    for (key, actions) in per_user {
        let u = next
            .users
            .get_mut(&key)
            .unwrap_or_else(|| panic!("a change for {key}, who is not in the store"));
        *u = simulate(u, &actions);
    }
    next.revision += 1;
    next
}

fn path(doc: usize, segs: Vec<Seg>) -> Where {
    Where::Path { doc, path: segs }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A user with something of every kind on both sides of `t()` = 2026-11-20.
fn t() -> Timestamp {
    ts("2026-11-20T00:00:00Z")
}
fn alice() -> User {
    let mut u = user("Alice@Contoso.example");
    u.password_set_at = Some(ts("2026-01-01T00:00:00Z"));
    u.devices_valid_from = Some(ts("2026-01-01T00:00:00Z"));
    u.methods = vec![
        method("m-old", ts("2026-06-01T00:00:00Z")),
        method("m-new", ts("2026-11-21T00:00:00Z")),
    ];
    u.sessions = vec![
        session("s-2", ts("2026-11-19T23:59:59Z")),
        session("s-1", ts("2026-11-10T00:00:00Z")),
        session("s-3", ts("2026-11-20T00:00:00Z")), // exactly at T: still valid
    ];
    u.trusted_devices = vec![
        device("d-1", ts("2026-10-01T00:00:00Z")),
        device("d-2", ts("2026-11-25T00:00:00Z")),
    ];
    u.app_passwords = vec![
        app_password("a-2", ts("2024-02-01T00:00:00Z")),
        app_password("a-1", ts("2025-02-01T00:00:00Z")),
    ];
    u
}

/// Plans one manifest `m` with one `users: [alice]` entry and returns its single change.
fn single_change(settings: Settings) -> super::Change {
    let actual = directory(vec![alice()], &[]);
    let p = run(
        &[manifest(
            "m",
            vec![entry(users_sel(&["alice@contoso.example"]), &[], settings)],
        )],
        &actual,
    );
    assert_eq!(p.changes.len(), 1, "{:#?}", p.changes);
    let c = p.changes.into_iter().next().unwrap();
    assert_eq!(c.user, "Alice@Contoso.example", "the store's spelling");
    assert_eq!(c.sources, strs(&["m"]));
    c
}

// ---------------------------------------------------------------------------------------------
// Unit tests: each setting
// ---------------------------------------------------------------------------------------------

#[test]
fn require_reregistration_raises_the_watermark_and_removes_older_methods() {
    let c = single_change(reregister(t()));
    assert_eq!(c.action, Action::RequireReregistration { before: t() });
    assert_eq!(
        c.before,
        vec![
            ("registration-valid-from", Val::Time(None)),
            ("methods", Val::Count(2)),
        ]
    );
    assert_eq!(
        c.after,
        vec![
            ("registration-valid-from", Val::Time(Some(t()))),
            ("methods", Val::Count(1)),
        ]
    );
    assert_eq!(c.removes, strs(&["m-old"]));
}

#[test]
fn revoke_sessions_removes_sessions_issued_before_t_sorted_by_id() {
    let c = single_change(sessions_before(t()));
    assert_eq!(c.action, Action::RevokeSessions { before: t() });
    assert_eq!(
        c.before,
        vec![
            ("sessions-valid-from", Val::Time(None)),
            ("sessions", Val::Count(3)),
        ]
    );
    assert_eq!(
        c.after,
        vec![
            ("sessions-valid-from", Val::Time(Some(t()))),
            ("sessions", Val::Count(1)),
        ]
    );
    assert_eq!(c.removes, strs(&["s-1", "s-2"]));
}

#[test]
fn revoke_trusted_devices_raises_an_existing_watermark() {
    let c = single_change(devices_before(t()));
    assert_eq!(c.action, Action::RevokeTrustedDevices { before: t() });
    assert_eq!(
        c.before,
        vec![
            (
                "devices-valid-from",
                Val::Time(Some(ts("2026-01-01T00:00:00Z")))
            ),
            ("trusted-devices", Val::Count(2)),
        ]
    );
    assert_eq!(
        c.after,
        vec![
            ("devices-valid-from", Val::Time(Some(t()))),
            ("trusted-devices", Val::Count(1)),
        ]
    );
    assert_eq!(c.removes, strs(&["d-1"]));
}

#[test]
fn reset_password_sets_a_must_change_password_at_now() {
    let c = single_change(password_before(t()));
    assert_eq!(
        c.action,
        Action::ResetPassword {
            before: t(),
            set_at: now()
        }
    );
    assert_eq!(
        c.before,
        vec![
            (
                "password-set-at",
                Val::Time(Some(ts("2026-01-01T00:00:00Z")))
            ),
            ("must-change-password", Val::Flag(false)),
        ]
    );
    assert_eq!(
        c.after,
        vec![
            ("password-set-at", Val::Time(Some(now()))),
            ("must-change-password", Val::Flag(true)),
        ]
    );
    assert!(c.removes.is_empty(), "{:?}", c.removes);
}

#[test]
fn app_passwords_none_deletes_every_app_password() {
    let c = single_change(no_app_passwords());
    assert_eq!(c.action, Action::DeleteAppPasswords);
    assert_eq!(c.before, vec![("app-passwords", Val::Count(2))]);
    assert_eq!(c.after, vec![("app-passwords", Val::Count(0))]);
    assert_eq!(c.removes, strs(&["a-1", "a-2"]));
}

#[test]
fn a_user_who_already_complies_gets_no_change() {
    let mut u = user("bob@contoso.example");
    u.registration_valid_from = Some(t());
    u.sessions_valid_from = Some(ts("2026-11-21T00:00:00Z"));
    u.devices_valid_from = Some(t());
    u.password_set_at = Some(t());
    u.methods = vec![method("m-1", t())];
    u.sessions = vec![session("s-1", ts("2026-11-22T00:00:00Z"))];
    u.trusted_devices = vec![device("d-1", ts("2026-11-26T00:00:00Z"))];
    let actual = directory(vec![u], &[]);
    let p = run(
        &[manifest(
            "m",
            vec![entry(
                users_sel(&["bob@contoso.example"]),
                &[],
                everything(t()),
            )],
        )],
        &actual,
    );
    assert!(p.changes.is_empty(), "{:#?}", p.changes);
    assert!(p.skipped.is_empty());
    assert_eq!(p.store_revision, 7);
    assert_eq!(p.created_at, now());
}

#[test]
fn a_watermark_alone_is_not_enough_when_an_older_object_remains() {
    // E.g. an import restored a session from before the watermark: the setting is not satisfied.
    let mut u = user("bob@contoso.example");
    u.sessions_valid_from = Some(ts("2026-11-25T00:00:00Z"));
    u.sessions = vec![session("s-9", ts("2026-11-01T00:00:00Z"))];
    let actual = directory(vec![u], &[]);
    let p = run(
        &[manifest(
            "m",
            vec![entry(
                users_sel(&["bob@contoso.example"]),
                &[],
                sessions_before(t()),
            )],
        )],
        &actual,
    );
    assert_eq!(p.changes.len(), 1, "{:#?}", p.changes);
    let c = &p.changes[0];
    assert_eq!(c.action, Action::RevokeSessions { before: t() });
    assert_eq!(c.removes, strs(&["s-9"]));
    // The watermark never goes down.
    assert_eq!(
        c.after,
        vec![
            (
                "sessions-valid-from",
                Val::Time(Some(ts("2026-11-25T00:00:00Z")))
            ),
            ("sessions", Val::Count(0)),
        ]
    );
}

#[test]
fn no_objects_but_a_low_watermark_still_raises_it() {
    let mut u = user("bob@contoso.example");
    u.registration_valid_from = Some(ts("2026-01-01T00:00:00Z"));
    let actual = directory(vec![u], &[]);
    let p = run(
        &[manifest(
            "m",
            vec![entry(
                users_sel(&["bob@contoso.example"]),
                &[],
                reregister(t()),
            )],
        )],
        &actual,
    );
    assert_eq!(p.changes.len(), 1, "{:#?}", p.changes);
    assert!(p.changes[0].removes.is_empty());
    assert_eq!(
        p.changes[0].after,
        vec![
            ("registration-valid-from", Val::Time(Some(t()))),
            ("methods", Val::Count(0)),
        ]
    );
    let again = run(
        &[manifest(
            "m",
            vec![entry(
                users_sel(&["bob@contoso.example"]),
                &[],
                reregister(t()),
            )],
        )],
        &apply_all(&actual, &p),
    );
    assert!(again.changes.is_empty(), "{:#?}", again.changes);
}

#[test]
fn no_app_passwords_means_no_change() {
    let actual = directory(vec![user("bob@contoso.example")], &[]);
    let p = run(
        &[manifest(
            "m",
            vec![entry(
                users_sel(&["bob@contoso.example"]),
                &[],
                no_app_passwords(),
            )],
        )],
        &actual,
    );
    assert!(p.changes.is_empty(), "{:#?}", p.changes);
}

// ---------------------------------------------------------------------------------------------
// Unit tests: selectors, except, protected users
// ---------------------------------------------------------------------------------------------

fn contractors() -> Actual {
    let mut a = alice();
    a.groups = vec!["contractors".into()];
    let mut b = user("Bob@Contoso.example");
    b.groups = vec!["staff".into(), "CONTRACTORS".into()];
    b.app_passwords = vec![app_password("b-1", t())];
    let mut c = user("carol@contoso.example");
    c.groups = vec!["staff".into()];
    c.app_passwords = vec![app_password("c-1", t())];
    directory(vec![a, b, c], &[("Contractors", false), ("staff", false)])
}

#[test]
fn group_selector_matches_members_case_insensitively() {
    let actual = contractors();
    for name in ["Contractors", "contractors", "CONTRACTORS"] {
        let p = run(
            &[manifest(
                "m",
                vec![entry(Selector::Group(name.into()), &[], no_app_passwords())],
            )],
            &actual,
        );
        let users: Vec<&str> = p.changes.iter().map(|c| c.user.as_str()).collect();
        assert_eq!(
            users,
            vec!["Alice@Contoso.example", "Bob@Contoso.example"],
            "group {name}"
        );
        assert!(p
            .changes
            .iter()
            .all(|c| c.action == Action::DeleteAppPasswords));
    }
}

#[test]
fn all_users_selects_the_whole_directory() {
    let p = run(
        &[manifest(
            "m",
            vec![entry(Selector::AllUsers, &[], no_app_passwords())],
        )],
        &contractors(),
    );
    let users: Vec<&str> = p.changes.iter().map(|c| c.user.as_str()).collect();
    assert_eq!(
        users,
        vec![
            "Alice@Contoso.example",
            "Bob@Contoso.example",
            "carol@contoso.example"
        ]
    );
}

#[test]
fn except_excludes_users_case_insensitively() {
    let actual = contractors();
    let p = run(
        &[manifest(
            "m",
            vec![entry(
                Selector::Group("contractors".into()),
                &["ALICE@contoso.EXAMPLE"],
                no_app_passwords(),
            )],
        )],
        &actual,
    );
    let users: Vec<&str> = p.changes.iter().map(|c| c.user.as_str()).collect();
    assert_eq!(users, vec!["Bob@Contoso.example"]);

    let p = run(
        &[manifest(
            "m",
            vec![entry(
                users_sel(&["alice@contoso.example", "carol@contoso.example"]),
                &["carol@contoso.example"],
                no_app_passwords(),
            )],
        )],
        &actual,
    );
    let users: Vec<&str> = p.changes.iter().map(|c| c.user.as_str()).collect();
    assert_eq!(users, vec!["Alice@Contoso.example"]);

    // `except` applies to its own entry only: another entry still selects the user.
    let p = run(
        &[manifest(
            "m",
            vec![
                entry(
                    Selector::AllUsers,
                    &["carol@contoso.example"],
                    no_app_passwords(),
                ),
                entry(
                    users_sel(&["carol@contoso.example"]),
                    &[],
                    no_app_passwords(),
                ),
            ],
        )],
        &actual,
    );
    assert_eq!(p.changes.len(), 3, "{:#?}", p.changes);
}

#[test]
fn users_selector_is_case_insensitive_and_reports_the_store_spelling() {
    let p = run(
        &[manifest(
            "m",
            vec![entry(
                users_sel(&["bob@CONTOSO.example"]),
                &[],
                no_app_passwords(),
            )],
        )],
        &contractors(),
    );
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].user, "Bob@Contoso.example");
}

fn with_breakglass() -> Actual {
    let mut actual = contractors();
    let mut bg = user("BreakGlass@Contoso.example");
    bg.groups = vec!["contractors".into()];
    bg.app_passwords = vec![app_password("bg-1", t())];
    bg.sessions = vec![session("bg-s", ts("2026-01-01T00:00:00Z"))];
    actual.users.insert(key_of(&bg.id), bg);
    actual
}

#[test]
fn protected_users_are_skipped_by_group_and_all_users() {
    let actual = with_breakglass();
    let policy = protecting(&["breakglass@contoso.example"]);
    let manifests = [
        manifest(
            "by-group",
            vec![entry(
                Selector::Group("Contractors".into()),
                &[],
                no_app_passwords(),
            )],
        ),
        manifest(
            "by-all",
            vec![entry(Selector::AllUsers, &[], sessions_before(t()))],
        ),
        manifest(
            "unrelated",
            vec![entry(
                users_sel(&["carol@contoso.example"]),
                &[],
                no_app_passwords(),
            )],
        ),
    ];
    let p = checked_plan(&manifests, &actual, &policy, &Actor::None, now()).expect("a plan");
    assert!(
        p.changes
            .iter()
            .all(|c| key_of(&c.user) != "breakglass@contoso.example"),
        "{:#?}",
        p.changes
    );
    assert_eq!(
        p.skipped,
        vec![Skip {
            user: "BreakGlass@Contoso.example".into(),
            reason: "protected".into(),
            sources: strs(&["by-all", "by-group"]),
        }]
    );
    // Without the guardrail the same manifests would change the user.
    let p =
        checked_plan(&manifests, &actual, &protecting(&[]), &Actor::None, now()).expect("a plan");
    assert!(p.skipped.is_empty());
    let bg: Vec<ActionKind> = p
        .changes
        .iter()
        .filter(|c| c.user == "BreakGlass@Contoso.example")
        .map(|c| c.kind())
        .collect();
    assert_eq!(
        bg,
        vec![ActionKind::DeleteAppPasswords, ActionKind::RevokeSessions]
    );
}

#[test]
fn a_protected_user_named_in_users_is_an_error() {
    let actual = with_breakglass();
    let policy = protecting(&["breakglass@contoso.example"]);
    let manifests = [
        manifest(
            "ok",
            vec![entry(Selector::AllUsers, &[], no_app_passwords())],
        ),
        manifest(
            "bad",
            vec![
                entry(Selector::AllUsers, &[], no_app_passwords()),
                entry(
                    users_sel(&["carol@contoso.example", "BREAKGLASS@contoso.example"]),
                    &[],
                    sessions_before(t()),
                ),
            ],
        ),
    ];
    let ps = problems(&manifests, &actual, &policy);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].file, "manifests/bad.yaml");
    assert_eq!(
        ps[0].at,
        path(
            0,
            vec![
                Seg::key("spec"),
                Seg::Index(1),
                Seg::key("users"),
                Seg::Index(1)
            ]
        )
    );
    assert!(ps[0].message.contains("protected"), "{}", ps[0].message);
    assert!(
        ps[0].message.contains("BREAKGLASS@contoso.example"),
        "{}",
        ps[0].message
    );
}

#[test]
fn unknown_users_and_groups_are_errors() {
    let actual = contractors();
    let mut m = manifest(
        "m",
        vec![
            entry(
                users_sel(&["alice@contoso.example", "ghost@contoso.example"]),
                &[],
                no_app_passwords(),
            ),
            entry(
                Selector::Group("contractors".into()),
                &["phantom@contoso.example"],
                no_app_passwords(),
            ),
            entry(Selector::Group("nobody".into()), &[], no_app_passwords()),
        ],
    );
    m.doc = 2;
    let ps = problems(&[m], &actual, &Policy::defaults());
    let at: Vec<&Where> = ps.iter().map(|p| &p.at).collect();
    assert_eq!(
        at,
        vec![
            &path(
                2,
                vec![
                    Seg::key("spec"),
                    Seg::Index(0),
                    Seg::key("users"),
                    Seg::Index(1)
                ]
            ),
            &path(
                2,
                vec![
                    Seg::key("spec"),
                    Seg::Index(1),
                    Seg::key("except"),
                    Seg::Index(0)
                ]
            ),
            &path(2, vec![Seg::key("spec"), Seg::Index(2), Seg::key("group")]),
        ],
        "{ps:#?}"
    );
    assert!(ps[0]
        .message
        .contains("unknown user `ghost@contoso.example`"));
    assert!(ps[1]
        .message
        .contains("unknown user `phantom@contoso.example`"));
    assert!(ps[2].message.contains("unknown group `nobody`"));
    assert!(ps.iter().all(|p| p.file == "manifests/m.yaml"));
}

#[test]
fn timestamps_beyond_the_allowed_skew_are_errors() {
    let actual = contractors();
    let skew = Policy::defaults().guardrails.max_future_skew_secs;
    assert_eq!(skew, 300);
    let edge = now().plus_secs(skew);
    let over = now().plus_secs(skew + 1);
    let fields = [
        (
            "require-reregistration",
            reregister as fn(Timestamp) -> Settings,
        ),
        ("revoke-sessions-before", sessions_before),
        ("revoke-trusted-devices-before", devices_before),
        ("reset-password-before", password_before),
    ];
    for (field, make) in fields {
        let at_edge = [manifest(
            "m",
            vec![entry(Selector::AllUsers, &[], make(edge))],
        )];
        assert!(
            checked_plan(&at_edge, &actual, &Policy::defaults(), &Actor::None, now()).is_ok(),
            "{field} at exactly now + skew is allowed"
        );
        let beyond = [manifest(
            "m",
            vec![
                entry(Selector::AllUsers, &[], no_app_passwords()),
                entry(Selector::AllUsers, &[], make(over)),
            ],
        )];
        let ps = problems(&beyond, &actual, &Policy::defaults());
        assert_eq!(ps.len(), 1, "{ps:#?}");
        assert_eq!(
            ps[0].at,
            path(0, vec![Seg::key("spec"), Seg::Index(1), Seg::key(field)])
        );
        assert!(ps[0].message.contains("in the future"), "{}", ps[0].message);
    }
    // A wider skew in the policy admits the same timestamp.
    let mut wide = Policy::defaults();
    wide.guardrails.max_future_skew_secs = 3600;
    let beyond = [manifest(
        "m",
        vec![entry(Selector::AllUsers, &[], sessions_before(over))],
    )];
    assert!(checked_plan(&beyond, &actual, &wide, &Actor::None, now()).is_ok());
}

#[test]
fn duplicate_manifest_names_are_an_error() {
    let actual = contractors();
    let a = manifest(
        "dup",
        vec![entry(Selector::AllUsers, &[], no_app_passwords())],
    );
    let mut b = a.clone();
    b.file = "manifests/other.yaml".into();
    b.doc = 1;
    let ps = problems(&[a.clone(), b], &actual, &Policy::defaults());
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].file, "manifests/other.yaml");
    assert_eq!(
        ps[0].at,
        path(1, vec![Seg::key("metadata"), Seg::key("name")])
    );
    assert!(
        ps[0].message.contains("duplicate metadata.name `dup`"),
        "{}",
        ps[0].message
    );
    assert!(
        ps[0].message.contains("manifests/dup.yaml"),
        "{}",
        ps[0].message
    );
    // Distinct names are fine.
    let mut c = a.clone();
    c.name = "other".into();
    assert!(checked_plan(&[a, c], &actual, &Policy::defaults(), &Actor::None, now()).is_ok());
}

#[test]
fn needs_lists_every_named_user_and_group_by_key() {
    let manifests = [
        manifest(
            "a",
            vec![entry(
                users_sel(&["Alice@Contoso.example"]),
                &["BOB@contoso.example"],
                no_app_passwords(),
            )],
        ),
        manifest(
            "b",
            vec![entry(
                Selector::Group("Contractors".into()),
                &[],
                no_app_passwords(),
            )],
        ),
    ];
    let n = super::needs(&manifests);
    assert_eq!(
        n.user_keys,
        ["alice@contoso.example", "bob@contoso.example"]
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(n.group_keys, BTreeSet::from(["contractors".to_string()]));
    assert!(!n.all_users);
    let mut with_all = manifests.to_vec();
    with_all.push(manifest(
        "c",
        vec![entry(Selector::AllUsers, &[], no_app_passwords())],
    ));
    assert!(super::needs(&with_all).all_users);
}

// ---------------------------------------------------------------------------------------------
// Unit tests: merging, ordering, reset-password, verdicts
// ---------------------------------------------------------------------------------------------

#[test]
fn merging_takes_the_latest_timestamp_and_names_unsatisfied_sources() {
    // Sessions at Nov 10 and Nov 19 23:59:59 and Nov 20; watermark Nov 15.
    let mut u = alice();
    u.sessions_valid_from = Some(ts("2026-11-15T00:00:00Z"));
    let actual = directory(vec![u], &[]);
    let early = ts("2026-11-01T00:00:00Z"); // satisfied already (watermark Nov 15, no session before)
    let mid = ts("2026-11-18T00:00:00Z"); // not satisfied
    let late = ts("2026-11-21T00:00:00Z"); // not satisfied, the latest
    let manifests = [
        manifest(
            "c-early",
            vec![entry(Selector::AllUsers, &[], sessions_before(early))],
        ),
        manifest(
            "a-late",
            vec![entry(
                users_sel(&["alice@contoso.example"]),
                &[],
                sessions_before(late),
            )],
        ),
        manifest(
            "b-mid",
            vec![
                entry(Selector::AllUsers, &[], sessions_before(mid)),
                entry(Selector::AllUsers, &[], sessions_before(early)),
            ],
        ),
    ];
    let p = run(&manifests, &actual);
    assert_eq!(p.changes.len(), 1, "{:#?}", p.changes);
    let c = &p.changes[0];
    assert_eq!(c.action, Action::RevokeSessions { before: late });
    assert_eq!(c.sources, strs(&["a-late", "b-mid"]));
    assert_eq!(c.removes, strs(&["s-1", "s-2", "s-3"]));
}

#[test]
fn app_passwords_none_wins_over_no_setting() {
    let actual = directory(vec![alice()], &[]);
    let manifests = [
        manifest(
            "x",
            vec![entry(Selector::AllUsers, &[], sessions_before(t()))],
        ),
        manifest(
            "y",
            vec![entry(Selector::AllUsers, &[], no_app_passwords())],
        ),
    ];
    let p = run(&manifests, &actual);
    let got: Vec<(ActionKind, Vec<String>)> = p
        .changes
        .iter()
        .map(|c| (c.kind(), c.sources.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (ActionKind::DeleteAppPasswords, strs(&["y"])),
            (ActionKind::RevokeSessions, strs(&["x"])),
        ]
    );
}

#[test]
fn changes_are_sorted_by_user_then_action() {
    let mut users = Vec::new();
    for id in ["carol@x.example", "Alice@x.example", "bob@x.example"] {
        let mut u = alice();
        u.id = id.to_string();
        users.push(u);
    }
    let actual = directory(users, &[]);
    let manifests = [
        manifest(
            "z",
            vec![entry(
                users_sel(&["bob@x.example", "carol@x.example"]),
                &[],
                everything(t()),
            )],
        ),
        manifest(
            "a",
            vec![entry(Selector::AllUsers, &[], devices_before(t()))],
        ),
    ];
    let p = run(&manifests, &actual);
    let got: Vec<(&str, ActionKind)> = p
        .changes
        .iter()
        .map(|c| (c.user.as_str(), c.kind()))
        .collect();
    use ActionKind::*;
    assert_eq!(
        got,
        vec![
            ("Alice@x.example", RevokeTrustedDevices),
            ("bob@x.example", DeleteAppPasswords),
            ("bob@x.example", RequireReregistration),
            ("bob@x.example", ResetPassword),
            ("bob@x.example", RevokeSessions),
            ("bob@x.example", RevokeTrustedDevices),
            ("carol@x.example", DeleteAppPasswords),
            ("carol@x.example", RequireReregistration),
            ("carol@x.example", ResetPassword),
            ("carol@x.example", RevokeSessions),
            ("carol@x.example", RevokeTrustedDevices),
        ]
    );
    let devices = p
        .changes
        .iter()
        .find(|c| c.user == "bob@x.example" && c.kind() == RevokeTrustedDevices)
        .unwrap();
    assert_eq!(devices.sources, strs(&["a", "z"]));
    assert_eq!(
        p.summary(),
        super::Summary {
            users: 3,
            changes: 11,
            denied: 0
        }
    );
}

#[test]
fn reset_password_sets_at_max_of_now_and_t_and_then_the_plan_is_empty() {
    let actual = directory(vec![alice()], &[]);
    for (t_req, set_at) in [
        (t(), now()),                                 // T in the past: set at now
        (now(), now()),                               // T = now
        (now().plus_secs(120), now().plus_secs(120)), // T within the skew: set at T
    ] {
        let manifests = [manifest(
            "pw",
            vec![entry(Selector::AllUsers, &[], password_before(t_req))],
        )];
        let p = run(&manifests, &actual);
        assert_eq!(p.changes.len(), 1, "{:#?}", p.changes);
        assert_eq!(
            p.changes[0].action,
            Action::ResetPassword {
                before: t_req,
                set_at
            }
        );
        assert_eq!(
            p.changes[0].after,
            vec![
                ("password-set-at", Val::Time(Some(set_at))),
                ("must-change-password", Val::Flag(true)),
            ]
        );
        let after = apply_all(&actual, &p);
        assert!(run(&manifests, &after).changes.is_empty());
        // Still nothing to do later, and after the user changed the password.
        let later = checked_plan(
            &manifests,
            &after,
            &Policy::defaults(),
            &Actor::None,
            now().plus_secs(86_400),
        )
        .unwrap();
        assert!(later.changes.is_empty(), "{:#?}", later.changes);
        let mut complied = after.clone();
        let u = complied.users.values_mut().next().unwrap();
        u.password_set_at = Some(set_at.plus_secs(60));
        u.must_change_password = false;
        assert!(run(&manifests, &complied).changes.is_empty());
    }
}

fn verdict_fixture() -> (Actual, Vec<Manifest>) {
    let mut admin = alice();
    admin.id = "Admin@Contoso.example".into();
    admin.groups = vec!["helpdesk-admins".into()];
    let actual = directory(
        vec![alice(), admin],
        &[("Helpdesk-Admins", true), ("staff", false)],
    );
    let manifests = vec![manifest(
        "m",
        vec![entry(Selector::AllUsers, &[], everything(t()))],
    )];
    (actual, manifests)
}

#[test]
fn without_an_actor_verdicts_are_none_and_could_approve_lists_roles() {
    let (actual, manifests) = verdict_fixture();
    let p = run(&manifests, &actual);
    assert_eq!(p.actor, None);
    assert_eq!(p.changes.len(), 10, "{:#?}", p.changes);
    assert!(p.changes.iter().all(|c| c.verdict.is_none()));
    for c in &p.changes {
        let in_ra_group = c.user == "Admin@Contoso.example";
        let expected: &[&str] = if c.kind() == ActionKind::DeleteAppPasswords {
            &["global-administrator"]
        } else if in_ra_group {
            &[
                "privileged-authentication-administrator",
                "global-administrator",
            ]
        } else if c.kind() == ActionKind::ResetPassword {
            &[
                "helpdesk-administrator",
                "authentication-administrator",
                "privileged-authentication-administrator",
                "global-administrator",
            ]
        } else {
            &[
                "authentication-administrator",
                "privileged-authentication-administrator",
                "global-administrator",
            ]
        };
        assert_eq!(c.could_approve, strs(expected), "{} {}", c.user, c.kind());
    }
    assert_eq!(p.summary().denied, 0);
}

#[test]
fn a_helpdesk_administrator_may_reset_passwords_but_not_revoke_sessions() {
    let (actual, manifests) = verdict_fixture();
    let actor = known("erin@contoso.example", &["helpdesk-administrator"]);
    let p = checked_plan(&manifests, &actual, &Policy::defaults(), &actor, now()).unwrap();
    assert_eq!(p.actor.as_deref(), Some("erin@contoso.example"));
    let alice_changes: Vec<&super::Change> = p
        .changes
        .iter()
        .filter(|c| c.user == "Alice@Contoso.example")
        .collect();
    assert_eq!(alice_changes.len(), 5);
    for c in alice_changes {
        match c.kind() {
            ActionKind::ResetPassword => assert_eq!(
                c.verdict,
                Some(Verdict::Allowed {
                    role: "helpdesk-administrator".into()
                })
            ),
            _ => assert!(
                matches!(&c.verdict, Some(Verdict::Denied { reason }) if reason.contains("helpdesk-administrator")),
                "{:?}",
                c.verdict
            ),
        }
    }
    let revoke = p
        .changes
        .iter()
        .find(|c| c.user == "Alice@Contoso.example" && c.kind() == ActionKind::RevokeSessions)
        .unwrap();
    assert!(revoke.is_denied());
    // Role-assignable group members are out of a helpdesk administrator's reach even for passwords.
    let admin_reset = p
        .changes
        .iter()
        .find(|c| c.user == "Admin@Contoso.example" && c.kind() == ActionKind::ResetPassword)
        .unwrap();
    assert!(admin_reset.is_denied(), "{:?}", admin_reset.verdict);
    assert_eq!(p.summary().denied, 9);
    // A global administrator may do everything.
    let p = checked_plan(
        &manifests,
        &actual,
        &Policy::defaults(),
        &global_admin(),
        now(),
    )
    .unwrap();
    assert!(p
        .changes
        .iter()
        .all(|c| matches!(&c.verdict, Some(Verdict::Allowed { role }) if !role.is_empty())));
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

const IDS: [&str; 6] = [
    "alice@x.example",
    "Bob@X.example",
    "carol@x.example",
    "DAVE@x.example",
    "erin@x.example",
    "Frank@x.example",
];
const GROUPS: [&str; 3] = ["Contractors", "staff", "Helpdesk-Admins"];
const ROLES: [&str; 3] = [
    "global-administrator",
    "reports-reader",
    "helpdesk-administrator",
];

/// A small grid of instants, all before `now()`, so that objects, watermarks and settings often
/// coincide exactly (the `>=` vs `>` boundary).
fn grid(k: u8) -> Timestamp {
    now().plus_secs(-10 * 86_400 + i64::from(k) * 3_600)
}
fn arb_time() -> impl Strategy<Value = Timestamp> {
    (0u8..8).prop_map(grid)
}

/// Spells a name as-is, lowercase or uppercase.
fn spell(s: &str, variant: u8) -> String {
    match variant % 3 {
        0 => s.to_string(),
        1 => s.to_ascii_lowercase(),
        _ => s.to_ascii_uppercase(),
    }
}

fn arb_user(id: &'static str) -> impl Strategy<Value = User> {
    (
        prop::collection::vec(arb_time(), 0..4),
        prop::collection::vec(arb_time(), 0..4),
        prop::collection::vec(arb_time(), 0..3),
        prop::collection::vec(arb_time(), 0..3),
        prop::option::of(arb_time()),
        prop::option::of(arb_time()),
        prop::option::of(arb_time()),
        prop::option::of(arb_time()),
        any::<bool>(),
        prop::collection::vec((0usize..GROUPS.len(), any::<u8>()), 0..3),
        prop::collection::vec(0usize..ROLES.len(), 0..2),
    )
        .prop_map(
            move |(methods, sessions, devices, apws, pw, reg, sess, dev, must, groups, roles)| {
                let mut u = user(id);
                u.methods = methods
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| method(&format!("m-{i}"), t))
                    .collect();
                u.sessions = sessions
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| session(&format!("s-{i}"), t))
                    .collect();
                u.trusted_devices = devices
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| device(&format!("d-{i}"), t))
                    .collect();
                u.app_passwords = apws
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| app_password(&format!("a-{i}"), t))
                    .collect();
                u.password_set_at = pw;
                u.registration_valid_from = reg;
                u.sessions_valid_from = sess;
                u.devices_valid_from = dev;
                u.must_change_password = must;
                u.groups = groups
                    .into_iter()
                    .map(|(g, v)| spell(GROUPS[g], v))
                    .collect();
                u.roles = roles.into_iter().map(|r| ROLES[r].to_string()).collect();
                u
            },
        )
}

/// An entry before its user indices are resolved against the directory's size.
#[derive(Debug, Clone)]
enum RawSelector {
    Users(Vec<(usize, u8)>),
    Group(usize, u8),
    All,
}

#[derive(Debug, Clone)]
struct RawEntry {
    selector: RawSelector,
    except: Vec<(usize, u8)>,
    settings: Settings,
}

fn arb_settings() -> impl Strategy<Value = Settings> {
    (
        prop::option::of(arb_time()),
        prop::option::of(arb_time()),
        prop::option::of(arb_time()),
        prop::option::of(arb_time()),
        any::<bool>(),
    )
        .prop_map(|(reg, sess, dev, pw, apw)| {
            let mut s = Settings {
                require_reregistration: reg,
                revoke_sessions_before: sess,
                revoke_trusted_devices_before: dev,
                reset_password_before: pw,
                app_passwords_none: apw,
            };
            if s == Settings::default() {
                s.app_passwords_none = true; // an entry sets at least one thing
            }
            s
        })
}

fn arb_raw_entry() -> impl Strategy<Value = RawEntry> {
    let name = (0usize..IDS.len(), any::<u8>());
    let selector = prop_oneof![
        3 => prop::collection::vec(name.clone(), 1..4).prop_map(RawSelector::Users),
        2 => (0usize..GROUPS.len(), any::<u8>()).prop_map(|(g, v)| RawSelector::Group(g, v)),
        1 => Just(RawSelector::All),
    ];
    (selector, prop::collection::vec(name, 0..3), arb_settings()).prop_map(
        |(selector, except, settings)| RawEntry {
            selector,
            except,
            settings,
        },
    )
}

#[derive(Debug, Clone)]
struct Scenario {
    actual: Actual,
    manifests: Vec<Manifest>,
    policy: Policy,
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    let dir = (1usize..=IDS.len()).prop_flat_map(|n| {
        (
            IDS[..n].iter().copied().map(arb_user).collect::<Vec<_>>(),
            prop::collection::vec(any::<bool>(), GROUPS.len()),
        )
    });
    let manifests = prop::collection::vec(prop::collection::vec(arb_raw_entry(), 1..=3), 1..=4);
    let protected = prop::option::of((0usize..IDS.len(), any::<u8>()));
    (dir, manifests, protected).prop_map(|((users, ra), raw, protected)| {
        let n = users.len();
        let groups: Vec<(&str, bool)> = GROUPS.iter().copied().zip(ra).collect();
        let actual = directory(users, &groups);
        let mut policy = Policy::defaults();
        let protected_key = protected.map(|(i, v)| {
            let id = spell(IDS[i % n], v);
            policy.guardrails.protected_users.insert(key_of(&id));
            key_of(&id)
        });
        let resolve = |(i, v): (usize, u8)| spell(IDS[i % n], v);
        let manifests = raw
            .into_iter()
            .enumerate()
            .map(|(mi, entries)| {
                let entries = entries
                    .into_iter()
                    .map(|e| {
                        let selector = match e.selector {
                            RawSelector::Users(list) => {
                                // Naming a protected user is an error: leave it to group/all.
                                let list: Vec<String> = list
                                    .into_iter()
                                    .map(resolve)
                                    .filter(|u| Some(key_of(u)) != protected_key)
                                    .collect();
                                if list.is_empty() {
                                    Selector::AllUsers
                                } else {
                                    Selector::Users(list)
                                }
                            }
                            RawSelector::Group(g, v) => Selector::Group(spell(GROUPS[g], v)),
                            RawSelector::All => Selector::AllUsers,
                        };
                        Entry {
                            selector,
                            except: e.except.into_iter().map(resolve).collect(),
                            settings: e.settings,
                        }
                    })
                    .collect();
                let mut m = manifest(&format!("m{mi}"), entries);
                m.doc = mi;
                m
            })
            .collect();
        Scenario {
            actual,
            manifests,
            policy,
        }
    })
}

// --- The reference model, written from the tables of docs/store.md ---------------------------

const KINDS: [ActionKind; 5] = [
    ActionKind::DeleteAppPasswords,
    ActionKind::RequireReregistration,
    ActionKind::ResetPassword,
    ActionKind::RevokeSessions,
    ActionKind::RevokeTrustedDevices,
];

fn requested(s: &Settings, kind: ActionKind) -> Option<Option<Timestamp>> {
    match kind {
        ActionKind::DeleteAppPasswords => s.app_passwords_none.then_some(None),
        ActionKind::RequireReregistration => s.require_reregistration.map(Some),
        ActionKind::ResetPassword => s.reset_password_before.map(Some),
        ActionKind::RevokeSessions => s.revoke_sessions_before.map(Some),
        ActionKind::RevokeTrustedDevices => s.revoke_trusted_devices_before.map(Some),
    }
}

/// The watermark and the object `(id, time)`s of a timestamped kind.
fn objects(u: &User, kind: ActionKind) -> (Option<Timestamp>, Vec<(String, Timestamp)>) {
    match kind {
        ActionKind::RequireReregistration => (
            u.registration_valid_from,
            u.methods
                .iter()
                .map(|m| (m.id.clone(), m.registered_at))
                .collect(),
        ),
        ActionKind::RevokeSessions => (
            u.sessions_valid_from,
            u.sessions
                .iter()
                .map(|s| (s.id.clone(), s.issued_at))
                .collect(),
        ),
        ActionKind::RevokeTrustedDevices => (
            u.devices_valid_from,
            u.trusted_devices
                .iter()
                .map(|d| (d.id.clone(), d.remembered_at))
                .collect(),
        ),
        _ => unreachable!("not a watermark kind"),
    }
}

/// docs/store.md, "When a setting is satisfied".
fn satisfied(u: &User, kind: ActionKind, t: Option<Timestamp>) -> bool {
    match kind {
        ActionKind::DeleteAppPasswords => u.app_passwords.is_empty(),
        ActionKind::ResetPassword => {
            let t = t.expect("a time");
            u.password_set_at.is_some_and(|s| s >= t)
        }
        _ => {
            let t = t.expect("a time");
            let (wm, objs) = objects(u, kind);
            wm.is_some_and(|w| w >= t) && objs.iter().all(|(_, at)| *at >= t)
        }
    }
}

fn names(kind: ActionKind) -> (&'static str, &'static str) {
    match kind {
        ActionKind::RequireReregistration => ("registration-valid-from", "methods"),
        ActionKind::RevokeSessions => ("sessions-valid-from", "sessions"),
        ActionKind::RevokeTrustedDevices => ("devices-valid-from", "trusted-devices"),
        ActionKind::ResetPassword => ("password-set-at", "must-change-password"),
        ActionKind::DeleteAppPasswords => ("app-passwords", ""),
    }
}

/// docs/store.md "applying it" and the JSON plan's `before`/`after` (docs/commands.md), for one
/// user and one merged request.
fn expected_effect(
    u: &User,
    kind: ActionKind,
    t: Option<Timestamp>,
    now: Timestamp,
) -> (Action, Slice, Slice, Vec<String>) {
    let (wm_name, count_name) = names(kind);
    match kind {
        ActionKind::DeleteAppPasswords => {
            let mut ids: Vec<String> = u.app_passwords.iter().map(|a| a.id.clone()).collect();
            ids.sort();
            (
                Action::DeleteAppPasswords,
                vec![(wm_name, Val::Count(u.app_passwords.len()))],
                vec![(wm_name, Val::Count(0))],
                ids,
            )
        }
        ActionKind::ResetPassword => {
            let t = t.unwrap();
            let set_at = if t > now { t } else { now };
            (
                Action::ResetPassword { before: t, set_at },
                vec![
                    (wm_name, Val::Time(u.password_set_at)),
                    (count_name, Val::Flag(u.must_change_password)),
                ],
                vec![
                    (wm_name, Val::Time(Some(set_at))),
                    (count_name, Val::Flag(true)),
                ],
                Vec::new(),
            )
        }
        _ => {
            let t = t.unwrap();
            let (wm, objs) = objects(u, kind);
            let mut removes: Vec<String> = objs
                .iter()
                .filter(|(_, at)| *at < t)
                .map(|(id, _)| id.clone())
                .collect();
            removes.sort();
            let new_wm = match wm {
                Some(w) if w > t => w,
                _ => t,
            };
            let action = match kind {
                ActionKind::RequireReregistration => Action::RequireReregistration { before: t },
                ActionKind::RevokeSessions => Action::RevokeSessions { before: t },
                _ => Action::RevokeTrustedDevices { before: t },
            };
            (
                action,
                vec![
                    (wm_name, Val::Time(wm)),
                    (count_name, Val::Count(objs.len())),
                ],
                vec![
                    (wm_name, Val::Time(Some(new_wm))),
                    (count_name, Val::Count(objs.len() - removes.len())),
                ],
                removes,
            )
        }
    }
}

fn entry_selects(e: &Entry, u: &User) -> bool {
    let selected = match &e.selector {
        Selector::Users(list) => list.iter().any(|x| x.eq_ignore_ascii_case(&u.id)),
        Selector::Group(g) => u.groups.iter().any(|ug| ug.eq_ignore_ascii_case(g)),
        Selector::AllUsers => true,
    };
    selected && !e.except.iter().any(|x| x.eq_ignore_ascii_case(&u.id))
}

/// One expected change: user, action, before, after, removes, sources.
type Expected = (String, Action, Slice, Slice, Vec<String>, Vec<String>);

fn reference(s: &Scenario, now: Timestamp) -> (Vec<Expected>, Vec<Skip>) {
    let mut changes = Vec::new();
    let mut skipped = Vec::new();
    let mut by_key: Vec<&User> = s.actual.users.values().collect();
    by_key.sort_by_key(|u| key_of(&u.id));
    for u in by_key {
        let wanting: Vec<(&str, &Entry)> = s
            .manifests
            .iter()
            .flat_map(|m| m.entries.iter().map(move |e| (m.name.as_str(), e)))
            .filter(|(_, e)| entry_selects(e, u))
            .collect();
        if s.policy.guardrails.protected_users.contains(&key_of(&u.id)) {
            if !wanting.is_empty() {
                let sources: BTreeSet<&str> = wanting.iter().map(|(n, _)| *n).collect();
                skipped.push(Skip {
                    user: u.id.clone(),
                    reason: "protected".into(),
                    sources: sources.into_iter().map(str::to_string).collect(),
                });
            }
            continue;
        }
        for kind in KINDS {
            let asks: Vec<(&str, Option<Timestamp>)> = wanting
                .iter()
                .filter_map(|(n, e)| requested(&e.settings, kind).map(|t| (*n, t)))
                .collect();
            if asks.is_empty() {
                continue;
            }
            let merged = asks.iter().map(|(_, t)| *t).max().unwrap();
            if satisfied(u, kind, merged) {
                continue;
            }
            let sources: BTreeSet<&str> = asks
                .iter()
                .filter(|(_, t)| !satisfied(u, kind, *t))
                .map(|(n, _)| *n)
                .collect();
            let (action, before, after, removes) = expected_effect(u, kind, merged, now);
            changes.push((
                u.id.clone(),
                action,
                before,
                after,
                removes,
                sources.into_iter().map(str::to_string).collect(),
            ));
        }
    }
    (changes, skipped)
}

fn observed(p: &Plan) -> Vec<Expected> {
    p.changes
        .iter()
        .map(|c| {
            (
                c.user.clone(),
                c.action.clone(),
                c.before.clone(),
                c.after.clone(),
                c.removes.clone(),
                c.sources.clone(),
            )
        })
        .collect()
}

/// A deterministic Fisher-Yates shuffle driven by `seed` (an LCG; quality is irrelevant here).
fn shuffle<T>(v: &mut [T], seed: &mut u64) {
    for i in (1..v.len()).rev() {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = ((*seed >> 33) as usize) % (i + 1);
        v.swap(i, j);
    }
}

fn arb_actor() -> impl Strategy<Value = Actor> {
    prop_oneof![Just(Actor::None), Just(global_admin())]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Apply every change, plan again: nothing left to do (settings are states: docs/manifests.md).
    #[test]
    fn prop_applying_a_plan_makes_the_next_plan_empty(s in arb_scenario(), actor in arb_actor()) {
        let p1 = checked_plan(&s.manifests, &s.actual, &s.policy, &actor, now())
            .map_err(|e| TestCaseError::fail(format!("problems: {e:#?}")))?;
        if matches!(actor, Actor::Known { .. }) {
            for c in &p1.changes {
                prop_assert!(
                    matches!(c.verdict, Some(Verdict::Allowed { .. })),
                    "a global administrator may do everything: {:?}", c.verdict
                );
            }
        } else {
            prop_assert!(p1.changes.iter().all(|c| c.verdict.is_none()));
        }
        let after = apply_all(&s.actual, &p1);
        let p2 = checked_plan(&s.manifests, &after, &s.policy, &actor, now())
            .map_err(|e| TestCaseError::fail(format!("problems: {e:#?}")))?;
        prop_assert!(p2.changes.is_empty(), "second plan not empty: {:#?}", p2.changes);
        prop_assert_eq!(&p2.skipped, &p1.skipped);
        // Nor later, when the clock has moved on.
        let p3 = checked_plan(&s.manifests, &after, &s.policy, &actor, now().plus_secs(7 * 86_400))
            .map_err(|e| TestCaseError::fail(format!("problems: {e:#?}")))?;
        prop_assert!(p3.changes.is_empty(), "later plan not empty: {:#?}", p3.changes);
        // Users the plan did not touch are unchanged.
        let touched: BTreeSet<String> = p1.changes.iter().map(|c| key_of(&c.user)).collect();
        for (k, u) in &after.users {
            if !touched.contains(k) {
                prop_assert_eq!(u, &s.actual.users[k]);
            }
        }
    }

    /// Under `--signers`, a plan in which every manifest was signed by a global administrator
    /// is the plan `--actor` of that administrator gives, apart from the requester fields.
    #[test]
    fn prop_signers_all_global_administrators_plan_as_the_actor(s in arb_scenario()) {
        let actor = global_admin();
        let by_actor = checked_plan(&s.manifests, &s.actual, &s.policy, &actor, now())
            .map_err(|e| TestCaseError::fail(format!("problems: {e:#?}")))?;
        let signed = Actor::Requesters(Box::new(Requesters {
            ran_by: None,
            by_manifest: s
                .manifests
                .iter()
                .map(|m| {
                    (m.name.clone(), Requester::Signed {
                        signer: actor.clone(),
                        key: "SHA256:k".into(),
                        commit: "c0ffee0".repeat(5) + "c0ffe",
                        file: m.file.clone(),
                    })
                })
                .collect(),
            policy_refused: None,
        }));
        let mut by_signers = checked_plan(&s.manifests, &s.actual, &s.policy, &signed, now())
            .map_err(|e| TestCaseError::fail(format!("problems: {e:#?}")))?;
        for c in &mut by_signers.changes {
            let by = c.requested_by.take();
            prop_assert_eq!(by.map(|b| b.user), Some("root@contoso.example".to_string()));
        }
        prop_assert_eq!(by_signers.changes, by_actor.changes);
        prop_assert_eq!(by_signers.skipped, by_actor.skipped);
    }

    /// The plan equals what the tables of docs/store.md say, change by change (and in order).
    #[test]
    fn prop_plan_matches_the_reference_model(s in arb_scenario()) {
        let p = checked_plan(&s.manifests, &s.actual, &s.policy, &Actor::None, now())
            .map_err(|e| TestCaseError::fail(format!("problems: {e:#?}")))?;
        let (changes, skipped) = reference(&s, now());
        prop_assert_eq!(observed(&p), changes);
        prop_assert_eq!(p.skipped, skipped);
    }

    /// Neither the order of manifests nor the order of entries matters (docs/manifests.md,
    /// "Combining manifests").
    #[test]
    fn prop_plan_does_not_depend_on_order(
        s in arb_scenario(),
        actor in arb_actor(),
        seed in any::<u64>(),
    ) {
        let base = checked_plan(&s.manifests, &s.actual, &s.policy, &actor, now())
            .map_err(|e| TestCaseError::fail(format!("problems: {e:#?}")))?;

        let mut reversed = s.manifests.clone();
        reversed.reverse();
        for m in &mut reversed {
            m.entries.reverse();
        }
        let mut shuffled = s.manifests.clone();
        let mut seed = seed;
        shuffle(&mut shuffled, &mut seed);
        for m in &mut shuffled {
            shuffle(&mut m.entries, &mut seed);
        }
        for variant in [reversed, shuffled] {
            let other = checked_plan(&variant, &s.actual, &s.policy, &actor, now())
                .map_err(|e| TestCaseError::fail(format!("problems: {e:#?}")))?;
            prop_assert_eq!(&other.changes, &base.changes);
            prop_assert_eq!(&other.skipped, &base.skipped);
        }
    }

    /// Two manifests asking revoke-sessions-before T1 and T2 of the same user: one change at
    /// max(T1, T2), whose sources are exactly the manifests not already satisfied.
    #[test]
    fn prop_merging_takes_the_latest_timestamp(
        sessions in prop::collection::vec(arb_time(), 0..4),
        watermark in prop::option::of(arb_time()),
        t1 in arb_time(),
        t2 in arb_time(),
        swap in any::<bool>(),
    ) {
        let mut u = user("Alice@X.example");
        u.groups = vec!["staff".into()];
        u.sessions_valid_from = watermark;
        u.sessions = sessions
            .iter()
            .enumerate()
            .map(|(i, t)| session(&format!("s-{i}"), *t))
            .collect();
        let actual = directory(vec![u.clone(), user("bob@x.example")], &[("Staff", false)]);
        let first = manifest(
            "first",
            vec![entry(users_sel(&["alice@x.example"]), &[], sessions_before(t1))],
        );
        let second = manifest(
            "second",
            vec![entry(Selector::Group("STAFF".into()), &[], sessions_before(t2))],
        );
        let manifests = if swap { vec![second, first] } else { vec![first, second] };
        let p = run(&manifests, &actual);

        let ok = |t: Timestamp| {
            watermark.is_some_and(|w| w >= t) && sessions.iter().all(|s| *s >= t)
        };
        let latest = t1.max(t2);
        if ok(latest) {
            prop_assert!(p.changes.is_empty(), "{:#?}", p.changes);
        } else {
            prop_assert_eq!(p.changes.len(), 1, "{:#?}", p.changes);
            let c = &p.changes[0];
            prop_assert_eq!(&c.user, "Alice@X.example");
            prop_assert_eq!(&c.action, &Action::RevokeSessions { before: latest });
            let mut sources = Vec::new();
            if !ok(t1) {
                sources.push("first".to_string());
            }
            if !ok(t2) {
                sources.push("second".to_string());
            }
            prop_assert_eq!(&c.sources, &sources);
            let mut removes: Vec<String> = sessions
                .iter()
                .enumerate()
                .filter(|(_, t)| **t < latest)
                .map(|(i, _)| format!("s-{i}"))
                .collect();
            removes.sort();
            prop_assert_eq!(&c.removes, &removes);
            let after = apply_all(&actual, &p);
            prop_assert!(run(&manifests, &after).changes.is_empty());
        }
    }
}

/// Two manifests ask for one change: it is allowed when either requester may make it, and
/// names that one; denied, with every reason, when neither may; and denied whatever the
/// requesters when the role table does not count.
#[test]
fn a_change_is_allowed_when_any_identical_source_has_a_requester_who_may() {
    let t = Timestamp::parse("2026-11-20T00:00:00Z").unwrap();
    let ask = |name: &str| {
        manifest(
            name,
            vec![entry(
                users_sel(&["bob@contoso.example"]),
                &[],
                sessions_before(t),
            )],
        )
    };
    let mut bob = user("bob@contoso.example");
    bob.sessions.push(session("s-1", t.plus_secs(-60)));
    let actual = directory(vec![bob], &[]);
    let signed = |signer: Actor, name: &str| Requester::Signed {
        signer,
        key: format!("SHA256:{name}"),
        commit: format!("{name:0>40}"),
        file: format!("manifests/{name}.yaml"),
    };
    let judge = |reqs: Vec<(&str, Requester)>, refused: Option<&str>| {
        let who = Actor::Requesters(Box::new(Requesters {
            ran_by: None,
            by_manifest: reqs.into_iter().map(|(n, r)| (n.to_string(), r)).collect(),
            policy_refused: refused.map(str::to_string),
        }));
        let p = checked_plan(
            &[ask("a"), ask("b")],
            &actual,
            &Policy::defaults(),
            &who,
            now(),
        )
        .expect("a plan");
        assert_eq!(p.changes.len(), 1);
        p.changes[0].clone()
    };
    let helpdesk = known("frank@contoso.example", &["helpdesk-administrator"]);
    let c = judge(
        vec![
            ("a", signed(helpdesk.clone(), "a")),
            ("b", signed(global_admin(), "b")),
        ],
        None,
    );
    assert!(
        matches!(c.verdict, Some(Verdict::Allowed { .. })),
        "{:?}",
        c.verdict
    );
    assert_eq!(c.requested_by.unwrap().key, "SHA256:b");
    let c = judge(
        vec![
            ("a", signed(helpdesk.clone(), "a")),
            (
                "b",
                Requester::Refused {
                    file: "b.yaml".into(),
                    reason: "b.yaml: unsigned".into(),
                },
            ),
        ],
        None,
    );
    let Some(Verdict::Denied { reason }) = c.verdict else {
        panic!("{:?}", c.verdict)
    };
    assert!(
        reason.contains("manifests/a.yaml: requested by frank@contoso.example"),
        "{reason}"
    );
    assert!(reason.contains("b.yaml: unsigned"), "{reason}");
    assert!(c.requested_by.is_none());
    let c = judge(
        vec![("a", signed(Actor::Disabled("gone@x".into()), "a"))],
        None,
    );
    assert!(c.is_denied(), "a disabled signer has no rights");
    let c = judge(
        vec![
            ("a", signed(global_admin(), "a")),
            ("b", signed(global_admin(), "b")),
        ],
        Some("policy file roles.yaml: not signed"),
    );
    assert_eq!(
        c.verdict,
        Some(Verdict::Denied {
            reason: "policy file roles.yaml: not signed".into()
        })
    );
}

#[test]
fn the_direct_json_of_a_user_is_serde_jsons_byte_for_byte() {
    let every_ascii: String = (0u8..0x80).map(char::from).collect();
    let texts = [
        String::new(),
        "plain".to_string(),
        every_ascii,
        "é☃\u{202e}\u{1f600}\"\\".to_string(),
    ];
    for (i, t) in texts.iter().enumerate() {
        let mut u = user("a@x");
        u.id = t.clone();
        u.display_name = t.clone();
        u.enabled = i % 2 == 0;
        u.must_change_password = i % 2 == 1;
        u.roles = vec![t.clone(), "r".into()];
        u.groups = vec![t.clone()];
        u.password_set_at = Some(ts("2026-11-26T00:00:00Z"));
        u.sessions_valid_from = Some(Timestamp::from_unix(-62_167_219_200));
        u.devices_valid_from = Some(Timestamp::from_unix(253_402_300_799 + i as i64 * 1000));
        u.methods = vec![Method {
            id: t.clone(),
            kind: t.clone(),
            registered_at: ts("2020-02-29T12:00:00Z"),
        }];
        u.sessions = vec![
            Session {
                id: t.clone(),
                issued_at: Timestamp::from_unix(-1),
            },
            Session {
                id: "s".into(),
                issued_at: Timestamp::from_unix(0),
            },
        ];
        u.trusted_devices = vec![Device {
            id: t.clone(),
            name: t.clone(),
            remembered_at: ts("2026-11-26T00:00:00Z"),
        }];
        u.app_passwords = vec![AppPassword {
            id: t.clone(),
            name: t.clone(),
            created_at: ts("2026-11-26T00:00:00Z"),
        }];
        let mut direct = Vec::new();
        crate::plan::user_json(&u, &mut direct);
        assert_eq!(
            String::from_utf8_lossy(&direct),
            serde_json::to_string(&u).unwrap(),
            "case {i}"
        );
        let empty = user("b@x");
        let mut direct = Vec::new();
        crate::plan::user_json(&empty, &mut direct);
        assert_eq!(direct, serde_json::to_vec(&empty).unwrap());
    }
}
