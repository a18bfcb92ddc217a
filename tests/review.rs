//! Pull-request review and CI: the schema, Markdown plans, diffs, saved plans, racing applies.

mod common;
use common::*;
use std::process::Stdio;

const ADMIN: &str = "gary@contoso.example";

fn schema() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/mfactl-manifest.schema.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_committed_schema_is_what_mfactl_schema_prints() {
    let env = Env::bare();
    let printed = env.ok(&["schema"]).stdout;
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/mfactl-manifest.schema.json"
    ))
    .unwrap();
    assert_eq!(
        printed, committed,
        "regenerate it: cargo run -- schema > mfactl-manifest.schema.json"
    );
    let v: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
}

#[test]
fn the_schema_accepts_every_example_and_rejects_what_the_parser_rejects() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let dir = format!("{EXAMPLES}/manifests");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema="),
            "{} references the schema",
            path.display()
        );
        let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        n += 1;
    }
    assert_eq!(n, 4);
    let bad = |yaml: &str| -> bool {
        let doc: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
        !validator.is_valid(&doc)
    };
    let head = "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata: {name: x}\nspec:\n";
    assert!(
        !bad(&format!(
            "{head}  - users: [a@x]\n    app-passwords: none\n"
        )),
        "a valid manifest"
    );
    assert!(
        bad(&format!("{head}  - users: [a@x]\n    app-password: none\n")),
        "unknown key"
    );
    assert!(
        bad(&format!(
            "{head}  - users: [a@x]\n    group: g\n    app-passwords: none\n"
        )),
        "two selectors"
    );
    assert!(bad(&format!("{head}  - users: [a@x]\n")), "no setting");
    assert!(
        bad(&format!("{head}  - users: []\n    app-passwords: none\n")),
        "empty users"
    );
    assert!(
        bad(&format!(
            "{head}  - users: [a@x]\n    require-reregistration: true\n"
        )),
        "a flag"
    );
    assert!(
        bad(&format!(
            "{head}  - users: [a@x]\n    revoke-sessions-before: 2026-11-27T09:00:00\n"
        )),
        "no zone"
    );
    assert!(
        bad(&format!("{head}  - users: [a@x]\n    app-passwords: all\n")),
        "app-passwords: all"
    );
    assert!(
        bad("apiVersion: mfactl/v2\nkind: UserSettings\nmetadata: {name: x}\nspec: []\n"),
        "apiVersion"
    );
}

/// A store with `n` extra users in group `bulk`, each with an old session and an app password.
fn big_env(n: usize) -> Env {
    let env = Env::example();
    let mut yaml = String::from("groups:\n  - {name: bulk}\nusers:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - id: user{i:05}@contoso.example\n    groups: [bulk]\n    sessions: [{{id: s-{i}, issued-at: 2026-01-02T00:00:00Z}}]\n    app-passwords: [{{id: a-{i}, name: mail, created-at: 2025-01-01T00:00:00Z}}]\n"
        ));
    }
    env.import(&yaml);
    env
}

#[test]
fn markdown_is_bounded_on_a_plan_of_thousands_of_users() {
    let env = big_env(3000);
    env.write(
        "m/bulk.yaml",
        &manifest(
            "bulk",
            "  - group: bulk\n    revoke-sessions-before: 2026-11-01\n    app-passwords: none\n",
        ),
    );
    let o = env.ok(&[
        "plan",
        "m",
        "--format",
        "markdown",
        "--actor",
        "erin@contoso.example",
    ]);
    let md = &o.stdout;
    assert!(
        md.chars().count() <= 65_000,
        "{} characters",
        md.chars().count()
    );
    assert!(
        md.starts_with("### mfactl plan: 6000 changes for 3000 users, 3000 denied"),
        "{}",
        &md[..200]
    );
    let table = md.find("| action | changes | denied |").unwrap();
    let warning = md.find("denied** for the actor").unwrap();
    let details = md.find("<details>").unwrap();
    assert!(
        table < warning && warning < details,
        "summary, then denied, then details"
    );
    assert!(
        md.contains("| delete-app-passwords | 3000 | 3000 |"),
        "per-action counts"
    );
    assert!(
        md.contains("not shown: this comment is limited to 65000 characters"),
        "says what it left out"
    );
    assert!(md.contains("mfactl plan --format json"));
    assert_eq!(
        md.matches("<details>").count(),
        md.matches("</details>").count(),
        "no section is cut in half"
    );
}

