//! Interrupted applies and their credentials files: whatever stops an apply (SIGINT, SIGTERM,
//! SIGKILL, a crash right after the commit), the file at `--credentials-out` exists if and only if
//! the apply committed, and then holds passwords that work. What an interrupted run leaves is
//! named `FILE.uncommitted-<plan id>`, and the next apply to FILE (or reconcile of the daemon)
//! hands it over or deletes it.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

const ADMIN: &str = "gary@contoso.example";
const RESET: &str = "  - users: [carol@contoso.example, henry@contoso.example]\n    reset-password-before: 2026-11-29T00:00:00Z\n    revoke-sessions-before: 2026-11-29T00:00:00Z\n";

fn setup() -> Env {
    let env = Env::example();
    env.write("m/reset.yaml", &manifest("reset", RESET));
    env
}

fn apply_args(file: &str) -> Vec<String> {
    [
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        ADMIN,
        "--credentials-out",
        file,
    ]
    .map(String::from)
    .to_vec()
}

/// Starts mfactl with `args`, stopped at `point` (see `MFACTL_FAILPOINT_MARK`), and returns it
/// once it is there.
fn stopped_at(env: &Env, point: &str, args: &[String]) -> Child {
    let mark = env.path("failpoint.mark");
    let _ = std::fs::remove_file(&mark);
    let mut child = env
        .cmd()
        .args(args)
        .env("MFACTL_FAILPOINT", point)
        .env("MFACTL_FAILPOINT_MARK", &mark)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !mark.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "mfactl ended ({status}) before {point}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}

fn signal(child: &Child, sig: i32) {
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Everything in the temp dir whose name starts with `prefix`.
fn files(env: &Env, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// The one pending file of `file`, which must be private.
fn leftover(env: &Env, file: &str) -> PathBuf {
    let found = files(env, &format!("{file}.uncommitted-"));
    assert_eq!(found.len(), 1, "{found:?}");
    let p = env.path(&found[0]);
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    p
}

/// `user<TAB>password` lines.
fn issued(file: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            let (u, p) = l.split_once('\t').expect("user<TAB>password");
            (u.to_string(), p.to_string())
        })
        .collect()
}

/// How many of these passwords the store's hashes accept.
fn working(env: &Env, passwords: &[(String, String)]) -> usize {
    use argon2::{PasswordHash, PasswordVerifier};
    passwords
        .iter()
        .filter(|(user, password)| {
            let stored = stored_password_hash(&env.store, user);
            stored.is_some_and(|s| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &PasswordHash::new(&s).unwrap())
                    .is_ok()
            })
        })
        .count()
}

fn audit_records(env: &Env) -> usize {
    let audit: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--format", "json"]).stdout).unwrap();
    audit.as_array().unwrap().len()
}

#[test]
fn an_interrupted_apply_leaves_no_credentials_file() {
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let env = setup();
        let before = env.export();
        let child = stopped_at(&env, "apply-wait-before-commit", &apply_args("creds.tsv"));
        assert_eq!(
            issued(&leftover(&env, "creds.tsv")).len(),
            2,
            "{name}: the passwords wait under a name that says they are not issued"
        );
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(sig),
            "{name}: rolled back, then dies of the signal: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "interrupted by {name} before the commit; nothing was applied"
            )),
            "{stderr}"
        );
        assert_eq!(env.export(), before, "{name}: the store is as it was");
        assert_eq!(audit_records(&env), 0, "{name}");
        assert_eq!(files(&env, "creds.tsv"), Vec::<String>::new(), "{name}");

        // Nothing stands in the way of the next apply.
        let o = env.run(
            &apply_args("creds.tsv")
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert_eq!(o.code, 0, "{name}: {}", o.all());
        let passwords = issued(&env.path("creds.tsv"));
        assert_eq!(working(&env, &passwords), 2, "{name}");
        assert_eq!(files(&env, "creds.tsv"), ["creds.tsv"], "{name}");
    }
}

