//! Each setting end to end: applied, then idempotent, still satisfied after the user complies,
//! and detected again when drift brings back an old object.

mod common;
use common::*;
use serde_yaml::Value;

const ADMIN: &str = "gary@contoso.example";

fn plan_json(env: &Env) -> serde_json::Value {
    let o = env.run(&["plan", "m", "--format", "json", "--actor", ADMIN]);
    assert_eq!(o.code, 0, "{}", o.all());
    serde_json::from_str(&o.stdout).unwrap()
}

fn apply(env: &Env, extra: &[&str]) -> Out {
    let mut args = vec!["apply", "m", "--auto-approve", "--actor", ADMIN];
    args.extend_from_slice(extra);
    env.run(&args)
}

fn detailed(env: &Env) -> i32 {
    env.run(&["plan", "m", "--detailed-exitcode", "--actor", ADMIN])
        .code
}

/// Replaces `user`'s record after `edit` changes it (what the sign-in side would do).
fn edit_user(env: &Env, user: &str, edit: impl FnOnce(&mut serde_yaml::Mapping)) {
    let mut v = env.show(user);
    edit(v.as_mapping_mut().unwrap());
    let doc = serde_yaml::to_string(&serde_yaml::Mapping::from_iter([(
        Value::from("users"),
        Value::Sequence(vec![v]),
    )]))
    .unwrap();
    env.import(&doc);
}

fn push(m: &mut serde_yaml::Mapping, list: &str, item: &str) {
    let item: Value = serde_yaml::from_str(item).unwrap();
    m.get_mut(list)
        .unwrap()
        .as_sequence_mut()
        .unwrap()
        .push(item);
}

fn ids(v: &Value, list: &str) -> Vec<String> {
    v[list]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn require_reregistration_applies_is_idempotent_and_detects_drift() {
    let env = Env::example();
    env.write("m/r.yaml", &manifest("rereg", "  - users: [henry@contoso.example]\n    require-reregistration: 2026-11-29T00:00:00Z\n"));
    let plan = plan_json(&env);
    let c = &plan["changes"][0];
    assert_eq!(c["action"], "require-reregistration");
    assert_eq!(c["removes"], serde_json::json!(["m-henry-1"]));
    assert_eq!(
        c["before"],
        serde_json::json!({"registration-valid-from": null, "methods": 1})
    );
    assert_eq!(
        c["after"],
        serde_json::json!({"registration-valid-from": "2026-11-29T00:00:00Z", "methods": 0})
    );
    assert_eq!(apply(&env, &[]).code, 0);
    let henry = env.show("henry@contoso.example");
    assert_eq!(
        henry["registration-valid-from"].as_str(),
        Some("2026-11-29T00:00:00Z")
    );
    assert!(ids(&henry, "methods").is_empty());
    assert_eq!(detailed(&env), 0, "second plan must be empty");

    // Henry registers a new method: still satisfied.
    edit_user(&env, "henry@contoso.example", |m| {
        push(
            m,
            "methods",
            "{id: m-henry-2, kind: fido2, registered-at: 2026-11-30T11:00:00Z}",
        )
    });
    assert_eq!(detailed(&env), 0);

    // An old method reappears (drift): planned for removal again.
    edit_user(&env, "henry@contoso.example", |m| {
        push(
            m,
            "methods",
            "{id: m-old, kind: sms, registered-at: 2026-01-01T00:00:00Z}",
        )
    });
    let plan = plan_json(&env);
    assert_eq!(plan["changes"][0]["removes"], serde_json::json!(["m-old"]));
    assert_eq!(detailed(&env), 2);
}

#[test]
fn revoke_sessions_applies_is_idempotent_and_detects_drift() {
    let env = Env::example();
    env.write("m/s.yaml", &manifest("sess", "  - users: [carol@contoso.example]\n    revoke-sessions-before: 2026-11-28T14:30:00Z\n"));
    let plan = plan_json(&env);
    assert_eq!(
        plan["changes"][0]["removes"],
        serde_json::json!(["s-carol-1"])
    );
    assert_eq!(apply(&env, &[]).code, 0);
    let carol = env.show("carol@contoso.example");
    assert_eq!(
        ids(&carol, "sessions"),
        vec!["s-carol-2"],
        "the session after T survives"
    );
    assert_eq!(
        carol["sessions-valid-from"].as_str(),
        Some("2026-11-28T14:30:00Z")
    );
    assert_eq!(detailed(&env), 0);

    edit_user(&env, "carol@contoso.example", |m| {
        push(
            m,
            "sessions",
            "{id: s-new, issued-at: 2026-11-30T11:59:00Z}",
        )
    });
    assert_eq!(detailed(&env), 0, "a new sign-in complies");

    edit_user(&env, "carol@contoso.example", |m| {
        push(
            m,
            "sessions",
            "{id: s-stale, issued-at: 2026-11-01T00:00:00Z}",
        )
    });
    let plan = plan_json(&env);
    assert_eq!(
        plan["changes"][0]["removes"],
        serde_json::json!(["s-stale"])
    );
}

#[test]
fn revoke_trusted_devices_applies_is_idempotent_and_detects_drift() {
    let env = Env::example();
    env.write("m/d.yaml", &manifest("dev", "  - group: contractors\n    except: [lead@contoso.example]\n    revoke-trusted-devices-before: 2026-11-20\n"));
    let plan = plan_json(&env);
    let users: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        [
            "alice@contoso.example",
            "bob@contoso.example",
            "dave@contoso.example"
        ]
    );
    assert_eq!(apply(&env, &[]).code, 0);
    assert_eq!(
        ids(&env.show("dave@contoso.example"), "trusted-devices"),
        vec!["d-dave-2"]
    );
    assert_eq!(
        ids(&env.show("lead@contoso.example"), "trusted-devices"),
        vec!["d-lead-1"],
        "except is honoured"
    );
    assert_eq!(detailed(&env), 0);

    edit_user(&env, "dave@contoso.example", |m| {
        push(
            m,
            "trusted-devices",
            "{id: d-new, name: new-laptop, remembered-at: 2026-11-29T00:00:00Z}",
        )
    });
    assert_eq!(detailed(&env), 0);
    edit_user(&env, "dave@contoso.example", |m| {
        push(
            m,
            "trusted-devices",
            "{id: d-old, name: old-laptop, remembered-at: 2026-10-01T00:00:00Z}",
        )
    });
    assert_eq!(
        plan_json(&env)["changes"][0]["removes"],
        serde_json::json!(["d-old"])
    );
}