#[test]
fn the_markdown_comment_exceeded_its_cap_with_ids_of_40000_pipes() {
    let env = Env::empty();
    let pipes = "|".repeat(40_000);
    // Administrators whose ids are 40,000 `|` (escaped, twice as many bytes): erin may change
    // none of them, so every change is denied with a reason naming its user; one more is
    // protected, so the skipped list names it.
    let mut yaml = String::from(
        "users:\n  - id: erin@contoso.example\n    roles: [authentication-administrator]\n    \
         sessions-valid-from: 2026-11-02T00:00:00Z\n",
    );
    for i in 0..8 {
        yaml.push_str(&format!(
            "  - id: '{pipes}{i}'\n    roles: [global-administrator]\n    \
             sessions: [{{id: 's-{pipes}', issued-at: 2026-01-02T00:00:00Z}}]\n    \
             app-passwords: [{{id: 'a-{pipes}', name: mail, created-at: 2025-01-01T00:00:00Z}}]\n"
        ));
    }
    env.import(&yaml);
    env.write("p/roles.yaml", include_str!("../policies/roles.yaml"));
    env.write(
        "p/guardrails.yaml",
        &format!("protected-users: ['{pipes}0', '{pipes}1']\n"),
    );
    env.write(
        "m/all.yaml",
        &manifest(
            "all",
            "  - all-users: true\n    revoke-sessions-before: 2026-11-01\n    app-passwords: none\n",
        ),
    );
    let pipes_actor = format!("{pipes}-actor");
    for actor in ["erin@contoso.example", pipes_actor.as_str()] {
        let o = env.run(&[
            "--policies",
            "p",
            "plan",
            "m",
            "--format",
            "markdown",
            "--actor",
            actor,
        ]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let md = &o.stdout;
        assert!(md.len() <= 65_000, "{} bytes", md.len());
        assert!(
            md.starts_with("### mfactl plan: 12 changes for 6 users, 12 denied"),
            "{}",
            &md[..300]
        );
        assert!(
            md.contains("_Some values were shortened to fit this comment"),
            "says what it left out: {}",
            &md[md.len().saturating_sub(600)..]
        );
        assert!(
            md.contains("Skipped as protected: \\|\\|"),
            "the skipped list is there"
        );
        assert_eq!(
            md.matches("<details>").count(),
            md.matches("</details>").count()
        );
        // The comment still shows every user, their ids shortened.
        assert_eq!(md.matches("<details>").count(), 6, "{}", &md[..2000]);
    }
}

#[test]
fn markdown_escapes_hostile_ids() {
    let env = Env::example();
    env.import("users:\n  - id: \"<img src=x onerror=alert(1)>](javascript:alert(1))|`x`@contoso.example\"\n    app-passwords: [{id: a, name: n, created-at: 2025-01-01T00:00:00Z}]\n");
    env.write(
        "m/x.yaml",
        &manifest("x", "  - all-users: true\n    app-passwords: none\n"),
    );
    let md = env.ok(&["plan", "m", "--format", "markdown"]).stdout;
    assert!(!md.contains("<img"), "{md}");
    assert!(!md.contains("](javascript"), "{md}");
    assert!(md.contains("&lt;img"), "{md}");
}

#[test]
fn diff_shows_the_objects_that_go_by_id() {
    let env = Env::example();
    env.write("m/off.yaml", &manifest("off", "  - users: [bob@contoso.example]\n    revoke-sessions-before: 2026-11-27T09:00:00Z\n    app-passwords: none\n"));
    let o = env.ok(&["plan", "m", "--diff", "--actor", ADMIN]);
    assert!(
        o.stdout.contains("--- bob@contoso.example (actual)"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("+++ bob@contoso.example (after apply)"),
        "{}",
        o.stdout
    );
    for gone in ["-- id: s-bob-1", "-- id: a-bob-1", "-- id: a-bob-2"] {
        assert!(
            o.stdout.contains(gone),
            "{gone} missing from:\n{}",
            o.stdout
        );
    }
    assert!(
        o.stdout
            .contains("+sessions-valid-from: 2026-11-27T09:00:00Z"),
        "{}",
        o.stdout
    );
    let md = env
        .ok(&["plan", "m", "--diff", "--format", "markdown"])
        .stdout;
    assert!(
        md.contains("```diff\n--- bob@contoso.example (actual)"),
        "{md}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["plan", "m", "--diff", "--format", "json"]).stdout).unwrap();
    assert!(json["diffs"]["bob@contoso.example"]
        .as_str()
        .unwrap()
        .contains("-- id: a-bob-1"));
}

fn offboard_bob(env: &Env) {
    env.write(
        "m/off.yaml",
        &manifest(
            "off",
            "  - users: [bob@contoso.example]\n    revoke-sessions-before: 2026-11-27T09:00:00Z\n",
        ),
    );
}

#[test]
fn a_saved_plan_applies_once_and_is_refused_the_second_time() {
    let env = Env::example();
    offboard_bob(&env);
    env.ok(&["plan", "m", "--out", "plan.json"]);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("plan.json")).unwrap()).unwrap();
    assert_eq!(saved["format_version"], 1);
    assert!(saved["fingerprints"]["bob@contoso.example"].is_string());
    // Applying needs no manifests: the saved plan is the whole input.
    std::fs::remove_dir_all(env.path("m")).unwrap();
    let o = env.run(&["apply", "--plan", "plan.json", "--actor", ADMIN]);
    assert_eq!(o.code, 0, "{}", o.all());
    let audit: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--format", "json"]).stdout).unwrap();
    assert_eq!(audit[0]["plan_id"], saved["plan_id"]);
    let after = env.export();
    let o = env.run(&["apply", "--plan", "plan.json", "--actor", ADMIN]);
    assert_eq!(o.code, 4, "{}", o.all());
    assert!(o.stderr.contains("already applied"), "{}", o.stderr);
    assert_eq!(env.export(), after);
}

#[test]
fn a_saved_plan_is_stale_when_a_touched_user_changed() {
    let env = Env::example();
    offboard_bob(&env);
    env.ok(&["plan", "m", "--out", "plan.json"]);
    env.import(&user_yaml(
        "bob@contoso.example",
        &[],
        &["contractors"],
        "    sessions: [{id: s-new, issued-at: 2026-11-29T00:00:00Z}]\n",
    ));
    let before = env.export();
    let o = env.run(&["apply", "--plan", "plan.json", "--actor", ADMIN]);
    assert_eq!(o.code, 4, "{}", o.all());
    assert!(
        o.stderr.contains("bob@contoso.example"),
        "names the user: {}",
        o.stderr
    );
    assert_eq!(env.export(), before, "nothing applied");
}

#[test]
fn a_saved_plan_stays_fresh_when_only_other_users_changed() {
    let env = Env::example();
    offboard_bob(&env);
    env.ok(&["plan", "m", "--out", "plan.json"]);
    env.import(&user_yaml(
        "henry@contoso.example",
        &["reports-reader"],
        &[],
        "    sessions: [{id: s-x, issued-at: 2026-11-29T00:00:00Z}]\n",
    ));
    let o = env.run(&["apply", "--plan", "plan.json", "--actor", ADMIN]);
    assert_eq!(o.code, 0, "{}", o.all());
    let bob = env.show("bob@contoso.example");
    assert_eq!(bob["sessions"].as_sequence().unwrap().len(), 0);
}

#[test]
fn a_saved_plan_is_rechecked_against_the_applying_actor() {
    let env = Env::example();
    env.write(
        "m/apps.yaml",
        &manifest(
            "apps",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    env.ok(&["plan", "m", "--out", "plan.json", "--actor", ADMIN]);
    let before = env.export();
    let o = env.run(&[
        "apply",
        "--plan",
        "plan.json",
        "--actor",
        "erin@contoso.example",
    ]);
    assert_eq!(o.code, 3, "{}", o.all());
    assert_eq!(env.export(), before);
    let o = env.run(&["apply", "--plan", "not-there.json", "--actor", ADMIN]);
    assert_eq!(o.code, 1);
    env.write("junk.json", "{\"hello\": 1}");
    let o = env.run(&["apply", "--plan", "junk.json", "--actor", ADMIN]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not a plan mfactl wrote"), "{}", o.stderr);
}

#[test]
fn racing_applies_end_in_0_or_4_and_lose_nothing() {
    let env = Env::example();
    // Each process revokes the sessions of a different set of users.
    let sets = [
        ("a", "alice@contoso.example"),
        ("b", "bob@contoso.example"),
        ("c", "carol@contoso.example"),
        ("d", "dave@contoso.example"),
    ];
    for (dir, user) in sets {
        env.write(
            &format!("{dir}/m.yaml"),
            &manifest(
                dir,
                &format!("  - users: [{user}]\n    revoke-sessions-before: 2026-11-30T00:00:00Z\n"),
            ),
        );
    }
    let children: Vec<_> = sets
        .iter()
        .map(|(dir, _)| {
            env.cmd()
                .args([
                    "apply",
                    dir,
                    "--auto-approve",
                    "--actor",
                    ADMIN,
                    "--lock-timeout",
                    "20s",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applied = 0;
    for child in children {
        let o = child.wait_with_output().unwrap();
        let code = o.status.code().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(code == 0 || code == 4, "exit {code}: {stderr}");
        assert!(
            !stderr.contains("database is locked"),
            "raw SQLite error leaked: {stderr}"
        );
        if code == 0 {
            applied += 1;
        }
    }
    assert_eq!(
        applied, 4,
        "with a 20 s lock timeout every apply gets its turn"
    );
    let audit: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--format", "json"]).stdout).unwrap();
    assert_eq!(
        audit.as_array().unwrap().len(),
        4,
        "one audit record per applied change"
    );
    for (_, user) in sets {
        let u = env.show(user);
        assert_eq!(
            u["sessions-valid-from"].as_str(),
            Some("2026-11-30T00:00:00Z"),
            "{user}"
        );
    }
}

#[test]
fn an_apply_waiting_on_a_held_lock_gives_up_with_exit_4() {
    let env = Env::example();
    offboard_bob(&env);
    let before = env.export();
    let holder = rusqlite::Connection::open(&env.store).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let o = env.run(&[
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        ADMIN,
        "--lock-timeout",
        "1s",
    ]);
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(o.code, 4, "{}", o.all());
    assert!(o.stderr.contains("locked"), "{}", o.stderr);
    assert!(!o.stderr.contains("database is locked"), "{}", o.stderr);
    assert_eq!(env.export(), before);
}

#[test]
fn validate_annotates_several_errors_in_several_files_for_github() {
    let env = Env::example();
    env.write(
        "m/a.yaml",
        &manifest(
            "a",
            "  - users: [nobody@contoso.example]\n    app-passwords: none\n",
        ),
    );
    env.write(
        "m/b.yaml",
        &manifest(
            "b",
            "  - users: [bob@contoso.example]\n    app-pass: none\n",
        ),
    );
    env.write(
        "m/c.yaml",
        &manifest("a", "  - group: ghosts\n    app-passwords: none\n"),
    );
    let o = env.run(&["validate", "m", "--format", "github"]);
    assert_eq!(o.code, 1);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", o.stdout);
    assert!(
        lines.iter().all(|l| l.starts_with("::error file=m/")),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("::error file=m/a.yaml,line=6,col=13::unknown user"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("file=m/b.yaml,line=7,col=5::"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("file=m/c.yaml,line=4,col=9::duplicate metadata.name"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("file=m/c.yaml,line=6,col=12::unknown group"),
        "{}",
        o.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.run(&["validate", "m", "--format", "json"]).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);
    assert_eq!(json[0]["file"], "m/a.yaml");
    assert!(
        json[0]["line"].is_u64() && json[0]["column"].is_u64() && json[0]["message"].is_string()
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    let env = Env::bare();
    for shell in ["bash", "zsh", "fish"] {
        let o = env.ok(&["completions", shell]);
        assert!(o.stdout.contains("mfactl"), "{shell}");
        assert!(
            o.stdout.contains("credentials-out"),
            "{shell} completes options"
        );
    }
}