#[test]
fn an_apply_killed_before_its_commit_leaves_a_pending_file_the_next_apply_deletes() {
    let env = setup();
    let before = env.export();
    let args = apply_args("creds.tsv");
    let mut child = stopped_at(&env, "apply-wait-before-commit", &args);
    signal(&child, libc::SIGKILL);
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(env.export(), before);
    assert!(
        !env.exists("creds.tsv"),
        "no credentials file without a commit"
    );
    let pending = leftover(&env, "creds.tsv");
    let unissued = issued(&pending);
    assert_eq!(unissued.len(), 2);

    let o = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.stderr
            .contains("never committed, so its 2 temporary passwords were never set"),
        "{}",
        o.stderr
    );
    assert_eq!(
        files(&env, "creds.tsv"),
        ["creds.tsv"],
        "the leftover is gone"
    );
    let passwords = issued(&env.path("creds.tsv"));
    assert_eq!(working(&env, &passwords), 2);
    assert_eq!(working(&env, &unissued), 0);
}

#[test]
fn an_apply_killed_after_its_commit_hands_its_passwords_over_on_the_next_run() {
    let env = setup();
    let before = env.export();
    let args = apply_args("creds.tsv");
    let o = env.run_env(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("MFACTL_FAILPOINT", "apply-after-commit")],
    );
    assert_ne!(o.code, 0, "aborted: {}", o.all());
    assert_ne!(env.export(), before, "the apply committed");
    assert!(!env.exists("creds.tsv"), "not yet handed over");
    let pending = leftover(&env, "creds.tsv");
    let body = std::fs::read_to_string(&pending).unwrap();

    let o = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.stderr.contains("its 2 temporary passwords are now in") && o.stderr.contains("creds.tsv"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("Nothing to apply."), "{}", o.stderr);
    assert_eq!(files(&env, "creds.tsv"), ["creds.tsv"]);
    assert_eq!(
        std::fs::read_to_string(env.path("creds.tsv")).unwrap(),
        body
    );
    assert_eq!(
        std::fs::metadata(env.path("creds.tsv"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(working(&env, &issued(&env.path("creds.tsv"))), 2);
    let plan = env.run(&["plan", "m", "--detailed-exitcode", "--actor", ADMIN]);
    assert_eq!(plan.code, 0, "nothing left to apply: {}", plan.all());
}

#[test]
fn a_saved_plan_killed_after_its_commit_still_hands_over_its_passwords() {
    let env = setup();
    env.ok(&["plan", "m", "--out", "saved.json", "--actor", ADMIN]);
    let args = [
        "apply",
        "--plan",
        "saved.json",
        "--actor",
        ADMIN,
        "--credentials-out",
        "creds.tsv",
    ];
    let o = env.run_env(&args, &[("MFACTL_FAILPOINT", "apply-after-commit")]);
    assert_ne!(o.code, 0, "{}", o.all());
    assert!(!env.exists("creds.tsv"));
    leftover(&env, "creds.tsv");

    // The plan is refused as applied, but its passwords are handed over first.
    let o = env.run(&args);
    assert_eq!(o.code, 4, "{}", o.all());
    assert!(o.stderr.contains("already applied"), "{}", o.stderr);
    assert!(o.stderr.contains("are now in"), "{}", o.stderr);
    assert_eq!(files(&env, "creds.tsv"), ["creds.tsv"]);
    assert_eq!(working(&env, &issued(&env.path("creds.tsv"))), 2);
}

#[test]
fn a_leftover_of_a_plan_that_another_run_committed_is_not_taken_for_issued_passwords() {
    let env = setup();
    env.ok(&["plan", "m", "--out", "saved.json", "--actor", ADMIN]);
    let saved = |file: &str| -> Vec<String> {
        [
            "apply",
            "--plan",
            "saved.json",
            "--actor",
            ADMIN,
            "--credentials-out",
            file,
        ]
        .map(String::from)
        .to_vec()
    };
    let mut child = stopped_at(&env, "apply-wait-before-commit", &saved("a.tsv"));
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let unissued = issued(&leftover(&env, "a.tsv"));
    // The same plan, applied again to another file: it commits, with other passwords.
    let o = env.run(
        &saved("b.tsv")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(working(&env, &issued(&env.path("b.tsv"))), 2);

    // a.tsv's leftover names a plan that committed, but its passwords were never set.
    let o = env.run(
        &apply_args("a.tsv")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stderr.contains("they do not work"), "{}", o.stderr);
    assert_eq!(files(&env, "a.tsv"), Vec::<String>::new());
    assert_eq!(working(&env, &unissued), 0);
}

#[test]
fn a_hostile_plan_id_never_names_a_credentials_file() {
    let env = setup();
    std::fs::create_dir(env.path("out")).unwrap();
    env.ok(&["plan", "m", "--out", "saved.json", "--actor", ADMIN]);
    let text = std::fs::read_to_string(env.path("saved.json")).unwrap();
    let mut plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    plan["plan_id"] = "../../escaped".into();
    std::fs::write(env.path("saved.json"), plan.to_string()).unwrap();
    let before = env.export();
    let o = env.run(&[
        "apply",
        "--plan",
        "saved.json",
        "--actor",
        ADMIN,
        "--credentials-out",
        "out/creds.tsv",
    ]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert_eq!(env.export(), before);
    assert_eq!(std::fs::read_dir(env.path("out")).unwrap().count(), 0);
    assert!(!env.exists("escaped") && !env.path("../escaped").exists());
    assert_eq!(files(&env, "creds.tsv"), Vec::<String>::new());
}

fn watch_once(env: &Env, failpoint: Option<&str>) -> Out {
    let args = [
        "watch",
        "m",
        "--once",
        "--actor",
        ADMIN,
        "--credentials-dir",
        "creds",
    ];
    match failpoint {
        Some(p) => env.run_env(&args, &[("MFACTL_FAILPOINT", p)]),
        None => env.run(&args),
    }
}

fn creds_dir(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.path("creds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_reconcile_killed_after_its_commit_hands_its_passwords_over_on_the_next_one() {
    let env = setup();
    std::fs::create_dir(env.path("creds")).unwrap();
    let o = watch_once(&env, Some("apply-after-commit"));
    assert_ne!(o.code, 0, "{}", o.all());
    let names = creds_dir(&env);
    assert_eq!(names.len(), 1, "{names:?}");
    let (file, id) = names[0]
        .split_once(".uncommitted-")
        .expect("a pending name");
    assert_eq!(file, format!("credentials-{id}.tsv"));

    let o = watch_once(&env, None);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stderr.contains("are now in"), "{}", o.stderr);
    assert!(o.stderr.contains("result=in-sync"), "{}", o.stderr);
    assert_eq!(creds_dir(&env), [file]);
    assert_eq!(working(&env, &issued(&env.path("creds").join(file))), 2);
}

#[test]
fn a_reconcile_killed_before_its_commit_leaves_no_credentials_file() {
    let env = setup();
    std::fs::create_dir(env.path("creds")).unwrap();
    let before = env.export();
    let o = watch_once(&env, Some("apply-before-commit"));
    assert_ne!(o.code, 0, "{}", o.all());
    assert_eq!(env.export(), before);
    let names = creds_dir(&env);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].contains(".uncommitted-"), "{names:?}");
    let unissued = issued(&env.path("creds").join(&names[0]));

    let o = watch_once(&env, None);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stderr.contains("never committed"), "{}", o.stderr);
    let names = creds_dir(&env);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with("credentials-") && names[0].ends_with(".tsv"),
        "{names:?}"
    );
    assert_eq!(
        working(&env, &issued(&env.path("creds").join(&names[0]))),
        2
    );
    assert_eq!(working(&env, &unissued), 0);
}
