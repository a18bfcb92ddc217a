//! Saved plans are applied exactly as reviewed, or not at all: the plan id is the digest of the
//! plan's content, `apply --plan` re-checks the guardrails, and a file mfactl did not write —
//! edited, duplicated, reordered, or with an id that is not its own — is refused.

mod common;
use common::*;
use serde_json::Value;

const ADMIN: &str = "gary@contoso.example";

/// Policies in `dir` (relative to the env): the default roles and these guardrails.
fn policies(env: &Env, dir: &str, guardrails: &str) {
    let roles =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/roles.yaml"))
            .unwrap();
    env.write(&format!("{dir}/roles.yaml"), &roles);
    env.write(&format!("{dir}/guardrails.yaml"), guardrails);
}

const OPEN: &str = "protected-users: []\nmax-users-per-apply: 500\nmax-future-skew: 5m\n";

/// Bob and dave: sessions revoked, app passwords deleted, bob's password reset.
fn offboard(env: &Env) {
    env.write(
        "m/off.yaml",
        &manifest(
            "off",
            "  - users: [bob@contoso.example, dave@contoso.example]\n    \
             revoke-sessions-before: 2026-11-27T09:00:00Z\n    app-passwords: none\n  \
             - users: [bob@contoso.example]\n    reset-password-before: 2026-11-27T09:00:00Z\n",
        ),
    );
}

fn save(env: &Env) -> Value {
    policies(env, "open", OPEN);
    env.ok(&["--policies", "open", "plan", "m", "--out", "plan.json"]);
    read_plan(env)
}

fn read_plan(env: &Env) -> Value {
    serde_json::from_str(&std::fs::read_to_string(env.path("plan.json")).unwrap()).unwrap()
}

/// Writes `plan` as the saved plan, with its id recomputed from its content the way mfactl
/// computes it: what an attacker who knows the format can do.
fn write_with_own_id(env: &Env, mut plan: Value) {
    let mut d = mfactl::saved::PlanDigest::new(
        plan["actor"].as_str(),
        plan["store_revision"].as_i64().unwrap(),
    );
    for c in plan["changes"].as_array().unwrap() {
        let user = c["user"].as_str().unwrap();
        let fp = plan["fingerprints"][user].as_str().unwrap_or("");
        let mut content = c.clone();
        content.as_object_mut().unwrap().remove("verdict");
        d.add(user, fp, &content);
    }
    plan["plan_id"] = Value::from(d.finish());
    write_plan(env, &plan);
}

fn write_plan(env: &Env, plan: &Value) {
    env.write("plan.json", &serde_json::to_string_pretty(plan).unwrap());
}

fn apply_saved(env: &Env, policies: &str) -> Out {
    apply_saved_with(env, policies, &[])
}

/// [`apply_saved`] with extra environment variables.
fn apply_saved_with(env: &Env, policies: &str, vars: &[(&str, &str)]) -> Out {
    env.run_env(
        &[
            "--policies",
            policies,
            "apply",
            "--plan",
            "plan.json",
            "--actor",
            ADMIN,
            "--credentials-out",
            "creds.txt",
        ],
        vars,
    )
}

/// Applying `plan.json` is refused with exit 1 as not mfactl's, and changes nothing.
fn assert_not_ours(env: &Env, what: &str) {
    let before = env.export();
    let o = apply_saved(env, "open");
    assert_eq!(o.code, 1, "{what}: {}", o.all());
    assert!(
        o.stderr.contains("not a plan mfactl wrote"),
        "{what}: {}",
        o.stderr
    );
    assert_eq!(env.export(), before, "{what}: nothing applied");
    assert!(!env.exists("creds.txt"), "{what}: no passwords issued");
}

