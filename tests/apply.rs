//! `apply`: what it refuses and leaves untouched, the credentials file, the audit log, guardrails.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

const ADMIN: &str = "gary@contoso.example";

fn reset_carol(env: &Env) {
    env.write("m/p.yaml", &manifest("pw", "  - users: [carol@contoso.example]\n    reset-password-before: 2026-11-28T14:30:00Z\n    revoke-sessions-before: 2026-11-28T14:30:00Z\n"));
}

#[test]
fn apply_needs_an_actor_and_approval_and_changes_nothing_without_them() {
    let env = Env::example();
    env.write(
        "m/a.yaml",
        &manifest(
            "apps",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    let before = env.export();
    let o = env.run(&["apply", "m", "--auto-approve"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("--actor"), "{}", o.stderr);
    let o = env.run(&["apply", "m", "--actor", ADMIN]);
    assert_eq!(o.code, 1, "stdin is not a terminal");
    assert!(o.stderr.contains("--auto-approve"), "{}", o.stderr);
    assert_eq!(env.export(), before);
    let o = env.run_env(
        &["apply", "m", "--auto-approve"],
        &[("MFACTL_ACTOR", ADMIN)],
    );
    assert_eq!(o.code, 0, "MFACTL_ACTOR names the actor: {}", o.all());
    assert_ne!(env.export(), before);
}

#[test]
fn a_reset_without_credentials_out_applies_nothing() {
    let env = Env::example();
    reset_carol(&env);
    let before = env.export();
    let o = env.run(&["apply", "m", "--auto-approve", "--actor", ADMIN]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("--credentials-out"), "{}", o.stderr);
    assert_eq!(
        env.export(),
        before,
        "the session revocation was not applied either"
    );
}

#[test]
fn an_existing_credentials_file_is_refused_and_nothing_applied() {
    let env = Env::example();
    reset_carol(&env);
    env.write("creds.txt", "keep me\n");
    let before = env.export();
    let o = env.run(&[
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        ADMIN,
        "--credentials-out",
        "creds.txt",
    ]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("creds.txt"), "{}", o.stderr);
    assert_eq!(
        std::fs::read_to_string(env.path("creds.txt")).unwrap(),
        "keep me\n"
    );
    assert_eq!(env.export(), before);
    // A symlink is refused too, even a dangling one.
    std::os::unix::fs::symlink(env.path("elsewhere"), env.path("link.txt")).unwrap();
    let o = env.run(&[
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        ADMIN,
        "--credentials-out",
        "link.txt",
    ]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(!env.exists("elsewhere"));
}

#[test]
fn the_temporary_password_appears_only_in_the_credentials_file() {
    let env = Env::example();
    reset_carol(&env);
    let plan = env.ok(&["plan", "m", "--format", "json", "--actor", ADMIN]);
    let o = env.run(&[
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        ADMIN,
        "--credentials-out",
        "creds.txt",
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    let creds = env.path("creds.txt");
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&creds).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1);
    let (user, password) = lines[0].split_once('\t').unwrap();
    assert_eq!(user, "carol@contoso.example");
    assert!(password.len() >= 16, "{password}");
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));

    let mut seen = vec![plan.all(), o.all()];
    for args in [
        vec!["plan", "m", "--actor", ADMIN],
        vec!["plan", "m", "--format", "json"],
        vec!["audit"],
        vec!["audit", "--format", "json"],
        vec!["store", "export"],
        vec!["show", "carol@contoso.example"],
    ] {
        seen.push(env.ok(&args).all());
    }
    for out in &seen {
        assert!(
            !out.contains(password),
            "password leaked into output:\n{out}"
        );
    }
    // Nor in the store's bytes (only an argon2 hash is kept).
    for f in ["mfactl.db", "mfactl.db-wal"] {
        if let Ok(bytes) = std::fs::read(env.path(f)) {
            assert!(
                !bytes
                    .windows(password.len())
                    .any(|w| w == password.as_bytes()),
                "password in {f}"
            );
        }
    }
    let hash = stored_password_hash(&env.store, "carol@contoso.example").unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

#[test]
fn every_change_gets_one_audit_record() {
    let env = Env::example();
    reset_carol(&env);
    env.ok(&[
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        ADMIN,
        "--credentials-out",
        "c.txt",
    ]);
    let audit: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--format", "json"]).stdout).unwrap();
    let records = audit.as_array().unwrap();
    assert_eq!(records.len(), 2);
    let r = &records[0];
    for field in [
        "at", "actor", "role", "action", "user", "before", "after", "sources", "plan_id",
    ] {
        assert!(r.get(field).is_some(), "audit record lacks {field}: {r}");
    }
    assert_eq!(r["actor"], ADMIN);
    assert_eq!(r["role"], "global-administrator");
    assert_eq!(r["action"], "reset-password");
    assert_eq!(r["user"], "carol@contoso.example");
    assert_eq!(r["at"], NOW);
    assert_eq!(r["sources"], serde_json::json!(["pw"]));
    assert_eq!(records[1]["action"], "revoke-sessions");
    assert_eq!(
        records[1]["before"],
        serde_json::json!({"sessions-valid-from": "2025-12-31T23:00:00Z", "sessions": 2})
    );
    assert_eq!(r["plan_id"], records[1]["plan_id"]);

    let text = env.ok(&["audit"]).stdout;
    assert!(
        text.contains("revoke-sessions") && text.contains("carol@contoso.example"),
        "{text}"
    );
    let none: serde_json::Value = serde_json::from_str(
        &env.ok(&["audit", "--user", "bob@contoso.example", "--format", "json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(none.as_array().unwrap().len(), 0);
    let mine: serde_json::Value = serde_json::from_str(
        &env.ok(&[
            "audit",
            "--user",
            "CAROL@contoso.example",
            "--format",
            "json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 2);
    let later: serde_json::Value = serde_json::from_str(
        &env.ok(&["audit", "--since", "2026-12-01", "--format", "json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(later.as_array().unwrap().len(), 0);
}

#[test]
fn each_apply_bumps_the_store_revision() {
    let env = Env::example();
    env.write(
        "m/a.yaml",
        &manifest(
            "apps",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    let rev = |env: &Env| -> i64 {
        let v: serde_json::Value =
            serde_json::from_str(&env.ok(&["plan", "m", "--format", "json"]).stdout).unwrap();
        v["store_revision"].as_i64().unwrap()
    };
    let r0 = rev(&env);
    env.ok(&["apply", "m", "--auto-approve", "--actor", ADMIN]);
    assert_eq!(rev(&env), r0 + 1);
    env.ok(&["apply", "m", "--auto-approve", "--actor", ADMIN]);
    assert_eq!(
        rev(&env),
        r0 + 1,
        "an empty apply changes nothing, not even the revision"
    );
}

#[test]
fn max_users_per_apply_refuses_a_large_apply_unless_allowed() {
    let env = Env::example();
    env.write("pol/roles.yaml", policy_roles());
    env.write(
        "pol/guardrails.yaml",
        "protected-users: []\nmax-users-per-apply: 2\nmax-future-skew: 5m\n",
    );
    env.write(
        "m/t.yaml",
        &manifest(
            "t",
            "  - group: contractors\n    revoke-trusted-devices-before: 2026-11-20\n",
        ),
    );
    let before = env.export();
    let o = env.run(&[
        "--policies",
        "pol",
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        ADMIN,
    ]);
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(o.stderr.contains("--allow-large"), "{}", o.stderr);
    assert_eq!(env.export(), before);
    let o = env.run(&[
        "--policies",
        "pol",
        "apply",
        "m",
        "--auto-approve",
        "--allow-large",
        "--actor",
        ADMIN,
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
}

fn policy_roles() -> &'static str {
    include_str!("../policies/roles.yaml")
}

#[test]
fn detailed_exit_codes_follow_the_plan() {
    let env = Env::example();
    env.write(
        "m/a.yaml",
        &manifest(
            "apps",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    assert_eq!(
        env.run(&["plan", "m", "--detailed-exitcode", "--actor", ADMIN])
            .code,
        2
    );
    assert_eq!(
        env.run(&[
            "plan",
            "m",
            "--detailed-exitcode",
            "--actor",
            "erin@contoso.example"
        ])
        .code,
        3
    );
    assert_eq!(
        env.run(&["plan", "m", "--actor", "erin@contoso.example"])
            .code,
        0,
        "without the flag a plan exits 0"
    );
    let o = env.run(&[
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        "erin@contoso.example",
    ]);
    assert_eq!(o.code, 3, "{}", o.all());
    env.ok(&["apply", "m", "--auto-approve", "--actor", ADMIN]);
    assert_eq!(
        env.run(&["plan", "m", "--detailed-exitcode", "--actor", ADMIN])
            .code,
        0
    );
}

#[test]
fn text_plan_is_uncoloured_when_piped_and_summarises() {
    let env = Env::example();
    env.use_example_policies();
    let m = format!("{EXAMPLES}/manifests");
    let o = env.run_env(
        &["plan", &m, "--actor", "erin@contoso.example"],
        &[("NO_COLOR", "")],
    );
    assert!(
        !o.stdout.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    assert!(
        o.stdout.contains("Plan: 15 changes for 6 users, 4 denied."),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("removes: s-alice-1, s-alice-2"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("breakglass@contoso.example (protected"),
        "{}",
        o.stdout
    );
    let o = env.run(&["plan", &m]);
    assert!(
        o.stdout.contains("needs one of: global-administrator"),
        "{}",
        o.stdout
    );
}

/// Runs `mfactl ARGS` on a pseudo-terminal (util-linux `script`), typing `answer` at the prompt.
fn on_a_terminal(env: &Env, args: &str, answer: &str) -> Out {
    let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_mfactl"));
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '{answer}\\n' | script -qec \"{cmd}\" /dev/null"
        ))
        .current_dir(env.dir.path())
        .env("MFACTL_STORE", &env.store)
        .env("MFACTL_NOW", NOW)
        .env_remove("NO_COLOR")
        .output()
        .expect("script (util-linux) provides a terminal");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn on_a_terminal_apply_shows_the_plan_in_colour_and_asks_for_yes() {
    let env = Env::example();
    env.write(
        "m/a.yaml",
        &manifest(
            "apps",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    let before = env.export();
    let o = on_a_terminal(&env, &format!("apply m --actor {ADMIN}"), "no");
    assert!(
        o.stdout
            .contains("Apply this change? Only 'yes' is accepted"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("\x1b[32mallowed as global-administrator"),
        "colour on a terminal: {}",
        o.stdout
    );
    assert!(o.stdout.contains("apply cancelled"), "{}", o.stdout);
    assert_eq!(env.export(), before);
    let o = on_a_terminal(&env, &format!("apply m --actor {ADMIN}"), "yes");
    assert!(
        o.stdout.contains("Apply complete: 1 change for 1 user"),
        "{}",
        o.stdout
    );
    assert_ne!(env.export(), before);
    let o = on_a_terminal(&env, &format!("--no-color plan m --actor {ADMIN}"), "");
    assert!(!o.stdout.contains('\x1b'), "--no-color: {}", o.stdout);
}

/// Passwords are hashed on a second thread while the changes are written: each user's stored
/// hash must be of the password the credentials file gives that user, and of no other.
#[test]
fn each_reset_user_gets_the_hash_of_their_own_password() {
    use argon2::{PasswordHash, PasswordVerifier};
    let env = Env::example();
    let users = [
        "alice@contoso.example",
        "bob@contoso.example",
        "carol@contoso.example",
        "henry@contoso.example",
    ];
    env.write(
        "m/reset.yaml",
        &manifest(
            "reset",
            &format!(
                "  - users: [{}]\n    reset-password-before: 2026-11-30T00:00:00Z\n",
                users.join(", ")
            ),
        ),
    );
    let o = env.run(&[
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        ADMIN,
        "--credentials-out",
        "creds.txt",
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    let text = std::fs::read_to_string(env.path("creds.txt")).unwrap();
    let issued: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    assert_eq!(
        issued.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
        users,
        "{text}"
    );
    for (user, _) in &issued {
        let stored = stored_password_hash(&env.store, user).unwrap();
        let hash = PasswordHash::new(&stored).unwrap();
        for (other, password) in &issued {
            let ok = argon2::Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok();
            assert_eq!(
                ok,
                user == other,
                "{user}'s hash against {other}'s password"
            );
        }
    }
}
