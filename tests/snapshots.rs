//! Snapshots of what people and pipelines read: the plan in every format (text, JSON, Markdown,
//! with and without `--diff`), the empty plan, and `validate`'s error messages. Each is the real
//! binary run on real files in a temp dir (see `common`), recorded with its exit code and stderr
//! under `tests/snapshots/`.
//!
//! Nothing is redacted: every input that could vary is fixed instead. The clock is `MFACTL_NOW`
//! and colour is off (both set by `Env::cmd`); manifests and policies are copied into the temp
//! dir and read through relative paths (`./manifests`, `./policies`), which is the working
//! directory of every run; the plan id depends only on the actor, the store revision, the
//! changes and their users' state. [`transcript`] checks that no output names the temp dir, so that a message that
//! starts naming it fails here with a clear reason rather than as a snapshot that differs on
//! every run.
//!
//! After an intended change of output: `cargo insta review` (or `INSTA_UPDATE=always cargo test
//! --test snapshots`), then read the diff of the `.snap` files before committing them. Under
//! `CI=true` insta writes nothing and a missing or different snapshot fails the test.

mod common;
use common::*;

const ADMIN: &str = "erin@contoso.example"; // authentication-administrator
const GLOBAL_ADMIN: &str = "gary@contoso.example";

/// The example tenant, the example policies (which protect breakglass@) in `./policies`, and the
/// four example manifests in `./manifests`.
///
/// As erin, the plan has every action kind; four denied changes (erin may not delete app
/// passwords, nor touch gary, a global administrator, nor ivan, in a role-assignable group); a
/// protected user skipped (breakglass@, reached by `all-users`); settings some users already meet
/// (lead@ is excepted, henry@'s watermark already meets the tenant-wide one); and a revoke-sessions that only raises
/// dave@'s watermark (`sessions: 1 → 1`).
fn example_env() -> Env {
    let env = Env::example();
    env.use_example_policies();
    for m in [
        "contractors",
        "offboarding-2026-11",
        "stolen-laptop-carol",
        "tenant-wide-revocation",
    ] {
        copy_example_manifest(&env, m);
    }
    env
}

fn copy_example_manifest(env: &Env, name: &str) {
    let text = std::fs::read_to_string(format!("{EXAMPLES}/manifests/{name}.yaml")).unwrap();
    env.write(&format!("manifests/{name}.yaml"), &text);
}

/// One run as a snapshot: exit code, stdout and stderr, each marked, so that a new warning or a
/// changed exit code shows in the snapshot as much as a changed plan does.
fn transcript(env: &Env, o: &Out) -> String {
    let dir = env.dir.path().to_str().unwrap();
    assert!(
        !o.stdout.contains(dir) && !o.stderr.contains(dir),
        "the output names the temp dir {dir}, which differs on every run:\n{}",
        o.all()
    );
    format!(
        "exit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
        o.code, o.stdout, o.stderr
    )
}

/// Runs `mfactl ARGS` in `env` and checks its transcript against the snapshot `name`, whose
/// header names the command line. Returns the run, for further checks.
fn check(name: &str, env: &Env, args: &[&str]) -> Out {
    let o = env.run(args);
    let text = transcript(env, &o);
    insta::with_settings!({
        description => format!("mfactl {}", args.join(" ")),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, text);
    });
    o
}

/// [`check`] for a JSON output, which must also parse.
fn check_json(name: &str, env: &Env, args: &[&str]) {
    let o = check(name, env, args);
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&o.stdout) {
        panic!("mfactl {args:?} printed invalid JSON ({e}):\n{}", o.stdout);
    }
}

#[test]
fn plan_text() {
    check("plan_text", &example_env(), &["plan", "--actor", ADMIN]);
}

#[test]
fn plan_json() {
    let args = ["plan", "--actor", ADMIN, "--format", "json"];
    check_json("plan_json", &example_env(), &args);
}

#[test]
fn plan_markdown() {
    let args = ["plan", "--actor", ADMIN, "--format", "markdown"];
    check("plan_markdown", &example_env(), &args);
}

#[test]
fn plan_diff_text() {
    let args = ["plan", "--actor", ADMIN, "--diff"];
    check("plan_diff_text", &example_env(), &args);
}

#[test]
fn plan_diff_json() {
    let args = ["plan", "--actor", ADMIN, "--diff", "--format", "json"];
    check_json("plan_diff_json", &example_env(), &args);
}

#[test]
fn plan_diff_markdown() {
    let args = ["plan", "--actor", ADMIN, "--diff", "--format", "markdown"];
    check("plan_diff_markdown", &example_env(), &args);
}

/// The example tenant with the built-in policies (no `./policies`) and two of the example
/// manifests, planned without an actor: each change names the roles that could approve it, and
/// the guardrails protect nobody, so the plan warns on stderr and the Markdown plan opens with
/// the warning.
fn builtin_policies_env() -> Env {
    let env = Env::example();
    copy_example_manifest(&env, "offboarding-2026-11");
    copy_example_manifest(&env, "stolen-laptop-carol");
    env
}

#[test]
fn plan_no_actor_builtin_policies_text() {
    let name = "plan_no_actor_builtin_policies_text";
    check(name, &builtin_policies_env(), &["plan"]);
}

#[test]
fn plan_no_actor_builtin_policies_markdown() {
    let name = "plan_no_actor_builtin_policies_markdown";
    check(
        name,
        &builtin_policies_env(),
        &["plan", "--format", "markdown"],
    );
}

/// [`example_env`] after the global administrator's apply: the plan has no changes, and still
/// lists the protected user as skipped.
fn applied_env() -> Env {
    let env = example_env();
    env.ok(&[
        "apply",
        "--actor",
        GLOBAL_ADMIN,
        "--auto-approve",
        "--credentials-out",
        "credentials.txt",
    ]);
    env
}

#[test]
fn empty_plan_text() {
    check(
        "empty_plan_text",
        &applied_env(),
        &["plan", "--actor", GLOBAL_ADMIN],
    );
}

#[test]
fn empty_plan_markdown() {
    let args = ["plan", "--actor", GLOBAL_ADMIN, "--format", "markdown"];
    check("empty_plan_markdown", &applied_env(), &args);
}

/// Three problems in two documents of one file: an unknown user and a future timestamp (checks
/// against the store and the clock) in the first, an unknown key in the second. (An unknown key
/// ends the checks of its own document: in the first, it would hide the other two.)
const BROKEN: &str = "\
apiVersion: mfactl/v1
kind: UserSettings
metadata:
  name: offboarding-december
spec:
  - users: [alice@contoso.example, nobody@contoso.example]
    revoke-sessions-before: 2026-11-27T09:00:00Z
  - group: contractors
    revoke-sessions-before: 2027-01-01T00:00:00Z
---
apiVersion: mfactl/v1
kind: UserSettings
metadata:
  name: tenant-wide
spec:
  - all-users: true
    revoke-session-before: 2026-11-01
";

fn broken_env() -> Env {
    let env = Env::example();
    env.write("manifests/offboarding.yaml", BROKEN);
    env
}

#[test]
fn validate_errors_text() {
    check("validate_errors_text", &broken_env(), &["validate"]);
}

#[test]
fn validate_errors_json() {
    let args = ["validate", "--format", "json"];
    check_json("validate_errors_json", &broken_env(), &args);
}

#[test]
fn validate_errors_github() {
    let args = ["validate", "--format", "github"];
    check("validate_errors_github", &broken_env(), &args);
}