#[test]
fn the_plan_id_is_the_digest_of_the_plans_content() {
    let env = Env::example();
    offboard(&env);
    let saved = save(&env);
    let id = saved["plan_id"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    // The same content gives the same id, in every format, and one batch or many.
    for batch in ["5000", "1"] {
        let run = |args: &[&str]| {
            let mut all = vec!["--policies", "open"];
            all.extend_from_slice(args);
            let o = env.run_env(&all, &[("MFACTL_PLAN_BATCH", batch)]);
            assert_eq!(o.code, 0, "{}", o.all());
            o
        };
        let json: Value =
            serde_json::from_str(&run(&["plan", "m", "--format", "json"]).stdout).unwrap();
        assert_eq!(json["plan_id"], id, "batch {batch}");
        let md = run(&["plan", "m", "--format", "markdown"]).stdout;
        assert!(md.contains(id), "batch {batch}: {md}");
        let o = run(&["plan", "m", "--out", "again.json"]);
        assert!(o.stderr.contains(id), "batch {batch}: {}", o.stderr);
        let again: Value =
            serde_json::from_str(&std::fs::read_to_string(env.path("again.json")).unwrap())
                .unwrap();
        assert_eq!(again["plan_id"], id, "batch {batch}");
        assert_eq!(again["changes"], saved["changes"], "batch {batch}");
    }
    // Other content, another id: another actor, or another cutoff.
    let o = env.ok(&[
        "--policies",
        "open",
        "plan",
        "m",
        "--format",
        "json",
        "--actor",
        ADMIN,
    ]);
    let other: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_ne!(other["plan_id"], id);
    offboard(&env);
    let text = std::fs::read_to_string(env.path("m/off.yaml")).unwrap();
    env.write("m/off.yaml", &text.replace("T09:00:00Z", "T09:00:01Z"));
    let o = env.ok(&["--policies", "open", "plan", "m", "--format", "json"]);
    let moved: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_ne!(moved["plan_id"], id);
}

#[test]
fn apply_plan_skipped_the_protected_users_guardrail() {
    let env = Env::example();
    offboard(&env);
    save(&env);
    policies(
        &env,
        "strict",
        "protected-users: [Bob@Contoso.example]\nmax-users-per-apply: 500\nmax-future-skew: 5m\n",
    );
    let before = env.export();
    let o = apply_saved(&env, "strict");
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(
        o.stderr.contains("bob@contoso.example is a protected user"),
        "{}",
        o.stderr
    );
    assert_eq!(env.export(), before, "nothing applied");
    assert!(!env.exists("creds.txt"));
}

#[test]
fn apply_plan_skipped_max_users_per_apply() {
    let env = Env::example();
    offboard(&env);
    save(&env);
    policies(
        &env,
        "small",
        "protected-users: []\nmax-users-per-apply: 1\nmax-future-skew: 5m\n",
    );
    let before = env.export();
    let o = apply_saved(&env, "small");
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(
        o.stderr
            .contains("this apply changes 2 users, more than max-users-per-apply (1)"),
        "{}",
        o.stderr
    );
    assert_eq!(env.export(), before, "nothing applied");
    // The same message and code as a fresh apply of the manifests.
    let fresh = env.run(&[
        "--policies",
        "small",
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        ADMIN,
        "--credentials-out",
        "creds.txt",
    ]);
    assert_eq!(fresh.code, 3, "{}", fresh.all());
    assert!(fresh.stderr.contains("more than max-users-per-apply (1)"));
}

#[test]
fn apply_plan_skipped_max_future_skew() {
    let env = Env::example();
    // Four minutes ahead of the clock: within the 5m skew when planned.
    env.write(
        "m/soon.yaml",
        &manifest(
            "soon",
            "  - users: [bob@contoso.example]\n    revoke-sessions-before: 2026-11-30T12:04:00Z\n",
        ),
    );
    save(&env);
    policies(
        &env,
        "tight",
        "protected-users: []\nmax-users-per-apply: 500\nmax-future-skew: 1m\n",
    );
    let before = env.export();
    let o = apply_saved(&env, "tight");
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains("2026-11-30T12:04:00Z is in the future"),
        "{}",
        o.stderr
    );
    assert_eq!(env.export(), before, "nothing applied");
    // Within the skew it applies.
    let o = apply_saved(&env, "open");
    assert_eq!(o.code, 0, "{}", o.all());
}

