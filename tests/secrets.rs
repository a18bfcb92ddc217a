//! Secrets never leak: around password resets by `apply`, `apply --plan` and `watch --once`, the
//! temporary passwords appear in the 0600 credentials files and nowhere else — not in any command's
//! output in any format, not in saved plans, the audit log, exports, daemon logs, or the store's
//! bytes.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

const ADMIN: &str = "gary@contoso.example";

fn passwords_in(file: &std::path::Path) -> Vec<String> {
    assert_eq!(
        std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
        0o600,
        "{}",
        file.display()
    );
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| l.split_once('\t').expect("user<TAB>password").1.to_string())
        .collect()
}

#[test]
fn temporary_passwords_appear_only_in_credentials_files() {
    let env = Env::example();
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut record = |label: &str, o: &Out| seen.push((label.to_string(), o.all()));

    // 1. apply from manifests.
    env.write("m/reset.yaml", &manifest("reset", "  - users: [carol@contoso.example, henry@contoso.example]\n    reset-password-before: 2026-11-29T00:00:00Z\n"));
    for f in ["text", "json", "markdown"] {
        record(
            f,
            &env.ok(&["plan", "m", "--format", f, "--diff", "--actor", ADMIN]),
        );
    }
    record(
        "apply",
        &env.ok(&[
            "apply",
            "m",
            "--auto-approve",
            "--actor",
            ADMIN,
            "--credentials-out",
            "one.tsv",
        ]),
    );
    let mut passwords = passwords_in(&env.path("one.tsv"));
    assert_eq!(passwords.len(), 2);

    // 2. a saved plan, applied.
    env.write("m/reset.yaml", &manifest("reset", "  - users: [carol@contoso.example, henry@contoso.example]\n    reset-password-before: 2026-11-30T12:01:00Z\n"));
    record(
        "plan --out",
        &env.ok(&["plan", "m", "--out", "saved.json", "--actor", ADMIN]),
    );
    record(
        "apply --plan",
        &env.ok(&[
            "apply",
            "--plan",
            "saved.json",
            "--actor",
            ADMIN,
            "--credentials-out",
            "two.tsv",
        ]),
    );
    passwords.extend(passwords_in(&env.path("two.tsv")));

    // 3. the daemon, once (within the allowed skew, so the temporary passwords count as set at T).
    env.write("m/reset.yaml", &manifest("reset", "  - users: [carol@contoso.example, henry@contoso.example]\n    reset-password-before: 2026-11-30T12:02:00Z\n"));
    std::fs::create_dir(env.path("creds")).unwrap();
    for (format, t) in [("text", "12:02"), ("json", "12:03")] {
        env.write("m/reset.yaml", &manifest("reset", &format!("  - users: [carol@contoso.example, henry@contoso.example]\n    reset-password-before: 2026-11-30T{t}:00Z\n")));
        let o = env.run(&[
            "watch",
            "m",
            "--once",
            "--actor",
            ADMIN,
            "--credentials-dir",
            "creds",
            "--log-format",
            format,
        ]);
        assert_eq!(o.code, 0, "{}", o.all());
        record("watch --once", &o);
    }
    for f in std::fs::read_dir(env.path("creds")).unwrap() {
        passwords.extend(passwords_in(&f.unwrap().path()));
    }
    assert_eq!(passwords.len(), 8, "two resets per run");

    for args in [
        vec!["audit"],
        vec!["audit", "--format", "json"],
        vec!["audit", "verify"],
        vec!["store", "export"],
        vec!["show", "carol@contoso.example"],
        vec!["validate", "m"],
        vec!["plan", "m", "--format", "json", "--diff"],
    ] {
        let o = env.ok(&args);
        record(&args.join(" "), &o);
    }
    seen.push((
        "saved.json".into(),
        std::fs::read_to_string(env.path("saved.json")).unwrap(),
    ));
    let mut bytes = Vec::new();
    for f in ["mfactl.db", "mfactl.db-wal"] {
        if let Ok(b) = std::fs::read(env.path(f)) {
            bytes.extend(b);
        }
    }
    for pw in &passwords {
        assert!(pw.len() >= 16);
        for (label, text) in &seen {
            assert!(
                !text.contains(pw.as_str()),
                "a temporary password leaked into {label}"
            );
        }
        assert!(
            !bytes.windows(pw.len()).any(|w| w == pw.as_bytes()),
            "a temporary password is in the store file"
        );
    }
    // Each was distinct: a CSPRNG, not a constant.
    let mut unique = passwords.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), passwords.len());
}