#[test]
fn reset_password_applies_is_idempotent_and_detects_drift() {
    let env = Env::example();
    env.write(
        "m/p.yaml",
        &manifest(
            "pw",
            "  - users: [carol@contoso.example]\n    reset-password-before: 2026-11-28T14:30:00Z\n",
        ),
    );
    let plan = plan_json(&env);
    let c = &plan["changes"][0];
    assert_eq!(c["action"], "reset-password");
    assert_eq!(
        c["after"],
        serde_json::json!({"password-set-at": NOW, "must-change-password": true})
    );
    assert_eq!(apply(&env, &["--credentials-out", "creds.txt"]).code, 0);
    let carol = env.show("carol@contoso.example");
    assert_eq!(carol["password-set-at"].as_str(), Some(NOW));
    assert_eq!(carol["must-change-password"].as_bool(), Some(true));
    assert_eq!(detailed(&env), 0);

    // Carol changes the temporary password at her next sign-in.
    edit_user(&env, "carol@contoso.example", |m| {
        m.insert("password-set-at".into(), "2026-11-30T11:59:00Z".into());
        m.insert("must-change-password".into(), false.into());
    });
    assert_eq!(detailed(&env), 0);

    // Someone restores an old password: reset again.
    edit_user(&env, "carol@contoso.example", |m| {
        m.insert("password-set-at".into(), "2026-01-01T00:00:00Z".into());
    });
    assert_eq!(detailed(&env), 2);
}

#[test]
fn delete_app_passwords_applies_is_idempotent_and_detects_drift() {
    let env = Env::example();
    env.write(
        "m/a.yaml",
        &manifest(
            "apps",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    let plan = plan_json(&env);
    let c = &plan["changes"][0];
    assert_eq!(c["action"], "delete-app-passwords");
    assert_eq!(c["removes"], serde_json::json!(["a-bob-1", "a-bob-2"]));
    assert_eq!(c["before"], serde_json::json!({"app-passwords": 2}));
    assert_eq!(c["after"], serde_json::json!({"app-passwords": 0}));
    assert_eq!(apply(&env, &[]).code, 0);
    assert!(ids(&env.show("bob@contoso.example"), "app-passwords").is_empty());
    assert_eq!(detailed(&env), 0);

    edit_user(&env, "bob@contoso.example", |m| {
        push(
            m,
            "app-passwords",
            "{id: a-new, name: printer, created-at: 2026-11-30T11:00:00Z}",
        )
    });
    let plan = plan_json(&env);
    assert_eq!(
        plan["changes"][0]["removes"],
        serde_json::json!(["a-new"]),
        "a new app password is drift"
    );
}

#[test]
fn merging_takes_the_latest_timestamp_and_names_every_contributing_manifest() {
    let env = Env::example();
    env.write("m/early.yaml", &manifest("early", "  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-21T00:00:00Z\n"));
    env.write(
        "m/late.yaml",
        &manifest(
            "late",
            "  - group: contractors\n    revoke-sessions-before: 2026-11-27T00:00:00Z\n",
        ),
    );
    env.write(
        "m/old.yaml",
        &manifest(
            "old",
            "  - all-users: true\n    revoke-sessions-before: 2025-06-01\n",
        ),
    );
    let plan = plan_json(&env);
    let alice = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["user"] == "alice@contoso.example")
        .unwrap();
    assert_eq!(
        alice["after"]["sessions-valid-from"],
        "2026-11-27T00:00:00Z"
    );
    assert_eq!(
        alice["sources"],
        serde_json::json!(["early", "late"]),
        "`old` is already satisfied"
    );
    assert_eq!(
        alice["removes"],
        serde_json::json!(["s-alice-1", "s-alice-2"])
    );
}

#[test]
fn the_example_manifests_apply_and_then_plan_empty() {
    let env = Env::example();
    env.use_example_policies();
    let m = format!("{EXAMPLES}/manifests");
    let o = env.run(&["plan", &m, "--detailed-exitcode", "--actor", ADMIN]);
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(
        o.stdout.contains("Plan: 15 changes for 6 users, 0 denied."),
        "{}",
        o.stdout
    );
    let o = env.run(&[
        "apply",
        &m,
        "--auto-approve",
        "--actor",
        ADMIN,
        "--credentials-out",
        "c.txt",
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    let o = env.run(&["plan", &m, "--detailed-exitcode", "--actor", ADMIN]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stdout.contains("No changes"), "{}", o.stdout);
    let o = env.run(&["apply", &m, "--auto-approve", "--actor", ADMIN]);
    assert_eq!(
        o.code,
        0,
        "an empty apply succeeds without credentials: {}",
        o.all()
    );
}