/// An edit of a saved plan's JSON.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn a_saved_plan_whose_content_does_not_match_its_id_is_refused() {
    let env = Env::example();
    offboard(&env);
    let saved = save(&env);
    let edits: Vec<(&str, Edit)> = vec![
        (
            "a source added",
            Box::new(|p| p["changes"][0]["sources"] = serde_json::json!(["off", "forged"])),
        ),
        (
            "an object id added to removes",
            Box::new(|p| {
                p["changes"][0]["removes"]
                    .as_array_mut()
                    .unwrap()
                    .push("a-alice-1".into())
            }),
        ),
        (
            "the actor changed",
            Box::new(|p| p["actor"] = Value::from(ADMIN)),
        ),
        (
            "the store revision changed",
            Box::new(|p| p["store_revision"] = Value::from(99)),
        ),
        (
            "a change dropped",
            Box::new(|p| {
                p["changes"].as_array_mut().unwrap().remove(1);
            }),
        ),
    ];
    for (what, edit) in edits {
        let mut p = saved.clone();
        edit(&mut p);
        write_plan(&env, &p);
        assert_not_ours(&env, what);
    }
    // The untouched file still applies, checked a user at a time as in batches of thousands.
    write_plan(&env, &saved);
    let o = apply_saved_with(&env, "open", &[("MFACTL_PLAN_BATCH", "1")]);
    assert_eq!(o.code, 0, "{}", o.all());
}

#[test]
fn any_plan_id_string_was_accepted() {
    let env = Env::example();
    offboard(&env);
    let saved = save(&env);
    for id in ["hello", "", "\u{1b}[31mred", &"A".repeat(64)] {
        let mut p = saved.clone();
        p["plan_id"] = Value::from(id);
        write_plan(&env, &p);
        assert_not_ours(&env, id);
        let o = apply_saved(&env, "open");
        assert!(!o.stderr.contains('\u{1b}'), "escaped: {}", o.stderr);
    }
}

#[test]
fn a_duplicated_reset_password_entry_issued_two_passwords() {
    let env = Env::example();
    offboard(&env);
    let mut p = save(&env);
    let changes = p["changes"].as_array_mut().unwrap();
    let reset = changes
        .iter()
        .position(|c| c["action"] == "reset-password")
        .unwrap();
    let dup = changes[reset].clone();
    changes.insert(reset, dup);
    write_with_own_id(&env, p);
    assert_not_ours(&env, "a duplicated reset-password");
    let o = apply_saved(&env, "open");
    assert!(o.stderr.contains("listed twice"), "{}", o.stderr);
}

#[test]
fn unsorted_changes_are_refused() {
    let env = Env::example();
    offboard(&env);
    let mut p = save(&env);
    p["changes"].as_array_mut().unwrap().reverse();
    write_with_own_id(&env, p);
    assert_not_ours(&env, "reversed changes");
    let o = apply_saved(&env, "open");
    assert!(o.stderr.contains("out of plan order"), "{}", o.stderr);
}

#[test]
fn an_unknown_action_is_refused() {
    let env = Env::example();
    offboard(&env);
    let mut p = save(&env);
    p["changes"][0]["action"] = Value::from("delete-everything");
    write_with_own_id(&env, p);
    assert_not_ours(&env, "an unknown action");
    let o = apply_saved(&env, "open");
    assert!(
        o.stderr.contains("unknown action `delete-everything`"),
        "{}",
        o.stderr
    );
}

#[test]
fn an_action_edited_to_delete_app_passwords_for_a_user_with_none_was_applied() {
    let env = Env::example();
    // Carol has no app passwords; the plan revokes her sessions.
    env.write(
        "m/carol.yaml",
        &manifest(
            "carol",
            "  - users: [carol@contoso.example]\n    revoke-sessions-before: 2026-11-29T00:00:00Z\n",
        ),
    );
    let mut p = save(&env);
    assert_eq!(p["changes"].as_array().unwrap().len(), 1);
    let c = &mut p["changes"][0];
    c["action"] = Value::from("delete-app-passwords");
    c["cutoff"] = Value::Null;
    c["before"] = serde_json::json!({"app-passwords": 0});
    c["after"] = serde_json::json!({"app-passwords": 0});
    c["removes"] = serde_json::json!([]);
    write_with_own_id(&env, p);
    assert_not_ours(&env, "a 0 → 0 delete-app-passwords");
    let o = apply_saved(&env, "open");
    assert!(o.stderr.contains("already satisfies it"), "{}", o.stderr);
    let audit = env.ok(&["audit", "--format", "json"]).stdout;
    assert_eq!(audit.trim(), "[]", "no audit record");
}

