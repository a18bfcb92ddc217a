//! Where the policies come from, and what the built-in ones promise: the built-in guardrails
//! protect nobody (not the example tenant's break-glass account), a plan whose guardrails protect
//! no user of the store says so, `mfactl policies` prints the policies in force and their source,
//! and every plan names that source.

mod common;
use common::*;
use serde_json::Value;

const GARY: &str = "gary@contoso.example";
const BREAKGLASS: &str = "breakglass@contoso.example";
const WARNING: &str = "warning: the guardrails protect no user in the store";

/// A manifest revoking everyone's sessions from before 2026-11-01: breakglass has one, so it
/// changes unless protected.
fn all_users(env: &Env) -> String {
    env.write(
        "m/all.yaml",
        &manifest(
            "all",
            "  - all-users: true\n    revoke-sessions-before: 2026-11-01T00:00:00Z\n",
        ),
    );
    "m".to_string()
}

fn json(o: &Out) -> Value {
    assert_eq!(o.code, 0, "{}", o.all());
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
}

fn users_changed(plan: &Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_built_in_guardrails_protected_the_example_tenants_breakglass() {
    let env = Env::example();
    let m = all_users(&env);
    // No --policies and no ./policies: the built-in guardrails protect nobody.
    let plan = json(&env.run(&["plan", &m, "--format", "json", "--actor", GARY]));
    assert_eq!(plan["policies"], "built-in");
    assert_eq!(plan["skipped"], serde_json::json!([]));
    assert!(
        users_changed(&plan).contains(&BREAKGLASS.to_string()),
        "{plan:#}"
    );
    // Naming it explicitly is no error either.
    env.write(
        "n/bg.yaml",
        &manifest(
            "bg",
            "  - users: [breakglass@contoso.example]\n    revoke-sessions-before: 2026-11-01T00:00:00Z\n",
        ),
    );
    env.ok(&["validate", "n"]);
    let p = json(&env.run(&["policies", "--format", "json"]));
    assert_eq!(p["source"], "built-in");
    assert_eq!(p["guardrails"]["protected-users"], serde_json::json!([]));
    assert_eq!(p["guardrails"]["max-users-per-apply"], 500);
    assert_eq!(p["guardrails"]["max-future-skew"], "5m");

    // The repository's policies/ stays an example that protects its own tenant's account.
    let plan = json(&env.run(&[
        "--policies",
        EXAMPLE_POLICIES,
        "plan",
        &m,
        "--format",
        "json",
        "--actor",
        GARY,
    ]));
    assert_eq!(plan["skipped"][0]["user"], BREAKGLASS);
    assert!(!users_changed(&plan).contains(&BREAKGLASS.to_string()));
}

#[test]
fn the_demo_still_skips_its_breakglass_under_the_example_policies() {
    let env = Env::bare();
    let o = env.ok(&["demo"]);
    assert!(
        o.stdout.contains("Policies: built-in example."),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("breakglass@contoso.example (protected"),
        "{}",
        o.stdout
    );
    assert!(!o.stderr.contains(WARNING), "{}", o.stderr);
}

#[test]
fn a_plan_whose_guardrails_protect_no_existing_user_said_nothing() {
    let env = Env::example();
    let m = all_users(&env);
    let warned = |o: &Out| {
        assert_eq!(
            o.stderr.matches(WARNING).count(),
            1,
            "warned once:\n{}",
            o.all()
        );
        assert!(o.stderr.contains("protected-users is empty"), "{}", o.all());
        assert!(!o.stdout.contains(WARNING), "not in the data: {}", o.stdout);
    };
    for format in ["text", "json", "markdown"] {
        let o = env.run(&["plan", &m, "--format", format, "--actor", GARY]);
        assert_eq!(o.code, 0, "{}", o.all());
        warned(&o);
    }
    // At the top of the pull-request comment, too.
    let md = env
        .ok(&["plan", &m, "--format", "markdown", "--actor", GARY])
        .stdout;
    let warning = md
        .find("> [!WARNING]\n> The guardrails protect no user in the store")
        .unwrap_or_else(|| panic!("{md}"));
    assert!(warning < md.find("| action | changes |").unwrap(), "{md}");
    // -q silences it, as every status line.
    let o = env.run(&["-q", "plan", &m, "--actor", GARY]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(!o.stderr.contains("warning"), "{}", o.all());

    // apply warns too.
    let o = env.run(&[
        "apply",
        &m,
        "--auto-approve",
        "--actor",
        GARY,
        "--credentials-out",
        "c.tsv",
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    warned(&o);

    // Guardrails that name only users the store does not hold protect nobody either.
    env.write("ghost/roles.yaml", POLICY_ROLES);
    env.write(
        "ghost/guardrails.yaml",
        "protected-users: [ghost@contoso.example]\n",
    );
    let o = env.run(&["--policies", "ghost", "plan", &m, "--actor", GARY]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(o.stderr.matches(WARNING).count(), 1, "{}", o.all());
    assert!(
        o.stderr
            .contains("none of protected-users is a user in the store; policies: --policies ghost"),
        "{}",
        o.all()
    );

    // Guardrails that protect a user of the store: no warning.
    for args in [
        vec!["--policies", EXAMPLE_POLICIES, "plan", &m, "--actor", GARY],
        vec![
            "--policies",
            EXAMPLE_POLICIES,
            "plan",
            &m,
            "--format",
            "markdown",
        ],
    ] {
        let o = env.ok(&args);
        assert!(!o.stderr.contains("warning"), "{args:?}: {}", o.all());
        assert!(!o.stdout.contains("protect no user"), "{}", o.stdout);
    }

    // watch: once, at start.
    let o = env.run(&["watch", &m, "--once", "--detect-only"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(
        o.stderr
            .matches("the guardrails protect no user in the store")
            .count(),
        1,
        "{}",
        o.all()
    );
}

/// The built-in role table, for policy directories whose guardrails a test writes.
const POLICY_ROLES: &str = include_str!("../policies/roles.yaml");

#[test]
fn mfactl_policies_did_not_exist_to_say_which_policies_are_in_force() {
    let env = Env::bare();
    // Built-in: no store needed.
    let o = env.ok(&["policies"]);
    assert!(
        o.stdout
            .starts_with("Policies: built-in (no --policies given, and no ./policies"),
        "{}",
        o.stdout
    );
    for needle in [
        "  global-administrator\n    actions: reset-password, require-reregistration, revoke-sessions, revoke-trusted-devices, delete-app-passwords\n    targets: any user\n",
        "  helpdesk-administrator\n    actions: reset-password\n    targets: users holding no role, or only: directory-readers,",
        "protected-users: none",
        "max-users-per-apply: 500\n",
        "max-future-skew: 5m\n",
    ] {
        assert!(o.stdout.contains(needle), "{needle:?} in:\n{}", o.stdout);
    }

    // ./policies, found in the working directory.
    env.write("policies/roles.yaml", POLICY_ROLES);
    env.write(
        "policies/guardrails.yaml",
        "protected-users: [BG@Contoso.example]\nmax-users-per-apply: 20\nmax-future-skew: 2h\n",
    );
    let o = env.ok(&["policies"]);
    assert!(
        o.stdout.starts_with("Policies: ./policies ("),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("  protected-users:\n    - bg@contoso.example\n"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("max-future-skew: 2h\n"), "{}", o.stdout);
    let p = json(&env.run(&["policies", "--format", "json"]));
    assert_eq!(p["source"], "./policies");
    assert_eq!(
        p["guardrails"],
        serde_json::json!({"protected-users": ["bg@contoso.example"], "max-users-per-apply": 20, "max-future-skew": "2h"})
    );
    assert_eq!(p["roles"][3]["name"], "global-administrator");
    assert_eq!(p["roles"][3]["targets"], "any");
    assert_eq!(
        p["roles"][0]["targets"]["holding-only"][0],
        "directory-readers"
    );

    // --policies DIR wins over ./policies.
    env.write(
        "custom/roles.yaml",
        "roles:\n  - name: mfa-operator\n    actions: [revoke-sessions]\n    targets: any\n",
    );
    env.write("custom/guardrails.yaml", "{}\n");
    let o = env.ok(&["--policies", "custom", "policies"]);
    assert!(
        o.stdout.starts_with("Policies: --policies custom ("),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("  mfa-operator\n    actions: revoke-sessions\n    targets: any user\n"),
        "{}",
        o.stdout
    );
    let p = json(&env.run(&["--policies", "custom", "policies", "--format", "json"]));
    assert_eq!(p["source"], "--policies custom");
    assert_eq!(p["roles"].as_array().unwrap().len(), 1);

    // Broken policies are an error naming the file, as for every command.
    env.write("broken/roles.yaml", "roles: nope\n");
    env.write("broken/guardrails.yaml", "{}\n");
    let o = env.run(&["--policies", "broken", "policies"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("broken/roles.yaml"), "{}", o.all());
}

#[test]
fn a_plan_did_not_name_the_policies_it_was_made_under() {
    let env = Env::example();
    let m = all_users(&env);
    env.write("custom/roles.yaml", POLICY_ROLES);
    env.write(
        "custom/guardrails.yaml",
        "protected-users: [breakglass@contoso.example]\n",
    );
    for (global, source) in [
        (vec![], "built-in"),
        (vec!["--policies", "custom"], "--policies custom"),
    ] {
        let run = |rest: &[&str]| {
            let mut args = global.clone();
            args.extend_from_slice(rest);
            env.ok(&args)
        };
        // Text: the second line of the head.
        let text = run(&["plan", &m, "--actor", GARY]).stdout;
        let head: Vec<&str> = text.lines().take(2).collect();
        assert!(head[0].starts_with("Plan at "), "{text}");
        assert_eq!(head[1], format!("Policies: {source}."), "{text}");
        // Markdown: the header line.
        let md = run(&["plan", &m, "--format", "markdown", "--actor", GARY]).stdout;
        let header = md.lines().find(|l| l.starts_with("Actor: ")).unwrap();
        assert!(
            header.contains(&format!(" · policies {} · plan ", source)),
            "{header}"
        );
        // JSON: a field right after store_revision, in the printed plan and the saved one.
        let out = run(&[
            "plan",
            &m,
            "--format",
            "json",
            "--actor",
            GARY,
            "--out",
            "saved.json",
        ])
        .stdout;
        for text in [
            out,
            std::fs::read_to_string(env.path("saved.json")).unwrap(),
        ] {
            let v: Value = serde_json::from_str(&text).unwrap();
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            let at = keys.iter().position(|k| *k == "store_revision").unwrap();
            assert_eq!(keys[at + 1], "policies", "{keys:?}");
            assert_eq!(v["policies"], source);
        }
    }
    // ./policies.
    env.use_example_policies();
    let v = json(&env.run(&["plan", &m, "--format", "json"]));
    assert_eq!(v["policies"], "./policies");
}