#[test]
fn a_saved_change_with_a_forged_before_or_after_is_refused() {
    let env = Env::example();
    offboard(&env);
    let saved = save(&env);
    let mut p = saved.clone();
    let i = p["changes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c["action"] == "revoke-sessions")
        .unwrap();
    p["changes"][i]["before"]["sessions"] = Value::from(7);
    write_with_own_id(&env, p);
    assert_not_ours(&env, "a forged before");
    // Found in a later batch too.
    let o = apply_saved_with(&env, "open", &[("MFACTL_PLAN_BATCH", "1")]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains("the state it fingerprinted gives"),
        "{}",
        o.stderr
    );
    let o = apply_saved(&env, "open");
    assert!(
        o.stderr.contains("the state it fingerprinted gives"),
        "{}",
        o.stderr
    );
    // An earlier cutoff than the plan's (fewer sessions revoked) is refused too.
    let mut p = saved.clone();
    p["changes"][i]["cutoff"] = Value::from("2020-01-01T00:00:00Z");
    write_with_own_id(&env, p);
    assert_not_ours(&env, "a moved cutoff");
}

#[test]
fn expect_plan_id_pins_the_reviewed_plan() {
    let env = Env::example();
    offboard(&env);
    let saved = save(&env);
    let id = saved["plan_id"].as_str().unwrap().to_string();
    let other = "0".repeat(64);
    let before = env.export();
    let run = |expect: &str| {
        env.run(&[
            "--policies",
            "open",
            "apply",
            "--plan",
            "plan.json",
            "--expect-plan-id",
            expect,
            "--actor",
            ADMIN,
            "--credentials-out",
            "creds.txt",
        ])
    };
    let o = run(&other);
    assert_eq!(o.code, 4, "{}", o.all());
    assert!(o.stderr.contains(&format!("not the expected plan {other}")));
    assert_eq!(env.export(), before);
    let o = run(&id);
    assert_eq!(o.code, 0, "{}", o.all());
    let audit: Value =
        serde_json::from_str(&env.ok(&["audit", "--format", "json"]).stdout).unwrap();
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["plan_id"] == id.as_str()));
    // --expect-plan-id without --plan is a usage error.
    let o = env.run(&["apply", "m", "--expect-plan-id", &id]);
    assert_ne!(o.code, 0);
}

#[test]
fn plan_out_leaves_the_old_file_or_the_whole_new_one_and_nothing_beside_it() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::example();
    offboard(&env);
    let first = save(&env);
    // Invalid manifests: the saved plan of the last good run stays, and no partial file is left.
    env.write("m/bad.yaml", "apiVersion: mfactl/v1\nkind: Nonsense\n");
    let out = env.run(&["--policies", "open", "plan", "m", "--out", "plan.json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(read_plan(&env), first);
    std::fs::remove_file(env.path("m/bad.yaml")).unwrap();
    // A directory that does not exist: a clear error, nothing written.
    let out = env.run(&[
        "--policies",
        "open",
        "plan",
        "m",
        "--out",
        "no/such/plan.json",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("--out no/such/plan.json"),
        "{}",
        out.stderr
    );
    env.ok(&["--policies", "open", "plan", "m", "--out", "plan.json"]);
    let beside: Vec<String> = std::fs::read_dir(env.path("."))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("plan.json"))
        .collect();
    assert_eq!(beside, ["plan.json"], "only the plan itself");
    // Readable as any file the shell creates (the tests' umask is the runner's, at most 022).
    let mode = std::fs::metadata(env.path("plan.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o644, 0o644, "{mode:o}");
}
